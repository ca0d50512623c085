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

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from models.tables import Account, OutboxMessage, ReminderRule
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


# --------------------------------------------------------------------------------------------
# The dispatcher's side (bot/dispatch.py): claim, then sent / later / failed
# --------------------------------------------------------------------------------------------

#: why a message was not sent (``error``): the account it would go to is marked unreachable
UNREACHABLE = "unreachable"


async def claim(
    session: AsyncSession,
    now: dt.datetime,
    worker: str,
    limit: int,
    *,
    quiet: tuple[dt.time, dt.time],
    tz: ZoneInfo,
    timeout: dt.timedelta,  # noqa: ASYNC109 (the claim timeout, a duration in the data)
) -> list[OutboxMessage]:
    """Take at most ``limit`` due messages for ``worker``, oldest due first: pending ones, and
    claimed ones whose claim is older than ``timeout`` (a crashed dispatcher's); during the
    quiet hours only those that may go then (``quiet_ok``). They are marked claimed (by whom,
    since when) in the caller's transaction, which should commit before anything is sent.

    On PostgreSQL the rows are locked ``FOR UPDATE SKIP LOCKED``: dispatchers running at the
    same time each take other messages. SQLite has one writer at a time, and one dispatcher.

    A message to a person whose messenger account is marked unreachable (they blocked the bot)
    is not to be sent: it is marked failed, ``unreachable``, here, and returned with that
    status (the caller skips it)."""
    now = to_utc(now)
    person = aliased(Account)
    target = aliased(Account)
    due = and_(
        OutboxMessage.due_at <= now,
        or_(
            OutboxMessage.status == "pending",
            and_(OutboxMessage.status == "claimed", OutboxMessage.claimed_at < now - timeout),
        ),
    )
    if in_quiet_hours(now, quiet, tz):
        due = and_(due, OutboxMessage.quiet_ok.is_(True))
    stmt = (
        select(OutboxMessage, target.unreachable_at)
        .join(person, person.id == OutboxMessage.account_id)
        # where it goes: the account the person chose or used last (models.accounts), else theirs
        .outerjoin(target, target.id == func.coalesce(person.reply_via, person.id))
        .where(due)
        .order_by(OutboxMessage.due_at, OutboxMessage.id)
        .limit(limit)
    )
    if session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True, of=OutboxMessage)
    rows = (await session.execute(stmt)).all()
    taken: list[OutboxMessage] = []
    for message, unreachable_at in rows:
        message.claimed_at = now
        message.claimed_by = worker
        if unreachable_at is not None:
            message.status = "failed"
            message.error = UNREACHABLE
        else:
            message.status = "claimed"
        taken.append(message)
    await session.flush()
    return taken


async def mark_sent(session: AsyncSession, ids: Iterable[int], now: dt.datetime) -> None:
    """These messages went out."""
    ids = list(ids)
    if ids:
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids))
            .values(status="sent", sent_at=to_utc(now), error=None)
            .execution_options(synchronize_session=False)
        )


async def retry_later(
    session: AsyncSession, message_id: int, attempts: int, due_at: dt.datetime, reason: str
) -> None:
    """This message failed for now (``attempts`` tries so far): pending again from ``due_at``."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id)
        .values(
            status="pending",
            attempts=attempts,
            due_at=to_utc(due_at),
            claimed_at=None,
            claimed_by=None,
            error=reason[:64],
        )
        .execution_options(synchronize_session=False)
    )


async def mark_failed(
    session: AsyncSession, message_id: int, reason: str, *, attempts: int | None = None
) -> None:
    """This message will not be sent: ``reason`` (blocked, refused, the last error…)."""
    values: dict[str, Any] = {"status": "failed", "error": reason[:64]}
    if attempts is not None:
        values["attempts"] = attempts
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def release(session: AsyncSession, ids: Iterable[int], worker: str) -> int:
    """Give back messages ``worker`` claimed and did not send (it is stopping): pending again,
    for whichever dispatcher comes next; how many."""
    ids = list(ids)
    if not ids:
        return 0
    result = await session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id.in_(ids),
            OutboxMessage.status == "claimed",
            OutboxMessage.claimed_by == worker,
        )
        .values(status="pending", claimed_at=None, claimed_by=None)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0  # type: ignore[attr-defined, no-any-return]


__all__ = [
    "UNREACHABLE",
    "after_quiet_hours",
    "cancel_pending",
    "claim",
    "enqueue",
    "in_quiet_hours",
    "mark_failed",
    "mark_sent",
    "planned_at",
    "release",
    "retry_later",
    "rule",
    "rules",
]
