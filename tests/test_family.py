"""Families (/family), end to end through the real application on Telegram and Zalo: a resident
adds two relatives (an adult, with the relative's agreement confirmed; a child, with the parent's
or guardian's confirmation stored), books a place for one and gets its reminder; a relative takes
their record over with a one-time code (/join), after which the former holder can neither see nor
act on it; forged and stale choices naming another family's relative are refused; bad input (the
holder's own ID, a relative twice, a relation loop, unknown/expired/used codes) changes nothing.
Domain tests of models/family.py on every database (a volunteer's hand-over too)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import func, select

from models import audit
from models import family as fam
from models import healthbook as hb
from models import validators as v
from models.campaigns import SAMPLE_WARD, sample_book
from models.errors import DomainError
from models.tables import (
    Account,
    Assist,
    AuditEntry,
    Booking,
    HandoverCode,
    HealthBook,
    OutboxMessage,
    VolunteerWard,
)
from tests.conftest import ChatHarness
from tests.flows import Person, agree, channel_of, question, resident, send_due, t

LANG = "vi"
HOLDER_ID = "010090001234"  # resident(…, "001234"): a man born in 1990
FATHER = ("Lò Văn Chính", "2/9/1965", "male", "010065004321")
CHILD = ("Lò Thị Mai", "1/6/2018", "female", None)


def tt(key: str, **params: object) -> str:
    return t(LANG, key, **params)


def rel(relation: str) -> str:
    return tt(f"relation.{relation}")


def said(person: Person) -> str:
    """Everything the bot said in its last answer (Telegram: the messages since the last
    action; Zalo: its answer), with Telegram's toasts."""
    text = person.last_answer or ""
    if channel_of(person) == "telegram":
        text += "\n" + "\n".join(person.callback_answers[-1:])
    return text


async def add_relative(
    h: ChatHarness, person: Person, relation: str, who: tuple[str, str, str, str | None]
) -> None:
    """/family → Add a relative → the relation → the consent on their behalf → the questions,
    up to the review (the ID number as given)."""
    await person.send("/family")
    await person.press(tt("family.button.add"))
    assert tt("family.ask.relation") in person.last_text
    await person.press(rel(relation))
    kind = "guardian" if relation == "child" else "relative"
    version = h.services.settings.bot.consent_version
    assert question(person.last_text) == tt(
        f"family.consent.{kind}", relation=rel(relation), version=version
    )
    await person.press(tt(f"family.button.consent_{kind}"))
    first = tt("subject.relative", relation=rel(relation), name="…")
    assert first in person.last_text and tt("ask.full_name") in person.last_text
    name, born, gender, ident = who
    await person.send(name)
    assert tt("subject.relative", relation=rel(relation), name=name) in person.last_text
    await person.send(born)
    await person.press(tt(f"gender.{gender}"))
    assert tt("ask.id_number") in person.last_text
    if ident is not None:
        await person.send(ident)
    else:
        await person.press(tt("button.no_id_other"))
    await rest_of_the_book(person)


async def rest_of_the_book(person: Person) -> None:
    """From the phone to the review."""
    await person.send(tt("button.no_phone_other"))
    await person.press(tt("button.skip"))
    await person.send("hmong")
    await person.press(tt("occupation.farmer"))
    await person.press(tt("priority.none"))
    await person.press("Lào Cai")
    await person.send("sa pa")
    await person.press(tt("button.skip"))
    for _ in range(30):
        text = person.last_text or ""
        confirm = {tt("family.button.consent_guardian"), tt("family.button.consent_relative")}
        if tt("review.title") in text or confirm & set(person.buttons):
            return
        if tt("ask.allergies") in text or tt("ask.chronic_conditions") in text:
            await person.press(tt("button.not_sure"))
        else:
            await person.press(tt("button.no"))
    raise AssertionError(person.last_text)


async def account_of(h: ChatHarness, person: Person) -> Account:
    async with h.session() as s:
        account = await hb.find_account(s, channel_of(person), str(person.user.id))
        assert account is not None
        return account


