"""Families: the relatives an account holder registers, their consent, and hand-over.

A resident (the *holder*) registers relatives under their own account (``health_books.relation``
``father|mother|spouse|child|other``); the holder confirms the relative agreed (``consent_kind``
``relative``) or, for a child, that they are the child's parent or legal guardian (``guardian``,
Law 91/2025 on personal data protection). A relative who later uses the bot takes over their own
book with a one-time **hand-over code** the holder (or a volunteer helping a resident) made:
``/join CODE``. Afterwards the book is theirs alone.

No messenger here: the handlers (handlers/family.py) and tests call these functions. The caller
owns the transaction. Every action is written to the audit log (:mod:`models.audit`): field
names only, never values.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import audit, custody, records
from models import healthbook as hb
from models import validators as v
from models.errors import DomainError
from models.tables import (
    Account,
    Assist,
    Booking,
    BookingDraft,
    Draft,
    HandoverCode,
    HealthBook,
    OutboxMessage,
    ParkedDraft,
)
from models.timeutil import as_aware, local_date

#: how long a hand-over code can be used
HANDOVER_LIFE = dt.timedelta(hours=48)
#: letters and digits nobody confuses when reading a code aloud (no 0/O, 1/I/L)
_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
_PREFIX = "GD"  # gia đình: tells a hand-over code from an invite code at a glance
_BODY = 8
_CODE = re.compile(rf"^{_PREFIX}[{_ALPHABET}]{{{_BODY}}}$")
#: under this age a relative's data needs a parent's or legal guardian's consent
ADULT_AGE = 18
#: from this age a person may take over their own book (a hand-over); younger, a child's book
#: stays with the parent or guardian who holds it: by Law 91/2025 (art. 24) a child's legal
#: representative exercises the data subject's rights for them, and a child is a person under
#: 16 (Law on Children 2016, art. 1)
HANDOVER_AGE = 16
#: a claim's reference in a button: enough of the code's hash to be as unguessable as the code
REF_LEN = 40


def normalize_handover(text: str) -> str | None:
    """The code in ``text`` (``gd-ab3k 7pqr`` → ``GDAB3K7PQR``), or None when it is not one."""
    compact = re.sub(r"[\s\-.]", "", text or "").upper()
    return compact if _CODE.match(compact) else None


def format_handover(code: str) -> str:
    """``GDAB3K7PQR`` → ``GD-AB3K-7PQR`` (easier to read aloud and type)."""
    return f"{code[:2]}-{code[2:6]}-{code[6:]}"


def _hash(code: str) -> str:
    return hashlib.sha256(f"healthbook-handover:{code}".encode()).hexdigest()


def is_minor(date_of_birth: dt.date | str | None, today: dt.date) -> bool | None:
    """Whether a person born then is under :data:`ADULT_AGE` today (None: not known yet)."""
    if date_of_birth is None:
        return None
    if isinstance(date_of_birth, str):
        try:
            date_of_birth = dt.date.fromisoformat(date_of_birth)
        except ValueError:
            return None
    return v.age_on(date_of_birth, today) < ADULT_AGE


def consent_mismatch(kind: str | None, date_of_birth: dt.date | str | None, today: dt.date) -> bool:
    """Whether the consent given for a relative is not the kind their age calls for: a minor's
    data needs a parent's or legal guardian's (``guardian``), an adult agrees themselves
    (``relative``, confirmed by the holder). Unknown age: no mismatch yet."""
    minor = is_minor(date_of_birth, today)
    return minor is not None and minor != (kind == "guardian")


def consent_for(kind: str, version: str, now: dt.datetime) -> dict[str, Any]:
    """What the holder confirmed, as kept in ``drafts.consent`` (``save_book`` copies ``kind``
    to the book's ``consent_kind``): ``relative`` (the adult relative agreed to the terms of
    ``version``) or ``guardian`` (the holder is the child's parent or legal guardian)."""
    if kind not in ("relative", "guardian"):
        raise ValueError(f"unknown consent kind {kind!r}")
    confirmed = "relative_agreed" if kind == "relative" else "parent_or_guardian"
    return {
        "kind": kind,
        "version": version,
        "at": as_aware(now).isoformat(),
        "confirmed": confirmed,
    }


# ---------------------------------------------------------------- who is who in a family


def _same_person(book: HealthBook, name: str, dob: str, number: str | None) -> bool:
    """Whether ``book`` is the person described: the same ID number; or, when either has no ID
    number, the same name (without accents) and date of birth."""
    if number and book.id_number:
        return number == book.id_number
    return v.fold(book.full_name) == v.fold(name) and book.date_of_birth.isoformat() == dob


#: a resident's relative whose ID number another book holds (nothing said of where or when)
ID_REGISTERED = "family.error.id_registered"


@dataclass(frozen=True)
class Problem:
    """Why a relative cannot be registered as answered: a message key and its parameters."""

    key: str
    params: dict[str, Any]


async def relative_problem(
    session: AsyncSession, account: Account, answers: dict[str, Any], book_id: int | None = None
) -> Problem | None:
    """Whether the relative described by ``answers`` (name, date of birth, ID number) can be
    registered under ``account``: not the holder themselves, not a relative already in this
    family, not the person whose account holds the holder's own book (a loop), not an ID
    number registered elsewhere (to a volunteer: in which commune and since when; to anyone
    else: :data:`ID_REGISTERED`, nothing more). ``book_id``: the book being edited (it is not
    a duplicate of itself). None when all is well."""
    name, dob = answers.get("full_name"), answers.get("date_of_birth")
    ident = answers.get("id_number")
    number = ident.get("number") if isinstance(ident, dict) else None
    if not name or not dob:
        return None
    held = [b for b in await custody.held_books(session, account) if b.id != book_id]
    own = next((b for b in held if b.relation == "self"), None)
    if own is not None and _same_person(own, name, dob, number):
        return Problem("family.error.self", {})
    for book in held:
        if book.relation != "self" and _same_person(book, name, dob, number):
            relation = book.relation if book.relation in custody.RELATIONS else "other"
            return Problem("family.error.twice", {"relation": relation, "name": book.full_name})
    if own is not None:
        # the holder's own person, registered by someone else too: that someone is no relative
        # to register here (they hold the holder already: a loop)
        holders = await session.scalars(
            select(HealthBook.account_id).where(
                HealthBook.relation != "self",
                HealthBook.account_id.is_not(None),
                HealthBook.account_id != account.id,
                HealthBook.full_name == own.full_name,
                HealthBook.date_of_birth == own.date_of_birth,
            )
        )
        for holder_id in set(holders):
            theirs = await session.scalar(
                select(HealthBook).where(
                    HealthBook.account_id == holder_id, HealthBook.relation == "self"
                )
            )
            if theirs is not None and _same_person(theirs, name, dob, number):
                return Problem("family.error.loop", {})
    if number:
        found = await hb.id_holder(session, number)
        if found is not None and found.id != book_id:
            if not await custody.is_volunteer(session, account):
                # where and since when is a volunteer's to know (issue 9), not any resident's:
                # an ID number would tell anyone where its person lives
                return Problem(ID_REGISTERED, {})
            return Problem(
                "family.error.id_elsewhere",
                {"ward": v.ward_name(found.ward_code), "date": found.created_at.date()},
            )
    return None


# ---------------------------------------------------------------- removing a relative


async def remove_relative(
    session: AsyncSession, actor: Account | None, book_id: int, now: dt.datetime
) -> str:
    """Erase a relative's book the actor holds (with its bookings, their places given back,
    waitlist entries, vaccination records, reminders, drafts and hand-over codes); returns the
    name it had, for the reply. ``access.denied`` for anything but a relative's book the actor
    holds. Audited ``deleted`` (role ``relative``)."""
    found = await custody.require_book(session, actor, book_id)
    if found.capacity != "relative":
        raise DomainError("access.denied")
    assert actor is not None
    book = found.book
    name = book.full_name
    await audit.record(session, actor, book, "deleted", role="relative")
    await records.erase_book(session, book, now)
    return name


# ---------------------------------------------------------------- hand-over


def may_hand_over(found: custody.Access) -> bool:
    """Whether whoever has ``found`` may hand the book over (or delete it): its holder, for a
    relative's book; a volunteer, only a resident's book no account holds (the holder of a
    book, who let a volunteer help, keeps it: only they decide)."""
    if found.capacity == "relative":
        return True
    return found.capacity == "volunteer" and found.book.account_id is None


async def create_handover(
    session: AsyncSession, actor: Account | None, book_id: int, now: dt.datetime
) -> str:
    """A new one-time code for the person of book ``book_id`` to take their book over with
    ``/join CODE``: made by its holder (a relative's book) or a volunteer helping a resident
    who has no account (a book with a holder is theirs to hand over, not a linked
    volunteer's). The book's earlier codes, and every expired one, are dropped. Audited
    ``handover_code``."""
    found = await custody.require_book(session, actor, book_id)
    if not may_hand_over(found):
        raise DomainError("access.denied")  # one's own book is one's own already
    assert actor is not None
    _old_enough(found.book, now)
    await session.execute(
        delete(HandoverCode).where(
            (HandoverCode.health_book_id == book_id) | (HandoverCode.expires_at <= now)
        )
    )
    while True:
        code = _PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(_BODY))
        if await session.get(HandoverCode, _hash(code)) is None:
            break
    session.add(
        HandoverCode(
            code_hash=_hash(code),
            health_book_id=book_id,
            created_by=actor.id,
            expires_at=now + HANDOVER_LIFE,
            created_at=now,
        )
    )
    await audit.record(session, actor, found.book, "handover_code", role=found.capacity)
    await session.flush()
    return code


