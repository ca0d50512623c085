"""Broadcasts and cancelled sessions, end to end on Telegram and on Zalo: /broadcast is an
admin's (anyone else gets the unknown-command answer); text → audience (everyone, a commune, a
site's day, those due for a dose) → count → Send reaches exactly that audience, once each;
Cancel sends nothing; the admin's progress message is edited in place on Telegram and sent
again at milestones on Zalo. The command line: admin add/list, broadcast send/status, and
sessions cancel (the booked people told, places and reminders right)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.dispatch import drain
from bot.standin.zalo import ZaloChatDriver
from handlers.booking import campaign_name
from handlers.notices import after_pass
from models import booking as bk
from models import broadcasts as bc
from models import healthbook as hb
from models import outbox
from models.campaigns import sample_book
from models.eligibility import eligible_doses
from models.errors import DomainError
from models.roles import grant_admin
from models.sessions_admin import cancel_session, find_session
from models.tables import (
    Account,
    Booking,
    Broadcast,
    Campaign,
    HealthBook,
    OutboxMessage,
    Session,
    Site,
    Vaccination,
    WaitlistEntry,
)
from tests.conftest import ChatHarness, Harness
from tests.flows import TR, Person, agree, t

CAMPAIGN = "covid19_2021"
SAPA, BACHA = 3006, 2839  # Phường Sa Pa, Xã Bắc Hà
SAPA_SITE, HOSPITAL = "LC-TYT-SAPA", "LC-BVDK"
TEXT = "Ngày 28/11 trạm y tế Sa Pa tiêm bù mũi 2.\nMang theo CCCD."


@pytest.fixture
def h(chat_sample: ChatHarness) -> ChatHarness:
    """The bot with the sample campaigns, sites and sessions, on Telegram and on Zalo."""
    return chat_sample


def uid(person: Person) -> str:
    return str(person.user.id)


async def account_of(h: ChatHarness, person: Person) -> Account:
    async with h.session() as session:
        found = await hb.find_account(session, h.channel, uid(person))
        assert found is not None
        return found


async def make_admin(h: ChatHarness, person: Person) -> None:
    async with h.session() as session, session.begin():
        await grant_admin(session, h.channel, uid(person))


async def with_book(h: ChatHarness, person: Person, ward: int, *, books: int = 1) -> list[int]:
    """The person agrees to the consent (the real conversation), then health books are saved
    for them directly (the questions are other tests' business)."""
    await agree(person)
    account = await account_of(h, person)
    ids = []
    async with h.session() as session, session.begin():
        for n in range(books):
            book = sample_book(
                account.id, ward_code=ward, relation="self" if n == 0 else "child"
            )
            session.add(book)
            await session.flush()
            ids.append(book.id)
    return ids


async def slot(session: AsyncSession, site: str, day: dt.date) -> Session:
    """The campaign's session at a site on a day (the sample data's 07:30 one)."""
    found = await session.scalar(
        select(Session)
        .join(Site, Site.id == Session.site_id)
        .join(Campaign, Campaign.id == Session.campaign_id)
        .where(Site.code == site, Session.date == day, Campaign.code == CAMPAIGN)
    )
    assert found is not None
    return found


async def book_at(h: ChatHarness, book_id: int, site: str, day: dt.date) -> Booking:
    async with h.session() as session, session.begin():
        found = await slot(session, site, day)
        return await bk.book(session, book_id, found.id, CAMPAIGN, None, h.services.today())


async def vaccinate(h: ChatHarness, book_id: int, days_ago: int, vaccine: str = "pfizer") -> None:
    async with h.session() as session, session.begin():
        campaign = await session.scalar(select(Campaign).where(Campaign.code == CAMPAIGN))
        assert campaign is not None
        session.add(
            Vaccination(
                health_book_id=book_id,
                campaign_id=campaign.id,
                dose=1,
                vaccine_code=vaccine,
                lot_number="LOT1",
                given_at=h.clock() - dt.timedelta(days=days_ago),
            )
        )


async def covid_label(h: ChatHarness) -> str:
    """The campaign's name as the admin reads it."""
    async with h.session() as session:
        covid = await session.scalar(select(Campaign).where(Campaign.code == CAMPAIGN))
        assert covid is not None
        return campaign_name(TR.get("vi"), covid)


def got(person: Person, text: str = TEXT) -> int:
    """How many copies of the broadcast reached the person."""
    return sum(1 for x in person.texts if text in x)


def weekday_after(day: dt.date, n: int) -> dt.date:
    while n:
        day += dt.timedelta(days=1)
        if day.weekday() < 5:
            n -= 1
    return day


@dataclass
class Town:
    """The people of a broadcast test and the admin."""

    admin: Person
    a: Person  # Sa Pa, two health books (a child's too), booked at the Sa Pa station on day1
    b: Person  # Bắc Hà, dose 1 five weeks ago: due for dose 2, not booked
    c: Person  # Sa Pa, dose 1 five days ago: not due yet
    d: Person  # Bắc Hà, dose 1 six weeks ago, dose 2 booked at the hospital on day2
    e: Person  # consent given, no health book yet
    day1: dt.date
    day2: dt.date


async def town(h: ChatHarness) -> Town:
    today = h.services.today()
    day1, day2 = weekday_after(today, 1), weekday_after(today, 2)
    a, b, c, d, e, admin = (h.user() for _ in range(6))
    a_books = await with_book(h, a, SAPA, books=2)
    await book_at(h, a_books[0], SAPA_SITE, day1)
    (b_book,) = await with_book(h, b, BACHA)
    await vaccinate(h, b_book, 35)
    (c_book,) = await with_book(h, c, SAPA)
    await vaccinate(h, c_book, 5)
    (d_book,) = await with_book(h, d, BACHA)
    await vaccinate(h, d_book, 42)
    await book_at(h, d_book, HOSPITAL, day2)
    await agree(e)
    await make_admin(h, admin)
    return Town(admin, a, b, c, d, e, day1, day2)


async def broadcast(h: ChatHarness, admin: Person, choose: list[str], count: int) -> None:
    """/broadcast, the text, then each answer of ``choose`` (a choice's label, else typed),
    checking the count shown, then Send."""
    lang = "vi"
    await admin.send("/broadcast")
    assert t(lang, "broadcast.ask_text", limit=bc.MAX_TEXT) in (admin.last_answer or "")
    await admin.send(TEXT)
    for answer in choose:
        if answer in admin.buttons:
            await admin.press(answer)
        else:
            await admin.send(answer)
    shown = admin.last_answer or ""
    assert f"{count} " in shown and t(lang, "broadcast.header") in shown, shown
    await admin.press(t(lang, "broadcast.button_send"))


async def test_only_an_admin_has_broadcast(h: ChatHarness) -> None:
    """A resident, a member of site staff and a person mid-way through their health book get
    for /broadcast exactly what an unknown command gets; nothing is written."""
    resident, staff, newcomer = h.user(), h.user(), h.user()
    async with h.session() as session, session.begin():
        await hb.ensure_account(session, h.channel, uid(resident), "vi")
        staff_account = await hb.ensure_account(session, h.channel, uid(staff), "vi")
        staff_account.role = "site_staff"
    await agree(newcomer)
    for person in (resident, staff, newcomer):
        await person.send("/nosuchcommand")
        unknown = person.last_answer
        await person.send("/broadcast")
        assert person.last_answer == unknown, (person.last_answer, unknown)
        assert "broadcast" not in (person.last_answer or "").lower()
        await person.send("Xin chào mọi người")  # not taken as a broadcast's text
    async with h.session() as session:
        assert await session.scalar(select(func.count()).select_from(Broadcast)) == 0
        assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


async def test_each_audience_gets_it_exactly_once(h: ChatHarness) -> None:
    """Everyone, a commune, a site's day, the people due: the count shown, then each person of
    the audience gets the text once (one copy per account, however many books it holds), and
    nobody else; the header is in the reader's language, the text as the admin wrote it."""
    town_ = await town(h)
    admin = town_.admin
    people = {"a": town_.a, "b": town_.b, "c": town_.c, "d": town_.d, "e": town_.e}
    cases = [
        (["👥 Tất cả mọi người"], {"a", "b", "c", "d", "e"}),
        (["🏘 Người dân một xã/phường", "sa pa"], {"a", "c"}),
        (
            ["📅 Người đã hẹn tiêm tại một điểm, một ngày", "Trạm Y tế phường Sa Pa",
             f"{town_.day1:%d/%m}"],
            {"a"},
        ),
        (["📅 Người đã hẹn tiêm tại một điểm, một ngày", HOSPITAL, str(town_.day2)], {"d"}),
        (["💉 Người đến hạn tiêm mũi tiếp", await covid_label(h)], {"b"}),
    ]
    for n, (choose, audience) in enumerate(cases, 1):
        before = {name: got(p) for name, p in people.items()}
        await broadcast(h, admin, choose, len(audience))
        await drain(h.services)
        after = {name: got(p) for name, p in people.items()}
        received = {name for name in people if after[name] - before[name] == 1}
        assert received == audience, (n, received, audience)
        assert all(after[x] - before[x] <= 1 for x in people), (n, before, after)
        await drain(h.services)  # nothing sent twice
        assert {name: got(p) for name, p in people.items()} == after
    copy = next(x for x in town_.a.texts if TEXT in x)
    assert copy == f"{t('vi', 'broadcast.header')}\n\n{TEXT}"
    async with h.session() as session:
        statuses = set(await session.scalars(select(Broadcast.status)))
        assert statuses == {"done"}


async def test_cancel_at_the_confirm_step_sends_nothing(h: ChatHarness) -> None:
    town_ = await town(h)
    await town_.admin.send("/broadcast")
    await town_.admin.send(TEXT)
    await town_.admin.press("👥 Tất cả mọi người")
    await town_.admin.press(t("vi", "broadcast.button_cancel"))
    assert t("vi", "broadcast.cancelled") in " ".join(town_.admin.texts[-2:])
    await drain(h.services)
    assert all(got(p) == 0 for p in (town_.a, town_.b, town_.c, town_.d, town_.e))
    async with h.session() as session:
        assert await session.scalar(select(func.count()).select_from(Broadcast)) == 0
        assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


async def test_text_limits_and_typed_answers(h: ChatHarness) -> None:
    """Too long: said, with the limit, and asked again; a commune that matches none is said,
    several are offered as choices; an audience of nobody offers the audiences again."""
    admin = h.user()
    await make_admin(h, admin)
    await admin.send("/broadcast")
    await admin.send("x" * (bc.MAX_TEXT + 1))
    assert t("vi", "broadcast.text_too_long", limit=bc.MAX_TEXT, length=bc.MAX_TEXT + 1) in (
        admin.last_answer or ""
    )
    await admin.send("Tin ngắn")
    await admin.press("🏘 Người dân một xã/phường")
    await admin.send("qqqqzzz")
    assert "qqqqzzz" in (admin.last_answer or "")
    await admin.send("nghia")  # Nghĩa Đô, Nghĩa Lộ, Nghĩa Tâm: a choice
    assert t("vi", "broadcast.choose_commune") in (admin.last_answer or "")
    assert {"Xã Nghĩa Đô", "Phường Nghĩa Lộ", "Xã Nghĩa Tâm"} <= set(admin.buttons)
    await admin.press("Phường Nghĩa Lộ")
    assert t("vi", "broadcast.nobody", audience="người dân Phường Nghĩa Lộ") in (
        admin.last_answer or ""
    )
    await admin.send("/cancel")
    assert t("vi", "broadcast.cancelled") in (admin.last_answer or "")


async def test_progress_is_edited_on_telegram_and_resent_at_milestones_on_zalo(
    h: ChatHarness,
) -> None:
    """Four recipients, copies settled one by one: Telegram edits the one progress message
    (at most every few seconds, always at the end); Zalo sends a new one at 25, 50, 75% and at
    the end. The last shows the final counts."""
    admin = h.user()
    await make_admin(h, admin)
    people = [h.user() for _ in range(4)]
    for person in people:
        await with_book(h, person, BACHA)
    await broadcast(h, admin, ["🏘 Người dân một xã/phường", "bac ha"], 4)
    before = len(admin.messages)
    async with h.session() as session:
        b = await session.scalar(select(Broadcast))
        assert b is not None and b.status == "sending" and b.total == 4
        ids = list(
            await session.scalars(
                select(OutboxMessage.id).where(OutboxMessage.broadcast_id == b.id)
                .order_by(OutboxMessage.id)
            )
        )
    shown = []
    for n, message_id in enumerate(ids):
        async with h.session() as session, session.begin():
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == message_id)
                .values(status="failed" if n == 0 else "sent")
            )
        if n == 2:
            h.clock.advance(seconds=5)
        await after_pass(h.services, {b.id})
        shown.append(admin.messages[-1])
    final = t("vi", "broadcast.progress_done", number=b.id, sent=3, failed=1, left=0)
    if isinstance(admin, ZaloChatDriver):
        texts = [m.get("text") for m in admin.messages[before:]]
        assert len(texts) == 4, texts  # 25%, 50%, 75%, done
        assert texts[-1] == final
    else:
        assert len(admin.messages) == before  # the confirm message itself, edited
        assert admin.last_text == final
        edits = [c for c in admin.calls if c.method == "editMessageText"]
        # the press closed it (1), then: 1st copy, (2nd within 3 s: not), 3rd, the end
        assert len(edits) == 4, [c.params.get("text") for c in edits]
    async with h.session() as session:
        b = await session.get(Broadcast, b.id)
        assert b is not None and b.status == "done"


