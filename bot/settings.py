"""Settings from a TOML file and ``HEALTHBOOK_*`` environment variables, one model per section."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_CONFIG = Path("config.toml")


class ConfigError(Exception):
    """Settings that cannot be used; the message names every bad key."""


class _Section(BaseModel):
    """A TOML section: an unknown key is an error (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid")


class TelegramSettings(_Section):
    """``[telegram]``: how to reach the Bot API."""

    token: SecretStr | None = None
    base_url: str = "https://api.telegram.org/bot"
    base_file_url: str = "https://api.telegram.org/file/bot"
    poll_timeout: int = Field(default=10, ge=0, le=50)

    @field_validator("base_url", "base_file_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class ZaloSettings(_Section):
    """``[zalo]``: the Zalo Bot Platform (``{base_url}/bot{token}/{method}``)."""

    token: SecretStr | None = None
    base_url: str = "https://bot-api.zaloplatforms.com"
    # sent by Zalo in X-Bot-Api-Secret-Token with every webhook call (8 to 256 characters)
    webhook_secret: SecretStr | None = None
    mode: Literal["polling", "webhook"] = "polling"
    poll_timeout: int = Field(default=30, ge=1, le=60)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(r"\d+:[A-Za-z0-9_-]+", value.get_secret_value()):
            raise ValueError("a Zalo bot token looks like 12345689:abc-xyz")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not 8 <= len(value.get_secret_value()) <= 256:
            raise ValueError("must be 8 to 256 characters")
        return value


class HttpSettings(_Section):
    """``[http]``: the bot's own web server (Zalo's webhook, images and files for Zalo)."""

    listen: str = "127.0.0.1:8080"
    # the address people's messengers reach that server at, e.g. https://bot.example.vn
    public_url: str | None = None
    # minutes an image or file link stays valid (a ticket's QR is a check-in credential)
    media_minutes: int = Field(default=15, ge=1, le=120)

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:8080")
        return value

    @field_validator("public_url")
    @classmethod
    def _public(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with https:// (or http://)")
        return value.rstrip("/") if value else None

    @property
    def host(self) -> str:
        """Where to listen."""
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        """The port to listen on."""
        return int(self.listen.rpartition(":")[2])


class DatabaseSettings(_Section):
    """``[database]``: async URL (SQLite embedded by default, PostgreSQL to scale out)."""

    url: str = "sqlite+aiosqlite:///healthbook.db"
    echo: bool = False
    pool_size: int = Field(default=10, ge=1, le=200)
    upgrade_on_start: bool = True

    @field_validator("url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if value.startswith("sqlite:"):
            value = "sqlite+aiosqlite:" + value.removeprefix("sqlite:")
        elif value.startswith(("postgresql:", "postgres:")):
            value = "postgresql+asyncpg:" + value.split(":", 1)[1]
        if not value.startswith(("sqlite+aiosqlite:", "postgresql+asyncpg:")):
            raise ValueError("use sqlite+aiosqlite:///FILE or postgresql+asyncpg://USER@HOST/DB")
        return value


class BotSettings(_Section):
    """``[bot]``: behaviour of the conversations."""

    default_locale: str = "vi"
    default_province: int = Field(default=15, description="current (2025) province code")
    consent_version: str = "2026-12"
    hotline: str = "1900 9095"
    emergency: str = "115"
    timezone: str = "Asia/Ho_Chi_Minh"
    max_concurrent_updates: int = Field(default=256, ge=1, le=10_000)
    # How long a place freed for the waitlist is held for the person it is offered to.
    waitlist_hold_minutes: int = Field(default=60, ge=1, le=24 * 60)

    @field_validator("default_locale")
    @classmethod
    def _known_locale(cls, value: str) -> str:
        from bot.i18n import SUPPORTED

        if value not in SUPPORTED:
            raise ValueError(f"must be one of {', '.join(SUPPORTED)}")
        return value

    @field_validator("default_province")
    @classmethod
    def _known_province(cls, value: int) -> int:
        from models.reference import is_province

        if not is_province(value):
            raise ValueError("not a current province code (1..96, e.g. 15 for Lào Cai)")
        return value


def _clock_time(value: str) -> str:
    hour, sep, minute = value.partition(":")
    if not (sep and hour.isdigit() and minute.isdigit() and len(minute) == 2
            and int(hour) < 24 and int(minute) < 60):
        raise ValueError("must be a time of day as HH:MM, e.g. 21:00")
    return f"{int(hour):02d}:{minute}"


class RemindersSettings(_Section):
    """``[reminders]``: quiet hours (local time, ``bot.timezone``) hold every message but
    same-day appointment reminders until they end."""

    quiet_start: str = "21:00"
    quiet_end: str = "07:00"

    @field_validator("quiet_start", "quiet_end")
    @classmethod
    def _times(cls, value: str) -> str:
        return _clock_time(value)

    @property
    def quiet(self) -> tuple[dt.time, dt.time]:
        """Quiet hours as times of day (start, end); equal times: no quiet hours."""
        return tuple(dt.time.fromisoformat(v) for v in (self.quiet_start, self.quiet_end))  # type: ignore[return-value]


class DispatchSettings(_Section):
    """``[dispatch]``: the dispatcher that sends reminders, offers and broadcasts."""

    # run it inside ``healthbook run`` (false when ``healthbook dispatch`` runs apart)
    in_bot: bool = True
    # messages per second per channel, for the whole bot (Telegram allows about 30)
    telegram_rate: float = Field(default=25.0, gt=0, le=1000)
    zalo_rate: float = Field(default=10.0, gt=0, le=1000)
    # at least this many seconds between two messages to one chat
    per_chat_seconds: float = Field(default=1.0, ge=0, le=60)
    batch_size: int = Field(default=100, ge=1, le=5000)
    # seconds between looks for due messages when none was due
    poll_seconds: float = Field(default=1.0, gt=0, le=300)
    # a claim older than this is a crashed dispatcher's: the message is taken again
    claim_timeout_seconds: int = Field(default=300, ge=10, le=86_400)
    # network errors and 5xx: tries before a message is marked failed, and the first wait
    # between tries (doubled each time, as RapidPro's Courier does)
    max_attempts: int = Field(default=3, ge=1, le=20)
    retry_minutes: float = Field(default=5.0, gt=0, le=24 * 60)


class GuideSettings(_Section):
    """``[guide]``: links shown by the /help guide (the official app: VNeID carries the
    electronic health book)."""

    app_android: str = "https://play.google.com/store/apps/details?id=com.vnid"
    app_ios: str = "https://apps.apple.com/vn/app/vneid/id1582750588"
    app_name: str = "VNeID"


class SecuritySettings(_Section):
    """``[security]``: secrets that are not the bot token."""

    # The Ed25519 private key (PEM) that signs vaccination certificates. Unset: a key generated
    # at the first start in ``keys_dir``. Never derived from the bot token.
    certificate_key_file: Path | None = None
    # The generated signing key, and the public key of every signing key ever used (so that
    # certificates stay verifiable after a rotation). Relative to the working directory.
    keys_dir: Path = Path("keys")

    @model_validator(mode="before")
    @classmethod
    def _no_hmac_secret(cls, data: Any) -> Any:
        if isinstance(data, dict) and "certificate_secret" in data:
            raise ValueError(
                "certificate_secret is no longer used: certificates are now signed with an "
                "Ed25519 key. Remove it; set certificate_key_file to a PEM private key, or leave "
                "it unset to have one generated in keys_dir (`healthbook certificate keygen`)"
            )
        return data


class LoggingSettings(_Section):
    """``[logging]``."""

    level: str = "INFO"

    @field_validator("level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return value


class RolesSettings(_Section):
    """``[roles]``: who is an admin, by messenger account (``telegram:123``, ``zalo:abc``):
    made admins when the bot starts, and honoured at once by the admins' commands."""

    admins: list[str] = Field(default_factory=list)

    @field_validator("admins")
    @classmethod
    def _accounts(cls, value: list[str]) -> list[str]:
        return _accounts_list(value, "admin")


def _accounts_list(value: list[str], what: str) -> list[str]:
    """Messenger accounts as ``telegram:ID`` / ``zalo:ID``, each id strictly checked, once."""
    from models.checkin import staff_external_id

    checked = []
    for item in value:
        channel, sep, raw = item.strip().partition(":")
        if not sep or channel not in ("telegram", "zalo"):
            raise ValueError(f'each {what} is "telegram:ID" or "zalo:ID"')
        try:
            checked.append(f"{channel}:{staff_external_id(channel, raw.strip())}")
        except ValueError as exc:
            raise ValueError(f"{channel} {what}: {exc}") from None
    return list(dict.fromkeys(checked))


_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class ReportsSettings(_Section):
    """``[reports]``: the weekly coverage report. It goes out every ``day`` at ``time`` (the
    province's time, ``bot.timezone``) to every agency head, and the province's report to the
    ``recipients`` (the Departments of Health and of Information and Communications…), by
    messenger account (``telegram:123``, ``zalo:abc``; they must have written to the bot once)."""

    weekly: bool = True
    day: str = "monday"
    time: str = "08:00"
    recipients: list[str] = Field(default_factory=list)

    @field_validator("day")
    @classmethod
    def _day(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in _WEEKDAYS:
            raise ValueError("must be a day of the week in English, e.g. monday")
        return value

    @field_validator("time")
    @classmethod
    def _time(cls, value: str) -> str:
        return _clock_time(value)

    @field_validator("recipients")
    @classmethod
    def _accounts(cls, value: list[str]) -> list[str]:
        return _accounts_list(value, "recipient")

    @property
    def weekday(self) -> int:
        """The day as a number, Monday 0."""
        return _WEEKDAYS.index(self.day)

    @property
    def at(self) -> dt.time:
        """The time of day."""
        return dt.time.fromisoformat(self.time)


class Settings(BaseSettings):
    """All settings; the TOML file is read first, then ``HEALTHBOOK_SECTION__KEY`` variables."""

    model_config = SettingsConfigDict(
        env_prefix="HEALTHBOOK_", env_nested_delimiter="__", extra="forbid"
    )

    telegram: TelegramSettings = TelegramSettings()
    zalo: ZaloSettings = ZaloSettings()
    http: HttpSettings = HttpSettings()
    database: DatabaseSettings = DatabaseSettings()
    bot: BotSettings = BotSettings()
    security: SecuritySettings = SecuritySettings()
    reminders: RemindersSettings = RemindersSettings()
    dispatch: DispatchSettings = DispatchSettings()
    guide: GuideSettings = GuideSettings()
    logging: LoggingSettings = LoggingSettings()
    roles: RolesSettings = RolesSettings()
    reports: ReportsSettings = ReportsSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = settings_cls.model_config.get("toml_file")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Read and validate settings; raise :class:`ConfigError` naming each bad key."""
    path = Path(config_file) if config_file else None
    if path is None and DEFAULT_CONFIG.exists():
        path = DEFAULT_CONFIG
    if path is not None and not path.exists():
        raise ConfigError(f"config file not found: {path}")

    class _FileSettings(Settings):
        model_config = SettingsConfigDict(**{**Settings.model_config, "toml_file": path})

    try:
        settings = _FileSettings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(part) for part in err["loc"])
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            problems.append(f"{key}: {msg}")
        where = f" in {path}" if path else ""
        raise ConfigError(f"invalid settings{where}:\n  " + "\n  ".join(problems)) from None
    except Exception as exc:  # malformed TOML
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if settings.zalo.mode == "webhook" and settings.zalo.token is not None:
        missing = [
            key
            for key, value in (
                ("zalo.webhook_secret", settings.zalo.webhook_secret),
                ("http.public_url", settings.http.public_url),
            )
            if value is None
        ]
        if missing:
            where = f" in {path}" if path else ""
            raise ConfigError(
                f"invalid settings{where}:\n  "
                + "\n  ".join(f"{key}: needed when zalo.mode is webhook" for key in missing)
            )
    return settings