async def books_of(h: ChatHarness, account_id: int) -> list[HealthBook]:
    async with h.session() as s:
        rows = await s.scalars(
            select(HealthBook).where(HealthBook.account_id == account_id).order_by(HealthBook.id)
        )
        return list(rows)


async def audit_actions(h: ChatHarness, book_id: int) -> list[tuple[str, str]]:
    async with h.session() as s:
        rows = await s.scalars(
            select(AuditEntry).where(AuditEntry.health_book_id == book_id).order_by(AuditEntry.id)
        )
        return [(e.action, e.actor_role) for e in rows]


async def handover_code(person: Person, name: str) -> str:
    """The holder opens the relative's book and makes its hand-over code."""
    await person.send("/family")
    await person.press(f"{FATHER_REL}: {name}")
    await person.press(tt("family.button.handover"))
    found = re.search(r"GD-[A-Z0-9]{4}-[A-Z0-9]{4}", person.last_text or "")
    assert found is not None, person.last_text
    return found.group(0)


FATHER_REL = rel("father")


async def book_for(holder: Person) -> None:
    """From a relative's choices: Book a place, the first place at Sa Pa."""
    await holder.press(tt("family.button.booking"))
    await holder.press("COVID-19")
    await holder.press("Sa Pa")
    await holder.press(holder.buttons[0])
    await holder.press(holder.buttons[0])
    await holder.press(tt("book.button_confirm"))


async def pending_reminders(h: ChatHarness, book_id: int) -> list[OutboxMessage]:
    async with h.session() as s:
        rows = await s.scalars(
            select(OutboxMessage).where(
                OutboxMessage.health_book_id == book_id, OutboxMessage.status == "pending"
            )
        )
        return list(rows)


# ---------------------------------------------------------------- the resident's family


@pytest.mark.zalo_sqlite_only
async def test_a_resident_adds_two_relatives_books_for_one_and_gets_the_reminder(
    chat_sample: ChatHarness,
) -> None:
    h = chat_sample
    holder = await resident(h, "001234")
    await holder.send("/family")
    assert tt("family.empty") in holder.last_text
    account = await account_of(h, holder)
    await add_relative(h, holder, "father", FATHER)  # type: ignore[arg-type]
    assert tt("review.title") in holder.last_text
    await holder.press(tt("button.save_other"))
    assert tt("family.saved.new", name=FATHER[0], relation=FATHER_REL) in holder.last_text
    assert tt("family.button.booking") in holder.buttons
    # the child: the parent's or guardian's confirmation, stored
    await add_relative(h, holder, "child", CHILD)
    await holder.press(tt("button.save_other"))
    assert tt("family.saved.new", name=CHILD[0], relation=rel("child")) in holder.last_text
    own, father, child = await books_of(h, account.id)
    assert (own.relation, father.relation, child.relation) == ("self", "father", "child")
    assert (father.consent_kind, child.consent_kind) == ("relative", "guardian")
    assert father.registered_by == child.registered_by == account.id
    assert father.consent_by == account.id and child.consent_at is not None
    assert await audit_actions(h, child.id) == [("created", "relative")]
    # /family lists both, with their choices
    await holder.send("/family")
    assert f"• {FATHER_REL}: {FATHER[0]}, ngày sinh 02/09/1965" in holder.last_text
    assert f"• {rel('child')}: {CHILD[0]}, ngày sinh 01/06/2018" in holder.last_text
    await holder.press(f"{rel('child')}: {CHILD[0]}")
    assert tt("family.book.title", name=CHILD[0], relation=rel("child")) in holder.last_text
    for label in ("edit", "booking", "remove", "list"):
        assert tt(f"family.button.{label}") in holder.buttons
    # a child's book stays with the parent: no hand-over offered (under 16)
    assert tt("family.button.handover") not in holder.buttons
    # book a place for the father (the booking conversation, "bk:for:ID")
    await holder.press(tt("family.button.list"))
    await holder.press(f"{FATHER_REL}: {FATHER[0]}")
    await book_for(holder)
    async with h.session() as s:
        [booking] = (await s.scalars(select(Booking).where(Booking.status == "booked"))).all()
        rows = list(
            await s.scalars(select(OutboxMessage).where(OutboxMessage.booking_id == booking.id))
        )
    assert booking.health_book_id == father.id
    assert rows and {r.account_id for r in rows} == {account.id}  # to the holder
    first = min(rows, key=lambda r: r.due_at)
    h.clock.advance(seconds=(first.due_at.replace(tzinfo=dt.UTC) - h.clock()).total_seconds())
    before = len(h.api.messages(holder.user.id))
    await send_due(h)
    reminders = h.api.messages(holder.user.id)[before:]
    assert any(booking.code in (m.get("text") or "") for m in reminders)
    # the father's ticket, from his choices
    await holder.send("/family")
    await holder.press(f"{FATHER_REL}: {FATHER[0]}")
    shown = sum(booking.code in x for x in holder.texts)
    await holder.press(tt("family.button.ticket"))
    assert sum(booking.code in x for x in holder.texts) > shown


