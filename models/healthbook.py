"""Domain functions of the health book: accounts, consent, drafts, saving, export and erasure.

No Telegram here: the same functions serve the Telegram handlers, a Zalo channel and the CLI.
The caller owns the transaction: nothing in this module commits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from models import validators as v
from models.addresses import Address
from models.errors import DomainError, InvalidAnswer
from models.schemas import HealthBookIn, validate_book
from models.tables import (
    BOOKING_ACTIVE,
    Account,
    Agency,
    AgencyHead,
    AgencyMember,
    Assist,
    AuditEntry,
    Booking,
    BookingDraft,
    Broadcast,
    Campaign,
    ChatOffer,
    Consent,
    ConversationState,
    Draft,
    HealthBook,
    InboxEvent,
    OutboxMessage,
    ParkedDraft,
    Reaction,
    Session,
    Site,
    StaffSite,
    Vaccination,
    Vaccine,
    VolunteerWard,
    WaitlistEntry,
    utcnow,
)
from models.timeutil import LOCAL_TZ, as_aware, to_utc

# The questions, in the order they are asked; a draft is complete when all are answered.
FIELDS: tuple[str, ...] = (
    "full_name",
    "date_of_birth",
    "gender",
    "id_number",
    "phone",
    "bhyt",
    "ethnicity",
    "occupation",
    "priority_group",
    "province",
    "ward",
    "address_line",
    "screening",
    "allergies",
    "chronic_conditions",
)
# Changing a field makes these later answers meaningless: they are asked again.
DEPENDENTS: dict[str, tuple[str, ...]] = {"province": ("ward",)}
# Free-text answers that say "which ones" for screening items (``detail`` in screening.toml).
DETAILS: tuple[str, ...] = ("allergies", "chronic_conditions")


async def find_account(
    session: AsyncSession, channel: str, external_id: str, *, with_draft: bool = False
) -> Account | None:
    """The account holding a channel user's data, if they ever gave consent or chose a
    language: their own, or the one it was joined to with /link (see :mod:`models.accounts`);
    with ``with_draft`` its draft is loaded by the same query (then :func:`get_draft` is free)."""
    found = await find_person(session, channel, external_id, with_draft=with_draft)
    return found[0] if found is not None else None


# built once: this runs for every update (one query for the person, their account and draft)
_OWN = aliased(Account, name="own")
_PERSON = (
    select(Account, _OWN)
    .select_from(_OWN)
    .join(Account, Account.id == func.coalesce(_OWN.linked_to, _OWN.id))
    .where(_OWN.channel == bindparam("channel"), _OWN.external_id == bindparam("external_id"))
)
_PERSON_AND_DRAFT = _PERSON.add_columns(Draft).outerjoin(Draft, Draft.account_id == Account.id)


async def find_person(
    session: AsyncSession, channel: str, external_id: str, *, with_draft: bool = False
) -> tuple[Account, Account] | None:
    """A channel user's primary account (which holds their data) and their own account on
    this channel (the same object unless it was joined with /link), in one query; with
    ``with_draft`` the primary's draft too."""
    stmt = _PERSON_AND_DRAFT if with_draft else _PERSON
    params = {"channel": channel, "external_id": external_id}
    row = (await session.execute(stmt, params)).first()
    if row is None:
        return None
    if with_draft:
        # held here: the identity map only keeps weak references
        session.info.setdefault("drafts", {})[row[0].id] = row[2]
    return row[0], row[1]


async def ensure_account(
    session: AsyncSession, channel: str, external_id: str, locale: str | None = None
) -> Account:
    """The account of a channel user, created on first need."""
    account = await find_account(session, channel, external_id)
    if account is None:
        account = Account(channel=channel, external_id=external_id, locale=locale)
        session.add(account)
        await session.flush()
    return account


async def reply_address(session: AsyncSession, account: Account) -> Address:
    """Where messages to the person of ``account`` go: the account they used last, or chose
    (accounts joined with /link), else this one."""
    target = account
    if account.reply_via is not None and account.reply_via != account.id:
        target = await session.get(Account, account.reply_via) or account
    return Address(target.channel, target.external_id)


async def give_consent(session: AsyncSession, account: Account, version: str) -> Consent:
    """Record explicit consent to the text of ``version``."""
    consent = Consent(account_id=account.id, version=version)
    session.add(consent)
    await session.flush()
    return consent


async def latest_consent(session: AsyncSession, account: Account) -> Consent | None:
    """The newest consent the account gave, if any."""
    return await session.scalar(
        select(Consent)
        .where(Consent.account_id == account.id)
        .order_by(Consent.given_at.desc(), Consent.id.desc())
        .limit(1)
    )


async def own_book(session: AsyncSession, account: Account) -> HealthBook | None:
    """The account holder's own health book."""
    return await session.scalar(
        select(HealthBook).where(HealthBook.account_id == account.id, HealthBook.relation == "self")
    )


async def get_draft(session: AsyncSession, account: Account) -> Draft | None:
    """The account's draft in progress, if any."""
    known = session.info.get("drafts", {})
    if account.id in known:  # loaded with the account by this session's first query
        draft = known[account.id]
        return None if draft is None or draft in session.deleted else draft
    return await session.get(Draft, account.id)


async def start_draft(
    session: AsyncSession,
    account: Account,
    book: HealthBook | None = None,
    *,
    subject: str = "self",
    relation: str | None = None,
    consent: dict[str, Any] | None = None,
    answers: dict[str, Any] | None = None,
) -> Draft:
    """A new draft: empty, or a copy of a saved book to edit field by field. ``subject``: whose
    book it is (``self``, ``relative`` with its ``relation``, ``assisted``: see
    :mod:`models.custody`); ``consent``: how consent was given for it (``kind``, ``version``,
    ``at``…); ``answers``: answers known already (a volunteer's commune, a quick entry). The
    draft in progress, if it is another person's and has answers, or an edit of another saved
    book with answers changed, is parked first (:func:`park_draft`), never lost."""
    draft = await get_draft(session, account)
    if (
        draft is not None
        and draft.answers
        and (
            await _edit_changed(session, draft, book)
            if draft.book_id is not None
            else draft.subject != subject or draft.relation != relation or subject != "self"
        )
    ):
        await park_draft(session, account)
        draft = None
    if draft is None:
        draft = Draft(account_id=account.id)
        session.add(draft)
        session.info.setdefault("drafts", {})[account.id] = draft
    draft.book_id = book.id if book else None
    draft.answers = answers_of_book(book) if book else dict(answers or {})
    draft.editing = None
    if book is not None:
        subject = (
            "self"
            if book.relation == "self" and book.account_id == account.id
            else ("relative" if book.account_id == account.id else "assisted")
        )
        relation = book.relation if subject == "relative" else None
    draft.subject = subject
    draft.relation = relation
    draft.consent = dict(consent or {})
    await session.flush()
    return draft


