"""Benchmark: many residents book scarce vaccination places at once, straight through the domain
functions (no Telegram), each attempt in its own transaction.

Every run books ``--attempts`` residents into ``--sessions`` sessions of ``--capacity`` places
(1000 × 20 × 30 by default: 600 places for 1000 people, each choosing a session at random), with
``--concurrency`` tasks at a time; on PostgreSQL the same load is also spread over
``--processes`` OS processes. Measured: bookings per second, latency percentiles and the
overbooking count (sum over sessions of max(0, bookings − capacity), which must be 0). The
baseline, measured in the same invocation, is a naive read-then-write booking (read ``booked``,
compare in Python, write ``booked + 1`` back): it overbooks as soon as transactions really run
at the same time, which is why ``models.places`` takes a place with one conditional UPDATE.

    python -m bench.booking [--quick] [--database sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import multiprocessing as mp
import random
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select, text, update

from bench.common import PG_DEFAULT, NoServerError, last_line, own_postgres_database, print_table
from bot.db import create_engine, session_factory, transaction, upgrade
from models import booking as bk
from models import campaigns as cp
from models.errors import DomainError
from models.tables import Account, Booking, Session, Site

TODAY = dt.date(2026, 11, 25)
CAMPAIGN = "covid19_2021"

Attempt = tuple[int, int]  # (health book id, session id)


# --- the two ways of taking a place ------------------------------------------------------------


async def atomic_book(session: Any, book_id: int, session_id: int, campaign_id: int) -> None:
    """The real thing: ``models.booking.book`` (one conditional UPDATE in a savepoint)."""
    await bk.book(session, book_id, session_id, campaign_id, None, TODAY)


async def naive_book(session: Any, book_id: int, session_id: int, campaign_id: int) -> None:
    """The baseline: the same checks, then read the count, compare in Python, write it back."""
    plan = await bk.check_booking(session, book_id, session_id, campaign_id, None, TODAY)
    booked, capacity = (
        await session.execute(
            select(Session.booked, Session.capacity).where(Session.id == session_id)
        )
    ).one()
    if booked >= capacity:
        raise DomainError("booking.full")
    await session.execute(
        update(Session)
        .where(Session.id == session_id)
        .values(booked=booked + 1)  # another transaction may have written since we read
        .execution_options(synchronize_session=False)
    )
    session.add(
        Booking(
            code=bk.new_booking_code(),
            health_book_id=book_id,
            session_id=session_id,
            campaign_id=campaign_id,
            dose=plan.dose,
            status="booked",
        )
    )
    await session.flush()


METHODS = {"atomic": atomic_book, "naive": naive_book}


# --- one batch of attempts in one process --------------------------------------------------------


@dataclass
class Batch:
    """What one process measured."""

    latencies: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    started: float = 0.0
    finished: float = 0.0


async def run_batch(
    url: str, method: str, attempts: list[Attempt], campaign_id: int, concurrency: int
) -> Batch:
    """``attempts`` booked by ``concurrency`` tasks, each attempt in its own transaction."""
    engine = create_engine(url, pool_size=max(1, (concurrency + 1) // 2))  # + as much overflow
    factory = session_factory(engine)
    take = METHODS[method]
    batch = Batch()
    queue = list(reversed(attempts))

    async def worker() -> None:
        while queue:
            book_id, session_id = queue.pop()
            start = time.perf_counter()
            try:
                async with transaction(factory) as s:
                    await take(s, book_id, session_id, campaign_id)
                batch.outcomes["ok"] += 1
            except DomainError as exc:
                batch.outcomes[exc.key] += 1
            except Exception as exc:  # a database error is a figure here, not a crash
                batch.outcomes[type(exc).__name__] += 1
            batch.latencies.append(time.perf_counter() - start)

    try:
        async with engine.connect() as conn:  # connect before the clock starts
            await conn.execute(text("SELECT 1"))
        batch.started = time.time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        batch.finished = time.time()
    finally:
        await engine.dispose()
    return batch


def _process_main(
    url: str,
    method: str,
    attempts: list[Attempt],
    campaign_id: int,
    concurrency: int,
    barrier: Any,
    results: Any,
) -> None:
    """One worker process: wait until every process is ready, then book its share."""
    barrier.wait()
    batch = asyncio.run(run_batch(url, method, attempts, campaign_id, concurrency))
    results.put((batch.latencies, dict(batch.outcomes), batch.started, batch.finished))


def run_processes(
    url: str,
    method: str,
    attempts: list[Attempt],
    campaign_id: int,
    concurrency: int,
    processes: int,
) -> Batch:
    """The attempts split over several OS processes that start together."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    share = max(1, concurrency // processes)
    procs = [
        ctx.Process(
            target=_process_main,
            args=(url, method, attempts[i::processes], campaign_id, share, barrier, results),
        )
        for i in range(processes)
    ]
    for proc in procs:
        proc.start()
    total = Batch(started=float("inf"))
    for _ in procs:
        latencies, outcomes, started, finished = results.get(timeout=300)
        total.latencies += latencies
        total.outcomes.update(outcomes)
        total.started = min(total.started, started)
        total.finished = max(total.finished, finished)
    for proc in procs:
        proc.join(30)
    return total


