"""The bot's web server: media links belong to the chat they were sent to (a few per chat,
dropped by /delete), and the webhook refuses JSON it cannot parse, however deeply nested."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest

from bot.http import SECRET_HEADER, HttpServer, MediaStore
from models import healthbook as hb
from models.campaigns import sample_book
from tests.conftest import MonotonicClock, ZaloHarness
from tests.flows import TR


def t(key: str, **params: object) -> str:
    """A message as the bot says it on Zalo, in Vietnamese."""
    return TR.get("vi", "zalo")(key, **params)


def _token(url: str) -> str:
    return url.rsplit("/", 1)[1]


def _consistent(store: MediaStore) -> None:
    items = store._items
    assert store._bytes == sum(len(m.data) for m in items.values())
    owned = [token for tokens in store._owned.values() for token in tokens]
    assert sorted(owned) == sorted(k for k, m in items.items() if m.owner is not None)


def test_each_chat_keeps_its_newest_items_and_loses_them_on_drop() -> None:
    clock = MonotonicClock()
    store = MediaStore("http://bot", ttl=60, per_owner=3, clock=clock)
    mine, theirs = ("zalo", "111"), ("zalo", "222")
    their_url = store.put(b"qr", "image/png", owner=theirs)
    urls = [store.put(bytes([n]), "image/png", owner=mine) for n in range(5)]
    # one chat asking again and again pushes out only its own oldest
    assert [store.get(_token(u)) is not None for u in urls] == [False, False, True, True, True]
    assert store.get(_token(their_url)) is not None
    _consistent(store)
    assert store.drop(mine) == 3
    assert all(store.get(_token(u)) is None for u in urls)
    assert store.get(_token(their_url)) is not None and len(store) == 1
    assert store.drop(mine) == 0
    _consistent(store)
    clock.advance(61)  # expired: gone from the owner's list too
    assert store.get(_token(their_url)) is None
    assert store._owned == {} and store._bytes == 0


def test_the_store_bounds_stay_with_owners() -> None:
    store = MediaStore("http://bot", max_items=3, max_bytes=10, per_owner=5)
    first = store.put(b"aaaa", "image/png", owner=("zalo", "1"))
    store.put(b"bbbb", "image/png")  # no owner: bounded by the store's limits alone
    store.put(b"cccc", "image/png", owner=("zalo", "2"))  # 12 bytes: the oldest goes
    assert store.get(_token(first)) is None and len(store) == 2
    _consistent(store)
    for n in range(4):
        store.put(b"d", "image/png", owner=("zalo", str(n)))
    assert len(store) == 3
    _consistent(store)


async def test_webhook_refuses_json_nested_too_deep_in_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    accepted: list[Any] = []

    async def accept(event: Any) -> bool:
        accepted.append(event)
        return True

    secret = "s3cret-of-the-webhook"
    hook = HttpServer("127.0.0.1", 0, accept=accept, secret=secret)
    await hook.start()
    try:
        caplog.clear()
        with caplog.at_level(logging.DEBUG):
            async with aiohttp.ClientSession() as http:
                body = "[" * 100_000 + "]" * 100_000
                headers = {SECRET_HEADER: secret, "Content-Type": "application/json"}
                async with http.post(hook.url + "/zalo/webhook", data=body, headers=headers) as r:
                    assert r.status == 400
                    assert await r.json() == {"ok": False}
                async with http.post(  # and the server still answers
                    hook.url + "/zalo/webhook", json={"ok": True, "result": {}}, headers=headers
                ) as r:
                    assert r.status == 200
        ours = [r for r in caplog.records if r.name == "bot.http"]
        assert [r.getMessage() for r in ours] == [
            "a webhook body that is not usable JSON was refused: RecursionError"
        ]
        assert not any(r.exc_info for r in caplog.records)  # no traceback anywhere
        assert accepted == [{}]
    finally:
        await hook.stop()


async def test_after_delete_a_chats_links_are_404_and_others_stay(zbot: ZaloHarness) -> None:
    async def with_book(chat_id: str) -> None:
        async with zbot.session() as s, s.begin():
            account = await hb.ensure_account(s, "zalo", chat_id, "vi")
            s.add(sample_book(account.id, id_number=None))

    async def link(chat: Any) -> str:
        await chat.send("/mydata")
        text = next(x for x in reversed(chat.texts) if "/media/" in x)
        return next(w for w in text.split() if "/media/" in w)

    leaving, staying = zbot.user(), zbot.user()
    await with_book(leaving.user.id)
    await with_book(staying.user.id)
    gone, kept = await link(leaving), await link(staying)
    await leaving.send("/delete")
    await leaving.press(t("button.delete_yes"))
    async with zbot.session() as s:
        assert await hb.find_account(s, "zalo", leaving.user.id) is None
    async with aiohttp.ClientSession() as http:
        async with http.get(gone) as resp:
            assert resp.status == 404
        async with http.get(kept) as resp:
            assert resp.status == 200
