"""The waitlist: joining it, offering a freed place and holding it, accepting or leaving,
and expiring offers not taken up."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from models import reminders as rm
from models.booking import (
    BookingPlan,
    check_booking,
    check_target,
    has_active_booking,
    insert_booking,
)
from models.eligibility import check_eligibility, eligible_doses
from models.errors import DomainError
from models.lookups import book_or_error, get_campaign, get_site, may_act_for
from models.places import claim_place, free_and_mirror, mirror_booked, open_transaction, set_loaded
from models.tables import (
    BOOKING_ACTIVE,
    Account,
    Booking,
    Campaign,
    HealthBook,
    Session,
    WaitlistEntry,
)
from models.timeutil import as_aware, local_date, to_utc

DEFAULT_HOLD_MINUTES = 60


async def join_waitlist(
    session: AsyncSession,
    book_id: int,
    campaign: Campaign | str | int,
    *,
    today: dt.date,
    session_id: int | None = None,
    site_id: int | None = None,
    date: dt.date | None = None,
    dose: int | None = None,
) -> WaitlistEntry:
    """Wait for a place in a full session, or in any session of a site on ``date`` — or on any
    day once the dose is due, when no date is given."""
    book_ = await book_or_error(session, book_id)
    campaign = await get_campaign(session, campaign)
    not_before = None
    if session_id is not None:
        plan = await check_booking(session, book_id, session_id, campaign, dose, today)
        if plan.slot.booked < plan.slot.capacity:
            raise DomainError("waitlist.places_free", remaining=plan.slot.remaining)
        dose = plan.dose
    elif site_id is not None:
        site = await get_site(session, site_id)
        if date is None:
            window = await eligible_doses(session, book_, campaign, today)
            if window is None:
                raise DomainError("booking.schedule_complete", campaign=campaign.name)
            not_before = window.earliest  # offers wait until the dose is due
        on = date if date is not None else not_before
        assert on is not None
        dose, _ = await check_target(session, book_, campaign, site, on, dose, today)
    else:
        raise ValueError("give a session or a site")
    if await has_active_booking(session, book_id, campaign.id, dose):
        raise DomainError("waitlist.already_booked", dose=dose)
    entry = WaitlistEntry(
        health_book_id=book_id,
        campaign_id=campaign.id,
        dose=dose,
        session_id=session_id,
        site_id=None if session_id is not None else site_id,
        date=None if session_id is not None else date,
        not_before=not_before,
        status="waiting",
    )
    await open_transaction(session)
    try:
        async with session.begin_nested():
            session.add(entry)
            await session.flush()
    except IntegrityError:  # one live entry per person, campaign and dose
        raise DomainError("waitlist.duplicate", dose=dose) from None
    return entry


async def offer_freed_place(
    session: AsyncSession,
    session_id: int,
    now: dt.datetime,
    hold_minutes: int = DEFAULT_HOLD_MINUTES,
    *,
    timing: rm.Timing | None = None,
) -> WaitlistEntry | None:
    """Offer a free place of the session to the first person waiting for it, and hold the
    place for them until the offer expires; returns the entry or None.

    With ``timing`` the offer's message is planned (a ``waitlist_offer`` outbox row) and the
    hold runs from when it can be delivered: an offer made in the quiet hours is held from
    their end, not lost overnight."""
    slot = await session.get(Session, session_id)
    if slot is None or slot.cancelled_at is not None or slot.date < local_date(now):
        return None
    already = exists().where(
        Booking.health_book_id == WaitlistEntry.health_book_id,
        Booking.campaign_id == WaitlistEntry.campaign_id,
        Booking.dose == WaitlistEntry.dose,
        Booking.status.in_(BOOKING_ACTIVE),
    )
    candidates = (
        await session.scalars(
            select(WaitlistEntry.id)
            .where(
                WaitlistEntry.status == "waiting",
                WaitlistEntry.campaign_id == slot.campaign_id,
                or_(
                    WaitlistEntry.session_id == slot.id,
                    and_(
                        WaitlistEntry.session_id.is_(None),
                        WaitlistEntry.site_id == slot.site_id,
                        or_(
                            WaitlistEntry.date == slot.date,
                            and_(
                                WaitlistEntry.date.is_(None),
                                or_(
                                    WaitlistEntry.not_before.is_(None),
                                    WaitlistEntry.not_before <= slot.date,
                                ),
                            ),
                        ),
                    ),
                ),
                ~already,
            )
            .order_by(WaitlistEntry.created_at, WaitlistEntry.id)
            .limit(20)
        )
    ).all()
    if not candidates:
        return None
    booked = await claim_place(session, slot.id)
    if booked is None:
        return None
    mirror_booked(session, slot.id, booked)
    when = to_utc(now)
    deliver = when
    expires = when + dt.timedelta(minutes=hold_minutes)
    if timing is not None:
        deliver, expires = await rm.offer_times(session, timing, hold_minutes)
    for entry_id in candidates:
        # claimed conditionally: two workers offering at once never pick the same person
        claimed = await session.execute(
            update(WaitlistEntry)
            .where(WaitlistEntry.id == entry_id, WaitlistEntry.status == "waiting")
            .values(
                status="offered",
                offered_at=when,
                offer_expires_at=expires,
                held_session_id=slot.id,
            )
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount == 1:
            entry = await session.get(WaitlistEntry, entry_id, populate_existing=True)
            if entry is not None and timing is not None:
                await rm.plan_offer(session, entry, deliver, timing)
            return entry
    await free_and_mirror(session, slot.id)
    return None


async def _owned_entry(
    session: AsyncSession, entry_id: int, owner: Account | HealthBook
) -> tuple[WaitlistEntry, HealthBook]:
    entry = await session.get(WaitlistEntry, entry_id, populate_existing=True)
    if entry is None:
        raise DomainError("waitlist.not_found")
    book_ = await book_or_error(session, entry.health_book_id)
    if not may_act_for(owner, book_):
        raise DomainError("waitlist.not_yours")
    return entry, book_


async def accept_offer(
    session: AsyncSession,
    entry_id: int,
    owner: Account | HealthBook,
    now: dt.datetime,
    *,
    timing: rm.Timing | None = None,
) -> Booking:
    """Turn a held place into a booking, unless the offer has expired (with ``timing``, the
    booking's reminders are planned)."""
    entry, book_ = await _owned_entry(session, entry_id, owner)
    if entry.status != "offered":
        raise DomainError("waitlist.not_offered", status=entry.status)
    when = to_utc(now)
    if entry.offer_expires_at is None or as_aware(entry.offer_expires_at) <= when:
        # left as it is: expire_offers gives the held place to the next person
        raise DomainError("waitlist.offer_expired")
    assert entry.held_session_id is not None
    slot = await session.get(Session, entry.held_session_id)
    assert slot is not None
    site = await get_site(session, slot.site_id)
    campaign = await get_campaign(session, entry.campaign_id)
    # the health declaration may have changed while they waited
    group = check_eligibility(book_, campaign, slot.date, site)
    plan = BookingPlan(book_, slot, site, campaign, entry.dose, group)

    async def claim() -> None:
        # inside the savepoint, so a duplicate booking also leaves the offer standing
        result = await session.execute(
            update(WaitlistEntry)
            .where(
                WaitlistEntry.id == entry.id,
                WaitlistEntry.status == "offered",
                WaitlistEntry.offer_expires_at > when,
            )
            .values(status="accepted")
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            raise DomainError("waitlist.offer_expired")

    booking = await insert_booking(session, plan, take_place=False, before=claim, timing=timing)
    await session.execute(
        update(WaitlistEntry)
        .where(WaitlistEntry.id == entry.id)
        .values(booking_id=booking.id)
        .execution_options(synchronize_session=False)
    )
    set_loaded(entry, status="accepted", booking_id=booking.id)
    return booking


async def leave_waitlist(
    session: AsyncSession, entry_id: int, owner: Account | HealthBook
) -> WaitlistEntry:
    """Stop waiting (or decline an offer: its held place is freed, to offer to the next)."""
    entry, _ = await _owned_entry(session, entry_id, owner)
    status = entry.status
    if status not in ("waiting", "offered"):
        raise DomainError("waitlist.not_active", status=status)
    result = await session.execute(
        update(WaitlistEntry)
        .where(WaitlistEntry.id == entry.id, WaitlistEntry.status == status)
        .values(status="cancelled")
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise DomainError("waitlist.not_active", status=status)
    if status == "offered" and entry.held_session_id is not None:
        await free_and_mirror(session, entry.held_session_id)
    set_loaded(entry, status="cancelled")
    return entry


async def expire_offers(
    session: AsyncSession,
    now: dt.datetime,
    hold_minutes: int = DEFAULT_HOLD_MINUTES,
    *,
    timing: rm.Timing | None = None,
) -> list[WaitlistEntry]:
    """Release the places held by expired offers and offer each to the next person waiting
    (with ``timing``, their messages planned); returns the new offers. Run it periodically:
    the rows are the schedule."""
    when = to_utc(now)
    expired = (
        await session.execute(
            select(WaitlistEntry.id, WaitlistEntry.held_session_id)
            .where(WaitlistEntry.status == "offered", WaitlistEntry.offer_expires_at <= when)
            .order_by(WaitlistEntry.held_session_id, WaitlistEntry.id)  # lock order
        )
    ).all()
    offers: list[WaitlistEntry] = []
    for entry_id, held in expired:
        result = await session.execute(
            update(WaitlistEntry)
            .where(
                WaitlistEntry.id == entry_id,
                WaitlistEntry.status == "offered",
                WaitlistEntry.offer_expires_at <= when,
            )
            .values(status="expired")
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1 or held is None:
            continue  # accepted or released meanwhile
        await free_and_mirror(session, held)
        offer = await offer_freed_place(session, held, now, hold_minutes, timing=timing)
        if offer is not None:
            offers.append(offer)
    return offers