async def test_own_id_a_relative_twice_and_a_loop_change_nothing(chat_sample: ChatHarness) -> None:
    h = chat_sample
    holder = await resident(h, "001234")
    account = await account_of(h, holder)
    # the holder's own ID number for a brother born the same year: refused, the same question,
    # nothing kept
    await holder.send("/family")
    await holder.press(tt("family.button.add"))
    await holder.press(rel("other"))
    await holder.press(tt("family.button.consent_relative"))
    await holder.send("Lò Văn Sáng")
    await holder.send("1/1/1990")
    await holder.press(tt("gender.male"))
    await holder.send(HOLDER_ID)
    assert tt("family.error.self") in said(holder)
    assert tt("ask.id_number") in holder.last_text
    async with h.session() as s:
        draft = await hb.get_draft(s, account)
        assert draft is not None and "id_number" not in draft.answers
    # his own: fine
    await holder.send("010090004444")
    assert t(LANG, "ask.phone_other", channel_of(holder)) in (holder.last_answer or "")
    await rest_of_the_book(holder)
    await holder.press(tt("button.save_other"))
    await add_relative(h, holder, "father", FATHER)  # type: ignore[arg-type]
    await holder.press(tt("button.save_other"))
    # the same father again, without an ID number: already in the family
    await holder.send("/family")
    await holder.press(tt("family.button.add"))
    await holder.press(rel("other"))
    await holder.press(tt("family.button.consent_relative"))
    await holder.send(FATHER[0].upper())
    await holder.send("02/09/1965")
    await holder.press(tt("gender.male"))
    await holder.press(tt("button.no_id_other"))
    assert tt("family.error.twice", name=FATHER[0], relation=FATHER_REL) in said(holder)
    assert tt("ask.id_number") in holder.last_text
    # his ID number: the same answer
    await holder.send(FATHER[3])
    assert tt("family.error.twice", name=FATHER[0], relation=FATHER_REL) in said(holder)
    assert len(await books_of(h, account.id)) == 3
    # the unfinished one is offered from /family (continue), and goes on where it was
    await holder.send("/family")
    assert any(tt("family.button.continue", who=f"{rel('other')}: ") in b for b in holder.buttons)
    # a loop: someone who keeps the holder's own book in their family, added as a relative
    async with h.session() as s, s.begin():
        keeper = await hb.ensure_account(s, channel_of(holder), "keeper-1")
        s.add(
            sample_book(
                keeper.id,
                full_name="Lò Thị Dung",
                id_number="010185007777",
                date_of_birth=dt.date(1985, 7, 7),
            )
        )
        s.add(
            sample_book(
                keeper.id,
                relation="child",
                full_name="Lò Văn Páo",
                date_of_birth=dt.date(1990, 3, 15),
                gender="male",
            )
        )
    await holder.press(tt("family.button.add"))
    await holder.press(rel("mother"))
    await holder.press(tt("family.button.consent_relative"))
    await holder.send("Lò Thị Dung")
    await holder.send("7/7/1985")
    await holder.press(tt("gender.female"))
    await holder.send("010185007777")
    assert tt("family.error.loop") in said(holder)
    assert tt("ask.id_number") in holder.last_text
    await holder.press(tt("button.no_id_other"))  # the loop again, by name and date of birth
    assert tt("family.error.loop") in said(holder)
    # an ID number registered elsewhere: that it is, not where nor when (a resident is no
    # volunteer: an ID number would tell them where its person lives)
    async with h.session() as s, s.begin():
        other = await hb.ensure_account(s, channel_of(holder), "neighbour-1")
        s.add(sample_book(other.id, id_number="010185008888"))
    await holder.send("010185008888")
    assert tt("family.error.id_registered") in said(holder)
    assert v.ward_name(SAMPLE_WARD) not in said(holder) and "Lò Thị Mai" not in said(holder)
    assert tt("ask.id_number") in holder.last_text
    assert len(await books_of(h, account.id)) == 3
    # both unfinished ones are offered from /family; the one set aside goes on where it was
    await holder.send("/family")
    mother = tt("family.button.continue", who=f"{rel('mother')}: Lò Thị Dung")
    brother = tt("family.button.continue", who=f"{rel('other')}: {FATHER[0]}")
    assert {mother, brother} <= set(holder.buttons), holder.buttons
    await holder.press(brother)
    assert tt("resume.welcome_back") in said(holder)
    assert tt("subject.relative", relation=rel("other"), name=FATHER[0]) in (holder.last_text)
    assert tt("ask.id_number") in holder.last_text
    async with h.session() as s:
        [parked] = await hb.parked_drafts(s, account)
        assert parked.relation == "mother" and parked.answers["full_name"] == "Lò Thị Dung"


