"""The dispatcher (bot/dispatch.py) on the stand-ins: due messages sent once and marked, held
until due and through the quiet hours, a 429 respected, a blocked bot marked unreachable until
the person writes, network errors and 5xx tried again with back-off then failed, a kill -9
mid-batch losing nothing and repeating at most the batch under way, two dispatchers on
PostgreSQL never sending the same message, a Zalo person answering a message's option by its
number, and ``healthbook dispatch`` starting and stopping.

The messages are of a test-only kind (``test_note``, its renderer registered with monkeypatch):
the text carries the message's id, so the stand-in's count of each chat's texts shows any
message sent twice."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.channels import BLOCKED, RATE_LIMITED, REFUSED, TRANSIENT, DeliveryError
from bot.channels.base import Reply
from bot.channels.typed import Offers
from bot.dispatch import Dispatcher, drain
from bot.standin import BotApiStandIn
from bot.standin.common import FloodControl
from handlers.common import inline
from handlers.notices import RENDERERS, Notice
from models import outbox
from models.tables import Account, OutboxMessage
from tests.conftest import TOKEN, Harness, ZaloHarness
from tests.flows import t

KIND = "test_note"
ROOT = Path(__file__).resolve().parent.parent


async def _note(n: Notice) -> Reply | None:
    """A test message: its id in the text; options when the params ask for them."""
    params = n.message.params or {}
    if params.get("drop"):
        return None
    if params.get("boom"):
        raise RuntimeError("a renderer's bug")
    text = f"note {n.message.id}: {params.get('text', '')}"
    if params.get("prepared"):  # the slow part, after the claim's transaction (Reply.prepare)
        reply = Reply()
        session = n.session

        async def prepare() -> None:
            if params.get("prepare_boom"):
                raise RuntimeError("a drawing's bug")
            # the claim's transaction is over: no database connection waits on this
            assert not session.in_transaction()
            reply.text = f"{text} (prepared)"

        reply.prepare = prepare
        return reply
    if params.get("vietnamese"):
        return Reply(text=text, markup=inline([[("Giữ tiếng Việt", "lang:vi")]]))
    if params.get("language_options"):
        rows = [[("English", "lang:en")], [("Tiếng Việt", "lang:vi")]]
        return Reply(text=text, markup=inline(rows))
    return Reply(text=text)


@pytest.fixture(autouse=True)
def note_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(RENDERERS, KIND, _note)


async def add_account(h: Harness | ZaloHarness, chat_id: int | str) -> int:
    """A person on the harness's channel (no health book needed by the test renderer)."""
    async with h.session() as session, session.begin():
        account = Account(channel=h.channel, external_id=str(chat_id), locale="vi")
        session.add(account)
        await session.flush()
        return account.id


async def add_notes(
    h: Harness | ZaloHarness,
    account_id: int,
    count: int = 1,
    *,
    due_in: dt.timedelta = dt.timedelta(0),
    quiet_ok: bool = False,
    **params: Any,
) -> list[int]:
    """``count`` test messages to an account, due ``due_in`` from the harness clock's now."""
    async with h.session() as session, session.begin():
        rows = [
            outbox.enqueue(
                session,
                kind=KIND,
                account_id=account_id,
                due_at=h.clock() + due_in,
                quiet_ok=quiet_ok,
                params={"text": f"#{i}", **params},
            )
            for i in range(count)
        ]
        await session.flush()
        return [r.id for r in rows]


async def statuses(h: Harness | ZaloHarness) -> dict[int, tuple[str, str | None, int]]:
    """Every message's status, error and attempts, by id."""
    async with h.session() as session:
        rows = await session.execute(
            select(OutboxMessage.id, OutboxMessage.status, OutboxMessage.error,
                   OutboxMessage.attempts)
        )
        return {i: (s, e, a) for i, s, e, a in rows}


def notes_to(api: BotApiStandIn, chat_id: int) -> list[str]:
    """The test messages a Telegram chat got, in order."""
    return [
        c.params["text"]
        for c in api.chat_calls(chat_id)
        if c.method == "sendMessage" and c.ok and str(c.params.get("text", "")).startswith("note ")
    ]


async def run_until_idle(d: Dispatcher, timeout: float = 20.0) -> None:  # noqa: ASYNC109
    await d.start()
    try:
        await d.wait_idle(timeout)
    finally:
        await d.stop()


