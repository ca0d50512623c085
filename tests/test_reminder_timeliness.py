"""An appointment reminder is not sent after the appointment's day (a dispatcher that was
down drops it rather than say "today…" of yesterday)."""

from __future__ import annotations

import datetime as dt

from tests.conftest import ChatHarness
from tests.flows import send_due
from tests.test_booking_e2e import book_first_place, younger_person
from tests.test_reminders_e2e import (
    THURSDAY,
    advance_to,
    eve_marker,
    local,
    morning_marker,
    received,
)


async def test_an_appointment_reminder_is_not_sent_after_its_day(
    chat_sample: ChatHarness,
) -> None:
    """The dispatcher was down from Wednesday afternoon to Friday morning: neither the evening
    nor the morning reminder of Thursday's appointment goes on Friday."""
    h = chat_sample
    person = await younger_person(h, "949494")
    await book_first_place(person)
    advance_to(h, local(h, THURSDAY + dt.timedelta(days=1), 8))
    await send_due(h)
    assert received(h, person, eve_marker()) == []
    assert received(h, person, morning_marker()) == []
