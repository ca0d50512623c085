"""``healthbook run``: long polling that waits for the Bot API at start-up and stops cleanly.

PTB's ``run_polling`` gives up at the first network error while it starts (a traceback, then
more at interpreter exit from the HTTP sessions it left open). A bot started before its network
(at boot, in a container) should come up by itself instead, so the first contact (``getMe``)
is retried here, one log line per attempt, with a back-off that doubles up to a bounded delay.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from urllib.parse import urlsplit

from telegram.error import InvalidToken, NetworkError

from bot.context import HBApplication
from bot.settings import Settings

log = logging.getLogger(__name__)

FIRST_DELAY = 1.0  # seconds before the second attempt
MAX_DELAY = 60.0  # the back-off never waits longer than this between attempts
# my_chat_member: the bot added to a group says there, once, to talk to it privately
ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member"]


class BadToken(Exception):
    """The Bot API refused the token (no retry can help)."""


async def connect(
    app: HBApplication,
    where: str,
    stop: asyncio.Event,
    *,
    first_delay: float = FIRST_DELAY,
    max_delay: float = MAX_DELAY,
) -> bool:
    """Initialise ``app`` (its first Bot API call), retrying network errors until it works
    (True) or ``stop`` is set (False). A refused token raises :class:`BadToken`."""
    delay = first_delay
    attempt = 1
    while True:
        trying = asyncio.ensure_future(app.initialize())
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


async def _close(app: HBApplication) -> None:
    """Free what a failed start opened: the HTTP sessions and the database pool."""
    await app.bot.shutdown()  # closes the sessions even when getMe never succeeded
    await app.shutdown()
    if app.post_shutdown is not None:
        await app.post_shutdown(app)


def serve(app: HBApplication, settings: Settings) -> int:
    """Connect (with retries), then poll until SIGINT or SIGTERM; the process's exit status."""
    where = urlsplit(settings.telegram.base_url).netloc or settings.telegram.base_url
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)  # run_polling below carries on in this same loop
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    status = 0
    try:
        connected = loop.run_until_complete(connect(app, where, stop))
    except BadToken:
        log.error("the Telegram Bot API at %s refused the bot token: check [telegram] token", where)
        connected, status = False, 2
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    if not connected:
        loop.run_until_complete(_close(app))
        loop.close()
        if status == 0:
            log.info("stopped before the bot could start")
        return status
    log.info("connected to the Telegram Bot API at %s; polling for updates", where)
    try:
        app.run_polling(allowed_updates=ALLOWED_UPDATES, timeout=settings.telegram.poll_timeout)
    except NetworkError as exc:  # lost again between getMe and the first poll; PTB shut down
        log.error("lost the Telegram Bot API at %s while starting: %s: %s", where,
                  type(exc).__name__, exc)
        return 1
    return 0