# ------------------------------------------------------------------------------- sent once


async def test_due_messages_are_sent_once_and_marked_sent(bot: Harness) -> None:
    a, b = await add_account(bot, 7101), await add_account(bot, 7102)
    ids = await add_notes(bot, a, 3) + await add_notes(bot, b, 2)
    later = await add_notes(bot, a, 1, due_in=dt.timedelta(minutes=10))
    await run_until_idle(Dispatcher(bot.services))
    assert notes_to(bot.api, 7101) == [f"note {i}: #{n}" for n, i in enumerate(ids[:3])]
    assert len(notes_to(bot.api, 7102)) == 2
    st = await statuses(bot)
    assert all(st[i][0] == "sent" for i in ids)
    assert st[later[0]][0] == "pending"  # not before it is due

    await drain(bot.services)  # nothing more is due: nothing is sent again
    assert len(notes_to(bot.api, 7101)) == 3
    bot.clock.advance(minutes=10)
    sent = await drain(bot.services)
    assert sent.sent == 1 and (await statuses(bot))[later[0]][0] == "sent"
    assert notes_to(bot.api, 7101)[-1] == f"note {later[0]}: #0"


async def test_a_message_that_no_longer_applies_is_dropped(bot: Harness) -> None:
    a = await add_account(bot, 7103)
    [dropped] = await add_notes(bot, a, drop=True)
    sent = await drain(bot.services)
    assert (sent.sent, sent.dropped) == (0, 1)
    assert (await statuses(bot))[dropped][0] == "cancelled"
    assert notes_to(bot.api, 7103) == []


async def test_a_renderer_that_fails_costs_its_own_message_only(bot: Harness) -> None:
    a = await add_account(bot, 7105)
    first = await add_notes(bot, a)
    [boom] = await add_notes(bot, a, boom=True)
    last = await add_notes(bot, a)
    sent = await drain(bot.services)
    assert (sent.sent, sent.failed) == (2, 1)
    st = await statuses(bot)
    assert st[boom][:2] == ("failed", "render error")
    assert notes_to(bot.api, 7105) == [f"note {first[0]}: #0", f"note {last[0]}: #0"]


async def test_a_slow_part_is_prepared_after_the_claim_and_fails_alone(bot: Harness) -> None:
    """Reply.prepare (a report's chart) runs with no database connection held, just before
    sending; when it fails, its own message is marked failed and the others go."""
    a = await add_account(bot, 7106)
    [ok] = await add_notes(bot, a, prepared=True)
    [boom] = await add_notes(bot, a, prepared=True, prepare_boom=True)
    sent = await drain(bot.services)
    assert (sent.sent, sent.failed) == (1, 1)
    st = await statuses(bot)
    assert st[ok][0] == "sent" and st[boom][:2] == ("failed", "render error")
    assert notes_to(bot.api, 7106) == [f"note {ok}: #0 (prepared)"]


async def test_one_message_per_chat_per_second_in_order(bot: Harness) -> None:
    """Three messages to one chat go one at a time, in order, spaced by per_chat_seconds."""
    bot.services.settings.dispatch.per_chat_seconds = 0.3
    a = await add_account(bot, 7104)
    ids = await add_notes(bot, a, 3)
    await run_until_idle(Dispatcher(bot.services))
    calls = [c for c in bot.api.chat_calls(7104) if c.method == "sendMessage"]
    assert [c.params["text"] for c in calls] == [f"note {i}: #{n}" for n, i in enumerate(ids)]
    gaps = [b.time - a.time for a, b in itertools.pairwise(calls)]
    assert min(gaps) >= 0.25, gaps


# ------------------------------------------------------------------------------- quiet hours


async def test_held_through_quiet_hours_except_quiet_ok(bot: Harness) -> None:
    # 22:30 in Hà Nội (UTC+7): quiet hours (21:00-07:00)
    bot.clock.current = dt.datetime(2026, 11, 25, 15, 30, tzinfo=dt.UTC)
    a = await add_account(bot, 7201)
    [held] = await add_notes(bot, a)
    [urgent] = await add_notes(bot, a, quiet_ok=True)
    sent = await drain(bot.services)
    assert sent.sent == 1
    st = await statuses(bot)
    assert st[held][0] == "pending" and st[urgent][0] == "sent"
    bot.clock.current = dt.datetime(2026, 11, 25, 23, 59, tzinfo=dt.UTC)  # 06:59
    assert (await drain(bot.services)).sent == 0
    bot.clock.current = dt.datetime(2026, 11, 26, 0, 0, tzinfo=dt.UTC)  # 07:00: over
    assert (await drain(bot.services)).sent == 1
    assert notes_to(bot.api, 7201) == [f"note {urgent}: #0", f"note {held}: #0"]


