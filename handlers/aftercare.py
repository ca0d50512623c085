"""After-care: the advice sent when a dose is recorded, the next day's check-in ("how do you
feel?": fine, mild reaction, serious reaction), the answer to it, the alert a serious answer
sends to the site's staff, and /reactions, where staff see the reports of their sites.

The check-in and the alert are outbox rows (:mod:`models.outbox`), rendered here when the
dispatcher sends them. The check-in's choices carry the booking (``ac:<booking>:f|m|s``): they
may be forged, so the answer is checked against the person's own health books."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot.channels.base import Reply
from bot.i18n import Translator
from handlers.common import Turn, callback_parts, inline, parse_id, timing, turn
from handlers.notices import Notice, renders
from models import aftercare as ac
from models import custody, outbox
from models import healthbook as hb
from models.checkin import STAFF_ROLES
from models.errors import DomainError
from models.tables import Account, Booking, Reaction, Site, Vaccine
from models.timeutil import as_aware

log = logging.getLogger(__name__)
Reask = Callable[[Turn], Awaitable[object]]

CODES = {"f": "fine", "m": "mild", "s": "serious"}
LETTERS = {severity: letter for letter, severity in CODES.items()}
ICONS = {"serious": "🔴", "mild": "🟡", "fine": "🟢"}
SHOWN_REPORTS = 30  # lines of /reactions; the rest are counted


async def _vaccine_name(session: AsyncSession, code: str) -> str:
    name = await session.scalar(select(Vaccine.name).where(Vaccine.code == code))
    return str(name or code)


def _local(t: Translator, when: dt.datetime, tz: dt.tzinfo) -> str:
    """A moment as people here read it: ``09:00, Thứ Năm, 26/11/2026``."""
    local = as_aware(when).astimezone(tz)
    return f"{local:%H:%M}, {t.date(local.date())}"


def numbers(turn_: Turn | Notice) -> dict[str, str]:
    """The hotline and the emergency number, from settings."""
    bot = turn_.services.settings.bot
    return {"hotline": bot.hotline, "emergency": bot.emergency}


# ---------------------------------------------------------------- when a dose is recorded


async def after_dose(turn_: Turn, booking: Booking) -> None:
    """A dose was just recorded for ``booking`` (by site staff, in this turn's transaction):
    plan the next day's check-in and send the person the after-vaccination advice at once."""
    services = turn_.services
    dose = await ac.dose_of(turn_.session, booking.id)
    if dose is None:
        return
    planned = await ac.plan_checkin(
        turn_.session, booking, as_aware(dose.vaccination.given_at), timing(services)
    )
    # the holder, or the volunteer helping a resident without an account (models/custody.py)
    recipient = await custody.recipient_id(turn_.session, dose.book)
    account = await turn_.session.get(Account, recipient) if recipient is not None else None
    if account is None:
        return
    to = await hb.reply_address(turn_.session, account)
    t = services.translations.get(account.locale, to.channel)
    text = t("aftercare.advice", **numbers(turn_))
    found = await custody.access(turn_.session, account, dose.book)
    if found is not None and found.for_another:  # whose dose it was
        text = t("notice.for", name=dose.book.full_name) + "\n" + text
    if planned is not None:
        text += "\n\n" + t("aftercare.will_ask", when=_local(t, planned.due_at, services.tz))
    turn_.notify(to, text, locale=t.locale)


# ---------------------------------------------------------------- the check-in


def checkin_choices(t: Translator, booking_id: int) -> list[list[tuple[str, str]]]:
    """Fine / mild / serious, each carrying the booking."""
    return [
        [(t(f"aftercare.button.{severity}"), f"ac:{booking_id}:{LETTERS[severity]}")]
        for severity in ac.SEVERITIES
    ]


@renders(ac.CHECKIN)
async def render_checkin(n: Notice) -> Reply | None:
    """The day after a dose: how do you feel? (None when the health book or the dose is gone,
    or the person has answered already). The text is the rule's own in the reader's language
    when it has one (``healthbook reminders set aftercare_checkin``), else the catalogue's;
    what to do in an emergency always follows it."""
    if n.message.booking_id is None:
        return None
    dose = await ac.dose_of(n.session, n.message.booking_id)
    if dose is None or await ac.reaction_of(n.session, dose.booking.id) is not None:
        return None
    vaccination = dose.vaccination
    site = await n.session.get(Site, vaccination.site_id) if vaccination.site_id else None
    params = {
        "dose": vaccination.dose,
        "vaccine": await _vaccine_name(n.session, vaccination.vaccine_code),
        "site": site.name if site is not None else "—",
        "day": n.t.date(as_aware(vaccination.given_at).astimezone(n.services.tz).date()),
    }
    text = n.t("aftercare.checkin", **params)
    rule = await outbox.rule(n.session, ac.CHECKIN)
    own = (rule.texts or {}).get(n.t.locale) if rule is not None else None
    if own:
        try:
            text = str(own).format(**params)
        except (KeyError, IndexError, ValueError):  # set around the CLI's checks
            log.warning("the aftercare_checkin rule's %s text does not fit", n.t.locale)
    text += "\n\n" + n.t("aftercare.checkin_urgent", **numbers(n))
    return Reply(text=text, markup=inline(checkin_choices(n.t, dose.booking.id)))


@renders(ac.ALERT)
async def render_alert(n: Notice) -> Reply | None:
    """To each staff member of the site: a serious reaction was reported (booking code, dose,
    vaccine, when; no name). None when the report is gone (the person erased their data) or
    the recipient no longer works at that site."""
    reaction = await n.session.get(Reaction, n.message.ref_id) if n.message.ref_id else None
    if reaction is None or reaction.booking_id is None:
        return None
    if not await ac.staff_sees(n.session, n.account, reaction.site_id):
        return None
    dose = await ac.dose_of(n.session, reaction.booking_id)
    site = await n.session.get(Site, reaction.site_id) if reaction.site_id else None
    if dose is None or site is None:
        return None
    text = n.t(
        "aftercare.alert",
        severity=n.t(f"aftercare.severity.{reaction.severity}"),
        code=dose.booking.code,
        dose=reaction.dose,
        vaccine=await _vaccine_name(n.session, dose.vaccination.vaccine_code),
        site=site.name,
        when=_local(n.t, reaction.reported_at, n.services.tz),
    )
    return Reply(text=text)


# ---------------------------------------------------------------- handlers


def handlers(conversation: str | None, reask: Reask) -> list[BaseHandler]:
    """The check-in's answer and /reactions, inside a conversation (``reask`` asks its
    question again; outside one it does nothing)."""

    @turn(conversation)
    async def answered(turn_: Turn) -> object:
        """Fine / mild / serious: stored (once per dose, only ever more serious), then the
        advice that answer needs; serious: the emergency number at once, and the staff told."""
        t = turn_.t
        parts = callback_parts(turn_.update, "ac") or []
        booking_id = parse_id(parts[0]) if len(parts) == 2 else None
        severity = CODES.get(parts[1]) if len(parts) == 2 else None
        if booking_id is None or severity is None or turn_.account is None:
            turn_.toast(t("aftercare.stale", **numbers(turn_)), alert=True)
            return None
        try:
            done = await ac.report(
                turn_.session, turn_.account, booking_id, severity, turn_.services.clock()
            )
        except DomainError as err:
            key = "aftercare.closed" if err.key == "aftercare.closed" else "aftercare.stale"
            turn_.toast(t(key, **numbers(turn_)), alert=True)
            return None
        label = t(f"aftercare.button.{severity}")
        turn_.ack = label
        turn_.close_with = t("aftercare.answered", answer=label)
        text = t(f"aftercare.{severity}", **numbers(turn_))
        if severity == "serious" and done.alerted:
            site = await turn_.session.get(Site, done.reaction.site_id)
            text += "\n\n" + t("aftercare.staff_told", site=site.name if site else "")
        if not done.changed and done.reaction.severity != severity:
            kept = t(f"aftercare.severity.{done.reaction.severity}")
            text += "\n\n" + t("aftercare.kept", severity=kept)
        turn_.say(text)
        if severity == "serious":  # nothing else now: the emergency number stands alone
            return None
        return await reask(turn_)

    @turn(conversation)
    async def reactions(turn_: Turn) -> object:
        """/reactions (site staff): the reports of the last days at their sites."""
        t, account = turn_.t, turn_.account
        if account is None or account.role not in STAFF_ROLES or account.suspended_at:
            turn_.say(t("site.staff_only"))
            return await reask(turn_)
        services = turn_.services
        found = await ac.recent_reports(
            turn_.session, account, services.clock(), limit=SHOWN_REPORTS
        )
        if not found:
            turn_.say(t("aftercare.reports_none", days=ac.RECENT_DAYS))
            return await reask(turn_)
        total = await ac.count_reports(turn_.session, account, services.clock())
        lines = [t("aftercare.reports_title", days=ac.RECENT_DAYS, count=total)]
        site = None
        for seen in found:
            if seen.site != site:
                site = seen.site
                lines += ["", f"🏥 {site}"]
            reaction = seen.reaction
            local = as_aware(reaction.reported_at).astimezone(services.tz)
            lines.append(
                t(
                    "aftercare.report_line",
                    icon=ICONS.get(reaction.severity, "•"),
                    when=f"{local:%d/%m %H:%M}",
                    code=seen.code,
                    dose=reaction.dose or "?",
                    severity=t(f"aftercare.severity.{reaction.severity}"),
                )
            )
        if total > len(found):
            lines += ["", t("aftercare.reports_more", count=total - len(found))]
        turn_.say("\n".join(lines))
        return await reask(turn_)

    return [
        CallbackQueryHandler(answered, pattern=r"^ac:"),
        CommandHandler("reactions", reactions),
    ]


__all__ = ["after_dose", "checkin_choices", "handlers", "render_alert", "render_checkin"]
