"""Acting for someone else, end to end on Telegram and Zalo: a holder books for a relative (the
ticket, the confirmations and the reminder name them), a volunteer books for and prints the
ticket of a resident they help; forged book ids and booking buttons refused with nothing
changed; the audit trail of each action (and of the site's check-in and dose), read by admins
with /audit and ``healthbook audit export``; /mydata shows who acted on one's records; deleting
a relative's or a helped resident's book; /delete keeps a helped resident's book."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
from pathlib import Path

from sqlalchemy import func, select

from bot.db import create_engine, session_factory, transaction
from handlers.audit import BadFilter, parse_filters, ward_code_of
from handlers.common import timing
from models import audit, custody, records
from models import booking as bk
from models import checkin as ci
from models import healthbook as hb
from models import lookups as lk
from models.errors import DomainError
from models.tables import (
    Account,
    Assist,
    AuditEntry,
    Booking,
    BookingDraft,
    Campaign,
    HealthBook,
    OutboxMessage,
    Session,
    VolunteerWard,
)
from tests.conftest import ChatHarness
from tests.flows import Person, resident, send_due, t, told
from tests.test_cli import healthbook

SAPA, LAO_CAI = 3006, 15
FATHER = "Lò Văn Chính"
PAO = "Lò Văn Páo"
RESIDENT = "Vàng Thị Dua"


def tt(key: str, **params: object) -> str:
    return t("vi", key, **params)


def uid(person: Person) -> str:
    return str(person.user.id)


async def account_of(h: ChatHarness, person: Person) -> Account:
    async with h.session() as session:
        account = await hb.find_account(session, h.channel, uid(person))
        assert account is not None
        return account


def _copy(book: HealthBook, **changes: object) -> HealthBook:
    skip = {"id", "created_at", "updated_at"}
    values = {
        c.key: getattr(book, c.key) for c in HealthBook.__table__.columns if c.key not in skip
    }
    values.update(id_kind=None, id_number=None, phone=None, bhyt=None)
    values.update(changes)
    return HealthBook(**values)


async def add_relative(h: ChatHarness, holder: Person, name: str = FATHER) -> int:
    """A relative's book under the holder's account (as /family saves one)."""
    account = await account_of(h, holder)
    async with h.session() as session, session.begin():
        own = await hb.own_book(session, account)
        assert own is not None
        book = _copy(
            own,
            full_name=name,
            date_of_birth=dt.date(1965, 9, 2),
            relation="father",
            registered_by=account.id,
            consent_kind="relative",
            consent_by=account.id,
        )
        session.add(book)
        await session.flush()
        return book.id


async def make_volunteer(h: ChatHarness, ward: int = SAPA) -> Person:
    """A person bound to a commune as a volunteer (rows written as /join would)."""
    person = h.user(lang="vi")
    async with h.session() as session, session.begin():
        account = await hb.ensure_account(session, h.channel, uid(person), "vi")
        account.role = "volunteer"
        session.add(VolunteerWard(account_id=account.id, ward_code=ward, province_code=LAO_CAI))
    return person


async def add_assisted(h: ChatHarness, template: Person, volunteer: Person) -> int:
    """A resident without an account whom ``volunteer`` registered (copied from a saved book)."""
    model = await account_of(h, template)
    helper = await account_of(h, volunteer)
    async with h.session() as session, session.begin():
        own = await hb.own_book(session, model)
        assert own is not None
        book = _copy(
            own,
            account_id=None,
            full_name=RESIDENT,
            gender="female",
            date_of_birth=dt.date(1962, 1, 1),
            relation="assisted",
            registered_by=helper.id,
            consent_kind="verbal",
            consent_by=helper.id,
        )
        session.add(book)
        await session.flush()
        session.add(Assist(health_book_id=book.id, account_id=helper.id))
        return book.id


async def book_directly(h: ChatHarness, book_id: int) -> Booking:
    """A COVID-19 place at Sa Pa's first session after today, booked through the domain."""
    async with h.session() as session, session.begin():
        site = await lk.get_site(session, "LC-TYT-SAPA")
        slot = await session.scalar(
            select(Session)
            .join(Campaign, Campaign.id == Session.campaign_id)
            .where(
                Session.site_id == site.id,
                Session.date > h.services.today(),
                Campaign.code.like("covid%"),
            )
            .order_by(Session.date, Session.start_time)
            .limit(1)
        )
        assert slot is not None
        return await bk.book(
            session,
            book_id,
            slot.id,
            slot.campaign_id,
            None,
            h.services.today(),
            timing=timing(h.services),
        )


