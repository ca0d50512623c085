"""Volunteers (/assist): registering residents on their behalf (consent read out and given
verbally, quick entry, the declaration as one checklist), finding them, their progress, a
duplicate ID's link request to the holder, and every forged access refused. End to end through
the real application on Telegram and Zalo; quick-entry parsing as unit tests."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from models import assist as ma
from models import healthbook as hb
from models.tables import (
    Account,
    Assist,
    AuditEntry,
    Draft,
    HealthBook,
    ParkedDraft,
    VolunteerWard,
)
from tests.conftest import ChatHarness
from tests.flows import Person, question, resident, t

SAPA, BAT_XAT, LAO_CAI = 3006, 2683, 15
TODAY = dt.date(2026, 11, 25)
QUICK = "Lò Văn Páo, 2/9/1945, nam, 010045678901"


# ---------------------------------------------------------------- quick entry, parsed


def test_quick_entry_is_forgiving_about_order_separators_and_accents() -> None:
    for line in (
        QUICK,
        "Lò Văn Páo 2/9/1945 nam 010045678901",
        "lo van pao; 010045678901; NAM; 02091945",
        "Lò Văn Páo, nam, 2-9-1945, 010 045 678 901, 0912 345 678, hmong",
    ):
        entry = ma.parse_quick(line, TODAY)
        assert entry is not None, line
        assert entry.date_of_birth == dt.date(1945, 9, 2) and entry.gender == "male", line
        assert entry.id_number is not None and entry.id_number.number == "010045678901", line
    extra = ma.parse_quick("Lò Thị Mai, 1/1/1950, nữ, không, 0912345678, hmong", TODAY)
    assert extra is not None and extra.id_number is None
    assert extra.phone == "+84912345678" and extra.ethnicity is not None
    assert ma.parse_quick("Lò Văn Páo", TODAY) is None  # a plain name: one question at a time


@pytest.mark.parametrize(
    ("line", "missing", "wrong", "unknown"),
    [
        ("Lò Văn Páo, 2/9/1945", ["gender", "id_number"], [], []),
        ("2/9/1945, nam, không", ["full_name"], [], []),
        ("Lò Văn Páo, 31/2/1945, nam, không", [], ["date_of_birth"], []),
        ("Lò Văn Páo, 2/9/1945, nữ, 010045678901", [], ["id_number"], []),  # a man's CCCD
        ("Lò Văn Páo, 2/9/1945, nam, 010045678901, xyz", [], [], ["xyz"]),
    ],
)
def test_bad_quick_entries_name_what_is_missing_or_wrong(
    line: str, missing: list[str], wrong: list[str], unknown: list[str]
) -> None:
    with pytest.raises(ma.QuickEntryError) as info:
        ma.parse_quick(line, TODAY)
    assert info.value.missing == missing
    assert [w for w, _ in info.value.wrong] == wrong
    assert info.value.unknown == unknown


# ---------------------------------------------------------------- helpers


def uid(person: Person) -> str:
    return str(person.user.id)


async def make_volunteer(chat_bot: ChatHarness, *wards: int, lang: str = "vi") -> Person:
    """A person bound to communes as a volunteer (rows written as /join would)."""
    person = chat_bot.user(lang=lang)
    async with chat_bot.session() as session, session.begin():
        account = await hb.ensure_account(session, chat_bot.channel, uid(person), lang)
        for ward in wards or (SAPA,):
            session.add(VolunteerWard(account_id=account.id, ward_code=ward, province_code=LAO_CAI))
    return person


async def account_of(chat_bot: ChatHarness, person: Person) -> Account:
    async with chat_bot.session() as session:
        account = await session.scalar(
            select(Account).where(
                Account.channel == chat_bot.channel, Account.external_id == uid(person)
            )
        )
        assert account is not None
        return account


async def books(chat_bot: ChatHarness) -> list[HealthBook]:
    async with chat_bot.session() as session:
        return list(await session.scalars(select(HealthBook).order_by(HealthBook.id)))


async def count(chat_bot: ChatHarness, table: type) -> int:
    async with chat_bot.session() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def new_resident(vol: Person) -> None:
    """From the menu to the first question, consent read out."""
    await vol.send("/assist")
    assert t("vi", "assist.button.new") in vol.buttons
    await vol.press(t("vi", "assist.button.new"))
    assert "Xin đọc to" in vol.last_answer
    await vol.press(t("vi", "assist.button.agreed"))
    assert t("vi", "assist.ask.full_name") in vol.last_answer


async def rest_of_book(vol: Person, *, checklist: str = "0") -> int:
    """From the phone question to saved; the messages the volunteer sent."""
    sent = 0
    if t("vi", "assist.ask.phone") in (vol.last_answer or ""):
        await vol.press(t("vi", "assist.button.no_phone"))
        sent += 1
    assert t("vi", "ask.bhyt") in vol.last_answer
    await vol.press(t("vi", "button.skip"))
    await vol.send("hmong")
    await vol.press(t("vi", "occupation.retired") if False else t("vi", "occupation.farmer"))
    await vol.press(t("vi", "priority.none"))
    assert t("vi", "ask.address_line") in vol.last_answer  # the commune: the volunteer's
    await vol.press(t("vi", "button.skip"))
    assert "Khai báo y tế" in vol.last_answer
    await vol.send(checklist)
    sent += 6
    for detail in ("allergies", "chronic_conditions"):  # after a "yes" only
        if t("vi", f"ask.{detail}") in (vol.last_answer or ""):
            await vol.press(t("vi", "button.not_sure"))
            sent += 1
    assert t("vi", "review.title") in vol.last_answer
    await vol.press(t("vi", "button.save"))
    assert "Đã lưu:" in vol.last_answer
    return sent + 1


async def quick_registration(vol: Person, line: str = QUICK) -> int:
    """A whole registration by quick entry; the messages the volunteer sent (from New)."""
    await new_resident(vol)
    await vol.send(line)
    assert "Xin kiểm tra lại" in vol.last_answer
    await vol.press(t("vi", "assist.button.correct"))
    return 4 + await rest_of_book(vol)


# ---------------------------------------------------------------- end to end


async def test_volunteer_registers_three_residents_without_phones(chat_bot: ChatHarness) -> None:
    vol = await make_volunteer(chat_bot)
    sent = await quick_registration(vol)
    assert sent <= 14
    saved = vol.last_answer
    assert "Lò Văn Páo" in saved and "Sa Pa" in saved
    assert t("vi", "assist.button.book") in vol.buttons
    # the second one question at a time, with "không" for no ID
    await vol.press(t("vi", "assist.button.next"))
    await vol.press(t("vi", "assist.button.agreed"))
    await vol.send("Lò Thị Mai")
    await vol.send("1/1/1950")
    await vol.press(t("vi", "gender.female"))
    await vol.send("không")
    assert t("vi", "assist.ask.phone") in vol.last_answer
    await rest_of_book(vol, checklist="2 ?5")
    # the third: quick entry with a phone-less woman's CCCD
    await vol.press(t("vi", "assist.button.next"))
    await vol.press(t("vi", "assist.button.agreed"))
    await vol.send("Giàng Thị Dợ, 5/5/1940, nữ, 010140123456")
    await vol.press(t("vi", "assist.button.correct"))
    await rest_of_book(vol)
    found = await books(chat_bot)
    assert [b.full_name for b in found] == ["Lò Văn Páo", "Lò Thị Mai", "Giàng Thị Dợ"]
    account = await account_of(chat_bot, vol)
    for book in found:
        assert book.account_id is None and book.relation == "assisted"
        assert book.phone is None and book.ward_code == SAPA
        assert (book.consent_kind, book.consent_by) == ("verbal", account.id)
    mai = found[1]
    assert mai.id_number is None
    assert mai.screening["covid_6m"] == "yes" and mai.screening["immunosuppressants"] == "unknown"
    assert mai.screening["anaphylaxis"] == "no"
    async with chat_bot.session() as session:
        assists = list(await session.scalars(select(Assist)))
        assert {(a.account_id, a.via) for a in assists} == {(account.id, "registered")}
        actions = list(await session.scalars(select(AuditEntry.action)))
        assert actions == ["created"] * 3
    # the booking button of the last one: the booking helper's bk:for
    assert t("vi", "assist.button.book") in vol.buttons