async def _edit_changed(session: AsyncSession, draft: Draft, book: HealthBook | None) -> bool:
    """Whether ``draft``, an edit of a saved book, holds answers changed from that book's and
    another registration (than that book's edit) is beginning: then it is parked."""
    if book is not None and book.id == draft.book_id:
        return False  # the same book's edit begun again
    saved = await session.get(HealthBook, draft.book_id)
    return saved is not None and dict(draft.answers or {}) != answers_of_book(saved)


#: registrations set aside kept per account: parking one more drops the oldest
PARKED_MAX = 20
#: a registration set aside this long ago and never taken up again is deleted
PARKED_LIFE = dt.timedelta(days=30)


def _draft_fields(draft: Draft | ParkedDraft) -> dict[str, Any]:
    """What a draft and a registration set aside share (copied: the JSON too)."""
    return {
        "book_id": draft.book_id,
        "subject": draft.subject,
        "relation": draft.relation,
        "consent": dict(draft.consent or {}),
        "answers": dict(draft.answers or {}),
        "editing": draft.editing,
    }


async def park_draft(session: AsyncSession, account: Account) -> ParkedDraft | None:
    """Set the draft in progress aside (as a :class:`ParkedDraft`) so another can begin; at
    most :data:`PARKED_MAX` per account are kept (the oldest goes)."""
    draft = await get_draft(session, account)
    if draft is None:
        return None
    parked = ParkedDraft(
        account_id=account.id,
        **_draft_fields(draft),
        # drafts.updated_at is a plain column (naive on SQLite); parked_drafts' is UTC-aware
        updated_at=as_aware(draft.updated_at) if draft.updated_at else utcnow(),
    )
    session.add(parked)
    await session.delete(draft)
    session.info.get("drafts", {}).pop(account.id, None)
    await session.flush()
    kept = (
        select(ParkedDraft.id)
        .where(ParkedDraft.account_id == account.id)
        .order_by(ParkedDraft.updated_at.desc(), ParkedDraft.id.desc())
        .limit(PARKED_MAX)
    )
    await session.execute(
        delete(ParkedDraft)
        .where(ParkedDraft.account_id == account.id, ParkedDraft.id.not_in(kept))
        .execution_options(synchronize_session=False)
    )
    return parked


async def purge_parked(session: AsyncSession, now: dt.datetime) -> int:
    """Delete the registrations set aside more than :data:`PARKED_LIFE` ago (hourly, with
    the handled updates: bot/app.py); how many."""
    done = await session.execute(
        delete(ParkedDraft)
        .where(ParkedDraft.updated_at < to_utc(now) - PARKED_LIFE)
        .execution_options(synchronize_session=False)
    )
    return int(done.rowcount or 0)  # type: ignore[attr-defined]


async def parked_drafts(session: AsyncSession, account: Account) -> list[ParkedDraft]:
    """The account's parked drafts, most recent first."""
    rows = await session.scalars(
        select(ParkedDraft)
        .where(ParkedDraft.account_id == account.id)
        .order_by(ParkedDraft.updated_at.desc(), ParkedDraft.id.desc())
    )
    return list(rows)


async def resume_parked(session: AsyncSession, account: Account, parked_id: int) -> Draft | None:
    """Make a parked draft of this account the draft in progress again (the current one is
    parked in its place); None when there is no such parked draft of theirs (ids may be forged)."""
    parked = await session.get(ParkedDraft, parked_id)
    if parked is None or parked.account_id != account.id:
        return None
    current = await get_draft(session, account)
    if current is not None and current.answers:
        await park_draft(session, account)
    elif current is not None:
        await session.delete(current)
        session.info.get("drafts", {}).pop(account.id, None)
        await session.flush()
    draft = Draft(account_id=account.id, **_draft_fields(parked))
    session.add(draft)
    session.info.setdefault("drafts", {})[account.id] = draft
    await session.delete(parked)
    await session.flush()
    return draft


def next_field(draft: Draft) -> str | None:
    """The question to ask now: the one being edited, else the first unanswered, else None."""
    if draft.editing:
        return draft.editing
    answers = draft.answers or {}
    for field in FIELDS:
        if field in DETAILS and detail_needed(answers, field) is False:
            continue  # "no" to every related screening item says it: nothing to ask
        if field not in answers:
            return field
        if field == "screening" and next_screening_item(draft) is not None:
            return field
    return None


def _age(answers: dict[str, Any]) -> int | None:
    raw = answers.get("date_of_birth")
    try:
        return v.age_on(dt.date.fromisoformat(raw), dt.datetime.now(LOCAL_TZ).date())
    except (TypeError, ValueError):
        return None


def screening_asked(answers: dict[str, Any]) -> list[v.ScreeningItem]:
    """The health-declaration items asked of this person, in order (``applies_to``)."""
    gender, age = answers.get("gender"), _age(answers)
    return [item for item in v.screening_items() if item.applies(gender=gender, age=age)]


def next_screening_item(draft: Draft) -> v.ScreeningItem | None:
    """The first health-declaration item not yet answered."""
    answers = draft.answers or {}
    given = answers.get("screening") or {}
    for item in screening_asked(answers):
        if item.code not in given:
            return item
    return None


def detail_needed(answers: dict[str, Any], field: str) -> bool | None:
    """Whether the free-text ``field`` is asked: True when a related screening item was answered
    "yes" or "don't know", False when all were "no" (or do not apply), None while unanswered."""
    given = answers.get("screening") or {}
    related = [i.code for i in v.screening_items() if i.detail == field]
    if not related or any(code not in given for code in related):
        return None
    return any(given[code] in (v.Answer.YES, v.Answer.UNKNOWN) for code in related)