async def reminders_now(h: ChatHarness, booking_id: int) -> None:
    """The booking's evening-before reminder made due now and sent (as the dispatcher does)."""
    async with h.session() as session, session.begin():
        row = await session.scalar(
            select(OutboxMessage).where(
                OutboxMessage.booking_id == booking_id,
                OutboxMessage.status == "pending",
                OutboxMessage.kind == "appointment_eve",
            )
        )
        assert row is not None
        row.due_at = h.clock() - dt.timedelta(minutes=5)
    await send_due(h)


async def trail(h: ChatHarness) -> list[AuditEntry]:
    async with h.session() as session:
        return list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


async def booking_row(h: ChatHarness, booking_id: int) -> Booking:
    async with h.session() as session:
        found = await session.get(Booking, booking_id)
        assert found is not None
        return found


async def book_through_the_chat(person: Person) -> None:
    """After "Book a place": COVID-19, Sa Pa, the first day and time, Confirm."""
    assert tt("book.ask_campaign") in (person.last_answer or "")
    await person.press("COVID-19")
    await person.press("Sa Pa")
    await person.press(person.buttons[0])
    await person.press(person.buttons[0])


# ---------------------------------------------------------------- a holder and a relative


async def test_holder_books_for_a_relative_who_is_named_throughout(
    chat_sample: ChatHarness,
) -> None:
    h = chat_sample
    holder = await resident(h, "001111", born="15/3/1990")
    father = await add_relative(h, holder)
    holder_account = await account_of(h, holder)
    # from /family: the father, then "Book a place" (the booking conversation's bk:for:ID)
    await holder.send("/family")
    await holder.press(tt("family.button.book", relation=tt("relation.father"), name=FATHER))
    await holder.press(tt("family.button.booking"))
    assert tt("book.for", name=FATHER) in (holder.last_answer or "")
    await book_through_the_chat(holder)
    assert tt("book.for", name=FATHER) in (holder.last_answer or "")  # the confirm screen
    await holder.press(tt("book.button_confirm"))
    async with h.session() as session:
        [booking] = list(await session.scalars(select(Booking)))
        draft = await session.get(BookingDraft, holder_account.id)
    assert booking.health_book_id == father and booking.status == "booked"
    assert draft is None  # the draft naming the father is gone with the booking
    ticket = [x for x in holder.texts if booking.code in x]
    assert ticket and all(x.startswith(tt("ticket.for", name=FATHER)) for x in ticket)
    [entry] = await trail(h)
    assert (entry.action, entry.actor_role, entry.actor_id, entry.health_book_id) == (
        "booked",
        "relative",
        holder_account.id,
        father,
    )
    assert entry.ward_code == SAPA and set(entry.fields) == {"campaign", "dose", "session"}
    assert FATHER not in json.dumps(entry.fields)

    # the reminder goes to the holder and says whose appointment it is
    await reminders_now(h, booking.id)
    reminder = holder.texts[-1]
    assert reminder.startswith(tt("notice.for", name=FATHER)) and booking.code in reminder

    # /appointments: grouped by person, the father named; moved to another day, then cancelled
    await holder.send("/appointments")
    shown = holder.last_answer or ""
    assert tt("book.for", name=FATHER) in shown and booking.code in shown
    await holder.press(tt("appointments.button_reschedule"))
    await holder.press(holder.buttons[1])  # the next day
    await holder.press(holder.buttons[0])
    moved = await booking_row(h, booking.id)
    assert moved.session_id != booking.session_id and moved.status == "booked"
    assert tt("ticket.for", name=FATHER) in " ".join(holder.texts[-4:])
    await holder.send("/appointments")
    await holder.press(tt("appointments.button_cancel"))
    assert tt("book.for", name=FATHER) in (holder.last_answer or "")
    await holder.press(tt("appointments.button_cancel_yes"))
    assert (await booking_row(h, booking.id)).status == "cancelled"
    assert [(e.action, e.actor_role) for e in await trail(h)] == [
        ("booked", "relative"),
        ("rescheduled", "relative"),
        ("cancelled", "relative"),
    ]
    # /certificate: his own, then a choice per relative (their certificate, access checked)
    await holder.send("/certificate")
    assert tt("certificate.others") in (holder.last_answer or "")
    await holder.press(FATHER)
    assert tt("book.for", name=FATHER) in (holder.last_answer or "")


