"""The Zalo Bot API stand-in and its chat driver, driven over HTTP and by a tiny polling bot."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.channels.zalo_api import ZaloApi
from bot.standin import StandInTimeoutError
from bot.standin.zalo import (
    WEBHOOK_SECRET_HEADER,
    ZaloApiStandIn,
    ZaloChatDriver,
    ZaloUser,
    numbered_options,
    zalo_image,
    zalo_sticker,
    zalo_text,
    zalo_unsupported,
)

TOKEN = "12345689:abc-xyz"
HEX20 = re.compile(r"^[0-9a-f]{20}$")
AN = ZaloUser("6ede9afa66b88fe6d6a9", "An")


@pytest.fixture
async def zapi() -> AsyncIterator[ZaloApiStandIn]:
    async with ZaloApiStandIn(TOKEN) as api:
        yield api


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _post(
    http: aiohttp.ClientSession, api: ZaloApiStandIn, method: str, token: str = TOKEN, **kw: Any
) -> tuple[int, dict[str, Any]]:
    async with http.post(f"{api.url}/bot{token}/{method}", **kw) as r:
        return r.status, await r.json()


# ------------------------------------------------------------------ the API over HTTP


async def test_get_me_any_encoding_and_wrong_token(
    zapi: ZaloApiStandIn, http: aiohttp.ClientSession
) -> None:
    status, body = await _post(http, zapi, "getMe", json={})
    assert status == 200
    assert body == {
        "ok": True,
        "result": {
            "id": "1459232241454765289",
            "account_name": "bot.HealthBook",
            "account_type": "BASIC",
            "can_join_groups": False,
        },
    }
    async with http.get(f"{zapi.url}/bot{TOKEN}/getMe") as r:
        assert (await r.json())["ok"] is True
    status, body = await _post(http, zapi, "getMe", token="12345689:wrong")
    assert (status, body) == (401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
    status, body = await _post(http, zapi, "getme", json={})  # method names are case-sensitive
    assert (status, body["error_code"]) == (404, 404)
    status, body = await _post(
        http, zapi, "getMe", data=b"[1", headers={"Content-Type": "application/json"}
    )
    assert (status, body["ok"]) == (400, False)
    assert [c.method for c in zapi.calls] == ["getMe", "getMe", "getMe", "getme"]
    assert [c.ok for c in zapi.calls] == [True, True, False, False]


async def test_send_message_limits_and_records_per_chat(
    zapi: ZaloApiStandIn, http: aiohttp.ClientSession
) -> None:
    status, body = await _post(http, zapi, "sendMessage", json={"chat_id": AN.id, "text": "Chào"})
    assert status == 200
    assert HEX20.match(body["result"]["message_id"])
    assert body["result"]["date"] > 1_700_000_000_000  # milliseconds
    # a form and a query string work too
    await _post(http, zapi, "sendMessage", data={"chat_id": AN.id, "text": "x" * 2000})
    await _post(http, zapi, "sendMessage", params={"chat_id": AN.id, "text": "q"})
    for bad in ({"chat_id": AN.id, "text": "x" * 2001}, {"chat_id": AN.id, "text": ""},
                {"chat_id": 42, "text": "int id"}, {"text": "no chat"}):  # fmt: skip
        status, body = await _post(http, zapi, "sendMessage", json=bad)
        assert (status, body["ok"], body["error_code"]) == (400, False, 400), bad
    assert [m["text"] for m in zapi.messages(AN.id)] == ["Chào", "x" * 2000, "q"]
    calls = zapi.chat_calls(AN.id)
    assert [c.ok for c in calls] == [True, True, True, False, False]
    assert calls[3].error is not None and "2000" in calls[3].error["description"]
    assert calls[0].params == {"chat_id": AN.id, "text": "Chào"}
    assert calls[1].chat_id == AN.id
    status, body = await _post(
        http, zapi, "sendChatAction", json={"chat_id": AN.id, "action": "typing"}
    )
    assert (status, body) == (200, {"ok": True})
    status, body = await _post(http, zapi, "sendSticker", json={"chat_id": AN.id, "sticker": "s1"})
    assert zapi.messages(AN.id)[-1]["sticker"] == "s1"


async def test_get_updates_one_event_per_call_and_408(
    zapi: ZaloApiStandIn, http: aiohttp.ClientSession
) -> None:
    first, second = zalo_text(AN, "một"), zalo_text(AN, "hai")
    zapi.push_event(first)
    zapi.push_event(second)
    assert not zapi.taken(first["message"]["message_id"])
    _, body = await _post(http, zapi, "getUpdates", json={"timeout": 1})
    assert body == {"ok": True, "result": first}
    assert zapi.taken(first["message"]["message_id"])
    assert not zapi.taken(second["message"]["message_id"])
    _, body = await _post(http, zapi, "getUpdates", json={"timeout": "1"})
    assert body["result"]["message"]["text"] == "hai"
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, body = await _post(http, zapi, "getUpdates", json={"timeout": 0.2})
    assert loop.time() - started >= 0.19
    assert (status, body) == (
        408,
        {"ok": False, "error_code": 408, "description": "Request timeout"},
    )
    # a long poll is answered as soon as an event arrives
    poll = asyncio.create_task(_post(http, zapi, "getUpdates", json={"timeout": 5}))
    await asyncio.sleep(0.05)
    third = zalo_sticker(AN)
    zapi.push_event(third)
    _, body = await asyncio.wait_for(poll, 2)
    assert body["result"] == third


async def test_fail_next_injects_errors(zapi: ZaloApiStandIn, http: aiohttp.ClientSession) -> None:
    zapi.fail_next("sendMessage", 429, times=2)
    for _ in range(2):
        status, body = await _post(http, zapi, "sendMessage", json={"chat_id": AN.id, "text": "a"})
        assert (status, body["description"]) == (429, "Quota exceeded")
    status, _ = await _post(http, zapi, "sendMessage", json={"chat_id": AN.id, "text": "a"})
    assert status == 200
    assert [c.ok for c in zapi.chat_calls(AN.id)] == [False, False, True]
    assert zapi.stats()["errors"] == 2


@pytest.fixture
async def site() -> AsyncIterator[str]:
    """A local web server with a PNG, a page and a missing file."""

    async def png(request: web.Request) -> web.Response:
        return web.Response(body=b"\x89PNG\r\n\x1a\n" + b"0" * 92, content_type="image/png")

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html></html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/qr.png", png)
    app.router.add_get("/page", page)
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_send_photo_fetches_the_url(
    zapi: ZaloApiStandIn, http: aiohttp.ClientSession, site: str
) -> None:
    status, body = await _post(
        http, zapi, "sendPhoto", json={"chat_id": AN.id, "photo": f"{site}/qr.png", "caption": "Vé"}
    )
    assert status == 200 and HEX20.match(body["result"]["message_id"])
    msg = zapi.messages(AN.id)[-1]
    assert (msg["photo"], msg["caption"]) == (f"{site}/qr.png", "Vé")
    fetch = msg["fetched"]
    assert (fetch.status, fetch.content_type, fetch.size, fetch.ok) == (200, "image/png", 100, True)
    for url, error in [
        (f"{site}/gone.png", "HTTP 404"),
        (f"{site}/page", "not an image (text/html)"),
        ("http://203.0.113.5/x.png", "RuntimeError"),  # outside loopback: the guard refuses
        ("file:///etc/passwd", "http(s) URL"),
    ]:
        status, body = await _post(http, zapi, "sendPhoto", json={"chat_id": AN.id, "photo": url})
        assert status == 400 and error in body["description"], (url, body)
    assert [f.status for f in zapi.fetches] == [200, 404, 200, None]
    assert len(zapi.messages(AN.id)) == 1


async def test_webhook_delivery_secret_and_redelivery(
    zapi: ZaloApiStandIn, http: aiohttp.ClientSession
) -> None:
    received: list[tuple[str | None, dict[str, Any]]] = []
    answer = [200]

    async def hook(request: web.Request) -> web.Response:
        received.append((request.headers.get(WEBHOOK_SECRET_HEADER), await request.json()))
        return web.json_response({"message": "Success"}, status=answer[0])

    app = web.Application()
    app.router.add_post("/zalo", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    url = f"http://127.0.0.1:{tcp._server.sockets[0].getsockname()[1]}/zalo"  # type: ignore[union-attr]
    try:
        for bad in ({"url": url, "secret_token": "short"}, {"url": "http://example.org/h",
                    "secret_token": "s" * 8}, {"url": url, "secret_token": "s" * 257}):  # fmt: skip
            status, _ = await _post(http, zapi, "setWebhook", json=bad)
            assert status == 400, bad
        status, body = await _post(
            http, zapi, "setWebhook", json={"url": url, "secret_token": "hemmelig-1"}
        )
        assert body["result"]["url"] == url and body["result"]["updated_at"] > 0
        _, info = await _post(http, zapi, "getWebhookInfo")
        assert info["result"]["url"] == url
        status, body = await _post(http, zapi, "getUpdates", json={"timeout": 0})
        assert status == 400 and "webhook" in body["description"]

        event = zalo_text(AN, "Xin chào")
        mid = zapi.push_event(event)
        for _ in range(200):
            if zapi.taken(mid):
                break
            await asyncio.sleep(0.01)
        assert received == [("hemmelig-1", {"ok": True, "result": event})]
        answer[0] = 500
        delivery = await zapi.redeliver(event)
        assert (delivery.message_id, delivery.status) == (mid, 500)
        assert [d.status for d in zapi.deliveries] == [200, 500]
        assert received[1] == received[0]

        _, body = await _post(http, zapi, "deleteWebhook")
        assert body["result"]["url"] == ""
        zapi.push_event(zalo_text(AN, "poll again"))
        _, body = await _post(http, zapi, "getUpdates", json={"timeout": 1})
        assert body["result"]["message"]["text"] == "poll again"
    finally:
        await runner.cleanup()


async def test_a_webhook_nobody_answers(zapi: ZaloApiStandIn) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    call = await zapi.call(
        "setWebhook", {"url": f"http://127.0.0.1:{port}/z", "secret_token": "x" * 8}
    )
    assert call.ok
    event = zalo_text(AN, "lost")
    delivery = await zapi.deliver(event)
    assert delivery.status is None and delivery.error
    assert not zapi.taken(event["message"]["message_id"])


async def test_event_factories() -> None:
    user = ZaloUser()
    assert HEX20.match(user.id)
    text = zalo_text(user, "Xin chào")
    msg = text["message"]
    assert text["event_name"] == "message.text.received"
    assert msg["from"] == {"id": user.id, "display_name": "Người dùng", "is_bot": False}
    assert msg["chat"] == {"id": user.id, "chat_type": "PRIVATE"}
    assert HEX20.match(msg["message_id"]) and msg["date"] > 1_700_000_000_000
    assert zalo_text(user, "x")["message"]["message_id"] != msg["message_id"]
    image = zalo_image(user, "https://example.org/a.jpg", "ảnh")["message"]
    assert (image["photo"], image["caption"]) == ("https://example.org/a.jpg", "ảnh")
    assert "caption" not in zalo_image(user, "https://example.org/a.jpg")["message"]
    sticker = zalo_sticker(user)
    assert sticker["event_name"] == "message.sticker.received"
    assert sticker["message"]["sticker"] and sticker["message"]["url"].startswith("https://")
    unsupported = zalo_unsupported(user)
    assert unsupported["event_name"] == "message.unsupported.received"
    assert not {"text", "photo", "sticker"} & unsupported["message"].keys()


def test_numbered_options() -> None:
    texts = ["Giới tính?\n\n1. Nam\n2. Nữ", "3. Khác\n\nTrả lời bằng số", "10 người. Không"]
    assert numbered_options(texts) == [("1", "Nam"), ("2", "Nữ"), ("3", "Khác")]


# ------------------------------------------------------------------ the driver and a tiny bot


class EchoBot:
    """A Zalo bot in a few lines: asks a numbered question, answers the choice, echoes the rest."""

    def __init__(self, api: ZaloApiStandIn) -> None:
        self.client = ZaloApi(TOKEN, base_url=api.url)
        self.done = asyncio.Event()
        self.done.set()
        self.task: asyncio.Task[None] | None = None

    async def idle(self) -> None:
        await self.done.wait()

    async def run(self) -> None:
        while True:
            event = await self.client.get_updates(timeout=5)
            if event is None:
                continue
            self.done.clear()
            try:
                await self.handle(event)
            finally:
                self.done.set()

    async def handle(self, event: dict[str, Any]) -> None:
        msg = event["message"]
        chat, text = msg["chat"]["id"], msg.get("text")
        say = self.client.send_message
        if event["event_name"] == "message.unsupported.received":
            await say(chat, "Người thân có thể giúp bạn.")
        elif event["event_name"] == "message.image.received":
            await say(chat, f"Ảnh: {msg.get('caption')}")
        elif text == "/start":
            await self.client.send_chat_action(chat, "typing")
            await say(chat, "Giới tính?\n\n1. Nam\n2. Nữ")
            await say(chat, "3. Không muốn nói\n\nTrả lời bằng số hoặc gõ câu trả lời")
        elif text in ("1", "2", "3"):
            await say(chat, f"Đã chọn {text}")
        elif text == "silent":
            await asyncio.sleep(0.05)
        else:
            await say(chat, f"Bạn nói: {text}")


@pytest.fixture
async def echo(zapi: ZaloApiStandIn) -> AsyncIterator[EchoBot]:
    bot = EchoBot(zapi)
    bot.task = asyncio.create_task(bot.run())
    yield bot
    bot.task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await bot.task
    await bot.client.close()


async def test_driver_press_types_the_number(zapi: ZaloApiStandIn, echo: EchoBot) -> None:
    an = ZaloChatDriver(zapi, AN, idle=echo.idle, strict=True)
    assert an.chat_id == AN.id
    calls = await an.send("/start")
    assert [c.method for c in calls] == ["sendChatAction", "sendMessage", "sendMessage"]
    assert an.buttons == ["Nam", "Nữ", "Không muốn nói"]
    assert an.last_text == "3. Không muốn nói\n\nTrả lời bằng số hoặc gõ câu trả lời"
    assert an.last_answer == (
        "Giới tính?\n\n1. Nam\n2. Nữ\n3. Không muốn nói\n\nTrả lời bằng số hoặc gõ câu trả lời"
    )
    await an.press("Nữ")  # exact label
    assert an.last_text == "Đã chọn 2"
    await an.press("muốn")  # the one label containing it, case ignored
    assert an.last_answer == "Đã chọn 3"
    await an.press("1")  # a number is what people type
    assert an.last_text == "Đã chọn 1"
    with pytest.raises(AssertionError, match="several buttons"):
        await an.press("N")
    with pytest.raises(AssertionError, match=r"no button matches 'Khác'; available: 1\. Nam"):
        await an.press("Khác")
    await an.press_data("forged:1")  # no callbacks on Zalo: the text is typed
    assert an.last_text == "Bạn nói: forged:1"
    assert (an.reply_keyboard, an.reply_buttons, an.callback_answers, an.errors) == ([], [], [], [])


async def test_driver_contact_location_media_and_silence(
    zapi: ZaloApiStandIn, echo: EchoBot
) -> None:
    an = ZaloChatDriver(zapi, ZaloUser(), idle=echo.idle)
    await an.share_contact("+84 912 345 678")
    assert an.last_text == "Bạn nói: 0912345678"
    await an.share_contact("84912345678", user_id=1)
    assert an.last_text == "Bạn nói: 0912345678"
    with pytest.raises(AssertionError, match="Zalo has no location sharing"):
        await an.send_location(22.48, 103.97)
    await ZaloChatDriver(zapi, an.user, idle=echo.idle, location_as_text=True).send_location(1, 2)
    assert an.last_text == "Bạn nói: 1, 2"
    await an.send_unsupported()
    assert an.last_text == "Người thân có thể giúp bạn."
    await an.send_photo(caption="giấy")
    assert an.last_text == "Ảnh: giấy"
    await an.send_sticker()
    assert an.last_text == "Bạn nói: None"
    before = len(an.messages)
    assert await an.send("silent", expect_reply=False) == []
    assert len(an.messages) == before
    assert an.last_answer is None
    assert an.buttons == []
    with pytest.raises(StandInTimeoutError, match="did not answer"):
        await an.send("silent", timeout=0.2)


async def test_driver_without_idle_waits_for_quiet(zapi: ZaloApiStandIn, echo: EchoBot) -> None:
    an = ZaloChatDriver(zapi, ZaloUser(), settle=0.1)
    await an.send("/start")
    assert len(an.texts) == 2
    calls = await zapi.wait_chat(an.chat_id, after_seq=0, timeout=1)
    assert [c.method for c in calls if c.ok][:2] == ["sendChatAction", "sendMessage"]


async def test_cli_runs_standalone(http: aiohttp.ClientSession) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.standin.zalo", "--port", "0", "--token", TOKEN,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
        assert url.startswith("http://127.0.0.1:")
        async with http.post(f"{url}/bot{TOKEN}/getMe", json={}) as r:
            assert (await r.json())["result"]["account_type"] == "BASIC"
    finally:
        proc.terminate()
        _, err = await proc.communicate()
    assert proc.returncode == 0, err
    assert b"Warning" not in err
