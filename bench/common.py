"""What the benchmarks share: processes (stand-in, bots), a resident driver over HTTP, figures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bot.standin import TgUser, callback_query, contact_message, text_message
from bot.standin.zalo import ZaloUser, numbered_options, zalo_text

PG_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def spawn(*args: str, **kw: Any) -> subprocess.Popen[str]:
    """A Python child process of this interpreter."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, *args], env=env, text=True, **kw)


@dataclass
class StandIn:
    """The stand-in's process: its Bot API base URL (``…/bot``) and its pid."""

    base_url: str
    pid: int

    @property
    def control(self) -> str:
        """Root of the control API (``/_standin/…``), also what aiogram calls its server."""
        return self.base_url.removesuffix("/bot")


@contextlib.contextmanager
def stand_in(channel: str = "telegram") -> Iterator[StandIn]:
    """The Bot API stand-in in its own process: Telegram's (``bot.standin``), or Zalo's with
    the same control API (``bench.zalo_standin``; its base URL is its root)."""
    if channel == "zalo":
        args = ["-m", "bench.zalo_standin", "--port", "0", "--max-calls-per-chat", "64"]
    else:
        args = [
            "-m", "bot.standin", "--port", "0", "--no-keep-calls",
            "--max-calls-per-chat", "64", "--max-messages-per-chat", "16",
        ]  # fmt: skip
    proc = spawn(*args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        if not base_url.startswith("http"):
            raise RuntimeError("the stand-in did not start")
        yield StandIn(base_url, proc.pid)
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[str]) -> None:
    """Terminate a child, then kill it if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def memory_kb(pid: int) -> dict[str, int]:
    """Current (VmRSS) and peak (VmHWM) resident memory of a process, in KiB."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used so far, from /proc/<pid>/stat:
    the kernel's own account, whatever the process or the load driver is doing."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (name) "; the name may hold spaces
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used by some processes (and this one, the driver) between ``start`` and ``stop``."""

    def __init__(self, **pids: int) -> None:
        self.pids = pids
        self.begin: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        now = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        now["driver"] = time.process_time()
        return now

    def start(self) -> None:
        """From now."""
        self.begin = self._now()

    def stop(self) -> None:
        """Until now."""
        end = self._now()
        self.used = {name: end[name] - self.begin[name] for name in end}

    def per_update(self, updates: int, seconds: float) -> dict[str, float]:
        """CPU milliseconds per update and share of one core, for each process measured."""
        out: dict[str, float] = {}
        for name, used in self.used.items():
            out[f"{name}_cpu_ms_per_update"] = round(1000 * used / updates, 3) if updates else 0.0
            out[f"{name}_cpu_share"] = round(used / seconds, 2) if seconds else 0.0
        return out


class NoServerError(RuntimeError):
    """No PostgreSQL server answers at the given URL."""


@contextlib.contextmanager
def own_postgres_database(url: str, prefix: str = "healthbook_bench") -> Iterator[str]:
    """A database of this run's own on the server of ``url`` (created now, dropped at the end),
    so a run never touches what else lives there, nor another run; yields its URL."""
    from sqlalchemy import make_url, text
    from sqlalchemy.exc import DBAPIError

    from bot.db import create_engine

    url = url.replace("postgresql://", "postgresql+asyncpg://", 1)
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await auto.execute(text(sql))
        finally:
            await engine.dispose()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, DBAPIError) as exc:
        raise NoServerError(f"PostgreSQL at {url} does not answer ({type(exc).__name__})") from exc
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass
class Figures:
    """What one run measured."""

    updates: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0

    def summary(self) -> dict[str, float]:
        """Updates per second and latency percentiles (milliseconds)."""
        lat = sorted(self.latencies) or [0.0]

        def pct(p: float) -> float:
            return round(1000 * lat[min(len(lat) - 1, int(p * len(lat)))], 1)

        return {
            "updates": self.updates,
            "seconds": round(self.seconds, 2),
            "updates_per_s": round(self.updates / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": pct(0.50),
            "p95_ms": pct(0.95),
            "p99_ms": pct(0.99),
            "mean_ms": round(1000 * statistics.fmean(lat), 1),
            "errors": self.errors,
        }


#: the calls that show the person a text: a new message, or one edited in place (Telegram
#: answers a button under the question it belonged to)
SHOWN = frozenset({"sendMessage", "editMessageText"})


class Chat:
    """One simulated person talking to a bot through the stand-in's HTTP control API
    (Telegram's: updates pushed to ``/_standin/update``)."""

    push_path = "/_standin/update"

    def __init__(
        self, http: aiohttp.ClientSession, control: str, user: TgUser, think: float = 0.0
    ) -> None:
        self.http, self.control, self.user = http, control, user
        self.chat_id: int | str = user.id
        self.after = 0
        self.last_message: dict[str, Any] | None = None
        self.answer: list[str] = []  # the texts of the bot's answer to the last update
        self.think = think  # mean seconds a person takes to read and answer (0: at once)
        self.patience = 30.0  # seconds without the whole answer before it counts as an error
        self.rng = random.Random(user.id)

    async def push(self, update: dict[str, Any], sends: int, figures: Figures) -> None:
        """Push an update (after the person's think time); wait for ``sends`` texts shown
        (messages sent or edited)."""
        if self.think > 0:
            await asyncio.sleep(self.think * self.rng.uniform(0.5, 1.5))
        start = time.perf_counter()
        async with self.http.post(f"{self.control}{self.push_path}", json=update) as resp:
            resp.raise_for_status()
            pushed = await resp.json()
        # only what the bot sends from now on counts as the answer
        self.after = max(self.after, int(pushed.get("seq", 0)))
        self.answer = []
        seen = 0
        deadline = start + self.patience
        while seen < sends:
            if time.perf_counter() > deadline:
                figures.errors += 1
                return
            wait = min(10.0, max(0.1, deadline - time.perf_counter()))
            query = {"chat_id": self.chat_id, "after": self.after, "timeout": wait}
            async with self.http.get(f"{self.control}/_standin/wait", params=query) as resp:
                body = await resp.json()
            for call in body["calls"]:
                self.after = max(self.after, call["seq"])
                if call["method"] in SHOWN:
                    seen += 1
                    self.answer.append(str(call["params"].get("text", "")))
                    if isinstance(call.get("result"), dict):
                        self.last_message = call["result"]
        figures.latencies.append(time.perf_counter() - start)
        figures.updates += 1

    async def say(self, text: str, figures: Figures, sends: int = 1) -> None:
        """Type a message."""
        await self.push(text_message(self.user, text), sends, figures)

    async def press(self, data: str, figures: Figures, sends: int = 1) -> None:
        """Press a button of the last message (callback data is known to the script)."""
        await self.push(callback_query(self.user, self.last_message, data), sends, figures)

    async def contact(self, phone: str, figures: Figures, sends: int = 1) -> None:
        """Share a phone number."""
        await self.push(contact_message(self.user, phone), sends, figures)


class ZaloChat(Chat):
    """One simulated person on Zalo (events pushed to ``/_standin/event`` of
    :mod:`bench.zalo_standin`): no buttons, so every answer is typed, a number or words."""

    push_path = "/_standin/event"

    def __init__(
        self, http: aiohttp.ClientSession, control: str, user_id: str, think: float = 0.0
    ) -> None:
        super().__init__(http, control, TgUser(id=0), think)
        self.zalo_user = ZaloUser(id=user_id, display_name="Người dùng")
        self.chat_id = user_id
        self.rng = random.Random(user_id)

    async def say(self, text: str, figures: Figures, sends: int = 1) -> None:
        """Type a message."""
        await self.push(zalo_text(self.zalo_user, text), sends, figures)

    async def choose(self, label: str, figures: Figures, sends: int = 1) -> None:
        """Type the number the bot's last answer gives ``label`` (``2. Nông dân`` → ``2``);
        an answer without that option counts as an error, and the label is typed instead."""
        wanted = label.casefold()
        number = next(
            (n for n, shown in numbered_options(self.answer) if shown.casefold() == wanted), None
        )
        if number is None:
            figures.errors += 1
        await self.say(number or label, figures, sends)

    async def press(self, data: str, figures: Figures, sends: int = 1) -> None:
        """Zalo has no buttons."""
        raise TypeError("Zalo has no buttons: type a number or words (say, choose)")

    async def contact(self, phone: str, figures: Figures, sends: int = 1) -> None:
        """Zalo has no contact sharing."""
        raise TypeError("Zalo has no contact sharing: type the number (say)")


async def wait_ready(http: aiohttp.ClientSession, control: str, uid: int | str, text: str) -> None:
    """Until a bot answers ``text`` from a probe chat (it has started polling): a Telegram
    chat for a numeric ``uid``, a Zalo one for a string."""
    chat = (
        ZaloChat(http, control, uid)
        if isinstance(uid, str)
        else Chat(http, control, TgUser(id=uid, language_code="vi"))
    )
    chat.patience = 3.0  # what a bot still starting missed is not waited for: ask again
    probe = Figures()
    for _ in range(60):
        await chat.say(text, probe)
        if probe.updates:
            return
        await asyncio.sleep(0.5)
    raise RuntimeError("the bot did not answer")


def http_session() -> aiohttp.ClientSession:
    """A client able to hold a long poll per simulated person."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, force_close=False),
        timeout=aiohttp.ClientTimeout(total=60),
    )


def print_table(rows: dict[str, dict[str, Any]], keys: list[str]) -> None:
    """A small aligned table: one row per measured thing."""
    width = max(len(k) for k in rows) + 2
    print(" " * width + "".join(f"{k:>14}" for k in keys))
    for name, row in rows.items():
        print(f"{name:<{width}}" + "".join(f"{row.get(k, ''):>14}" for k in keys))


def last_line(figures: dict[str, Any]) -> None:
    """The machine-readable last line."""
    print(json.dumps(figures, ensure_ascii=False, sort_keys=True))
