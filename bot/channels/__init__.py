"""The channel layer: handlers say channel-neutral things (:mod:`bot.channels.base`), and each
messenger renders them (:mod:`bot.channels.telegram`, :mod:`bot.channels.zalo`)."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from bot.channels.base import Reply

if TYPE_CHECKING:
    from handlers.common import Turn

log = logging.getLogger(__name__)


class Channel(ABC):
    """A messenger the bot talks on."""

    name: str = ""
    #: whether options show as buttons that send their code (Telegram), or as numbered text
    buttons: bool = False

    @abstractmethod
    async def deliver(self, current: Turn) -> None:
        """Send a turn's replies to its own chat (after its transaction committed), answering
        the pressed button where there was one."""

    @abstractmethod
    async def send(self, chat_id: str, reply: Reply) -> None:
        """Send one message to a chat, outside any turn (a notification, a reminder); raises
        :class:`DeliveryError` when the messenger refuses it."""


class DeliveryError(Exception):
    """A message could not be delivered (blocked, unknown chat, network): never carries the
    text or the chat id."""


class Channels(dict[str, Channel]):
    """Every channel this process serves, by name (shared by all of them: a waitlist offer
    made on Zalo may go to someone on Telegram)."""

    async def send(self, channel: str, chat_id: str, reply: Reply) -> bool:
        """Send, logging (without personal data) and swallowing a failure; whether it went."""
        target = self.get(channel)
        if target is None:
            log.warning("no %s channel here: a message was not sent", channel)
            return False
        try:
            await target.send(chat_id, reply)
        except DeliveryError as exc:
            log.warning("could not send on %s: %s", channel, exc)
            return False
        return True


__all__ = ["Channel", "Channels", "DeliveryError"]