def editable_fields(answers: dict[str, Any]) -> list[str]:
    """The fields the review offers to edit: a detail the screening rules out is not one."""
    return [f for f in FIELDS if not (f in DETAILS and detail_needed(answers, f) is False)]


def _settle(answers: dict[str, Any]) -> None:
    """Keep answers consistent: items that do not apply are "not applicable" (and asked again
    when they come to apply), and a detail every related item answered "no" to is none."""
    if "screening" in answers:
        screening = dict(answers["screening"] or {})
        asked = {item.code for item in screening_asked(answers)}
        for item in v.screening_items():
            if item.code not in asked:
                screening[item.code] = str(v.Answer.NOT_APPLICABLE)
            elif screening.get(item.code) == v.Answer.NOT_APPLICABLE:
                del screening[item.code]
        answers["screening"] = screening
    for field in DETAILS:
        if detail_needed(answers, field) is False:
            answers[field] = None


def set_answer(draft: Draft, field: str, value: Any) -> None:
    """Store one accepted answer (JSON-safe); answers that depended on it are asked again."""
    if field not in FIELDS:
        raise ValueError(f"unknown field {field!r}")
    answers = dict(draft.answers or {})
    answers[field] = _jsonable(value)
    for dependent in DEPENDENTS.get(field, ()):
        answers.pop(dependent, None)
    if field in ("date_of_birth", "gender"):
        _recheck_id(answers)
        _settle(answers)
    draft.answers = answers  # a new dict, so SQLAlchemy sees the change
    draft.editing = None


def set_screening_answer(draft: Draft, item: str, answer: v.Answer) -> None:
    """Store one health-declaration answer; its detail ("which ones?") is asked again when the
    answer calls for it and was none, and becomes none when every related answer is "no"."""
    items = {i.code: i for i in screening_asked(draft.answers or {})}
    if item not in items or answer is v.Answer.NOT_APPLICABLE:
        raise InvalidAnswer("error.choice.unknown")
    answers = dict(draft.answers or {})
    screening = dict(answers.get("screening") or {})
    screening[item] = str(answer)
    answers["screening"] = screening
    detail = items[item].detail
    if detail and detail_needed(answers, detail) and answers.get(detail) is None:
        answers.pop(detail, None)
    _settle(answers)
    draft.answers = answers
    if next_screening_item(draft) is None:
        draft.editing = None


def begin_edit(draft: Draft, field: str) -> None:
    """Jump back to one question; the review comes back once it is answered."""
    answers = dict(draft.answers or {})
    if field not in editable_fields(answers):
        raise InvalidAnswer("error.choice.unknown")
    if field == "screening":
        answers["screening"] = {}
        _settle(answers)
    draft.answers = answers
    draft.editing = field


def forget_answer(draft: Draft, field: str) -> None:
    """Drop an answer that no longer holds, so it is asked again."""
    answers = dict(draft.answers or {})
    answers.pop(field, None)
    draft.answers = answers
    draft.editing = None


def draft_dob(draft: Draft) -> dt.date | None:
    """The date of birth given so far."""
    raw = (draft.answers or {}).get("date_of_birth")
    return dt.date.fromisoformat(raw) if raw else None


def draft_gender(draft: Draft) -> v.Gender | None:
    """The gender given so far."""
    raw = (draft.answers or {}).get("gender")
    return v.Gender(raw) if raw else None


def _recheck_id(answers: dict[str, Any]) -> None:
    ident = answers.get("id_number")
    if not ident or ident.get("kind") != "cccd":
        return
    dob, gender = answers.get("date_of_birth"), answers.get("gender")
    if not dob or not gender:
        return
    try:
        v.parse_id_number(ident["number"], dt.date.fromisoformat(dob), v.Gender(gender))
    except InvalidAnswer:
        answers.pop("id_number", None)  # no longer agrees: ask for it again


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, v.IdNumber):
        return {"kind": value.kind, "number": value.number}
    if isinstance(value, v.Ethnicity):
        return value.code
    return value


def answers_of_book(book: HealthBook) -> dict[str, Any]:
    """A saved book as draft answers."""
    ident = {"kind": book.id_kind, "number": book.id_number} if book.id_number else None
    return {
        "full_name": book.full_name,
        "date_of_birth": book.date_of_birth.isoformat(),
        "gender": book.gender,
        "id_number": ident,
        "phone": book.phone,
        "bhyt": book.bhyt,
        "ethnicity": book.ethnicity,
        "occupation": book.occupation,
        "priority_group": book.priority_group,
        "province": book.province_code,
        "ward": book.ward_code,
        "address_line": book.address_line,
        "screening": dict(book.screening or {}),
        "allergies": book.allergies,
        "chronic_conditions": book.chronic_conditions,
    }


async def id_taken(session: AsyncSession, number: str, *, except_book: int | None = None) -> bool:
    """Whether another health book already holds this ID number."""
    stmt = select(HealthBook.id).where(HealthBook.id_number == number)
    if except_book is not None:
        stmt = stmt.where(HealthBook.id != except_book)
    return (await session.scalar(stmt.limit(1))) is not None


async def id_holder(session: AsyncSession, number: str) -> HealthBook | None:
    """The health book holding this ID number, if any (to say where it is registered)."""
    return await session.scalar(select(HealthBook).where(HealthBook.id_number == number).limit(1))