async def test_an_other_relative_who_is_a_minor_needs_the_guardian(
    chat_sample: ChatHarness,
) -> None:
    h = chat_sample
    holder = await resident(h, "001234")
    await add_relative(h, holder, "other", ("Lò Văn Tú", "3/3/2015", "male", None))
    assert "91/2025" in holder.last_text and tt("button.save_other") not in holder.buttons
    account = await account_of(h, holder)
    if h.channel == "telegram":  # a forged Save without the confirmation: nothing saved
        await holder.press_data("hb:review:save")
        assert tt("family.error.consent") in said(holder)
        assert len(await books_of(h, account.id)) == 1
        await holder.send("/start")
        assert "91/2025" in holder.last_text
    await holder.press(tt("family.button.consent_guardian"))
    assert tt("review.title") in holder.last_text
    await holder.press(tt("button.save_other"))
    _, nephew = await books_of(h, account.id)
    assert (nephew.relation, nephew.consent_kind) == ("other", "guardian")
    # a "child" who is an adult: their own agreement, confirmed instead of the guardian's
    await add_relative(h, holder, "child", ("Lò Văn Lực", "3/3/2000", "male", None))
    assert (
        tt(
            "family.review.agreed",
            name="Lò Văn Lực",
            born="03/03/2000",
            version=(h.services.settings.bot.consent_version),
        )
        in holder.last_text
    )
    await holder.press(tt("family.button.consent_relative"))
    await holder.press(tt("button.save_other"))
    _, _, son = await books_of(h, account.id)
    assert (son.relation, son.consent_kind) == ("child", "relative")


# ---------------------------------------------------------------- hand-over


async def _holder_with_father(h: ChatHarness) -> tuple[Person, Account, HealthBook]:
    holder = await resident(h, "001234")
    await add_relative(h, holder, "father", FATHER)  # type: ignore[arg-type]
    await holder.press(tt("button.save_other"))
    account = await account_of(h, holder)
    _, father = await books_of(h, account.id)
    return holder, account, father


