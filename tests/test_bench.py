"""The benchmarks' own instruments: CPU time read from /proc, a PostgreSQL database per run,
the Zalo stand-in's control API and a resident typing numbers, and a tiny Zalo run end to end."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench.common import Figures, ZaloChat, cpu_seconds, http_session, own_postgres_database
from bench.health_book import UPDATES_PER_RESIDENT, id_number, label
from bench.zalo_standin import TOKEN, BenchZaloStandIn
from bot.channels.zalo_api import ZaloApi
from bot.db import create_engine
from models import validators as v
from tests.conftest import PG_URL

ROOT = Path(__file__).resolve().parent.parent


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


def test_resident_id_numbers_are_valid_and_distinct_across_waves() -> None:
    first, second = 20_000_000, 20_100_000  # a wave's first resident, the second wave's
    numbers = [id_number(first + i) for i in range(500)] + [
        id_number(second + i) for i in range(100)
    ]
    assert len(set(numbers)) == len(numbers)
    for number in numbers:  # as the residents answer: a man born on 15/3/1950
        parsed = v.parse_id_number(number, dt.date(1950, 3, 15), v.Gender.MALE)
        assert (parsed.kind, parsed.number) == ("cccd", number)


async def test_zalo_stand_in_control_api_and_a_resident_typing_a_number() -> None:
    """An event pushed over HTTP reaches getUpdates; the answer is waited for over HTTP; the
    resident types the number the answer gives the option it wants."""
    async with BenchZaloStandIn(TOKEN, keep_calls=False, max_calls_per_chat=64) as stand:
        async with http_session() as http, ZaloApi(TOKEN, stand.url) as api:
            chat = ZaloChat(http, stand.url, "0123456789abcdef0123")
            figures = Figures()

            async def bot(reply: str) -> str:
                event = await api.get_updates(timeout=5)
                assert event is not None
                await api.send_message(event["message"]["chat"]["id"], reply)
                return str(event["message"]["text"])

            answering = asyncio.create_task(bot("Xin chọn giới tính:\n\n1. Nam\n2. Nữ"))
            await chat.say("15/3/1950", figures)
            assert await answering == "15/3/1950"
            answering = asyncio.create_task(bot("OK"))
            await chat.choose("Nữ", figures)
            assert await answering == "2"  # the number, typed
            answering = asyncio.create_task(bot("1. Có"))
            await chat.choose("Không", figures)  # not offered: typed, and an error counted
            assert await answering == "Không"
        assert (figures.updates, figures.errors) == (3, 1)
        assert chat.answer == ["1. Có"]
        assert stand.messages(chat.chat_id) == []  # no copies kept: memory stays flat


def test_zalo_labels_are_the_bot_s() -> None:
    assert label("button.no") == "Không"
    assert label("button.save").endswith("Lưu sổ sức khỏe")


def test_a_tiny_zalo_run_end_to_end() -> None:
    """``python -m bench.health_book --channel zalo`` with two residents: every health book
    saved by typing, the echo baseline answered, the last line's figures there."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.health_book", "--channel", "zalo", "--residents", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=True,
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["channels"] == ["zalo"] and figures["bot"] is None
    bot, echo = figures["zalo_bot"], figures["zalo_echo"]
    assert bot["updates"] == echo["updates"] == 2 * UPDATES_PER_RESIDENT
    assert bot["errors"] == bot["second_wave_errors"] == echo["errors"] == 0
    assert bot["bot_cpu_ms_per_update"] > 0 and echo["bot_cpu_ms_per_update"] > 0
    assert "Zalo: healthbook bot" in done.stdout and "Zalo: echo, ZaloApi" in done.stdout


def test_a_tiny_dispatch_run_end_to_end() -> None:
    """``python -m bench.dispatch`` with 600 messages: every one delivered once through the
    flood-controlled stand-in, the baseline run, the last line's figures there."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.dispatch", "--messages", "600", "--baseline", "300"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=True,
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["benchmark"] == "dispatch" and figures["messages"] == 600
    assert figures["delivered"] == 600 and figures["duplicates"] == 0
    assert figures["dispatcher"]["worker"]["sent"] == 600
    assert 0 < figures["rate_share"] <= 1.05 and figures["throttled"] >= 0
    assert figures["peak_rss_mb"] >= figures["idle_rss_mb"] > 0
    assert figures["cpu_ms_per_message"] > 0
    assert figures["baseline"]["messages"] == 300
    assert "healthbook dispatcher" in done.stdout and "bare loop (baseline)" in done.stdout


def test_assist_bench_quick() -> None:
    """``python -m bench.assist --quick``: every assisted registration saved, in few messages,
    the goal of 30 an hour at a human pace met, and the resident's own registration beside it."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.assist", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=True,
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assisted, alone = figures["assisted"], figures["self"]
    assert assisted["errors"] == alone["errors"] == 0
    assert assisted["registrations"] == 9 and alone["registrations"] == 3
    assert assisted["messages_per_registration"] <= 18 < alone["messages_per_registration"]
    assert figures["goal_met"] and assisted["registrations_per_hour_at_pace"] >= 30
    assert assisted["bot_cpu_s_per_registration"] > 0


def test_reports_bench_tiny() -> None:
    """``python -m bench.reports`` with 2,000 residents and 20 agencies (PostgreSQL too when
    TEST_DATABASE_URL is set): the generator wrote what it says (a tree four levels deep, a
    fifth of the residents staff, a few moved), the report's figures are those of the rows
    (the live province total of staff is the number of open memberships, every relative's
    book is counted, every book is in a ward), and the last line holds the figures."""
    databases = ["sqlite", "postgresql"] if PG_URL else ["sqlite"]
    command = [sys.executable, "-m", "bench.reports", "--residents", "2000", "--agencies", "20"]
    command += ["--database", "both", "--pg-url", PG_URL] if PG_URL else ["--database", "sqlite"]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=True
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["benchmark"] == "reports" and figures["skipped"] == []
    for kind in databases:
        run = figures[kind]
        assert run["seconds"] > 0 and run["live_seconds"] > 0 and run["cpu_seconds"] > 0
        assert run["peak_rss_mb"] >= run["floor_rss_mb"] > 0
        assert run["tenth_peak_rss_mb"] > 0 and run["baseline_count_peak_rss_mb"] > 0
        assert (run["residents"], run["agencies"], run["tenth_residents"]) == (2000, 20, 200)
        made = run["generated"]
        assert made["health_books"] == 2000 and made["agencies"] == 20
        assert made["agency_depth"] == 4 and made["memberships_moved"] > 0
        assert 0.18 <= made["memberships_open"] / 2000 <= 0.25
        assert run["problems"] == []  # week and live, full size and a tenth
        live = run["live_figures"]
        assert live["joined"] == made["memberships_open"]
        assert live["relatives"] == made["relatives_books"]  # every holder is staff
        assert live["registered"] == 2000 and live["wards"] > 50 and live["lines"] == 20
        assert live["dose1"] >= live["dose2"] > 0 and live["booked"] > 0
        week = run["figures"]  # at the end of the last week (just before now on a Monday)
        assert 0 < week["joined"] <= live["joined"] and 0 < week["registered"] <= 2000
        assert run["workbook_bytes"] > 0
    if PG_URL:
        assert isinstance(figures["postgresql"]["goal_met"], bool)
        assert "postgresql: goal < 5 s" in done.stdout
    assert "every figure as generated" in done.stdout and "NOT as generated" not in done.stdout
