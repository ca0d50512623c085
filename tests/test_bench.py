"""The benchmarks' own instruments: CPU time read from /proc, a PostgreSQL database per run."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench.common import cpu_seconds, own_postgres_database
from bot.db import create_engine
from tests.conftest import PG_URL


def test_cpu_seconds_is_the_process_cpu_time() -> None:
    own, before = time.process_time(), cpu_seconds(os.getpid())
    while time.process_time() < own + 0.3:  # burn 0.3 s of CPU
        pass
    used = cpu_seconds(os.getpid()) - before
    # /proc counts in clock ticks (10 ms), so allow a few of them either way
    assert abs(used - (time.process_time() - own)) < 0.05, used


async def _databases(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set((await conn.scalars(text("SELECT datname FROM pg_database"))).all())
    finally:
        await engine.dispose()


@pytest.mark.skipif(not PG_URL, reason="needs TEST_DATABASE_URL")
def test_own_postgres_database_is_created_then_dropped() -> None:
    assert PG_URL
    server = PG_URL.replace("postgresql://", "postgresql+asyncpg://", 1)
    with own_postgres_database(server, "healthbook_test_bench") as url:
        name = make_url(url).database
        assert name and name.startswith("healthbook_test_bench_")
        assert name in asyncio.run(_databases(url))  # and one can connect to it
    assert name not in asyncio.run(_databases(server))
