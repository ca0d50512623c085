"""End to end: the real Application, the Bot API stand-in, real Update JSON, the database."""

from __future__ import annotations

import json
import logging
import re

import pytest
from sqlalchemy import func, select

from bot.logs import MaskingFilter
from bot.standin.zalo import zalo_text
from models.tables import Account, Consent, ConversationState, Draft, HealthBook
from tests.conftest import ChatHarness, Harness
from tests.flows import (
    GOOD,
    TR,
    agree,
    answer_screening,
    answer_until_screening,
    complete,
    items_for,
    question,
    sent_file,
    t,
    told,
)

ZALO_HAS_NO = "the Zalo Bot API delivers no {} (it has no such message type)"


def assert_renders(message: str, key: str) -> None:
    """``message`` is the Vietnamese text of ``key`` with its placeholders filled."""
    template = TR.catalogs["vi"][key]
    for part in re.split(r"\{[a-z_]+\}", template):
        assert part.strip() in message, (key, message)


async def count(chat_bot: ChatHarness, table: type) -> int:
    async with chat_bot.session() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def draft_answers(chat_bot: ChatHarness, user_id: int) -> dict:
    async with chat_bot.session() as session:
        account = await session.scalar(select(Account).where(Account.external_id == str(user_id)))
        assert account is not None
        draft = await session.get(Draft, account.id)
        return dict(draft.answers) if draft else {}


async def test_happy_path_vietnamese(chat_bot: ChatHarness) -> None:
    person = chat_bot.user(lang="vi")
    await agree(person)
    await answer_until_screening(person)
    await answer_screening(person)
    review = person.last_text
    assert "Nguyễn Văn An" in review
    assert "15/03/1950" in review
    assert "*********234" in review and "010050" not in review
    assert "Mông" in review and "Phường Sa Pa" in review and "Lào Cai" in review
    await person.press(t("vi", "button.save"))
    assert person.last_text == t("vi", "saved.new")

    async with chat_bot.session() as session:
        book = (await session.scalars(select(HealthBook))).one()
        consent = (await session.scalars(select(Consent))).one()
    assert book.full_name == "Nguyễn Văn An"
    assert book.date_of_birth.isoformat() == "1950-03-15"
    assert (book.gender, book.id_kind, book.id_number) == ("male", "cccd", "010050001234")
    assert book.phone == "+84912345678" and book.bhyt is None
    assert book.occupation == "farmer" and book.priority_group == "none"
    assert book.province_code == 15 and book.address_line == "Thôn Lếch Dao"
    assert book.chronic_conditions is None and book.allergies is None
    assert book.screening.pop("pregnant_breastfeeding") == "not_applicable"  # a man
    assert set(book.screening.values()) == {"no"}
    assert consent.version == chat_bot.services.settings.bot.consent_version
    assert await count(chat_bot, Draft) == 0
    assert await count(chat_bot, ConversationState) == 0  # the conversation ended

    await person.send("/profile")
    assert t("vi", "profile.title") in person.last_text and "Nguyễn Văn An" in person.last_text


async def test_happy_path_english(chat_bot: ChatHarness) -> None:
    person = chat_bot.user(lang="en")
    if chat_bot.channel == "zalo":  # Zalo tells no language: the person chooses it
        await person.send("/language")
        await person.press("English")
    await complete(person, "en")
    assert t("en", "start.welcome", chat_bot.channel) in person.texts
    async with chat_bot.session() as session:
        account = (await session.scalars(select(Account))).one()
    assert account.locale == "en"


async def test_unknown_telegram_language_gets_vietnamese(chat_bot: ChatHarness) -> None:
    person = chat_bot.user(lang="fr")
    await person.send("/start")
    assert t("vi", "start.welcome", chat_bot.channel) in person.texts


