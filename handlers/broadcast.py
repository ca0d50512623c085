"""/broadcast: an admin sends a text to residents (text → audience → count → confirm), and what
goes with it: the ``broadcast`` renderer (the text under a header in the reader's language),
the admin's progress message updated after each batch of the dispatcher, and the
``session_cancelled`` notice of ``healthbook sessions cancel``.

Anyone but an admin gets, for /broadcast, exactly what an unknown command gets (nothing says
it exists). The text and the audience chosen so far live in a draft row (``broadcasts``,
status ``draft``), the step in the persisted conversation state; Confirm turns the draft into
one outbox row per recipient with one INSERT … SELECT (:mod:`models.broadcasts`)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import warnings
import zlib
from enum import StrEnum

from sqlalchemy import func, select
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot.channels import DeliveryError
from bot.channels.base import Reply
from bot.context import Services
from bot.i18n import Translator
from handlers import help as help_handlers
from handlers.booking import campaign_name
from handlers.common import Turn, callback_ids, callback_parts, inline, parse_id, render_error, turn
from handlers.notices import AFTER_PASS, Notice, renders
from models import broadcasts as bc
from models import outbox
from models import validators as v
from models.campaigns import active_campaigns
from models.errors import DomainError, InvalidAnswer
from models.roles import is_admin
from models.sessions_admin import KIND as SESSION_CANCELLED
from models.tables import Account, Booking, Broadcast, Campaign, Session, Site
from models.timeutil import as_aware

log = logging.getLogger(__name__)
NAME = "broadcast"
PRIVATE = filters.ChatType.PRIVATE
NEW_TEXT = filters.UpdateType.MESSAGE & filters.TEXT & ~filters.COMMAND
MAX_SITES = 8  # site buttons shown; the others are typed
DAYS_AHEAD = 14
#: the admin's progress message is edited at most this often (Telegram), always at the end
THROTTLE_SECONDS = 3.0
#: where a channel that cannot edit (Zalo) sends a new progress message, in percent
MILESTONES = (25, 50, 75)
_DAY = re.compile(r"^\s*(\d{1,2})\s*[/.-]\s*(\d{1,2})(?:\s*[/.-]\s*(\d{4}))?\s*$")


class Step(StrEnum):
    """States of the /broadcast conversation."""

    TEXT = "text"
    AUDIENCE = "audience"
    COMMUNE = "commune"
    SITE = "site"
    DAY = "day"
    CAMPAIGN = "campaign"
    CONFIRM = "confirm"


def _admin(turn_: Turn) -> Account | None:
    """The sender's admin account (their own, or the person's when linked), if they are one."""
    for account in (turn_.own, turn_.account):
        if is_admin(account):
            return account
    return None


async def _draft(turn_: Turn) -> Broadcast | None:
    admin = _admin(turn_)
    return await bc.draft_of(turn_.session, admin.id) if admin is not None else None


async def _not_admin(turn_: Turn) -> object:
    """What an unknown command gets outside a conversation (the conversation ends, if a
    former admin was in one)."""
    await help_handlers.idle_answer(turn_)
    return ConversationHandler.END


# ---------------------------------------------------------------- the conversation


@turn(NAME)
async def start(turn_: Turn) -> object:
    """/broadcast: admins type the text; anyone else gets the unknown-command answer."""
    if _admin(turn_) is None:
        return await _not_admin(turn_)
    turn_.say(turn_.t("broadcast.ask_text", limit=bc.MAX_TEXT))
    return Step.TEXT


@turn(NAME)
async def text_typed(turn_: Turn) -> object:
    """The text: checked (length, characters), kept as a draft; then who gets it."""
    admin = _admin(turn_)
    if admin is None:
        return await _not_admin(turn_)
    message = turn_.update.effective_message
    raw = message.text if message is not None and message.text else ""
    try:
        await bc.start_draft(turn_.session, admin.id, raw)
    except DomainError as err:
        turn_.say(render_error(turn_.t, err))
        return Step.TEXT
    ask_audience(turn_)
    return Step.AUDIENCE


@turn(NAME)
async def not_text(turn_: Turn) -> object:
    """A picture, sticker… where the text is expected."""
    if _admin(turn_) is None:
        return await _not_admin(turn_)
    turn_.say(turn_.t("broadcast.text_only"))
    return Step.TEXT


def ask_audience(turn_: Turn, key: str = "broadcast.ask_audience", **params: object) -> None:
    """The four audiences."""
    t = turn_.t
    turn_.say(
        t(key, **params),
        inline([[(t(f"broadcast.audience.{kind}"), f"bc:a:{kind}")] for kind in bc.AUDIENCES]),
    )


@turn(NAME)
async def audience_chosen(turn_: Turn) -> object:
    """An audience: everyone goes to the count at once; the others ask what they need."""
    draft = await _draft(turn_)
    parts = callback_parts(turn_.update, "bc:a") or []
    if draft is None:
        return await _lost(turn_)
    kind = parts[0] if len(parts) == 1 and parts[0] in bc.AUDIENCES else None
    if kind is None:
        turn_.toast(turn_.t("error.button.invalid"))
        return None
    t = turn_.t
    if kind == "everyone":
        return await confirm(turn_, draft, bc.Audience("everyone"))
    if kind == "commune":
        province = turn_.services.settings.bot.default_province
        turn_.say(t("broadcast.ask_commune", example=v.ward_example(province)))
        return Step.COMMUNE
    if kind == "site_day":
        return await ask_site(turn_)
    campaigns = await active_campaigns(turn_.session, turn_.services.today())
    if not campaigns:
        campaigns = list(await turn_.session.scalars(select(Campaign).order_by(Campaign.code)))
    if not campaigns:
        ask_audience(turn_, "broadcast.no_campaign")
        return Step.AUDIENCE
    turn_.say(
        t("broadcast.ask_campaign"),
        inline([[(campaign_name(t, c), f"bc:c:{c.id}")] for c in campaigns]),
    )
    return Step.CAMPAIGN


@turn(NAME)
async def commune_typed(turn_: Turn) -> object:
    """A commune's name, matched as the health book matches it; several: choose one."""
    draft = await _draft(turn_)
    if draft is None:
        return await _lost(turn_)
    t = turn_.t
    province = turn_.services.settings.bot.default_province
    try:
        found = v.search_wards(province, turn_.text[:100])
    except InvalidAnswer as err:
        turn_.say(t(err.key, **err.params))
        return Step.COMMUNE
    if len(found) == 1:
        return await confirm(turn_, draft, bc.Audience("commune", ward=found[0][0]))
    turn_.say(
        t("broadcast.choose_commune"), inline([[(name, f"bc:w:{code}")] for code, name in found])
    )
    return Step.COMMUNE


