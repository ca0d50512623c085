"""End to end: the real Application, the Bot API stand-in, real Update JSON, the database."""

from __future__ import annotations

import json
import logging
import re

import pytest
from sqlalchemy import func, select

from bot.logs import MaskingFilter
from models.tables import Account, Consent, ConversationState, Draft, HealthBook
from tests.conftest import Harness
from tests.flows import GOOD, TR, agree, answer_screening, answer_until_screening, complete, t


def assert_renders(message: str, key: str) -> None:
    """``message`` is the Vietnamese text of ``key`` with its placeholders filled."""
    template = TR.catalogs["vi"][key]
    for part in re.split(r"\{[a-z_]+\}", template):
        assert part.strip() in message, (key, message)


async def count(bot: Harness, table: type) -> int:
    async with bot.session() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def draft_answers(bot: Harness, user_id: int) -> dict:
    async with bot.session() as session:
        account = await session.scalar(select(Account).where(Account.external_id == str(user_id)))
        assert account is not None
        draft = await session.get(Draft, account.id)
        return dict(draft.answers) if draft else {}


async def test_happy_path_vietnamese(bot: Harness) -> None:
    person = bot.user(lang="vi")
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

    async with bot.session() as session:
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
    assert consent.version == bot.services.settings.bot.consent_version
    assert await count(bot, Draft) == 0
    assert await count(bot, ConversationState) == 0  # the conversation ended

    await person.send("/profile")
    assert t("vi", "profile.title") in person.last_text and "Nguyễn Văn An" in person.last_text


async def test_happy_path_english(bot: Harness) -> None:
    person = bot.user(lang="en")
    await complete(person, "en")
    assert person.texts[0] == t("en", "start.welcome")
    async with bot.session() as session:
        account = (await session.scalars(select(Account))).one()
    assert account.locale == "en"


async def test_unknown_telegram_language_gets_vietnamese(bot: Harness) -> None:
    person = bot.user(lang="fr")
    await person.send("/start")
    assert t("vi", "start.welcome") in person.texts


async def test_decline_stores_nothing_and_start_offers_again(bot: Harness) -> None:
    person = bot.user()
    await person.send("/start")
    await person.press(t("vi", "button.decline"))
    assert person.last_text == t("vi", "consent.declined")
    assert await count(bot, Account) == 0
    assert await count(bot, Consent) == 0
    assert await count(bot, ConversationState) == 0
    await person.send("/start")
    assert t("vi", "button.agree") in person.buttons


BAD_NAME = ["", "😀😀", "Nguyen 123", "x" * 4000, "An\x00\x07", "/"]


@pytest.mark.parametrize("bad", ["😀😀", "Nguyen 123", "x" * 4000, "An\u0000\u0007b"])
async def test_bad_names_are_refused_and_asked_again(bot: Harness, bad: str) -> None:
    person = bot.user()
    await agree(person)
    await person.send(bad)
    assert person.texts[-1] == t("vi", "ask.full_name")
    error = person.texts[-2]
    assert error.startswith(("Họ", "Tên")) or "ví dụ" in error.lower()
    assert await draft_answers(bot, person.user.id) == {}


@pytest.mark.parametrize(
    ("bad", "key"),
    [
        ("31/02/1990", "error.date.impossible"),
        ("15/03/2090", "error.date.future"),
        ("15/03/1850", "error.date.too_old"),
        ("hôm qua", "error.date.format"),
    ],
)
async def test_bad_dates(bot: Harness, bad: str, key: str) -> None:
    person = bot.user()
    await agree(person)
    await person.send("Lò Thị Mai")
    await person.send(bad)
    assert person.texts[-1] == t("vi", "ask.date_of_birth")
    assert_renders(person.texts[-2], key)
    assert await draft_answers(bot, person.user.id) == {"full_name": "Lò Thị Mai"}


