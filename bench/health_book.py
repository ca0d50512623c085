"""Benchmark: N simulated residents fill in the whole health book at once, on Telegram and Zalo.

The messenger API stand-in runs in its own process, the bot in another (``healthbook run``), and
the residents are driven from this process over the stand-in's HTTP control API. The same number
of updates is then sent to bare echo bots on the same stand-in, as baselines: on Telegram one on
python-telegram-bot and one on aiogram 3 (the ``bench`` extra; skipped, with a word, without
it), on Zalo one on the project's ``ZaloApi`` (``bench.zalo_echo``). A second, smaller wave
shows whether the bot's memory grows per resident once they are done.

On Telegram residents press buttons where a person would; on Zalo, which has none, they type
the same answers: an option's number, its label or a common word (``nam``, ``ko``, ``có``).
Each channel has a database of its own (a file, or a PostgreSQL database made for the run).

Throughput and latency depend on the driver too: with hundreds of residents answering at once,
this process is the first to run out of CPU, and every bot looks alike. CPU milliseconds per
update, read from each process's own CPU time (/proc/<pid>/stat) over the wave, do not: they
compare what the bots cost, whatever the driver manages.

    python -m bench.health_book [--residents 500] [--database sqlite|postgresql] [--quick]
                                [--channel both|telegram|zalo] [--zalo-mode polling|webhook]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    PG_DEFAULT,
    Chat,
    CpuMeter,
    Figures,
    NoServerError,
    StandIn,
    ZaloChat,
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
from bench.zalo_standin import TOKEN as ZALO_TOKEN
from bot.i18n import Translations
from bot.standin import TgUser
from models import validators as v

CHANNELS = ("telegram", "zalo")
# the items a man is asked; "yes" to these two, so both "which ones?" questions follow
SCREENING = [i.code for i in v.screening_items() if i.applies(gender="male", age=None)]
YES = ("chronic_controlled", "other_allergies")
_ZALO_VI = Translations().get("vi", "zalo")


def label(key: str) -> str:
    """An option's label as the bot shows it on Zalo, in Vietnamese."""
    return _ZALO_VI(key)


SAVED = label("saved.new")[:30]  # the start of "saved", whatever follows


def id_number(n: int) -> str:
    """Resident ``n``'s citizen id: Lào Cai (010), a man born in 1950 (050), then the low six
    digits of ``n`` (unique: a wave's residents are numbered from a multiple of 100,000)."""
    return f"010050{n % 1_000_000:06d}"


async def resident(chat: Chat, n: int, figures: Figures) -> None:
    """One person's whole health book on Telegram: 27 updates, buttons where a person would
    press them."""
    await chat.say("/start", figures, sends=2)
    await chat.press("hb:consent:yes", figures, sends=2)
    await chat.say("nguyễn văn an", figures)
    await chat.say("15/3/1950", figures)
    await chat.press("hb:gender:male", figures)
    await chat.say(id_number(n), figures)
    await chat.say("0912 345 678", figures, sends=2)
    await chat.press("hb:bhyt:skip", figures)
    await chat.say("hmong", figures)
    await chat.press("hb:occupation:farmer", figures)
    await chat.press("hb:priority_group:none", figures)
    await chat.press("hb:province:15", figures)
    await chat.say("sa pa", figures)
    await chat.say("Thôn Lếch Dao", figures)
    for code in SCREENING:
        # "yes" to other allergies: the next question ("which ones?") in a message of its own
        sends = 2 if code == "other_allergies" else 1
        await chat.press(f"hb:screening:{code}:{'yes' if code in YES else 'no'}", figures, sends)
    await chat.press("hb:allergies:unknown", figures)
    await chat.say("cao huyết áp", figures)
    await chat.press("hb:review:save", figures, sends=2)
    saved(chat, figures)


