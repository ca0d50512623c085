"""Vaccination booking: sites and free days, booking codes, booking that never overbooks,
cancelling, rescheduling, expiry, and releasing a health book's places.

No Telegram here, and the caller owns the transaction: nothing in this module commits. Refusals
raise :class:`~models.errors.DomainError` whose ``key`` names a localized message.
"""

from __future__ import annotations

import datetime as dt
import math
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import case, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from models import reminders as rm
from models import validators as v
from models.eligibility import check_eligibility, eligible_doses
from models.errors import DomainError
from models.lookups import book_or_error, get_campaign, may_act_for
from models.places import (
    claim_place,
    free_and_mirror,
    free_place,
    mirror_booked,
    open_transaction,
    set_loaded,
)
from models.tables import (
    BOOKING_ACTIVE,
    Account,
    Booking,
    Campaign,
    HealthBook,
    Session,
    Site,
    WaitlistEntry,
)
from models.timeutil import to_utc

# No 0/O, 1/I/L: a code read aloud or typed from a screen cannot be mistaken.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 7  # 31**7 ≈ 2.7e10 codes: a collision is rare, and retried
_CODE_ATTEMPTS = 8

HOSPITAL = "hospital"
_EARTH_RADIUS_KM = 6371.0088


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteMatch:
    """A site offered to a person, with its commune's name and the distance when known."""

    site: Site
    ward_name: str
    distance_km: float | None
    same_ward: bool


@dataclass(frozen=True)
class OpenDay:
    """A date with free places at a site for a campaign."""

    date: dt.date
    remaining: int
    sessions: int


@dataclass(frozen=True)
class BookingPlan:
    """Everything checked before a place is taken: who, where, which dose, advisory group."""

    book: HealthBook
    slot: Session
    site: Site
    campaign: Campaign
    dose: int
    group: v.ScreeningGroup


# --- small helpers ----------------------------------------------------------------------------


