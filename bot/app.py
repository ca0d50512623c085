"""Wiring in one place: build the python-telegram-bot Application from settings."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine
from telegram import BotCommand, Update
from telegram.ext import AIORateLimiter, Application, ContextTypes, Defaults

from bot.context import HBApplication, HBContext, Services
from bot.db import create_engine, session_factory, upgrade
from bot.i18n import Translations
from bot.logs import mask
from bot.persistence import SQLPersistence
from bot.processor import PerUserUpdateProcessor
from bot.request import AiohttpRequest
from bot.settings import Settings
from handlers import booking, healthbook, site
from handlers import help as help_handlers
from handlers.common import translator_for

log = logging.getLogger(__name__)
COMMANDS = (
    "start",
    "book",
    "appointments",
    "certificate",
    "profile",
    "mydata",
    "language",
    "cancel",
    "delete",
    "help",
    "checkin",
    "verify",
)


class HealthbookApplication(Application):  # type: ignore[type-arg]
    """PTB's Application, minus one per-person leak: it remembers every user and chat id it saw
    "to persist their data" and forgets them only when the persistence stores user or chat data.
    Ours stores neither (answers live in domain tables), so a million residents would otherwise
    leave a million ids behind."""

    def _mark_for_persistence_update(self, *, update: object = None, job: object = None) -> None:
        return None


def build_application(
    settings: Settings,
    *,
    token: str | None = None,
    clock: Callable[[], dt.datetime] | None = None,
    rate_limit: bool = True,
) -> HBApplication:
    """The bot: engine, sessions, translations, handlers and persistence, nothing global."""
    engine = create_engine(
        settings.database.url, echo=settings.database.echo, pool_size=settings.database.pool_size
    )
    sessions = session_factory(engine)
    translations = Translations(default=settings.bot.default_locale)
    services = Services(settings=settings, sessions=sessions, translations=translations)
    if clock is not None:
        services.clock = clock
    secret = token or (
        settings.telegram.token.get_secret_value() if settings.telegram.token else ""
    )
    if not secret:
        raise ValueError("no Telegram token configured")

    async def post_init(app: Application) -> None:  # type: ignore[type-arg]
        await app.bot.set_my_commands([BotCommand(c, c) for c in COMMANDS])

    async def post_shutdown(_app: Application) -> None:  # type: ignore[type-arg]
        await engine.dispose()

    builder = (
        Application.builder()
        .application_class(HealthbookApplication)
        .token(secret)
        .base_url(settings.telegram.base_url)
        .base_file_url(settings.telegram.base_file_url)
        .context_types(ContextTypes(context=HBContext))
        .persistence(SQLPersistence(sessions))
        .concurrent_updates(PerUserUpdateProcessor(settings.bot.max_concurrent_updates))
        .defaults(Defaults(tzinfo=services.tz))
        .request(AiohttpRequest(connection_pool_size=64))
        .get_updates_request(AiohttpRequest(connection_pool_size=1, read_timeout=10))
        .post_init(post_init)
        .post_shutdown(post_shutdown)
    )
    if rate_limit:
        builder = builder.rate_limiter(AIORateLimiter(overall_max_rate=0, max_retries=3))
    app: HBApplication = builder.build()  # type: ignore[assignment]
    app.bot_data["services"] = services
    app.bot_data["engine"] = engine
    # first match wins: the staff check-in (it takes /start checkin-CODE), booking, health book;
    # then the commands that work anywhere, and last the catch-alls of help.py
    app.add_handler(site.build())
    app.add_handler(booking.build())
    app.add_handler(healthbook.build())
    for handler in [*site.handlers(), *booking.handlers(), *help_handlers.handlers()]:
        app.add_handler(handler)
    if app.job_queue is not None:  # waitlist offers nobody took move on to the next person
        app.job_queue.run_repeating(
            booking.expire_offers_job, interval=60, first=30, name="waitlist-offers"
        )
        app.job_queue.run_repeating(
            booking.expire_bookings_job, interval=3600, first=60, name="missed-bookings"
        )
    app.add_error_handler(on_error)
    return app


async def prepare_database(app: HBApplication) -> None:
    """Migrate the schema (when ``upgrade_on_start``); call before ``app.initialize()``, which
    reads the conversations that were under way."""
    if app.bot_data["services"].settings.database.upgrade_on_start:
        await upgrade(engine_of(app))


def engine_of(app: HBApplication) -> AsyncEngine:
    """The database engine of an application (for tests and tools)."""
    return app.bot_data["engine"]  # type: ignore[no-any-return]


async def on_error(update: object, context: HBContext) -> None:
    """Log without personal data, and tell the person their answers are safe."""
    err = context.error
    log.error("error handling an update: %s: %s", type(err).__name__, mask(str(err)), exc_info=err)
    if isinstance(update, Update) and update.effective_chat is not None:
        t = translator_for(context.services, None, update)
        try:
            await context.bot.send_message(update.effective_chat.id, t("error.internal"))
        except Exception:  # the Bot API itself may be what failed
            log.warning("could not tell the user about the error")
