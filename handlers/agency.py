"""/agency: staff join their agency with ``/agency CODE`` (moving is allowed and dated) and
leave it with ``/agency roi``; ``/agency`` alone shows theirs (and, to anyone who heads
nothing, their own messenger id to give an admin), and to a head the members of the agencies
they head, page by page, each removable (asked again before it is done). A name typed
instead of a code (``/agency Sở Y tế``) is answered with the code(s) it may mean; the
example code of the messages (:data:`models.agencies.EXAMPLE_CODE`) with "ask your agency".

A head's answer holds one list whose choices ARE the members ("Nguyễn Văn A (từ 03/11)"): on
Zalo the numbers typed are the numbers shown, one agency per answer (a head of several first
chooses the agency), each page numbered from 1. Choices: ``ag:rm:<agency>:<membership>``
(remove: asks, naming what the head saw), ``ag:ok:<agency>:<membership>`` (remove: done; the
member is told), ``ag:pg:<agency>:<offset>`` (an agency's page), ``ag:keep``. Every press is
checked again (the presser heads that agency itself, as listed, and the member is still in
it; a head of an agency above reads its reports, not its staff's names): a forged or stale
one gets one polite refusal and changes nothing. A person a head removed who joins again
within :data:`~models.agencies.REJOIN_DAYS` days: its heads are told. (Built on
:mod:`models.agencies`.)
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, filters

from bot.i18n import Translator
from handlers.common import (
    Turn,
    callback_parts,
    inline,
    own_id_text,
    parse_id,
    render_error,
    turn,
)
from models import agencies as ag
from models import healthbook as hb
from models.errors import DomainError
from models.tables import Account, Agency, HealthBook
from models.timeutil import as_aware

#: members shown per message (and per set of choices)
PAGE = 10
#: agencies a head of several chooses from with /agency (the others are named)
MAX_HEADED = 10
LEAVE_WORDS = frozenset({"leave", "roi", "rời", "thoat", "thoát"})
#: the code the messages give as an example: no agency holds it
EXAMPLE = ag.EXAMPLE_CODE
#: agencies named when a typed name matches several
NAMED_MAX = 5


def _day(turn_: Turn, when: dt.datetime) -> str:
    """A stored moment as the province's day, as people here write it (``27/11/2026``)."""
    return f"{as_aware(when).astimezone(turn_.services.tz):%d/%m/%Y}"


def _short_day(turn_: Turn, when: dt.datetime) -> str:
    """A stored moment as the province's day and month (``03/11``): since when a member is."""
    return f"{as_aware(when).astimezone(turn_.services.tz):%d/%m}"


def _label(turn_: Turn, t: Translator, name: str | None, since: dt.datetime) -> str:
    """A member as their head sees them, in the list and when asked to confirm: the name of
    their own health book, or that they have none, and since when."""
    date = _short_day(turn_, since)
    if name:
        return t("agency.member", name=name, date=date)
    return t("agency.member_no_book", date=date)


async def _own_name(turn_: Turn, account: Account) -> str | None:
    """The name of the person's own saved health book, if they have one."""
    found = await turn_.session.scalar(
        select(HealthBook.full_name)
        .where(HealthBook.account_id == account.id, HealthBook.relation == "self")
        .order_by(HealthBook.id)
        .limit(1)
    )
    return found


@turn()
async def agency_command(turn_: Turn) -> None:
    """/agency [CODE|roi|a name]: join, leave, or see one's agency (and, for a head, its staff)."""
    words = turn_.text.split()[1:]
    if not words:
        await _show(turn_)
    elif len(words) == 1 and words[0].lower() in LEAVE_WORDS:
        await _leave(turn_)
    elif len(words) == 1 and words[0].upper() == EXAMPLE:
        turn_.say(turn_.t("agency.example_code", code=EXAMPLE))
    else:
        await _join(turn_, " ".join(words)[:200])


