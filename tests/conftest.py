"""Fixtures: databases (SQLite always, PostgreSQL when TEST_DATABASE_URL is set), the Bot API
stand-in, and the real Application started against it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from bot.app import build_application, engine_of, prepare_database
from bot.channels.zalo import ZaloPoller, build_zalo_application
from bot.channels.zalo_api import ZaloApi
from bot.context import HBApplication, Services
from bot.db import create_engine
from bot.http import HttpServer, MediaStore
from bot.polling import Poller
from bot.settings import Settings, load_settings
from bot.standin import BotApiStandIn, ChatDriver, TgUser, forbid_network
from bot.standin.zalo import ZaloApiStandIn, ZaloChatDriver, ZaloUser
from models.campaigns import load_sample_data

PG_URL = os.environ.get("TEST_DATABASE_URL")
os.environ.setdefault("PTB_TIMEDELTA", "1")  # PTB 22 warns (an error here) without it
DB_KINDS = ["sqlite"] + (["postgresql"] if PG_URL else [])
TOKEN = "123456:TEST-token-for-the-stand-in"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "zalo_sqlite_only: with chat_bot, the Zalo run is on SQLite only (time)"
    )


@pytest.fixture(scope="session", autouse=True)
def _keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Certificate keys of this run's own: a bot built by a test generates its signing key
    here, never in the working directory."""
    keys = tmp_path_factory.mktemp("keys")
    before = os.environ.get("HEALTHBOOK_SECURITY__KEYS_DIR")
    os.environ["HEALTHBOOK_SECURITY__KEYS_DIR"] = str(keys)
    yield keys
    if before is None:
        del os.environ["HEALTHBOOK_SECURITY__KEYS_DIR"]
    else:
        os.environ["HEALTHBOOK_SECURITY__KEYS_DIR"] = before


@pytest.fixture(autouse=True)
def _no_network() -> Iterator[None]:
    """Any connection outside loopback fails the test."""
    undo = forbid_network()
    yield
    undo()


def _pg_admin_url() -> str:
    assert PG_URL
    return PG_URL.replace("postgresql://", "postgresql+asyncpg://", 1)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database of this run's own (created here, dropped at the end), so that runs
    in parallel, and whatever else lives on the server, are never touched."""
    admin = _pg_admin_url()
    name = f"healthbook_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"

    async def _admin(sql: str) -> None:
        engine = create_engine(admin)
        try:
            async with engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    def admin_sql(sql: str) -> None:  # in a thread: pytest-asyncio's loop may be running here
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, _admin(sql)).result()

    admin_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=DB_KINDS)
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database of each kind (on PostgreSQL: this run's own database, emptied)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        return
    url = request.getfixturevalue("pg_database")
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()
    yield url


class FakeClock:
    """A settable clock (UTC)."""

    def __init__(self, now: dt.datetime | None = None) -> None:
        self.current = now or dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += dt.timedelta(**delta)


def make_settings(db_url: str, api: BotApiStandIn, **bot: object) -> Settings:
    """Settings for a test bot on the stand-in."""
    settings = load_settings(
        None,
        telegram={
            "token": TOKEN,
            "base_url": api.base_url,
            "base_file_url": api.base_file_url,
            "poll_timeout": 1,
        },
        database={"url": db_url},
        bot=bot,
    )
    return settings


@dataclass
class Harness:
    """The running bot, its stand-in and clock."""

    api: BotApiStandIn
    app: HBApplication
    clock: FakeClock
    channel = "telegram"

    @property
    def services(self) -> Services:
        return self.app.bot_data["services"]  # type: ignore[no-any-return]

    def user(self, uid: int | None = None, lang: str | None = "vi", name: str = "An") -> ChatDriver:
        """A new person talking to the bot."""
        uid = uid or (uuid.uuid4().int % 10**9 + 10**9)
        user = TgUser(id=uid, first_name=name, language_code=lang)
        return ChatDriver(self.api, user, idle=self.idle)

    async def idle(self) -> None:
        """Until the bot has no update waiting or being handled."""
        for _ in range(2000):
            processor = self.app.update_processor
            if self.app.update_queue.empty() and processor.current_concurrent_updates == 0:
                return
            await asyncio.sleep(0.005)

    def session(self) -> AsyncSession:
        return self.services.sessions()


async def start_app(settings: Settings, clock: FakeClock) -> HBApplication:
    """Build, initialise and start polling, as ``healthbook run`` does (its poller, kept in
    ``bot_data["poller"]``)."""
    app = build_application(settings, clock=clock, rate_limit=False)
    await prepare_database(app)
    await app.initialize()
    poller = Poller(app, timeout=settings.telegram.poll_timeout)
    app.bot_data["poller"] = poller
    await poller.start()
    await app.start()
    return app


async def stop_app(app: HBApplication) -> None:
    """Stop polling, handle what was fetched, confirm it, and shut down."""
    poller: Poller = app.bot_data["poller"]
    await poller.stop()
    await app.stop()
    await poller.confirm()
    await app.shutdown()
    await engine_of(app).dispose()  # healthbook run does this in post_shutdown


@pytest.fixture
async def api() -> AsyncIterator[BotApiStandIn]:
    """A local Bot API stand-in."""
    async with BotApiStandIn() as stand_in:
        yield stand_in


@pytest.fixture
async def bot(api: BotApiStandIn, db_url: str) -> AsyncIterator[Harness]:
    """The real Application, polling the stand-in, on a fresh database."""
    clock = FakeClock()
    harness = Harness(api, await start_app(make_settings(db_url, api), clock), clock)
    try:
        yield harness
    finally:
        await stop_app(harness.app)  # a test may have restarted it


@pytest.fixture
async def sample(bot: Harness) -> Harness:
    """The bot with the shipped sample campaigns, Lào Cai sites and sessions (from today)."""
    async with bot.session() as session, session.begin():
        await load_sample_data(session, bot.services.today())
    return bot


# --------------------------------------------------------------------------------------------
# Zalo: the same bot over the Zalo stand-in (bot/channels/zalo.py)
# --------------------------------------------------------------------------------------------


class MonotonicClock:
    """A settable monotonic clock (seconds), for the media store's expiry."""

    def __init__(self) -> None:
        self.current = 1000.0

    def __call__(self) -> float:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += seconds


