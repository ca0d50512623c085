"""What every handler shares: a *turn* (one update, one transaction, one outbox) and buttons.

A handler reads the update, calls the domain layer inside :func:`turn`'s transaction and queues
its replies; the replies are sent only after the transaction committed, so the bot never says
"saved" about something that was not, and never holds a database lock while talking to Telegram.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Update
from telegram.constants import ChatType
from telegram.ext import ConversationHandler

from bot.channels.base import (
    REMOVE_KEYBOARD,
    Address,
    Keyboard,
    KeyButton,
    Markup,
    Offer,
    Options,
    Reply,
    choices_of,
    numbered,
    with_notice,
)
from bot.channels.typed import is_typed
from bot.context import HBContext, Services
from bot.i18n import Translator
from bot.persistence import write_state
from models import accounts
from models import healthbook as hb
from models import reminders as rm
from models.errors import DomainError
from models.replays import first_delivery
from models.tables import Account

log = logging.getLogger(__name__)

T = TypeVar("T")
__all__ = ["REMOVE_KEYBOARD", "Address", "KeyButton", "Keyboard", "Markup", "Options", "Reply"]

# Test-only fault injection (tests/test_restart.py): ``before_commit:<update key>`` or
# ``after_commit:<update key>`` (Telegram's update id, a Zalo event's message_id) makes the
# process SIGKILL itself at that point of that update's turn. Read from the environment only,
# never from settings; unset, it costs one truth test.
_CRASH_AT = os.environ.get("HEALTHBOOK_TEST_CRASH_AT", "")


@dataclass
class Turn:
    """One update being handled: its session, the person's account, translator and outbox."""

    update: Update
    context: HBContext
    session: AsyncSession
    account: Account | None
    t: Translator
    outbox: list[Reply] = field(default_factory=list)
    toast_text: str | None = None
    toast_alert: bool = False
    close_with: str | None = None  # text to put on the pressed message, its buttons removed
    ack: str | None = None  # the answer a button gave, shown as "✓ …" atop the next message
    edit_pressed: bool = False  # show the first reply in place of the pressed message
    keep_offer: bool = False  # an aside (/help): the choices offered before still stand
    # the sender's own account on this channel: ``account`` unless it was joined to the
    # person's primary account with /link (models/accounts.py)
    own: Account | None = None

    @property
    def services(self) -> Services:
        """The application's services."""
        return self.context.services

    @property
    def typed(self) -> bool:
        """Whether this "button press" was typed (a number or words naming a choice)."""
        query = self.update.callback_query
        return query is not None and is_typed(query)

    @property
    def channel(self) -> str:
        """The messenger this update came on."""
        return self.context.services.channel

    @property
    def user_id(self) -> int | str:
        """The sender's id on this channel (Telegram: an integer, Zalo: a string)."""
        assert self.update.effective_user is not None
        return self.update.effective_user.id

    @property
    def chat_id(self) -> int | str:
        """Chat to answer in."""
        assert self.update.effective_chat is not None
        return self.update.effective_chat.id

    @property
    def text(self) -> str:
        """Text of the incoming message ('' when there is none)."""
        message = self.update.effective_message
        return (message.text or "") if message else ""

    def say(self, text: str, markup: Markup = None) -> None:
        """Queue a message."""
        self.outbox.append(Reply(text=text, markup=markup))

    def send_document(self, data: bytes, filename: str, caption: str | None = None) -> None:
        """Queue a file."""
        self.outbox.append(Reply(text=caption, document=(data, filename)))

    def send_photo(self, data: bytes, caption: str | None = None, markup: Markup = None) -> None:
        """Queue a picture."""
        self.outbox.append(Reply(text=caption, photo=data, markup=markup))

    def send_location(self, lat: float, lon: float) -> None:
        """Queue a map pin."""
        self.outbox.append(Reply(location=(lat, lon)))

    def notify(
        self, to: Address, text: str, markup: Markup = None, *, locale: str | None = None
    ) -> None:
        """Queue a message to another person's chat, on their channel (sent after the commit,
        like the rest). ``locale``: the reader's language, for the channel's own words (on Zalo
        the line that says how to answer numbered choices); give it whenever the text is in
        theirs."""
        self.outbox.append(Reply(text=text, markup=markup, to=to, locale=locale))

    async def say_again_with_choices(self, text: str) -> None:
        """Say ``text`` with the choices this chat was last offered, numbered the same: what an
        answer that names no choice gets (the list again, so a typed number still works)."""
        offer = await self.services.offers.load(self.session, self.channel, str(self.chat_id))
        options = [(c.label, c.code) for c in offer.choices if c.code is not None]
        words = [c.label for c in offer.choices if c.code is None]
        markup: Markup = None
        if options and not words:
            markup = Options.of([[option] for option in options])
        elif words and not options:
            markup = Keyboard.of([[word] for word in words])
        self.say(text, markup)

    def toast(self, text: str, *, alert: bool = False) -> None:
        """Text of the small notice shown where a button was pressed."""
        self.toast_text, self.toast_alert = text, alert

    async def account_or_create(self) -> Account:
        """The sender's account, created now if they had none."""
        if self.account is None:
            self.account = await hb.ensure_account(
                self.session, self.channel, str(self.user_id), self.t.locale
            )
            self.own = self.account
        return self.account


