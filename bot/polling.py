"""``healthbook run``: long polling that waits for the Bot API at start-up and stops cleanly.

PTB's ``run_polling`` gives up at the first network error while it starts (a traceback, then
more at interpreter exit from the HTTP sessions it left open), and logs a traceback for each
failed poll later on. A bot started before its network (at boot, in a container) should come up
by itself instead: the start-up calls (``getMe``, then the first poll) are retried here with a
back-off that doubles up to :data:`MAX_DELAY`, and every failure, then or later, is one log line.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from telegram.error import InvalidToken, NetworkError, TelegramError

from bot.context import HBApplication
from bot.settings import Settings

log = logging.getLogger(__name__)

FIRST_DELAY = 1.0  # seconds before the second attempt
MAX_DELAY = 60.0  # the back-off never waits longer than this between attempts
# my_chat_member: the bot added to a group says there, once, to talk to it privately
ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member"]
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class BadToken(Exception):
    """The Bot API refused the token (no retry can help)."""


async def retrying(
    step: Callable[[], Awaitable[object]],
    where: str,
    stop: asyncio.Event,
    *,
    first_delay: float = FIRST_DELAY,
    max_delay: float = MAX_DELAY,
) -> bool:
    """Run a start-up ``step`` that calls the Bot API, again after each network error, until it
    works (True) or ``stop`` is set (False). A refused token raises :class:`BadToken`."""
    delay = first_delay
    attempt = 1
    while True:
        trying = asyncio.ensure_future(step())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait((trying, stopping), return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not trying.done():  # stopped while a request was on its way
            trying.cancel()
            await asyncio.gather(trying, return_exceptions=True)
            return False
        try:
            trying.result()
            return True
        except InvalidToken:
            raise BadToken from None  # PTB's message quotes the token: never print it
        except NetworkError as exc:  # TimedOut included
            log.warning(
                "cannot reach the Telegram Bot API at %s: %s (attempt %d, next in %g s)",
                where, exc, attempt, delay,
            )
        try:
            await asyncio.wait_for(stop.wait(), delay)
            return False
        except TimeoutError:
            pass
        delay = min(delay * 2, max_delay)
        attempt += 1


async def _stop(app: HBApplication) -> None:
    """Stop polling and free everything: the HTTP sessions (even when ``getMe`` never worked),
    the conversations' last state, the database pool."""
    if app.updater is not None and app.updater.running:
        await app.updater.stop()
    if app.running:
        await app.stop()
        if app.post_stop is not None:
            await app.post_stop(app)
    await app.shutdown()  # returns at once when the start never got that far
    await app.bot.shutdown()
    if app.post_shutdown is not None:
        await app.post_shutdown(app)


async def _serve(app: HBApplication, settings: Settings, where: str) -> int:
    updater = app.updater
    assert updater is not None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in SIGNALS:
        loop.add_signal_handler(sig, stop.set)

    def lost(exc: TelegramError) -> None:  # PTB polls again, waiting up to 30 s
        log.warning("lost the Telegram Bot API at %s: %s (retrying)", where, exc)

    def start_polling() -> Awaitable[object]:  # its first call deletes any webhook
        return updater.start_polling(
            allowed_updates=ALLOWED_UPDATES,
            timeout=settings.telegram.poll_timeout,
            error_callback=lost,
        )

    try:
        try:
            if not await retrying(app.initialize, where, stop):  # getMe
                log.info("stopped before the bot could start")
                return 0
            if app.post_init is not None:
                try:
                    await app.post_init(app)
                except NetworkError as exc:  # the command menu: set again at the next start
                    log.warning("could not set the bot's command menu: %s", exc)
            if not await retrying(start_polling, where, stop):
                log.info("stopped before the bot could start")
                return 0
        except BadToken:
            log.error("the Telegram Bot API at %s refused the bot token: check [telegram] token",
                      where)
            return 2
        await app.start()
        log.info("connected to the Telegram Bot API at %s; polling for updates", where)
        await stop.wait()
        log.info("stopping")
        return 0
    finally:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)
        await _stop(app)


def serve(app: HBApplication, settings: Settings) -> int:
    """Connect (with retries), then poll until SIGINT or SIGTERM; the process's exit status.
    What PTB's ``run_polling`` does, with the retries, and one line per failed poll where it
    logs a traceback each time."""
    where = urlsplit(settings.telegram.base_url).netloc or settings.telegram.base_url
    return asyncio.run(_serve(app, settings, where))