def make_zalo_settings(db_url: str, zapi: ZaloApiStandIn, **sections: object) -> Settings:
    """Settings for a test Zalo bot on the Zalo stand-in (polling, 1 s long polls)."""
    zalo = {"token": zapi.token, "base_url": zapi.url, "poll_timeout": 1}
    zalo.update(sections.pop("zalo", {}))  # type: ignore[arg-type]
    return load_settings(None, zalo=zalo, database={"url": db_url}, **sections)


@dataclass
class ZaloHarness:
    """The running Zalo bot (polling the Zalo stand-in), its web server and clocks; the same
    attributes as :class:`Harness`."""

    api: ZaloApiStandIn
    app: HBApplication
    clock: FakeClock
    http: HttpServer
    media_clock: MonotonicClock
    channel = "zalo"
    #: how the people's drivers answer a choice (``ZaloChatDriver`` ``press_by``)
    press_by: str = "number"

    @property
    def services(self) -> Services:
        return self.app.bot_data["services"]  # type: ignore[no-any-return]

    @property
    def media(self) -> MediaStore:
        return self.app.bot_data["media"]  # type: ignore[no-any-return]

    def user(
        self, uid: str | int | None = None, lang: str | None = "vi", name: str = "An"
    ) -> ZaloChatDriver:
        """A new person talking to the bot on Zalo (Zalo tells no language: ``lang`` unused)."""
        user = ZaloUser(id=str(uid), display_name=name) if uid else ZaloUser(display_name=name)
        return ZaloChatDriver(self.api, user, idle=self.idle, press_by=self.press_by)

    async def idle(self) -> None:
        """Until the bot has no event waiting or being handled, and the inbox is cleared."""
        for _ in range(2000):
            processor = self.app.update_processor
            if self.app.update_queue.empty() and processor.current_concurrent_updates == 0:
                break
            await asyncio.sleep(0.005)
        await self.app.bot_data["zalo_receiver"].idle()

    def session(self) -> AsyncSession:
        return self.services.sessions()


async def start_zalo_app(
    settings: Settings, clock: FakeClock, media_clock: MonotonicClock | None = None
) -> tuple[HBApplication, HttpServer]:
    """Build the Zalo bot with its web server (media links on a free port), replay the inbox
    and poll, as ``healthbook run`` does (the poller in ``bot_data["zalo_poller"]``)."""
    media_clock = media_clock or MonotonicClock()
    media = MediaStore("http://127.0.0.1", ttl=settings.http.media_minutes * 60, clock=media_clock)
    http = HttpServer("127.0.0.1", 0, media=media)
    await http.start()
    media.public_url = http.url
    api = ZaloApi(settings.zalo.token.get_secret_value(), settings.zalo.base_url)  # type: ignore[union-attr]
    app = build_zalo_application(settings, clock=clock, api=api, media=media, jobs=False)
    await prepare_database(app)
    await app.initialize()
    poller = ZaloPoller(app, api, settings.zalo.poll_timeout)
    app.bot_data["zalo_poller"] = poller
    await poller.start()
    await app.start()
    return app, http


async def stop_zalo_app(app: HBApplication, http: HttpServer | None = None) -> None:
    """Stop polling, handle what was fetched, clear the inbox, shut down."""
    poller: ZaloPoller | None = app.bot_data.get("zalo_poller")
    if poller is not None:
        await poller.stop()
    if app.running:
        await app.stop()
    await app.bot_data["zalo_receiver"].idle()
    await app.shutdown()
    await engine_of(app).dispose()
    if http is not None:
        await http.stop()


@pytest.fixture
async def zapi() -> AsyncIterator[ZaloApiStandIn]:
    """A local Zalo Bot API stand-in."""
    async with ZaloApiStandIn() as stand_in:
        yield stand_in


