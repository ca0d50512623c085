"""The person's rights end to end: /mydata shows everything stored about them, in words and as
a JSON file; /delete names what it will erase, erases it from every table and gives booked
places back."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.db import create_engine
from bot.standin import ChatDriver
from handlers.account import MESSAGE_LIMIT, pack_messages
from models import aftercare as ac
from models import agencies as ag
from models import booking as bk
from models import checkin as ci
from models import healthbook as hb
from models import lookups as lk
from models import waitlist as wl
from models.campaigns import sample_book
from models.tables import (
    Account,
    AgencyMember,
    Base,
    Booking,
    BookingDraft,
    ChatOffer,
    Session,
    Site,
)
from tests.conftest import ChatHarness
from tests.flows import GOOD, agree, complete, sent_file, t, told

TODAY = dt.date(2026, 11, 25)  # the harness clock: 10:00 in Lào Cai, a Wednesday
HOSPITAL = "Bệnh viện Đa khoa tỉnh Lào Cai"
OTHER_HOSPITAL = "Bệnh viện Đa khoa khu vực Nghĩa Lộ"
PFIZER = "Comirnaty (BNT162b2)"
NAME = "Nguyễn Văn An"


DEPARTMENT = "Sở Y tế tỉnh Lào Cai"
SCHOOL = "Trường THPT số 1 Sa Pa"
EDUCATION = "Sở Giáo dục và Đào tạo tỉnh Lào Cai"


@dataclass
class Person:
    """A resident with everything a person can have stored, and the ids that point at them."""

    chat: ChatDriver
    account_id: int
    book_id: int
    booking_codes: list[str]
    sessions_before: dict[int, int]  # session id → places booked before this person booked


async def _slot(session: Any, site_code: str, campaign: str, day: dt.date) -> Session:
    found = await session.scalar(
        select(Session)
        .join(Site, Site.id == Session.site_id)
        .where(
            Site.code == site_code,
            Session.campaign_id == (await lk.get_campaign(session, campaign)).id,
            Session.date == day,
        )
        .order_by(Session.start_time)
    )
    assert found is not None
    return found


async def everything_stored(chat_bot: ChatHarness) -> Person:
    """Through the domain: a health book's second consent, a dose given (Pfizer, at the
    hospital, today) and a mild reaction reported after it, an upcoming influenza booking, a
    waitlist entry for dose 2, a booking in progress, and a staff role at another hospital.
    Through the chat_bot: the health book, an edit of it begun (a phone number changed, not
    saved), and a neighbour checked in at that other hospital, the card left open: two
    conversations under way."""
    chat = chat_bot.user()
    await complete(chat)
    now = chat_bot.clock()
    async with chat_bot.session() as session, session.begin():
        account = await hb.find_account(session, chat_bot.channel, str(chat.user.id))
        assert account is not None
        book = await hb.own_book(session, account)
        assert book is not None
        await hb.give_consent(session, account, "2026-12")
        covid = await _slot(session, "LC-BVDK", "covid19_2021", TODAY)
        flu = await _slot(session, "LC-BVDK", "influenza_seasonal", TODAY + dt.timedelta(days=1))
        before = {covid.id: covid.booked, flu.id: flu.booked}
        nurse = await hb.ensure_account(session, "telegram", "501", "vi")
        await ci.grant_staff(session, nurse, "LC-BVDK")
        dose1 = await bk.book(session, book.id, covid.id, "covid19_2021", None, TODAY)
        await ci.check_in(session, nurse, dose1.code, now)
        await ci.record_dose(session, nurse, dose1.id, "pfizer", "FP1234", now)
        await ac.report(session, account, dose1.id, "mild", now)  # the after-care check-in
        flu_booking = await bk.book(session, book.id, flu.id, "influenza_seasonal", None, TODAY)
        hospital = await lk.get_site(session, "LC-BVDK")
        await wl.join_waitlist(session, book.id, "covid19_2021", today=TODAY, site_id=hospital.id)
        session.add(BookingDraft(account_id=account.id, campaign_id=dose1.campaign_id, dose=2))
        # the same person is staff elsewhere, and checks another resident in there
        await ci.grant_staff(session, account, "LC-BVNL")
        neighbour = await hb.ensure_account(session, "telegram", "502", "vi")
        other_book = sample_book(neighbour.id, date_of_birth=dt.date(1990, 5, 4))
        session.add(other_book)
        await session.flush()
        there = await _slot(session, "LC-BVNL", "covid19_2021", TODAY)
        theirs = await bk.book(session, other_book.id, there.id, "covid19_2021", None, TODAY)
        await _agency_life(session, account, neighbour, now)
        person = Person(chat, account.id, book.id, [dose1.code, flu_booking.code], before)
    await chat.send("/profile")
    await chat.press(t("vi", "button.edit"))  # a draft copy of the book, the review step
    await chat.press(t("vi", "button.edit_field", field=t("vi", "field.phone")))
    await chat.send("0987654321")  # changed in the draft, not saved
    assert t("vi", "review.title") in chat.last_text
    # then a check-in card, a conversation of its own, stays open while the dose is recorded
    await chat.send(f"/checkin {theirs.code}")
    assert t("vi", "site.button.record") in chat.buttons
    async with chat_bot.session() as session, session.begin():
        account = await session.get(Account, person.account_id)
        assert account is not None
        await ci.record_dose(session, account, theirs.id, "pfizer", "FP9999", now)
    return person


async def _agency_life(
    session: AsyncSession, account: Account, neighbour: Account, now: dt.datetime
) -> None:
    """The person's agencies: staff of the education department until its head removed
    them (60 days ago), then of a school, moved to the health department 10 days ago, whose
    head they are; as its head they removed the neighbour 5 days ago."""
    days = dt.timedelta(days=1)
    education = await ag.add(session, "SGDDT", EDUCATION, "department", None, 900)
    school = await ag.add(session, "THPT-SAPA1", SCHOOL, "school", "SGDDT", 60)
    health = await ag.add(session, "SYT", DEPARTMENT, "department", None, 120)
    their_head = await hb.ensure_account(session, "telegram", "601", "vi")
    await ag.set_head(session, education, their_head)
    await ag.join(session, account, education, now - 90 * days)
    first = await ag.membership(session, account.id)
    assert first is not None
    await ag.remove_member(session, their_head, education, first.id, now - 60 * days)
    await ag.join(session, account, school, now - 50 * days)
    assert (await ag.join(session, account, health, now - 10 * days)).status == "moved"
    await ag.set_head(session, health, account)
    await ag.join(session, neighbour, health, now - 20 * days)
    theirs = await ag.membership(session, neighbour.id)
    assert theirs is not None
    await ag.remove_member(session, account, health, theirs.id, now - 5 * days)


async def rows_about(chat_bot: ChatHarness, person: Person) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table that refers to the person in any way: by the account, the
    health book or one of its bookings (any foreign key or own id), by their Telegram id, or
    holding their name, ID or phone number anywhere in its text or JSON."""
    ids: dict[str, set[Any]] = {"accounts": {person.account_id}, "health_books": {person.book_id}}
    telegram = person.chat.user.id
    secrets = (NAME, GOOD["id_number"], "912345678", str(telegram))
    found: dict[str, list[dict[str, Any]]] = {}
    async with chat_bot.session() as session:
        own = await session.scalars(
            select(Booking.id).where(Booking.health_book_id == person.book_id)
        )
        ids["bookings"] = set(own.all())
        for table in Base.metadata.sorted_tables:
            for row in (await session.execute(select(table))).mappings():
                if _refers(table, row, ids, telegram, secrets):
                    found.setdefault(table.name, []).append(dict(row))
    return found


