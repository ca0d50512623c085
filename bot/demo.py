"""``healthbook demo``: the real bot, talking to an in-process stand-in of a messenger's API
(Telegram by default, Zalo with ``--channel zalo``), driven from the terminal.

Whatever the person types goes to the bot as a typed message, and the bot resolves it itself
(:mod:`bot.channels.typed`): an option's number, its label, an alias. So the demo numbers the
options exactly as the bot does (:func:`bot.channels.base.numbered`: from 1 across the messages
of one answer, reply-keyboard text buttons included, contact and location buttons not), and on
Zalo it prints the bot's own numbered text. What a terminal cannot do (share a contact or a
location, send a picture or a sticker) is a demo command (:attr:`DemoChat.commands`). Ctrl-D or
/quit ends the demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TextIO

from bot.settings import Settings
from bot.standin import BotApiStandIn, Call, ChatDriver, TgUser
from bot.standin.common import StandInTimeoutError

if TYPE_CHECKING:
    from bot.dispatch import Dispatcher

DEMO_TOKEN = "1000001:demo-token-no-network"
DEMO_ZALO_TOKEN = "1000001:demo-zalo-token-no-network"
TELEGRAM_USER_ID = 1000001
ZALO_USER_ID = "d3e0000000000000d3e0"  # 20 hex characters, like a Zalo id; the same every run
QUIT = {"/quit", "/exit"}
DEMO_PHONE = "0912345678"
SA_PA = (22.3364, 103.8438)
CONTACT_HINT = f"/contact {DEMO_PHONE} (a phone button: shares the number)"
LOCATION_HINT = "/location 22.34 103.84, or /location alone for Sa Pa (shares a location)"
Channel = Literal["telegram", "zalo"]
CHANNELS: tuple[Channel, ...] = ("telegram", "zalo")

ReadLine = Callable[[str], Awaitable[str | None]]


# ------------------------------------------------------------------ rendering


def _markup(value: Any) -> dict[str, Any]:
    if isinstance(value, str):  # PTB sends markups as JSON text
        import json

        with contextlib.suppress(ValueError):
            value = json.loads(value)
    return value if isinstance(value, dict) else {}


def _map_line(lat: Any, lon: Any) -> str:
    try:
        la, lo = float(lat), float(lon)
    except (TypeError, ValueError):
        return "[map pin]"
    return (
        f"[map pin] {la:.5f}, {lo:.5f}  "
        f"https://www.openstreetmap.org/?mlat={la:.5f}&mlon={lo:.5f}#map=16/{la:.5f}/{lo:.5f}"
    )


def render_telegram(calls: list[Call], out: TextIO = sys.stdout) -> int | None:
    """Print what the bot sent to the chat, numbering its options as the bot numbers them
    (from 1 across the answer's messages: inline buttons and reply-keyboard text buttons; a
    contact or location button shown with the demo command that stands for it). Returns how
    many were numbered, or ``None`` when the answer said nothing (the earlier numbers stand)."""
    said = False
    count = 0

    def number(label: str) -> None:
        nonlocal count
        count += 1
        out.write(f"   [{count}] {label}\n")

    for call in calls:
        params = call.params
        sent = call.result if isinstance(call.result, dict) else {}
        method = call.method
        if method == "answerCallbackQuery":
            if params.get("text"):
                out.write(f"   ({params['text']})\n")
            continue
        if method not in (
            "sendMessage", "editMessageText", "editMessageCaption", "sendPhoto",
            "sendDocument", "sendLocation", "sendVenue",
        ):  # fmt: skip
            continue
        said = True
        caption = sent.get("caption") or params.get("caption") or ""
        if not call.ok:  # its options are numbered all the same: the bot counted them
            error = (call.error or {}).get("description", "refused")
            out.write(f"\n🤖 (the bot's {method} failed: {error})\n")
        elif method in ("editMessageText", "editMessageCaption"):
            out.write(f"\n🤖 (edited) {sent.get('text', caption)}\n")
        elif method == "sendMessage":
            out.write(f"\n🤖 {sent.get('text', params.get('text', ''))}\n")
        elif method == "sendPhoto":
            out.write(f"\n🤖 [picture] {caption}\n")
        elif method == "sendDocument":
            name = (sent.get("document") or {}).get("file_name") or "document"
            out.write(f"\n🤖 [file {name}] {caption}\n")
        else:
            where = sent.get("location") or params
            out.write(f"\n🤖 {_map_line(where.get('latitude'), where.get('longitude'))}\n")
        inline = _markup(sent.get("reply_markup") or params.get("reply_markup"))
        for row in inline.get("inline_keyboard") or []:
            for button in row:
                number(str(button.get("text", "")))
        for row in _markup(params.get("reply_markup")).get("keyboard") or []:
            for button in row:
                button = {"text": button} if isinstance(button, str) else button
                label = str(button.get("text", ""))
                if button.get("request_contact"):
                    out.write(f"   [{label}]  here: {CONTACT_HINT}\n")
                elif button.get("request_location"):
                    out.write(f"   [{label}]  here: {LOCATION_HINT}\n")
                else:
                    number(label)
    return count if said else None


def render_zalo(
    calls: list[Call], out: TextIO = sys.stdout, fetches: Sequence[Any] = ()
) -> int | None:
    """Print exactly what the bot sent to the Zalo chat (its numbered lists and hints are its
    own text), pictures as ``[picture] <url>`` with what Zalo's fetch of it got (``fetches``:
    the stand-in's); ``None`` when it said nothing."""
    fetched = {getattr(f, "url", None): f for f in fetches}
    said = False
    for call in calls:
        params = call.params
        if call.method not in ("sendMessage", "sendPhoto", "sendSticker"):
            continue
        said = True
        if not call.ok:
            error = (call.error or {}).get("description", "refused")
            out.write(f"\n🤖 (the bot's {call.method} failed: {error})\n")
        elif call.method == "sendMessage":
            out.write(f"\n🤖 {params.get('text', '')}\n")
        elif call.method == "sendPhoto":
            url = params.get("photo", "")
            fetch = fetched.get(url)
            got = f"  (fetched: {fetch.content_type}, {fetch.size} bytes)" if fetch else ""
            out.write(f"\n🤖 [picture] {url}{got}\n")
            if params.get("caption"):
                out.write(f"{params['caption']}\n")
        else:
            out.write(f"\n🤖 [sticker] {params.get('sticker', '')}\n")
    return 0 if said else None


