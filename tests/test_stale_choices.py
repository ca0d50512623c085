"""An old choice answered after the booking changed says what is true: "keep" of a booking that
was cancelled since does not say it was kept."""

from __future__ import annotations

from tests.conftest import ChatHarness
from tests.flows import t
from tests.test_booking_e2e import book_first_place, younger_person


async def test_keep_typed_after_the_cancel_does_not_say_kept(zsample: ChatHarness) -> None:
    """On Zalo the cancel confirmation's numbers are still open after "Yes, cancel": a "2"
    (No, keep) typed then must not tell the person their cancelled booking was kept."""
    h = zsample
    person = await younger_person(h, "969696")
    await book_first_place(person)
    await person.send("/appointments")
    await person.press(t("vi", "appointments.button_cancel"))
    await person.press(t("vi", "appointments.button_cancel_yes"))
    await person.send("2")
    said = person.last_answer or ""
    assert t("vi", "appointments.kept") not in said
    assert t("vi", "booking.not_active", status="").split("(")[0].strip() in said, said