async def test_own_booking_is_not_audited_nor_named(chat_sample: ChatHarness) -> None:
    h = chat_sample
    person = await resident(h, "002222", born="15/3/1990")
    await person.send("/book")
    await book_through_the_chat(person)
    await person.press(tt("book.button_confirm"))
    assert not any(x.startswith(tt("ticket.for", name=PAO)) for x in person.texts)
    assert await trail(h) == []
    async with h.session() as session:
        [booking] = list(await session.scalars(select(Booking)))
    await reminders_now(h, booking.id)
    assert not person.texts[-1].startswith(tt("notice.for", name=PAO))


# ---------------------------------------------------------------- a volunteer and a resident


async def test_volunteer_books_prints_and_cancels_for_a_resident(
    chat_sample: ChatHarness,
) -> None:
    h = chat_sample
    template = await resident(h, "003333", born="15/3/1990")
    vol = await make_volunteer(h)
    dua = await add_assisted(h, template, vol)
    vol_account = await account_of(h, vol)
    booking = await book_directly(h, dua)
    # the reminder of her appointment goes to the volunteer, and names her
    await reminders_now(h, booking.id)
    reminder = vol.texts[-1]
    assert reminder.startswith(tt("notice.for", name=RESIDENT)) and booking.code in reminder
    # cancelled from the reminder's own choice: the volunteer may (she is theirs to help)
    await vol.press(tt("reminder.button_cancel_booking"))
    await vol.press(tt("appointments.button_cancel_yes"))
    assert (await booking_row(h, booking.id)).status == "cancelled"
    # /assist: find her, book again (bk:for), print the ticket (bk:ticket)
    await vol.send("/assist")
    await vol.press(tt("assist.button.find"))
    await vol.send("dua")
    await vol.press(vol.buttons[0])
    await vol.press(tt("assist.button.book"))
    await book_through_the_chat(vol)
    assert tt("book.for", name=RESIDENT) in (vol.last_answer or "")
    await vol.press(tt("book.button_confirm"))
    async with h.session() as session:
        again = await session.scalar(select(Booking).where(Booking.status == "booked"))
    assert again is not None and again.health_book_id == dua
    assert any(x.startswith(tt("ticket.for", name=RESIDENT)) for x in vol.texts)
    await vol.send("/assist")
    await vol.press(tt("assist.button.find"))
    await vol.send("dua")
    await vol.press(vol.buttons[0])
    before = len(vol.texts)
    await vol.press(tt("assist.button.ticket"))
    printed = vol.texts[before:]
    assert any(again.code in x and x.startswith(tt("ticket.for", name=RESIDENT)) for x in printed)
    actions = [(e.action, e.actor_role, e.actor_id, e.health_book_id) for e in await trail(h)]
    assert actions == [
        ("cancelled", "volunteer", vol_account.id, dua),
        ("booked", "volunteer", vol_account.id, dua),
        ("ticket", "volunteer", vol_account.id, dua),
    ]


# ---------------------------------------------------------------- forged access


