"""End to end: what a new user tripped over (issue 6) — the demo's numbered buttons, typed answers
at button steps, booking prompts, the site list, screening groups, long answers, old phones."""

from __future__ import annotations

import datetime as dt
import io
import re

import pytest
from sqlalchemy import delete, select

from bot.demo import TelegramDemoChat, _loop
from bot.standin import ChatDriver
from models import booking as bk
from models import lookups as lk
from models import validators as v
from models.tables import Booking, Draft, Session
from tests.conftest import ChatHarness, Harness
from tests.flows import agree, question, resident, t

TODAY = dt.date(2026, 11, 25)  # the harness clock
SA_PA = "Trạm Y tế phường Sa Pa"


# ---------------------------------------------------------------- the demo


class Script:
    """Typed lines for the demo loop; a callable line is worked out from the output so far."""

    def __init__(self, out: io.StringIO, lines: list) -> None:
        self.out, self.lines = out, list(lines)

    async def __call__(self, prompt: str) -> str | None:
        if not self.lines:
            return None
        line = self.lines.pop(0)
        return line(self.out.getvalue()) if callable(line) else line


def number_of(fragment: str):
    """The number the demo printed last beside a button whose label holds ``fragment``."""

    def pick(output: str) -> str:
        found = re.findall(r"^   \[(\d+)\] (.*)$", output, re.MULTILINE)
        matching = [n for n, label in found if fragment in label]
        assert matching, f"no numbered button with {fragment!r}"
        return matching[-1]

    return pick


async def test_demo_numbers_every_live_message_so_book_can_be_finished(sample: Harness) -> None:
    person = await resident(sample, "001234")
    out = io.StringIO()
    script = Script(
        out,
        [
            "/book",
            number_of("COVID-19"),
            number_of(SA_PA),  # the site list is not the newest message: near-me comes after
            number_of("Thứ"),
            number_of("07:30"),
            number_of(t("vi", "book.button_confirm")),
        ],
    )
    await _loop(TelegramDemoChat(person, out), read_line=script, out=out)
    output = out.getvalue()
    # the site list's buttons are numbered under it, and the location button after them
    sites = output[output.index(t("vi", "book.ask_site", days=14)) :]
    assert re.search(r"\[1\] Trạm Y tế phường Sa Pa", sites)
    assert re.search(r"\[📍 .*\] +here: /location", sites)  # with the demo's command for it
    assert "PHIẾU HẸN TIÊM CHỦNG" in output
    async with sample.session() as session:
        assert await session.scalar(select(Booking.status)) == "booked"


async def test_demo_number_of_a_closed_button_is_typed_text(bot: Harness) -> None:
    person = bot.user()
    out = io.StringIO()
    # "1" agrees; the consent buttons are then gone, so the next "1" is a (bad) name
    await _loop(TelegramDemoChat(person, out), read_line=Script(out, ["/start", "1", "1"]), out=out)
    assert t("vi", "error.name.chars") in out.getvalue()


async def test_demo_commune_choice_by_number(bot: Harness) -> None:
    person = bot.user()
    await agree(person)
    out = io.StringIO()
    lines = ["Lò Văn Páo", "15/3/1990", "1", "010090001234", number_of("không có điện thoại")]
    lines += ["1", "hmong", "1", number_of("Không thuộc"), "1", "bao", number_of("Bảo Hà")]
    await _loop(TelegramDemoChat(person, out), read_line=Script(out, lines), out=out)
    output = out.getvalue()
    assert t("vi", "ask.address_line").split("\n")[0] in output
    async with bot.session() as session:
        draft = await session.scalar(select(Draft))
        assert draft is not None and v.ward_name(draft.answers["ward"]) == "Xã Bảo Hà"


# ---------------------------------------------------------------- the health book


async def at_step(chat_bot: ChatHarness, upto: str) -> ChatDriver:
    """A new person, answered up to (not including) the step ``upto``."""
    person = chat_bot.user()
    await agree(person)
    steps = [
        ("date_of_birth", lambda: person.send("Lò Văn Páo")),
        ("gender", lambda: person.send("15/3/1990")),
        ("id_number", lambda: person.press(t("vi", "gender.male"))),
        ("phone", lambda: person.send("010090001234")),
        ("bhyt", lambda: person.send(t("vi", "button.no_phone"))),
        ("ethnicity", lambda: person.press(t("vi", "button.skip"))),
        ("occupation", lambda: person.send("hmong")),
        ("priority_group", lambda: person.press(t("vi", "occupation.farmer"))),
        ("province", lambda: person.press(t("vi", "priority.none"))),
        ("ward", lambda: person.press("Lào Cai")),
    ]
    for step, act in steps:  # each action leads to its step's question
        await act()
        if step == upto:
            break
    assert t("vi", f"ask.{upto}", chat_bot.channel).split(":")[0][:12] in person.last_text
    return person


