"""Benchmark: the dispatcher sends 100,000 due messages (20,000 with ``--quick``) to the Telegram
Bot API stand-in with flood control on: the stand-in takes at most 300 messages in any second
and answers 429 (``retry_after``) above that; the dispatcher is set just under it (290/s).

The stand-in runs in its own process (``python -m bot.standin --flood-limit 300
--count-received``: it counts how many times each chat got each text), the bot in another: the
Telegram application built as ``healthbook run`` builds it (handlers, PTB's rate limiter) but
not polling, with its dispatcher (``--worker``, this module). The messages are rows inserted in
bulk beforehand, to 10,000 people (2,000 with ``--quick``), each text naming its row, of a
bench-only kind whose renderer says just that.

Measured: the rate achieved as a share of the stand-in's limit (goal ≥ 90 %), the 429s
received, duplicates (a chat given the same text twice; goal 0), the bot's CPU time per message,
and its memory: resident size when built and idle, then the peak while sending (sampled every
20 ms; goal: within a few MB of idle, however many are due). Baseline, in the same run: the
same number of sendMessage calls made by a bare loop (aiohttp, the dispatcher's pacing at the
same rate, no database, no PTB) to the same stand-in: what pacing alone achieves.

    python -m bench.dispatch [--quick] [--messages N] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    PG_DEFAULT,
    NoServerError,
    cpu_seconds,
    last_line,
    memory_kb,
    own_postgres_database,
    print_table,
    spawn,
    stop,
)

LIMIT = 300.0  # the stand-in's flood limit, messages a second
RATE = 290.0  # the dispatcher's
TOKEN = "123456:bench-dispatch-token"
KIND = "bench_note"
FIRST_CHAT = 5_000_000_000  # the people's Telegram ids; the baseline's chats come after them


# --- the bot's side (a process of its own) ---------------------------------------------------


async def _worker(config: Path) -> None:
    """The bot built and idle ("ready" on stdout), then its dispatcher from "go" on stdin until
    SIGTERM; its figures as JSON on stdout."""
    import signal

    from bot.app import build_application
    from bot.channels.base import Reply
    from bot.dispatch import Dispatcher
    from bot.settings import load_settings
    from handlers.notices import RENDERERS, Notice

    async def note(n: Notice) -> Reply | None:
        return Reply(text=f"bench {n.message.id}")

    RENDERERS[KIND] = note
    settings = load_settings(config)
    app = build_application(settings, jobs=False)  # rate limiter on, as healthbook run has it
    await app.initialize()
    services = app.bot_data["services"]
    dispatcher = Dispatcher(services)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # "go"
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    await dispatcher.start()
    await done.wait()
    await dispatcher.stop()
    await app.shutdown()
    await services.sessions.kw["bind"].dispose()
    print(json.dumps(vars(dispatcher.stats)), flush=True)


# --- the database ------------------------------------------------------------------------------


async def prepare(url: str, messages: int, people: int) -> float:
    """The schema, ``people`` Telegram accounts and ``messages`` due messages to them in turn
    (bulk inserts); seconds taken."""
    from sqlalchemy import insert

    from bot.db import create_engine, upgrade
    from models.tables import Account, OutboxMessage

    start = time.perf_counter()
    engine = create_engine(url)
    try:
        await upgrade(engine)
        now = dt.datetime.now(dt.UTC)
        async with engine.begin() as conn:
            await conn.execute(
                insert(Account),
                [
                    {"channel": "telegram", "external_id": str(FIRST_CHAT + i), "locale": "vi",
                     "role": "resident", "created_at": now, "link_failures": 0}
                    for i in range(people)
                ],
            )
            first = await conn.scalar(
                Account.__table__.select().with_only_columns(Account.id).order_by(Account.id)
                .limit(1)
            )
            assert first is not None
            due = now - dt.timedelta(minutes=1)
            chunk = 10_000
            for offset in range(0, messages, chunk):
                await conn.execute(
                    insert(OutboxMessage),
                    [
                        {"kind": KIND, "account_id": first + i % people, "params": {},
                         "due_at": due, "quiet_ok": True, "status": "pending", "attempts": 0,
                         "created_at": now}
                        for i in range(offset, min(offset + chunk, messages))
                    ],
                )
    finally:
        await engine.dispose()
    return time.perf_counter() - start


async def open_count(url: str) -> tuple[int, int]:
    """Messages still pending or claimed, and messages sent."""
    from sqlalchemy import func, select

    from bot.db import create_engine
    from models.tables import OutboxMessage

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = dict(
                (await conn.execute(
                    select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
                )).all()
            )
    finally:
        await engine.dispose()
    return rows.get("pending", 0) + rows.get("claimed", 0), rows.get("sent", 0)


# --- measuring ---------------------------------------------------------------------------------


class RssSampler(threading.Thread):
    """The peak resident size of a process, sampled every ``every`` seconds."""

    def __init__(self, pid: int, every: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.peak_kb = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak_kb = max(self.peak_kb, memory_kb(self.pid).get("VmRSS", 0))
            self._halt.wait(self.every)

    def finish(self) -> int:
        """Stop sampling; the peak (KiB)."""
        self._halt.set()
        self.join()
        return max(self.peak_kb, memory_kb(self.pid).get("VmRSS", 0))


async def stats(http: aiohttp.ClientSession, control: str) -> dict[str, Any]:
    """The stand-in's counters."""
    async with http.get(f"{control}/_standin/stats") as resp:
        return dict(await resp.json())


