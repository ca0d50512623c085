"""Defects found in review of issue 8 (reminders, dispatcher, after-care, broadcasts), each
with the behaviour expected."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from models import healthbook as hb
from models.tables import Broadcast
from tests.conftest import Harness


async def test_delete_forgets_where_an_admins_broadcast_progress_is_shown(bot: Harness) -> None:
    """/delete of an admin: their broadcasts stay (the text is the province's), but not their
    chat id, and no progress message goes to that chat any more."""
    async with bot.session() as session, session.begin():
        admin = await hb.ensure_account(session, "telegram", "7777001", "vi")
        admin.role = "admin"
        await session.flush()
        session.add(
            Broadcast(
                text="Lịch tiêm tuần sau", audience="everyone", audience_params={},
                created_by=admin.id, total=3, status="sending", progress_shown={},
                progress_channel="telegram", progress_chat="7777001", progress_message="42",
                created_at=dt.datetime.now(dt.UTC),
            )
        )
    async with bot.session() as session, session.begin():
        found = await hb.find_account(session, "telegram", "7777001")
        assert found is not None
        await hb.erase_account(session, found)
    async with bot.session() as session:
        [kept] = (await session.scalars(select(Broadcast))).all()
    assert kept.text == "Lịch tiêm tuần sau"
    assert (kept.progress_channel, kept.progress_chat, kept.progress_message) == (None, None, None)