async def test_typed_label_of_a_button_is_accepted(chat_bot: ChatHarness) -> None:
    person = await at_step(chat_bot, "priority_group")
    assert "«Không thuộc nhóm nào ở trên»" in person.last_text  # the prompt quotes the label
    await person.send("Không thuộc nhóm nào")  # as an older prompt put it, without "ở trên"
    assert t("vi", "ask.province", province="Lào Cai") in person.last_text
    # a word that is no label gets a hint with no "below"/"above" that could be wrong
    person = await at_step(chat_bot, "occupation")
    await person.send("xyz")
    hint = person.texts[-2]
    assert hint == t("vi", "error.input.use_buttons") and "bên dưới" not in hint


async def test_commune_choice_list_then_a_typed_listed_name(chat_bot: ChatHarness) -> None:
    person = await at_step(chat_bot, "ward")
    await person.send("bao")
    # the list, not the question again
    assert question(person.last_text) == t("vi", "ask.ward_choose")
    assert "Xã Bảo Hà" in person.buttons
    await person.send("Bảo Hà")  # a name on the list, typed
    assert t("vi", "ask.address_line") in person.last_text


async def test_a_very_long_date_of_birth_gets_a_fitting_hint(chat_bot: ChatHarness) -> None:
    person = await at_step(chat_bot, "date_of_birth")
    await person.send("1" * 2000)
    hint = person.texts[-2]
    assert hint == t("vi", "error.text.too_long_short", length=2000)
    assert "Thôn" not in hint and "dị ứng" not in hint  # no village or allergy example
    assert t("vi", "ask.date_of_birth") in person.last_text  # then the same question


async def test_old_eleven_digit_phone_is_accepted_with_one_press(chat_bot: ChatHarness) -> None:
    person = await at_step(chat_bot, "phone")
    await person.send("01234567890")
    offer = person.texts[-2]
    assert "0834 567 890" in offer  # the new number, as people write it
    await person.press(t("vi", "button.use_number", number="0834 567 890"))
    assert t("vi", "ask.bhyt") in person.last_text
    assert person.reply_keyboard == []  # the phone keyboard is closed
    async with chat_bot.session() as session:
        draft = await session.scalar(select(Draft))
        assert draft is not None and draft.answers["phone"] == "+84834567890"
    # a forged number in the same button is checked like a typed one
    person2 = await at_step(chat_bot, "phone")
    await person2.send("01234567890")
    await person2.press_data("hb:phone:use:+8400000")  # on Zalo: typed, not a phone number
    if chat_bot.channel == "telegram":
        assert t("vi", "error.button.invalid") in person2.callback_answers
    assert t("vi", "ask.phone", chat_bot.channel) in person2.last_answer
    async with chat_bot.session() as session:
        drafts = (await session.scalars(select(Draft))).all()
        assert sorted(str(d.answers.get("phone")) for d in drafts) == ["+84834567890", "None"]


async def test_review_shows_the_phone_as_people_write_it(chat_bot: ChatHarness) -> None:
    from tests.flows import complete

    person = chat_bot.user()
    await complete(person)  # shares +84912345678
    await person.send("/profile")
    assert "0912 345 678" in person.last_text and "+84912345678" not in person.last_text


# ---------------------------------------------------------------- booking


async def test_typing_at_booking_steps_gets_hints_that_fit(chat_sample: ChatHarness) -> None:
    person = await resident(chat_sample, "002345")
    await person.send("/book")
    await person.send("covid")  # the campaign's name, typed
    assert t("vi", "book.ask_site", days=14) in person.texts[-2]
    await person.press("Sa Pa")
    await person.send("thu hai")
    assert question(person.last_text) == t("vi", "book.hint_day")
    assert "xã/phường" not in person.last_text
    days = person.buttons
    await person.press(days[0])
    assert f"tại {SA_PA}" in person.last_text  # "Chọn giờ tiêm ngày … tại …"
    await person.send("chiều")  # no time shows it
    assert question(person.last_text) == t("vi", "book.hint_time")
    await person.send("7h30")  # the one time showing 07:30
    assert "Xin kiểm tra lại lịch tiêm" in person.last_text


