"""Reminders end to end, on Telegram and on Zalo: planned by what people do through the bot,
sent by the dispatcher (``send_due``: one pass of bot.dispatch.drain) only once the harness
clock has passed their local time, and answered by button or by typed number.

The harness clock starts on Wednesday 2026-11-25 at 10:00 in Lào Cai; sample sessions are on
weekday mornings, 07:30–11:30."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select, update

from bot.standin.zalo import ZaloChatDriver, numbered_options
from handlers.common import timing
from handlers.reminders import unfinished_job
from models import booking as bk
from models import checkin as ci
from models import healthbook as hb
from models import lookups as lk
from models import reminders as rm
from models.tables import Account, Booking, Draft, OutboxMessage, Session
from tests.conftest import ChatHarness
from tests.flows import Person, agree, channel_of, resident, send_due, t
from tests.test_booking_e2e import book_first_place, younger_person

WEDNESDAY = dt.date(2026, 11, 25)
THURSDAY = dt.date(2026, 11, 26)
SA_PA = "Trạm Y tế phường Sa Pa"


def local(h: ChatHarness, day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=h.services.tz).astimezone(dt.UTC)


def advance_to(h: ChatHarness, when: dt.datetime) -> None:
    """Move the clock forward to ``when`` (never back)."""
    delta = when - h.clock()
    assert delta >= dt.timedelta(0)
    h.clock.advance(seconds=delta.total_seconds())


def received(h: ChatHarness, person: Person, marker: str) -> list[dict[str, Any]]:
    """The bot's messages to a person whose text contains ``marker``."""
    return [m for m in h.api.messages(person.user.id) if marker in (m.get("text") or "")]


def eve_marker(lang: str = "vi") -> str:
    return t(lang, "reminder.appointment_eve", day="", site="", address="", hours="", code="",
             campaign="", dose="").split(":")[0]


def morning_marker(lang: str = "vi") -> str:
    return t(lang, "reminder.appointment_morning", day="", site="", address="", hours="",
             code="", campaign="", dose="").split(",")[0]


async def answer(person: Person, message: dict[str, Any], label: str) -> None:
    """Answer a reminder: its button on Telegram, its number typed on Zalo."""
    if isinstance(person, ZaloChatDriver):
        numbers = {text: n for n, text in numbered_options([message["text"]])}
        await person.send(numbers[label])
        return
    rows = message["reply_markup"]["inline_keyboard"]
    data = next(b["callback_data"] for row in rows for b in row if b["text"] == label)
    await person.press_data(data, message=message)


async def the_booking(h: ChatHarness) -> Booking:
    async with h.session() as session:
        [booking] = (await session.scalars(select(Booking))).all()
        return booking


async def session_day(h: ChatHarness, booking: Booking) -> Session:
    async with h.session() as session:
        slot = await session.get(Session, booking.session_id)
        assert slot is not None
        return slot