# --- the database ---------------------------------------------------------------------------------


async def prepare(url: str, sessions: int, capacity: int, residents: int) -> dict[str, Any]:
    """In an empty database: the schema, the COVID-19 campaign, the Lào Cai sites, ``sessions``
    sessions and ``residents`` people with a health book."""
    engine = create_engine(url)
    try:
        await upgrade(engine)
        async with transaction(session_factory(engine)) as s:
            campaign = (await cp.load_campaign_file(s, cp.SAMPLE_CAMPAIGNS[0]))[0]
            await cp.import_sites_csv(s, cp.SAMPLE_SITES)
            sites = list((await s.scalars(select(Site).order_by(Site.code))).all())
            slots = [
                Session(
                    site_id=sites[i % len(sites)].id,
                    campaign_id=campaign.id,
                    date=TODAY + dt.timedelta(days=i // len(sites)),
                    start_time=dt.time(7, 30),
                    end_time=dt.time(11, 30),
                    capacity=capacity,
                    booked=0,
                )
                for i in range(sessions)
            ]
            s.add_all(slots)
            accounts = [Account(channel="bench", external_id=str(i)) for i in range(residents)]
            s.add_all(accounts)
            await s.flush()
            books = [
                cp.sample_book(
                    a.id,
                    full_name="Resident",
                    date_of_birth=dt.date(1980, 1, 1),
                    ward_code=sites[i % len(sites)].ward_code,
                    consent_version="bench",
                )
                for i, a in enumerate(accounts)
            ]
            s.add_all(books)
            await s.flush()
            return {
                "campaign_id": campaign.id,
                "sessions": [x.id for x in slots],
                "books": [b.id for b in books],
            }
    finally:
        await engine.dispose()


async def reset_bookings(url: str) -> None:
    """No bookings and every place free again, for the next run."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(delete(Booking))
            await conn.execute(update(Session).values(booked=0))
    finally:
        await engine.dispose()


async def audit(url: str) -> dict[str, int]:
    """Overbooking (bookings beyond capacity) and lost updates (``booked`` ≠ bookings)."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            counts = dict(
                (
                    await conn.execute(
                        select(Booking.session_id, func.count())
                        .where(Booking.status == "booked")
                        .group_by(Booking.session_id)
                    )
                ).all()
            )
            rows = (await conn.execute(select(Session.id, Session.booked, Session.capacity))).all()
    finally:
        await engine.dispose()
    return {
        "overbooked": sum(max(0, counts.get(i, 0) - cap) for i, _, cap in rows),
        "sessions_overbooked": sum(1 for i, _, cap in rows if counts.get(i, 0) > cap),
        "count_mismatch": sum(1 for i, booked, _ in rows if booked != counts.get(i, 0)),
    }


