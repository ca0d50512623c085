"""channels: conversation states per channel with text ids (Zalo ids are strings), the choices
each chat was last offered (typed numbers and labels), linked accounts and /link codes

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # conversation states keyed (channel, name, chat, user) with text ids; every existing row
    # is a Telegram conversation
    op.create_table(
        "conversation_states_new",
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("chat_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("channel", "name", "chat_id", "user_id", name="pk_cs_new"),
    )
    op.execute(
        "INSERT INTO conversation_states_new (channel, name, chat_id, user_id, state, updated_at) "
        "SELECT 'telegram', name, CAST(chat_id AS VARCHAR(64)), CAST(user_id AS VARCHAR(64)), "
        "state, updated_at FROM conversation_states"
    )
    op.drop_table("conversation_states")
    op.rename_table("conversation_states_new", "conversation_states")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE conversation_states RENAME CONSTRAINT pk_cs_new TO pk_conversation_states"
        )
    else:  # SQLite cannot rename a constraint: rebuild the table with the right name
        with op.batch_alter_table("conversation_states", recreate="always") as batch:
            batch.drop_constraint("pk_cs_new", type_="primary")
            batch.create_primary_key(
                "pk_conversation_states", ["channel", "name", "chat_id", "user_id"]
            )

    op.create_table(
        "chat_offers",
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("chat_id", sa.String(length=64), nullable=False),
        sa.Column(
            "choices",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("channel", "chat_id", name=op.f("pk_chat_offers")),
    )

    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("linked_to", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("reply_via", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("link_failures", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("link_failed_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_foreign_key(
            op.f("fk_accounts_linked_to_accounts"),
            "accounts",
            ["linked_to"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.create_foreign_key(
            op.f("fk_accounts_reply_via_accounts"),
            "accounts",
            ["reply_via"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index(op.f("ix_accounts_linked_to"), ["linked_to"])

    op.create_table(
        "link_codes",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_link_codes_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_link_codes")),
    )
    op.create_index(op.f("ix_link_codes_account_id"), "link_codes", ["account_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_link_codes_account_id"), table_name="link_codes")
    op.drop_table("link_codes")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_index(op.f("ix_accounts_linked_to"))
        batch.drop_constraint(op.f("fk_accounts_reply_via_accounts"), type_="foreignkey")
        batch.drop_constraint(op.f("fk_accounts_linked_to_accounts"), type_="foreignkey")
        batch.drop_column("link_failed_at")
        batch.drop_column("link_failures")
        batch.drop_column("reply_via")
        batch.drop_column("linked_to")
    op.drop_table("chat_offers")
    op.execute("DELETE FROM conversation_states WHERE channel <> 'telegram'")
    with op.batch_alter_table("conversation_states", recreate="always") as batch:
        batch.drop_constraint("pk_conversation_states", type_="primary")
        batch.drop_column("channel")
        batch.alter_column("chat_id", type_=sa.BigInteger(), postgresql_using="chat_id::bigint")
        batch.alter_column("user_id", type_=sa.BigInteger(), postgresql_using="user_id::bigint")
        batch.create_primary_key("pk_conversation_states", ["name", "chat_id", "user_id"])