@pytest.mark.zalo_sqlite_only
async def test_a_relative_takes_over_their_book_and_the_holder_loses_it(
    chat_sample: ChatHarness,
) -> None:
    h = chat_sample
    holder, account, father = await _holder_with_father(h)
    await holder.send("/family")
    await holder.press(f"{FATHER_REL}: {FATHER[0]}")
    await book_for(holder)
    planned = await pending_reminders(h, father.id)
    assert planned and {r.account_id for r in planned} == {account.id}
    code = await handover_code(holder, FATHER[0])
    assert ("handover_code", "relative") in await audit_actions(h, father.id)
    # the holder opens the father's book again: these choices will be stale
    await holder.press(tt("family.button.list"))
    await holder.press(f"{FATHER_REL}: {FATHER[0]}")
    # the father, on his own account: the consent first, then the book is his
    dad = h.user()
    await dad.send(f"/join {code.lower().replace('-', ' ')}")
    assert tt("family.join.consent_first", name=FATHER[0]) in dad.last_text
    await dad.press(tt("button.agree"))
    assert tt("family.join.done", name=FATHER[0]) in said(dad)
    notice = tt("family.handover.notice", name=FATHER[0])
    assert any(notice in x for x in holder.texts)
    dad_account = await account_of(h, dad)
    [book] = await books_of(h, dad_account.id)
    assert (book.id, book.relation, book.consent_kind) == (father.id, "self", "own")
    assert len(await books_of(h, account.id)) == 1
    assert await audit_actions(h, father.id) == [
        ("created", "relative"),
        ("booked", "relative"),
        ("handover_code", "relative"),
        ("handed_over", "relative"),
    ]
    await dad.send("/profile")
    assert FATHER[0] in dad.last_text
    # his reminders go to him now, not to the former holder
    moved = await pending_reminders(h, father.id)
    assert {r.id for r in moved} == {r.id for r in planned}
    assert {r.account_id for r in moved} == {dad_account.id}
    first = min(moved, key=lambda r: r.due_at)
    h.clock.advance(seconds=(first.due_at.replace(tzinfo=dt.UTC) - h.clock()).total_seconds())
    holder_had = len(h.api.messages(holder.user.id))
    dad_had = len(h.api.messages(dad.user.id))
    await send_due(h)
    assert len(h.api.messages(dad.user.id)) > dad_had
    assert len(h.api.messages(holder.user.id)) == holder_had
    # the former holder: not listed, and the old choices are refused
    for label in ("remove", "edit", "handover"):
        await holder.press(tt(f"family.button.{label}"))
        assert tt("access.denied") in said(holder)
    await holder.send("/family")
    assert FATHER[0] not in holder.last_text
    async with h.session() as s:
        assert await s.scalar(select(func.count()).select_from(HandoverCode)) == 0
    # the code is used up: refused for anyone else, and nothing changes
    other = h.user()
    await other.send(f"/join {code}")
    assert tt("invite.unknown") in said(other)
    [book] = await books_of(h, dad_account.id)
    assert book.id == father.id


async def test_hand_over_codes_refused_when_expired_unknown_or_to_someone_with_a_book(
    chat_sample: ChatHarness,
) -> None:
    h = chat_sample
    holder, account, father = await _holder_with_father(h)
    code = await handover_code(holder, FATHER[0])
    # its maker cannot use it
    await holder.send(f"/join {code}")
    assert tt("family.join.own_code") in said(holder)
    # someone with a health book of their own: refused, nothing destructive offered
    neighbour = await resident(h, "005555")
    await neighbour.send(f"/join {code}")
    assert tt("family.join.has_book") in said(neighbour)
    # unknown
    stranger = h.user()
    await stranger.send("/join GD-AAAA-BBBB")
    assert tt("invite.unknown") in said(stranger)
    # expired after 48 hours
    h.clock.advance(hours=48, minutes=1)
    await stranger.send(f"/join {code}")
    assert tt("family.join.expired") in said(stranger)
    assert [b.id for b in await books_of(h, account.id)][1:] == [father.id]
    assert await books_of(h, (await account_of(h, neighbour)).id) != []


