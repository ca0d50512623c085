"""Volunteers (/assist): registering residents on their behalf (consent read out and given
verbally, quick entry, the declaration as one checklist), finding them, their progress, a
duplicate ID's link request to the holder, and every forged access refused. End to end through
the real application on Telegram and Zalo; quick-entry parsing as unit tests."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import func, select

from models import assist as ma
from models import custody
from models import healthbook as hb
from models import invites as inv
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
from tests.flows import Person, question, resident, t, told

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


async def invited_volunteer(chat_bot: ChatHarness) -> Person:
    """A person who joins as a volunteer of Sa Pa with an invite code."""
    async with chat_bot.session() as session, session.begin():
        made = await inv.create_invite(
            session, role="volunteer", now=chat_bot.clock(), province=LAO_CAI, wards=[SAPA]
        )
    person = chat_bot.user(lang="vi")
    await person.send(f"/join {made.code}")
    async with chat_bot.session() as session:
        account = await hb.find_account(session, chat_bot.channel, uid(person))
        assert await custody.volunteer_wards(session, account) == [SAPA]
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
    await vol.press(t("vi", "occupation.farmer"))
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
    await vol.press(t("vi", "button.save_other"))
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


async def test_volunteer_joins_registers_three_and_books_for_them(
    chat_sample: ChatHarness,
) -> None:
    chat_bot = chat_sample
    vol = await invited_volunteer(chat_bot)
    await quick_registration(vol)
    # book a place for him from the saved message's button (the booking conversation's)
    await vol.press(t("vi", "assist.button.book"))
    await vol.press("COVID-19")
    await vol.press("Sa Pa")
    await vol.press(vol.buttons[0])
    await vol.press(vol.buttons[0])
    assert "Lò Văn Páo" in vol.last_answer
    await vol.press(t("vi", "book.button_confirm"))
    [pao] = await books(chat_bot)
    async with chat_bot.session() as session:
        states = await ma.statuses(session, [pao.id])
        assert states == {pao.id: "booked"}
    await quick_registration(vol, "Lò Thị Mai, 1/1/1950, nữ, không")
    await quick_registration(vol, "Giàng Thị Dợ, 5/5/1940, nữ, 010140123456")
    await vol.send("/assist")
    await vol.press(t("vi", "assist.button.mine"))
    progress = question(vol.last_answer)
    assert "Đã đăng ký: 3" in progress and "Đã đặt lịch: 1" in progress
    assert "Đã tiêm: 0" in progress
    assert any("Lò Thị Mai" in b for b in vol.buttons)
    async with chat_bot.session() as session:
        actions = sorted(await session.scalars(select(AuditEntry.action)))
        assert actions.count("created") == 3 and "booked" in actions


async def test_find_open_and_edit_a_resident(chat_bot: ChatHarness) -> None:
    vol = await make_volunteer(chat_bot)
    await quick_registration(vol)
    await quick_registration(vol, "Lò Thị Mai, 1/1/1950, nữ, không")
    for query, names in (
        ("pao", ["Lò Văn Páo"]),  # without accents
        ("LO", ["Lò Thị Mai", "Lò Văn Páo"]),
        ("678901", ["Lò Văn Páo"]),  # the ID's last digits
        ("1/1/1950", ["Lò Thị Mai"]),
    ):
        await vol.send("/assist")
        await vol.press(t("vi", "assist.button.find"))
        assert t("vi", "assist.find.ask") in vol.last_answer
        await vol.send(query)
        assert [b.split(" · ")[0] for b in vol.buttons] == names, query
    await vol.send("/assist")
    await vol.press(t("vi", "assist.button.find"))
    await vol.send("nobody")
    assert t("vi", "assist.find.none") in vol.last_answer  # and the search goes on
    await vol.send("pao")
    await vol.press(vol.buttons[0])
    shown = question(vol.last_answer)
    assert "Lò Văn Páo" in shown and "*********901" in shown and "010045678901" not in shown
    assert t("vi", "assist.status.registered") in shown
    await vol.press(t("vi", "assist.button.edit"))
    assert t("vi", "review.title") in vol.last_answer
    await vol.press(t("vi", "button.edit_field", field=t("vi", "field.address_line")))
    await vol.send("Thôn Lếch Dao")
    await vol.press(t("vi", "button.save_other"))
    assert "Đã cập nhật: Lò Văn Páo" in vol.last_answer
    async with chat_bot.session() as session:
        pao = await session.scalar(select(HealthBook).where(HealthBook.full_name == "Lò Văn Páo"))
        assert pao is not None and pao.address_line == "Thôn Lếch Dao"
        edited = await session.scalar(select(AuditEntry).where(AuditEntry.action == "edited"))
        assert edited is not None and edited.fields == ["address_line"]


async def test_search_is_left_for_other_answers(chat_bot: ChatHarness) -> None:
    """Find, then New resident instead: the name typed next is the registration's."""
    vol = await make_volunteer(chat_bot)
    await vol.send("/assist")
    await vol.press(t("vi", "assist.button.find"))
    await vol.send("/assist")
    await vol.press(t("vi", "assist.button.new"))
    await vol.press(t("vi", "assist.button.agreed"))
    await vol.send("Lò Văn Páo")
    assert t("vi", "ask.date_of_birth") in vol.last_answer
    # the menu in the middle of it: the registration goes on after
    await vol.send("/assist")
    assert t("vi", "assist.button.new") in vol.buttons
    await vol.send("2/9/1945")
    assert t("vi", "ask.gender") in vol.last_answer


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("Lò Văn Páo, 2/9/1945", ["Giới tính", "Số CCCD/CMND"]),
        ("2/9/1945, nam, không", ["Họ và tên"]),
        ("Lò Văn Páo, 31/2/1945, nam, không", ["Ngày sinh"]),
        ("Lò Văn Páo, 2/9/1945, nữ, 010045678901", ["Số CCCD/CMND"]),
        ("Lò Văn Páo, 2/9/1945, nam, 010045678901, xyz", ["«xyz»"]),
    ],
)
async def test_bad_quick_entry_lines_store_nothing(
    chat_bot: ChatHarness, line: str, said: list[str]
) -> None:
    vol = await make_volunteer(chat_bot)
    await new_resident(vol)
    await vol.send(line)
    answer = vol.last_answer
    for part in said:
        assert part in answer, (part, answer)
    assert "Chưa lưu gì" in answer and "Lò Văn Páo, 2/9/1945, nam, 010045678901" in answer
    assert t("vi", "assist.ask.full_name") in answer  # the same question again
    async with chat_bot.session() as session:
        [draft] = list(await session.scalars(select(Draft)))
        assert draft.answers == {"province": LAO_CAI, "ward": SAPA}
    # and the fix: a good line is shown to confirm, then Fix types it again
    await vol.send(QUICK)
    await vol.press(t("vi", "assist.button.fix"))
    assert t("vi", "assist.ask.full_name") in vol.last_answer
    async with chat_bot.session() as session:
        [draft] = list(await session.scalars(select(Draft)))
        assert draft.answers == {"province": LAO_CAI, "ward": SAPA}