# ------------------------------------------------------------------ the person at the terminal


def parse_location(text: str) -> tuple[float, float] | None:
    """``22.33 103.84`` or ``22.33, 103.84`` as a latitude and longitude; ``None`` if not."""
    parts = text.replace(",", " ").split()
    if len(parts) != 2:
        return None
    try:
        lat, lon = float(parts[0]), float(parts[1])
    except ValueError:
        return None
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return lat, lon


class DemoChat:
    """One person chatting with the bot through a stand-in, as the terminal shows it."""

    channel: Channel = "telegram"
    #: what the terminal cannot do, as commands the demo itself handles (never sent as text)
    commands: tuple[str, ...] = ("/contact", "/location", "/photo", "/sticker", "/head")
    channel: Channel

    def __init__(self, driver: Any, out: TextIO = sys.stdout, services: Any = None) -> None:
        self.driver = driver
        self.out = out
        self.seen = 0  # the stand-in's sequence number of the last call shown
        self.services = services  # the bot's (for /head); None: /head is not available

    def intro(self) -> str:
        raise NotImplementedError

    async def make_head(self, code: str) -> str:
        """``/head CODE``: the demo person becomes a head of that agency, as an admin's
        ``healthbook agencies set-head CODE --telegram-id ID`` would do; what happened."""
        from models import agencies as ag
        from models.healthbook import ensure_account

        if self.services is None:
            return "/head is not available here"
        if not code:
            return "/head CODE, e.g. /head SYT: you become that agency's head (try /report)"
        async with self.services.sessions() as session, session.begin():
            agency = await ag.by_code(session, code)
            if agency is None:
                return f"no agency {code[:32]!r}; the sample's codes: healthbook agencies list"
            account = await ensure_account(session, self.channel, str(self.driver.user.id))
            await ag.set_head(session, agency, account)
            name = agency.name
        return (
            f"you now head {name} ({agency.code}), as `healthbook agencies set-head` does; "
            "try /agency and /report"
        )

    def render(self, calls: list[Call]) -> int | None:
        raise NotImplementedError

    def show(self) -> int | None:
        """Print what the bot sent to this chat since the last time; as :meth:`render`."""
        calls = self.driver.api.chat_calls(self.driver.chat_id, after_seq=self.seen)
        if not calls:
            return None
        self.seen = max(c.seq for c in calls)
        return self.render(calls)

    async def say(self, line: str) -> None:
        """Send one typed line (or do a demo command), then show the bot's answer."""
        self.show()  # anything that came meanwhile (a notice), with its own numbers
        command, _, rest = line.partition(" ")
        command = command.lower()
        if command in self.commands:
            if not await self.command(command, rest.strip()):
                return  # nothing was sent
        else:
            with contextlib.suppress(StandInTimeoutError):  # shown later, if it ever comes
                await self.driver.send(line)
        if self.show() is None:
            self.out.write("   (no answer from the bot)\n")

    async def command(self, command: str, rest: str) -> bool:
        """Do what a demo command stands for; whether anything was sent."""
        if command == "/head":
            self.out.write(f"   (demo: {await self.make_head(rest)})\n")
            return False
        with contextlib.suppress(StandInTimeoutError):
            if command == "/contact":
                await self.driver.share_contact(rest or DEMO_PHONE)
            elif command == "/location":
                where = parse_location(rest) if rest else SA_PA
                if where is None:
                    self.out.write("   (demo: /location 22.34 103.84, latitude then longitude)\n")
                    return False
                await self.driver.send_location(*where)
            elif command == "/photo":
                await self.driver.send_photo()
            elif command == "/sticker":
                await self.driver.send_sticker()
            else:
                await self.driver.send_unsupported()
        return True


