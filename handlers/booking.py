"""Booking a vaccination: /book (campaign → site → day → time → confirm → ticket), /appointments
(reschedule, cancel) and waitlist offers.

The choices made so far travel in the buttons' data (re-checked by the domain on every press:
callback data can be forged); the one thing typed or shared (a commune name, a location) needs
the chosen campaign, kept in a booking draft row. Places are only ever taken by the domain's
atomic update, so nothing here can overbook.
"""

from __future__ import annotations

import datetime as dt
import logging
import warnings
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot.context import HBContext, Services
from bot.i18n import Translator
from handlers.common import (
    REMOVE_KEYBOARD,
    Keyboard,
    KeyButton,
    Options,
    Turn,
    callback_ids,
    callback_parts,
    inline,
    is_private,
    parse_id,
    render_error,
    timing,
    turn,
)
from models import booking as bk
from models import custody, records
from models import eligibility as elig
from models import healthbook as hb
from models import lookups as lk
from models import validators as v
from models import waitlist as wl
from models.campaigns import active_campaigns
from models.errors import DomainError
from models.qr import checkin_link, qr_png
from models.tables import (
    Account,
    Booking,
    BookingDraft,
    Campaign,
    HealthBook,
    Session,
    Site,
    WaitlistEntry,
)
from models.timeutil import as_aware, to_utc

log = logging.getLogger(__name__)
NAME = "booking"
MAX_SITES = 6
DAYS_AHEAD = 14
NEW_TEXT = filters.UpdateType.MESSAGE & filters.TEXT & ~filters.COMMAND


class BookStep(StrEnum):
    """States of the booking conversation."""

    CAMPAIGN = "campaign"
    SITE = "site"
    DAY = "day"
    TIME = "time"
    CONFIRM = "confirm"


def campaign_name(t: Translator, campaign: Campaign) -> str:
    """A campaign's name in the person's language when the catalogue has it, else as entered."""
    key = f"campaign_name.{campaign.code}"
    return t(key) if t.has(key) else campaign.name


def _hours(slot: Session) -> str:
    return f"{slot.start_time:%H:%M}–{slot.end_time:%H:%M}"


async def _subject_book(turn_: Turn) -> HealthBook | None:
    """The book being booked for: the one the booking draft names (a relative's, or a resident
    the sender helps), its access checked again on every step (models/custody.py); else the
    sender's own. None when there is none, or the sender may no longer act on it."""
    if turn_.account is None:
        return None
    draft = await turn_.session.get(BookingDraft, turn_.account.id)
    if draft is not None and draft.health_book_id is not None:
        book = await turn_.session.get(HealthBook, draft.health_book_id)
        found = await custody.access(turn_.session, turn_.account, book) if book else None
        return found.book if found is not None else None
    return await hb.own_book(turn_.session, turn_.account)


async def _set_subject(turn_: Turn, book: HealthBook) -> None:
    """Remember whose place is being booked (None in the draft: the sender's own)."""
    assert turn_.account is not None
    other = records.is_other(book, turn_.account)
    draft = await turn_.session.get(BookingDraft, turn_.account.id)
    if draft is None:
        if not other:
            return
        draft = BookingDraft(account_id=turn_.account.id)
        turn_.session.add(draft)
    draft.health_book_id = book.id if other else None


def whose(turn_: Turn, book: HealthBook) -> str:
    """ "👤 For: Lò Văn Páo" atop a booking's messages when the book is not the sender's own
    (the name in a private chat only; elsewhere whose it is, by relation)."""
    if not records.is_other(book, turn_.account):
        return ""
    if is_private(turn_.update):
        return turn_.t("book.for", name=book.full_name) + "\n"
    return turn_.t("book.for", name=turn_.t(f"relation.{book.relation}")) + "\n"


async def _pressed(turn_: Turn, prefix: str, count: int) -> tuple[HealthBook, list[int]] | None:
    """The health book being booked for and the ids a button carries; a toast when either is
    missing or malformed (callback data can be forged: the domain re-checks every id)."""
    ids = callback_ids(turn_.update, prefix, count)
    book = await _subject_book(turn_)
    if book is None or ids is None:
        turn_.toast(turn_.t("error.button.invalid"))
        return None
    return book, ids


# ---------------------------------------------------------------- /book


@turn(NAME)
async def start_booking(turn_: Turn) -> object:
    """/book: a saved health book is needed; then the campaign (skipped when there is one)."""
    book = await hb.own_book(turn_.session, turn_.account) if turn_.account else None
    if book is None:
        turn_.say(turn_.t("book.need_health_book"))
        return ConversationHandler.END
    return await start_for_book(turn_, book)


@turn(NAME)
async def book_for(turn_: Turn) -> object:
    """ "Book a place" for a relative or a resident the sender helps (``bk:for:BOOK``, from
    /family, /assist…): the booking of that book, access checked (the data can be forged)."""
    ids = callback_ids(turn_.update, "bk:for", 1)
    if ids is None:
        turn_.toast(turn_.t("error.button.invalid"))
        return None
    return await start_for(turn_, ids[0])


async def start_for(turn_: Turn, book_id: int) -> object:
    """Start the booking of the book ``book_id`` when the sender may act on it (refused
    otherwise, nothing changed); returns the booking conversation's state (call it from a
    handler of this conversation, ``@turn(booking.NAME)``)."""
    try:
        found = await custody.require_book(turn_.session, turn_.account, book_id)
    except DomainError as err:  # refused: whatever was under way stays as it was
        turn_.toast(render_error(turn_.t, err), alert=True)
        if not turn_.update.callback_query:
            turn_.say(render_error(turn_.t, err))
        return None
    return await start_for_book(turn_, found.book)


