"""Vaccination booking: eligibility, sites and free days, booking that never overbooks, the
waitlist, check-in and recording doses (the certificate is in :mod:`models.certificates`).

No Telegram here, and the caller owns the transaction: nothing in this module commits. Refusals
raise :class:`~models.errors.DomainError` whose ``key`` names a localized message.

Places are counted on the session row (``sessions.booked``) and changed only by one conditional
UPDATE (``booked = booked + 1 WHERE booked < capacity``), never by reading a count and writing
it back: the database serialises concurrent writers on the row, so no number of processes can
overbook. Places held for a waitlist offer are counted the same way.
"""

from __future__ import annotations

import datetime as dt
import math
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.attributes import set_committed_value

from models import validators as v
from models.errors import DomainError
from models.tables import (
    BOOKING_ACTIVE,
    Account,
    Booking,
    Campaign,
    HealthBook,
    Session,
    Site,
    StaffSite,
    Vaccination,
    WaitlistEntry,
)

# Dates of doses and sessions are local dates; Vietnam has kept UTC+7 without DST since 1975
# (the same zone as the settings' default ``bot.timezone``).
LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")

# No 0/O, 1/I/L: a code read aloud or typed from a screen cannot be mistaken.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 7  # 31**7 ≈ 2.7e10 codes: a collision is rare, and retried
_CODE_ATTEMPTS = 8

STAFF_ROLES = frozenset({"site_staff", "admin"})
HOSPITAL = "hospital"
DEFAULT_HOLD_MINUTES = 60

_MAX_LOT_LEN = 32
_MAX_REASON_LEN = 500
_EARTH_RADIUS_KM = 6371.0088


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DoseWindow:
    """The next dose of a campaign for one person, and when it may be given.

    ``earliest`` is never before the day asked about; ``latest`` is the end of the recommended
    interval (``None``: no upper bound) — a late dose is still given, so it is advice only.
    """

    dose: int
    earliest: dt.date
    latest: dt.date | None = None
    previous: dt.date | None = None
    previous_vaccine: str | None = None
    booster: bool = False

    @property
    def overdue(self) -> bool:
        """Whether the recommended interval has already passed."""
        return self.latest is not None and self.latest < self.earliest


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


@dataclass(frozen=True)
class CheckIn:
    """A checked-in booking, the person, and their self-declared screening group (advisory)."""

    booking: Booking
    book: HealthBook
    group: v.ScreeningGroup


# --- small helpers ----------------------------------------------------------------------------


def _utc(ts: dt.datetime) -> dt.datetime:
    """Timestamps are written in UTC: SQLite keeps the wall time and drops the offset."""
    if ts.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return ts.astimezone(dt.UTC)


def _aware(ts: dt.datetime) -> dt.datetime:
    """A timestamp read back (SQLite returns naive UTC) as an aware one."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=dt.UTC)


def local_date(ts: dt.datetime) -> dt.date:
    """The province's calendar date of an aware timestamp."""
    return _aware(ts).astimezone(LOCAL_TZ).date()


def _age_months(dob: dt.date, on: dt.date) -> int:
    """Age in whole months on ``on``."""
    return (on.year - dob.year) * 12 + on.month - dob.month - (on.day < dob.day)


def _set(obj: Any, **values: Any) -> None:
    """Mirror a Core UPDATE on an object already loaded, without marking it dirty."""
    for name, value in values.items():
        set_committed_value(obj, name, value)


async def _open_transaction(session: AsyncSession) -> None:
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


def _mirror_booked(session: AsyncSession, session_id: int, booked: int) -> None:
    """Keep a loaded Session row's ``booked`` equal to what the database now holds."""
    key = session.sync_session.identity_key(Session, session_id)
    obj = session.identity_map.get(key)
    if obj is not None:
        _set(obj, booked=booked)