class TelegramDemoChat(DemoChat):
    channel: Channel = "telegram"

    def intro(self) -> str:
        return (
            "healthbook demo, as on Telegram (simulated here, no network). Type /start to begin.\n"
            "Type an answer, an option's [number] or its words: the bot reads them itself.\n"
            "No phone or location buttons here: /contact 0912345678 shares a phone number,\n"
            "/location 22.34 103.84 a location (alone: Sa Pa); /photo and /sticker send one.\n"
            "Sample agencies: /agency SYT says you work at Sở Y tế; /head SYT makes you its\n"
            "head (as an admin's `healthbook agencies set-head` does) to try /report.\n"
            f"/quit ends. (This demo user is Telegram id {self.driver.user.id}.)\n"
        )

    def render(self, calls: list[Call]) -> int | None:
        return render_telegram(calls, self.out)


class ZaloDemoChat(DemoChat):
    channel: Channel = "zalo"
    commands = (*DemoChat.commands, "/unsupported")

    def intro(self) -> str:
        return (
            "healthbook demo, as on Zalo (simulated here, no network). Type /start to begin.\n"
            "Zalo has no buttons: the bot numbers the options in its own text. Type an answer,\n"
            "an option's number or its words. Zalo shares no contacts or locations (type them);\n"
            "/photo and /sticker send one, /unsupported is what Zalo sends in place of a\n"
            "protected user's message. Sample agencies: /agency SYT says you work at Sở Y tế;\n"
            "/head SYT makes you its head (as `healthbook agencies set-head` does): try /report.\n"
            "/quit ends. "
            f"(This demo user is Zalo id {self.driver.user.id}.)\n"
        )

    def render(self, calls: list[Call]) -> int | None:
        return render_zalo(calls, self.out, self.driver.api.fetches)

    async def command(self, command: str, rest: str) -> bool:
        if command == "/location":
            self.out.write(
                "   (Zalo cannot share a location: type the name of your commune instead)\n"
            )
            return False
        return await super().command(command, rest)