def summarise(batch: Batch, attempts: int, audit_figures: dict[str, int]) -> dict[str, Any]:
    """The figures of one run."""
    seconds = max(batch.finished - batch.started, 1e-9)
    lat = sorted(batch.latencies) or [0.0]

    def pct(p: float) -> float:
        return round(1000 * lat[min(len(lat) - 1, int(p * len(lat)))], 1)

    ok = batch.outcomes.get("ok", 0)
    other = {k: n for k, n in batch.outcomes.items() if k not in ("ok", "booking.full")}
    return {
        "attempts": attempts,
        "bookings": ok,
        "full": batch.outcomes.get("booking.full", 0),
        "errors": sum(other.values()),
        "error_kinds": other,
        "seconds": round(seconds, 2),
        "bookings_per_s": round(ok / seconds, 1),
        "attempts_per_s": round(attempts / seconds, 1),
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "mean_ms": round(1000 * statistics.fmean(lat), 1),
        **audit_figures,
    }


def bench_database(kind: str, url: str, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Every run on one database: atomic and naive, in one process and (PostgreSQL) several."""
    world = asyncio.run(prepare(url, args.sessions, args.capacity, args.attempts))
    rng = random.Random(20211008)
    attempts = [(b, rng.choice(world["sessions"])) for b in world["books"]]
    plans = [("atomic", 1), ("naive", 1)]
    if kind == "postgresql" and args.processes > 1:
        plans += [("atomic", args.processes), ("naive", args.processes)]
    runs: dict[str, dict[str, Any]] = {}
    for method, processes in plans:
        asyncio.run(reset_bookings(url))
        if processes == 1:
            batch = asyncio.run(
                run_batch(url, method, attempts, world["campaign_id"], args.concurrency)
            )
        else:
            batch = run_processes(
                url, method, attempts, world["campaign_id"], args.concurrency, processes
            )
        name = f"{method}_{processes}p"
        runs[name] = summarise(batch, len(attempts), asyncio.run(audit(url)))
        runs[name]["processes"] = processes
    return runs


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--pg-url", default=PG_DEFAULT, help="server to use: the run creates a database there"
    )
    parser.add_argument("--attempts", type=int, default=1000, help="residents, one try each")
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--capacity", type=int, default=30, help="places per session")
    parser.add_argument("--concurrency", type=int, default=64, help="transactions at a time")
    parser.add_argument("--processes", type=int, default=4, help="PostgreSQL worker processes")
    parser.add_argument("--quick", action="store_true", help="200 attempts, 5 sessions")
    args = parser.parse_args()
    if args.quick:
        args.attempts, args.sessions = 200, 5

    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    results: dict[str, Any] = {}
    skipped: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            if kind == "postgresql":
                try:
                    with own_postgres_database(args.pg_url, "healthbook_bench_booking") as url:
                        results[kind] = bench_database(kind, url, args)
                except NoServerError as exc:
                    print(f"{exc}: skipped")
                    skipped.append(kind)
            else:
                url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
                results[kind] = bench_database(kind, url, args)

    if not results:
        raise SystemExit("nothing was measured")
    places = args.sessions * args.capacity
    print(
        f"\nbooking: {args.attempts} residents for {places} places "
        f"({args.sessions} sessions × {args.capacity}), {args.concurrency} transactions at a time"
    )
    rows = {}
    for kind, runs in results.items():
        for name, run in runs.items():
            method, _ = name.split("_")
            label = f"{kind} {method}" + (" (baseline)" if method == "naive" else "")
            if run["processes"] > 1:
                label += f" ×{run['processes']} procs"
            # column names that fit the table's width
            rows[label] = {
                **run,
                "bookings/s": run["bookings_per_s"],
                "attempts/s": run["attempts_per_s"],
            }
    keys = ["bookings", "bookings/s", "attempts/s", "p50_ms", "p95_ms", "p99_ms", "overbooked"]
    print_table(rows, keys)
    atomic_over = sum(
        run["overbooked"] for runs in results.values() for n, run in runs.items() if "atomic" in n
    )
    errors = sum(run["errors"] for runs in results.values() for run in runs.values())
    print(f"overbooking with the atomic update: {atomic_over} (must be 0); other errors: {errors}")
    if "sqlite" in results:
        print("sqlite: one connection, so transactions queue and even the naive way cannot race")
    last_line(
        {
            "benchmark": "booking",
            "attempts": args.attempts,
            "sessions": args.sessions,
            "capacity": args.capacity,
            "concurrency": args.concurrency,
            "processes": args.processes,
            "skipped": skipped,
            "atomic_overbooked": atomic_over,
            "results": results,
        }
    )


if __name__ == "__main__":
    main()
