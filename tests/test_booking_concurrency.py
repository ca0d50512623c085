"""Booking under concurrency: hundreds of transactions at once never overbook, never free a
place twice, and one person double-confirming books once — on every ``db_url`` database.

Each attempt runs in its own session and transaction, all started together with
``asyncio.gather``. On PostgreSQL they really overlap (a pool of 40 + 40 connections), which the
``max_open`` counter (transactions holding a connection at once) checks; on SQLite ``bot.db``
keeps one connection, so the transactions queue on the pool in arrival order, one at a time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.db import create_engine, session_factory, transaction, upgrade
from models import booking as bk
from models import campaigns as cp
from models import waitlist as wl
from models.errors import DomainError
from models.tables import Account, Booking, Session, WaitlistEntry

TODAY = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.UTC)
COVID = "covid19_2021"
CAPACITY = 50
PEOPLE = 400


@dataclass
class Arena:
    """A database with three 50-place sessions and hundreds of people with a health book."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    slots: list[int]
    books: list[int]
    accounts: dict[int, int]  # book id → account id
    open: int = 0  # transactions holding a connection right now
    max_open: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    async def run(self, work: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
        """``work`` in its own session and transaction; DomainError keys are counted."""
        try:
            async with transaction(self.sessions) as s:
                await s.connection()  # the pool gave this transaction its connection
                self.open += 1
                self.max_open = max(self.max_open, self.open)
                try:
                    result = await work(s)
                finally:
                    self.open -= 1
            self.outcomes["ok"] += 1
            return result
        except DomainError as exc:
            self.outcomes[exc.key] += 1
            return exc

    async def gather(self, *works: Callable[[AsyncSession], Awaitable[Any]]) -> list[Any]:
        """Start every transaction at once; any error other than a DomainError fails the test."""
        self.outcomes.clear()
        self.max_open = 0
        return await asyncio.gather(*(self.run(w) for w in works))

    def assert_overlapped(self) -> None:
        """On PostgreSQL many transactions were open at the same moment (so the outcome is the
        row locks at work, not a queue); SQLite's one connection takes them one at a time."""
        if self.engine.dialect.name == "sqlite":
            assert self.max_open == 1
        else:
            assert self.max_open >= 10, self.max_open

    async def owner(self, book_id: int) -> Account:
        async with self.sessions() as s:
            account = await s.get(Account, self.accounts[book_id])
            assert account is not None
            return account

    async def check_invariants(self) -> dict[int, int]:
        """Places never negative nor above capacity, and ``booked`` equals the places in use
        (bookings not cancelled plus places held for offers); returns booked per session."""
        async with self.sessions() as s:
            rows = (await s.execute(select(Session.id, Session.booked, Session.capacity))).all()
            used = dict(
                (
                    await s.execute(
                        select(Booking.session_id, func.count())
                        .where(Booking.status != "cancelled")
                        .group_by(Booking.session_id)
                    )
                ).all()
            )
            held = dict(
                (
                    await s.execute(
                        select(WaitlistEntry.held_session_id, func.count())
                        .where(WaitlistEntry.status == "offered")
                        .group_by(WaitlistEntry.held_session_id)
                    )
                ).all()
            )
        for session_id, booked, capacity in rows:
            assert 0 <= booked <= capacity
            assert booked == used.get(session_id, 0) + held.get(session_id, 0), session_id
        return {session_id: booked for session_id, booked, _ in rows}


@pytest.fixture
async def arena(db_url: str) -> AsyncIterator[Arena]:
    """Three 50-place sessions at Sa Pa and 400 people; a pool big enough to overlap."""
    engine = create_engine(db_url, pool_size=40)
    await upgrade(engine)
    factory = session_factory(engine)
    async with transaction(factory) as s:
        await cp.load_campaign_file(s, cp.SAMPLE_CAMPAIGNS[0])
        await cp.import_sites_csv(s, cp.SAMPLE_SITES)
        await cp.create_sessions(
            s, ["LC-TYT-SAPA"], COVID, TODAY, days=3, weekdays=range(7), capacity=CAPACITY
        )
        slots = list((await s.scalars(select(Session.id).order_by(Session.date))).all())
        accounts = [Account(channel="telegram", external_id=f"c{i}") for i in range(PEOPLE)]
        s.add_all(accounts)
        await s.flush()
        books = [cp.sample_book(a.id, consent_version="test") for a in accounts]
        s.add_all(books)
        await s.flush()
        by_book = {b.id: b.account_id for b in books}
    try:
        yield Arena(engine, factory, slots, [b.id for b in books], by_book)
    finally:
        await engine.dispose()


def booking_of(book_id: int, session_id: int) -> Callable[[AsyncSession], Awaitable[Any]]:
    async def work(s: AsyncSession) -> Booking:
        return await bk.book(s, book_id, session_id, COVID, None, TODAY)

    return work


async def test_200_concurrent_bookings_fill_50_places_exactly(arena: Arena) -> None:
    slot = arena.slots[0]
    results = await arena.gather(*(booking_of(b, slot) for b in arena.books[:200]))
    arena.assert_overlapped()
    assert arena.outcomes == {"ok": 50, "booking.full": 150}
    codes = {r.code for r in results if isinstance(r, Booking)}
    assert len(codes) == 50
    booked = await arena.check_invariants()
    assert booked[slot] == 50
    async with arena.sessions() as s:
        count = await s.scalar(
            select(func.count()).select_from(Booking).where(Booking.session_id == slot)
        )
    assert count == 50


async def test_double_confirm_books_once(arena: Arena) -> None:
    person = arena.books[0]
    same_session = [booking_of(person, arena.slots[0]) for _ in range(20)]
    await arena.gather(*same_session)
    assert arena.outcomes == {"ok": 1, "booking.duplicate": 19}
    # two phones choosing different sessions at the same moment: still one booking
    other = arena.books[1]
    await arena.gather(*(booking_of(other, slot) for slot in arena.slots * 5))
    assert arena.outcomes == {"ok": 1, "booking.duplicate": 14}
    booked = await arena.check_invariants()
    assert sum(booked.values()) == 2
    async with arena.sessions() as s:
        active = await s.scalar(
            select(func.count()).select_from(Booking).where(Booking.status == "booked")
        )
    assert active == 2


async def test_concurrent_cancellations_reschedules_and_bookings(arena: Arena) -> None:
    a, b, c = arena.slots
    in_a, in_b, fresh = arena.books[:50], arena.books[50:90], arena.books[90:150]
    await arena.gather(*(booking_of(p, a) for p in in_a), *(booking_of(p, b) for p in in_b))
    assert arena.outcomes == {"ok": 90}
    async with arena.sessions() as s:
        code = dict((await s.execute(select(Booking.health_book_id, Booking.code))).all())
    owners = {p: await arena.owner(p) for p in in_a + in_b}

    def cancelling(p: int) -> Callable[[AsyncSession], Awaitable[Any]]:
        async def work(s: AsyncSession) -> Booking:
            return await bk.cancel(s, code[p], owners[p], now=NOW)

        return work

    def moving(p: int, to: int) -> Callable[[AsyncSession], Awaitable[Any]]:
        async def work(s: AsyncSession) -> Booking:
            return await bk.reschedule(s, code[p], to, owner=owners[p], today=TODAY)

        return work

    works = [
        *(cancelling(p) for p in in_a[:20]),  # 20 places freed in A
        *(moving(p, b) for p in in_a[20:40]),  # A → B: B has 10 free, plus what B → A frees
        *(moving(p, a) for p in in_b[:20]),  # B → A: opposite lock order to the line above
        *(moving(p, c) for p in in_a[40:50]),  # A → C: always room
        *(cancelling(p) for p in in_b[20:30] for _ in range(2)),  # each cancelled twice at once
        *(booking_of(p, a) for p in fresh),  # 60 newcomers want A
    ]
    await arena.gather(*works)
    arena.assert_overlapped()
    # only refusals we expect; a deadlock or any database error would have failed the gather
    assert set(arena.outcomes) <= {"ok", "booking.full", "booking.not_active"}
    assert arena.outcomes["booking.not_active"] == 10  # the second of each double cancel
    booked = await arena.check_invariants()
    assert booked[c] == 10
    async with arena.sessions() as s:
        statuses = Counter((await s.scalars(select(Booking.status))).all())
    assert statuses["cancelled"] == 30
    assert sum(booked.values()) == statuses["booked"]


async def test_freed_places_go_to_distinct_waiting_people(arena: Arena) -> None:
    slot = arena.slots[0]
    holders, waiting = arena.books[:50], arena.books[50:80]
    await arena.gather(*(booking_of(p, slot) for p in holders))
    async with transaction(arena.sessions) as s:
        for p in waiting:  # one by one: the queue order is the order of joining
            await wl.join_waitlist(s, p, COVID, today=TODAY, session_id=slot)
            await s.flush()
    async with arena.sessions() as s:
        code = dict((await s.execute(select(Booking.health_book_id, Booking.code))).all())
    owners = {p: await arena.owner(p) for p in holders + waiting}

    def cancel_and_offer(p: int) -> Callable[[AsyncSession], Awaitable[Any]]:
        async def work(s: AsyncSession) -> WaitlistEntry | None:
            await bk.cancel(s, code[p], owners[p], now=NOW)
            return await wl.offer_freed_place(s, slot, NOW, 30)

        return work

    offers = await arena.gather(*(cancel_and_offer(p) for p in holders[:20]))
    assert arena.outcomes == {"ok": 20}
    offered = [o.health_book_id for o in offers]
    assert sorted(offered) == sorted(waiting[:20])  # the first 20, each offered once
    booked = await arena.check_invariants()
    assert booked[slot] == 50  # 30 bookings + 20 held places

    def accepting(entry: WaitlistEntry) -> Callable[[AsyncSession], Awaitable[Any]]:
        async def work(s: AsyncSession) -> Booking:
            owner = owners[entry.health_book_id]
            return await wl.accept_offer(s, entry.id, owner, NOW + dt.timedelta(minutes=5))

        return work

    # everyone accepts at once, while two workers expire offers (none has expired yet)
    expiring = [lambda s: wl.expire_offers(s, NOW + dt.timedelta(minutes=5), 30)] * 2
    await arena.gather(*(accepting(o) for o in offers), *expiring)
    assert arena.outcomes == {"ok": 22}
    booked = await arena.check_invariants()
    assert booked[slot] == 50
    async with arena.sessions() as s:
        active = await s.scalar(
            select(func.count())
            .select_from(Booking)
            .where(Booking.session_id == slot, Booking.status == "booked")
        )
    assert active == 50
