"""Shared steps for end-to-end tests: a person answering the health book through the bot."""

from __future__ import annotations

from bot.i18n import Translations
from bot.standin import ChatDriver
from models import validators as v

TR = Translations()

GOOD = {
    "full_name": "nguyễn  văn an",
    "date_of_birth": "15/3/1950",
    "id_number": "010050001234",  # Lào Cai (010), man born in the 1900s (0), 1950 (50)
    "phone": "0912 345 678",
    "address_line": "Thôn Lếch Dao",
    "ward": "sa pa",
}


def t(lang: str, key: str, **params: object) -> str:
    """A message in one language, as the bot renders it."""
    return TR.get(lang)(key, **params)


async def agree(person: ChatDriver, lang: str = "vi") -> None:
    """/start and accept the consent."""
    await person.send("/start")
    assert t(lang, "button.agree") in person.buttons
    await person.press(t(lang, "button.agree"))
    assert t(lang, "ask.full_name") in person.last_text


async def answer_until_screening(person: ChatDriver, lang: str = "vi") -> None:
    """Every question from the name to the address, with good answers."""
    await person.send(GOOD["full_name"])
    assert t(lang, "ask.date_of_birth") in person.last_text
    await person.send(GOOD["date_of_birth"])
    assert t(lang, "ask.gender") in person.last_text
    await person.press(t(lang, "gender.male"))
    assert t(lang, "ask.id_number") in person.last_text
    await person.send(GOOD["id_number"])
    assert t(lang, "ask.phone") in person.last_text
    await person.share_contact("+84912345678")
    assert t(lang, "ask.bhyt") in person.last_text
    await person.press(t(lang, "button.skip"))
    assert t(lang, "ask.ethnicity") in person.last_text
    await person.send("hmong")
    assert t(lang, "ask.occupation") in person.last_text
    await person.press(t(lang, "occupation.farmer"))
    assert t(lang, "ask.priority_group") in person.last_text
    await person.press(t(lang, "priority.none"))
    assert t(lang, "ask.province", province="Lào Cai") in person.last_text
    await person.press("Lào Cai")
    assert t(lang, "ask.ward", province="Lào Cai", example="sa pa") in person.last_text
    await person.send(GOOD["ward"])
    assert t(lang, "ask.address_line") in person.last_text
    await person.send(GOOD["address_line"])


def items_for(gender: str) -> list[v.ScreeningItem]:
    """The health-declaration items asked of an adult of this gender."""
    return [i for i in v.screening_items() if i.applies(gender=gender, age=None)]


async def answer_screening(person: ChatDriver, lang: str = "vi") -> None:
    """Every health-declaration item a man is asked, all "no": allergies and chronic illness,
    which say "which ones?", are then not asked at all."""
    items = items_for("male")
    for n, item in enumerate(items, 1):
        expected = t(
            lang, "ask.screening", n=n, total=len(items), question=t(lang, f"screening.{item.code}")
        )
        assert person.last_text.endswith(expected)
        await person.press(t(lang, "button.no"))
    assert t(lang, "review.title") in person.last_text


async def complete(person: ChatDriver, lang: str = "vi") -> None:
    """The whole health book, saved."""
    await agree(person, lang)
    await answer_until_screening(person, lang)
    await answer_screening(person, lang)
    await person.press(t(lang, "button.save"))
    assert t(lang, "saved.new") in person.last_text