async def _join(turn_: Turn, typed: str) -> None:
    t = turn_.t
    agency = await ag.by_code(turn_.session, typed) if " " not in typed else None
    if agency is None:  # unknown and malformed alike: a name, perhaps
        await _not_a_code(turn_, typed)
        return
    account = await turn_.account_or_create()
    try:
        joined = await ag.join(turn_.session, account, agency, turn_.services.clock())
    except DomainError as err:
        turn_.say(render_error(t, err))
        return
    if joined.status == "already":
        turn_.say(t("agency.already", name=agency.name, code=agency.code))
        return
    if joined.status == "moved" and joined.previous is not None:
        text = t("agency.moved", old=joined.previous.name, name=agency.name, code=agency.code)
    else:
        text = t("agency.joined", name=agency.name, code=agency.code)
    text += "\n\n" + t("agency.meaning")
    name = await _own_name(turn_, account)
    if name is None:
        text += "\n\n" + t("agency.no_book")
    if joined.removed_at is not None:
        text += "\n\n" + t("agency.rejoined", date=_day(turn_, joined.removed_at))
        await _tell_heads_of_rejoin(turn_, agency, account, name, joined.removed_at)
    turn_.say(text)


async def _not_a_code(turn_: Turn, typed: str) -> None:
    """What ``/agency`` followed by no agency's code gets: the code(s) of the agencies whose
    name it is (joining is by code only), else the same short answer whatever was wrong."""
    t = turn_.t
    found = await ag.named(turn_.session, typed, NAMED_MAX)
    if found.total == 1:
        code, name = found.agencies[0]
        turn_.say(t("agency.did_you_mean", name=name, code=code))
    elif found.total > 1:
        lines = [
            t("agency.did_you_mean_line", name=name, code=code) for code, name in found.agencies
        ]
        if found.total > len(found.agencies):
            lines.append(t("agency.did_you_mean_more", more=found.total - len(found.agencies)))
        turn_.say(t("agency.did_you_mean_many", count=found.total) + "\n" + "\n".join(lines))
    else:
        turn_.say(t("agency.unknown", example=EXAMPLE))


async def _tell_heads_of_rejoin(
    turn_: Turn, agency: Agency, account: Account, name: str | None, removed_at: dt.datetime
) -> None:
    """Tell an agency's heads, each in their own chat and language, that someone they removed
    joined again (anyone can type a code)."""
    session = turn_.session
    for head in await ag.head_accounts(session, agency):
        if account.id in (head.id, head.linked_to):
            continue
        to = await hb.reply_address(session, head)
        theirs = turn_.services.translations.get(head.locale, to.channel)
        text = theirs(
            "agency.rejoined_notice",
            who=_label(turn_, theirs, name, turn_.services.clock()),
            agency=agency.name,
            code=agency.code,
            date=_day(turn_, removed_at),
        )
        turn_.notify(to, text, locale=theirs.locale)


async def _leave(turn_: Turn) -> None:
    t, account = turn_.t, turn_.account
    left = await ag.leave(turn_.session, account, turn_.services.clock()) if account else None
    if left is None:
        turn_.say(t("agency.not_member", example=EXAMPLE))
    else:
        turn_.say(t("agency.left", name=left.name))


async def _show(turn_: Turn) -> None:
    """One's agency (or how to join); to a head, the members of the agency they head, or (of
    several) a choice of agency; to anyone else, their own messenger id for an admin."""
    t, session, account = turn_.t, turn_.session, turn_.account
    current = await ag.membership(session, account.id) if account else None
    agency = await session.get(Agency, current.agency_id) if current else None
    if current is not None and agency is not None:
        text = t(
            "agency.yours", name=agency.name, code=agency.code, date=_day(turn_, current.joined_at)
        )
    else:
        text = t("agency.how_to_join", example=EXAMPLE)
    headed = await ag.headed(session, account)
    if not headed:
        turn_.say(text + "\n\n" + own_id_text(turn_))
        return
    turn_.say(text)
    if len(headed) == 1:
        await _members_page(turn_, headed[0], 0)
        return
    choices = [
        [
            (
                t(
                    "agency.headed_choice",
                    name=each.name,
                    code=each.code,
                    count=await ag.member_count(session, each),
                ),
                f"ag:pg:{each.id}:0",
            )
        ]
        for each in headed[:MAX_HEADED]
    ]
    choose = t("agency.choose_headed", count=len(headed))
    if len(headed) > MAX_HEADED:
        choose += "\n" + t(
            "agency.heads_more",
            shown=MAX_HEADED,
            codes=", ".join(a.code for a in headed[MAX_HEADED:][:20]),
        )
    turn_.say(choose, inline(choices))


