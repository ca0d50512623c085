"""A bot killed with SIGKILL mid-conversation continues where each person was, answers kept:
between turns, and in the middle of one (transaction open; committed but not yet answered).

Mid-turn kills use the test-only hook in ``handlers.common.turn``: the child process gets
``HEALTHBOOK_TEST_CRASH_AT=<point>:<update id>`` and SIGKILLs itself at that point. Nothing is
sent again by hand: the bot confirms to Telegram only what it handled, so after the restart the
stand-in gives the update again by itself, as Telegram does.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bot.db import create_engine, session_factory
from bot.standin import BotApiStandIn, ChatDriver, TgUser, text_message
from models.tables import Account, Draft, HandledUpdate
from tests.conftest import TOKEN
from tests.flows import GOOD, agree, t


def write_config(path: Path, api: BotApiStandIn, db_url: str) -> Path:
    path.write_text(
        "[telegram]\n"
        f'token = "{TOKEN}"\nbase_url = "{api.base_url}"\n'
        f'base_file_url = "{api.base_file_url}"\npoll_timeout = 1\n'
        "[database]\n"
        f'url = "{db_url}"\n'
        '[logging]\nlevel = "WARNING"\n',
        encoding="utf-8",
    )
    return path


async def start_bot(
    config: Path, api: BotApiStandIn, crash_at: str | None = None
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


async def kill_9(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL: no shutdown hook, no final persistence flush."""
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    assert proc.returncode == -signal.SIGKILL


async def test_conversation_survives_kill_9(api: BotApiStandIn, db_url: str, tmp_path: Path):
    config = write_config(tmp_path / "config.toml", api, db_url)
    proc = await start_bot(config, api)
    try:
        anna, binh = api_user(api, 501), api_user(api, 502)
        await agree(anna)
        await anna.send("Lò Thị Mai")
        await anna.send("1/2/1960")
        await agree(binh)
        await binh.send("Giàng A Páo")
        await kill_9(proc)

        proc = await start_bot(config, api)
        await anna.press(t("vi", "gender.female"))  # the next question's button still works
        assert t("vi", "ask.id_number") in anna.last_text
        await anna.send("010160001234")
        assert t("vi", "ask.phone") in anna.last_text
        await binh.send("15/3/1950")  # continues at the date of birth
        assert t("vi", "ask.gender") in binh.last_text
        await kill_9(proc)

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
            account = await session.scalar(select(Account).where(Account.external_id == "501"))
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


def api_user(api: BotApiStandIn, uid: int) -> ChatDriver:
    return ChatDriver(api, TgUser(id=uid, first_name="P", language_code="vi"))


CRASH_UPDATE = 10_000  # the update id the bot dies on (the stand-in numbers the others below it)


async def killed_at(point: str, api: BotApiStandIn, config: Path, person: ChatDriver) -> None:
    """Start a bot that dies at ``point`` of the turn of ``person``'s date of birth (after the
    consent and the name), send that date and see it die."""
    proc = await start_bot(config, api, crash_at=f"{point}:{CRASH_UPDATE}")
    try:
        await agree(person)
        await person.send("Lò Thị Mai")
        assert t("vi", "ask.date_of_birth") in person.last_text
        date = {"update_id": CRASH_UPDATE, **text_message(person.user, "1/2/1960")}
        await person.push(date, expect_reply=False)
        assert await asyncio.wait_for(proc.wait(), 30) == -signal.SIGKILL
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert t("vi", "ask.date_of_birth") in person.last_text  # no answer came


async def stored(db_url: str, external_id: str) -> dict[str, Any]:
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
            applied = await session.get(HandledUpdate, ("telegram", str(CRASH_UPDATE)))
            return {**draft.answers, "crash_update_applied": applied is not None}
    finally:
        await engine.dispose()


async def confirmed(api: BotApiStandIn) -> None:
    """Until the bot has confirmed every update Telegram holds (it asks for the next ones)."""
    for _ in range(400):
        if api.stats()["pending_updates"] == 0:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"{api.stats()['pending_updates']} updates were never confirmed")


def sent_texts(person: ChatDriver, after: int) -> list[str]:
    """Texts the bot sent to ``person`` after call number ``after``."""
    return [
        str(c.params.get("text"))
        for c in person.api.chat_calls(person.chat_id, after_seq=after)
        if c.method == "sendMessage"
    ]


async def test_kill_while_the_transaction_is_open(api: BotApiStandIn, db_url: str, tmp_path):
    config = write_config(tmp_path / "config.toml", api, db_url)
    anna = api_user(api, 601)
    await killed_at("before_commit", api, config, anna)
    answers = await stored(db_url, "601")
    assert answers["full_name"] == "Lò Thị Mai"
    assert "date_of_birth" not in answers  # rolled back with the transaction
    assert not answers["crash_update_applied"]
    assert api.stats()["pending_updates"] >= 1  # never confirmed: Telegram still holds it

    after = api.seq
    proc = await start_bot(config, api)  # Telegram (the stand-in) gives the date again
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
    answers = await stored(db_url, "601")
    assert answers["date_of_birth"] == "1960-02-01" and answers["gender"] == "female"


async def test_kill_after_commit_before_the_reply(api: BotApiStandIn, db_url: str, tmp_path):
    config = write_config(tmp_path / "config.toml", api, db_url)
    anna = api_user(api, 602)
    await killed_at("after_commit", api, config, anna)
    answers = await stored(db_url, "602")
    assert answers["date_of_birth"] == "1960-02-01"  # committed, though never acknowledged
    assert answers["crash_update_applied"]
    assert api.stats()["pending_updates"] >= 1  # never confirmed: Telegram still holds it

    after = api.seq
    proc = await start_bot(config, api)  # Telegram (the stand-in) gives the date again:
    try:
        await confirmed(api)  # recognised as applied: skipped, and nothing is said
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
    answers = await stored(db_url, "602")
    assert answers["date_of_birth"] == "1960-02-01" and answers["gender"] == "female"