@pytest.mark.parametrize("good", ["15-03-1950", "15.03.1950", "1950-03-15", "15031950"])
async def test_date_formats(bot: Harness, good: str) -> None:
    person = bot.user()
    await agree(person)
    await person.send("Lò Thị Mai")
    await person.send(good)
    assert t("vi", "ask.gender") in person.last_text
    assert (await draft_answers(bot, person.user.id))["date_of_birth"] == "1950-03-15"


async def at_id_question(bot: Harness, gender: str = "gender.male"):
    person = bot.user()
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
async def test_bad_cccd_says_which_part_disagrees(bot: Harness, bad: str, key: str) -> None:
    person = await at_id_question(bot)
    await person.send(bad)
    assert t("vi", "ask.id_number") in person.last_text
    answers = await draft_answers(bot, person.user.id)
    assert "id_number" not in answers and answers["full_name"] == "Giàng A Páo"
    assert_renders(person.texts[-2], key)


async def test_old_cmnd_is_accepted_and_marked(bot: Harness) -> None:
    person = await at_id_question(bot)
    await person.send("063 123 456")
    assert t("vi", "ask.phone") in person.last_text
    assert (await draft_answers(bot, person.user.id))["id_number"] == {
        "kind": "cmnd",
        "number": "063123456",
    }


async def test_phone_typed_invalid_and_no_phone(bot: Harness) -> None:
    person = await at_id_question(bot)
    await person.send(GOOD["id_number"])
    await person.send("12345")
    assert t("vi", "ask.phone") in person.last_text
    assert "id_number" in await draft_answers(bot, person.user.id)
    await person.send(t("vi", "button.no_phone"))
    assert t("vi", "ask.bhyt") in person.last_text
    assert (await draft_answers(bot, person.user.id))["phone"] is None
    await person.send("AB12")
    assert t("vi", "ask.bhyt") in person.last_text
    await person.send("HT3010123456789")
    assert t("vi", "ask.ethnicity") in person.last_text
    assert (await draft_answers(bot, person.user.id))["bhyt"] == "HT3010123456789"


@pytest.mark.parametrize("send", ["send_sticker", "send_photo", "send_voice", "send_location"])
async def test_non_text_is_refused_politely(bot: Harness, send: str) -> None:
    person = bot.user()
    await agree(person)
    await person.send("Lò Thị Mai")
    method = getattr(person, send)
    await (method(22.33, 103.84) if send == "send_location" else method())
    assert person.texts[-2] == t("vi", "error.input.not_text")
    assert person.texts[-1] == t("vi", "ask.date_of_birth")


async def test_unknown_command_and_help_midway_keep_the_question(bot: Harness) -> None:
    person = bot.user()
    await agree(person)
    await person.send("Lò Thị Mai")
    await person.send("/foo")
    assert person.texts[-2] == t("vi", "error.command.unknown")
    assert person.texts[-1] == t("vi", "ask.date_of_birth")
    await person.send("/help")
    assert person.texts[-1] == t("vi", "ask.date_of_birth")
    assert "/mydata" in person.texts[-2]
    await person.send("15/3/1950")
    assert t("vi", "ask.gender") in person.last_text


async def test_text_where_buttons_are_expected(bot: Harness) -> None:
    person = bot.user()
    await person.send("/start")
    await person.send("hôm nay trời đẹp")  # names no choice
    assert person.texts[-2] == t("vi", "error.input.use_buttons")
    assert t("vi", "button.agree") in person.buttons
    assert await count(bot, Consent) == 0


async def test_ethnicity_typed_without_accents_and_unknown(bot: Harness) -> None:
    person = await at_id_question(bot)
    await person.send(GOOD["id_number"])
    await person.send(t("vi", "button.no_phone"))
    await person.press(t("vi", "button.skip"))
    await person.send("xyzxyz")
    assert t("vi", "ask.ethnicity") in person.last_text
    await person.send("H'Mông")
    assert (await draft_answers(bot, person.user.id))["ethnicity"] == 8