async def test_fourteen_days_are_offered(chat_sample: ChatHarness) -> None:
    person = await resident(chat_sample, "003456")
    await person.send("/book")
    await person.press("COVID-19")
    await person.press("Sa Pa")
    async with chat_sample.session() as session:
        site = await lk.get_site(session, "LC-TYT-SAPA")
        campaign = await lk.get_campaign(session, "covid19_2021")
        open_days = await bk.open_days(session, site, campaign, TODAY + dt.timedelta(1), 14)
    assert len(open_days) > 8  # so the next line can tell 14 days from 8
    assert len(person.buttons) == len(open_days)
    assert "ngoặc" not in person.last_text and "còn 60 chỗ" in person.buttons[0]


async def test_site_list_puts_free_places_first_and_says_which_have_no_sessions(
    chat_sample: ChatHarness,
) -> None:
    async with chat_sample.session() as session, session.begin():
        sa_pa = await lk.get_site(session, "LC-TYT-SAPA")
        await session.execute(delete(Session).where(Session.site_id == sa_pa.id))
    person = await resident(chat_sample, "004567")  # lives in Phường Sa Pa
    await person.send("/book")
    await person.press("COVID-19")
    labels = person.buttons
    own = next(b for b in labels if b.startswith(SA_PA))
    assert own == t("vi", "book.site_no_sessions", site=SA_PA)
    assert labels[0] != own and "còn" in labels[0]  # a site with places comes first
    await person.press(SA_PA)
    assert person.last_text == t("vi", "book.no_sessions", site=SA_PA)
    assert t("vi", "book.button_waitlist_site") not in person.buttons  # no waitlist for nothing


async def test_near_me_distances_use_a_decimal_comma(chat_sample: ChatHarness) -> None:
    if chat_sample.channel == "zalo":
        pytest.skip("Zalo shares no location: no distances from the person (the commune is typed)")
    person = await resident(chat_sample, "005678")
    await person.send("/book")
    await person.press("COVID-19")
    await person.send_location(22.4963, 103.9697)
    assert re.search(r" · \d+,\d km$", person.buttons[-1])


async def test_refer_group_is_told_hospital_but_sees_nearer_sites(chat_sample: ChatHarness) -> None:
    person = await resident(chat_sample, "006789", answers={"immunodeficiency": "button.yes"})
    await person.send("/book")
    await person.press("COVID-19")
    reasons = "• " + t("vi", "screening_short.immunodeficiency")
    assert t("vi", "book.refer_hospital", reasons=reasons) in " ".join(person.texts)
    assert person.buttons[0].startswith("🏥 Bệnh viện")  # advised: first
    assert any(b.startswith(SA_PA) for b in person.buttons)  # the nearer site is still there
    await person.press(SA_PA)  # and may be booked: the site screens and decides
    await person.press(person.buttons[0])
    await person.press(person.buttons[0])
    await person.press(t("vi", "book.button_confirm"))
    async with chat_sample.session() as session:
        assert await session.scalar(select(Booking.status)) == "booked"


async def test_cancelled_future_booking_is_not_listed_as_past(chat_sample: ChatHarness) -> None:
    person = await resident(chat_sample, "007890")
    await person.send("/book")
    await person.press("COVID-19")
    await person.press("Sa Pa")
    await person.press(person.buttons[0])
    await person.press(person.buttons[0])
    await person.press(t("vi", "book.button_confirm"))
    await person.send("/appointments")
    await person.press(t("vi", "appointments.button_reschedule"))
    await person.press(person.buttons[1])
    assert question(person.last_text).endswith(f"tại {SA_PA}:")  # the site, not an empty space
    await person.send("/appointments")
    await person.press(t("vi", "appointments.button_cancel"))
    await person.press(t("vi", "appointments.button_cancel_yes"))
    await person.send("/appointments")
    assert person.last_text.startswith(t("vi", "appointments.cancelled_list"))
    assert t("vi", "appointments.past") not in person.last_text
