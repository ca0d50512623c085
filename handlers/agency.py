"""/agency: staff join their agency with ``/agency CODE`` (moving is allowed and dated) and
leave it with ``/agency leave``; ``/agency`` alone shows theirs, and to a head the members of
the agencies they head, page by page, each removable (asked again before it is done).

Choices: ``ag:rm:<agency>:<membership>`` (remove: asks), ``ag:ok:<agency>:<membership>``
(remove: done), ``ag:pg:<agency>:<offset>`` (the next page), ``ag:keep``. Every press is
checked again (the presser heads that agency itself, as listed, and the member is still in
it; a head of an agency above reads its reports, not its staff's names): a forged or stale
one gets one polite refusal and changes nothing. (Built on
:mod:`models.agencies`; on Zalo the choices are numbered lines.)
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, filters

from bot.i18n import Translator
from handlers.common import Turn, callback_parts, inline, parse_id, render_error, turn
from models import agencies as ag
from models.errors import DomainError
from models.tables import Agency, HealthBook
from models.timeutil import as_aware

#: members shown per message (and per set of choices)
PAGE = 10
#: agencies whose members a head sees at once with /agency (the others are named)
MAX_HEADED = 5
LEAVE_WORDS = frozenset({"leave", "roi", "rời", "thoat", "thoát"})
EXAMPLE = "SYT"


def _day(turn_: Turn, when: dt.datetime) -> str:
    """A stored moment as the province's day, as people here write it (``27/11/2026``)."""
    return f"{as_aware(when).astimezone(turn_.services.tz):%d/%m/%Y}"


def _name(t: Translator, member: ag.Member, n: int) -> str:
    """A member's name from their own health book; without one, their number in the list."""
    return member.name or t("agency.no_name", n=n)


async def _has_book(turn_: Turn) -> bool:
    """Whether the person has a saved health book of their own."""
    assert turn_.account is not None
    found = await turn_.session.scalar(
        select(HealthBook.id)
        .where(HealthBook.account_id == turn_.account.id, HealthBook.relation == "self")
        .limit(1)
    )
    return found is not None


@turn()
async def agency_command(turn_: Turn) -> None:
    """/agency [CODE|leave]: join, leave, or see one's agency (and, for a head, its staff)."""
    words = turn_.text.split()[1:]
    if not words:
        await _show(turn_)
    elif len(words) == 1 and words[0].lower() in LEAVE_WORDS:
        await _leave(turn_)
    elif len(words) == 1:
        await _join(turn_, words[0][:40])
    else:
        turn_.say(turn_.t("agency.unknown", example=EXAMPLE))


async def _join(turn_: Turn, code: str) -> None:
    t = turn_.t
    agency = await ag.by_code(turn_.session, code)
    if agency is None:  # unknown and malformed alike
        turn_.say(t("agency.unknown", example=EXAMPLE))
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
    if not await _has_book(turn_):
        text += "\n\n" + t("agency.no_book")
    turn_.say(text)


async def _leave(turn_: Turn) -> None:
    t, account = turn_.t, turn_.account
    left = await ag.leave(turn_.session, account, turn_.services.clock()) if account else None
    if left is None:
        turn_.say(t("agency.not_member", example=EXAMPLE))
    else:
        turn_.say(t("agency.left", name=left.name))


async def _show(turn_: Turn) -> None:
    """One's agency (or how to join), then to a head each agency they head with its members."""
    t, session, account = turn_.t, turn_.session, turn_.account
    current = await ag.membership(session, account.id) if account else None
    agency = await session.get(Agency, current.agency_id) if current else None
    if current is not None and agency is not None:
        turn_.say(
            t(
                "agency.yours",
                name=agency.name,
                code=agency.code,
                date=_day(turn_, current.joined_at),
            )
        )
    else:
        turn_.say(t("agency.how_to_join", example=EXAMPLE))
    headed = await ag.headed(session, account)
    for each in headed[:MAX_HEADED]:
        await _members_page(turn_, each, 0)
    if len(headed) > MAX_HEADED:
        turn_.say(
            t(
                "agency.heads_more",
                count=len(headed),
                shown=MAX_HEADED,
                codes=", ".join(a.code for a in headed[MAX_HEADED:][:20]),
            )
        )


async def _members_page(turn_: Turn, agency: Agency, offset: int) -> None:
    """A headed agency's members from ``offset``: a line each (name, since when) and a choice
    to remove each; the next page as a choice when there is more."""
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
    lines = [
        t("agency.member_line", n=n, name=_name(t, m, n), date=_day(turn_, m.joined_at))
        for n, m in enumerate(rows, offset + 1)
    ]
    page = t("agency.page", first=offset + 1, last=offset + len(rows), count=count)
    choices = [
        [(t("agency.button.remove", name=_name(t, m, n)), f"ag:rm:{agency.id}:{m.id}")]
        for n, m in enumerate(rows, offset + 1)
    ]
    if offset + PAGE < count:
        choices.append([(t("agency.button.more"), f"ag:pg:{agency.id}:{offset + PAGE}")])
    text = "\n".join([title, page, *lines, "", t("agency.remove_hint")])
    turn_.say(text, inline(choices))


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
    name = member.name or t("agency.no_name_plain")
    if parts[0] == "rm":
        turn_.say(
            t("agency.confirm_remove", name=name, agency=agency.name),
            inline(
                [
                    [(t("agency.button.confirm", name=name), f"ag:ok:{agency.id}:{member.id}")],
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
    turn_.say(t("agency.removed", name=name, agency=agency.name))


def handlers() -> list[BaseHandler]:  # type: ignore[type-arg]
    """Top-level handlers: /agency and its choices."""
    return [
        CommandHandler("agency", agency_command, filters=filters.ChatType.PRIVATE),
        CallbackQueryHandler(pressed, pattern=r"^ag:"),
    ]


__all__ = ["handlers"]
