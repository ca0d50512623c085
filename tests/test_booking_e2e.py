"""End to end: /book, the ticket, /appointments (reschedule, cancel), the waitlist offer."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from bot.standin.zalo import ZaloChatDriver, numbered_options
from models import lookups as lk
from models import validators as v
from models.tables import Booking, Session, Site, WaitlistEntry
from tests.conftest import ChatHarness
from tests.flows import Person, agree, answer_screening, question, send_due, t, told

TODAY = dt.date(2026, 11, 25)  # the harness clock: 2026-11-25 10:00 in Lào Cai


async def younger_person(
    chat_bot: ChatHarness, uid_digits: str = "001234", lang: str = "vi"
) -> Person:
    """A health book of someone born in 1990 in Phường Sa Pa (no caution group)."""
    person = chat_bot.user(lang=lang)
    await agree(person, lang)
    await person.send("Lò Văn Páo")
    await person.send("15/3/1990")
    await person.press(t(lang, "gender.male"))
    await person.send(f"010090{uid_digits}")
    await person.send(t(lang, "button.no_phone"))
    await person.press(t(lang, "button.skip"))
    await person.send("hmong")
    await person.press(t(lang, "occupation.farmer"))
    await person.press(t(lang, "priority.none"))
    await person.press("Lào Cai")
    await person.send("sa pa")
    await person.press(t(lang, "button.skip"))
    await answer_screening(person, lang)
    await person.press(t(lang, "button.save"))
    assert t(lang, "saved.new") in person.last_text
    return person


async def one_place_left_at_sa_pa(chat_bot: ChatHarness) -> None:
    """Every session at Sa Pa full but the first one after today, which has a single place."""
    async with chat_bot.session() as session, session.begin():
        sa_pa = await lk.get_site(session, "LC-TYT-SAPA")
        await session.execute(
            Session.__table__.update().where(Session.site_id == sa_pa.id).values(capacity=0)
        )
        first = (
            await session.scalars(
                select(Session)
                .where(Session.site_id == sa_pa.id, Session.date > TODAY)
                .order_by(Session.date, Session.id)
            )
        ).first()
        assert first is not None
        first.capacity = 1


async def book_first_place(person: Person, lang: str = "vi") -> None:
    await person.send("/book")
    await person.press("COVID-19")
    assert t(lang, "book.ask_site", days=14) in person.texts[-2]
    await person.press("Sa Pa")  # own commune first
    assert t(lang, "book.ask_day", site="Trạm Y tế phường Sa Pa") in person.last_text
    await person.press(person.buttons[0])
    await person.press(person.buttons[0])
    assert "Trạm Y tế phường Sa Pa" in person.last_text
    await person.press(t(lang, "book.button_confirm"))


async def active_bookings(chat_bot: ChatHarness) -> list[Booking]:
    async with chat_bot.session() as session:
        return list(
            (await session.scalars(select(Booking).where(Booking.status == "booked"))).all()
        )


async def test_book_a_place_and_get_a_ticket(chat_sample: ChatHarness) -> None:
    chat_bot = chat_sample
    person = await younger_person(chat_bot)
    await book_first_place(person)
    [booking] = await active_bookings(chat_bot)
    assert any(booking.code in x for x in person.texts)
    if chat_bot.channel == "zalo":  # the QR by URL, which Zalo fetched; the site as a map link
        photo = next(m for m in person.messages if "photo" in m)
        assert booking.code in photo["caption"]
        assert photo["fetched"].ok and photo["fetched"].content_type == "image/png"
        assert any("openstreetmap.org" in x for x in person.texts)
    else:
        call = next(c for c in reversed(chat_bot.api.calls) if c.method == "sendPhoto")
        assert call.params["photo"].content.startswith(b"\x89PNG")
        assert booking.code in call.params["caption"]
        assert any(c.method == "sendLocation" for c in chat_bot.api.calls)
    ticket = next(x for x in person.texts if "PHIẾU HẸN" in x)
    assert "Thứ" in ticket and "07:30–11:30" in ticket and "căn cước" in ticket
    async with chat_bot.session() as session:
        slot = await session.get(Session, booking.session_id)
        assert slot is not None and slot.booked == 1
    # a second /book for the same dose is refused as soon as the campaign is chosen
    await person.send("/book")
    await person.press("COVID-19")
    assert "Đã có lịch tiêm mũi 1" in person.last_text and booking.code in person.last_text
    assert t("vi", "book.ask_site", days=14) not in person.last_text  # no site list follows
    assert len(await active_bookings(chat_bot)) == 1


async def test_older_person_is_caution_at_the_usual_site(chat_sample: ChatHarness) -> None:
    from tests.flows import complete  # born 1950 in Phường Sa Pa: aged 65 or more

    person = chat_sample.user()
    await complete(person)
    await person.send("/book")
    await person.press("COVID-19")
    said = " ".join(person.texts)
    age = "• " + t("vi", "screening_short.age_65")  # the reason: age, not a declared item
    assert t("vi", "book.caution", reasons=age) in said
    assert t("vi", "book.refer_hospital", reasons=age).split(",")[0] not in said
    async with chat_sample.session() as session:
        stations = set(
            (await session.scalars(select(Site.name).where(Site.kind != "hospital"))).all()
        )
    # age alone is caution (3802): the own commune's station first, not a hospital 107 km away
    assert person.buttons[0].startswith("Trạm Y tế phường Sa Pa")
    assert stations & {b.split(" · ")[0] for b in person.buttons}


async def test_postpone_group_cannot_book(chat_sample: ChatHarness) -> None:
    person = chat_sample.user()
    await agree(person)
    await person.send("Lò Văn Páo")
    await person.send("15/3/1990")
    await person.press(t("vi", "gender.male"))
    await person.send("010090005555")
    await person.send(t("vi", "button.no_phone"))
    await person.press(t("vi", "button.skip"))
    await person.send("kinh")
    await person.press(t("vi", "occupation.farmer"))
    await person.press(t("vi", "priority.none"))
    await person.press("Lào Cai")
    await person.send("sa pa")
    await person.press(t("vi", "button.skip"))
    for item in v.screening_items():
        if item.applies(gender="male", age=None):
            yes = item.code == "acute_illness"
            await person.press(t("vi", "button.yes" if yes else "button.no"))
    await person.press(t("vi", "button.save"))
    await person.send("/book")
    await person.press("COVID-19")
    assert t("vi", "booking.screening_postpone") in person.last_text
    assert t("vi", "book.see_doctor") in person.last_text


async def test_reschedule_and_cancel(chat_sample: ChatHarness) -> None:
    chat_bot = chat_sample
    person = await younger_person(chat_bot)
    await book_first_place(person)
    [first] = await active_bookings(chat_bot)
    await person.send("/appointments")
    assert first.code in person.last_text
    await person.press(t("vi", "appointments.button_reschedule"))
    await person.press(person.buttons[1])  # another day
    await person.press(person.buttons[0])
    [moved] = await active_bookings(chat_bot)
    assert moved.id == first.id and moved.session_id != first.session_id
    async with chat_bot.session() as session:
        old = await session.get(Session, first.session_id)
        new = await session.get(Session, moved.session_id)
        assert old is not None and new is not None and (old.booked, new.booked) == (0, 1)
    await person.send("/appointments")
    await person.press(t("vi", "appointments.button_cancel"))
    await person.press(t("vi", "appointments.button_cancel_yes"))
    assert await active_bookings(chat_bot) == []
    async with chat_bot.session() as session:
        new = await session.get(Session, moved.session_id)
        assert new is not None and new.booked == 0


async def test_forged_appointment_buttons_change_nothing(chat_sample: ChatHarness) -> None:
    chat_bot = chat_sample
    owner = await younger_person(chat_bot, "001111")
    await book_first_place(owner)
    [booking] = await active_bookings(chat_bot)
    intruder = await younger_person(chat_bot, "002222")
    # every action on the owner's booking, by its id: refused on the button itself, before
    # anything of the owner's is shown (the domain would refuse the writes anyway)
    for forged in (
        f"ap:x:{booking.id}",
        f"ap:xx:{booking.id}",
        f"ap:k:{booking.id}",
        f"ap:r:{booking.id}",
        f"ap:rd:{booking.id}:{TODAY + dt.timedelta(days=1):%Y%m%d}",
        f"ap:rt:{booking.id}:{booking.session_id + 1}",
    ):
        calls = await intruder.press_data(forged)  # on Zalo: typed, and names no choice
        if chat_bot.channel == "telegram":
            assert [c.method for c in calls] == ["answerCallbackQuery"], forged
            assert intruder.callback_answers[-1] == t("vi", "booking.not_yours"), forged
        assert booking.code not in (intruder.last_answer or ""), forged
    if chat_bot.channel == "zalo":  # the intruder's own appointments: none, whatever is typed
        await intruder.send("/appointments")
        for typed in ("1", "2", "9", str(booking.id)):
            await intruder.send(typed)
    for forged in ("ap:xx:../../1", "wl:a:1", "bk:ok:1:999999"):
        await intruder.press_data(forged)
    assert not any(booking.code in text for text in intruder.texts)
    [after] = await active_bookings(chat_bot)
    assert (after.id, after.session_id) == (booking.id, booking.session_id)


async def test_full_session_waitlist_offer_and_take(chat_sample: ChatHarness) -> None:
    chat_bot = chat_sample
    first = await younger_person(chat_bot, "003333")
    second = await younger_person(chat_bot, "004444")
    await one_place_left_at_sa_pa(chat_bot)
    await book_first_place(first)
    await second.send("/book")
    await second.press("COVID-19")
    await second.press("Sa Pa")
    # every day of the site is full: the waitlist is offered
    assert t("vi", "book.no_days", site="Trạm Y tế phường Sa Pa", days=14) in second.last_text
    await second.press(t("vi", "book.button_waitlist_site"))
    assert t("vi", "waitlist.joined", hours=60) in second.texts
    # the first person cancels: the place is offered to the second, who takes it
    await first.send("/appointments")
    await first.press(t("vi", "appointments.button_cancel"))
    await first.press(t("vi", "appointments.button_cancel_yes"))
    await send_due(chat_bot)  # the offer goes through the outbox
    await take(second, offers(chat_bot, second)[-1])
    bookings = await active_bookings(chat_bot)
    assert len(bookings) == 1
    async with chat_bot.session() as session:
        entries = (await session.scalars(select(WaitlistEntry))).all()
        assert [e.status for e in entries] == ["accepted"]
        total = await session.scalar(select(func.sum(Session.booked)))
        assert total == 1


async def test_booking_in_english_with_location_and_typed_commune(chat_sample: ChatHarness) -> None:
    chat_bot = chat_sample
    person = await younger_person(chat_bot, "005555", lang="en")
    await person.send("/book")
    await person.press("COVID-19 vaccination")
    assert t("en", "book.ask_site", days=14) in person.last_answer
    if chat_bot.channel == "zalo":  # no location button: the commune is typed
        assert "type a commune name" in person.last_answer
        assert "location" not in person.last_answer
    else:
        assert any(b.get("request_location") for b in person.reply_buttons)
        await person.send_location(22.4963, 103.9697)  # in Phường Lào Cai
        assert person.buttons[0].startswith("Trạm Y tế phường Lào Cai")
        assert "km" in person.buttons[0]
    await person.send("bac ha")  # typed, without accents
    assert person.buttons == [b for b in person.buttons if "Bắc Hà" in b] and person.buttons
    await person.press("Bắc Hà")
    assert "Monday" in " ".join(person.buttons) or "Friday" in " ".join(person.buttons)
    await person.press(person.buttons[0])
    await person.press(person.buttons[0])
    await person.press(t("en", "book.button_confirm"))
    ticket = next(x for x in person.texts if "VACCINATION TICKET" in x)
    assert "Trạm Y tế xã Bắc Hà" in ticket and "citizen ID" in ticket


async def test_unanswered_offer_moves_to_the_next_person(chat_sample: ChatHarness) -> None:
    from handlers.booking import expire_offers_job

    chat_bot = chat_sample
    people = [await younger_person(chat_bot, f"00{n}777") for n in range(3)]
    await one_place_left_at_sa_pa(chat_bot)
    holder, waiting1, waiting2 = people
    await book_first_place(holder)
    for person in (waiting1, waiting2):
        await person.send("/book")
        await person.press("COVID-19")
        await person.press("Sa Pa")
        await person.press(t("vi", "book.button_waitlist_site"))
    await holder.send("/appointments")
    await holder.press(t("vi", "appointments.button_cancel"))
    await holder.press(t("vi", "appointments.button_cancel_yes"))
    await send_due(chat_bot)  # the offer goes through the outbox
    first_offer = offers(chat_bot, waiting1)
    assert first_offer and not offers(chat_bot, waiting2)
    chat_bot.clock.advance(minutes=61)  # nobody took it within the hold
    await expire_offers_job(_JobContext(chat_bot))  # what the job queue runs every minute
    await send_due(chat_bot)
    await chat_bot.idle()
    second_offer = offers(chat_bot, waiting2)
    assert second_offer
    await take(waiting1, first_offer[0])
    assert told(waiting1)[-1]  # told the offer is gone
    assert len(await active_bookings(chat_bot)) == 0
    await take(waiting2, second_offer[0])
    assert len(await active_bookings(chat_bot)) == 1


def offers(chat_bot: ChatHarness, person: Person) -> list[dict]:
    """The waitlist offers a person received."""
    return [m for m in chat_bot.api.messages(person.user.id) if "Có chỗ trống" in m.get("text", "")]


async def take(person: Person, offer: dict) -> None:
    """Press "take the place" on an offer (on Zalo: type its number)."""
    if isinstance(person, ZaloChatDriver):
        await person.send(numbered_options([offer["text"]])[0][0])
        return
    data = offer["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    await person.press_data(data, message=offer)


class _JobContext:
    """The two things a job callback uses: the chat_bot and the services."""

    def __init__(self, chat_bot: ChatHarness) -> None:
        self.bot = chat_bot.app.bot
        self.services = chat_bot.services


async def test_odd_input_mid_booking_keeps_the_step(chat_sample: ChatHarness) -> None:
    person = await younger_person(chat_sample, "006666")
    await person.send("/book")
    await person.press("COVID-19")
    await person.press("Sa Pa")
    await person.send_sticker()
    assert question(person.last_text) == t("vi", "book.use_buttons")
    await person.send("/help")  # the guide: its numbers while it is shown
    assert "/book" in person.last_text
    await person.press(t("vi", "guide.button.continue"))  # the days offered again
    assert question(person.last_text) == t("vi", "guide.continue")
    await person.press_data("bk:d:1:20990101")  # forged: a day with no session
    await person.press_data("bk:t:1:notanumber")
    await person.press(person.buttons[0])  # the real day buttons still work
    assert t("vi", "book.ask_time", day="", site="").split("{")[0][:10] in person.last_text


async def test_delete_gives_booked_places_back(chat_sample: ChatHarness) -> None:
    chat_bot = chat_sample
    person = await younger_person(chat_bot, "008888")
    await book_first_place(person)
    [booking] = await active_bookings(chat_bot)
    await person.send("/delete")
    await person.press(t("vi", "button.delete_yes"))
    async with chat_bot.session() as session:
        slot = await session.get(Session, booking.session_id)
        assert slot is not None and slot.booked == 0
        assert await session.scalar(select(func.count()).select_from(Booking)) == 0


async def join_sa_pa_waitlist(person: Person) -> None:
    """/book at Sa Pa, every day full: join the site's waitlist."""
    await person.send("/book")
    await person.press("COVID-19")
    await person.press("Sa Pa")
    await person.press(t("vi", "book.button_waitlist_site"))
    assert t("vi", "waitlist.joined", hours=60) in person.texts