def _refers(
    table: Any, row: Any, ids: dict[str, set[Any]], telegram: int, secrets: tuple[str, ...]
) -> bool:
    for column in table.columns:
        value = row[column.name]
        if value is None:
            continue
        targets = {fk.column.table.name for fk in column.foreign_keys}
        if column.primary_key and not targets:
            targets = {table.name}
        if any(value in ids.get(target, ()) for target in targets):
            return True
        if isinstance(value, int) and value == telegram:
            return True
        if isinstance(value, str | dict | list):
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            if any(secret in text for secret in secrets):
                return True
    return False


async def sent_after(person: ChatDriver, command: str) -> list[str]:
    before = len(person.texts)
    await person.send(command)
    return person.texts[before:]


async def test_mydata_in_words_and_in_full(chat_sample: ChatHarness) -> None:
    chat_bot = chat_sample
    person = await everything_stored(chat_bot)
    messages = await sent_after(person.chat, "/mydata")
    limit = 2000 if chat_bot.channel == "zalo" else 4096
    assert messages and all(len(m) <= limit for m in messages)
    text = "\n".join(messages)
    for words in [
        NAME,
        "15/03/1950",
        t("vi", "gender.male"),
        "*********234",
        "0912 345 678",
        "Mông",
        t("vi", "occupation.farmer"),
        t("vi", "priority.none"),
        "Phường Sa Pa",
        "Lào Cai",
        "Thôn Lếch Dao",
        t("vi", "review.screening_ok"),
        t("vi", "campaign_name.covid19_2021"),
        t("vi", "campaign_name.influenza_seasonal"),
        HOSPITAL,
        OTHER_HOSPITAL,
        PFIZER,
        "FP1234",
        *person.booking_codes,
        t("vi", "status.vaccinated"),
        t("vi", "status.booked"),
        t("vi", "mydata.waitlist.waiting"),
        t("vi", "mydata.waitlist_from", date="16/12/2026"),  # Pfizer: dose 2 from 21 days on
        t("vi", "mydata.role.site_staff"),
        t("vi", "mydata.staff_records", count=2),  # a check-in and a dose, for someone else
        "26/11/2026",  # the influenza booking's day
        "25/11/2026 10:00",  # when the dose was given, in Lào Cai time
        t("vi", "mydata.draft_edit", count=1) + "\n• " + t("vi", "field.phone") + ": 0987 654 321",
        t("vi", "mydata.booking_draft", campaign=t("vi", "campaign_name.covid19_2021")),
        t("vi", "mydata.reactions", count=1) + "\n• " + t("vi", "aftercare.severity.mild"),
        # where they work now and since when, where before and how it ended, what they head
        t("vi", "mydata.agency", name=DEPARTMENT, code="SYT", since="15/11/2026 10:00"),
        t("vi", "mydata.agency_past", count=2),
        t(
            "vi",
            "mydata.agency_past_item",
            name=EDUCATION,
            code="SGDDT",
            since="27/08/2026 10:00",
            until="26/09/2026 10:00",
            how=t("vi", "mydata.agency_end.removed"),
        ),
        t(
            "vi",
            "mydata.agency_past_item",
            name=SCHOOL,
            code="THPT-SAPA1",
            since="06/10/2026 10:00",
            until="15/11/2026 10:00",
            how=t("vi", "mydata.agency_end.moved"),
        ),
        t("vi", "mydata.agency_heads", count=1) + "\n• " + f"{DEPARTMENT} (SYT)",
        t("vi", "mydata.agency_removals", count=1),
    ]:
        assert words in text, words
    # names, never codes; the full ID number only in the file; no key left untranslated
    for code in ["farmer", "covid19_2021", "LC-BVDK", "pfizer", "site_staff", GOOD["id_number"]]:
        assert code not in text, code
    keys = re.sub(r"📎 [\w.-]+:", "", text)  # on Zalo the file is named by its link
    assert "mydata." not in keys and "None" not in text and "{" not in text

    data = json.loads(await sent_file(person.chat))  # on Zalo by its download link
    [book] = data["health_books"]
    assert book["id_number"]["number"] == GOOD["id_number"]
    assert book["ethnicity"] == {"code": 8, "name": "Mông"}
    assert book["occupation"] == {"code": "farmer", "name": t("vi", "occupation.farmer")}
    assert book["ward"]["name"] == "Phường Sa Pa" and book["province"]["name"] == "Lào Cai"
    assert book["date_of_birth"] == "15/03/1950"
    [dose] = data["vaccinations"]
    assert dose["vaccine"]["name"] == PFIZER and dose["site"]["name"] == HOSPITAL
    assert [s["site"]["name"] for s in data["staff_sites"]] == [OTHER_HOSPITAL]
    # agencies by code and name, dates in Lào Cai time; how a membership ended, never by whom
    assert [(m["agency"]["code"], m["joined_at"], m["left_at"], (m["ended"] or {}).get("code"))
            for m in data["agency_memberships"]] == [
        ("SGDDT", "27/08/2026 10:00", "26/09/2026 10:00", "removed"),
        ("THPT-SAPA1", "06/10/2026 10:00", "15/11/2026 10:00", "moved"),
        ("SYT", "15/11/2026 10:00", None, None),
    ]  # fmt: skip
    assert data["agency_memberships"][0]["ended"]["name"] == t("vi", "mydata.agency_end.removed")
    assert [h["agency"] for h in data["agency_heads"]] == [{"code": "SYT", "name": DEPARTMENT}]
    assert data["agency_removals_made"] == 1  # the neighbour's membership: counted, not copied
    agencies = json.dumps(data["agency_memberships"])
    assert "removed_by" not in agencies and "601" not in agencies
    # the file holds every row the database has about the person, table by table; of other
    # people's records it counts those this person signed as staff (a check-in and a dose)
    assert data["staff_records"] == 2
    in_file = {
        "accounts": 1,
        "consents": len(data["consents"]),
        "health_books": len(data["health_books"]),
        "drafts": int(data["draft"] is not None),
        "booking_drafts": int(data["booking_draft"] is not None),
        "bookings": len(data["bookings"]) + 1,
        "waitlist_entries": len(data["waitlist"]),
        "vaccinations": len(data["vaccinations"]) + 1,
        "staff_sites": len(data["staff_sites"]),
        "conversation_states": len(data["conversations"]),
        "chat_offers": int(bool(data["offered_choices"])),
        "reactions": len(data["reactions"]),
        # their memberships, and the neighbour's they ended as a head (counted)
        "agency_members": len(data["agency_memberships"]) + data["agency_removals_made"],
        "agency_heads": len(data["agency_heads"]),
        # what they did as staff for others (a check-in and a dose): counted, not copied
        "audit_log": data["acted_for_others"],
    }
    in_db = {name: len(rows) for name, rows in (await rows_about(chat_bot, person)).items()}
    assert in_db == {name: n for name, n in in_file.items() if n}
    assert in_db["consents"] == 2 and in_db["bookings"] == 3 and in_db["conversation_states"] == 2


