"""What every handler shares: a *turn* (one update, one transaction, one outbox) and buttons.

A handler reads the update, calls the domain layer inside :func:`turn`'s transaction and queues
its replies; the replies are sent only after the transaction committed, so the bot never says
"saved" about something that was not, and never holds a database lock while talking to Telegram.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import io
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from telegram.constants import ChatType
from telegram.error import BadRequest, TelegramError
from telegram.ext import ConversationHandler

from bot.context import HBContext, Services
from bot.i18n import Translator
from bot.persistence import write_state
from models import healthbook as hb
from models.errors import DomainError
from models.replays import first_delivery
from models.tables import Account

log = logging.getLogger(__name__)

CHANNEL = "telegram"
Markup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove | None
T = TypeVar("T")

# Test-only fault injection (tests/test_restart.py): ``before_commit:<update id>`` or
# ``after_commit:<update id>`` makes the process SIGKILL itself at that point of that update's
# turn. Read from the environment only, never from settings; unset, it costs one truth test.
_CRASH_AT = os.environ.get("HEALTHBOOK_TEST_CRASH_AT", "")


@dataclass
class Outgoing:
    """One message to send once the turn's transaction has committed."""

    text: str | None = None
    markup: Markup = None
    document: tuple[bytes, str] | None = None
    photo: bytes | None = None
    location: tuple[float, float] | None = None
    chat_id: int | None = None  # another person's chat (e.g. a waitlist offer); None: this chat


@dataclass
class Turn:
    """One update being handled: its session, the person's account, translator and outbox."""

    update: Update
    context: HBContext
    session: AsyncSession
    account: Account | None
    t: Translator
    outbox: list[Outgoing] = field(default_factory=list)
    toast_text: str | None = None
    toast_alert: bool = False
    close_with: str | None = None  # text to put on the pressed message, its buttons removed
    ack: str | None = None  # the answer a button gave, shown as "✓ …" atop the next message
    edit_pressed: bool = False  # show the first reply in place of the pressed message

    @property
    def services(self) -> Services:
        """The application's services."""
        return self.context.services

    @property
    def user_id(self) -> int:
        """Telegram user id of the sender."""
        assert self.update.effective_user is not None
        return self.update.effective_user.id

    @property
    def chat_id(self) -> int:
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
        self.outbox.append(Outgoing(text=text, markup=markup))

    def send_document(self, data: bytes, filename: str, caption: str | None = None) -> None:
        """Queue a file."""
        self.outbox.append(Outgoing(text=caption, document=(data, filename)))

    def send_photo(self, data: bytes, caption: str | None = None, markup: Markup = None) -> None:
        """Queue a picture."""
        self.outbox.append(Outgoing(text=caption, photo=data, markup=markup))

    def send_location(self, lat: float, lon: float) -> None:
        """Queue a map pin."""
        self.outbox.append(Outgoing(location=(lat, lon)))

    def notify(self, chat_id: int, text: str, markup: Markup = None) -> None:
        """Queue a message to another person's chat (sent after the commit, like the rest)."""
        self.outbox.append(Outgoing(text=text, markup=markup, chat_id=chat_id))

    def toast(self, text: str, *, alert: bool = False) -> None:
        """Text of the small notice shown where a button was pressed."""
        self.toast_text, self.toast_alert = text, alert

    async def account_or_create(self) -> Account:
        """The sender's account, created now if they had none."""
        if self.account is None:
            self.account = await hb.ensure_account(
                self.session, CHANNEL, str(self.user_id), self.t.locale
            )
        return self.account


TurnHandler = Callable[[Turn], Awaitable[object]]


def turn(conversation: str | None = None) -> Callable[[TurnHandler], Callable[..., Awaitable[Any]]]:
    """Wrap a handler in a turn; with ``conversation``, its new state is written in the same
    transaction as its answers (a ``None`` result keeps the state, ``END`` removes it)."""

    def decorate(fn: TurnHandler) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(fn)
        async def handler(update: Update, context: HBContext) -> object:
            services = context.services
            key = str(update.update_id)
            async with services.sessions() as session, session.begin():
                # recorded with the answer, in its transaction: a copy Telegram gives again
                # after a crash finds the record and is skipped
                if await first_delivery(session, CHANNEL, key, services.clock()):
                    recorded = True
                elif (CHANNEL, key) in services.recorded_here:  # this delivery's other turn
                    recorded = False
                else:
                    log.info("update %s was applied already: skipped", update.update_id)
                    return None
                account = None
                if update.effective_user is not None:
                    # the account and its draft in one query (the draft lands in the identity
                    # map, so the handlers' later lookups of it cost no round trip)
                    account = await hb.find_account(
                        session, CHANNEL, str(update.effective_user.id), with_draft=True
                    )
                t = translator_for(services, account, update)
                current = Turn(update, context, session, account, t)
                state = await fn(current)
                written = None
                if conversation is not None and state is not None and update.effective_chat:
                    key = (update.effective_chat.id, current.user_id)
                    new = None if state == ConversationHandler.END else str(state)
                    if not services.written_states.unchanged(conversation, key, new):
                        await write_state(session, conversation, key, new)
                        written = (conversation, key, new)
                if _CRASH_AT and _CRASH_AT == f"before_commit:{update.update_id}":
                    await session.flush()  # the answer is written, the transaction still open
                    os.kill(os.getpid(), signal.SIGKILL)
            if written is not None:  # committed: remember it
                services.written_states.written(*written)
            if recorded:
                services.recorded_here.add(CHANNEL, key)
            if _CRASH_AT and _CRASH_AT == f"after_commit:{update.update_id}":
                os.kill(os.getpid(), signal.SIGKILL)  # committed, nothing sent yet
            await deliver(current)
            return state

        return handler

    return decorate