async def test_held_place_found_again_in_appointments(chat_sample: ChatHarness) -> None:
    """A place offered while the person answers something else: once that question is
    answered its choices replace the offer's (on Zalo the offer's numbers are gone), and
    /appointments shows the held place again, taken there by its number or its button."""
    chat_bot = chat_sample
    first = await younger_person(chat_bot, "009111")
    second = await younger_person(chat_bot, "009222")
    await one_place_left_at_sa_pa(chat_bot)
    await book_first_place(first)
    await join_sa_pa_waitlist(second)
    # waiting: /appointments says so, with the site (not "no appointments")
    await second.send("/appointments")
    waiting = question(second.last_answer)
    assert t("vi", "appointments.none") not in waiting
    assert waiting.startswith("⏳") and "Trạm Y tế phường Sa Pa" in waiting
    assert t("vi", "appointments.waiting_any") in waiting
    # mid-way in something else: changing the occupation in the health book
    await second.send("/profile")
    await second.press(t("vi", "button.edit"))
    await second.press(t("vi", "button.edit_field", field=t("vi", "field.occupation")))
    asked = second.last_message
    # the place is freed and offered to the second person at that question
    await first.send("/appointments")
    await first.press(t("vi", "appointments.button_cancel"))
    await first.press(t("vi", "appointments.button_cancel_yes"))
    await send_due(chat_bot)  # the offer goes through the outbox
    [offer] = offers(chat_bot, second)
    assert "/appointments" in offer["text"]
    for word in ("bấm", "nút"):  # neutral: a choice on Telegram and on Zalo alike
        assert word not in question(offer["text"]).lower()
    # the question answered and the book saved: their choices replace the offer's
    worker = t("vi", "occupation.worker")
    if isinstance(second, ZaloChatDriver):  # numbered on: the offer's numbers follow
        await second.press(worker)
    else:  # the question's own buttons, above the offer
        assert asked is not None
        rows = asked["reply_markup"]["inline_keyboard"]
        data = next(b["callback_data"] for row in rows for b in row if b["text"] == worker)
        await second.press_data(data, message=asked)
    await second.press(t("vi", "button.save"))
    assert second.last_text == t("vi", "saved.updated")
    # /appointments: the held place first, with its day, hours and hold, and its choices
    await second.send("/appointments")
    held = question(second.last_answer)
    async with chat_bot.session() as session:
        [entry] = (await session.scalars(select(WaitlistEntry))).all()
        slot = await session.get(Session, entry.held_session_id)
        assert entry.status == "offered" and slot is not None
    assert held.startswith("🎉") and "Trạm Y tế phường Sa Pa" in held
    assert t("vi", "date.format", weekday="", date=f"{slot.date:%d/%m/%Y}").strip(", ") in held
    assert f"{slot.start_time:%H:%M}–{slot.end_time:%H:%M}" in held
    assert "Giữ đến 11:00" in held  # offered at 10:00 local, held for 60 minutes
    # someone else cannot take it with its code
    intruder = await younger_person(chat_bot, "009333")
    await intruder.press_data(f"wl:a:{entry.id}")
    if chat_bot.channel == "telegram":
        assert intruder.callback_answers[-1] == t("vi", "waitlist.not_yours")
    assert await active_bookings(chat_bot) == []
    # taken: by typing its number on Zalo, by its button on Telegram
    if isinstance(second, ZaloChatDriver):
        numbers = {label: n for n, label in numbered_options([second.last_answer or ""])}
        await second.send(numbers[t("vi", "waitlist.button_take")])
    else:
        await second.press(t("vi", "waitlist.button_take"))
    [booking] = await active_bookings(chat_bot)
    assert booking.session_id == slot.id
    ticket = next(x for x in second.texts if "PHIẾU HẸN" in x)
    assert booking.code in ticket
    async with chat_bot.session() as session:
        [entry] = (await session.scalars(select(WaitlistEntry))).all()
        assert entry.status == "accepted" and entry.booking_id == booking.id
        assert await session.scalar(select(func.sum(Session.booked))) == 1


