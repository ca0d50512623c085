"""Who may act on a health book, and who hears about it.

A health book is reached by:
- its **holder**: the account it hangs off (``health_books.account_id``): the person themselves
  (``relation`` ``self``) or the relative who registered them (``father``, ``mother``, ``spouse``,
  ``child``, ``other``);
- a **volunteer** helping the resident (a row in ``assists``), while the volunteer is not
  suspended and the resident lives in one of the volunteer's communes (``volunteer_wards``).

Nobody else: not an admin (they work from the command line and the audit log), not a volunteer
of another commune, not a relative of another family. Every handler that acts on a book named by
a command, a typed number or callback data goes through :func:`require_book` (callback data can
be forged). Whatever is done for another person is written to the audit log
(:mod:`models.audit`) by the domain function that does it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.errors import DomainError
from models.tables import Account, Assist, HealthBook, VolunteerWard

#: who a relative is to the account holder (``health_books.relation``)
RELATIONS: tuple[str, ...] = ("father", "mother", "spouse", "child", "other")
#: whose book a draft is (``drafts.subject``)
SUBJECTS: tuple[str, ...] = ("self", "relative", "assisted")
#: ``relation`` of a book a volunteer registered for a resident without an account
ASSISTED = "assisted"
#: how consent to collect the data was given (``health_books.consent_kind``)
CONSENT_KINDS: tuple[str, ...] = ("own", "relative", "guardian", "verbal")

Capacity = Literal["self", "relative", "volunteer"]


@dataclass(frozen=True)
class Access:
    """A book someone may act on, and in what capacity: ``self`` (their own), ``relative`` (they
    hold it for a relative), ``volunteer`` (they help the resident)."""

    book: HealthBook
    capacity: Capacity

    @property
    def for_another(self) -> bool:
        """Whether acting on it is acting for another person (audited)."""
        return self.capacity != "self"


def is_suspended(account: Account | None) -> bool:
    """Whether an admin suspended the account's volunteer and staff rights."""
    return account is not None and account.suspended_at is not None


async def volunteer_wards(session: AsyncSession, account: Account | None) -> list[int]:
    """The communes (ward codes) the account works in as a volunteer; none when it is not a
    volunteer or is suspended."""
    if account is None or is_suspended(account):
        return []
    rows = await session.scalars(
        select(VolunteerWard.ward_code)
        .where(VolunteerWard.account_id == account.id)
        .order_by(VolunteerWard.ward_code)
    )
    return list(rows)


async def is_volunteer(session: AsyncSession, account: Account | None) -> bool:
    """Whether the account may register and help residents now (bound to a commune, not
    suspended)."""
    if account is None or is_suspended(account):
        return False
    found = await session.scalar(
        select(exists().where(VolunteerWard.account_id == account.id))
    )
    return bool(found)


async def access(session: AsyncSession, actor: Account | None, book: HealthBook) -> Access | None:
    """In what capacity ``actor`` may act on ``book``, or None."""
    if actor is None:
        return None
    if book.account_id is not None and book.account_id == actor.id:
        return Access(book, "self" if book.relation == "self" else "relative")
    if is_suspended(actor):
        return None
    helping = await session.scalar(
        select(exists().where(Assist.health_book_id == book.id, Assist.account_id == actor.id))
    )
    if not helping:
        return None
    in_ward = await session.scalar(
        select(
            exists().where(
                VolunteerWard.account_id == actor.id, VolunteerWard.ward_code == book.ward_code
            )
        )
    )
    return Access(book, "volunteer") if in_ward else None


async def require_book(session: AsyncSession, actor: Account | None, book_id: int) -> Access:
    """The book ``book_id`` and the capacity ``actor`` acts on it in; ``access.denied``
    otherwise (the same refusal whether the book exists or not: ids are not probed)."""
    book = await session.get(HealthBook, book_id)
    found = await access(session, actor, book) if book is not None else None
    if found is None:
        raise DomainError("access.denied")
    return found


async def held_books(session: AsyncSession, account: Account) -> list[HealthBook]:
    """The books an account holds: its own first, then its relatives' in the order added."""
    rows = await session.scalars(
        select(HealthBook)
        .where(HealthBook.account_id == account.id)
        .order_by((HealthBook.relation != "self"), HealthBook.id)
    )
    return list(rows)


async def recipient_id(session: AsyncSession, book: HealthBook) -> int | None:
    """The account told about a book (reminders, offers, after-care): its holder; for a
    resident without an account, the volunteer who helps them (the most recent one still
    active in their commune); None when nobody can be."""
    if book.account_id is not None:
        return book.account_id
    rows = await session.execute(
        select(Account)
        .join(Assist, Assist.account_id == Account.id)
        .join(
            VolunteerWard,
            (VolunteerWard.account_id == Account.id)
            & (VolunteerWard.ward_code == book.ward_code),
        )
        .where(Assist.health_book_id == book.id, Account.suspended_at.is_(None))
        .order_by(Assist.created_at.desc())
        .limit(1)
    )
    row = rows.first()
    return row[0].id if row is not None else None


async def recipient_of(session: AsyncSession, book_id: int) -> int | None:
    """:func:`recipient_id` of the book ``book_id`` (None when it is gone)."""
    book = await session.get(HealthBook, book_id)
    return await recipient_id(session, book) if book is not None else None


__all__ = [
    "ASSISTED",
    "CONSENT_KINDS",
    "RELATIONS",
    "SUBJECTS",
    "Access",
    "Capacity",
    "access",
    "held_books",
    "is_suspended",
    "is_volunteer",
    "recipient_id",
    "recipient_of",
    "require_book",
    "volunteer_wards",
]
