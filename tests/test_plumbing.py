"""Units beside the end-to-end tests: log masking, per-user ordering, persistence."""

from __future__ import annotations

import asyncio
import logging

from telegram import Update

from bot.db import create_engine, session_factory, upgrade
from bot.logs import MaskingFilter, mask
from bot.persistence import SQLPersistence, WrittenStates, write_state
from bot.processor import PerUserUpdateProcessor


def test_mask_hides_ids_phones_insurance_and_tokens() -> None:
    line = (
        "cccd 010050001234 cmnd 063123456 phone +84912345678 0912345678 "
        "bhyt HT3010123456789 url https://api.telegram.org/bot123456:ABCdefGHIjklMNO/getMe"
    )
    masked = mask(line)
    for secret in ("010050001234", "063123456", "912345678", "3010123456789", "ABCdefGHIjklMNO"):
        assert secret not in masked
    assert "010******234" in masked


def test_masking_filter_rewrites_records() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "id %s", ("010050001234",), None)
    assert MaskingFilter().filter(record)
    assert "010050001234" not in record.getMessage()


def _update(uid: int, n: int) -> Update:
    return Update.de_json(
        {
            "update_id": n,
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


async def test_processor_orders_each_users_updates_and_forgets_them() -> None:
    processor = PerUserUpdateProcessor(64, max_pending=64)
    seen: dict[int, list[int]] = {1: [], 2: []}
    running: set[int] = set()
    overlap = []

    async def handle(uid: int, n: int) -> None:
        if uid in running:
            overlap.append(n)
        running.add(uid)
        await asyncio.sleep(0.001 * (n % 3))
        seen[uid].append(n)
        running.discard(uid)

    await asyncio.gather(
        *(
            processor.process_update(_update(uid, n), handle(uid, n))
            for n in range(30)
            for uid in (1, 2)
        )
    )
    assert seen[1] == list(range(30)) and seen[2] == list(range(30))
    assert not overlap
    assert processor._people == {}  # nothing kept once people are done


async def test_persistence_round_trip(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        await upgrade(engine)
        sessions = session_factory(engine)
        async with sessions() as session, session.begin():
            await write_state(session, "hb", (7, 7), "gender")
            await write_state(session, "hb", (8, 8), "ward")
        async with sessions() as session, session.begin():
            await write_state(session, "hb", (7, 7), "id_number")  # upsert
            await write_state(session, "hb", (8, 8), None)  # ended
        persistence = SQLPersistence(sessions)
        assert await persistence.get_conversations("hb") == {(7, 7): "id_number"}
        await persistence.update_conversation("hb", (9, 9), "phone")
        assert await persistence.get_conversations("hb") == {(7, 7): "id_number", (9, 9): "phone"}
        assert await persistence.get_conversations("other") == {}
    finally:
        await engine.dispose()


def test_written_states_are_bounded() -> None:
    states = WrittenStates(size=3)
    for uid in range(10):
        states.written("hb", (uid, uid), "name")
    assert states.unchanged("hb", (9, 9), "name")
    assert not states.unchanged("hb", (0, 0), "name")  # evicted: written again next time
    assert not states.unchanged("hb", (9, 9), "ward")


async def test_application_keeps_no_id_per_person(bot) -> None:
    """PTB would remember every user id to persist their (unused) user data."""
    for _ in range(5):
        await bot.user().send("/help")
    assert not bot.app._user_ids_to_be_updated_in_persistence
    assert not bot.app._chat_ids_to_be_updated_in_persistence
    assert len(bot.app.user_data) == 0
