"""Reminders, domain layer (models/reminders.py): planned from the rules in the province's time,
held through quiet hours, skipped when already past, cancelled and re-planned with their
appointment, re-planned when a rule changes; waitlist offers held from when they can be read;
unfinished health books reminded once. On every database of the ``db_url`` fixture, with the
harness's FakeClock (2026-11-25 10:00 in Lào Cai, a Wednesday)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from handlers.common import timing
from models import booking as bk
from models import checkin as ci
from models import lookups as lk
from models import reminders as rm
from models import waitlist as wl
from models.campaigns import sample_book
from models.tables import Account, Draft, OutboxMessage, Session
from tests.conftest import Harness

COVID = "covid19_2021"
THURSDAY = dt.date(2026, 11, 26)
FRIDAY = dt.date(2026, 11, 27)


def local(h: Harness, day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    """A local wall-clock time in the province, as a UTC timestamp."""
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=h.services.tz).astimezone(dt.UTC)


async def person(h: Harness, n: int) -> tuple[int, int]:
    """A new account with its own health book: (account id, book id)."""
    async with h.session() as s, s.begin():
        account = Account(channel="telegram", external_id=f"9{n}", locale="vi")
        s.add(account)
        await s.flush()
        book = sample_book(account.id, id_number=f"0101850{n:05d}")
        s.add(book)
        await s.flush()
        return account.id, book.id


async def slot(h: Harness, day: dt.date, site: str = "LC-TYT-SAPA") -> int:
    async with h.session() as s:
        found = await lk.get_site(s, site)
        return int(
            await s.scalar(
                select(Session.id)
                .where(Session.site_id == found.id, Session.date == day)
                .order_by(Session.start_time)
                .limit(1)
            )
        )


async def rows(h: Harness, **where: object) -> list[OutboxMessage]:
    async with h.session() as s:
        stmt = select(OutboxMessage).order_by(OutboxMessage.id)
        for key, value in where.items():
            stmt = stmt.where(getattr(OutboxMessage, key) == value)
        return list((await s.scalars(stmt)).all())


def due(row: OutboxMessage) -> dt.datetime:
    return row.due_at.replace(tzinfo=dt.UTC) if row.due_at.tzinfo is None else row.due_at


async def book(h: Harness, book_id: int, day: dt.date) -> int:
    session_id = await slot(h, day)
    async with h.session() as s, s.begin():
        today, when = h.services.today(), timing(h.services)
        booking = await bk.book(s, book_id, session_id, COVID, None, today, timing=when)
        return booking.id


async def test_a_booking_plans_the_evening_before_and_the_morning_of(sample: Harness) -> None:
    _, book_id = await person(sample, 1)
    booking_id = await book(sample, book_id, THURSDAY)
    planned = {r.kind: r for r in await rows(sample, booking_id=booking_id)}
    assert set(planned) == {"appointment_eve", "appointment_morning"}
    assert due(planned["appointment_eve"]) == local(sample, dt.date(2026, 11, 25), 18)
    # 06:30 is in the quiet hours, but a same-day reminder may go then
    assert due(planned["appointment_morning"]) == local(sample, THURSDAY, 6, 30)
    assert {r.status for r in planned.values()} == {"pending"}
    # the anchor is the session's local start, kept for re-planning
    anchor = planned["appointment_eve"].anchor_at
    assert anchor is not None and anchor.replace(tzinfo=dt.UTC) == local(sample, THURSDAY, 7, 30)


async def test_a_reminder_already_past_is_not_planned(sample: Harness) -> None:
    """Booked at 19:00 for tomorrow: no 18:00 "tomorrow" reminder, the morning one still."""
    sample.clock.current = local(sample, dt.date(2026, 11, 25), 19)
    _, book_id = await person(sample, 2)
    booking_id = await book(sample, book_id, THURSDAY)
    assert [r.kind for r in await rows(sample, booking_id=booking_id)] == ["appointment_morning"]


async def test_quiet_hours_hold_a_reminder_until_morning(sample: Harness) -> None:
    async with sample.session() as s, s.begin():
        await rm.set_rule(s, "appointment_eve", delivery_time=dt.time(22, 0))
    _, book_id = await person(sample, 3)
    booking_id = await book(sample, book_id, FRIDAY)
    [eve] = await rows(sample, booking_id=booking_id, kind="appointment_eve")
    assert due(eve) == local(sample, FRIDAY, 7, 0)  # 22:00 is quiet: held until 07:00


async def test_cancel_and_reschedule_cancel_and_replan_in_the_same_transaction(
    sample: Harness,
) -> None:
    account_id, book_id = await person(sample, 4)
    booking_id = await book(sample, book_id, THURSDAY)
    thursday, friday = await slot(sample, THURSDAY), await slot(sample, FRIDAY)
    async with sample.session() as s, s.begin():
        owner = await s.get(Account, account_id)
        assert owner is not None
        await bk.reschedule(
            s, booking_id, friday, owner=owner,
            today=sample.services.today(), timing=timing(sample.services),
        )
    found = await rows(sample, booking_id=booking_id)
    assert [(r.kind, r.status) for r in found] == [
        ("appointment_eve", "cancelled"),
        ("appointment_morning", "cancelled"),
        ("appointment_eve", "pending"),
        ("appointment_morning", "pending"),
    ]
    assert due(found[2]) == local(sample, THURSDAY, 18)
    # moved back to the first time: its reminders are planned again, no duplicate key
    async with sample.session() as s, s.begin():
        owner = await s.get(Account, account_id)
        assert owner is not None
        await bk.reschedule(
            s, booking_id, thursday, owner=owner,
            today=sample.services.today(), timing=timing(sample.services),
        )
    pending = [r for r in await rows(sample, booking_id=booking_id) if r.status == "pending"]
    assert sorted(due(r) for r in pending) == [
        local(sample, dt.date(2026, 11, 25), 18),
        local(sample, THURSDAY, 6, 30),
    ]
    async with sample.session() as s, s.begin():
        owner = await s.get(Account, account_id)
        assert owner is not None
        await bk.cancel(s, booking_id, owner, now=sample.clock())
    assert {r.status for r in await rows(sample, booking_id=booking_id)} == {"cancelled"}


async def test_a_rule_change_replans_pending_reminders(sample: Harness) -> None:
    _, book_id = await person(sample, 5)
    booking_id = await book(sample, book_id, FRIDAY)

    async def change(**kwargs: object) -> tuple[int, int]:
        async with sample.session() as s, s.begin():
            await rm.set_rule(s, "appointment_eve", **kwargs)  # type: ignore[arg-type]
            return await rm.replan_kind(s, "appointment_eve", timing(sample.services))

    assert await change(delivery_time=dt.time(19, 30)) == (1, 0)
    [eve] = await rows(sample, booking_id=booking_id, kind="appointment_eve")
    assert due(eve) == local(sample, THURSDAY, 19, 30)
    # two days before at 09:00 is already past: cancelled, not sent late
    assert await change(offset=-2, delivery_time=dt.time(9, 0)) == (0, 1)
    [eve] = await rows(sample, booking_id=booking_id, kind="appointment_eve")
    assert (eve.status, eve.error) == ("cancelled", "rule changed")
    # turned off: the pending ones are cancelled, and new bookings get none
    await change(offset=-1, delivery_time=dt.time(18, 0))
    _, other = await person(sample, 6)
    second = await book(sample, other, FRIDAY)
    assert await change(active=False) == (0, 1)
    _, third = await person(sample, 10)
    new = await book(sample, third, FRIDAY)
    assert [r.kind for r in await rows(sample, booking_id=new)] == ["appointment_morning"]
    assert [r.status for r in await rows(sample, booking_id=second)] == ["cancelled", "pending"]


async def test_a_place_offered_in_quiet_hours_is_held_from_their_end(sample: Harness) -> None:
    sample.clock.current = local(sample, dt.date(2026, 11, 25), 22)
    holder_account, holder = await person(sample, 7)
    _, waiting = await person(sample, 8)
    session_id = await slot(sample, FRIDAY)
    async with sample.session() as s, s.begin():
        await s.execute(update(Session).where(Session.id == session_id).values(capacity=1))
        booking = await bk.book(s, holder, session_id, COVID, None, sample.services.today())
        entry = await wl.join_waitlist(
            s, waiting, COVID, today=sample.services.today(), session_id=session_id
        )
        owner = await s.get(Account, holder_account)
        assert owner is not None
        await bk.cancel(s, booking.id, owner, now=sample.clock())
        offered = await wl.offer_freed_place(
            s, session_id, sample.clock(), 60, timing=timing(sample.services)
        )
        assert offered is not None and offered.id == entry.id
        expires = offered.offer_expires_at
    assert expires is not None
    thursday_7 = local(sample, THURSDAY, 7)
    assert expires.replace(tzinfo=dt.UTC) == thursday_7 + dt.timedelta(minutes=60)
    [row] = await rows(sample, kind="waitlist_offer")
    assert (due(row), row.ref_id, row.status) == (thursday_7, entry.id, "pending")


async def test_an_unfinished_health_book_is_reminded_once(sample: Harness) -> None:
    async with sample.session() as s, s.begin():
        account = Account(channel="telegram", external_id="4242", locale="vi")
        s.add(account)
        await s.flush()
        s.add(Draft(account_id=account.id, answers={"full_name": "X"}, updated_at=sample.clock()))
        done = Account(channel="telegram", external_id="4343", locale="vi")
        s.add(done)
        await s.flush()
        s.add(Draft(account_id=done.id, answers={}, updated_at=sample.clock()))
        s.add(sample_book(done.id, id_number="010185000999"))  # saved: nothing to remind
        account_id = account.id

    async def plan() -> int:
        async with sample.session() as s, s.begin():
            return await rm.plan_unfinished(s, timing(sample.services))

    sample.clock.advance(hours=23, minutes=59)
    assert await plan() == 0
    sample.clock.advance(minutes=1)
    assert await plan() == 1
    [row] = await rows(sample, kind="healthbook_unfinished")
    assert (row.account_id, due(row), row.status) == (account_id, sample.clock(), "pending")
    sample.clock.advance(hours=30)
    assert await plan() == 0  # once
    # they came back to it: the pending one is withdrawn, and planned again after 24 hours
    async with sample.session() as s, s.begin():
        await s.execute(
            update(Draft).where(Draft.account_id == account_id).values(updated_at=sample.clock())
        )
    assert await plan() == 0 and await rows(sample, kind="healthbook_unfinished") == []
    sample.clock.advance(hours=24)
    assert await plan() == 1


async def test_a_draft_left_long_ago_gets_no_reminder(sample: Harness) -> None:
    """Deployed on a database with old drafts: nobody gets a reminder months late."""
    async with sample.session() as s, s.begin():
        account = Account(channel="telegram", external_id="4444", locale="vi")
        s.add(account)
        await s.flush()
        s.add(Draft(account_id=account.id, answers={}, updated_at=sample.clock()))
    sample.clock.advance(days=40)
    async with sample.session() as s, s.begin():
        assert await rm.plan_unfinished(s, timing(sample.services)) == 0
    [row] = await rows(sample, kind="healthbook_unfinished")
    assert (row.status, row.error) == ("cancelled", "too late")


@pytest.mark.parametrize(
    ("kind", "text", "error"),
    [
        ("appointment_eve", "Mai {day} ở {site}, mã {code}", None),
        ("appointment_eve", "Xin chào {name}", "unknown placeholder {name}"),
        ("dose_due", "Mũi {dose} từ {earliest:%d}", "unknown placeholder {earliest}"),
        ("dose_due", "Mũi {0}", "unknown placeholder {0}"),
        ("dose_due", "Mũi {dose.real}", "unknown placeholder {dose.real}"),
        ("dose_due", "Mũi {dose", "expected '}'"),
        ("healthbook_unfinished", "   ", "empty"),
    ],
)
def test_a_rule_text_may_use_only_its_kind_placeholders(
    kind: str, text: str, error: str | None
) -> None:
    if error is None:
        assert rm.check_text(kind, "vi", text, ("vi", "en")) == text
        return
    with pytest.raises(ValueError, match=error.replace("{", r"\{").replace("}", r"\}")):
        rm.check_text(kind, "vi", text, ("vi", "en"))


async def test_rule_changes_are_checked(sample: Harness) -> None:
    async with sample.session() as s, s.begin():
        for kwargs, error in [
            ({"active": False}, "cannot be turned off"),
            ({"delivery_time": dt.time(9, 0)}, "no delivery time"),
        ]:
            with pytest.raises(ValueError, match=error):
                await rm.set_rule(s, "waitlist_offer", **kwargs)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="negative offset"):
            await rm.set_rule(s, "dose_due", offset=-1)
        with pytest.raises(ValueError, match="within"):
            await rm.set_rule(s, "appointment_eve", offset=400)
        with pytest.raises(ValueError, match="unknown kind"):
            await rm.set_rule(s, "nope", offset=1)
        rule = await rm.set_rule(s, "dose_due", texts={"vi": "Mũi {dose}"})
        assert rule.texts == {"vi": "Mũi {dose}"}
        rule = await rm.set_rule(s, "dose_due", texts={"vi": None})
        assert rule.texts == {}


async def test_reminders_go_to_whoever_holds_the_health_book(sample: Harness) -> None:
    account_id, book_id = await person(sample, 9)
    booking_id = await book(sample, book_id, THURSDAY)
    found = await rows(sample, booking_id=booking_id)
    assert {(r.account_id, r.health_book_id) for r in found} == {(account_id, book_id)}


async def test_a_dose_given_or_not_and_a_missed_booking_cancel_the_reminders(
    sample: Harness,
) -> None:
    sample.clock.current = local(sample, dt.date(2026, 11, 25), 5)  # before today's session
    _, given = await person(sample, 11)
    _, refused = await person(sample, 12)
    _, missed = await person(sample, 13)
    today = [await book(sample, b, dt.date(2026, 11, 25)) for b in (given, refused)]
    later = await book(sample, missed, THURSDAY)
    for booking_id in today:  # only the morning one: the evening before is past
        [row] = await rows(sample, booking_id=booking_id)
        assert (row.kind, row.status) == ("appointment_morning", "pending")
    sample.clock.current = local(sample, dt.date(2026, 11, 25), 7, 40)
    async with sample.session() as s, s.begin():
        nurse = Account(channel="telegram", external_id="8080", role="admin", locale="vi")
        s.add(nurse)
        await s.flush()
        for booking_id in today:
            code = (await bk.load_booking(s, booking_id)).code
            await ci.check_in(s, nurse, code, sample.clock())
        await ci.record_dose(s, nurse, today[0], "pfizer", "FP1", sample.clock(),
                             timing=timing(sample.services))
        await ci.record_not_vaccinated(s, nurse, today[1], "Sốt", sample.clock())
    assert [(r.status, r.error) for r in await rows(sample, booking_id=today[0])] == [
        ("cancelled", "vaccinated")
    ]
    assert [(r.status, r.error) for r in await rows(sample, booking_id=today[1])] == [
        ("cancelled", "not vaccinated")
    ]
    # the next dose: due on its first day at 08:00, and again a week later
    dose = {r.kind: r for r in await rows(sample, health_book_id=given) if r.booking_id is None}
    assert due(dose["dose_due"]) == local(sample, dt.date(2026, 12, 16), 8)
    assert due(dose["dose_due_again"]) == local(sample, dt.date(2026, 12, 23), 8)
    assert dose["dose_due"].params["dose"] == 2
    # Thursday's booking never checked in: missed on Friday, its reminders cancelled
    sample.clock.current = local(sample, dt.date(2026, 11, 27), 9)
    async with sample.session() as s, s.begin():
        assert await bk.expire_bookings(s, sample.services.today()) == 1
    assert {(r.status, r.error) for r in await rows(sample, booking_id=later)} == {
        ("cancelled", "missed")
    }