async def test_forged_book_ids_and_booking_buttons_change_nothing(
    chat_sample: ChatHarness,
) -> None:
    h = chat_sample
    holder = await resident(h, "004444", born="15/3/1990")
    father = await add_relative(h, holder)
    booking = await book_directly(h, father)
    intruder = await resident(h, "005555", born="15/3/1990")
    await add_relative(h, intruder, name="Lò Văn Khác")  # a family of their own
    async with h.session() as session:
        campaign_id = booking.campaign_id
    forged = [
        f"bk:for:{father}",
        f"bk:ticket:{father}",
        f"bk:go:{campaign_id}:{father}",
        f"cert:{father}",
        f"ap:x:{booking.id}",
        f"ap:xx:{booking.id}",
        f"ap:r:{booking.id}",
        f"rm:ok:{booking.id}",
        "bk:for:99999999",
        "bk:ticket:-1",
        "bk:for:1:2",
    ]
    for data in forged:
        await intruder.press_data(data)  # on Zalo: typed, and names no choice
        if h.channel == "telegram":
            assert told(intruder)[-1] in (
                tt("access.denied"),
                tt("booking.not_yours"),
                tt("error.button.invalid"),
            ), data
        assert booking.code not in (intruder.last_answer or ""), data
        assert FATHER not in (intruder.last_answer or ""), data
    # a volunteer of another commune who claims to help him, and a suspended one of his own
    other_ward = await make_volunteer(h, ward=2683)
    suspended = await make_volunteer(h)
    async with h.session() as session, session.begin():
        for person in (other_ward, suspended):
            account = await hb.find_account(session, h.channel, uid(person))
            assert account is not None
            session.add(Assist(health_book_id=father, account_id=account.id))
            if person is suspended:
                account.suspended_at = h.clock()
    for person in (other_ward, suspended):
        for data in (f"bk:ticket:{father}", f"bk:for:{father}", f"ap:xx:{booking.id}"):
            await person.press_data(data)
            assert booking.code not in " ".join(person.texts), data
    after = await booking_row(h, booking.id)
    assert (after.status, after.session_id) == ("booked", booking.session_id)
    assert await trail(h) == []
    async with h.session() as session:
        drafts = list(await session.scalars(select(BookingDraft)))
    assert all(d.health_book_id != father for d in drafts)


async def test_forged_access_is_refused_by_the_domain_too(chat_sample: ChatHarness) -> None:
    h = chat_sample
    holder = await resident(h, "006666", born="15/3/1990")
    father = await add_relative(h, holder)
    intruder = await resident(h, "007777", born="15/3/1990")
    async with h.session() as session, session.begin():
        stranger = await hb.find_account(session, h.channel, uid(intruder))
        with_book = await hb.find_account(session, h.channel, uid(holder))
        assert stranger is not None and with_book is not None
        for account in (stranger, None):
            try:
                await records.delete_book(session, account, father)  # type: ignore[arg-type]
            except DomainError as err:
                assert err.key == "access.denied"
            else:
                raise AssertionError("deleted another family's relative")
        own = await hb.own_book(session, with_book)
        assert own is not None
        try:
            await records.delete_book(session, with_book, own.id)
        except DomainError as err:
            assert err.key == "records.delete_own"
        else:
            raise AssertionError("deleted one's own book outside /delete")
    async with h.session() as session:
        assert await session.get(HealthBook, father) is not None


# ---------------------------------------------------------------- deleting someone's record


