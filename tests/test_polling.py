"""Confirm to Telegram only what was handled, and apply what it gives again only once.

The poller's offset is the lowest update still under way (the low-water mark), whatever order
the updates end in; a copy given again after a restart (a person without any draft: /mydata) is
recognised by ``handled_updates`` and says nothing; those records are kept 48 hours.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from sqlalchemy import select
from telegram import Update

from bot.app import build_application, engine_of, prepare_database
from bot.polling import Poller
from bot.processor import PerUserUpdateProcessor
from bot.standin import BotApiStandIn, TgUser, text_message
from models.replays import first_delivery, forget_handled
from models.tables import HandledUpdate
from tests.conftest import FakeClock, Harness, make_settings, start_app, stop_app
from tests.flows import complete


async def _polled_with(api: BotApiStandIn, offset: int, after: int) -> None:
    """Until the bot polls with ``offset`` (a poll made after call number ``after``)."""
    await api.wait_for_calls(
        lambda c: c.method == "getUpdates" and c.seq > after
        and int(c.params.get("offset") or 0) == offset,
        timeout=5,
    )


async def test_the_offset_stays_at_the_oldest_update_under_way(api: BotApiStandIn, db_url):
    """Three people's updates end in the order 3, 2 (its handler raises), 1: Telegram is told
    nothing until 1 ends, and the updates it keeps giving meanwhile are not queued again."""
    app = build_application(make_settings(db_url, api), clock=FakeClock(), rate_limit=False)
    await prepare_database(app)
    await app.initialize()  # not started: the updates stay in its queue, for us to run
    poller = Poller(app, timeout=1, busy_wait=0.05)
    processor = app.update_processor
    assert isinstance(processor, PerUserUpdateProcessor)
    try:
        ids = [api.push_update(text_message(_user(n), "hi")) for n in (1, 2, 3)]
        await poller.start()
        queued: list[Update] = []
        for _ in range(3):
            queued.append(await asyncio.wait_for(app.update_queue.get(), 5))
        assert [u.update_id for u in queued] == ids
        assert poller.offset == ids[0]

        release = {i: asyncio.Event() for i in ids}

        async def handle(update_id: int) -> None:
            await release[update_id].wait()
            if update_id == ids[1]:
                raise RuntimeError("a handler that fails still ends its update")

        running = [
            asyncio.create_task(processor.process_update(u, handle(u.update_id))) for u in queued
        ]
        for done in (ids[2], ids[1]):
            release[done].set()
            await asyncio.sleep(0.01)
            after = api.seq
            await _polled_with(api, ids[0], after)  # still at the oldest under way
            await _polled_with(api, ids[0], api.seq)  # and again: nothing is lost meanwhile
        assert api.stats()["pending_updates"] == 3  # Telegram keeps all three
        assert app.update_queue.empty()  # given again and again, queued once
        assert poller.under_way == 1

        release[ids[0]].set()
        await _polled_with(api, ids[2] + 1, api.seq)
        assert api.stats()["pending_updates"] == 0
        results = await asyncio.gather(*running, return_exceptions=True)
        assert [type(r).__name__ for r in results] == ["NoneType", "RuntimeError", "NoneType"]

        api.push_update(text_message(_user(4), "later"))  # polling goes on from there
        later = await asyncio.wait_for(app.update_queue.get(), 5)
        assert later.update_id == ids[2] + 1 and poller.offset == later.update_id
    finally:
        await poller.stop()
        await app.shutdown()
        await engine_of(app).dispose()


def _user(n: int) -> TgUser:
    return TgUser(id=7000 + n, first_name="P", language_code="vi")


async def test_a_copy_given_again_after_a_restart_is_applied_once(bot: Harness) -> None:
    """A person with no draft (their book is done) asks for /mydata; the bot stops before it
    could confirm it, and Telegram gives it again to the next start: no second answer."""
    an = bot.user()
    await complete(an)
    update = {"update_id": bot.api.stats()["last_update_id"] + 1,
              **text_message(an.user, "/mydata")}
    calls = await an.push(dict(update))
    assert any(c.method == "sendDocument" for c in calls)

    await stop_app(bot.app)
    bot.app = await start_app(bot.services.settings, bot.clock)
    after = bot.api.seq
    bot.api.push_update(dict(update))  # the same update, its same id, as Telegram gives it
    for _ in range(200):  # until the new bot has taken it and said whatever it says
        if bot.api.stats()["pending_updates"] == 0:
            break
        await asyncio.sleep(0.02)
    await bot.idle()
    assert bot.api.stats()["pending_updates"] == 0
    assert bot.api.chat_calls(an.chat_id, after_seq=after) == []
    await an.send("/mydata")  # a new request is answered, of course
    assert any(c.method == "sendDocument" for c in an.calls)


async def test_records_are_kept_48_hours(bot: Harness) -> None:
    now = dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.UTC)
    async with bot.session() as session, session.begin():
        assert await first_delivery(session, "telegram", "1", now - dt.timedelta(hours=49))
        assert await first_delivery(session, "telegram", "2", now - dt.timedelta(hours=47))
        assert await first_delivery(session, "zalo", "2", now)  # another channel's own ids
        assert not await first_delivery(session, "telegram", "2", now)
    async with bot.session() as session, session.begin():
        assert await forget_handled(session, now) == 1
    async with bot.session() as session:
        kept = (await session.execute(
            select(HandledUpdate.channel, HandledUpdate.update_key)
        )).all()
    assert sorted(kept) == [("telegram", "2"), ("zalo", "2")]
