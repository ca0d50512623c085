"""Reminders planned as outbox rows (:mod:`models.outbox`), in the transaction of what causes
them: a booking (the evening before, the morning of), a dose recorded (the next dose due, and
again N days later), a health book left unfinished, a place offered from the waitlist.

When each goes is data (:class:`~models.tables.ReminderRule`): ``offset`` ``unit``s from its
anchor, at the rule's local delivery time, moved out of the quiet hours unless the rule is
``quiet_ok``. Times are read in the province's time zone, passed in (:class:`Timing`).

A reminder whose time has already passed when it is planned is not planned at all (a booking
made at 19:00 for tomorrow gets no 18:00 "tomorrow" reminder, but its morning one), and an
appointment reminder that would go at or after the appointment's start is not planned either.

Domain only: no messenger types, and the caller owns the transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import custody, outbox
from models.tables import (
    Booking,
    Draft,
    HealthBook,
    OutboxMessage,
    ReminderRule,
    Session,
    WaitlistEntry,
)
from models.timeutil import as_aware, to_utc

APPOINTMENT = ("appointment_eve", "appointment_morning")
DOSE_DUE = ("dose_due", "dose_due_again")
UNFINISHED = "healthbook_unfinished"
WAITLIST_OFFER = "waitlist_offer"
#: an unfinished health book found this long after its reminder's time gets none
STALE_AFTER = dt.timedelta(days=1)
#: the kinds this module plans (``aftercare_checkin`` is planned by the after-care code)
KINDS = (*APPOINTMENT, *DOSE_DUE, UNFINISHED, WAITLIST_OFFER)
#: the placeholders each kind's text may use (a rule's own texts are checked against these)
PLACEHOLDERS: dict[str, frozenset[str]] = {
    "appointment_eve": frozenset({"site", "address", "day", "hours", "code", "campaign", "dose"}),
    "appointment_morning": frozenset(
        {"site", "address", "day", "hours", "code", "campaign", "dose"}
    ),
    "dose_due": frozenset({"campaign", "dose", "earliest", "latest"}),
    "dose_due_again": frozenset({"campaign", "dose", "earliest", "latest"}),
    "healthbook_unfinished": frozenset(),
    "waitlist_offer": frozenset({"site", "day", "hours", "until"}),
    "aftercare_checkin": frozenset({"dose", "vaccine", "site", "day"}),
}


@dataclass(frozen=True)
class Timing:
    """What planning needs to know of time: the province's zone, the quiet hours and now."""

    tz: ZoneInfo
    quiet: tuple[dt.time, dt.time]
    now: dt.datetime


def due_at(rule: ReminderRule, anchor: dt.datetime, timing: Timing) -> dt.datetime:
    """When a reminder of ``rule`` anchored at ``anchor`` goes (UTC): the rule's time, moved
    to the end of the quiet hours unless the rule may go in them."""
    planned = outbox.planned_at(rule, anchor, timing.tz)
    if rule.quiet_ok:
        return planned
    return outbox.after_quiet_hours(planned, timing.quiet, timing.tz)


def appointment_start(slot: Session, tz: ZoneInfo) -> dt.datetime:
    """A session's local start as a UTC timestamp."""
    return to_utc(dt.datetime.combine(slot.date, slot.start_time, tzinfo=tz))


