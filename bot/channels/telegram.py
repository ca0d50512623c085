"""Telegram: options as inline keyboards, reply keyboards for the phone and location, the
pressed message closed or edited in place, toasts where a button was pressed."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    RetryAfter,
    TelegramError,
)
from telegram.ext import AIORateLimiter, ExtBot

from bot.channels import BLOCKED, RATE_LIMITED, REFUSED, TRANSIENT, Channel, DeliveryError
from bot.channels.base import Keyboard, Markup, Options, RemoveKeyboard, Reply
from bot.channels.typed import is_typed

if TYPE_CHECKING:
    from handlers.common import Turn

log = logging.getLogger(__name__)
TelegramMarkup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove | None


def render_markup(markup: Markup) -> TelegramMarkup:
    """Options as an inline keyboard, a keyboard as a reply keyboard."""
    if isinstance(markup, Options):
        return InlineKeyboardMarkup(
            [
                [InlineKeyboardButton(o.label, callback_data=o.code) for o in row]
                for row in markup.rows
            ]
        )
    if isinstance(markup, Keyboard):
        return ReplyKeyboardMarkup(
            [
                [
                    KeyboardButton(
                        b.label,
                        request_contact=b.asks == "contact" or None,
                        request_location=b.asks == "location" or None,
                    )
                    for b in row
                ]
                for row in markup.rows
            ],
            resize_keyboard=True,
            one_time_keyboard=True,
        )
    if isinstance(markup, RemoveKeyboard):
        return ReplyKeyboardRemove()
    return None


def url_button(label: str, url: str) -> InlineKeyboardMarkup:
    """One button that opens ``url`` (the group guard's link to the bot's private chat)."""
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, url=url)]])


class TelegramChannel(Channel):
    """Replies through python-telegram-bot's ``Bot``."""

    name = "telegram"
    buttons = True
    edits = True

    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def update(self, chat_id: str, message_id: str | None, text: str) -> str | None:
        """Edit the bot's message ``message_id`` to ``text`` (sent anew when there is none, or
        it can no longer be edited); the id of the message showing it."""
        target = _private_chat_id(chat_id)
        if target is None:
            raise DeliveryError("not a private chat")
        try:
            if message_id is not None and message_id.isascii() and message_id.isdigit():
                try:
                    await self.bot.edit_message_text(
                        text, chat_id=target, message_id=int(message_id)
                    )
                    return message_id
                except BadRequest as exc:
                    if "not modified" in str(exc).lower():
                        return message_id
                    log.debug("could not edit a message: %s", exc)  # gone or too old
            sent = await self.bot.send_message(target, text)
        except TelegramError as exc:
            raise DeliveryError(type(exc).__name__) from None
        return str(sent.message_id)

    async def deliver(self, current: Turn) -> None:
        """Answer the pressed button, close its message, then send the queued messages."""
        query = current.update.callback_query
        typed = query is not None and is_typed(query)
        outbox = list(current.outbox)
        if typed:  # no pressed message to close or to show a notice on: say them
            if current.close_with and not current.ack:
                outbox.insert(0, Reply(text=current.close_with))
            if current.toast_text and (current.toast_alert or not outbox):
                outbox.insert(0, Reply(text=current.toast_text))
        first: list[Awaitable[Any]] = []
        pressed = query.message if query is not None and not typed else None
        if query is not None and not typed:
            first.append(query.answer(current.toast_text, show_alert=current.toast_alert))
            if current.close_with is not None and isinstance(pressed, Message):
                first.append(_close(pressed, current.close_with))
        if current.ack and outbox and outbox[0].text is not None and outbox[0].document is None:
            head = outbox[0]
            outbox[0] = Reply(
                text=f"✓ {current.ack}\n\n{head.text}", markup=head.markup, photo=head.photo
            )
        if (
            current.edit_pressed
            and isinstance(pressed, Message)
            and outbox
            and outbox[0].text
            and outbox[0].photo is None
            and outbox[0].document is None
            and outbox[0].to is None
            and isinstance(outbox[0].markup, Options | None)
        ):
            # one form message stepping through its items: one call instead of two
            replace = outbox.pop(0)
            first.append(_replace(pressed, replace.text or "", render_markup(replace.markup)))
        if first:
            await asyncio.gather(*first)
        chat_id = current.chat_id
        channels = current.services.channels
        for out in outbox:
            if out.to is not None:
                await channels.send(out.to.channel, out.to.chat_id, out)
            else:
                await self._send(chat_id, out)

    async def send(self, chat_id: str, reply: Reply, *, retry: bool = True) -> None:
        """One message to a person's private chat (never a group: those have negative ids).
        ``retry=False``: made once, a 429 raised at once (not retried by PTB's rate limiter)."""
        target = _private_chat_id(chat_id)
        if target is None:
            raise DeliveryError("not a private chat", REFUSED)
        try:
            await self._send(target, reply, once=not retry)
        except TelegramError as exc:
            raise delivery_error(exc) from None

    async def _send(self, chat_id: int | str, out: Reply, *, once: bool = False) -> None:
        bot = self.bot
        markup = render_markup(out.markup)
        kw: dict[str, Any] = {}
        if once and isinstance(bot, ExtBot) and bot.rate_limiter is not None:
            kw["rate_limit_args"] = ONCE
        if out.location is not None:
            await bot.send_location(chat_id, *out.location, **kw)
        elif out.document is not None:
            data, name = out.document
            await bot.send_document(
                chat_id, document=io.BytesIO(data), filename=name, caption=out.text, **kw
            )
        elif out.photo is not None:
            await bot.send_photo(
                chat_id, photo=io.BytesIO(out.photo), caption=out.text, reply_markup=markup, **kw
            )
        else:
            await bot.send_message(chat_id, out.text or "", reply_markup=markup, **kw)