async def test_quiet_hours_hold_a_broadcast(h: ChatHarness) -> None:
    """Confirmed at 22:00 local time, the copies wait until 07:00."""
    h.clock.current = dt.datetime(2026, 11, 25, 15, 0, tzinfo=dt.UTC)  # 22:00 local
    admin, person = h.user(), h.user()
    await make_admin(h, admin)
    await with_book(h, person, BACHA)
    await broadcast(h, admin, ["🏘 Người dân một xã/phường", "bac ha"], 1)
    assert t("vi", "broadcast.held", time="07:00") in (admin.last_text or "")
    await drain(h.services)
    assert got(person) == 0
    h.clock.current = dt.datetime(2026, 11, 26, 0, 1, tzinfo=dt.UTC)  # 07:01 local
    await drain(h.services)
    assert got(person) == 1


# ---------------------------------------------------------------- the domain, directly


async def test_due_matches_the_booking_rules(h: ChatHarness) -> None:
    """The "due" audience's SQL says the same as eligible_doses for every kind of person."""
    cases = [(None, None), (1, "pfizer"), (20, "pfizer"), (21, "pfizer"), (22, "pfizer"),
             (55, "astrazeneca"), (56, "astrazeneca"), (57, "astrazeneca"), (30, "moderna")]
    books = []
    for days, vaccine in cases:
        person = h.user()
        (book_id,) = await with_book(h, person, SAPA)
        if days is not None:
            await vaccinate(h, book_id, days, vaccine or "pfizer")
        books.append(book_id)
    today = h.services.today()
    async with h.session() as session:
        covid = await session.scalar(select(Campaign).where(Campaign.code == CAMPAIGN))
        assert covid is not None
        due_sql = set(
            await session.scalars(
                select(HealthBook.id)
                .join(Vaccination, Vaccination.health_book_id == HealthBook.id)
                .where(bc.due_condition(covid, today, h.services.tz))
            )
        )
        expected = set()
        for book_id in books:
            book = await session.get(HealthBook, book_id)
            assert book is not None
            window = await eligible_doses(session, book, covid, today)
            has_dose = await session.scalar(
                select(Vaccination.id).where(Vaccination.health_book_id == book_id)
            )
            if window is not None and has_dose and window.earliest <= today:
                expected.add(book_id)
    assert due_sql == expected and len(expected) == 5, (due_sql, expected)