async def test_delete_a_relative_and_a_helped_residents_record(chat_sample: ChatHarness) -> None:
    h = chat_sample
    holder = await resident(h, "008888", born="15/3/1990")
    father = await add_relative(h, holder)
    booking = await book_directly(h, father)
    vol = await make_volunteer(h)
    dua = await add_assisted(h, holder, vol)
    async with h.session() as session:
        slot = await session.get(Session, booking.session_id)
        assert slot is not None
        booked_before = slot.booked
    async with h.session() as session, session.begin():
        account = await hb.find_account(session, h.channel, uid(holder))
        helper = await hb.find_account(session, h.channel, uid(vol))
        assert account is not None and helper is not None
        assert await records.delete_book(session, account, father, now=h.clock()) == father
        assert await records.delete_book(session, helper, dua, now=h.clock()) == dua
    async with h.session() as session:
        assert await session.get(HealthBook, father) is None
        assert await session.get(HealthBook, dua) is None
        assert await session.scalar(select(func.count()).select_from(Booking)) == 0
        slot = await session.get(Session, booking.session_id)
        assert slot is not None and slot.booked == booked_before - 1  # the place given back
    assert [(e.action, e.actor_role, e.health_book_id) for e in await trail(h)] == [
        ("deleted", "relative", father),
        ("deleted", "volunteer", dua),
    ]


async def test_delete_account_takes_relatives_and_leaves_helped_residents(
    chat_sample: ChatHarness,
) -> None:
    h = chat_sample
    holder = await resident(h, "009999", born="15/3/1990")
    father = await add_relative(h, holder)
    vol = await resident(h, "001212", born="15/3/1990")  # a volunteer with a book of their own
    async with h.session() as session, session.begin():
        account = await hb.find_account(session, h.channel, uid(vol))
        assert account is not None
        account.role = "volunteer"
        session.add(VolunteerWard(account_id=account.id, ward_code=SAPA, province_code=LAO_CAI))
    dua = await add_assisted(h, holder, vol)
    await book_directly(h, dua)
    # the holder erases their account: the father's book goes with it
    await holder.send("/delete")
    await holder.press(tt("button.delete_yes"))
    async with h.session() as session:
        assert await session.get(HealthBook, father) is None
    # the volunteer erases theirs: the resident's book stays, with her booking, unattributed
    await vol.send("/delete")
    await vol.press(tt("button.delete_yes"))
    async with h.session() as session:
        kept = await session.get(HealthBook, dua)
        assert kept is not None and kept.registered_by is None and kept.consent_by is None
        assert await session.scalar(select(func.count()).select_from(Assist)) == 0
        assert await session.scalar(select(func.count()).select_from(VolunteerWard)) == 0
        assert await session.scalar(
            select(func.count()).select_from(Booking).where(Booking.health_book_id == dua)
        )
        assert await custody.recipient_of(session, dua) is None


# ---------------------------------------------------------------- the site


async def test_check_in_and_dose_are_audited_as_site_staff(chat_sample: ChatHarness) -> None:
    h = chat_sample
    person = await resident(h, "001313", born="15/3/1990")
    account = await account_of(h, person)
    async with h.session() as session:
        own = await hb.own_book(session, account)
        assert own is not None
    booking = await book_directly(h, own.id)
    async with h.session() as session:
        slot = await session.get(Session, booking.session_id)
        assert slot is not None
        day = slot.date
    staff = h.user()
    async with h.session() as session, session.begin():
        staff_account = await ci.grant_staff_to(session, h.channel, uid(staff), "LC-TYT-SAPA")
        at = dt.datetime.combine(day, dt.time(8), tzinfo=h.services.tz)
        await ci.check_in(session, staff_account, booking.code, at)
        await ci.check_in(session, staff_account, booking.code, at)  # twice: one entry
        campaign = await session.get(Campaign, booking.campaign_id)
        assert campaign is not None
        await ci.record_dose(
            session, staff_account, booking.id, campaign.vaccine_codes[0], "L1", at
        )
    entries = [(e.action, e.actor_role, e.health_book_id) for e in await trail(h)]
    assert entries == [("checked_in", "site_staff", own.id), ("vaccinated", "site_staff", own.id)]
    # /mydata: who acted on their record, by role and commune, never by messenger id
    await person.send("/mydata")
    said = "\n".join(person.texts[-4:])
    assert tt("mydata.acted_on", count=2) in said
    assert tt("audit.action.checked_in") in said and tt("mydata.role.site_staff") in said
    assert "Phường Sa Pa" in said and uid(staff) not in said


