"""agencies and weekly reports

The province's tree of agencies, their heads and staff (dated memberships), and the weekly
snapshots of the coverage reports: per agency (its own members) and per commune or ward.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26 22:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TS = sa.DateTime(timezone=True)
OPEN = "left_at IS NULL"


def upgrade() -> None:
    op.create_table(
        "agencies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("path", sa.String(length=400), nullable=False),
        sa.Column("expected_staff", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["agencies.id"],
            name=op.f("fk_agencies_parent_id_agencies"), ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agencies")),
        sa.UniqueConstraint("code", name=op.f("uq_agencies_code")),
    )
    op.create_index(op.f("ix_agencies_parent_id"), "agencies", ["parent_id"], unique=False)
    op.create_index(op.f("ix_agencies_path"), "agencies", ["path"], unique=False)
    op.create_table(
        "agency_heads",
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"],
            name=op.f("fk_agency_heads_account_id_accounts"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agencies.id"],
            name=op.f("fk_agency_heads_agency_id_agencies"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("agency_id", "account_id", name=op.f("pk_agency_heads")),
    )
    op.create_index(
        op.f("ix_agency_heads_account_id"), "agency_heads", ["account_id"], unique=False
    )
    op.create_table(
        "agency_members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("joined_at", TS, nullable=False),
        sa.Column("left_at", TS, nullable=True),
        sa.Column("left_reason", sa.String(length=12), nullable=True),
        sa.Column("removed_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"],
            name=op.f("fk_agency_members_account_id_accounts"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agencies.id"],
            name=op.f("fk_agency_members_agency_id_agencies"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["removed_by"], ["accounts.id"],
            name=op.f("fk_agency_members_removed_by_accounts"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agency_members")),
    )
    op.create_index(
        "uq_agency_members_open", "agency_members", ["account_id"], unique=True,
        sqlite_where=sa.text(OPEN), postgresql_where=sa.text(OPEN),
    )
    op.create_index(
        "ix_agency_members_agency", "agency_members", ["agency_id", "joined_at"], unique=False
    )
    op.create_index(
        "ix_agency_members_account", "agency_members", ["account_id", "joined_at"], unique=False
    )
    op.create_table(
        "report_weeks",
        sa.Column("week", sa.String(length=8), nullable=False),
        sa.Column("moment", TS, nullable=False),
        sa.Column("taken_at", TS, nullable=False),
        sa.Column("planned_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("week", name=op.f("pk_report_weeks")),
    )
    op.create_table(
        "report_agency_weeks",
        sa.Column("week", sa.String(length=8), nullable=False),
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("path", sa.String(length=400), nullable=False),
        sa.Column("expected_staff", sa.Integer(), nullable=False),
        sa.Column("joined", sa.Integer(), nullable=False),
        sa.Column("complete", sa.Integer(), nullable=False),
        sa.Column("booked", sa.Integer(), nullable=False),
        sa.Column("relatives", sa.Integer(), nullable=False),
        sa.Column("doses", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["week"], ["report_weeks.week"],
            name=op.f("fk_report_agency_weeks_week_report_weeks"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("week", "agency_id", name=op.f("pk_report_agency_weeks")),
    )
    op.create_index(
        "ix_report_agency_weeks_path", "report_agency_weeks", ["week", "path"], unique=False
    )
    op.create_table(
        "report_ward_weeks",
        sa.Column("week", sa.String(length=8), nullable=False),
        sa.Column("ward_code", sa.Integer(), nullable=False),
        sa.Column("province_code", sa.Integer(), nullable=False),
        sa.Column("registered", sa.Integer(), nullable=False),
        sa.Column("adults", sa.Integer(), nullable=False),
        sa.Column("booked", sa.Integer(), nullable=False),
        sa.Column("vaccinated", sa.Integer(), nullable=False),
        sa.Column("adults_vaccinated", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["week"], ["report_weeks.week"],
            name=op.f("fk_report_ward_weeks_week_report_weeks"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("week", "ward_code", name=op.f("pk_report_ward_weeks")),
    )


def downgrade() -> None:
    op.drop_table("report_ward_weeks")
    op.drop_index("ix_report_agency_weeks_path", table_name="report_agency_weeks")
    op.drop_table("report_agency_weeks")
    op.drop_table("report_weeks")
    op.drop_index("ix_agency_members_account", table_name="agency_members")
    op.drop_index("ix_agency_members_agency", table_name="agency_members")
    op.drop_index("uq_agency_members_open", table_name="agency_members")
    op.drop_table("agency_members")
    op.drop_index(op.f("ix_agency_heads_account_id"), table_name="agency_heads")
    op.drop_table("agency_heads")
    op.drop_index(op.f("ix_agencies_path"), table_name="agencies")
    op.drop_index(op.f("ix_agencies_parent_id"), table_name="agencies")
    op.drop_table("agencies")