def local_midnight(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    """The start of a local day (UTC): the anchor of reminders about a day."""
    return to_utc(dt.datetime.combine(day, dt.time(0, 0), tzinfo=tz))


def _key(kind: str, *parts: object) -> str:
    return ":".join([kind, *(str(p) for p in parts)])


def _stamp(at: dt.datetime) -> str:
    return f"{to_utc(as_aware(at)):%Y%m%d%H%M}"


async def _put_kinds(
    session: AsyncSession,
    kinds: Sequence[str],
    anchor: dt.datetime,
    timing: Timing,
    dedupe: Callable[[str], str],
    *,
    account_id: int,
    not_after: dt.datetime | None = None,
    **fields: Any,
) -> list[OutboxMessage]:
    """:func:`_put` for each of ``kinds`` that has a rule, from one anchor; the rows planned."""
    rules = await outbox.rules(session)
    planned = []
    for kind in kinds:
        rule = rules.get(kind)
        if rule is None:
            continue
        row = await _put(
            session, rule, anchor, timing, dedupe=dedupe(kind), account_id=account_id,
            not_after=not_after, **fields,
        )
        if row is not None:
            planned.append(row)
    return planned


async def _put(
    session: AsyncSession,
    rule: ReminderRule,
    anchor: dt.datetime,
    timing: Timing,
    *,
    dedupe: str,
    account_id: int,
    not_after: dt.datetime | None = None,
    **fields: Any,
) -> OutboxMessage | None:
    """Plan one reminder once per ``dedupe`` key: a row cancelled earlier with the same key is
    planned again (a booking moved back to its first time), one pending is moved to its new
    time, one already sent stays. None when it is past (or at/after ``not_after``)."""
    if not rule.active:
        return None
    due = due_at(rule, anchor, timing)
    now = to_utc(timing.now)
    if due < now or (not_after is not None and due >= to_utc(not_after)):
        return None
    found = await session.scalar(select(OutboxMessage).where(OutboxMessage.dedupe == dedupe))
    if found is not None:
        if found.status in ("pending", "cancelled"):
            found.status, found.error = "pending", None
            found.due_at, found.anchor_at = due, to_utc(as_aware(anchor))
            found.quiet_ok = rule.quiet_ok
            return found
        return None  # already sent (or on its way)
    return outbox.enqueue(
        session,
        kind=rule.kind,
        account_id=account_id,
        due_at=due,
        anchor_at=as_aware(anchor),
        quiet_ok=rule.quiet_ok,
        dedupe=dedupe,
        **fields,
    )


# ---------------------------------------------------------------- appointments


async def plan_appointment(
    session: AsyncSession, booking: Booking, slot: Session, timing: Timing
) -> list[OutboxMessage]:
    """The reminders of a booking (the evening before, the morning of), to whoever holds the
    health book's account."""
    account_id = await custody.recipient_of(session, booking.health_book_id)
    if account_id is None:
        return []
    start = appointment_start(slot, timing.tz)
    return await _put_kinds(
        session,
        APPOINTMENT,
        start,
        timing,
        lambda kind: _key(kind, booking.id, _stamp(start)),
        account_id=account_id,
        not_after=start,
        health_book_id=booking.health_book_id,
        booking_id=booking.id,
    )


async def cancel_appointment(session: AsyncSession, booking_id: int, reason: str) -> int:
    """Cancel a booking's pending appointment reminders (cancelled, moved, done, missed)."""
    return await outbox.cancel_pending(
        session, booking_id=booking_id, kinds=APPOINTMENT, reason=reason
    )


async def replan_appointment(
    session: AsyncSession, booking: Booking, slot: Session, timing: Timing | None
) -> None:
    """A booking moved to ``slot``: its pending reminders cancelled, the new ones planned."""
    await cancel_appointment(session, booking.id, "rescheduled")
    if timing is not None:
        await plan_appointment(session, booking, slot, timing)


async def cancel_expired(session: AsyncSession) -> int:
    """Cancel the pending appointment reminders of missed (expired) bookings."""
    result = await session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.status == "pending",
            OutboxMessage.kind.in_(APPOINTMENT),
            OutboxMessage.booking_id.in_(select(Booking.id).where(Booking.status == "expired")),
        )
        .values(status="cancelled", error="missed")
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# ---------------------------------------------------------------- the next dose


async def plan_dose_due(
    session: AsyncSession,
    book: HealthBook,
    campaign_id: int,
    dose: int,
    earliest: dt.date,
    timing: Timing,
    *,
    latest: dt.date | None = None,
) -> list[OutboxMessage]:
    """"Dose N is due" on the first day it may be given, and again N days later (its renderer
    drops it when the dose was booked or given meanwhile)."""
    recipient = await custody.recipient_id(session, book)
    if recipient is None:
        return []
    return await _put_kinds(
        session,
        DOSE_DUE,
        local_midnight(earliest, timing.tz),
        timing,
        lambda kind: _key(kind, book.id, campaign_id, dose),
        account_id=recipient,
        health_book_id=book.id,
        ref_id=campaign_id,
        params={
            "campaign_id": campaign_id,
            "dose": dose,
            "earliest": earliest.isoformat(),
            "latest": latest.isoformat() if latest else None,
        },
    )


# ---------------------------------------------------------------- waitlist offers


async def offer_times(
    session: AsyncSession, timing: Timing, hold_minutes: int
) -> tuple[dt.datetime, dt.datetime]:
    """When a waitlist offer made now reaches the person (its rule, out of the quiet hours),
    and when its hold ends: the hold starts when the message can be read, so an offer made at
    22:00 is held from 07:00, not lost overnight."""
    rule = await outbox.rule(session, WAITLIST_OFFER)
    now = to_utc(timing.now)
    due = due_at(rule, now, timing) if rule is not None else now
    due = max(due, now)
    return due, due + dt.timedelta(minutes=hold_minutes)


