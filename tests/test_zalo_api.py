"""The bot's Zalo API client, against the Zalo stand-in and a few misbehaving servers."""

from __future__ import annotations

import asyncio
import logging
import socket
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.channels import zalo_api
from bot.channels.zalo_api import ZaloApi, ZaloError, ZaloNetworkError, ZaloRateLimited
from bot.standin.zalo import ZaloApiStandIn, ZaloUser, zalo_image, zalo_text

TOKEN = "12345689:abc-xyz"
AN = ZaloUser("6ede9afa66b88fe6d6a9", "An")


@pytest.fixture
async def zapi() -> AsyncIterator[ZaloApiStandIn]:
    async with ZaloApiStandIn(TOKEN) as api:
        yield api


@pytest.fixture
async def client(zapi: ZaloApiStandIn) -> AsyncIterator[ZaloApi]:
    async with ZaloApi(TOKEN, base_url=zapi.url) as api:
        yield api


def _no_token(exc: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    """The token is in no form of the error: str, repr, args, traceback, log lines."""
    shown = [str(exc), repr(exc), repr(exc.args), "".join(traceback.format_exception(exc))]
    shown += [r.getMessage() for r in caplog.records]
    for text in shown:
        assert TOKEN not in text and "abc-xyz" not in text, text


async def test_calls_and_results(zapi: ZaloApiStandIn, client: ZaloApi) -> None:
    me = await client.get_me()
    assert me["account_type"] == "BASIC" and isinstance(me["id"], str)
    sent = await client.send_message(AN.id, "Xin chào")
    assert len(sent["message_id"]) == 20 and sent["date"] > 1_700_000_000_000
    await client.send_chat_action(AN.id)
    await client.send_sticker(AN.id, "0e078a2fb66a5f34067b")
    assert [(c.method, c.params) for c in zapi.chat_calls(AN.id)] == [
        ("sendMessage", {"chat_id": AN.id, "text": "Xin chào"}),
        ("sendChatAction", {"chat_id": AN.id, "action": "typing"}),
        ("sendSticker", {"chat_id": AN.id, "sticker": "0e078a2fb66a5f34067b"}),
    ]
    assert "abc-xyz" not in repr(client) and zapi.url in repr(client)


async def test_text_over_2000_characters_is_refused(zapi: ZaloApiStandIn, client: ZaloApi) -> None:
    await client.send_message(AN.id, "ệ" * 2000)
    with pytest.raises(ZaloError) as caught:
        await client.send_message(AN.id, "ệ" * 2001)
    assert caught.value.code == 400 and "2000" in caught.value.description
    assert not isinstance(caught.value, ZaloRateLimited | ZaloNetworkError)
    assert [len(m["text"]) for m in zapi.messages(AN.id)] == [2000]


async def test_get_updates_one_event_per_call_and_none_on_408(
    zapi: ZaloApiStandIn, client: ZaloApi
) -> None:
    first, second = zalo_text(AN, "một"), zalo_image(AN, "https://example.org/a.jpg", "hai")
    zapi.push_event(first)
    zapi.push_event(second)
    assert await client.get_updates(timeout=1) == first
    assert await client.get_updates(timeout=1) == second
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await client.get_updates(timeout=1) is None
    assert loop.time() - started >= 0.95
    polls = [c for c in zapi.calls if c.method == "getUpdates"]
    assert [c.params for c in polls] == [{"timeout": "1"}] * 3
    assert [c.error and c.error["error_code"] for c in polls] == [None, None, 408]


async def test_webhook_set_refuses_get_updates(zapi: ZaloApiStandIn, client: ZaloApi) -> None:
    hook = "http://127.0.0.1:9/zalo"
    with pytest.raises(ZaloError, match="secret_token"):
        await client.set_webhook(hook, "short")
    assert (await client.set_webhook(hook, "a-long-secret"))["url"] == hook
    assert (await client.get_webhook_info())["url"] == hook
    with pytest.raises(ZaloError, match="webhook") as caught:
        await client.get_updates(timeout=0)
    assert caught.value.code == 400
    assert (await client.delete_webhook())["url"] == ""
    assert (await client.get_webhook_info())["url"] == ""
    assert await client.get_updates(timeout=0) is None


async def test_wrong_token_never_shows_the_token(
    zapi: ZaloApiStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with ZaloApi("99999:abc-xyz", base_url=zapi.url) as wrong:
        with pytest.raises(ZaloError) as caught:
            await wrong.get_me()
    assert (caught.value.code, caught.value.description) == (401, "Unauthorized")
    _no_token(caught.value, caplog)
    with pytest.raises(ValueError, match="a colon") as bad:
        ZaloApi("12345689 SECRETPART")
    assert "SECRETPART" not in str(bad.value)


async def test_rate_limits(zapi: ZaloApiStandIn, client: ZaloApi) -> None:
    zapi.fail_next("sendMessage", 429)
    with pytest.raises(ZaloRateLimited) as caught:
        await client.send_message(AN.id, "a")
    assert (caught.value.code, caught.value.retry_after) == (429, 60.0)  # a spent quota
    zapi.fail_next("sendMessage", 429, "Too Many Requests: retry after 7")
    with pytest.raises(ZaloRateLimited) as caught:
        await client.send_message(AN.id, "a")
    assert caught.value.retry_after == 7.0
    zapi.fail_next("sendMessage", 429, "Too Many Requests")
    with pytest.raises(ZaloRateLimited) as caught:
        await client.send_message(AN.id, "a")
    assert caught.value.retry_after == 2.0
    assert (await client.send_message(AN.id, "a"))["message_id"]


async def test_send_photo_is_fetched(zapi: ZaloApiStandIn, client: ZaloApi) -> None:
    url = zapi.photo_url()  # a PNG on a local server, as the bot's own image URLs will be
    await client.send_photo(AN.id, url, caption="Vé của bạn")
    fetch = zapi.fetches[-1]
    assert (fetch.url, fetch.status, fetch.content_type, fetch.ok) == (url, 200, "image/png", True)
    assert fetch.size > 60
    assert zapi.messages(AN.id)[-1]["caption"] == "Vé của bạn"
    with pytest.raises(ZaloError, match="HTTP 404"):
        await client.send_photo(AN.id, f"{zapi.url}/expired/qr.png")
    assert len(zapi.messages(AN.id)) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_network_errors_never_show_the_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with ZaloApi(TOKEN, base_url=f"http://127.0.0.1:{_free_port()}") as api:
        with pytest.raises(ZaloNetworkError) as caught:
            await api.send_message(AN.id, "a")
    assert caught.value.code == 0
    assert caught.value.__context__ is None and caught.value.__cause__ is None
    _no_token(caught.value, caplog)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _serve(handler: Handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, shutdown_timeout=0.1)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]


async def test_answers_that_are_not_json(caplog: pytest.LogCaptureFixture) -> None:
    async def gateway(request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>Bad Gateway</html>", content_type="text/html")

    runner, url = await _serve(gateway)
    try:
        async with ZaloApi(TOKEN, base_url=url) as api:
            with pytest.raises(ZaloNetworkError, match="HTTP 502") as caught:
                await api.get_me()
        _no_token(caught.value, caplog)
    finally:
        await runner.cleanup()


async def test_get_updates_read_timeout_is_poll_plus_grace(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[dict[str, Any]] = []

    async def hang(request: web.Request) -> web.Response:
        seen.append(await request.json())
        await asyncio.sleep(5)
        return web.json_response({"ok": True, "result": {}})

    monkeypatch.setattr(zalo_api, "_POLL_GRACE", 0.3)
    runner, url = await _serve(hang)
    try:
        async with ZaloApi(TOKEN, base_url=url) as api:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(ZaloNetworkError, match="timed out") as caught:
                await api.get_updates(timeout=0)
            assert 0.25 <= loop.time() - started < 3
        assert seen == [{"timeout": "0"}]
        _no_token(caught.value, caplog)
    finally:
        await runner.cleanup()


async def test_a_given_session_stays_open(zapi: ZaloApiStandIn) -> None:
    async with aiohttp.ClientSession() as session:
        api = ZaloApi(TOKEN, base_url=zapi.url + "/", session=session)
        assert (await api.get_me())["account_type"] == "BASIC"
        await api.close()
        assert not session.closed
        assert (await api.get_me())["account_type"] == "BASIC"