def translator_for(services: Services, account: Account | None, update: Update) -> Translator:
    """The person's chosen language, else their Telegram language when we have it."""
    if account is not None and account.locale:
        return services.translations.get(account.locale)
    user = update.effective_user
    if user is not None and user.language_code:
        return services.translations.get(user.language_code)
    return services.translations.get(services.settings.bot.default_locale)


def is_private(update: Update) -> bool:
    """Whether the update comes from a person's private chat with the bot."""
    chat = update.effective_chat
    return chat is not None and chat.type == ChatType.PRIVATE


async def deliver(current: Turn) -> None:
    """Answer the pressed button, close its message, then send the queued messages in order."""
    bot = current.context.bot
    query = current.update.callback_query
    if not is_private(current.update):
        # Whatever a turn produces is personal: it never goes to a group or a channel, even if
        # some handler let such an update through (handlers/groups.py answers there instead).
        log.warning("a reply to a non-private chat was withheld (update %s)",
                    current.update.update_id)
        if query is not None:
            await query.answer()
        return
    first: list[Awaitable[Any]] = []
    if query is not None:
        first.append(query.answer(current.toast_text, show_alert=current.toast_alert))
        if current.close_with is not None and isinstance(query.message, Message):
            first.append(_close(query.message, current.close_with))
    outbox = list(current.outbox)
    if current.ack and outbox and outbox[0].text is not None and outbox[0].document is None:
        head = outbox[0]
        outbox[0] = Outgoing(
            text=f"✓ {current.ack}\n\n{head.text}", markup=head.markup, photo=head.photo
        )
    if (
        current.edit_pressed
        and query is not None
        and isinstance(query.message, Message)
        and outbox
        and outbox[0].text
        and outbox[0].photo is None
        and outbox[0].document is None
        and not isinstance(outbox[0].markup, ReplyKeyboardMarkup | ReplyKeyboardRemove)
    ):
        # one form message stepping through its items: one call instead of two
        replace = outbox.pop(0)
        first.append(_replace(query.message, replace.text or "", replace.markup))
    if first:
        await asyncio.gather(*first)
    for out in outbox:
        if out.chat_id is not None:
            await _notify(current, out)
        elif out.location is not None:
            await bot.send_location(current.chat_id, *out.location)
        elif out.document is not None:
            data, name = out.document
            await bot.send_document(
                current.chat_id, document=io.BytesIO(data), filename=name, caption=out.text
            )
        elif out.photo is not None:
            await bot.send_photo(
                current.chat_id,
                photo=io.BytesIO(out.photo),
                caption=out.text,
                reply_markup=out.markup,
            )
        else:
            await bot.send_message(current.chat_id, out.text or "", reply_markup=out.markup)


async def _notify(current: Turn, out: Outgoing) -> None:
    """A message to someone else: their blocking the bot must not fail this person's turn."""
    assert out.chat_id is not None
    if out.chat_id <= 0:  # people's chats have positive ids; groups and channels negative ones
        log.warning("a message to a non-private chat was withheld")
        return
    try:
        await current.context.bot.send_message(out.chat_id, out.text or "",
                                               reply_markup=out.markup)
    except TelegramError as exc:
        log.warning("could not notify a chat: %s", type(exc).__name__)


async def _replace(message: Message, text: str, markup: Markup) -> None:
    try:
        await message.edit_text(text, reply_markup=markup)  # type: ignore[arg-type]
    except BadRequest as exc:  # the message is gone or too old to edit: send it anew
        log.debug("could not edit a pressed message: %s", exc)
        await message.get_bot().send_message(message.chat.id, text, reply_markup=markup)


async def _close(message: Message, text: str) -> None:
    try:
        await message.edit_text(text, reply_markup=None)
    except BadRequest as exc:  # too old, deleted, or already closed: nothing to fix
        log.debug("could not close a pressed message: %s", exc)


def inline(rows: Sequence[Sequence[tuple[str, str]]]) -> InlineKeyboardMarkup:
    """An inline keyboard from rows of ``(label, callback_data)``."""
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(label, callback_data=data) for label, data in row] for row in rows]
    )


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