async def save_book(
    session: AsyncSession, account: Account, draft: Draft, consent_version: str
) -> HealthBook:
    """Validate the whole draft and write it as the health book it is for; the draft is removed.

    Whose book: the account's own (``subject`` ``self``), a relative's it holds (``relative``),
    or a resident a volunteer registers (``assisted``: no holder account, the volunteer recorded
    in ``assists``; the commune must be one of theirs). An edit of an existing book is allowed
    only to whoever may act on it (:func:`models.custody.access`). Anything done for another
    person is written to the audit log, with the names of the fields that changed.

    Raises :class:`InvalidAnswer` with ``field`` set when an answer no longer holds (the caller
    asks that question again), :class:`DomainError` when the ID number belongs to another book
    or the book is not the account's to write.
    """
    from models import audit, custody  # they import this module

    answers = dict(draft.answers or {})
    _settle(answers)
    data, field, error = validate_book(answers)
    if data is None:
        assert error is not None
        error.params.setdefault("field", field)
        raise error
    book = await session.get(HealthBook, draft.book_id) if draft.book_id else None
    if draft.subject == "assisted" and custody.is_suspended(account):
        raise DomainError("assist.suspended")  # the draft stays, for when they may again
    kind = (draft.consent or {}).get("kind") or (book.consent_kind if book else None)
    if book is None:  # a new book is written as the draft says: the draft must hold together
        if draft.subject == "relative" and (
            draft.relation not in custody.RELATIONS or kind not in ("relative", "guardian")
        ):
            raise DomainError("family.error.consent")
        if draft.subject == "assisted" and kind != "verbal":
            raise DomainError("access.denied")
    if draft.subject == "relative":  # a child's data: a parent's or guardian's consent
        from models.family import consent_mismatch

        if consent_mismatch(kind, data.date_of_birth, dt.datetime.now(LOCAL_TZ).date()):
            raise DomainError("family.error.consent")
    capacity: str = draft.subject if draft.subject in custody.SUBJECTS else "self"
    if book is not None:
        found = await custody.access(session, account, book)
        if found is None:
            raise DomainError("error.not_yours")
        capacity = found.capacity
    elif capacity == "assisted":
        capacity = "volunteer"
    if capacity == "volunteer" and data.ward not in await custody.volunteer_wards(
        session, account
    ):  # a new resident's or an edited one's: a volunteer works in their communes only
        raise InvalidAnswer("error.ward.not_yours", field="ward")
    number = data.id_number.number if data.id_number else None
    if number and await id_taken(session, number, except_book=book.id if book else None):
        raise DomainError("error.id.duplicate")
    if book is None and capacity == "self":
        book = await own_book(session, account)
    before = answers_of_book(book) if book is not None else None
    created = book is None
    if book is None:
        consent = dict(draft.consent or {})
        book = HealthBook(
            account_id=None if capacity == "volunteer" else account.id,
            relation={"self": "self", "volunteer": custody.ASSISTED}.get(
                capacity, draft.relation or "other"
            ),
            registered_by=None if capacity == "self" else account.id,
            consent_kind=consent.get("kind", "own") if capacity != "self" else "own",
            consent_by=None if capacity == "self" else account.id,
            consent_at=utcnow() if capacity != "self" else None,
        )
        session.add(book)
    _fill(book, data, consent_version)
    await session.delete(draft)
    session.info.get("drafts", {}).pop(account.id, None)
    await session.flush()
    if capacity == "volunteer" and created:
        session.add(Assist(health_book_id=book.id, account_id=account.id, via="registered"))
    if capacity != "self":
        role = "volunteer" if capacity == "volunteer" else "relative"
        if created:
            await audit.record(session, account, book, "created", role=role)
        else:
            assert before is not None
            changed = audit.changed_fields(before, answers_of_book(book))
            if changed:
                await audit.record(session, account, book, "edited", role=role, fields=changed)
    await session.flush()
    return book


def _fill(book: HealthBook, data: HealthBookIn, consent_version: str) -> None:
    book.full_name = data.full_name
    book.date_of_birth = data.date_of_birth
    book.gender = str(data.gender)
    book.id_kind = data.id_number.kind if data.id_number else None
    book.id_number = data.id_number.number if data.id_number else None
    book.phone = data.phone
    book.bhyt = data.bhyt
    book.ethnicity = data.ethnicity
    book.occupation = data.occupation
    book.priority_group = data.priority_group
    book.province_code = data.province
    book.ward_code = data.ward
    book.address_line = data.address_line
    book.screening = {k: str(a) for k, a in data.screening.items()}
    book.allergies = data.allergies
    book.chronic_conditions = data.chronic_conditions
    book.consent_version = consent_version


# --- the person's rights: see everything, erase everything ------------------------------------


class Labels(Protocol):
    """Message keys rendered in the person's language (:class:`bot.i18n.Translator` is one)."""

    @property
    def locale(self) -> str: ...

    def __call__(self, key: str, /, **params: Any) -> str: ...

    def has(self, key: str) -> bool: ...


@dataclass(frozen=True)
class Holdings:
    """How much is stored about an account, by kind: what /delete will erase."""

    health_books: int
    drafts: int  # a health-book form or a booking in progress, registrations set aside
    consents: int
    bookings: int
    places_held: int  # active bookings and held waitlist offers: their places are given back
    waitlist: int
    vaccinations: int
    staff_sites: int
    staff_records: int  # check-ins and doses recorded as staff, in other people's records
    linked_accounts: int = 0  # the person's accounts on other messengers (/link)
    reminders: int = 0  # reminders and notices not yet sent (the outbox)
    reactions: int = 0  # how they felt after a dose (answers to the after-care check-in)
    agency_memberships: int = 0  # the agency they work in and those they were in (/agency)
    agency_heads: int = 0  # agencies they head
    agency_removals: int = 0  # others' memberships they ended as a head (those stay, unsigned)


async def _book_ids(session: AsyncSession, account: Account) -> list[int]:
    stmt = select(HealthBook.id).where(HealthBook.account_id == account.id)
    return list((await session.scalars(stmt)).all())


async def _count(session: AsyncSession, stmt: Any) -> int:
    return int(await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)


def _accounts_of(account: Account) -> Any:
    """The ids of ``account`` and the accounts linked to it (/link moves agency rows to the
    primary; a head role given to a linked account by id is the person's all the same)."""
    return select(Account.id).where((Account.id == account.id) | (Account.linked_to == account.id))


def _states_of(account: Account) -> Any:
    """Which conversation states are the account's: its channel's, under its user id (a
    Telegram id and a Zalo id that happen to be equal never meet)."""
    return (ConversationState.channel == account.channel) & (
        ConversationState.user_id == account.external_id
    )


