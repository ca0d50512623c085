"""Invite codes and the roles they give: volunteers of communes, staff of sites.

An admin makes an invite (``/invite`` in the chat, ``healthbook invite create``): the role
``volunteer`` bound to one or more communes (wards) of a province, or ``site_staff`` bound to a
site; ``uses`` people may join with it until it expires (``days``). A person sends
``/join CODE``: :func:`join` binds them (``volunteer_wards`` rows, or a ``staff_sites`` row) and
takes one use, atomically (two people racing for the last use: one wins).

The code is ten digits, shown as two groups of five (``48271 93051``): digits alone, because a
Vietnamese phone keyboard (Telex or VNI) turns letters, and digits typed after letters, into
accents; spaces, dashes and dots typed in it are ignored. It lives days and may have several
uses, hence ten digits where a /link code has eight: with a hundred invites alive, the limit
on wrong codes (:mod:`bot.link_guard`, 30 a minute for the whole bot) leaves a guesser about
one find in six years. Only a SHA-256 of the code is kept (as for /link codes).

Admins suspend (:func:`suspend`, the rights stop at once, see :mod:`models.custody` and
:func:`models.checkin.require_site_staff`), resume and remove volunteers and staff. Roles rank
``resident`` < ``volunteer`` < ``site_staff`` < ``admin``: an account's role is the highest its
bindings give (an admin stays admin). No messenger types here: the caller owns the transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import reference as ref
from models.accounts import digits_code, grouped
from models.checkin import grant_staff
from models.custody import is_suspended
from models.errors import DomainError
from models.lookups import get_site
from models.tables import Account, Assist, Invite, Site, StaffSite, VolunteerWard
from models.timeutil import as_aware

VOLUNTEER = "volunteer"
SITE_STAFF = "site_staff"
ADMIN = "admin"
RESIDENT = "resident"
ROLES = (VOLUNTEER, SITE_STAFF)
CODE_DIGITS = 10
DEFAULT_USES = 1
DEFAULT_DAYS = 7
MAX_USES = 500
MAX_DAYS = 90
MAX_WARDS = 20


def normalize_code(text: str) -> str | None:
    """The code a person typed (``48271 93051``, ``48271-93051``) as its ten ASCII digits, or
    None when it is not one."""
    return digits_code(text, CODE_DIGITS)


def format_code(code: str) -> str:
    """A code as shown: two groups of five digits."""
    return grouped(code)


def _hash(code: str) -> str:
    return hashlib.sha256(f"healthbook-invite:{code}".encode()).hexdigest()


# ---------------------------------------------------------------- making invites


@dataclass(frozen=True)
class Created:
    """A new invite and its code (given once: only its hash is kept)."""

    invite: Invite
    code: str


def check_uses(uses: int) -> int:
    """``uses`` if it is a number of uses an invite may have (``invite.bad_uses`` otherwise)."""
    if not 1 <= uses <= MAX_USES:
        raise DomainError("invite.bad_uses", max=MAX_USES)
    return uses


def check_days(days: int) -> int:
    """``days`` if it is a life an invite may have (``invite.bad_days`` otherwise)."""
    if not 1 <= days <= MAX_DAYS:
        raise DomainError("invite.bad_days", max=MAX_DAYS)
    return days


def check_wards(province: int, wards: Sequence[int]) -> list[int]:
    """The communes of an invite, without repeats: each one of ``province`` (``invite.no_wards``,
    ``invite.too_many_wards``, ``invite.ward_unknown`` otherwise)."""
    unique = list(dict.fromkeys(int(w) for w in wards))
    if not unique:
        raise DomainError("invite.no_wards")
    if len(unique) > MAX_WARDS:
        raise DomainError("invite.too_many_wards", max=MAX_WARDS)
    for ward in unique:
        if not ref.ward_in_province(ward, province):
            raise DomainError("invite.ward_unknown", ward=str(ward))
    return unique


async def create_invite(
    session: AsyncSession,
    *,
    role: str,
    now: dt.datetime,
    creator: Account | None = None,
    province: int | None = None,
    wards: Sequence[int] = (),
    site: Site | str | int | None = None,
    uses: int = DEFAULT_USES,
    days: int = DEFAULT_DAYS,
) -> Created:
    """A new invite: ``volunteer`` for ``wards`` of ``province``, or ``site_staff`` at ``site``,
    ``uses`` uses for ``days`` days. Everything is checked before anything is written."""
    if role not in ROLES:
        raise DomainError("invite.bad_role")
    check_uses(uses)
    check_days(days)
    site_id = None
    ward_codes: list[int] = []
    if role == VOLUNTEER:
        if province is None or not ref.is_province(province):
            raise DomainError("invite.ward_unknown", ward=str(province))
        ward_codes = check_wards(province, wards)
    else:
        if site is None:
            raise DomainError("invite.no_site")
        site_id = (await get_site(session, site)).id
        province = None
    while True:
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        taken = await session.scalar(select(exists().where(Invite.code_hash == _hash(code))))
        if not taken:
            break
    invite = Invite(
        code_hash=_hash(code),
        role=role,
        province_code=province,
        ward_codes=ward_codes,
        site_id=site_id,
        uses_left=uses,
        expires_at=now + dt.timedelta(days=days),
        created_by=creator.id if creator is not None else None,
        created_at=now,
    )
    session.add(invite)
    await session.flush()
    return Created(invite, code)


def status(invite: Invite, now: dt.datetime) -> str:
    """``active``, ``revoked``, ``expired`` or ``used_up``."""
    if invite.revoked_at is not None:
        return "revoked"
    if as_aware(invite.expires_at) <= now:
        return "expired"
    if invite.uses_left <= 0:
        return "used_up"
    return "active"


async def invites(session: AsyncSession, now: dt.datetime, *, every: bool = False) -> list[Invite]:
    """The invites still usable (``every``: all of them), newest first."""
    query = select(Invite).order_by(Invite.id.desc())
    if not every:
        query = query.where(
            Invite.revoked_at.is_(None), Invite.expires_at > now, Invite.uses_left > 0
        )
    return list(await session.scalars(query))


async def revoke(session: AsyncSession, invite_id: int, now: dt.datetime) -> Invite:
    """Make an invite unusable from now on (``invite.not_found``; revoking twice is harmless).
    Those who joined with it keep their role."""
    invite = await session.get(Invite, invite_id)
    if invite is None:
        raise DomainError("invite.not_found", invite=str(invite_id))
    if invite.revoked_at is None:
        invite.revoked_at = now
        await session.flush()
    return invite


# ---------------------------------------------------------------- joining


@dataclass(frozen=True)
class Joined:
    """An account that joined with an invite: its role now, and what it was bound to."""

    invite: Invite
    role: str
    wards: list[int]
    site: Site | None


async def find_invite(session: AsyncSession, code: str) -> Invite | None:
    """The invite a typed code names, whatever its state (None: not an invite code)."""
    digits = normalize_code(code)
    if digits is None:
        return None
    return await session.scalar(select(Invite).where(Invite.code_hash == _hash(digits)))


def _refusal(invite: Invite, now: dt.datetime) -> DomainError | None:
    state = status(invite, now)
    return None if state == "active" else DomainError(f"invite.{state}")


async def join(session: AsyncSession, account: Account, code: str, now: dt.datetime) -> Joined:
    """Give ``account`` (the person's primary account) the invite's role and communes or site,
    taking one use. Refused, changing nothing: ``invite.unknown``, ``invite.expired``,
    ``invite.used_up``, ``invite.revoked``, ``invite.suspended`` (the account's rights are
    suspended: an admin resumes them), ``invite.already`` (it gives nothing new)."""
    invite = await find_invite(session, code)
    if invite is None:
        raise DomainError("invite.unknown")
    refused = _refusal(invite, now)
    if refused is not None:
        raise refused
    if is_suspended(account):
        raise DomainError("invite.suspended")
    site = None
    new_wards: list[int] = []
    if invite.role == VOLUNTEER:
        held = set(
            await session.scalars(
                select(VolunteerWard.ward_code).where(VolunteerWard.account_id == account.id)
            )
        )
        new_wards = [w for w in invite.ward_codes if w not in held]
        if not new_wards:
            raise DomainError("invite.already")
    else:
        assert invite.site_id is not None
        site = await session.get(Site, invite.site_id)
        if site is None:
            raise DomainError("invite.unknown")
        if await session.get(StaffSite, (account.id, site.id)) is not None:
            raise DomainError("invite.already")
    # one use, across processes too: only an update that still finds a use left takes it
    taken = await session.execute(
        update(Invite)
        .where(
            Invite.id == invite.id,
            Invite.uses_left > 0,
            Invite.revoked_at.is_(None),
            Invite.expires_at > now,
        )
        .values(uses_left=Invite.uses_left - 1)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:  # the last use went to someone else this very moment
        await session.refresh(invite)
        raise _refusal(invite, now) or DomainError("invite.used_up")
    await session.refresh(invite, ["uses_left"])
    if invite.role == VOLUNTEER:
        assert invite.province_code is not None
        for ward in new_wards:
            session.add(
                VolunteerWard(
                    account_id=account.id,
                    ward_code=ward,
                    province_code=invite.province_code,
                    invite_id=invite.id,
                    created_at=now,
                )
            )
        if account.role == RESIDENT:
            account.role = VOLUNTEER
        await session.flush()
    else:
        assert site is not None
        await grant_staff(session, account, site)
    wards = await _wards_of(session, account.id)
    return Joined(invite, account.role, wards, site)


# ---------------------------------------------------------------- volunteers and staff


async def _wards_of(session: AsyncSession, account_id: int) -> list[int]:
    return list(
        await session.scalars(
            select(VolunteerWard.ward_code)
            .where(VolunteerWard.account_id == account_id)
            .order_by(VolunteerWard.ward_code)
        )
    )


async def _settle_role(session: AsyncSession, account: Account) -> None:
    """The highest role the account's bindings give (an admin stays admin); an account left
    with no volunteer or staff rights is no longer suspended (nothing to suspend)."""
    if account.role == ADMIN:
        return
    if await session.scalar(select(exists().where(StaffSite.account_id == account.id))):
        account.role = SITE_STAFF
    elif await session.scalar(select(exists().where(VolunteerWard.account_id == account.id))):
        account.role = VOLUNTEER
    else:
        account.role = RESIDENT
        account.suspended_at = None
    await session.flush()


async def _has_rights(session: AsyncSession, account: Account) -> bool:
    bound = await session.scalar(
        select(
            exists().where(VolunteerWard.account_id == account.id)
            | exists().where(StaffSite.account_id == account.id)
        )
    )
    return bool(bound)


async def suspend(session: AsyncSession, account: Account, now: dt.datetime) -> bool:
    """Suspend the account's volunteer and staff rights (whether it changed anything):
    ``roles.is_admin`` for an admin (remove the admin first), ``roles.nothing_to_suspend`` for
    an account with neither communes nor sites."""
    if account.role == ADMIN:
        raise DomainError("roles.is_admin")
    if not await _has_rights(session, account):
        raise DomainError("roles.nothing_to_suspend")
    if account.suspended_at is not None:
        return False
    account.suspended_at = now
    await session.flush()
    return True


async def resume(session: AsyncSession, account: Account) -> bool:
    """Give a suspended account its rights back (whether it was suspended)."""
    if account.suspended_at is None:
        return False
    account.suspended_at = None
    await session.flush()
    return True


async def remove(session: AsyncSession, account: Account) -> int:
    """Remove the account as a volunteer: its communes go (the residents it registered stay,
    without it); its role falls back. The number of communes removed (``roles.not_volunteer``
    when none)."""
    removed = await session.execute(
        delete(VolunteerWard).where(VolunteerWard.account_id == account.id)
    )
    if not removed.rowcount:
        raise DomainError("roles.not_volunteer")
    await _settle_role(session, account)
    return int(removed.rowcount)


async def remove_staff(
    session: AsyncSession, account: Account, site: Site | str | int | None = None
) -> int:
    """Remove the account as staff of ``site`` (None: of every site); its role falls back. The
    number of sites removed (``roles.not_staff`` when none)."""
    query = delete(StaffSite).where(StaffSite.account_id == account.id)
    if site is not None:
        query = query.where(StaffSite.site_id == (await get_site(session, site)).id)
    removed = await session.execute(query)
    if not removed.rowcount:
        raise DomainError("roles.not_staff")
    await _settle_role(session, account)
    return int(removed.rowcount)


async def require_volunteer(session: AsyncSession, account: Account | None) -> list[int]:
    """The communes the account may act in as a volunteer; ``roles.not_volunteer`` or
    ``roles.suspended`` otherwise."""
    if account is None:
        raise DomainError("roles.not_volunteer")
    wards = await _wards_of(session, account.id)
    if not wards:
        raise DomainError("roles.not_volunteer")
    if is_suspended(account):
        raise DomainError("roles.suspended")
    return wards


@dataclass(frozen=True)
class Volunteer:
    """A volunteer as admins see them: their account, communes, whether suspended, and how
    many residents they registered."""

    account: Account
    wards: list[int]
    registered: int

    @property
    def suspended(self) -> bool:
        """Whether their rights are suspended."""
        return self.account.suspended_at is not None


async def volunteers(session: AsyncSession) -> list[Volunteer]:
    """Every account bound to a commune, by channel and id."""
    rows = await session.execute(
        select(Account, VolunteerWard.ward_code)
        .join(VolunteerWard, VolunteerWard.account_id == Account.id)
        .order_by(Account.channel, Account.external_id, VolunteerWard.ward_code)
    )
    wards: dict[int, list[int]] = {}
    accounts: dict[int, Account] = {}
    for account, ward in rows:
        accounts[account.id] = account
        wards.setdefault(account.id, []).append(ward)
    counts = (
        dict(
            (
                await session.execute(
                    select(Assist.account_id, func.count())
                    .where(Assist.account_id.in_(list(accounts)), Assist.via == "registered")
                    .group_by(Assist.account_id)
                )
            ).all()
        )
        if accounts
        else {}
    )
    return [Volunteer(accounts[i], wards[i], int(counts.get(i, 0))) for i in accounts]


@dataclass(frozen=True)
class Staff:
    """A staff member as admins see them: their account and the codes of their sites."""

    account: Account
    sites: list[str]

    @property
    def suspended(self) -> bool:
        """Whether their rights are suspended."""
        return self.account.suspended_at is not None


async def staff(session: AsyncSession) -> list[Staff]:
    """Every account bound to a site, by channel and id."""
    rows = await session.execute(
        select(Account, Site.code)
        .join(StaffSite, StaffSite.account_id == Account.id)
        .join(Site, and_(Site.id == StaffSite.site_id))
        .order_by(Account.channel, Account.external_id, Site.code)
    )
    found: dict[int, Staff] = {}
    for account, code in rows:
        found.setdefault(account.id, Staff(account, [])).sites.append(code)
    return list(found.values())


async def staff_sites(session: AsyncSession, account: Account) -> list[Site]:
    """The sites an account is staff of, by name."""
    return list(
        await session.scalars(
            select(Site)
            .join(StaffSite, StaffSite.site_id == Site.id)
            .where(StaffSite.account_id == account.id)
            .order_by(Site.name)
        )
    )


__all__ = [
    "CODE_DIGITS",
    "DEFAULT_DAYS",
    "DEFAULT_USES",
    "MAX_DAYS",
    "MAX_USES",
    "ROLES",
    "Created",
    "Joined",
    "Staff",
    "Volunteer",
    "check_days",
    "check_uses",
    "check_wards",
    "create_invite",
    "find_invite",
    "format_code",
    "invites",
    "join",
    "normalize_code",
    "remove",
    "remove_staff",
    "require_volunteer",
    "resume",
    "revoke",
    "staff",
    "staff_sites",
    "status",
    "suspend",
    "volunteers",
]
