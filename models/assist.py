"""What a commune volunteer does for residents (``/assist``): quick entry of an identity in one
line, the residents they help (found by name without accents, ID number or date of birth), their
progress, and link requests to the holder of a book registered already.

The residents a volunteer may act on are exactly those :func:`models.custody.access` allows: a
row in ``assists`` for them, in one of their communes, while they are not suspended. No Telegram
here; the caller owns the transaction.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import audit, custody
from models import validators as v
from models.errors import DomainError, InvalidAnswer
from models.tables import (
    BOOKING_ACTIVE,
    Account,
    Assist,
    AuditEntry,
    Booking,
    HealthBook,
    Vaccination,
    VolunteerWard,
)

#: what stands for "no ID number" in a quick entry
NO_ID_WORDS = frozenset(
    {"khong", "ko", "k", "none", "no", "no id", "khong co", "chua co", "khong cccd", "-", "0"}
)
_SEPARATORS = re.compile(r"\s*[,;|\n]+\s*")
_ID_LIKE = re.compile(r"^[\d\s.\-]+$")
PAGE = 8


# --- quick entry -------------------------------------------------------------------------------


@dataclass
class QuickEntry:
    """An identity typed in one line, checked part by part."""

    full_name: str
    date_of_birth: dt.date
    gender: v.Gender
    id_number: v.IdNumber | None
    phone: str | None = None
    ethnicity: int | None = None

    def answers(self) -> dict[str, Any]:
        """As draft answers (the ID last: it is checked against the date and gender)."""
        out: dict[str, Any] = {
            "full_name": self.full_name,
            "date_of_birth": self.date_of_birth,
            "gender": str(self.gender),
            "id_number": self.id_number,
        }
        if self.phone is not None:
            out["phone"] = self.phone
        if self.ethnicity is not None:
            out["ethnicity"] = self.ethnicity
        return out


@dataclass
class QuickEntryError(Exception):
    """What is missing (part names) and what is wrong (part name → the validator's error)."""

    missing: list[str] = field(default_factory=list)
    wrong: list[tuple[str, InvalidAnswer]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # parts that read as nothing expected


def _split(text: str) -> tuple[str, list[str]] | None:
    """The name and the other parts; None for a plain answer (no separator, no digit)."""
    parts = [p.strip() for p in _SEPARATORS.split(text.strip()) if p.strip()]
    if len(parts) > 1:
        return parts[0], parts[1:]
    words = text.split()
    if not any(ch.isdigit() for ch in text):
        return None  # a name (or a bad one) answered one question at a time
    first = next((i for i, w in enumerate(words) if any(ch.isdigit() for ch in w)), len(words))
    return " ".join(words[:first]), words[first:]


def parse_quick(text: str, today: dt.date) -> QuickEntry | None:
    """``"Lò Văn Páo, 2/9/1945, nam, 010045678901"`` (the name first, then date of birth, gender
    and ID number or "không" in any order; commas, semicolons or spaces between; a phone number
    or an ethnicity may follow) checked with the usual validators. None when the text is a
    plain answer (one name); :class:`QuickEntryError` when parts are missing or wrong."""
    split = _split(text)
    if split is None:
        return None
    name_text, rest = split
    err = QuickEntryError()
    name = dob = gender = None
    ident: v.IdNumber | None = None
    id_text: str | None = None
    no_id = False
    phone: str | None = None
    ethnicity: int | None = None
    if not name_text or any(ch.isdigit() for ch in name_text):
        err.missing.append("full_name")
        if name_text:
            rest = [name_text, *rest]
    else:
        try:
            name = v.normalize_name(name_text)
        except InvalidAnswer as bad:
            err.wrong.append(("full_name", bad))
    for part in rest:
        folded = v.fold(part)
        if folded in NO_ID_WORDS and not no_id and id_text is None:
            no_id = True
            continue
        if gender is None:
            try:
                gender = v.parse_gender(part)
                continue
            except InvalidAnswer:
                pass
        digits = re.sub(r"[\s.\-]", "", part)
        if _ID_LIKE.match(part) and len(digits) in (9, 12) and id_text is None:
            id_text = part
            continue
        if dob is None and any(ch.isdigit() for ch in part):
            try:
                dob = v.parse_date_of_birth(part, today)
                continue
            except InvalidAnswer as bad:
                if bad.key != "error.date.format":  # a date, but an impossible one
                    err.wrong.append(("date_of_birth", bad))
                    dob = False  # type: ignore[assignment]  # named wrong, not missing
                    continue
        if phone is None and any(ch.isdigit() for ch in part):
            try:
                phone = v.parse_phone(part)
                continue
            except InvalidAnswer:
                pass
        if ethnicity is None and not any(ch.isdigit() for ch in part):
            try:
                found = v.match_ethnicity(part)
            except InvalidAnswer:
                found = []
            if len(found) == 1:
                ethnicity = found[0].code
                continue
        err.unknown.append(part)
    if dob is None:
        err.missing.append("date_of_birth")
    if gender is None:
        err.missing.append("gender")
    if id_text is None and not no_id:
        err.missing.append("id_number")
    if id_text is not None and dob and gender is not None:
        try:
            ident = v.parse_id_number(id_text, dob, gender)
        except InvalidAnswer as bad:
            err.wrong.append(("id_number", bad))
    if err.missing or err.wrong or err.unknown:
        raise err
    assert name is not None and dob and gender is not None
    return QuickEntry(name, dob, gender, ident, phone, ethnicity)


# --- the residents a volunteer helps -----------------------------------------------------------


def _helped(volunteer: Account):  # type: ignore[no-untyped-def]
    """Books with an ``assists`` row for the volunteer, in one of their communes."""
    return (
        select(HealthBook)
        .join(Assist, Assist.health_book_id == HealthBook.id)
        .join(
            VolunteerWard,
            (VolunteerWard.account_id == Assist.account_id)
            & (VolunteerWard.ward_code == HealthBook.ward_code),
        )
        .where(Assist.account_id == volunteer.id)
    )


async def residents(session: AsyncSession, volunteer: Account) -> list[HealthBook]:
    """Every resident the volunteer may act on now, by name (none when suspended)."""
    if custody.is_suspended(volunteer):
        return []
    rows = await session.scalars(_helped(volunteer).order_by(HealthBook.full_name, HealthBook.id))
    return list(rows)


def _id_digits(text: str) -> str | None:
    digits = re.sub(r"[\s.\-]", "", text)
    return digits if digits.isascii() and digits.isdigit() and len(digits) >= 3 else None


async def find(
    session: AsyncSession, volunteer: Account, query: str, today: dt.date
) -> list[HealthBook]:
    """The volunteer's residents matching ``query``: a date of birth, an ID number (whole, or its
    last digits as the masked ID shows them), or words of the name without accents."""
    books = await residents(session, volunteer)
    text = query.strip()
    try:
        dob = v.parse_date_of_birth(text, today) if any(c in text for c in "/-.") else None
    except InvalidAnswer:
        dob = None
    if dob is not None:
        return [b for b in books if b.date_of_birth == dob]
    digits = _id_digits(text)
    if digits is not None:
        if len(digits) == 8:  # 02091945: a date too
            with_date = [b for b in books if b.date_of_birth.strftime("%d%m%Y") == digits]
            if with_date:
                return with_date
        return [b for b in books if b.id_number and b.id_number.endswith(digits)]
    words = v.fold(text).split()
    if not words:
        return []
    return [b for b in books if all(w in v.fold(b.full_name).split() or
                                    w in v.fold(b.full_name) for w in words)]  # fmt: skip


@dataclass(frozen=True)
class Progress:
    """How far a volunteer's residents are: registered, with a place booked, vaccinated."""

    registered: int
    booked: int
    vaccinated: int


async def statuses(session: AsyncSession, book_ids: list[int]) -> dict[int, str]:
    """Each book's status: ``vaccinated`` (a dose recorded), ``booked`` (a place held),
    else ``registered``."""
    if not book_ids:
        return {}
    done = set(
        await session.scalars(
            select(Vaccination.health_book_id).where(Vaccination.health_book_id.in_(book_ids))
        )
    )
    booked = set(
        await session.scalars(
            select(Booking.health_book_id).where(
                Booking.health_book_id.in_(book_ids), Booking.status.in_(BOOKING_ACTIVE)
            )
        )
    )
    return {
        i: "vaccinated" if i in done else "booked" if i in booked else "registered"
        for i in book_ids
    }


async def progress(session: AsyncSession, volunteer: Account) -> Progress:
    """The counts over every resident the volunteer helps."""
    books = await residents(session, volunteer)
    states = await statuses(session, [b.id for b in books])
    values = list(states.values())
    return Progress(len(values), values.count("booked"), values.count("vaccinated"))


# --- a book registered already: a link request to its holder -----------------------------------


async def request_link(session: AsyncSession, volunteer: Account, book: HealthBook) -> Account:
    """Record that the volunteer asks the holder of ``book`` to let them help; the holder's
    account (to be told). ``link.no_holder`` when nobody holds it (a resident another volunteer
    registered: the commune health station sorts it out), ``link.not_your_commune`` when the
    book is outside the volunteer's communes, ``link.already`` when they help already."""
    if book.account_id is None:
        raise DomainError("link.no_holder")
    if book.ward_code not in await custody.volunteer_wards(session, volunteer):
        raise DomainError("link.not_your_commune")
    if await custody.access(session, volunteer, book) is not None:
        raise DomainError("link.already")
    holder = await session.get(Account, book.account_id)
    assert holder is not None
    await audit.record(session, volunteer, book, "link_requested", role="volunteer")
    return holder


async def accept_link(
    session: AsyncSession, holder: Account, book_id: int, volunteer_id: int
) -> tuple[HealthBook, Account]:
    """The holder of ``book_id`` lets the volunteer help: checked (the presser holds the book,
    the volunteer asked for it and is still active in its commune; callback data can be forged),
    then an ``assists`` row ``linked`` and a ``link_accepted`` entry. ``access.denied`` or
    ``link.expired`` otherwise."""
    found = await custody.require_book(session, holder, book_id)
    if found.capacity not in ("self", "relative"):
        raise DomainError("access.denied")
    book = found.book
    volunteer = await session.get(Account, volunteer_id)
    asked = await session.scalar(
        select(
            exists().where(
                AuditEntry.actor_id == volunteer_id,
                AuditEntry.health_book_id == book.id,
                AuditEntry.action == "link_requested",
            )
        )
    )
    if (
        volunteer is None
        or not asked
        or book.ward_code not in await custody.volunteer_wards(session, volunteer)
    ):
        raise DomainError("link.expired")
    if await session.get(Assist, (book.id, volunteer.id)) is None:
        session.add(Assist(health_book_id=book.id, account_id=volunteer.id, via="linked"))
        await audit.record(session, volunteer, book, "link_accepted", role="volunteer")
    await session.flush()
    return book, volunteer


# --- a resident registered already: the same person, a commune's residents, a transfer -------


async def adopt(session: AsyncSession, volunteer: Account, book: HealthBook) -> bool:
    """Let ``volunteer`` help the resident of ``book`` because they live in one of the
    volunteer's communes and nobody holds the book (a resident left without a volunteer when
    theirs left): an ``assists`` row ``commune`` and a ``link_accepted`` entry. False (nothing
    changed) when the book has a holder (their link request instead) or lies in another commune;
    True when the volunteer may act on it now (already did, or from now on)."""
    if book.account_id is not None or custody.is_suspended(volunteer):
        return False
    if book.ward_code not in await custody.volunteer_wards(session, volunteer):
        return False
    if await session.get(Assist, (book.id, volunteer.id)) is None:
        session.add(Assist(health_book_id=book.id, account_id=volunteer.id, via="commune"))
        await audit.record(session, volunteer, book, "link_accepted", role="volunteer")
        await session.flush()
    return True


async def same_person(
    session: AsyncSession, ward: int, full_name: str, date_of_birth: dt.date, *,
    skip: tuple[int, ...] = (),
) -> HealthBook | None:  # fmt: skip
    """A book in commune ``ward`` with the same name (without accents, spaces and case) and
    date of birth: the same person, perhaps, registered without an ID number (never make one
    person two); the oldest first."""
    wanted = " ".join(v.fold(full_name).split())
    rows = await session.scalars(
        select(HealthBook)
        .where(HealthBook.ward_code == ward, HealthBook.date_of_birth == date_of_birth)
        .order_by(HealthBook.id)
    )
    for book in rows:
        if book.id not in skip and " ".join(v.fold(book.full_name).split()) == wanted:
            return book
    return None


async def without_volunteer(session: AsyncSession, volunteer: Account) -> int:
    """How many residents ``volunteer`` helped now have nobody to act for them: no holder and
    no other active volunteer of their commune helping (after a removal or a suspension)."""
    count = 0
    rows = await session.scalars(
        select(HealthBook)
        .join(Assist, Assist.health_book_id == HealthBook.id)
        .where(Assist.account_id == volunteer.id, HealthBook.account_id.is_(None))
    )
    for book in rows:
        other = await custody.recipient_id(session, book)
        if other is None or other == volunteer.id:
            count += 1
    return count


@dataclass(frozen=True)
class Transfer:
    """What ``transfer`` did: rows moved, residents in communes the target does not serve,
    and books with a holder (who chose the first volunteer: a new request is theirs to
    accept)."""

    moved: int
    other_commune: int
    with_holder: int


async def transfer(session: AsyncSession, source: Account, target: Account) -> Transfer:
    """Move the residents ``source`` helps to ``target`` where ``target`` serves their commune
    (an ``assists`` row ``transfer`` each, a ``link_accepted`` entry by the target); the others
    stay as they are. ``roles.not_volunteer`` when the target serves no commune (or is
    suspended), ``roles.same_account`` when they are one account."""
    if source.id == target.id:
        raise DomainError("roles.same_account")
    wards = set(await custody.volunteer_wards(session, target))
    if not wards:
        raise DomainError("roles.not_volunteer")
    moved = other = held = 0
    rows = await session.execute(
        select(Assist, HealthBook)
        .join(HealthBook, HealthBook.id == Assist.health_book_id)
        .where(Assist.account_id == source.id)
        .order_by(HealthBook.id)
    )
    for link, book in rows.all():
        if book.account_id is not None:
            held += 1
            continue
        if book.ward_code not in wards:
            other += 1
            continue
        await session.delete(link)
        if await session.get(Assist, (book.id, target.id)) is None:
            session.add(Assist(health_book_id=book.id, account_id=target.id, via="transfer"))
            await audit.record(session, target, book, "link_accepted", role="volunteer")
        moved += 1
    await session.flush()
    return Transfer(moved, other, held)


__all__ = [
    "NO_ID_WORDS",
    "PAGE",
    "Progress",
    "QuickEntry",
    "QuickEntryError",
    "Transfer",
    "accept_link",
    "adopt",
    "find",
    "parse_quick",
    "progress",
    "request_link",
    "residents",
    "same_person",
    "statuses",
    "transfer",
    "without_volunteer",
]