TurnHandler = Callable[[Turn], Awaitable[object]]


def turn(conversation: str | None = None) -> Callable[[TurnHandler], Callable[..., Awaitable[Any]]]:
    """Wrap a handler in a turn; with ``conversation``, its new state is written in the same
    transaction as its answers (a ``None`` result keeps the state, ``END`` removes it)."""

    def decorate(fn: TurnHandler) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(fn)
        async def handler(update: Update, context: HBContext) -> object:
            services = context.services
            channel = services.channel
            key = update_key(update)
            async with services.sessions() as session, session.begin():
                # recorded with the answer, in its transaction: a copy the messenger gives
                # again after a crash finds the record and is skipped
                if await first_delivery(session, channel, key, services.clock()):
                    recorded = True
                elif services.recorded_here.same_delivery(channel, key, update):  # its 2nd turn
                    recorded = False
                else:
                    log.info("update %s was applied already: skipped", update.update_id)
                    return None
                account = own = None
                if update.effective_user is not None:
                    # the person's account (the primary when linked), their own one on this
                    # channel and the draft in one query (the draft lands in the identity map,
                    # so the handlers' later lookups of it cost no round trip)
                    found = await hb.find_person(
                        session, channel, str(update.effective_user.id), with_draft=True
                    )
                    if found is not None:
                        account, own = found
                        await accounts.note_used(session, own, account)  # writes on a change only
                t = translator_for(services, account, update)
                current = Turn(update, context, session, account, t, own=own)
                state = await fn(current)
                written = None
                if conversation is not None and state is not None and update.effective_chat:
                    conv_key = (update.effective_chat.id, current.user_id)
                    new = None if state == ConversationHandler.END else str(state)
                    if not services.written_states.unchanged(conversation, conv_key, new):
                        await write_state(session, conversation, conv_key, new, channel)
                        written = (conversation, conv_key, new)
                # the choices this answer offers (here, and to anyone it notifies), so that a
                # typed number means the same later
                offered = await write_offers(
                    session, services, update, [] if current.keep_offer else current.outbox
                )
                if _CRASH_AT and _CRASH_AT == f"before_commit:{key}":
                    await session.flush()  # the answer is written, the transaction still open
                    os.kill(os.getpid(), signal.SIGKILL)
            if written is not None:  # committed: remember it
                services.written_states.written(*written)
            for written_offer in offered:
                services.offers.written(*written_offer)
            if recorded:
                services.recorded_here.add(channel, key, update)
            if _CRASH_AT and _CRASH_AT == f"after_commit:{key}":
                os.kill(os.getpid(), signal.SIGKILL)  # committed, nothing sent yet
            await deliver(current)
            return state

        return handler

    return decorate


#: choices that answer only the very next message, such as a removal's "Yes, remove": any
#: other turn in that chat withdraws them, so a number typed later, after other commands,
#: never confirms it (handlers/agency.py)
ONE_SHOT_PREFIXES: tuple[str, ...] = ("ag:ok:",)


def is_one_shot(offer: Offer) -> bool:
    """Whether an offer holds a choice that answers only the next message."""
    return any(c.code is not None and c.code.startswith(ONE_SHOT_PREFIXES) for c in offer.choices)


async def write_offers(
    session: AsyncSession, services: Services, update: Update, outbox: list[Reply]
) -> list[tuple[str, str, Offer]]:
    """Store, in the turn's transaction, the choices its replies offer: to this private chat
    (they replace its choices), and to each person it notifies (they join that person's open
    choices, :func:`offer_notices`); the offers written. A turn that offers this chat nothing
    withdraws a one-shot choice left open there (:data:`ONE_SHOT_PREFIXES`)."""
    written = []
    if update.effective_chat is not None and is_private(update):
        chat = str(update.effective_chat.id)
        offer = numbered([r for r in outbox if r.to is None])
        here = Address(services.channel, chat)
        if offer is None and not any(r.to == here for r in outbox):
            if is_one_shot(await services.offers.load(session, services.channel, chat)):
                offer = Offer()
        if offer is not None and await services.offers.write(
            session, services.channel, chat, offer
        ):
            written.append((services.channel, chat, offer))
    notices: dict[Address, list[Reply]] = {}
    for reply in outbox:
        if reply.to is not None:
            notices.setdefault(reply.to, []).append(reply)
    for to, replies in notices.items():
        written.extend(await offer_notices(session, services, to, replies))
    return written


