"""Benchmark: commune volunteers register residents with /assist, on Telegram.

The Bot API stand-in runs in its own process, the bot in another (``healthbook run``, on a
SQLite file or a PostgreSQL database of the run's own), and the volunteers are driven from this
process over the stand-in's HTTP control API, pressing buttons where a volunteer would. Each
volunteer (an account bound to Phường Sa Pa, written before the bot starts, as ``/join`` would)
sends /assist once, then registers residents one after the other: New resident, consent read
out, the identity in one line (quick entry), Correct, no phone, no BHYT, ethnicity, occupation,
priority group, no address, the health declaration as one checklist, Save.

Baseline, in the same run and the same bot: residents registering themselves one question at a
time (the script of :mod:`bench.health_book`, 27 messages). Measured for each: messages a person
sends per registration, the bot's CPU seconds per registration (its process's own CPU time over
the wave), the bot's answer latency, and the registrations per hour one person could reach at a
human pace of one message every 6 seconds (plus the bot's median latency per message). The
volunteers' goal: ≥ 30 an hour (under 2 minutes each).

    python -m bench.assist [--quick] [--volunteers 10] [--residents 10]
                           [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
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
    own_postgres_database,
    print_table,
    spawn,
    stand_in,
    stop,
    wait_ready,
)
from bench.health_book import UPDATES_PER_RESIDENT, bot_config
from bench.health_book import resident as self_registration
from bot.standin import TgUser

PACE = 6.0  # seconds a person takes per message
GOAL = 30  # registrations an hour a volunteer should reach
SAPA, LAO_CAI = 3006, 15
FIRST_VOLUNTEER = 70_000_000  # Telegram ids of the volunteers
FIRST_RESIDENT = 80_000_000  # the baseline's residents (their IDs: born in 1950)
PROBE = 999_999_007
SAVED = "✅ Đã lưu:"


def quick_line(n: int) -> str:
    """Resident ``n``'s identity in one line: a man born on 2/9/1945 in Lào Cai, his CCCD."""
    return f"Lò Văn Páo, 2/9/1945, nam, 010045{n % 1_000_000:06d}"


async def registration(chat: Chat, n: int, figures: Figures) -> None:
    """One assisted registration, from New resident to saved: 12 messages."""
    await chat.press("as:new", figures)
    await chat.press("as:agree", figures, sends=2)
    await chat.say(quick_line(n), figures)
    await chat.press("hb:phone:qe:ok", figures, sends=2)
    await chat.press("hb:phone:none", figures)
    await chat.press("hb:bhyt:skip", figures)
    await chat.say("hmong", figures)
    await chat.press("hb:occupation:retired", figures)
    await chat.press("hb:priority_group:none", figures)
    await chat.press("hb:address_line:skip", figures)
    await chat.say("0", figures)  # the declaration: nothing applies
    await chat.press("hb:review:save", figures, sends=2)
    if not any(SAVED in text for text in chat.answer):
        figures.errors += 1


MESSAGES_PER_REGISTRATION = 12


async def volunteer(chat: Chat, first: int, residents: int, figures: Figures) -> None:
    """A volunteer's session: /assist, then ``residents`` registrations in a row."""
    await chat.say("/assist", figures)
    for i in range(residents):
        await registration(chat, first + i, figures)


async def prepare(url: str, volunteers: int) -> None:
    """The schema, and the volunteers' accounts bound to Phường Sa Pa."""
    from bot.db import create_engine, upgrade
    from models.tables import Account, VolunteerWard

    engine = create_engine(url)
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            from sqlalchemy import insert, select

            await conn.execute(
                insert(Account),
                [
                    {"channel": "telegram", "external_id": str(FIRST_VOLUNTEER + i),
                     "locale": "vi", "role": "volunteer", "link_failures": 0}
                    for i in range(volunteers)
                ],
            )  # fmt: skip
            ids = (
                await conn.execute(
                    select(Account.id).where(
                        Account.external_id.in_(
                            [str(FIRST_VOLUNTEER + i) for i in range(volunteers)]
                        )
                    )
                )
            ).scalars()
            await conn.execute(
                insert(VolunteerWard),
                [{"account_id": i, "ward_code": SAPA, "province_code": LAO_CAI} for i in ids],
            )
    finally:
        await engine.dispose()


def measured(stand: StandIn, bot_pid: int, run: Any) -> tuple[Figures, dict[str, float]]:
    """Run a wave; its figures and the CPU seconds the bot, the stand-in and the driver used."""
    meter = CpuMeter(bot=bot_pid, standin=stand.pid)
    meter.start()
    figures = asyncio.run(run())
    meter.stop()
    return figures, meter.used


def volunteers_wave(stand: StandIn, bot_pid: int, count: int, residents: int) -> dict[str, Any]:
    """``count`` volunteers at once, ``residents`` registrations each."""

    async def run() -> Figures:
        figures = Figures()
        async with http_session() as http:
            chats = [
                Chat(http, stand.control, TgUser(id=FIRST_VOLUNTEER + i, language_code="vi"))
                for i in range(count)
            ]
            start = asyncio.get_running_loop().time()
            await asyncio.gather(
                *(volunteer(c, i * residents, residents, figures) for i, c in enumerate(chats))
            )
            figures.seconds = asyncio.get_running_loop().time() - start
        return figures

    figures, cpu = measured(stand, bot_pid, run)
    return rates(figures, cpu, count * residents)


