"""The typed context handed to every handler: services built once from settings."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram.ext import Application, CallbackContext, ExtBot

from bot.channels import Channels
from bot.channels.choices import NO_ALIASES, Aliases
from bot.channels.typed import Offers
from bot.i18n import Translations
from bot.link_guard import CodeGuesses, PendingLinks
from bot.persistence import WrittenStates
from bot.settings import ConfigError, Settings
from models.certificates import Keyring, KeyringError, KeyStore
from models.replays import RecordedHere


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Services:
    """What handlers need: settings, database sessions, translations, the certificate keyring
    and a clock (and what this process wrote: conversation states, updates recorded)."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    translations: Translations
    keyring: Keyring
    clock: Callable[[], dt.datetime] = field(default=_utcnow)
    written_states: WrittenStates = field(default_factory=WrittenStates)
    recorded_here: RecordedHere = field(default_factory=RecordedHere)
    #: the channel this application serves, and every channel of the process (shared)
    channel: str = "telegram"
    channels: Channels = field(default_factory=Channels)
    offers: Offers = field(default_factory=Offers)  # shared by the channels
    aliases: Aliases = NO_ALIASES  # words people type for a choice's label (locales/aliases.toml)
    #: /link: wrong codes for the whole process (surviving /delete), and codes awaiting a "yes"
    link_guesses: CodeGuesses = field(default_factory=CodeGuesses)
    pending_links: PendingLinks = field(default_factory=PendingLinks)

    @property
    def tz(self) -> ZoneInfo:
        """The province's time zone."""
        return ZoneInfo(self.settings.bot.timezone)

    def now(self) -> dt.datetime:
        """Local time now."""
        return self.clock().astimezone(self.tz)

    def today(self) -> dt.date:
        """Local date today."""
        return self.now().date()


def key_store(settings: Settings) -> KeyStore:
    """Where the certificate keys of these settings live."""
    security = settings.security
    return KeyStore(security.keys_dir, security.certificate_key_file)


def load_keyring(settings: Settings, *, create: bool = True) -> Keyring:
    """The certificate keyring of these settings (the signing key generated at the first start
    when none is configured); :class:`ConfigError` naming the setting when it cannot be used."""
    try:
        return key_store(settings).load(create=create)
    except KeyringError as exc:
        raise ConfigError(f"security.certificate_key_file: {exc}") from None
    except OSError as exc:  # keys_dir not writable, say
        raise ConfigError(f"security.keys_dir: {exc}") from None


class HBContext(CallbackContext[ExtBot[None], dict, dict, dict]):
    """CallbackContext with the bot's :class:`Services`."""

    @property
    def services(self) -> Services:
        """Services of this application."""
        return self.application.bot_data["services"]  # type: ignore[no-any-return]


HBApplication = Application[ExtBot[None], HBContext, dict, dict, dict, None]
