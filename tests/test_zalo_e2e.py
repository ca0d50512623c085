"""End to end on Zalo: the same conversations over the Zalo stand-in, answered by typing
numbers and words; pictures by URL from the bot's own server; the webhook; the inbox."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from bot import serve
from bot.app import engine_of, prepare_database
from bot.channels import DeliveryError
from bot.channels.base import Keyboard, KeyButton, Options, Reply
from bot.channels.zalo import ZaloChannel, parse_event, render, split_text, to_update
from bot.http import SECRET_HEADER, HttpServer
from bot.i18n import Translations
from bot.settings import load_settings
from bot.standin import BotApiStandIn, ChatDriver, TgUser
from bot.standin.zalo import ZaloApiStandIn, ZaloChatDriver, ZaloUser, zalo_text
from models import healthbook as hb
from models import inbox
from models.tables import Account, Booking, HandledUpdate, HealthBook, InboxEvent
from tests.conftest import (
    TOKEN,
    FakeClock,
    MonotonicClock,
    ZaloHarness,
    make_zalo_settings,
    start_zalo_app,
    stop_zalo_app,
)
from tests.flows import TR, items_for

HINT = TR.get("vi")("choice.hint")


def t(lang: str, key: str, **params: object) -> str:
    """A message as the bot says it on Zalo (a channel variant where there is one)."""
    return TR.get(lang, "zalo")(key, **params)


async def health_book_by_typing(chat: ZaloChatDriver, born: str = "15/3/1950",
                                id_number: str = "010050001234") -> None:
    """The whole health book on Zalo: numbers where a list is offered, words elsewhere."""
    await chat.send("/start")
    assert f"1. {t('vi', 'button.agree')}" in chat.last_text
    assert chat.last_text.endswith(HINT)
    await chat.send("1")  # the consent's first option, by its number
    assert t("vi", "ask.full_name") in chat.last_text
    await chat.send("nguyễn văn an")
    await chat.send(born)
    assert t("vi", "ask.gender") in chat.last_text
    assert "1. Nam\n2. Nữ" in chat.last_text
    await chat.send("nam")  # a label, typed
    assert t("vi", "ask.id_number") in chat.last_text
    await chat.send(id_number)
    assert t("vi", "ask.phone") in chat.last_answer
    assert t("vi", "choice.type_phone") in chat.last_answer  # no contact button on Zalo
    await chat.send("0912345678")
    assert t("vi", "ask.bhyt") in chat.last_text
    await chat.send("bỏ qua")
    assert t("vi", "ask.ethnicity") in chat.last_text
    await chat.send("hmong")
    await chat.press(t("vi", "occupation.farmer"))  # its number
    await chat.press(t("vi", "priority.none"))
    assert t("vi", "ask.province", province="Lào Cai") in chat.last_answer
    await chat.send("lao cai")  # no accents
    await chat.send("sa pa")
    assert t("vi", "ask.address_line") in chat.last_text
    await chat.send("Thôn Lếch Dao")
    for _ in items_for("male"):
        assert HINT in chat.last_text
        await chat.send("ko")  # an alias of "Không"
    assert t("vi", "review.title") in chat.last_answer
    await chat.press(t("vi", "button.save"))
    assert t("vi", "saved.new") in chat.last_answer


async def test_health_book_on_zalo_by_typing(zbot: ZaloHarness) -> None:
    chat = zbot.user()
    await health_book_by_typing(chat)
    async with zbot.session() as session:
        account = await hb.find_account(session, "zalo", chat.user.id)
        assert account is not None and account.channel == "zalo"
        book = await session.scalar(select(HealthBook).where(HealthBook.account_id == account.id))
        assert book is not None and book.full_name == "Nguyễn Văn An"
        assert book.phone is not None and book.phone.endswith("912345678")
        assert await session.scalar(select(func.count()).select_from(InboxEvent)) == 0
    # no edits, no buttons, nothing but Zalo's methods; every text under 2,000 characters
    methods = {c.method for c in zbot.api.calls}
    assert methods <= {"getMe", "getUpdates", "deleteWebhook", "sendMessage", "sendPhoto"}
    assert all(len(m.get("text", "")) <= 2000 for m in chat.messages)


async def test_numbers_count_across_a_turns_messages_and_a_wrong_answer_repeats_them(
    zbot: ZaloHarness,
) -> None:
    chat = zbot.user()
    await chat.send("/start")
    await chat.send("7")  # no such option: the numbered list again
    assert "1. " in chat.last_answer and t("vi", "ask.full_name") not in chat.last_answer
    await chat.send("2")  # "I do not agree"
    assert t("vi", "ask.full_name") not in chat.last_answer


async def test_sticker_and_image_get_a_word_and_the_same_question(zbot: ZaloHarness) -> None:
    chat = zbot.user()
    await chat.send("/start")
    await chat.send("1")
    question = chat.last_text
    assert t("vi", "ask.full_name") in question
    await chat.send_sticker()
    assert t("vi", "error.input.not_text") in chat.last_answer
    assert t("vi", "ask.full_name") in chat.last_answer  # and the same question
    await chat.send_photo(caption="ảnh")
    assert t("vi", "error.input.not_text") in chat.last_answer
    assert t("vi", "ask.full_name") in chat.last_answer
    await chat.send("Lò Văn Páo")  # still the name question
    assert t("vi", "ask.date_of_birth") in chat.last_text


async def test_unsupported_message_gets_the_help_word_and_touches_nothing(
    zbot: ZaloHarness,
) -> None:
    chat = zbot.user()
    await chat.send("/start")
    await chat.send("1")
    await chat.send_unsupported()
    assert chat.last_answer == t("vi", "zalo.unsupported")
    await chat.send("Lò Văn Páo")  # the conversation is where it was
    assert t("vi", "ask.date_of_birth") in chat.last_text


async def test_ticket_qr_by_url_from_the_media_server_then_404(zsample: ZaloHarness) -> None:
    bot = zsample
    chat = bot.user()
    await health_book_by_typing(chat, born="15/3/1990", id_number="010090001234")
    await chat.send("/book")
    await chat.press("COVID-19")
    await chat.press("Sa Pa")
    await chat.send("1")  # the first day
    await chat.send("1")  # the first time
    await chat.press(t("vi", "book.button_confirm"))
    booking = await _one_booking(bot)
    photo = next(m for m in chat.messages if "photo" in m)
    assert booking.code in photo["caption"]
    url = photo["photo"]
    assert url.startswith(bot.http.url + "/media/") and len(url.rsplit("/", 1)[1]) >= 43
    fetch = photo["fetched"]  # Zalo fetched the picture from the bot's own server
    assert fetch.ok and fetch.content_type == "image/png" and fetch.size > 100
    map_text = next(x for x in chat.texts if "openstreetmap.org" in x)
    assert "mlat=" in map_text
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 200
        bot.media_clock.advance(15 * 60 + 1)  # a ticket's QR is a credential: it expires
        async with http.get(url) as resp:
            assert resp.status == 404
        async with http.get(bot.http.url + "/media/guessed-token") as resp:
            assert resp.status == 404


async def _one_booking(bot: ZaloHarness) -> Booking:
    async with bot.session() as session:
        [booking] = (await session.scalars(select(Booking))).all()
        return booking


async def test_mydata_file_is_a_download_link_that_expires(zbot: ZaloHarness) -> None:
    chat = zbot.user()
    await health_book_by_typing(chat)
    await chat.send("/mydata")
    link_text = next(x for x in chat.texts if "/media/" in x)
    assert "15" in link_text  # minutes until it expires
    url = next(w for w in link_text.split() if "/media/" in w)
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 200
            data = json.loads(await resp.read())
            assert "attachment" in resp.headers["Content-Disposition"]
        assert "Nguyễn Văn An" in json.dumps(data, ensure_ascii=False)
        zbot.media_clock.advance(16 * 60)
        async with http.get(url) as resp:
            assert resp.status == 404


def test_long_text_split_at_paragraphs_under_2000() -> None:
    paragraphs = [(f"Đoạn {i}. " + "chữ " * 120).strip() for i in range(12)]
    text = "\n\n".join(paragraphs)
    pieces = split_text(text)
    assert len(pieces) > 1 and all(0 < len(p) <= 2000 for p in pieces)
    assert all(p.startswith("Đoạn") for p in pieces)  # cut between paragraphs
    assert "\n\n".join(pieces) == text
    one_line = "x" * 4500  # no break at all: cut hard
    assert [len(p) for p in split_text(one_line)] == [2000, 2000, 500]


async def test_long_text_reaches_zalo_in_pieces(zbot: ZaloHarness) -> None:
    channel = zbot.services.channels["zalo"]
    assert isinstance(channel, ZaloChannel)
    user = ZaloUser()
    text = "\n\n".join((f"Mục {i}: " + "nội dung " * 50).strip() for i in range(10))
    await channel.send(user.id, Reply(text=text))
    sent = zbot.api.messages(user.id)
    assert len(sent) > 1 and all(len(m["text"]) <= 2000 for m in sent)
    assert "\n\n".join(m["text"] for m in sent) == text


def test_render_numbers_across_messages_with_one_hint() -> None:
    tr = Translations().get("vi")
    first = Reply(text="Giới tính?", markup=Options.of([[("Nam", "g:m"), ("Nữ", "g:f")]]))
    second = Reply(
        text="Số điện thoại?",
        markup=Keyboard.of([[KeyButton("Gửi số", "contact")], ["Không có"]]),
    )
    one, n = render(first, 0, tr, hint=False)
    two, n = render(second, n, tr, hint=True)
    assert one == "Giới tính?\n\n1. Nam\n2. Nữ"
    assert two == f"Số điện thoại?\n\n{tr('choice.type_phone')}\n3. Không có\n\n{HINT}"
    assert n == 3


async def test_rate_limit_is_waited_out(zbot: ZaloHarness) -> None:
    zbot.api.fail_next("sendMessage", 429, "Too Many Requests: retry after 0", times=2)
    chat = zbot.user()
    await chat.send("/start")
    assert chat.last_text is not None and chat.last_text.endswith(HINT)


def test_events_strictly_checked() -> None:
    user = ZaloUser()
    good = zalo_text(user, "/start now")
    update = to_update(good, 1)
    assert update is not None and update.message is not None
    assert update.message.chat.id == user.id and update.message.from_user.id == user.id
    assert update.message.chat.type == "private"
    assert update.message.entities[0].type == "bot_command"
    assert update.api_kwargs["update_key"] == good["message"]["message_id"]
    bad: list[Any] = [
        None, [], {"event_name": "message.text.received"},
        {**good, "event_name": "message.voice.received"},
        {**good, "message": {**good["message"], "message_id": 12}},
        {**good, "message": {**good["message"], "from": {"id": "a b"}}},
        {**good, "message": {**good["message"], "chat": {"id": user.id, "chat_type": "X"}}},
        {**good, "message": {**good["message"], "text": ["x"]}},
        {**good, "message": {**good["message"], "date": "yesterday"}},
    ]
    assert all(parse_event(b) is None and to_update(b, 1) is None for b in bad)
    group = {**good, "message": {**good["message"], "chat": {"id": "g1", "chat_type": "GROUP"}}}
    update = to_update(group, 2)
    assert update is not None and update.message is not None
    assert update.message.chat.type == "group"


# ------------------------------------------------------------------------ webhook and inbox


async def test_webhook_refuses_a_wrong_or_missing_secret_and_applies_a_copy_once(
    zbot: ZaloHarness,
) -> None:
    receiver = zbot.app.bot_data["zalo_receiver"]
    secret = "s3cret-of-the-webhook"
    hook = HttpServer("127.0.0.1", 0, accept=receiver.accept, secret=secret)
    await hook.start()
    try:
        user = ZaloUser()
        event = zalo_text(user, "/start")
        url = hook.url + "/zalo/webhook"
        body = {"ok": True, "result": event}
        async with aiohttp.ClientSession() as http:
            for headers in ({}, {SECRET_HEADER: "wrong-secret"}, {SECRET_HEADER: ""}):
                async with http.post(url, json=body, headers=headers) as resp:
                    assert resp.status == 403
            await zbot.idle()
            assert zbot.api.messages(user.id) == []  # nothing was processed
            async with zbot.session() as session:
                assert await session.scalar(select(func.count()).select_from(InboxEvent)) == 0
            # Zalo's own delivery, then the same event again
            await zbot.api.call("setWebhook", {"url": url, "secret_token": secret})
            first = await zbot.api.deliver(event)
            await zbot.idle()
            again = await zbot.api.redeliver(event)
            await zbot.idle()
            assert first.status == again.status == 200
        answers = zbot.api.messages(user.id)
        assert len(answers) == 2  # the welcome and the consent, once
        async with zbot.session() as session:
            handled = await session.scalar(
                select(func.count()).select_from(HandledUpdate).where(
                    HandledUpdate.channel == "zalo"
                )
            )
            assert handled == 1
            assert await session.scalar(select(func.count()).select_from(InboxEvent)) == 0
    finally:
        await hook.stop()
        await zbot.api.call("deleteWebhook", {})


async def test_inbox_replayed_after_a_crash(zapi: ZaloApiStandIn, db_url: str) -> None:
    """An event written to the inbox but never handled (the process killed in between) is
    handled at the next start; one handled already is not applied again."""
    settings = make_zalo_settings(db_url, zapi)
    clock = FakeClock()
    app, http = await start_zalo_app(settings, clock)
    user = ZaloUser()
    chat = ZaloChatDriver(zapi, user)
    await chat.send("/start")
    await stop_zalo_app(app, http)
    before = len(zapi.messages(user.id))
    # what a kill -9 after writing the inbox leaves: the event kept, not handled
    lost = zalo_text(user, "1")
    async with app.bot_data["services"].sessions() as session, session.begin():
        await inbox.put(session, "zalo", lost["message"]["message_id"], user.id, lost, clock())
    await engine_of(app).dispose()
    app, http = await start_zalo_app(settings, clock)
    try:
        for _ in range(200):
            if len(zapi.messages(user.id)) > before:
                break
            await asyncio.sleep(0.02)
        await stop_zalo_app(app, http)
        texts = [m.get("text", "") for m in zapi.messages(user.id)[before:]]
        assert any(t("vi", "ask.full_name") in x for x in texts)  # the consent was given
        async with app.bot_data["services"].sessions() as session:
            assert await session.scalar(select(func.count()).select_from(InboxEvent)) == 0
        await engine_of(app).dispose()
        # the same event left once more (a crash after its commit): a no-op at the next start
        count = len(zapi.messages(user.id))
        async with app.bot_data["services"].sessions() as session, session.begin():
            await inbox.put(session, "zalo", lost["message"]["message_id"], user.id, lost,
                            clock())
        await engine_of(app).dispose()
        app, http = await start_zalo_app(settings, clock)
        await ZaloHarness(zapi, app, clock, http, MonotonicClock()).idle()
        async with app.bot_data["services"].sessions() as session:  # replayed, and cleared
            assert await session.scalar(select(func.count()).select_from(InboxEvent)) == 0
        assert len(zapi.messages(user.id)) == count  # but not applied again
    finally:
        await stop_zalo_app(app, http)


async def test_erasing_a_zalo_account_leaves_a_telegram_account_with_the_same_id(
    zbot: ZaloHarness,
) -> None:
    same = "1234567890"
    chat = zbot.user(same)
    await health_book_by_typing(chat)
    async with zbot.session() as session, session.begin():
        telegram = await hb.ensure_account(session, "telegram", same, "vi")
        telegram_id = telegram.id
        pending = zalo_text(chat.user, "later")  # an event of theirs still in the inbox
        await inbox.put(session, "zalo", pending["message"]["message_id"], same, pending,
                        zbot.clock())
        other = zalo_text(ZaloUser(), "someone else")
        await inbox.put(session, "zalo", other["message"]["message_id"],
                        other["message"]["chat"]["id"], other, zbot.clock())
    async with zbot.session() as session, session.begin():
        zalo = await hb.find_account(session, "zalo", same)
        assert zalo is not None
        await hb.erase_account(session, zalo)
    async with zbot.session() as session:
        assert await hb.find_account(session, "zalo", same) is None
        kept = await session.get(Account, telegram_id)
        assert kept is not None and kept.channel == "telegram" and kept.external_id == same
        keys = set(await session.scalars(select(InboxEvent.update_key)))
        assert keys == {other["message"]["message_id"]}


async def test_delete_on_zalo_erases_the_account(zbot: ZaloHarness) -> None:
    chat = zbot.user()
    await health_book_by_typing(chat)
    await chat.send("/delete")
    assert HINT in chat.last_text
    await chat.press(chat.buttons[0])
    async with zbot.session() as session:
        assert await hb.find_account(session, "zalo", chat.user.id) is None
        assert await session.scalar(select(func.count()).select_from(InboxEvent)) == 0


def test_webhook_settings_need_secret_and_public_url() -> None:
    from bot.settings import ConfigError, load_settings

    with pytest.raises(ConfigError) as err:
        load_settings(None, zalo={"token": "1:abc", "mode": "webhook"})
    assert "zalo.webhook_secret" in str(err.value) and "http.public_url" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_settings(None, zalo={"token": "1:abc", "webhook_secret": "short"})
    assert "zalo.webhook_secret" in str(err.value) and "short" not in str(err.value)
    ok = load_settings(
        None,
        zalo={"token": "1:abc", "mode": "webhook", "webhook_secret": "long-enough"},
        http={"public_url": "https://bot.example.vn/"},
    )
    assert ok.http.public_url == "https://bot.example.vn" and ok.http.port == 8080
    assert "1:abc" not in repr(ok) and "long-enough" not in repr(ok)



async def test_run_serves_telegram_and_zalo_webhook_in_one_process(
    api: BotApiStandIn, zapi: ZaloApiStandIn, db_url: str
) -> None:
    """``healthbook run`` with both tokens: one database, Telegram polling, Zalo by webhook
    (set at start on the bot's own server, which also serves the pictures); stops cleanly."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = load_settings(
        None,
        telegram={"token": TOKEN, "base_url": api.base_url, "base_file_url": api.base_file_url,
                  "poll_timeout": 1},
        zalo={"token": zapi.token, "base_url": zapi.url, "mode": "webhook",
              "webhook_secret": "a-secret-for-zalo"},
        http={"listen": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}"},
        database={"url": db_url},
    )
    served = serve.build(settings)
    assert served.telegram is not None and served.zalo is not None
    assert served.telegram.bot_data["services"].sessions is served.zalo.bot_data[
        "services"].sessions
    await prepare_database(served.zalo)
    stop = asyncio.Event()
    task = asyncio.create_task(serve.serve_async(served, settings, stop))
    try:
        for _ in range(200):
            if zapi.webhook_url and served.telegram.running and served.zalo.running:
                break
            await asyncio.sleep(0.02)
        assert zapi.webhook_url == f"http://127.0.0.1:{port}/zalo/webhook"
        on_zalo = ZaloChatDriver(zapi)
        await on_zalo.send("/start")  # POSTed to the webhook by the stand-in
        assert on_zalo.last_text is not None and on_zalo.last_text.endswith(HINT)
        on_telegram = ChatDriver(api, TgUser(id=777001, first_name="An", language_code="vi"))
        await on_telegram.send("/start")
        assert TR.get("vi")("button.agree") in on_telegram.buttons
        assert all(d.status == 200 for d in zapi.deliveries)
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 20) == 0
    assert not served.zalo.running and not served.telegram.running
    async with aiohttp.ClientSession() as http:  # the web server is down
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(f"http://127.0.0.1:{port}/media/x")