@turn(NAME)
async def commune_chosen(turn_: Turn) -> object:
    """One of several communes (a forged code is refused by the domain's check)."""
    draft = await _draft(turn_)
    ids = callback_ids(turn_.update, "bc:w", 1)
    if draft is None:
        return await _lost(turn_)
    if ids is None:
        turn_.toast(turn_.t("error.button.invalid"))
        return None
    return await confirm(turn_, draft, bc.Audience("commune", ward=ids[0]))


async def _sites(turn_: Turn) -> list[Site]:
    return list(
        await turn_.session.scalars(select(Site).where(Site.active.is_(True)).order_by(Site.name))
    )


async def ask_site(turn_: Turn) -> object:
    """The sites (the first few as choices; any can be typed)."""
    t = turn_.t
    sites = await _sites(turn_)
    if not sites:
        ask_audience(turn_, "broadcast.no_sites")
        return Step.AUDIENCE
    rows = [[(s.name, f"bc:s:{s.id}")] for s in sites[:MAX_SITES]]
    text = t("broadcast.ask_site")
    if len(sites) > MAX_SITES:
        text += "\n" + t("broadcast.more_sites", count=len(sites) - MAX_SITES)
    turn_.say(text, inline(rows))
    return Step.SITE


@turn(NAME)
async def site_chosen(turn_: Turn) -> object:
    """A site: its days."""
    draft = await _draft(turn_)
    ids = callback_ids(turn_.update, "bc:s", 1)
    if draft is None:
        return await _lost(turn_)
    site = await turn_.session.get(Site, ids[0]) if ids is not None else None
    if site is None:
        turn_.toast(turn_.t("error.button.invalid"))
        return None
    return await ask_day(turn_, draft, site)


