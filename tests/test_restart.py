"""A bot killed with SIGKILL mid-conversation continues where each person was, answers kept:
between turns, and in the middle of one (transaction open; committed but not yet answered).

Mid-turn kills use the test-only hook in ``handlers.common.turn``: the child process gets
``HEALTHBOOK_TEST_CRASH_AT=<point>:<update id>`` and SIGKILLs itself at that point. Nothing is
sent again by hand: the bot confirms to Telegram only what it handled, so after the restart the
stand-in gives the update again by itself, as Telegram does. On Zalo, which gives an event once
and has no confirmation, the bot keeps each event it fetched in its inbox table until its turn is
over, and replays what is left there when it starts: the same scenarios run on both channels.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.db import create_engine, session_factory
from bot.standin import BotApiStandIn, ChatDriver, TgUser, text_message
from bot.standin.zalo import ZaloApiStandIn, ZaloChatDriver, ZaloUser, zalo_text
from models.tables import Account, Draft, HandledUpdate, InboxEvent
from tests.conftest import CHANNELS, TOKEN
from tests.flows import GOOD, Person, agree, t

StandIn = BotApiStandIn | ZaloApiStandIn


@pytest.fixture(params=CHANNELS)
async def api(request: pytest.FixtureRequest) -> Any:
    """The stand-in of each channel (overrides conftest's Telegram-only ``api`` here)."""
    stand_in = BotApiStandIn() if request.param == "telegram" else ZaloApiStandIn()
    async with stand_in:
        yield stand_in


def channel(api: StandIn) -> str:
    return "zalo" if isinstance(api, ZaloApiStandIn) else "telegram"


def write_config(path: Path, api: StandIn, db_url: str) -> Path:
    if isinstance(api, ZaloApiStandIn):
        # polling; no [http] public_url: no web server (the health book sends no pictures)
        section = f'[zalo]\ntoken = "{api.token}"\nbase_url = "{api.url}"\npoll_timeout = 1\n'
    else:
        section = (
            f'[telegram]\ntoken = "{TOKEN}"\nbase_url = "{api.base_url}"\n'
            f'base_file_url = "{api.base_file_url}"\npoll_timeout = 1\n'
        )
    path.write_text(
        section + f'[database]\nurl = "{db_url}"\n[logging]\nlevel = "WARNING"\n',
        encoding="utf-8",
    )
    return path


async def start_bot(
    config: Path, api: StandIn, crash_at: str | None = None
) -> asyncio.subprocess.Process:
    """`healthbook run --config FILE` in its own process; returns once it polls the stand-in.
    With ``crash_at`` (``before_commit:<update id>`` …) it kills itself at that point."""
    seen = len([c for c in api.calls if c.method == "getUpdates"])
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HEALTHBOOK_TEST_CRASH_AT", None)
    if crash_at:
        env["HEALTHBOOK_TEST_CRASH_AT"] = crash_at
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        "--config",
        str(config),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    for _ in range(300):
        if len([c for c in api.calls if c.method == "getUpdates"]) > seen:
            return proc
        if proc.returncode is not None:
            err = await proc.stderr.read() if proc.stderr else b""
            raise AssertionError(f"bot exited: {err.decode(errors='replace')}")
        await asyncio.sleep(0.05)
    proc.kill()
    raise AssertionError("bot did not start polling")


async def kill_9(proc: asyncio.subprocess.Process, api: StandIn) -> None:
    """SIGKILL: no shutdown hook, no final persistence flush."""
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    await dead_polls_over(api)


async def dead_polls_over(api: StandIn) -> None:
    """Until the dead process's long poll has timed out (1 s): on Zalo an event pushed before
    would be handed to that poll and lost, as Zalo would (it has no confirmation)."""
    if isinstance(api, ZaloApiStandIn):
        await asyncio.sleep(1.2)


async def test_conversation_survives_kill_9(api: StandIn, db_url: str, tmp_path: Path):
    config = write_config(tmp_path / "config.toml", api, db_url)
    proc = await start_bot(config, api)
    try:
        anna, binh = api_user(api, 501), api_user(api, 502)
        await agree(anna)
        await anna.send("Lò Thị Mai")
        await anna.send("1/2/1960")
        await agree(binh)
        await binh.send("Giàng A Páo")
        await kill_9(proc, api)

        proc = await start_bot(config, api)
        # the next question's button (on Zalo its number, kept in the database) still works
        await anna.press(t("vi", "gender.female"))
        assert t("vi", "ask.id_number") in anna.last_text
        await anna.send("010160001234")
        assert t("vi", "ask.phone", channel(api)) in anna.last_text
        await binh.send("15/3/1950")  # continues at the date of birth
        assert t("vi", "ask.gender") in binh.last_text
        await kill_9(proc, api)

        proc = await start_bot(config, api)
        await anna.send(GOOD["phone"])
        assert t("vi", "ask.bhyt") in anna.last_text
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    engine = create_engine(db_url)
    try:
        async with session_factory(engine)() as session:
            account = await session.scalar(
                select(Account).where(Account.external_id == external_id(api, 501))
            )
            assert account is not None
            draft = await session.get(Draft, account.id)
            assert draft is not None
            assert draft.answers["full_name"] == "Lò Thị Mai"
            assert draft.answers["date_of_birth"] == "1960-02-01"
            assert draft.answers["gender"] == "female"
            assert draft.answers["id_number"]["number"] == "010160001234"
            assert draft.answers["phone"] == "+84912345678"
    finally:
        await engine.dispose()


def external_id(api: StandIn, uid: int) -> str:
    """A person's id on the channel: Telegram's number; on Zalo 20 hex characters."""
    return f"{uid:020x}" if isinstance(api, ZaloApiStandIn) else str(uid)


def api_user(api: StandIn, uid: int) -> Person:
    if isinstance(api, ZaloApiStandIn):
        return ZaloChatDriver(api, ZaloUser(id=external_id(api, uid)), press_by="alternate")
    # a bot in another process: no idle() to wait on, so wait for a quiet moment (an answer of
    # several messages, e.g. the welcome then the consent, takes longer on PostgreSQL)
    return ChatDriver(api, TgUser(id=uid, first_name="P", language_code="vi"), settle=0.4)


CRASH_UPDATE = 10_000  # the update id the bot dies on (the stand-in numbers the others below it)
CRASH_EVENT = "0c4a5e0000000000dead"  # on Zalo: the message_id of the event it dies on


def crash_key(api: StandIn) -> str:
    return CRASH_EVENT if isinstance(api, ZaloApiStandIn) else str(CRASH_UPDATE)


async def killed_at(point: str, api: StandIn, config: Path, person: Person) -> None:
    """Start a bot that dies at ``point`` of the turn of ``person``'s date of birth (after the
    consent and the name), send that date and see it die."""
    proc = await start_bot(config, api, crash_at=f"{point}:{crash_key(api)}")
    try:
        await agree(person)
        await person.send("Lò Thị Mai")
        assert t("vi", "ask.date_of_birth") in person.last_text
        if isinstance(person, ZaloChatDriver):
            date = zalo_text(person.user, "1/2/1960")
            date["message"]["message_id"] = CRASH_EVENT
        else:
            date = {"update_id": CRASH_UPDATE, **text_message(person.user, "1/2/1960")}
        await person.push(date, expect_reply=False)
        assert await asyncio.wait_for(proc.wait(), 30) == -signal.SIGKILL
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    await dead_polls_over(api)
    assert t("vi", "ask.date_of_birth") in person.last_text  # no answer came


async def still_held(api: StandIn, db_url: str) -> int:
    """How many updates the messenger still holds for the bot (Telegram: never confirmed); on
    Zalo, which holds nothing once given, how many events the bot's inbox keeps."""
    if isinstance(api, BotApiStandIn):
        return int(api.stats()["pending_updates"])
    engine = create_engine(db_url)
    try:
        async with session_factory(engine)() as session:
            return int(await session.scalar(select(func.count()).select_from(InboxEvent)) or 0)
    finally:
        await engine.dispose()


async def stored(api: StandIn, db_url: str, external_id: str) -> dict[str, Any]:
    """The person's draft answers, and whether the crash's update is recorded as applied."""
    engine = create_engine(db_url)
    try:
        async with session_factory(engine)() as session:
            account = await session.scalar(
                select(Account).where(Account.external_id == external_id)
            )
            assert account is not None
            draft = await session.get(Draft, account.id)
            assert draft is not None
            applied = await session.get(HandledUpdate, (channel(api), crash_key(api)))
            return {**draft.answers, "crash_update_applied": applied is not None}
    finally:
        await engine.dispose()


async def confirmed(api: StandIn, db_url: str) -> None:
    """Until the bot has confirmed every update Telegram holds (it asks for the next ones); on
    Zalo, until its inbox is empty."""
    for _ in range(400):
        if (held := await still_held(api, db_url)) == 0:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"{held} updates were never confirmed")


