"""/help: a guide of short pages (installing the official app, what to bring, before and after
vaccination, questions people ask, sites and their hours, hotlines, the bot's commands), each
reached by a numbered option (``gd:PAGE``) and leading back to the menu (``gd:menu``).

/help works in the middle of a conversation and loses nothing of it: the conversation's state
and answers stay as they are. While the guide is shown its numbers are the guide's; "Continue"
(``gd:back``) asks the pending question again. Inside a conversation that can ask its question
again (the health book) that is its own re-ask; elsewhere (booking, a check-in card, a notice's
choices) the choices open when /help came are set aside in ``chat_offers`` (under
:func:`models.healthbook.aside_channel`) and offered again. The pages hold no state: an old
guide button still opens its page."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler

from bot.channels import typed
from bot.channels.base import Choice, Keyboard, Markup, Offer, Options
from bot.channels.choices import fold
from handlers.common import Turn, callback_parts, inline, translator_for, turn
from models import booking as bk
from models import healthbook as hb
from models import validators as v
from models.tables import ChatOffer, Session, utcnow

if TYPE_CHECKING:
    from bot.context import Services

Reask = Callable[[Turn], Awaitable[object]]
PAGES = ("app", "bring", "before", "after", "faq", "sites", "hotlines", "commands")
SITES_SHOWN = 3  # sites on the sites page: the person's own commune's first, then the nearest
DAYS_SHOWN = 2  # the coming days of sessions shown per site
PREFIX = "gd"


# ---------------------------------------------------------------- what is shown


def _params(turn_: Turn) -> dict[str, str]:
    """What the pages name: the official app and its links, the hotline, the emergency
    number (all from settings)."""
    return _settings_params(turn_.services)


def _settings_params(services: Services) -> dict[str, str]:
    settings = services.settings
    return {
        "app": settings.guide.app_name,
        "android": settings.guide.app_android,
        "ios": settings.guide.app_ios,
        "hotline": settings.bot.hotline,
        "emergency": settings.bot.emergency,
    }


def _label(turn_: Turn, page: str) -> str:
    return turn_.t(f"guide.button.{page}", **_params(turn_))


def _continue_row(turn_: Turn, pending: bool) -> list[list[tuple[str, str]]]:
    return [[(turn_.t("guide.button.continue"), f"{PREFIX}:back")]] if pending else []


def show_menu(turn_: Turn, pending: bool) -> None:
    """The menu: one numbered option per page, and "Continue" when a question is pending."""
    rows = [[(_label(turn_, page), f"{PREFIX}:{page}")] for page in PAGES]
    turn_.say(turn_.t("guide.menu", **_params(turn_)), inline(rows + _continue_row(turn_, pending)))


async def show_page(turn_: Turn, page: str, pending: bool) -> None:
    """One page, with "Menu" (and "Continue" when a question is pending)."""
    if page == "sites":
        text = await sites_page(turn_)
    elif page == "commands":
        text = turn_.t("help.text", **_params(turn_))
    else:
        text = turn_.t(f"guide.page.{page}", **_params(turn_))
    rows = [[(turn_.t("guide.button.menu"), f"{PREFIX}:menu")], *_continue_row(turn_, pending)]
    turn_.say(text, inline(rows))


async def sites_page(turn_: Turn) -> str:
    """The nearest few active sites (the person's own commune first when they have a health
    book; else those of the default province) with their address and the hours of their
    coming sessions."""
    session, services, t = turn_.session, turn_.services, turn_.t
    book = await hb.own_book(session, turn_.account) if turn_.account is not None else None
    province = book.province_code if book is not None else services.settings.bot.default_province
    matches = await bk.sites_for(session, province, book.ward_code if book else None)
    if not matches and book is not None:  # the book's province has no site: the default one
        province = services.settings.bot.default_province
        book = None
        matches = await bk.sites_for(session, province, None)
    if not matches:
        return t("guide.sites.none")
    shown = [m.site for m in matches[:SITES_SHOWN]]
    hours = await _coming_hours(turn_, [s.id for s in shown])
    if book is not None:
        title = t("guide.sites.title_near", commune=_ward(book.ward_code))
    else:
        title = t("guide.sites.title", province=_province(province))
    blocks = [title]
    for site in shown:
        lines = [f"🏥 {site.name}", site.address]
        days = hours.get(site.id, [])
        lines += [f"• {t.date(day)}: {', '.join(times)}" for day, times in days]
        if not days:
            lines.append(t("guide.sites.no_sessions"))
        blocks.append("\n".join(lines))
    more = len(matches) - len(shown)
    blocks.append(t("guide.sites.more", count=more) if more > 0 else t("guide.sites.book"))
    return "\n\n".join(blocks)


async def _coming_hours(
    turn_: Turn, site_ids: list[int]
) -> dict[int, list[tuple[dt.date, list[str]]]]:
    """Per site, its next :data:`DAYS_SHOWN` days with sessions (not cancelled, not over) and
    the distinct hours of each day."""
    now = turn_.services.now()
    rows = await turn_.session.execute(
        select(Session.site_id, Session.date, Session.start_time, Session.end_time)
        .where(
            Session.site_id.in_(site_ids),
            Session.date >= now.date(),
            Session.cancelled_at.is_(None),
        )
        .order_by(Session.site_id, Session.date, Session.start_time)
    )
    found: dict[int, list[tuple[dt.date, list[str]]]] = {}
    for site_id, day, start, end in rows:
        if day == now.date() and end <= now.time().replace(tzinfo=None):
            continue  # over for today
        days = found.setdefault(site_id, [])
        span = f"{start:%H:%M}–{end:%H:%M}"
        if days and days[-1][0] == day:
            if span not in days[-1][1]:
                days[-1][1].append(span)
        elif len(days) < DAYS_SHOWN:
            days.append((day, [span]))
    return found


def _ward(code: int) -> str:
    try:
        return v.ward_name(code)
    except KeyError:  # a code of another reference release
        return str(code)


def _province(code: int) -> str:
    try:
        return v.province_name(code)
    except KeyError:
        return str(code)


@typed.fallback
async def typed_page(
    session: AsyncSession, services: Services, update: Update, offer: Offer
) -> Offer | None:
    """On a guide page (it offers only "Menu" and "Continue"), the menu's pages, so that a
    page's words ("sau tiêm") or its number in the menu open it from there too. Not a number
    while a question is pending ("Continue" shown): that may be its answer."""
    codes = {c.code for c in offer.choices}
    if f"{PREFIX}:menu" not in codes:
        return None
    message = update.message
    if f"{PREFIX}:back" in codes and message is not None and fold(message.text or "").isdigit():
        return None
    account = None
    if update.effective_user is not None:
        account = await hb.find_account(session, services.channel, str(update.effective_user.id))
    t = translator_for(services, account, update)
    params = _settings_params(services)
    return Offer(
        tuple(
            Choice(n, t(f"guide.button.{page}", **params), f"{PREFIX}:{page}")
            for n, page in enumerate(PAGES, 1)
        )
    )


# ---------------------------------------------------------------- the choices set aside


def _aside_key(turn_: Turn) -> tuple[str, str]:
    return hb.aside_channel(turn_.channel), str(turn_.chat_id)


async def set_aside(turn_: Turn) -> None:
    """Keep the choices open when /help came, to offer them again on "Continue" (the guide's
    own choices are not kept: /help from within the guide keeps what was set aside)."""
    services = turn_.services
    current = await services.offers.load(turn_.session, turn_.channel, str(turn_.chat_id))
    guide = [c for c in current.choices if (c.code or "").startswith(f"{PREFIX}:")]
    if guide:  # /help from within the guide: what was set aside stays, and what joined it
        joined = [c for c in current.choices if c not in guide]  # a notice's choices
        if not joined:
            return
        before = list((await aside(turn_) or Offer()).choices)
        codes = {c.code for c in joined}
        both = [c for c in before if c.code is None or c.code not in codes] + joined
        current = Offer(tuple(Choice(n, c.label, c.code) for n, c in enumerate(both, 1)))
    channel, chat = _aside_key(turn_)
    await turn_.session.execute(
        delete(ChatOffer).where(ChatOffer.channel == channel, ChatOffer.chat_id == chat)
    )
    if current.choices:
        turn_.session.add(
            ChatOffer(channel=channel, chat_id=chat, choices=current.to_json(), updated_at=utcnow())
        )


async def aside(turn_: Turn) -> Offer | None:
    """The choices set aside by /help, if any."""
    channel, chat = _aside_key(turn_)
    row = await turn_.session.scalar(
        select(ChatOffer.choices).where(ChatOffer.channel == channel, ChatOffer.chat_id == chat)
    )
    offer = Offer.from_json(row) if row is not None else None
    return offer if offer is not None and offer.choices else None


async def take_aside(turn_: Turn) -> Offer | None:
    """The choices set aside by /help, no longer kept."""
    offer = await aside(turn_)
    channel, chat = _aside_key(turn_)
    await turn_.session.execute(
        delete(ChatOffer).where(ChatOffer.channel == channel, ChatOffer.chat_id == chat)
    )
    return offer


def markup_of(offer: Offer) -> Markup:
    """Choices offered again as they were: options, or a keyboard's words."""
    options = [(c.label, c.code) for c in offer.choices if c.code is not None]
    words = [c.label for c in offer.choices if c.code is None]
    if options and not words:
        return Options.of([[option] for option in options])
    if words and not options:
        return Keyboard.of([[word] for word in words])
    return None