async def holdings(session: AsyncSession, account: Account) -> Holdings:
    """Counts of everything stored about an account."""
    books = await _book_ids(session, account)
    mine = Booking.health_book_id.in_(books)
    waiting = WaitlistEntry.health_book_id.in_(books)
    staff = (
        select(Booking.id).where(
            (Booking.checked_in_by == account.id) | (Booking.outcome_by == account.id), ~mine
        ),
        select(Vaccination.id).where(
            Vaccination.recorded_by == account.id, Vaccination.health_book_id.not_in(books)
        ),
    )
    return Holdings(
        health_books=len(books),
        drafts=await _count(session, select(Draft.account_id).where(Draft.account_id == account.id))
        + await _count(
            session, select(BookingDraft.account_id).where(BookingDraft.account_id == account.id)
        )
        + await _count(session, select(ParkedDraft.id).where(ParkedDraft.account_id == account.id)),
        consents=await _count(session, select(Consent.id).where(Consent.account_id == account.id)),
        bookings=await _count(session, select(Booking.id).where(mine)),
        places_held=await _count(
            session, select(Booking.id).where(mine, Booking.status.in_(BOOKING_ACTIVE))
        )
        + await _count(
            session,
            select(WaitlistEntry.id).where(
                waiting,
                WaitlistEntry.status == "offered",
                WaitlistEntry.held_session_id.is_not(None),
            ),
        ),
        waitlist=await _count(session, select(WaitlistEntry.id).where(waiting)),
        vaccinations=await _count(
            session, select(Vaccination.id).where(Vaccination.health_book_id.in_(books))
        ),
        staff_sites=await _count(
            session, select(StaffSite.site_id).where(StaffSite.account_id == account.id)
        ),
        staff_records=sum([await _count(session, stmt) for stmt in staff]),
        linked_accounts=await _count(
            session, select(Account.id).where(Account.linked_to == account.id)
        ),
        reminders=await _count(
            session,
            select(OutboxMessage.id).where(
                _outbox_of(account, books), OutboxMessage.status == "pending"
            ),
        ),
        reactions=await _count(
            session, select(Reaction.id).where(Reaction.health_book_id.in_(books))
        ),
        agency_memberships=await _count(
            session,
            select(AgencyMember.id).where(AgencyMember.account_id.in_(_accounts_of(account))),
        ),
        agency_heads=await _count(
            session,
            select(AgencyHead.agency_id).where(AgencyHead.account_id.in_(_accounts_of(account))),
        ),
        agency_removals=await _count(session, _removals_made(account)),
    )


def _removals_made(account: Account) -> Any:
    """Other people's memberships the person ended as an agency's head."""
    mine = _accounts_of(account)
    return select(AgencyMember.id).where(
        AgencyMember.removed_by.in_(mine), AgencyMember.account_id.not_in(mine)
    )


def aside_channel(channel: str) -> str:
    """Where a chat's choices set aside by /help are kept in ``chat_offers`` (under the chat's
    id, beside its current choices), to be offered again by the guide's "Continue"."""
    return f"{channel}~help"


def _outbox_of(account: Account, books: list[int]) -> Any:
    """The outbox rows about a person: sent to their account, or about their health books."""
    return (OutboxMessage.account_id == account.id) | OutboxMessage.health_book_id.in_(books)


def _day(value: dt.date | None) -> str | None:
    """A date as people here write it: ``15/03/1950``."""
    return value.strftime("%d/%m/%Y") if value else None


def _moment(value: dt.datetime | None) -> str | None:
    """A timestamp in the province's time, as people write it: ``25/11/2026 10:00``."""
    if value is None:
        return None
    aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    return aware.astimezone(LOCAL_TZ).strftime("%d/%m/%Y %H:%M")


def _label(t: Labels, key: str) -> str | None:
    return t(key) if t.has(key) else None


def _named(code: Any, name: Callable[[Any], str]) -> dict[str, Any] | None:
    """A code with its name; the name is None when the code is not (or no longer) known."""
    if code is None or code == "":
        return None
    try:
        return {"code": code, "name": name(code)}
    except (KeyError, ValueError, TypeError):
        return {"code": code, "name": None}


def _by_key(t: Labels, prefix: str) -> Callable[[Any], str]:
    """Names from the catalogue (``gender.male``…); an unknown code has none."""

    def name(code: Any) -> str:
        key = f"{prefix}.{code}"
        if not t.has(key):
            raise KeyError(key)
        return t(key)

    return name


def _language_name(t: Labels) -> Callable[[Any], str]:
    """The name of the language the labels are in; another language's code has none here."""

    def name(code: Any) -> str:
        if code != t.locale:
            raise KeyError(code)
        return t("language.name")

    return name


def _written_date(value: Any) -> Any:
    try:
        return _day(dt.date.fromisoformat(value)) if value else None
    except (TypeError, ValueError):  # not a date after all: shown as it is stored
        return value


def describe_answers(t: Labels, answers: dict[str, Any]) -> dict[str, Any]:
    """Health-book answers (saved or in a draft) with a name in words beside every code; a
    value that is not what it should be is kept as stored, never an error."""
    namers: dict[str, Callable[[Any], str]] = {
        "gender": _by_key(t, "gender"),
        "ethnicity": lambda c: v.ethnicity_by_code(int(c)).name,
        "occupation": _by_key(t, "occupation"),
        "priority_group": _by_key(t, "priority"),
        "province": lambda c: v.province_name(int(c)),
        "ward": lambda c: v.ward_name(int(c)),
    }
    out: dict[str, Any] = {}
    for field in FIELDS:
        if field not in answers:
            continue
        value = answers[field]
        if field in namers:
            out[field] = _named(value, namers[field])
        elif field == "date_of_birth":
            out[field] = _written_date(value)
        elif field == "id_number" and isinstance(value, dict):
            out[field] = {**value, "kind_name": _label(t, f"id_kind.{value.get('kind')}")}
        elif field == "phone" and isinstance(value, str):
            out[field] = v.format_phone(value)
        elif field == "screening" and isinstance(value, dict):
            out[field] = [
                {
                    "code": item,
                    "question": _label(t, f"screening.{item}"),
                    "answer": answer,
                    "answer_name": _label(t, f"answer.{answer}"),
                }
                for item, answer in value.items()
            ]
        else:
            out[field] = value
    return out


