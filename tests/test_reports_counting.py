"""Weekly reports, the counting (models/reports.py): each agency's own figures at a moment,
communes and wards, the stored weeks, the roll-up of the tree — on every database of the
``db_url`` fixture, with data written directly (the chat's end-to-end tests are elsewhere)."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import io
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook
from sqlalchemy import delete, event, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from bot.cli import app as cli_app
from bot.db import create_engine, session_factory, transaction, upgrade
from models import reports as rp
from models.campaigns import sample_book
from models.reports import Figures
from models.tables import (
    Account,
    Agency,
    AgencyMember,
    AgencyWeek,
    Booking,
    Campaign,
    HealthBook,
    ReportWeek,
    Session,
    Site,
    Vaccination,
    Vaccine,
    WardWeek,
)

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
W47, W48, W49 = "2026-W47", "2026-W48", "2026-W49"
END47 = rp.week_end(W47, TZ)  # Monday 23 November 2026 00:00 in Lào Cai
END48 = rp.week_end(W48, TZ)  # Monday 30 November 2026 00:00 in Lào Cai
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
#: when the tests' agencies are created unless told: before every week they count
CREATED = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SAPA, BAT_XAT = 3006, 3007


@dataclass
class Data:
    """A migrated database and the rows a test writes straight into it."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    campaign_id: int = 0
    session_id: int = 0
    _n: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def tx(self) -> contextlib.AbstractAsyncContextManager[AsyncSession]:
        return transaction(self.sessions)

    async def setup(self) -> None:
        """One vaccine, one campaign, one site and one session for the bookings and doses."""
        async with self.tx() as s:
            s.add(Vaccine(code="vx", name="Vaccine", manufacturer="Maker"))
            campaign = Campaign(
                code="camp", name="Campaign", vaccine_codes=["vx"], doses=3, min_days=[0, 0],
                max_days=[None, None], schedules={}, min_age_months=0,
                starts_on=dt.date(2026, 1, 1),
            )  # fmt: skip
            site = Site(
                code="SITE", name="Trạm", address="Sa Pa", province_code=15, ward_code=SAPA,
                lat=22.3, lon=103.8, kind="commune_station",
            )  # fmt: skip
            s.add_all([campaign, site])
            await s.flush()
            slot = Session(
                site_id=site.id, campaign_id=campaign.id, date=dt.date(2026, 12, 1),
                start_time=dt.time(7, 30), end_time=dt.time(11, 30), capacity=1000,
            )  # fmt: skip
            s.add(slot)
            await s.flush()
            self.campaign_id, self.session_id = campaign.id, slot.id

    async def agency(
        self, code: str, parent: Agency | None = None, expected: int = 0,
        created: dt.datetime = CREATED,
    ) -> Agency:  # fmt: skip
        """An agency, created at ``created`` (by default before every week of the tests: a
        week's figures leave out the agencies created after its end)."""
        async with self.tx() as s:
            row = Agency(
                code=code, name=f"Cơ quan {code}", kind="department",
                parent_id=parent.id if parent else None, path="", expected_staff=expected,
                created_at=created,
            )  # fmt: skip
            s.add(row)
            await s.flush()
            row.path = f"{parent.path if parent else '/'}{row.id}/"
        return row

    async def reparent(self, agency: Agency, parent: Agency) -> None:
        """Move an agency (and its subtree) under another."""
        old, new = agency.path, f"{parent.path}{agency.id}/"
        async with self.tx() as s:
            await s.execute(
                update(Agency).where(Agency.id == agency.id).values(parent_id=parent.id)
            )
            for row in await s.scalars(select(Agency).where(Agency.path.like(old + "%"))):
                row.path = new + row.path[len(old) :]
        agency.path, agency.parent_id = new, parent.id

    async def account(self) -> Account:
        async with self.tx() as s:
            row = Account(channel="telegram", external_id=f"u{next(self._n)}")
            s.add(row)
        return row

    async def book(
        self,
        account: Account | None,
        created: dt.datetime,
        relation: str = "self",
        ward: int = SAPA,
        dob: dt.date = dt.date(1980, 5, 1),
    ) -> HealthBook:
        async with self.tx() as s:
            row = sample_book(
                account.id if account else None, relation=relation, ward_code=ward,
                date_of_birth=dob, created_at=created, updated_at=created,
            )  # fmt: skip
            s.add(row)
        return row

    async def person(self, created: dt.datetime, **kw: Any) -> tuple[Account, HealthBook]:
        """An account with its own health book."""
        account = await self.account()
        return account, await self.book(account, created, **kw)

    async def join(
        self, account: Account, agency: Agency, at: dt.datetime, left: dt.datetime | None = None
    ) -> None:
        async with self.tx() as s:
            s.add(
                AgencyMember(
                    account_id=account.id, agency_id=agency.id, joined_at=at, left_at=left,
                    left_reason="left" if left else None,
                )
            )  # fmt: skip

    async def move(self, account: Account, agency: Agency, at: dt.datetime) -> None:
        """Close the open membership at ``at`` and open one in ``agency``."""
        async with self.tx() as s:
            await s.execute(
                update(AgencyMember)
                .where(AgencyMember.account_id == account.id, AgencyMember.left_at.is_(None))
                .values(left_at=at, left_reason="moved")
            )
            s.add(AgencyMember(account_id=account.id, agency_id=agency.id, joined_at=at))

    async def booking(
        self, book: HealthBook, created: dt.datetime, cancelled: dt.datetime | None = None,
        dose: int = 1,
    ) -> None:  # fmt: skip
        async with self.tx() as s:
            s.add(
                Booking(
                    code=f"B{next(self._n):06d}", health_book_id=book.id,
                    session_id=self.session_id, campaign_id=self.campaign_id, dose=dose,
                    status="cancelled" if cancelled else "booked", created_at=created,
                    cancelled_at=cancelled,
                )
            )  # fmt: skip

    async def dose(self, book: HealthBook, dose: int, given: dt.datetime) -> None:
        async with self.tx() as s:
            s.add(
                Vaccination(
                    health_book_id=book.id, campaign_id=self.campaign_id, dose=dose,
                    vaccine_code="vx", lot_number="L1", given_at=given,
                )
            )  # fmt: skip

    async def own(self, moment: dt.datetime, under: str | None = None) -> dict[int, Figures]:
        async with self.tx() as s:
            return await rp.own_figures(s, moment, under=under)

    async def build(self, **kw: Any) -> rp.Report:
        kw.setdefault("tz", TZ)
        kw.setdefault("now", END48 + DAY)
        async with self.tx() as s:
            return await rp.build(s, **kw)

    async def snapshot(self, week: str, now: dt.datetime | None = None) -> ReportWeek:
        async with self.tx() as s:
            return await rp.take_snapshot(s, week, TZ, now or rp.week_end(week, TZ) + HOUR)