async def test_several_communes_ask_among_the_volunteers_own(chat_bot: ChatHarness) -> None:
    vol = await make_volunteer(chat_bot, SAPA, BAT_XAT)
    await new_resident(vol)
    await vol.send(QUICK)
    await vol.press(t("vi", "assist.button.correct"))
    await vol.press(t("vi", "assist.button.no_phone"))
    await vol.press(t("vi", "button.skip"))
    await vol.send("hmong")
    await vol.press(t("vi", "occupation.farmer"))
    await vol.press(t("vi", "priority.none"))
    assert t("vi", "assist.ask.ward") in vol.last_answer
    assert sorted(vol.buttons) == ["Phường Sa Pa", "Xã Bát Xát"]
    await vol.press_data("hb:ward:1")  # forged: a ward of Hà Nội (on Zalo: typed, no choice)
    await vol.send("lao cai")  # a commune of the province, not one of theirs
    assert t("vi", "error.ward.not_yours") in vol.last_answer
    await vol.press("Xã Bát Xát")
    assert t("vi", "ask.address_line") in vol.last_answer
    async with chat_bot.session() as session:
        [draft] = list(await session.scalars(select(Draft)))
        assert draft.answers["ward"] == BAT_XAT


async def test_a_plain_resident_and_a_suspended_volunteer_get_the_notice(
    chat_bot: ChatHarness,
) -> None:
    person = chat_bot.user()
    await person.send("/assist")
    assert t("vi", "assist.only_volunteers") in person.last_answer
    vol = await make_volunteer(chat_bot)
    await quick_registration(vol)
    [book] = await books(chat_bot)
    async with chat_bot.session() as session, session.begin():
        account = await session.scalar(select(Account).where(Account.external_id == uid(vol)))
        assert account is not None
        await inv.suspend(session, account, chat_bot.clock())
    await vol.send("/assist")  # told their rights are suspended, not to get an invite
    assert t("vi", "assist.suspended_rights") in vol.last_answer
    before = await snapshot(chat_bot)
    for data in ("as:new", "as:agree", f"as:o:{book.id}", f"as:e:{book.id}", "as:m:0",
                 f"as:h:{book.id}", f"bk:for:{book.id}"):  # fmt: skip
        await vol.press_data(data)
        assert "Lò Văn Páo" not in (vol.last_answer or ""), data
    assert await snapshot(chat_bot) == before


