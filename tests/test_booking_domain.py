"""Vaccination booking, domain layer: eligibility, sites, booking, waitlist, check-in, doses
and the data loaders — on every database of the ``db_url`` fixture."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.db import create_engine, downgrade, session_factory, transaction, upgrade
from models import booking as bk
from models import campaigns as cp
from models import checkin as ci
from models import eligibility as elig
from models import lookups as lk
from models import validators as v
from models import waitlist as wl
from models.errors import DomainError
from models.tables import (
    Account,
    Base,
    Booking,
    Campaign,
    HealthBook,
    Session,
    Site,
    Vaccination,
    WaitlistEntry,
)

TODAY = dt.date(2026, 11, 25)  # a Wednesday
NOW = dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.UTC)  # 10:00 in Lào Cai
COVID = "covid19_2021"
FLU = "influenza_seasonal"
SAPA_WARD = 3006  # Phường Sa Pa
ALL_NO = {item.code: "no" for item in v.screening_items()}


@contextlib.contextmanager
def refused(key: str) -> Iterator[pytest.ExceptionInfo[DomainError]]:
    """Expect a DomainError with this message key."""
    with pytest.raises(DomainError) as info:
        yield info
    assert info.value.key == key, info.value.params


@dataclass
class World:
    """A migrated database with both sample campaigns, the Lào Cai sites and some sessions."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    _n: int = 0

    def tx(self) -> contextlib.AbstractAsyncContextManager[AsyncSession]:
        return transaction(self.sessions)

    async def person(
        self,
        *,
        dob: dt.date = dt.date(1980, 5, 1),
        ward: int = SAPA_WARD,
        province: int = 15,
        screening: dict[str, str] | None = None,
        role: str = "resident",
    ) -> tuple[Account, HealthBook]:
        """A new account with its own health book."""
        self._n += 1
        async with self.tx() as s:
            account = Account(channel="telegram", external_id=f"u{self._n}", role=role)
            s.add(account)
            await s.flush()
            book = cp.sample_book(
                account.id,
                full_name="Nguyễn Văn An",
                date_of_birth=dob,
                gender="male",
                province_code=province,
                ward_code=ward,
                screening=dict(ALL_NO if screening is None else screening),
                consent_version="test",
            )
            s.add(book)
        return account, book

    async def staff(self, site: str | None, role: str = "site_staff") -> Account:
        """A staff account bound to ``site`` (or none)."""
        account, _ = await self.person(role=role)
        if site is not None:
            async with self.tx() as s:
                await ci.grant_staff(s, await s.get(Account, account.id), site)
        return account

    async def slot(self, site: str, day: dt.date, campaign: str = COVID) -> int:
        """The id of the morning session of a site on a day."""
        async with self.tx() as s:
            return await s.scalar(
                select(Session.id)
                .join(Site, Site.id == Session.site_id)
                .join(Campaign, Campaign.id == Session.campaign_id)
                .where(Site.code == site, Campaign.code == campaign, Session.date == day)
            )

    async def booked(self, session_id: int) -> int:
        async with self.tx() as s:
            return await s.scalar(select(Session.booked).where(Session.id == session_id))

    async def book(self, book: HealthBook, session_id: int, **kw: Any) -> Booking:
        async with self.tx() as s:
            return await bk.book(s, book.id, session_id, kw.pop("campaign", COVID), None, TODAY)


@pytest.fixture
async def world(db_url: str) -> AsyncIterator[World]:
    """The sample data, with 3-place sessions to fill quickly."""
    engine = create_engine(db_url)
    await upgrade(engine)
    factory = session_factory(engine)
    async with transaction(factory) as s:
        for path in cp.SAMPLE_CAMPAIGNS:
            await cp.load_campaign_file(s, path)
        await cp.import_sites_csv(s, cp.SAMPLE_SITES)
        sites = ["LC-TYT-SAPA", "LC-BVDK", "LC-TYT-YENBAI"]
        await cp.create_sessions(s, sites, COVID, TODAY, days=90, weekdays=range(7), capacity=3)
        await cp.create_sessions(s, ["LC-TYT-SAPA"], FLU, TODAY, days=14, capacity=3)
    try:
        yield World(engine, factory)
    finally:
        await engine.dispose()


def _campaign(**kw: Any) -> Campaign:
    values: dict[str, Any] = {
        "code": "c",
        "name": "C",
        "vaccine_codes": ["astrazeneca", "pfizer"],
        "doses": 2,
        "min_days": [21],
        "max_days": [28],
        "schedules": {"astrazeneca": {"min_days": [56], "max_days": [84]}},
        "booster_min_days": 90,
        "boosters": 1,
        "min_age_months": 18 * 12,
        "max_age_months": None,
        "starts_on": dt.date(2021, 3, 8),
        "ends_on": None,
        "active": True,
    }
    values.update(kw)
    return Campaign(**values)


# --- schedule, screening, eligibility (pure) ----------------------------------------------------


def test_next_dose_window_follows_the_product_of_the_previous_dose() -> None:
    c = _campaign()
    first = elig.next_dose_window(c, TODAY)
    assert first == elig.DoseWindow(dose=1, earliest=TODAY)
    given = dt.date(2026, 10, 1)
    az = elig.next_dose_window(c, given, 1, given, "astrazeneca")
    assert az is not None
    assert (az.dose, az.earliest, az.latest) == (2, dt.date(2026, 11, 26), dt.date(2026, 12, 24))
    other = elig.next_dose_window(c, given, 1, given, "pfizer")  # campaign default: 21-28 days
    assert other is not None
    assert (other.earliest, other.latest) == (dt.date(2026, 10, 22), dt.date(2026, 10, 29))
    late = elig.next_dose_window(c, TODAY, 1, given, "pfizer")
    assert late is not None and late.earliest == TODAY and late.overdue