@dataclass(frozen=True)
class Offered:
    """A live hand-over code someone may claim: its row and the book."""

    row: HandoverCode
    book: HealthBook

    @property
    def ref(self) -> str:
        """What a button carries to claim it after the consent (not the code itself)."""
        return self.row.code_hash[:REF_LEN]


async def _row(session: AsyncSession, code: str | None, ref: str | None) -> HandoverCode | None:
    if code is not None:
        digits = normalize_handover(code)
        return await session.get(HandoverCode, _hash(digits)) if digits else None
    if ref is None or len(ref) != REF_LEN or not re.fullmatch(r"[0-9a-f]+", ref):
        return None
    return await session.scalar(
        select(HandoverCode).where(HandoverCode.code_hash.startswith(ref, autoescape=True))
    )


async def check_handover(
    session: AsyncSession,
    account: Account | None,
    code: str | None,
    now: dt.datetime,
    *,
    ref: str | None = None,
) -> Offered:
    """The code (typed, or by its button's ``ref``) ``account`` may claim, or a refusal:
    ``family.join.unknown`` (no such code, or used up), ``family.join.expired``,
    ``family.join.own_code`` (its maker, or the current holder, typed it),
    ``family.join.has_book`` (the person has a health book of their own already)."""
    row = await _row(session, code, ref)
    if row is None:
        raise DomainError("family.join.unknown")
    if as_aware(row.expires_at) <= now:
        raise DomainError("family.join.expired")
    book = await session.get(HealthBook, row.health_book_id)
    if book is None:
        raise DomainError("family.join.unknown")
    if account is not None and (account.id == row.created_by or account.id == book.account_id):
        raise DomainError("family.join.own_code")
    if account is not None and await hb.own_book(session, account) is not None:
        raise DomainError("family.join.has_book")
    _old_enough(book, now)  # a code made before the rule, or the date of birth corrected since
    return Offered(row, book)