async def test_another_familys_relative_is_refused_in_every_choice(
    chat_sample: ChatHarness,
) -> None:
    h = chat_sample
    holder, account, father = await _holder_with_father(h)
    intruder = await resident(h, "009999")
    for data in (
        f"fam:book:{father.id}",
        f"fam:edit:{father.id}",
        f"fam:handover:{father.id}",
        f"fam:remove:{father.id}",
        f"fam:del:{father.id}",
    ):
        if h.channel == "zalo":
            break  # no callback data to forge on Zalo (stale numbered choices: see above)
        await intruder.press_data(data)
        assert tt("access.denied") in said(intruder), data
    intruder_account = await account_of(h, intruder)
    assert [b.relation for b in await books_of(h, intruder_account.id)] == ["self"]
    [_, still] = await books_of(h, account.id)
    assert still.id == father.id and still.full_name == FATHER[0]
    async with h.session() as s:
        assert await s.scalar(select(func.count()).select_from(HandoverCode)) == 0
        draft = await hb.get_draft(s, intruder_account)
        assert draft is None
    # the holder removes their father: asked first, then gone (audited)
    await holder.send("/family")
    await holder.press(f"{FATHER_REL}: {FATHER[0]}")
    await holder.press(tt("family.button.remove"))
    assert tt("family.remove.confirm", name=FATHER[0], relation=FATHER_REL) in holder.last_text
    await holder.press(tt("family.button.remove_yes"))
    assert tt("family.removed", name=FATHER[0]) in said(holder)
    assert len(await books_of(h, account.id)) == 1
    assert ("deleted", "relative") in await audit_actions(h, father.id)


# ---------------------------------------------------------------- the domain


async def test_a_volunteer_hands_a_resident_their_book(db_url: str) -> None:
    from bot.db import create_engine, session_factory, transaction, upgrade

    engine = create_engine(db_url)
    await upgrade(engine)
    sessions = session_factory(engine)
    now = dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.UTC)
    try:
        async with transaction(sessions) as s:
            volunteer = await hb.ensure_account(s, "telegram", "501")
            resident_ = await hb.ensure_account(s, "zalo", "z-502")
            s.add(VolunteerWard(account_id=volunteer.id, ward_code=SAMPLE_WARD, province_code=10))
            book = sample_book(None, relation="assisted", consent_kind="verbal")  # type: ignore[arg-type]
            s.add(book)
            await s.flush()
            s.add(Assist(health_book_id=book.id, account_id=volunteer.id))
            s.add(
                OutboxMessage(
                    kind="dose_due",
                    account_id=volunteer.id,
                    health_book_id=book.id,
                    due_at=now,
                    params={},
                )
            )
            await s.flush()
            with pytest.raises(DomainError) as refused:
                await fam.create_handover(s, resident_, book.id, now)
            assert refused.value.key == "access.denied"
            code = await fam.create_handover(s, volunteer, book.id, now)
            assert fam.normalize_handover(fam.format_handover(code).lower()) == code
            assert await s.get(HandoverCode, code) is None  # only its hash is kept
            with pytest.raises(DomainError) as no_consent:
                await fam.claim_handover(s, resident_, code, now)
            assert no_consent.value.key == "family.join.consent"
            await hb.give_consent(s, resident_, "v1")
            done = await fam.claim_handover(s, resident_, code, now)
            assert done.capacity == "volunteer" and done.previous is not None
            assert done.previous.id == volunteer.id
            book_id = book.id
        async with transaction(sessions) as s:
            book = await s.get(HealthBook, book_id)
            assert book is not None
            assert (book.account_id, book.relation, book.consent_kind) == (
                resident_.id,
                "self",
                "own",
            )
            assert await s.scalar(select(func.count()).select_from(Assist)) == 0
            [row] = (await s.scalars(select(OutboxMessage))).all()
            assert row.account_id == resident_.id
            entries = [(e.action, e.actor_role, e.fields) for e in await audit.of_book(s, book_id)]
            assert entries == [("handed_over", "volunteer", []), ("handover_code", "volunteer", [])]
            with pytest.raises(DomainError) as used:
                await fam.claim_handover(s, resident_, code, now)
            assert used.value.key == "family.join.unknown"
    finally:
        await engine.dispose()


