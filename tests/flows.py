"""Shared steps for end-to-end tests: a person answering the health book through the bot."""

from __future__ import annotations

import re
from typing import Protocol

import aiohttp

from bot.context import Services
from bot.dispatch import drain
from bot.i18n import Translations
from bot.standin import ChatDriver
from bot.standin.zalo import ZaloChatDriver
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


Person = ChatDriver | ZaloChatDriver


class Harnessed(Protocol):
    """What :func:`resident` needs of a harness (Telegram's or Zalo's)."""

    def user(self, uid: int | None = None, lang: str | None = "vi", name: str = "An") -> Person: ...


class Dispatching(Protocol):
    """A harness whose services the dispatcher can run on (Telegram's or Zalo's)."""

    @property
    def services(self) -> Services: ...


async def send_due(harness: Dispatching) -> None:
    """Send what the outbox holds due at the harness clock's time (reminders, waitlist
    offers…), as the bot's dispatcher does: one pass of :func:`bot.dispatch.drain`."""
    await drain(harness.services)


def channel_of(person: Person) -> str:
    """The channel a driver talks on: ``telegram`` or ``zalo``."""
    return "zalo" if isinstance(person, ZaloChatDriver) else "telegram"


def t(lang: str, key: str, channel: str | None = None, **params: object) -> str:
    """A message in one language, as the bot renders it (on ``channel``: its variant of the
    message where there is one, e.g. ``ask.phone@zalo``)."""
    return TR.get(lang, channel)(key, **params)


def told(person: Person) -> list[str]:
    """What the bot said to a person outside its messages' questions: the toasts answering
    Telegram button presses; on Zalo (no toasts) the messages of the bot's last answer."""
    if isinstance(person, ZaloChatDriver):
        return [x for x in (person.last_answer or "").split("\n\n") if x]
    return person.callback_answers


async def sent_file(person: Person) -> bytes:
    """The bytes of the newest file the bot sent: a Telegram document; on Zalo the download
    link's content (from the bot's web server)."""
    if isinstance(person, ZaloChatDriver):
        text = next(x for x in reversed(person.texts) if "/media/" in x)
        url = next(w for w in text.split() if "/media/" in w)
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            assert resp.status == 200
            return await resp.read()
    call = next(c for c in reversed(person.calls) if c.method == "sendDocument")
    return bytes(call.params["document"].content)


_TYPE_LINES = "|".join(
    re.escape(t(lang, key, "zalo"))
    for lang in ("vi", "en")
    for key in ("choice.type_phone", "choice.type_place")
)
_CHOICES = re.compile(rf"\n\n(?:\d+\. |{_TYPE_LINES})")


def question(text: str | None) -> str:
    """A message without the choices Zalo appends (numbered lines, "type your phone" lines for
    Telegram's contact and location buttons, the hint); on Telegram: as is."""
    assert text is not None
    return _CHOICES.split(text, maxsplit=1)[0]


async def agree(person: Person, lang: str = "vi") -> None:
    """/start and accept the consent (on Zalo, which tells no language, a language other
    than Vietnamese is chosen with /language first)."""
    if isinstance(person, ZaloChatDriver) and lang != "vi":
        await person.send("/language")
        await person.press(t(lang, "language.name"))
    await person.send("/start")
    assert t(lang, "button.agree") in person.buttons
    await person.press(t(lang, "button.agree"))
    assert t(lang, "ask.full_name") in person.last_text


async def answer_until_screening(person: Person, lang: str = "vi") -> None:
    """Every question from the name to the address, with good answers."""
    await person.send(GOOD["full_name"])
    assert t(lang, "ask.date_of_birth") in person.last_text
    await person.send(GOOD["date_of_birth"])
    assert t(lang, "ask.gender") in person.last_text
    await person.press(t(lang, "gender.male"))
    assert t(lang, "ask.id_number") in person.last_text
    await person.send(GOOD["id_number"])
    assert t(lang, "ask.phone", channel_of(person)) in person.last_answer
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


async def answer_screening(person: Person, lang: str = "vi") -> None:
    """Every health-declaration item a man is asked, all "no": allergies and chronic illness,
    which say "which ones?", are then not asked at all."""
    items = items_for("male")
    for n, item in enumerate(items, 1):
        expected = t(
            lang, "ask.screening", n=n, total=len(items), question=t(lang, f"screening.{item.code}")
        )
        assert question(person.last_text).endswith(expected)
        await person.press(t(lang, "button.no"))
    assert t(lang, "review.title") in person.last_text


async def complete(person: Person, lang: str = "vi") -> None:
    """The whole health book, saved."""
    await agree(person, lang)
    await answer_until_screening(person, lang)
    await answer_screening(person, lang)
    await person.press(t(lang, "button.save"))
    assert t(lang, "saved.new") in person.last_text


async def resident(
    chat_bot: Harnessed,
    uid_digits: str,
    *,
    born: str = "15/3/1990",
    province: str | None = None,
    ward: str = "sa pa",
    answers: dict[str, str] | None = None,
    lang: str = "vi",
) -> Person:
    """A saved health book; ``province`` typed (else Lào Cai pressed), screening answered "no"
    except the items in ``answers`` (code → ``button.yes`` / ``button.unknown``)."""
    person = chat_bot.user(lang=lang)
    await agree(person, lang)
    await person.send("Lò Văn Páo")
    await person.send(born)
    await person.press(t(lang, "gender.male"))
    await person.send(f"0100{born[-2:]}{uid_digits}")
    await person.send(t(lang, "button.no_phone"))
    await person.press(t(lang, "button.skip"))
    await person.send("hmong")
    await person.press(t(lang, "occupation.farmer"))
    await person.press(t(lang, "priority.none"))
    if province is None:
        await person.press("Lào Cai")
    else:
        await person.send(province)
    await person.send(ward)
    await person.press(t(lang, "button.skip"))
    for item in v.screening_items():
        if item.applies(gender="male", age=None):
            await person.press(t(lang, (answers or {}).get(item.code, "button.no")))
    for detail in ("allergies", "chronic_conditions"):  # asked after a "yes" only
        if t(lang, f"ask.{detail}") in person.last_text:
            await person.press(t(lang, "button.not_sure"))
    await person.press(t(lang, "button.save"))
    assert t(lang, "saved.new") in person.last_text
    return person
