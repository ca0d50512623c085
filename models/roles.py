"""Roles of accounts: ``resident`` (everyone), ``site_staff`` (bound to sites, see
:mod:`models.checkin`), ``admin`` (the province's health department: broadcasts, and staff rights
at every site). Granted by an operator on the command line, never from a chat."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.checkin import staff_external_id
from models.healthbook import ensure_account
from models.tables import Account

ADMIN = "admin"


def is_admin(account: Account | None) -> bool:
    """Whether the account may use the admins' commands (/broadcast)."""
    return account is not None and account.role == ADMIN


async def grant_admin(session: AsyncSession, channel: str, external_id: str) -> Account:
    """Make the account ``(channel, external_id)`` an admin (created if the person never wrote
    yet; the id strictly checked first, see :func:`~models.checkin.staff_external_id`).
    Idempotent; the sites a staff member was bound to stay bound."""
    external_id = staff_external_id(channel, external_id)
    account = await ensure_account(session, channel, external_id)
    account.role = ADMIN
    await session.flush()
    return account


async def admins(session: AsyncSession) -> list[Account]:
    """Every admin account, by channel and id."""
    return list(
        await session.scalars(
            select(Account)
            .where(Account.role == ADMIN)
            .order_by(Account.channel, Account.external_id)
        )
    )


__all__ = ["ADMIN", "admins", "grant_admin", "is_admin"]