async def test_decline_stores_nothing_and_start_offers_again(chat_bot: ChatHarness) -> None:
    person = chat_bot.user()
    await person.send("/start")
    await person.press(t("vi", "button.decline"))
    assert person.last_text == t("vi", "consent.declined")
    assert await count(chat_bot, Account) == 0
    assert await count(chat_bot, Consent) == 0
    assert await count(chat_bot, ConversationState) == 0
    await person.send("/start")
    assert t("vi", "button.agree") in person.buttons


BAD_NAME = ["", "😀😀", "Nguyen 123", "x" * 4000, "An\x00\x07", "/"]


@pytest.mark.parametrize("bad", ["😀😀", "Nguyen 123", "x" * 4000, "An\u0000\u0007b"])
async def test_bad_names_are_refused_and_asked_again(chat_bot: ChatHarness, bad: str) -> None:
    person = chat_bot.user()
    await agree(person)
    await person.send(bad)
    assert person.texts[-1] == t("vi", "ask.full_name")
    error = person.texts[-2]
    assert error.startswith(("Họ", "Tên")) or "ví dụ" in error.lower()
    assert await draft_answers(chat_bot, person.user.id) == {}


@pytest.mark.parametrize(
    ("bad", "key"),
    [
        ("31/02/1990", "error.date.impossible"),
        ("15/03/2090", "error.date.future"),
        ("15/03/1850", "error.date.too_old"),
        ("hôm qua", "error.date.format"),
    ],
)
async def test_bad_dates(chat_bot: ChatHarness, bad: str, key: str) -> None:
    person = chat_bot.user()
    await agree(person)
    await person.send("Lò Thị Mai")
    await person.send(bad)
    assert person.texts[-1] == t("vi", "ask.date_of_birth")
    assert_renders(person.texts[-2], key)
    assert await draft_answers(chat_bot, person.user.id) == {"full_name": "Lò Thị Mai"}


@pytest.mark.parametrize("good", ["15-03-1950", "15.03.1950", "1950-03-15", "15031950"])
async def test_date_formats(chat_bot: ChatHarness, good: str) -> None:
    person = chat_bot.user()
    await agree(person)
    await person.send("Lò Thị Mai")
    await person.send(good)
    assert t("vi", "ask.gender") in person.last_text
    assert (await draft_answers(chat_bot, person.user.id))["date_of_birth"] == "1950-03-15"


async def at_id_question(chat_bot: ChatHarness, gender: str = "gender.male"):
    person = chat_bot.user()
    await agree(person)
    await person.send("Giàng A Páo")
    await person.send("15/3/1950")
    await person.press(t("vi", gender))
    assert t("vi", "ask.id_number") in person.last_text
    return person


@pytest.mark.parametrize(
    ("bad", "key"),
    [
        ("999050001234", "error.id.province"),  # no such province prefix
        ("010150001234", "error.id.gender_digit"),  # 1 = woman, but he said man
        ("010250001234", "error.id.century_digit"),  # 2 = man born in the 2000s
        ("010051001234", "error.id.year"),  # 51 ≠ 1950
        ("12345", "error.id.format"),
    ],
)
async def test_bad_cccd_says_which_part_disagrees(
    chat_bot: ChatHarness, bad: str, key: str
) -> None:
    person = await at_id_question(chat_bot)
    await person.send(bad)
    assert t("vi", "ask.id_number") in person.last_text
    answers = await draft_answers(chat_bot, person.user.id)
    assert "id_number" not in answers and answers["full_name"] == "Giàng A Páo"
    assert_renders(person.texts[-2], key)


async def test_old_cmnd_is_accepted_and_marked(chat_bot: ChatHarness) -> None:
    person = await at_id_question(chat_bot)
    await person.send("063 123 456")
    assert t("vi", "ask.phone", chat_bot.channel) in person.last_text
    assert (await draft_answers(chat_bot, person.user.id))["id_number"] == {
        "kind": "cmnd",
        "number": "063123456",
    }