async def outbox_rows(h: ChatHarness) -> list[OutboxMessage]:
    async with h.session() as session:
        return list((await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all())


async def test_appointment_reminders_at_local_time_with_their_choices(
    chat_sample: ChatHarness,
) -> None:
    h = chat_sample
    person = await younger_person(h, "101010")
    await book_first_place(person)
    booking = await the_booking(h)
    slot = await session_day(h, booking)
    assert slot.date == THURSDAY
    await send_due(h)
    assert received(h, person, eve_marker()) == []
    advance_to(h, local(h, WEDNESDAY, 17, 59))
    await send_due(h)
    assert received(h, person, eve_marker()) == []  # not a minute early
    h.clock.advance(minutes=1)
    await send_due(h)
    [eve] = received(h, person, eve_marker())
    for part in (SA_PA, booking.code, "07:30–11:30", "căn cước công dân", "bảo hiểm y tế"):
        assert part in eve["text"]
    assert t("vi", "date.format", weekday="", date="26/11/2026").strip(", ") in eve["text"]
    await send_due(h)
    assert len(received(h, person, eve_marker())) == 1  # sent once
    # someone else cannot answer it with its code
    intruder = await younger_person(h, "101011")
    await intruder.press_data(f"rm:ok:{booking.id}")
    if h.channel == "telegram":
        assert intruder.callback_answers[-1] == t("vi", "booking.not_yours")
    assert not received(h, intruder, t("vi", "reminder.coming_thanks"))
    # "I'll come": a short thanks, the reminder's choices closed
    await answer(person, eve, t("vi", "reminder.button_coming"))
    assert t("vi", "reminder.coming_thanks") in (
        person.texts[-1] if h.channel == "telegram" else person.last_answer or ""
    )
    if h.channel == "telegram":
        assert "reply_markup" not in person.messages[-1] or not person.messages[-1][
            "reply_markup"
        ].get("inline_keyboard")
    # the morning one goes at 06:30, in the quiet hours: a same-day reminder may
    advance_to(h, local(h, THURSDAY, 6, 29))
    await send_due(h)
    assert received(h, person, morning_marker()) == []
    h.clock.advance(minutes=1)
    await send_due(h)
    [morning] = received(h, person, morning_marker())
    assert booking.code in morning["text"]


async def test_a_cancelled_appointment_is_not_reminded(chat_sample: ChatHarness) -> None:
    h = chat_sample
    person = await younger_person(h, "202020")
    await book_first_place(person)
    await person.send("/appointments")
    await person.press(t("vi", "appointments.button_cancel"))
    await person.press(t("vi", "appointments.button_cancel_yes"))
    advance_to(h, local(h, THURSDAY, 7))
    await send_due(h)
    assert received(h, person, eve_marker()) == []
    assert received(h, person, morning_marker()) == []
    assert {r.status for r in await outbox_rows(h)} == {"cancelled"}


async def test_cancel_from_the_reminder(chat_sample: ChatHarness) -> None:
    """"Cancel booking" in the reminder: the /appointments confirmation, then cancelled; the
    morning reminder is not sent."""
    h = chat_sample
    person = await younger_person(h, "202021")
    await book_first_place(person)
    advance_to(h, local(h, WEDNESDAY, 18))
    await send_due(h)
    [eve] = received(h, person, eve_marker())
    await answer(person, eve, t("vi", "reminder.button_cancel_booking"))
    await person.press(t("vi", "appointments.button_cancel_yes"))
    assert (await the_booking(h)).status == "cancelled"
    advance_to(h, local(h, THURSDAY, 7))
    await send_due(h)
    assert received(h, person, morning_marker()) == []


async def test_a_rescheduled_appointment_is_reminded_for_its_new_day(
    chat_sample: ChatHarness,
) -> None:
    h = chat_sample
    person = await younger_person(h, "303030")
    await book_first_place(person)
    advance_to(h, local(h, WEDNESDAY, 18))
    await send_due(h)
    [eve] = received(h, person, eve_marker())
    # "Reschedule" from the reminder: the /appointments flow, another day
    await answer(person, eve, t("vi", "appointments.button_reschedule"))
    await person.press(person.buttons[1])  # the second day offered: Friday
    await person.press(person.buttons[0])
    booking = await the_booking(h)
    slot = await session_day(h, booking)
    assert slot.date == dt.date(2026, 11, 27)
    advance_to(h, local(h, THURSDAY, 7))
    await send_due(h)
    assert received(h, person, morning_marker()) == []  # Thursday's is gone
    advance_to(h, local(h, THURSDAY, 18))
    await send_due(h)
    eves = received(h, person, eve_marker())
    assert len(eves) == 2 and "27/11/2026" in eves[-1]["text"]


async def test_reminders_set_replans_what_is_pending(chat_sample: ChatHarness) -> None:
    """An admin moves the evening reminder to 20:00 (as ``healthbook reminders set`` does):
    the pending one goes at 20:00, not 18:00; with a text of its own for Vietnamese."""
    h = chat_sample
    person = await younger_person(h, "404040")
    await book_first_place(person)
    async with h.session() as session, session.begin():
        await rm.set_rule(
            session, "appointment_eve", delivery_time=dt.time(20, 0),
            texts={"vi": "Nhắc: mai {day} tiêm ở {site}, mã {code}."},
        )
        assert await rm.replan_kind(session, "appointment_eve", timing(h.services)) == (1, 0)
    booking = await the_booking(h)
    advance_to(h, local(h, WEDNESDAY, 19, 59))
    await send_due(h)
    assert received(h, person, "Nhắc: mai") == []
    h.clock.advance(minutes=1)
    await send_due(h)
    [eve] = received(h, person, "Nhắc: mai")
    assert f"ở {SA_PA}, mã {booking.code}." in eve["text"]


async def test_quiet_hours_hold_a_reminder_until_morning(chat_sample: ChatHarness) -> None:
    """The evening one set at 22:00 waits for 07:00, on the appointment's own day: it then
    says "today", not "tomorrow" (the morning one is off here, else it would say it)."""
    h = chat_sample
    async with h.session() as session, session.begin():
        await rm.set_rule(session, "appointment_eve", delivery_time=dt.time(22, 0))
        await rm.set_rule(session, "appointment_morning", active=False)
    person = await younger_person(h, "505050")
    await book_first_place(person)
    advance_to(h, local(h, WEDNESDAY, 23))
    await send_due(h)
    assert received(h, person, "⏰") == []
    advance_to(h, local(h, THURSDAY, 6, 59))
    await send_due(h)
    assert received(h, person, "⏰") == []
    h.clock.advance(minutes=1)
    await send_due(h)
    [held] = received(h, person, "⏰")
    assert held["text"].startswith(morning_marker())  # "⏰ Hôm nay, Thứ Năm, 26/11/2026"
    assert "26/11/2026" in held["text"] and eve_marker() not in held["text"]


async def test_a_held_evening_reminder_after_the_morning_one_is_not_sent(
    chat_sample: ChatHarness,
) -> None:
    """Evening one at 21:30, held to 07:00; the morning one went at 06:30: one reminder, not
    a second that says "tomorrow" on the day."""
    h = chat_sample
    async with h.session() as session, session.begin():
        await rm.set_rule(session, "appointment_eve", delivery_time=dt.time(21, 30))
    person = await younger_person(h, "505051")
    await book_first_place(person)
    advance_to(h, local(h, THURSDAY, 6, 30))
    await send_due(h)
    assert len(received(h, person, morning_marker())) == 1
    advance_to(h, local(h, THURSDAY, 7))
    await send_due(h)
    assert len(received(h, person, "⏰")) == 1
    assert received(h, person, eve_marker()) == []
    kinds = {row.kind: row.status for row in await outbox_rows(h)}
    assert kinds["appointment_eve"] == "cancelled" and kinds["appointment_morning"] == "sent"


async def test_a_held_evening_reminder_due_with_the_morning_one_is_not_sent(
    chat_sample: ChatHarness,
) -> None:
    """The morning one moved to 07:00, the evening one held to 07:00: both due at once, one goes."""
    h = chat_sample
    async with h.session() as session, session.begin():
        await rm.set_rule(session, "appointment_eve", delivery_time=dt.time(22, 0))
        await rm.set_rule(session, "appointment_morning", delivery_time=dt.time(7, 0))
    person = await younger_person(h, "505052")
    await book_first_place(person)
    advance_to(h, local(h, THURSDAY, 7))
    await send_due(h)
    [one] = received(h, person, "⏰")
    assert one["text"].startswith(morning_marker())


async def test_a_morning_rule_moved_to_the_day_before_says_tomorrow(
    chat_sample: ChatHarness,
) -> None:
    """Words follow the day it is sent: the "morning" rule set to 18:00 the day before says
    "tomorrow"."""
    h = chat_sample
    async with h.session() as session, session.begin():
        await rm.set_rule(session, "appointment_eve", active=False)
        await rm.set_rule(session, "appointment_morning", offset=-1, delivery_time=dt.time(18))
    person = await younger_person(h, "505053")
    await book_first_place(person)
    advance_to(h, local(h, WEDNESDAY, 18))
    await send_due(h)
    [one] = received(h, person, "⏰")
    assert one["text"].startswith(eve_marker()) and "26/11/2026" in one["text"]


async def _record_first_dose(h: ChatHarness, person: Person) -> int:
    """Dose 1 of COVID-19 (Pfizer) given today at Sa Pa, recorded by an admin; returns the
    health book's id."""
    today = h.services.today()
    async with h.session() as session, session.begin():
        account = await hb.find_account(session, channel_of(person), str(person.user.id))
        assert account is not None
        book = await hb.own_book(session, account)
        assert book is not None
        site = await lk.get_site(session, "LC-TYT-SAPA")
        slot = await session.scalar(
            select(Session).where(Session.site_id == site.id, Session.date == today).limit(1)
        )
        assert slot is not None
        booking = await bk.book(session, book.id, slot.id, "covid19_2021", None, today)
        admin = Account(channel="telegram", external_id="999", role="admin", locale="vi")
        session.add(admin)
        await session.flush()
        await ci.check_in(session, admin, booking.code, h.services.now())
        window = await ci.record_dose(
            session, admin, booking.id, "pfizer", "FP1", h.services.now(),
            timing=timing(h.services),
        )
        assert window is not None and window.dose == 2
        return book.id


async def test_next_dose_due_then_booked_drops_the_second_reminder(
    chat_sample: ChatHarness,
) -> None:
    h = chat_sample
    person = await resident(h, "606060")
    book_id = await _record_first_dose(h, person)
    async with h.session() as session:
        [due, again] = (
            await session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.kind.in_(rm.DOSE_DUE))
                .order_by(OutboxMessage.due_at)
            )
        ).all()
    earliest = (due.due_at.replace(tzinfo=dt.UTC) if due.due_at.tzinfo is None else due.due_at)
    first_day = earliest.astimezone(h.services.tz).date()
    assert first_day == dt.date(2026, 12, 16)  # Pfizer: 21 days after dose 1
    marker = t("vi", "reminder.dose_due", dose=2, campaign="", earliest="", latest="")[:25]
    advance_to(h, local(h, first_day, 7, 59))
    await send_due(h)
    assert received(h, person, marker) == []
    h.clock.advance(minutes=1)
    await send_due(h)
    [reminder] = received(h, person, marker)
    assert "16/12/2026" in reminder["text"]
    # the campaign on a line of its own: no "mũi 2 (Tiêm vắc xin phòng COVID-19 (2021))"
    assert "mũi 2.\nTiêm vắc xin phòng COVID-19 (2021)\n" in reminder["text"]
    assert "(Tiêm" not in reminder["text"]
    # "Book dose 2": the booking of that campaign, at the sites
    await answer(person, reminder, t("vi", "reminder.button_book_dose", dose=2))
    assert any(t("vi", "book.ask_site", days=14) in x for x in person.texts[-3:])
    # dose 2 booked: the reminder a week later is dropped, not sent
    async with h.session() as session, session.begin():
        site = await lk.get_site(session, "LC-TYT-SAPA")
        slot = await session.scalar(
            select(Session)
            .where(Session.site_id == site.id, Session.date > first_day)
            .order_by(Session.date)
            .limit(1)
        )
        assert slot is not None
        await bk.book(session, book_id, slot.id, "covid19_2021", 2, h.services.today())
    again_marker = t("vi", "reminder.dose_due_again", dose=2, campaign="", earliest="",
                     latest="")[:25]
    advance_to(h, local(h, first_day + dt.timedelta(days=7), 9))
    await send_due(h)
    assert received(h, person, again_marker) == []
    async with h.session() as session:
        row = await session.get(OutboxMessage, again.id)
        assert row is not None and (row.status, row.error) == ("cancelled", "no longer applies")


