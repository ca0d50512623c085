"""After a dose: the check-in planned for the next day, the person's answer to it (a reaction
report: fine, mild or serious), the alert a serious one sends to the staff of the site, and
what the staff see of the reports.

A report belongs to one booking (one dose). It can only grow more serious: a later answer
that is worse replaces it (a serious one then alerts the staff), a same or milder one leaves
it as it was, so that nothing a person once reported as serious is hidden by a later tap."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import custody, outbox
from models.checkin import STAFF_ROLES
from models.errors import DomainError
from models.reminders import Timing, due_at
from models.tables import (
    Account,
    Booking,
    HealthBook,
    OutboxMessage,
    Reaction,
    Site,
    StaffSite,
    Vaccination,
)
from models.timeutil import as_aware, to_utc

CHECKIN = "aftercare_checkin"  # the reminder rule and the outbox kind of the check-in
ALERT = "reaction_alert"  # the outbox kind of the alert to the site's staff
SEVERITIES = ("fine", "mild", "serious")  # mildest first
RANK = {severity: n for n, severity in enumerate(SEVERITIES)}
#: how long after the dose the check-in may be answered, and how far back staff see reports
ANSWER_DAYS = 7
RECENT_DAYS = 7


async def plan_checkin(
    session: AsyncSession, booking: Booking, given_at: dt.datetime, timing: Timing
) -> OutboxMessage | None:
    """Plan the check-in of a dose just recorded (in the caller's transaction): by the
    ``aftercare_checkin`` rule anchored at ``given_at`` (the next day at 09:00 by default),
    held past the quiet hours unless the rule allows them, once per booking. None when the
    rule is switched off, its time has passed already, or it is planned already."""
    rule = await outbox.rule(session, CHECKIN)
    if rule is None or not rule.active:
        return None
    dedupe = f"{CHECKIN}:{booking.id}"
    if await session.scalar(select(OutboxMessage.id).where(OutboxMessage.dedupe == dedupe)):
        return None
    due = due_at(rule, given_at, timing)
    if due < to_utc(timing.now):
        return None
    book_account = await custody.recipient_of(session, booking.health_book_id)
    if book_account is None:
        return None
    return outbox.enqueue(
        session,
        kind=CHECKIN,
        account_id=book_account,
        due_at=due,
        health_book_id=booking.health_book_id,
        booking_id=booking.id,
        anchor_at=given_at,
        quiet_ok=rule.quiet_ok,
        dedupe=dedupe,
    )


@dataclass(frozen=True)
class Dose:
    """A dose the check-in asks about: its booking, health book and vaccination record."""

    booking: Booking
    book: HealthBook
    vaccination: Vaccination


async def dose_of(session: AsyncSession, booking_id: int) -> Dose | None:
    """The dose given at a booking, or None (no such booking, book or dose any more)."""
    booking = await session.get(Booking, booking_id)
    if booking is None:
        return None
    book = await session.get(HealthBook, booking.health_book_id)
    vaccination = await session.scalar(
        select(Vaccination).where(Vaccination.booking_id == booking_id).limit(1)
    )
    if book is None or vaccination is None:
        return None
    return Dose(booking, book, vaccination)


async def reaction_of(session: AsyncSession, booking_id: int) -> Reaction | None:
    """The report of a booking's dose, if any (the most serious, should there be two)."""
    rows = (await session.scalars(select(Reaction).where(Reaction.booking_id == booking_id))).all()
    return max(rows, key=lambda r: (RANK.get(r.severity, 0), r.id), default=None)


@dataclass(frozen=True)
class Reported:
    """What an answer to the check-in did: the report as it stands, whether the answer
    changed it, and how many staff were alerted."""

    reaction: Reaction
    changed: bool
    alerted: int
    dose: Dose


async def report(
    session: AsyncSession, person: Account, booking_id: int, severity: str, now: dt.datetime
) -> Reported:
    """Store the person's answer to the check-in of a dose (DomainError ``aftercare.not_found``
    for a booking that is not theirs or has no dose, ``aftercare.closed`` after
    :data:`ANSWER_DAYS`); a serious report alerts the site's staff (:func:`alert_staff`)."""
    if severity not in RANK:
        raise DomainError("aftercare.not_found")
    dose = await dose_of(session, booking_id)
    # the person, their relative's holder, or the volunteer helping them (models/custody.py)
    if dose is None or await custody.access(session, person, dose.book) is None:
        raise DomainError("aftercare.not_found")
    if to_utc(now) - as_aware(dose.vaccination.given_at) > dt.timedelta(days=ANSWER_DAYS):
        raise DomainError("aftercare.closed")
    reaction = await reaction_of(session, booking_id)
    if reaction is not None and RANK[severity] <= RANK.get(reaction.severity, 0):
        return Reported(reaction, False, 0, dose)
    if reaction is None:
        reaction = Reaction(
            booking_id=booking_id,
            health_book_id=dose.book.id,
            site_id=dose.vaccination.site_id,
            dose=dose.vaccination.dose,
            severity=severity,
            reported_at=to_utc(now),
        )
        session.add(reaction)
    else:
        reaction.severity = severity
        reaction.reported_at = to_utc(now)
    await session.flush()
    alerted = await alert_staff(session, reaction, now) if severity == "serious" else 0
    return Reported(reaction, True, alerted, dose)


async def alert_staff(session: AsyncSession, reaction: Reaction, now: dt.datetime) -> int:
    """Queue a ``reaction_alert`` to each staff account of the reaction's site, due now and
    sent in quiet hours too; how many."""
    if reaction.site_id is None:
        return 0
    staff = (
        await session.scalars(
            select(StaffSite.account_id)
            .where(StaffSite.site_id == reaction.site_id)
            .order_by(StaffSite.account_id)
        )
    ).all()
    for account_id in staff:
        outbox.enqueue(
            session,
            kind=ALERT,
            account_id=account_id,
            due_at=now,
            booking_id=reaction.booking_id,
            ref_id=reaction.id,
            quiet_ok=True,
            dedupe=f"{ALERT}:{reaction.id}:{account_id}",
        )
    return len(staff)


async def staff_sees(session: AsyncSession, staff: Account, site_id: int | None) -> bool:
    """Whether a staff account sees a site's reports (admins see every site's; a suspended
    account none)."""
    if staff.suspended_at is not None:
        return False
    if staff.role == "admin":
        return True
    if staff.role not in STAFF_ROLES or site_id is None:
        return False
    found = await session.get(StaffSite, (staff.id, site_id))
    return found is not None


@dataclass(frozen=True)
class SeenReport:
    """A reaction report as staff see it: no name, only what the check-in showed them."""

    reaction: Reaction
    code: str
    site: str


def _recent(staff: Account, now: dt.datetime, days: int) -> list[ColumnElement[bool]]:
    """Which reports a staff member sees: the last ``days`` days, at their sites (an admin's:
    every site)."""
    where = [Reaction.reported_at >= to_utc(now) - dt.timedelta(days=days)]
    if staff.role != "admin":
        mine = select(StaffSite.site_id).where(StaffSite.account_id == staff.id)
        where.append(Reaction.site_id.in_(mine))
    return where


async def recent_reports(
    session: AsyncSession,
    staff: Account,
    now: dt.datetime,
    days: int = RECENT_DAYS,
    *,
    limit: int | None = None,
) -> list[SeenReport]:
    """The reports of the last ``days`` days at the staff's sites (an admin's: every site),
    by site, serious first, newest first; the first ``limit`` only, sorted and cut by the
    database (a province's week of answers is never loaded)."""
    rank = case(RANK, value=Reaction.severity, else_=0)
    stmt = (
        select(Reaction, Booking.code, Site.name)
        .join(Booking, Booking.id == Reaction.booking_id)
        .join(Site, Site.id == Reaction.site_id)
        .where(*_recent(staff, now, days))
        .order_by(Site.name, rank.desc(), Reaction.reported_at.desc(), Reaction.id.desc())
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    rows = (await session.execute(stmt)).all()
    return [SeenReport(reaction, code, site) for reaction, code, site in rows]


async def count_reports(
    session: AsyncSession, staff: Account, now: dt.datetime, days: int = RECENT_DAYS
) -> int:
    """How many reports :func:`recent_reports` would list without a limit."""
    stmt = (
        select(func.count())
        .select_from(Reaction)
        .join(Booking, Booking.id == Reaction.booking_id)
        .join(Site, Site.id == Reaction.site_id)
        .where(*_recent(staff, now, days))
    )
    return int(await session.scalar(stmt) or 0)


__all__ = [
    "ALERT",
    "ANSWER_DAYS",
    "CHECKIN",
    "RECENT_DAYS",
    "SEVERITIES",
    "Dose",
    "Reported",
    "SeenReport",
    "alert_staff",
    "count_reports",
    "dose_of",
    "plan_checkin",
    "reaction_of",
    "recent_reports",
    "report",
    "staff_sees",
]
