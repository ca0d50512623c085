"""Group chats, supergroups and channels: everything this bot does is personal, so there it only
says "talk to me privately" (when it is added, or a command is addressed to it) and is otherwise
quiet. Nothing a group sends reaches the conversations, so nothing is stored either.

The notice goes to a chat at most once per :data:`NOTICE_EVERY`: a busy group where people keep
typing /start is not spammed, and Telegram's 20 messages a minute per group are never near.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import OrderedDict

from telegram import Bot, ChatMemberUpdated, Update
from telegram.constants import ChatMemberStatus, MessageEntityType
from telegram.error import TelegramError
from telegram.ext import ApplicationHandlerStop, BaseHandler, TypeHandler

from bot.channels.telegram import url_button
from bot.context import HBContext
from handlers.common import is_private, translator_for

log = logging.getLogger(__name__)

NOTICE_EVERY = dt.timedelta(minutes=10)
_IN = {ChatMemberStatus.MEMBER, ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER}


def bot_username(bot: Bot) -> str | None:
    """The bot's @username, once ``getMe`` has told it."""
    try:
        return bot.username
    except RuntimeError:  # not initialised yet
        return None


def _added(change: ChatMemberUpdated | None) -> bool:
    """The bot has just joined (or been made admin of) the chat."""
    if change is None:
        return False
    return change.new_chat_member.status in _IN and change.old_chat_member.status not in _IN


def addressed_to_bot(update: Update, username: str | None) -> bool:
    """A command for this bot: ``/start`` or ``/start@thisbot`` (not ``/start@otherbot``), or
    this bot joining the chat."""
    if _added(update.my_chat_member):
        return True
    message = update.effective_message
    if message is None or update.edited_message or update.edited_channel_post:
        return False
    if message.new_chat_members and any(
        member.is_bot and member.id == message.get_bot().id for member in message.new_chat_members
    ):
        return True
    text = message.text or ""
    entities = message.entities or ()
    if not any(e.type == MessageEntityType.BOT_COMMAND and e.offset == 0 for e in entities):
        return False
    _, _, target = text.split(maxsplit=1)[0].partition("@")
    return not target or (username is not None and target.casefold() == username.casefold())


class GroupGuard:
    """The first handler of all: it lets private chats through and stops everything else."""

    def __init__(self, every: dt.timedelta = NOTICE_EVERY, size: int = 10_000) -> None:
        self.every = every
        self.size = size
        self._said: OrderedDict[int, dt.datetime] = OrderedDict()  # chat id -> last notice

    def handler(self) -> BaseHandler:
        """A handler for every update; put it in a group before the others."""
        return TypeHandler(Update, self.on_update)

    def due(self, chat_id: int, now: dt.datetime) -> bool:
        """Whether this chat may get the notice now (and remember that it got it)."""
        last = self._said.get(chat_id)
        if last is not None and now - last < self.every:
            return False
        self._said[chat_id] = now
        self._said.move_to_end(chat_id)
        while len(self._said) > self.size:
            self._said.popitem(last=False)
        return True

    async def on_update(self, update: Update, context: HBContext) -> None:
        """Not a private chat: the notice when called for and due, else silence."""
        if update.effective_chat is None or is_private(update):
            return  # the conversations take it from here
        chat_id = update.effective_chat.id
        query = update.callback_query
        try:
            if query is not None:  # a button in a group: stop its spinner, say nothing
                await query.answer()
            elif addressed_to_bot(update, bot_username(context.bot)) and self.due(
                chat_id, context.services.clock()
            ):
                await self._notice(update, context, chat_id)
        except TelegramError as exc:  # removed from the group meanwhile, muted, rate-limited…
            log.warning("could not answer in a group: %s", type(exc).__name__)
        raise ApplicationHandlerStop

    @staticmethod
    async def _notice(update: Update, context: HBContext, chat_id: int) -> None:
        t = translator_for(context.services, None, update)
        username = bot_username(context.bot)
        markup = None
        if username and context.services.channel == "telegram":  # a link to the private chat
            markup = url_button(t("group.button.private"), f"https://t.me/{username}")
        await context.bot.send_message(chat_id, t("group.private_only"), reply_markup=markup)