@pytest.fixture
async def data(db_url: str) -> AsyncIterator[Data]:
    engine = create_engine(db_url)
    await upgrade(engine)
    world = Data(engine, session_factory(engine))
    await world.setup()
    try:
        yield world
    finally:
        await engine.dispose()


def fig(joined: int = 0, complete: int = 0, booked: int = 0, relatives: int = 0,
        doses: tuple[int, ...] = ()) -> Figures:  # fmt: skip
    return Figures(joined, complete, booked, relatives, doses)


def lines(report: rp.Report) -> dict[str, rp.AgencyLine]:
    return {line.code: line for line in report.lines}


# --------------------------------------------------------------------------------------------
# Exactness
# --------------------------------------------------------------------------------------------


async def test_each_person_once_and_relatives_are_not_staff(data: Data) -> None:
    """A member with a book, two bookings, two doses and relatives counts once as joined,
    complete, booked and vaccinated; the relatives count as relatives only; an assisted
    resident and a non-member count nowhere; a member without a book only as joined."""
    t = END48 - DAY
    dept = await data.agency("SYT", expected=10)
    unit = await data.agency("SYT-P1", dept, expected=4)
    staff, own = await data.person(t - 10 * DAY)
    await data.join(staff, dept, t - 9 * DAY)
    await data.booking(own, t - 8 * DAY, dose=1)
    await data.booking(own, t - 7 * DAY, dose=2)
    await data.dose(own, 1, t - 6 * DAY)
    await data.dose(own, 2, t - 5 * DAY)
    for relation in ("father", "child"):
        relative = await data.book(staff, t - 4 * DAY, relation=relation)
        await data.booking(relative, t - 3 * DAY)
        await data.dose(relative, 1, t - 2 * DAY)
    await data.book(None, t - 4 * DAY, relation="assisted")
    bookless = await data.account()
    await data.join(bookless, unit, t - 2 * DAY)
    _outsider, theirs = await data.person(t - 3 * DAY)
    await data.booking(theirs, t - 2 * DAY)

    own_figures = await data.own(t)
    assert own_figures == {
        dept.id: fig(1, 1, 1, 2, (1, 1)),
        unit.id: fig(1, 0, 0, 0, (0, 0)),
    }
    assert await data.own(t, under=unit.path) == {unit.id: fig(1)}

    report = await data.build(scope="province", now=t)
    assert report.week is None and report.moment == t
    by_code = lines(report)
    assert by_code["SYT"].own == fig(1, 1, 1, 2, (1, 1))
    assert by_code["SYT"].total == fig(2, 1, 1, 2, (1, 1))
    assert by_code["SYT"].expected == 14 and by_code["SYT-P1"].expected == 4
    assert report.total == fig(2, 1, 1, 2, (1, 1))
    assert [(line.code, line.depth) for line in report.lines] == [("SYT", 0), ("SYT-P1", 1)]


async def test_figures_follow_the_moment(data: Data) -> None:
    """A book, a booking, a dose and a cancellation count from their own time on; a
    cancelled booking counts until it is cancelled."""
    t = END48 - 10 * DAY
    dept = await data.agency("SYT")
    staff, own = await data.person(t + 1 * DAY)
    await data.join(staff, dept, t)
    await data.booking(own, t + 2 * DAY, cancelled=t + 4 * DAY, dose=1)
    await data.dose(own, 1, t + 3 * DAY)
    await data.dose(own, 2, t + 5 * DAY)
    expected = [
        (t - HOUR, {}),
        (t, {dept.id: fig(1, 0, 0, 0)}),
        (t + DAY, {dept.id: fig(1, 1, 0, 0)}),
        (t + 2 * DAY, {dept.id: fig(1, 1, 1, 0)}),
        (t + 3 * DAY, {dept.id: fig(1, 1, 1, 0, (1,))}),
        (t + 4 * DAY - HOUR, {dept.id: fig(1, 1, 1, 0, (1,))}),
        (t + 4 * DAY, {dept.id: fig(1, 1, 0, 0, (1,))}),
        (t + 5 * DAY, {dept.id: fig(1, 1, 0, 0, (1, 1))}),
    ]
    for moment, figures in expected:
        assert await data.own(moment) == figures, moment


async def test_a_person_who_moved_counts_where_they_were(data: Data) -> None:
    """Before the move in the old agency, from the move on in the new one, never in both;
    a person who left counts nowhere after."""
    t = END48 - 10 * DAY
    a = await data.agency("A")
    b = await data.agency("B")
    staff, _ = await data.person(t - DAY)
    await data.join(staff, a, t)
    await data.move(staff, b, t + 2 * DAY)
    leaver, _ = await data.person(t - DAY)
    await data.join(leaver, b, t, left=t + 3 * DAY)
    assert await data.own(t + DAY) == {a.id: fig(1, 1), b.id: fig(1, 1)}
    assert await data.own(t + 2 * DAY - HOUR) == {a.id: fig(1, 1), b.id: fig(1, 1)}
    assert await data.own(t + 2 * DAY) == {b.id: fig(2, 2)}
    assert await data.own(t + 3 * DAY) == {b.id: fig(1, 1)}
    report = await data.build(scope="province", now=t + 2 * DAY)
    assert report.total == fig(2, 2)


async def test_wards(data: Data) -> None:
    """Every book by its commune: registered, adults (18 on the moment's local date),
    booked (not cancelled by then), vaccinated, adults vaccinated."""
    t = END48  # Monday 30 November 2026, local
    adult_day = dt.date(2008, 11, 30)  # 18 on that very day
    staff, own = await data.person(t - 5 * DAY, dob=adult_day)
    await data.dose(own, 1, t - DAY)
    await data.booking(own, t - 2 * DAY)
    child = await data.book(staff, t - 5 * DAY, relation="child", dob=dt.date(2008, 12, 1))
    await data.dose(child, 1, t - DAY)
    await data.dose(child, 2, t - HOUR)
    await data.booking(child, t - 2 * DAY, cancelled=t - DAY)
    await data.book(None, t - DAY, relation="assisted", ward=BAT_XAT)
    await data.book(None, t + HOUR, relation="assisted", ward=BAT_XAT)  # after the moment
    async with data.tx() as s:
        wards = await rp.ward_figures(s, t)
    assert wards == [
        rp.WardLine(SAPA, 15, registered=2, adults=1, booked=1, vaccinated=2, adults_vaccinated=1),
        rp.WardLine(BAT_XAT, 15, registered=1, adults=1),
    ]
    assert wards[0].adults_share == 1.0
    leap_day = dt.datetime(2028, 2, 28, 17, 0, tzinfo=dt.UTC)  # 29 February 2028, local
    assert rp.adult_cutoff(leap_day) == dt.date(2010, 2, 28)