async def zalo_resident(chat: ZaloChat, n: int, figures: Figures) -> None:
    """The same health book on Zalo, every answer typed: a number where the bot lists options
    (found by the option's label in its last answer), words elsewhere; the same 27 updates."""
    await chat.say("/start", figures, sends=2)
    await chat.choose(label("button.agree"), figures, sends=2)
    await chat.say("nguyễn văn an", figures)
    await chat.say("15/3/1950", figures)
    await chat.say("nam", figures)  # a label, typed
    await chat.say(id_number(n), figures)
    await chat.say("0912 345 678", figures, sends=2)
    await chat.say("bỏ qua", figures)
    await chat.say("hmong", figures)
    await chat.choose(label("occupation.farmer"), figures)
    await chat.choose(label("priority.none"), figures)
    await chat.say("lao cai", figures)  # without accents
    await chat.say("sa pa", figures)
    await chat.say("Thôn Lếch Dao", figures)
    for i, code in enumerate(SCREENING):
        if code in YES:
            await chat.say("có", figures)
        elif i % 2:
            await chat.choose(label("button.no"), figures)
        else:
            await chat.say("ko", figures)  # an alias of "Không"
    await chat.choose(label("button.not_sure"), figures)
    await chat.say("cao huyết áp", figures)
    await chat.choose(label("button.save"), figures, sends=2)
    saved(chat, figures)


def saved(chat: Chat, figures: Figures) -> None:
    """The last answer says the health book was saved; else the run counts an error."""
    if not any(SAVED in text for text in chat.answer):
        figures.errors += 1


UPDATES_PER_RESIDENT = 17 + len(SCREENING)


async def echo_person(chat: Chat, _n: int, figures: Figures) -> None:
    """The same number of updates, each answered by one echo."""
    for i in range(UPDATES_PER_RESIDENT):
        await chat.say(f"message {i}", figures)


def zalo_id(n: int) -> str:
    """Resident ``n``'s Zalo id (20 hex characters, as Zalo's)."""
    return f"{n:020x}"


def make_chat(
    channel: str, http: aiohttp.ClientSession, control: str, n: int, think: float
) -> Chat:
    """Resident ``n`` on ``channel``."""
    if channel == "zalo":
        return ZaloChat(http, control, zalo_id(n), think)
    return Chat(http, control, TgUser(id=n, language_code="vi"), think)


class QueueSampler:
    """How many events wait at Zalo's ``getUpdates`` (the stand-in's pending queue), sampled
    every ``every`` seconds during a wave: the bot's poller keeps up when it stays near 0. With
    residents answering at once, each has one message under way: the mean over their number is
    the share of the time they wait on the poller rather than on the bot's work."""

    def __init__(self, control: str, every: float = 0.05) -> None:
        self.control, self.every = control, every
        self.samples: list[int] = []

    async def run(self, http: aiohttp.ClientSession) -> None:
        """Sample until cancelled."""
        while True:
            async with http.get(f"{self.control}/_standin/stats") as resp:
                stats = await resp.json()
            self.samples.append(int(stats["pending_events"]))
            await asyncio.sleep(self.every)

    def summary(self) -> dict[str, float]:
        """Mean and most events waiting at ``getUpdates``."""
        got = self.samples or [0]
        return {"api_queue_mean": round(sum(got) / len(got), 1), "api_queue_max": max(got)}


async def wave(
    control: str,
    script: Callable[[Any, int, Figures], Awaitable[None]],
    first_id: int,
    count: int,
    think: float = 0.0,
    channel: str = "telegram",
    sampler: QueueSampler | None = None,
) -> Figures:
    """``count`` people running ``script`` all at once (each thinking ``think`` s per answer)."""
    figures = Figures()
    async with http_session() as http:
        chats = [make_chat(channel, http, control, first_id + i, think) for i in range(count)]
        sampling = asyncio.create_task(sampler.run(http)) if sampler else None
        start = time.perf_counter()
        await asyncio.gather(*(script(chat, first_id + i, figures) for i, chat in enumerate(chats)))
        figures.seconds = time.perf_counter() - start
        if sampling is not None:
            sampling.cancel()
            await asyncio.gather(sampling, return_exceptions=True)
    return figures


async def probe(control: str, text: str, uid: int | str) -> None:
    """Until the bot under test answers (a Zalo chat when ``uid`` is a string)."""
    async with http_session() as http:
        await wait_ready(http, control, uid, text)