def delivery_error(exc: TelegramError) -> DeliveryError:
    """What a Bot API error means for a message: blocked (403: blocked, deactivated, never
    started), rate limited (429, with its ``retry_after``), refused (400: chat not found, bad
    message) or transient (network, timeouts, 5xx and anything else)."""
    name = type(exc).__name__
    if isinstance(exc, Forbidden):
        return DeliveryError(name, BLOCKED)
    if isinstance(exc, RetryAfter):
        wait = exc._retry_after.total_seconds()  # what PTB's own rate limiter reads
        return DeliveryError(name, RATE_LIMITED, retry_after=wait)
    if isinstance(exc, BadRequest | ChatMigrated):
        return DeliveryError(name, REFUSED)
    return DeliveryError(name, TRANSIENT)  # NetworkError, TimedOut, 5xx, a bad answer


#: ``rate_limit_args`` of a call made once: the dispatcher paces itself and pauses on a 429
ONCE = "once"


class TurnRateLimiter(AIORateLimiter):
    """PTB's rate limiter, which retries a call after a 429 (``max_retries``) for the replies of
    a turn; a call made with ``rate_limit_args=ONCE`` (the dispatcher's) goes straight through,
    made once, its 429 raised to the caller. (``AIORateLimiter`` reads ``rate_limit_args`` as
    a number of retries, and ``0`` as "the default": it cannot say "none".)"""

    async def process_request(  # type: ignore[override]
        self,
        callback: Any,
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: Any,
    ) -> Any:
        if rate_limit_args == ONCE:
            return await callback(*args, **kwargs)
        return await super().process_request(
            callback, args, kwargs, endpoint, data, rate_limit_args
        )


def _private_chat_id(chat_id: str) -> int | None:
    """A Telegram person's chat id (a positive integer), strictly parsed."""
    if not (chat_id.isascii() and chat_id.isdigit() and 0 < len(chat_id) <= 19):
        return None
    return int(chat_id)


async def _replace(message: Message, text: str, markup: TelegramMarkup) -> None:
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


__all__ = ["ONCE", "TelegramChannel", "TurnRateLimiter", "delivery_error", "render_markup"]
