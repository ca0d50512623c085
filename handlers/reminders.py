"""What reminders say and offer (renderers of :mod:`handlers.notices`), the answers to their
options, and the job that finds health books left unfinished.

Each kind's text is the catalogue's (``reminder.KIND``, ``waitlist.offer`` for offers) in the
recipient's language and messenger, unless its rule has a text of its own for that language
(``healthbook reminders set KIND --text vi=…``, same placeholders). A renderer returns None
when the reminder no longer applies (the booking was cancelled, the dose booked or given, the
health book saved, the offer over): the dispatcher then drops it."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import select
from telegram.ext import BaseHandler, CallbackQueryHandler

from bot.channels.base import Reply
from bot.context import HBContext
from handlers import booking as bkh
from handlers.common import Turn, callback_parts, inline, parse_id, render_error, timing, turn
from handlers.notices import Notice, renders
from models import booking as bk
from models import lookups as lk
from models import outbox, records
from models import reminders as rm
from models.errors import DomainError
from models.tables import (
    Booking,
    Campaign,
    Draft,
    HealthBook,
    OutboxMessage,
    Session,
    Vaccination,
    WaitlistEntry,
)
from models.timeutil import as_aware, to_utc

log = logging.getLogger(__name__)

#: the catalogue message of each kind (a rule's own text replaces it)
CATALOGUE = {
    "appointment_eve": "reminder.appointment_eve",
    "appointment_morning": "reminder.appointment_morning",
    "dose_due": "reminder.dose_due",
    "dose_due_again": "reminder.dose_due_again",
    "healthbook_unfinished": "reminder.healthbook_unfinished",
    "waitlist_offer": "waitlist.offer",
}


async def text_of(n: Notice, kind: str, **params: Any) -> str:
    """The reminder's text: its rule's own text in the reader's language when it has one,
    else the catalogue's (the rule's placeholders were checked when it was set)."""
    rule = await outbox.rule(n.session, kind)
    own = (rule.texts or {}).get(n.t.locale) if rule is not None else None
    if own:
        try:
            return str(own).format(**params)
        except (KeyError, IndexError, ValueError):  # a text set around the CLI's checks
            log.warning(
                "the %s rule's %s text does not fit: the catalogue's is used", kind, n.t.locale
            )
    return n.t(CATALOGUE[kind], **params)


def _hours(slot: Session) -> str:
    return f"{slot.start_time:%H:%M}–{slot.end_time:%H:%M}"


# ---------------------------------------------------------------- appointments


@renders(*rm.APPOINTMENT)
async def appointment(n: Notice) -> Reply | None:
    """The evening before and the morning of: where, when, the code, what to bring; I'll come,
    Reschedule, Cancel booking."""
    if n.message.booking_id is None:
        return None
    booking = await n.session.get(Booking, n.message.booking_id)
    if booking is None or booking.status != "booked":
        return None
    slot = await n.session.get(Session, booking.session_id)
    if slot is None or slot.cancelled_at is not None:
        return None
    if slot.date < n.services.today():  # sent late (a dispatcher was down): no longer true
        return None
    days = (slot.date - n.services.today()).days
    if n.message.kind != "appointment_morning" and days == 0 and await _morning_done(n, booking):
        return None  # held to the appointment's day: the morning one says it (one, not two)
    site = await lk.get_site(n.session, slot.site_id)
    campaign = await lk.get_campaign(n.session, booking.campaign_id)
    t = n.t
    params: dict[str, Any] = dict(
        site=site.name,
        address=site.address,
        day=t.date(slot.date),
        hours=_hours(slot),
        code=booking.code,
        campaign=bkh.campaign_name(t, campaign),
        dose=booking.dose,
    )
    # worded by the day it is sent, not by its kind (a reminder held by quiet hours, a rule
    # set to other days): today, tomorrow, or on the date
    wording = WORDING.get(days)
    if wording is not None:
        text = await text_of(n, wording, **params)
    else:
        text = t("reminder.appointment_ahead", **params)
    return Reply(
        text=text,
        markup=inline(
            [
                [(t("reminder.button_coming"), f"rm:ok:{booking.id}")],
                [(t("appointments.button_reschedule"), f"ap:r:{booking.id}")],
                [(t("reminder.button_cancel_booking"), f"ap:x:{booking.id}")],
            ]
        ),
    )


#: the appointment reminder whose words fit a send date that many days before the appointment
WORDING = {0: "appointment_morning", 1: "appointment_eve"}


async def _morning_done(n: Notice, booking: Booking) -> bool:
    """Whether the booking's morning reminder was sent, or goes now with this one."""
    now = to_utc(n.services.clock())
    found = await n.session.scalar(
        select(OutboxMessage.id)
        .where(
            OutboxMessage.booking_id == booking.id,
            OutboxMessage.kind == "appointment_morning",
            OutboxMessage.id != n.message.id,
            (OutboxMessage.status == "sent")
            | (OutboxMessage.status.in_(outbox.OPEN) & (OutboxMessage.due_at <= now)),
        )
        .limit(1)
    )
    return found is not None


