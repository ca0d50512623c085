"""Campaigns, sites and health books found by code or id, and who may handle a health book."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.errors import DomainError
from models.tables import Account, Campaign, HealthBook, Site


async def _by_ref(session: AsyncSession, model: Any, ref: Any, what: str) -> Any:
    """A row given as itself, its code or its id; ``<what>.not_found`` otherwise."""
    if isinstance(ref, model):
        return ref
    if isinstance(ref, int):
        found = await session.get(model, ref)
    else:
        found = await session.scalar(select(model).where(model.code == ref))
    if found is None:
        raise DomainError(f"{what}.not_found", **{what: str(ref)})
    return found


async def get_campaign(session: AsyncSession, ref: Campaign | str | int) -> Campaign:
    """A campaign given as itself, its code or its id; ``campaign.not_found`` otherwise."""
    return await _by_ref(session, Campaign, ref, "campaign")  # type: ignore[no-any-return]


async def get_site(session: AsyncSession, ref: Site | str | int) -> Site:
    """A site given as itself, its code or its id; ``site.not_found`` otherwise."""
    return await _by_ref(session, Site, ref, "site")  # type: ignore[no-any-return]


async def book_or_error(session: AsyncSession, book_id: int) -> HealthBook:
    book = await session.get(HealthBook, book_id)
    if book is None:
        raise DomainError("booking.book_not_found")
    return book


def may_act_for(owner: Account | HealthBook, book: HealthBook) -> bool:
    """A health book is handled by its account (the holder and relatives they registered),
    or by an admin."""
    if isinstance(owner, HealthBook):
        return owner.id == book.id
    return owner.id == book.account_id or owner.role == "admin"