# ---------------------------------------------------------------- handlers


async def open_guide(turn_: Turn, *, reask: bool) -> None:
    """/help: the menu. ``reask``: the conversation under way asks its question again on
    "Continue"; otherwise the open choices are set aside for it."""
    if not reask:
        await set_aside(turn_)
    show_menu(turn_, reask or await aside(turn_) is not None)


def handlers(conversation: str | None, reask: Reask | None) -> list[BaseHandler]:
    """The guide's options, inside a conversation (``reask`` asks its question again) or
    outside any (``conversation`` and ``reask`` None)."""

    @turn(conversation)
    async def pressed(turn_: Turn) -> object:
        """A page, the menu, or "Continue"."""
        parts = callback_parts(turn_.update, PREFIX) or []
        choice = parts[0] if len(parts) == 1 else ""
        if choice == "back":
            if reask is not None:
                return await reask(turn_)
            offer = await take_aside(turn_)
            if offer is None:
                turn_.say(turn_.t("guide.nothing_pending"))
            else:
                turn_.say(turn_.t("guide.continue"), markup_of(offer))
            return None
        pending = reask is not None or await aside(turn_) is not None
        if choice == "menu":
            show_menu(turn_, pending)
        elif choice in PAGES:  # no "✓ label" on top: each page's first line says it
            await show_page(turn_, choice, pending)
        else:
            turn_.toast(turn_.t("error.button.invalid"))
        return None

    return [CallbackQueryHandler(pressed, pattern=rf"^{PREFIX}:")]


__all__ = ["PAGES", "handlers", "open_guide", "show_menu", "show_page", "sites_page"]
