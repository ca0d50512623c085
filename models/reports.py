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
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from models.timeutil import as_aware, to_utc

_WEEK = re.compile(r"^\s*(\d{4})-?[Ww](\d{1,2})\s*$")

#: a report's scopes: one agency and its sub-units, the province (every agency), the communes
SCOPES = ("agency", "province", "communes")
#: adults: 18 and older at the report's moment
ADULT_AGE = 18


# --------------------------------------------------------------------------------------------
# Weeks
# --------------------------------------------------------------------------------------------


def parse_week(text: str) -> str:
    """An ISO week, ``2026-W48`` (also ``2026w48``, ``2026-W5``), normalized; ValueError when
    it is not one (week 53 only in the years that have it)."""
    m = _WEEK.match(text)
    if m is None:
        raise ValueError("a week is written YEAR-Wnn, e.g. 2026-W48")
    year, week = int(m.group(1)), int(m.group(2))
    try:
        dt.date.fromisocalendar(year, week, 1)
    except ValueError:
        raise ValueError(f"{year} has no week {week}") from None
    return f"{year:04d}-W{week:02d}"


def week_monday(week: str) -> dt.date:
    """The Monday a week starts on."""
    year, _, num = parse_week(week).partition("-W")
    return dt.date.fromisocalendar(int(year), int(num), 1)


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
    root: AgencyLine | None = None
    lines: list[AgencyLine] = field(default_factory=list)
    total: Figures = field(default_factory=Figures)
    previous_total: Figures | None = None
    wards: list[WardLine] = field(default_factory=list)