def test_boosters_then_nothing() -> None:
    c = _campaign()
    booster = elig.next_dose_window(c, TODAY, 2, TODAY, "pfizer")
    assert booster is not None and booster.booster
    assert (booster.dose, booster.earliest, booster.latest) == (3, TODAY + dt.timedelta(90), None)
    assert elig.next_dose_window(c, TODAY, 3, TODAY, "pfizer") is None
    assert elig.next_dose_window(_campaign(booster_min_days=None), TODAY, 2, TODAY) is None
    seasonal = _campaign(doses=1, min_days=[], max_days=[], booster_min_days=300, boosters=None)
    tenth = elig.next_dose_window(seasonal, TODAY, 9, TODAY, "x")
    assert tenth is not None and tenth.dose == 10


def _book(**kw: Any) -> HealthBook:
    values: dict[str, Any] = {
        "date_of_birth": dt.date(1980, 5, 1),
        "screening": dict(ALL_NO),
        "province_code": 15,
        "ward_code": SAPA_WARD,
    }
    values.update(kw)
    return HealthBook(**values)


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ({}, "eligible"),
        ({"chronic_controlled": "yes"}, "caution"),
        ({"other_allergies": "yes"}, "caution"),
        ({"immunodeficiency": "yes", "other_allergies": "yes"}, "refer"),
        ({"immunodeficiency": "yes", "acute_illness": "yes"}, "postpone"),
        ({"acute_illness": "yes", "other_allergies": "yes"}, "postpone"),
        ({"anaphylaxis": "yes", "acute_illness": "yes"}, "contraindicated"),
        ({"anaphylaxis": "unknown"}, "caution"),
        ({"anaphylaxis": None}, "caution"),  # unanswered counts as "don't know"
    ],
)
def test_screening_group_is_the_worst_answer(answers: dict[str, str | None], expected: str) -> None:
    screening = {**ALL_NO, **answers}
    screening = {k: a for k, a in screening.items() if a is not None}
    assert elig.screening_group(_book(screening=screening), TODAY) == expected


def test_screening_group_derives_age_65_from_the_date_of_birth() -> None:
    assert elig.screening_group(_book(date_of_birth=dt.date(1961, 11, 25)), TODAY) == "caution"
    assert elig.screening_group(_book(date_of_birth=dt.date(1961, 11, 26)), TODAY) == "eligible"


def test_check_eligibility() -> None:
    c = _campaign()
    station = Site(name="Trạm", kind="commune_station")
    hospital = Site(name="Bệnh viện", kind="hospital")
    assert elig.check_eligibility(_book(), c, TODAY, station) == "eligible"
    with refused("booking.ineligible_age") as info:
        elig.check_eligibility(_book(date_of_birth=dt.date(2008, 11, 26)), c, TODAY)
    assert info.value.params["min_years"] == 18
    assert elig.check_eligibility(_book(date_of_birth=dt.date(2008, 11, 25)), c, TODAY)
    with refused("booking.ineligible_age"):
        elig.check_eligibility(_book(), _campaign(max_age_months=17 * 12 + 11), TODAY)
    with refused("booking.screening_postpone"):
        elig.check_eligibility(_book(screening={**ALL_NO, "covid_6m": "yes"}), c, TODAY)
    with refused("booking.screening_contraindicated"):
        elig.check_eligibility(_book(screening={**ALL_NO, "anaphylaxis": "yes"}), c, TODAY)
    caution = _book(screening={**ALL_NO, "pregnant_breastfeeding": "yes"})
    # caution is vaccinated at the usual site (3802); a hospital is advice, never a refusal
    assert elig.check_eligibility(caution, c, TODAY, station) == "caution"
    assert elig.check_eligibility(caution, c, TODAY, hospital) == "caution"
    refer = _book(screening={**ALL_NO, "immunodeficiency": "yes"})
    assert elig.check_eligibility(refer, c, TODAY, station) == "refer"
    with refused("campaign.closed"):
        elig.check_eligibility(_book(), _campaign(active=False), TODAY)
    with refused("campaign.closed"):
        elig.check_eligibility(_book(), _campaign(ends_on=TODAY - dt.timedelta(1)), TODAY)


def test_influenza_age_in_months() -> None:
    flu = _campaign(min_age_months=6)
    with refused("booking.ineligible_age"):
        elig.check_eligibility(_book(date_of_birth=dt.date(2026, 6, 1)), flu, TODAY)
    assert elig.check_eligibility(_book(date_of_birth=dt.date(2026, 5, 25)), flu, TODAY)


def test_booking_codes_use_the_unambiguous_alphabet() -> None:
    codes = {bk.new_booking_code() for _ in range(500)}
    assert len(codes) == 500
    assert all(len(c) == bk.CODE_LENGTH and set(c) <= set(bk.CODE_ALPHABET) for c in codes)
    assert not set("01OIL") & set(bk.CODE_ALPHABET)
    assert bk.normalize_code(" abc-d 2 3 4 ".replace("abc", "ABC").lower()) == "ABCD234"
    with refused("booking.code_invalid") as info:
        bk.normalize_code("AB0CD1O")
    assert info.value.params["chars"] == "01O"
    with refused("booking.code_invalid"):
        bk.normalize_code("ABC")


def test_haversine() -> None:
    assert bk.haversine_km((22.3364, 103.8440), (22.3364, 103.8440)) == 0
    # Sa Pa to Lào Cai city is roughly 20-25 km as the crow flies
    assert 18 < bk.haversine_km((22.3364, 103.8440), (22.4963, 103.9697)) < 26


# --- sites and days -------------------------------------------------------------------------------


