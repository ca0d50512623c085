"""reference data: record the admin-units release, move stored codes from 2025.10.1 to 2026.9.0

Databases made before this revision hold codes of ``vietnam-provinces`` 2025.10.1 (the package
the bot imported then); the bot now reads its own copy of 2026.9.0, where some communes/wards
have other codes (Phường Cam Đường: 2674 → 2671). Codes are mapped by name within the province
(``models.reference.code_mapping``); a code that cannot be mapped is left as it was and logged
(table, column, code and row count only); ``healthbook reference check`` lists it afterwards.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 09:40:00
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.reference_codes import CodeColumn, JsonCodes, remap

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD, NEW = "2025.10.1", "2026.9.0"

# Where revision 0003's schema stores codes.
COLUMNS = (
    CodeColumn("health_books", "province_code", "province"),
    CodeColumn("health_books", "ward_code", "ward"),
    CodeColumn("sites", "province_code", "province"),
    CodeColumn("sites", "ward_code", "ward"),
)
JSON = (
    JsonCodes("drafts", ("account_id",), "answers", (("province", "province"), ("ward", "ward"))),
)

log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    op.create_table(
        "reference_data",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_reference_data")),
    )
    remap(op.get_bind(), OLD, NEW, COLUMNS, JSON, logger=log)


def downgrade() -> None:
    # the codes go back to the release the older code reads
    remap(op.get_bind(), NEW, OLD, COLUMNS, JSON, logger=log)
    op.drop_table("reference_data")