async def test_phone_typed_invalid_and_no_phone(chat_bot: ChatHarness) -> None:
    person = await at_id_question(chat_bot)
    await person.send(GOOD["id_number"])
    await person.send("12345")
    assert t("vi", "ask.phone", chat_bot.channel) in person.last_text
    assert "id_number" in await draft_answers(chat_bot, person.user.id)
    await person.send(t("vi", "button.no_phone"))
    assert t("vi", "ask.bhyt") in person.last_text
    assert (await draft_answers(chat_bot, person.user.id))["phone"] is None
    await person.send("AB12")
    assert t("vi", "ask.bhyt") in person.last_text
    await person.send("HT3010123456789")
    assert t("vi", "ask.ethnicity") in person.last_text
    assert (await draft_answers(chat_bot, person.user.id))["bhyt"] == "HT3010123456789"


@pytest.mark.parametrize("send", ["send_sticker", "send_photo", "send_voice", "send_location"])
async def test_non_text_is_refused_politely(chat_bot: ChatHarness, send: str) -> None:
    if chat_bot.channel == "zalo" and send in ("send_voice", "send_location"):
        pytest.skip(ZALO_HAS_NO.format(send.removeprefix("send_")))
    person = chat_bot.user()
    await agree(person)
    await person.send("Lò Thị Mai")
    method = getattr(person, send)
    await (method(22.33, 103.84) if send == "send_location" else method())
    assert person.texts[-2] == t("vi", "error.input.not_text")
    assert person.texts[-1] == t("vi", "ask.date_of_birth")


async def test_unknown_command_and_help_midway_keep_the_question(chat_bot: ChatHarness) -> None:
    person = chat_bot.user()
    await agree(person)
    await person.send("Lò Thị Mai")
    await person.send("/foo")
    assert person.texts[-2] == t("vi", "error.command.unknown")
    assert person.texts[-1] == t("vi", "ask.date_of_birth")
    await person.send("/help")  # the guide (tests/test_guide.py); the question stays open
    assert question(person.last_text) == t("vi", "guide.menu", emergency="115")
    assert "/mydata" in person.last_text
    await person.press(t("vi", "guide.button.continue"))  # the question again
    assert person.last_text == t("vi", "ask.date_of_birth")
    await person.send("/help")
    await person.send("15/3/1950")  # typed while the guide is shown: still the answer
    assert t("vi", "ask.gender") in person.last_text


async def test_text_where_buttons_are_expected(chat_bot: ChatHarness) -> None:
    person = chat_bot.user()
    await person.send("/start")
    await person.send("hôm nay trời đẹp")  # names no choice
    assert person.texts[-2] == t("vi", "error.input.use_buttons")
    assert t("vi", "button.agree") in person.buttons
    assert await count(chat_bot, Consent) == 0


async def test_ethnicity_typed_without_accents_and_unknown(chat_bot: ChatHarness) -> None:
    person = await at_id_question(chat_bot)
    await person.send(GOOD["id_number"])
    await person.send(t("vi", "button.no_phone"))
    await person.press(t("vi", "button.skip"))
    await person.send("xyzxyz")
    assert t("vi", "ask.ethnicity") in person.last_text
    await person.send("H'Mông")
    assert (await draft_answers(chat_bot, person.user.id))["ethnicity"] == 8


async def test_cancel_keeps_the_draft_and_start_resumes(chat_bot: ChatHarness) -> None:
    person = chat_bot.user()
    await agree(person)
    await person.send("Lò Thị Mai")
    await person.send("/cancel")
    assert person.last_text == t("vi", "cancel.kept")
    assert await count(chat_bot, ConversationState) == 0
    await person.send("15/3/1950")  # outside the conversation now
    assert person.last_text == t("vi", "idle.hint")
    await person.send("/start")
    assert person.texts[-2] == t("vi", "resume.welcome_back")
    assert person.texts[-1] == t("vi", "ask.date_of_birth")
    await person.send("15/3/1950")
    assert t("vi", "ask.gender") in person.last_text
    assert (await draft_answers(chat_bot, person.user.id))["full_name"] == "Lò Thị Mai"


