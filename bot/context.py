"""The typed context handed to every handler: services built once from settings."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram.ext import Application, CallbackContext, ExtBot

from bot.i18n import Translations
from bot.persistence import WrittenStates
from bot.settings import Settings


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Services:
    """What handlers need: settings, database sessions, translations and a clock."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    translations: Translations
    clock: Callable[[], dt.datetime] = field(default=_utcnow)
    written_states: WrittenStates = field(default_factory=WrittenStates)

    @property
    def tz(self) -> ZoneInfo:
        """The province's time zone."""
        return ZoneInfo(self.settings.bot.timezone)

    def certificate_secret(self, token: str) -> bytes:
        """The key that signs certificates: from settings, else derived from the bot token."""
        configured = self.settings.security.certificate_secret
        if configured is not None:
            return configured.get_secret_value().encode()
        return hashlib.sha256(b"healthbook-certificate:" + token.encode()).digest()

    def now(self) -> dt.datetime:
        """Local time now."""
        return self.clock().astimezone(self.tz)

    def today(self) -> dt.date:
        """Local date today."""
        return self.now().date()


class HBContext(CallbackContext[ExtBot[None], dict, dict, dict]):
    """CallbackContext with the bot's :class:`Services`."""

    @property
    def services(self) -> Services:
        """Services of this application."""
        return self.application.bot_data["services"]  # type: ignore[no-any-return]


HBApplication = Application[ExtBot[None], HBContext, dict, dict, dict, None]