@turn(NAME)
async def site_typed(turn_: Turn) -> object:
    """A site's code or part of its name or commune, typed."""
    draft = await _draft(turn_)
    if draft is None:
        return await _lost(turn_)
    query = turn_.text.strip()[:60]
    sites = await _sites(turn_)
    found = [s for s in sites if s.code.casefold() == query.casefold()]
    if not found:
        wanted = v.fold(query)
        found = [s for s in sites if wanted and wanted in v.fold(f"{s.name} {_ward(s)}")]
    if len(found) == 1:
        return await ask_day(turn_, draft, found[0])
    t = turn_.t
    if not found:
        example = sites[0].code if sites else ""
        turn_.say(t("broadcast.site_unknown", query=query, example=example))
        return Step.SITE
    turn_.say(t("broadcast.ask_site"), inline([[(s.name, f"bc:s:{s.id}")] for s in found[:10]]))
    return Step.SITE


def _ward(site: Site) -> str:
    try:
        return v.ward_name(site.ward_code)
    except KeyError:
        return ""


async def ask_day(turn_: Turn, draft: Broadcast, site: Site) -> object:
    """The site's days with sessions from today (how many are booked on each), or type one."""
    t, today = turn_.t, turn_.services.today()
    bc.set_audience(draft, bc.Audience("site_day", site_id=site.id))
    rows = (
        await turn_.session.execute(
            select(Session.date, func.sum(Session.booked))
            .where(
                Session.site_id == site.id,
                Session.date >= today,
                Session.date < today + dt.timedelta(days=DAYS_AHEAD),
                Session.cancelled_at.is_(None),
            )
            .group_by(Session.date)
            .order_by(Session.date)
        )
    ).all()
    if not rows:
        turn_.say(t("broadcast.no_days", site=site.name, days=DAYS_AHEAD))
        return Step.DAY
    turn_.say(
        t("broadcast.ask_day", site=site.name),
        inline(
            [
                [
                    (
                        t("broadcast.day_button", day=t.date(day), count=int(n or 0)),
                        f"bc:d:{site.id}:{day:%Y%m%d}",
                    )
                ]
                for day, n in rows
            ]
        ),
    )
    return Step.DAY


@turn(NAME)
async def day_chosen(turn_: Turn) -> object:
    """A day of the site."""
    draft = await _draft(turn_)
    parts = callback_parts(turn_.update, "bc:d") or []
    if draft is None:
        return await _lost(turn_)
    site_id = parse_id(parts[0]) if len(parts) == 2 else None
    day = _yyyymmdd(parts[1]) if len(parts) == 2 else None
    if site_id is None or day is None:
        turn_.toast(turn_.t("error.button.invalid"))
        return None
    return await confirm(turn_, draft, bc.Audience("site_day", site_id=site_id, day=day))


@turn(NAME)
async def day_typed(turn_: Turn) -> object:
    """A day typed (30/11, 30/11/2026, 2026-11-30) for the site chosen."""
    draft = await _draft(turn_)
    if draft is None:
        return await _lost(turn_)
    chosen = bc.audience_of(draft)
    day = parse_day(turn_.text, turn_.services.today())
    if chosen.kind != "site_day" or chosen.site_id is None:
        return await _lost(turn_)
    if day is None:
        turn_.say(turn_.t("broadcast.day_unknown", query=turn_.text.strip()[:30]))
        return Step.DAY
    return await confirm(turn_, draft, bc.Audience("site_day", site_id=chosen.site_id, day=day))


def _yyyymmdd(text: str) -> dt.date | None:
    if not (len(text) == 8 and text.isascii() and text.isdigit()):
        return None
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def parse_day(text: str, today: dt.date) -> dt.date | None:
    """A day as people type it: ``30/11`` (this year, or the next when that day is more than
    half a year gone), ``30/11/2026``, ``2026-11-30``."""
    text = text.strip()
    if len(text) == 10 and text[4] == "-":
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            return None
    match = _DAY.match(text)
    if match is None:
        return None
    day, month, year = match.groups()
    try:
        if year is not None:
            return dt.date(int(year), int(month), int(day))
        found = dt.date(today.year, int(month), int(day))
    except ValueError:
        return None
    if found < today - dt.timedelta(days=183):
        try:
            found = found.replace(year=today.year + 1)
        except ValueError:
            return None
    return found


@turn(NAME)
async def campaign_chosen(turn_: Turn) -> object:
    """A campaign: the people due for their next dose of it."""
    draft = await _draft(turn_)
    ids = callback_ids(turn_.update, "bc:c", 1)
    if draft is None:
        return await _lost(turn_)
    if ids is None:
        turn_.toast(turn_.t("error.button.invalid"))
        return None
    return await confirm(turn_, draft, bc.Audience("due", campaign_id=ids[0]))


