"""Roles of accounts: ``resident`` (everyone), ``volunteer`` (bound to communes, see
:mod:`models.invites`), ``site_staff`` (bound to sites, see :mod:`models.checkin`), ``admin``
(the province's health department: broadcasts, invites, and staff rights at every site).
Admins are made by an operator on the command line (``healthbook admin add``) or listed in the
settings (``[roles] admins``: made admins when the bot starts, and honoured at once by
:func:`is_admin`); never from a chat."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.checkin import staff_external_id
from models.errors import DomainError
from models.healthbook import ensure_account
from models.tables import Account, StaffSite, VolunteerWard

ADMIN = "admin"


def account_key(account: Account) -> str:
    """An account as the settings list it: ``telegram:123``, ``zalo:abc``."""
    return f"{account.channel}:{account.external_id}"


def is_admin(account: Account | None, listed: Collection[str] = ()) -> bool:
    """Whether the account may use the admins' commands (/broadcast, /invite): its role, or
    its messenger account among ``listed`` (the settings' ``[roles] admins``)."""
    if account is None:
        return False
    return account.role == ADMIN or (bool(listed) and account_key(account) in listed)


async def grant_listed(session: AsyncSession, listed: Collection[str]) -> list[Account]:
    """Make every account of ``listed`` (``channel:id``, as the settings checked them) an
    admin; the accounts that were not yet."""
    granted = []
    for key in listed:
        channel, _, external_id = key.partition(":")
        found = await session.scalar(
            select(Account).where(Account.channel == channel, Account.external_id == external_id)
        )
        if found is None or found.role != ADMIN:
            granted.append(await grant_admin(session, channel, external_id))
    return granted


async def revoke_admin(session: AsyncSession, channel: str, external_id: str) -> Account:
    """Take the admin role from ``(channel, external_id)``: back to staff or volunteer when
    still bound to a site or commune, else resident (``roles.not_admin`` when it was none)."""
    external_id = staff_external_id(channel, external_id)
    account = await session.scalar(
        select(Account).where(Account.channel == channel, Account.external_id == external_id)
    )
    if account is None or account.role != ADMIN:
        raise DomainError("roles.not_admin")
    if await session.scalar(select(exists().where(StaffSite.account_id == account.id))):
        account.role = "site_staff"
    elif await session.scalar(select(exists().where(VolunteerWard.account_id == account.id))):
        account.role = "volunteer"
    else:
        account.role = "resident"
    await session.flush()
    return account


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


__all__ = [
    "ADMIN",
    "account_key",
    "admins",
    "grant_admin",
    "grant_listed",
    "is_admin",
    "revoke_admin",
]
