"""Agencies of the province and their staff.

Agencies form a tree (:class:`~models.tables.Agency`): province departments (sở, ban, ngành),
commune people's committees, schools, hospitals, businesses, and their sub-units, each with a
code, a parent, an expected staff count and one or more heads (by messenger account). A
subtree is the agencies whose ``path`` starts with its root's: ``/1/5/`` holds ``/1/5/23/``.

Staff join their agency with ``/agency CODE`` (one at a time; moving closes the old membership
and opens the new one, both dated). A head sees and removes the members of their own agency,
and reads the reports of its subtree. No messenger types here: the caller owns the transaction.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.tables import Account, Agency, AgencyHead, AgencyMember

#: the kinds of agency (the CSV's ``kind`` column)
KINDS = ("department", "commune", "school", "hospital", "business", "unit", "other")
#: an agency code: letters, digits, ``-``, ``_`` and ``.``, up to 32 (the CSV's and /agency's)
CODE_MAX = 32


def normalize_code(text: str) -> str:
    """An agency code as stored: trimmed, upper case; ValueError when it cannot be one."""
    code = text.strip().upper()
    if not code or len(code) > CODE_MAX or not all(c.isascii() and (c.isalnum() or c in "-_.")
                                                     for c in code):
        raise ValueError("an agency code is letters, digits, - _ or ., e.g. SYT or UBND-XA-SAPA")
    return code


def in_subtree(agency: Agency | str, root: Agency | str) -> bool:
    """Whether ``agency`` is ``root`` or one of its sub-units (by their paths)."""
    path = agency if isinstance(agency, str) else agency.path
    prefix = root if isinstance(root, str) else root.path
    return path.startswith(prefix)


async def by_code(session: AsyncSession, code: str) -> Agency | None:
    """The agency of a code (as typed: normalized first), or None."""
    try:
        code = normalize_code(code)
    except ValueError:
        return None
    return await session.scalar(select(Agency).where(Agency.code == code))


async def headed(session: AsyncSession, account: Account | None) -> list[Agency]:
    """The agencies an account heads, by code (none for no account)."""
    if account is None:
        return []
    return list(
        await session.scalars(
            select(Agency)
            .join(AgencyHead, AgencyHead.agency_id == Agency.id)
            .where(AgencyHead.account_id == account.id)
            .order_by(Agency.code)
        )
    )


async def may_read(session: AsyncSession, account: Account | None, agency: Agency) -> bool:
    """Whether an account heads ``agency`` or one of the agencies above it."""
    return any(in_subtree(agency, root) for root in await headed(session, account))


async def membership(session: AsyncSession, account_id: int) -> AgencyMember | None:
    """An account's open membership (the agency it is staff of now), or None."""
    return await session.scalar(
        select(AgencyMember).where(
            AgencyMember.account_id == account_id, AgencyMember.left_at.is_(None)
        )
    )
