"""One person, several messengers: /link codes, linked accounts and where messages go.

A person's data (health book, bookings, drafts, consents, language, staff role) hang off one
account, the *primary*; an account joined with a /link code points at it (``linked_to``), and
:func:`models.healthbook.find_account` gives the primary for either, so every handler works on
the person's data unchanged. Links never chain: ``linked_to`` always names a primary.

Where messages go (``reply_via`` on the primary, see :func:`models.healthbook.reply_address`):
the account the person used last, unless they chose one with "Send my messages here". A
choice is marked on the chosen account itself, by its ``reply_via`` pointing at itself (on
the primary: the primary's ``reply_via`` pointing at itself); :func:`note_used` leaves a
chosen account alone. No column of its own: the two existing ones say it.

The code is eight digits: typed like a phone number on any phone keyboard, no letters whose
case or shape (0/O, 1/l) can be mistaken. Brute force meets a space of 10⁸, a life of ten
minutes, one use, five wrong codes per account per fifteen minutes (here, on the account's
row) and, in memory for the whole process, thirty a minute and five per messenger id per
fifteen minutes that /delete does not reset (:mod:`bot.link_guard`, where the arithmetic is);
and the account that made the code is told when it is used, with a button to undo it. A
code typed on an account that holds data is used only once its typist says yes
(:func:`check_link_code`, then :func:`redeem_checked`). Only a SHA-256 of the code is
stored (a database reader cannot use a live code at a glance; the database holds everything
the code would give anyway). No messenger types here: the caller owns the transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import and_, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import healthbook as hb
from models.errors import DomainError
from models.tables import (
    Account,
    AgencyHead,
    AgencyMember,
    BookingDraft,
    Consent,
    Draft,
    LinkCode,
    ParkedDraft,
    StaffSite,
)
from models.timeutil import as_aware

CODE_DIGITS = 8
CODE_LIFE = dt.timedelta(minutes=10)
MAX_FAILURES = 5  # wrong codes per account within FAILURE_WINDOW
FAILURE_WINDOW = dt.timedelta(minutes=15)
_SEPARATORS = str.maketrans("", "", " -._\u00a0\t")


def digits_code(text: str, length: int) -> str | None:
    """A code of ``length`` digits as a person typed it (``4827 1930``, ``4827-1930``: spaces,
    dashes, dots ignored), as its ASCII digits, or None when it is not one (also used for
    invite codes, models/invites.py)."""
    digits = text.strip().translate(_SEPARATORS)
    if len(digits) != length or not (digits.isascii() and digits.isdigit()):
        return None
    return digits


def grouped(code: str) -> str:
    """A code as shown: two groups of digits."""
    half = len(code) // 2
    return f"{code[:half]} {code[half:]}"


def normalize_code(text: str) -> str | None:
    """The /link code a person typed, as its eight ASCII digits, or None when it is not one."""
    return digits_code(text, CODE_DIGITS)


def format_code(code: str) -> str:
    """A /link code as shown: two groups of four digits."""
    return grouped(code)


def _hash(code: str) -> str:
    return hashlib.sha256(f"healthbook-link:{code}".encode()).hexdigest()


async def create_link_code(session: AsyncSession, account: Account, now: dt.datetime) -> str:
    """A new one-time code for ``account`` (the messenger account it is asked on); the
    account's older codes, and every expired one, are dropped."""
    await session.execute(
        delete(LinkCode).where((LinkCode.account_id == account.id) | (LinkCode.expires_at <= now))
    )
    while True:
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        if await session.get(LinkCode, _hash(code)) is None:  # a live code of someone else
            break
    session.add(
        LinkCode(
            code_hash=_hash(code), account_id=account.id, expires_at=now + CODE_LIFE, created_at=now
        )
    )
    await session.flush()
    return code


@dataclass(frozen=True)
class Linked:
    """A code redeemed: the person's primary account now, and the account that made the code
    (to be told about it)."""

    primary: Account
    issuer: Account


def _blocked(account: Account, now: dt.datetime) -> bool:
    return (
        account.link_failures >= MAX_FAILURES
        and account.link_failed_at is not None
        and now - as_aware(account.link_failed_at) < FAILURE_WINDOW
    )