async def test_blocked_and_linked_accounts(h: ChatHarness) -> None:
    """A person who blocked the bot is not counted; withdrawn consent (none) neither."""
    person, blocked, never = h.user(), h.user(), h.user()
    await with_book(h, person, BACHA)
    await with_book(h, blocked, BACHA)
    async with h.session() as session, session.begin():
        await session.execute(
            update(Account)
            .where(Account.external_id == uid(blocked))
            .values(unreachable_at=h.clock())
        )
        account = await hb.ensure_account(session, h.channel, uid(never))
        session.add(sample_book(account.id, ward_code=BACHA))  # a book but no consent
    async with h.session() as session:
        n = await bc.count(session, bc.Audience("commune", ward=BACHA), h.services.today(),
                           h.services.tz)
    assert n == 1


# ---------------------------------------------------------------- sessions cancel


async def test_cancelling_a_session_tells_exactly_its_booked_people(h: ChatHarness) -> None:
    """Every active booking of the session cancelled and its place given back, the held
    waitlist place too; other sessions untouched; the bookings' reminders cancelled; each booked
    person told once, with Book again; the session takes no booking after."""
    today = h.services.today()
    day = weekday_after(today, 1)
    booked = [h.user() for _ in range(2)]
    other, waiting = h.user(), h.user()
    bookings = []
    for person in booked:
        (book_id,) = await with_book(h, person, SAPA)
        bookings.append(await book_at(h, book_id, SAPA_SITE, day))
    (other_book,) = await with_book(h, other, SAPA)
    other_booking = await book_at(h, other_book, SAPA_SITE, weekday_after(today, 2))
    (waiting_book,) = await with_book(h, waiting, SAPA)
    first = (await account_of(h, booked[0])).id
    async with h.session() as session, session.begin():
        target = await slot(session, SAPA_SITE, day)
        target_id, capacity = target.id, target.capacity
        session.add(WaitlistEntry(health_book_id=waiting_book, campaign_id=target.campaign_id,
                                  dose=1, session_id=target.id, status="waiting"))
        reminder = outbox.enqueue(
            session, kind="appointment_eve", account_id=first,
            booking_id=bookings[0].id, due_at=h.clock() + dt.timedelta(hours=5),
        )
        await session.flush()
        reminder_id = reminder.id
        other_slot = await slot(session, SAPA_SITE, weekday_after(today, 2))
        other_booked = other_slot.booked
    async with h.session() as session, session.begin():
        found = await find_session(
            session, site=SAPA_SITE, date=day, start=dt.time(7, 30), campaign=CAMPAIGN
        )
        assert found.id == target_id
        done = await cancel_session(
            session, found, now=h.clock(), today=today, reason="Hết vắc xin"
        )
    assert (done.bookings, done.notified, done.waitlist) == (2, 2, 1)
    async with h.session() as session:
        target = await session.get(Session, target_id)
        assert target is not None and target.booked == 0 and target.capacity == capacity
        assert target.cancelled_at is not None and target.cancel_reason == "Hết vắc xin"
        assert (await session.get(Session, other_slot.id)).booked == other_booked  # type: ignore[union-attr]
        statuses = {
            b.id: b.status for b in await session.scalars(select(Booking))
        }
        assert statuses == {bookings[0].id: "cancelled", bookings[1].id: "cancelled",
                            other_booking.id: "booked"}
        assert (await session.get(OutboxMessage, reminder_id)).status == "cancelled"  # type: ignore[union-attr]
        entry = await session.scalar(select(WaitlistEntry))
        assert entry is not None and entry.status == "cancelled"
    await drain(h.services)
    notice = t("vi", "session_cancelled.reason", reason="Hết vắc xin")
    for person in booked:
        assert sum(notice in x for x in person.texts) == 1
        assert t("vi", "session_cancelled.button_book") in person.buttons
    assert not any(notice in x for x in other.texts + waiting.texts)
    # Book again: the booking of the campaign starts, for the same dose
    await booked[0].press(t("vi", "session_cancelled.button_book"))
    assert booked[0].buttons  # the sites
    # the cancelled session takes no booking, and says so
    async with h.session() as session, session.begin():
        with pytest.raises(DomainError) as err:
            await bk.book(session, waiting_book, target_id, CAMPAIGN, None, today)
        assert err.value.key == "booking.session_not_found"
        assert day not in {d.date for d in await bk.open_days(
            session, (await slot(session, SAPA_SITE, day)).site_id, target.campaign_id, today)}
    async with h.session() as session, session.begin():
        again = await session.get(Session, target_id)
        with pytest.raises(DomainError) as err:
            await cancel_session(session, again, now=h.clock(), today=today)  # type: ignore[arg-type]
        assert err.value.key == "session.already_cancelled"