def residents_wave(stand: StandIn, bot_pid: int, count: int) -> dict[str, Any]:
    """The baseline: ``count`` residents registering themselves at once."""

    async def run() -> Figures:
        figures = Figures()
        async with http_session() as http:
            chats = [
                Chat(http, stand.control, TgUser(id=FIRST_RESIDENT + i, language_code="vi"))
                for i in range(count)
            ]
            start = asyncio.get_running_loop().time()
            await asyncio.gather(
                *(self_registration(c, FIRST_RESIDENT + i, f) for i, (c, f) in
                  enumerate((c, figures) for c in chats))
            )  # fmt: skip
            figures.seconds = asyncio.get_running_loop().time() - start
        return figures

    figures, cpu = measured(stand, bot_pid, run)
    return rates(figures, cpu, count)


def rates(figures: Figures, cpu: dict[str, float], registrations: int) -> dict[str, Any]:
    """Per registration: messages, bot CPU seconds; registrations an hour at a human pace."""
    summary = figures.summary()
    messages = figures.updates / registrations if registrations else 0.0
    per_message = PACE + summary["p50_ms"] / 1000
    return {
        "registrations": registrations,
        "messages": figures.updates,
        "messages_per_registration": round(messages, 2),
        "bot_cpu_s_per_registration": round(cpu["bot"] / registrations, 4),
        "bot_cpu_ms_per_message": round(1000 * cpu["bot"] / figures.updates, 2)
        if figures.updates
        else 0.0,
        "p50_ms": summary["p50_ms"],
        "p95_ms": summary["p95_ms"],
        "seconds_per_registration_at_pace": round(messages * per_message, 1),
        "registrations_per_hour_at_pace": round(3600 / (messages * per_message), 1)
        if messages
        else 0.0,
        "errors": figures.errors,
        "wave_seconds": summary["seconds"],
    }


@contextlib.contextmanager
def database(kind: str, pg_url: str) -> Iterator[str]:
    """A fresh database: a SQLite file, or a PostgreSQL database of the run's own."""
    if kind == "postgresql":
        with own_postgres_database(pg_url, "healthbook_bench_assist") as url:
            yield url
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield f"sqlite+aiosqlite:///{Path(tmp) / 'bench-assist.db'}"


def run(volunteers: int, residents: int, db_url: str) -> dict[str, dict[str, Any]]:
    """Both waves against one bot."""
    asyncio.run(prepare(db_url, volunteers))
    with stand_in("telegram") as stand, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text(bot_config("telegram", stand, db_url), encoding="utf-8")
        proc = spawn(
            "-m", "bot", "run", "--config", str(config), cwd=tmp, stdout=subprocess.DEVNULL
        )
        try:

            async def probe() -> None:
                async with http_session() as http:
                    await wait_ready(http, stand.control, PROBE, "/help")

            asyncio.run(probe())
            assisted = volunteers_wave(stand, proc.pid, volunteers, residents)
            baseline = residents_wave(stand, proc.pid, volunteers)
        finally:
            stop(proc)
    return {"assisted": assisted, "self": baseline}


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volunteers", type=int, default=10)
    parser.add_argument("--residents", type=int, default=10, help="registrations per volunteer")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-url", default=PG_DEFAULT)
    parser.add_argument("--quick", action="store_true", help="3 volunteers, 3 residents each")
    args = parser.parse_args()
    volunteers, residents = (3, 3) if args.quick else (args.volunteers, args.residents)
    try:
        with database(args.database, args.pg_url) as url:
            runs = run(volunteers, residents, url)
    except NoServerError as exc:
        raise SystemExit(str(exc)) from None
    assisted, baseline = runs["assisted"], runs["self"]
    print(
        f"\n/assist: {volunteers} volunteers × {residents} residents, at once, {args.database}; "
        f"baseline: {volunteers} residents registering themselves"
    )
    columns = {
        "msgs/reg": "messages_per_registration",
        "cpu_s/reg": "bot_cpu_s_per_registration",
        "p50_ms": "p50_ms",
        "p95_ms": "p95_ms",
        "s/reg@6s": "seconds_per_registration_at_pace",
        "regs/h@6s": "registrations_per_hour_at_pace",
        "errors": "errors",
    }
    print_table(
        {
            name: {short: row[key] for short, key in columns.items()}
            for name, row in (("volunteer, quick entry", assisted), ("resident alone", baseline))
        },
        list(columns),
    )
    per_hour = assisted["registrations_per_hour_at_pace"]
    print(
        f"volunteer: {assisted['messages_per_registration']} messages per registration, "
        f"{assisted['bot_cpu_s_per_registration']} s of bot CPU each; at one message every "
        f"{PACE:g} s: {per_hour} registrations an hour   goal ≥ {GOAL}"
        f" ({'met' if per_hour >= GOAL else 'NOT met'})"
    )
    print(
        f"baseline (a resident alone, one question at a time): "
        f"{baseline['messages_per_registration']} messages, "
        f"{baseline['registrations_per_hour_at_pace']} an hour at the same pace"
    )
    last_line(
        {
            "benchmark": "assist",
            "database": args.database,
            "volunteers": volunteers,
            "residents_per_volunteer": residents,
            "pace_seconds": PACE,
            "goal_per_hour": GOAL,
            "goal_met": per_hour >= GOAL,
            "assisted": assisted,
            "self": baseline,
            "baseline_updates_per_resident": UPDATES_PER_RESIDENT,
        }
    )


if __name__ == "__main__":
    main()