# --------------------------------------------------------------------------------------------
# Stored weeks
# --------------------------------------------------------------------------------------------


async def test_a_stored_week_stays_as_it_was(data: Data) -> None:
    """A week is stored once (again: the same row, nothing added), not before it ends; a
    book deleted later, or a person who moves later, leaves the stored week alone; every
    agency has its row, members or not."""
    dept = await data.agency("SYT")
    empty = await data.agency("SYT-P2", dept)
    staff, own = await data.person(END48 - 3 * DAY)
    await data.join(staff, dept, END48 - 3 * DAY)
    await data.book(None, END48 - DAY, relation="assisted", ward=BAT_XAT)

    with pytest.raises(ValueError, match="not ended"):
        await data.snapshot(W48, now=END48 - dt.timedelta(seconds=1))
    first = await data.snapshot(W48)
    assert first.moment == END48
    again = await data.snapshot(W48, now=END48 + 5 * DAY)
    assert again.taken_at == first.taken_at
    async with data.tx() as s:
        assert await s.scalar(select(func.count()).select_from(AgencyWeek)) == 2
        assert await s.scalar(select(func.count()).select_from(WardWeek)) == 2
        assert await s.scalar(select(func.count()).select_from(ReportWeek)) == 1
        stored = await s.get(AgencyWeek, (W48, empty.id))
        assert stored is not None and stored.joined == 0 and stored.path == empty.path

    before = await data.build(scope="province", week=W48)
    async with data.tx() as s:
        await s.execute(delete(HealthBook).where(HealthBook.id == own.id))
    other = await data.agency("SO-GD")
    await data.move(staff, other, END48 + DAY)
    after = await data.build(scope="province", week=W48, now=END48 + 2 * DAY)
    assert after == before
    assert after.total == fig(1, 1) and [w.registered for w in after.wards] == [1, 1]
    assert "SO-GD" not in lines(after)
    live = await data.build(scope="province", now=END48 + 2 * DAY)
    assert live.total == fig(1, 0) and lines(live)["SO-GD"].total == fig(1, 0)


async def test_a_week_is_stored_in_a_few_statements(data: Data) -> None:
    """60 agencies' rows go in one or two bulk inserts, not one statement per agency."""
    top = await data.agency("TOP")
    async with data.tx() as s:
        s.add_all(
            Agency(code=f"U{i:02d}", name="Đơn vị", kind="unit", parent_id=top.id,
                   path=f"{top.path}x{i}/")
            for i in range(59)
        )  # fmt: skip
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(data.engine.sync_engine, "before_cursor_execute", seen)
    try:
        await data.snapshot(W48)
    finally:
        event.remove(data.engine.sync_engine, "before_cursor_execute", seen)
    inserts = [sql for sql in statements if sql.startswith("INSERT INTO report_agency_weeks")]
    assert 1 <= len(inserts) <= 2, inserts
    async with data.tx() as s:
        assert await s.scalar(select(func.count()).select_from(AgencyWeek)) == 60
    assert len(statements) < 20, statements


async def test_a_week_not_ended_is_refused(data: Data) -> None:
    with pytest.raises(ValueError, match="not ended"):
        await data.build(scope="province", week=W49, now=END48 + DAY)
    with pytest.raises(ValueError):
        await data.build(scope="everything")
    with pytest.raises(ValueError):
        await data.build(scope="agency")


async def test_a_week_is_taken_when_a_report_asks_for_it(data: Data) -> None:
    dept = await data.agency("SYT")
    staff, _ = await data.person(END48 - DAY)
    await data.join(staff, dept, END48 - DAY)
    report = await data.build(scope="agency", agency=dept, week="2026w48")
    assert report.week == W48 and report.moment == END48 and report.previous_week is None
    assert report.root is not None and report.root.code == "SYT"
    async with data.tx() as s:
        assert [w.week for w in await rp.stored_weeks(s)] == [W48]