async def test_sites_for_orders_by_commune_distance_and_filters_by_text(world: World) -> None:
    async with world.tx() as s:
        mine = await bk.sites_for(s, 15, SAPA_WARD)
        assert mine[0].site.code == "LC-TYT-SAPA" and mine[0].same_ward
        assert mine[0].ward_name == "Phường Sa Pa" and mine[0].distance_km is None
        assert len(mine) == 8
        near = await bk.sites_for(s, 15, near=(21.72, 104.91))  # Yên Bái city
        assert near[0].site.code == "LC-TYT-YENBAI" and near[0].distance_km < 2
        distances = [m.distance_km for m in near]
        assert distances == sorted(distances)
        assert [m.site.code for m in await bk.sites_for(s, 15, query="sapa")] == ["LC-TYT-SAPA"]
        assert [m.site.code for m in await bk.sites_for(s, 15, query="BAC HA")] == ["LC-TYT-BACHA"]
        hospitals = await bk.sites_for(s, 15, query="bệnh viện")
        assert {m.site.code for m in hospitals} == {"LC-BVDK", "LC-BVNL"}
        assert {m.site.kind for m in await bk.sites_for(s, 15, hospital_only=True)} == {"hospital"}
        assert await bk.sites_for(s, 1) == []  # Hà Nội: no sites loaded
        assert await bk.sites_for(s, 15, query="nowhere at all") == []


async def test_open_days_and_sessions_on(world: World) -> None:
    first = await world.slot("LC-TYT-SAPA", TODAY)
    for _ in range(3):
        _, book = await world.person()
        await world.book(book, first)
    async with world.tx() as s:
        site = await lk.get_site(s, "LC-TYT-SAPA")
        covid = await lk.get_campaign(s, COVID)
        days = await bk.open_days(s, site, covid, TODAY, days=3)
        assert [(d.date, d.remaining, d.sessions) for d in days] == [
            (TODAY + dt.timedelta(1), 3, 1),
            (TODAY + dt.timedelta(2), 3, 1),
        ]
        flu = await lk.get_campaign(s, FLU)
        flu_days = await bk.open_days(s, site.id, flu.id, TODAY, days=7)
        assert [d.date.weekday() for d in flu_days] == [2, 3, 4, 0, 1]  # weekdays only
        on = await bk.sessions_on(s, site, TODAY, covid)
        assert [(x.id, x.remaining, x.start_time) for x in on] == [(first, 0, dt.time(7, 30))]
        with refused("campaign.not_found"):
            await lk.get_campaign(s, "measles")
        with refused("site.not_found"):
            await lk.get_site(s, "LC-NOWHERE")


# --- booking ------------------------------------------------------------------------------------


async def test_book_takes_a_place_and_gives_a_code(world: World) -> None:
    _, book = await world.person()
    slot = await world.slot("LC-TYT-SAPA", TODAY + dt.timedelta(2))
    booking = await world.book(book, slot)
    assert booking.status == "booked" and booking.dose == 1
    assert len(booking.code) == bk.CODE_LENGTH and set(booking.code) <= set(bk.CODE_ALPHABET)
    assert await world.booked(slot) == 1
    async with world.tx() as s:
        found = await bk.find_booking_by_code(s, booking.code.lower())
        assert found.id == booking.id and found.session.site.code == "LC-TYT-SAPA"
        mine = await bk.bookings_for(s, await s.get(Account, book.account_id))
        assert [b.id for b in mine] == [booking.id]