# ------------------------------------------------------------------------------- 429


async def test_a_429_pauses_the_channel_then_everything_goes(bot: Harness) -> None:
    """The stand-in's flood limit (5 a second) against a dispatcher allowed 50: a 429 pauses
    the channel for its retry_after (nothing is sent meanwhile), every message goes once, and
    only a few 429s are received."""
    settings = bot.services.settings.dispatch
    settings.telegram_rate, settings.per_chat_seconds = 50, 0
    bot.api.flood = FloodControl(5)
    accounts = [await add_account(bot, 7300 + i) for i in range(12)]
    ids = [i for a in accounts for i in await add_notes(bot, a)]
    d = Dispatcher(bot.services)
    await run_until_idle(d, timeout=30)
    assert all(s[0] == "sent" for s in (await statuses(bot)).values())
    sends = sorted(
        (c for c in bot.api.calls if c.method == "sendMessage"), key=lambda c: c.seq
    )
    delivered = [c for c in sends if c.ok]
    assert len(delivered) == len(ids)
    refused = [c for c in sends if not c.ok]
    assert 1 <= len(refused) <= 4 and d.stats.throttled == len(refused)
    first = refused[0]
    # paused for retry_after (1 s): after the sends already on their way, nothing until then
    assert not [c for c in sends if first.time + 0.2 <= c.time < first.time + 0.9]
    assert [c for c in sends if c.time >= first.time + 0.9]  # then the rest
    assert all(n == 1 for texts in _texts(bot.api).values() for n in texts.values())


def _texts(api: Any) -> dict[Any, dict[str, int]]:
    out: dict[Any, dict[str, int]] = {}
    for c in api.calls:
        if c.method == "sendMessage" and c.ok:
            texts = out.setdefault(c.chat_id, {})
            texts[c.params["text"]] = texts.get(c.params["text"], 0) + 1
    return out


# ------------------------------------------------------------------------------- 403


async def test_a_blocked_bot_marks_the_person_unreachable_until_they_write(bot: Harness) -> None:
    person = bot.user(7401)
    async with bot.session() as session:
        account = await session.get(Account, await add_account(bot, 7401))
        assert account is not None and account.unreachable_at is None
    bot.api.block_user(7401)
    [first, second] = await add_notes(bot, account.id, 2)
    sent = await drain(bot.services)
    assert (sent.sent, sent.failed) == (0, 2)
    st = await statuses(bot)
    assert st[first][:2] == ("failed", "blocked")
    assert st[second][:2] in {("failed", "blocked"), ("failed", "unreachable")}
    async with bot.session() as session:
        assert (await session.get(Account, account.id)).unreachable_at is not None  # type: ignore[union-attr]
    [third] = await add_notes(bot, account.id)
    await drain(bot.services)  # not even tried
    assert (await statuses(bot))[third][:2] == ("failed", "unreachable")
    tries = len([c for c in bot.api.chat_calls(7401) if c.method == "sendMessage" and not c.ok])

    bot.api.block_user(7401, False)
    await person.send("/help")  # they write again
    async with bot.session() as session:
        assert (await session.get(Account, account.id)).unreachable_at is None  # type: ignore[union-attr]
    [fourth] = await add_notes(bot, account.id)
    assert (await drain(bot.services)).sent == 1
    assert (await statuses(bot))[fourth][0] == "sent"
    assert notes_to(bot.api, 7401) == [f"note {fourth}: #0"]
    assert tries <= 2


# ------------------------------------------------------------------------------- 5xx