async def test_two_processes_storing_the_same_week(
    data: Data, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both find the week missing, count, then write: one wins, the other returns its row.
    (PostgreSQL: on SQLite a process has one connection, and a second process's write waits
    for the first and fails as busy; the next minute's job finds the week stored.)"""
    if data.engine.dialect.name == "sqlite":
        pytest.skip("one connection per process on SQLite")
    dept = await data.agency("SYT")
    staff, _ = await data.person(END48 - DAY)
    await data.join(staff, dept, END48 - DAY)
    counted = asyncio.Barrier(2)
    real = rp.ward_figures

    async def both_counted(session: AsyncSession, moment: dt.datetime) -> list[rp.WardLine]:
        wards = await real(session, moment)
        await counted.wait()
        return wards

    monkeypatch.setattr(rp, "ward_figures", both_counted)
    other = create_engine(data.engine.url.render_as_string(hide_password=False))
    try:
        second = Data(other, session_factory(other))
        taken = await asyncio.gather(data.snapshot(W48), second.snapshot(W48))
    finally:
        await other.dispose()
    assert taken[0].taken_at == taken[1].taken_at
    async with data.tx() as s:
        assert await s.scalar(select(func.count()).select_from(AgencyWeek)) == 1


async def test_a_moved_agency_keeps_last_weeks_tree(data: Data) -> None:
    """An agency moved under another after a week: that week's report shows it where it was,
    the next week's where it is; the change per agency is from its own row last week."""
    syt = await data.agency("SYT")
    sgd = await data.agency("SGD")
    unit = await data.agency("P1", syt, expected=3)
    sub = await data.agency("P1-A", unit)
    staff, _ = await data.person(END47 - DAY)
    await data.join(staff, sub, END47 - DAY)
    await data.snapshot(W48)
    await data.reparent(unit, sgd)
    second, _own = await data.person(END48 + DAY)
    await data.join(second, unit, END48 + DAY)
    await data.snapshot(W49)

    past = await data.build(scope="province", week=W48, now=END48 + 8 * DAY)
    assert [(line.code, line.depth) for line in past.lines] == [
        ("SGD", 0), ("SYT", 0), ("P1", 1), ("P1-A", 2)
    ]  # fmt: skip
    assert lines(past)["SYT"].total == fig(1, 1) and lines(past)["SGD"].total == fig()
    head = await data.build(scope="agency", agency=syt, week=W48, now=END48 + 8 * DAY)
    assert [line.code for line in head.lines] == ["SYT", "P1", "P1-A"]
    assert head.total == fig(1, 1) and head.root is not None and head.root.expected == 3

    now = await data.build(scope="province", week=W49, now=END48 + 8 * DAY)
    assert [(line.code, line.depth) for line in now.lines] == [
        ("SGD", 0), ("P1", 1), ("P1-A", 2), ("SYT", 0)
    ]  # fmt: skip
    by_code = lines(now)
    assert by_code["SGD"].total == fig(2, 2) and by_code["SGD"].previous == fig()
    assert by_code["SYT"].total == fig() and by_code["SYT"].previous == fig(1, 1)
    assert by_code["P1"].total == fig(2, 2) and by_code["P1"].previous == fig(1, 1)
    assert now.total == fig(2, 2) and now.previous_total == fig(1, 1)
    assert now.previous_week == W48
    head = await data.build(scope="agency", agency=syt, week=W49, now=END48 + 8 * DAY)
    assert [line.code for line in head.lines] == ["SYT"]
    assert head.total == fig() and head.previous_total == fig(1, 1)


async def test_the_change_since_last_week(data: Data) -> None:
    """A live report counts now and compares with the last week stored; an agency new since
    then has no previous figures; communes have last week's registered."""
    dept = await data.agency("SYT", expected=5)
    staff, _own = await data.person(END47 - 2 * DAY)
    await data.join(staff, dept, END47 - 2 * DAY)
    await data.snapshot(W47)
    await data.snapshot(W48)  # the last complete week at END48 + 2 days
    second, theirs = await data.person(END48 + DAY)
    await data.join(second, dept, END48 + DAY)
    await data.booking(theirs, END48 + DAY)
    fresh = await data.agency("SYT-NEW", dept)

    live = await data.build(scope="province", now=END48 + 2 * DAY)
    assert live.week is None and live.previous_week == W48
    assert live.total == fig(2, 2, 1) and live.previous_total == fig(1, 1)
    assert lines(live)["SYT"].previous == fig(1, 1)
    assert lines(live)["SYT-NEW"].previous is None and fresh.id == lines(live)["SYT-NEW"].agency_id
    assert [(w.registered, w.previous_registered) for w in live.wards] == [(2, 1)]

    week48 = await data.build(scope="province", week=W48, now=END48 + 2 * DAY)
    assert week48.previous_week == W47 and week48.total == week48.previous_total == fig(1, 1)
    communes = await data.build(scope="communes", week=W48, now=END48 + 2 * DAY)
    assert communes.lines == [] and communes.wards == week48.wards
    head = await data.build(scope="agency", agency=dept.id, now=END48 + 2 * DAY)
    assert head.wards == [] and head.previous_total == fig(1, 1)


async def test_an_older_week_is_not_stored_on_demand(data: Data) -> None:
    """Only the last complete week is stored when a report asks for it; an older week is
    refused with the nearest stored week as an example, and nothing is stored."""
    dept = await data.agency("SYT", expected=5)
    staff, _ = await data.person(END47 - 10 * DAY)
    await data.join(staff, dept, END47 - 10 * DAY)
    now = END48 + 8 * DAY  # W49 is the last complete week
    with pytest.raises(rp.NotStored) as refused:
        await data.build(scope="agency", agency=dept, week="2001-W01", now=now)
    assert (refused.value.week, refused.value.example) == ("2001-W01", W49)  # none stored
    async with data.tx() as s:
        assert await rp.stored_weeks(s) == []
    with pytest.raises(rp.NotStored):
        await data.snapshot(W48, now=now)
    await data.snapshot(W49, now=now)  # the last complete week: stored on demand
    for week in ("2001-W01", W47, W48):
        with pytest.raises(rp.NotStored) as refused:
            await data.build(scope="province", week=week, now=now)
        assert refused.value.example == W49
    async with data.tx() as s:
        assert [w.week for w in await rp.stored_weeks(s)] == [W49]
        assert await s.scalar(select(func.count()).select_from(AgencyWeek)) == 1


async def test_a_late_week_does_not_change_a_stored_week(data: Data) -> None:
    """W48 stored at its end said "no change yet"; W47 stored later (the command line's
    --late) is marked late, and W48's report stays as it was: no change counted from it."""
    dept = await data.agency("SYT", expected=5)
    staff, _ = await data.person(END47 - 10 * DAY)
    await data.join(staff, dept, END47 - 10 * DAY)
    on_time = await data.snapshot(W48)
    assert not rp.is_late(on_time)
    before = await data.build(scope="province", week=W48)
    assert before.previous_week is None and not before.late
    async with data.tx() as s:
        late = await rp.take_snapshot(s, W47, TZ, END48 + DAY, late=True)
        assert rp.is_late(late)
    after = await data.build(scope="province", week=W48)
    assert after == before
    old = await data.build(scope="province", week=W47)
    assert old.late and old.taken_at == END48 + DAY and old.total == fig(1, 1)
    live = await data.build(scope="province", now=END48 + DAY)
    assert live.previous_week == W48 and live.previous_total == fig(1, 1)


async def test_a_week_stored_after_a_missed_monday_is_on_time(data: Data) -> None:
    """Stored days after its end, while it is still the last complete week (the bot was down
    on Monday): not late, and the next week's change is counted from it."""
    dept = await data.agency("SYT", expected=5)
    staff, _ = await data.person(END47 - 10 * DAY)
    await data.join(staff, dept, END47 - 10 * DAY)
    stored = await data.snapshot(W47, now=END48 - HOUR)
    assert not rp.is_late(stored)
    report = await data.build(scope="province", week=W48)
    assert report.previous_week == W47 and report.previous_total == fig(1, 1)


def test_weeks_far_away_are_refused() -> None:
    for week in ("9999-W52", "0001-W01", "1999-W52", "2100-W01"):
        with pytest.raises(ValueError, match="between 2000 and 2099"):
            rp.parse_week(week)
    assert rp.parse_week("2099w52") == "2099-W52"
    assert rp.week_end("2099-W52", TZ) < rp.week_end("2099-W53", TZ)  # the year's last week
    assert rp.shift_week("2000-W01", -1) == "1999-W52"


async def test_the_residents_change_counts_a_new_commune_from_zero(data: Data) -> None:
    """A commune with its first health book this week: last week it had none (0, not
    unknown), so the residents' change adds up over every commune."""
    await data.agency("SYT")  # no week is stored without an agency
    await data.book(None, END47 - DAY, relation="assisted", ward=SAPA)
    await data.snapshot(W47)
    await data.book(None, END48 - DAY, relation="assisted", ward=BAT_XAT)
    report = await data.build(scope="communes", week=W48)
    assert [(w.ward_code, w.registered, w.previous_registered) for w in report.wards] == [
        (SAPA, 1, 1), (BAT_XAT, 1, 0)
    ]  # fmt: skip


# --------------------------------------------------------------------------------------------
# Property: the roll-up adds up, and the SQL counts what a plain count over the rows counts
# --------------------------------------------------------------------------------------------

T = END48 - DAY


@dataclass
class Person:
    book_at: int | None  # hours from T; None: no book of their own
    stints: list[tuple[int, int, int | None]]  # agency index, joined, left (hours from T)
    relatives: list[tuple[str, int]]
    bookings: list[tuple[int, int | None]]  # created, cancelled
    doses: dict[int, int]  # dose → given


hours = st.integers(-2, 2)  # small: the moment (0) is often exactly on an edge


@st.composite
def people(draw: st.DrawFn, agencies: int) -> Person:
    stints: list[tuple[int, int, int | None]] = []
    start = draw(hours)
    for _ in range(draw(st.integers(0, 3))):
        end = draw(st.one_of(st.none(), st.integers(start + 1, start + 4)))
        stints.append((draw(st.integers(0, agencies - 1)), start, end))
        if end is None:
            break
        start = end
    return Person(
        book_at=draw(st.one_of(st.none(), hours)),
        stints=stints,
        relatives=draw(
            st.lists(st.tuples(st.sampled_from(["father", "child", "assisted"]), hours), max_size=3)
        ),
        bookings=[
            (c, None if x is None else c + x)
            for c, x in draw(
                st.lists(st.tuples(hours, st.one_of(st.none(), st.integers(0, 2))), max_size=2)
            )
        ],
        doses=draw(st.dictionaries(st.integers(1, 3), hours, max_size=3)),
    )


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[int | None], list[Person]]:
    n = draw(st.integers(1, 30))
    parents = [None] + [draw(st.one_of(st.none(), st.integers(0, i - 1))) for i in range(1, n)]
    return parents, draw(st.lists(people(n), max_size=25))


def oracle(crowd: list[Person], ids: list[int]) -> dict[int, Figures]:
    """Each agency's own figures at T by a plain count over the generated people."""
    out: dict[int, Figures] = {}
    at = 0
    for p in crowd:
        here = [a for a, j, left in p.stints if j <= at and (left is None or left > at)]
        if not here:
            continue
        has_book = p.book_at is not None and p.book_at <= at
        booked = has_book and any(c <= at and (x is None or x > at) for c, x in p.bookings)
        width = 3
        doses = tuple(
            int(has_book and n in p.doses and p.doses[n] <= at) for n in range(1, width + 1)
        )
        relatives = sum(1 for r, c in p.relatives if r != "assisted" and c <= at)
        mine = Figures(1, int(has_book), int(booked), relatives, doses)
        for a in set(here):
            out[ids[a]] = out.get(ids[a], Figures()) + mine
    return out


@pytest.fixture(scope="module")
def sqlite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite database for the property's examples (emptied before each)."""
    path = tmp_path_factory.mktemp("prop") / "prop.db"

    async def migrate() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        try:
            await upgrade(engine)
            await Data(engine, session_factory(engine)).setup()
        finally:
            await engine.dispose()

    asyncio.run(migrate())
    return path


async def _check(url: str, parents: list[int | None], crowd: list[Person]) -> None:
    engine = create_engine(url)
    data = Data(engine, session_factory(engine))
    try:
        async with data.tx() as s:
            for table in (Vaccination, Booking, HealthBook, AgencyMember, Account):
                await s.execute(delete(table))
            await s.execute(update(Agency).values(parent_id=None))
            await s.execute(delete(Agency))
            data.campaign_id = await s.scalar(select(Campaign.id))
            data.session_id = await s.scalar(select(Session.id))
        made: list[Agency] = []
        for i, parent in enumerate(parents):
            made.append(
                await data.agency(f"A{i:02d}", made[parent] if parent is not None else None)
            )
        ids = [a.id for a in made]
        for p in crowd:
            account = await data.account()
            for a, joined, left in p.stints:
                await data.join(
                    account, made[a], T + joined * HOUR, None if left is None else T + left * HOUR
                )
            for relation, created in p.relatives:
                holder = None if relation == "assisted" else account
                await data.book(holder, T + created * HOUR, relation=relation)
            if p.book_at is None:
                continue
            own = await data.book(account, T + p.book_at * HOUR)
            for i, (created, cancelled) in enumerate(p.bookings):
                await data.booking(
                    own, T + created * HOUR, None if cancelled is None else T + cancelled * HOUR,
                    dose=i + 1,
                )  # fmt: skip
            for n, given in p.doses.items():
                await data.dose(own, n, T + given * HOUR)

        expected = oracle(crowd, ids)
        got = await data.own(T)
        assert {k: rp._pad(v, 3) for k, v in got.items()} == expected
        width = max((len(f.doses) for f in got.values()), default=0)

        report = await data.build(scope="province", now=T)
        by_id = {line.agency_id: line for line in report.lines}
        assert len(by_id) == len(parents)
        tops = [line for line in report.lines if line.parent_id is None]
        assert all(line.depth == 0 for line in tops)
        assert report.total == sum((line.total for line in tops), Figures())
        assert report.total == rp._pad(sum(got.values(), Figures()), width)
        for line in report.lines:
            kids = [k for k in report.lines if k.parent_id == line.agency_id]
            assert line.total == sum((k.total for k in kids), line.own)
            assert all(k.depth == line.depth + 1 for k in kids)
            assert line.own == rp._pad(got.get(line.agency_id, Figures()), width)
        subtree: dict[int, Figures] = {}  # the plain count summed up the generated parents
        for i in range(len(parents)):
            j: int | None = i
            while j is not None:
                subtree[ids[j]] = subtree.get(ids[j], Figures()) + expected.get(ids[i], Figures())
                j = parents[j]
        assert {k.agency_id: rp._pad(k.total, 3) for k in report.lines} == {
            k: rp._pad(v, 3) for k, v in subtree.items()
        }
        for line in report.lines:  # each agency's report is its subtree of the province's
            head = await data.build(scope="agency", agency=line.agency_id, now=T)
            assert rp._pad(head.total, width) == line.total  # its doses: up to its own
            path = {a.id: a.path for a in made}
            assert [k.agency_id for k in head.lines] == [
                k.agency_id for k in report.lines
                if path[k.agency_id].startswith(path[line.agency_id])
            ]  # fmt: skip
    finally:
        await engine.dispose()


# each example writes a database: no shrinking (minutes); the failing example is printed whole
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.generate],
)
@given(world=worlds())
def test_roll_up_adds_up_and_counts_like_a_plain_count(
    sqlite_file: Path, world: tuple[list[int | None], list[Person]]
) -> None:
    parents, crowd = world
    asyncio.run(_check(f"sqlite+aiosqlite:///{sqlite_file}", parents, crowd))


