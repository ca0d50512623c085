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
    #: whether the bot's own messages can be edited later (Telegram); elsewhere :meth:`update`
    #: sends a new message
    edits: bool = False

    async def update(self, chat_id: str, message_id: str | None, text: str) -> str | None:
        """Show ``text`` in place of an earlier message of the bot (a broadcast's progress):
        edited where the messenger can edit, else sent anew; the id of the message that now
        shows it (None where messages have no id to edit). Raises :class:`DeliveryError`."""
        await self.send(chat_id, Reply(text=text))
        return None

    @abstractmethod
    async def deliver(self, current: Turn) -> None:
        """Send a turn's replies to its own chat (after its transaction committed), answering
        the pressed button where there was one."""

    @abstractmethod
    async def send(self, chat_id: str, reply: Reply, *, retry: bool = True) -> None:
        """Send one message to a chat, outside any turn (a notification, a reminder); raises
        :class:`DeliveryError` when the messenger refuses it. ``retry=False`` (the dispatcher,
        which paces itself): a rate limit is raised at once instead of waited out here."""


#: why a message was not delivered (:attr:`DeliveryError.reason`)
BLOCKED = "blocked"  # the person blocked the bot: send nothing more until they write
RATE_LIMITED = "rate_limited"  # too fast: wait ``retry_after`` seconds, then the same again
TRANSIENT = "transient"  # network error, timeout, 5xx: worth trying again later
REFUSED = "refused"  # the messenger refuses this message (bad chat, too long…): never again


class DeliveryError(Exception):
    """A message could not be delivered: ``reason`` (one of :data:`BLOCKED`,
    :data:`RATE_LIMITED` with ``retry_after`` seconds, :data:`TRANSIENT`, :data:`REFUSED`) and a
    short description; never carries the text or the chat id."""

    def __init__(
        self, description: str, reason: str = REFUSED, *, retry_after: float | None = None
    ) -> None:
        super().__init__(description)
        self.reason = reason
        self.retry_after = retry_after


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


__all__ = [
    "BLOCKED",
    "RATE_LIMITED",
    "REFUSED",
    "TRANSIENT",
    "Channel",
    "Channels",
    "DeliveryError",
]
