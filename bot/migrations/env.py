"""Alembic environment: runs on the connection handed over by ``bot.db`` (sync-in-async)."""

from __future__ import annotations

from alembic import context

from models.tables import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `healthbook db upgrade` (bot.db.upgrade)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
