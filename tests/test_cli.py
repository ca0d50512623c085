"""The command line: settings errors, the no-token hint, migrations, and the terminal demo."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import ConfigError, load_settings
from bot.standin import BotApiStandIn
from tests.conftest import TOKEN

ENV = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHBOOK_")}
ROOT = Path(__file__).parent.parent


def healthbook(
    *args: str,
    cwd: Path,
    stdin: str = "",
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real ``healthbook`` command (as ``python -m bot``)."""
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**ENV, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def test_settings_error_names_the_bad_key(tmp_path: Path) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text('[database]\nurl = "mysql://x"\n[bot]\ndefault_locale = "fr"\ncolour = 1\n')
    with pytest.raises(ConfigError) as err:
        load_settings(bad)
    text = str(err.value)
    assert "database.url" in text and "bot.default_locale" in text and "bot.colour" in text


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[bot]\ndefault_province = 1\n[telegram]\ntoken = "1:A"\n')
    monkeypatch.setenv("HEALTHBOOK_BOT__DEFAULT_PROVINCE", "15")
    settings = load_settings(config)
    assert settings.bot.default_province == 15
    assert settings.telegram.token is not None and "1:A" not in repr(settings)


def test_run_without_token_explains_how_to_get_one(tmp_path: Path) -> None:
    result = healthbook("run", cwd=tmp_path)
    assert result.returncode == 2
    assert "@BotFather" in result.stderr and "healthbook demo" in result.stderr


