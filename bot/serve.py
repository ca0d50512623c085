"""``healthbook run``: every channel that has a token, in one process, on one database.

Telegram polls as :mod:`bot.polling` describes. Zalo polls (``[zalo] mode = "polling"``) or
takes its webhook on the bot's own web server (``"webhook"``: ``setWebhook`` is called at
start with ``[http] public_url`` + ``/zalo/webhook`` and the secret); that server also serves
the pictures and files sent over Zalo whenever ``[http] public_url`` is set. The services
(database engine, translations, keyring) are built once and shared; the periodic jobs run in one
application only. SIGINT or SIGTERM stops everything: polling first, then what was queued is
handled, the inbox cleared, the connections closed.

The dispatcher (:mod:`bot.dispatch`, the outbox's reminders, offers and broadcasts) runs here,
one for every channel, once the applications have started (``[dispatch] in_bot``), and is the
first thing stopped; or alone, ``healthbook dispatch`` (:func:`dispatch_async`): the channels
of every configured token without polling.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from bot.app import build_application, build_services
from bot.channels.zalo import ZaloPoller, ZaloReceiver, build_zalo_application
from bot.channels.zalo_api import ZaloApi, ZaloError, ZaloNetworkError
from bot.context import HBApplication, Services
from bot.dispatch import Dispatcher
from bot.http import WEBHOOK_PATH, HttpServer, MediaStore
from bot.polling import SIGNALS, BadToken, Poller, retry_until, retrying
from bot.polling import stop_polling as stop_telegram
from bot.settings import Settings

log = logging.getLogger(__name__)

FIRST_DELAY = 1.0
MAX_DELAY = 60.0
_BAD_TOKEN = {401, 403, 404}  # what Zalo answers a wrong token with (404: no such bot)


class ZaloBadToken(Exception):
    """Zalo refused the token."""


def has_channel(settings: Settings) -> bool:
    """Whether any channel has a token."""
    return settings.telegram.token is not None or settings.zalo.token is not None


async def zalo_retrying(
    step: Callable[[], Awaitable[object]],
    stop: asyncio.Event,
    *,
    first_delay: float = FIRST_DELAY,
    max_delay: float = MAX_DELAY,
) -> bool:
    """:func:`retry_until` for a start-up step that calls Zalo: after each network or server
    error. A refused token raises :class:`ZaloBadToken`."""

    def transient(exc: Exception) -> str | None:
        if isinstance(exc, ZaloNetworkError):
            return f"cannot reach the Zalo Bot API: {exc.description}"
        if isinstance(exc, ZaloError):
            if exc.code in _BAD_TOKEN:
                raise ZaloBadToken from None
            return f"the Zalo Bot API answered error {exc.code}"
        return None

    return await retry_until(
        step, stop, transient, first_delay=first_delay, max_delay=max_delay
    )


class Served:
    """What one process serves: the applications, their pollers and the web server."""

    def __init__(self) -> None:
        self.telegram: HBApplication | None = None
        self.poller: Poller | None = None
        self.zalo: HBApplication | None = None
        self.zalo_poller: ZaloPoller | None = None
        self.http: HttpServer | None = None
        self.dispatcher: Dispatcher | None = None


def build(
    settings: Settings, services: Services | None = None, *, zalo_api: ZaloApi | None = None
) -> Served:
    """The applications of every channel with a token, over one set of services."""
    if services is None:
        services = build_services(settings)
    served = Served()
    if settings.dispatch.in_bot:
        served.dispatcher = Dispatcher(services)  # every channel, through services.channels
    if settings.telegram.token is not None:
        served.telegram = build_application(settings, services=services, jobs=True)
    if settings.zalo.token is not None or zalo_api is not None:
        http = settings.http
        media = None
        if http.public_url:
            media = MediaStore(http.public_url, ttl=http.media_minutes * 60)
        else:
            log.warning("[http] public_url is not set: pictures and files cannot be sent on Zalo")
        served.zalo = build_zalo_application(
            settings, services=services, api=zalo_api, media=media,
            jobs=served.telegram is None,
        )
        if media is not None or settings.zalo.mode == "webhook":
            served.http = HttpServer(http.host, http.port, media=media)
    return served


async def start(served: Served, settings: Settings, stop: asyncio.Event) -> int | None:
    """Connect every channel (with retries); None when all are up, else the exit status."""
    if served.telegram is not None:
        app = served.telegram
        where = urlsplit(settings.telegram.base_url).netloc or settings.telegram.base_url

        def lost(exc: Exception) -> None:
            log.warning("lost the Telegram Bot API at %s: %s (retrying)", where, exc)

        served.poller = Poller(app, timeout=settings.telegram.poll_timeout, on_lost=lost)
        try:
            if not await retrying(app.initialize, where, stop):
                return 0
            if app.post_init is not None:
                try:
                    await app.post_init(app)
                except Exception as exc:  # the command menu: set again at the next start
                    log.warning("could not set the bot's command menu: %s", type(exc).__name__)
            if not await retrying(served.poller.start, where, stop):
                return 0
        except BadToken:
            log.error("the Telegram Bot API at %s refused the bot token: check [telegram] token",
                      where)
            return 2
        await app.start()
        log.info("connected to the Telegram Bot API at %s; polling for updates", where)
    if served.zalo is not None:
        app = served.zalo
        api: ZaloApi = app.bot_data["zalo_api"]
        receiver: ZaloReceiver = app.bot_data["zalo_receiver"]
        try:
            if not await zalo_retrying(app.initialize, stop):
                return 0
            if settings.zalo.mode == "webhook":
                assert served.http is not None and settings.zalo.webhook_secret is not None
                await receiver.replay()
                served.http.accept = receiver.accept
                served.http.set_secret(settings.zalo.webhook_secret.get_secret_value())
                await served.http.start()
                url = f"{settings.http.public_url}{WEBHOOK_PATH}"
                secret = settings.zalo.webhook_secret.get_secret_value()
                if not await zalo_retrying(lambda: api.set_webhook(url, secret), stop):
                    return 0
                mode = f"webhook at {url}"
            else:
                if served.http is not None:
                    await served.http.start()
                served.zalo_poller = ZaloPoller(app, api, settings.zalo.poll_timeout,
                                                receiver=receiver)
                if not await zalo_retrying(served.zalo_poller.start, stop):
                    return 0
                mode = "polling for events"
        except ZaloBadToken:
            log.error("the Zalo Bot API refused the bot token: check [zalo] token")
            return 2
        await app.start()
        log.info("connected to the Zalo Bot API; %s", mode)
    if served.dispatcher is not None:
        await served.dispatcher.start()
        pace = settings.dispatch
        log.info("dispatcher %s runs in this process ([dispatch] in_bot): sending the outbox "
                 "at up to %g messages/s on Telegram, %g/s on Zalo", served.dispatcher.worker,
                 pace.telegram_rate, pace.zalo_rate)
    else:
        log.info("the dispatcher is off in this process ([dispatch] in_bot = false): run "
                 "`healthbook dispatch` to send reminders, offers and broadcasts")
    return None


async def shutdown(served: Served) -> None:
    """Stop sending the outbox, stop receiving, handle what was queued, clear the inbox, close
    everything."""
    if served.dispatcher is not None:
        await served.dispatcher.stop()
    if served.zalo_poller is not None:
        await served.zalo_poller.stop()
    if served.http is not None:
        await served.http.stop()
    if served.zalo is not None:
        app = served.zalo
        if app.running:
            await app.stop()
        await app.bot_data["zalo_receiver"].idle()
        await app.shutdown()
        if app.post_shutdown is not None:
            await app.post_shutdown(app)
    if served.telegram is not None:
        assert served.poller is not None
        await stop_telegram(served.telegram, served.poller)


async def serve_async(served: Served, settings: Settings, stop: asyncio.Event | None = None) -> int:
    """Serve until ``stop`` is set, or SIGINT or SIGTERM; the process's exit status."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        status = await start(served, settings, stop)
        if status is not None:
            log.info("stopped before the bot could start")
            return status
        await stop.wait()
        log.info("stopping")
        return 0
    finally:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)
        await shutdown(served)