def _campaign(t: Labels, campaign: Campaign | None) -> dict[str, Any] | None:
    if campaign is None:
        return None
    return {
        "code": campaign.code,
        "name": _label(t, f"campaign_name.{campaign.code}") or campaign.name,
    }


def _site(site: Site | None) -> dict[str, Any] | None:
    if site is None:
        return None
    return {"code": site.code, "name": site.name, "address": site.address}


async def export_data(session: AsyncSession, account: Account, t: Labels) -> dict[str, Any]:
    """Everything stored about an account, as plain JSON: every code beside its name in the
    person's language, dates as people write them (the province's time)."""
    books = (
        await session.scalars(
            select(HealthBook).where(HealthBook.account_id == account.id).order_by(HealthBook.id)
        )
    ).all()
    book_ids = [b.id for b in books]
    campaigns = {c.id: c for c in (await session.scalars(select(Campaign))).all()}
    sites = {s.id: s for s in (await session.scalars(select(Site))).all()}
    vaccines = {x.code: x for x in (await session.scalars(select(Vaccine))).all()}
    consents = (
        await session.scalars(
            select(Consent).where(Consent.account_id == account.id).order_by(Consent.id)
        )
    ).all()
    bookings = (
        await session.execute(
            select(Booking, Session)
            .join(Session, Session.id == Booking.session_id)
            .where(Booking.health_book_id.in_(book_ids))
            .order_by(Session.date, Session.start_time, Booking.id)
        )
    ).all()
    entries = (
        await session.scalars(
            select(WaitlistEntry)
            .where(WaitlistEntry.health_book_id.in_(book_ids))
            .order_by(WaitlistEntry.id)
        )
    ).all()
    session_of = {
        s.id: s
        for s in (
            await session.scalars(
                select(Session).where(
                    Session.id.in_(
                        {e.session_id for e in entries} | {e.held_session_id for e in entries}
                    )
                )
            )
        ).all()
    }
    doses = (
        await session.scalars(
            select(Vaccination)
            .where(Vaccination.health_book_id.in_(book_ids))
            .order_by(Vaccination.given_at, Vaccination.id)
        )
    ).all()
    staff_sites = (
        await session.scalars(
            select(StaffSite).where(StaffSite.account_id == account.id).order_by(StaffSite.site_id)
        )
    ).all()
    draft = await get_draft(session, account)
    parked = await parked_drafts(session, account)
    booking_draft = await session.get(BookingDraft, account.id)
    states = (
        await session.scalars(
            select(ConversationState).where(_states_of(account)).order_by(ConversationState.name)
        )
    ).all()
    counts = await holdings(session, account)
    offer = await session.get(ChatOffer, (account.channel, account.external_id))
    set_aside = await session.get(ChatOffer, (aside_channel(account.channel), account.external_id))
    reactions = (
        await session.scalars(
            select(Reaction)
            .where(Reaction.health_book_id.in_(book_ids))
            .order_by(Reaction.reported_at, Reaction.id)
        )
    ).all()
    booking_codes = dict(
        (
            await session.execute(
                select(Booking.id, Booking.code).where(Booking.health_book_id.in_(book_ids))
            )
        ).all()
    )
    linked = await session.scalars(
        select(Account).where(Account.linked_to == account.id).order_by(Account.id)
    )
    reminders = (
        await session.scalars(
            select(OutboxMessage)
            .where(_outbox_of(account, book_ids), OutboxMessage.status == "pending")
            .order_by(OutboxMessage.due_at, OutboxMessage.id)
        )
    ).all()

    about = await _others_named(session, {r.health_book_id for r in reminders if r.health_book_id})
    memberships = (
        await session.execute(
            select(AgencyMember, Agency)
            .join(Agency, Agency.id == AgencyMember.agency_id)
            .where(AgencyMember.account_id.in_(_accounts_of(account)))
            .order_by(AgencyMember.joined_at, AgencyMember.id)
        )
    ).all()
    headed = (
        await session.execute(
            select(AgencyHead, Agency)
            .join(Agency, Agency.id == AgencyHead.agency_id)
            .where(AgencyHead.account_id.in_(_accounts_of(account)))
            .order_by(Agency.code, AgencyHead.account_id)
        )
    ).all()

    def slot(s: Session | None) -> dict[str, Any] | None:
        if s is None:
            return None
        return {
            "site": _site(sites.get(s.site_id)),
            "date": _day(s.date),
            "hours": f"{s.start_time:%H:%M}–{s.end_time:%H:%M}",
        }

    return {
        "exported_at": _moment(utcnow()),
        "time_zone": str(LOCAL_TZ),
        "account": {
            "channel": account.channel,
            "user_id": account.external_id,
            "language": _named(account.locale, _language_name(t)),
            "role": _named(account.role, _by_key(t, "mydata.role")),
            "created_at": _moment(account.created_at),
        },
        # the person's accounts on other messengers, joined with /link
        "linked_accounts": [
            {"channel": a.channel, "user_id": a.external_id, "created_at": _moment(a.created_at)}
            for a in linked
        ],
        "consents": [{"version": c.version, "given_at": _moment(c.given_at)} for c in consents],
        "health_books": [
            {
                **describe_answers(t, answers_of_book(b)),
                "relation": b.relation,
                "consent_version": b.consent_version,
                # a relative's book: the consent given for it (not the holder's own)
                "consent": (
                    {
                        "kind": _named(b.consent_kind, _by_key(t, "mydata.consent_kind")),
                        "at": _moment(b.consent_at),
                        "version": b.consent_version,
                    }
                    if b.relation != "self"
                    else None
                ),
                "created_at": _moment(b.created_at),
                "updated_at": _moment(b.updated_at),
            }
            for b in books
        ],
        "draft": (
            {
                "answers": describe_answers(t, draft.answers or {}),
                "editing": draft.editing,
                "edits_saved_book": draft.book_id is not None,
                "updated_at": _moment(draft.updated_at),
            }
            if draft is not None
            else None
        ),
        # registrations begun and set aside to begin another (theirs, a relative's, a
        # resident's they help): kept PARKED_LIFE, at most PARKED_MAX
        "parked_drafts": [
            {
                "answers": describe_answers(t, p.answers or {}),
                "subject": p.subject,  # self | relative | assisted
                "relation": _named(p.relation, _by_key(t, "relation")),
                "editing": p.editing,
                "edits_saved_book": p.book_id is not None,
                "updated_at": _moment(p.updated_at),
            }
            for p in parked
        ],
        "booking_draft": (
            {
                "campaign": _campaign(t, campaigns.get(booking_draft.campaign_id or 0)),
                "dose": booking_draft.dose,
                "updated_at": _moment(booking_draft.updated_at),
            }
            if booking_draft is not None
            else None
        ),
        "bookings": [
            {
                "code": b.code,
                "campaign": _campaign(t, campaigns.get(b.campaign_id)),
                "dose": b.dose,
                **(slot(s) or {}),
                "status": _named(b.status, _by_key(t, "status")),
                "booked_at": _moment(b.created_at),
                "cancelled_at": _moment(b.cancelled_at),
                "checked_in_at": _moment(b.checked_in_at),
                "outcome_at": _moment(b.outcome_at),
                "outcome_reason": b.outcome_reason,
            }
            for b, s in bookings
        ],
        "waitlist": [
            {
                "campaign": _campaign(t, campaigns.get(e.campaign_id)),
                "dose": e.dose,
                "session": slot(session_of.get(e.session_id or 0)),
                "site": _site(sites.get(e.site_id or 0)),
                "date": _day(e.date),
                "not_before": _day(e.not_before),
                "status": _named(e.status, _by_key(t, "mydata.waitlist")),
                "joined_at": _moment(e.created_at),
                "offered_at": _moment(e.offered_at),
                "offer_expires_at": _moment(e.offer_expires_at),
                "held_session": slot(session_of.get(e.held_session_id or 0)),
            }
            for e in entries
        ],
        "vaccinations": [
            {
                "campaign": _campaign(t, campaigns.get(d.campaign_id)),
                "dose": d.dose,
                "vaccine": (
                    {"code": d.vaccine_code, "name": vx.name, "manufacturer": vx.manufacturer}
                    if (vx := vaccines.get(d.vaccine_code))
                    else {"code": d.vaccine_code, "name": None, "manufacturer": None}
                ),
                "lot_number": d.lot_number,
                "given_at": _moment(d.given_at),
                "site": _site(sites.get(d.site_id or 0)),
            }
            for d in doses
        ],
        "staff_sites": [
            {"site": _site(sites.get(x.site_id)), "since": _moment(x.created_at)}
            for x in staff_sites
        ],
        # other people's records this account signed as staff: counted, never copied
        "staff_records": counts.staff_records,
        # the agencies they worked in (/agency), oldest first; the open one (left_at None) is
        # where they work now. How one ended: moved, left, or removed by a head (never by whom)
        "agency_memberships": [
            {
                "agency": {"code": a.code, "name": a.name},
                "joined_at": _moment(m.joined_at),
                "left_at": _moment(m.left_at),
                "ended": _named(m.left_reason, _by_key(t, "mydata.agency_end")),
            }
            for m, a in memberships
        ],
        # the agencies they head: they see its members and its tree's weekly reports
        "agency_heads": [
            {"agency": {"code": a.code, "name": a.name}, "since": _moment(h.created_at)}
            for h, a in headed
        ],
        # members they removed from an agency they head: counted, the memberships are theirs
        "agency_removals_made": counts.agency_removals,
        # the communes where they volunteer (registering and helping residents there)
        "volunteer_communes": [
            {"commune": _ward_named(w.ward_code), "since": _moment(w.created_at)}
            for w in await session.scalars(
                select(VolunteerWard)
                .where(VolunteerWard.account_id == account.id)
                .order_by(VolunteerWard.ward_code)
            )
        ],
        "conversations": [
            {"name": c.name, "state": c.state, "updated_at": _moment(c.updated_at)} for c in states
        ],
        # reminders and notices planned for the person, not yet sent
        "reminders": [
            {
                "kind": _named(r.kind, _by_key(t, "reminder.kind")),
                "due_at": _moment(r.due_at),
                # whose appointment it is about, when not their own (a relative's, a resident's)
                "about": about.get(r.health_book_id or 0),
            }
            for r in reminders
        ],
        # how they felt after a dose, as they answered the after-care check-in
        "reactions": [
            {
                "booking": booking_codes.get(r.booking_id or 0),
                "dose": r.dose,
                "site": _site(sites.get(r.site_id or 0)),
                "severity": _named(r.severity, _by_key(t, "aftercare.severity")),
                "reported_at": _moment(r.reported_at),
            }
            for r in reactions
        ],
        # who acted on their records for them (a relative, a volunteer, site staff): by role
        # and commune, never by messenger id (the audit trail, models/audit.py)
        "acted_on_records": await _trail(session, books, t, account),
        # what this person did for others (as a relative, volunteer, staff): counted, the
        # entries are the others' (the audit log)
        "acted_for_others": await _count(
            session, select(AuditEntry.id).where(AuditEntry.actor_id == account.id)
        ),
        # what a typed number would choose now (a label may be the person's phone number)
        "offered_choices": [
            {"number": n, "label": label}
            for n, (label, _code) in enumerate(offer.choices if offer is not None else [], 1)
        ],
        # the choices set aside while the /help guide is shown (its "Continue" offers them)
        "set_aside_choices": [
            {"number": n, "label": label}
            for n, (label, _code) in enumerate(set_aside.choices if set_aside else [], 1)
        ],
    }