async def test_zalo_token_in_no_log_and_no_repr(
    zapi: ZaloApiStandIn, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = make_zalo_settings(db_url, zapi)
    zapi.fail_next("getUpdates", 500, times=1)  # a failed poll is logged
    app, http = await start_zalo_app(settings, FakeClock())
    try:
        chat = ZaloChatDriver(zapi)
        await chat.send("/start")
        await chat.send("1")
    finally:
        await stop_zalo_app(app, http)
    secret = zapi.token.split(":", 1)[1]
    shown = [caplog.text, repr(app), repr(app.bot), repr(app.bot_data["zalo_api"]),
             repr(app.bot_data["services"].channels), repr(settings)]
    assert all(secret not in text for text in shown)


async def test_a_refused_notification_is_a_delivery_error_without_personal_data(
    zbot: ZaloHarness,
) -> None:
    channel = zbot.services.channels["zalo"]
    user = ZaloUser()
    zbot.api.fail_next("sendMessage", 403, times=1)
    with pytest.raises(DeliveryError) as err:
        await channel.send(user.id, Reply(text="Nguyễn Văn An: lịch hẹn của bạn"))
    assert user.id not in str(err.value) and "Nguyễn" not in str(err.value)
    with pytest.raises(DeliveryError):
        await channel.send("not a zalo id!", Reply(text="x"))
    # a notice's choices numbered from 1, with the hint
    offer = Reply(text="Có chỗ trống", markup=Options.of([[("Nhận", "wl:take:1")]]))
    await channel.send(user.id, offer)
    assert zbot.api.messages(user.id)[-1]["text"] == f"Có chỗ trống\n\n1. Nhận\n\n{HINT}"


async def test_a_zalo_group_gets_the_private_only_word_and_nothing_else(zbot: ZaloHarness) -> None:
    user = ZaloUser()
    event = zalo_text(user, "/start")
    event["message"]["chat"] = {"id": "group0000000000000001", "chat_type": "GROUP"}
    await ZaloChatDriver(zbot.api, user).push(event, expect_reply=False)
    [said] = zbot.api.messages("group0000000000000001")
    assert said["text"] == t("vi", "group.private_only")  # no button to press on Zalo
    assert zbot.api.messages(user.id) == []
    async with zbot.session() as session:
        assert await hb.find_account(session, "zalo", user.id) is None


async def test_many_people_at_once_each_answered_in_order(zbot: ZaloHarness) -> None:
    """Events fetched while others are being kept are kept together, in Zalo's order."""
    people = [ZaloUser() for _ in range(20)]
    for person in people:
        zbot.api.push_event(zalo_text(person, "/start"))
        zbot.api.push_event(zalo_text(person, "1"))
    for _ in range(500):
        if all(len(zbot.api.messages(p.id)) >= 4 for p in people):
            break
        await asyncio.sleep(0.02)
    await zbot.idle()
    for person in people:
        texts = [m["text"] for m in zbot.api.messages(person.id)]
        assert texts[1].endswith(HINT) and t("vi", "ask.full_name") in texts[-1], texts
    async with zbot.session() as session:
        assert await session.scalar(select(func.count()).select_from(InboxEvent)) == 0


async def test_a_batch_the_inbox_refuses_is_kept_event_by_event(
    zbot: ZaloHarness, caplog: pytest.LogCaptureFixture
) -> None:
    """One event the database cannot take must not cost the others of its batch."""
    from bot.channels.zalo import ZaloPoller

    poller = ZaloPoller(zbot.app, api=None)  # type: ignore[arg-type]  # writing only
    kept: list[object] = []

    class Receiver:
        async def accept_many(self, events: list[object]) -> None:
            if any(e == "bad" for e in events):
                raise RuntimeError("refused")
            kept.extend(events)

    poller.receiver = Receiver()  # type: ignore[assignment]
    poller._fetched.put_nowait("a")
    poller._fetched.put_nowait("bad")
    poller._fetched.put_nowait("b")
    poller._fetched.put_nowait(poller_stop())
    with caplog.at_level(logging.ERROR, logger="bot.channels.zalo"):
        await poller._write_loop()
    assert kept == ["a", "b"]
    assert [r.getMessage() for r in caplog.records] == [
        "a Zalo event could not be kept, so it was not handled: RuntimeError"
    ]


def poller_stop() -> object:
    from bot.channels import zalo

    return zalo._STOP