# --------------------------------------------------------------------------------------------
# healthbook report
# --------------------------------------------------------------------------------------------


CLI_END = rp.week_end("2026-W45", TZ)
CLI_END46 = rp.week_end("2026-W46", TZ)


async def _cli_data(url: str) -> None:
    """Two agencies, three staff (one moved after week 47), a relative, a ward without staff."""
    engine = create_engine(url)
    data = Data(engine, session_factory(engine))
    try:
        await upgrade(engine)
        await data.setup()
        dept = await data.agency("SYT", expected=10)
        unit = await data.agency("SYT-P1", dept, expected=4)
        other = await data.agency("SGD", expected=7)
        t = CLI_END - 3 * DAY
        first, book = await data.person(t)
        await data.join(first, dept, t)
        await data.booking(book, t + HOUR)
        await data.dose(book, 1, t + DAY)
        await data.book(first, t, relation="child")
        second, _ = await data.person(t)
        await data.join(second, unit, t)
        await data.move(second, other, CLI_END + DAY)
        third = await data.account()
        await data.join(third, unit, t)
        await data.book(None, t, relation="assisted", ward=BAT_XAT)
    finally:
        await engine.dispose()


@pytest.fixture
def cli(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[int, str, str]]:
    """``healthbook`` on a database with :func:`_cli_data`, its clock at ``at`` (by default an
    hour after week 45 ended: the last complete week)."""
    from bot import cli_reports

    asyncio.run(_cli_data(db_url))
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n')
    runner = CliRunner()

    def invoke(
        *args: str, at: dt.datetime = CLI_END + HOUR, input: str | None = None
    ) -> tuple[int, str, str]:
        monkeypatch.setattr(cli_reports, "_now", lambda: at)
        result = runner.invoke(cli_app, [*args, "--config", str(config)], input=input)
        assert result.exception is None or isinstance(result.exception, SystemExit), result
        invoke.raw = result.stdout_bytes  # type: ignore[attr-defined]  # a file written to -
        return result.exit_code, result.stdout, result.stderr

    return invoke