async def _read_line(prompt: str) -> str | None:
    """A line from the terminal (None at its end), read in a daemon thread: Ctrl-C stops the
    demo at once, instead of waiting for a line that the executor's thread is still reading."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future[str | None] = loop.create_future()

    def give(line: str | None) -> None:
        if not got.done():
            got.set_result(line)

    def read() -> None:
        try:
            line: str | None = input(prompt)
        except (EOFError, OSError, ValueError):  # end of input, or stdin closed
            line = None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(give, line)

    threading.Thread(target=read, name="healthbook:demo-input", daemon=True).start()
    line = await got
    if line is not None and not sys.stdin.isatty():  # piped in: echoed, as a transcript
        sys.stdout.write(line + "\n")
    return line


async def _loop(
    chat: DemoChat, read_line: ReadLine = _read_line, out: TextIO | None = None
) -> None:
    """Relay typed lines to the bot until /quit or the end of input."""
    out = out or chat.out
    out.write(chat.intro())
    while True:
        line = await read_line("\n👤 > ")
        if line is None or line.strip().lower() in QUIT:
            out.write("bye\n")
            return
        line = line.strip()
        if line:
            await chat.say(line)
        out.flush()


# ------------------------------------------------------------------ the bot


def _idle(app: Any, dispatcher: Dispatcher | None = None) -> Callable[[], Awaitable[None]]:
    """Until the application has no update waiting or being handled, and the dispatcher has
    sent what the answer made due (a waitlist offer…): all of an answer is shown together,
    however long its parts take."""

    async def idle() -> None:
        for _ in range(6000):  # 30 s at most
            processor = app.update_processor
            if app.update_queue.empty() and processor.current_concurrent_updates == 0:
                break
            await asyncio.sleep(0.005)
        if dispatcher is not None:
            await dispatcher.wait_idle(5.0)

    return idle


async def _sample_data(app: Any) -> None:
    """The shipped Lào Cai campaigns, sites and sessions, so /book works out of the box, and
    the sample agencies (when there are none yet), so /agency and /report do."""
    from sqlalchemy import func, select

    from models import agencies as ag
    from models.campaigns import load_sample_data
    from models.tables import Agency

    services = app.bot_data["services"]
    async with services.sessions() as session, session.begin():
        await load_sample_data(session, services.today())
        if not await session.scalar(select(func.count()).select_from(Agency)):
            await ag.import_csv(session, ag.SAMPLE.read_bytes(), services.clock())


class _DemoDriver(ChatDriver):
    """A :class:`ChatDriver` whose update ids go on from the last one the database recorded as
    handled: a new stand-in counts from 1 again, and the bot skips an update id it has applied
    (it takes it for a copy given again), so a second demo on the same file would go unanswered."""

    def __init__(self, *args: Any, first_update_id: int = 1, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._update_ids = itertools.count(first_update_id)

    async def push(self, update: dict[str, Any], **kw: Any) -> list[Call]:
        return await super().push({**update, "update_id": next(self._update_ids)}, **kw)


async def _first_update_id(app: Any) -> int:
    """One more than the highest Telegram update id the database recorded as handled."""
    from sqlalchemy import select

    from models.tables import HandledUpdate

    async with app.bot_data["services"].sessions() as session:
        keys = await session.scalars(
            select(HandledUpdate.update_key).where(HandledUpdate.channel == "telegram")
        )
        ids = [int(k) for k in keys if k.isascii() and k.isdigit() and len(k) <= 18]
    return max(ids, default=0) + 1


@contextlib.asynccontextmanager
async def telegram_chat(
    settings: Settings, *, language: str, sample_data: bool, out: TextIO
) -> AsyncIterator[DemoChat]:
    """The bot on the Telegram stand-in, and the demo person's chat with it."""
    from bot.app import build_application, engine_of, prepare_database
    from bot.dispatch import Dispatcher
    from bot.polling import Poller
    from models.certificates import Keyring

    async with BotApiStandIn() as api:
        settings.telegram.base_url = api.base_url
        settings.telegram.base_file_url = api.base_file_url
        # a key of the demo's own, in memory only: a demo certificate must never pass for one
        # signed by the deployment's key, and the demo must not create the deployment's key
        app = build_application(
            settings, token=DEMO_TOKEN, rate_limit=False, keyring=Keyring.ephemeral()
        )
        await prepare_database(app)
        if sample_data:
            await _sample_data(app)
        first_update_id = await _first_update_id(app)
        async with app:
            poller = Poller(app, timeout=1)
            await poller.start()
            await app.start()
            dispatcher = Dispatcher(app.bot_data["services"])
            await dispatcher.start()
            try:
                user = TgUser(id=TELEGRAM_USER_ID, first_name="Demo", language_code=language)
                driver = _DemoDriver(
                    api, user, idle=_idle(app, dispatcher), first_update_id=first_update_id
                )
                yield TelegramDemoChat(driver, out, app.bot_data["services"])
            finally:
                await dispatcher.stop()
                await poller.stop()
                await app.stop()
                await poller.confirm()
        await engine_of(app).dispose()


