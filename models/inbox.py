"""The inbox: events a messenger gives only once (Zalo), kept from the moment they arrive until
their turn is over. Written (committed) before an event is dispatched, deleted after; what a
crash left here is dispatched again at the next start, and ``handled_updates`` makes a replay
of an event already applied change nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from models.tables import InboxEvent

_TABLE = InboxEvent.__table__


async def put(
    session: AsyncSession,
    channel: str,
    key: str,
    chat_id: str,
    payload: dict[str, Any],
    at: dt.datetime,
) -> bool:
    """Keep an event in the caller's transaction; False when it is there already (a copy of
    an event under way, or left by a crash and about to be replayed)."""
    insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    payload = _storable(payload)
    stmt = (
        insert(_TABLE)
        .values(channel=channel, update_key=key, chat_id=chat_id, payload=payload, received_at=at)
        .on_conflict_do_nothing(index_elements=["channel", "update_key"])
        .returning(_TABLE.c.channel)
    )
    return (await session.execute(stmt)).first() is not None


def _storable(value: Any) -> Any:
    """``value`` with U+0000 made U+FFFD: PostgreSQL's JSON cannot hold it, and one such
    character typed would otherwise fail the whole batch it arrived in (a text holding it is
    refused by every question anyway)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


async def pending(session: AsyncSession, channel: str, limit: int = 10_000) -> list[InboxEvent]:
    """The events of a channel left in the inbox, oldest first."""
    rows = await session.scalars(
        select(InboxEvent)
        .where(InboxEvent.channel == channel)
        .order_by(InboxEvent.received_at, InboxEvent.update_key)
        .limit(limit)
    )
    return list(rows)


async def remove(session: AsyncSession, channel: str, keys: Iterable[str]) -> None:
    """Forget events whose turn is over."""
    keys = list(keys)
    if keys:
        await session.execute(
            delete(InboxEvent).where(InboxEvent.channel == channel, InboxEvent.update_key.in_(keys))
        )


async def erase_chat(session: AsyncSession, channel: str, chat_id: str) -> None:
    """Forget a person's pending events (their account is being erased)."""
    await session.execute(
        delete(InboxEvent).where(InboxEvent.channel == channel, InboxEvent.chat_id == chat_id)
    )