async def test_language_switch_midway(chat_bot: ChatHarness) -> None:
    person = chat_bot.user(lang="vi")
    await agree(person)
    await person.send("Lò Thị Mai")
    await person.send("/language")
    await person.press("English")
    assert person.last_text == t("en", "ask.date_of_birth")
    await person.send("1/2/1960")
    assert t("en", "ask.gender") in person.last_text
    await person.send("/help")
    assert question(person.last_text) == t("en", "guide.menu", emergency="115")


async def test_stale_and_forged_buttons_change_nothing(chat_bot: ChatHarness) -> None:
    if chat_bot.channel == "zalo":
        return await stale_and_forged_typed_answers_change_nothing(chat_bot)
    person = await at_id_question(chat_bot)  # answered male
    gender_message = next(
        m
        for m in chat_bot.api.messages(person.user.id)
        if m.get("text", "").startswith(t("vi", "ask.gender"))
    )
    # the old gender question, pressed again (stale), and forged data for it
    await person.press_data("hb:gender:female", message=gender_message)
    assert t("vi", "error.button.stale") in person.callback_answers
    assert t("vi", "ask.id_number") in person.last_text
    assert (await draft_answers(chat_bot, person.user.id))["gender"] == "male"
    for forged in [
        "hb:id_number:../../etc",
        "hb:review:save",
        "pf:edit",
        "acct:delete:1",
        "lang:xx",
        "hb:ward:4465",
        "x" * 64,
        "hb:screening:anaphylaxis:yes",
    ]:
        answered = len(person.callback_answers)
        await person.press_data(forged, message=gender_message)
        # each press gets its own polite refusal (the spinner stops), and the question stays
        assert person.callback_answers[answered:] in (
            [t("vi", "error.button.stale")],
            [t("vi", "error.button.invalid")],
        ), forged
        assert t("vi", "ask.id_number") in person.last_text, forged
    answers = await draft_answers(chat_bot, person.user.id)
    assert set(answers) == {"full_name", "date_of_birth", "gender"}
    assert await count(chat_bot, HealthBook) == 0
    assert await count(chat_bot, Account) == 1


async def stale_and_forged_typed_answers_change_nothing(chat_bot: ChatHarness) -> None:
    """Zalo's stale and forged answers: a number or label of the gender question typed after
    it moved on, a number no list offers, and callback-like data typed: refused, answers kept."""
    person = chat_bot.user()
    await agree(person)
    await person.send("Giàng A Páo")
    await person.send("15/3/1950")
    await person.send("9")  # out of range: the numbered list again, nothing chosen
    assert t("vi", "ask.gender") in person.last_answer and "1. Nam" in person.last_answer
    assert "gender" not in await draft_answers(chat_bot, person.user.id)
    await person.send("1")
    assert t("vi", "ask.id_number") in person.last_text
    # the old gender list's "2. Nữ", typed (stale), and forged data: refused as an id number
    for typed in ["2", "nữ", "hb:gender:female", "hb:review:save", "acct:delete:1", "x" * 64]:
        await person.send(typed)
        assert question(person.last_text).endswith(t("vi", "ask.id_number")), typed
        assert person.last_answer != person.last_text, typed  # an error came first
    answers = await draft_answers(chat_bot, person.user.id)
    assert set(answers) == {"full_name", "date_of_birth", "gender"}
    assert answers["gender"] == "male"
    assert await count(chat_bot, HealthBook) == 0
    assert await count(chat_bot, Account) == 1


async def test_forged_ward_code_of_another_province_is_refused(chat_bot: ChatHarness) -> None:
    person = await at_id_question(chat_bot)
    await person.send(GOOD["id_number"])
    await person.send(t("vi", "button.no_phone"))
    await person.press(t("vi", "button.skip"))
    await person.send("kinh")
    await person.press(t("vi", "occupation.farmer"))
    await person.press(t("vi", "priority.none"))
    await person.press("Lào Cai")
    assert t("vi", "ask.ward", province="Lào Cai") in person.last_text
    await person.press_data("hb:ward:1")  # a ward code of Hà Nội, not Lào Cai
    assert "ward" not in await draft_answers(chat_bot, person.user.id)
    assert t("vi", "ask.ward", province="Lào Cai") in person.last_text


