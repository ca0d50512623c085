"""Database engine, session factory and migrations (Alembic), built from settings."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def create_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> AsyncEngine:
    """An async engine; SQLite gets WAL, foreign keys and a busy timeout on every connection.

    SQL parameters are personal data (names, birth dates, health answers): the engine never puts
    them in a log line or an exception message. ``echo`` logs statements at INFO through the
    application's logging (and its masking filter), not through SQLAlchemy's own stdout handler.
    """
    if echo:
        logging.getLogger("sqlalchemy.engine.Engine").setLevel(logging.INFO)
    kwargs: dict[str, Any] = {"hide_parameters": True}
    if url.startswith("sqlite"):
        # SQLite has one writer at a time: one connection makes transactions queue in order
        # on the pool instead of sleeping in SQLite's busy handler (seconds of tail latency).
        # Sessions always end in commit or rollback, so the pool's own reset is a wasted trip.
        kwargs.update(connect_args={"timeout": 30}, pool_size=1, max_overflow=0, pool_timeout=60,
                      pool_reset_on_return=None)
    else:
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One session in one transaction: committed on success, rolled back on error."""
    async with factory() as session, session.begin():
        yield session


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic configuration pointing at the packaged migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (SQLite in batch mode, PostgreSQL directly)."""

    def _run(connection: Connection) -> None:
        command.upgrade(alembic_config(connection), revision)

    await _migrate(engine, _run)


async def downgrade(engine: AsyncEngine, revision: str = "base") -> None:
    """Undo migrations down to ``revision``."""

    def _run(connection: Connection) -> None:
        command.downgrade(alembic_config(connection), revision)

    await _migrate(engine, _run)


async def _migrate(engine: AsyncEngine, run: Callable[[Connection], None]) -> None:
    """Run migrations in one transaction. On SQLite, with foreign keys off: a batch migration
    rebuilds a table (a copy, then DROP TABLE), and with them on, dropping ``accounts`` would
    first delete every consent, health book and booking that refers to it (ON DELETE CASCADE).
    The pragma cannot change inside a transaction: it is set before, the references are checked
    after, and it is on again before the connection goes back to the pool."""
    async with engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            async with conn.begin():
                await conn.run_sync(run)
            return
        await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        await conn.commit()
        try:
            async with conn.begin():
                await conn.run_sync(run)
                broken = (await conn.exec_driver_sql("PRAGMA foreign_key_check")).first()
                if broken is not None:
                    raise RuntimeError(f"migration left a dangling reference in {broken[0]}")
        finally:
            await conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            await conn.commit()


def upgrade_url(url: str, *, upgrade_schema: bool = True, check: bool = False) -> None:
    """Synchronous entry for the CLI: upgrade the database at ``url`` (``upgrade_schema``), and
    with ``check`` refuse one whose stored commune/ward codes follow another reference release
    (:class:`models.reference_codes.ReferenceMismatch`)."""
    from models.reference_codes import require_current

    async def _main() -> None:
        engine = create_engine(url)
        try:
            if upgrade_schema:
                await upgrade(engine)
            if check:
                async with engine.connect() as conn:
                    await conn.run_sync(require_current)
        except BaseException:
            await engine.dispose()
            await settle_connection_threads()
            raise
        await engine.dispose()

    asyncio.run(_main())


async def settle_connection_threads() -> None:
    """Wait (a second at most) for the worker threads of SQLite connections to end.

    An aiosqlite connection that fails to open (a directory that does not exist, say) raises at
    once, but its thread reports back to the event loop a moment later: when a command's loop has
    closed by then, the thread prints its own traceback. Call this before the loop ends after a
    failure; other drivers start no such threads, so it returns at once.
    """
    for _ in range(100):
        if not any(
            t.is_alive() and t.name.endswith("(_connection_worker_thread)")
            for t in threading.enumerate()
        ):
            return
        await asyncio.sleep(0.01)
