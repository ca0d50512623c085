"""What a trial review as users found, end to end on Telegram and Zalo: /mydata tells a family
holder's own book from a relative's (named, with the consent given for it), leaves out what
the holder did themselves, says whose each reminder is and lists a volunteer's communes; /audit
and /mydata say actions, roles and fields in words (the CLI export keeps the codes); /audit
since reads dates as people write them; "Ticket" before any booking offers to book a place;
a booking code too short says which characters a code has."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from bot.i18n import SUPPORTED, Translations
from handlers.audit import BadFilter, parse_filters
from models import audit
from models import checkin as ci
from models import healthbook as hb
from models import validators as v
from models.errors import InvalidAnswer
from models.tables import Booking, HealthBook
from models.tables import Session as SlotRow
from tests.conftest import ChatHarness
from tests.flows import Person, resident, t
from tests.test_records import (
    FATHER,
    RESIDENT,
    SAPA,
    account_of,
    add_assisted,
    add_relative,
    book_directly,
    book_through_the_chat,
    make_volunteer,
    tt,
    uid,
)

#: every field name an audit entry can list (models/healthbook.FIELDS and the others)
AUDIT_FIELDS = (
    *hb.FIELDS,
    "campaign",
    "dose",
    "session",
    "status",
    "waitlist",
    "health_book",
    "vaccine_code",
    "lot_number",
    "given_at",
    "outcome_reason",
)


async def said_after(person: Person, command: str) -> str:
    before = len(person.texts)
    await person.send(command)
    return "\n".join(person.texts[before:])


# ---------------------------------------------------------------- /mydata of a family holder


async def test_mydata_of_a_family_holder_says_whose(chat_sample: ChatHarness) -> None:
    h = chat_sample
    holder = await resident(h, "009111", born="15/3/1990")
    father = await add_relative(h, holder)
    holder_account = await account_of(h, holder)
    async with h.session() as session, session.begin():
        book = await session.get(HealthBook, father)
        assert book is not None
        book.consent_at = dt.datetime(2026, 11, 20, 3, tzinfo=dt.UTC)
        book.consent_version = "2026-12"
        own = await hb.own_book(session, holder_account)
        assert own is not None
    await book_directly(h, own.id)  # their own place: reminders not named
    # the holder books for the father (an entry of the holder's own doing, role relative)
    await holder.send("/family")
    await holder.press(tt("family.button.book", relation=tt("relation.father"), name=FATHER))
    await holder.press(tt("family.button.booking"))
    await book_through_the_chat(holder)
    await holder.press(tt("book.button_confirm"))
    async with h.session() as session:
        booked = await session.scalar(select(Booking).where(Booking.health_book_id == father))
        assert booked is not None
    # site staff check the father in: someone else acting on a book the holder holds
    staff = h.user()
    async with h.session() as session, session.begin():
        staff_account = await ci.grant_staff_to(session, h.channel, uid(staff), "LC-TYT-SAPA")
        slot = await session.get(SlotRow, booked.session_id)
        assert slot is not None
        at = dt.datetime.combine(slot.date, dt.time(8), tzinfo=h.services.tz)
        await ci.check_in(session, staff_account, booked.code, at)
    async with h.session() as session:
        done = [(e.action, e.actor_id) for e in await audit.entries(session)]
    assert done == [("checked_in", staff_account.id), ("booked", holder_account.id)]

    text = await said_after(holder, "/mydata")
    # each book says whose it is; the father's with the consent given for it
    assert tt("mydata.book", updated="").split("(")[0] in text
    heading = tt("mydata.book_of", relation=tt("relation.father"), name=FATHER, updated="")
    assert heading.split("(cập")[0] in text
    consent = tt(
        "mydata.book_consent",
        kind=tt("mydata.consent_kind.relative"),
        when="20/11/2026 10:00",
        version="2026-12",
    )
    assert consent in text
    assert tt("mydata.consents", count=1) in text  # their own consent only
    # what others did for them: the staff's check-in, in words; not the holder's own booking
    assert tt("mydata.acted_on", count=1) in text
    assert tt("audit.action.checked_in") in text and tt("audit.field.status") in text
    assert tt("audit.role.site_staff") in text
    assert tt("audit.action.booked") + f" ({FATHER})" not in text
    for code in ("campaign", "checked_in", "site_staff", ": status"):
        assert code not in text, code
    # reminders: each once, the father's named, their own not
    assert tt("mydata.reminders", count=4) in text
    for_him = tt("mydata.reminder_item_for", kind="", when="", name=FATHER).split("—")[-1]
    assert len([x for x in text.split("\n") if x.endswith(for_him)]) == 2
    assert uid(staff) not in text


async def test_mydata_lists_a_volunteers_communes(chat_sample: ChatHarness) -> None:
    h = chat_sample
    vol = await make_volunteer(h)
    text = await said_after(vol, "/mydata")
    assert tt("mydata.volunteer_wards", count=1) in text
    assert "• Phường Sa Pa (" in text
    assert tt("mydata.role.volunteer").lower() in text.lower()


# ---------------------------------------------------------------- /audit in words


async def _admin(h: ChatHarness, lang: str = "vi") -> Person:
    admin = h.user(lang=lang)
    async with h.session() as session, session.begin():
        account = await hb.ensure_account(session, h.channel, uid(admin), lang)
        account.role = "admin"
    return admin


async def _entries(h: ChatHarness) -> None:
    async with h.session() as session, session.begin():
        holder = await hb.ensure_account(session, h.channel, "8001", "vi")
        await audit.record(
            session,
            holder,
            21,
            "handover_code",
            role="relative",
            ward_code=SAPA,
            at=dt.datetime(2026, 10, 30, 3, tzinfo=dt.UTC),
        )
        await audit.record(
            session,
            holder,
            21,
            "booked",
            role="relative",
            fields=["campaign", "dose", "session"],
            ward_code=SAPA,
            at=dt.datetime(2026, 11, 20, 3, tzinfo=dt.UTC),
        )
        await audit.record(
            session,
            holder,
            21,
            "edited",
            role="relative",
            fields=["phone", "full_name"],
            ward_code=SAPA,
            at=dt.datetime(2026, 11, 21, 3, tzinfo=dt.UTC),
        )


def _lines(person: Person) -> list[str]:
    return [x for x in (person.last_answer or "").split("\n") if x[:2].isdigit()]


@pytest.mark.parametrize("lang", ["vi", "en"])
async def test_audit_says_actions_roles_and_fields_in_words(
    chat_bot: ChatHarness, lang: str
) -> None:
    h = chat_bot
    await _entries(h)
    admin = await _admin(h, lang)
    await admin.send("/audit")
    lines = _lines(admin)
    assert len(lines) == 3
    w = Translations().get(lang)
    edited, booked, code = lines
    assert f" · {w('audit.action.handover_code')} · {w('audit.role.relative')} · " in code
    assert f" · {w('audit.action.booked')} · " in booked
    fields = ", ".join(w(f"audit.field.{f}") for f in ("campaign", "dose", "session"))
    assert booked.endswith(fields)
    assert edited.endswith(f"{w('field.full_name')}, {w('field.phone')}")
    assert code.startswith("30/10/2026 10:00 · ")
    await admin.send("/audit action eaten")  # the codes to type, each with its words
    assert f"handover_code ({w('audit.action.handover_code')})" in (admin.last_answer or "")
    await admin.send("/audit")
    if lang == "vi":  # in English a few words are their codes' too ("dose", "session")
        for raw in ("handover_code", "relative", "campaign", "session", "full_name"):
            assert raw not in admin.last_answer, raw


async def test_audit_since_reads_dates_as_people_write_them(chat_bot: ChatHarness) -> None:
    h = chat_bot
    await _entries(h)
    admin = await _admin(h)
    assert h.services.today() == dt.date(2026, 11, 25)
    for since, count in (
        ("1/11/2026", 2),
        ("01/11", 2),
        ("21/11", 1),
        ("2026-11-01", 2),
        ("01-11-2026", 2),
        ("30/10/2026", 3),
    ):
        await admin.send(f"/audit since {since}")
        assert len(_lines(admin)) == count, since
    for bad in ("31/02/2026", "2026-02-30", "yesterday", "1/13", "20261101x"):
        await admin.send(f"/audit since {bad}")
        answer = admin.last_answer or ""
        assert answer.startswith(tt("audit.bad_since")), bad
        usage = tt("audit.usage")
        assert answer.endswith(usage) and "1/11/2026" in usage and "01/11" in usage
        assert "2026-11-01" in usage


def test_since_without_a_year_is_the_last_such_day() -> None:
    tz = dt.timezone(dt.timedelta(hours=7))
    today = dt.date(2026, 11, 25)
    day = parse_filters(["since", "01/11"], tz, today).filters.since
    assert day == dt.datetime(2026, 10, 31, 17, tzinfo=dt.UTC)
    later = parse_filters(["since", "1/12"], tz, today).filters.since  # not yet: last year's
    assert later == dt.datetime(2025, 11, 30, 17, tzinfo=dt.UTC)
    assert v.parse_past_day("ngày 1 tháng 11 năm 2026", today) == dt.date(2026, 11, 1)
    for bad in ("29/2", "0/11", "1/11/26", ""):
        with pytest.raises(InvalidAnswer):
            v.parse_past_day(bad, today)
    with pytest.raises(BadFilter):
        parse_filters(["since", "1/11", "2026"], tz, today)


@pytest.mark.parametrize("lang", SUPPORTED)
def test_every_audit_action_role_and_field_has_words(lang: str) -> None:
    w = Translations().get(lang)
    keys = [f"audit.action.{a}" for a in audit.ACTIONS]
    keys += [f"audit.role.{r}" for r in audit.ROLES]
    keys += [f"mydata.consent_kind.{k}" for k in ("own", "relative", "guardian", "verbal")]
    assert all(w.has(k) for k in keys), [k for k in keys if not w.has(k)]
    missing = [f for f in AUDIT_FIELDS if not (w.has(f"field.{f}") or w.has(f"audit.field.{f}"))]
    assert not missing


# ---------------------------------------------------------------- "Ticket" before a booking


async def test_ticket_before_any_booking_offers_to_book(chat_sample: ChatHarness) -> None:
    h = chat_sample
    template = await resident(h, "009333", born="15/3/1990")
    vol = await make_volunteer(h)
    await add_assisted(h, template, vol)
    await vol.send("/assist")
    await vol.press(tt("assist.button.find"))
    await vol.send("dua")
    await vol.press(vol.buttons[0])
    await vol.press(tt("assist.button.ticket"))
    answer = vol.last_answer or ""
    assert tt("ticket.none") in answer and RESIDENT in answer
    assert tt("ticket.book_now") in vol.buttons
    # the choice, by its number on Zalo as by its button on Telegram: booking for her begins
    if h.channel == "zalo":
        await vol.send("1")
    else:
        await vol.press(tt("ticket.book_now"))
    assert tt("book.for", name=RESIDENT) in (vol.last_answer or "")
    assert tt("book.ask_campaign") in (vol.last_answer or "")


# ---------------------------------------------------------------- a booking code too short


async def test_checkin_code_too_short_says_what_a_code_is(chat_sample: ChatHarness) -> None:
    h = chat_sample
    staff = h.user()
    async with h.session() as session, session.begin():
        await ci.grant_staff_to(session, h.channel, uid(staff), "LC-TYT-SAPA")
    for typed in ("ABC", "AB1", "abcdefghjk"):
        await staff.send(f"/checkin {typed}")
        answer = staff.last_answer or ""
        assert answer == tt("booking.code_invalid", length=7), typed
        assert "K7M2QXA" in answer and "2" in answer and " ." not in answer
    assert "{" not in t("en", "booking.code_invalid", length=7)
