"""A notice sent by the dispatcher reads in its recipient's language throughout: on Zalo the
line under its numbered choices too (not the bot's default language)."""

from __future__ import annotations

from tests.conftest import ChatHarness
from tests.flows import send_due, t
from tests.test_booking_e2e import book_first_place, younger_person
from tests.test_reminders_e2e import (
    WEDNESDAY,
    advance_to,
    eve_marker,
    local,
    received,
)


async def test_an_english_reminder_on_zalo_says_how_to_answer_in_english(
    zsample: ChatHarness,
) -> None:
    h = zsample
    person = await younger_person(h, "919191", lang="en")
    await book_first_place(person, lang="en")
    advance_to(h, local(h, WEDNESDAY, 18))
    await send_due(h)
    [eve] = received(h, person, eve_marker("en"))
    assert eve["text"].endswith(t("en", "choice.hint", "zalo"))
    assert t("vi", "choice.hint", "zalo") not in eve["text"]