async def _trail(
    session: AsyncSession, books: Any, t: Labels, reader: Account
) -> list[dict[str, Any]]:
    from models.records import trail_of_books  # it uses this module's labels

    return await trail_of_books(session, books, t, reader=reader)  # type: ignore[return-value]


async def _others_named(session: AsyncSession, book_ids: set[int]) -> dict[int, str]:
    """The names of the books among ``book_ids`` that are someone else's (a relative's, a
    resident's helped): what a reminder about them says whose it is."""
    if not book_ids:
        return {}
    rows = await session.execute(
        select(HealthBook.id, HealthBook.full_name).where(
            HealthBook.id.in_(book_ids), HealthBook.relation != "self"
        )
    )
    return {i: name for i, name in rows.all()}


def _ward_named(code: int) -> dict[str, Any]:
    """A commune's code and name (None when no longer known)."""
    from models.reference import admin_units

    found = admin_units().wards.get(code)
    return {"code": code, "name": found[0] if found else None}


#: how a head's list of members names each one's choice (handlers/agency.py):
#: ``ag:rm:AGENCY:MEMBERSHIP``
_MEMBER_CHOICE = "ag:rm:{agency}:{membership}"
#: what such a choice reads once its member erased their data
_UNNAMED = "—"


async def _unname_in_heads_lists(session: AsyncSession, account: Account) -> list[tuple[str, str]]:
    """The person's lines in the member lists their agencies' heads were last offered lose
    the person's name (the line keeps its number, so a number typed still means the line
    shown; the membership gone, it is refused as stale). The chats changed, by channel and
    id: their cached offers are to be forgotten."""
    rows = (
        await session.execute(
            select(AgencyMember.id, AgencyMember.agency_id).where(
                AgencyMember.account_id == account.id
            )
        )
    ).all()
    if not rows:
        return []
    codes = {_MEMBER_CHOICE.format(agency=a, membership=m) for m, a in rows}
    heads = select(AgencyHead.account_id).where(AgencyHead.agency_id.in_({a for _, a in rows}))
    chats = (
        await session.execute(
            select(Account.channel, Account.external_id).where(
                Account.id.in_(heads) | Account.linked_to.in_(heads)
            )
        )
    ).all()
    changed: list[tuple[str, str]] = []
    for channel, chat_id in chats:
        offer = await session.get(ChatOffer, (channel, chat_id))
        if offer is None or not isinstance(offer.choices, list):
            continue
        choices = [
            [_UNNAMED, c[1]] if isinstance(c, list) and len(c) == 2 and c[1] in codes else c
            for c in offer.choices
        ]
        if choices != offer.choices:
            offer.choices = choices
            changed.append((channel, chat_id))
    await session.flush()
    return changed