def test_bad_config_file_exits_with_the_key(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[telegram]\nbase_url = "ftp://x"\n')
    result = healthbook("run", "--config", "config.toml", cwd=tmp_path)
    assert result.returncode == 2 and "telegram.base_url" in result.stderr


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    result = healthbook("db", "upgrade", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "healthbook.db").exists()


def test_demo_in_the_terminal(tmp_path: Path) -> None:
    """No token, no network: the demo chats through stdin and stdout."""
    result = healthbook("demo", cwd=tmp_path, stdin="/start\n1\nlò văn a\n99/99/99\n/quit\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "[1] ✅ Tôi đồng ý" in out
    assert "Xin cho biết họ và tên đầy đủ." in out
    assert "Xin cho biết ngày sinh" in out
    assert out.count("Xin cho biết ngày sinh") == 2  # asked again after the bad date
    assert "bye" in out


def test_start_without_token_runs_the_demo(tmp_path: Path) -> None:
    result = healthbook("start", cwd=tmp_path, stdin="/help\n/quit\n")
    assert result.returncode == 0, result.stderr
    assert "demo" in result.stderr and "/mydata" in result.stdout


def test_help_reads_as_plain_text(tmp_path: Path) -> None:
    result = healthbook("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "health-book bot" in result.stdout and "``" not in result.stdout


def test_demo_never_uses_the_configured_database(tmp_path: Path) -> None:
    """``start`` with no token runs the demo on a file of its own: the deployment's database
    (named in the settings) is neither created nor written."""
    production = tmp_path / "production.db"
    (tmp_path / "config.toml").write_text(f'[database]\nurl = "sqlite:///{production}"\n')
    result = healthbook("start", cwd=tmp_path, stdin="/quit\n")
    assert result.returncode == 0, result.stderr
    assert not production.exists()
    assert f"database: {tmp_path / 'healthbook-demo.db'}" in result.stdout
    assert _count(tmp_path / "healthbook-demo.db", "campaigns") > 0  # the sample data: /book works
    assert _count(tmp_path / "healthbook-demo.db", "sites") > 0


def test_demo_on_an_explicit_database_loads_no_sample_data(tmp_path: Path) -> None:
    chosen = tmp_path / "chosen.db"
    result = healthbook(
        "demo", "--database", f"sqlite:///{chosen}", cwd=tmp_path, stdin="/quit\n"
    )
    assert result.returncode == 0, result.stderr
    assert f"database: sqlite+aiosqlite:///{chosen}" in result.stdout
    assert not (tmp_path / "healthbook-demo.db").exists()
    assert _count(chosen, "accounts") == 0 and _count(chosen, "campaigns") == 0


def _count(database: Path, table: str) -> int:
    with contextlib.closing(sqlite3.connect(database)) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_demo_rejects_a_bad_database_url(tmp_path: Path) -> None:
    result = healthbook("demo", "--database", "mysql://x/y", cwd=tmp_path, stdin="/quit\n")
    assert result.returncode == 2
    assert "--database" in result.stderr and "Traceback" not in result.stderr


def test_domain_errors_are_printed_in_words(tmp_path: Path) -> None:
    result = healthbook("staff", "add", "--telegram-id", "5", "--site", "NOPE", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: Không tìm thấy điểm tiêm này. (NOPE)"
    (tmp_path / "config.toml").write_text('[bot]\ndefault_locale = "en"\n')
    result = healthbook("staff", "add", "--telegram-id", "5", "--site", "NOPE", cwd=tmp_path)
    assert "site.not_found" not in result.stderr and "(NOPE)" in result.stderr
    assert "Không" not in result.stderr


# --- `healthbook run` when the Bot API cannot be reached ------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RunningBot:
    """``healthbook run`` in a subprocess; its stderr is read all along (a full pipe would
    block the bot), line by line into :attr:`lines`."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, tmp_path: Path, port: int, token: str = TOKEN) -> RunningBot:
        (tmp_path / "config.toml").write_text(
            f'[telegram]\ntoken = "{token}"\n'
            f'base_url = "http://127.0.0.1:{port}/bot"\n'
            f'base_file_url = "http://127.0.0.1:{port}/file/bot"\npoll_timeout = 1\n'
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", "--config", "config.toml",
            cwd=tmp_path,
            env={**ENV, "PYTHONPATH": str(ROOT)},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.lines.append(line.decode())

    @property
    def err(self) -> str:
        return "".join(self.lines)

    async def wait_for(self, text: str, times: int = 1) -> None:
        """Until ``text`` has been logged ``times`` times (a minute at most)."""
        for _ in range(1200):
            if sum(text in line for line in self.lines) >= times:
                return
            if self._reader.done():
                break
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {text!r} (x{times}) in:\n{self.err}")

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig``; the exit status once it has exited and its stderr is all read."""
        self.proc.send_signal(sig)
        return await self.exited()

    async def exited(self) -> int:
        await asyncio.wait_for(self.proc.wait(), 60)
        await asyncio.wait_for(self._reader, 10)
        assert self.proc.returncode is not None
        return self.proc.returncode

    async def kill(self) -> None:
        """Whatever happened: no process left behind."""
        if self.proc.returncode is None:
            self.proc.kill()
            await asyncio.wait_for(self.proc.wait(), 10)
        self._reader.cancel()


async def _polled(api: BotApiStandIn) -> bool:
    for _ in range(400):
        if any(c.method == "getUpdates" for c in api.calls):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_run_waits_for_the_bot_api_then_polls(tmp_path: Path) -> None:
    """No network at start: one line per attempt, no traceback; it starts once the API answers,
    rides out losing it again, and stops cleanly on SIGTERM."""
    port = _free_port()
    bot = await RunningBot.start(tmp_path, port)
    try:
        await bot.wait_for("cannot reach the Telegram Bot API", times=2)
        async with BotApiStandIn(port=port) as api:
            await bot.wait_for("polling for updates")
            assert await _polled(api)
        await bot.wait_for("lost the Telegram Bot API")  # gone while polling
        async with BotApiStandIn(port=port) as api:
            assert await _polled(api)  # back
            status = await bot.stop(signal.SIGTERM)
    finally:
        await bot.kill()
    err = bot.err
    assert status == 0, err
    attempts = [line for line in bot.lines if "cannot reach" in line]
    assert f"127.0.0.1:{port}" in attempts[0] and "attempt 1, next in 1 s" in attempts[0]
    assert "attempt 2, next in 2 s" in attempts[1]
    assert "Traceback" not in err and "meta_path" not in err and "Exception ignored" not in err
    assert TOKEN.split(":")[1] not in err


async def test_run_stopped_while_waiting_exits_quietly(tmp_path: Path) -> None:
    bot = await RunningBot.start(tmp_path, _free_port())
    try:
        await bot.wait_for("cannot reach the Telegram Bot API")
        status = await bot.stop(signal.SIGINT)
    finally:
        await bot.kill()
    err = bot.err
    assert status == 0, err
    assert "stopped before the bot could start" in err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert len(bot.lines) < 25, err


async def test_run_with_a_refused_token_says_so_once(tmp_path: Path) -> None:
    refused = "123456:refused.token-SECRET"  # the stand-in answers 401 to a token with a dot
    async with BotApiStandIn() as api:
        bot = await RunningBot.start(tmp_path, api.port, token=refused)
        try:
            status = await bot.exited()
        finally:
            await bot.kill()
    err = bot.err
    assert status == 2, err
    assert "refused the bot token" in err and "cannot reach" not in err
    assert "SECRET" not in err and "Traceback" not in err
