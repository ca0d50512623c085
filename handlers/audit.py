"""/audit (admins): the newest entries of the audit trail, filtered by what is typed after the
command: ``ward <commune>``, ``action <action>``, ``book <id>``, ``actor telegram:<id>``,
``since <day>`` (``1/11/2026``, ``01/11``, ``2026-11-01``; any of them, in any order). Each
line says when (local time), what, in which role, by whom (``channel:id``), for which book, in
which commune and which fields: the action, role and field names in the reader's language
(``healthbook audit export`` keeps the codes); ids, never names or values (the log holds none)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, replace

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from telegram.ext import BaseHandler, CommandHandler

from bot.i18n import Translator
from handlers.common import Turn, parse_id, turn
from models import audit
from models import validators as v
from models.errors import InvalidAnswer
from models.reference import admin_units
from models.roles import is_admin
from models.tables import Account, AuditEntry
from models.timeutil import as_aware

#: how many entries /audit shows (the newest); the CLI exports them all
SHOWN = 30
PER_MESSAGE = 10
KEYWORDS = ("ward", "action", "book", "actor", "since")
_ACTOR = re.compile(r"(telegram|zalo):([0-9A-Za-z]{1,64})")


class BadFilter(Exception):
    """A filter that cannot be read; ``key`` names the message saying what is wrong."""

    def __init__(self, key: str, **params: object) -> None:
        super().__init__(key)
        self.key, self.params = key, params


@dataclass(frozen=True)
class Asked:
    """Filters as typed: the actor still as ``channel:id`` (looked up afterwards)."""

    filters: audit.Filters
    actor: tuple[str, str] | None = None


def ward_code_of(text: str) -> int:
    """A commune given by its code or its name (with or without accents or its prefix word);
    ``BadFilter`` when none or several communes have that name."""
    wards = admin_units().wards
    if text.isascii() and text.isdigit():
        code = parse_id(text)
        if code is None or code not in wards:
            raise BadFilter("audit.bad_ward", ward=text)
        return code
    wanted = v.fold(text)
    found = [
        code
        for code, (name, _) in wards.items()
        if wanted in (v.fold(name), v.fold(v.example_name(name)))
    ]
    if len(found) == 1:
        return found[0]
    if not found:
        raise BadFilter("audit.bad_ward", ward=text)
    listed = ", ".join(f"{wards[c][0]} ({c})" for c in sorted(found)[:5])
    raise BadFilter("audit.ward_ambiguous", ward=text, wards=listed)


def local_midnight(day: dt.date, tz: dt.tzinfo) -> dt.datetime:
    """The start of a local day, in UTC (how times are stored)."""
    return dt.datetime.combine(day, dt.time(), tzinfo=tz).astimezone(dt.UTC)


def parse_filters(words: list[str], tz: dt.tzinfo, today: dt.date | None = None) -> Asked:
    """What is typed after /audit, strictly: each keyword once, with its value (a commune's
    name may be several words); ``BadFilter`` naming the first thing wrong. ``today`` (the
    local day, by default now's): what a day typed without its year (``01/11``) is read by."""
    f = audit.Filters()
    actor = None
    seen: set[str] = set()
    i = 0
    while i < len(words):
        key = words[i].lower()
        if key not in KEYWORDS:
            raise BadFilter("audit.bad_keyword", word=words[i][:30])
        if key in seen:
            raise BadFilter("audit.twice", word=key)
        seen.add(key)
        j = i + 1
        while j < len(words) and words[j].lower() not in KEYWORDS:
            j += 1
        value = " ".join(words[i + 1 : j]).strip()
        if not value:
            raise BadFilter("audit.missing_value", word=key)
        if key != "ward" and j - i > 2:
            raise BadFilter("audit.one_value", word=key)
        if key == "ward":
            f = replace(f, ward_code=ward_code_of(value[:60]))
        elif key == "action":
            if value not in audit.ACTIONS:
                raise BadFilter("audit.bad_action", actions=", ".join(audit.ACTIONS))
            f = replace(f, action=value)
        elif key == "book":
            book_id = parse_id(value)
            if book_id is None:
                raise BadFilter("audit.bad_book")
            f = replace(f, health_book_id=book_id)
        elif key == "actor":
            matched = _ACTOR.fullmatch(value)
            if matched is None or not value.isascii():
                raise BadFilter("audit.bad_actor")
            actor = (matched.group(1), matched.group(2))
        else:  # since
            try:
                day = v.parse_past_day(value[:30], today or dt.datetime.now(tz).date())
            except InvalidAnswer:
                raise BadFilter("audit.bad_since") from None
            f = replace(f, since=local_midnight(day, tz))
        i = j
    return Asked(f, actor)


async def actor_names(session: AsyncSession, ids: set[int]) -> dict[int, str]:
    """``channel:id`` of each actor (their messenger id: what admins filter by)."""
    if not ids:
        return {}
    rows = await session.execute(
        select(Account.id, Account.channel, Account.external_id).where(Account.id.in_(ids))
    )
    return {i: f"{channel}:{external}" for i, channel, external in rows.all()}


def ward_label(code: int | None) -> str:
    """A commune's name and code (``Xã Bản Hồ (2770)``), ``—`` when none."""
    if code is None:
        return "—"
    found = admin_units().wards.get(code)
    return f"{found[0]} ({code})" if found else str(code)


def _word(t: Translator, keys: tuple[str, ...], code: str) -> str:
    """The first of ``keys`` the catalogue has, in the reader's language; the code itself when
    none has (a code written by a newer version)."""
    return next((t(key) for key in keys if t.has(key)), code)


def action_name(t: Translator, action: str) -> str:
    """An audit action in words (``audit.action.<action>``)."""
    return _word(t, (f"audit.action.{action}",), action)


def role_name(t: Translator, role: str) -> str:
    """An audit role in words (``audit.role.<role>``)."""
    return _word(t, (f"audit.role.{role}",), role)


def field_names(t: Translator, fields: list[str] | None) -> str:
    """The names of the fields an entry lists, in words: a health book's question
    (``field.<name>``) or another field (``audit.field.<name>``); ``—`` when none."""
    names = [_word(t, (f"field.{f}", f"audit.field.{f}"), f) for f in fields or []]
    return ", ".join(names) or "—"


def entry_line(t: Translator, e: AuditEntry, actor: str, tz: dt.tzinfo) -> str:
    """One entry on one line, its action, role and fields in words."""
    when = as_aware(e.at).astimezone(tz)
    return t(
        "audit.line",
        when=f"{when:%d/%m/%Y %H:%M}",
        action=action_name(t, e.action),
        role=role_name(t, e.actor_role),
        actor=actor,
        book=e.health_book_id if e.health_book_id is not None else "—",
        ward=ward_label(e.ward_code),
        fields=field_names(t, e.fields),
    )


@turn()
async def audit_command(turn_: Turn) -> None:
    """/audit [filters]: the newest entries (admins only)."""
    t = turn_.t
    settings = turn_.services.settings
    listed = getattr(getattr(settings, "roles", None), "admins", ()) or ()
    if not is_admin(turn_.account, listed):
        turn_.say(t("audit.admins_only"))
        return
    tz = turn_.services.tz
    try:
        asked = parse_filters(list(turn_.context.args or []), tz, turn_.services.today())
    except BadFilter as err:
        params = dict(err.params)
        if err.key == "audit.bad_action":  # the codes to type, each with its words
            params["actions"] = ", ".join(f"{a} ({action_name(t, a)})" for a in audit.ACTIONS)
        turn_.say(t(err.key, **params) + "\n\n" + t("audit.usage"))
        return
    f = asked.filters
    if asked.actor is not None:
        channel, external = asked.actor
        actor_id = await turn_.session.scalar(
            select(Account.id).where(Account.channel == channel, Account.external_id == external)
        )
        if actor_id is None:
            turn_.say(t("audit.none"))
            return
        f = replace(f, actor_id=actor_id)
    found = await audit.entries(turn_.session, f, limit=SHOWN)
    if not found:
        turn_.say(t("audit.none"))
        return
    names = await actor_names(turn_.session, {e.actor_id for e in found if e.actor_id})
    lines = [entry_line(t, e, names.get(e.actor_id or 0, "—"), tz) for e in found]
    lines[0] = t("audit.heading", count=len(found)) + "\n" + lines[0]
    for start in range(0, len(lines), PER_MESSAGE):  # well under a message's length
        turn_.say("\n".join(lines[start : start + PER_MESSAGE]))


def handlers() -> list[BaseHandler]:
    """Top-level handlers: /audit."""
    return [CommandHandler("audit", audit_command)]


__all__ = [
    "BadFilter",
    "action_name",
    "field_names",
    "handlers",
    "parse_filters",
    "role_name",
    "ward_code_of",
]