def new_booking_code() -> str:
    """A random booking code from the unambiguous alphabet."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(text: str) -> str:
    """A typed booking code cleaned up (case, spaces, dashes), or ``booking.code_invalid``."""
    code = "".join(text.split()).replace("-", "").upper()
    bad = "".join(sorted(set(code) - set(CODE_ALPHABET)))
    if bad or len(code) != CODE_LENGTH:
        # the message says which characters a code has (``chars``: the ones typed that it never has)
        raise DomainError("booking.code_invalid", chars=bad, length=CODE_LENGTH)
    return code


async def active_booking(
    session: AsyncSession, book: HealthBook, campaign: Campaign | int, dose: int
) -> Booking | None:
    """The person's active booking for this dose of the campaign, if they hold one (checked when
    /book starts, so nobody chooses a site, day and time only to be refused at Confirm)."""
    return await session.scalar(  # type: ignore[no-any-return]
        select(Booking)
        .options(joinedload(Booking.session).joinedload(Session.site))
        .where(
            Booking.health_book_id == book.id,
            Booking.campaign_id == _ref_id(campaign),
            Booking.dose == dose,
            Booking.status.in_(BOOKING_ACTIVE),
        )
        .limit(1)
    )


async def has_active_booking(
    session: AsyncSession, book_id: int, campaign_id: int, dose: int
) -> bool:
    return (
        await session.scalar(
            select(Booking.id)
            .where(
                Booking.health_book_id == book_id,
                Booking.campaign_id == campaign_id,
                Booking.dose == dose,
                Booking.status.in_(BOOKING_ACTIVE),
            )
            .limit(1)
        )
    ) is not None


# --- sites and free days ----------------------------------------------------------------------


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two (lat, lon) points, in kilometres."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * _EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def _matches(query: str, *texts: str) -> bool:
    """Accent-insensitive substring match; spaces ignored as a fallback (``sapa`` ~ ``Sa Pa``)."""
    q = v.fold(query)
    if not q:
        return True
    q_squashed = q.replace(" ", "")
    for text in texts:
        key = v.fold(text)
        if q in key or q_squashed in key.replace(" ", ""):
            return True
    return False


async def sites_for(
    session: AsyncSession,
    province_code: int,
    ward_code: int | None = None,
    near: tuple[float, float] | None = None,
    query: str | None = None,
    *,
    hospital_only: bool = False,
) -> list[SiteMatch]:
    """Active sites of a province, in the order to list them; ``query`` filters on site or
    commune name, accents ignored.

    With ``near`` (lat, lon): nearest first, each with its distance. Otherwise the person's own
    commune first, then the others by distance from the own commune's site (communes have no
    coordinates of their own; no distance is shown, as it is not the person's); when the commune
    has no site, commune stations before hospitals (a hospital is the usual site of nobody's),
    then by name."""
    stmt = select(Site).where(Site.province_code == province_code, Site.active.is_(True))
    if hospital_only:
        stmt = stmt.where(Site.kind == HOSPITAL)
    sites = (await session.scalars(stmt)).all()
    own = next((s for s in sites if s.ward_code == ward_code), None)
    anchor = near or ((own.lat, own.lon) if own is not None else None)
    keyed: list[tuple[tuple[object, ...], SiteMatch]] = []
    for site in sites:
        try:
            ward = v.ward_name(site.ward_code)
        except KeyError:
            ward = ""
        if query and not _matches(query, site.name, ward, site.address):
            continue
        away = haversine_km(anchor, (site.lat, site.lon)) if anchor else None
        same = site.ward_code == ward_code
        distance = round(away, 1) if near is not None and away is not None else None
        if near is not None:
            key: tuple[object, ...] = (away, v.fold(site.name))
        elif anchor is not None:
            key = (not same, away, v.fold(site.name))
        else:
            key = (site.kind == HOSPITAL, v.fold(site.name))
        keyed.append((key, SiteMatch(site, ward, distance, same)))
    keyed.sort(key=lambda k: k[0])  # type: ignore[arg-type,return-value]
    return [m for _, m in keyed]


async def site_provinces(session: AsyncSession) -> list[int]:
    """The provinces that have at least one active site (where the bot can book), by code."""
    rows = await session.scalars(
        select(Site.province_code).where(Site.active.is_(True)).distinct()
    )
    return sorted(int(code) for code in rows.all())


def commune_example(matches: Sequence[SiteMatch]) -> str | None:
    """A commune name to give as an example of what to type: the first listed site's commune,
    as a person would write it (``"Sa Pa"``); None when there is no site."""
    for m in matches:
        if m.ward_name:
            return v.example_name(m.ward_name)
    return None


@dataclass(frozen=True)
class SiteOffer:
    """A site as offered for booking: its match, the free places in the days looked at, and
    whether it has any session planned at all (if not, a waitlist there waits for nothing)."""

    match: SiteMatch
    free: int
    planned: bool
    advised: bool  # a hospital, for someone whose declaration points to one


async def offer_sites(
    session: AsyncSession,
    matches: Sequence[SiteMatch],
    campaign: Campaign | int,
    from_date: dt.date,
    days: int,
    group: v.ScreeningGroup = v.ScreeningGroup.ELIGIBLE,
) -> list[SiteOffer]:
    """Sites in the order to offer them: hospitals first when the screening group points to
    one, then sites with free places from ``from_date`` (for ``days`` days), then full ones,
    then those with no session planned; within each, the order of ``matches`` is kept (own
    commune first, or nearest first)."""
    ids = [m.site.id for m in matches]
    if not ids:
        return []
    until = from_date + dt.timedelta(days=days)
    free_in_window = func.sum(
        case(
            (Session.date < until, Session.capacity - Session.booked),
            else_=0,
        )
    )
    rows = await session.execute(
        select(Session.site_id, free_in_window)
        .where(
            Session.site_id.in_(ids),
            Session.campaign_id == _ref_id(campaign),
            Session.date >= from_date,
            Session.cancelled_at.is_(None),
        )
        .group_by(Session.site_id)
    )
    free = {site_id: int(left or 0) for site_id, left in rows}
    refer = group is v.ScreeningGroup.REFER
    offers = [
        SiteOffer(m, free.get(m.site.id, 0), m.site.id in free, refer and m.site.kind == HOSPITAL)
        for m in matches
    ]
    rank = {id(o): n for n, o in enumerate(offers)}
    offers.sort(key=lambda o: (not o.advised, o.free <= 0, not o.planned, rank[id(o)]))
    return offers


def _ref_id(ref: Site | Campaign | int) -> int:
    return ref if isinstance(ref, int) else ref.id


async def open_days(
    session: AsyncSession,
    site: Site | int,
    campaign: Campaign | int,
    from_date: dt.date,
    days: int = 14,
) -> list[OpenDay]:
    """Dates from ``from_date`` (for ``days`` days) with free places, and how many remain."""
    remaining = func.sum(Session.capacity - Session.booked)
    rows = await session.execute(
        select(Session.date, remaining, func.count())
        .where(
            Session.site_id == _ref_id(site),
            Session.campaign_id == _ref_id(campaign),
            Session.date >= from_date,
            Session.date < from_date + dt.timedelta(days=days),
            Session.booked < Session.capacity,
            Session.cancelled_at.is_(None),
        )
        .group_by(Session.date)
        .order_by(Session.date)
    )
    return [OpenDay(day, int(left), int(n)) for day, left, n in rows]


async def has_sessions(
    session: AsyncSession, site: Site | int, campaign: Campaign | int, from_date: dt.date
) -> bool:
    """Whether the site has any session of the campaign planned from ``from_date`` on (full or
    not): without one, a waitlist there would wait for nothing."""
    found = await session.scalar(
        select(Session.id)
        .where(
            Session.site_id == _ref_id(site),
            Session.campaign_id == _ref_id(campaign),
            Session.date >= from_date,
            Session.cancelled_at.is_(None),
        )
        .limit(1)
    )
    return found is not None


async def sessions_on(
    session: AsyncSession, site: Site | int, date: dt.date, campaign: Campaign | int
) -> list[Session]:
    """The sessions of a site on a date for a campaign, by start time (full ones included,
    cancelled ones not)."""
    return list(
        (
            await session.scalars(
                select(Session)
                .where(
                    Session.site_id == _ref_id(site),
                    Session.campaign_id == _ref_id(campaign),
                    Session.date == date,
                    Session.cancelled_at.is_(None),
                )
                .order_by(Session.start_time)
            )
        ).all()
    )


# --- booking ----------------------------------------------------------------------------------


async def check_target(
    session: AsyncSession,
    book: HealthBook,
    campaign: Campaign,
    site: Site,
    date: dt.date,
    dose: int | None,
    today: dt.date,
) -> tuple[int, v.ScreeningGroup]:
    """The checks shared by booking and joining a waitlist; returns the dose and the group."""
    if date < today:
        raise DomainError("booking.past_date", date=date)
    if not site.active:
        raise DomainError("site.closed", site=site.name)
    if site.province_code != book.province_code:
        raise DomainError("booking.other_province", site=site.name)
    group = check_eligibility(book, campaign, date, site)
    window = await eligible_doses(session, book, campaign, today)
    if window is None:
        raise DomainError("booking.schedule_complete", campaign=campaign.name)
    if dose is not None and dose != window.dose:
        raise DomainError("booking.wrong_dose", dose=dose, expected=window.dose)
    if date < window.earliest:
        raise DomainError("booking.too_early", earliest=window.earliest, dose=window.dose)
    return window.dose, group


async def check_booking(
    session: AsyncSession,
    book_id: int,
    session_id: int,
    campaign: Campaign | str | int,
    dose: int | None,
    today: dt.date,
) -> BookingPlan:
    """Every check made before a place is taken (no place is taken): for a confirm screen."""
    book = await book_or_error(session, book_id)
    row = (
        await session.execute(
            select(Session, Site, Campaign)  # one round trip: this runs on every booking
            .join(Site, Site.id == Session.site_id)
            .join(Campaign, Campaign.id == Session.campaign_id)
            .where(Session.id == session_id)
        )
    ).first()
    if row is None or row[0].cancelled_at is not None:  # a cancelled session is gone for booking
        raise DomainError("booking.session_not_found")
    slot, site, served = row
    if isinstance(campaign, str):
        same = campaign == served.code
    else:
        same = (campaign if isinstance(campaign, int) else campaign.id) == served.id
    if not same:
        wanted = await get_campaign(session, campaign)  # campaign.not_found if unknown
        raise DomainError("booking.wrong_campaign", campaign=wanted.name)
    dose, group = await check_target(session, book, served, site, slot.date, dose, today)
    return BookingPlan(book, slot, site, served, dose, group)


async def insert_booking(
    session: AsyncSession,
    plan: BookingPlan,
    *,
    take_place: bool,
    before: Callable[[], Awaitable[None]] | None = None,
    timing: rm.Timing | None = None,
) -> Booking:
    """Take the place (unless already held) and insert the booking inside one SAVEPOINT; with
    ``timing``, its reminders are planned (the evening before, the morning of).

    The partial unique index refuses a second active booking for the same dose; its
    IntegrityError rolls the savepoint back — the place too — and the caller's transaction
    carries on. A booking-code collision is told apart and retried with a new code.
    """
    await open_transaction(session)
    for _ in range(_CODE_ATTEMPTS):
        try:
            async with session.begin_nested():
                if before is not None:
                    await before()
                booked = await claim_place(session, plan.slot.id) if take_place else None
                if take_place and booked is None:
                    raise DomainError("booking.full", site=plan.site.name, date=plan.slot.date)
                code = new_booking_code()
                booking = Booking(
                    code=code,
                    health_book_id=plan.book.id,
                    session_id=plan.slot.id,
                    campaign_id=plan.campaign.id,
                    dose=plan.dose,
                    status="booked",
                )
                session.add(booking)
                await session.flush()
        except IntegrityError:
            if await has_active_booking(session, plan.book.id, plan.campaign.id, plan.dose):
                raise DomainError("booking.duplicate", dose=plan.dose) from None
            if await session.scalar(select(Booking.id).where(Booking.code == code)) is None:
                raise  # neither the dose nor the code: a real error (a book erased meanwhile…)
            continue  # the code was taken: try another
        if booked is not None:
            mirror_booked(session, plan.slot.id, booked)
        set_loaded(booking, session=plan.slot, campaign=plan.campaign, health_book=plan.book)
        if timing is not None:
            await rm.plan_appointment(session, booking, plan.slot, timing)
        return booking
    raise RuntimeError("no free booking code after several attempts")


async def book(
    session: AsyncSession,
    book_id: int,
    session_id: int,
    campaign: Campaign | str | int,
    dose: int | None,
    today: dt.date,
    *,
    timing: rm.Timing | None = None,
) -> Booking:
    """Book a place for the health book in the session: ``booking.full`` when none is left,
    ``booking.duplicate`` when this person already holds an active booking for the dose
    (``dose`` None: the next one due). With ``timing``, its reminders are planned."""
    plan = await check_booking(session, book_id, session_id, campaign, dose, today)
    return await insert_booking(session, plan, take_place=True, timing=timing)


async def load_booking(session: AsyncSession, ref: Booking | str | int) -> Booking:
    """A booking by object, code or id, with its session, site, campaign and book loaded."""
    if isinstance(ref, Booking):
        ref = ref.id
    stmt = select(Booking).options(
        joinedload(Booking.session).joinedload(Session.site),
        joinedload(Booking.campaign),
        joinedload(Booking.health_book),
    )
    if isinstance(ref, int):
        stmt = stmt.where(Booking.id == ref)
    else:
        stmt = stmt.where(Booking.code == normalize_code(ref))
    # populate_existing: a loaded copy may be stale after a conditional UPDATE elsewhere
    found = await session.scalar(stmt.execution_options(populate_existing=True))
    if found is None:
        raise DomainError("booking.not_found")
    return found


async def find_booking_by_code(session: AsyncSession, code: str) -> Booking:
    """The booking with this code (typed any case, with spaces or dashes), details loaded."""
    return await load_booking(session, code)


async def bookings_for(
    session: AsyncSession,
    owner: Account | HealthBook,
    statuses: Sequence[str] = BOOKING_ACTIVE,
) -> list[Booking]:
    """The owner's bookings (all their health books for an account), soonest first."""
    stmt = (
        select(Booking)
        .join(Session, Session.id == Booking.session_id)
        .join(HealthBook, HealthBook.id == Booking.health_book_id)
        .options(
            joinedload(Booking.session).joinedload(Session.site),
            joinedload(Booking.campaign),
            joinedload(Booking.health_book),
        )
        .where(Booking.status.in_(statuses))
        .order_by(Session.date, Session.start_time, Booking.id)
    )
    if isinstance(owner, HealthBook):
        stmt = stmt.where(Booking.health_book_id == owner.id)
    else:
        stmt = stmt.where(HealthBook.account_id == owner.id)
    return list((await session.scalars(stmt)).all())


async def cancel(
    session: AsyncSession,
    booking_ref: Booking | str | int,
    owner: Account | HealthBook,
    *,
    now: dt.datetime | None = None,
) -> Booking:
    """Cancel a booking and free its place at once (the caller may then offer it to the
    waitlist with :func:`offer_freed_place`)."""
    booking = await load_booking(session, booking_ref)
    if not may_act_for(owner, booking.health_book):
        raise DomainError("booking.not_yours")
    when = to_utc(now or dt.datetime.now(dt.UTC))
    # the status moves first, conditionally: of two concurrent cancels only one frees a place
    result = await session.execute(
        update(Booking)
        .where(Booking.id == booking.id, Booking.status == "booked")
        .values(status="cancelled", cancelled_at=when)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        status = await session.scalar(select(Booking.status).where(Booking.id == booking.id))
        raise DomainError("booking.not_active", status=status)
    await free_and_mirror(session, booking.session_id)
    await rm.cancel_appointment(session, booking.id, "cancelled")
    set_loaded(booking, status="cancelled", cancelled_at=when)
    return booking


async def reschedule(
    session: AsyncSession,
    booking_ref: Booking | str | int,
    new_session_id: int,
    *,
    owner: Account | HealthBook,
    today: dt.date,
    timing: rm.Timing | None = None,
) -> Booking:
    """Move a booking to another session: the new place is taken and the old one freed in one
    SAVEPOINT; if the new session is full nothing changes (``booking.full``). Its pending
    reminders are cancelled and, with ``timing``, planned for the new time."""
    booking = await load_booking(session, booking_ref)
    if not may_act_for(owner, booking.health_book):
        raise DomainError("booking.not_yours")
    if booking.status != "booked":
        raise DomainError("booking.not_active", status=booking.status)
    old_id = booking.session_id
    if new_session_id == old_id:
        raise DomainError("booking.same_session")
    plan = await check_booking(
        session, booking.health_book_id, new_session_id, booking.campaign_id, booking.dose, today
    )
    await open_transaction(session)
    async with session.begin_nested():
        moved = await session.execute(
            update(Booking)
            .where(
                Booking.id == booking.id, Booking.status == "booked", Booking.session_id == old_id
            )
            .values(session_id=new_session_id)
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount != 1:  # cancelled or moved by a concurrent request
            status = await session.scalar(select(Booking.status).where(Booking.id == booking.id))
            raise DomainError("booking.not_active", status=status)
        # Session rows are locked in id order, so two opposite moves cannot deadlock; a
        # failure after the old place was freed rolls the whole savepoint back.
        if new_session_id < old_id:
            taken = await claim_place(session, new_session_id)
            if taken is None:
                raise DomainError("booking.full", site=plan.site.name, date=plan.slot.date)
            freed = await free_place(session, old_id)
        else:
            freed = await free_place(session, old_id)
            taken = await claim_place(session, new_session_id)
            if taken is None:
                raise DomainError("booking.full", site=plan.site.name, date=plan.slot.date)
    mirror_booked(session, new_session_id, taken)
    if freed is not None:
        mirror_booked(session, old_id, freed)
    set_loaded(booking, session_id=new_session_id, session=plan.slot)
    await rm.replan_appointment(session, booking, plan.slot, timing)
    return booking


async def expire_bookings(session: AsyncSession, today: dt.date) -> int:
    """Mark bookings of sessions already past and never checked in as expired; returns how many.
    Their places stay counted: the session is over."""
    past = select(Session.id).where(Session.date < today).scalar_subquery()
    result = await session.execute(
        update(Booking)
        .where(Booking.status == "booked", Booking.session_id.in_(past))
        .values(status="expired")
        .execution_options(synchronize_session=False)
    )
    await rm.cancel_expired(session)
    return int(result.rowcount or 0)


async def release_book(session: AsyncSession, book_id: int, now: dt.datetime) -> int:
    """Cancel every active booking and waitlist entry of a health book and free their places
    (call before erasing the book: a cascade delete would not give places back)."""
    freed = 0
    when = to_utc(now)
    ids = (
        await session.execute(
            select(Booking.id, Booking.session_id).where(
                Booking.health_book_id == book_id, Booking.status.in_(BOOKING_ACTIVE)
            )
        )
    ).all()
    for booking_id, session_id in ids:
        result = await session.execute(
            update(Booking)
            .where(Booking.id == booking_id, Booking.status.in_(BOOKING_ACTIVE))
            .values(status="cancelled", cancelled_at=when)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:
            await free_and_mirror(session, session_id)
            await rm.cancel_appointment(session, booking_id, "cancelled")
            freed += 1
    entries = (
        await session.execute(
            select(WaitlistEntry.id, WaitlistEntry.status, WaitlistEntry.held_session_id).where(
                WaitlistEntry.health_book_id == book_id,
                WaitlistEntry.status.in_(("waiting", "offered")),
            )
        )
    ).all()
    for entry_id, status, held in entries:
        result = await session.execute(
            update(WaitlistEntry)
            .where(WaitlistEntry.id == entry_id, WaitlistEntry.status == status)
            .values(status="cancelled")
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1 and status == "offered" and held is not None:
            await free_and_mirror(session, held)
            freed += 1
    return freed