def measured_wave(
    stand: StandIn,
    bot_pid: int,
    script: Any,
    first_id: int,
    count: int,
    think: float = 0.0,
    channel: str = "telegram",
) -> dict[str, Any]:
    """One wave, with the CPU the bot, the stand-in and this driver used meanwhile, and the
    updates waiting at the API."""
    meter = CpuMeter(bot=bot_pid, standin=stand.pid)
    # on Zalo, what the stand-in holds is exactly what no getUpdates has fetched yet
    sampler = QueueSampler(stand.control) if channel == "zalo" else None
    meter.start()
    figures = asyncio.run(wave(stand.control, script, first_id, count, think, channel, sampler))
    meter.stop()
    return {
        **figures.summary(),
        **meter.per_update(figures.updates, figures.seconds),
        **(sampler.summary() if sampler else {}),
    }


ECHO_BOTS = {
    # name: (channel, module to run, its arguments, probe chat, first resident id)
    "ptb": (
        "telegram", "bench.echo_bot", lambda s: ["--base-url", s.base_url],
        999_999_001, 10_000_000,
    ),
    "aiogram": (
        "telegram", "bench.aiogram_echo", lambda s: ["--server", s.control],
        999_999_003, 40_000_000,
    ),
    "zalo": (
        "zalo", "bench.zalo_echo",
        lambda s: ["--base-url", s.base_url, "--token", ZALO_TOKEN],
        zalo_id(999_999_005), 50_000_000,
    ),
}  # fmt: skip


def run_echo(kind: str, stand: StandIn, residents: int, think: float = 0.0) -> dict[str, Any]:
    """A baseline: a bare echo bot under the same load."""
    channel, module, arguments, probe_id, first_id = ECHO_BOTS[kind]
    proc = spawn("-m", module, *arguments(stand))
    try:
        asyncio.run(probe(stand.control, "ping", probe_id))
        result = measured_wave(stand, proc.pid, echo_person, first_id, residents, think, channel)
        return {**result, "peak_rss_mb": round(memory_kb(proc.pid)["VmHWM"] / 1024, 1)}
    finally:
        stop(proc)


def free_port() -> int:
    """A TCP port free on the loopback now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bot_config(channel: str, stand: StandIn, db_url: str, zalo_mode: str = "polling") -> str:
    """``healthbook run``'s settings for one channel on the stand-in (Zalo by polling, or by
    the webhook the stand-in then POSTs each event to)."""
    if channel == "zalo":
        port = free_port()  # the bot's own web server, as in production (pictures by URL)
        where = (
            f'[zalo]\ntoken = "{ZALO_TOKEN}"\nbase_url = "{stand.base_url}"\npoll_timeout = 1\n'
            f'mode = "{zalo_mode}"\nwebhook_secret = "bench-webhook-secret"\n'
            f'[http]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n'
        )
    else:
        base_url = stand.base_url
        where = (
            f'[telegram]\ntoken = "123456:BENCH"\nbase_url = "{base_url}"\n'
            f'base_file_url = "{base_url.replace("/bot", "/file/bot")}"\npoll_timeout = 1\n'
        )
    return f'{where}[database]\nurl = "{db_url}"\n[logging]\nlevel = "WARNING"\n'


BOT_IDS = {
    # channel: (script, probe chat, first resident id, first id of the second wave)
    "telegram": (resident, 999_999_002, 20_000_000, 20_100_000),
    "zalo": (zalo_resident, zalo_id(999_999_006), 60_000_000, 60_100_000),
}


def run_bot(
    stand: StandIn,
    residents: int,
    db_url: str,
    think: float = 0.0,
    channel: str = "telegram",
    zalo_mode: str = "polling",
) -> dict[str, Any]:
    """The health-book bot under the load, then a second wave to see memory per resident."""
    script, probe_id, first_id, second_id = BOT_IDS[channel]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text(bot_config(channel, stand, db_url, zalo_mode), encoding="utf-8")
        proc = spawn(
            "-m", "bot", "run", "--config", str(config), cwd=tmp, stdout=subprocess.DEVNULL
        )
        try:
            asyncio.run(probe(stand.control, "/help", probe_id))
            idle_kb = memory_kb(proc.pid)["VmRSS"]
            first = measured_wave(stand, proc.pid, script, first_id, residents, think, channel)
            after_first = memory_kb(proc.pid)["VmRSS"]
            # enough to see growth, short enough to stay quick (a tiny run: as many again)
            more = max(min(10, residents), residents // 5)
            second = asyncio.run(wave(stand.control, script, second_id, more, 0.0, channel))
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


def run_channel(
    channel: str, args: argparse.Namespace, residents: int, db_url: str, aiogram: bool
) -> dict[str, Any]:
    """One channel's baselines and bot, one after the other on one stand-in."""
    with stand_in(channel) as stand:
        if channel == "zalo":
            runs = {"echo": run_echo("zalo", stand, residents, args.think)}
        else:
            runs = {"echo": run_echo("ptb", stand, residents, args.think)}
            if aiogram:
                runs["echo_aiogram"] = run_echo("aiogram", stand, residents, args.think)
        runs["bot"] = run_bot(stand, residents, db_url, args.think, channel, args.zalo_mode)
    return runs


