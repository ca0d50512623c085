"""Local stand-ins for the messenger APIs the bot talks to, for tests, the demo and benchmarks.

- :mod:`bot.standin.telegram`: the Telegram Bot API server (:class:`BotApiStandIn`);
- :mod:`bot.standin.driver`: :class:`ChatDriver`, one simulated person chatting through it;
- :mod:`bot.standin.updates`: update factories (text, button presses, contacts, media …);
- :mod:`bot.standin.guard`: :func:`forbid_network`, so tests cannot reach the internet;
- :mod:`bot.standin.zalo`: the Zalo Bot Platform API stand-in and its driver (import it from there).

``python -m bot.standin`` serves the Telegram stand-in, ``python -m bot.standin.zalo`` the Zalo one.
"""

from bot.standin.common import Call, StandInTimeoutError
from bot.standin.driver import ChatDriver
from bot.standin.guard import forbid_network
from bot.standin.telegram import RESPONSE_METHODS, BotApiStandIn, TgFile
from bot.standin.updates import (
    TINY_PNG,
    TgUser,
    callback_query,
    contact_message,
    document_message,
    group_chat,
    location_message,
    my_chat_member,
    photo_message,
    sticker_message,
    text_message,
    voice_message,
)

__all__ = [
    "RESPONSE_METHODS",
    "TINY_PNG",
    "BotApiStandIn",
    "Call",
    "ChatDriver",
    "StandInTimeoutError",
    "TgFile",
    "TgUser",
    "callback_query",
    "contact_message",
    "document_message",
    "forbid_network",
    "group_chat",
    "location_message",
    "my_chat_member",
    "photo_message",
    "sticker_message",
    "text_message",
    "voice_message",
]