# ---------------------------------------------------------------- /audit


async def _seeded(h: ChatHarness) -> tuple[Account, Account]:
    """Entries of two actors, in two communes, on several days; returns (volunteer, staff)."""
    async with h.session() as session, session.begin():
        volunteer = await hb.ensure_account(session, h.channel, "7001", "vi")
        staff = await hb.ensure_account(session, h.channel, "7002", "vi")
        days = [
            dt.datetime(2026, 10, 30, 3, tzinfo=dt.UTC),
            dt.datetime(2026, 11, 20, 3, tzinfo=dt.UTC),
        ]
        await audit.record(
            session,
            volunteer,
            11,
            "created",
            role="volunteer",
            fields=["full_name"],
            ward_code=SAPA,
            at=days[0],
        )
        await audit.record(
            session,
            volunteer,
            11,
            "booked",
            role="volunteer",
            fields=["session"],
            ward_code=SAPA,
            at=days[1],
        )
        await audit.record(
            session,
            staff,
            12,
            "checked_in",
            role="site_staff",
            fields=["status"],
            ward_code=2683,
            at=days[1],
        )
        return volunteer, staff


async def test_audit_for_admins_with_filters(chat_bot: ChatHarness) -> None:
    h = chat_bot
    await _seeded(h)
    nosy = h.user()
    await nosy.send("/audit")
    assert nosy.last_answer == tt("audit.admins_only")
    admin = h.user()
    async with h.session() as session, session.begin():
        account = await hb.ensure_account(session, h.channel, uid(admin), "vi")
        account.role = "admin"

    async def lines(command: str) -> list[str]:
        await admin.send(command)
        return [x for x in (admin.last_answer or "").split("\n") if " · " in x and "·" in x[:20]]

    every = await lines("/audit")
    checked_in, booked = tt("audit.action.checked_in"), tt("audit.action.booked")
    assert len(every) == 3 and every[0].split(" · ")[1] == checked_in  # newest first, in words
    assert f"{h.channel}:7002" in every[0] and "Phường Sa Pa (3006)" in every[1]
    assert "book 12" not in every[0] and "mã sổ 12" in every[0]
    assert every[0].endswith(tt("audit.field.status"))
    assert [x.split(" · ")[1] for x in await lines("/audit action booked")] == [booked]
    assert len(await lines("/audit ward sa pa")) == 2
    assert len(await lines("/audit ward 2683")) == 1
    assert len(await lines("/audit book 11 since 2026-11-01")) == 1
    assert len(await lines(f"/audit actor {h.channel}:7001")) == 2
    assert (
        len(
            await lines(
                "/audit actor zalo:nobody123"
                if h.channel == "telegram"
                else "/audit actor telegram:1"
            )
        )
        == 0
    )
    assert admin.last_answer == tt("audit.none")
    for bad, key in (
        ("/audit action eaten", "audit.bad_action"),
        ("/audit since 31/11/2026", "audit.bad_since"),
        ("/audit colour red", "audit.bad_keyword"),
        ("/audit book", "audit.missing_value"),
        ("/audit book 1 2", "audit.one_value"),
        ("/audit book x1", "audit.bad_book"),
        ("/audit actor 7001", "audit.bad_actor"),
        ("/audit ward nowhere at all", "audit.bad_ward"),
        ("/audit action booked action created", "audit.twice"),
    ):
        await admin.send(bad)
        answer = admin.last_answer or ""
        assert answer.split("\n\n")[-1].startswith(tt("audit.usage").split("\n")[0][:20]), bad
        head = tt(key, word="", ward="", wards="", actions="").split("“")[0][:12]
        assert head in answer, bad