@pytest.mark.parametrize("code", [502, 0], ids=["5xx", "dropped"])
async def test_network_errors_are_tried_again_with_back_off_then_failed(
    bot: Harness, code: int
) -> None:
    """retry_minutes 5, doubling, max_attempts 3: tried at 0, +5, +15 minutes, then failed
    with the reason; a later success is sent once."""
    a = await add_account(bot, 7501)
    [doomed] = await add_notes(bot, a)
    bot.api.fail_next("sendMessage", code, times=3)
    assert (await drain(bot.services)).retried == 1
    status, error, attempts = (await statuses(bot))[doomed]
    assert (status, attempts) == ("pending", 1) and error
    bot.clock.advance(minutes=4)
    assert (await drain(bot.services)).retried == 0  # not before 5 minutes
    bot.clock.advance(minutes=1)
    assert (await drain(bot.services)).retried == 1
    bot.clock.advance(minutes=9)
    await drain(bot.services)
    assert (await statuses(bot))[doomed][2] == 2  # the second wait is 10 minutes
    bot.clock.advance(minutes=1)
    sent = await drain(bot.services)
    assert sent.failed == 1
    status, error, attempts = (await statuses(bot))[doomed]
    assert (status, attempts) == ("failed", 3) and error
    assert notes_to(bot.api, 7501) == []

    [saved] = await add_notes(bot, a)
    bot.api.fail_next("sendMessage", code)
    await drain(bot.services)
    bot.clock.advance(minutes=5)
    assert (await drain(bot.services)).sent == 1
    assert notes_to(bot.api, 7501) == [f"note {saved}: #0"]
    assert (await statuses(bot))[saved][:3] == ("sent", None, 1)


# ------------------------------------------------------------------------------- Zalo


async def test_a_message_reaches_a_zalo_person_who_answers_by_its_number(zbot: ZaloHarness) -> None:
    person = zbot.user()
    async with zbot.session() as session:
        account = await session.get(Account, await add_account(zbot, person.user.id))
        assert account is not None
    [note] = await add_notes(zbot, account.id, language_options=True)
    assert (await drain(zbot.services)).sent == 1
    text = zbot.api.messages(person.user.id)[-1]["text"]
    assert text.startswith(f"note {note}: #0") and "1. English" in text and "2. Tiếng Việt" in text
    await person.send("1")  # the number the message gave English
    assert t("en", "language.changed", "zalo") in " ".join(person.texts)
    async with zbot.session() as session:
        assert (await session.get(Account, account.id)).locale == "en"  # type: ignore[union-attr]


async def test_a_blocked_zalo_person_is_unreachable(zbot: ZaloHarness) -> None:
    a = await add_account(zbot, "0123456789abcdef7601")
    zbot.api.block_user("0123456789abcdef7601")
    [note] = await add_notes(zbot, a)
    await drain(zbot.services)
    assert (await statuses(zbot))[note][:2] == ("failed", "blocked")


@pytest.mark.parametrize("fresh", [True, False], ids=["read-fresh", "cached"])
async def test_a_choice_offered_by_a_dispatcher_apart_answers_a_typed_number(
    bot: Harness, fresh: bool
) -> None:
    """A dispatcher in another process (its own services, its own cache) offers a choice to a
    chat; the person types its number. A bot that reads chat_offers fresh (``Offers(size=0)``,
    what ``[dispatch] in_bot = false`` gives) understands it; one that trusts its cache of the
    choices it offered itself does not."""
    from bot.app import build_services
    from bot.channels.telegram import TelegramChannel

    if fresh:
        bot.services.offers = bot.app.bot_data["services"].offers = Offers(size=0)
    person = bot.user(7901)
    account_id = await add_account(bot, 7901)
    await person.send("/language")  # the bot offers 1. Tiếng Việt, 2. English (and caches it)
    apart = build_services(bot.services.settings, clock=bot.clock)
    apart.channels["telegram"] = TelegramChannel(bot.app.bot)
    try:
        await add_notes(bot, account_id, vietnamese=True)
        assert (await drain(apart)).sent == 1  # "Giữ tiếng Việt" joins the chat's choices
    finally:
        await apart.sessions.kw["bind"].dispose()
    # the chat's choices are now 1. English, 2. Giữ tiếng Việt (the note's lang:vi replaces the
    # menu's): "1" means English; to a bot trusting its cache, "1" is still Tiếng Việt
    await person.send("1")
    async with bot.session() as session:
        locale = (await session.get(Account, account_id)).locale  # type: ignore[union-attr]
    assert (locale == "en") is fresh
    if fresh:
        assert t("en", "language.changed") in " ".join(person.texts)