def test_cli_snapshot_and_weeks(cli: Callable[..., tuple[int, str, str]]) -> None:
    assert cli("report", "weeks")[:2] == (0, "no week stored yet\n")
    code, out, _ = cli("report", "snapshot", "--week", "2026w45")
    assert code == 0 and out.startswith("week 2026-W45 stored") and "3 agencies" in out
    code, out, _ = cli("report", "snapshot", "--week", "2026-W45")
    assert code == 0 and out.startswith("week 2026-W45 already stored")
    code, out, _ = cli("report", "weeks")
    assert (
        code == 0
        and out.startswith("2026-W45  counted at 2026-11-09 00:00")
        and "3 agencies" in out
    )
    code, _, err = cli("report", "snapshot", "--week", "2099-W01")
    assert code == 1 and "has not ended" in err


def test_cli_stores_an_older_week_only_when_told_it_is_late(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    """Two weeks later, week 45 is refused (exit 1) with the advice; stored with --late and a
    warning; marked late in the list; its report written with the warning again."""
    later = CLI_END46 + 8 * DAY  # week 47 is the last complete week
    out = str(tmp_path / "r.xlsx")
    code, _, err = cli("report", "--week", "2026-W45", "--output", out, at=later)
    assert code == 1 and "no figures were stored for week 2026-W45" in err
    assert "snapshot --week 2026-W45 --late" in err and "e.g. --week 2026-W47" in err
    code, _, err = cli("report", "snapshot", "--week", "2026-W45", at=later)
    assert code == 1 and "--late" in err
    assert cli("report", "weeks", at=later)[1] == "no week stored yet\n"
    code, out_, err = cli("report", "snapshot", "--week", "2026-W45", "--late", at=later)
    assert code == 0 and out_.startswith("week 2026-W45 stored")
    assert err.startswith("warning: week 2026-W45 was stored late")
    assert "(late)" in cli("report", "weeks", at=later)[1]
    code, out_, err = cli("report", "--week", "2026-W45", "--output", out, at=later)
    assert code == 0 and "warning: week 2026-W45 was stored late" in err
    code, _, err = cli("report", "snapshot", "--week", "2026-W47", "--late", at=later)
    assert code == 0 and err == ""  # the last complete week: on time, --late or not
    code, out_, _ = cli("report", "weeks", at=later)
    assert out_.splitlines()[0].startswith("2026-W47") and "(late)" not in out_.splitlines()[0]


def _sheets(path: Path) -> dict[str, dict[object, dict[str, object]]]:
    """A workbook's sheets as rows by their first cell, each row by its column's header."""
    book = load_workbook(path, read_only=True)
    try:
        out: dict[str, dict[object, dict[str, object]]] = {}
        for sheet in book.worksheets:
            rows = list(sheet.iter_rows(values_only=True))
            header = [str(h) for h in rows[0]]
            out[sheet.title] = {
                row[0]: dict(zip(header, row, strict=False)) for row in rows[1:] if row
            }
        return out
    finally:
        book.close()


JOINED, COMPLETE, EXPECTED = "Đã tham gia", "Có sổ sức khỏe", "Biên chế"
JOINED_CHANGE = "Đã tham gia: thay đổi so với tuần trước"


def test_cli_writes_the_workbook(cli: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    """The province's workbook of week 45, then week 46's with the change: the person who
    moved from SYT-P1 to SGD during week 46 counts there."""
    path = tmp_path / "province.xlsx"
    code, out, err = cli("report", "--week", "2026-W45", "--output", str(path))
    assert code == 0, err
    assert f"{path}: xlsx, week 2026-W45, province" in out
    assert "3 agencies: staff joined 3 of 21 expected, complete health book 2, booked 1" in out
    assert "no figures stored in time for the week before" in out
    sheets = _sheets(path)
    top, second = sheets["Cấp 1"], sheets["Cấp 2"]
    assert top[None][EXPECTED] == 21  # the total row (no code): the province's total
    assert {code: (row[EXPECTED], row[JOINED], row[COMPLETE])
            for code, row in top.items() if code} == {
        "SYT": (14, 3, 2),
        "SGD": (7, 0, 0),
    }
    assert (second["SYT-P1"][JOINED], second["SYT-P1"][COMPLETE]) == (2, 1)
    assert top["SYT"]["Đã tiêm mũi 1"] == 1 and top["SYT"]["Người thân đã đăng ký"] == 1
    assert sheets["Xã, phường"][3006]["Đã đăng ký"] == 3

    path = tmp_path / "week46.xlsx"
    code, out, err = cli("report", "--week", "2026-W46", "--output", str(path), at=CLI_END46)
    assert code == 0, err
    assert "no figures stored in time" not in out
    top = _sheets(path)["Cấp 1"]
    assert (top["SYT"][JOINED], top["SYT"][JOINED_CHANGE]) == (2, -1)
    assert (top["SGD"][JOINED], top["SGD"][JOINED_CHANGE]) == (1, 1)
    assert cli("report", "weeks")[1].startswith("2026-W46")


def test_cli_writes_csv(cli: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    path = tmp_path / "syt.csv"
    code, out, err = cli("report", "--week", "2026-W45", "--agency", "syt", "--output", str(path))
    assert code == 0, err
    assert "csv, week 2026-W45, agency SYT" in out and "2 agencies" in out
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    header, body = rows[0], rows[1:]
    assert [row[header.index(next(h for h in header if row[header.index(h)] in ("SYT", "SYT-P1")))]
            for row in body if "SYT" in row or "SYT-P1" in row] == ["SYT", "SYT-P1"]  # fmt: skip
    syt = next(row for row in body if "SYT" in row)
    assert "3" in syt and "14" in syt and "SGD" not in raw.decode("utf-8-sig")

    path = tmp_path / "communes.csv"
    code, out, err = cli("report", "--week", "2026-W45", "--communes", "--format", "CSV",
                         "--output", str(path))  # fmt: skip
    assert code == 0, err
    assert "2 communes and wards: registered 4" in out
    rows = list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"))))
    assert len(rows) == 1 + 2


def test_cli_refusals(cli: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    out = str(tmp_path / "r.xlsx")
    code, _, err = cli("report", "--week", "48", "--output", out)
    # the example once, and a week that has ended: the last complete one
    assert code == 2 and "e.g. 2026-W45" in err and err.count("e.g.") == 1
    code, _, err = cli("report", "--week", "2025-W53", "--output", out)
    assert code == 2 and "no week 53" in err
    code, _, err = cli("report", "--output", out)
    assert code == 2 and "--week" in err
    code, _, err = cli("report", "--week", "2026-W45", "--agency", "SYT;DROP", "--output", out)
    assert code == 2 and "--agency" in err
    code, _, err = cli("report", "--week", "2026-W45", "--agency", "SYT", "--communes",
                       "--output", out)  # fmt: skip
    assert code == 2
    code, _, err = cli("report", "--week", "2026-W45", "--format", "pdf", "--output", out)
    assert code == 2 and "--format" in err
    code, _, err = cli("report", "--week", "2026-W45", "--output", str(tmp_path / "no" / "r.csv"))
    assert code == 2 and "--output" in err
    code, _, err = cli("report", "--week", "2026-W45", "--agency", "NOPE", "--output", out)
    assert code == 1 and err == "error: no agency with code NOPE\n"
    code, _, err = cli("report", "--week", "2099-W01", "--output", out)
    assert code == 1 and "has not ended" in err
    for far in ("9999-W52", "0001-W01"):
        code, _, err = cli("report", "--week", far, "--output", out)
        assert code == 2 and "between 2000 and 2099" in err
        code, _, err = cli("report", "snapshot", "--week", far)
        assert code == 2 and "between 2000 and 2099" in err
    assert not (tmp_path / "r.xlsx").exists()


def test_cli_output_formats(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--output - writes to standard output (what was written goes to standard error); a
    format the file's name contradicts, or a name without a known extension, is refused; png
    is the chart."""
    from bot import cli_reports

    code, out, err = cli("report", "--week", "2026-W45", "--agency", "SYT", "--output", "-")
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out.removeprefix("\ufeff"))))
    assert any("SYT-P1" in row for row in rows)
    assert "standard output: csv" in err and "2 agencies" in err
    assert not (Path.cwd() / "-").exists()
    code, _, err = cli("report", "--week", "2026-W45", "--format", "xlsx", "--output", "-")
    assert code == 0, err
    book = load_workbook(io.BytesIO(cli.raw), read_only=True)  # type: ignore[attr-defined]
    assert "Cấp 1" in book.sheetnames
    monkeypatch.setattr(cli_reports, "_terminal", lambda: True)
    code, _, err = cli("report", "--week", "2026-W45", "--format", "png", "--output", "-")
    assert code == 2 and "terminal" in err
    monkeypatch.setattr(cli_reports, "_terminal", lambda: False)

    for fmt, name in (("csv", "x.xlsx"), ("xlsx", "x.csv"), ("png", "x.xlsx")):
        code, _, err = cli("report", "--week", "2026-W45", "--format", fmt,
                           "--output", str(tmp_path / name))  # fmt: skip
        assert code == 2 and "--format" in err, (fmt, name)
    code, _, err = cli("report", "--week", "2026-W45", "--output", str(tmp_path / "x.txt"))
    assert code == 2 and ".xlsx, .csv or .png" in err
    code, _, err = cli("report", "--week", "2026-W45", "--excel", "--output",
                       str(tmp_path / "x.xlsx"))  # fmt: skip
    assert code == 2 and "--excel" in err
    assert not list(tmp_path.glob("x.*"))

    chart = tmp_path / "chart.png"
    code, out, err = cli("report", "--week", "2026-W45", "--output", str(chart))
    assert code == 0, err
    assert chart.read_bytes().startswith(b"\x89PNG") and f"{chart}: png" in out
    code, _, err = cli("report", "--week", "2026-W45", "--format", "csv", "--output",
                       str(tmp_path / "x.txt"))  # fmt: skip
    assert code == 0 and (tmp_path / "x.txt").read_bytes().startswith(b"\xef\xbb\xbf")


def test_cli_excel_csv(cli: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    """--excel: the CSV that Excel with Vietnamese settings opens (';', decimal commas)."""
    path = tmp_path / "syt.csv"
    code, _, err = cli("report", "--week", "2026-W45", "--agency", "SYT", "--excel",
                       "--output", str(path))  # fmt: skip
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig")), delimiter=";"))
    syt = next(row for row in rows if "SYT" in row)
    assert "14" in syt and "21,4" in syt  # 3 of 14 joined: 21,4 %


def test_cli_not_ended_names_the_last_complete_week(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    code, _, err = cli("report", "--week", "2026-W46", "--output", str(tmp_path / "r.xlsx"))
    assert code == 1 and "has not ended yet (the last complete week is 2026-W45)" in err


def test_cli_forget_a_week(cli: Callable[..., tuple[int, str, str]], db_url: str) -> None:
    """report forget asks first, deletes a stored week (to store it again), refuses a week
    whose messages were planned unless --force."""
    assert cli("report", "snapshot", "--week", "2026-W45")[0] == 0
    code, _, err = cli("report", "forget", "--week", "2026-W45", input="n\n")
    assert code == 1 and "nothing deleted" in err
    assert "2026-W45" in cli("report", "weeks")[1]
    code, out, _ = cli("report", "forget", "--week", "2026-W45", input="y\n")
    assert code == 0 and "week 2026-W45 deleted" in out
    assert cli("report", "weeks")[1] == "no week stored yet\n"
    code, _, err = cli("report", "forget", "--week", "2026-W45", "--yes")
    assert code == 1 and "not stored" in err

    assert cli("report", "snapshot", "--week", "2026-W45")[0] == 0

    async def plan() -> None:
        engine = create_engine(db_url)
        try:
            async with session_factory(engine)() as s, s.begin():
                await s.execute(update(ReportWeek).values(planned_at=CLI_END + HOUR))
        finally:
            await engine.dispose()

    asyncio.run(plan())
    code, _, err = cli("report", "forget", "--week", "2026-W45", "--yes")
    assert code == 1 and "--force" in err
    code, out, _ = cli("report", "forget", "--week", "2026-W45", "--yes", "--force")
    assert code == 0 and "deleted" in out
    code, out, _ = cli("report", "snapshot", "--week", "2026-W45")
    assert code == 0 and "3 agencies" in out  # stored again


def test_cli_refuses_to_store_a_week_without_agencies(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the agencies are imported no week is stored (it would stay empty); the error
    says what to do."""
    from bot import cli_reports

    monkeypatch.setattr(cli_reports, "_now", lambda: CLI_END + HOUR)

    async def empty() -> None:
        engine = create_engine(db_url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(empty())
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n')
    runner = CliRunner()
    for args in (["report", "--week", "2026-W45", "--output", str(tmp_path / "r.xlsx")],
                 ["report", "snapshot", "--week", "2026-W45", "--late"]):  # fmt: skip
        result = runner.invoke(cli_app, [*args, "--config", str(config)])
        assert result.exit_code == 1
        assert "no agencies yet: import them first (healthbook agencies import)" in result.stderr
    result = runner.invoke(cli_app, ["report", "weeks", "--config", str(config)])
    assert result.stdout == "no week stored yet\n"


def test_cli_names_an_agency_by_its_code(
    cli: Callable[..., tuple[int, str, str]], db_url: str, tmp_path: Path
) -> None:
    """An agency created after a week ended is not in that week: said with its code."""
    assert cli("report", "snapshot", "--week", "2026-W45")[0] == 0

    async def add() -> None:
        engine = create_engine(db_url)
        try:
            data = Data(engine, session_factory(engine))
            await data.agency("CDC-TC", created=CLI_END + HOUR)
        finally:
            await engine.dispose()

    asyncio.run(add())
    code, _, err = cli("report", "--week", "2026-W45", "--agency", "CDC-TC", "--output",
                       str(tmp_path / "r.xlsx"))  # fmt: skip
    assert code == 1 and err == "error: CDC-TC has no figures for 2026-W45\n"


async def test_a_week_leaves_out_agencies_created_after_it(data: Data) -> None:
    """A week's figures, also stored late, hold only the agencies that existed at its end."""
    old = await data.agency("SYT", expected=5)
    await data.agency("CDC-TC", expected=40, created=END47 + HOUR)
    staff, _ = await data.person(END47 - DAY)
    await data.join(staff, old, END47 - DAY)
    async with data.tx() as s:
        late = await rp.take_snapshot(s, "2026-W46", TZ, END48 + DAY, late=True)
        assert rp.is_late(late)
    report = await data.build(scope="province", week="2026-W46", now=END48 + DAY)
    assert [line.code for line in report.lines] == ["SYT"]
    assert sum(line.expected for line in report.lines) == 5
    on_time = await data.build(scope="province", week=W47, now=END47 + DAY)
    assert [line.code for line in on_time.lines] == ["SYT"]
    later = await data.build(scope="province", week=W48, now=END48 + DAY)
    assert {line.code for line in later.lines} == {"SYT", "CDC-TC"}


async def test_no_week_is_stored_without_agencies(data: Data) -> None:
    await data.book(None, END47 - DAY, relation="assisted", ward=SAPA)
    async with data.tx() as s:
        with pytest.raises(rp.NoAgencies):
            await rp.take_snapshot(s, W47, TZ, END47 + HOUR)
    async with data.tx() as s:
        assert await rp.stored_weeks(s) == []
    live = await data.build(scope="communes", now=END47 + HOUR)  # live: still counted
    assert [w.registered for w in live.wards] == [1]
    # the install's first days: agencies imported after the week ended count for no part of
    # it, so that week is not stored (empty for good) either; the next week is
    await data.agency("SYT", created=END47 + HOUR)
    async with data.tx() as s:
        with pytest.raises(rp.NoAgencies):
            await rp.take_snapshot(s, W47, TZ, END47 + 2 * HOUR)
        assert await rp.stored_weeks(s) == []
    async with data.tx() as s:
        await rp.take_snapshot(s, W48, TZ, END48 + HOUR)
    report = await data.build(scope="province", week=W48, now=END48 + HOUR)
    assert [line.code for line in report.lines] == ["SYT"]