async def plan_offer(
    session: AsyncSession, entry: WaitlistEntry, due: dt.datetime, timing: Timing
) -> OutboxMessage | None:
    """The message offering a held place (its renderer drops it once the offer is over)."""
    rule = await outbox.rule(session, WAITLIST_OFFER)
    account_id = await custody.recipient_of(session, entry.health_book_id)
    if rule is None or not rule.active or account_id is None:
        return None
    offered = entry.offered_at or timing.now
    return outbox.enqueue(
        session,
        kind=WAITLIST_OFFER,
        account_id=account_id,
        due_at=due,
        anchor_at=as_aware(offered),
        quiet_ok=rule.quiet_ok,
        health_book_id=entry.health_book_id,
        ref_id=entry.id,
        dedupe=_key(WAITLIST_OFFER, entry.id, f"{to_utc(as_aware(offered)):%Y%m%d%H%M%S}"),
    )


# ---------------------------------------------------------------- unfinished health books


async def plan_unfinished(session: AsyncSession, timing: Timing, *, limit: int = 500) -> int:
    """Once per account: remind those who stopped filling in their health book (a draft with
    no saved book, untouched for the rule's time). Run every minute; a reminder planned for
    someone who came back since is withdrawn (planned again when they stop again, at most once
    sent). Returns how many were planned."""
    rule = await outbox.rule(session, UNFINISHED)
    if rule is None or not rule.active:
        return 0
    # came back to it since it was planned: withdrawn (the draft moved on)
    await session.execute(
        delete(OutboxMessage)
        .where(
            OutboxMessage.kind == UNFINISHED,
            OutboxMessage.status == "pending",
            exists().where(
                Draft.account_id == OutboxMessage.account_id,
                Draft.updated_at > OutboxMessage.anchor_at,
            ),
        )
        .execution_options(synchronize_session=False)
    )
    now = to_utc(timing.now)
    span = dt.timedelta(**{outbox.UNITS[rule.unit]: rule.offset})
    cutoff = now - max(span, dt.timedelta(0))
    planned_before = exists().where(
        OutboxMessage.account_id == Draft.account_id, OutboxMessage.kind == UNFINISHED
    )
    has_book = exists().where(HealthBook.account_id == Draft.account_id)
    rows = (
        await session.execute(
            select(Draft.account_id, Draft.updated_at)
            .where(
                Draft.updated_at <= cutoff,
                Draft.book_id.is_(None),
                ~has_book,
                ~planned_before,
            )
            .order_by(Draft.updated_at)
            .limit(limit)
        )
    ).all()
    count = 0
    for account_id, updated_at in rows:
        anchor = as_aware(updated_at)
        due = due_at(rule, anchor, timing)
        stale = due < now - STALE_AFTER  # left long before (the bot was down, an old draft)
        if due < now:
            due = now if rule.quiet_ok else outbox.after_quiet_hours(now, timing.quiet, timing.tz)
        row = outbox.enqueue(
            session,
            kind=UNFINISHED,
            account_id=account_id,
            due_at=due,
            anchor_at=anchor,
            quiet_ok=rule.quiet_ok,
            dedupe=_key(UNFINISHED, account_id),
        )
        if stale:  # kept as the mark that this person's one reminder is used up
            row.status, row.error = "cancelled", "too late"
        else:
            count += 1
    if count:
        await session.flush()
    return count


# ---------------------------------------------------------------- rules changed


async def replan_kind(session: AsyncSession, kind: str, timing: Timing) -> tuple[int, int]:
    """A rule changed: its kind's pending reminders planned again from their anchors (those
    whose new time has passed, or an appointment's that would come after its start, are
    cancelled); an inactive rule cancels them all. Returns (re-planned, cancelled)."""
    rule = await outbox.rule(session, kind)
    if rule is None:
        return 0, 0
    if not rule.active:
        cancelled = await outbox.cancel_pending(session, kinds=[kind], reason="rule off")
        return 0, cancelled
    if kind == WAITLIST_OFFER:
        return 0, 0  # an offer's hold was set from its time: it stays as planned
    now = to_utc(timing.now)
    moved = cancelled = 0
    last_id = 0
    while True:  # in batches: memory stays flat however many are pending
        batch = list(
            await session.scalars(
                select(OutboxMessage)
                .where(
                    OutboxMessage.kind == kind,
                    OutboxMessage.status == "pending",
                    OutboxMessage.anchor_at.is_not(None),
                    OutboxMessage.id > last_id,
                )
                .order_by(OutboxMessage.id)
                .limit(500)
            )
        )
        if not batch:
            break
        for row in batch:
            assert row.anchor_at is not None
            due = due_at(rule, row.anchor_at, timing)
            late = kind in APPOINTMENT and due >= to_utc(as_aware(row.anchor_at))
            if due < now or late:
                row.status, row.error = "cancelled", "rule changed"
                cancelled += 1
            else:
                row.due_at, row.quiet_ok = due, rule.quiet_ok
                moved += 1
        last_id = batch[-1].id
        await session.flush()
    return moved, cancelled


