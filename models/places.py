"""Seat accounting shared by booking and the waitlist: taking, freeing and mirroring places,
and opening SQLite's transaction before a SAVEPOINT.

Places are counted on the session row (``sessions.booked``) and changed only by one conditional
UPDATE (``booked = booked + 1 WHERE booked < capacity``), never by reading a count and writing
it back: the database serialises concurrent writers on the row, so no number of processes can
overbook. Places held for a waitlist offer are counted the same way.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from models.tables import Session


def set_loaded(obj: Any, **values: Any) -> None:
    """Mirror a Core UPDATE on an object already loaded, without marking it dirty."""
    for name, value in values.items():
        set_committed_value(obj, name, value)


async def open_transaction(session: AsyncSession) -> None:
    """Make sure SQLite's transaction has really begun before a SAVEPOINT.

    pysqlite sends BEGIN lazily, at the first INSERT/UPDATE/DELETE; a SAVEPOINT sent earlier
    would itself open the transaction and its RELEASE would commit the caller's work. No-op on
    PostgreSQL, and on SQLite once a BEGIN was sent.
    """
    conn = await session.connection()
    if conn.dialect.name != "sqlite":
        return
    raw = await conn.get_raw_connection()
    if not raw.driver_connection.in_transaction:  # type: ignore[union-attr]
        await conn.exec_driver_sql("BEGIN")


def mirror_booked(session: AsyncSession, session_id: int, booked: int) -> None:
    """Keep a loaded Session row's ``booked`` equal to what the database now holds."""
    key = session.sync_session.identity_key(Session, session_id)
    obj = session.identity_map.get(key)
    if obj is not None:
        set_loaded(obj, booked=booked)


async def claim_place(session: AsyncSession, session_id: int) -> int | None:
    """Take one place with one atomic conditional UPDATE; returns the new ``booked``, or None
    if no place was free at that instant.

    The returned row stands for ``rowcount == 1``: the WHERE is evaluated by the database on the
    row it has locked, so two writers can never both see the last place free (nor take one in a
    session cancelled meanwhile). Callers inside a SAVEPOINT mirror the value on loaded objects
    only once it is released.
    """
    result = await session.execute(
        update(Session)
        .where(
            Session.id == session_id,
            Session.booked < Session.capacity,
            Session.cancelled_at.is_(None),  # a cancelled session has no place to take
        )
        .values(booked=Session.booked + 1)
        .returning(Session.booked)
        .execution_options(synchronize_session=False)
    )
    return result.scalar_one_or_none()


async def free_place(session: AsyncSession, session_id: int) -> int | None:
    """Give one place back (never below zero); returns the new ``booked``."""
    result = await session.execute(
        update(Session)
        .where(Session.id == session_id, Session.booked > 0)
        .values(booked=Session.booked - 1)
        .returning(Session.booked)
        .execution_options(synchronize_session=False)
    )
    return result.scalar_one_or_none()


async def free_and_mirror(session: AsyncSession, session_id: int) -> None:
    """Give one place back outside any savepoint, and mirror it on a loaded Session row."""
    booked = await free_place(session, session_id)
    if booked is not None:
        mirror_booked(session, session_id, booked)