def _failed(account: Account, now: dt.datetime) -> None:
    """Count a wrong code in the account's window (it starts at the first wrong code)."""
    if account.link_failed_at is None or now - as_aware(account.link_failed_at) >= FAILURE_WINDOW:
        account.link_failures, account.link_failed_at = 1, now
    else:
        account.link_failures += 1


@dataclass(frozen=True)
class Claim:
    """A code that ``account`` may use: the key of its row (the code's SHA-256), when it
    expires, the account that made it, and what ``account`` holds."""

    code_hash: str
    expires: dt.datetime
    issuer: Account
    held: hb.Holdings


def _typed(account: Account, code: str, now: dt.datetime) -> str:
    """The hash of the code typed on ``account``, unless the account is held back or it is
    not a code at all."""
    if _blocked(account, now):
        raise DomainError(
            "link.too_many_attempts", minutes=int(FAILURE_WINDOW.total_seconds() // 60)
        )
    digits = normalize_code(code)
    if digits is None:
        _failed(account, now)
        raise DomainError("link.wrong")
    return _hash(digits)


async def check_link_code(
    session: AsyncSession, account: Account, code: str, now: dt.datetime
) -> Claim:
    """Whether ``account`` (the messenger account the code was typed on) may use ``code``,
    without using it: the refusals of :func:`redeem_link_code` (a wrong code counts among the
    account's wrong codes)."""
    return (await _check(session, account, _typed(account, code, now), now, count=True)).claim


@dataclass(frozen=True)
class _Checked:
    claim: Claim
    row: LinkCode
    theirs: Account  # the issuer's primary
    held_theirs: hb.Holdings
    held_mine: hb.Holdings


async def _check(
    session: AsyncSession, account: Account, code_hash: str, now: dt.datetime, *, count: bool
) -> _Checked:
    row = await session.get(LinkCode, code_hash)
    if row is None:
        if count:
            _failed(account, now)
            raise DomainError("link.wrong")
        raise DomainError("link.expired")  # it was good when typed: used or expired since
    if as_aware(row.expires_at) <= now:
        await session.delete(row)
        raise DomainError("link.expired")
    if row.account_id == account.id:  # kept: it is still good on the other messenger
        raise DomainError("link.same_account")
    issuer = await session.get(Account, row.account_id)
    if issuer is None:
        raise DomainError("link.wrong")
    theirs = await primary(session, issuer)
    if theirs.id == (account.linked_to or account.id):
        raise DomainError("link.same_account")
    if account.linked_to is not None:
        raise DomainError("link.already_linked")
    held_theirs, held_mine = await hb.holdings(session, theirs), await hb.holdings(session, account)
    if held_theirs.health_books and held_mine.health_books:
        raise DomainError("link.both_have_books")
    claim = Claim(code_hash, as_aware(row.expires_at), issuer, held_mine)
    return _Checked(claim, row, theirs, held_theirs, held_mine)


async def redeem_link_code(
    session: AsyncSession, account: Account, code: str, now: dt.datetime
) -> Linked:
    """Join ``account`` (the messenger account the code was typed on) to the person who made
    the code. The primary is whichever has a health book, else whichever has any data, else
    the code's maker; the other's consents, drafts, staff sites, agency and head roles move
    to it. Refused with a
    :class:`DomainError`: ``link.too_many_attempts``, ``link.wrong``, ``link.expired``,
    ``link.same_account``, ``link.already_linked``, ``link.both_have_books`` (a refused code
    stays usable until it expires, unless it was wrong)."""
    return await _redeem(session, account, _typed(account, code, now), now, count=True)


async def redeem_checked(
    session: AsyncSession, account: Account, code_hash: str, now: dt.datetime
) -> Linked:
    """:func:`redeem_link_code` for a code :func:`check_link_code` let through earlier (by
    its ``code_hash``), once its typist said yes: checked again, as it may have been used or
    have expired since (``link.expired`` then)."""
    return await _redeem(session, account, code_hash, now, count=False)


async def drop_code(session: AsyncSession, code_hash: str) -> None:
    """Delete a code (its typist said no: it may have been sent to them by someone else)."""
    await session.execute(delete(LinkCode).where(LinkCode.code_hash == code_hash))


async def _redeem(
    session: AsyncSession, account: Account, code_hash: str, now: dt.datetime, *, count: bool
) -> Linked:
    checked = await _check(session, account, code_hash, now, count=count)
    # single use, across processes too: only one redemption deletes the row
    taken = await session.execute(
        delete(LinkCode).where(LinkCode.code_hash == code_hash).returning(LinkCode.account_id)
    )
    if taken.first() is None:
        if count:
            _failed(account, now)
            raise DomainError("link.wrong")
        raise DomainError("link.expired")
    session.expunge(checked.row)
    theirs, held_theirs, held_mine = checked.theirs, checked.held_theirs, checked.held_mine
    account.link_failures, account.link_failed_at = 0, None
    if held_mine.health_books or (_has_data(held_mine) and not _has_data(held_theirs)):
        keep, other = account, theirs
    else:
        keep, other = theirs, account
    await _merge(session, other, into=keep, now=now)
    await note_used(session, account, keep)
    return Linked(keep, checked.claim.issuer)


def _has_data(held: hb.Holdings) -> bool:
    return bool(held.health_books or held.drafts or held.consents or held.staff_sites)


async def _merge(session: AsyncSession, other: Account, *, into: Account, now: dt.datetime) -> None:
    """Make ``other`` (a primary) one of ``into``'s accounts: its data and its own linked
    accounts move to ``into``; a draft or booking in progress moves only when ``into`` has
    none (and, for a health-book form, no health book); agency memberships and head roles
    too (one open membership kept: :func:`_merge_agencies`)."""
    await session.execute(
        update(Consent).where(Consent.account_id == other.id).values(account_id=into.id)
    )
    draft = await hb.get_draft(session, other)
    if draft is not None:
        if await hb.get_draft(session, into) is None and await hb.own_book(session, into) is None:
            await session.execute(
                update(Draft).where(Draft.account_id == other.id).values(account_id=into.id)
            )
        else:
            await session.execute(delete(Draft).where(Draft.account_id == other.id))
        session.info.get("drafts", {}).pop(other.id, None)
        session.info.get("drafts", {}).pop(into.id, None)
        session.expunge(draft)
    await session.execute(  # registrations set aside move too (capped at the next one parked)
        update(ParkedDraft).where(ParkedDraft.account_id == other.id).values(account_id=into.id)
    )
    if await session.get(BookingDraft, into.id) is None:
        await session.execute(
            update(BookingDraft)
            .where(BookingDraft.account_id == other.id)
            .values(account_id=into.id)
        )
    else:
        await session.execute(delete(BookingDraft).where(BookingDraft.account_id == other.id))
    held = select(StaffSite.site_id).where(StaffSite.account_id == into.id)
    await session.execute(
        delete(StaffSite).where(StaffSite.account_id == other.id, StaffSite.site_id.in_(held))
    )
    await session.execute(
        update(StaffSite).where(StaffSite.account_id == other.id).values(account_id=into.id)
    )
    await _merge_agencies(session, other, into=into, now=now)
    if into.role == "resident" and other.role != "resident":
        into.role = other.role
    if into.locale is None:
        into.locale = other.locale
    await session.execute(  # no chains: other's accounts now point at into
        update(Account)
        .where(Account.linked_to == other.id)
        .values(linked_to=into.id, reply_via=None)
        .execution_options(synchronize_session="fetch")
    )
    other.linked_to, other.reply_via, into.reply_via = into.id, None, None
    await session.flush()


async def _merge_agencies(
    session: AsyncSession, other: Account, *, into: Account, now: dt.datetime
) -> None:
    """``other``'s agency memberships (open and past) and head roles move to ``into``, so the
    person is staff of one agency and counted once. Both open: the one joined last (their
    latest choice) stays open and the other is closed as a move at ``now``; both in the same
    agency: the one joined first stays (staff there since then). A role held by both: one."""
    opened = {
        row.account_id: row
        for row in await session.scalars(
            select(AgencyMember).where(
                AgencyMember.account_id.in_((other.id, into.id)), AgencyMember.left_at.is_(None)
            )
        )
    }
    if len(opened) == 2:
        mine, theirs = opened[into.id], opened[other.id]
        if mine.agency_id == theirs.agency_id:
            closed = theirs if as_aware(theirs.joined_at) >= as_aware(mine.joined_at) else mine
        else:
            closed = mine if as_aware(theirs.joined_at) > as_aware(mine.joined_at) else theirs
        closed.left_at = max(now, as_aware(closed.joined_at))
        closed.left_reason = "moved"
        await session.flush()  # before the move: one open row per account (a unique index)
    await session.execute(
        update(AgencyMember)
        .where(AgencyMember.account_id == other.id)
        .values(account_id=into.id)
        .execution_options(synchronize_session="fetch")
    )
    await session.execute(
        update(AgencyMember)
        .where(AgencyMember.removed_by == other.id)
        .values(removed_by=into.id)
        .execution_options(synchronize_session="fetch")
    )
    both = select(AgencyHead.agency_id).where(AgencyHead.account_id == into.id)
    await session.execute(
        delete(AgencyHead)
        .where(and_(AgencyHead.account_id == other.id, AgencyHead.agency_id.in_(both)))
        .execution_options(synchronize_session="fetch")
    )
    await session.execute(
        update(AgencyHead)
        .where(AgencyHead.account_id == other.id)
        .values(account_id=into.id)
        .execution_options(synchronize_session="fetch")
    )


async def primary(session: AsyncSession, account: Account) -> Account:
    """The account holding the person's data (the account itself unless it is linked)."""
    if account.linked_to is None:
        return account
    found = await session.get(Account, account.linked_to)
    return found if found is not None else account


async def person_of(session: AsyncSession, account: Account) -> list[Account]:
    """Every account of the person: the primary first, then the linked ones, oldest first."""
    head = await primary(session, account)
    linked = await session.scalars(
        select(Account).where(Account.linked_to == head.id).order_by(Account.id)
    )
    return [head, *linked]


async def unlink(session: AsyncSession, account: Account) -> list[Account]:
    """Separate ``account`` from the person: a linked account leaves (empty: the data stay
    with the primary); the primary lets every linked account go. The accounts now on their
    own are returned; ``link.not_linked`` when there were none."""
    if account.linked_to is not None:
        head = await primary(session, account)
        if head.reply_via == account.id:
            head.reply_via = None
        account.linked_to, account.reply_via = None, None
        account.locale = account.locale or head.locale
        await session.flush()
        return [account]
    others = list(
        (await session.scalars(select(Account).where(Account.linked_to == account.id))).all()
    )
    if not others:
        raise DomainError("link.not_linked")
    for other in others:
        other.linked_to, other.reply_via = None, None
        other.locale = other.locale or account.locale
    account.reply_via = None
    await session.flush()
    return others


async def _chosen(session: AsyncSession, head: Account) -> Account | None:
    """The account the person chose for their messages, if they chose one."""
    target = head.reply_via
    if target is None:
        return None
    if target == head.id:
        return head
    found = await session.get(Account, target)
    if found is not None and found.reply_via == found.id and found.linked_to == head.id:
        return found
    return None


async def note_used(session: AsyncSession, account: Account, head: Account | None = None) -> None:
    """The person wrote on ``account``: their messages go there from now on, unless they chose
    a messenger. Writes only when the messenger changed (no query at all for an account that
    was never linked). A person who blocked the bot and writes again can be sent to again
    (``unreachable_at``, set by the dispatcher, is cleared)."""
    if account.unreachable_at is not None:
        account.unreachable_at = None
    if head is None:
        head = await primary(session, account)
    want = None if account.id == head.id else account.id
    if head.reply_via == want or head.reply_via == head.id:
        return
    if head.reply_via is not None and await _chosen(session, head) is not None:
        return
    head.reply_via = want


async def send_here(session: AsyncSession, account: Account, *, fixed: bool) -> None:
    """Send my messages here: the person's messages go to ``account`` until they choose
    again (``fixed``), or from now on to the messenger they used last (not ``fixed``)."""
    accounts = await person_of(session, account)
    head = accounts[0]
    for other in accounts[1:]:
        other.reply_via = None
    if fixed:
        head.reply_via = account.id
        account.reply_via = account.id
    else:
        head.reply_via = None if account.id == head.id else account.id
    await session.flush()


async def messages_go_to(session: AsyncSession, account: Account) -> tuple[Account, bool]:
    """The account the person's messages go to, and whether they chose it."""
    head = await primary(session, account)
    chosen = await _chosen(session, head)
    if chosen is not None:
        return chosen, True
    if head.reply_via is not None:
        target = await session.get(Account, head.reply_via)
        if target is not None:
            return target, False
    return head, False


def masked_id(external_id: str) -> str:
    """A messenger id as shown to its owner: its last four characters."""
    return "…" + external_id[-4:]