def sent_texts(person: Person, after: int) -> list[str]:
    """Texts the bot sent to ``person`` after call number ``after``."""
    return [
        str(c.params.get("text"))
        for c in person.api.chat_calls(person.chat_id, after_seq=after)
        if c.method == "sendMessage"
    ]


async def test_kill_while_the_transaction_is_open(api: StandIn, db_url: str, tmp_path):
    config = write_config(tmp_path / "config.toml", api, db_url)
    anna = api_user(api, 601)
    await killed_at("before_commit", api, config, anna)
    answers = await stored(api, db_url, external_id(api, 601))
    assert answers["full_name"] == "Lò Thị Mai"
    assert "date_of_birth" not in answers  # rolled back with the transaction
    assert not answers["crash_update_applied"]
    assert await still_held(api, db_url) >= 1  # Telegram still holds it; Zalo: the inbox

    after = api.seq
    proc = await start_bot(config, api)  # Telegram gives the date again; Zalo: the inbox
    try:
        await api.wait_chat(anna.chat_id, after_seq=after, timeout=10)
        assert t("vi", "ask.gender") in anna.last_text
        await anna.press(t("vi", "gender.female"))
        assert t("vi", "ask.id_number") in anna.last_text
        # applied once: a second copy would have been a wrong answer to the gender question
        said = sent_texts(anna, after)
        assert [t("vi", "ask.gender") in x for x in said] == [True, False], said
    finally:
        proc.kill()
        await proc.wait()
    answers = await stored(api, db_url, external_id(api, 601))
    assert answers["date_of_birth"] == "1960-02-01" and answers["gender"] == "female"