async def _members_page(turn_: Turn, agency: Agency, offset: int) -> None:
    """A headed agency's members from ``offset``, one choice each (name or "no health book",
    since when): the list is the choices, so a number typed on Zalo is the one shown; the
    next page as a last choice when there is more."""
    t, session = turn_.t, turn_.session
    count = await ag.member_count(session, agency)
    title = t(
        "agency.head_title",
        name=agency.name,
        code=agency.code,
        count=count,
        expected=agency.expected_staff,
    )
    if count == 0:
        turn_.say(title + "\n" + t("agency.no_members", code=agency.code))
        return
    if offset >= count:  # members left since the list was shown: back to the start
        offset = 0
    rows = await ag.members(session, agency, offset=offset, limit=PAGE)
    choices = [
        [(_label(turn_, t, m.name, m.joined_at), f"ag:rm:{agency.id}:{m.id}")] for m in rows
    ]
    if offset + PAGE < count:
        choices.append([(t("agency.button.more"), f"ag:pg:{agency.id}:{offset + PAGE}")])
    lines = [title]
    if count > PAGE:
        lines.append(t("agency.page", page=offset // PAGE + 1, pages=-(-count // PAGE)))
    lines.append(t("agency.remove_hint"))
    turn_.say("\n".join(lines), inline(choices))


def _refuse(turn_: Turn) -> None:
    """A forged or stale press: one polite answer, whatever was wrong with it."""
    turn_.toast(turn_.t("agency.stale"), alert=True)


@turn()
async def pressed(turn_: Turn) -> None:
    """A choice of /agency's members list, checked again before anything is done."""
    t, session = turn_.t, turn_.session
    parts = callback_parts(turn_.update, "ag") or []
    if parts == ["keep"]:
        turn_.say(t("agency.kept"))
        return
    ids = [parse_id(p) for p in parts[1:]] if len(parts) == 3 else []
    if not parts or parts[0] not in ("rm", "ok", "pg") or len(ids) != 2 or None in ids:
        _refuse(turn_)
        return
    agency_id, number = ids[0], ids[1]
    assert agency_id is not None and number is not None
    agency = await session.get(Agency, agency_id)
    account = turn_.account
    if agency is None or account is None or not await ag.heads(session, account, agency):
        _refuse(turn_)
        return
    if parts[0] == "pg":
        await _members_page(turn_, agency, number)
        return
    member = await ag.open_member(session, agency, number)
    if member is None:
        _refuse(turn_)
        return
    who = _label(turn_, t, member.name, member.joined_at)
    if parts[0] == "rm":
        turn_.say(
            t("agency.confirm_remove", who=who, agency=agency.name),
            inline(
                [
                    [(t("agency.button.confirm"), f"ag:ok:{agency.id}:{member.id}")],
                    [(t("agency.button.keep"), "ag:keep")],
                ]
            ),
        )
        return
    try:
        await ag.remove_member(session, account, agency, member.id, turn_.services.clock())
    except DomainError:
        _refuse(turn_)
        return
    turn_.say(t("agency.removed", who=who, agency=agency.name))
    await _tell_removed(turn_, member, agency)


async def _tell_removed(turn_: Turn, member: ag.Member, agency: Agency) -> None:
    """Tell a removed member, in their own chat and language (not who removed them)."""
    removed = await turn_.session.get(Account, member.account_id)
    if removed is None or turn_.account is None or removed.id == turn_.account.id:
        return
    to = await hb.reply_address(turn_.session, removed)
    theirs = turn_.services.translations.get(removed.locale, to.channel)
    text = theirs("agency.removed_notice", agency=agency.name, code=agency.code)
    turn_.notify(to, text, locale=theirs.locale)


def handlers() -> list[BaseHandler]:  # type: ignore[type-arg]
    """Top-level handlers: /agency and its choices."""
    return [
        CommandHandler("agency", agency_command, filters=filters.ChatType.PRIVATE),
        CallbackQueryHandler(pressed, pattern=r"^ag:"),
    ]


__all__ = ["handlers"]