def test_audit_filters_parse_strictly() -> None:
    tz = dt.timezone(dt.timedelta(hours=7))
    asked = parse_filters(["ward", "Sa", "Pa", "action", "booked", "since", "2026-11-01"], tz)
    assert asked.filters.ward_code == SAPA and asked.filters.action == "booked"
    assert asked.filters.since == dt.datetime(2026, 10, 31, 17, tzinfo=dt.UTC)
    assert parse_filters(["actor", "zalo:abc123"], tz).actor == ("zalo", "abc123")
    assert ward_code_of("phuong sa pa") == SAPA
    for words in (["since", "2026-02-30"], ["book", "²"], ["actor", "telegram:-5"], ["ward"]):
        try:
            parse_filters(words, tz)
        except BadFilter:
            continue
        raise AssertionError(words)


# ---------------------------------------------------------------- healthbook audit export


async def test_audit_export_streams_csv_and_jsonl(tmp_path: Path) -> None:
    result = await asyncio.to_thread(healthbook, "db", "upgrade", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'healthbook.db'}")
    try:
        async with transaction(session_factory(engine)) as session:
            volunteer = Account(channel="zalo", external_id="abc9", locale="vi")
            session.add(volunteer)
            await session.flush()
            for n in range(5):
                await audit.record(
                    session,
                    volunteer,
                    100 + n,
                    "booked" if n % 2 else "created",
                    role="volunteer",
                    fields=["full_name", "date_of_birth"] if n == 0 else ["session"],
                    ward_code=SAPA if n < 4 else 2683,
                    at=dt.datetime(2026, 11, 1 + n, 20, tzinfo=dt.UTC),  # 03:00 the next day
                )
    finally:
        await engine.dispose()

    def run(*args: str) -> tuple[int, str, str]:
        done = healthbook("audit", "export", *args, cwd=tmp_path)
        assert "Traceback" not in done.stderr, done.stderr
        return done.returncode, done.stdout, done.stderr

    code, out, err = await asyncio.to_thread(run)
    assert code == 0 and "5 audit entries exported" in err
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["at", "action", "role", "actor", "health_book_id", "ward_code", "fields"]
    assert rows[1] == [
        "2026-11-02T03:00:00+07:00",
        "created",
        "volunteer",
        "zalo:abc9",
        "100",
        "3006",
        "date_of_birth full_name",
    ]
    assert len(rows) == 6
    code, out, _ = await asyncio.to_thread(
        run,
        "--since",
        "2026-11-03",
        "--until",
        "2026-11-04",
        "--ward",
        str(SAPA),
        "--format",
        "jsonl",
    )
    assert code == 0
    got = [json.loads(line) for line in out.splitlines()]
    assert [g["health_book_id"] for g in got] == [101, 102]
    assert got[0]["fields"] == ["session"] and got[0]["actor"] == "zalo:abc9"
    out_file = tmp_path / "booked.csv"
    code, out, _ = await asyncio.to_thread(run, "--action", "booked", "--out", str(out_file))
    assert code == 0 and out == ""
    assert len(out_file.read_text(encoding="utf-8").splitlines()) == 3
    for bad in (
        ["--since", "1/11/2026"],
        ["--format", "xml"],
        ["--action", "eaten"],
        ["--since", "2026-11-05", "--until", "2026-11-01"],
    ):
        code, _, err = await asyncio.to_thread(run, *bad)
        assert code == 2 and "Error" in err, bad


# ---------------------------------------------------------------- after-care


