"""Benchmark: N simulated residents fill in the whole health book at once.

The Bot API stand-in runs in its own process, the bot in another (``healthbook run``), and the
residents are driven from this process over the stand-in's HTTP control API. The same number of
updates is then sent to a bare python-telegram-bot echo bot on the same stand-in, as a baseline.
A second, smaller wave shows whether the bot's memory grows per resident once they are done.

    python -m bench.health_book [--residents 500] [--database sqlite|postgresql] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    PG_DEFAULT,
    Chat,
    Figures,
    http_session,
    last_line,
    memory_kb,
    print_table,
    spawn,
    stand_in,
    stop,
    wait_ready,
)
from bot.standin import TgUser
from models import validators as v

SCREENING = [item.code for item in v.screening_items()]


async def resident(chat: Chat, n: int, figures: Figures) -> None:
    """One person's whole health book: 28 updates, buttons where a person would press them."""
    await chat.say("/start", figures, sends=2)
    await chat.press("hb:consent:yes", figures)
    await chat.say("nguyễn văn an", figures)
    await chat.say("15/3/1950", figures)
    await chat.press("hb:gender:male", figures)
    await chat.say(f"010050{n:06d}", figures)
    await chat.say("0912 345 678", figures, sends=2)
    await chat.press("hb:bhyt:skip", figures)
    await chat.say("hmong", figures)
    await chat.press("hb:occupation:farmer", figures)
    await chat.press("hb:priority_group:none", figures)
    await chat.press("hb:province:15", figures)
    await chat.say("sa pa", figures)
    await chat.say("Thôn Lếch Dao", figures)
    for code in SCREENING:
        await chat.press(f"hb:screening:{code}:no", figures)
    await chat.press("hb:allergies:none", figures)
    await chat.say("cao huyết áp", figures)
    await chat.press("hb:review:save", figures)


UPDATES_PER_RESIDENT = 17 + len(SCREENING)


async def echo_person(chat: Chat, _n: int, figures: Figures) -> None:
    """The same number of updates, each answered by one echo."""
    for i in range(UPDATES_PER_RESIDENT):
        await chat.say(f"message {i}", figures)


async def wave(control: str, script: Any, first_id: int, count: int, think: float = 0.0) -> Figures:
    """``count`` people running ``script`` all at once (each thinking ``think`` s per answer)."""
    figures = Figures()
    async with http_session() as http:
        chats = [
            Chat(http, control, TgUser(id=first_id + i, language_code="vi"), think)
            for i in range(count)
        ]
        start = time.perf_counter()
        await asyncio.gather(*(script(chat, first_id + i, figures) for i, chat in enumerate(chats)))
        figures.seconds = time.perf_counter() - start
    return figures


async def probe(control: str, text: str, uid: int) -> None:
    """Until the bot under test answers."""
    async with http_session() as http:
        await wait_ready(http, control, uid, text)


def run_echo(base_url: str, control: str, residents: int, think: float = 0.0) -> dict[str, Any]:
    """The baseline: a bare echo bot under the same load."""
    proc = spawn("-m", "bench.echo_bot", "--base-url", base_url)
    try:
        asyncio.run(probe(control, "ping", 999_999_001))
        figures = asyncio.run(wave(control, echo_person, 10_000_000, residents, think))
        return {**figures.summary(), "peak_rss_mb": round(memory_kb(proc.pid)["VmHWM"] / 1024, 1)}
    finally:
        stop(proc)


def run_bot(
    base_url: str, control: str, residents: int, db_url: str, think: float = 0.0
) -> dict[str, Any]:
    """The health-book bot under the load, then a second wave to see memory per resident."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text(
            f'[telegram]\ntoken = "123456:BENCH"\nbase_url = "{base_url}"\n'
            f'base_file_url = "{base_url.replace("/bot", "/file/bot")}"\npoll_timeout = 1\n'
            f'[database]\nurl = "{db_url}"\n[logging]\nlevel = "WARNING"\n',
            encoding="utf-8",
        )
        proc = spawn(
            "-m", "bot", "run", "--config", str(config), cwd=tmp, stdout=subprocess.DEVNULL
        )
        try:
            asyncio.run(probe(control, "/help", 999_999_002))
            idle_kb = memory_kb(proc.pid)["VmRSS"]
            figures = asyncio.run(wave(control, resident, 20_000_000, residents, think))
            after_first = memory_kb(proc.pid)["VmRSS"]
            more = max(10, residents // 5)  # enough to see growth, short enough to stay quick
            second = asyncio.run(wave(control, resident, 30_000_000, more))
            mem = memory_kb(proc.pid)
            growth = (mem["VmRSS"] - after_first) / more
            return {
                **figures.summary(),
                "second_wave_residents": more,
                "second_wave_updates_per_s": second.summary()["updates_per_s"],
                "second_wave_errors": second.errors,
                "idle_rss_mb": round(idle_kb / 1024, 1),
                "rss_after_wave1_mb": round(after_first / 1024, 1),
                "rss_after_wave2_mb": round(mem["VmRSS"] / 1024, 1),
                "peak_rss_mb": round(mem["VmHWM"] / 1024, 1),
                "rss_growth_kb_per_resident": round(growth, 2),
            }
        finally:
            stop(proc)


def reset_postgres(url: str) -> None:
    """An empty schema for the run."""
    from sqlalchemy import text

    from bot.db import create_engine

    async def _reset() -> None:
        engine = create_engine(url)
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        await engine.dispose()

    asyncio.run(_reset())


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--residents", type=int, default=500)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-url", default=PG_DEFAULT)
    parser.add_argument("--quick", action="store_true", help="50 residents")
    parser.add_argument(
        "--think",
        type=float,
        default=0.0,
        help="mean seconds a resident takes per answer (0: answer at once, saturating the bot)",
    )
    args = parser.parse_args()
    residents = 50 if args.quick else args.residents

    with tempfile.TemporaryDirectory() as tmp:
        if args.database == "postgresql":
            db_url = args.pg_url
            reset_postgres(db_url)
        else:
            db_url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        with stand_in() as base_url:
            control = base_url.removesuffix("/bot")
            echo = run_echo(base_url, control, residents, args.think)
            hb = run_bot(base_url, control, residents, db_url, args.think)

    ratio = round(hb["updates_per_s"] / echo["updates_per_s"], 3) if echo["updates_per_s"] else 0
    print(
        f"\nhealth book: {residents} residents at once, {UPDATES_PER_RESIDENT} updates each, "
        f"{args.database}"
    )
    keys = ["updates_per_s", "p50_ms", "p95_ms", "p99_ms", "peak_rss_mb", "errors"]
    print_table({"healthbook bot": hb, "echo bot (baseline)": echo}, keys)
    print(f"throughput ratio (bot / echo): {ratio:.1%}   goal ≥ 40%")
    print(f"p99 latency: {hb['p99_ms']} ms   goal < 1000 ms")
    print(
        f"memory: idle {hb['idle_rss_mb']} MB, after wave 1 {hb['rss_after_wave1_mb']} MB, "
        f"after wave 2 {hb['rss_after_wave2_mb']} MB → "
        f"{hb['rss_growth_kb_per_resident']} KB per further resident"
    )
    last_line(
        {
            "benchmark": "health_book",
            "database": args.database,
            "residents": residents,
            "updates_per_resident": UPDATES_PER_RESIDENT,
            "think_seconds": args.think,
            "bot": hb,
            "echo": echo,
            "throughput_ratio": ratio,
        }
    )


if __name__ == "__main__":
    main()
