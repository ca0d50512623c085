"""Defects found in review of issue 8 (reminders, dispatcher, after-care, broadcasts), each
with the behaviour expected."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from handlers import aftercare
from models import aftercare as ac
from models import healthbook as hb
from models.tables import Account, Broadcast, Reaction
from tests.conftest import ChatHarness, Harness
from tests.flows import t
from tests.test_aftercare import at_checkin


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


async def test_reactions_are_sorted_and_cut_by_the_database(chat_sample: ChatHarness) -> None:
    """/reactions shows the first 30 reports (serious first, newest first) and counts the
    rest: a week of a province's answers is never loaded whole."""
    h = chat_sample
    s = await at_checkin(h)
    await s.person.press(t("vi", "aftercare.button.serious"))
    async with h.session() as session, session.begin():
        [serious] = (await session.scalars(select(Reaction))).all()
        for minutes in range(40):
            session.add(
                Reaction(
                    booking_id=serious.booking_id, health_book_id=serious.health_book_id,
                    site_id=serious.site_id, dose=1, severity="fine",
                    reported_at=h.clock() - dt.timedelta(minutes=minutes + 1),
                )
            )
    async with h.session() as session:
        admin = Account(channel="telegram", external_id="0", role="admin")
        shown = await ac.recent_reports(session, admin, h.clock(), limit=aftercare.SHOWN_REPORTS)
        total = await ac.count_reports(session, admin, h.clock())
    assert len(shown) == aftercare.SHOWN_REPORTS and total == 41
    assert shown[0].reaction.id == serious.id  # serious first
    fine = [r.reaction.reported_at for r in shown[1:]]
    assert fine == sorted(fine, reverse=True)  # then the newest
    await s.staff.send("/reactions")
    text = s.staff.last_text or ""
    assert t("vi", "aftercare.reports_more", count=41 - aftercare.SHOWN_REPORTS) in text
