"""Updates applied once, however often they are delivered.

Telegram gives again every update the bot had not confirmed when it stopped (``kill -9``, a
crash, a lost connection), including some whose answer was already committed. Each turn records
its update in ``handled_updates`` in the same transaction as its answer; a copy finds the row
there and is skipped.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from models.tables import HandledUpdate

KEEP = dt.timedelta(hours=48)  # Telegram keeps an undelivered update for 24 hours

_TABLE = HandledUpdate.__table__


class RecordedHere:
    """The updates this process recorded, with the update object that did (a bounded LRU): a
    second handler running for the *same* update (another handler group) finds the record of
    the first and must not take it for a copy; a copy (another object with the same key, given
    again by the messenger or by a restart) is one. The objects are held, so their identity
    stays unique while they are remembered; a few hundred are under way at most."""

    def __init__(self, size: int = 1_000) -> None:
        self.size = size
        self._keys: OrderedDict[tuple[str, str], object] = OrderedDict()

    def add(self, channel: str, key: str, update: object) -> None:
        """Remember a record made by this process for ``update``."""
        self._keys[(channel, key)] = update
        if len(self._keys) > self.size:
            self._keys.popitem(last=False)

    def same_delivery(self, channel: str, key: str, update: object) -> bool:
        """Whether ``update`` is the very delivery this process recorded under ``key``."""
        return self._keys.get((channel, key)) is update


async def first_delivery(session: AsyncSession, channel: str, key: str, at: dt.datetime) -> bool:
    """Record the update ``key`` of ``channel`` as applied in the caller's transaction; False
    when it was already (this is a copy). One statement."""
    insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    stmt = (
        insert(_TABLE)
        .values(channel=channel, update_key=key, handled_at=at)
        .on_conflict_do_nothing(index_elements=["channel", "update_key"])
        .returning(_TABLE.c.channel)
    )
    return (await session.execute(stmt)).first() is not None


async def forget_handled(session: AsyncSession, now: dt.datetime) -> int:
    """Delete the records older than :data:`KEEP` (no copy can come any more); how many."""
    stale = delete(HandledUpdate).where(HandledUpdate.handled_at < now - KEEP)
    result = await session.execute(stale)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