async def test_a_code_collision_is_retried(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    slot = await world.slot("LC-TYT-SAPA", TODAY)
    codes = iter(["2222222", "2222222", "3333333"])
    monkeypatch.setattr(bk, "new_booking_code", lambda: next(codes))
    _, first = await world.person()
    _, second = await world.person()
    assert (await world.book(first, slot)).code == "2222222"
    assert (await world.book(second, slot)).code == "3333333"
    assert await world.booked(slot) == 2


async def test_full_session_refuses_and_the_callers_transaction_survives(world: World) -> None:
    slot = await world.slot("LC-TYT-SAPA", TODAY)
    other = await world.slot("LC-TYT-SAPA", TODAY + dt.timedelta(1))
    for _ in range(3):
        _, book = await world.person()
        await world.book(book, slot)
    _, late = await world.person()
    async with world.tx() as s:
        with refused("booking.full"):
            await bk.book(s, late.id, slot, COVID, None, TODAY)
        # the same transaction goes on and commits a booking elsewhere
        await bk.book(s, late.id, other, COVID, None, TODAY)
    assert (await world.booked(slot), await world.booked(other)) == (3, 1)


async def test_duplicate_booking_releases_the_place_it_took(world: World) -> None:
    _, book = await world.person()
    first = await world.slot("LC-TYT-SAPA", TODAY)
    second = await world.slot("LC-TYT-SAPA", TODAY + dt.timedelta(1))
    await world.book(book, first)
    async with world.tx() as s:
        with refused("booking.duplicate"):
            await bk.book(s, book.id, second, COVID, None, TODAY)
        loaded = await s.get(Session, second)
        assert loaded is not None and loaded.booked == 0
    assert (await world.booked(first), await world.booked(second)) == (1, 0)


async def test_a_rolled_back_transaction_leaves_no_booking(world: World) -> None:
    """The caller owns the transaction, on SQLite too (its SAVEPOINT must not commit)."""
    _, book = await world.person()
    slot = await world.slot("LC-TYT-SAPA", TODAY)
    async with world.sessions() as s:
        async with s.begin():
            await s.execute(select(1))
            await bk.book(s, book.id, slot, COVID, None, TODAY)
            await s.rollback()
    assert await world.booked(slot) == 0
    async with world.tx() as s:
        assert await s.scalar(select(func.count()).select_from(Booking)) == 0


async def test_booking_refusals(world: World) -> None:
    _, book = await world.person()
    slot = await world.slot("LC-TYT-SAPA", TODAY)
    flu_slot = await world.slot("LC-TYT-SAPA", TODAY, FLU)
    _, hanoi = await world.person(province=1, ward=4)  # Phường Hoàn Kiếm, Hà Nội
    _, child = await world.person(dob=dt.date(2015, 1, 1))
    _, ill = await world.person(screening={**ALL_NO, "acute_illness": "yes"})
    _, caution = await world.person(screening={**ALL_NO, "bleeding_anticoagulant": "yes"})
    hospital = await world.slot("LC-BVDK", TODAY)
    async with world.tx() as s:
        with refused("booking.session_not_found"):
            await bk.book(s, book.id, 10**9, COVID, None, TODAY)
        with refused("booking.book_not_found"):
            await bk.book(s, 10**9, slot, COVID, None, TODAY)
        with refused("campaign.not_found"):
            await bk.book(s, book.id, slot, "ebola", None, TODAY)
        with refused("booking.wrong_campaign"):
            await bk.book(s, book.id, flu_slot, COVID, None, TODAY)
        with refused("booking.past_date"):
            await bk.book(s, book.id, slot, COVID, None, TODAY + dt.timedelta(1))
        with refused("booking.other_province"):
            await bk.book(s, hanoi.id, slot, COVID, None, TODAY)
        with refused("booking.ineligible_age"):
            await bk.book(s, child.id, slot, COVID, None, TODAY)
        with refused("booking.screening_postpone"):
            await bk.book(s, ill.id, slot, COVID, None, TODAY)
        with refused("booking.wrong_dose"):
            await bk.book(s, book.id, slot, COVID, 2, TODAY)
        assert (await bk.book(s, caution.id, hospital, COVID, None, TODAY)).dose == 1
        # a child may still have influenza
        assert (await bk.book(s, child.id, flu_slot, FLU, 1, TODAY)).dose == 1
    assert await world.booked(slot) == 0


async def test_cancel(world: World) -> None:
    account, book = await world.person()
    stranger, _ = await world.person()
    slot = await world.slot("LC-TYT-SAPA", TODAY)
    booking = await world.book(book, slot)
    async with world.tx() as s:
        with refused("booking.not_yours"):
            await bk.cancel(s, booking.code, stranger)
        with refused("booking.not_found"):
            await bk.cancel(s, "2345678", account)
        with refused("booking.code_invalid"):
            await bk.cancel(s, "O0O0O0O", account)
    async with world.tx() as s:
        done = await bk.cancel(s, f"{booking.code[:3]} {booking.code[3:]}", account, now=NOW)
        assert done.status == "cancelled" and done.cancelled_at == NOW
    assert await world.booked(slot) == 0
    async with world.tx() as s:
        with refused("booking.not_active") as info:
            await bk.cancel(s, booking.id, book)  # by id, by the book itself
        assert info.value.params["status"] == "cancelled"
    assert await world.booked(slot) == 0
    # the freed dose can be booked again
    again = await world.book(book, slot)
    assert again.status == "booked" and await world.booked(slot) == 1


async def test_reschedule(world: World) -> None:
    account, book = await world.person()
    stranger, _ = await world.person()
    a = await world.slot("LC-TYT-SAPA", TODAY)
    b = await world.slot("LC-TYT-SAPA", TODAY + dt.timedelta(1))
    full = await world.slot("LC-TYT-SAPA", TODAY + dt.timedelta(2))
    booking = await world.book(book, a)
    for _ in range(3):
        _, other = await world.person()
        await world.book(other, full)
    async with world.tx() as s:
        with refused("booking.full"):
            await bk.reschedule(s, booking.code, full, owner=account, today=TODAY)
        with refused("booking.not_yours"):
            await bk.reschedule(s, booking.code, b, owner=stranger, today=TODAY)
        with refused("booking.same_session"):
            await bk.reschedule(s, booking.code, a, owner=account, today=TODAY)
    assert (await world.booked(a), await world.booked(full)) == (1, 3)
    async with world.tx() as s:
        moved = await bk.reschedule(s, booking.code, b, owner=account, today=TODAY)
        assert moved.session_id == b and moved.code == booking.code
    assert (await world.booked(a), await world.booked(b)) == (0, 1)
    # and back, to a lower session id (the other lock order)
    async with world.tx() as s:
        await bk.reschedule(s, booking.id, a, owner=book, today=TODAY)
    assert (await world.booked(a), await world.booked(b)) == (1, 0)


async def test_expire_bookings_and_release_book(world: World) -> None:
    _, book = await world.person()
    slot = await world.slot("LC-TYT-SAPA", TODAY)
    flu = await world.slot("LC-TYT-SAPA", TODAY, FLU)
    booking = await world.book(book, slot)
    await world.book(book, flu, campaign=FLU)
    async with world.tx() as s:
        assert await bk.expire_bookings(s, TODAY) == 0
        assert await bk.expire_bookings(s, TODAY + dt.timedelta(1)) == 2
        assert (await s.get(Booking, booking.id, populate_existing=True)).status == "expired"
    _, other = await world.person()
    later = await world.slot("LC-TYT-SAPA", TODAY + dt.timedelta(3))
    await world.book(other, later)
    async with world.tx() as s:
        assert await bk.release_book(s, other.id, NOW) == 1
    assert await world.booked(later) == 0


# --- waitlist -------------------------------------------------------------------------------------


async def _fill(world: World, session_id: int) -> list[tuple[Account, Booking]]:
    out = []
    for _ in range(3):
        account, book = await world.person()
        out.append((account, await world.book(book, session_id)))
    return out


async def test_waitlist_offer_hold_accept(world: World) -> None:
    slot = await world.slot("LC-TYT-SAPA", TODAY + dt.timedelta(1))
    holders = await _fill(world, slot)
    first_acc, first = await world.person()
    second_acc, second = await world.person()
    async with world.tx() as s:
        e1 = await wl.join_waitlist(s, first.id, COVID, today=TODAY, session_id=slot)
    async with world.tx() as s:
        e2 = await wl.join_waitlist(s, second.id, COVID, today=TODAY, session_id=slot)
        with refused("waitlist.duplicate"):
            await wl.join_waitlist(s, first.id, COVID, today=TODAY, session_id=slot)
    async with world.tx() as s:
        await bk.cancel(s, holders[0][1].code, holders[0][0], now=NOW)
        offer = await wl.offer_freed_place(s, slot, NOW, hold_minutes=30)
        assert offer is not None and offer.id == e1.id and offer.status == "offered"
        assert offer.offer_expires_at == NOW + dt.timedelta(minutes=30)
    async with world.tx() as s:  # read back aware, on SQLite too
        stored = await s.get(WaitlistEntry, e1.id)
        assert stored is not None and stored.offer_expires_at == NOW + dt.timedelta(minutes=30)
        assert stored.offer_expires_at.tzinfo is not None
    assert await world.booked(slot) == 3  # held for the first person, not free to anyone
    _, walk_in = await world.person()
    with refused("booking.full"):
        await world.book(walk_in, slot)
    async with world.tx() as s:
        with refused("waitlist.not_yours"):
            await wl.accept_offer(s, e1.id, second_acc, NOW)
        with refused("waitlist.not_offered"):
            await wl.accept_offer(s, e2.id, second_acc, NOW)
        booking = await wl.accept_offer(s, e1.id, first_acc, NOW + dt.timedelta(minutes=29))
        assert booking.session_id == slot and booking.status == "booked"
    assert await world.booked(slot) == 3
    async with world.tx() as s:
        entry = await s.get(WaitlistEntry, e1.id)
        assert entry is not None and entry.status == "accepted" and entry.booking_id == booking.id
        assert (
            await s.scalar(
                select(func.count())
                .select_from(Booking)
                .where(Booking.session_id == slot, Booking.status == "booked")
            )
            == 3
        )


async def test_expired_offer_passes_to_the_next_person(world: World) -> None:
    slot = await world.slot("LC-TYT-SAPA", TODAY + dt.timedelta(1))
    holders = await _fill(world, slot)
    people = [await world.person() for _ in range(2)]
    async with world.tx() as s:
        for _, book in people:
            await wl.join_waitlist(s, book.id, COVID, today=TODAY, session_id=slot)
    async with world.tx() as s:
        await bk.cancel(s, holders[0][1].id, holders[0][0], now=NOW)
        first = await wl.offer_freed_place(s, slot, NOW, 30)
        assert first is not None and first.health_book_id == people[0][1].id
    later = NOW + dt.timedelta(minutes=31)
    async with world.tx() as s:
        assert await wl.expire_offers(s, NOW + dt.timedelta(minutes=10), 30) == []
        with refused("waitlist.offer_expired"):
            await wl.accept_offer(s, first.id, people[0][0], later)
    # a fresh session factory, as after a restart: the offers live in rows
    async with transaction(session_factory(world.engine)) as s:
        offers = await wl.expire_offers(s, later, 30)
        assert [o.health_book_id for o in offers] == [people[1][1].id]
    assert await world.booked(slot) == 3
    async with world.tx() as s:
        assert (await s.get(WaitlistEntry, first.id)).status == "expired"
        await wl.accept_offer(s, offers[0].id, people[1][0], later)


async def test_declined_offer_frees_the_place(world: World) -> None:
    slot = await world.slot("LC-TYT-SAPA", TODAY + dt.timedelta(1))
    holders = await _fill(world, slot)
    account, book = await world.person()
    async with world.tx() as s:
        entry = await wl.join_waitlist(s, book.id, COVID, today=TODAY, session_id=slot)
        await bk.cancel(s, holders[0][1].id, holders[0][0], now=NOW)
        assert await wl.offer_freed_place(s, slot, NOW) is not None
        # nobody else waits: a second freed place stays free
        await bk.cancel(s, holders[1][1].id, holders[1][0], now=NOW)
        assert await wl.offer_freed_place(s, slot, NOW) is None
    assert await world.booked(slot) == 2
    async with world.tx() as s:
        left = await wl.leave_waitlist(s, entry.id, account)
        assert left.status == "cancelled"
        with refused("waitlist.not_active"):
            await wl.leave_waitlist(s, entry.id, account)
        with refused("waitlist.not_found"):
            await wl.leave_waitlist(s, 10**9, account)
    assert await world.booked(slot) == 1


async def test_waitlist_for_a_site_and_day(world: World) -> None:
    day = TODAY + dt.timedelta(1)
    slot = await world.slot("LC-TYT-SAPA", day)
    _, book = await world.person()
    async with world.tx() as s:
        site = await lk.get_site(s, "LC-TYT-SAPA")
        with refused("waitlist.places_free"):
            await wl.join_waitlist(s, book.id, COVID, today=TODAY, session_id=slot)
        entry = await wl.join_waitlist(s, book.id, COVID, today=TODAY, site_id=site.id, date=day)
        assert entry.session_id is None and entry.dose == 1
        with refused("booking.past_date"):
            await wl.join_waitlist(
                s, book.id, COVID, today=TODAY, site_id=site.id, date=TODAY - dt.timedelta(1)
            )
    async with world.tx() as s:
        offer = await wl.offer_freed_place(s, slot, NOW)
        assert offer is not None and offer.id == entry.id and offer.held_session_id == slot
    _, booked_already = await world.person()
    await world.book(booked_already, slot)
    async with world.tx() as s:
        with refused("waitlist.already_booked"):
            await wl.join_waitlist(
                s, booked_already.id, COVID, today=TODAY, site_id=site.id, date=day
            )


async def test_waitlist_for_a_site_any_day_waits_until_the_dose_is_due(world: World) -> None:
    _, second_dose = await world.person()
    _, first_dose = await world.person()
    async with world.tx() as s:
        covid = await lk.get_campaign(s, COVID)
        s.add(
            Vaccination(
                health_book_id=second_dose.id,
                campaign_id=covid.id,
                dose=1,
                vaccine_code="astrazeneca",
                lot_number="L",
                given_at=NOW - dt.timedelta(days=50),  # dose 2 due in 6 days
            )
        )
    async with world.tx() as s:
        site = await lk.get_site(s, "LC-TYT-SAPA")
        early = await wl.join_waitlist(s, second_dose.id, COVID, today=TODAY, site_id=site.id)
        assert (early.dose, early.not_before, early.date) == (2, TODAY + dt.timedelta(6), None)
    async with world.tx() as s:
        late = await wl.join_waitlist(s, first_dose.id, COVID, today=TODAY, site_id=site.id)
        assert (late.dose, late.not_before) == (1, TODAY)
    tomorrow = await world.slot("LC-TYT-SAPA", TODAY + dt.timedelta(1))
    due_day = await world.slot("LC-TYT-SAPA", TODAY + dt.timedelta(6))
    async with world.tx() as s:
        offer = await wl.offer_freed_place(s, tomorrow, NOW)
        assert offer is not None and offer.id == late.id  # the first in line is not due yet
        offer = await wl.offer_freed_place(s, due_day, NOW)
        assert offer is not None and offer.id == early.id
        assert await wl.offer_freed_place(s, due_day, NOW) is None  # nobody else waits
    assert (await world.booked(tomorrow), await world.booked(due_day)) == (1, 1)


async def test_active_campaigns(world: World) -> None:
    async with world.tx() as s:
        open_now = await cp.active_campaigns(s, TODAY)
        assert {c.code for c in open_now} == {COVID, FLU}
        assert [c.name for c in open_now] == sorted(c.name for c in open_now)
        assert await cp.active_campaigns(s, dt.date(2021, 3, 1)) == []
        flu = await lk.get_campaign(s, FLU)
        flu.active = False
        covid = await lk.get_campaign(s, COVID)
        covid.ends_on = TODAY - dt.timedelta(1)
        await s.flush()
        assert await cp.active_campaigns(s, TODAY) == []


# --- check-in and doses ------------------------------------------------------------------------


async def test_check_in_only_at_the_staff_site_on_the_day(world: World) -> None:
    _, book = await world.person()
    slot = await world.slot("LC-TYT-SAPA", TODAY)
    booking = await world.book(book, slot)
    sapa = await world.staff("LC-TYT-SAPA")
    yenbai = await world.staff("LC-TYT-YENBAI")
    admin = await world.staff(None, role="admin")
    resident, _ = await world.person()
    async with world.tx() as s:
        with refused("checkin.not_your_site"):
            await ci.check_in(s, yenbai, booking.code, NOW)
        with refused("checkin.not_staff"):
            await ci.check_in(s, resident, booking.code, NOW)
        with refused("checkin.not_your_site"):
            await ci.require_site_staff(s, sapa, booking.session.site_id + 10**6)
        await ci.require_site_staff(s, admin, booking.session.site_id)
        with refused("checkin.wrong_day"):
            await ci.check_in(s, sapa, booking.code, NOW + dt.timedelta(days=1))
        with refused("booking.not_found"):
            await ci.check_in(s, sapa, "ZZZZZZZ", NOW)
    async with world.tx() as s:
        done = await ci.check_in(s, sapa, booking.code.lower(), NOW)
        assert done.booking.status == "checked_in" and done.book.id == book.id
        assert done.group == "eligible" and done.booking.checked_in_by == sapa.id
        again = await ci.check_in(s, admin, booking.code, NOW)  # harmless, and admins may
        assert again.booking.status == "checked_in"


async def test_check_in_of_a_cancelled_booking(world: World) -> None:
    account, book = await world.person()
    booking = await world.book(book, await world.slot("LC-TYT-SAPA", TODAY))
    sapa = await world.staff("LC-TYT-SAPA")
    async with world.tx() as s:
        await bk.cancel(s, booking.id, account)
        with refused("checkin.not_active"):
            await ci.check_in(s, sapa, booking.code, NOW)


async def test_record_dose_and_the_next_window(world: World) -> None:
    _, book = await world.person()
    booking = await world.book(book, await world.slot("LC-TYT-SAPA", TODAY))
    sapa = await world.staff("LC-TYT-SAPA")
    yenbai = await world.staff("LC-TYT-YENBAI")
    async with world.tx() as s:
        with refused("vaccination.not_checked_in"):
            await ci.record_dose(s, sapa, booking.code, "astrazeneca", "A1", NOW)
        await ci.check_in(s, sapa, booking.code, NOW)
    async with world.tx() as s:
        with refused("checkin.not_your_site"):
            await ci.record_dose(s, yenbai, booking.code, "astrazeneca", "A1", NOW)
        with refused("vaccination.wrong_vaccine") as info:
            await ci.record_dose(s, sapa, booking.code, "vaxigrip_tetra", "A1", NOW)
        assert "astrazeneca" in info.value.params["allowed"]
        with refused("vaccination.lot_invalid"):
            await ci.record_dose(s, sapa, booking.code, "astrazeneca", "   ", NOW)
        window = await ci.record_dose(s, sapa, booking.code, "astrazeneca", " ABV 5811 ", NOW)
        assert window is not None and window.dose == 2
        assert (window.earliest, window.latest) == (
            TODAY + dt.timedelta(56),
            TODAY + dt.timedelta(84),
        )
    async with world.tx() as s:
        record = await s.scalar(select(Vaccination).where(Vaccination.booking_id == booking.id))
        assert record is not None and record.lot_number == "ABV 5811" and record.dose == 1
        assert record.recorded_by == sapa.id
        assert (await s.get(Booking, booking.id)).status == "vaccinated"
        window = await elig.eligible_doses(s, book, COVID, TODAY)
        assert window is not None and window.previous_vaccine == "astrazeneca"
    # dose 2: not before the interval, then fine
    with refused("booking.too_early"):
        await world.book(book, await world.slot("LC-TYT-SAPA", TODAY + dt.timedelta(55)))
    second = await world.book(book, await world.slot("LC-TYT-SAPA", TODAY + dt.timedelta(56)))
    assert second.dose == 2


async def test_a_dose_recorded_twice_is_refused(world: World) -> None:
    _, book = await world.person()
    booking = await world.book(book, await world.slot("LC-TYT-SAPA", TODAY))
    sapa = await world.staff("LC-TYT-SAPA")
    async with world.tx() as s:
        await ci.check_in(s, sapa, booking.code, NOW)
        covid = await lk.get_campaign(s, COVID)
        s.add(  # entered by hand meanwhile
            Vaccination(
                health_book_id=book.id,
                campaign_id=covid.id,
                dose=1,
                vaccine_code="pfizer",
                lot_number="P",
                given_at=NOW,
            )
        )
        await s.flush()
        with refused("vaccination.duplicate"):
            await ci.record_dose(s, sapa, booking.code, "pfizer", "P", NOW)
        # the savepoint rolled back: the booking is still checked in, the transaction usable
        assert (await bk.find_booking_by_code(s, booking.code)).status == "checked_in"


async def test_schedule_complete(world: World) -> None:
    _, book = await world.person()
    async with world.tx() as s:
        covid = await lk.get_campaign(s, COVID)
        for dose, days_ago in ((1, 300), (2, 250), (3, 120)):
            s.add(
                Vaccination(
                    health_book_id=book.id,
                    campaign_id=covid.id,
                    dose=dose,
                    vaccine_code="pfizer",
                    lot_number="X",
                    given_at=NOW - dt.timedelta(days=days_ago),
                )
            )
    slot = await world.slot("LC-TYT-SAPA", TODAY)
    async with world.tx() as s:
        assert await elig.eligible_doses(s, book, COVID, TODAY) is None
        with refused("booking.schedule_complete"):
            await bk.book(s, book.id, slot, COVID, None, TODAY)


async def test_not_vaccinated_can_book_again(world: World) -> None:
    _, book = await world.person()
    booking = await world.book(book, await world.slot("LC-TYT-SAPA", TODAY))
    sapa = await world.staff("LC-TYT-SAPA")
    async with world.tx() as s:
        with refused("outcome.not_checked_in"):  # nobody has seen the person yet
            await ci.record_not_vaccinated(s, sapa, booking.code, "fever", NOW)
        await ci.check_in(s, sapa, booking.code, NOW)
        with refused("vaccination.reason_invalid"):
            await ci.record_not_vaccinated(s, sapa, booking.code, "  ", NOW)
        done = await ci.record_not_vaccinated(s, sapa, booking.code, "fever 38.5 °C", NOW)
        assert done.status == "not_vaccinated" and done.outcome_reason == "fever 38.5 °C"
        with refused("checkin.not_active"):
            await ci.record_not_vaccinated(s, sapa, booking.code, "again", NOW)
    again = await world.book(book, await world.slot("LC-TYT-SAPA", TODAY + dt.timedelta(7)))
    assert again.dose == 1


# --- data files and sessions ----------------------------------------------------------------------


async def test_campaign_files_load_idempotently(world: World) -> None:
    async with world.tx() as s:
        before = {c.code: c.id for c in await cp.list_campaigns(s)}
        again = await cp.load_campaign_file(s, cp.SAMPLE_CAMPAIGNS[0])
        assert [c.code for c in again] == [COVID] and again[0].id == before[COVID]
        covid = again[0]
        assert covid.vaccine_codes == ["astrazeneca", "pfizer", "moderna", "sinopharm"]
        assert covid.schedules["astrazeneca"] == {"min_days": [56], "max_days": [84]}
        assert covid.schedules["moderna"]["max_days"] == [None]
        assert (covid.min_age_months, covid.booster_min_days, covid.boosters) == (216, 90, 1)
        flu = await lk.get_campaign(s, FLU)
        assert (flu.doses, flu.min_age_months, flu.boosters) == (1, 6, None)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[[campaign]]\ncode = 'x'\n", "name is required"),
        (
            "[[campaign]]\ncode='x'\nname='X'\nvaccines=['nope']\nstarts_on=2021-01-01\n",
            "vaccine 'nope' is not defined",
        ),
        (
            "[[vaccine]]\ncode='v'\nname='V'\nmanufacturer='M'\n[[campaign]]\ncode='x'\n"
            "name='X'\nvaccines=['v']\ndoses=2\nstarts_on=2021-01-01\n",
            "min_days must list 1 interval(s)",
        ),
        ("this is = = not toml", "line 1"),
        ("", "no [[campaign]]"),
    ],
)
async def test_bad_campaign_files(world: World, tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    async with world.tx() as s:
        with pytest.raises(cp.DataError) as info:
            await cp.load_campaign_file(s, path)
    assert any(problem in p for p in info.value.problems), info.value.problems


async def test_sites_csv_errors_name_their_lines_and_write_nothing(
    world: World, tmp_path: Path
) -> None:
    path = tmp_path / "sites.csv"
    path.write_text(
        "code,name,address,province_code,ward_code,lat,lon,kind,notes\n"
        "NEW-1,Trạm Y tế mới,Xã Bắc Hà,15,2839,22.54,104.29,commune_station,\n"
        "NEW-2,Trạm Y tế Hoàn Kiếm,Hà Nội,15,4,21.03,105.85,commune_station,\n"
        "NEW-3,Trạm,Sa Pa,15,3006,103.84,22.33,clinic,\n"
        "NEW-1,Again,Sa Pa,15,3006,22.33,103.84,hospital,\n",
        encoding="utf-8",
    )
    async with world.tx() as s:
        with pytest.raises(cp.DataError) as info:
            await cp.import_sites_csv(s, path)
        problems = info.value.problems
        assert any(
            p.startswith("line 3: ward_code 4 is not a commune/ward of Lào Cai") for p in problems
        )
        assert any(p.startswith("line 4: lat 103.84 is outside Vietnam") for p in problems)
        assert any(p.startswith("line 4: kind must be one of") for p in problems)
        assert "line 5: code NEW-1 already on line 2" in problems
        assert await s.scalar(select(Site).where(Site.code == "NEW-1")) is None
    good = tmp_path / "good.csv"
    good.write_text(
        "\ufeffcode,name,address,province_code,ward_code,lat,lon,kind,notes\n"
        "LC-TYT-SAPA,Trạm Y tế phường Sa Pa (mới),Sa Pa,15,3006,22.33,103.84,commune_station,\n"
        "NEW-1,Trạm Y tế mới,Xã Bắc Hà,15,2839,22.54,104.29,commune_station,note\n",
        encoding="utf-8",
    )
    async with world.tx() as s:
        result = await cp.import_sites_csv(s, good)
        assert (result.created, result.updated) == (1, 1)
        site = await lk.get_site(s, "LC-TYT-SAPA")
        assert site.name.endswith("(mới)")


async def test_create_sessions_is_idempotent_and_checks_its_input(world: World) -> None:
    async with world.tx() as s:
        made = await cp.create_sessions(
            s,
            ["LC-TYT-BACHA"],
            COVID,
            TODAY,
            weeks=2,
            weekdays=cp.parse_weekdays("mon,wed-thu"),
            start=dt.time(13, 30),
            end=dt.time(16, 0),
            capacity=40,
        )
        assert (made.created, made.existing) == (6, 0)
        again = await cp.create_sessions(
            s,
            ["LC-TYT-BACHA"],
            COVID,
            TODAY,
            weeks=2,
            weekdays={0, 2, 3},
            start=dt.time(13, 30),
            end=dt.time(16, 0),
            capacity=40,
        )
        assert (again.created, again.existing) == (0, 6)
        with pytest.raises(cp.DataError) as info:
            await cp.create_sessions(
                s,
                ["LC-NOPE"],
                "nope",
                TODAY,
                days=1,
                start=dt.time(9),
                end=dt.time(8),
                capacity=0,
            )
        assert len(info.value.problems) == 4
        rows = await cp.list_sessions(s, site_code="LC-TYT-BACHA")
        assert len(rows) == 6 and rows[0][0].capacity == 40
    async with world.tx() as s:
        covid = await lk.get_campaign(s, COVID)
        covid.ends_on = TODAY + dt.timedelta(2)
        await s.flush()
        made = await cp.create_sessions(
            s, ["LC-TYT-LAOCAI"], COVID, TODAY, days=5, weekdays=range(7)
        )
        assert (made.created, made.outside_campaign) == (3, 2)


async def test_create_sessions_refuses_values_out_of_range(world: World) -> None:
    """A typo (an extra zero, a wrong year) is refused, not stored for ever or overflowing a
    column; a period wholly outside the campaign is refused too."""
    from bot import cli

    assert (cli.MAX_CAPACITY, cli.MAX_SPAN_DAYS) == (cp.MAX_CAPACITY, cp.MAX_SPAN_DAYS)
    async with world.tx() as s:
        before = len(await cp.list_sessions(s, site_code="LC-TYT-BACHA"))
        with pytest.raises(cp.DataError) as info:
            await cp.create_sessions(
                s,
                ["LC-TYT-BACHA"],
                COVID,
                dt.date(9999, 12, 31),
                days=100_000,
                capacity=100_000_000_000,
            )
        assert info.value.problems == [
            "the period must be 1 to 731 days (104 weeks)",
            "the first date must be between 2000-01-01 and 2099-12-31",
            "capacity must be 1 to 10000",
        ]
        with pytest.raises(cp.DataError) as info:
            await cp.create_sessions(s, ["LC-TYT-BACHA"], COVID, dt.date(2099, 12, 1), weeks=105)
        assert info.value.problems == ["the period must be 1 to 731 days (104 weeks)"]
        made = await cp.create_sessions(
            s, ["LC-TYT-BACHA"], COVID, TODAY, days=731, weekdays={6}, capacity=10_000
        )
        assert made.created == 104  # the longest period and the largest capacity are allowed
        covid = await lk.get_campaign(s, COVID)
        with pytest.raises(cp.DataError) as info:
            await cp.create_sessions(
                s, ["LC-TYT-BACHA"], COVID, covid.starts_on - dt.timedelta(9), days=7
            )
        assert info.value.problems == [
            f"the period {covid.starts_on - dt.timedelta(9)}..{covid.starts_on - dt.timedelta(3)}"
            f" is outside the campaign's dates ({covid.starts_on}..)"
        ]
        after = len(await cp.list_sessions(s, site_code="LC-TYT-BACHA"))
        assert after == before + 104


def test_parse_weekdays() -> None:
    assert cp.parse_weekdays("mon-fri") == {0, 1, 2, 3, 4}
    assert cp.parse_weekdays("Sat,SUN") == {5, 6}
    assert cp.parse_weekdays("fri-mon") == {4, 5, 6, 0}
    assert cp.parse_weekdays("all") == set(range(7))
    with pytest.raises(cp.DataError):
        cp.parse_weekdays("someday")


async def test_sample_data_is_idempotent(db_url: str) -> None:
    engine = create_engine(db_url)
    await upgrade(engine)
    factory = session_factory(engine)
    try:
        async with transaction(factory) as s:
            first = await cp.load_sample_data(s, TODAY)
        async with transaction(factory) as s:
            second = await cp.load_sample_data(s, TODAY)
    finally:
        await engine.dispose()
    assert first == {"campaigns": 2, "sites": 8, "sessions_created": 320, "sessions_existing": 0}
    assert second["sessions_created"] == 0 and second["sessions_existing"] == 320


def test_sample_sites_are_real_communes_of_lao_cai() -> None:
    rows = cp.read_sites_csv(cp.SAMPLE_SITES)
    assert 6 <= len(rows) <= 8
    assert {r["kind"] for r in rows} == {"hospital", "commune_station"}
    for row in rows:
        assert row["province_code"] == 15 and v.ward_in_province(row["ward_code"], 15)


# --- migration ---------------------------------------------------------------------------------


async def test_migration_matches_the_tables_and_downgrades(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        await upgrade(engine)

        def diff(conn: Any) -> list[Any]:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(ctx, Base.metadata)

        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []
        await downgrade(engine, "0001")
        async with engine.connect() as conn:
            left = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        assert "health_books" in left and not left & {"bookings", "sessions", "vaccinations"}
        await upgrade(engine)
    finally:
        await engine.dispose()