async def snapshot(chat_bot: ChatHarness) -> tuple[int, ...]:
    """Counts of what a forged press could change."""
    return (
        await count(chat_bot, HealthBook),
        await count(chat_bot, Draft),
        await count(chat_bot, Assist),
        await count(chat_bot, AuditEntry),
        await count(chat_bot, ParkedDraft),
    )


async def test_forged_presses_reach_no_other_book(chat_bot: ChatHarness) -> None:
    """Another commune's resident, another volunteer's resident, a resident pretending to be
    a volunteer: every forged id refused, nothing changed. (On Zalo the data is typed: no
    choice names it, so it reaches nothing either.)"""
    ours = await make_volunteer(chat_bot)
    other = await make_volunteer(chat_bot, BAT_XAT)
    neighbour = await make_volunteer(chat_bot)  # the same commune, not their resident
    await quick_registration(ours)
    await new_resident(other)
    await other.send("Giàng Thị Dợ, 5/5/1940, nữ, 010140123456")
    await other.press(t("vi", "assist.button.correct"))
    await rest_of_book(other)
    pao, do = await books(chat_bot)
    assert do.ward_code == BAT_XAT
    pretender = await resident(chat_bot, "654321", born="15/3/1990")
    before = await snapshot(chat_bot)
    denied = t("vi", "access.denied")
    for person, book in ((ours, do), (neighbour, pao), (pretender, pao)):
        for data in (f"as:o:{book.id}", f"as:e:{book.id}", f"as:h:{book.id}",
                     f"bk:for:{book.id}", f"bk:ticket:{book.id}"):  # fmt: skip
            await person.press_data(data)
            shown = " ".join(person.texts[-3:]) + " ".join(person.callback_answers[-1:])
            assert book.full_name not in shown, (data, shown)
            if (
                chat_bot.channel == "telegram"
                and data.startswith("as:")
                and person is not pretender
            ):
                assert denied in shown, data
        for data in ("as:o:x", "as:o:99999999999", f"as:la:{book.id}:1", "as:r:1", "as:m:0"):
            await person.press_data(data)
    await pretender.press_data("as:agree")
    if chat_bot.channel == "telegram":  # on Zalo the data is typed, and names no choice
        assert t("vi", "assist.only_volunteers") in " ".join(told(pretender))
    assert await snapshot(chat_bot) == before