@pytest.fixture
async def zbot(zapi: ZaloApiStandIn, db_url: str) -> AsyncIterator[ZaloHarness]:
    """The real Application on Zalo, polling the Zalo stand-in, on a fresh database."""
    clock, media_clock = FakeClock(), MonotonicClock()
    app, http = await start_zalo_app(make_zalo_settings(db_url, zapi), clock, media_clock)
    harness = ZaloHarness(zapi, app, clock, http, media_clock)
    try:
        yield harness
    finally:
        await stop_zalo_app(harness.app, harness.http)  # a test may have restarted it


@pytest.fixture
async def zsample(zbot: ZaloHarness) -> ZaloHarness:
    """The Zalo bot with the shipped sample campaigns, sites and sessions (from today)."""
    async with zbot.session() as session, session.begin():
        await load_sample_data(session, zbot.services.today())
    return zbot


# --------------------------------------------------------------------------------------------
# Both channels: an end-to-end test taking ``chat_bot`` (or ``chat_sample``) runs once on
# Telegram (id ``tg``) and once on Zalo (id ``zalo``), each on every database kind.
# --------------------------------------------------------------------------------------------

ChatHarness = Harness | ZaloHarness
CHANNELS = [pytest.param("telegram", id="tg"), pytest.param("zalo", id="zalo")]


@pytest.fixture(params=CHANNELS)
async def chat_bot(request: pytest.FixtureRequest, db_url: str) -> AsyncIterator[ChatHarness]:
    """The real Application on Telegram, then on Zalo (the same interface: ``services``,
    ``app``, ``clock``, ``user()``, ``idle()``, ``session()``, ``api``, ``channel``). On Zalo
    the people answer a choice by its number and by its folded label, alternately
    (``press_by="alternate"``). A test marked ``zalo_sqlite_only`` runs on Zalo on SQLite only
    (the slowest scenarios: their Zalo run on PostgreSQL adds time and nothing the Telegram
    run on PostgreSQL does not check)."""
    clock = FakeClock()
    if request.param == "telegram":
        async with BotApiStandIn() as api:
            harness = Harness(api, await start_app(make_settings(db_url, api), clock), clock)
            try:
                yield harness
            finally:
                await stop_app(harness.app)
        return
    if request.node.get_closest_marker("zalo_sqlite_only") and not db_url.startswith("sqlite"):
        pytest.skip("on Zalo this scenario runs on SQLite only (time)")
    async with ZaloApiStandIn() as zapi:
        media_clock = MonotonicClock()
        app, http = await start_zalo_app(make_zalo_settings(db_url, zapi), clock, media_clock)
        zharness = ZaloHarness(zapi, app, clock, http, media_clock, press_by="alternate")
        try:
            yield zharness
        finally:
            await stop_zalo_app(zharness.app, zharness.http)


@pytest.fixture
async def chat_sample(chat_bot: ChatHarness) -> ChatHarness:
    """``chat_bot`` with the shipped sample campaigns, Lào Cai sites and sessions (from today)."""
    async with chat_bot.session() as session, session.begin():
        await load_sample_data(session, chat_bot.services.today())
    return chat_bot


# ---------------------------------------------------------------- both channels, one process


@dataclass
class Both:
    """Telegram and Zalo served by one process over shared services."""

    telegram: Harness
    zalo: ZaloHarness


@pytest.fixture
async def both(api: BotApiStandIn, zapi: ZaloApiStandIn, db_url: str) -> AsyncIterator[Both]:
    """Telegram and Zalo served by one process over shared services, as ``healthbook run``
    does with both tokens: a message from a turn on one may go out on the other."""
    from bot.app import build_services

    clock, media_clock = FakeClock(), MonotonicClock()
    settings = load_settings(
        None,
        telegram={
            "token": TOKEN,
            "base_url": api.base_url,
            "base_file_url": api.base_file_url,
            "poll_timeout": 1,
        },
        zalo={"token": zapi.token, "base_url": zapi.url, "poll_timeout": 1},
        database={"url": db_url},
    )
    services = build_services(settings, clock=clock)
    tg = build_application(settings, services=services, rate_limit=False, jobs=False)
    await prepare_database(tg)
    await tg.initialize()
    tg.bot_data["poller"] = poller = Poller(tg, timeout=1)
    await poller.start()
    await tg.start()
    media = MediaStore("http://127.0.0.1", ttl=600, clock=media_clock)
    http = HttpServer("127.0.0.1", 0, media=media)
    await http.start()
    media.public_url = http.url
    zalo_api = ZaloApi(zapi.token, zapi.url)
    za = build_zalo_application(settings, services=services, api=zalo_api, media=media)
    await za.initialize()
    za.bot_data["zalo_poller"] = zpoller = ZaloPoller(za, zalo_api, 1)
    await zpoller.start()
    await za.start()
    try:
        yield Both(Harness(api, tg, clock), ZaloHarness(zapi, za, clock, http, media_clock))
    finally:
        await stop_zalo_app(za, http)
        await stop_app(tg)


@pytest.fixture
async def both_sample(both: Both) -> Both:
    """Both channels, with the shipped sample campaigns, sites and sessions."""
    async with both.telegram.session() as session, session.begin():
        await load_sample_data(session, both.telegram.services.today())
    return both