async def test_offers_are_read_fresh_when_the_dispatcher_runs_apart(tmp_path: Path) -> None:
    from bot.app import build_services
    from bot.settings import load_settings

    apart = load_settings(None, database={"url": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"},
                          dispatch={"in_bot": False})
    inside = load_settings(None, database={"url": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"})
    assert build_services(apart).offers.size == 0
    assert build_services(inside).offers.size == Offers().size


# ------------------------------------------------------------------------------- kill -9

CHILD = """
import asyncio, sys
from bot.serve import dispatch_async
from bot.settings import load_settings
from handlers.notices import RENDERERS
from tests.test_dispatch import KIND, _note
RENDERERS[KIND] = _note
asyncio.run(dispatch_async(load_settings(sys.argv[1])))
"""


def dispatcher_config(path: Path, api: BotApiStandIn, db_url: str, **dispatch: object) -> Path:
    lines = "".join(f"{k} = {v}\n" for k, v in dispatch.items())
    path.write_text(
        f'[telegram]\ntoken = "{TOKEN}"\nbase_url = "{api.base_url}"\n'
        f'base_file_url = "{api.base_file_url}"\n[database]\nurl = "{db_url}"\n'
        # no quiet hours: the child runs on the real clock, whatever time it is
        f'[dispatch]\n{lines}[reminders]\nquiet_start = "00:00"\nquiet_end = "00:00"\n'
        '[logging]\nlevel = "WARNING"\n',
        encoding="utf-8",
    )
    return path


async def test_a_dispatcher_killed_mid_batch_loses_nothing(
    bot: Harness, tmp_path: Path
) -> None:
    """A dispatcher in its own process is killed (SIGKILL) while a batch is going out; a
    dispatcher started after the claims timed out sends the rest: every message arrives, and
    only messages in flight at the kill (at most the batch) arrive twice."""
    batch = 20
    people = [await add_account(bot, 7600 + i) for i in range(30)]
    # quiet_ok: the test's clock is moved to the real time below, which may be a quiet hour
    ids = [i for a in people for i in await add_notes(bot, a, 2, quiet_ok=True)]
    config = dispatcher_config(
        tmp_path / "config.toml", bot.api, str(bot.services.settings.database.url),
        batch_size=batch, telegram_rate=20, per_chat_seconds=0,
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(config), env=env, cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        await bot.api.wait_for_calls(lambda c: c.method == "sendMessage", count=25, timeout=30)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    st = await statuses(bot)
    assert any(s[0] == "claimed" for s in st.values())  # killed mid-batch
    assert any(s[0] == "sent" for s in st.values())

    d = Dispatcher(bot.services)
    await run_until_idle(d)  # the claims are not stale yet: they wait
    assert any(s[0] == "claimed" for s in (await statuses(bot)).values())
    # the child claimed on the real clock: the claims time out that long after it
    timeout = bot.services.settings.dispatch.claim_timeout_seconds
    bot.clock.current = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=timeout + 1)
    await drain(bot.services)
    assert all(s[0] == "sent" for s in (await statuses(bot)).values())
    got = _texts(bot.api)
    every = [f"note {i}: #{n % 2}" for n, i in enumerate(ids)]
    delivered = {text for texts in got.values() for text in texts}
    assert set(every) <= delivered  # nothing lost
    twice = sum(n - 1 for texts in got.values() for n in texts.values())
    assert twice <= batch, twice  # only what was in flight at the kill
    print(f"kill -9 mid-batch: {twice} of {len(ids)} messages sent twice (batch {batch})")


# ------------------------------------------------------------------------------- PostgreSQL


async def test_two_dispatchers_on_postgresql_never_send_the_same_message(bot: Harness) -> None:
    if not str(bot.services.settings.database.url).startswith("postgresql"):
        pytest.skip("several dispatchers run on PostgreSQL (SKIP LOCKED); SQLite runs one")
    settings = bot.services.settings.dispatch
    settings.batch_size, settings.telegram_rate, settings.per_chat_seconds = 10, 1000, 0
    people = [await add_account(bot, 7700 + i) for i in range(40)]
    ids = [i for a in people for i in await add_notes(bot, a, 5)]
    one, two = Dispatcher(bot.services), Dispatcher(bot.services)
    assert one.worker != two.worker
    await one.start()
    await two.start()
    try:
        await one.wait_idle(30)
        await two.wait_idle(30)
    finally:
        await one.stop()
        await two.stop()
    got = _texts(bot.api)
    assert sum(len(texts) for texts in got.values()) == len(ids)
    assert all(n == 1 for texts in got.values() for n in texts.values())
    assert all(s[0] == "sent" for s in (await statuses(bot)).values())
    async with bot.session() as session:
        workers = set(await session.scalars(select(OutboxMessage.claimed_by).distinct()))
    assert workers == {one.worker, two.worker}  # both took their share
    assert one.stats.sent + two.stats.sent == len(ids)


# ------------------------------------------------------------------------------- the command


@pytest.mark.parametrize("command", ["dispatch", "run"])
async def test_healthbook_dispatch_starts_sends_and_stops(
    bot: Harness, tmp_path: Path, command: str
) -> None:
    """``healthbook dispatch --config FILE``, and ``healthbook run`` with its dispatcher inside
    (``in_bot``, the default): sends what is due (a reminder of a real kind would do the same;
    this one is the test kind, registered in the child) and exits 0 on SIGTERM; without a
    token it says how to get one, exit status 2."""
    a = await add_account(bot, 7801)
    [note] = await add_notes(bot, a, 1)
    config = dispatcher_config(tmp_path / "config.toml", bot.api,
                               str(bot.services.settings.database.url))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD.replace(
            "asyncio.run(dispatch_async(load_settings(sys.argv[1])))",
            f"from bot.cli import app; app(['{command}', '--config', sys.argv[1]])",
        ), str(config), env=env, cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        await bot.api.wait_for_calls(lambda c: c.method == "sendMessage", timeout=30)
        for _ in range(100):
            if (await statuses(bot))[note][0] == "sent":
                break
            await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    err = (await proc.stderr.read()).decode() if proc.stderr else ""
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert notes_to(bot.api, 7801) == [f"note {note}: #0"]
    assert (await statuses(bot))[note][0] == "sent"

    no_token = tmp_path / "none.toml"
    no_token.write_text(f'[database]\nurl = "{bot.services.settings.database.url}"\n')
    done = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", command, "--config", str(no_token),
        env={k: v for k, v in env.items() if not k.startswith("HEALTHBOOK_TELEGRAM")},
        cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    _, said = await done.communicate()
    assert done.returncode == 2 and b"No bot token" in said


# ------------------------------------------------------------------------------- the demo


@pytest.mark.parametrize("channel", ["telegram", "zalo"])
async def test_the_demo_shows_what_falls_due(tmp_path: Path, channel: str) -> None:
    """The terminal demo runs a dispatcher: a message due for the demo person (a reminder, an
    offer) is shown with the bot's next answer."""
    import io

    from bot.db import create_engine, session_factory
    from bot.demo import TELEGRAM_USER_ID, ZALO_USER_ID, telegram_chat, zalo_chat
    from bot.settings import load_settings

    url = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    settings = load_settings(None, database={"url": url, "upgrade_on_start": True})
    out = io.StringIO()
    chat_of = telegram_chat if channel == "telegram" else zalo_chat
    async with chat_of(settings, language="vi", sample_data=False, out=out) as chat:
        engine = create_engine(url)
        try:
            async with session_factory(engine)() as session, session.begin():
                chat_id = str(TELEGRAM_USER_ID if channel == "telegram" else ZALO_USER_ID)
                account = Account(channel=channel, external_id=chat_id, locale="vi")
                session.add(account)
                await session.flush()
                outbox.enqueue(session, kind=KIND, account_id=account.id, quiet_ok=True,
                               due_at=dt.datetime.now(dt.UTC), params={"text": "demo"})
        finally:
            await engine.dispose()
        await chat.say("/help")
    assert ": demo" in out.getvalue()


# ------------------------------------------------------------------------------- the channels


@pytest.mark.parametrize(
    ("code", "reason"),
    [(429, RATE_LIMITED), (403, BLOCKED), (502, TRANSIENT), (500, TRANSIENT), (0, TRANSIENT),
     (400, REFUSED)],
)
async def test_what_each_messenger_error_means(
    bot: Harness, zbot: ZaloHarness, code: int, reason: str
) -> None:
    """Telegram's and Zalo's answers, as the dispatcher reads them (``retry=False``: made
    once, nothing waited out inside the channel)."""
    for h, chat in ((bot, "7951"), (zbot, "0123456789abcdef7951")):
        channel = h.services.channels[h.channel]
        if code == 429 and h is bot:
            bot.api.fail_next("sendMessage", 429, retry_after=7)
        elif code == 429:
            zbot.api.fail_next("sendMessage", 429, "Too Many Requests: retry after 7")
        else:
            h.api.fail_next("sendMessage", code)
        before = len([c for c in h.api.calls if c.method == "sendMessage"])
        with pytest.raises(DeliveryError) as caught:
            await channel.send(chat, Reply(text="x"), retry=False)
        assert caught.value.reason == reason, (h.channel, caught.value)
        if code == 429:
            assert caught.value.retry_after == 7
        assert len([c for c in h.api.calls if c.method == "sendMessage"]) == before + 1
        assert chat not in str(caught.value)


async def test_a_429_is_not_retried_inside_ptb_for_the_dispatcher(api: BotApiStandIn) -> None:
    """The bot's Telegram application retries a 429 itself (PTB's rate limiter,
    max_retries=3) for a turn's answers; the dispatcher's sends go past it, made once."""
    from telegram.ext import ExtBot

    from bot.channels.telegram import TelegramChannel, TurnRateLimiter

    tg = ExtBot(TOKEN, base_url=api.base_url, base_file_url=api.base_file_url,
                rate_limiter=TurnRateLimiter(overall_max_rate=0, max_retries=3))
    await tg.initialize()
    try:
        channel = TelegramChannel(tg)
        api.fail_next("sendMessage", 429, retry_after=1)
        with pytest.raises(DeliveryError) as caught:
            await channel.send("7961", Reply(text="once"), retry=False)
        assert caught.value.reason == RATE_LIMITED
        assert len([c for c in api.calls if c.method == "sendMessage"]) == 1
        api.fail_next("sendMessage", 429, retry_after=1)
        await channel.send("7961", Reply(text="again"))  # a turn's: PTB waits and retries
        calls = [c for c in api.calls if c.method == "sendMessage"]
        assert [c.ok for c in calls] == [False, False, True]
        assert calls[2].time - calls[1].time >= 1.0
    finally:
        await tg.shutdown()


def test_a_channel_s_pace() -> None:
    """At most ``rate`` starts in any second, at most 1.5 times the rate at any moment; a 429
    pauses it and slows it by 3 % once (the sends on their way with it do not slow it more);
    30 s without a 429 speed it up again."""
    from bot.dispatch import RECOVER, _Pace

    pace = _Pace(10)
    now = 100.0
    for _ in range(10):
        now = max(now, pace.ready_at())
        pace.take(now)
    assert pace.starts[1] - pace.starts[0] == pytest.approx(1 / 15)  # catching up: 1.5 × rate
    assert pace.ready_at() == pytest.approx(pace.starts[0] + 1.0)  # 10 in the last second
    pace.pause(now, 2.0)
    pace.pause(now + 0.01, 2.0)
    assert pace.factor == pytest.approx(0.97) and pace.ready_at() >= now + 2.0
    pace.take(now + RECOVER + 1)
    assert pace.factor == 1.0


async def test_healthbook_run_says_whether_its_dispatcher_runs(
    bot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """``healthbook run`` logs one line: the dispatcher runs inside it (and at what pace), or
    it is off here and ``healthbook dispatch`` must run."""
    import logging

    from bot import serve

    settings = bot.services.settings
    stop = asyncio.Event()
    with caplog.at_level(logging.INFO, logger="bot.serve"):
        served = serve.Served()
        served.dispatcher = Dispatcher(bot.services)
        try:
            assert await serve.start(served, settings, stop) is None
        finally:
            await served.dispatcher.stop()
        assert await serve.start(serve.Served(), settings, stop) is None  # in_bot = false
    said = [r.getMessage() for r in caplog.records if r.name == "bot.serve"]
    [on] = [line for line in said if "runs in this process" in line]
    assert "25 messages/s on Telegram, 10/s on Zalo" in on
    [off] = [line for line in said if "in_bot = false" in line]
    assert "healthbook dispatch" in off