async def test_delete_names_everything_then_nothing_is_left(chat_sample: ChatHarness) -> None:
    chat_bot = chat_sample
    person = await everything_stored(chat_bot)
    assert await rows_about(chat_bot, person)
    [confirm] = await sent_after(person.chat, "/delete")
    for line in [
        t("vi", "delete.item.health_books", count=1),
        t("vi", "delete.item.bookings", count=2),
        t("vi", "delete.item.places", count=1),  # the influenza booking; the dose was given
        t("vi", "delete.item.waitlist", count=1),
        t("vi", "delete.item.vaccinations", count=1),
        t("vi", "delete.item.drafts", count=2),
        t("vi", "delete.item.consents", count=2),
        t("vi", "delete.item.staff_sites", count=1),
        t("vi", "delete.item.staff_records", count=2),
        t("vi", "delete.item.reactions", count=1),
        t("vi", "delete.item.agency_memberships", count=3),
        t("vi", "delete.item.agency_heads", count=1),
        t("vi", "delete.item.agency_removals", count=1),
        t("vi", "delete.item.account"),
    ]:
        assert line in confirm, line
    await person.chat.press(t("vi", "button.delete_yes"))
    assert person.chat.last_text == t("vi", "delete.done_more")

    left = await rows_about(chat_bot, person)
    assert not left, left
    async with chat_bot.session() as session:
        for session_id, booked in person.sessions_before.items():
            slot = await session.get(Session, session_id)
            assert slot is not None
            flu = slot.date > TODAY
            # the upcoming place is given back; the place of the dose given today stays used
            assert slot.booked == (booked if flu else booked + 1), slot.date
    assert await sent_after(person.chat, "/mydata") == [t("vi", "mydata.nothing")]