async def _take_place(session: AsyncSession, session_id: int) -> int | None:
    """Take one place with one atomic conditional UPDATE; returns the new ``booked``, or None
    if no place was free at that instant.

    The returned row stands for ``rowcount == 1``: the WHERE is evaluated by the database on the
    row it has locked, so two writers can never both see the last place free. Callers inside a
    SAVEPOINT mirror the value on loaded objects only once it is released.
    """
    result = await session.execute(
        update(Session)
        .where(Session.id == session_id, Session.booked < Session.capacity)
        .values(booked=Session.booked + 1)
        .returning(Session.booked)
        .execution_options(synchronize_session=False)
    )
    return result.scalar_one_or_none()


async def _free_place(session: AsyncSession, session_id: int) -> int | None:
    """Give one place back (never below zero); returns the new ``booked``."""
    result = await session.execute(
        update(Session)
        .where(Session.id == session_id, Session.booked > 0)
        .values(booked=Session.booked - 1)
        .returning(Session.booked)
        .execution_options(synchronize_session=False)
    )
    return result.scalar_one_or_none()


async def _free_and_mirror(session: AsyncSession, session_id: int) -> None:
    """Give one place back outside any savepoint, and mirror it on a loaded Session row."""
    booked = await _free_place(session, session_id)
    if booked is not None:
        _mirror_booked(session, session_id, booked)


