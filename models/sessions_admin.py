"""Cancelling a vaccination session (``healthbook sessions cancel``): the session takes no more
bookings, every active booking of it is cancelled and its place given back, the waitlist
entries for it are released, the bookings' pending reminders are cancelled, and each booked
person is told through the outbox (kind ``session_cancelled``) — all in the caller's one
transaction."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy import case, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import outbox
from models.errors import DomainError
from models.lookups import get_site
from models.tables import BOOKING_ACTIVE, Booking, Campaign, HealthBook, Session, WaitlistEntry
from models.timeutil import to_utc

KIND = "session_cancelled"
MAX_REASON = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Cancelled:
    """What cancelling a session did."""

    session: Session
    bookings: int  # bookings cancelled (their places given back)
    notified: int  # people told (one message per booking)
    waitlist: int  # waitlist entries released (held places given back)


def clean_reason(reason: str | None) -> str | None:
    """A reason as the admin typed it: one line, at most :data:`MAX_REASON` characters."""
    if reason is None or not reason.strip():
        return None
    reason = " ".join(reason.split())
    if len(reason) > MAX_REASON or _CONTROL.search(reason):
        raise DomainError("session.reason_invalid", limit=MAX_REASON)
    return reason


async def find_session(
    session: AsyncSession,
    *,
    session_id: int | None = None,
    site: str | None = None,
    date: dt.date | None = None,
    start: dt.time | None = None,
    campaign: str | None = None,
) -> Session:
    """A session by id, or by site code, date and start time, and campaign code when several
    campaigns have a session then (``session.not_found``, ``session.ambiguous``)."""
    if session_id is not None:
        found = await session.get(Session, session_id)
        if found is None:
            raise DomainError("session.not_found", session=str(session_id))
        return found
    assert site is not None and date is not None and start is not None
    place = await get_site(session, site)
    stmt = (
        select(Session, Campaign.code)
        .join(Campaign, Campaign.id == Session.campaign_id)
        .where(Session.site_id == place.id, Session.date == date, Session.start_time == start)
        .order_by(Campaign.code)
    )
    if campaign is not None:
        stmt = stmt.where(Campaign.code == campaign)
    rows = (await session.execute(stmt)).all()
    if not rows:
        what = f"{site} {date} {start:%H:%M}" + (f" {campaign}" if campaign else "")
        raise DomainError("session.not_found", session=what)
    if len(rows) > 1:
        raise DomainError("session.ambiguous", campaigns=", ".join(code for _, code in rows))
    return rows[0][0]


async def cancel_session(
    session: AsyncSession,
    slot: Session,
    *,
    now: dt.datetime,
    today: dt.date,
    reason: str | None = None,
) -> Cancelled:
    """Cancel ``slot`` (refused when it is already cancelled or its day has passed). The
    session row is marked first, conditionally, so a booking racing with this cannot take a
    place in it afterwards (:func:`models.places.claim_place` checks the mark)."""
    reason = clean_reason(reason)
    if slot.date < today:
        raise DomainError("session.past", date=slot.date)
    when = to_utc(now)
    marked = await session.execute(
        update(Session)
        .where(Session.id == slot.id, Session.cancelled_at.is_(None))
        .values(cancelled_at=when, cancel_reason=reason)
        .execution_options(synchronize_session=False)
    )
    if marked.rowcount != 1:  # type: ignore[attr-defined]
        raise DomainError("session.already_cancelled", date=slot.date)
    cancelled = (
        await session.execute(
            update(Booking)
            .where(Booking.session_id == slot.id, Booking.status.in_(BOOKING_ACTIVE))
            .values(status="cancelled", cancelled_at=when)
            .returning(Booking.id, Booking.health_book_id)
            .execution_options(synchronize_session=False)
        )
    ).all()
    held = (
        await session.execute(
            update(WaitlistEntry)
            .where(
                WaitlistEntry.status == "offered", WaitlistEntry.held_session_id == slot.id
            )
            .values(status="cancelled")
            .returning(WaitlistEntry.id)
            .execution_options(synchronize_session=False)
        )
    ).all()
    waiting = (
        await session.execute(
            update(WaitlistEntry)
            .where(WaitlistEntry.status == "waiting", WaitlistEntry.session_id == slot.id)
            .values(status="cancelled")
            .returning(WaitlistEntry.id)
            .execution_options(synchronize_session=False)
        )
    ).all()
    freed = len(cancelled) + len(held)
    if freed:  # the places of the bookings and of the held offers, given back in one UPDATE
        await session.execute(
            update(Session)
            .where(Session.id == slot.id)
            .values(booked=case((Session.booked >= freed, Session.booked - freed), else_=0))
            .execution_options(synchronize_session=False)
        )
    holders = dict(
        (
            await session.execute(
                select(HealthBook.id, HealthBook.account_id).where(
                    HealthBook.id.in_({book_id for _, book_id in cancelled})
                )
            )
        ).all()
    ) if cancelled else {}
    # the same-day or next-morning session: the news must not wait for the end of quiet hours
    urgent = slot.date <= today + dt.timedelta(days=1)
    notified = 0
    for booking_id, book_id in cancelled:
        await outbox.cancel_pending(session, booking_id=booking_id, reason="session cancelled")
        account_id = holders.get(book_id)
        if account_id is None:
            continue
        outbox.enqueue(
            session,
            kind=KIND,
            account_id=account_id,
            health_book_id=book_id,
            booking_id=booking_id,
            ref_id=slot.id,
            params={"reason": reason} if reason else {},
            due_at=when,
            quiet_ok=urgent,
            dedupe=f"{KIND}:{booking_id}",
        )
        notified += 1
    await session.flush()
    await session.refresh(slot)
    return Cancelled(slot, len(cancelled), notified, len(held) + len(waiting))


__all__ = ["KIND", "MAX_REASON", "Cancelled", "cancel_session", "clean_reason", "find_session"]
