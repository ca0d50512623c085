"""A bot killed with SIGKILL mid-conversation continues where each person was, answers kept."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from sqlalchemy import select

from bot.db import create_engine, session_factory
from bot.standin import BotApiStandIn
from models.tables import Account, Draft
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


async def start_bot(config: Path, api: BotApiStandIn) -> asyncio.subprocess.Process:
    """`healthbook run --config FILE` in its own process; returns once it polls the stand-in."""
    seen = len([c for c in api.calls if c.method == "getUpdates"])
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
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


def api_user(api: BotApiStandIn, uid: int):
    from bot.standin import ChatDriver, TgUser

    return ChatDriver(api, TgUser(id=uid, first_name="P", language_code="vi"))
