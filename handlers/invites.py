"""Roles in the chat: /invite (admins make an invite code), /join CODE (a person takes the
role it gives), /day (site staff: who is booked at their site on a day).

/invite is a short conversation: the role (``inv:r:v`` volunteer, ``inv:r:s`` site staff) →
the commune typed by name (as in the health book: ``inv:w:<ward>`` when several match; more
communes may be typed, ``inv:next`` goes on) or the site by code or name (``inv:s:<site>``) →
how many uses (``inv:n:<uses>``) → how many days (``inv:d:<days>``) → the code. What was chosen
so far rides in the persisted conversation state (``ward:<w1>.<w2>``, ``uses:v.<wards>`` or
``uses:s.<site>``, ``days:<target>:<uses>``), never in the buttons; every press and answer
checks again that the sender is an admin (buttons and typed numbers can be forged).

/join CODE (or /join, then the code): an invite code gives its role; a code that is no invite
is offered to :func:`handlers.family.join_handover` (a relative's hand-over code), else it is
unknown. Wrong codes count against the sender as /link's do (:mod:`bot.link_guard`).

/day [SITE] [DATE] lists the bookings of a day at a site (``day:<site>:<yyyymmdd>`` to choose
a site, or another day): staff of that site, admins of any; never in a group.
"""

from __future__ import annotations

import datetime as dt
import warnings
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot.i18n import Translator
from handlers.common import Turn, callback_parts, chunk, inline, parse_id, render_error, turn
from models import checkin as ci
from models import invites as inv
from models import validators as v
from models.errors import DomainError, InvalidAnswer
from models.roles import is_admin
from models.tables import Account, Booking, ConversationState, HealthBook, Invite, Site
from models.tables import Session as Slot

NAME = "invites"
PRIVATE = filters.ChatType.PRIVATE
NEW_TEXT = filters.UpdateType.MESSAGE & filters.TEXT & ~filters.COMMAND
MAX_CHOICES = 8
USES = (1, 5, 10, 30)
DAYS = (7, 1, 30)
DAY_LINES = 40  # bookings per message of /day


class Stage(StrEnum):
    """States of the /invite and /join conversation; WARD, USES and DAYS carry data after a
    colon."""

    ROLE = "role"  # volunteer or site staff (options)
    WARD = "ward"  # ward:<w1>.<w2> — a commune's name is typed (more may follow)
    SITE = "site"  # the site's code or name is typed
    USES = "uses"  # uses:<target> — how many people may use the code (options)
    DAYS = "days"  # days:<target>:<uses> — how long it lives (options)
    CODE = "code"  # /join alone: the code is typed