def old_enough(book: HealthBook, now: dt.datetime) -> bool:
    """Whether the book's person is old enough to hold their own book (:data:`HANDOVER_AGE`):
    a hand-over is offered to them only then."""
    return v.age_on(book.date_of_birth, local_date(now)) >= HANDOVER_AGE


def _old_enough(book: HealthBook, now: dt.datetime) -> None:
    """``family.handover.too_young`` when the book's person is under :data:`HANDOVER_AGE`."""
    if not old_enough(book, now):
        raise DomainError("family.handover.too_young", age=HANDOVER_AGE)


@dataclass(frozen=True)
class HandedOver:
    """A book taken over: the book, and who held it before (to be told), in what capacity."""

    book: HealthBook
    previous: Account | None
    capacity: str  # relative | volunteer


async def claim_handover(
    session: AsyncSession,
    account: Account,
    code: str | None,
    now: dt.datetime,
    *,
    ref: str | None = None,
) -> HandedOver:
    """Make the book of the code ``account``'s own: its holder now (``relation`` ``self``,
    ``consent_kind`` ``own``, on the terms the person agreed to last), the code and the book's
    other codes used up, volunteers' help ended, the former holder's drafts of it dropped, and
    the reminders still to be sent about it re-addressed to the new holder. The person must
    have given their own consent first (``family.join.consent``). Audited ``handed_over``
    (the code's maker, in their capacity)."""
    offered = await check_handover(session, account, code, now, ref=ref)
    consent = await hb.latest_consent(session, account)
    if consent is None:
        raise DomainError("family.join.consent")
    book, row = offered.book, offered.row
    # the code used up first, by whoever deletes its row: of two claims at the same moment
    # the second waits for the first (the row's lock), then finds nothing and changes nothing
    used = await session.execute(
        delete(HandoverCode)
        .where(HandoverCode.code_hash == row.code_hash)
        .execution_options(synchronize_session=False)
    )
    if used.rowcount != 1:  # type: ignore[attr-defined]
        raise DomainError("family.join.unknown")
    session.expunge(row)
    begun = await hb.get_draft(session, account)  # their own book begun: it exists now
    if begun is not None and begun.subject == "self" and begun.book_id is None:
        await session.delete(begun)
        session.info.setdefault("drafts", {})[account.id] = None
    maker = await session.get(Account, row.created_by) if row.created_by is not None else None
    previous = await session.get(Account, book.account_id) if book.account_id else None
    capacity = (
        "relative"
        if previous is not None and maker is not None and (previous.id == maker.id)
        else "volunteer"
    )
    if previous is None and maker is not None:
        previous = maker  # a resident a volunteer registered: the volunteer is told
    book.account_id = account.id
    book.relation = "self"
    book.consent_kind = "own"
    book.consent_by = None
    book.consent_at = as_aware(now)
    book.consent_version = consent.version
    await session.execute(delete(HandoverCode).where(HandoverCode.health_book_id == book.id))
    await session.execute(delete(Assist).where(Assist.health_book_id == book.id))
    for table in (Draft, ParkedDraft):  # the former holder's edits of it in progress
        await session.execute(
            delete(table)
            .where(table.book_id == book.id, table.account_id != account.id)
            .execution_options(synchronize_session=False)
        )
    await session.execute(
        delete(BookingDraft)
        .where(BookingDraft.health_book_id == book.id, BookingDraft.account_id != account.id)
        .execution_options(synchronize_session=False)
    )
    if previous is not None:
        session.info.get("drafts", {}).pop(previous.id, None)
    bookings = select(Booking.id).where(Booking.health_book_id == book.id)
    await session.execute(
        update(OutboxMessage)
        .where(
            (OutboxMessage.health_book_id == book.id) | OutboxMessage.booking_id.in_(bookings),
            OutboxMessage.status == "pending",
        )
        .values(account_id=account.id)
        .execution_options(synchronize_session=False)
    )
    await audit.record(session, maker, book, "handed_over", role=capacity)
    await session.flush()
    return HandedOver(book, previous, capacity)


__all__ = [
    "ADULT_AGE",
    "HANDOVER_AGE",
    "HANDOVER_LIFE",
    "ID_REGISTERED",
    "HandedOver",
    "Offered",
    "Problem",
    "check_handover",
    "claim_handover",
    "consent_for",
    "consent_mismatch",
    "create_handover",
    "format_handover",
    "is_minor",
    "may_hand_over",
    "normalize_handover",
    "old_enough",
    "relative_problem",
    "remove_relative",
]