async def test_after_care_goes_to_whoever_acts_for_them_and_names_them(
    chat_sample: ChatHarness,
) -> None:
    from models import aftercare as ac

    h = chat_sample
    holder = await resident(h, "001414", born="15/3/1990")
    father = await add_relative(h, holder)
    vol = await make_volunteer(h)
    dua = await add_assisted(h, holder, vol)
    staff = h.user()
    bookings = [await book_directly(h, father), await book_directly(h, dua)]
    async with h.session() as session, session.begin():
        staff_account = await ci.grant_staff_to(session, h.channel, uid(staff), "LC-TYT-SAPA")
        for booking in bookings:
            slot = await session.get(Session, booking.session_id)
            campaign = await session.get(Campaign, booking.campaign_id)
            assert slot is not None and campaign is not None
            at = dt.datetime.combine(slot.date, dt.time(8), tzinfo=h.services.tz)
            await ci.check_in(session, staff_account, booking.code, at)
            await ci.record_dose(
                session, staff_account, booking.id, campaign.vaccine_codes[0], "L1", at
            )
            planned = await ac.plan_checkin(session, booking, at, timing(h.services))
            assert planned is not None
            planned.due_at = h.clock() - dt.timedelta(minutes=1)
    await send_due(h)
    for person, name in ((holder, FATHER), (vol, RESIDENT)):
        asked = next(
            x
            for x in reversed(person.texts)
            if tt("aftercare.button.fine") in x or x.startswith(tt("notice.for", name=name))
        )
        assert asked.startswith(tt("notice.for", name=name)), asked
    # each answers for them; a serious one reaches the site's staff without any name
    await holder.press(tt("aftercare.button.fine"))
    await vol.press(tt("aftercare.button.serious"))
    await send_due(h)
    async with h.session() as session:
        reactions = {
            r.health_book_id: r.severity for r in await session.scalars(select(ac.Reaction))
        }
    assert reactions == {father: "fine", dua: "serious"}
    alert = " ".join(staff.texts)
    assert bookings[1].code in alert and RESIDENT not in alert and FATHER not in alert


async def test_next_dose_reminder_books_for_the_relative(chat_sample: ChatHarness) -> None:
    h = chat_sample
    holder = await resident(h, "001515", born="15/3/1990")
    father = await add_relative(h, holder)
    booking = await book_directly(h, father)
    staff = h.user()
    async with h.session() as session, session.begin():
        staff_account = await ci.grant_staff_to(session, h.channel, uid(staff), "LC-TYT-SAPA")
        slot = await session.get(Session, booking.session_id)
        campaign = await session.get(Campaign, booking.campaign_id)
        assert slot is not None and campaign is not None
        at = dt.datetime.combine(slot.date, dt.time(8), tzinfo=h.services.tz)
        await ci.check_in(session, staff_account, booking.code, at)
        window = await ci.record_dose(
            session,
            staff_account,
            booking.id,
            campaign.vaccine_codes[0],
            "L1",
            at,
            timing=timing(h.services),
        )
        assert window is not None and window.dose == 2
        due = await session.scalar(
            select(OutboxMessage).where(
                OutboxMessage.kind == "dose_due", OutboxMessage.health_book_id == father
            )
        )
        assert due is not None
        due.due_at = h.clock() - dt.timedelta(minutes=1)
    await send_due(h)
    assert holder.texts[-1].startswith(tt("notice.for", name=FATHER))
    await holder.press(tt("reminder.button_book_dose", dose=2))  # bk:go:CAMPAIGN:BOOK
    said = holder.last_answer or ""
    assert tt("book.for", name=FATHER) in said and "mũi 2" in said
    async with h.session() as session:
        draft = await session.get(BookingDraft, (await account_of(h, holder)).id)
        assert draft is not None and draft.health_book_id == father


async def test_waitlist_for_a_relative_is_audited(chat_sample: ChatHarness) -> None:
    h = chat_sample
    holder = await resident(h, "001616", born="15/3/1990")
    father = await add_relative(h, holder)
    async with h.session() as session, session.begin():
        site = await lk.get_site(session, "LC-TYT-SAPA")
        await session.execute(
            Session.__table__.update().where(Session.site_id == site.id).values(capacity=0)
        )
    await holder.send("/family")
    await holder.press(tt("family.button.book", relation=tt("relation.father"), name=FATHER))
    await holder.press(tt("family.button.booking"))
    await holder.press("COVID-19")
    await holder.press("Sa Pa")
    await holder.press(tt("book.button_waitlist_site"))
    assert any(tt("waitlist.joined", hours=60) in x for x in holder.texts[-2:])
    [entry] = await trail(h)
    assert (entry.action, entry.actor_role, entry.health_book_id) == (
        "waitlisted",
        "relative",
        father,
    )
