"""Acting on someone else's health book: the audit entry of what was done for them, whose book a
message is about, and deleting a relative's or an assisted resident's record.

What is done for another person (booked, cancelled, rescheduled, waitlisted, deleted…) is written
to the audit log (:mod:`models.audit`) in the transaction of the action itself, with the role
the actor acted in (``relative`` for a book they hold, ``volunteer`` for a resident they help).
Nothing is written for one's own book.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import audit, custody
from models import healthbook as hb
from models.booking import release_book
from models.errors import DomainError
from models.reference import admin_units
from models.tables import (
    Account,
    Assist,
    AuditEntry,
    Booking,
    BookingDraft,
    Draft,
    HandoverCode,
    HealthBook,
    OutboxMessage,
    ParkedDraft,
    Reaction,
    Vaccination,
    WaitlistEntry,
    utcnow,
)

#: the audit role of each capacity acting for another person
ROLE_OF: dict[str, str] = {"relative": "relative", "volunteer": "volunteer"}


def staff_role(staff: Account) -> str:
    """The audit role of someone acting at a site: ``admin`` or ``site_staff``."""
    return "admin" if staff.role == "admin" else "site_staff"


async def note(
    session: AsyncSession,
    actor: Account | None,
    book: HealthBook,
    action: str,
    *,
    fields: Iterable[str] = (),
    found: custody.Access | None = None,
) -> AuditEntry | None:
    """Write the audit entry of ``action`` done by ``actor`` on ``book`` when it was done for
    another person (as their relative or their volunteer); nothing for one's own book. ``found``:
    the access already checked (else it is looked up)."""
    if found is None:
        found = await custody.access(session, actor, book)
    if found is None or not found.for_another:
        return None
    return await audit.record(
        session, actor, book, action, role=ROLE_OF[found.capacity], fields=fields
    )


def is_other(book: HealthBook, account: Account | None) -> bool:
    """Whether ``book`` is someone else's than ``account``'s own (a relative's, or a resident
    the account helps): what the messages about it must say by name."""
    return account is None or book.account_id != account.id or book.relation != "self"


async def delete_book(
    session: AsyncSession, actor: Account, book_id: int, *, now: dt.datetime | None = None
) -> int:
    """Delete a relative's book (its holder) or the record of a resident a volunteer helps
    who has no account (a book with a holder is only the holder's to delete), with everything
    hanging off it (bookings, waitlist, doses, reminders…); their booked places are given back
    first. One's own book is not deleted here (``/delete`` erases the whole
    account): ``records.delete_own``. Anyone else: ``access.denied``. Returns the book's id;
    the ``deleted`` audit entry is written in the same transaction."""
    found = await custody.require_book(session, actor, book_id)
    if found.capacity == "self":
        raise DomainError("records.delete_own")
    if found.capacity == "volunteer" and found.book.account_id is not None:
        raise DomainError("access.denied")  # a book with a holder: only they delete it
    book = found.book
    await audit.record(
        session, actor, book, "deleted", role=ROLE_OF[found.capacity], fields=["health_book"]
    )
    await erase_book(session, book, now or utcnow())
    return book_id


#: what hangs off a health book by its ``health_book_id``, erased with it (children first)
_OF_BOOK = (Reaction, Vaccination, WaitlistEntry, Booking, BookingDraft, Assist, HandoverCode)


async def erase_book(session: AsyncSession, book: HealthBook, now: dt.datetime) -> None:
    """Erase one health book completely, whoever's it is: its booked and held places given
    back first (a cascade would not), then its reminders and notices, after-care answers,
    doses, waitlist entries, bookings, bookings being made for it, volunteers' assists,
    hand-over codes, and every draft editing it (in progress or set aside, anyone's). The one
    place this is done: deleting a relative's book (``/family``), a resident's record, and
    erasing an account (``/delete``). The caller checks access and writes the audit entry
    (before: it needs the book); its entries stay (ids are never reused)."""
    await release_book(session, book.id, now)
    await session.execute(
        delete(OutboxMessage)
        .where(
            (OutboxMessage.health_book_id == book.id)
            | OutboxMessage.booking_id.in_(
                select(Booking.id).where(Booking.health_book_id == book.id)
            )
        )
        .execution_options(synchronize_session=False)
    )
    for table in _OF_BOOK:
        await session.execute(
            delete(table)
            .where(table.health_book_id == book.id)
            .execution_options(synchronize_session=False)
        )
    known = session.info.setdefault("drafts", {})
    for draft in (await session.scalars(select(Draft).where(Draft.book_id == book.id))).all():
        await session.delete(draft)  # an edit of it in progress: nothing left to save it to
        known[draft.account_id] = None
    await session.execute(
        delete(ParkedDraft)
        .where(ParkedDraft.book_id == book.id)
        .execution_options(synchronize_session=False)
    )
    await session.flush()
    await session.execute(
        delete(HealthBook)
        .where(HealthBook.id == book.id)
        .execution_options(synchronize_session=False)
    )
    if book in session:
        session.expunge(book)


async def trail_of_books(
    session: AsyncSession, books: Iterable[HealthBook], t: object, *, reader: Account | None = None
) -> list[dict[str, object]]:
    """Who acted on these books (for /mydata): per entry, whose book, when, what, in which role
    and commune, which fields; the actor by role and commune, never by their messenger id.
    ``reader``: what they did themselves (on their relatives' books) is left out."""
    wards = admin_units().wards
    out: list[dict[str, object]] = []
    for book in books:
        for e in reversed(await audit.of_book(session, book.id, limit=200)):
            if reader is not None and e.actor_id == reader.id:
                continue  # their own doing, not someone else's for them
            ward = wards.get(e.ward_code) if e.ward_code is not None else None
            out.append(
                {
                    "health_book": book.full_name,
                    "at": hb._moment(e.at),
                    "action": hb._named(e.action, hb._by_key(t, "audit.action")),  # type: ignore[arg-type]
                    "by": {
                        "role": hb._named(e.actor_role, hb._by_key(t, "mydata.role")),  # type: ignore[arg-type]
                        "commune": ward[0] if ward else None,
                    },
                    "fields": list(e.fields or []),
                }
            )
    return out


__all__ = [
    "ROLE_OF",
    "delete_book",
    "erase_book",
    "is_other",
    "note",
    "staff_role",
    "trail_of_books",
]
