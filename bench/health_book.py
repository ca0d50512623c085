"""Benchmark: N simulated residents fill in the whole health book at once.

The Bot API stand-in runs in its own process, the bot in another (``healthbook run``), and the
residents are driven from this process over the stand-in's HTTP control API. The same number of
updates is then sent to two bare echo bots on the same stand-in, as baselines: one on
python-telegram-bot, one on aiogram 3 (the ``bench`` extra; skipped, with a word, without it).
A second, smaller wave shows whether the bot's memory grows per resident once they are done.

Throughput and latency depend on the driver too: with hundreds of residents answering at once,
this process is the first to run out of CPU, and every bot looks alike. CPU milliseconds per
update, read from each process's own CPU time (/proc/<pid>/stat) over the wave, do not: they
compare what the bots cost, whatever the driver manages.

    python -m bench.health_book [--residents 500] [--database sqlite|postgresql] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    PG_DEFAULT,
    Chat,
    CpuMeter,
    Figures,
    NoServerError,
    StandIn,
    http_session,
    last_line,
    memory_kb,
    own_postgres_database,
    print_table,
    spawn,
    stand_in,
    stop,
    wait_ready,
)
from bot.standin import TgUser
from models import validators as v

# the items a man is asked; "yes" to these two, so both "which ones?" questions follow
SCREENING = [i.code for i in v.screening_items() if i.applies(gender="male", age=None)]
YES = ("chronic_controlled", "other_allergies")


async def resident(chat: Chat, n: int, figures: Figures) -> None:
    """One person's whole health book: 27 updates, buttons where a person would press them."""
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
        await chat.press(f"hb:screening:{code}:{'yes' if code in YES else 'no'}", figures)
    await chat.press("hb:allergies:unknown", figures)
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


def measured_wave(
    stand: StandIn, bot_pid: int, script: Any, first_id: int, count: int, think: float = 0.0
) -> dict[str, Any]:
    """One wave, with the CPU the bot, the stand-in and this driver used meanwhile."""
    meter = CpuMeter(bot=bot_pid, standin=stand.pid)
    meter.start()
    figures = asyncio.run(wave(stand.control, script, first_id, count, think))
    meter.stop()
    return {**figures.summary(), **meter.per_update(figures.updates, figures.seconds)}


ECHO_BOTS = {
    # name: (module to run, its arguments, probe chat, first resident id)
    "ptb": ("bench.echo_bot", lambda s: ["--base-url", s.base_url], 999_999_001, 10_000_000),
    "aiogram": ("bench.aiogram_echo", lambda s: ["--server", s.control], 999_999_003, 40_000_000),
}


def run_echo(kind: str, stand: StandIn, residents: int, think: float = 0.0) -> dict[str, Any]:
    """A baseline: a bare echo bot under the same load."""
    module, arguments, probe_id, first_id = ECHO_BOTS[kind]
    proc = spawn("-m", module, *arguments(stand))
    try:
        asyncio.run(probe(stand.control, "ping", probe_id))
        result = measured_wave(stand, proc.pid, echo_person, first_id, residents, think)
        return {**result, "peak_rss_mb": round(memory_kb(proc.pid)["VmHWM"] / 1024, 1)}
    finally:
        stop(proc)


def run_bot(stand: StandIn, residents: int, db_url: str, think: float = 0.0) -> dict[str, Any]:
    """The health-book bot under the load, then a second wave to see memory per resident."""
    base_url = stand.base_url
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
            asyncio.run(probe(stand.control, "/help", 999_999_002))
            idle_kb = memory_kb(proc.pid)["VmRSS"]
            first = measured_wave(stand, proc.pid, resident, 20_000_000, residents, think)
            after_first = memory_kb(proc.pid)["VmRSS"]
            more = max(10, residents // 5)  # enough to see growth, short enough to stay quick
            second = asyncio.run(wave(stand.control, resident, 30_000_000, more))
            mem = memory_kb(proc.pid)
            growth = (mem["VmRSS"] - after_first) / more
            return {
                **first,
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


def ratio(a: float, b: float) -> float:
    """a / b, 0 when b is 0."""
    return round(a / b, 3) if b else 0.0


def run_all(args: argparse.Namespace, residents: int, db_url: str, aiogram: bool) -> dict:
    """The baselines and the bot, one after the other on one stand-in."""
    with stand_in() as stand:
        runs = {"echo": run_echo("ptb", stand, residents, args.think)}
        if aiogram:
            runs["echo_aiogram"] = run_echo("aiogram", stand, residents, args.think)
        runs["bot"] = run_bot(stand, residents, db_url, args.think)
    return runs


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--residents", type=int, default=500)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--pg-url", default=PG_DEFAULT, help="server to use: the run creates a database there"
    )
    parser.add_argument("--quick", action="store_true", help="50 residents")
    parser.add_argument(
        "--think",
        type=float,
        default=0.0,
        help="mean seconds a resident takes per answer (0: answer at once, saturating the bot)",
    )
    args = parser.parse_args()
    residents = 50 if args.quick else args.residents
    has_aiogram = importlib.util.find_spec("aiogram") is not None
    if not has_aiogram:
        print(
            "aiogram is not installed: the aiogram echo baseline is skipped "
            "(pip install -e '.[bench]' to include it)"
        )

    with tempfile.TemporaryDirectory() as tmp:
        if args.database == "postgresql":
            try:
                with own_postgres_database(args.pg_url) as db_url:
                    runs = run_all(args, residents, db_url, has_aiogram)
            except NoServerError as exc:
                raise SystemExit(str(exc)) from None
        else:
            db_url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
            runs = run_all(args, residents, db_url, has_aiogram)

    hb, echo, aio = runs["bot"], runs["echo"], runs.get("echo_aiogram")
    print(
        f"\nhealth book: {residents} residents at once, {UPDATES_PER_RESIDENT} updates each, "
        f"{args.database}"
    )
    rows = {"healthbook bot": hb, "echo bot, python-telegram-bot": echo}
    if aio is not None:
        rows["echo bot, aiogram 3"] = aio
    table = {
        name: {
            **row,
            "cpu_ms/update": row["bot_cpu_ms_per_update"],
            "cpu_cores": row["bot_cpu_share"],
            "driver_cores": row["driver_cpu_share"],
        }
        for name, row in rows.items()
    }
    keys = ["updates_per_s", "p50_ms", "p95_ms", "p99_ms", "cpu_ms/update", "cpu_cores",
            "driver_cores", "peak_rss_mb", "errors"]  # fmt: skip
    print_table(table, keys)
    cpu_vs_ptb = ratio(hb["bot_cpu_ms_per_update"], echo["bot_cpu_ms_per_update"])
    cpu_vs_aiogram = (
        ratio(hb["bot_cpu_ms_per_update"], aio["bot_cpu_ms_per_update"]) if aio else None
    )
    throughput = ratio(hb["updates_per_s"], echo["updates_per_s"])
    print(
        f"CPU per update, bot / echo: {cpu_vs_ptb}× python-telegram-bot"
        + (f", {cpu_vs_aiogram}× aiogram" if aio else " (aiogram: not installed)")
    )
    print(f"throughput ratio (bot / echo): {throughput:.1%}   goal ≥ 40%")
    if max(row["driver_cpu_share"] for row in rows.values()) > 0.8:
        print("  the driver was busy most of the time: throughput and latency partly measure it")
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
            "echo_aiogram": aio,
            "throughput_ratio": throughput,
            "cpu_ratio_vs_echo": cpu_vs_ptb,
            "cpu_ratio_vs_aiogram_echo": cpu_vs_aiogram,
        }
    )


if __name__ == "__main__":
    main()