async def test_review_edit_returns_to_review(chat_bot: ChatHarness) -> None:
    person = chat_bot.user()
    await agree(person)
    await answer_until_screening(person)
    await answer_screening(person)
    await person.press(t("vi", "button.edit_field", field=t("vi", "field.full_name")))
    assert t("vi", "ask.full_name") in person.last_text
    await person.send("lò văn minh")
    assert t("vi", "review.title") in person.last_text and "Lò Văn Minh" in person.last_text


async def test_changing_birth_year_asks_for_the_id_again(chat_bot: ChatHarness) -> None:
    person = chat_bot.user()
    await agree(person)
    await answer_until_screening(person)
    await answer_screening(person)
    await person.press(t("vi", "button.edit_field", field=t("vi", "field.date_of_birth")))
    await person.send("15/3/1951")  # the CCCD says 1950: it no longer agrees
    assert t("vi", "ask.id_number") in person.last_text
    await person.send("010051001234")
    assert t("vi", "review.title") in person.last_text


async def test_duplicate_cccd_is_refused(chat_bot: ChatHarness) -> None:
    first = chat_bot.user()
    await complete(first)
    second = chat_bot.user()
    await agree(second)
    await answer_until_screening(second)
    await answer_screening(second)
    await second.press(t("vi", "button.save"))
    assert t("vi", "error.id.duplicate") in second.texts
    assert t("vi", "ask.id_number") in second.last_text
    assert await count(chat_bot, HealthBook) == 1
    await second.send("010050009999")
    await second.press(t("vi", "button.save"))
    assert await count(chat_bot, HealthBook) == 2


async def test_profile_edit_field_by_field(chat_bot: ChatHarness) -> None:
    person = chat_bot.user()
    await complete(person)
    await person.send("/profile")
    await person.press(t("vi", "button.edit"))
    assert t("vi", "review.title") in person.last_text
    await person.press(t("vi", "button.edit_field", field=t("vi", "field.phone")))
    await person.send("0987654321")
    await person.press(t("vi", "button.save"))
    assert person.last_text == t("vi", "saved.updated")
    async with chat_bot.session() as session:
        book = (await session.scalars(select(HealthBook))).one()
    assert book.phone == "+84987654321" and book.full_name == "Nguyễn Văn An"


async def test_mydata_then_delete(chat_bot: ChatHarness) -> None:
    person = chat_bot.user()
    await complete(person)
    await person.send("/mydata")
    payload = json.loads(await sent_file(person))
    assert payload["health_books"][0]["full_name"] == "Nguyễn Văn An"
    assert payload["consents"] and payload["account"]["user_id"] == str(person.user.id)
    await person.send("/delete")
    await person.press(t("vi", "button.delete_yes"))
    assert person.last_text == t("vi", "delete.done_more")
    for table in (Account, Consent, HealthBook, Draft, ConversationState):
        assert await count(chat_bot, table) == 0
    await person.send("/mydata")
    assert person.last_text == t("vi", "mydata.nothing")


async def test_delete_confirmation_expires(chat_bot: ChatHarness) -> None:
    person = chat_bot.user()
    await complete(person)
    await person.send("/delete")
    chat_bot.clock.advance(minutes=11)
    await person.press(t("vi", "button.delete_yes"))
    assert t("vi", "error.button.stale") in told(person)
    assert await count(chat_bot, HealthBook) == 1


async def test_delete_midway_ends_the_conversation(chat_bot: ChatHarness) -> None:
    person = chat_bot.user()
    await agree(person)
    await person.send("Lò Thị Mai")
    await person.send("/delete")
    await person.press(t("vi", "button.delete_yes"))
    assert await count(chat_bot, Draft) == 0 and await count(chat_bot, Account) == 0
    await person.send("15/3/1950")
    assert person.last_text == t("vi", "idle.hint")


