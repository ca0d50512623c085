"""Domain functions of the health book: accounts, consent, drafts, saving, export and erasure.

No Telegram here: the same functions serve the Telegram handlers, a Zalo channel and the CLI.
The caller owns the transaction: nothing in this module commits.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import validators as v
from models.errors import DomainError, InvalidAnswer
from models.schemas import HealthBookIn, validate_book
from models.tables import Account, Consent, ConversationState, Draft, HealthBook, utcnow

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


async def find_account(
    session: AsyncSession, channel: str, external_id: str, *, with_draft: bool = False
) -> Account | None:
    """The account of a channel user, if they ever gave consent or chose a language; with
    ``with_draft`` its draft is loaded by the same query (then :func:`get_draft` is free)."""
    where = (Account.channel == channel, Account.external_id == external_id)
    if not with_draft:
        return await session.scalar(select(Account).where(*where))
    row = (
        await session.execute(
            select(Account, Draft).outerjoin(Draft, Draft.account_id == Account.id).where(*where)
        )
    ).first()
    if row is None:
        return None
    account, draft = row
    # held here: the identity map only keeps weak references
    session.info.setdefault("drafts", {})[account.id] = draft
    return account


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
    session: AsyncSession, account: Account, book: HealthBook | None = None
) -> Draft:
    """A new draft: empty, or a copy of a saved book to edit field by field."""
    draft = await get_draft(session, account)
    if draft is None:
        draft = Draft(account_id=account.id)
        session.add(draft)
        session.info.setdefault("drafts", {})[account.id] = draft
    draft.book_id = book.id if book else None
    draft.answers = answers_of_book(book) if book else {}
    draft.editing = None
    await session.flush()
    return draft


def next_field(draft: Draft) -> str | None:
    """The question to ask now: the one being edited, else the first unanswered, else None."""
    if draft.editing:
        return draft.editing
    answers = draft.answers or {}
    for field in FIELDS:
        if field not in answers:
            return field
        if field == "screening" and next_screening_item(draft) is not None:
            return field
    return None


def next_screening_item(draft: Draft) -> v.ScreeningItem | None:
    """The first health-declaration item not yet answered."""
    given = (draft.answers or {}).get("screening") or {}
    for item in v.screening_items():
        if item.code not in given:
            return item
    return None


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
    draft.answers = answers  # a new dict, so SQLAlchemy sees the change
    draft.editing = None


def set_screening_answer(draft: Draft, item: str, answer: v.Answer) -> None:
    """Store one health-declaration answer."""
    if item not in {i.code for i in v.screening_items()}:
        raise InvalidAnswer("error.choice.unknown")
    answers = dict(draft.answers or {})
    screening = dict(answers.get("screening") or {})
    screening[item] = str(answer)
    answers["screening"] = screening
    draft.answers = answers
    if next_screening_item(draft) is None:
        draft.editing = None


def begin_edit(draft: Draft, field: str) -> None:
    """Jump back to one question; the review comes back once it is answered."""
    if field not in FIELDS:
        raise InvalidAnswer("error.choice.unknown")
    answers = dict(draft.answers or {})
    if field == "screening":
        answers["screening"] = {}
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


async def save_book(
    session: AsyncSession, account: Account, draft: Draft, consent_version: str
) -> HealthBook:
    """Validate the whole draft and write it as the account's health book; the draft is removed.

    Raises :class:`InvalidAnswer` with ``field`` set when an answer no longer holds (the caller
    asks that question again), :class:`DomainError` when the ID number belongs to another book.
    """
    data, field, error = validate_book(draft.answers or {})
    if data is None:
        assert error is not None
        error.params.setdefault("field", field)
        raise error
    book = await session.get(HealthBook, draft.book_id) if draft.book_id else None
    if book is not None and book.account_id != account.id:
        raise DomainError("error.not_yours")
    number = data.id_number.number if data.id_number else None
    if number and await id_taken(session, number, except_book=book.id if book else None):
        raise DomainError("error.id.duplicate")
    if book is None:
        book = await own_book(session, account)
    if book is None:
        book = HealthBook(account_id=account.id, relation="self")
        session.add(book)
    _fill(book, data, consent_version)
    await session.delete(draft)
    session.info.get("drafts", {}).pop(account.id, None)
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


async def export_data(session: AsyncSession, account: Account) -> dict[str, Any]:
    """Everything stored about an account, as plain JSON-able data (for /mydata)."""
    consents = (
        await session.scalars(
            select(Consent).where(Consent.account_id == account.id).order_by(Consent.id)
        )
    ).all()
    books = (
        await session.scalars(
            select(HealthBook).where(HealthBook.account_id == account.id).order_by(HealthBook.id)
        )
    ).all()
    draft = await get_draft(session, account)
    return {
        "account": {
            "channel": account.channel,
            "user_id": account.external_id,
            "language": account.locale,
            "role": account.role,
            "created_at": account.created_at.isoformat() if account.created_at else None,
        },
        "consents": [{"version": c.version, "given_at": c.given_at.isoformat()} for c in consents],
        "health_books": [
            {
                **answers_of_book(b),
                "created_at": b.created_at.isoformat(),
                "updated_at": b.updated_at.isoformat(),
            }
            for b in books
        ],
        "draft": dict(draft.answers) if draft else None,
    }


async def erase_account(session: AsyncSession, account: Account) -> None:
    """Erase everything stored about an account: books, drafts, consents, conversation states."""
    from models.booking import release_book  # booking builds on this module

    books = (
        await session.scalars(select(HealthBook.id).where(HealthBook.account_id == account.id))
    ).all()
    for book_id in books:  # a cascade delete would not give the booked places back
        await release_book(session, book_id, utcnow())
    ext = int(account.external_id) if account.external_id.lstrip("-").isdigit() else None
    if ext is not None:
        await session.execute(delete(ConversationState).where(ConversationState.user_id == ext))
    await session.execute(delete(Draft).where(Draft.account_id == account.id))
    session.info.get("drafts", {})[account.id] = None
    await session.execute(delete(HealthBook).where(HealthBook.account_id == account.id))
    await session.execute(delete(Consent).where(Consent.account_id == account.id))
    await session.execute(delete(Account).where(Account.id == account.id))