async def pending_counts(session: AsyncSession) -> dict[str, int]:
    """How many reminders of each kind wait to be sent."""
    from sqlalchemy import func

    rows = await session.execute(
        select(OutboxMessage.kind, func.count())
        .where(OutboxMessage.status == "pending")
        .group_by(OutboxMessage.kind)
    )
    return {kind: int(n) for kind, n in rows}


async def pending_for(session: AsyncSession, account_ids: Iterable[int]) -> list[OutboxMessage]:
    """The reminders and notices still to be sent to these accounts, soonest first."""
    ids = list(account_ids)
    if not ids:
        return []
    return list(
        await session.scalars(
            select(OutboxMessage)
            .where(
                and_(OutboxMessage.account_id.in_(ids), OutboxMessage.status == "pending")
            )
            .order_by(OutboxMessage.due_at, OutboxMessage.id)
        )
    )


__all__ = [
    "APPOINTMENT",
    "DOSE_DUE",
    "KINDS",
    "PLACEHOLDERS",
    "UNFINISHED",
    "WAITLIST_OFFER",
    "Timing",
    "appointment_start",
    "cancel_appointment",
    "cancel_expired",
    "due_at",
    "offer_times",
    "pending_counts",
    "pending_for",
    "plan_appointment",
    "plan_dose_due",
    "plan_offer",
    "plan_unfinished",
    "replan_appointment",
    "replan_kind",
    "set_rule",
]


# ---------------------------------------------------------------- editing a rule


_OFFSET_LIMIT = {"minutes": 60 * 24 * 366, "hours": 24 * 366, "days": 366}


def check_text(kind: str, lang: str, text: str, languages: Iterable[str]) -> str:
    """A rule's own text for a language, checked: a supported language, and only the kind's
    placeholders, each plain ``{name}`` (raises ValueError saying what is wrong)."""
    import string

    if lang not in set(languages):
        raise ValueError(f"unknown language {lang!r} (use one of {', '.join(sorted(languages))})")
    allowed = PLACEHOLDERS.get(kind, frozenset())
    try:
        fields = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"{lang} text: {exc} (write a brace as {{{{ or }}}})") from None
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        if name not in allowed or spec or conversion:
            known = ", ".join("{" + p + "}" for p in sorted(allowed)) or "none"
            raise ValueError(
                f"{lang} text: unknown placeholder {{{name}}} (this kind has: {known})"
            )
    if not text.strip():
        raise ValueError(f"{lang} text is empty")
    return text


async def set_rule(
    session: AsyncSession,
    kind: str,
    *,
    offset: int | None = None,
    unit: str | None = None,
    delivery_time: dt.time | bool | None = False,
    quiet_ok: bool | None = None,
    active: bool | None = None,
    texts: dict[str, str | None] | None = None,
) -> ReminderRule:
    """Change a rule (``delivery_time`` False: unchanged, None: no delivery time; a text None:
    back to the catalogue's). Raises ValueError naming what is refused."""
    rule = await outbox.rule(session, kind)
    if rule is None:
        kinds = ", ".join(sorted((await outbox.rules(session)).keys()))
        raise ValueError(f"unknown kind {kind!r} (kinds: {kinds})")
    new_unit = unit if unit is not None else rule.unit
    if new_unit not in outbox.UNITS:
        raise ValueError(f"unit must be one of {', '.join(outbox.UNITS)}")
    new_offset = offset if offset is not None else rule.offset
    if abs(new_offset) > _OFFSET_LIMIT[new_unit]:
        raise ValueError(f"offset must be within ±{_OFFSET_LIMIT[new_unit]} {new_unit}")
    if new_offset < 0 and rule.anchor != "appointment":
        raise ValueError(f"a negative offset only makes sense before an appointment ({kind} "
                         f"is counted from {rule.anchor})")
    if kind == WAITLIST_OFFER:
        # the held place waits for the person: the offer must reach them
        if active is False:
            raise ValueError("waitlist_offer cannot be turned off: it is how a held place "
                             "reaches the person")
        if delivery_time not in (False, None):
            raise ValueError("waitlist_offer goes when the place is free: no delivery time")
    rule.unit, rule.offset = new_unit, new_offset
    if delivery_time is not False:
        rule.delivery_time = delivery_time  # type: ignore[assignment]
    if quiet_ok is not None:
        rule.quiet_ok = quiet_ok
    if active is not None:
        rule.active = active
    if texts:
        merged = dict(rule.texts or {})
        for lang, text in texts.items():
            if text is None:
                merged.pop(lang, None)
            else:
                merged[lang] = text
        rule.texts = merged  # a new dict: the JSON column sees the change
    rule.updated_at = dt.datetime.now(dt.UTC)
    await session.flush()
    return rule