# ---------------------------------------------------------------- the command line


def test_admin_add_and_list(tmp_path: Path) -> None:
    from tests.test_cli import healthbook

    ok = healthbook("admin", "add", "--telegram-id", "77", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "telegram user 77 is now admin"
    ok = healthbook("admin", "add", "--zalo-id", "6ede9afa66b88fe6d6a9", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    listed = healthbook("admin", "list", cwd=tmp_path)
    assert listed.stdout.split() == ["telegram:77", "zalo:6ede9afa66b88fe6d6a9"]
    for args, said in [
        ((), "exactly one of --telegram-id and --zalo-id"),
        (("--telegram-id", "05"), "a Telegram id is a positive whole number"),
        (("--telegram-id", "1", "--zalo-id", "a"), "exactly one of --telegram-id and --zalo-id"),
        (("--zalo-id", "a b"), "a Zalo id is 1 to 64 letters and digits"),
    ]:
        bad = healthbook("admin", "add", *args, cwd=tmp_path)
        assert bad.returncode == 2 and said in " ".join(bad.stderr.split()), bad.stderr
        assert "Traceback" not in bad.stderr


def test_cli_broadcast_send_status_and_sessions_cancel(tmp_path: Path) -> None:
    """send: the count, a question unless --yes, the rows queued; status: sent / failed / left;
    bad audiences are clear errors. sessions cancel: by id or by site, day and time; an unknown
    or forged one is a clear error; how many were told."""
    import contextlib
    import sqlite3
    from zoneinfo import ZoneInfo

    from tests.test_cli import healthbook

    today = dt.datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date()
    day = str(weekday_after(today, 1))
    assert healthbook("sample-data", "--today", str(today), cwd=tmp_path).returncode == 0
    spec = ("broadcast", "send", "--text", "Xin chào", "--audience")
    # nobody to send to: said, and why; nothing queued
    nobody = healthbook(*spec, "everyone", "--yes", cwd=tmp_path)  # no one agreed yet
    assert nobody.returncode == 1 and "0 people will receive it" in nobody.stdout
    assert "nothing sent: no one has agreed to the bot's terms yet" in nobody.stderr
    nobody = healthbook(*spec, f"site:LC-BVDK:{day}", "--yes", cwd=tmp_path)
    assert nobody.returncode == 1
    assert "nothing sent: no one is booked at this site on that day" in nobody.stderr
    database = tmp_path / "healthbook.db"
    with contextlib.closing(sqlite3.connect(database)) as conn:
        conn.execute(
            "INSERT INTO accounts (id, channel, external_id, role, created_at, link_failures) "
            "VALUES (901, 'telegram', '901', 'resident', '2026-11-25', 0), "
            "(902, 'zalo', 'abc902', 'resident', '2026-11-25', 0)"
        )
        conn.execute(
            "INSERT INTO consents (account_id, version, given_at) VALUES "
            "(901, 'v', '2026-11-25'), (902, 'v', '2026-11-25')"
        )
        conn.commit()
    no = healthbook(*spec, "everyone", cwd=tmp_path, stdin="n\n")
    assert no.returncode == 1 and "2 people" in no.stdout, (no.stdout, no.stderr)
    sent = healthbook(*spec, "everyone", "--yes", cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    assert "broadcast 1: 2 messages queued" in sent.stdout
    with contextlib.closing(sqlite3.connect(database)) as conn:
        rows = conn.execute("SELECT kind, account_id, status FROM outbox ORDER BY account_id")
        assert list(rows) == [("broadcast", 901, "pending"), ("broadcast", 902, "pending")]
    status = healthbook("broadcast", "status", "1", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "sent 0 / failed 0 / left 2" in status.stdout
    # created at local time (bot.timezone), as sessions list shows times, not UTC
    shown = re.search(r"broadcast 1 \((\d{4}-\d\d-\d\d \d\d:\d\d), everyone", status.stdout)
    assert shown is not None and "UTC" not in status.stdout, status.stdout
    created = dt.datetime.strptime(shown.group(1), "%Y-%m-%d %H:%M").replace(
        tzinfo=ZoneInfo("Asia/Ho_Chi_Minh"))
    assert abs(created - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)
    listed = healthbook("broadcast", "status", cwd=tmp_path)
    assert "sent 0 / failed 0 / left 2" in listed.stdout
    for bad, said in [
        ("commune:99999", "99999"),
        ("site:NOPE:2026-11-26", "NOPE"),
        ("site:LC-BVDK:2026-13-01", "site:LC-BVDK:2026-13-01"),
        ("due:nope", "nope"),
        ("all", "everyone, commune:"),
    ]:
        result = healthbook(*spec, bad, "--yes", cwd=tmp_path)
        assert result.returncode in (1, 2) and said in result.stderr, (bad, result.stderr)
        assert "Traceback" not in result.stderr
    long = healthbook("broadcast", "send", "--text", "x" * 2000, "--audience", "everyone",
                      "--yes", cwd=tmp_path)
    assert long.returncode != 0 and "1800" in long.stderr
    assert healthbook("broadcast", "status", "77", cwd=tmp_path).returncode == 1
    # sessions cancel
    for args, said in [
        (("--id", "999999"), "error:"),
        (("--id", "abc"), "--id"),
        (("--site", "LC-BVDK", "--date", day), "--start"),
        (("--site", "NOPE", "--date", day, "--start", "07:30"), "NOPE"),
        (("--site", "LC-BVDK", "--date", day, "--start", "25:00"), "25:00"),
        (("--site", "LC-BVDK", "--date", day, "--start", "07:30", "--reason", "x" * 201), "200"),
        (("--site", "LC-BVDK", "--date", day, "--start", "07:30"), "influenza_seasonal"),
    ]:
        result = healthbook("sessions", "cancel", *args, cwd=tmp_path)
        assert result.returncode in (1, 2) and said in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    ok = healthbook(
        "sessions", "cancel", "--site", "LC-BVDK", "--date", day, "--start", "07:30",
        "--campaign", CAMPAIGN, "--reason", "Hết vắc xin", "--yes", cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    assert "0 bookings cancelled, 0 people to be told" in ok.stdout, ok.stdout
    again = healthbook(
        "sessions", "cancel", "--site", "LC-BVDK", "--date", day, "--start", "07:30",
        "--campaign", CAMPAIGN, cwd=tmp_path,
    )
    assert again.returncode == 1 and "error:" in again.stderr
    listed = healthbook("sessions", "list", "--site", "LC-BVDK", "--date", day, cwd=tmp_path)
    assert "cancelled" in listed.stdout


def test_cli_sessions_cancel_asks_first_and_refuses_a_session_over(tmp_path: Path) -> None:
    """How many bookings it cancels, then "Cancel this session? [y/N]" (unless --yes): no
    changes nothing. A session whose day is past, or today's once its end time passed, is
    refused with a clear line, and nothing changes."""
    import contextlib
    import sqlite3
    from zoneinfo import ZoneInfo

    from tests.test_cli import healthbook

    now = dt.datetime.now(ZoneInfo("Asia/Ho_Chi_Minh"))
    today = now.date()
    day = str(weekday_after(today, 1))
    assert healthbook("sample-data", "--today", str(today), cwd=tmp_path).returncode == 0
    database = tmp_path / "healthbook.db"

    def cancelled() -> list[tuple[int, str | None]]:
        with contextlib.closing(sqlite3.connect(database)) as conn:
            return list(conn.execute("SELECT id, cancelled_at FROM sessions "
                                     "WHERE cancelled_at IS NOT NULL"))

    with contextlib.closing(sqlite3.connect(database)) as conn:
        [(first, site_id, campaign_id)] = conn.execute(
            "SELECT s.id, s.site_id, s.campaign_id FROM sessions s JOIN sites ON sites.id = "
            "s.site_id JOIN campaigns c ON c.id = s.campaign_id WHERE sites.code = 'LC-BVDK' "
            "AND c.code = ? AND s.date = ? AND s.start_time LIKE '07:30%'", (CAMPAIGN, day),
        ).fetchall()
        past = conn.execute(
            "INSERT INTO sessions (site_id, campaign_id, date, start_time, end_time, capacity, "
            "booked) VALUES (?, ?, ?, '07:30:00.000000', '11:30:00.000000', 10, 0)",
            (site_id, campaign_id, str(today - dt.timedelta(days=1))),
        ).lastrowid
        ended = conn.execute(
            "INSERT INTO sessions (site_id, campaign_id, date, start_time, end_time, capacity, "
            "booked) VALUES (?, ?, ?, '00:00:00.000000', '00:01:00.000000', 10, 0)",
            (site_id, campaign_id, str(today)),
        ).lastrowid
        conn.commit()
    spec = ("sessions", "cancel", "--id", str(first))
    no = healthbook(*spec, cwd=tmp_path, stdin="n\n")
    assert no.returncode == 1, no.stderr
    assert f"session {first} ({day} 07:30–11:30): 0 bookings will be cancelled" in no.stdout
    assert "Cancel this session? [y/N]" in no.stdout and "nothing changed" in no.stdout
    assert cancelled() == []
    yes = healthbook(*spec, cwd=tmp_path, stdin="y\n")
    assert yes.returncode == 0 and "cancelled: 0 bookings cancelled" in yes.stdout, yes.stderr
    assert [row[0] for row in cancelled()] == [first]
    over = [(past, f"{today - dt.timedelta(days=1):%d/%m/%Y}")]
    if now.time() >= dt.time(0, 2):  # today's 00:00–00:01 session is over (a minute's margin)
        over.append((ended, f"{today:%d/%m/%Y}"))
    for number, date in over:
        refused = healthbook("sessions", "cancel", "--id", str(number), "--yes", cwd=tmp_path)
        assert refused.returncode == 1 and "đã qua" in refused.stderr, refused.stderr
        assert date in refused.stderr and "Traceback" not in refused.stderr
    again = healthbook(*spec, cwd=tmp_path, stdin="y\n")
    assert again.returncode == 1 and "đã hủy rồi" in again.stderr, again.stderr
    assert "Cancel this session?" not in again.stdout  # refused before asking
    assert [row[0] for row in cancelled()] == [first]



async def test_telegram_typed_confirm_sends_a_progress_message(sample: Harness) -> None:
    """Send typed as its number on Telegram: no pressed message to edit, so the first progress
    is a new message, and that one is edited from then on."""
    h = sample
    admin, person = h.user(), h.user()
    await make_admin(h, admin)
    await with_book(h, person, BACHA)
    await admin.send("/broadcast")
    await admin.send(TEXT)
    await admin.press("🏘 Người dân một xã/phường")
    await admin.send("bac ha")
    await admin.send("1")  # ✅ Gửi, typed
    async with h.session() as session:
        b = await session.scalar(select(Broadcast))
        assert b is not None and b.status == "sending" and b.progress_message is None
    before = len(admin.messages)
    await drain(h.services)
    assert got(person) == 1
    assert len(admin.messages) == before + 1
    assert admin.last_text == t("vi", "broadcast.progress_done", number=b.id, sent=1, failed=0,
                                left=0)
    async with h.session() as session:
        b = await session.get(Broadcast, b.id)
        assert b is not None and b.status == "done" and b.progress_message is not None


def test_days_as_typed() -> None:
    from handlers.broadcast import parse_day

    today = dt.date(2026, 11, 25)
    assert parse_day("30/11", today) == dt.date(2026, 11, 30)
    assert parse_day("3-1", today) == dt.date(2027, 1, 3)  # January: next year's
    assert parse_day("30/11/2026", today) == dt.date(2026, 11, 30)
    assert parse_day("2026-12-01", today) == dt.date(2026, 12, 1)
    for bad in ("31/11", "hôm nay", "2026-13-01", "1/2/3", ""):
        assert parse_day(bad, today) is None, bad


async def test_an_earlier_confirmations_send_does_not_reach_a_later_audience(
    sample: Harness,
) -> None:
    """Send on the confirmation shown for one audience, pressed after another audience was
    chosen, sends nothing: it is out of date (it would have reached people it did not name)."""
    h = sample
    admin, sapa, bacha = h.user(), h.user(), h.user()
    await make_admin(h, admin)
    await with_book(h, sapa, SAPA)
    await with_book(h, bacha, BACHA)
    await admin.send("/broadcast")
    await admin.send(TEXT)
    await admin.press("🏘 Người dân một xã/phường")
    await admin.send("sa pa")
    first = admin._keyboard_message()
    assert first is not None
    send_sapa = next(
        b["callback_data"]
        for row in first["reply_markup"]["inline_keyboard"]
        for b in row
        if b["text"] == t("vi", "broadcast.button_send")
    )
    await admin.press_data("bc:a:everyone", message=first)  # another audience, from its list
    assert "2 " in (admin.last_answer or "")
    await admin.press_data(send_sapa, message=first)  # the first confirmation's Send
    await drain(h.services)
    assert got(sapa) == 0 and got(bacha) == 0
    async with h.session() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
    await admin.press(t("vi", "broadcast.button_send"))  # the current one sends to everyone
    await drain(h.services)
    assert got(sapa) == 1 and got(bacha) == 1
