"""End to end: what a reviewer tripped over filling in the health book as a new user (issue 6) —
allergies and chronic illness asked twice, the last answer's echo, pregnancy asked of a man,
Sa Pa offered in Hà Nội, one example for every long answer, typed answers not echoed."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from bot.standin import ChatDriver
from models import validators as v
from models.tables import Draft, HealthBook
from tests.conftest import ChatHarness
from tests.flows import agree, items_for, t
from tests.flows import question as shown

# wording and ordering checks: on Zalo they run on SQLite only (the suite's time; Telegram runs
# them on both databases, and nothing in them differs between databases on Zalo)
pytestmark = pytest.mark.zalo_sqlite_only

ROOT = Path(__file__).resolve().parent.parent
HA_NOI = 1


async def until_screening(
    person: ChatDriver,
    *,
    female: bool = False,
    province: str = "Lào Cai",
    ward: str | None = "sa pa",
) -> None:
    """Consent and every question up to the health declaration (typed where buttons are not
    needed); a woman born 1960 or a man born 1945."""
    await agree(person)
    await person.send("Lò Thị Mai" if female else "Lò Văn Páo")
    await person.send("15/3/1960" if female else "15/3/1945")
    await person.press(t("vi", "gender.female" if female else "gender.male"))
    await person.press(t("vi", "button.no_id"))
    await person.send(t("vi", "button.no_phone"))
    await person.press(t("vi", "button.skip"))
    await person.press("Mông")
    await person.press(t("vi", "occupation.farmer"))
    await person.press(t("vi", "priority.none"))
    if province == "Lào Cai":
        await person.press("Lào Cai")
    else:
        await person.send(province)
        if province in person.buttons:  # several names match: the one meant is pressed
            await person.press(province)
    if ward is None:
        return
    await person.send(ward)
    await person.press(t("vi", "button.skip"))


async def declare(person: ChatDriver, gender: str, yes: tuple[str, ...] = ()) -> None:
    """Press an answer for every item asked: "yes" for those in ``yes``, else "no"."""
    for item in items_for(gender):
        await person.press(t("vi", "button.yes" if item.code in yes else "button.no"))


async def saved_book(chat_bot: ChatHarness) -> HealthBook:
    async with chat_bot.session() as session:
        return (await session.scalars(select(HealthBook))).one()


async def draft_answers(chat_bot: ChatHarness) -> dict:
    async with chat_bot.session() as session:
        return dict((await session.scalars(select(Draft))).one().answers)


# ---------------------------------------------------------------- 1. asked once, consistent


async def test_no_allergy_in_the_declaration_is_not_asked_again_and_stored_as_none(
    chat_bot: ChatHarness,
) -> None:
    person = chat_bot.user()
    await until_screening(person)
    await declare(person, "male")
    # every related item "no": no free-text question follows, straight to the review
    assert t("vi", "review.title") in person.last_text
    assert not any(t("vi", "ask.allergies") in x for x in person.texts)
    assert not any(t("vi", "ask.chronic_conditions") in x for x in person.texts)
    # the review offers no edit that could contradict the declaration
    assert t("vi", "button.edit_field", field=t("vi", "field.allergies")) not in person.buttons
    await person.press(t("vi", "button.save"))
    book = await saved_book(chat_bot)
    assert book.screening["other_allergies"] == "no" and book.allergies is None
    assert book.chronic_conditions is None


async def test_yes_asks_which_ones_and_an_edit_to_no_clears_them(chat_bot: ChatHarness) -> None:
    person = chat_bot.user()
    await until_screening(person)
    await declare(person, "male", yes=("other_allergies", "chronic_controlled"))
    assert t("vi", "ask.allergies") in person.last_text  # which ones?
    await person.send("tôm")
    assert t("vi", "ask.chronic_conditions") in person.last_text  # which one?
    await person.send("cao huyết áp")
    assert t("vi", "review.title") in person.last_text
    answers = await draft_answers(chat_bot)
    assert answers["allergies"] == "tôm" and answers["chronic_conditions"] == "cao huyết áp"

    # the declaration edited: now "no" to everything, so neither detail can stand
    await person.press(t("vi", "button.edit_field", field=t("vi", "field.screening")))
    await declare(person, "male")
    assert t("vi", "review.title") in person.last_text
    await person.press(t("vi", "button.save"))
    book = await saved_book(chat_bot)
    assert book.screening["other_allergies"] == "no" and book.allergies is None
    assert book.chronic_conditions is None

    # edited from /profile back to "don't know": the detail is asked again
    await person.send("/profile")
    await person.press(t("vi", "button.edit"))
    await person.press(t("vi", "button.edit_field", field=t("vi", "field.screening")))
    for item in items_for("male"):
        unsure = item.code == "other_allergies"
        await person.press(t("vi", "button.unknown" if unsure else "button.no"))
    assert t("vi", "ask.allergies") in person.last_text
    assert person.buttons == [t("vi", "button.not_sure")]
    await person.press(t("vi", "button.not_sure"))
    review = person.last_text
    assert f"{t('vi', 'field.allergies')}: {t('vi', 'review.not_sure')}" in review
    await person.press(t("vi", "button.save"))
    assert (await saved_book(chat_bot)).screening["other_allergies"] == "unknown"


# ---------------------------------------------------------------- 2. the last answer's echo


async def test_last_declaration_answer_stays_with_its_question(chat_bot: ChatHarness) -> None:
    person = chat_bot.user()
    await until_screening(person)
    items = items_for("male")
    for _item in items[:-1]:
        await person.press(t("vi", "button.no"))
    last = t(
        "vi",
        "ask.screening",
        n=len(items),
        total=len(items),
        question=t("vi", f"screening.{items[-1].code}"),
    )
    # on Zalo after the previous answer's echo, with the numbered choices
    assert (shown if chat_bot.channel == "zalo" else str)(person.last_text).endswith(last)
    assert chat_bot.channel == "zalo" or person.last_text == last
    await person.press(t("vi", "button.no"))
    if chat_bot.channel == "zalo":  # no edits: the answer is echoed on top of the next message
        echo, review = person.last_answer.split("\n\n", 1)
        short = t("vi", f"screening_short.{items[-1].code}")
        assert echo == f"✓ {short}: {t('vi', 'button.no')}"
        assert review.startswith(t("vi", "review.title"))
        return
    closed = next(x for x in person.texts if x.startswith(last))
    assert closed == f"{last}\n✓ {t('vi', 'button.no')}"  # the answer under its question
    assert person.last_text.startswith(t("vi", "review.title"))  # no stray "✓ Không" on top


# ---------------------------------------------------------------- 3. items that do not apply


async def test_a_man_is_not_asked_about_pregnancy_and_it_is_stored_as_not_applicable(
    chat_bot: ChatHarness,
) -> None:
    person = chat_bot.user()
    await until_screening(person)
    pregnancy = t("vi", "screening.pregnant_breastfeeding")
    items = items_for("male")
    assert len(items) == len(v.screening_items()) - 1
    for n, item in enumerate(items, 1):
        question = t("vi", f"screening.{item.code}")
        assert shown(person.last_text).endswith(f"({n}/{len(items)}):\n{question}")
        await person.press(t("vi", "button.no"))
    assert not any(pregnancy in x for x in person.texts)
    assert t("vi", "review.screening_ok") in person.last_text  # "not applicable" is not flagged

    # changed to a woman from the review: the one item that now applies is asked, only it
    await person.press(t("vi", "button.edit_field", field=t("vi", "field.gender")))
    await person.press(t("vi", "gender.female"))
    assert shown(person.last_text).endswith(pregnancy)
    await person.press(t("vi", "button.no"))
    answers = await draft_answers(chat_bot)
    assert answers["screening"]["pregnant_breastfeeding"] == "no"
    # and back to a man: not applicable again, not "no"
    await person.press(t("vi", "button.edit_field", field=t("vi", "field.gender")))
    await person.press(t("vi", "gender.male"))
    assert t("vi", "review.title") in person.last_text
    await person.press(t("vi", "button.save"))
    book = await saved_book(chat_bot)
    assert book.screening["pregnant_breastfeeding"] == "not_applicable"
    assert set(book.screening) == {i.code for i in v.screening_items()}

    await person.send("/mydata")  # in words: nothing to report, pregnancy not named
    texts = person.texts
    start = max(i for i, x in enumerate(texts) if x.startswith(t("vi", "mydata.title")))
    said = "\n".join(texts[start:])
    assert t("vi", "review.screening_ok") in said
    assert t("vi", "screening_short.pregnant_breastfeeding") not in said


async def test_a_woman_is_asked_about_pregnancy(chat_bot: ChatHarness) -> None:
    person = chat_bot.user()
    await until_screening(person, female=True)
    items = items_for("female")
    assert len(items) == len(v.screening_items())
    await declare(person, "female", yes=("pregnant_breastfeeding",))
    await person.press(t("vi", "button.save"))
    assert (await saved_book(chat_bot)).screening["pregnant_breastfeeding"] == "yes"


# ---------------------------------------------------------------- 4. examples of the province


async def test_commune_examples_belong_to_the_chosen_province(chat_bot: ChatHarness) -> None:
    person = chat_bot.user()
    await until_screening(person, province="Thành phố Hà Nội", ward=None)
    await person.send("xyzxyz")
    ward_question = t("vi", "ask.ward", province="Thành phố Hà Nội", example="ba dinh")
    assert person.last_text == ward_question
    error = person.texts[-2]
    assert error == t(
        "vi", "error.ward.none", query="xyzxyz", province="Thành phố Hà Nội", example="Ba Đình"
    )
    assert "Sa Pa" not in error and "sa pa" not in person.last_text.casefold()
    assert v.search_wards(HA_NOI, "ba dinh")[0][1] == "Phường Ba Đình"  # a real one
    await person.send("ba dinh")
    assert person.last_text.startswith("✓ Phường Ba Đình\n\n")  # 6: the typed answer echoed


async def test_similar_commune_names_are_called_similar() -> None:
    text = t("vi", "ask.ward_choose")
    assert "gần giống" in text and "trùng tên" not in text


# ---------------------------------------------------------------- 5. long answers


async def test_too_long_answers_point_to_their_own_question_s_example(
    chat_bot: ChatHarness,
) -> None:
    person = chat_bot.user()
    await until_screening(person)
    await declare(person, "male", yes=("other_allergies",))
    assert t("vi", "ask.allergies") in person.last_text
    await person.send("dị ứng " * 91)  # 639 characters
    error, question = person.texts[-2:]
    assert error == t("vi", "error.text.too_long", length=636, max=500)
    assert "Lùng Vai" not in error
    assert t("vi", "ask.allergies") in question and "penicillin" in question


# ---------------------------------------------------------------- 6. typed answers echoed


async def test_typed_answers_at_button_questions_are_echoed(chat_bot: ChatHarness) -> None:
    person = chat_bot.user()
    await agree(person)
    await person.send("Lò Văn Páo")
    await person.send("15/3/1945")
    await person.send("nam")
    assert person.last_text.startswith(f"✓ {t('vi', 'gender.male')}\n\n")
    await person.send("010045001234")
    await person.send(t("vi", "button.no_phone"))
    await person.press(t("vi", "button.skip"))
    await person.send("mong")
    assert person.last_text.startswith("✓ Mông\n\n" + t("vi", "ask.occupation"))
    await person.send("làm nông")
    await person.send("Không thuộc nhóm nào")
    assert person.last_text.startswith(f"✓ {t('vi', 'priority.none')}\n\n")
    await person.send("lao cai")
    assert person.last_text.startswith("✓ Lào Cai\n\n")
    await person.send("sa pa")
    await person.send("Thôn Lếch Dao")
    await person.send("không")  # the first declaration item, typed
    first = v.screening_items()[0].code
    echo = t("vi", "echo.screening", item=t("vi", f"screening_short.{first}"), answer="Không")
    assert person.last_text.startswith(f"✓ {echo}\n\n")


# ---------------------------------------------------------------- 8. register


def test_no_bare_ban_in_account_and_site_messages() -> None:
    for name in ("account", "site"):
        text = (ROOT / "locales" / "vi" / "LC_MESSAGES" / f"{name}.po").read_text("utf-8")
        bare = [b for b in text.split("\n\n") if "bạn" in b.split("msgstr", 1)[-1].casefold()]
        assert not bare, (name, bare)