async def offer_notices(
    session: AsyncSession, services: Services, to: Address, replies: list[Reply]
) -> list[tuple[str, str, Offer]]:
    """Add the choices of notices to ``to``'s open choices (numbered on after them: see
    :func:`~bot.channels.base.with_notice`); a notice without choices leaves them alone."""
    if not any(choices_of(reply) for reply in replies):
        return []
    current = await services.offers.load(session, to.channel, to.chat_id)
    offer = with_notice(current, replies)
    if await services.offers.write(session, to.channel, to.chat_id, offer):
        return [(to.channel, to.chat_id, offer)]
    return []


def update_key(update: Update) -> str:
    """The channel's own id of an update, as text: Telegram's ``update_id``; Zalo has none, so
    its events carry their ``message_id`` (see :mod:`bot.channels.zalo`)."""
    key = update.api_kwargs.get("update_key") if update.api_kwargs else None
    return str(key) if key is not None else str(update.update_id)


def translator_for(services: Services, account: Account | None, update: Update) -> Translator:
    """The person's chosen language, else their messenger's language when we have it; with
    this channel's variants of messages (no "press the button" on Zalo)."""
    channel = services.channel
    if account is not None and account.locale:
        return services.translations.get(account.locale, channel)
    user = update.effective_user
    if user is not None and user.language_code:
        return services.translations.get(user.language_code, channel)
    return services.translations.get(services.settings.bot.default_locale, channel)


def is_private(update: Update) -> bool:
    """Whether the update comes from a person's private chat with the bot."""
    chat = update.effective_chat
    return chat is not None and chat.type == ChatType.PRIVATE


async def deliver(current: Turn) -> None:
    """Send a turn's replies through its channel; nothing of it ever goes to a group."""
    if not is_private(current.update):
        # Whatever a turn produces is personal: it never goes to a group or a channel, even if
        # some handler let such an update through (handlers/groups.py answers there instead).
        log.warning(
            "a reply to a non-private chat was withheld (update %s)", current.update.update_id
        )
        query = current.update.callback_query
        if query is not None and current.services.channel == "telegram":
            await query.answer()
        return
    await current.services.channels[current.services.channel].deliver(current)


def own_id(turn_: Turn) -> str:
    """The sender's own messenger id as an operator writes it (``telegram:123``,
    ``zalo:abc``): ``agencies set-head --telegram-id 123``, ``[reports] recipients``."""
    return f"{turn_.channel}:{turn_.user_id}"


def own_id_text(turn_: Turn) -> str:
    """The lines telling a person their own messenger id and to send it to an admin to be
    made an agency head (``agency.your_id``). For their private chat only (deliver sends
    nothing to a group)."""
    return turn_.t("agency.your_id", id=own_id(turn_))


def timing(services: Services) -> rm.Timing:
    """What planning a reminder needs of time: the province's zone (``bot.timezone``), the
    quiet hours (``[reminders]``) and now."""
    return rm.Timing(services.tz, services.settings.reminders.quiet, services.clock())


def inline(rows: Sequence[Sequence[tuple[str, str]]]) -> Options:
    """Choices from rows of ``(label, code)``: buttons on Telegram, a numbered list on Zalo."""
    return Options.of(rows)


def chunk(items: Sequence[T], size: int) -> list[list[T]]:
    """Split a list into rows of ``size``."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def callback_parts(update: Update, prefix: str) -> list[str] | None:
    """The fields of a callback's data after ``prefix:``, or None when it is not ours."""
    query = update.callback_query
    if query is None or not query.data or not query.data.startswith(prefix + ":"):
        return None
    return query.data[len(prefix) + 1 :].split(":")


ID_MAX = 2**31 - 1  # ids live in INTEGER columns: int4 on PostgreSQL


def parse_id(text: str, *, high: int = ID_MAX) -> int | None:
    """A number carried in a button or typed, if it is one: ASCII digits only (``"²"`` and
    ``"٣"`` are digits to ``str.isdigit`` but not to ``int``), no sign, no spaces, at most
    ``high`` (a forged 20-digit id would overflow the column)."""
    if not (0 < len(text) <= len(str(high)) and text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if value <= high else None


def callback_ids(update: Update, prefix: str, count: int) -> list[int] | None:
    """Exactly ``count`` ids after ``prefix:`` in a callback's data, or None (forged, stale or
    not ours)."""
    parts = callback_parts(update, prefix)
    if parts is None or len(parts) != count:
        return None
    ids = []
    for part in parts:
        value = parse_id(part)
        if value is None:
            return None
        ids.append(value)
    return ids


def render_error(t: Translator, err: DomainError) -> str:
    """A domain refusal in the reader's language: dates as people write them, statuses in
    words (every handler and the CLI say refusals this one way)."""
    params: dict[str, Any] = {}
    for key, value in err.params.items():
        if isinstance(value, dt.date):
            value = t.date(value)
        elif key == "status" and t.has(f"status.{value}"):
            value = t(f"status.{value}")
        params[key] = value
    if err.key == "booking.ineligible_age":
        top = params.get("max_years")
        params["max_years_text"] = t("book.age_to", max_years=top) if top is not None else ""
    return t(err.key, **params)
