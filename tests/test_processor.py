"""Fairness: one person's burst slows only that person. Their queue is capped (the excess gets
one polite word), and the global slots are taken only when it is a person's turn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from telegram import Update

from bot.processor import PerUserUpdateProcessor
from bot.standin import BotApiStandIn, group_chat, text_message
from tests.conftest import FakeClock, Harness, make_settings, start_app, stop_app
from tests.flows import t


def _update(uid: int, n: int) -> Update:
    return Update.de_json(
        {
            "update_id": uid * 1000 + n,
            "message": {
                "message_id": n,
                "date": 0,
                "chat": {"id": uid, "type": "private"},
                "from": {"id": uid, "is_bot": False, "first_name": "x"},
                "text": str(n),
            },
        },
        None,
    )


async def test_a_burst_beyond_the_cap_is_dropped_with_one_word_per_burst() -> None:
    dropped: list[tuple[int, bool]] = []

    async def overflow(update: Update, first: bool) -> bool:
        dropped.append((update.update_id % 1000, first))
        return first

    processor = PerUserUpdateProcessor(8, max_pending=5, on_overflow=overflow)
    release = asyncio.Event()
    handled: list[int] = []

    async def handle(n: int) -> None:
        await release.wait()
        handled.append(n)

    burst = [
        asyncio.create_task(processor.process_update(_update(1, n), handle(n))) for n in range(12)
    ]
    await asyncio.sleep(0.01)  # all twelve taken: five queued, seven beyond the cap
    assert dropped == [(5, True)] + [(n, False) for n in range(6, 12)]
    assert processor.current_concurrent_updates == 5  # "under way" counts the queued ones
    release.set()
    await asyncio.gather(*burst)
    assert handled == [0, 1, 2, 3, 4]  # in order, none lost below the cap
    assert processor._people == {}
    # the burst is over: the next one is told again
    release.clear()
    again = [
        asyncio.create_task(processor.process_update(_update(1, n), handle(n)))
        for n in range(20, 27)
    ]
    await asyncio.sleep(0.01)
    release.set()
    await asyncio.gather(*again)
    assert [first for _, first in dropped].count(True) == 2


async def test_a_queued_burst_holds_one_slot_only() -> None:
    """Person 1's first update is stuck; their nine others wait for it. With two slots,
    person 2 is still served at once (PTB's order, slot first, would make them wait)."""
    processor = PerUserUpdateProcessor(2)
    stuck = asyncio.Event()
    served = asyncio.Event()

    async def slow(_n: int) -> None:
        await stuck.wait()

    async def quick() -> None:
        served.set()

    burst = [
        asyncio.create_task(processor.process_update(_update(1, n), slow(n))) for n in range(10)
    ]
    other = asyncio.create_task(processor.process_update(_update(2, 0), quick()))
    await asyncio.wait_for(served.wait(), timeout=5)  # not held up by person 1's queue
    stuck.set()
    await asyncio.gather(*burst, other)


# ---------------------------------------------------------------- through the real bot


@pytest.fixture
async def few_slots(api: BotApiStandIn, db_url: str) -> AsyncIterator[Harness]:
    """The bot with four update slots (so that a burst could fill them)."""
    clock = FakeClock()
    app = await start_app(make_settings(db_url, api, max_concurrent_updates=4), clock)
    try:
        yield Harness(api, app, clock)
    finally:
        await stop_app(app)


def _texts_to(bot: Harness, chat_id: int) -> list[tuple[int, str]]:
    return [
        (c.seq, str(c.params.get("text")))
        for c in bot.api.chat_calls(chat_id)
        if c.method == "sendMessage"
    ]


async def test_a_flood_does_not_delay_another_person(few_slots: Harness) -> None:
    bot = few_slots
    flooder, other = bot.user(), bot.user()
    for _ in range(40):  # queued at once, as a client replaying a backlog would
        bot.api.push_update(text_message(flooder.user, "/help"))
    calls: list[Any] = await other.send("/help")
    await bot.idle()
    [answer] = [c for c in calls if c.method == "sendMessage"]
    too_fast = t("vi", "error.too_fast")
    flood = _texts_to(bot, flooder.user.id)
    helped = [seq for seq, text in flood if text != too_fast]
    # the other person was answered while the flood was still being worked through
    assert sum(seq < answer.seq for seq in helped) <= 5, (answer.seq, helped)
    # the flooder: the first twenty handled in turn, the rest refused with one word
    assert len(helped) == 20
    assert [text for _, text in flood].count(too_fast) == 1


async def test_a_flood_in_a_group_gets_no_word_there(few_slots: Harness) -> None:
    """The "too fast" word goes to the person's private chat only: a flood written in a group
    gets nothing there, and the first message they send privately meanwhile is the one told."""
    bot = few_slots
    person = bot.user()
    for _ in range(40):
        update = text_message(person.user, "/help")
        update["message"]["chat"] = group_chat(-100777)
        bot.api.push_update(update)
    await person.send("/help")  # dropped too (their queue is full), but told why
    await bot.idle()
    too_fast = t("vi", "error.too_fast")
    assert too_fast not in [text for _, text in _texts_to(bot, -100777)]
    assert [text for _, text in _texts_to(bot, person.user.id)] == [too_fast]
    await person.send("/help")  # the flood is through: answered as usual
    assert person.last_text != too_fast