async def start_for_book(turn_: Turn, book: HealthBook) -> object:
    """The booking of a book the sender may act on: the campaign (skipped when there is one)."""
    await _set_subject(turn_, book)
    campaigns = await active_campaigns(turn_.session, turn_.services.today())
    if not campaigns:
        turn_.say(turn_.t("book.no_campaign"))
        return ConversationHandler.END
    if book.province_code not in await bk.site_provinces(turn_.session):
        return await no_site_in_province(turn_, book)
    if len(campaigns) == 1:
        return await choose_campaign(turn_, book, campaigns[0])
    turn_.say(
        whose(turn_, book) + turn_.t("book.ask_campaign"),
        inline([[(campaign_name(turn_.t, c), f"bk:c:{c.id}")] for c in campaigns]),
    )
    return BookStep.CAMPAIGN


@turn(NAME)
async def book_dose(turn_: Turn) -> object:
    """ "Book dose N" in a reminder (``bk:go:CAMPAIGN``, ``bk:go:CAMPAIGN:BOOK`` for a relative
    or a resident the sender helps, access checked): the booking of that campaign, as /book
    would start it after choosing the campaign."""
    parts = callback_parts(turn_.update, "bk:go") or []
    ids = callback_ids(turn_.update, "bk:go", len(parts)) if len(parts) in (1, 2) else None
    if ids is None:
        turn_.toast(turn_.t("error.button.invalid"))
        return None
    if len(ids) == 2:
        try:
            book: HealthBook | None = (
                await custody.require_book(turn_.session, turn_.account, ids[1])
            ).book
        except DomainError as err:
            turn_.toast(render_error(turn_.t, err), alert=True)
            return None
    else:
        book = await hb.own_book(turn_.session, turn_.account) if turn_.account else None
    if book is None:
        turn_.say(turn_.t("book.need_health_book"))
        return ConversationHandler.END
    await _set_subject(turn_, book)
    campaigns = await active_campaigns(turn_.session, turn_.services.today())
    campaign = next((c for c in campaigns if c.id == ids[0]), None)
    if campaign is None:  # forged, or the campaign is over
        turn_.toast(turn_.t("error.button.stale"))
        return None
    if book.province_code not in await bk.site_provinces(turn_.session):
        return await no_site_in_province(turn_, book)
    return await choose_campaign(turn_, book, campaign)


@turn(NAME)
async def campaign_chosen(turn_: Turn) -> object:
    """A campaign button."""
    ids = callback_ids(turn_.update, "bk:c", 1)
    book = await _subject_book(turn_)
    if book is None or ids is None:
        turn_.toast(turn_.t("error.button.stale"))
        return None
    try:
        campaign = await lk.get_campaign(turn_.session, ids[0])
    except DomainError:
        turn_.toast(turn_.t("error.button.invalid"))
        return None
    return await choose_campaign(turn_, book, campaign)


@turn(NAME)
async def campaign_typed(turn_: Turn) -> object:
    """A campaign's name typed (``covid``, ``cúm``) instead of pressing its button."""
    t = turn_.t
    book = await _subject_book(turn_)
    if book is None:
        turn_.say(t("book.start_again"))
        return ConversationHandler.END
    campaigns = await active_campaigns(turn_.session, turn_.services.today())
    wanted = v.fold(turn_.text)
    found = [
        c
        for c in campaigns
        if wanted and any(wanted in v.fold(x) for x in (campaign_name(t, c), c.name, c.code))
    ]
    if len(found) == 1:
        return await choose_campaign(turn_, book, found[0])
    turn_.say(t("book.hint_campaign"))
    turn_.say(
        t("book.ask_campaign"),
        inline([[(campaign_name(t, c), f"bk:c:{c.id}")] for c in campaigns]),
    )
    return BookStep.CAMPAIGN


async def no_site_in_province(turn_: Turn, book: HealthBook) -> object:
    """The person's province has no site: say where the bot books and which province their book
    gives (the address may be wrong: /profile corrects it), rather than a site search that
    cannot find anything (a site of another province is refused by design)."""
    t = turn_.t
    served = await bk.site_provinces(turn_.session)
    if not served:
        turn_.say(t("book.no_sites"), REMOVE_KEYBOARD)
        return ConversationHandler.END
    turn_.say(
        t(
            "book.province_not_served",
            provinces=", ".join(_province(code) for code in served),
            province=_province(book.province_code),
        ),
        REMOVE_KEYBOARD,
    )
    return ConversationHandler.END


def _province(code: int) -> str:
    try:
        return v.province_name(code)
    except KeyError:  # a code of another reference release: shown as stored
        return str(code)


def screening_reasons(t: Translator, reasons: list[tuple[str, v.Answer]]) -> str:
    """What led to a caution or hospital advice, one bullet each: the item's short label, with
    "don't know" when that was the answer (the age item is computed, never unknown)."""
    lines = []
    for code, answer in reasons:
        label = t(f"screening_short.{code}")
        if answer is v.Answer.UNKNOWN:
            label = t("book.reason_unknown", item=label)
        lines.append(f"• {label}")
    return "\n".join(lines)


def typed_hint(key: str):
    """Handler for text typed at a step answered by its buttons: a hint that fits the step."""

    @turn(NAME)
    async def on_text(turn_: Turn) -> object:
        await turn_.say_again_with_choices(turn_.t(key))
        return None

    on_text.__name__ = f"typed_{key.rsplit('.', 1)[-1]}"
    return on_text