async def test_kill_after_commit_before_the_reply(api: StandIn, db_url: str, tmp_path):
    config = write_config(tmp_path / "config.toml", api, db_url)
    anna = api_user(api, 602)
    await killed_at("after_commit", api, config, anna)
    answers = await stored(api, db_url, external_id(api, 602))
    assert answers["date_of_birth"] == "1960-02-01"  # committed, though never acknowledged
    assert answers["crash_update_applied"]
    assert await still_held(api, db_url) >= 1  # Telegram still holds it; Zalo: the inbox

    after = api.seq
    proc = await start_bot(config, api)  # Telegram gives the date again; Zalo: the inbox
    try:
        await confirmed(api, db_url)  # recognised as applied: skipped, and nothing is said
        assert sent_texts(anna, after) == []
        # Anna saw no answer, so she sends her date again: the bot asks the question she is at
        await anna.send("1/2/1960")
        said = sent_texts(anna, after)  # the redelivered copy said nothing, this one twice:
        assert len(said) == 2, said
        assert t("vi", "error.gender.invalid") in said[0]
        assert t("vi", "ask.gender") in said[1]
        await anna.press(t("vi", "gender.female"))
        assert t("vi", "ask.id_number") in anna.last_text
    finally:
        proc.kill()
        await proc.wait()
    answers = await stored(api, db_url, external_id(api, 602))
    assert answers["date_of_birth"] == "1960-02-01" and answers["gender"] == "female"