def _without_foreign_keys(url: str) -> AsyncEngine:
    """An engine on the same database whose connections do not enforce foreign keys."""
    engine = create_engine(url)

    @event.listens_for(engine.sync_engine, "connect")
    def _off(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        sqlite = url.startswith("sqlite")
        cursor.execute(
            "PRAGMA foreign_keys=OFF" if sqlite else "SET session_replication_role = replica"
        )
        cursor.close()

    return engine


async def test_erasure_names_every_table_itself(chat_sample: ChatHarness, db_url: str) -> None:
    """Not the cascades: with foreign keys unenforced, erasing still leaves nothing behind."""
    chat_bot = chat_sample
    person = await everything_stored(chat_bot)
    engine = _without_foreign_keys(db_url)
    try:
        async with AsyncSession(engine) as session, session.begin():
            account = await session.get(Account, person.account_id)
            assert account is not None
            await hb.erase_account(session, account)
    finally:
        await engine.dispose()
    left = await rows_about(chat_bot, person)
    assert not left, left


async def test_someone_with_nothing_but_consent_in_english(chat_bot: ChatHarness) -> None:
    person = chat_bot.user(lang="en")
    await agree(person, "en")
    [shown, caption, again] = await sent_after(person, "/mydata")
    assert t("en", "mydata.role.resident") in shown and "English" in shown
    assert t("en", "mydata.consents", count=1) in shown
    assert caption.startswith(t("en", "mydata.file_caption"))  # on Zalo, then its link
    assert again.startswith(t("en", "ask.full_name"))  # and the question stays
    [confirm] = await sent_after(person, "/delete")
    assert t("en", "delete.item.consents", count=1) in confirm
    assert t("en", "delete.item.drafts", count=1) in confirm
    assert t("en", "delete.item.bookings", count=0) not in confirm  # only what there is
    assert t("en", "delete.final") in confirm


def test_long_exports_are_cut_between_lines_under_the_limit() -> None:
    blocks = ["Title", "\n".join(f"• line {n} " + "x" * 90 for n in range(200)), "y" * 9000]
    messages = pack_messages(blocks)
    assert len(messages) > 3 and all(len(m) <= MESSAGE_LIMIT for m in messages)
    assert "".join(messages).replace("\n", "") == "".join(blocks).replace("\n", "")
    assert all(m.startswith(("Title", "• line", "y")) for m in messages)


async def test_agency_joined_and_left_by_chat_in_english(chat_bot: ChatHarness) -> None:
    """Through /agency: joined, left a day later, then joined a school; /mydata says so in
    English on either messenger, the file by code and date, and /delete names both."""
    person = chat_bot.user(lang="en")
    await agree(person, "en")
    async with chat_bot.session() as session, session.begin():
        await ag.add(session, "SYT", DEPARTMENT, "department", None, 120)
        await ag.add(session, "THPT-SAPA1", SCHOOL, "school", None, 60)
    await person.send("/agency syt")
    chat_bot.clock.advance(days=1)
    await person.send("/agency leave")
    chat_bot.clock.advance(days=1)
    await person.send("/agency THPT-SAPA1")
    shown = "\n".join(await sent_after(person, "/mydata"))
    for words in [
        t("en", "mydata.agency", name=SCHOOL, code="THPT-SAPA1", since="27/11/2026 10:00"),
        t("en", "mydata.agency_past", count=1),
        t(
            "en",
            "mydata.agency_past_item",
            name=DEPARTMENT,
            code="SYT",
            since="25/11/2026 10:00",
            until="26/11/2026 10:00",
            how=t("en", "mydata.agency_end.left"),
        ),
    ]:
        assert words in shown, words
    assert "mydata." not in shown.replace("healthbook-mydata.json", "")
    data = json.loads(await sent_file(person))
    rows = data["agency_memberships"]
    assert [(m["agency"]["code"], m["left_at"], m["ended"]) for m in rows] == [
        ("SYT", "26/11/2026 10:00", {"code": "left", "name": t("en", "mydata.agency_end.left")}),
        ("THPT-SAPA1", None, None),
    ]
    assert data["agency_heads"] == [] and data["agency_removals_made"] == 0
    [confirm] = await sent_after(person, "/delete")
    assert t("en", "delete.item.agency_memberships", count=2) in confirm
    assert t("en", "delete.item.agency_heads", count=1) not in confirm  # they head nothing


async def test_a_heads_list_of_members_forgets_who_erased_their_data(chat_bot: ChatHarness) -> None:
    """A head was shown their members; one of them erases everything: the head's last choices
    no longer hold that name (the numbers stay where they were shown), and choosing that line
    is refused as gone."""
    member, other, head = chat_bot.user(), chat_bot.user(), chat_bot.user()
    await complete(member)
    async with chat_bot.session() as session, session.begin():
        agency = await ag.add(session, "SYT", DEPARTMENT, "department", None, 120)
        account = await hb.ensure_account(session, chat_bot.channel, str(head.user.id), "vi")
        await ag.set_head(session, agency, account)
    await member.send("/agency SYT")
    await other.send("/agency SYT")
    await head.send("/agency")
    day = chat_bot.clock().astimezone(chat_bot.services.tz).strftime("%d/%m")
    shown = t("vi", "agency.member", name=NAME, date=day)
    assert shown in [*head.buttons, *(head.last_answer or "").split("\n")]

    async def offered() -> list[list[Any]]:
        async with chat_bot.session() as session:
            row = await session.get(ChatOffer, (chat_bot.channel, str(head.user.id)))
            assert row is not None
            return row.choices

    before = await offered()
    assert before[0][0] == shown and len(before) == 2
    await member.send("/delete")
    await member.press(t("vi", "button.delete_yes"))
    after = await offered()
    assert NAME not in json.dumps(after, ensure_ascii=False)
    assert [code for _label, code in after] == [code for _label, code in before]
    async with chat_bot.session() as session:
        assert await session.scalar(select(func.count()).select_from(AgencyMember)) == 1
    await head.send("1")  # the number the member was shown under
    # on Telegram a typed answer is refused by a message, not a toast
    assert t("vi", "agency.stale") in [*told(head), head.last_text]