def new_booking_code() -> str:
    """A random booking code from the unambiguous alphabet."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(text: str) -> str:
    """A typed booking code cleaned up (case, spaces, dashes), or ``booking.code_invalid``."""
    code = "".join(text.split()).replace("-", "").upper()
    bad = "".join(sorted(set(code) - set(CODE_ALPHABET)))
    if bad or len(code) != CODE_LENGTH:
        # ``chars`` lets the message say "codes never contain 0, O, 1, I or L" when it applies
        raise DomainError("booking.code_invalid", chars=bad, length=CODE_LENGTH)
    return code


async def _by_ref(session: AsyncSession, model: Any, ref: Any, what: str) -> Any:
    """A row given as itself, its code or its id; ``<what>.not_found`` otherwise."""
    if isinstance(ref, model):
        return ref
    if isinstance(ref, int):
        found = await session.get(model, ref)
    else:
        found = await session.scalar(select(model).where(model.code == ref))
    if found is None:
        raise DomainError(f"{what}.not_found", **{what: str(ref)})
    return found


async def get_campaign(session: AsyncSession, ref: Campaign | str | int) -> Campaign:
    """A campaign given as itself, its code or its id; ``campaign.not_found`` otherwise."""
    return await _by_ref(session, Campaign, ref, "campaign")  # type: ignore[no-any-return]


async def get_site(session: AsyncSession, ref: Site | str | int) -> Site:
    """A site given as itself, its code or its id; ``site.not_found`` otherwise."""
    return await _by_ref(session, Site, ref, "site")  # type: ignore[no-any-return]


async def _book_or_error(session: AsyncSession, book_id: int) -> HealthBook:
    book = await session.get(HealthBook, book_id)
    if book is None:
        raise DomainError("booking.book_not_found")
    return book


def _owns(owner: Account | HealthBook, book: HealthBook) -> bool:
    """A health book is handled by its account (the holder and relatives they registered),
    or by an admin."""
    if isinstance(owner, HealthBook):
        return owner.id == book.id
    return owner.id == book.account_id or owner.role == "admin"


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


async def _has_active_booking(
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


# --- eligibility ------------------------------------------------------------------------------


def _intervals(campaign: Campaign, vaccine: str | None) -> tuple[list[Any], list[Any]]:
    """Min/max days between doses, for the product of the previous dose when it has its own."""
    own = (campaign.schedules or {}).get(vaccine or "", {})
    return list(own.get("min_days", campaign.min_days or [])), list(
        own.get("max_days", campaign.max_days or [])
    )


def next_dose_window(
    campaign: Campaign,
    today: dt.date,
    last_dose: int | None = None,
    last_date: dt.date | None = None,
    last_vaccine: str | None = None,
) -> DoseWindow | None:
    """The dose after ``last_dose`` (given on ``last_date``) and its window; None when done."""
    start = max(today, campaign.starts_on)
    if last_dose is None or last_date is None:
        return DoseWindow(dose=1, earliest=start)
    dose = last_dose + 1
    if dose <= campaign.doses:
        mins, maxs = _intervals(campaign, last_vaccine)
        gap = last_dose - 1  # interval between dose ``last_dose`` and the next
        low = int(mins[gap]) if gap < len(mins) and mins[gap] is not None else 0
        high = maxs[gap] if gap < len(maxs) else None
        booster = False
    else:
        if campaign.booster_min_days is None:
            return None
        if campaign.boosters is not None and dose > campaign.doses + campaign.boosters:
            return None
        low, high, booster = campaign.booster_min_days, None, True
    return DoseWindow(
        dose=dose,
        earliest=max(start, last_date + dt.timedelta(days=low)),
        latest=last_date + dt.timedelta(days=int(high)) if high is not None else None,
        previous=last_date,
        previous_vaccine=last_vaccine,
        booster=booster,
    )


async def eligible_doses(
    session: AsyncSession, book: HealthBook, campaign: Campaign | str | int, today: dt.date
) -> DoseWindow | None:
    """Which dose of the campaign is next for this person, from their recorded vaccinations,
    with its earliest and latest date; None once the schedule (and any booster) is complete."""
    campaign = await get_campaign(session, campaign)
    last = (
        await session.execute(
            select(Vaccination.dose, Vaccination.given_at, Vaccination.vaccine_code)
            .where(Vaccination.health_book_id == book.id, Vaccination.campaign_id == campaign.id)
            .order_by(Vaccination.dose.desc())
            .limit(1)
        )
    ).first()
    if last is None:
        return next_dose_window(campaign, today)
    return next_dose_window(
        campaign, today, last.dose, local_date(last.given_at), last.vaccine_code
    )


def screening_group(book: HealthBook, today: dt.date | None = None) -> v.ScreeningGroup:
    """The strongest group over the book's screening answers, with the age-65 item derived from
    the date of birth (an unanswered item counts as "don't know"). Advisory only."""
    today = today or dt.datetime.now(LOCAL_TZ).date()
    answers = book.screening or {}
    known = {a.value for a in v.Answer}
    worst = v.ScreeningGroup.ELIGIBLE
    for item in v.screening_items(asked_only=False):
        if item.derived:
            answer = item.derived_answer(age=v.age_on(book.date_of_birth, today))
        else:
            raw = answers.get(item.code)
            answer = v.Answer(raw) if raw in known else v.Answer.UNKNOWN
        group = item.group_for(answer)
        if group.severity > worst.severity:
            worst = group
    return worst


def check_eligibility(
    book: HealthBook, campaign: Campaign, on: dt.date, site: Site | None = None
) -> v.ScreeningGroup:
    """Whether this person may be vaccinated in this campaign on ``on`` (at ``site``); returns
    the advisory screening group (eligible, caution or refer) or raises why not."""
    if (
        not campaign.active
        or on < campaign.starts_on
        or (campaign.ends_on is not None and on > campaign.ends_on)
    ):
        raise DomainError("campaign.closed", campaign=campaign.name)
    months = _age_months(book.date_of_birth, on)
    high = campaign.max_age_months
    if months < campaign.min_age_months or (high is not None and months > high):
        raise DomainError(
            "booking.ineligible_age",
            min_months=campaign.min_age_months,
            max_months=high,
            min_years=campaign.min_age_months // 12,
            max_years=high // 12 if high is not None else None,
        )
    group = screening_group(book, on)
    if group is v.ScreeningGroup.CONTRAINDICATED:
        raise DomainError("booking.screening_contraindicated")
    if group is v.ScreeningGroup.POSTPONE:
        raise DomainError("booking.screening_postpone")
    # caution: the usual site, watched more closely; refer: a hospital is advised, but the
    # person may still book nearer (advice only: the site screens again and decides)
    return group


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
    """Active sites of a province: nearest first when ``near`` (lat, lon) is given, otherwise the
    person's own commune first; ``query`` filters on site or commune name, accents ignored."""
    stmt = select(Site).where(Site.province_code == province_code, Site.active.is_(True))
    if hospital_only:
        stmt = stmt.where(Site.kind == HOSPITAL)
    found: list[SiteMatch] = []
    for site in (await session.scalars(stmt)).all():
        try:
            ward = v.ward_name(site.ward_code)
        except KeyError:
            ward = ""
        if query and not _matches(query, site.name, ward, site.address):
            continue
        distance = round(haversine_km(near, (site.lat, site.lon)), 1) if near else None
        found.append(SiteMatch(site, ward, distance, site.ward_code == ward_code))
    if near is not None:
        found.sort(key=lambda m: (m.distance_km, v.fold(m.site.name)))
    else:
        found.sort(key=lambda m: (not m.same_ward, v.fold(m.site.name)))
    return found


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
        )
        .limit(1)
    )
    return found is not None


