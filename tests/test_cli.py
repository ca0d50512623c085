"""The command line: settings errors, the no-token hint, migrations, and the terminal demo."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from bot.channels.base import Keyboard, KeyButton, Options, Reply, numbered
from bot.channels.telegram import render_markup
from bot.db import create_engine, upgrade
from bot.demo import parse_location, render_telegram, render_zalo
from bot.settings import ConfigError, load_settings
from bot.standin import BotApiStandIn, Call
from bot.standin.zalo import PhotoFetch
from tests.conftest import PG_URL, TOKEN

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
    """Exit status 2, and a message that needs no other file: the installed package ships no
    config.example.toml, so the two lines of config.toml are in it."""
    result = healthbook("run", cwd=tmp_path)
    assert result.returncode == 2
    assert "@BotFather" in result.stderr and "healthbook demo" in result.stderr
    assert '[telegram]\n       token = "123456:ABC..."' in result.stderr
    assert "HEALTHBOOK_TELEGRAM__TOKEN" in result.stderr
    assert "example" not in result.stderr


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


# A new resident on the Telegram demo, every choice typed as the number the demo printed:
# consent, the health book (the phone question's keyboard: its "no phone" button is [1], the
# contact button is not numbered), the declaration, the review, then /book to the ticket.
TYPED_NUMBERS = [
    "/start", "1", "Lò Văn Páo", "15/3/1985", "1",  # consent, name, birth date, gender
    "1", "1", "1", "1", "1", "12", "1", "sa pa", "1",  # no ID, no phone … province, commune
    *["2"] * 10,  # the declaration: "Không" to each of its 10 questions (no pregnancy: a man)
    "14",  # the review: 💾 save
    "/book", "1", "1", "1", "1", "1",  # campaign, site, day, time, confirm
    "/appointments", "/quit",
]  # fmt: skip


def test_demo_books_from_typed_numbers(tmp_path: Path) -> None:
    """The demo numbers every option as the bot does and sends what was typed as text, so the
    bot itself resolves each number: /book ends with the ticket, its QR and its map pin."""
    result = healthbook("demo", cwd=tmp_path, stdin="\n".join(TYPED_NUMBERS) + "\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "/contact 0912345678" in out.split("\n\n👤 >")[0]  # the intro lists the commands
    assert "[📱 Gửi số điện thoại của tôi]  here: /contact" in out  # not numbered …
    assert "   [1] Tôi không có điện thoại\n" in out  # … so "no phone" is 1
    assert "✓ Tôi không có điện thoại" in out
    assert "[14] 💾 Lưu sổ sức khỏe" in out and "Đã lưu Sổ sức khỏe điện tử" in out
    assert "[📍 Tìm điểm gần tôi]  here: /location" in out
    assert "✅ Đã đặt lịch." in out
    assert "🤖 [picture] Mã đặt lịch:" in out and "PHIẾU HẸN TIÊM CHỦNG" in out
    assert "🤖 [map pin] 22.3" in out
    assert "(no answer from the bot)" not in out
    database = tmp_path / "healthbook-demo.db"
    assert _count(database, "bookings") == 1
    # the numbers printed last are the choices the bot stored for a typed number
    (offered,) = _rows(database, "SELECT choices FROM chat_offers WHERE channel = 'telegram'")
    printed = re.findall(r"^   \[(\d+)\] (.+)$", out.split("👤 > /appointments")[1], re.M)
    assert [label for label, _ in json.loads(offered[0])] == [label for _, label in printed]
    assert [n for n, _ in printed] == ["1", "2"]


def test_demo_again_on_the_same_file_is_answered(tmp_path: Path) -> None:
    """A new stand-in counts update ids from 1 again; the bot skips an id it recorded as
    handled, so the second demo's ids go on from the database's."""
    for _ in range(2):
        result = healthbook("demo", cwd=tmp_path, stdin="/help\n/start\n/quit\n")
        assert result.returncode == 0, result.stderr
        assert "/mydata" in result.stdout and "[1] ✅ Tôi đồng ý" in result.stdout
        assert "(no answer from the bot)" not in result.stdout


def test_demo_on_zalo_numbers_the_options_in_its_text(tmp_path: Path) -> None:
    """``--channel zalo``: the bot's own numbered text, answered by typed numbers."""
    lines = ["/start", "1", "Lò Thị Mai", "1/2/1990", "2", "1", "/location", "/unsupported"]
    stdin = "\n".join([*lines, "/quit"])
    result = healthbook("demo", "--channel", "zalo", cwd=tmp_path, stdin=stdin + "\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "as on Zalo" in out
    assert "\n1. ✅ Tôi đồng ý\n2. ❌ Tôi không đồng ý\n" in out
    assert "Trả lời bằng số hoặc gõ câu trả lời." in out
    assert "Xin cho biết họ và tên đầy đủ." in out  # consent given by typing 1
    assert "✓ Nữ" in out and "✓ Tôi không có CCCD/CMND" in out
    assert "1. Tôi không có điện thoại" in out  # the phone is typed on Zalo
    assert "Zalo cannot share a location" in out
    assert "cộng tác viên y tế" in out  # who can help a protected user
    assert "[1]" not in out  # nothing numbered by the demo: the numbers are the bot's
    accounts = _rows(tmp_path / "healthbook-demo.db", "SELECT channel, external_id FROM accounts")
    assert accounts == [("zalo", "d3e0000000000000d3e0")]


def test_demo_numbers_options_as_the_bot_does() -> None:
    """What the Telegram channel renders of an answer, numbered by the demo, gives the labels
    in the order :func:`numbered` stores them for a typed number (the contact button shown
    with its demo command, unnumbered)."""
    replies = [
        Reply(text="Giới tính?", markup=Options.of([[("Nam", "g:m"), ("Nữ", "g:f")]])),
        Reply(text="Gõ tiếp, hoặc:"),
        Reply(
            text="Điện thoại?",
            markup=Keyboard.of([[KeyButton("📱 Gửi số", "contact")], [KeyButton("Không có")]]),
        ),
    ]
    calls = []
    for n, reply in enumerate(replies, 1):
        markup = render_markup(reply.markup)
        params = {"text": reply.text, "reply_markup": markup.to_json() if markup else None}
        result = {"message_id": n, "text": reply.text}
        if isinstance(reply.markup, Options):
            result["reply_markup"] = markup.to_dict()  # type: ignore[union-attr]
        calls.append(Call("sendMessage", params, result, 0.0, seq=n))
    out = io.StringIO()
    assert render_telegram(calls, out) == 3
    printed = re.findall(r"^   \[(\d+)\] (.+)$", out.getvalue(), re.M)
    offer = numbered(replies)
    assert offer is not None
    assert printed == [(str(c.number), c.label) for c in offer.choices]
    assert "   [📱 Gửi số]  here: /contact 0912345678" in out.getvalue()
    assert render_telegram([], out) is None  # nothing said: the earlier numbers stand
    assert render_telegram([Call("sendMessage", {"text": "x"}, {"text": "x"}, 0.0)], out) == 0


def test_demo_shows_zalo_pictures_by_url() -> None:
    url = "http://127.0.0.1:1/media/abc"
    call = Call("sendPhoto", {"chat_id": "z", "photo": url, "caption": "Mã: X"}, {}, 0.0)
    out = io.StringIO()
    assert render_zalo([call], out, [PhotoFetch(url, 200, "image/png", 447)]) == 0
    assert out.getvalue() == f"\n🤖 [picture] {url}  (fetched: image/png, 447 bytes)\nMã: X\n"


@pytest.mark.parametrize(
    ("typed", "where"),
    [
        ("22.34 103.84", (22.34, 103.84)),
        ("22.34, 103.84", (22.34, 103.84)),
        ("-33.9,151.2", (-33.9, 151.2)),
        ("91 0", None),
        ("22.34", None),
        ("nan 1", None),
        ("sa pa", None),
        ("1 2 3", None),
    ],
)
def test_demo_location_command(typed: str, where: tuple[float, float] | None) -> None:
    assert parse_location(typed) == where


def test_demo_refuses_an_unknown_channel(tmp_path: Path) -> None:
    result = healthbook("demo", "--channel", "viber", cwd=tmp_path, stdin="/quit\n")
    assert result.returncode == 2
    assert "--channel" in result.stderr and "zalo" in result.stderr
    assert not (tmp_path / "healthbook-demo.db").exists()


def test_start_without_token_runs_the_demo(tmp_path: Path) -> None:
    result = healthbook("start", cwd=tmp_path, stdin="/help\n/quit\n")
    assert result.returncode == 0, result.stderr
    assert "demo" in result.stderr and "/mydata" in result.stdout


def test_help_reads_as_plain_text(tmp_path: Path) -> None:
    """No boxes, no type after every option (``--help <bool>``), one line per command in the
    lists (no docstring line break mid-sentence), arguments named as in the usage line."""
    result = healthbook("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "health-book bot" in result.stdout and "``" not in result.stdout
    assert "  run          Run the bot (needs a token).\n" in result.stdout
    assert "  --help  Show this message and exit.\n" in result.stdout
    pages = {
        args: healthbook(*args, "--help", cwd=tmp_path).stdout
        for args in (
            ("certificate",),
            ("certificate", "verify"),
            ("sites", "import"),
            ("sessions", "create"),
            ("reference", "check"),
        )
    }
    for page in [result.stdout, *pages.values()]:
        assert not re.search(r"<\w", page) and "{" not in page and "╭" not in page, page
        assert "..." not in page.split("Commands:")[-1] or "Commands:" not in page, page
    commands = pages[("certificate",)].split("Commands:\n")[1].splitlines()
    assert [line.split()[0] for line in commands] == ["keygen", "rotate", "public-key", "verify"]
    verify = pages[("certificate", "verify")]
    assert " certificate verify [OPTIONS] PAYLOAD\n" in verify
    assert "  PAYLOAD  the text of the certificate's QR code  [required]" in verify
    assert "--public-key FILE" in verify
    assert " sites import [OPTIONS] FILE\n" in pages[("sites", "import")]
    create = pages[("sessions", "create")]
    assert "--capacity N" in create and "1<=x<=10000" in create and "--from DATE" in create


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


def _rows(database: Path, sql: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(database)) as conn:
        return list(conn.execute(sql).fetchall())


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
    assert len(bot.lines) < 30, err  # the migrations' lines, one stop line


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


# --- an operator's mistakes: a database that cannot be used, values out of range, bad files ---


def _no_database_urls(tmp_path: Path) -> list[str]:
    """A SQLite file in a directory that does not exist; on PostgreSQL, a database that does not
    exist."""
    urls = [f"sqlite+aiosqlite:///{tmp_path / 'nodir' / 'x.db'}"]
    if PG_URL:
        admin = make_url(PG_URL.replace("postgresql://", "postgresql+asyncpg://", 1))
        urls.append(admin.set(database="healthbook_no_such_db").render_as_string(False))
    return urls


@pytest.mark.parametrize(
    "command",
    [
        ("reference", "check"),
        ("db", "upgrade"),
        ("sample-data",),
        ("staff", "list"),
        ("sites", "list"),
        ("sessions", "create", "--campaign", "covid19_2021", "--from", "2026-12-01", "--all"),
    ],
)
def test_an_unusable_database_is_one_line(tmp_path: Path, command: tuple[str, ...]) -> None:
    """Every command says it in one line with exit status 2, as ``run`` does: no traceback,
    and none from a database driver's thread after the command has ended."""
    for url in _no_database_urls(tmp_path):
        result = healthbook(*command, cwd=tmp_path, env={"HEALTHBOOK_DATABASE__URL": url})
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(("error: cannot use the database (", "error: no database"))
        assert "check [database] url" in lines[0]
        assert result.stdout == ""
    assert not (tmp_path / "nodir").exists()


def test_reference_check_creates_no_database(tmp_path: Path) -> None:
    """A check reads: no database file, or one with no tables, is said (exit status 2) and left
    as it was; once the schema is there, the check passes."""
    result = healthbook("reference", "check", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: no database at {tmp_path / 'healthbook.db'}: ")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "healthbook.db").touch()
    result = healthbook("reference", "check", cwd=tmp_path)
    assert result.returncode == 2
    assert "has no tables yet" in result.stderr and "healthbook db upgrade" in result.stderr
    with contextlib.closing(sqlite3.connect(tmp_path / "healthbook.db")) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)
    assert healthbook("db", "upgrade", cwd=tmp_path).returncode == 0
    result = healthbook("reference", "check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "every stored code is in the reference" in result.stdout


async def test_reference_check_of_an_older_schema_asks_for_the_upgrade(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'healthbook.db'}")
    try:
        await upgrade(engine, "0003")
    finally:
        await engine.dispose()
    result = await asyncio.to_thread(healthbook, "reference", "check", cwd=tmp_path)
    assert result.returncode == 2
    assert "schema is at revision 0003" in result.stderr and "db upgrade" in result.stderr
    with contextlib.closing(sqlite3.connect(tmp_path / "healthbook.db")) as conn:
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    assert revision.startswith("0003")  # the check upgraded nothing


def test_sessions_create_refuses_values_out_of_range(tmp_path: Path) -> None:
    assert healthbook("sample-data", "--today", "2026-11-25", cwd=tmp_path).returncode == 0
    sessions = _count(tmp_path / "healthbook.db", "sessions")
    base = ("sessions", "create", "--campaign", "covid19_2021", "--all")
    cases = [
        (("--from", "2026-12-01", "--weeks", "100000"), 2, "'--weeks'"),
        (("--from", "2026-12-01", "--days", "732"), 2, "'--days'"),
        (("--from", "2026-12-01", "--capacity", "100000000000"), 2, "'--capacity'"),
        (("--from", "2026-12-01", "--capacity", "0"), 2, "'--capacity'"),
        (("--from", "2026-12-01", "--weeks", "2", "--days", "3"), 2, "not both"),
        (("--from", "9999-12-31", "--days", "3"), 1, "the first date must be between"),
        (("--from", "2020-01-01", "--days", "7"), 1, "outside the campaign's dates"),
    ]
    for args, status, said in cases:
        result = healthbook(*base, *args, cwd=tmp_path)
        assert result.returncode == status, (args, result.stderr)
        assert said in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert _count(tmp_path / "healthbook.db", "sessions") == sessions
    result = healthbook(
        *base, "--from", "2026-12-01", "--days", "731", "--capacity", "10000", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr


def test_sites_import_hints_at_the_file_format(tmp_path: Path) -> None:
    header = "code,name,address,province_code,ward_code,lat,lon,kind\n"
    (tmp_path / "latin1.csv").write_bytes(
        (header + "LC-A,Trạm A,Sa Pa,15,3006,22.33,103.84,commune_station\n").encode()
        + "LC-B,Trâm,Sa Pa,15,3006,22.33,103.84,commune_station\n".encode("cp1258")
    )
    (tmp_path / "semicolons.csv").write_text(header.replace(",", ";"), encoding="utf-8")
    (tmp_path / "columns.csv").write_text("code,name\nLC-A,A\n", encoding="utf-8")
    expected = {
        "latin1.csv": 'line 3: not UTF-8 text; save the file as "CSV UTF-8 (comma delimited)"',
        "semicolons.csv": "line 1: missing column(s) code, name, address, province_code, "
        "ward_code, lat, lon, kind (the columns are not separated by commas; save the file as "
        '"CSV UTF-8 (comma delimited)"',
        "columns.csv": "line 1: missing column(s) address, province_code, ward_code, lat, lon, "
        "kind (the first line names the columns: code,name,address,",
    }
    for name, said in expected.items():
        result = healthbook("sites", "import", name, cwd=tmp_path)
        assert result.returncode == 1
        assert result.stderr.startswith(f"error: {name}:\n  {said}"), result.stderr
    assert _count(tmp_path / "healthbook.db", "sites") == 0


# --- healthbook staff add: a Telegram or a Zalo account --------------------------------------


def test_staff_add_for_telegram_and_zalo(tmp_path: Path) -> None:
    assert healthbook("sample-data", "--today", "2026-11-25", cwd=tmp_path).returncode == 0
    database = tmp_path / "healthbook.db"
    result = healthbook("staff", "add", "--telegram-id", "5", "--site", "LC-BVDK", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "telegram user 5 is now site_staff at LC-BVDK"
    zid = "6ede9afa66b88fe6d6a9"
    result = healthbook("staff", "add", "--zalo-id", zid, "--site", "LC-BVDK", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"zalo user {zid} is now site_staff at LC-BVDK"
    # a Zalo id that reads as a number is a Zalo account, not the Telegram one of that number
    result = healthbook("staff", "add", "--zalo-id", "5", "--site", "LC-BVNL", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # again: idempotent
    result = healthbook("staff", "add", "--zalo-id", zid, "--site", "LC-BVDK", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = _rows(
        database,
        "SELECT a.channel, a.external_id, a.role, s.code FROM accounts a"
        " JOIN staff_sites ss ON ss.account_id = a.id JOIN sites s ON s.id = ss.site_id"
        " ORDER BY a.channel, a.external_id",
    )
    assert rows == [
        ("telegram", "5", "site_staff", "LC-BVDK"),
        ("zalo", "5", "site_staff", "LC-BVNL"),
        ("zalo", zid, "site_staff", "LC-BVDK"),
    ]
    listed = healthbook("staff", "list", cwd=tmp_path)
    assert f"zalo:{zid}" in listed.stdout and "telegram:5" in listed.stdout


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ((), "exactly one of --telegram-id and --zalo-id"),
        (("--telegram-id", "5", "--zalo-id", "abc"), "exactly one of --telegram-id and --zalo-id"),
        (("--telegram-id", "0"), "a Telegram id is a positive whole number"),
        (("--telegram-id", "-5"), "a Telegram id is a positive whole number"),
        (("--telegram-id", "+5"), "a Telegram id is a positive whole number"),
        (("--telegram-id", " 5"), "a Telegram id is a positive whole number"),
        (("--telegram-id", "05"), "a Telegram id is a positive whole number"),
        (("--telegram-id", "²"), "a Telegram id is a positive whole number"),
        (("--telegram-id", "١٢"), "a Telegram id is a positive whole number"),
        (("--telegram-id", "abc"), "a Telegram id is a positive whole number"),
        (("--telegram-id", str(2**52)), "a Telegram id is a positive whole number"),
        (("--telegram-id", "9" * 40), "a Telegram id is a positive whole number"),
        (("--zalo-id", ""), "a Zalo id is 1 to 64 letters and digits"),
        (("--zalo-id", "a" * 65), "a Zalo id is 1 to 64 letters and digits"),
        (("--zalo-id", "abc def"), "a Zalo id is 1 to 64 letters and digits"),
        (("--zalo-id", "abc;drop"), "a Zalo id is 1 to 64 letters and digits"),
        (("--zalo-id", "abc\n"), "a Zalo id is 1 to 64 letters and digits"),
        (("--zalo-id", "ñandú"), "a Zalo id is 1 to 64 letters and digits"),
        (("--zalo-id", "ａｂｃ"), "a Zalo id is 1 to 64 letters and digits"),
    ],
)
def test_staff_add_refuses_bad_ids(tmp_path: Path, args: tuple[str, ...], said: str) -> None:
    result = healthbook("staff", "add", *args, "--site", "LC-BVDK", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert said in " ".join(result.stderr.split()) and "Traceback" not in result.stderr
    assert not (tmp_path / "healthbook.db").exists()  # refused before the database is opened


def test_staff_external_id_is_strict() -> None:
    from models.checkin import staff_external_id

    assert staff_external_id("telegram", "123456789") == "123456789"
    assert staff_external_id("telegram", str(2**52 - 1)) == str(2**52 - 1)
    assert staff_external_id("zalo", "6ede9afa66b88fe6d6a9") == "6ede9afa66b88fe6d6a9"
    assert staff_external_id("zalo", "Z" * 64) == "Z" * 64
    bad = [("telegram", "1.5"), ("telegram", "1e3"), ("zalo", "a-b"), ("zalo", "a_b")]
    for channel, raw in bad:
        with pytest.raises(ValueError):
            staff_external_id(channel, raw)
    with pytest.raises(ValueError, match="unknown channel"):
        staff_external_id("sms", "5")