async def describe(turn_: Turn, audience: bc.Audience) -> str:
    """The audience in words."""
    t, session = turn_.t, turn_.session
    if audience.kind == "commune":
        return t("broadcast.describe.commune", commune=v.ward_name(int(audience.ward or 0)))
    if audience.kind == "site_day":
        site = await session.get(Site, audience.site_id)
        assert site is not None and audience.day is not None
        return t("broadcast.describe.site_day", site=site.name, day=t.date(audience.day))
    if audience.kind == "due":
        campaign = await session.get(Campaign, audience.campaign_id)
        assert campaign is not None
        return t("broadcast.describe.due", campaign=campaign_name(t, campaign))
    return t("broadcast.describe.everyone")


async def confirm(turn_: Turn, draft: Broadcast, audience: bc.Audience) -> object:
    """The count, and the message as people will see it: Send / Cancel (nobody: another
    audience)."""
    t, services = turn_.t, turn_.services
    try:
        audience = await bc.check_audience(turn_.session, audience)
    except DomainError:  # a forged commune, site or campaign
        turn_.toast(t("error.button.invalid"))
        return None
    bc.set_audience(draft, audience)
    count = await bc.count(turn_.session, audience, services.today(), services.tz)
    words = await describe(turn_, audience)
    if count == 0:
        ask_audience(turn_, "broadcast.nobody", audience=words)
        return Step.AUDIENCE
    preview = f"{t('broadcast.header')}\n\n{draft.text}"
    turn_.say(
        t("broadcast.confirm", count=count, audience=words, preview=preview),
        inline(
            [
                [(t("broadcast.button_send"), f"bc:ok:{draft.id}:{audience_mark(draft)}")],
                [(t("broadcast.button_cancel"), f"bc:no:{draft.id}")],
            ]
        ),
    )
    return Step.CONFIRM


def audience_mark(draft: Broadcast) -> int:
    """A short fingerprint of a draft's audience, carried by its Send: a confirmation's Send
    sends to the audience that confirmation showed, or to nobody."""
    params = json.dumps(draft.audience_params or {}, sort_keys=True)
    return zlib.crc32(f"{draft.audience}|{params}".encode()) & 0x7FFFFFFF


@turn(NAME)
async def confirmed(turn_: Turn) -> object:
    """Send: one outbox row per recipient (the dispatcher sends them), and the progress
    message (on Telegram the pressed message itself, edited as the copies go)."""
    admin = _admin(turn_)
    ids = callback_ids(turn_.update, "bc:ok", 2)
    if admin is None:
        return await _not_admin(turn_)
    draft = await turn_.session.get(Broadcast, ids[0]) if ids is not None else None
    if (
        draft is None
        or ids is None
        or draft.created_by != admin.id
        or draft.status != "draft"
        # the Send of an earlier confirmation, shown for another audience: sending it would
        # reach people its message did not name
        or ids[1] != audience_mark(draft)
    ):
        turn_.toast(turn_.t("error.button.stale"))
        return None
    services = turn_.services
    now = services.clock()
    due = outbox.after_quiet_hours(now, services.settings.reminders.quiet, services.tz)
    query = turn_.update.callback_query
    pressed = query.message if query is not None and not turn_.typed else None
    message_id = str(pressed.message_id) if pressed is not None else None
    try:
        total = await bc.send(
            turn_.session,
            draft,
            today=services.today(),
            tz=services.tz,
            due_at=due,
            progress=(turn_.channel, str(turn_.chat_id), message_id),
        )
    except DomainError as err:
        turn_.say(render_error(turn_.t, err))
        return ConversationHandler.END
    text = progress_text(turn_.t, draft, bc.Progress(0, 0, total))
    if as_aware(due) > as_aware(now):
        local = as_aware(due).astimezone(services.tz)
        text += "\n" + turn_.t("broadcast.held", time=f"{local:%H:%M}")
    turn_.close_with = text
    return ConversationHandler.END


@turn(NAME)
async def cancelled(turn_: Turn) -> object:
    """Cancel at the confirm step: the draft is dropped, nothing is sent."""
    admin = _admin(turn_)
    ids = callback_ids(turn_.update, "bc:no", 1)
    if admin is None:
        return await _not_admin(turn_)
    if ids is not None:
        await bc.cancel_draft(turn_.session, admin.id, ids[0])
    turn_.close_with = turn_.t("broadcast.cancelled")
    return ConversationHandler.END