def serve_all(settings: Settings) -> int:
    """``healthbook run``: build every channel with a token and serve them (raises
    ``ConfigError`` for unusable settings before anything starts)."""
    served = build(settings)
    return asyncio.run(serve_async(served, settings))


async def dispatch_async(
    settings: Settings, services: Services | None = None, stop: asyncio.Event | None = None
) -> int:
    """``healthbook dispatch``: the dispatcher alone, sending through the channel of every
    configured token (no polling: Telegram through a bare ``ExtBot``, Zalo through
    :class:`ZaloApi`), until ``stop`` is set, or SIGINT or SIGTERM; the exit status (2: a
    token refused). Pictures cannot go on Zalo from here (no web server to serve them)."""
    from telegram.ext import ExtBot

    from bot.channels.telegram import TelegramChannel
    from bot.channels.zalo import ZaloChannel
    from bot.polling import BadToken
    from bot.request import AiohttpRequest

    if services is None:
        services = build_services(settings)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    closers: list[Callable[[], Awaitable[object]]] = []
    dispatcher = Dispatcher(services)
    try:
        if settings.telegram.token is not None:
            bot: ExtBot[None] = ExtBot(
                settings.telegram.token.get_secret_value(),
                base_url=settings.telegram.base_url,
                base_file_url=settings.telegram.base_file_url,
                request=AiohttpRequest(connection_pool_size=64),
            )
            where = urlsplit(settings.telegram.base_url).netloc or settings.telegram.base_url
            try:
                if not await retrying(bot.initialize, where, stop):
                    return 0
            except BadToken:
                log.error("the Telegram Bot API at %s refused the bot token: check [telegram] "
                          "token", where)
                return 2
            closers.append(bot.shutdown)
            services.channels["telegram"] = TelegramChannel(bot)
        if settings.zalo.token is not None:
            api = ZaloApi(settings.zalo.token.get_secret_value(), settings.zalo.base_url)
            closers.append(api.close)
            try:
                if not await zalo_retrying(api.get_me, stop):
                    return 0
            except ZaloBadToken:
                log.error("the Zalo Bot API refused the bot token: check [zalo] token")
                return 2
            services.channels["zalo"] = ZaloChannel(api, services)
        await dispatcher.start()
        log.info("dispatcher %s: sending the outbox on %s", dispatcher.worker,
                 ", ".join(services.channels) or "no channel")
        await stop.wait()
        log.info("stopping")
        return 0
    finally:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)
        await dispatcher.stop()
        for close in reversed(closers):
            try:
                await close()
            except Exception as exc:  # closing what may never have opened
                log.debug("closing: %s", type(exc).__name__)
        await services.sessions.kw["bind"].dispose()


__all__ = [
    "Served",
    "build",
    "dispatch_async",
    "has_channel",
    "serve_all",
    "serve_async",
    "shutdown",
    "start",
]
