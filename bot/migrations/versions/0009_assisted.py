"""assisted registration: invites and roles, families, assisted residents, the audit trail

Volunteers bound to communes by invites; relatives' books held by an account and handed over
with a code; residents without an account registered by a volunteer; consent given on someone's
behalf; the audit trail; parked drafts.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "invites",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("province_code", sa.Integer(), nullable=True),
        sa.Column("ward_codes", JSON, nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.Column("uses_left", sa.Integer(), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.CheckConstraint("role IN ('volunteer', 'site_staff')", name=op.f("ck_invites_role")),
        sa.ForeignKeyConstraint(
            ["created_by"], ["accounts.id"],
            name=op.f("fk_invites_created_by_accounts"), ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_invites_site_id_sites"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invites")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_invites_code_hash")),
    )
    op.create_table(
        "volunteer_wards",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("ward_code", sa.Integer(), nullable=False),
        sa.Column("province_code", sa.Integer(), nullable=False),
        sa.Column("invite_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"],
            name=op.f("fk_volunteer_wards_account_id_accounts"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["invite_id"], ["invites.id"],
            name=op.f("fk_volunteer_wards_invite_id_invites"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("account_id", "ward_code", name=op.f("pk_volunteer_wards")),
    )
    op.create_index(
        "ix_volunteer_wards_ward", "volunteer_wards", ["province_code", "ward_code"], unique=False
    )

    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("suspended_at", TS, nullable=True))
    # recreated on SQLite (a column made nullable) with AUTOINCREMENT: a deleted book's id is
    # never given to the next one, whose audit trail would otherwise show the deleted book's
    # (audit_log.health_book_id has no foreign key); PostgreSQL's sequences never reuse ids
    with op.batch_alter_table(
        "health_books", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.alter_column("account_id", existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column("registered_by", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("consent_kind", sa.String(length=16), server_default="own", nullable=False)
        )
        batch.add_column(sa.Column("consent_by", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("consent_at", TS, nullable=True))
        batch.create_index(
            op.f("ix_health_books_registered_by"), ["registered_by"], unique=False
        )
        batch.create_index("ix_health_books_dob", ["date_of_birth"], unique=False)
        batch.create_index(op.f("ix_health_books_consent_by"), ["consent_by"], unique=False)
        batch.create_foreign_key(
            op.f("fk_health_books_registered_by_accounts"), "accounts",
            ["registered_by"], ["id"], ondelete="SET NULL",
        )
        batch.create_foreign_key(
            op.f("fk_health_books_consent_by_accounts"), "accounts",
            ["consent_by"], ["id"], ondelete="SET NULL",
        )
    with op.batch_alter_table("drafts") as batch:
        batch.add_column(
            sa.Column("subject", sa.String(length=12), server_default="self", nullable=False)
        )
        batch.add_column(sa.Column("relation", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("consent", JSON, server_default=sa.text("'{}'"), nullable=False))
    with op.batch_alter_table("booking_drafts") as batch:
        batch.add_column(sa.Column("health_book_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_booking_drafts_health_book_id_health_books"), "health_books",
            ["health_book_id"], ["id"], ondelete="CASCADE",
        )
        batch.create_index(
            op.f("ix_booking_drafts_health_book_id"), ["health_book_id"], unique=False
        )

    op.create_table(
        "assists",
        sa.Column("health_book_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("via", sa.String(length=12), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"],
            name=op.f("fk_assists_account_id_accounts"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["health_book_id"], ["health_books.id"],
            name=op.f("fk_assists_health_book_id_health_books"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("health_book_id", "account_id", name=op.f("pk_assists")),
    )
    op.create_index(op.f("ix_assists_account_id"), "assists", ["account_id"], unique=False)
    op.create_table(
        "handover_codes",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("health_book_id", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"], ["accounts.id"],
            name=op.f("fk_handover_codes_created_by_accounts"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["health_book_id"], ["health_books.id"],
            name=op.f("fk_handover_codes_health_book_id_health_books"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_handover_codes")),
    )
    op.create_index(
        op.f("ix_handover_codes_health_book_id"), "handover_codes", ["health_book_id"], unique=False
    )
    op.create_index(
        op.f("ix_handover_codes_created_by"), "handover_codes", ["created_by"], unique=False
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor_role", sa.String(length=16), nullable=False),
        sa.Column("health_book_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=24), nullable=False),
        sa.Column("fields", JSON, nullable=False),
        sa.Column("ward_code", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["accounts.id"],
            name=op.f("fk_audit_log_actor_id_accounts"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_actor", "audit_log", ["actor_id", "at"], unique=False)
    op.create_index("ix_audit_log_at", "audit_log", ["at"], unique=False)
    op.create_index("ix_audit_log_book", "audit_log", ["health_book_id", "at"], unique=False)
    op.create_index("ix_audit_log_ward", "audit_log", ["ward_code", "at"], unique=False)
    op.create_index("ix_audit_log_action", "audit_log", ["action", "at"], unique=False)
    op.create_table(
        "parked_drafts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("book_id", sa.Integer(), nullable=True),
        sa.Column("subject", sa.String(length=12), nullable=False),
        sa.Column("relation", sa.String(length=16), nullable=True),
        sa.Column("consent", JSON, nullable=False),
        sa.Column("answers", JSON, nullable=False),
        sa.Column("editing", sa.String(length=32), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"],
            name=op.f("fk_parked_drafts_account_id_accounts"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["book_id"], ["health_books.id"],
            name=op.f("fk_parked_drafts_book_id_health_books"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_parked_drafts")),
    )
    op.create_index(
        op.f("ix_parked_drafts_account_id"), "parked_drafts", ["account_id"], unique=False
    )
    op.create_index(op.f("ix_parked_drafts_book_id"), "parked_drafts", ["book_id"], unique=False)
    op.create_index("ix_parked_drafts_updated_at", "parked_drafts", ["updated_at"], unique=False)


def downgrade() -> None:
    op.drop_table("parked_drafts")
    op.drop_table("audit_log")
    op.drop_table("handover_codes")
    op.drop_table("assists")
    with op.batch_alter_table("booking_drafts") as batch:
        batch.drop_index(op.f("ix_booking_drafts_health_book_id"))
        batch.drop_constraint(
            op.f("fk_booking_drafts_health_book_id_health_books"), type_="foreignkey"
        )
        batch.drop_column("health_book_id")
    with op.batch_alter_table("drafts") as batch:
        batch.drop_column("consent")
        batch.drop_column("relation")
        batch.drop_column("subject")
    # books of residents without an account cannot survive the older schema
    op.execute("DELETE FROM health_books WHERE account_id IS NULL")
    with op.batch_alter_table("health_books") as batch:
        batch.drop_constraint(op.f("fk_health_books_consent_by_accounts"), type_="foreignkey")
        batch.drop_constraint(op.f("fk_health_books_registered_by_accounts"), type_="foreignkey")
        batch.drop_index("ix_health_books_dob")
        batch.drop_index(op.f("ix_health_books_consent_by"))
        batch.drop_index(op.f("ix_health_books_registered_by"))
        batch.drop_column("consent_at")
        batch.drop_column("consent_by")
        batch.drop_column("consent_kind")
        batch.drop_column("registered_by")
        batch.alter_column("account_id", existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("suspended_at")
    op.drop_index("ix_volunteer_wards_ward", table_name="volunteer_wards")
    op.drop_table("volunteer_wards")
    op.drop_table("invites")