@turn()
async def reminder_button(turn_: Turn) -> None:
    """ "I'll come" (``rm:ok:BOOKING``): a short thanks, the reminder's options closed. Only the
    booking's holder may answer; a forged or old id gets the usual refusal."""
    parts = callback_parts(turn_.update, "rm") or []
    t = turn_.t
    booking_id = parse_id(parts[1]) if len(parts) == 2 and parts[0] == "ok" else None
    booking = await _my_booking(turn_, booking_id)
    if booking is None:
        turn_.toast(t("booking.not_yours"), alert=True)
        return
    if booking.status != "booked":
        turn_.toast(
            render_error(t, DomainError("booking.not_active", status=booking.status)), alert=True
        )
        return
    turn_.close_with = t("reminder.coming_thanks")


async def _my_booking(turn_: Turn, booking_id: int | None) -> Booking | None:
    """A booking of a book the sender may act on (their own, a relative's, a resident they
    help: models/custody.py), else None."""
    held = await bkh.booking_in_custody(turn_, booking_id)
    return held[0] if held is not None else None


# ---------------------------------------------------------------- the next dose


def _day(text: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(text)) if text else None
    except ValueError:
        return None


@renders(*rm.DOSE_DUE)
async def dose_due(n: Notice) -> Reply | None:
    """Dose N is due (and, a week later, still not booked): "Book dose N". Dropped once that
    dose is booked or given, or the campaign is over."""
    params = n.message.params or {}
    book_id, dose = n.message.health_book_id, params.get("dose")
    campaign_id = params.get("campaign_id", n.message.ref_id)
    if book_id is None or not isinstance(dose, int) or not isinstance(campaign_id, int):
        return None
    book = await n.session.get(HealthBook, book_id)
    campaign = await n.session.get(Campaign, campaign_id)
    if book is None or campaign is None or not campaign.active:
        return None
    today = n.services.today()
    if campaign.ends_on is not None and campaign.ends_on < today:
        return None
    given = await n.session.scalar(
        select(Vaccination.id)
        .where(
            Vaccination.health_book_id == book.id,
            Vaccination.campaign_id == campaign.id,
            Vaccination.dose >= dose,
        )
        .limit(1)
    )
    if given is not None or await bk.has_active_booking(n.session, book.id, campaign.id, dose):
        return None
    t = n.t
    earliest, latest = _day(params.get("earliest")), _day(params.get("latest"))
    text = await text_of(
        n,
        n.message.kind,
        campaign=bkh.campaign_name(t, campaign),
        dose=dose,
        earliest=t.date(earliest) if earliest else "",
        latest=t.date(latest) if latest else t("book.no_limit"),
    )
    return Reply(
        text=text,
        markup=inline(
            [[(t("reminder.button_book_dose", dose=dose), _book_dose_code(n, book, campaign))]]
        ),
    )


def _book_dose_code(n: Notice, book: HealthBook, campaign: Campaign) -> str:
    """ "Book dose N": the campaign's booking; for a relative's or a helped resident's book,
    of that book (``bk:go:CAMPAIGN:BOOK``, access checked when pressed)."""
    if records.is_other(book, n.account):
        return f"bk:go:{campaign.id}:{book.id}"
    return f"bk:go:{campaign.id}"


# ---------------------------------------------------------------- unfinished health book


@renders(rm.UNFINISHED)
async def unfinished(n: Notice) -> Reply | None:
    """The health book was left half-way: "Continue" (where they stopped). Dropped when the
    book was saved or the answers are gone."""
    has_book = await n.session.scalar(
        select(HealthBook.id).where(HealthBook.account_id == n.account.id).limit(1)
    )
    draft = await n.session.get(Draft, n.account.id)
    if has_book is not None or draft is None or draft.book_id is not None:
        return None
    text = await text_of(n, rm.UNFINISHED)
    return Reply(text=text, markup=inline([[(n.t("reminder.button_continue"), "hb:resume")]]))


async def unfinished_job(context: HBContext) -> None:
    """Every minute: plan the reminder of those who stopped filling in their health book."""
    services = context.services
    async with services.sessions() as session, session.begin():
        planned = await rm.plan_unfinished(session, timing(services))
    if planned:
        log.info("planned %d unfinished-health-book reminders", planned)


# ---------------------------------------------------------------- waitlist offers


@renders(rm.WAITLIST_OFFER)
async def waitlist_offer(n: Notice) -> Reply | None:
    """A place held from the waitlist: Take / Decline (the codes of /appointments). Dropped
    once the offer is taken, declined or over."""
    if n.message.ref_id is None:
        return None
    entry = await n.session.get(WaitlistEntry, n.message.ref_id)
    if entry is None or entry.status != "offered" or entry.held_session_id is None:
        return None
    expires = entry.offer_expires_at
    if expires is None or as_aware(expires) <= to_utc(n.services.clock()):
        return None
    slot = await n.session.get(Session, entry.held_session_id)
    if slot is None:
        return None
    site = await lk.get_site(n.session, slot.site_id)
    t = n.t
    text = await text_of(
        n,
        rm.WAITLIST_OFFER,
        site=site.name,
        day=t.date(slot.date),
        hours=_hours(slot),
        until=f"{as_aware(expires).astimezone(n.services.tz):%H:%M}",
    )
    return Reply(text=text, markup=bkh._offer_choices(t, entry))  # as /appointments has them


def handlers() -> list[BaseHandler]:
    """The answers to reminders' own options (the others are booking's)."""
    return [CallbackQueryHandler(reminder_button, pattern=r"^rm:")]


__all__ = ["CATALOGUE", "handlers", "text_of", "unfinished_job"]