async def test_personal_data_never_logged(
    chat_bot: ChatHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(MaskingFilter())  # as bot.logs.setup_logging installs it
    person = chat_bot.user()
    await complete(person)
    await person.send("/mydata")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (GOOD["id_number"], "912345678", "0912345678"):
        assert secret not in logged


async def test_profile_midway_shows_the_book_and_the_question(chat_bot: ChatHarness) -> None:
    person = chat_bot.user()
    await complete(person)
    await person.send("/profile")
    await person.press(t("vi", "button.edit"))
    await person.press(t("vi", "button.edit_field", field=t("vi", "field.full_name")))
    await person.send("/profile")
    assert t("vi", "profile.title") in person.texts[-2]
    assert person.texts[-1] == t("vi", "ask.full_name")


async def test_an_update_delivered_twice_is_applied_once(chat_bot: ChatHarness) -> None:
    """Telegram redelivers updates it did not see confirmed (e.g. after kill -9); Zalo has no
    update id and may deliver an event again: the same ``message_id``."""
    from telegram import Update

    from bot.standin import text_message

    person = chat_bot.user()
    await agree(person)
    await person.send("Lò Thị Mai")
    if chat_bot.channel == "zalo":
        event = zalo_text(person.user, "15/3/1950")
        await person.push(event)
        assert (await draft_answers(chat_bot, person.user.id))["date_of_birth"] == "1950-03-15"
        sent = len(person.messages)
        await person.push(event, expect_reply=False)  # the same event again
        assert len(person.messages) == sent
        assert "gender" not in await draft_answers(chat_bot, person.user.id)
        return
    data = {**text_message(person.user, "15/3/1950"), "update_id": 10_000_000}
    await chat_bot.app.process_update(Update.de_json(data, chat_bot.app.bot))
    assert (await draft_answers(chat_bot, person.user.id))["date_of_birth"] == "1950-03-15"
    sent = len(chat_bot.api.messages(person.user.id))
    await chat_bot.app.process_update(Update.de_json(data, chat_bot.app.bot))  # again
    assert len(chat_bot.api.messages(person.user.id)) == sent
    assert "gender" not in await draft_answers(chat_bot, person.user.id)


async def test_telegram_health_book_by_typed_numbers_only(bot: Harness) -> None:
    """Every choice of the health book answered on Telegram by typing its number (as it stands
    on the buttons, from 1): no button is pressed."""
    person = bot.user()

    async def number(label: str) -> None:
        await person.send(str(person.buttons.index(label) + 1))

    await person.send("/start")
    await number(t("vi", "button.agree"))
    await person.send(GOOD["full_name"])
    await person.send(GOOD["date_of_birth"])
    await number(t("vi", "gender.male"))
    assert t("vi", "ask.id_number") in person.last_text
    await person.send(GOOD["id_number"])
    await person.send("0912345678")
    assert t("vi", "ask.bhyt") in person.last_text
    await number(t("vi", "button.skip"))
    assert t("vi", "ask.ethnicity") in person.last_text
    await person.send("hmong")
    await number(t("vi", "occupation.farmer"))
    assert t("vi", "ask.priority_group") in person.last_text
    await number(t("vi", "priority.none"))
    await number("Lào Cai")
    assert t("vi", "ask.ward", province="Lào Cai", example="sa pa") in person.last_text
    await person.send(GOOD["ward"])
    await person.send(GOOD["address_line"])
    for _ in items_for("male"):
        await number(t("vi", "button.no"))
    assert t("vi", "review.title") in person.last_text
    await number(t("vi", "button.save"))
    assert person.last_text == t("vi", "saved.new")
    assert not [c for c in bot.api.calls if c.method == "answerCallbackQuery"]  # no press
    async with bot.session() as session:
        book = (await session.scalars(select(HealthBook))).one()
    assert (book.gender, book.occupation, book.priority_group) == ("male", "farmer", "none")
    assert book.bhyt is None and book.province_code == 15
    assert set(book.screening.values()) == {"no", "not_applicable"}
