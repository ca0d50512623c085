"""The outbox: every message the bot sends on its own (a reminder, a waitlist offer, a copy of
a broadcast, an after-care check-in) is a row, planned in the transaction of what caused it,
and sent by the dispatcher (:mod:`bot.dispatch`). Reminder rules are data (:class:`ReminderRule`).

Times: rules are read in the province's time zone (settings ``bot.timezone``, passed in as
``tz``); rows store UTC."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models.tables import OutboxMessage, ReminderRule
from models.timeutil import as_aware, to_utc

UNITS = {"minutes": "minutes", "hours": "hours", "days": "days"}
OPEN = ("pending", "claimed")


def planned_at(rule: ReminderRule, anchor: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    """When a reminder of ``rule`` anchored at ``anchor`` goes: ``offset`` units from it, at
    the rule's local delivery time of that day when it has one (UTC)."""
    at = as_aware(anchor).astimezone(tz) + dt.timedelta(**{UNITS[rule.unit]: rule.offset})
    if rule.delivery_time is not None:
        at = dt.datetime.combine(at.date(), rule.delivery_time, tzinfo=tz)
    return to_utc(at)


def in_quiet_hours(at: dt.datetime, quiet: tuple[dt.time, dt.time], tz: ZoneInfo) -> bool:
    """Whether local time at ``at`` falls in the quiet hours ``(start, end)`` (which may run
    past midnight: 21:00–07:00)."""
    start, end = quiet
    if start == end:
        return False
    clock = as_aware(at).astimezone(tz).time()
    if start < end:
        return start <= clock < end
    return clock >= start or clock < end


def after_quiet_hours(at: dt.datetime, quiet: tuple[dt.time, dt.time], tz: ZoneInfo) -> dt.datetime:
    """``at``, or the end of the quiet hours it falls in (UTC)."""
    if not in_quiet_hours(at, quiet, tz):
        return to_utc(at)
    local = as_aware(at).astimezone(tz)
    end = dt.datetime.combine(local.date(), quiet[1], tzinfo=tz)
    if end <= local:
        end = dt.datetime.combine(local.date() + dt.timedelta(days=1), quiet[1], tzinfo=tz)
    return to_utc(end)


async def rules(session: AsyncSession) -> dict[str, ReminderRule]:
    """Every reminder rule, by kind."""
    return {r.kind: r for r in await session.scalars(select(ReminderRule))}


async def rule(session: AsyncSession, kind: str) -> ReminderRule | None:
    """The rule of one kind (None: no such kind)."""
    return await session.get(ReminderRule, kind)


def enqueue(
    session: AsyncSession,
    *,
    kind: str,
    account_id: int,
    due_at: dt.datetime,
    health_book_id: int | None = None,
    booking_id: int | None = None,
    broadcast_id: int | None = None,
    ref_id: int | None = None,
    params: dict[str, Any] | None = None,
    anchor_at: dt.datetime | None = None,
    quiet_ok: bool = False,
    dedupe: str | None = None,
) -> OutboxMessage:
    """Add a message to send at ``due_at`` (in the caller's transaction)."""
    message = OutboxMessage(
        kind=kind,
        account_id=account_id,
        due_at=to_utc(due_at),
        health_book_id=health_book_id,
        booking_id=booking_id,
        broadcast_id=broadcast_id,
        ref_id=ref_id,
        params=params or {},
        anchor_at=to_utc(anchor_at) if anchor_at is not None else None,
        quiet_ok=quiet_ok,
        dedupe=dedupe,
        status="pending",
        attempts=0,
    )
    session.add(message)
    return message


async def cancel_pending(
    session: AsyncSession,
    *,
    booking_id: int | None = None,
    account_id: int | None = None,
    health_book_id: int | None = None,
    kinds: Iterable[str] | None = None,
    reason: str = "cancelled",
) -> int:
    """Cancel the messages not yet sent (pending; a claimed one is already on its way) of a
    booking, an account or a health book, of some kinds or all; how many."""
    stmt = update(OutboxMessage).where(OutboxMessage.status == "pending")
    if booking_id is not None:
        stmt = stmt.where(OutboxMessage.booking_id == booking_id)
    if account_id is not None:
        stmt = stmt.where(OutboxMessage.account_id == account_id)
    if health_book_id is not None:
        stmt = stmt.where(OutboxMessage.health_book_id == health_book_id)
    if kinds is not None:
        stmt = stmt.where(OutboxMessage.kind.in_(list(kinds)))
    result = await session.execute(
        stmt.values(status="cancelled", error=reason).execution_options(synchronize_session=False)
    )
    return result.rowcount or 0  # type: ignore[attr-defined, no-any-return]


__all__ = [
    "after_quiet_hours",
    "cancel_pending",
    "enqueue",
    "in_quiet_hours",
    "planned_at",
    "rule",
    "rules",
]