async def choose_campaign(turn_: Turn, book: HealthBook, campaign: Campaign) -> object:
    """Which dose is due and whether the person may book; then the sites."""
    t, today = turn_.t, turn_.services.today()
    window = await elig.eligible_doses(turn_.session, book, campaign, today)
    if window is None:
        turn_.say(t("booking.schedule_complete", campaign=campaign_name(t, campaign)))
        return ConversationHandler.END
    on = max(window.earliest, today)
    try:
        group = elig.check_eligibility(book, campaign, on)
    except DomainError as err:
        turn_.say(render_error(t, err) + "\n\n" + t("book.see_doctor"))
        return ConversationHandler.END
    held = await bk.active_booking(turn_.session, book, campaign, window.dose)
    if held is not None:  # said now, not at Confirm after choosing a site, a day and a time
        # a resident the sender helps: their bookings are on their page in /assist, not in the
        # sender's own /appointments
        helped = turn_.account is not None and book.account_id != turn_.account.id
        turn_.say(
            whose(turn_, book)
            + t(
                "book.already_booked_helped" if helped else "book.already_booked",
                dose=window.dose,
                code=held.code,
                site=held.session.site.name,
                day=t.date(held.session.date),
                hours=_hours(held.session),
            ),
            inline([[(t("assist.button.appointments"), f"as:a:{book.id}")]]) if helped else None,
        )
        return ConversationHandler.END
    assert turn_.account is not None
    draft = await turn_.session.get(BookingDraft, turn_.account.id)
    if draft is None:
        draft = BookingDraft(account_id=turn_.account.id)
        turn_.session.add(draft)
    draft.campaign_id, draft.dose = campaign.id, window.dose
    draft.health_book_id = book.id if records.is_other(book, turn_.account) else None
    lines = [
        whose(turn_, book) + t("book.dose", campaign=campaign_name(t, campaign), dose=window.dose)
    ]
    if window.earliest > today or window.latest is not None:
        lines.append(
            t(
                "book.window",
                earliest=t.date(window.earliest),
                latest=t.date(window.latest) if window.latest else t("book.no_limit"),
            )
        )
    if group in (v.ScreeningGroup.CAUTION, v.ScreeningGroup.REFER):
        _, reasons = elig.screening_reasons(book, on)
        key = "book.caution" if group is v.ScreeningGroup.CAUTION else "book.refer_hospital"
        lines.append(t(key, reasons=screening_reasons(t, reasons)))
    lines.append(t("book.advisory"))
    turn_.say("\n\n".join(lines))
    return await offer_sites(turn_, book, campaign, group)


async def _first_day(turn_: Turn, book: HealthBook, campaign: Campaign) -> dt.date:
    """The first day a place can be booked: tomorrow, or the dose's earliest date."""
    today = turn_.services.today()
    window = await elig.eligible_doses(turn_.session, book, campaign, today)
    return max(today + dt.timedelta(days=1), window.earliest if window else today)