async def test_an_unfinished_health_book_is_reminded_once_and_continued(
    chat_bot: ChatHarness,
) -> None:
    h = chat_bot
    person = h.user()
    await agree(person)
    await person.send("Lò Văn Páo")
    assert t("vi", "ask.date_of_birth") in (person.last_text or "")
    async with h.session() as session, session.begin():  # the draft's time, on the test clock
        await session.execute(update(Draft).values(updated_at=h.clock()))
    marker = t("vi", "reminder.healthbook_unfinished")[:20]

    async def minute() -> None:  # what the job queue and the dispatcher do every minute
        await unfinished_job(_JobContext(h))  # type: ignore[arg-type]
        await send_due(h)

    h.clock.advance(hours=23, minutes=59)
    await minute()
    assert received(h, person, marker) == []
    h.clock.advance(minutes=1)
    await minute()
    [reminder] = received(h, person, marker)
    h.clock.advance(days=2)
    await minute()
    assert len(received(h, person, marker)) == 1  # once
    await answer(person, reminder, t("vi", "reminder.button_continue"))
    assert t("vi", "resume.welcome_back") in " ".join(person.texts[-3:])
    assert t("vi", "ask.date_of_birth") in (person.last_text or "")


async def test_mydata_lists_and_delete_removes_pending_reminders(
    chat_sample: ChatHarness,
) -> None:
    h = chat_sample
    person = await younger_person(h, "707070")
    await book_first_place(person)
    assert len([r for r in await outbox_rows(h) if r.status == "pending"]) == 2
    await person.send("/mydata")
    said = "\n".join(person.texts[-6:])
    assert t("vi", "mydata.reminders", count=2) in said
    assert t("vi", "reminder.kind.appointment_eve") in said
    await person.send("/delete")
    assert t("vi", "delete.item.reminders", count=2) in "\n".join(person.texts[-2:])
    await person.press(t("vi", "button.delete_yes"))
    async with h.session() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
    advance_to(h, local(h, THURSDAY, 7))
    await send_due(h)
    assert received(h, person, eve_marker()) == []


class _JobContext:
    """What a job callback uses: the services."""

    def __init__(self, h: ChatHarness) -> None:
        self.bot = h.app.bot
        self.services = h.services