@contextlib.contextmanager
def databases(args: argparse.Namespace, channels: list[str]) -> Iterator[dict[str, str]]:
    """A fresh database per channel: a SQLite file, or a PostgreSQL database of the run's own."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        urls = {}
        for channel in channels:
            if args.database == "postgresql":
                urls[channel] = stack.enter_context(own_postgres_database(args.pg_url))
            else:
                urls[channel] = f"sqlite+aiosqlite:///{Path(tmp) / f'bench-{channel}.db'}"
        yield urls


def report(args: argparse.Namespace, residents: int, runs: dict[str, dict[str, Any]]) -> None:
    """The table, the ratios against the goals, and the last line of JSON."""
    tg, za = runs.get("telegram", {}), runs.get("zalo", {})
    names = {
        ("telegram", "bot"): "Telegram: healthbook bot",
        ("telegram", "echo"): "Telegram: echo, python-telegram-bot",
        ("telegram", "echo_aiogram"): "Telegram: echo, aiogram 3",
        ("zalo", "bot"): "Zalo: healthbook bot"
        + (" (webhook)" if args.zalo_mode == "webhook" else ""),
        ("zalo", "echo"): "Zalo: echo, ZaloApi",
    }
    rows = {
        name: runs[channel][kind]
        for (channel, kind), name in names.items()
        if kind in runs.get(channel, {})
    }
    print(
        f"\nhealth book: {residents} residents at once, {UPDATES_PER_RESIDENT} updates each, "
        f"{args.database}"
    )
    table = {
        name: {
            **row,
            "cpu_ms/update": row["bot_cpu_ms_per_update"],
            "cpu_cores": row["bot_cpu_share"],
            "driver_cores": row["driver_cpu_share"],
            "at_getUpdates": row.get("api_queue_mean", ""),
        }
        for name, row in rows.items()
    }
    keys = ["updates_per_s", "p50_ms", "p95_ms", "p99_ms", "cpu_ms/update", "cpu_cores",
            "driver_cores", "at_getUpdates", "peak_rss_mb", "errors"]  # fmt: skip
    print_table(table, keys)
    figures: dict[str, Any] = {}
    for channel, runs_of in (("telegram", tg), ("zalo", za)):
        if not runs_of:
            continue
        hb, echo = runs_of["bot"], runs_of["echo"]
        cpu = ratio(hb["bot_cpu_ms_per_update"], echo["bot_cpu_ms_per_update"])
        throughput = ratio(hb["updates_per_s"], echo["updates_per_s"])
        which = "python-telegram-bot" if channel == "telegram" else "the ZaloApi echo"
        line = f"{channel}: CPU per update, bot / echo: {cpu}× {which}"
        if channel == "telegram":
            aio = runs_of.get("echo_aiogram")
            cpu_aio = (
                ratio(hb["bot_cpu_ms_per_update"], aio["bot_cpu_ms_per_update"]) if aio else None
            )
            line += f", {cpu_aio}× aiogram" if aio else " (aiogram: not installed)"
            figures["cpu_ratio_vs_aiogram_echo"] = cpu_aio
        print(line)
        # Telegram's goal; Zalo's echo uses no framework at all, Zalo's goal is against Telegram
        goal = "   goal ≥ 40%" if channel == "telegram" else ""
        print(f"{channel}: throughput ratio (bot / echo): {throughput:.1%}{goal}")
        print(f"{channel}: p99 latency: {hb['p99_ms']} ms   goal < 1000 ms")
        print(
            f"{channel}: memory: idle {hb['idle_rss_mb']} MB, after wave 1 "
            f"{hb['rss_after_wave1_mb']} MB, after wave 2 {hb['rss_after_wave2_mb']} MB → "
            f"{hb['rss_growth_kb_per_resident']} KB per further resident"
        )
        prefix = "" if channel == "telegram" else "zalo_"
        figures[f"{prefix}throughput_ratio"] = throughput
        figures[f"{prefix}cpu_ratio_vs_echo"] = cpu
    if tg and za:
        zb, tb = za["bot"], tg["bot"]
        share = ratio(zb["updates_per_s"], tb["updates_per_s"])
        cpu = ratio(zb["bot_cpu_ms_per_update"], tb["bot_cpu_ms_per_update"])
        figures["zalo_vs_telegram_throughput"] = share
        figures["zalo_vs_telegram_cpu"] = cpu
        print(f"Zalo / Telegram throughput: {share:.1%}   goal ≥ 80%")
        print(
            f"Zalo / Telegram CPU per update: {cpu}× ({zb['bot_cpu_ms_per_update']} ms against "
            f"{tb['bot_cpu_ms_per_update']} ms)"
        )
    for kind, what in (("echo", "the echo"), ("bot", "the bot")):
        row = za.get(kind)
        if row is None or (kind == "bot" and args.zalo_mode == "webhook"):  # nothing polled
            continue
        waiting = row["api_queue_mean"] / residents
        verdict = (
            "its poller (one event per getUpdates) was the bottleneck"
            if waiting >= 0.25
            else "its poller kept up"
        )
        print(
            f"zalo: {waiting:.0%} of {what}'s residents waited at getUpdates on average "
            f"(most {row['api_queue_max']}): {verdict}"
        )
    if max(row["driver_cpu_share"] for row in rows.values()) > 0.8:
        print("  the driver was busy most of the time: throughput and latency partly measure it")
    last_line(
        {
            "benchmark": "health_book",
            "channels": [c for c in CHANNELS if c in runs],
            "zalo_mode": args.zalo_mode if za else None,
            "database": args.database,
            "residents": residents,
            "updates_per_resident": UPDATES_PER_RESIDENT,
            "think_seconds": args.think,
            "bot": tg.get("bot"),
            "echo": tg.get("echo"),
            "echo_aiogram": tg.get("echo_aiogram"),
            "zalo_bot": za.get("bot"),
            "zalo_echo": za.get("echo"),
            "throughput_ratio": None,
            "cpu_ratio_vs_echo": None,
            "cpu_ratio_vs_aiogram_echo": None,
            "zalo_throughput_ratio": None,
            "zalo_cpu_ratio_vs_echo": None,
            "zalo_vs_telegram_throughput": None,
            "zalo_vs_telegram_cpu": None,
            **figures,
        }
    )


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--residents", type=int, default=500)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--pg-url", default=PG_DEFAULT, help="server to use: the run creates a database there"
    )
    parser.add_argument(
        "--channel",
        choices=["both", *CHANNELS],
        default="both",
        help="the messenger(s) to run the residents over (both: side by side, in one run)",
    )
    parser.add_argument(
        "--zalo-mode",
        choices=["polling", "webhook"],
        default="polling",
        help="how the bot takes Zalo's events (the echo baseline always polls)",
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
    channels = list(CHANNELS) if args.channel == "both" else [args.channel]
    has_aiogram = importlib.util.find_spec("aiogram") is not None
    if not has_aiogram and "telegram" in channels:
        print(
            "aiogram is not installed: the aiogram echo baseline is skipped "
            "(pip install -e '.[bench]' to include it)"
        )
    try:
        with databases(args, channels) as urls:
            runs = {
                channel: run_channel(channel, args, residents, urls[channel], has_aiogram)
                for channel in channels
            }
    except NoServerError as exc:
        raise SystemExit(str(exc)) from None
    report(args, residents, runs)


if __name__ == "__main__":
    main()