async def test_leave_the_waitlist_from_appointments(chat_sample: ChatHarness) -> None:
    chat_bot = chat_sample
    person = await younger_person(chat_bot, "009444")
    async with chat_bot.session() as session, session.begin():  # every day at Sa Pa full
        sa_pa = await lk.get_site(session, "LC-TYT-SAPA")
        await session.execute(
            Session.__table__.update().where(Session.site_id == sa_pa.id).values(capacity=0)
        )
    await join_sa_pa_waitlist(person)
    await person.send("/appointments")
    await person.press(t("vi", "appointments.button_leave_waitlist"))
    assert t("vi", "waitlist.left") in person.texts[-1]  # on Telegram: the pressed message
    async with chat_bot.session() as session:
        [entry] = (await session.scalars(select(WaitlistEntry))).all()
        assert entry.status == "cancelled"
    await person.send("/appointments")
    assert person.last_text == t("vi", "appointments.none")


async def test_held_place_taken_in_the_middle_of_a_health_book_edit(
    chat_sample: ChatHarness,
) -> None:
    chat_bot = chat_sample
    first = await younger_person(chat_bot, "009555")
    second = await younger_person(chat_bot, "009666")
    await one_place_left_at_sa_pa(chat_bot)
    await book_first_place(first)
    await join_sa_pa_waitlist(second)
    await second.send("/profile")
    await second.press(t("vi", "button.edit"))
    await second.press(t("vi", "button.edit_field", field=t("vi", "field.occupation")))
    await first.send("/appointments")
    await first.press(t("vi", "appointments.button_cancel"))
    await first.press(t("vi", "appointments.button_cancel_yes"))
    await send_due(chat_bot)  # the offer goes through the outbox
    [offer] = offers(chat_bot, second)
    await take(second, offer)  # its own number, after the question's (Zalo); its button
    assert len(await active_bookings(chat_bot)) == 1
