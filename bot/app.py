"""Wiring in one place: build the python-telegram-bot Application from settings."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from telegram import BotCommand, Update
from telegram.constants import ChatType
from telegram.ext import Application, ContextTypes, Defaults, ExtBot

from bot.channels import Channel
from bot.channels import typed as typed_answers
from bot.channels.choices import Aliases
from bot.channels.greeting import Known, first_contact
from bot.channels.telegram import TelegramChannel, TurnRateLimiter
from bot.channels.typed import Offers
from bot.context import HBApplication, HBContext, Services, load_keyring
from bot.db import create_engine, session_factory, upgrade
from bot.i18n import Translations
from bot.logs import format_exception
from bot.persistence import SQLPersistence
from bot.polling import UpdatesRequest
from bot.processor import PerUserUpdateProcessor
from bot.request import AiohttpRequest
from bot.settings import Settings
from handlers import (
    agency,
    assist,
    audit,
    booking,
    broadcast,
    family,
    healthbook,
    invites,
    reminders,
    report,
    site,
)
from handlers import help as help_handlers
from handlers.common import is_private, translator_for
from handlers.groups import GroupGuard
from models import healthbook as hb
from models.certificates import Keyring
from models.reference_codes import require_current
from models.replays import forget_handled
from models.roles import grant_listed

log = logging.getLogger(__name__)
COMMANDS = (
    "start",
    "book",
    "appointments",
    "certificate",
    "profile",
    "family",
    "assist",
    "mydata",
    "language",
    "cancel",
    "delete",
    "link",
    "join",
    "help",
    "checkin",
    "day",
    "reactions",
    "verify",
    "agency",
    "report",
)


class HealthbookApplication(Application):  # type: ignore[type-arg]
    """PTB's Application, minus one per-person leak: it remembers every user and chat id it saw
    "to persist their data" and forgets them only when the persistence stores user or chat data.
    Ours stores neither (answers live in domain tables), so a million residents would otherwise
    leave a million ids behind."""

    def _mark_for_persistence_update(self, *, update: object = None, job: object = None) -> None:
        return None

    async def process_update(self, update: object) -> None:
        """Dispatch one update (inside the person's turn slot: their earlier answer, and the
        choices it offered, are committed), a typed answer to offered choices first turned
        into the choice it names."""
        if isinstance(update, Update):
            services = self.bot_data["services"]
            if services.channel != "telegram":  # no Start button there
                update = await first_contact(update, services, self.bot, self._known)
            update = await typed_answers.resolve(update, services, self.bot)
        await super().process_update(update)

    @functools.cached_property
    def _known(self) -> Known:
        return Known()


def build_services(
    settings: Settings,
    *,
    clock: Callable[[], dt.datetime] | None = None,
    keyring: Keyring | None = None,
) -> Services:
    """Engine, sessions, translations, typed-answer aliases and the certificate keyring (the
    settings', its key generated at the first start, unless given): built once per process and
    shared by every channel's application (:func:`for_channel`)."""
    if keyring is None:
        keyring = load_keyring(settings)
    engine = create_engine(
        settings.database.url, echo=settings.database.echo, pool_size=settings.database.pool_size
    )
    translations = Translations(default=settings.bot.default_locale)
    services = Services(
        settings=settings,
        sessions=session_factory(engine),
        translations=translations,
        keyring=keyring,
        aliases=Aliases.load(translations.catalogs),
        # a dispatcher in another process writes the choices its messages offer: this one's
        # cache would not know them, so every chat's choices are read from the database
        offers=Offers() if settings.dispatch.in_bot else Offers(size=0),
    )
    if clock is not None:
        services.clock = clock
    return services


def for_channel(services: Services, channel: str) -> Services:
    """The services of one channel's application: the shared ones, with this channel's name
    and its own records of what it wrote (states, updates, offered choices)."""
    return dataclasses.replace(
        services,
        channel=channel,
        written_states=type(services.written_states)(),
        recorded_here=type(services.recorded_here)(),
    )


def build_application(
    settings: Settings,
    *,
    token: str | None = None,
    clock: Callable[[], dt.datetime] | None = None,
    rate_limit: bool = True,
    keyring: Keyring | None = None,
    services: Services | None = None,
    channel: str = "telegram",
    bot: ExtBot[Any] | None = None,
    make_channel: Callable[[HBApplication], Channel] | None = None,
    jobs: bool = True,
) -> HBApplication:
    """One channel's bot: handlers and persistence over shared services, nothing global.
    Telegram by default (``token`` or the settings'); another channel gives its python-telegram-
    bot compatible ``bot`` and ``make_channel`` (see :mod:`bot.channels.zalo`). ``jobs``: run
    the periodic jobs here (one application per process does)."""
    if services is None:
        services = build_services(settings, clock=clock, keyring=keyring)
    elif clock is not None:
        services.clock = clock
    services = for_channel(services, channel)
    sessions = services.sessions
    engine = sessions.kw["bind"]
    if bot is None:
        secret = token or (
            settings.telegram.token.get_secret_value() if settings.telegram.token else ""
        )
        if not secret:
            raise ValueError("no Telegram token configured")

    async def post_init(app: Application) -> None:  # type: ignore[type-arg]
        if channel == "telegram":
            await app.bot.set_my_commands([BotCommand(c, c) for c in COMMANDS])

    async def post_shutdown(_app: Application) -> None:  # type: ignore[type-arg]
        await engine.dispose()

    # what bot/polling.py's Poller polls through (it leaves out the updates under way)
    updates_request = UpdatesRequest(connection_pool_size=1, read_timeout=10)
    builder = Application.builder().application_class(HealthbookApplication)
    if bot is None:
        builder = (
            builder.token(secret)
            .base_url(settings.telegram.base_url)
            .base_file_url(settings.telegram.base_file_url)
            .request(AiohttpRequest(connection_pool_size=64))
            .get_updates_request(updates_request)
        )
    else:
        builder = builder.bot(bot)
    builder = (
        builder.context_types(ContextTypes(context=HBContext))
        .persistence(SQLPersistence(sessions, channel=channel, numeric_ids=channel == "telegram"))
        .concurrent_updates(
            PerUserUpdateProcessor(
                settings.bot.max_concurrent_updates,
                on_overflow=functools.partial(too_fast, services),
            )
        )
        .post_init(post_init)
        .post_shutdown(post_shutdown)
    )
    if bot is None:
        builder = builder.defaults(Defaults(tzinfo=services.tz))
        if rate_limit:
            builder = builder.rate_limiter(TurnRateLimiter(overall_max_rate=0, max_retries=3))
    app: HBApplication = builder.build()  # type: ignore[assignment]
    app.bot_data["services"] = services
    services.channels[channel] = (
        make_channel(app) if make_channel is not None else TelegramChannel(app.bot)
    )
    app.bot_data["engine"] = engine
    app.bot_data["updates_request"] = updates_request
    # before anything: groups and channels get one "talk to me privately" and reach no further
    app.add_handler(GroupGuard().handler(), group=-1)
    # /assist's menu, buttons and search: ahead of the conversations, so that they work in the
    # middle of a registration (it passes on whatever is not its own; groups go on to the guard)
    app.add_handler(assist.build(), group=-2)
    # first match wins: the staff check-in (it takes /start checkin-CODE), booking, health book;
    # then the commands that work anywhere, and last the catch-alls of help.py
    app.add_handler(site.build())
    app.add_handler(booking.build())
    app.add_handler(healthbook.build())
    app.add_handler(broadcast.build())  # after them: mid-way, /broadcast is theirs
    for handler in [
        *site.handlers(),
        *booking.handlers(),
        *reminders.handlers(),
        *invites.handlers(),
        *family.handlers(),
        *assist.handlers(),
        *audit.handlers(),
        *agency.handlers(),
        *report.handlers(),
        *help_handlers.handlers(),
    ]:
        app.add_handler(handler)
    if jobs and app.job_queue is not None:  # waitlist offers nobody took move on to the next one
        app.job_queue.run_repeating(
            booking.expire_offers_job, interval=60, first=30, name="waitlist-offers"
        )
        app.job_queue.run_repeating(
            booking.expire_bookings_job, interval=3600, first=60, name="missed-bookings"
        )
        app.job_queue.run_repeating(  # health books left unfinished: their one reminder
            reminders.unfinished_job, interval=60, first=45, name="unfinished-reminders"
        )
        app.job_queue.run_repeating(
            forget_handled_updates_job, interval=3600, first=90, name="handled-updates"
        )
        app.job_queue.run_repeating(  # Monday 08:00: last week's figures to every head
            report.weekly_job, interval=60, first=55, name="weekly-reports"
        )
    app.add_error_handler(on_error)
    return app


async def prepare_database(app: HBApplication) -> None:
    """Migrate the schema (when ``upgrade_on_start``) and refuse a database whose stored codes
    follow another reference release; call before ``app.initialize()``, which reads the
    conversations that were under way."""
    if app.bot_data["services"].settings.database.upgrade_on_start:
        await upgrade(engine_of(app))
    async with engine_of(app).connect() as conn:
        await conn.run_sync(require_current)
    services = app.bot_data["services"]
    if services.settings.roles.admins:  # [roles] admins: admins from the start
        async with services.sessions() as session, session.begin():
            await grant_listed(session, services.settings.roles.admins)


async def forget_handled_updates_job(context: HBContext) -> None:
    """Every hour: forget the updates handled more than 48 hours ago (Telegram gives none of
    them again), and the registrations set aside a month ago and never taken up again."""
    services = context.services
    async with services.sessions() as session, session.begin():
        count = await forget_handled(session, services.clock())
        parked = await hb.purge_parked(session, services.clock())
    log.debug("forgot %d handled updates, %d registrations set aside", count, parked)


def engine_of(app: HBApplication) -> AsyncEngine:
    """The database engine of an application (for tests and tools)."""
    return app.bot_data["engine"]  # type: ignore[no-any-return]


async def too_fast(services: Services, update: Update, first: bool) -> bool:
    """An update dropped from one person's burst: one polite word per burst, in their language
    and never in a group; the other pressed buttons only get their spinner stopped. Returns
    whether the word was said."""
    query = update.callback_query
    if not first or not (query is not None or is_private(update)):
        if query is not None:
            await query.answer()
        return False
    account = None
    if update.effective_user is not None:
        async with services.sessions() as session:
            account = await hb.find_account(
                session, services.channel, str(update.effective_user.id)
            )
    text = translator_for(services, account, update)("error.too_fast")
    if query is not None:  # the alert is shown to the presser alone, in a group too
        await query.answer(text, show_alert=True)
    elif update.effective_chat is not None:
        await update.get_bot().send_message(update.effective_chat.id, text)
    return True


async def on_error(update: object, context: HBContext) -> None:
    """Log without personal data, and tell the person their answers are safe (in their private
    chat only: a group hears nothing)."""
    err = context.error
    if err is None:
        return
    # the exception's class, its masked first line and the stack, never its full message:
    # later lines carry SQL parameters, PostgreSQL's DETAIL (the duplicate value), pydantic's
    # input values. Rendered here, so that no logging configuration can print more.
    update_id = update.update_id if isinstance(update, Update) else None
    log.error("error handling update %s: %s", update_id, format_exception(err))
    if (
        isinstance(update, Update)
        and update.effective_chat is not None
        and update.effective_chat.type == ChatType.PRIVATE
    ):
        t = translator_for(context.services, None, update)
        try:
            await context.bot.send_message(update.effective_chat.id, t("error.internal"))
        except Exception:  # the Bot API itself may be what failed
            log.warning("could not tell the user about the error")
