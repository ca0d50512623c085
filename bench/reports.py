"""Benchmark: the province's weekly report over a million residents and 5,000 agencies.

The residents are generated in the database itself, in SQL (``INSERT … SELECT`` over
``generate_series`` on PostgreSQL, over a recursive CTE on SQLite), so the generator's memory
stays flat too: 1,000,000 health books (100,000 with ``--quick``), about 85 % held by their own
account, 10 % relatives' books held by staff, 5 % residents a volunteer registered (no
account), ward codes drawn from the real communes and wards of Lào Cai, birth dates spread so
about three quarters are adults; 5,000 agencies (500) in a tree four levels deep; about a fifth
of the residents staff of an agency (a few moved from another one), with some accounts that
joined before writing a health book; bookings for 40 % of the books (a tenth of them
cancelled), dose 1 for 30 %, dose 2 for 15 %, over the last half year.

Measured, each in a child process of its own (the generator's memory does not count; peak RSS
is the child's ``ru_maxrss``): the weekly report of the last week that ended — its snapshot
(``models.reports.take_snapshot``), the province's report built from it
(``models.reports.build``) and its workbook (``models.report_files.workbook``) — and the live
report (``week=None``). Wall and CPU seconds of the child, and on PostgreSQL the server's CPU
(its backends, read from /proc). Baselines in the same run, by the same method: (a) a bare
``SELECT count(*) FROM health_books`` after the same imports and connection (the floor of a
process that only connects), and (b) the same report at a tenth of the residents (same
agencies), so that "memory flat" shows as the same peak at both sizes. Every figure of the
report is checked against the generator's rows, counted by plain SQL with the same definitions.
Goal on PostgreSQL: under 5 seconds for the million, memory flat.

    python -m bench.reports [--quick] [--database sqlite|postgresql|both] [--pg-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from bench.common import (
    PG_DEFAULT,
    NoServerError,
    cpu_seconds,
    last_line,
    memory_kb,
    own_postgres_database,
    print_table,
)
from bot.db import create_engine, session_factory, transaction, upgrade
from models import campaigns as cp
from models import reference
from models import validators as v

FULL = (1_000_000, 5_000)  # residents, agencies
QUICK = (100_000, 500)
GOAL_SECONDS = 5.0  # PostgreSQL, the million
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
PROVINCE = cp.SAMPLE_PROVINCE  # Lào Cai
SPAN = 182 * 86_400  # the residents registered over the last half year, evenly
DAY = 86_400
AGE_DAYS = 26_300  # birth dates spread over 72 years: about 75 % are 18 or older
EXTRA_SHARE = 50  # one account in 50 more, without a health book (half of them joined)
P = 1_000_003  # a prime: ``(i * M) % P`` spreads consecutive numbers (the generator's hashes)
M_WARD, M_BOOK, M_AGE, M_AGENCY, M_KIND = 2_654_435_761, 40_503, 97_613, 7_919_993, 611_953
RELATIONS = ("father", "mother", "spouse", "child", "other")


# --------------------------------------------------------------------------------------------
# SQL that differs between the two databases
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dialect:
    """The fragments of SQL the generator writes differently on SQLite and PostgreSQL (every
    value is a number or a code of the generator's own, written into the statement)."""

    name: str

    @property
    def pg(self) -> bool:
        """PostgreSQL."""
        return self.name == "postgresql"

    def series(self, first: int, last: int) -> tuple[str, str]:
        """The numbers ``first``…``last`` as ``n(i)``: (a prefix for the statement, its FROM)."""
        if self.pg:
            return "", f"generate_series(CAST({first} AS BIGINT), {last}) AS n(i)"
        cte = (
            f"WITH RECURSIVE n(i) AS (SELECT {first} UNION ALL "
            f"SELECT i + 1 FROM n WHERE i < {last})"
        )
        return cte, "n"

    def ts(self, seconds: str) -> str:
        """A timestamp from Unix seconds, as the application stores one."""
        if self.pg:
            return f"to_timestamp({seconds})"
        # SQLAlchemy's SQLite format (UTC, microseconds always written: compared as text)
        return f"strftime('%Y-%m-%d %H:%M:%S.000000', {seconds}, 'unixepoch')"

    def moment(self, when: dt.datetime) -> str:
        """A fixed moment."""
        return self.ts(str(int(when.timestamp())))

    def days_before(self, day: dt.date, days: str) -> str:
        """The date ``days`` before ``day``."""
        if self.pg:
            return f"(DATE '{day.isoformat()}' - CAST({days} AS INTEGER))"
        return f"date('{day.isoformat()}', '-' || ({days}) || ' days')"

    def least(self, a: str, b: str) -> str:
        """The smaller of two numbers."""
        return f"LEAST({a}, {b})" if self.pg else f"min({a}, {b})"

    def pad(self, number: str, width: int) -> str:
        """A number written with ``width`` digits."""
        if self.pg:
            return f"lpad(CAST({number} AS TEXT), {width}, '0')"
        return f"printf('%0{width}d', {number})"

    def json(self, value: Any) -> str:
        """A JSON literal."""
        raw = json.dumps(value, separators=(",", ":"))
        assert "'" not in raw
        return f"CAST('{raw}' AS JSONB)" if self.pg else f"'{raw}'"


def kind_of(url: str) -> str:
    """``sqlite`` or ``postgresql``, from a database URL."""
    return "postgresql" if url.startswith("postgresql") else "sqlite"


# --------------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What to generate: sizes and the clock."""

    residents: int  # health books, a multiple of 20 (the generator's slots repeat every 20)
    agencies: int
    now: dt.datetime  # the last moment anything happened (UTC, whole seconds)

    @property
    def start(self) -> int:
        """Unix time of the first registration."""
        return int(self.now.timestamp()) - SPAN - 3600

    @property
    def extra(self) -> int:
        """Accounts without a health book."""
        return max(2, self.residents // EXTRA_SHARE)

    @property
    def levels(self) -> list[tuple[int, int]]:
        """The agencies' ids, level by level from the top: (first, last)."""
        k = self.agencies
        sizes = [max(2, k // 50), max(2, k // 5), max(2, k // 2)]
        sizes.append(k - sum(sizes))
        if sizes[-1] < 1:
            raise ValueError("at least 10 agencies")
        out, first = [], 1
        for size in sizes:
            out.append((first, first + size - 1))
            first += size
        return out


def slot_time(plan: Plan, i: str, count: int | None = None, offset: int = 1) -> str:
    """Unix time at which slot ``i`` registered (slots ``offset``… of ``count``, evenly)."""
    return f"({plan.start} + (({i}) - {offset}) * {SPAN} / {count or plan.residents})"


def book_rows(d: Dialect, plan: Plan, wards: int) -> str:
    """Every health book: slot ``i`` (``r = (i - 1) % 20``): 0–1 a relative's book held by
    the staff member of slot ``i + 3`` or ``i + 7``, 2 a resident a volunteer registered (no
    account), 3–19 the resident's own book (account ``i``)."""
    prefix, nums = d.series(1, plan.residents)
    t = slot_time(plan, "i")
    r = "((i - 1) % 20)"
    screening = d.json({item.code: "no" for item in v.screening_items()})
    relation = "CASE " + " ".join(
        f"WHEN (i * {M_KIND}) % {P} % 5 = {n} THEN '{rel}'" for n, rel in enumerate(RELATIONS)
    ) + " END"  # fmt: skip
    ethnicities = [e.code for e in reference.common_ethnicities()]
    ethnicity = f"CASE (i * {M_AGE}) % {P} % {len(ethnicities)} " + " ".join(
        f"WHEN {n} THEN {code}" for n, code in enumerate(ethnicities)
    ) + " END"  # fmt: skip
    jobs = reference.occupations()
    occupation = f"CASE i % {len(jobs)} " + " ".join(
        f"WHEN {n} THEN '{job}'" for n, job in enumerate(jobs)
    ) + " END"  # fmt: skip
    return f"""
        {prefix}
        INSERT INTO health_books (
            id, account_id, relation, consent_kind, consent_at, full_name, date_of_birth,
            gender, id_kind, id_number, ethnicity, occupation, priority_group, province_code,
            ward_code, screening, consent_version, created_at, updated_at)
        SELECT
            i,
            CASE WHEN {r} = 0 THEN i + 3 WHEN {r} = 1 THEN i + 7 WHEN {r} = 2 THEN NULL
                 ELSE i END,
            CASE WHEN {r} < 2 THEN {relation} WHEN {r} = 2 THEN 'assisted' ELSE 'self' END,
            CASE WHEN {r} < 2 THEN 'relative' WHEN {r} = 2 THEN 'verbal' ELSE 'own' END,
            {d.ts(t)},
            'Cư dân ' || i,
            {d.days_before(plan.now.date(), f"(i * {M_AGE}) % {P} % {AGE_DAYS}")},
            CASE WHEN i % 2 = 0 THEN 'female' ELSE 'male' END,
            CASE WHEN {r} < 2 THEN NULL ELSE 'cccd' END,
            CASE WHEN {r} < 2 THEN NULL ELSE '015' || {d.pad("i", 9)} END,
            {ethnicity},
            {occupation},
            'none',
            {PROVINCE},
            w.code,
            {screening},
            'bench',
            {d.ts(t)},
            {d.ts(t)}
        FROM {nums}
        JOIN bench_wards w ON w.k = (i * {M_WARD}) % {P} % {wards}
    """


def account_rows(d: Dialect, plan: Plan) -> list[str]:
    """The residents' own accounts (id = their slot), then accounts without a health book."""
    prefix, nums = d.series(1, plan.residents)
    columns = "id, channel, external_id, locale, role, created_at, link_failures"
    channel = "CASE WHEN i % 3 = 0 THEN 'zalo' ELSE 'telegram' END"
    own = f"""
        {prefix}
        INSERT INTO accounts ({columns})
        SELECT i, {channel}, 'bench' || i, 'vi', 'resident', {d.ts(slot_time(plan, "i"))}, 0
        FROM {nums} WHERE (i - 1) % 20 >= 3
    """
    first, last = plan.residents + 1, plan.residents + plan.extra
    prefix, nums = d.series(first, last)
    t = slot_time(plan, "i", plan.extra, first)
    extra = f"""
        {prefix}
        INSERT INTO accounts ({columns})
        SELECT i, {channel}, 'bench' || i, 'vi', 'resident', {d.ts(t)}, 0 FROM {nums}
    """
    return [own, extra]


KINDS_BY_LEVEL = (
    ("department", "commune"),
    ("unit", "school", "hospital", "unit"),
    ("unit", "school", "business"),
    ("unit", "unit", "business"),
)
NAMES = {
    "department": "Sở ",
    "commune": "UBND xã ",
    "unit": "Phòng ",
    "school": "Trường ",
    "hospital": "Bệnh viện ",
    "business": "Công ty ",
}


def agency_rows(d: Dialect, plan: Plan) -> list[str]:
    """The tree, level by level (a child's path is its parent's and its own id)."""
    staff = plan.residents // 5 + plan.extra // 2
    base = max(1, staff // plan.agencies)  # a member of staff per agency, about
    now = d.moment(plan.now - dt.timedelta(days=200))
    statements = []
    for level, (first, last) in enumerate(plan.levels):
        prefix, nums = d.series(first, last)
        kinds = KINDS_BY_LEVEL[level]
        kind = f"CASE i % {len(kinds)} " + " ".join(
            f"WHEN {n} THEN '{k}'" for n, k in enumerate(kinds)
        ) + " END"  # fmt: skip
        name = f"CASE i % {len(kinds)} " + " ".join(
            f"WHEN {n} THEN '{NAMES[k]}' || i" for n, k in enumerate(kinds)
        ) + " END"  # fmt: skip
        if level == 0:
            parent, path, join = "NULL", "'/' || i || '/'", ""
        else:
            above_first, above_last = plan.levels[level - 1]
            parent = "p.id"
            path = "p.path || i || '/'"
            join = f"JOIN agencies p ON p.id = {above_first} + i % {above_last - above_first + 1}"
        statements.append(f"""
            {prefix}
            INSERT INTO agencies (id, code, name, kind, parent_id, path, expected_staff,
                                  created_at, updated_at)
            SELECT i, 'AG' || {d.pad("i", 5)}, {name}, {kind}, {parent}, {path},
                   {base} + (i * 13) % {max(1, base // 2)}, {now}, {now}
            FROM {nums} {join}
        """)  # fmt: skip
    # a head for each agency of the two top levels: a member of staff (slot 20·j + 4)
    heads = min(plan.levels[1][1], plan.residents // 20 - 1)
    if heads >= 1:  # (a recursive CTE always yields its first number)
        prefix, nums = d.series(1, heads)
        statements.append(f"""
            {prefix}
            INSERT INTO agency_heads (agency_id, account_id, created_at)
            SELECT i, 20 * i + 4, {now} FROM {nums}
        """)
    return statements


def agency_of(plan: Plan, account: str) -> str:
    """The agency a member of staff belongs to now."""
    return f"(1 + ({account} * {M_AGENCY}) % {P} % {plan.agencies})"


def member_rows(d: Dialect, plan: Plan) -> list[str]:
    """Memberships: staff are the residents of slots ``r % 5 = 3`` (one in five) and half of
    the accounts without a book; one staff member in 20 moved here from the next agency
    three days after joining it (some of them after the week's end)."""
    prefix, nums = d.series(1, plan.residents)
    t = slot_time(plan, "i")
    last = int(plan.now.timestamp())
    staff = "(i - 1) % 20 % 5 = 3"
    mover = "(i / 5) % 20 = 0"
    moved_at = d.least(f"{t} + 3 * {DAY}", str(last - 120))
    agency = agency_of(plan, "i")
    columns = "account_id, agency_id, joined_at, left_at, left_reason"
    before = f"""
        {prefix}
        INSERT INTO agency_members ({columns})
        SELECT i, {agency} % {plan.agencies} + 1, {d.ts(f"{t} + 600")}, {d.ts(moved_at)},
               'moved'
        FROM {nums} WHERE {staff} AND {mover}
    """
    joined = d.least(f"{t} + 3600", str(last - 60))
    now = f"""
        {prefix}
        INSERT INTO agency_members ({columns})
        SELECT i, {agency},
               CASE WHEN {mover} THEN {d.ts(moved_at)} ELSE {d.ts(joined)} END, NULL, NULL
        FROM {nums} WHERE {staff}
    """
    first = plan.residents + 1
    prefix, nums = d.series(first, plan.residents + plan.extra)
    t = slot_time(plan, "i", plan.extra, first)
    joined = d.least(f"{t} + 3600", str(last - 60))
    extra = f"""
        {prefix}
        INSERT INTO agency_members ({columns})
        SELECT i, {agency}, {d.ts(joined)}, NULL, NULL FROM {nums} WHERE i % 2 = 0
    """
    return [before, now, extra]


def booking_rows(
    d: Dialect, plan: Plan, campaign: int, sessions: tuple[int, int], sites: tuple[int, int],
    vaccine: str,
) -> list[str]:  # fmt: skip
    """Bookings for 40 % of the books (``h < 40``; cancelled ``h < 4``), dose 1 given for 30 %
    (``4 ≤ h < 34``, with their booking), dose 2 for 15 % (``4 ≤ h < 19``)."""
    prefix, nums = d.series(1, plan.residents)
    last = int(plan.now.timestamp())
    rows = f"(SELECT i, (i * {M_BOOK}) % {P} % 100 AS h, {slot_time(plan, 'i')} AS t FROM {nums}) s"
    session = f"{sessions[0]} + i % {sessions[1] - sessions[0] + 1}"
    site = f"{sites[0]} + i % {sites[1] - sites[0] + 1}"
    booked_at = d.least(f"t + 2 * {DAY}", str(last - 300))
    cancelled_at = d.least(f"t + 3 * {DAY}", str(last - 200))
    bookings = f"""
        {prefix}
        INSERT INTO bookings (id, code, health_book_id, session_id, campaign_id, dose, status,
                              created_at, cancelled_at)
        SELECT i, 'B' || {d.pad("i", 7)}, i, {session}, {campaign}, 1,
               CASE WHEN h < 4 THEN 'cancelled' WHEN h < 34 THEN 'vaccinated' ELSE 'booked' END,
               {d.ts(booked_at)},
               CASE WHEN h < 4 THEN {d.ts(cancelled_at)} END
        FROM {rows} WHERE h < 40
    """
    columns = (
        "health_book_id, campaign_id, dose, vaccine_code, lot_number, given_at, site_id, booking_id"
    )
    doses = [
        f"""
        {prefix}
        INSERT INTO vaccinations ({columns})
        SELECT i, {campaign}, {dose}, '{vaccine}', 'LOT' || (i % 50),
               {d.ts(d.least(f"t + {days} * {DAY}", str(last - gap)))}, {site},
               {"i" if dose == 1 else "NULL"}
        FROM {rows} WHERE h >= 4 AND h < {top}
        """
        for dose, days, gap, top in ((1, 7, 100, 34), (2, 35, 50, 19))
    ]
    places = """
        UPDATE sessions SET booked = (
            SELECT count(*) FROM bookings b
            WHERE b.session_id = sessions.id AND b.status <> 'cancelled')
    """
    return [bookings, *doses, places]


async def reference_rows(url: str, plan: Plan) -> dict[str, Any]:
    """The COVID-19 campaign and its vaccines, the Lào Cai sites, a session at each (the
    places every booking takes)."""
    from sqlalchemy import select

    from models.tables import Campaign, Session, Site

    engine = create_engine(url)
    try:
        async with transaction(session_factory(engine)) as s:
            campaign: Campaign = (await cp.load_campaign_file(s, cp.SAMPLE_CAMPAIGNS[0]))[0]
            await cp.import_sites_csv(s, cp.SAMPLE_SITES)
            sites = list((await s.scalars(select(Site).order_by(Site.id))).all())
            day = plan.now.date() - dt.timedelta(days=90)
            slots = [
                Session(
                    site_id=site.id, campaign_id=campaign.id, date=day,
                    start_time=dt.time(7, 30), end_time=dt.time(11, 30),
                    capacity=plan.residents, booked=0,
                )
                for site in sites
            ]  # fmt: skip
            s.add_all(slots)
            await s.flush()
            site_ids = [x.id for x in sites]
            session_ids = [x.id for x in slots]
            for ids in (site_ids, session_ids):  # the generator spreads over consecutive ids
                assert ids == list(range(ids[0], ids[0] + len(ids))), ids
            return {
                "campaign": campaign.id,
                "vaccine": campaign.vaccine_codes[0],
                "sites": (site_ids[0], site_ids[-1]),
                "sessions": (session_ids[0], session_ids[-1]),
            }
    finally:
        await engine.dispose()


async def generate(url: str, plan: Plan) -> dict[str, Any]:
    """Migrate, then write every row of ``plan`` in SQL; the counts of what was written."""
    d = Dialect(kind_of(url))
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    ref = await reference_rows(url, plan)
    wards = [code for code, _ in reference.wards(PROVINCE)]
    statements = [
        *account_rows(d, plan),
        *agency_rows(d, plan),
        *member_rows(d, plan),
        book_rows(d, plan, len(wards)),
        *booking_rows(d, plan, ref["campaign"], ref["sessions"], ref["sites"], ref["vaccine"]),
    ]
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("CREATE TEMPORARY TABLE bench_wards (k INTEGER PRIMARY KEY, code INTEGER)")
            )
            await conn.execute(
                text("INSERT INTO bench_wards (k, code) VALUES (:k, :code)"),
                [{"k": k, "code": code} for k, code in enumerate(wards)],
            )
            for sql in statements:
                await conn.execute(text(sql))
            await conn.execute(text("DROP TABLE bench_wards"))
            if d.pg:  # the ids were written: the sequences go on after them
                for table in ("accounts", "health_books", "agencies", "bookings"):
                    await conn.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"(SELECT max(id) FROM {table}))"
                        )
                    )
        if d.pg:  # as autovacuum would have by the time anyone asks for a report
            async with engine.connect() as conn:
                auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await auto.execute(text("VACUUM ANALYZE"))
        async with engine.connect() as conn:
            return await counts(conn)
    finally:
        await engine.dispose()


async def counts(conn: AsyncConnection) -> dict[str, Any]:
    """What the generator wrote."""

    async def one(sql: str) -> int:
        return int((await conn.execute(text(sql))).scalar_one())

    depth = await one("SELECT max(length(path) - length(replace(path, '/', ''))) - 1 FROM agencies")
    return {
        "health_books": await one("SELECT count(*) FROM health_books"),
        "accounts": await one("SELECT count(*) FROM accounts"),
        "agencies": await one("SELECT count(*) FROM agencies"),
        "agency_depth": depth,
        "top_agencies": await one("SELECT count(*) FROM agencies WHERE parent_id IS NULL"),
        "memberships_open": await one("SELECT count(*) FROM agency_members WHERE left_at IS NULL"),
        "memberships_moved": await one(
            "SELECT count(*) FROM agency_members WHERE left_reason = 'moved'"
        ),
        "relatives_books": await one(
            "SELECT count(*) FROM health_books WHERE relation NOT IN ('self', 'assisted')"
        ),
        "assisted_books": await one(
            "SELECT count(*) FROM health_books WHERE relation = 'assisted'"
        ),
        "bookings": await one("SELECT count(*) FROM bookings"),
        "dose1": await one("SELECT count(*) FROM vaccinations WHERE dose = 1"),
        "dose2": await one("SELECT count(*) FROM vaccinations WHERE dose = 2"),
    }


async def expected(url: str, moment: dt.datetime) -> dict[str, int]:
    """The province's figures at ``moment``, counted by plain SQL from the issue's definitions
    (what the report must show)."""
    d = Dialect(kind_of(url))
    at = d.moment(moment)
    member = f"m.joined_at <= {at} AND (m.left_at IS NULL OR m.left_at > {at})"
    own = (
        "SELECT 1 FROM health_books b WHERE b.account_id = m.account_id "
        f"AND b.relation = 'self' AND b.created_at <= {at}"
    )
    queries = {
        "joined": f"SELECT count(*) FROM agency_members m WHERE {member}",
        "complete": f"SELECT count(*) FROM agency_members m WHERE {member} AND EXISTS ({own})",
        "booked": f"""SELECT count(*) FROM agency_members m WHERE {member} AND EXISTS (
            {own} AND EXISTS (SELECT 1 FROM bookings k WHERE k.health_book_id = b.id
              AND k.created_at <= {at} AND (k.cancelled_at IS NULL OR k.cancelled_at > {at})))""",
        "relatives": f"""SELECT count(*) FROM agency_members m JOIN health_books b
            ON b.account_id = m.account_id AND b.relation NOT IN ('self', 'assisted')
            AND b.created_at <= {at} WHERE {member}""",
        "registered": f"SELECT count(*) FROM health_books WHERE created_at <= {at}",
        "ward_vaccinated": f"""SELECT count(*) FROM health_books b WHERE b.created_at <= {at}
            AND EXISTS (SELECT 1 FROM vaccinations x WHERE x.health_book_id = b.id
            AND x.given_at <= {at})""",
    }
    for dose in (1, 2):
        queries[f"dose{dose}"] = f"""SELECT count(*) FROM agency_members m WHERE {member}
            AND EXISTS ({own} AND EXISTS (SELECT 1 FROM vaccinations x
            WHERE x.health_book_id = b.id AND x.dose = {dose} AND x.given_at <= {at}))"""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return {
                name: int((await conn.execute(text(sql))).scalar_one())
                for name, sql in queries.items()
            }
    finally:
        await engine.dispose()


# --------------------------------------------------------------------------------------------
# The measured child process
# --------------------------------------------------------------------------------------------


def rss_mb() -> float:
    """This process's resident memory now, in MB."""
    return round(memory_kb(os.getpid()).get("VmRSS", 0) / 1024, 1)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (``ru_maxrss``, KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


async def backend_pids(conn: AsyncConnection) -> list[int]:
    """The PostgreSQL server processes serving this database (the run's own)."""
    rows = await conn.execute(
        text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
    )
    return [int(pid) for pid in rows.scalars()]


def server_cpu(pids: list[int]) -> dict[int, float]:
    """CPU seconds used so far by each server process readable here."""
    out = {}
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            out[pid] = cpu_seconds(pid)
    return out


def report_figures(report: Any) -> dict[str, Any]:
    """What the report says for the province, to check against the generator."""
    total = report.total
    return {
        "joined": total.joined,
        "complete": total.complete,
        "booked": total.booked,
        "relatives": total.relatives,
        "dose1": total.doses[0] if len(total.doses) > 0 else 0,
        "dose2": total.doses[1] if len(total.doses) > 1 else 0,
        "registered": sum(w.registered for w in report.wards),
        "ward_vaccinated": sum(w.vaccinated for w in report.wards),
        "lines": len(report.lines),
        "wards": len(report.wards),
    }


async def measured(what: str, url: str, week: str) -> dict[str, Any]:
    """One measurement in this (child) process: ``count`` (the baseline), ``week`` (snapshot,
    build, workbook) or ``live`` (build, workbook)."""
    from bot.i18n import Translations
    from models import report_files, reports

    t = Translations().get("vi")
    pg = kind_of(url) == "postgresql"
    engine = create_engine(url)
    factory = session_factory(engine)
    out: dict[str, Any] = {"what": what}
    try:
        async with engine.connect() as conn:  # connected before the clock starts
            await conn.execute(text("SELECT 1"))
            pids = await backend_pids(conn) if pg else []
        out["floor_rss_mb"] = rss_mb()
        db_before = server_cpu(pids)
        wall, cpu = time.perf_counter(), time.process_time()
        parts: dict[str, float] = {}
        if what == "count":
            async with engine.connect() as conn:
                out["count"] = (
                    await conn.execute(text("SELECT count(*) FROM health_books"))
                ).scalar_one()
        else:
            mark = time.perf_counter()
            if what == "week":
                async with transaction(factory) as s:
                    await reports.take_snapshot(s, week, TZ, dt.datetime.now(dt.UTC))
                parts["snapshot"] = time.perf_counter() - mark
                mark = time.perf_counter()
            async with transaction(factory) as s:
                report = await reports.build(
                    s, scope="province", tz=TZ, now=dt.datetime.now(dt.UTC),
                    week=week if what == "week" else None,
                )  # fmt: skip
            parts["build"] = time.perf_counter() - mark
            mark = time.perf_counter()
            book = report_files.workbook(report, t, TZ)
            parts["workbook"] = time.perf_counter() - mark
            out["workbook_bytes"] = len(book)
            out["figures"] = report_figures(report)
        out["seconds"] = round(time.perf_counter() - wall, 3)
        out["cpu_seconds"] = round(time.process_time() - cpu, 3)
        out["parts"] = {name: round(s, 3) for name, s in parts.items()}
        if pg:
            async with engine.connect() as conn:
                pids = await backend_pids(conn)
            after = server_cpu(pids)
            if after:
                used = sum(c - db_before.get(pid, 0.0) for pid, c in after.items())
                out["db_backend_cpu_seconds"] = round(used, 3)
    finally:
        await engine.dispose()
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def child(what: str, url: str, week: str) -> dict[str, Any]:
    """A measurement in a fresh process of its own; its figures."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.reports", "--measure", what, "--url", url, "--week", week],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise RuntimeError(f"the {what} measurement failed (exit {done.returncode})")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# --------------------------------------------------------------------------------------------
# A run
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def database(kind: str, pg_url: str, tmp: Path, name: str) -> Iterator[str]:
    """A fresh database: a SQLite file (deleted after), or a PostgreSQL database of its own."""
    if kind == "postgresql":
        with own_postgres_database(pg_url, "healthbook_bench_reports") as url:
            yield url
        return
    path = tmp / f"{name}.db"
    try:
        yield f"sqlite+aiosqlite:///{path}"
    finally:
        for leftover in tmp.glob(f"{name}.db*"):
            leftover.unlink()


def checked(report: dict[str, Any], want: dict[str, int]) -> list[str]:
    """The figures of a report that differ from what the generator wrote."""
    got = report["figures"]
    return [f"{k}: report {got.get(k)} ≠ rows {n}" for k, n in want.items() if got.get(k) != n]


def one_size(kind: str, url: str, plan: Plan, *, baseline: bool) -> dict[str, Any]:
    """Generate ``plan`` in ``url``, then measure (children): the week's report, the live one,
    and with ``baseline`` the bare count; each checked against the generator's rows."""
    started = time.perf_counter()
    made = asyncio.run(generate(url, plan))
    generation = time.perf_counter() - started
    print(
        f"{kind}: generated {plan.residents:,} residents, {plan.agencies:,} agencies in "
        f"{generation:.1f} s (not measured)",
        flush=True,
    )
    week = reports_last_week(plan.now)
    moment = reports_week_end(week)
    run: dict[str, Any] = {
        "residents": plan.residents,
        "agencies": plan.agencies,
        "week": week,
        "generation_seconds": round(generation, 1),
        "generated": made,
    }
    if baseline:
        run["count"] = child("count", url, week)
    run["report"] = child("week", url, week)
    run["live"] = child("live", url, week)
    problems = checked(run["report"], asyncio.run(expected(url, moment)))
    problems += [f"live {p}" for p in checked(run["live"], asyncio.run(expected(url, plan.now)))]
    run["problems"] = problems
    return run


def reports_last_week(now: dt.datetime) -> str:
    """The last week that ended at ``now``."""
    from models.reports import last_complete_week

    return last_complete_week(now, TZ)


def reports_week_end(week: str) -> dt.datetime:
    """The moment a week's report counts at."""
    from models.reports import week_end

    return week_end(week, TZ)


def bench_database(kind: str, url_of: Any, residents: int, agencies: int) -> dict[str, Any]:
    """The tenth (memory baseline) then the full size, each in a database of its own."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=1)
    tenth = Plan(max(20, residents // 200 * 20), agencies, now)
    full = Plan(residents, agencies, now)
    with url_of("tenth") as url:
        small = one_size(kind, url, tenth, baseline=False)
    with url_of("full") as url:
        big = one_size(kind, url, full, baseline=True)
    report, live, count = big["report"], big["live"], big["count"]
    out = {
        "residents": full.residents,
        "agencies": full.agencies,
        "week": big["week"],
        "seconds": report["seconds"],
        "cpu_seconds": report["cpu_seconds"],
        "cpu_us_per_resident": round(1e6 * report["cpu_seconds"] / full.residents, 2),
        "parts": report["parts"],
        "peak_rss_mb": report["peak_rss_mb"],
        "floor_rss_mb": report["floor_rss_mb"],
        "live_seconds": live["seconds"],
        "live_cpu_seconds": live["cpu_seconds"],
        "live_peak_rss_mb": live["peak_rss_mb"],
        "workbook_bytes": report["workbook_bytes"],
        "figures": report["figures"],
        "live_figures": live["figures"],
        "generated": big["generated"],
        "generation_seconds": big["generation_seconds"],
        "baseline_count_seconds": count["seconds"],
        "baseline_count_cpu_seconds": count["cpu_seconds"],
        "baseline_count_peak_rss_mb": count["peak_rss_mb"],
        "baseline_floor_rss_mb": count["floor_rss_mb"],
        "tenth_residents": tenth.residents,
        "tenth_seconds": small["report"]["seconds"],
        "tenth_cpu_seconds": small["report"]["cpu_seconds"],
        "tenth_peak_rss_mb": small["report"]["peak_rss_mb"],
        "tenth_live_seconds": small["live"]["seconds"],
        "tenth_live_peak_rss_mb": small["live"]["peak_rss_mb"],
        "problems": big["problems"] + [f"tenth {p}" for p in small["problems"]],
    }
    key = "db_backend_cpu_seconds"  # PostgreSQL: the backend serving the child (not its
    if key in report:  # parallel workers, which are gone before they can be read)
        out[key] = report[key]
        out[f"live_{key}"] = live.get(key)
        out[f"baseline_count_{key}"] = count.get(key)
    if kind == "postgresql":
        out["goal_seconds"] = GOAL_SECONDS
        out["goal_met"] = report["seconds"] < GOAL_SECONDS and live["seconds"] < GOAL_SECONDS
    return out


def show(results: dict[str, dict[str, Any]]) -> None:
    """The figures, one row per database and measurement, beside their baselines."""
    rows: dict[str, dict[str, Any]] = {}
    for kind, r in results.items():
        server = "live_db_backend_cpu_seconds", "baseline_count_db_backend_cpu_seconds"
        measured = (
            ("week report", r["residents"], "seconds", "cpu_seconds", "db_backend_cpu_seconds",
             "peak_rss_mb"),
            ("live report", r["residents"], "live_seconds", "live_cpu_seconds", server[0],
             "live_peak_rss_mb"),
            ("week, a tenth", r["tenth_residents"], "tenth_seconds", "tenth_cpu_seconds", "",
             "tenth_peak_rss_mb"),
            ("count(*) (baseline)", r["residents"], "baseline_count_seconds",
             "baseline_count_cpu_seconds", server[1], "baseline_count_peak_rss_mb"),
        )  # fmt: skip
        for label, residents, seconds, cpu, server_cpu, peak in measured:
            rows[f"{kind} {label}"] = {
                "residents": residents,
                "seconds": r[seconds],
                "cpu_s": r[cpu],
                "server_cpu_s": r.get(server_cpu, "-"),
                "peak_rss_mb": r[peak],
            }
    print()
    print_table(rows, ["residents", "seconds", "cpu_s", "server_cpu_s", "peak_rss_mb"])
    for kind, r in results.items():
        parts = ", ".join(f"{k} {s} s" for k, s in r["parts"].items())
        f = r["figures"]
        print(
            f"{kind}: {r['residents']:,} residents, {r['agencies']:,} agencies, week {r['week']}: "
            f"{r['seconds']} s ({parts}), live {r['live_seconds']} s; "
            f"CPU {r['cpu_seconds']} s ({r['cpu_us_per_resident']} µs a resident)"
        )
        print(
            f"{kind}: memory: peak {r['peak_rss_mb']} MB at {r['residents']:,} residents, "
            f"{r['tenth_peak_rss_mb']} MB at {r['tenth_residents']:,}; a process that only "
            f"imports, connects and counts: {r['baseline_count_peak_rss_mb']} MB; live report: "
            f"{r['live_peak_rss_mb']} MB and {r['tenth_live_peak_rss_mb']} MB"
        )
        g = r["generated"]
        print(
            f"{kind}: generated: {g['health_books']:,} health books ({g['relatives_books']:,} "
            f"relatives', {g['assisted_books']:,} assisted), {g['accounts']:,} accounts, "
            f"{g['memberships_open']:,} open memberships ({g['memberships_moved']:,} moved), "
            f"{g['bookings']:,} bookings, {g['dose1']:,} dose 1, {g['dose2']:,} dose 2; "
            f"agencies {g['agency_depth']} levels deep; in {r['generation_seconds']} s"
        )
        print(
            f"{kind}: province: {f['joined']} staff joined, {f['complete']} complete, "
            f"{f['booked']} booked, dose 1 {f['dose1']}, dose 2 {f['dose2']}, "
            f"{f['relatives']} relatives; {f['registered']} registered in {f['wards']} wards; "
            f"{f['lines']} agencies"
        )
        if r["problems"]:
            print(f"{kind}: figures NOT as generated: " + "; ".join(r["problems"]))
        else:
            print(f"{kind}: every figure as generated (week and live)")
        if kind == "postgresql":
            print(
                f"postgresql: goal < {GOAL_SECONDS:g} s for {r['residents']:,} residents: "
                + ("met" if r["goal_met"] else "NOT met")
            )


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--pg-url", default=PG_DEFAULT, help="server to use: the run creates its databases there"
    )
    parser.add_argument("--quick", action="store_true", help="100,000 residents, 500 agencies")
    parser.add_argument("--residents", type=int, help=argparse.SUPPRESS)  # tests: tiny sizes
    parser.add_argument("--agencies", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=["count", "week", "live"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--week", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # a child: one measurement, its figures as one line
        print(json.dumps(asyncio.run(measured(args.measure, args.url, args.week))))
        return
    residents, agencies = QUICK if args.quick else FULL
    residents = args.residents or residents
    agencies = args.agencies or agencies
    if residents < 200 or agencies < 10:
        parser.error("at least 200 residents and 10 agencies")
    residents = residents // 20 * 20
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    results: dict[str, Any] = {}
    skipped: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:

            def url_of(name: str, kind: str = kind) -> Any:
                return database(kind, args.pg_url, Path(tmp), name)

            try:
                results[kind] = bench_database(kind, url_of, residents, agencies)
            except NoServerError as exc:
                print(f"{exc}: skipped")
                skipped.append(kind)
    if not results:
        raise SystemExit("nothing was measured")
    show(results)
    last_line({"benchmark": "reports", "skipped": skipped, **results})


if __name__ == "__main__":
    main()