async def test_duplicate_id_sends_a_link_request_the_holder_accepts(chat_bot: ChatHarness) -> None:
    holder = await resident(chat_bot, "678901", born="2/9/1945")  # ID 010045678901
    vol = await make_volunteer(chat_bot)
    await new_resident(vol)
    await vol.send(QUICK)
    said = vol.last_answer
    # where and when (the row's own time: the real clock's day)
    assert re.search(r"đã có sổ sức khỏe, đăng ký tại Phường Sa Pa ngày \d\d/\d\d/20\d\d", said)
    assert "Lò Văn Páo" not in question(said).split("\n")[0]  # no more than where and when
    assert t("vi", "assist.ask.full_name") in said  # refused: the same question
    async with chat_bot.session() as session:
        [draft] = list(await session.scalars(select(Draft).where(Draft.subject == "assisted")))
        assert "full_name" not in draft.answers
    await vol.press(t("vi", "assist.button.link"))
    assert t("vi", "assist.link.sent") in vol.last_answer
    notice = holder.last_answer or ""
    assert "đề nghị được giúp Lò Văn Páo" in notice
    [book] = await books(chat_bot)
    # the volunteer cannot accept for the holder (on Zalo: typed, names no choice)
    await vol.press_data(f"as:la:{book.id}:{(await account_of(chat_bot, vol)).id}")
    async with chat_bot.session() as session:
        assert await session.scalar(select(func.count()).select_from(Assist)) == 0
    await holder.press(t("vi", "assist.button.accept"))
    assert t("vi", "assist.link.accepted") in " ".join(holder.texts[-2:])
    assert "bạn có thể giúp Lò Văn Páo" in vol.last_answer
    await vol.press(t("vi", "assist.button.open"))
    assert "*********901" in vol.last_answer
    async with chat_bot.session() as session:
        [link] = list(await session.scalars(select(Assist)))
        assert link.via == "linked" and link.health_book_id == book.id
        actions = sorted(await session.scalars(select(AuditEntry.action)))
        assert actions == ["link_accepted", "link_requested"]
        assert await session.scalar(select(func.count()).select_from(Draft)) == 0
    # the holder's book stays theirs; the volunteer now finds it
    await vol.send("/assist")
    await vol.press(t("vi", "assist.button.find"))
    await vol.send("678901")
    assert [b.split(" · ")[0] for b in vol.buttons] == ["Lò Văn Páo"]


async def test_duplicate_id_typed_one_at_a_time_and_without_holder(chat_bot: ChatHarness) -> None:
    first = await make_volunteer(chat_bot)
    await quick_registration(first)  # a book nobody holds in the app
    # a volunteer of another commune (one of the same commune takes the resident on:
    # tests/test_issue9_volunteers.py)
    vol = await make_volunteer(chat_bot, BAT_XAT)
    await new_resident(vol)
    await vol.send("Lò Văn Páo")
    await vol.send("2/9/1945")
    await vol.press(t("vi", "gender.male"))
    await vol.send("010045678901")
    said = vol.last_answer
    assert "đăng ký tại Phường Sa Pa" in said and t("vi", "assist.dup.no_holder") in said
    assert t("vi", "ask.id_number") in said  # the same question
    await vol.send("không")
    assert t("vi", "assist.ask.phone") in vol.last_answer
    assert await count(chat_bot, AuditEntry) == 1  # the first one's "created" only


async def test_unfinished_registrations_are_kept_and_continued(chat_bot: ChatHarness) -> None:
    vol = await make_volunteer(chat_bot)
    await new_resident(vol)
    await vol.send("Lò Văn Páo")
    await vol.send("2/9/1945")
    # another resident comes first: the first is set aside, not lost
    await new_resident(vol)
    await vol.send("Lò Thị Mai, 1/1/1950, nữ, không")
    await vol.send("/assist")
    await vol.press(t("vi", "assist.button.unfinished", count=2))
    assert vol.buttons[:4] == [
        t("vi", "assist.button.continue", name="Lò Thị Mai"),
        t("vi", "assist.button.discard", name="Lò Thị Mai"),
        "Lò Văn Páo",
        t("vi", "assist.button.discard", name="Lò Văn Páo"),
    ]
    await vol.press("Lò Văn Páo")
    assert t("vi", "ask.gender") in vol.last_answer
    assert "Lò Văn Páo" in vol.last_answer
    await vol.send("/assist")
    await vol.press(t("vi", "assist.button.mine"))
    assert "Chưa xong: 2" in question(vol.last_answer)
