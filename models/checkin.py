"""Site staff: who may act at a site, granting that, checking people in, and recording a dose
given or why none was."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from models import audit
from models import reminders as rm
from models import validators as v
from models.booking import find_booking_by_code, load_booking
from models.eligibility import DoseWindow, eligible_doses, screening_group
from models.errors import DomainError
from models.healthbook import ensure_account
from models.lookups import get_site
from models.places import open_transaction, set_loaded
from models.tables import BOOKING_ACTIVE, Account, Booking, HealthBook, Site, StaffSite, Vaccination
from models.timeutil import local_date, to_utc

STAFF_ROLES = frozenset({"site_staff", "admin"})


def _audit_role(staff: Account) -> str:
    """The audit role of whoever acts at a site (always for another person)."""
    return "admin" if staff.role == "admin" else "site_staff"


_MAX_LOT_LEN = 32
#: a Telegram user id: a positive integer of at most 52 significant bits (the Bot API's word)
_TELEGRAM_ID = re.compile(r"[1-9][0-9]{0,15}")
_TELEGRAM_ID_MAX = 2**52 - 1
#: a Zalo user id: a string of letters and digits (``6ede9afa66b88fe6d6a9``)
_ZALO_ID = re.compile(r"[0-9A-Za-z]{1,64}")
_MAX_REASON_LEN = 500


@dataclass(frozen=True)
class CheckIn:
    """A checked-in booking, the person, and their self-declared screening group (advisory)."""

    booking: Booking
    book: HealthBook
    group: v.ScreeningGroup


async def require_site_staff(session: AsyncSession, staff: Account, site_id: int) -> None:
    """Refuse unless the account is site staff bound to this site (admins: every site) and
    not suspended (``healthbook volunteers suspend``)."""
    if staff.role not in STAFF_ROLES or staff.suspended_at is not None:
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


def staff_external_id(channel: str, raw: str) -> str:
    """The id of a messenger account as given by an operator, strictly checked: on Telegram a
    positive integer (ASCII digits, no sign or spaces, at most 2**52 - 1), on Zalo 1 to 64
    letters and digits. Raises ``ValueError`` naming what is wrong (never the id itself)."""
    if channel == "telegram":
        if not (_TELEGRAM_ID.fullmatch(raw) and raw.isascii() and int(raw) <= _TELEGRAM_ID_MAX):
            raise ValueError("a Telegram id is a positive whole number")
        return raw
    if channel == "zalo":
        if not (_ZALO_ID.fullmatch(raw) and raw.isascii()):
            raise ValueError("a Zalo id is 1 to 64 letters and digits")
        return raw
    raise ValueError(f"unknown channel {channel!r}")


async def grant_staff_to(
    session: AsyncSession, channel: str, external_id: str, site: Site | str | int
) -> Account:
    """Make the account ``(channel, external_id)`` site staff at ``site`` (the account is
    created if the person never wrote yet; the id is checked with :func:`staff_external_id`,
    the site with :func:`~models.lookups.get_site`, before anything is written)."""
    external_id = staff_external_id(channel, external_id)
    site = await get_site(session, site)
    account = await ensure_account(session, channel, external_id)
    await grant_staff(session, account, site)
    return account


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
        when = to_utc(now)
        result = await session.execute(
            update(Booking)
            .where(Booking.id == booking.id, Booking.status == "booked")
            .values(status="checked_in", checked_in_at=when, checked_in_by=staff.id)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # cancelled at this very moment
            raise DomainError("checkin.not_active", status="cancelled")
        set_loaded(booking, status="checked_in", checked_in_at=when, checked_in_by=staff.id)
        await audit.record(
            session, staff, book_, "checked_in", role=_audit_role(staff), fields=["status"]
        )
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
    *,
    timing: rm.Timing | None = None,
) -> DoseWindow | None:
    """Record the dose given to a person checked in today; returns the window of their next
    dose, if the schedule has one. The appointment's pending reminders are cancelled; with
    ``timing``, the next dose's reminders are planned (due, and due again)."""
    booking = await load_booking(session, booking_ref)
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
    when = to_utc(given_at)
    await open_transaction(session)
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
    set_loaded(booking, status="vaccinated", outcome_at=when, outcome_by=staff.id)
    await audit.record(
        session,
        staff,
        booking.health_book,
        "vaccinated",
        role=_audit_role(staff),
        fields=["status", "vaccine_code", "lot_number", "given_at"],
    )
    await rm.cancel_appointment(session, booking.id, "vaccinated")
    window = await eligible_doses(session, booking.health_book, campaign, local_date(given_at))
    if window is not None and timing is not None:
        await rm.plan_dose_due(
            session,
            booking.health_book,
            campaign.id,
            window.dose,
            window.earliest,
            timing,
            latest=window.latest,
        )
    return window


async def record_not_vaccinated(
    session: AsyncSession,
    staff: Account,
    booking_ref: Booking | str | int,
    reason: str,
    now: dt.datetime,
) -> Booking:
    """Record that a person checked in today was not vaccinated (postponed at the site…), and
    why; the place stays used and the person may book the same dose again."""
    booking = await load_booking(session, booking_ref)
    await require_site_staff(session, staff, booking.session.site_id)
    if booking.status not in BOOKING_ACTIVE:
        raise DomainError("checkin.not_active", status=booking.status)
    require_checked_in_today(booking, now, "outcome.not_checked_in")
    why = _clean(reason, _MAX_REASON_LEN, "vaccination.reason_invalid")
    when = to_utc(now)
    result = await session.execute(
        update(Booking)
        .where(Booking.id == booking.id, Booking.status == "checked_in")
        .values(status="not_vaccinated", outcome_reason=why, outcome_at=when, outcome_by=staff.id)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise DomainError("checkin.not_active", status=booking.status)
    await rm.cancel_appointment(session, booking.id, "not vaccinated")
    await audit.record(
        session,
        staff,
        booking.health_book,
        "not_vaccinated",
        role=_audit_role(staff),
        fields=["status", "outcome_reason"],
    )
    set_loaded(
        booking, status="not_vaccinated", outcome_reason=why, outcome_at=when, outcome_by=staff.id
    )
    return booking