async def run_demo(
    settings: Settings,
    *,
    language: str = "vi",
    sample_data: bool = True,
    channel: Channel = "telegram",
    read_line: ReadLine = _read_line,
    out: TextIO = sys.stdout,
) -> None:
    """Start the stand-in and the bot, then relay the terminal to the bot until /quit; the
    sample campaigns, sites and sessions are loaded first when ``sample_data``."""
    from bot.logs import setup_logging

    setup_logging("WARNING")
    chat_of = telegram_chat if channel == "telegram" else zalo_chat
    async with chat_of(settings, language=language, sample_data=sample_data, out=out) as chat:
        await _loop(chat, read_line, out)


@contextlib.asynccontextmanager
async def zalo_chat(
    settings: Settings, *, language: str, sample_data: bool, out: TextIO
) -> AsyncIterator[DemoChat]:
    """The bot on the Zalo stand-in (pictures served by the bot's own web server, which the
    stand-in fetches as Zalo would), and the demo person's chat with it. Zalo tells the bot no
    language: ``language`` is not used (the person can choose one with /language)."""
    from bot.app import build_services, engine_of, prepare_database
    from bot.channels.zalo import ZaloPoller, build_zalo_application
    from bot.channels.zalo_api import ZaloApi
    from bot.dispatch import Dispatcher
    from bot.http import HttpServer, MediaStore
    from bot.standin.zalo import ZaloApiStandIn, ZaloChatDriver, ZaloUser
    from models.certificates import Keyring

    async with ZaloApiStandIn(DEMO_ZALO_TOKEN) as api:
        media = MediaStore("http://127.0.0.1", ttl=settings.http.media_minutes * 60)
        http = HttpServer("127.0.0.1", 0, media=media)  # a free port on this computer only
        await http.start()
        media.public_url = http.url
        zalo = ZaloApi(DEMO_ZALO_TOKEN, api.url)
        services = build_services(settings, keyring=Keyring.ephemeral())
        app = build_zalo_application(settings, services=services, api=zalo, media=media)
        try:
            await prepare_database(app)
            if sample_data:
                await _sample_data(app)
            async with app:
                poller = ZaloPoller(app, zalo, timeout=1)
                await poller.start()
                await app.start()
                receiver = app.bot_data["zalo_receiver"]
                dispatcher = Dispatcher(app.bot_data["services"])
                await dispatcher.start()
                settled = _idle(app, dispatcher)

                async def idle() -> None:
                    await settled()
                    await receiver.idle()

                try:
                    user = ZaloUser(id=ZALO_USER_ID, display_name="Demo")
                    yield ZaloDemoChat(
                        ZaloChatDriver(api, user, idle=idle), out, app.bot_data["services"]
                    )
                finally:
                    await dispatcher.stop()
                    await poller.stop()
                    await app.stop()
                    await receiver.idle()
        finally:
            await engine_of(app).dispose()
            await http.stop()