async def baseline(control: str, count: int, rate: float) -> dict[str, Any]:
    """``count`` sendMessage calls at ``rate`` by a bare loop (the dispatcher's pacing, aiohttp,
    no database), each to a chat of its own; 429s are waited out as the dispatcher does."""
    from bot.dispatch import _Pace

    pace = _Pace(rate)
    url = f"{control}/bot{TOKEN}/sendMessage"
    loop = asyncio.get_running_loop()
    sent = throttled = 0
    pending: set[asyncio.Task[None]] = set()
    queue = list(range(count))
    queue.reverse()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
        before = await stats(http, control)

        async def one(i: int) -> None:
            nonlocal sent, throttled
            chat = FIRST_CHAT + 10_000_000 + i
            async with http.post(url, data={"chat_id": chat, "text": f"base {i}"}) as resp:
                body = await resp.json()
            if body.get("ok"):
                sent += 1
            else:
                throttled += 1
                pace.pause(loop.time(), float(body.get("parameters", {}).get("retry_after", 1)))
                queue.append(i)

        start = loop.time()
        while queue or pending:
            if not queue:
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                continue
            wait = pace.ready_at() - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            pace.take(loop.time())
            task = asyncio.create_task(one(queue.pop()))
            pending.add(task)
            task.add_done_callback(pending.discard)
        seconds = loop.time() - start
        after = await stats(http, control)
    return rates(sent, seconds, before, after)


def rates(
    sent: int, seconds: float, before: dict[str, Any], after: dict[str, Any]
) -> dict[str, Any]:
    """What a sender achieved against the stand-in's limit, from its counts before and after."""
    achieved = sent / seconds
    return {
        "messages": sent,
        "seconds": round(seconds, 2),
        "per_s": round(achieved, 1),
        "rate_share": round(achieved / LIMIT, 3),
        "throttled": after["throttled"] - before["throttled"],
        "duplicates": after["duplicates"] - before["duplicates"],
    }


