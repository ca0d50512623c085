"""The audit trail: everything done for another person (created, edited, booked, cancelled,
checked in, vaccinated, deleted, handed over…), who did it in which role, for whose book, when,
and which fields changed: their names, never their values. Written in the transaction of the
action itself, so an action and its entry land together or not at all."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.tables import Account, AuditEntry, HealthBook, utcnow

#: what can be recorded (``audit_log.action``)
ACTIONS: tuple[str, ...] = (
    "created",
    "edited",
    "booked",
    "rescheduled",
    "cancelled",
    "waitlisted",
    "checked_in",
    "vaccinated",
    "not_vaccinated",
    "deleted",
    "handover_code",
    "handed_over",
    "link_requested",
    "link_accepted",
    "ticket",
)
#: the role an entry names (``audit_log.actor_role``)
ROLES: tuple[str, ...] = ("relative", "volunteer", "site_staff", "admin")


async def record(
    session: AsyncSession,
    actor: Account | None,
    book: HealthBook | int,
    action: str,
    *,
    role: str,
    fields: Iterable[str] = (),
    ward_code: int | None = None,
    at: dt.datetime | None = None,
) -> AuditEntry:
    """Write one entry. ``fields``: the names of what changed (never values)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    if role not in ROLES:
        raise ValueError(f"unknown audit role {role!r}")
    book_id = book.id if isinstance(book, HealthBook) else book
    if ward_code is None and isinstance(book, HealthBook):
        ward_code = book.ward_code
    entry = AuditEntry(
        at=at or utcnow(),
        actor_id=actor.id if actor is not None else None,
        actor_role=role,
        health_book_id=book_id,
        action=action,
        fields=sorted(set(fields)),
        ward_code=ward_code,
    )
    session.add(entry)
    await session.flush()
    return entry


def changed_fields(before: dict[str, object], after: dict[str, object]) -> list[str]:
    """The names of the answers that differ between two versions of a book."""
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


@dataclass(frozen=True)
class Filters:
    """What an admin asks of the log: any of actor, book, commune, action, period."""

    actor_id: int | None = None
    health_book_id: int | None = None
    ward_code: int | None = None
    action: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def _query(f: Filters):  # type: ignore[no-untyped-def]
    stmt = select(AuditEntry)
    if f.actor_id is not None:
        stmt = stmt.where(AuditEntry.actor_id == f.actor_id)
    if f.health_book_id is not None:
        stmt = stmt.where(AuditEntry.health_book_id == f.health_book_id)
    if f.ward_code is not None:
        stmt = stmt.where(AuditEntry.ward_code == f.ward_code)
    if f.action is not None:
        stmt = stmt.where(AuditEntry.action == f.action)
    if f.since is not None:
        stmt = stmt.where(AuditEntry.at >= f.since)
    if f.until is not None:
        stmt = stmt.where(AuditEntry.at < f.until)
    return stmt


async def entries(
    session: AsyncSession, f: Filters = Filters(), *, limit: int = 50
) -> list[AuditEntry]:
    """The newest entries matching ``f``, newest first."""
    rows = await session.scalars(
        _query(f).order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)
    )
    return list(rows)


async def stream(
    session: AsyncSession, f: Filters = Filters(), *, batch: int = 1000
) -> AsyncIterator[AuditEntry]:
    """Every entry matching ``f``, oldest first, read in batches (an export's memory does not
    grow with the log)."""
    last = 0
    while True:
        rows = list(
            await session.scalars(
                _query(f).where(AuditEntry.id > last).order_by(AuditEntry.id).limit(batch)
            )
        )
        for row in rows:
            yield row
        if len(rows) < batch:
            return
        last = rows[-1].id
        session.expunge_all()


async def of_book(session: AsyncSession, book_id: int, *, limit: int = 50) -> list[AuditEntry]:
    """Who acted on a book, newest first (shown to its owner in /mydata)."""
    return await entries(session, Filters(health_book_id=book_id), limit=limit)


__all__ = [
    "ACTIONS",
    "ROLES",
    "Filters",
    "changed_fields",
    "entries",
    "of_book",
    "record",
    "stream",
]