async def erase_account(
    session: AsyncSession, account: Account, *, with_linked: bool = True
) -> list[tuple[str, str]]:
    """Erase everything stored about an account, each table by name (the foreign keys cascade
    too, as a second line): booked places are given back first, then the health books with
    their bookings, waitlist entries and vaccination records (the owner may erase those too),
    drafts, staff roles, agency memberships and head roles, consents, conversation states and
    the account itself. Records the person signed as staff for others stay, without their
    name; so do memberships they ended as an agency's head. The person's accounts on
    other messengers (joined with /link) are erased with it, each on its own channel only.
    Returned: other people's chats whose last choices named the person (an agency head's list
    of members), by channel and id, whose cached choices are to be forgotten."""
    others: list[tuple[str, str]] = []
    if with_linked:
        if account.linked_to is not None:  # the person is their primary account
            account = await session.get(Account, account.linked_to) or account
        linked = select(Account).where(Account.linked_to == account.id)
        for other in (await session.scalars(linked)).all():
            others += await erase_account(session, other, with_linked=False)
    from models.records import erase_book  # it builds on this module

    now = utcnow()
    held = select(HealthBook).where(HealthBook.account_id == account.id).order_by(HealthBook.id)
    for book in (await session.scalars(held)).all():  # each with all that hangs off it
        await erase_book(session, book, now)
    await session.execute(  # reminders still to be sent to them
        delete(OutboxMessage)
        .where(OutboxMessage.account_id == account.id)
        .execution_options(synchronize_session=False)
    )
    # their agency memberships (now and before) and head roles; the weekly snapshots
    # (report_agency_weeks) hold counts only and stay as they were
    others += await _unname_in_heads_lists(session, account)
    await session.execute(delete(AgencyMember).where(AgencyMember.account_id == account.id))
    await session.execute(delete(AgencyHead).where(AgencyHead.account_id == account.id))
    for column in (
        Booking.checked_in_by,
        Booking.outcome_by,
        Vaccination.recorded_by,
        AuditEntry.actor_id,  # what they did for others stays in the trail, not by whom
        AgencyMember.removed_by,  # a member they removed as a head: still removed, not by whom
    ):
        await session.execute(
            update(column.class_)
            .where(column == account.id)
            .values({column.key: None})
            .execution_options(synchronize_session=False)
        )
    await session.execute(delete(ConversationState).where(_states_of(account)))
    await session.execute(  # the choices last offered (or set aside) may name a phone number
        delete(ChatOffer).where(
            ChatOffer.channel.in_([account.channel, aside_channel(account.channel)]),
            ChatOffer.chat_id == account.external_id,
        )
    )
    await session.execute(  # their messages still waiting to be handled (Zalo's inbox)
        delete(InboxEvent).where(
            InboxEvent.channel == account.channel, InboxEvent.chat_id == account.external_id
        )
    )
    await session.execute(delete(Draft).where(Draft.account_id == account.id))
    session.info.get("drafts", {})[account.id] = None
    await session.execute(delete(BookingDraft).where(BookingDraft.account_id == account.id))
    await session.execute(delete(StaffSite).where(StaffSite.account_id == account.id))
    # a volunteer's communes and the residents they help go; those residents' books stay (they
    # are not the volunteer's to erase), without the name of who registered them
    await session.execute(delete(Assist).where(Assist.account_id == account.id))
    await session.execute(delete(VolunteerWard).where(VolunteerWard.account_id == account.id))
    await session.execute(delete(ParkedDraft).where(ParkedDraft.account_id == account.id))
    for column in (HealthBook.registered_by, HealthBook.consent_by):
        await session.execute(
            update(HealthBook)
            .where(column == account.id)
            .values({column.key: None})
            .execution_options(synchronize_session=False)
        )
    await session.execute(  # an admin's broadcasts stay, not where their progress was shown
        update(Broadcast)
        .where(Broadcast.created_by == account.id)
        .values(progress_channel=None, progress_chat=None, progress_message=None)
        .execution_options(synchronize_session=False)
    )
    await session.execute(delete(HealthBook).where(HealthBook.account_id == account.id))
    await session.execute(delete(Consent).where(Consent.account_id == account.id))
    await session.execute(delete(Account).where(Account.id == account.id))
    return others