@turn(NAME)
async def cancel_command(turn_: Turn) -> object:
    """/cancel at any step: the draft is dropped."""
    admin = _admin(turn_)
    draft = await _draft(turn_)
    if admin is not None and draft is not None:
        await bc.cancel_draft(turn_.session, admin.id, draft.id)
    turn_.say(turn_.t("broadcast.cancelled"))
    return ConversationHandler.END


async def _lost(turn_: Turn) -> object:
    """No draft (sent or cancelled elsewhere, or no longer an admin): start again."""
    if _admin(turn_) is None:
        return await _not_admin(turn_)
    turn_.say(turn_.t("broadcast.ask_text", limit=bc.MAX_TEXT))
    return Step.TEXT


@turn(NAME)
async def stale(turn_: Turn) -> object:
    """Anything else at a step: the choices again (a stale button: a notice)."""
    if _admin(turn_) is None:
        return await _not_admin(turn_)
    if turn_.update.callback_query is not None:
        turn_.toast(turn_.t("error.button.stale"))
    else:
        await turn_.say_again_with_choices(turn_.t("broadcast.use_choices"))
    return None


def build() -> ConversationHandler:
    """The /broadcast conversation, as a transition table. Registered after the other
    conversations: mid-way through one of them, /broadcast is that conversation's unknown
    command, for everyone alike."""
    states: dict[object, list[BaseHandler]] = {
        Step.TEXT: [
            MessageHandler(NEW_TEXT, text_typed),
            MessageHandler(filters.UpdateType.MESSAGE & ~filters.COMMAND, not_text),
        ],
        Step.AUDIENCE: [CallbackQueryHandler(audience_chosen, pattern=r"^bc:a:")],
        Step.COMMUNE: [
            CallbackQueryHandler(commune_chosen, pattern=r"^bc:w:"),
            CallbackQueryHandler(audience_chosen, pattern=r"^bc:a:"),
            MessageHandler(NEW_TEXT, commune_typed),
        ],
        Step.SITE: [
            CallbackQueryHandler(site_chosen, pattern=r"^bc:s:"),
            CallbackQueryHandler(audience_chosen, pattern=r"^bc:a:"),
            MessageHandler(NEW_TEXT, site_typed),
        ],
        Step.DAY: [
            CallbackQueryHandler(day_chosen, pattern=r"^bc:d:"),
            CallbackQueryHandler(site_chosen, pattern=r"^bc:s:"),
            MessageHandler(NEW_TEXT, day_typed),
        ],
        Step.CAMPAIGN: [
            CallbackQueryHandler(campaign_chosen, pattern=r"^bc:c:"),
            CallbackQueryHandler(audience_chosen, pattern=r"^bc:a:"),
        ],
        Step.CONFIRM: [
            CallbackQueryHandler(confirmed, pattern=r"^bc:ok:"),
            CallbackQueryHandler(cancelled, pattern=r"^bc:no:"),
            CallbackQueryHandler(audience_chosen, pattern=r"^bc:a:"),
        ],
    }
    with warnings.catch_warnings():
        # per_message=False is deliberate: every press is checked against the admin's draft
        warnings.filterwarnings("ignore", "If 'per_message=False'", PTBUserWarning)
        return ConversationHandler(
            entry_points=[CommandHandler("broadcast", start, filters=PRIVATE)],
            states=states,
            fallbacks=[
                CommandHandler("broadcast", start, filters=PRIVATE),
                CommandHandler("cancel", cancel_command),
                CallbackQueryHandler(stale, pattern=r"^bc:"),
                MessageHandler(filters.UpdateType.MESSAGE & ~filters.COMMAND, stale),
            ],
            name=NAME,
            persistent=True,
            allow_reentry=True,
        )


# ---------------------------------------------------------------- what people receive


@renders(bc.KIND)
async def render_broadcast(n: Notice) -> Reply | None:
    """A copy of a broadcast: the header in the reader's language, the admin's text as written."""
    broadcast = await n.session.get(Broadcast, n.message.broadcast_id)
    if broadcast is None:
        return None
    return Reply(text=f"{n.t('broadcast.header')}\n\n{broadcast.text}")


