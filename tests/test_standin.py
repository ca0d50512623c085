"""The Bot API stand-in, exercised with the real python-telegram-bot Application."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.standin import (
    TINY_PNG,
    BotApiStandIn,
    ChatDriver,
    StandInTimeoutError,
    TgUser,
    forbid_network,
    photo_message,
    text_message,
)

TOKEN = "123456:TEST"
ALICE = TgUser(id=111, first_name="Alice")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # PTB 22 warns (an error here) when RetryAfter.retry_after is an int; opt in to timedelta.
    monkeypatch.setenv("PTB_TIMEDELTA", "1")
    undo = forbid_network()
    yield
    undo()


# ------------------------------------------------------------------ a tiny bot


async def _start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    keyboard = InlineKeyboardMarkup(
        [
            [InlineKeyboardButton("Yes ✅", callback_data="yes")],
            [InlineKeyboardButton("No", callback_data="no")],
        ]
    )
    await update.effective_message.reply_text(f"Welcome {context.args}!", reply_markup=keyboard)


async def _button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    await query.answer(f"Got {query.data}")
    await query.edit_message_text(f"You chose {query.data}")


async def _doc(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.effective_message.reply_document(
        document=b"hello bytes", filename="hello.txt", caption="your file"
    )


async def _keyboard(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    markup = ReplyKeyboardMarkup(
        [[KeyboardButton("Share phone", request_contact=True)], ["Cancel"]]
    )
    await update.effective_message.reply_text("Please share", reply_markup=markup)


async def _silent(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await context.bot.send_chat_action(update.effective_chat.id, "typing")


async def _contact(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    contact = update.effective_message.contact
    await update.effective_message.reply_text(
        f"Phone {contact.phone_number} of {contact.user_id}", reply_markup=ReplyKeyboardRemove()
    )


async def _location(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    loc = update.effective_message.location
    await update.effective_message.reply_location(latitude=loc.latitude, longitude=loc.longitude)


async def _photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    file = await update.effective_message.photo[-1].get_file()
    data = await file.download_as_bytearray()
    await update.effective_message.reply_text(f"photo {len(data)} bytes {bytes(data[:4])!r}")


async def _media(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    msg = update.effective_message
    kind = "sticker" if msg.sticker else "voice" if msg.voice else "document"
    await msg.reply_text(f"got {kind}")


async def _echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.effective_message.reply_text(update.effective_message.text)


def _build_app(api: BotApiStandIn) -> Application:
    app = (
        Application.builder()
        .token(TOKEN)
        .base_url(api.base_url)
        .base_file_url(api.base_file_url)
        .build()
    )
    app.add_handler(CommandHandler("start", _start))
    app.add_handler(CommandHandler("doc", _doc))
    app.add_handler(CommandHandler("keyboard", _keyboard))
    app.add_handler(CommandHandler("silent", _silent))
    app.add_handler(CallbackQueryHandler(_button))
    app.add_handler(MessageHandler(filters.CONTACT, _contact))
    app.add_handler(MessageHandler(filters.LOCATION, _location))
    app.add_handler(MessageHandler(filters.PHOTO, _photo))
    app.add_handler(
        MessageHandler(filters.Sticker.ALL | filters.VOICE | filters.Document.ALL, _media)
    )
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, _echo))
    return app


@contextlib.asynccontextmanager
async def _running(api: BotApiStandIn) -> AsyncIterator[Application]:
    app = _build_app(api)
    async with app:
        await app.updater.start_polling(poll_interval=0, timeout=1)
        await app.start()
        try:
            yield app
        finally:
            await app.updater.stop()
            await app.stop()


@pytest.fixture
async def api() -> AsyncIterator[BotApiStandIn]:
    async with BotApiStandIn() as stand_in:
        yield stand_in


@pytest.fixture
async def bot_app(api: BotApiStandIn) -> AsyncIterator[Application]:
    async with _running(api) as app:
        yield app


# ------------------------------------------------------------------ with the real PTB


async def test_get_me_and_polling_setup(api: BotApiStandIn, bot_app: Application) -> None:
    assert bot_app.bot.username == "healthbook_demo_bot"
    assert bot_app.bot.id == 7000000001
    methods = [c.method for c in api.calls]
    assert methods[0] == "getMe"
    assert "deleteWebhook" in methods
    await api.wait_for_calls(lambda c: c.method == "getUpdates", timeout=3)
    assert api.base_url.startswith("http://127.0.0.1:") and api.base_url.endswith("/bot")


async def test_echo_text(api: BotApiStandIn, bot_app: Application) -> None:
    alice = ChatDriver(api, ALICE)
    calls = await alice.send("xin chào 👋")
    assert [c.method for c in calls] == ["sendMessage"]
    assert calls[0].params["chat_id"] == ALICE.id
    assert calls[0].result["message_id"] == 1
    assert alice.last_text == "xin chào 👋"
    await alice.send("second")
    assert alice.texts == ["xin chào 👋", "second"]
    assert [m["message_id"] for m in api.messages(ALICE.id)] == [1, 2]
    msg = api.messages(ALICE.id)[0]
    assert msg["from"]["is_bot"] is True and msg["from"]["username"] == "healthbook_demo_bot"
    assert msg["chat"] == {"id": 111, "type": "private", "first_name": "Alice"}


async def test_command_and_inline_button(api: BotApiStandIn, bot_app: Application) -> None:
    alice = ChatDriver(api, ALICE)
    await alice.send("/start now")
    assert alice.last_text == "Welcome ['now']!"
    assert alice.buttons == ["Yes ✅", "No"]
    calls = await alice.press("yes ✅")  # case-insensitive label match
    assert {c.method for c in calls} == {"answerCallbackQuery", "editMessageText"}
    assert alice.callback_answers == ["Got yes"]
    assert alice.last_text == "You chose yes"
    assert alice.buttons == []  # editing the text without reply_markup drops the keyboard
    assert len(api.messages(ALICE.id)) == 1
    assert api.messages(ALICE.id)[0]["edit_date"] >= api.messages(ALICE.id)[0]["date"]

    await alice.send("/start")
    with pytest.raises(AssertionError, match=r"available: 'Yes ✅' \(data 'yes'\), 'No'"):
        await alice.press("Maybe")
    await alice.press("no")  # callback_data match
    assert alice.last_text == "You chose no"
    await alice.press_data("forged:data")
    assert alice.callback_answers[-1] == "Got forged:data"


async def test_send_document_records_bytes(api: BotApiStandIn, bot_app: Application) -> None:
    alice = ChatDriver(api, ALICE)
    calls = await alice.send("/doc")
    (call,) = [c for c in calls if c.method == "sendDocument"]
    upload = call.params["document"]
    assert upload.content == b"hello bytes"
    assert upload.filename == "hello.txt"
    assert upload.mime_type == "text/plain"
    assert upload.size == 11
    assert call.result["document"]["file_name"] == "hello.txt"
    assert call.result["caption"] == "your file"
    assert alice.last_text == "your file"
    # the bot can fetch what it uploaded
    file = await bot_app.bot.get_file(call.result["document"]["file_id"])
    assert bytes(await file.download_as_bytearray()) == b"hello bytes"


async def test_plain_text_only_and_errors(api: BotApiStandIn, bot_app: Application) -> None:
    # The bot never formats (Zalo cannot): a parse_mode is refused so that a slip shows up.
    with pytest.raises(BadRequest, match=r"(?i)plain text only"):
        await bot_app.bot.send_message(ALICE.id, "<b>Bold</b>", parse_mode=ParseMode.HTML)
    with pytest.raises(BadRequest, match=r"(?i)plain text only"):
        await bot_app.bot.send_document(
            ALICE.id, b"x", filename="x.txt", caption="*x*", parse_mode=ParseMode.MARKDOWN_V2
        )
    sent = await bot_app.bot.send_message(ALICE.id, "  <b>as typed</b> & *stars*\n")
    assert sent.text == "<b>as typed</b> & *stars*"
    assert not sent.entities
    with pytest.raises(BadRequest, match=r"(?i)message text is empty"):
        await bot_app.bot.send_message(ALICE.id, "   ")
    with pytest.raises(BadRequest, match=r"(?i)BUTTON_DATA_INVALID"):
        await bot_app.bot.send_message(
            ALICE.id,
            "x",
            reply_markup=InlineKeyboardMarkup(
                [[InlineKeyboardButton("b", callback_data="x" * 65)]]
            ),
        )


async def test_edit_errors_like_telegram(api: BotApiStandIn, bot_app: Application) -> None:
    sent = await bot_app.bot.send_message(ALICE.id, "hello")
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot_app.bot.edit_message_text("x", chat_id=ALICE.id, message_id=999)
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot_app.bot.edit_message_text("hello", chat_id=ALICE.id, message_id=sent.message_id)
    edited = await bot_app.bot.edit_message_text(
        "bye", chat_id=ALICE.id, message_id=sent.message_id
    )
    assert edited.text == "bye"
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("k", callback_data="k")]])
    await bot_app.bot.edit_message_reply_markup(ALICE.id, sent.message_id, reply_markup=markup)
    assert ChatDriver(api, ALICE).buttons == ["k"]
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot_app.bot.edit_message_reply_markup(ALICE.id, sent.message_id, reply_markup=markup)
    assert await bot_app.bot.delete_message(ALICE.id, sent.message_id)
    assert api.messages(ALICE.id) == []
    with pytest.raises(BadRequest, match=r"(?i)message to delete not found"):
        await bot_app.bot.delete_message(ALICE.id, sent.message_id)
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot_app.bot.answer_callback_query("nope")
    api.block_user(ALICE.id)
    with pytest.raises(Forbidden, match=r"(?i)blocked"):
        await bot_app.bot.send_message(ALICE.id, "hello")
    failed = [c for c in api.calls if not c.ok]
    assert failed[0].error["error_code"] == 400


async def test_other_bot_methods(api: BotApiStandIn, bot_app: Application) -> None:
    bot = bot_app.bot
    assert await bot.set_my_commands([("start", "Start"), ("help", "Help")])
    assert [c.command for c in await bot.get_my_commands()] == ["start", "help"]
    assert await bot.set_my_commands([("start", "Bắt đầu")], language_code="vi")
    assert [c.description for c in await bot.get_my_commands(language_code="vi")] == ["Bắt đầu"]
    assert await bot.delete_my_commands()
    assert await bot.get_my_commands() == ()
    assert await bot.set_chat_menu_button()
    assert await bot.send_chat_action(ALICE.id, "typing")
    venue = await bot.send_venue(ALICE.id, 21.03, 105.85, "Trạm y tế", "1 Phố Huế")
    assert venue.venue.title == "Trạm y tế" and venue.location.latitude == 21.03
    photo = await bot.send_photo(ALICE.id, photo=b"\x89PNG\r\n\x1a\n" + bytes(100), caption="pic")
    assert photo.photo[0].file_size == 108 and photo.caption == "pic"
    again = await bot.send_photo(ALICE.id, photo=photo.photo[0].file_id)
    assert again.photo[0].file_id == photo.photo[0].file_id
    with pytest.raises(BadRequest, match=r"(?i)wrong file identifier"):
        await bot.send_document(ALICE.id, document="no-such-file-id")
    info = await bot.get_webhook_info()
    assert info.url == ""
    assert await bot.log_out() and await bot.close()


async def test_reply_keyboard_contact_location_media(
    api: BotApiStandIn, bot_app: Application
) -> None:
    alice = ChatDriver(api, ALICE)
    await alice.send("/keyboard")
    assert alice.reply_keyboard == ["Share phone", "Cancel"]
    assert alice.reply_buttons == [
        {"text": "Share phone", "request_contact": True},
        {"text": "Cancel"},
    ]
    await alice.share_contact("+84901234567")
    assert alice.last_text == "Phone +84901234567 of 111"
    assert alice.reply_keyboard == []
    calls = await alice.send_location(10.77, 106.70)
    assert calls[-1].result["location"] == {"latitude": 10.77, "longitude": 106.7}
    await alice.send_photo()
    assert alice.last_text == f"photo {len(TINY_PNG)} bytes b'\\x89PNG'"
    await alice.send_sticker()
    assert alice.last_text == "got sticker"
    await alice.send_voice()
    assert alice.last_text == "got voice"
    await alice.send_document(b"%PDF-1.4", file_name="kq.pdf")
    assert alice.last_text == "got document"


async def test_driver_timeouts(api: BotApiStandIn, bot_app: Application) -> None:
    alice = ChatDriver(api, ALICE, timeout=0.3)
    with pytest.raises(StandInTimeoutError, match=r"(?i)sendChatAction"):
        await alice.send("/silent")
    assert await alice.send("/silent", expect_reply=False) != []  # only the chat action
    assert [c.method for c in alice.calls] == ["sendChatAction", "sendChatAction"]
    strict = ChatDriver(api, TgUser(id=333), strict=True)
    api.fail_next("sendMessage", error_code=400, description="Bad Request: chat not found")
    with pytest.raises(AssertionError, match="chat not found"):
        await strict.send("hello")
    assert [c.error["error_code"] for c in strict.errors] == [400]


async def test_many_chats_concurrently(api: BotApiStandIn, bot_app: Application) -> None:
    drivers = [ChatDriver(api, TgUser(id=1000 + i)) for i in range(30)]
    results = await asyncio.gather(*(d.send(f"hi {d.chat_id}") for d in drivers))
    for d, calls in zip(drivers, results, strict=True):
        assert [c.result["text"] for c in calls] == [f"hi {d.chat_id}"]
    assert all(d.last_text == f"hi {d.chat_id}" for d in drivers)


async def test_wait_for_calls_and_next_messages(api: BotApiStandIn, bot_app: Application) -> None:
    start = len(api.calls)
    api.push_update(text_message(ALICE, "one"))
    api.push_update(text_message(ALICE, "two"))
    calls = await api.wait_for_calls(
        lambda c: c.method == "sendMessage", count=2, after_index=start
    )
    assert sorted(c.result["text"] for c in calls) == ["one", "two"]
    msgs = await api.next_messages(ALICE.id)
    assert [m["text"] for m in msgs] == ["one", "two"]
    api.push_update(text_message(ALICE, "three"))
    assert [m["text"] for m in await api.next_messages(ALICE.id)] == ["three"]
    with pytest.raises(StandInTimeoutError):
        await api.wait_for_calls(lambda c: c.method == "sendPhoto", timeout=0.1)


# ------------------------------------------------------------------ failure injection


async def test_injected_429_surfaces_as_retry_after(
    api: BotApiStandIn, bot_app: Application
) -> None:
    api.fail_next("sendMessage", error_code=429, retry_after=3)
    with pytest.raises(RetryAfter) as info:
        await bot_app.bot.send_message(ALICE.id, "hello")
    assert info.value.retry_after.total_seconds() == 3
    failed = [c for c in api.calls if not c.ok]
    assert failed[-1].error == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 3",
        "parameters": {"retry_after": 3},
    }
    assert (await bot_app.bot.send_message(ALICE.id, "hello")).text == "hello"
    api.fail_next("sendmessage", error_code=500)  # method names are case-insensitive
    with pytest.raises(NetworkError, match=r"(?i)Internal Server Error"):
        await bot_app.bot.send_message(ALICE.id, "hello")


async def test_injected_429_on_get_updates_is_retried(
    api: BotApiStandIn, bot_app: Application
) -> None:
    api.fail_next("getUpdates", error_code=429, retry_after=1)
    alice = ChatDriver(api, ALICE)
    await alice.send("still works", timeout=8)
    assert alice.last_text == "still works"
    assert any(c.method == "getUpdates" and not c.ok for c in api.calls)


# ------------------------------------------------------------------ raw HTTP


async def test_raw_http_bodies_and_unknown_method(api: BotApiStandIn) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{api.base_url}{TOKEN}"
        form = {
            "chat_id": "5",
            "text": "123",
            "reply_markup": json.dumps(
                {"inline_keyboard": [[{"text": "a", "callback_data": "1"}]]}
            ),
        }
        async with http.post(f"{url}/SENDMESSAGE", data=form) as r:
            body = await r.json()
        assert body["ok"] is True
        assert body["result"]["text"] == "123"  # text stays a string
        assert body["result"]["chat"]["id"] == 5
        assert body["result"]["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "1"
        async with http.post(f"{url}/sendMessage", json={"chat_id": 5, "text": "json"}) as r:
            assert (await r.json())["result"]["message_id"] == 2
        mp = aiohttp.FormData()
        mp.add_field("chat_id", "5")
        mp.add_field("document", b"%PDF", filename="a.pdf", content_type="application/pdf")
        async with http.post(f"{url}/sendDocument", data=mp) as r:
            doc = (await r.json())["result"]["document"]
        assert doc["file_name"] == "a.pdf" and doc["file_size"] == 4
        mp = aiohttp.FormData()
        mp.add_field("chat_id", "5")
        mp.add_field("photo", "attach://pic")
        mp.add_field("pic", b"\x89PNG", filename="p.png", content_type="image/png")
        async with http.post(f"{url}/sendPhoto", data=mp) as r:
            assert (await r.json())["result"]["photo"][0]["file_size"] == 4
        async with http.get(f"{url}/getMe") as r:
            assert (await r.json())["result"]["username"] == "healthbook_demo_bot"
        async with http.post(f"{url}/noSuchMethod") as r:
            assert r.status == 404
            assert await r.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
        async with http.post(f"{api.base_url}not-a-token/getMe") as r:
            assert r.status == 401
    assert [m["message_id"] for m in api.messages(5)] == [1, 2, 3, 4]
    assert api.calls[2].params["document"].content == b"%PDF"


async def test_get_updates_long_poll_and_offset(api: BotApiStandIn) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{api.base_url}{TOKEN}/getUpdates"
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with http.post(url, data={"timeout": "0.2"}) as r:
            assert (await r.json())["result"] == []
        assert loop.time() - started >= 0.19

        async def push_later() -> None:
            await asyncio.sleep(0.1)
            api.push_update(text_message(ALICE, "hi"))

        task = asyncio.create_task(push_later())
        started = loop.time()
        async with http.post(url, data={"timeout": "5"}) as r:
            updates = (await r.json())["result"]
        await task
        assert loop.time() - started < 2
        assert [u["update_id"] for u in updates] == [1]
        api.push_update(text_message(ALICE, "again"))
        async with http.post(url, data={"offset": "1", "limit": "1"}) as r:
            assert [u["update_id"] for u in (await r.json())["result"]] == [1]
        async with http.post(url, data={"offset": "2"}) as r:
            assert [u["update_id"] for u in (await r.json())["result"]] == [2]
        async with http.post(url, data={"offset": "3"}) as r:
            assert (await r.json())["result"] == []
        assert api.stats()["pending_updates"] == 0


async def test_control_api(api: BotApiStandIn, bot_app: Application) -> None:
    bob = TgUser(id=222, first_name="Bob")
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{api.url}/_standin/update", json=text_message(bob, "ping")) as r:
            pushed = await r.json()
        assert pushed["update_id"] >= 1
        params = {"chat_id": "222", "after": str(pushed["seq"]), "timeout": "5", "settle": "0.05"}
        async with http.get(f"{api.url}/_standin/wait", params=params) as r:
            calls = (await r.json())["calls"]
        assert [c["method"] for c in calls] == ["sendMessage"]
        assert calls[0]["result"]["text"] == "ping" and calls[0]["seq"] > pushed["seq"]
        params.update(after=str(calls[-1]["seq"]), timeout="0.1")
        async with http.get(f"{api.url}/_standin/wait", params=params) as r:
            assert (await r.json())["calls"] == []
        async with http.get(f"{api.url}/_standin/stats") as r:
            stats = await r.json()
        assert stats["updates_pushed"] == 1 and stats["calls_by_method"]["sendMessage"] == 1
        async with http.post(f"{api.url}/_standin/fail", json={"method": "sendMessage"}) as r:
            assert r.status == 200
    with pytest.raises(RetryAfter):
        await bot_app.bot.send_message(222, "x")


async def test_bounded_memory_mode() -> None:
    async with BotApiStandIn(
        keep_calls=False, max_calls_per_chat=3, max_messages_per_chat=2
    ) as api:
        async with aiohttp.ClientSession() as http:
            for i in range(10):
                data = {"chat_id": "9", "text": f"m{i}"}
                async with http.post(f"{api.base_url}{TOKEN}/sendMessage", data=data) as r:
                    assert r.status == 200
        assert api.calls == []
        assert [c.params["text"] for c in api.chat_calls(9)] == ["m7", "m8", "m9"]
        assert [m["text"] for m in api.messages(9)] == ["m8", "m9"]
        assert api.stats()["calls_total"] == 10
        with pytest.raises(RuntimeError):
            await api.wait_for_calls(lambda c: True)


async def test_update_factories() -> None:
    cmd = text_message(ALICE, "/start@healthbook_demo_bot x")["message"]
    assert cmd["entities"] == [{"type": "bot_command", "offset": 0, "length": 26}]
    assert "entities" not in text_message(ALICE, "hello /start")["message"]
    photo = photo_message(ALICE, caption="c")["message"]
    assert photo["chat"]["id"] == photo["from"]["id"] == ALICE.id
    assert photo["from"]["language_code"] == "vi"
    assert Update.de_json({"update_id": 1, "message": photo}, None).message.caption == "c"


# ------------------------------------------------------------------ network guard and CLI


def test_forbid_network_blocks_remote_allows_loopback() -> None:
    # the autouse fixture already installed one guard; nest a second one and undo it
    undo = forbid_network()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s, pytest.raises(RuntimeError):
            s.connect(("93.184.216.34", 80))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s, pytest.raises(RuntimeError):
            s.connect_ex(("10.1.2.3", 80))
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s, pytest.raises(RuntimeError):
            s.connect(("2001:db8::1", 80, 0, 0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(RuntimeError):
            s.connect(("example.org", 53))
        with socket.create_server(("127.0.0.1", 0)) as server:
            port = server.getsockname()[1]
            with socket.create_connection(("127.0.0.1", port)):
                pass
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", port)) == 0
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "s.sock")
            with socket.socket(socket.AF_UNIX) as server:
                server.bind(path)
                server.listen()
                with socket.socket(socket.AF_UNIX) as client:
                    client.connect(path)
    finally:
        undo()
    assert socket.socket.connect.__name__ == "connect"


def test_forbid_network_undo_restores() -> None:
    before = socket.socket.connect
    undo = forbid_network()
    assert socket.socket.connect is not before
    undo()
    assert socket.socket.connect is before


async def test_cli_runs_standalone() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.standin",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
        assert line.startswith("http://127.0.0.1:") and line.endswith("/bot")
        async with aiohttp.ClientSession() as http, http.get(f"{line}{TOKEN}/getMe") as r:
            assert (await r.json())["result"]["is_bot"] is True
    finally:
        proc.terminate()
        await proc.communicate()
    assert proc.returncode == 0