async def run_dispatcher(
    control: str, url: str, config: Path, messages: int
) -> dict[str, Any]:
    """The bot with its dispatcher, in its own process, until every message is sent."""
    proc = spawn(
        "-m", "bench.dispatch", "--worker", str(config),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None,
    )  # fmt: skip
    try:
        assert proc.stdin is not None and proc.stdout is not None
        loop = asyncio.get_running_loop()
        line = await loop.run_in_executor(None, proc.stdout.readline)
        if line.strip() != "ready":
            raise RuntimeError(f"the bot did not start: {line!r}")
        await asyncio.sleep(1.0)  # settled
        idle = [memory_kb(proc.pid).get("VmRSS", 0) for _ in range(5)]
        idle_kb = max(idle)
        sampler = RssSampler(proc.pid)
        async with aiohttp.ClientSession() as http:
            before = await stats(http, control)
            cpu0 = cpu_seconds(proc.pid)
            sampler.start()
            start = time.perf_counter()
            proc.stdin.write("go\n")
            proc.stdin.flush()
            # watched at the stand-in (a count over the outbox would cost the bot's CPU)
            while (await stats(http, control))["delivered"] - before["delivered"] < messages:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            seconds = time.perf_counter() - start
            left, sent = messages, 0
            for _ in range(300):  # then every one marked sent (the last commits follow)
                left, sent = await open_count(url)
                if not left:
                    break
                await asyncio.sleep(0.1)
            cpu = cpu_seconds(proc.pid) - cpu0
            peak_kb = sampler.finish()
            after = await stats(http, control)
        proc.terminate()
        out, _ = await loop.run_in_executor(None, proc.communicate)
        worker = json.loads(out.strip().splitlines()[-1])
    finally:
        stop(proc)
    return {
        **rates(sent, seconds, before, after),
        "delivered": after["delivered"] - before["delivered"],
        "cpu_ms_per_message": round(1000 * cpu / max(sent, 1), 3),
        "cpu_share": round(cpu / seconds, 2),
        "idle_rss_mb": round(idle_kb / 1024, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "rss_growth_mb": round((peak_kb - idle_kb) / 1024, 1),
        "worker": worker,
    }


def write_config(path: Path, base_url: str, db_url: str, people: int) -> None:
    del people
    path.write_text(
        f'[telegram]\ntoken = "{TOKEN}"\nbase_url = "{base_url}/bot"\n'
        f'base_file_url = "{base_url}/file/bot"\n'
        f'[database]\nurl = "{db_url}"\n'
        f"[dispatch]\ntelegram_rate = {RATE}\n"
        '[logging]\nlevel = "WARNING"\n',
        encoding="utf-8",
    )


def bench(url: str, kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """One run on one database: prepare, the baseline, the dispatcher."""
    people = 2_000 if args.messages <= 20_000 else 10_000
    proc = spawn(
        "-m", "bot.standin", "--port", "0", "--no-keep-calls", "--max-calls-per-chat", "4",
        "--max-messages-per-chat", "2", "--flood-limit", str(LIMIT), "--count-received",
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        control = proc.stdout.readline().strip().removesuffix("/bot")
        if not control.startswith("http"):
            raise RuntimeError("the stand-in did not start")
        inserted = asyncio.run(prepare(url, args.messages, people))
        print(f"{kind}: {args.messages} messages to {people} people inserted in {inserted:.1f} s")
        base = asyncio.run(baseline(control, args.baseline or args.messages, RATE))
        print(f"baseline: {base['per_s']}/s")
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "config.toml"
            write_config(config, control, url, people)
            run = asyncio.run(run_dispatcher(control, url, config, args.messages))
    finally:
        stop(proc)
    return {"database": kind, "people": people, "insert_seconds": round(inserted, 2),
            "dispatcher": run, "baseline": base}


def main() -> None:
    """Command line."""
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_worker(Path(sys.argv[2])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="20,000 messages")
    parser.add_argument(
        "--baseline", type=int, default=0, help="messages of the bare loop (default: as many)"
    )
    parser.add_argument(
        "--database-url", default=None,
        help=f"PostgreSQL server to use (e.g. {PG_DEFAULT}): the run creates a database there; "
        "default: a SQLite file",
    )  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.messages = 20_000
    os.environ.setdefault("PTB_TIMEDELTA", "1")
    if args.database_url:
        try:
            with own_postgres_database(args.database_url, "healthbook_bench_dispatch") as url:
                result = bench(url, "postgresql", args)
        except NoServerError as exc:
            raise SystemExit(str(exc)) from None
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = bench(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", "sqlite", args)

    run, base = result["dispatcher"], result["baseline"]
    print(
        f"\ndispatch: {args.messages} due messages, stand-in limit {LIMIT:g}/s (429 above), "
        f"dispatcher {RATE:g}/s, {result['database']}"
    )
    rows = {
        "healthbook dispatcher": {**run, "share": f"{100 * run['rate_share']:.1f}%"},
        "bare loop (baseline)": {**base, "share": f"{100 * base['rate_share']:.1f}%"},
    }
    print_table(rows, ["messages", "per_s", "share", "throttled", "duplicates", "seconds"])
    print(
        f"bot CPU {run['cpu_ms_per_message']} ms per message ({run['cpu_share']} of a core); "
        f"memory idle {run['idle_rss_mb']} MB, peak {run['peak_rss_mb']} MB "
        f"(+{run['rss_growth_mb']} MB)"
    )
    last_line(
        {
            "benchmark": "dispatch",
            "messages": args.messages,
            "limit_per_s": LIMIT,
            "dispatcher_rate": RATE,
            "database": result["database"],
            "people": result["people"],
            "rate_share": run["rate_share"],
            "per_s": run["per_s"],
            "throttled": run["throttled"],
            "duplicates": run["duplicates"],
            "delivered": run["delivered"],
            "cpu_ms_per_message": run["cpu_ms_per_message"],
            "idle_rss_mb": run["idle_rss_mb"],
            "peak_rss_mb": run["peak_rss_mb"],
            "rss_growth_mb": run["rss_growth_mb"],
            "insert_seconds": result["insert_seconds"],
            "baseline": base,
            "dispatcher": run,
        }
    )


if __name__ == "__main__":
    main()
