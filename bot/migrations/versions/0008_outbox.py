"""outbox: reminders, waitlist offers, broadcasts and after-care check-ins as rows (the rows are
the schedule); reminder rules as data; broadcasts; reactions after a dose; unreachable chats

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 16:00:00
"""

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
OPEN = "status IN ('pending', 'claimed')"

# kind, anchor, offset, unit, delivery time, may go out in quiet hours
DEFAULT_RULES = [
    ("appointment_eve", "appointment", -1, "days", dt.time(18, 0), False),
    ("appointment_morning", "appointment", 0, "days", dt.time(6, 30), True),
    ("dose_due", "dose_due", 0, "days", dt.time(8, 0), False),
    ("dose_due_again", "dose_due", 7, "days", dt.time(8, 0), False),
    ("healthbook_unfinished", "stopped", 24, "hours", None, False),
    ("waitlist_offer", "offered", 0, "minutes", None, False),
    ("aftercare_checkin", "dose_given", 1, "days", dt.time(9, 0), False),
]


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("unreachable_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("sessions") as batch:  # healthbook sessions cancel
        batch.add_column(sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("cancel_reason", sa.String(length=200), nullable=True))

    rules = op.create_table(
        "reminder_rules",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("anchor", sa.String(length=32), nullable=False),
        sa.Column("offset", sa.Integer(), nullable=False),
        sa.Column("unit", sa.String(length=8), nullable=False),
        sa.Column("delivery_time", sa.Time(), nullable=True),
        sa.Column("quiet_ok", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("texts", JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", name=op.f("pk_reminder_rules")),
    )
    now = dt.datetime.now(dt.UTC)
    op.bulk_insert(
        rules,
        [
            {
                "kind": kind,
                "anchor": anchor,
                "offset": offset,
                "unit": unit,
                "delivery_time": at,
                "quiet_ok": quiet_ok,
                "active": True,
                "texts": {},
                "updated_at": now,
            }
            for kind, anchor, offset, unit, at, quiet_ok in DEFAULT_RULES
        ],
    )

    op.create_table(
        "broadcasts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("audience", sa.String(length=16), nullable=False),
        sa.Column("audience_params", JSON, nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("progress_channel", sa.String(length=16), nullable=True),
        sa.Column("progress_chat", sa.String(length=64), nullable=True),
        sa.Column("progress_message", sa.String(length=64), nullable=True),
        sa.Column("progress_shown", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"], ["accounts.id"],
            name=op.f("fk_broadcasts_created_by_accounts"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_broadcasts")),
    )

    op.create_table(
        "outbox",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True, nullable=False,
        ),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("health_book_id", sa.Integer(), nullable=True),
        sa.Column("booking_id", sa.Integer(), nullable=True),
        sa.Column("broadcast_id", sa.Integer(), nullable=True),
        sa.Column("ref_id", sa.Integer(), nullable=True),
        sa.Column("params", JSON, nullable=False),
        sa.Column("anchor_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("quiet_ok", sa.Boolean(), nullable=False),
        sa.Column("dedupe", sa.String(length=96), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(length=40), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"],
            name=op.f("fk_outbox_account_id_accounts"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["health_book_id"], ["health_books.id"],
            name=op.f("fk_outbox_health_book_id_health_books"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["booking_id"], ["bookings.id"],
            name=op.f("fk_outbox_booking_id_bookings"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["broadcast_id"], ["broadcasts.id"],
            name=op.f("fk_outbox_broadcast_id_broadcasts"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("dedupe", name=op.f("uq_outbox_dedupe")),
    )
    op.create_index(op.f("ix_outbox_account_id"), "outbox", ["account_id"], unique=False)
    op.create_index(
        "ix_outbox_due", "outbox", ["due_at"], unique=False,
        sqlite_where=sa.text(OPEN), postgresql_where=sa.text(OPEN),
    )
    op.create_index("ix_outbox_booking", "outbox", ["booking_id", "status"], unique=False)
    op.create_index("ix_outbox_broadcast", "outbox", ["broadcast_id", "status"], unique=False)

    op.create_table(
        "reactions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("booking_id", sa.Integer(), nullable=True),
        sa.Column("health_book_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.Column("dose", sa.Integer(), nullable=True),
        sa.Column("severity", sa.String(length=12), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["booking_id"], ["bookings.id"],
            name=op.f("fk_reactions_booking_id_bookings"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["health_book_id"], ["health_books.id"],
            name=op.f("fk_reactions_health_book_id_health_books"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"],
            name=op.f("fk_reactions_site_id_sites"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reactions")),
    )
    op.create_index(
        op.f("ix_reactions_health_book_id"), "reactions", ["health_book_id"], unique=False
    )
    op.create_index("ix_reactions_site", "reactions", ["site_id", "reported_at"], unique=False)
    # health books left unfinished are found by their draft's last change (every minute)
    op.create_index("ix_drafts_updated_at", "drafts", ["updated_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_drafts_updated_at", table_name="drafts")
    op.drop_index("ix_reactions_site", table_name="reactions")
    op.drop_index(op.f("ix_reactions_health_book_id"), table_name="reactions")
    op.drop_table("reactions")
    op.drop_index("ix_outbox_broadcast", table_name="outbox")
    op.drop_index("ix_outbox_booking", table_name="outbox")
    op.drop_index("ix_outbox_due", table_name="outbox")
    op.drop_index(op.f("ix_outbox_account_id"), table_name="outbox")
    op.drop_table("outbox")
    op.drop_table("broadcasts")
    op.drop_table("reminder_rules")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("cancel_reason")
        batch.drop_column("cancelled_at")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("unreachable_at")
