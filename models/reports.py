"""Weekly coverage reports: who of each agency's staff joined, completed a health book, booked,
was vaccinated, and how many relatives they registered; residents per commune or ward.

A report is taken at a *moment*: the end of an ISO week in the province's time (``2026-W48``
ends on Monday 30 November 2026 at 00:00 in Asia/Ho_Chi_Minh), or now (a live report). Each
person is counted where they were at that moment (memberships are dated). The counting is done
in SQL, one GROUP BY per figure, so memory follows the number of agencies and communes, never
the number of residents.

Each week's figures are stored (:class:`~models.tables.ReportWeek`, one
:class:`~models.tables.AgencyWeek` per agency with its *own* members' figures, one
:class:`~models.tables.WardWeek` per commune), so a past week's report comes out the same
later and the week-on-week change is real. A subtree's figures are summed from its agencies'
own figures when a report is built (:func:`roll_up`): a parent is its own members plus its
children, the province is the sum of the top-level agencies.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field, replace
from zoneinfo import ZoneInfo

from sqlalchemy import (
    CTE,
    ColumnElement,
    Integer,
    and_,
    case,
    delete,
    distinct,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    union_all,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from models.tables import (
    Agency,
    AgencyMember,
    AgencyWeek,
    Booking,
    HealthBook,
    ReportWeek,
    Vaccination,
    WardWeek,
)
from models.timeutil import as_aware, local_date, to_utc

_WEEK = re.compile(r"^\s*(\d{4})-?[Ww](\d{1,2})\s*$")

#: a report's scopes: one agency and its sub-units, the province (every agency), the communes
SCOPES = ("agency", "province", "communes")
#: adults: 18 and older at the report's moment
ADULT_AGE = 18
#: the years a week may be asked for (typed in the chat or the command line)
FIRST_YEAR, LAST_YEAR = 2000, 2099


# --------------------------------------------------------------------------------------------
# Weeks
# --------------------------------------------------------------------------------------------


def parse_week(text: str) -> str:
    """An ISO week, ``2026-W48`` (also ``2026w48``, ``2026-W5``), normalized; ValueError when
    it is not one (week 53 only in the years that have it) or its year is not between
    :data:`FIRST_YEAR` and :data:`LAST_YEAR` (a far year would overflow the date arithmetic)."""
    m = _WEEK.match(text)
    if m is None:
        raise ValueError("a week is written YEAR-Wnn")
    year, week = int(m.group(1)), int(m.group(2))
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise ValueError(f"a week's year is between {FIRST_YEAR} and {LAST_YEAR}")
    try:
        dt.date.fromisocalendar(year, week, 1)
    except ValueError:
        raise NoSuchWeek(year, week) from None
    return f"{year:04d}-W{week:02d}"


class NoSuchWeek(ValueError):
    """A week written right whose year has no such week (``2026-W60``, ``2026-W53``)."""

    def __init__(self, year: int, number: int) -> None:
        super().__init__(f"{year} has no week {number}")
        self.year, self.number = year, number


def latest_week_numbered(number: int, now: dt.datetime, tz: ZoneInfo) -> str:
    """The latest week that has ended at ``now`` and has this number (``W47``: this year's
    week 47 once it has ended, else last year's); :class:`NoSuchWeek` when that year has no
    such week."""
    last = last_complete_week(now, tz)
    year, last_number = int(last[:4]), int(last[-2:])
    if number > last_number:
        year -= 1
    return parse_week(f"{year}-W{number}")


def week_monday(week: str) -> dt.date:
    """The Monday a week starts on (a week as :func:`parse_week` or this module wrote it; the
    week after :data:`LAST_YEAR`'s last is one too: it is where that week ends)."""
    m = _WEEK.match(week)
    if m is None:
        raise ValueError("a week is written YEAR-Wnn")
    return dt.date.fromisocalendar(int(m.group(1)), int(m.group(2)), 1)


def week_start(week: str, tz: ZoneInfo) -> dt.datetime:
    """When a week starts: its Monday at 00:00 in the province's time (UTC)."""
    return to_utc(dt.datetime.combine(week_monday(week), dt.time(0), tzinfo=tz))


def week_end(week: str, tz: ZoneInfo) -> dt.datetime:
    """When a week ends, the moment its report counts at: the next Monday at 00:00 (UTC)."""
    return week_start(shift_week(week, 1), tz)


def week_of(moment: dt.datetime, tz: ZoneInfo) -> str:
    """The week a moment falls in, in the province's time."""
    year, week, _ = as_aware(moment).astimezone(tz).date().isocalendar()
    return f"{year:04d}-W{week:02d}"


def shift_week(week: str, weeks: int) -> str:
    """The week ``weeks`` after (before, when negative) ``week``."""
    monday = week_monday(week) + dt.timedelta(weeks=weeks)
    year, num, _ = monday.isocalendar()
    return f"{year:04d}-W{num:02d}"


def last_complete_week(now: dt.datetime, tz: ZoneInfo) -> str:
    """The latest week that has ended at ``now``: the one before the week ``now`` is in."""
    return shift_week(week_of(now, tz), -1)


# --------------------------------------------------------------------------------------------
# Figures and reports (the shapes the counting fills and the files, chart and messages read)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """Staff figures of one agency's own members, or summed over a subtree.

    ``joined``: staff who joined (``/agency CODE``) and had not left at the moment;
    ``complete``: of them, those with a saved health book of their own; ``booked``: those with
    an appointment of their own made and not cancelled; ``doses[n-1]``: those vaccinated with
    dose n; ``relatives``: health books of relatives that staff registered (not staff)."""

    joined: int = 0
    complete: int = 0
    booked: int = 0
    relatives: int = 0
    doses: tuple[int, ...] = ()

    def __add__(self, other: Figures) -> Figures:
        n = max(len(self.doses), len(other.doses))
        a = self.doses + (0,) * (n - len(self.doses))
        b = other.doses + (0,) * (n - len(other.doses))
        return Figures(
            self.joined + other.joined,
            self.complete + other.complete,
            self.booked + other.booked,
            self.relatives + other.relatives,
            tuple(x + y for x, y in zip(a, b, strict=True)),
        )

    @property
    def vaccinated(self) -> int:
        """Staff with at least one dose (dose 1 is everyone's first)."""
        return self.doses[0] if self.doses else 0


@dataclass(frozen=True)
class AgencyLine:
    """One agency in a report: its own figures and its subtree's (``total``), with last week's
    total for the change (None: no figures stored for last week)."""

    agency_id: int
    code: str
    name: str
    kind: str
    parent_id: int | None
    depth: int  # 0: the report's root (or a top-level agency in the province's report)
    expected: int  # expected staff, summed over the subtree
    own: Figures
    total: Figures
    previous: Figures | None = None


@dataclass(frozen=True)
class WardLine:
    """Residents of one commune or ward: every health book whose address is there."""

    ward_code: int
    province_code: int
    registered: int = 0
    adults: int = 0
    booked: int = 0
    vaccinated: int = 0
    adults_vaccinated: int = 0
    previous_registered: int | None = None  # last week's, for the change

    @property
    def adults_share(self) -> float | None:
        """The share of the adults registered here who are vaccinated (None: no adults)."""
        return self.adults_vaccinated / self.adults if self.adults else None


@dataclass
class Report:
    """A report as its messages, workbook and chart show it.

    ``week`` None: a live report, taken at ``moment`` (now). ``lines`` are in tree order (a
    parent before its children, depth first, siblings by code); the root first for an agency's
    report. ``total`` is the root's subtree, or the province's sum of top-level agencies."""

    scope: str  # one of SCOPES
    week: str | None
    moment: dt.datetime
    previous_week: str | None = None  # the week the change is counted from, when stored
    #: a stored week's: when its figures were taken, and whether that was late (is_late)
    taken_at: dt.datetime | None = None
    late: bool = False
    root: AgencyLine | None = None
    lines: list[AgencyLine] = field(default_factory=list)
    total: Figures = field(default_factory=Figures)
    previous_total: Figures | None = None
    wards: list[WardLine] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Counting (SQL, one GROUP BY per figure: memory follows agencies and communes, not residents)
# --------------------------------------------------------------------------------------------

#: relations of health books that are not a relative's (the holder's own, an assisted resident)
_NOT_RELATIVES = ("self", "assisted")


def _members_at(moment: dt.datetime, under: str | None) -> CTE:
    """Who was a member of which agency at ``moment`` (optionally of a subtree's agencies)."""
    query = select(AgencyMember.agency_id, AgencyMember.account_id).where(
        AgencyMember.joined_at <= moment,
        or_(AgencyMember.left_at.is_(None), AgencyMember.left_at > moment),
    )
    if under is not None:
        # one bound pattern (not ``path || '%'``): the prefix match can use the path index
        query = query.join(Agency, Agency.id == AgencyMember.agency_id).where(
            Agency.path.like(under + "%")
        )
    return query.cte("m")


def _live_booking(moment: dt.datetime) -> ColumnElement[bool]:
    """A booking made at or before ``moment`` and not cancelled by then."""
    return and_(
        Booking.created_at <= moment,
        or_(Booking.cancelled_at.is_(None), Booking.cancelled_at > moment),
    )


# the figures of own_figures' one statement, as its first column says
_JOINED, _COMPLETE, _BOOKED, _RELATIVES, _DOSE = range(5)


async def own_figures(
    session: AsyncSession, moment: dt.datetime, *, under: str | None = None
) -> dict[int, Figures]:
    """Each agency's own members' figures at ``moment``, by agency id (agencies without a
    member are absent). ``under``: only the agencies whose path starts with it (a subtree).

    One statement of five GROUP BYs (joined; complete; booked; per dose; relatives), each
    counting distinct accounts (or books, for relatives), so nobody is counted twice in an
    agency; the members' health books are read once (a common table) for all of them."""
    moment = to_utc(moment)
    m = _members_at(moment, under)
    books = (
        select(m.c.agency_id, m.c.account_id, HealthBook.id.label("book_id"), HealthBook.relation)
        .join(
            HealthBook,
            and_(HealthBook.account_id == m.c.account_id, HealthBook.created_at <= moment),
        )
        .cte("mb")
    )
    own = books.c.relation == "self"
    people = func.count(distinct(books.c.account_id))

    def figure(n: int) -> ColumnElement[int]:
        return literal_column(str(n), Integer)

    zero = literal_column("0", Integer)
    statement = union_all(
        select(figure(_JOINED), m.c.agency_id, zero, func.count(distinct(m.c.account_id)))
        .group_by(m.c.agency_id),
        select(figure(_COMPLETE), books.c.agency_id, zero, people)
        .where(own)
        .group_by(books.c.agency_id),
        select(figure(_BOOKED), books.c.agency_id, zero, people)
        .join(Booking, and_(Booking.health_book_id == books.c.book_id, _live_booking(moment)))
        .where(own)
        .group_by(books.c.agency_id),
        select(figure(_RELATIVES), books.c.agency_id, zero, func.count(distinct(books.c.book_id)))
        .where(books.c.relation.not_in(_NOT_RELATIVES))
        .group_by(books.c.agency_id),
        select(figure(_DOSE), books.c.agency_id, Vaccination.dose, people)
        .join(
            Vaccination,
            and_(Vaccination.health_book_id == books.c.book_id, Vaccination.given_at <= moment),
        )
        .where(own, Vaccination.dose >= 1)
        .group_by(books.c.agency_id, Vaccination.dose),
    )
    counts: dict[int, list[int]] = {}  # agency → joined, complete, booked, relatives
    doses: dict[int, dict[int, int]] = {}
    for kind, agency_id, dose, n in await session.execute(statement):
        if kind == _DOSE:
            doses.setdefault(agency_id, {})[dose] = int(n)
        else:
            counts.setdefault(agency_id, [0, 0, 0, 0])[kind] = int(n)
    width = max((max(d) for d in doses.values()), default=0)
    return {
        agency_id: Figures(
            joined=joined,
            complete=complete,
            booked=booked,
            relatives=relatives,
            doses=tuple(doses.get(agency_id, {}).get(n, 0) for n in range(1, width + 1)),
        )
        for agency_id, (joined, complete, booked, relatives) in counts.items()
    }


def adult_cutoff(moment: dt.datetime) -> dt.date:
    """The latest birth date of an adult at ``moment`` (18 years before its local date; born
    on 29 February: adult on 1 March in the years without one)."""
    day = local_date(moment)
    try:
        return day.replace(year=day.year - ADULT_AGE)
    except ValueError:  # 29 February
        return day.replace(year=day.year - ADULT_AGE, day=28)


async def ward_figures(session: AsyncSession, moment: dt.datetime) -> list[WardLine]:
    """Residents per commune or ward at ``moment``: every health book registered there (own,
    relatives', assisted residents'), by province and ward code. One GROUP BY over the books,
    joined to the distinct books with a live booking and with a dose given by then."""
    moment = to_utc(moment)
    adult = HealthBook.date_of_birth <= adult_cutoff(moment)
    booked = (
        select(Booking.health_book_id).where(_live_booking(moment)).distinct().subquery("b")
    )
    dosed = (
        select(Vaccination.health_book_id)
        .where(Vaccination.given_at <= moment)
        .distinct()
        .subquery("v")
    )
    one = literal(1)
    rows = await session.execute(
        select(
            HealthBook.ward_code,
            HealthBook.province_code,
            func.count(HealthBook.id),
            func.count(case((adult, one))),
            func.count(booked.c.health_book_id),
            func.count(dosed.c.health_book_id),
            func.count(case((and_(adult, dosed.c.health_book_id.is_not(None)), one))),
        )
        .outerjoin(booked, booked.c.health_book_id == HealthBook.id)
        .outerjoin(dosed, dosed.c.health_book_id == HealthBook.id)
        .where(HealthBook.created_at <= moment)
        .group_by(HealthBook.province_code, HealthBook.ward_code)
        .order_by(HealthBook.province_code, HealthBook.ward_code)
    )
    return [
        WardLine(ward, province, int(reg), int(adults), int(bk), int(vx), int(avx))
        for ward, province, reg, adults, bk, vx, avx in rows
    ]


# --------------------------------------------------------------------------------------------
# Snapshots
# --------------------------------------------------------------------------------------------


class NoAgencies(ValueError):
    """No agency existed at the week's end (none yet, or all imported since): the week is not
    stored (it would be stored empty for good); the agencies are imported first (``healthbook
    agencies import``) and reports start with the week of the import."""

    def __init__(self) -> None:
        super().__init__("no agencies yet: import them first (healthbook agencies import)")


class NotStored(ValueError):
    """A week whose figures were not stored and can no longer be counted as they were (it is
    older than the last complete week). ``example``: the stored week nearest to it, else the
    last complete week (which can be stored)."""

    def __init__(self, week: str, example: str) -> None:
        super().__init__(f"no figures were stored for week {week} (e.g. week {example})")
        self.week, self.example = week, example


def is_late(stored: ReportWeek) -> bool:
    """Whether a week's figures were stored late: after the week that followed it had ended
    too (``healthbook report snapshot --late``). They are counted at the week's end, but with
    the agencies' tree, names and expected staff, and the health books, as they were when
    stored; the change since last week is never counted from such a week."""
    return as_aware(stored.taken_at) >= as_aware(stored.moment) + dt.timedelta(weeks=1)


async def nearest_week(session: AsyncSession, week: str, tz: ZoneInfo, now: dt.datetime) -> str:
    """The stored week nearest to ``week`` (the later of two as near); the last complete week
    at ``now`` when none is stored."""
    earlier = await session.scalar(
        select(ReportWeek.week).where(ReportWeek.week < week).order_by(ReportWeek.week.desc())
        .limit(1)
    )  # fmt: skip
    later = await session.scalar(
        select(ReportWeek.week).where(ReportWeek.week > week).order_by(ReportWeek.week).limit(1)
    )
    if earlier is None or later is None:
        return later or earlier or last_complete_week(now, tz)
    monday = week_monday(week)
    if monday - week_monday(earlier) < week_monday(later) - monday:
        return earlier
    return later


async def take_snapshot(
    session: AsyncSession, week: str, tz: ZoneInfo, now: dt.datetime, *, late: bool = False
) -> ReportWeek:
    """Store a week's figures (once: a week already stored is returned as it is), counted at
    its end: one row per agency (its own members; its code, name, place in the tree and
    expected staff copied) and one per commune or ward with health books. ValueError when the
    week has not ended at ``now``; :class:`NotStored` when it is not stored and older than the
    last complete week, unless ``late`` (the command line's ``--late``: counted at its end
    with today's tree and data, see :func:`is_late`). Another process storing the same week at
    once: its row wins and is returned."""
    week = parse_week(week)
    moment = week_end(week, tz)
    if as_aware(now) < moment:
        last = last_complete_week(now, tz)
        raise ValueError(f"week {week} has not ended yet (the last complete week is {last})")
    stored = await session.get(ReportWeek, week)
    if stored is not None:
        return stored
    if not late and week != last_complete_week(now, tz):
        raise NotStored(week, await nearest_week(session, week, tz, now))
    # no agency yet, or only ones imported after the week ended (the install's first days):
    # such a week would be stored empty for good; reports start with the import's week
    if await session.scalar(select(Agency.id).where(Agency.created_at <= moment).limit(1)) is None:
        raise NoAgencies()
    figures = await own_figures(session, moment)
    wards = await ward_figures(session, moment)
    agencies = await session.execute(
        select(
            Agency.id, Agency.code, Agency.name, Agency.kind, Agency.parent_id, Agency.path,
            Agency.expected_staff,
        ).where(Agency.created_at <= moment)  # an agency created since: not in that week
    )
    agency_rows = []
    for agency_id, code, name, kind, parent_id, path, expected in agencies:
        own = figures.get(agency_id, Figures())
        agency_rows.append(
            {
                "week": week, "agency_id": agency_id, "code": code, "name": name,
                "kind": kind, "parent_id": parent_id, "path": path,
                "expected_staff": expected, "joined": own.joined, "complete": own.complete,
                "booked": own.booked, "relatives": own.relatives, "doses": list(own.doses),
            }
        )  # fmt: skip
    ward_rows = [
        {
            "week": week, "ward_code": w.ward_code, "province_code": w.province_code,
            "registered": w.registered, "adults": w.adults, "booked": w.booked,
            "vaccinated": w.vaccinated, "adults_vaccinated": w.adults_vaccinated,
        }
        for w in wards
    ]  # fmt: skip
    try:
        async with session.begin_nested():
            await session.execute(
                insert(ReportWeek).values(week=week, moment=moment, taken_at=as_aware(now))
            )
            if agency_rows:  # one executemany, not a flush per row
                await session.execute(insert(AgencyWeek), agency_rows)
            if ward_rows:
                await session.execute(insert(WardWeek), ward_rows)
    except IntegrityError:  # the same week stored by another process meanwhile
        stored = await session.get(ReportWeek, week, populate_existing=True)
        if stored is None:
            raise
        return stored
    stored = await session.get(ReportWeek, week)
    assert stored is not None
    return stored


async def forget_week(session: AsyncSession, week: str) -> ReportWeek | None:
    """Delete a stored week's figures (its agencies', its communes', the week itself), e.g. a
    week stored empty before the agencies were imported; the week deleted, None when it was
    not stored. Its messages not yet sent are dropped when they come due (their renderer finds
    no week)."""
    stored = await session.get(ReportWeek, week)
    if stored is None:
        return None
    await session.execute(delete(AgencyWeek).where(AgencyWeek.week == week))
    await session.execute(delete(WardWeek).where(WardWeek.week == week))
    await session.delete(stored)
    await session.flush()
    return stored


async def stored_weeks(session: AsyncSession) -> list[ReportWeek]:
    """The weeks whose figures are stored, latest first."""
    return list(await session.scalars(select(ReportWeek).order_by(ReportWeek.week.desc())))


# --------------------------------------------------------------------------------------------
# Building a report (the roll-up: O(agencies) over the per-agency rows)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    """One agency's own figures with its place in the tree (live, or as a snapshot had it)."""

    agency_id: int
    code: str
    name: str
    kind: str
    parent_id: int | None
    path: str
    expected: int
    own: Figures


def _pad(figures: Figures, width: int) -> Figures:
    """The same figures with ``width`` doses (zeros added)."""
    extra = width - len(figures.doses)
    return figures if extra <= 0 else replace(figures, doses=figures.doses + (0,) * extra)


def roll_up(rows: list[_Row]) -> tuple[list[tuple[_Row, int]], dict[int, Figures], dict[int, int]]:
    """The rows in tree order with their depth (a parent before its children, depth first,
    siblings by code; an agency whose parent is not among the rows is a root, depth 0), each
    subtree's figures and each subtree's expected staff, by agency id."""
    by_id = {row.agency_id: row for row in rows}
    children: dict[int | None, list[_Row]] = {}
    for row in rows:
        parent = row.parent_id if row.parent_id in by_id else None
        children.setdefault(parent, []).append(row)
    for kids in children.values():
        kids.sort(key=lambda r: r.code)
    ordered: list[tuple[_Row, int]] = []
    stack = [(row, 0) for row in reversed(children.get(None, []))]
    while stack:
        row, depth = stack.pop()
        ordered.append((row, depth))
        stack.extend((kid, depth + 1) for kid in reversed(children.get(row.agency_id, [])))
    totals: dict[int, Figures] = {}
    expected: dict[int, int] = {}
    for row, _ in reversed(ordered):  # children before their parent
        kids = children.get(row.agency_id, [])
        totals[row.agency_id] = sum((totals[k.agency_id] for k in kids), row.own)
        expected[row.agency_id] = row.expected + sum(expected[k.agency_id] for k in kids)
    return ordered, totals, expected


async def _live_rows(session: AsyncSession, moment: dt.datetime, under: str | None) -> list[_Row]:
    figures = await own_figures(session, moment, under=under)
    query = select(
        Agency.id, Agency.code, Agency.name, Agency.kind, Agency.parent_id, Agency.path,
        Agency.expected_staff,
    )  # fmt: skip
    if under is not None:
        query = query.where(Agency.path.like(under + "%"))
    return [
        _Row(aid, code, name, kind, parent, path, expected, figures.get(aid, Figures()))
        for aid, code, name, kind, parent, path, expected in await session.execute(query)
    ]


async def _stored_rows(session: AsyncSession, week: str, root_id: int | None) -> list[_Row] | None:
    """A stored week's rows (the subtree of ``root_id`` as it was then); None when the root
    agency had no row that week."""
    query = select(AgencyWeek).where(AgencyWeek.week == week)
    if root_id is not None:
        root = await session.get(AgencyWeek, (week, root_id))
        if root is None:
            return None
        query = query.where(AgencyWeek.path.like(root.path + "%"))
    return [
        _Row(
            r.agency_id, r.code, r.name, r.kind, r.parent_id, r.path, r.expected_staff,
            Figures(r.joined, r.complete, r.booked, r.relatives, tuple(r.doses or ())),
        )
        for r in await session.scalars(query)
    ]  # fmt: skip


async def _stored_wards(session: AsyncSession, week: str) -> list[WardLine]:
    rows = await session.scalars(
        select(WardWeek)
        .where(WardWeek.week == week)
        .order_by(WardWeek.province_code, WardWeek.ward_code)
    )
    return [
        WardLine(
            w.ward_code, w.province_code, w.registered, w.adults, w.booked, w.vaccinated,
            w.adults_vaccinated,
        )
        for w in rows
    ]  # fmt: skip


async def build(
    session: AsyncSession,
    *,
    scope: str,
    tz: ZoneInfo,
    now: dt.datetime,
    week: str | None = None,
    agency: Agency | int | None = None,
) -> Report:
    """A report: of ``agency``'s subtree (scope ``agency``), of every agency and every commune
    (``province``), or of the communes only (``communes``); for a stored ``week`` or live at
    ``now``. A week not stored is stored now only when it is the last complete week (counted
    right after its end, it is exact); an older one raises :class:`NotStored`, a week not
    ended ValueError. The change is counted from the week before ``week`` (live: the last
    complete week) when its figures were stored in time (not :func:`is_late`), so a stored
    week's report never changes. ValueError: an unknown scope, no agency for scope
    ``agency``, or an agency that had no figures in that week."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    root_id: int | None = None
    if scope == "agency":
        if agency is None:
            raise ValueError("scope 'agency' needs an agency")
        root_id = agency if isinstance(agency, int) else agency.id
    taken: ReportWeek | None = None
    if week is not None:
        week = parse_week(week)
        taken = await take_snapshot(session, week, tz, now)
        moment = week_end(week, tz)
        previous_week = shift_week(week, -1)
    else:
        moment = as_aware(now)
        previous_week = last_complete_week(now, tz)
    before = await session.get(ReportWeek, previous_week)
    if before is None or is_late(before):
        previous_week = None
    report = Report(
        scope=scope, week=week, moment=moment, previous_week=previous_week,
        taken_at=taken.taken_at if taken else None, late=taken is not None and is_late(taken),
    )  # fmt: skip

    if scope in ("province", "communes"):
        report.wards = (
            await _stored_wards(session, week) if week else await ward_figures(session, moment)
        )
        if previous_week is not None:
            # a commune without a row that week had no health book registered then
            stored = await _stored_wards(session, previous_week)
            registered = {w.ward_code: w.registered for w in stored}
            report.wards = [
                replace(w, previous_registered=registered.get(w.ward_code, 0))
                for w in report.wards
            ]
    if scope == "communes":
        return report

    if week is not None:
        rows = await _stored_rows(session, week, root_id)
        if rows is None:
            named = agency if isinstance(agency, Agency) else None
            if named is None:
                named = await session.get(Agency, root_id)
            what = named.code if named is not None else "this agency"
            raise ValueError(f"{what} has no figures for {week}")
    else:
        under = None
        if root_id is not None:
            root_agency = agency if isinstance(agency, Agency) else None
            if root_agency is None:
                root_agency = await session.get(Agency, root_id)
            if root_agency is None:
                raise ValueError(f"no agency {root_id}")
            under = root_agency.path
        rows = await _live_rows(session, moment, under)
    ordered, totals, expected = roll_up(rows)
    tops = [row.agency_id for row, depth in ordered if depth == 0]

    prev_totals: dict[int, Figures] = {}
    prev_total: Figures | None = None
    if previous_week is not None:
        prev_rows = await _stored_rows(session, previous_week, root_id)
        if prev_rows is not None:
            _, prev_totals, _ = roll_up(prev_rows)
            if root_id is None:
                prev_total = sum((r.own for r in prev_rows), Figures())
            else:
                prev_total = prev_totals.get(root_id)

    width = max(
        (len(f.doses) for f in (*totals.values(), *prev_totals.values())), default=0
    )
    report.lines = [
        AgencyLine(
            agency_id=row.agency_id, code=row.code, name=row.name, kind=row.kind,
            parent_id=row.parent_id, depth=depth, expected=expected[row.agency_id],
            own=_pad(row.own, width), total=_pad(totals[row.agency_id], width),
            previous=(
                _pad(prev_totals[row.agency_id], width)
                if row.agency_id in prev_totals else None
            ),
        )
        for row, depth in ordered
    ]  # fmt: skip
    report.total = _pad(sum((totals[t] for t in tops), Figures()), width)
    report.previous_total = None if prev_total is None else _pad(prev_total, width)
    if root_id is not None:
        report.root = report.lines[0] if report.lines else None
    return report