async def test_cancel_keeps_the_draft_and_start_resumes(bot: Harness) -> None:
    person = bot.user()
    await agree(person)
    await person.send("Lò Thị Mai")
    await person.send("/cancel")
    assert person.last_text == t("vi", "cancel.kept")
    assert await count(bot, ConversationState) == 0
    await person.send("15/3/1950")  # outside the conversation now
    assert person.last_text == t("vi", "idle.hint")
    await person.send("/start")
    assert person.texts[-2] == t("vi", "resume.welcome_back")
    assert person.texts[-1] == t("vi", "ask.date_of_birth")
    await person.send("15/3/1950")
    assert t("vi", "ask.gender") in person.last_text
    assert (await draft_answers(bot, person.user.id))["full_name"] == "Lò Thị Mai"


async def test_language_switch_midway(bot: Harness) -> None:
    person = bot.user(lang="vi")
    await agree(person)
    await person.send("Lò Thị Mai")
    await person.send("/language")
    await person.press("English")
    assert person.last_text == t("en", "ask.date_of_birth")
    await person.send("1/2/1960")
    assert t("en", "ask.gender") in person.last_text
    await person.send("/help")
    assert "Commands" in person.texts[-2]


async def test_stale_and_forged_buttons_change_nothing(bot: Harness) -> None:
    person = await at_id_question(bot)  # answered male
    gender_message = next(
        m
        for m in bot.api.messages(person.user.id)
        if m.get("text", "").startswith(t("vi", "ask.gender"))
    )
    # the old gender question, pressed again (stale), and forged data for it
    await person.press_data("hb:gender:female", message=gender_message)
    assert t("vi", "error.button.stale") in person.callback_answers
    assert t("vi", "ask.id_number") in person.last_text
    assert (await draft_answers(bot, person.user.id))["gender"] == "male"
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
    answers = await draft_answers(bot, person.user.id)
    assert set(answers) == {"full_name", "date_of_birth", "gender"}
    assert await count(bot, HealthBook) == 0
    assert await count(bot, Account) == 1


async def test_forged_ward_code_of_another_province_is_refused(bot: Harness) -> None:
    person = await at_id_question(bot)
    await person.send(GOOD["id_number"])
    await person.send(t("vi", "button.no_phone"))
    await person.press(t("vi", "button.skip"))
    await person.send("kinh")
    await person.press(t("vi", "occupation.farmer"))
    await person.press(t("vi", "priority.none"))
    await person.press("Lào Cai")
    assert t("vi", "ask.ward", province="Lào Cai") in person.last_text
    await person.press_data("hb:ward:1")  # a ward code of Hà Nội, not Lào Cai
    assert "ward" not in await draft_answers(bot, person.user.id)
    assert t("vi", "ask.ward", province="Lào Cai") in person.last_text


async def test_review_edit_returns_to_review(bot: Harness) -> None:
    person = bot.user()
    await agree(person)
    await answer_until_screening(person)
    await answer_screening(person)
    await person.press(t("vi", "button.edit_field", field=t("vi", "field.full_name")))
    assert t("vi", "ask.full_name") in person.last_text
    await person.send("lò văn minh")
    assert t("vi", "review.title") in person.last_text and "Lò Văn Minh" in person.last_text


async def test_changing_birth_year_asks_for_the_id_again(bot: Harness) -> None:
    person = bot.user()
    await agree(person)
    await answer_until_screening(person)
    await answer_screening(person)
    await person.press(t("vi", "button.edit_field", field=t("vi", "field.date_of_birth")))
    await person.send("15/3/1951")  # the CCCD says 1950: it no longer agrees
    assert t("vi", "ask.id_number") in person.last_text
    await person.send("010051001234")
    assert t("vi", "review.title") in person.last_text


async def test_duplicate_cccd_is_refused(bot: Harness) -> None:
    first = bot.user()
    await complete(first)
    second = bot.user()
    await agree(second)
    await answer_until_screening(second)
    await answer_screening(second)
    await second.press(t("vi", "button.save"))
    assert t("vi", "error.id.duplicate") in second.texts
    assert t("vi", "ask.id_number") in second.last_text
    assert await count(bot, HealthBook) == 1
    await second.send("010050009999")
    await second.press(t("vi", "button.save"))
    assert await count(bot, HealthBook) == 2