async def sessions_on(
    session: AsyncSession, site: Site | int, date: dt.date, campaign: Campaign | int
) -> list[Session]:
    """The sessions of a site on a date for a campaign, by start time (full ones included)."""
    return list(
        (
            await session.scalars(
                select(Session)
                .where(
                    Session.site_id == _ref_id(site),
                    Session.campaign_id == _ref_id(campaign),
                    Session.date == date,
                )
                .order_by(Session.start_time)
            )
        ).all()
    )


# --- booking ----------------------------------------------------------------------------------


async def _check_target(
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
    book = await _book_or_error(session, book_id)
    row = (
        await session.execute(
            select(Session, Site, Campaign)  # one round trip: this runs on every booking
            .join(Site, Site.id == Session.site_id)
            .join(Campaign, Campaign.id == Session.campaign_id)
            .where(Session.id == session_id)
        )
    ).first()
    if row is None:
        raise DomainError("booking.session_not_found")
    slot, site, served = row
    if isinstance(campaign, str):
        same = campaign == served.code
    else:
        same = (campaign if isinstance(campaign, int) else campaign.id) == served.id
    if not same:
        wanted = await get_campaign(session, campaign)  # campaign.not_found if unknown
        raise DomainError("booking.wrong_campaign", campaign=wanted.name)
    dose, group = await _check_target(session, book, served, site, slot.date, dose, today)
    return BookingPlan(book, slot, site, served, dose, group)


async def _insert_booking(
    session: AsyncSession,
    plan: BookingPlan,
    *,
    take_place: bool,
    before: Callable[[], Awaitable[None]] | None = None,
) -> Booking:
    """Take the place (unless already held) and insert the booking inside one SAVEPOINT.

    The partial unique index refuses a second active booking for the same dose; its
    IntegrityError rolls the savepoint back — the place too — and the caller's transaction
    carries on. A booking-code collision is told apart and retried with a new code.
    """
    await _open_transaction(session)
    for _ in range(_CODE_ATTEMPTS):
        try:
            async with session.begin_nested():
                if before is not None:
                    await before()
                booked = await _take_place(session, plan.slot.id) if take_place else None
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
            if await _has_active_booking(session, plan.book.id, plan.campaign.id, plan.dose):
                raise DomainError("booking.duplicate", dose=plan.dose) from None
            if await session.scalar(select(Booking.id).where(Booking.code == code)) is None:
                raise  # neither the dose nor the code: a real error (a book erased meanwhile…)
            continue  # the code was taken: try another
        if booked is not None:
            _mirror_booked(session, plan.slot.id, booked)
        _set(booking, session=plan.slot, campaign=plan.campaign, health_book=plan.book)
        return booking
    raise RuntimeError("no free booking code after several attempts")


async def book(
    session: AsyncSession,
    book_id: int,
    session_id: int,
    campaign: Campaign | str | int,
    dose: int | None,
    today: dt.date,
) -> Booking:
    """Book a place for the health book in the session: ``booking.full`` when none is left,
    ``booking.duplicate`` when this person already holds an active booking for the dose
    (``dose`` None: the next one due)."""
    plan = await check_booking(session, book_id, session_id, campaign, dose, today)
    return await _insert_booking(session, plan, take_place=True)


async def _load_booking(session: AsyncSession, ref: Booking | str | int) -> Booking:
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
    return await _load_booking(session, code)


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
    booking = await _load_booking(session, booking_ref)
    if not _owns(owner, booking.health_book):
        raise DomainError("booking.not_yours")
    when = _utc(now or dt.datetime.now(dt.UTC))
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
    await _free_and_mirror(session, booking.session_id)
    _set(booking, status="cancelled", cancelled_at=when)
    return booking


async def reschedule(
    session: AsyncSession,
    booking_ref: Booking | str | int,
    new_session_id: int,
    *,
    owner: Account | HealthBook,
    today: dt.date,
) -> Booking:
    """Move a booking to another session: the new place is taken and the old one freed in one
    SAVEPOINT; if the new session is full nothing changes (``booking.full``)."""
    booking = await _load_booking(session, booking_ref)
    if not _owns(owner, booking.health_book):
        raise DomainError("booking.not_yours")
    if booking.status != "booked":
        raise DomainError("booking.not_active", status=booking.status)
    old_id = booking.session_id
    if new_session_id == old_id:
        raise DomainError("booking.same_session")
    plan = await check_booking(
        session, booking.health_book_id, new_session_id, booking.campaign_id, booking.dose, today
    )
    await _open_transaction(session)
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
            taken = await _take_place(session, new_session_id)
            if taken is None:
                raise DomainError("booking.full", site=plan.site.name, date=plan.slot.date)
            freed = await _free_place(session, old_id)
        else:
            freed = await _free_place(session, old_id)
            taken = await _take_place(session, new_session_id)
            if taken is None:
                raise DomainError("booking.full", site=plan.site.name, date=plan.slot.date)
    _mirror_booked(session, new_session_id, taken)
    if freed is not None:
        _mirror_booked(session, old_id, freed)
    _set(booking, session_id=new_session_id, session=plan.slot)
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
    return int(result.rowcount or 0)


async def release_book(session: AsyncSession, book_id: int, now: dt.datetime) -> int:
    """Cancel every active booking and waitlist entry of a health book and free their places
    (call before erasing the book: a cascade delete would not give places back)."""
    freed = 0
    when = _utc(now)
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
            await _free_and_mirror(session, session_id)
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
            await _free_and_mirror(session, held)
            freed += 1
    return freed


# --- waitlist ---------------------------------------------------------------------------------


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
    book_ = await _book_or_error(session, book_id)
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
        dose, _ = await _check_target(session, book_, campaign, site, on, dose, today)
    else:
        raise ValueError("give a session or a site")
    if await _has_active_booking(session, book_id, campaign.id, dose):
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
    await _open_transaction(session)
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
) -> WaitlistEntry | None:
    """Offer a free place of the session to the first person waiting for it, and hold the
    place for them until the offer expires; returns the entry (to message them) or None."""
    slot = await session.get(Session, session_id)
    if slot is None or slot.date < local_date(now):
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
    booked = await _take_place(session, slot.id)
    if booked is None:
        return None
    _mirror_booked(session, slot.id, booked)
    when = _utc(now)
    for entry_id in candidates:
        # claimed conditionally: two workers offering at once never pick the same person
        claimed = await session.execute(
            update(WaitlistEntry)
            .where(WaitlistEntry.id == entry_id, WaitlistEntry.status == "waiting")
            .values(
                status="offered",
                offered_at=when,
                offer_expires_at=when + dt.timedelta(minutes=hold_minutes),
                held_session_id=slot.id,
            )
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount == 1:
            return await session.get(WaitlistEntry, entry_id, populate_existing=True)
    await _free_and_mirror(session, slot.id)
    return None


async def _owned_entry(
    session: AsyncSession, entry_id: int, owner: Account | HealthBook
) -> tuple[WaitlistEntry, HealthBook]:
    entry = await session.get(WaitlistEntry, entry_id, populate_existing=True)
    if entry is None:
        raise DomainError("waitlist.not_found")
    book_ = await _book_or_error(session, entry.health_book_id)
    if not _owns(owner, book_):
        raise DomainError("waitlist.not_yours")
    return entry, book_


async def accept_offer(
    session: AsyncSession, entry_id: int, owner: Account | HealthBook, now: dt.datetime
) -> Booking:
    """Turn a held place into a booking, unless the offer has expired."""
    entry, book_ = await _owned_entry(session, entry_id, owner)
    if entry.status != "offered":
        raise DomainError("waitlist.not_offered", status=entry.status)
    when = _utc(now)
    if entry.offer_expires_at is None or _aware(entry.offer_expires_at) <= when:
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

    booking = await _insert_booking(session, plan, take_place=False, before=claim)
    await session.execute(
        update(WaitlistEntry)
        .where(WaitlistEntry.id == entry.id)
        .values(booking_id=booking.id)
        .execution_options(synchronize_session=False)
    )
    _set(entry, status="accepted", booking_id=booking.id)
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
        await _free_and_mirror(session, entry.held_session_id)
    _set(entry, status="cancelled")
    return entry


async def expire_offers(
    session: AsyncSession, now: dt.datetime, hold_minutes: int = DEFAULT_HOLD_MINUTES
) -> list[WaitlistEntry]:
    """Release the places held by expired offers and offer each to the next person waiting;
    returns the new offers (to message). Run it periodically: the rows are the schedule."""
    when = _utc(now)
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
        await _free_and_mirror(session, held)
        offer = await offer_freed_place(session, held, now, hold_minutes)
        if offer is not None:
            offers.append(offer)
    return offers


# --- staff: check-in and recording --------------------------------------------------------------


async def require_site_staff(session: AsyncSession, staff: Account, site_id: int) -> None:
    """Refuse unless the account is site staff bound to this site (admins: every site)."""
    if staff.role not in STAFF_ROLES:
        raise DomainError("checkin.not_staff")
    if staff.role == "admin":
        return
    bound = await session.scalar(
        select(StaffSite.site_id).where(
            StaffSite.account_id == staff.id, StaffSite.site_id == site_id
        )
    )
    if bound is None:
        raise DomainError("checkin.not_your_site")


async def grant_staff(session: AsyncSession, account: Account, site: Site | str | int) -> StaffSite:
    """Bind an account to a site as site staff (idempotent); an admin keeps their role."""
    site = await get_site(session, site)
    if account.role != "admin":
        account.role = "site_staff"
    link = await session.get(StaffSite, (account.id, site.id))
    if link is None:
        link = StaffSite(account_id=account.id, site_id=site.id)
        session.add(link)
    await session.flush()
    return link


async def check_in(session: AsyncSession, staff: Account, code: str, now: dt.datetime) -> CheckIn:
    """Check a person in by their booking code, on the session's day, at the staff's own site;
    checking in twice is harmless."""
    booking = await find_booking_by_code(session, code)
    await require_site_staff(session, staff, booking.session.site_id)
    book_ = booking.health_book
    today = local_date(now)
    if booking.status != "checked_in":
        if booking.status != "booked":
            raise DomainError("checkin.not_active", status=booking.status)
        if booking.session.date != today:
            raise DomainError("checkin.wrong_day", date=booking.session.date)
        when = _utc(now)
        result = await session.execute(
            update(Booking)
            .where(Booking.id == booking.id, Booking.status == "booked")
            .values(status="checked_in", checked_in_at=when, checked_in_by=staff.id)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # cancelled at this very moment
            raise DomainError("checkin.not_active", status="cancelled")
        _set(booking, status="checked_in", checked_in_at=when, checked_in_by=staff.id)
    return CheckIn(booking, book_, screening_group(book_, today))


def require_checked_in_today(booking: Booking, now: dt.datetime, key: str) -> None:
    """Refuse an outcome (a dose, or why none was given) unless the person was checked in and
    it is the session's day: a forged or early button cannot close a booking nobody has seen
    (``key`` names the refusal of a booking not checked in)."""
    if booking.status != "checked_in":
        raise DomainError(key, status=booking.status)
    if booking.session.date != local_date(now):
        raise DomainError("checkin.wrong_day", date=booking.session.date)


def _clean(text: str, max_len: int, key: str) -> str:
    try:
        cleaned = v.clean_text(text, max_len=max_len)
    except v.InvalidAnswer:
        raise DomainError(key, max=max_len) from None
    assert cleaned is not None
    return cleaned


async def record_dose(
    session: AsyncSession,
    staff: Account,
    booking_ref: Booking | str | int,
    vaccine_code: str,
    lot: str,
    given_at: dt.datetime,
) -> DoseWindow | None:
    """Record the dose given to a person checked in today; returns the window of their next
    dose, if the schedule has one."""
    booking = await _load_booking(session, booking_ref)
    await require_site_staff(session, staff, booking.session.site_id)
    require_checked_in_today(booking, given_at, "vaccination.not_checked_in")
    campaign = booking.campaign
    if vaccine_code not in (campaign.vaccine_codes or []):
        raise DomainError(
            "vaccination.wrong_vaccine",
            vaccine=vaccine_code,
            allowed=", ".join(campaign.vaccine_codes or []),
        )
    lot_number = _clean(lot, _MAX_LOT_LEN, "vaccination.lot_invalid")
    when = _utc(given_at)
    await _open_transaction(session)
    try:
        async with session.begin_nested():
            result = await session.execute(
                update(Booking)
                .where(Booking.id == booking.id, Booking.status == "checked_in")
                .values(status="vaccinated", outcome_at=when, outcome_by=staff.id)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:
                raise DomainError("vaccination.not_checked_in", status=booking.status)
            session.add(
                Vaccination(
                    health_book_id=booking.health_book_id,
                    campaign_id=campaign.id,
                    dose=booking.dose,
                    vaccine_code=vaccine_code,
                    lot_number=lot_number,
                    given_at=when,
                    site_id=booking.session.site_id,
                    recorded_by=staff.id,
                    booking_id=booking.id,
                )
            )
            await session.flush()
    except IntegrityError:  # this dose is already on record (entered by hand, say)
        raise DomainError("vaccination.duplicate", dose=booking.dose) from None
    _set(booking, status="vaccinated", outcome_at=when, outcome_by=staff.id)
    return await eligible_doses(session, booking.health_book, campaign, local_date(given_at))


async def record_not_vaccinated(
    session: AsyncSession,
    staff: Account,
    booking_ref: Booking | str | int,
    reason: str,
    now: dt.datetime,
) -> Booking:
    """Record that a person checked in today was not vaccinated (postponed at the site…), and
    why; the place stays used and the person may book the same dose again."""
    booking = await _load_booking(session, booking_ref)
    await require_site_staff(session, staff, booking.session.site_id)
    if booking.status not in BOOKING_ACTIVE:
        raise DomainError("checkin.not_active", status=booking.status)
    require_checked_in_today(booking, now, "outcome.not_checked_in")
    why = _clean(reason, _MAX_REASON_LEN, "vaccination.reason_invalid")
    when = _utc(now)
    result = await session.execute(
        update(Booking)
        .where(Booking.id == booking.id, Booking.status == "checked_in")
        .values(status="not_vaccinated", outcome_reason=why, outcome_at=when, outcome_by=staff.id)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise DomainError("checkin.not_active", status=booking.status)
    _set(booking, status="not_vaccinated", outcome_reason=why, outcome_at=when, outcome_by=staff.id)
    return booking