class _States(dict[object, list[BaseHandler]]):
    """A state table where ``ward:123`` finds the handlers of ``ward`` (PTB looks states up
    with ``get`` and ``in``)."""

    @staticmethod
    def _base(key: object) -> object:
        return key.split(":", 1)[0] if isinstance(key, str) else key

    def get(self, key: object, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(self._base(key), default)

    def __contains__(self, key: object) -> bool:
        return super().__contains__(self._base(key))


# ---------------------------------------------------------------- who may act


def _admin(turn_: Turn) -> Account | None:
    """The sender's account if they are an admin (by role, or listed in ``[roles] admins``:
    their account on this messenger, or the person's primary one)."""
    listed = turn_.services.settings.roles.admins
    for account in (turn_.account, turn_.own):
        if is_admin(account, listed):
            return turn_.account if turn_.account is not None else account
    return None


def _refuse_admin(turn_: Turn) -> object:
    """A non-admin's /invite, or a forged press of its choices: a short refusal."""
    text = turn_.t("invite.admins_only")
    if turn_.update.callback_query is not None:
        turn_.toast(text, alert=True)
    else:
        turn_.say(text)
    return ConversationHandler.END


async def _state_data(turn_: Turn, stage: Stage) -> list[str] | None:
    """The data of the current ``stage`` (``days:v.12.34:5`` → [``v.12.34``, ``5``])."""
    state = await turn_.session.scalar(
        select(ConversationState.state).where(
            ConversationState.channel == turn_.channel,
            ConversationState.name == NAME,
            ConversationState.chat_id == str(turn_.chat_id),
            ConversationState.user_id == str(turn_.user_id),
        )
    )
    if not state or not (state == stage or state.startswith(f"{stage}:")):
        return None
    return state.split(":")[1:]


def _wards_of(data: list[str] | None) -> list[int] | None:
    """The ward codes of ``ward:<w1>.<w2>`` (None: not at that step)."""
    if data is None:
        return None
    raw = data[0] if data else ""
    return [int(w) for w in raw.split(".") if w]


def _target(text: str) -> tuple[str, list[int]] | None:
    """A target as the state keeps it: ``v.<w1>.<w2>`` or ``s.<site>``."""
    kind, _, rest = text.partition(".")
    ids = [parse_id(x) for x in rest.split(".")] if rest else []
    if kind not in ("v", "s") or not ids or any(i is None for i in ids):
        return None
    return kind, [i for i in ids if i is not None]


# ---------------------------------------------------------------- /invite


@turn(NAME)
async def invite(turn_: Turn) -> object:
    """/invite: admins choose whom to invite; anyone else is refused."""
    if _admin(turn_) is None:
        return _refuse_admin(turn_)
    t = turn_.t
    turn_.say(
        t("invite.ask_role"),
        inline([[(t("invite.role.volunteer"), "inv:r:v")], [(t("invite.role.staff"), "inv:r:s")]]),
    )
    return Stage.ROLE


@turn(NAME)
async def role_chosen(turn_: Turn) -> object:
    """The role: a volunteer's commune, or the site, is asked next."""
    if _admin(turn_) is None:
        return _refuse_admin(turn_)
    parts = callback_parts(turn_.update, "inv:r")
    t = turn_.t
    if parts == ["v"]:
        turn_.ack = t("invite.role.volunteer")
        province = turn_.services.settings.bot.default_province
        turn_.say(
            t(
                "invite.ask_ward",
                province=v.province_name(province),
                example=v.ward_example(province),
            )
        )
        return f"{Stage.WARD}:"
    if parts == ["s"]:
        turn_.ack = t("invite.role.staff")
        example = await turn_.session.scalar(select(Site.code).order_by(Site.code).limit(1))
        turn_.say(t("invite.ask_site", example=example or "LC-BVDK"))
        return Stage.SITE
    turn_.toast(t("error.button.stale"), alert=True)
    return None


def _ask_more_wards(turn_: Turn, wards: list[int]) -> str:
    """The communes so far; another may be typed, or go on."""
    t = turn_.t
    names = ", ".join(v.ward_name(w) for w in wards)
    turn_.say(
        t("invite.wards_so_far", wards=names),
        inline([[(t("invite.button.next"), "inv:next")]]),
    )
    return f"{Stage.WARD}:{'.'.join(str(w) for w in wards)}"


@turn(NAME)
async def ward_typed(turn_: Turn) -> object:
    """A commune's name: found in the province (as the health book's commune question), or
    the candidates to choose from."""
    if _admin(turn_) is None:
        return _refuse_admin(turn_)
    t = turn_.t
    wards = _wards_of(await _state_data(turn_, Stage.WARD)) or []
    province = turn_.services.settings.bot.default_province
    text = turn_.text.strip()
    try:
        if len(text) > 60:
            raise InvalidAnswer("invite.ward_too_long")
        found = v.search_wards(province, text)
    except InvalidAnswer as err:
        turn_.say(t(err.key, **err.params))
        return None
    exact = [w for w in found if v.fold(w[1]).endswith(v.fold(text))]
    if len(found) == 1 or (len(exact) == 1 and len(found) <= MAX_CHOICES):
        return _add_ward(turn_, wards, (exact or found)[0][0])
    if len(found) > MAX_CHOICES:
        turn_.say(t("error.ward.too_many", count=len(found), query=text[:40], example=""))
        return None
    turn_.say(
        t("invite.ward_choose"),
        inline(chunk([(name, f"inv:w:{code}") for code, name in found], 2)),
    )
    return None


def _add_ward(turn_: Turn, wards: list[int], ward: int) -> object:
    if ward not in wards:
        if len(wards) >= inv.MAX_WARDS:
            turn_.say(turn_.t("invite.too_many_wards", max=inv.MAX_WARDS))
            return None
        wards = [*wards, ward]
    return _ask_more_wards(turn_, wards)


@turn(NAME)
async def ward_chosen(turn_: Turn) -> object:
    """One of the communes that matched (the code checked: it may be forged)."""
    if _admin(turn_) is None:
        return _refuse_admin(turn_)
    wards = _wards_of(await _state_data(turn_, Stage.WARD))
    ids = callback_parts(turn_.update, "inv:w") or []
    ward = parse_id(ids[0]) if len(ids) == 1 else None
    province = turn_.services.settings.bot.default_province
    if wards is None or ward is None or not v.ward_in_province(ward, province):
        turn_.toast(turn_.t("error.button.stale"), alert=True)
        return None
    turn_.ack = v.ward_name(ward)
    return _add_ward(turn_, wards, ward)


def _ask_uses(turn_: Turn, target: str) -> str:
    t = turn_.t
    rows = [[(_count(t, "invite.uses", n), f"inv:n:{n}")] for n in USES]
    turn_.say(t("invite.ask_uses"), inline(rows))
    return f"{Stage.USES}:{target}"


@turn(NAME)
async def wards_done(turn_: Turn) -> object:
    """ "Next": the communes are chosen; how many uses."""
    if _admin(turn_) is None:
        return _refuse_admin(turn_)
    wards = _wards_of(await _state_data(turn_, Stage.WARD))
    if not wards:
        turn_.toast(turn_.t("error.button.stale"), alert=True)
        return None
    turn_.ack = turn_.t("invite.button.next")
    return _ask_uses(turn_, "v." + ".".join(str(w) for w in wards))


async def _find_sites(turn_: Turn, text: str) -> list[Site]:
    """Active sites by code (exactly, any case) or by name (without accents)."""
    session = turn_.session
    code = text.strip().upper()
    exact = await session.scalar(select(Site).where(Site.code == code, Site.active.is_(True)))
    if exact is not None:
        return [exact]
    wanted = v.fold(text)
    if not wanted:
        return []
    sites = await session.scalars(select(Site).where(Site.active.is_(True)).order_by(Site.name))
    return [s for s in sites if wanted in v.fold(s.name) or wanted in v.fold(s.code)]


@turn(NAME)
async def site_typed(turn_: Turn) -> object:
    """The site's code or name: found, or the candidates to choose from."""
    if _admin(turn_) is None:
        return _refuse_admin(turn_)
    t = turn_.t
    text = turn_.text.strip()[:80]
    found = await _find_sites(turn_, text)
    if not found:
        turn_.say(t("invite.site_none", query=text))
        return None
    if len(found) == 1:
        return _ask_uses(turn_, f"s.{found[0].id}")
    if len(found) > MAX_CHOICES:
        turn_.say(t("invite.site_too_many", count=len(found)))
        return None
    turn_.say(
        t("invite.site_choose"),
        inline([[(f"{s.name} ({s.code})", f"inv:s:{s.id}")] for s in found]),
    )
    return None


@turn(NAME)
async def site_chosen(turn_: Turn) -> object:
    """One of the sites that matched (checked: the id may be forged)."""
    if _admin(turn_) is None:
        return _refuse_admin(turn_)
    ids = callback_parts(turn_.update, "inv:s") or []
    site_id = parse_id(ids[0]) if len(ids) == 1 else None
    site = await turn_.session.get(Site, site_id) if site_id is not None else None
    if await _state_data(turn_, Stage.SITE) is None or site is None:
        turn_.toast(turn_.t("error.button.stale"), alert=True)
        return None
    turn_.ack = site.name
    return _ask_uses(turn_, f"s.{site.id}")


@turn(NAME)
async def uses_chosen(turn_: Turn) -> object:
    """How many uses: then how many days."""
    if _admin(turn_) is None:
        return _refuse_admin(turn_)
    t = turn_.t
    data = await _state_data(turn_, Stage.USES)
    parts = callback_parts(turn_.update, "inv:n") or []
    uses = parse_id(parts[0]) if len(parts) == 1 else None
    if not data or uses is None or not 1 <= uses <= inv.MAX_USES:
        turn_.toast(t("error.button.stale"), alert=True)
        return None
    turn_.ack = _count(t, "invite.uses", uses)
    rows = [[(_count(t, "invite.days", d), f"inv:d:{d}")] for d in DAYS]
    turn_.say(t("invite.ask_days"), inline(rows))
    return f"{Stage.DAYS}:{data[0]}:{uses}"


@turn(NAME)
async def days_chosen(turn_: Turn) -> object:
    """How many days: the invite is made, its code shown with how to use it."""
    admin = _admin(turn_)
    if admin is None:
        return _refuse_admin(turn_)
    t, services = turn_.t, turn_.services
    data = await _state_data(turn_, Stage.DAYS)
    parts = callback_parts(turn_.update, "inv:d") or []
    days = parse_id(parts[0]) if len(parts) == 1 else None
    target = _target(data[0]) if data and len(data) == 2 else None
    uses = parse_id(data[1]) if data and len(data) == 2 else None
    if target is None or uses is None or days is None or not 1 <= days <= inv.MAX_DAYS:
        turn_.toast(t("error.button.stale"), alert=True)
        return None
    kind, ids = target
    now = services.clock()
    try:
        if kind == "v":
            created = await inv.create_invite(
                turn_.session,
                role=inv.VOLUNTEER,
                now=now,
                creator=admin,
                province=services.settings.bot.default_province,
                wards=ids,
                uses=uses,
                days=days,
            )
        else:
            created = await inv.create_invite(
                turn_.session,
                role=inv.SITE_STAFF,
                now=now,
                creator=admin,
                site=ids[0],
                uses=uses,
                days=days,
            )
    except DomainError as err:
        turn_.say(render_error(t, err))
        return ConversationHandler.END
    turn_.ack = _count(t, "invite.days", days)
    turn_.say(await _made(turn_, created))
    return ConversationHandler.END


def describe(t: Translator, invite: Invite, site: Site | None) -> str:
    """What an invite gives: ``volunteer of Phường Sa Pa`` / ``staff at …``."""
    if invite.role == inv.VOLUNTEER:
        return t("invite.for_volunteer", wards=", ".join(v.ward_name(w) for w in invite.ward_codes))
    return t("invite.for_staff", site=site.name if site is not None else "?")


async def _made(turn_: Turn, created: inv.Created) -> str:
    """The new invite: what it gives, its uses and end, the code alone on its line, and how
    to use it."""
    t, services = turn_.t, turn_.services
    invite = created.invite
    site = await turn_.session.get(Site, invite.site_id) if invite.site_id is not None else None
    until = invite.expires_at.astimezone(services.tz)
    code = inv.format_code(created.code)
    return t(
        "invite.made",
        what=describe(t, invite, site),
        uses=_count(t, "invite.uses", invite.uses_left),
        until=f"{t.date(until.date())} {until:%H:%M}",
        code=code,
    )


@turn(NAME)
async def cancel(turn_: Turn) -> object:
    """/cancel: nothing is made."""
    turn_.say(turn_.t("invite.cancelled"))
    return ConversationHandler.END


@turn(NAME)
async def stale(turn_: Turn) -> object:
    """Anything else at a step: the choices again (a stale button: a notice)."""
    if turn_.update.callback_query is not None:
        turn_.toast(turn_.t("error.button.stale"), alert=True)
        return None
    if _admin(turn_) is None:
        return ConversationHandler.END
    await turn_.say_again_with_choices(turn_.t("invite.use_choices"))
    return None


# ---------------------------------------------------------------- /join


@turn(NAME)
async def join_command(turn_: Turn) -> object:
    """/join CODE: take an invite's role (or a relative's hand-over); /join alone asks for the
    code."""
    rest = turn_.text.split(maxsplit=1)[1:]
    if not rest or not rest[0].strip():
        # an account now: on Zalo a stranger's next words would otherwise open the welcome
        await turn_.account_or_create()
        turn_.say(turn_.t("join.ask_code"))
        return Stage.CODE
    await redeem(turn_, rest[0])
    return ConversationHandler.END


@turn(NAME)
async def code_typed(turn_: Turn) -> object:
    """The code, after /join alone."""
    await redeem(turn_, turn_.text)
    return ConversationHandler.END


async def redeem(turn_: Turn, code: str) -> None:
    """Join with ``code``: an invite, else a hand-over code, else unknown; say what changed
    and what the person can do now."""
    services, t = turn_.services, turn_.t
    now = services.clock()
    attempt = services.link_guesses.admit(turn_.channel, str(turn_.user_id), now)
    if isinstance(attempt, int):  # too many wrong codes: from this id, or from everyone
        turn_.say(t("join.too_many_attempts", minutes=attempt))
        return
    wrong = False
    try:
        if inv.normalize_code(code) is not None and await inv.find_invite(turn_.session, code):
            account = await turn_.account_or_create()
            try:
                joined = await inv.join(turn_.session, account, code, now)
            except DomainError as err:
                turn_.say(render_error(t, err))
                return
            _joined(turn_, joined)
            return
        handover = _handover()
        if handover is not None and await handover(turn_, code):
            return
        wrong = True
        turn_.say(t("invite.unknown"))
    finally:
        services.link_guesses.settle(attempt, wrong=wrong)


def _handover() -> Any:
    """:func:`handlers.family.join_handover`, once the family module has it."""
    from handlers import family

    return getattr(family, "join_handover", None)


def _joined(turn_: Turn, joined: inv.Joined) -> None:
    t = turn_.t
    if joined.invite.role == inv.VOLUNTEER:
        names = ", ".join(v.ward_name(w) for w in joined.wards)
        turn_.say(t("join.volunteer", wards=names))
    else:
        assert joined.site is not None
        turn_.say(t("join.staff", site=joined.site.name))


# ---------------------------------------------------------------- /day


def parse_day(text: str, today: dt.date) -> dt.date | None:
    """A day as typed: ``25/11``, ``25/11/2026``, ``25-11-2026``, ``2026-11-25`` (None: not
    a day)."""
    text = text.strip()
    try:
        if len(text) == 10 and text[4] == "-":
            return dt.date.fromisoformat(text)
        parts = text.replace("-", "/").replace(".", "/").split("/")
        if len(parts) not in (2, 3) or not all(p.isascii() and p.isdigit() for p in parts):
            return None
        day, month = int(parts[0]), int(parts[1])
        year = int(parts[2]) if len(parts) == 3 else today.year
        if year < 100:
            year += 2000
        return dt.date(year, month, day)
    except (ValueError, IndexError):
        return None


def _may_see_days(account: Account | None) -> bool:
    return account is not None and account.role in ci.STAFF_ROLES and account.suspended_at is None


async def _sites_for(turn_: Turn, account: Account) -> list[Site]:
    """The sites whose days the account sees: its own; an admin's, every active site."""
    if account.role == "admin":
        return list(
            await turn_.session.scalars(
                select(Site).where(Site.active.is_(True)).order_by(Site.name)
            )
        )
    return await inv.staff_sites(turn_.session, account)


@turn()
async def day(turn_: Turn) -> None:
    """/day [SITE] [DATE]: who is booked at the staff's site on a day (today by default)."""
    t, account = turn_.t, turn_.account
    if not _may_see_days(account):
        turn_.say(t("site.staff_only"))
        return
    assert account is not None
    today = turn_.services.today()
    when, words = today, []
    for word in turn_.text.split()[1:]:
        parsed = parse_day(word, today)
        if parsed is not None:
            when = parsed
        else:
            words.append(word)
    if words:
        sites = await _find_sites(turn_, " ".join(words)[:80])
    else:
        sites = await _sites_for(turn_, account)
    if not sites:
        turn_.say(t("day.no_site" if words else "day.no_sites"))
        return
    if len(sites) == 1:
        await _show_day(turn_, account, sites[0].id, when)
        return
    if len(sites) > MAX_CHOICES:
        turn_.say(t("day.too_many_sites", count=len(sites)))
        return
    turn_.say(
        t("day.choose_site", date=t.date(when)),
        inline([[(s.name, f"day:{s.id}:{when:%Y%m%d}")] for s in sites]),
    )


@turn()
async def day_pressed(turn_: Turn) -> None:
    """A site, or another day, for /day (checked again: the data may be forged)."""
    t, account = turn_.t, turn_.account
    parts = callback_parts(turn_.update, "day") or []
    site_id = parse_id(parts[0]) if len(parts) == 2 else None
    when = None
    if len(parts) == 2 and len(parts[1]) == 8 and parts[1].isascii() and parts[1].isdigit():
        try:
            when = dt.datetime.strptime(parts[1], "%Y%m%d").date()
        except ValueError:
            when = None
    if site_id is None or when is None:
        turn_.toast(t("error.button.stale"), alert=True)
        return
    if not _may_see_days(account):
        turn_.toast(t("site.staff_only"), alert=True)
        return
    assert account is not None
    await _show_day(turn_, account, site_id, when)


async def _show_day(turn_: Turn, account: Account, site_id: int, when: dt.date) -> None:
    """The bookings of ``when`` at the site, by time: time, code, name, status; the days
    before and after as choices."""
    t, session = turn_.t, turn_.session
    try:
        await ci.require_site_staff(session, account, site_id)
    except DomainError as err:
        if turn_.update.callback_query is not None:
            turn_.toast(render_error(t, err), alert=True)
        else:
            turn_.say(render_error(t, err))
        return
    site = await session.get(Site, site_id)
    if site is None:
        turn_.toast(t("error.button.stale"), alert=True)
        return
    rows = (
        await session.execute(
            select(Slot.start_time, Booking.code, HealthBook.full_name, Booking.status)
            .join(Booking, Booking.session_id == Slot.id)
            .join(HealthBook, HealthBook.id == Booking.health_book_id)
            .where(Slot.site_id == site_id, Slot.date == when)
            .order_by(Slot.start_time, Booking.code)
        )
    ).all()
    lines = [
        f"{start:%H:%M} {code} {name} — {_status(t, status)}" for start, code, name, status in rows
    ]
    head = t("day.title", site=site.name, date=t.date(when), count=len(rows))
    if not lines:
        head += "\n" + t("day.none")
    others = inline(
        [
            [
                (t("day.button.before"), f"day:{site_id}:{when - dt.timedelta(days=1):%Y%m%d}"),
                (t("day.button.after"), f"day:{site_id}:{when + dt.timedelta(days=1):%Y%m%d}"),
            ]
        ]
    )
    pages = chunk(lines, DAY_LINES) or [[]]
    for i, page in enumerate(pages):
        text = "\n".join([head, *page] if i == 0 else page)
        turn_.say(text, others if i == len(pages) - 1 else None)


def _count(t: Translator, key: str, count: int) -> str:
    """``1 person`` / ``5 people``: the ``.one`` form for one."""
    return t(f"{key}.one") if count == 1 else t(key, count=count)


def _status(t: Translator, status: str) -> str:
    key = f"status.{status}"
    return t(key) if t.has(key) else status


# ---------------------------------------------------------------- wiring


def handlers() -> list[BaseHandler]:
    """The /invite and /join conversation, and /day with its choices."""
    invite_buttons: list[BaseHandler] = [
        CallbackQueryHandler(role_chosen, pattern=r"^inv:r:"),
    ]
    states = _States(
        {
            Stage.ROLE: invite_buttons,
            Stage.WARD: [
                CallbackQueryHandler(ward_chosen, pattern=r"^inv:w:"),
                CallbackQueryHandler(wards_done, pattern=r"^inv:next$"),
                MessageHandler(NEW_TEXT, ward_typed),
            ],
            Stage.SITE: [
                CallbackQueryHandler(site_chosen, pattern=r"^inv:s:"),
                MessageHandler(NEW_TEXT, site_typed),
            ],
            Stage.USES: [CallbackQueryHandler(uses_chosen, pattern=r"^inv:n:")],
            Stage.DAYS: [CallbackQueryHandler(days_chosen, pattern=r"^inv:d:")],
            Stage.CODE: [MessageHandler(NEW_TEXT, code_typed)],
        }
    )
    commands: list[BaseHandler] = [
        CommandHandler("invite", invite, filters=PRIVATE),
        CommandHandler("join", join_command, filters=PRIVATE),
    ]
    with warnings.catch_warnings():
        # per_message=False is deliberate: every press is checked against the persisted state
        warnings.filterwarnings("ignore", "If 'per_message=False'", PTBUserWarning)
        conversation = ConversationHandler(
            entry_points=[*commands],
            states=states,
            fallbacks=[
                *commands,
                CommandHandler("cancel", cancel),
                CallbackQueryHandler(stale, pattern=r"^inv:"),
                MessageHandler(NEW_TEXT, stale),
            ],
            name=NAME,
            persistent=True,
            allow_reentry=True,
        )
    return [
        conversation,
        CallbackQueryHandler(_refused_press, pattern=r"^inv:"),
        CommandHandler("day", day, filters=PRIVATE),
        CallbackQueryHandler(day_pressed, pattern=r"^day:"),
    ]


@turn()
async def _refused_press(turn_: Turn) -> None:
    """An /invite choice pressed outside the conversation (stale, or forged by a resident)."""
    if _admin(turn_) is None:
        _refuse_admin(turn_)
    else:
        turn_.toast(turn_.t("error.button.stale"), alert=True)


__all__ = ["NAME", "Stage", "describe", "handlers", "parse_day", "redeem"]