@renders(SESSION_CANCELLED)
async def render_session_cancelled(n: Notice) -> Reply | None:
    """A booked session was cancelled: which, why (when the admin said), and Book again."""
    t, session = n.t, n.session
    booking = await session.get(Booking, n.message.booking_id)
    slot = await session.get(Session, n.message.ref_id)
    if booking is None or slot is None:
        return None
    site = await session.get(Site, slot.site_id)
    assert site is not None
    lines = [
        t(
            "session_cancelled.notice",
            site=site.name,
            day=t.date(slot.date),
            hours=f"{slot.start_time:%H:%M}–{slot.end_time:%H:%M}",
            code=booking.code,
        )
    ]
    reason = (n.message.params or {}).get("reason")
    if isinstance(reason, str) and reason:
        lines.append(t("session_cancelled.reason", reason=reason))
    lines.append(t("session_cancelled.book_again"))
    return Reply(
        text="\n".join(lines),
        markup=inline([[(t("session_cancelled.button_book"), f"bk:go:{booking.campaign_id}")]]),
    )


# ---------------------------------------------------------------- the admin's progress message


def progress_text(t: Translator, broadcast: Broadcast, p: bc.Progress) -> str:
    """ "Sent X · Failed Y · Left Z", or the final counts."""
    key = "broadcast.progress" if p.left else "broadcast.progress_done"
    return t(
        key, number=broadcast.id, total=broadcast.total, sent=p.sent, failed=p.failed, left=p.left
    )


def _due_to_show(broadcast: Broadcast, p: bc.Progress, now: dt.datetime, edits: bool) -> bool:
    """Whether the progress message is shown again now: at the end always; before, where
    messages are edited, when the counts moved and the last edit is a few seconds old; where
    they are not, at each milestone passed (25%, 50%, 75%)."""
    shown = broadcast.progress_shown or {}
    if p.left == 0:
        return not shown.get("done", False)
    if edits:
        counts = [p.sent, p.failed, p.left]
        last = shown.get("at")
        if shown.get("counts") == counts:
            return False
        if not isinstance(last, str):
            return True
        return (now - dt.datetime.fromisoformat(last)).total_seconds() >= THROTTLE_SECONDS
    total = broadcast.total or 1
    reached = max([m for m in MILESTONES if (total - p.left) * 100 >= m * total], default=0)
    return reached > int(shown.get("milestone", 0))


async def show_progress(services: Services, broadcast_ids: set[int]) -> None:
    """After a batch of the dispatcher: update each broadcast's progress message where due,
    and mark a broadcast done once nothing is left."""
    for broadcast_id in sorted(broadcast_ids):
        async with services.sessions() as session, session.begin():
            broadcast = await session.get(Broadcast, broadcast_id, with_for_update=True)
            if broadcast is None or broadcast.status != "sending":
                continue
            p = await bc.progress(session, broadcast_id)
            if p.left == 0:
                broadcast.status = "done"
            where = (broadcast.progress_channel, broadcast.progress_chat)
            channel = services.channels.get(where[0] or "")
            if channel is None or where[1] is None:
                continue
            now = services.clock()
            edits = channel.edits
            if not _due_to_show(broadcast, p, now, edits):
                continue
            total = broadcast.total or 1
            shown = dict(broadcast.progress_shown or {})
            shown.update(
                at=now.isoformat(),
                counts=[p.sent, p.failed, p.left],
                milestone=max(
                    [m for m in MILESTONES if (total - p.left) * 100 >= m * total], default=0
                ),
                done=p.left == 0,
            )
            broadcast.progress_shown = shown
            admin = await session.get(Account, broadcast.created_by)
            locale = admin.locale if admin is not None else None
            t = services.translations.get(locale or services.settings.bot.default_locale, where[0])
            text = progress_text(t, broadcast, p)
            message_id = broadcast.progress_message
        try:
            new_id = await channel.update(where[1], message_id, text)
        except DeliveryError as exc:
            log.warning("broadcast %d: progress not shown: %s", broadcast_id, exc)
            continue
        if new_id is not None and new_id != message_id:
            async with services.sessions() as session, session.begin():
                found = await session.get(Broadcast, broadcast_id)
                if found is not None:
                    found.progress_message = new_id


AFTER_PASS.append(show_progress)


__all__ = ["Step", "build", "parse_day", "progress_text", "show_progress"]