def test_codes_and_ages() -> None:
    assert fam.normalize_handover("gd-ab3k-7pqr") == "GDAB3K7PQR"
    assert fam.normalize_handover("GD AB3K 7PQ0") is None  # 0 is not in the alphabet
    assert fam.normalize_handover("48271 93051") is None  # an invite code
    today = dt.date(2026, 11, 25)
    assert fam.is_minor("2008-11-26", today) is True
    assert fam.is_minor("2008-11-25", today) is False
    assert fam.is_minor(None, today) is None


async def test_a_grandchild_without_a_book_registers_a_grandmother_and_edits_it(
    chat_sample: ChatHarness,
) -> None:
    """Someone with no health book of their own may keep a relative's (a grandchild helping a
    grandmother): their own agreement to the terms is recorded with the confirmation."""
    h = chat_sample
    grandchild = h.user()
    grandma = ("Vàng Thị Sua", "5/5/1948", "female", None)
    await add_relative(h, grandchild, "other", grandma)
    await grandchild.press(tt("button.save_other"))
    assert tt("family.saved.new", name=grandma[0], relation=rel("other")) in said(grandchild)
    account = await account_of(h, grandchild)
    [book] = await books_of(h, account.id)
    assert (book.relation, book.consent_kind) == ("other", "relative")
    async with h.session() as s:
        assert await hb.latest_consent(s, account) is not None
        assert await hb.own_book(s, account) is None
    # edit: the review of that book, one field, saved; audited with the field's name only
    await grandchild.send("/family")
    await grandchild.press(f"{rel('other')}: {grandma[0]}")
    await grandchild.press(tt("family.button.edit"))
    assert tt("review.title") in grandchild.last_text
    await grandchild.press(tt("button.edit_field", field=tt("field.full_name")))
    await grandchild.send("Vàng Thị Súa")
    assert tt("review.title") in grandchild.last_text
    await grandchild.press(tt("button.save_other"))
    assert tt("family.saved.updated", name="Vàng Thị Súa", relation=rel("other")) in said(
        grandchild
    )
    assert await audit_actions(h, book.id) == [("created", "relative"), ("edited", "relative")]
    async with h.session() as s:
        entry = await s.scalar(select(AuditEntry).where(AuditEntry.action == "edited"))
        assert entry is not None and entry.fields == ["full_name"]
    # their own book is still theirs to begin
    await grandchild.send("/start")
    assert tt("start.has_book") not in (grandchild.last_answer or "")


async def test_join_in_the_middle_of_ones_own_registration(chat_sample: ChatHarness) -> None:
    """The relative had begun registering themselves when given the code: /join works there
    too, and their book (the one taken over) replaces what they had begun."""
    h = chat_sample
    holder, _, father = await _holder_with_father(h)
    code = await handover_code(holder, FATHER[0])
    dad = h.user()
    await agree(dad)
    await dad.send(FATHER[0])
    await dad.send("/join")
    assert tt("family.join.with_code") in said(dad) and tt("ask.date_of_birth") in dad.last_text
    await dad.send(f"/join {code}")
    assert tt("family.join.done", name=FATHER[0]) in said(dad)
    dad_account = await account_of(h, dad)
    [book] = await books_of(h, dad_account.id)
    assert book.id == father.id
    async with h.session() as s:
        assert await hb.get_draft(s, dad_account) is None
    await dad.send("/start")
    assert tt("start.has_book") in said(dad)