async def test_profile_edit_field_by_field(bot: Harness) -> None:
    person = bot.user()
    await complete(person)
    await person.send("/profile")
    await person.press(t("vi", "button.edit"))
    assert t("vi", "review.title") in person.last_text
    await person.press(t("vi", "button.edit_field", field=t("vi", "field.phone")))
    await person.send("0987654321")
    await person.press(t("vi", "button.save"))
    assert person.last_text == t("vi", "saved.updated")
    async with bot.session() as session:
        book = (await session.scalars(select(HealthBook))).one()
    assert book.phone == "+84987654321" and book.full_name == "Nguyễn Văn An"


async def test_mydata_then_delete(bot: Harness) -> None:
    person = bot.user()
    await complete(person)
    await person.send("/mydata")
    document = next(c for c in reversed(bot.api.calls) if c.method == "sendDocument")
    payload = json.loads(document.params["document"].content)
    assert payload["health_books"][0]["full_name"] == "Nguyễn Văn An"
    assert payload["consents"] and payload["account"]["user_id"] == str(person.user.id)
    await person.send("/delete")
    await person.press(t("vi", "button.delete_yes"))
    assert person.last_text == t("vi", "delete.done_more")
    for table in (Account, Consent, HealthBook, Draft, ConversationState):
        assert await count(bot, table) == 0
    await person.send("/mydata")
    assert person.last_text == t("vi", "mydata.nothing")


async def test_delete_confirmation_expires(bot: Harness) -> None:
    person = bot.user()
    await complete(person)
    await person.send("/delete")
    bot.clock.advance(minutes=11)
    await person.press(t("vi", "button.delete_yes"))
    assert t("vi", "error.button.stale") in person.callback_answers
    assert await count(bot, HealthBook) == 1


async def test_delete_midway_ends_the_conversation(bot: Harness) -> None:
    person = bot.user()
    await agree(person)
    await person.send("Lò Thị Mai")
    await person.send("/delete")
    await person.press(t("vi", "button.delete_yes"))
    assert await count(bot, Draft) == 0 and await count(bot, Account) == 0
    await person.send("15/3/1950")
    assert person.last_text == t("vi", "idle.hint")


async def test_personal_data_never_logged(bot: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(MaskingFilter())  # as bot.logs.setup_logging installs it
    person = bot.user()
    await complete(person)
    await person.send("/mydata")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (GOOD["id_number"], "912345678", "0912345678"):
        assert secret not in logged


async def test_profile_midway_shows_the_book_and_the_question(bot: Harness) -> None:
    person = bot.user()
    await complete(person)
    await person.send("/profile")
    await person.press(t("vi", "button.edit"))
    await person.press(t("vi", "button.edit_field", field=t("vi", "field.full_name")))
    await person.send("/profile")
    assert t("vi", "profile.title") in person.texts[-2]
    assert person.texts[-1] == t("vi", "ask.full_name")


async def test_an_update_delivered_twice_is_applied_once(bot: Harness) -> None:
    """Telegram redelivers updates it did not see confirmed (e.g. after kill -9)."""
    from telegram import Update

    from bot.standin import text_message

    person = bot.user()
    await agree(person)
    await person.send("Lò Thị Mai")
    data = {**text_message(person.user, "15/3/1950"), "update_id": 10_000_000}
    await bot.app.process_update(Update.de_json(data, bot.app.bot))
    assert (await draft_answers(bot, person.user.id))["date_of_birth"] == "1950-03-15"
    sent = len(bot.api.messages(person.user.id))
    await bot.app.process_update(Update.de_json(data, bot.app.bot))  # the same update again
    assert len(bot.api.messages(person.user.id)) == sent
    assert "gender" not in await draft_answers(bot, person.user.id)