def site_label(t: Translator, offer: bk.SiteOffer) -> str:
    """A site's button: its name, whether it has places (or sessions at all), how far."""
    site = offer.match.site
    name = ("🏥 " if offer.advised else "") + site.name
    if offer.free > 0:
        label = t("book.site_free", site=name, free=offer.free)
    elif offer.planned:
        label = t("book.site_full", site=name)
    else:
        label = t("book.site_no_sessions", site=name)
    km = offer.match.distance_km
    if km is not None:  # written as people write it: 20,7 km in Vietnamese
        tenths = round(km * 10)
        label = t("book.site_km", label=label, whole=tenths // 10, tenth=tenths % 10)
    return label


async def offer_sites(
    turn_: Turn,
    book: HealthBook,
    campaign: Campaign,
    group: v.ScreeningGroup,
    *,
    near: tuple[float, float] | None = None,
    query: str | None = None,
) -> object:
    """Sites as buttons (advised hospitals, then sites with free places: own commune first and
    then nearest to it, or nearest to a shared location), each saying whether it has places;
    a location button, and typing, with how many sites are not shown."""
    t = turn_.t
    found = await bk.sites_for(
        turn_.session, book.province_code, book.ward_code, near=near, query=query
    )
    if not found:
        every = await bk.sites_for(turn_.session, book.province_code, book.ward_code)
        if not every:  # no active site left in the province
            return await no_site_in_province(turn_, book)
        example = bk.commune_example([m for m in every if not m.same_ward] or every)
        await turn_.say_again_with_choices(  # the sites listed before still stand
            t("book.no_site_found", province=_province(book.province_code), example=example)
        )
        return BookStep.SITE
    offers = await bk.offer_sites(
        turn_.session, found, campaign, await _first_day(turn_, book, campaign), DAYS_AHEAD, group
    )
    shown = offers[:MAX_SITES]
    shown += [o for o in offers[MAX_SITES:] if o.match.same_ward]  # full, but their own
    listed = {o.match.site.id for o in shown}
    hidden = [o.match for o in offers if o.match.site.id not in listed]
    rows = [[(site_label(t, o), f"bk:s:{campaign.id}:{o.match.site.id}")] for o in shown]
    turn_.say(t("book.ask_site", days=DAYS_AHEAD), inline(rows))
    if hidden:  # say so, with a commune to type that brings one of them up
        hint = t("book.site_hint_more", more=len(hidden), example=bk.commune_example(hidden))
    else:
        others = [o.match for o in shown if not o.match.same_ward] or [o.match for o in shown]
        hint = t("book.site_hint", example=bk.commune_example(others))
    turn_.say(
        hint,
        Keyboard.of([[KeyButton(t("book.button_near_me"), "location")]]),
    )
    return BookStep.SITE


async def _draft_campaign(
    turn_: Turn,
) -> tuple[HealthBook, Campaign, v.ScreeningGroup] | None:
    book = await _subject_book(turn_)
    if book is None or turn_.account is None:
        return None
    draft = await turn_.session.get(BookingDraft, turn_.account.id)
    if draft is None or draft.campaign_id is None:
        return None
    campaign = await lk.get_campaign(turn_.session, draft.campaign_id)
    return book, campaign, elig.screening_group(book, turn_.services.today())


@turn(NAME)
async def site_typed(turn_: Turn) -> object:
    """A commune or site name typed instead of pressing a button."""
    found = await _draft_campaign(turn_)
    if found is None:
        turn_.say(turn_.t("book.start_again"))
        return ConversationHandler.END
    book, campaign, group = found
    query = turn_.text.strip()[:60]
    if query.isascii() and query.isdigit() and len(query) <= 3:  # a number not in the list
        await turn_.say_again_with_choices(turn_.t("error.input.use_buttons"))
        return None
    return await offer_sites(turn_, book, campaign, group, query=query)


@turn(NAME)
async def site_near(turn_: Turn) -> object:
    """A shared location: the nearest sites, with their distance."""
    message = turn_.update.effective_message
    found = await _draft_campaign(turn_)
    if found is None or message is None or message.location is None:
        turn_.say(turn_.t("book.start_again"))
        return ConversationHandler.END
    book, campaign, group = found
    near = (message.location.latitude, message.location.longitude)
    return await offer_sites(turn_, book, campaign, group, near=near)


@turn(NAME)
async def site_chosen(turn_: Turn) -> object:
    """A site button: the next days with free places."""
    pressed = await _pressed(turn_, "bk:s", 2)
    if pressed is None:
        return None
    book, (campaign_id, site_id) = pressed
    try:
        campaign = await lk.get_campaign(turn_.session, campaign_id)
        site = await lk.get_site(turn_.session, site_id)
    except DomainError:
        turn_.toast(turn_.t("error.button.invalid"))
        return None
    return await offer_days(turn_, book, campaign, site)


async def offer_days(turn_: Turn, book: HealthBook, campaign: Campaign, site: Site) -> object:
    """Days with free places at a site (remaining places shown), or the waitlist."""
    t = turn_.t
    start = await _first_day(turn_, book, campaign)
    days = await bk.open_days(turn_.session, site, campaign, start, DAYS_AHEAD)
    if not days and not await bk.has_sessions(turn_.session, site, campaign, start):
        # no session planned at all: a waitlist there would wait for nothing
        turn_.say(t("book.no_sessions", site=site.name))
        return BookStep.SITE
    if not days:
        turn_.say(
            t("book.no_days", site=site.name, days=DAYS_AHEAD),
            inline([[(t("book.button_waitlist_site"), f"bk:w:{campaign.id}:{site.id}")]]),
        )
        return BookStep.SITE
    rows = [
        (
            t("book.day_button", day=t.date(d.date), remaining=d.remaining),
            f"bk:d:{campaign.id}:{site.id}:{d.date:%Y%m%d}",
        )
        for d in days  # every open day of the DAYS_AHEAD looked at
    ]
    turn_.say(t("book.ask_day", site=site.name), inline([[r] for r in rows]))
    return BookStep.DAY


def _date(text: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        return None


@turn(NAME)
async def day_chosen(turn_: Turn) -> object:
    """A day button: that day's time windows."""
    parts = callback_parts(turn_.update, "bk:d") or []
    day = _date(parts[2]) if len(parts) == 3 else None
    campaign_id, site_id = (parse_id(p) for p in parts[:2]) if day else (None, None)
    if day is None or campaign_id is None or site_id is None:
        turn_.toast(turn_.t("error.button.invalid"))
        return None
    t = turn_.t
    try:
        campaign = await lk.get_campaign(turn_.session, campaign_id)
        site = await lk.get_site(turn_.session, site_id)
    except DomainError:
        turn_.toast(t("error.button.invalid"))
        return None
    slots = await bk.sessions_on(turn_.session, site, day, campaign)
    if not slots:
        turn_.toast(t("error.button.stale"))
        return None
    rows = []
    for slot in slots:
        if slot.remaining > 0:
            label = t("book.time_button", hours=_hours(slot), remaining=slot.remaining)
            rows.append([(label, f"bk:t:{campaign.id}:{slot.id}")])
        else:
            label = t("book.time_full", hours=_hours(slot))
            rows.append([(label, f"bk:wq:{campaign.id}:{slot.id}")])
    turn_.say(t("book.ask_time", day=t.date(day), site=site.name), inline(rows))
    return BookStep.TIME


@turn(NAME)
async def time_chosen(turn_: Turn) -> object:
    """A time button: everything checked, then Confirm."""
    pressed = await _pressed(turn_, "bk:t", 2)
    if pressed is None:
        return None
    book, (campaign_id, session_id) = pressed
    t = turn_.t
    try:
        plan = await bk.check_booking(
            turn_.session, book.id, session_id, campaign_id, None, turn_.services.today()
        )
    except DomainError as err:
        # a stale or forged time (ids well formed, unknown or gone): its notice alone (on Zalo
        # said as a message), so the times offered before still stand
        turn_.toast(render_error(t, err), alert=True)
        return None
    turn_.say(
        whose(turn_, book)
        + t(
            "book.confirm",
            campaign=campaign_name(t, plan.campaign),
            dose=plan.dose,
            site=plan.site.name,
            address=plan.site.address,
            day=t.date(plan.slot.date),
            hours=_hours(plan.slot),
        ),
        inline(
            [
                [(t("book.button_confirm"), f"bk:ok:{plan.campaign.id}:{plan.slot.id}")],
                [(t("book.button_other_time"), f"bk:s:{plan.campaign.id}:{plan.site.id}")],
            ]
        ),
    )
    return BookStep.CONFIRM


@turn(NAME)
async def confirmed(turn_: Turn) -> object:
    """Confirm: the place is taken atomically (or "full", with the next days), then the ticket."""
    pressed = await _pressed(turn_, "bk:ok", 2)
    if pressed is None:
        return None
    book, (campaign_id, session_id) = pressed
    t = turn_.t
    try:
        booking = await bk.book(
            turn_.session,
            book.id,
            session_id,
            campaign_id,
            None,
            turn_.services.today(),
            timing=timing(turn_.services),
        )
    except DomainError as err:
        turn_.say(render_error(t, err))
        if err.key == "booking.full":
            slot = await turn_.session.get(Session, session_id)
            if slot is not None:
                campaign = await lk.get_campaign(turn_.session, campaign_id)
                site = await lk.get_site(turn_.session, slot.site_id)
                return await offer_days(turn_, book, campaign, site)
        return ConversationHandler.END
    await records.note(
        turn_.session, turn_.account, book, "booked", fields=["campaign", "dose", "session"]
    )
    turn_.close_with = t("book.confirmed_short")
    await send_ticket(turn_, booking)
    draft = await turn_.session.get(BookingDraft, turn_.account.id) if turn_.account else None
    if draft is not None:
        await turn_.session.delete(draft)
    return ConversationHandler.END


async def send_ticket(turn_: Turn, booking: Booking) -> None:
    """The ticket: code, QR (the check-in deep link), place, time, what to bring, advice."""
    t = turn_.t
    slot = await turn_.session.get(Session, booking.session_id)
    assert slot is not None
    site = await lk.get_site(turn_.session, slot.site_id)
    campaign = await lk.get_campaign(turn_.session, booking.campaign_id)
    if turn_.channel == "telegram":  # the site's staff scan it into their Telegram
        content = checkin_link(turn_.context.bot.username or "healthbook_bot", booking.code)
    else:  # no deep links elsewhere: the code itself, which staff type at /checkin
        content = booking.code
    book = await turn_.session.get(HealthBook, booking.health_book_id)
    name = ""  # a relative's or an assisted resident's ticket says whose it is (to print, show)
    if book is not None and records.is_other(book, turn_.account) and is_private(turn_.update):
        name = t("ticket.for", name=book.full_name) + "\n"
    turn_.send_photo(
        qr_png(content),
        caption=name + t("ticket.qr_caption", code=booking.code),
    )
    turn_.say(
        name
        + t(
            "ticket.text",
            code=booking.code,
            campaign=campaign_name(t, campaign),
            dose=booking.dose,
            site=site.name,
            address=site.address,
            day=t.date(slot.date),
            hours=_hours(slot),
        ),
        REMOVE_KEYBOARD,
    )
    turn_.send_location(site.lat, site.lon)


@turn()
async def ticket_button(turn_: Turn) -> None:
    """ "Ticket" (``bk:ticket:BOOK``): the ticket image of the book's upcoming booking, to
    print or show (a relative's, a resident the sender helps; access checked)."""
    ids = callback_ids(turn_.update, "bk:ticket", 1)
    if ids is None:
        turn_.toast(turn_.t("error.button.invalid"))
        return
    await ticket_for(turn_, ids[0])


async def ticket_for(turn_: Turn, book_id: int) -> bool:
    """Send the ticket of the book's upcoming booking(s) when the sender may act on it (the
    refusal otherwise, nothing sent); False when nothing was sent."""
    t = turn_.t
    try:
        found = await custody.require_book(turn_.session, turn_.account, book_id)
    except DomainError as err:
        turn_.toast(render_error(t, err), alert=True)
        if turn_.update.callback_query is None:
            turn_.say(render_error(t, err))
        return False
    upcoming = await bk.bookings_for(turn_.session, found.book)
    if not upcoming:  # not a dead end: booking a place is offered with it
        turn_.say(
            whose(turn_, found.book) + t("ticket.none"),
            inline([[(t("ticket.book_now"), f"bk:for:{found.book.id}")]]),
        )
        return False
    for booking in upcoming:
        await send_ticket(turn_, booking)
    await records.note(turn_.session, turn_.account, found.book, "ticket", found=found)
    return True


@turn(NAME)
async def waitlist_chosen(turn_: Turn) -> object:
    """Join the waitlist of a full time window (bk:wq) or of a site (bk:w)."""
    data = turn_.update.callback_query.data if turn_.update.callback_query else ""
    key = "bk:wq" if (data or "").startswith("bk:wq:") else "bk:w"
    ids = callback_ids(turn_.update, key, 2)
    book = await _subject_book(turn_)
    if book is None or ids is None:
        turn_.toast(turn_.t("error.button.invalid"))
        return None
    t, today = turn_.t, turn_.services.today()
    campaign_id, target = ids
    kwargs: dict[str, Any] = {"session_id": target} if key == "bk:wq" else {"site_id": target}
    try:
        await wl.join_waitlist(turn_.session, book.id, campaign_id, today=today, **kwargs)
    except DomainError as err:
        turn_.say(render_error(t, err))
        return None
    await records.note(turn_.session, turn_.account, book, "waitlisted", fields=["waitlist"])
    turn_.close_with = t("waitlist.joined_short")
    turn_.say(
        t("waitlist.joined", hours=turn_.services.settings.bot.waitlist_hold_minutes),
        REMOVE_KEYBOARD,
    )
    return ConversationHandler.END


# ---------------------------------------------------------------- /appointments


@turn()
async def appointments(turn_: Turn) -> None:
    """/appointments: places held from the waitlist (take, decline), upcoming bookings
    (reschedule, cancel), waitlists joined (leave), and past bookings.

    A held place is listed first: its offer may have come while the person was answering
    something else, and this is where they find it again (on Zalo, typing its number)."""
    t = turn_.t
    if turn_.account is None:
        turn_.say(t("appointments.none"))
        return
    upcoming = await bk.bookings_for(turn_.session, turn_.account)
    past = await bk.bookings_for(
        turn_.session,
        turn_.account,
        statuses=("vaccinated", "not_vaccinated", "cancelled", "expired"),
    )
    entries = await _live_waitlist(turn_.session, turn_.account, turn_.services.clock())
    if not upcoming and not past and not entries:
        turn_.say(t("appointments.none"))
        return
    # grouped by person: the account's own, then each relative's (named atop their group)
    books = await custody.held_books(turn_.session, turn_.account)
    shown = {b.health_book_id for b in upcoming + past} | {e.health_book_id for e in entries}
    several = len(shown) > 1
    said: list[tuple[str, Options | None]] = []
    for book in books:
        if book.id not in shown:
            continue
        group = await _person_appointments(
            turn_,
            [b for b in upcoming if b.health_book_id == book.id],
            [b for b in past if b.health_book_id == book.id],
            [e for e in entries if e.health_book_id == book.id],
        )
        head = whose(turn_, book)
        if not head and several:
            head = t("appointments.yours") + "\n"
        said += [(head + group[0][0], group[0][1]), *group[1:]]
    if not upcoming and said and said[-1][1] is None:
        # nothing ahead: say how to book again, under the last list
        said[-1] = (said[-1][0] + "\n\n" + t("appointments.book_again"), None)
    for text, markup in said:
        turn_.say(text, markup)


async def _person_appointments(
    turn_: Turn, upcoming: list[Booking], past: list[Booking], entries: list[WaitlistEntry]
) -> list[tuple[str, Options | None]]:
    """One person's messages of /appointments: held places, upcoming bookings with their
    choices, waitlists, then the past and cancelled lists."""
    t = turn_.t
    said: list[tuple[str, Options | None]] = []
    for entry in entries:
        if entry.status == "offered":
            said.append(await _held_place(turn_, entry))
    for booking in upcoming:
        slot = await turn_.session.get(Session, booking.session_id)
        assert slot is not None
        site = await lk.get_site(turn_.session, slot.site_id)
        campaign = await lk.get_campaign(turn_.session, booking.campaign_id)
        said.append(
            (
                t(
                    "appointments.item",
                    code=booking.code,
                    campaign=campaign_name(t, campaign),
                    dose=booking.dose,
                    site=site.name,
                    day=t.date(slot.date),
                    hours=_hours(slot),
                ),
                inline(
                    [
                        [
                            (t("appointments.button_reschedule"), f"ap:r:{booking.id}"),
                            (t("appointments.button_cancel"), f"ap:x:{booking.id}"),
                        ]
                    ]
                )
                if booking.status == "booked"
                else None,
            )
        )
    for entry in entries:
        if entry.status == "waiting":
            said.append(await _waiting_place(turn_, entry))
    # a cancelled booking is listed as cancelled, not as past: its day may be still to come
    for heading, group in (
        ("appointments.past", [b for b in past if b.status != "cancelled"]),
        ("appointments.cancelled_list", [b for b in past if b.status == "cancelled"]),
    ):
        if not group:
            continue
        lines = []
        for booking in group[-10:]:  # the latest ten
            slot = await turn_.session.get(Session, booking.session_id)
            assert slot is not None
            lines.append(
                t(
                    "appointments.past_item",
                    day=t.date(slot.date),
                    code=booking.code,
                    status=t(f"status.{booking.status}"),
                )
            )
        said.append((t(heading) + "\n" + "\n".join(lines), None))
    return said


async def _live_waitlist(
    session: AsyncSession, account: Account, now: dt.datetime
) -> list[WaitlistEntry]:
    """The account's waitlist entries still in play (all its health books), oldest first:
    waiting, or offered with the hold not yet over (one past it is the expiry job's, and
    taking it would be refused)."""
    rows = await session.scalars(
        select(WaitlistEntry)
        .join(HealthBook, HealthBook.id == WaitlistEntry.health_book_id)
        .where(
            HealthBook.account_id == account.id,
            WaitlistEntry.status.in_(("waiting", "offered")),
        )
        .order_by(WaitlistEntry.created_at, WaitlistEntry.id)
    )
    when = to_utc(now)
    return [
        e
        for e in rows.all()
        if e.status == "waiting"
        or (e.offer_expires_at is not None and as_aware(e.offer_expires_at) > when)
    ]


async def _held_place(turn_: Turn, entry: WaitlistEntry) -> tuple[str, Options]:
    """A place held for the person, with the offer's own Take / Decline choices (the same
    codes: :func:`offer_button` checks the entry is theirs and still held)."""
    t = turn_.t
    assert entry.held_session_id is not None and entry.offer_expires_at is not None
    slot = await turn_.session.get(Session, entry.held_session_id)
    assert slot is not None
    site = await lk.get_site(turn_.session, slot.site_id)
    campaign = await lk.get_campaign(turn_.session, entry.campaign_id)
    text = t(
        "appointments.held",
        campaign=campaign_name(t, campaign),
        dose=entry.dose,
        site=site.name,
        day=t.date(slot.date),
        hours=_hours(slot),
        until=_local_time(turn_.services, entry.offer_expires_at),
    )
    return text, _offer_choices(t, entry)


async def _waiting_place(turn_: Turn, entry: WaitlistEntry) -> tuple[str, Options]:
    """A waitlist the person is on: for which time window, day or site, with a choice to
    leave it."""
    t = turn_.t
    campaign = await lk.get_campaign(turn_.session, entry.campaign_id)
    if entry.session_id is not None:
        slot = await turn_.session.get(Session, entry.session_id)
        assert slot is not None
        site = await lk.get_site(turn_.session, slot.site_id)
        when = t("appointments.waiting_session", day=t.date(slot.date), hours=_hours(slot))
    else:
        assert entry.site_id is not None
        site = await lk.get_site(turn_.session, entry.site_id)
        if entry.date is not None:
            when = t("appointments.waiting_day", day=t.date(entry.date))
        elif entry.not_before is not None and entry.not_before > turn_.services.today():
            when = t("appointments.waiting_from", day=t.date(entry.not_before))
        else:
            when = t("appointments.waiting_any")
    text = t(
        "appointments.waiting",
        campaign=campaign_name(t, campaign),
        dose=entry.dose,
        site=site.name,
        when=when,
    )
    return text, inline([[(t("appointments.button_leave_waitlist"), f"wl:d:{entry.id}")]])


async def booking_in_custody(
    turn_: Turn, booking_id: int | None
) -> tuple[Booking, custody.Access] | None:
    """A booking of a book the sender may act on (their own, a relative's they hold, a resident
    they help: models/custody.py), by the id in a button; None otherwise (forged ids of others,
    or a book they no longer hold)."""
    if turn_.account is None or booking_id is None:
        return None
    booking = await turn_.session.get(Booking, booking_id)
    if booking is None:
        return None
    book = await turn_.session.get(HealthBook, booking.health_book_id)
    found = await custody.access(turn_.session, turn_.account, book) if book else None
    return (booking, found) if found is not None else None


@turn()
async def appointment_button(turn_: Turn) -> None:
    """Cancel (frees the place at once, offered to the waitlist) or reschedule a booking."""
    parts = callback_parts(turn_.update, "ap") or []
    t = turn_.t
    held = await booking_in_custody(turn_, parse_id(parts[1])) if len(parts) >= 2 else None
    if held is None or turn_.account is None:
        turn_.toast(t("booking.not_yours"), alert=True)
        return
    booking, found = held
    book = found.book  # checked: the domain is given the book itself (models/lookups.py)
    action = parts[0]
    if action != "k" and booking.status != "booked":
        # cancelled, missed or done: said at the first press, not after choosing a day and time
        err = DomainError("booking.not_active", status=booking.status)
        turn_.toast(render_error(t, err), alert=True)
        return
    if action == "x":
        turn_.say(
            whose(turn_, book) + t("appointments.cancel_confirm", code=booking.code),
            inline(
                [
                    [(t("appointments.button_cancel_yes"), f"ap:xx:{booking.id}")],
                    [(t("appointments.button_keep"), f"ap:k:{booking.id}")],
                ]
            ),
        )
    elif action == "k":  # an old confirmation's "keep" after a cancel: not "kept"
        turn_.close_with = (
            t("appointments.kept")
            if booking.status == "booked"
            else render_error(t, DomainError("booking.not_active", status=booking.status))
        )
    elif action == "xx":
        try:
            await bk.cancel(turn_.session, booking, book, now=turn_.services.clock())
        except DomainError as err:
            turn_.say(render_error(t, err))
            return
        await records.note(turn_.session, turn_.account, book, "cancelled", fields=["status"])
        turn_.close_with = whose(turn_, book) + t("appointments.cancelled", code=booking.code)
        await offer_to_waitlist(turn_, booking.session_id)
    elif action == "r":
        slot = await turn_.session.get(Session, booking.session_id)
        assert slot is not None
        await offer_new_days(turn_, booking, slot)
    elif action == "rd" and len(parts) == 3 and _date(parts[2]):
        await offer_new_times(turn_, booking, _date(parts[2]))  # type: ignore[arg-type]
    elif action == "rt" and len(parts) == 3 and (new_session := parse_id(parts[2])) is not None:
        old_session = booking.session_id
        try:
            moved = await bk.reschedule(
                turn_.session,
                booking,
                new_session,
                owner=book,
                today=turn_.services.today(),
                timing=timing(turn_.services),
            )
        except DomainError as err:
            turn_.say(render_error(t, err))
            return
        await records.note(turn_.session, turn_.account, book, "rescheduled", fields=["session"])
        turn_.close_with = whose(turn_, book) + t("appointments.rescheduled")
        await send_ticket(turn_, moved)
        await offer_to_waitlist(turn_, old_session)
    else:
        turn_.toast(t("error.button.invalid"))


async def offer_new_days(turn_: Turn, booking: Booking, slot: Session) -> None:
    """Other days at the same site for a reschedule."""
    t, today = turn_.t, turn_.services.today()
    site = await lk.get_site(turn_.session, slot.site_id)
    days = await bk.open_days(
        turn_.session, site, booking.campaign_id, today + dt.timedelta(days=1), DAYS_AHEAD
    )
    if not days:
        turn_.say(t("book.no_days", site=site.name))
        return
    turn_.say(
        t("book.ask_day", site=site.name),
        inline(
            [
                [
                    (
                        t("book.day_button", day=t.date(d.date), remaining=d.remaining),
                        f"ap:rd:{booking.id}:{d.date:%Y%m%d}",
                    )
                ]
                for d in days
            ]
        ),
    )


async def offer_new_times(turn_: Turn, booking: Booking, day: dt.date) -> None:
    """The time windows of a day for a reschedule."""
    t = turn_.t
    old = await turn_.session.get(Session, booking.session_id)
    assert old is not None
    slots = await bk.sessions_on(turn_.session, old.site_id, day, booking.campaign_id)
    rows = [
        [
            (
                t("book.time_button", hours=_hours(s), remaining=s.remaining),
                f"ap:rt:{booking.id}:{s.id}",
            )
        ]
        for s in slots
        if s.remaining > 0
    ]
    if not rows:
        turn_.toast(t("booking.full_short"))
        return
    site = await lk.get_site(turn_.session, old.site_id)
    turn_.say(t("book.ask_time", day=t.date(day), site=site.name), inline(rows))


async def offer_to_waitlist(turn_: Turn, session_id: int) -> None:
    """A place was freed: offer it to the first person waiting. The offer's message (Take /
    Decline) is an outbox row planned in this transaction, sent by the dispatcher
    (``waitlist_offer``, rendered in handlers/reminders.py)."""
    await wl.offer_freed_place(
        turn_.session,
        session_id,
        turn_.services.clock(),
        turn_.services.settings.bot.waitlist_hold_minutes,
        timing=timing(turn_.services),
    )


def _offer_choices(t: Translator, entry: WaitlistEntry) -> Options:
    """Take / Decline a held place: the same codes in the offer and in /appointments."""
    return inline(
        [
            [(t("waitlist.button_take"), f"wl:a:{entry.id}")],
            [(t("waitlist.button_decline"), f"wl:d:{entry.id}")],
        ]
    )


def _local_time(services: Services, when: dt.datetime) -> str:
    """A stored (UTC) time as the clock on the wall here reads it: ``14:05``."""
    return f"{as_aware(when).astimezone(services.tz):%H:%M}"


async def expire_bookings_job(context: HBContext) -> None:
    """Hourly: bookings whose day has passed without a check-in are marked missed."""
    services = context.services
    async with services.sessions() as session, session.begin():
        await bk.expire_bookings(session, services.today())


async def expire_offers_job(context: HBContext) -> None:
    """Every minute: release the places of offers nobody took, offer each to the next person.
    The offers live in rows, so a restart loses none; this job only moves them along."""
    services = context.services
    async with services.sessions() as session, session.begin():
        # the new offers' messages are outbox rows, sent by the dispatcher
        await wl.expire_offers(
            session,
            services.clock(),
            services.settings.bot.waitlist_hold_minutes,
            timing=timing(services),
        )


@turn()
async def offer_button(turn_: Turn) -> None:
    """Take (or decline) a place offered from the waitlist."""
    parts = callback_parts(turn_.update, "wl") or []
    t = turn_.t
    entry_id = parse_id(parts[1]) if len(parts) == 2 else None
    if turn_.account is None or entry_id is None:
        turn_.toast(t("error.button.invalid"))
        return
    # whose entry: a relative's or a helped resident's too, access checked (the id is forged
    # easily); the domain is then given the book itself
    waiting = await turn_.session.get(WaitlistEntry, entry_id)
    book = await turn_.session.get(HealthBook, waiting.health_book_id) if waiting else None
    found = await custody.access(turn_.session, turn_.account, book) if book else None
    owner: Account | HealthBook = found.book if found is not None else turn_.account
    try:
        if parts[0] == "a":
            booking = await wl.accept_offer(
                turn_.session,
                entry_id,
                owner,
                turn_.services.clock(),
                timing=timing(turn_.services),
            )
            if found is not None:
                await records.note(
                    turn_.session,
                    turn_.account,
                    found.book,
                    "booked",
                    fields=["waitlist"],
                    found=found,
                )
            turn_.close_with = t("waitlist.taken_short")
            await send_ticket(turn_, booking)
        elif parts[0] == "d":
            entry = await wl.leave_waitlist(turn_.session, entry_id, owner)
            if found is not None:
                await records.note(
                    turn_.session,
                    turn_.account,
                    found.book,
                    "cancelled",
                    fields=["waitlist"],
                    found=found,
                )
            if entry.held_session_id is not None:  # a held place declined: to the next one
                turn_.close_with = t("waitlist.declined")
                await offer_to_waitlist(turn_, entry.held_session_id)
            else:  # left the waitlist from /appointments before any place came
                turn_.close_with = t("waitlist.left")
        else:
            turn_.toast(t("error.button.invalid"))
    except DomainError as err:
        turn_.toast(render_error(t, err), alert=True)


# ---------------------------------------------------------------- wiring


@turn(NAME)
async def cancel_booking(turn_: Turn) -> object:
    """/cancel while booking."""
    turn_.say(turn_.t("book.cancelled"), REMOVE_KEYBOARD)
    return ConversationHandler.END


@turn(NAME)
async def stale(turn_: Turn) -> object:
    """Anything else mid-way: a polite word; the conversation stays where it is."""
    if turn_.update.callback_query is not None:
        turn_.toast(turn_.t("error.button.stale"))
    else:
        await turn_.say_again_with_choices(turn_.t("book.use_buttons"))
    return None


def build() -> ConversationHandler:
    """The booking conversation, as a transition table."""
    states: dict[object, list[BaseHandler]] = {
        BookStep.CAMPAIGN: [
            CallbackQueryHandler(campaign_chosen, pattern=r"^bk:c:"),
            MessageHandler(NEW_TEXT, campaign_typed),
        ],
        BookStep.SITE: [
            CallbackQueryHandler(site_chosen, pattern=r"^bk:s:"),
            CallbackQueryHandler(waitlist_chosen, pattern=r"^bk:w:"),
            MessageHandler(filters.LOCATION, site_near),
            MessageHandler(NEW_TEXT, site_typed),
        ],
        BookStep.DAY: [
            CallbackQueryHandler(day_chosen, pattern=r"^bk:d:"),
            CallbackQueryHandler(site_chosen, pattern=r"^bk:s:"),
            CallbackQueryHandler(waitlist_chosen, pattern=r"^bk:w:"),
            MessageHandler(NEW_TEXT, typed_hint("book.hint_day")),
        ],
        BookStep.TIME: [
            CallbackQueryHandler(time_chosen, pattern=r"^bk:t:"),
            CallbackQueryHandler(waitlist_chosen, pattern=r"^bk:wq:"),
            CallbackQueryHandler(day_chosen, pattern=r"^bk:d:"),
            MessageHandler(NEW_TEXT, typed_hint("book.hint_time")),
        ],
        BookStep.CONFIRM: [
            CallbackQueryHandler(confirmed, pattern=r"^bk:ok:"),
            CallbackQueryHandler(site_chosen, pattern=r"^bk:s:"),
            MessageHandler(NEW_TEXT, typed_hint("book.hint_confirm")),
        ],
    }
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "If 'per_message=False'", PTBUserWarning)
        return ConversationHandler(
            entry_points=[
                CommandHandler("book", start_booking, filters=filters.ChatType.PRIVATE),
                CallbackQueryHandler(book_dose, pattern=r"^bk:go:"),
                CallbackQueryHandler(book_for, pattern=r"^bk:for:"),
            ],
            states=states,
            fallbacks=[
                CommandHandler("cancel", cancel_booking),
                CommandHandler("book", start_booking),
                CallbackQueryHandler(book_dose, pattern=r"^bk:go:"),
                CallbackQueryHandler(book_for, pattern=r"^bk:for:"),
                CallbackQueryHandler(ticket_button, pattern=r"^bk:ticket:"),
                CallbackQueryHandler(stale, pattern=r"^bk:"),
                # stickers, photos…: a word and the same step (commands pass through)
                MessageHandler(filters.UpdateType.MESSAGE & ~filters.COMMAND, stale),
            ],
            name=NAME,
            persistent=True,
        )


def handlers() -> list[BaseHandler]:
    """Top-level handlers: /appointments and its buttons, waitlist offers."""
    return [
        CommandHandler("appointments", appointments),
        CallbackQueryHandler(appointment_button, pattern=r"^ap:"),
        CallbackQueryHandler(offer_button, pattern=r"^wl:"),
        CallbackQueryHandler(ticket_button, pattern=r"^bk:ticket:"),
    ]
