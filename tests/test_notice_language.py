"""A notice sent by the dispatcher reads in its recipient's language throughout: on Zalo the
line under its numbered choices too (not the bot's default language)."""

from __future__ import annotations

import datetime as dt

from tests.conftest import ChatHarness
from tests.flows import send_due, t
from tests.test_booking_e2e import book_first_place, younger_person
from tests.test_reminders_e2e import (
    WEDNESDAY,
    advance_to,
    eve_marker,
    local,
    morning_marker,
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


async def test_the_appointment_reminders_name_the_campaign_once_in_vietnamese(
    chat_sample: ChatHarness,
) -> None:
    """Campaign names start with "Tiêm vắc xin …": the reminder must not read "lịch tiêm Tiêm
    vắc xin …" (the booking ticket puts the name on a line of its own too)."""
    h = chat_sample
    person = await younger_person(h, "929293")
    await book_first_place(person)
    advance_to(h, local(h, WEDNESDAY, 18))
    await send_due(h)
    advance_to(h, local(h, WEDNESDAY, 18) + dt.timedelta(hours=12, minutes=30))
    await send_due(h)
    [eve] = received(h, person, eve_marker())
    [morning] = received(h, person, morning_marker())
    for message in (eve, morning):
        assert "Tiêm vắc xin phòng COVID-19 (2021), mũi 1" in message["text"]
        assert "tiêm Tiêm" not in message["text"]
