"""``healthbook run``: long polling that waits for the Bot API at start-up, confirms to Telegram
only the updates that were handled, and stops cleanly.

PTB's ``run_polling`` gives up at the first network error while it starts (a traceback, then
more at interpreter exit from the HTTP sessions it left open), and logs a traceback for each
failed poll later on. A bot started before its network (at boot, in a container) should come up
by itself instead: the start-up calls (``getMe``, then deleting any webhook) are retried here
with a back-off that doubles up to :data:`MAX_DELAY`, and every failure, then or later, is one
log line.

PTB's Updater also confirms each batch to Telegram with its very next poll, sent right after
queueing the batch: a ``kill -9`` while a turn is under way loses that update (Telegram has
forgotten it; the person's answer is gone and they get no reply). :class:`Poller` confirms only
up to the oldest update still being handled (the low-water mark): after a crash Telegram
delivers again everything from there on, and ``handled_updates`` (handlers/common.py ``turn``)
makes sure what was already applied is not applied twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from telegram import Update
from telegram._utils.types import JSONDict
from telegram.error import InvalidToken, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.request import BaseRequest

from bot.context import HBApplication
from bot.processor import PerUserUpdateProcessor
from bot.request import AiohttpRequest

log = logging.getLogger(__name__)

FIRST_DELAY = 1.0  # seconds before the second attempt
MAX_DELAY = 60.0  # the back-off never waits longer than this between attempts
# my_chat_member: the bot added to a group says there, once, to talk to it privately
ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member"]
SIGNALS = (signal.SIGINT, signal.SIGTERM)
LOST_MAX_DELAY = 30.0  # a failed poll is retried after 1 s, then up to this long
BUSY_WAIT = 0.5  # a poll gave back only updates under way: poll again after one ends, or this
# While an update is unconfirmed Telegram answers a poll at once, with every update from the
# oldest one under way on (parsed each time): polls are then this far apart at least (seconds).
BUSY_INTERVAL = 0.025


class BadToken(Exception):
    """The Bot API refused the token (no retry can help)."""


async def retry_until(
    step: Callable[[], Awaitable[object]],
    stop: asyncio.Event,
    transient: Callable[[Exception], str | None],
    *,
    first_delay: float = FIRST_DELAY,
    max_delay: float = MAX_DELAY,
) -> bool:
    """Run a start-up ``step`` again after each transient error, waiting 1, 2, 4 … up to
    ``max_delay`` seconds, until it works (True) or ``stop`` is set (False). ``transient``
    says what went wrong in words for the log (no token, no personal data), returns None for
    an error no retry can help (it is raised), or raises the error to give instead."""
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
        except Exception as exc:
            what = transient(exc)
            if what is None:
                raise
            log.warning("%s (attempt %d, next in %g s)", what, attempt, delay)
        try:
            await asyncio.wait_for(stop.wait(), delay)
            return False
        except TimeoutError:
            pass
        delay = min(delay * 2, max_delay)
        attempt += 1


async def retrying(
    step: Callable[[], Awaitable[object]],
    where: str,
    stop: asyncio.Event,
    *,
    first_delay: float = FIRST_DELAY,
    max_delay: float = MAX_DELAY,
) -> bool:
    """:func:`retry_until` for a step that calls the Telegram Bot API: after each network
    error. A refused token raises :class:`BadToken`."""

    def transient(exc: Exception) -> str | None:
        if isinstance(exc, InvalidToken):
            raise BadToken from None  # PTB's message quotes the token: never print it
        if isinstance(exc, NetworkError):  # TimedOut included
            return f"cannot reach the Telegram Bot API at {where}: {exc}"
        return None

    return await retry_until(
        step, stop, transient, first_delay=first_delay, max_delay=max_delay
    )


class UpdatesRequest(AiohttpRequest):
    """The transport of ``getUpdates`` (and nothing else): it leaves out of each answer the
    updates below :attr:`skip_below`, before python-telegram-bot turns them into objects.

    While an update is being handled, Telegram gives it again at each poll, with every later
    one: each poll would otherwise cost parsing every update under way (a tenth of a
    millisecond each), over and over, for nothing."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.skip_below = 0
        self.skipped = 0  # left out of the last answer

    def parse_json_payload(self, payload: bytes) -> JSONDict:  # type: ignore[override]
        """The answer, minus the updates known already."""
        data = BaseRequest.parse_json_payload(payload)
        result = data.get("result")
        if isinstance(result, list):
            fresh = [
                u for u in result
                if not isinstance(u, dict) or int(u.get("update_id", 0)) >= self.skip_below
            ]
            self.skipped = len(result) - len(fresh)
            data["result"] = fresh
        return data


class Poller:
    """Long polling into ``app.update_queue`` that confirms to Telegram only what was handled.

    Each poll sends as its offset the lowest id of the updates still being handled (the
    low-water mark), or the id after the last one fetched when none is: Telegram forgets only
    the updates below it, and gives the rest again, oldest first. Those fetched before are
    skipped (they are queued or under way). The update processor reports each update it is done
    with, however that ended (:attr:`bot.processor.PerUserUpdateProcessor.on_done`).

    Telegram answers at once while an update is unconfirmed, so there is no long poll then:
    when a poll brings nothing new, the next one waits until an update is done, or
    :data:`BUSY_WAIT`."""

    def __init__(
        self,
        app: HBApplication,
        *,
        timeout: float,
        allowed_updates: Sequence[str] = ALLOWED_UPDATES,
        on_lost: Callable[[TelegramError], None] | None = None,
        busy_wait: float = BUSY_WAIT,
        busy_interval: float = BUSY_INTERVAL,
        max_delay: float = LOST_MAX_DELAY,
    ) -> None:
        processor = app.update_processor
        if not isinstance(processor, PerUserUpdateProcessor):
            raise TypeError("polling needs the PerUserUpdateProcessor: it says what was handled")
        processor.on_done = self._done_with
        self.app = app
        self.timeout = dt.timedelta(seconds=timeout)
        self.allowed_updates = list(allowed_updates)
        self.on_lost = on_lost
        self.busy_wait = busy_wait
        self.busy_interval = busy_interval
        self.max_delay = max_delay
        request = app.bot_data.get("updates_request")
        self._request = request if isinstance(request, UpdatesRequest) else None
        self._next = 0  # the id after the last update fetched (0: none fetched yet)
        self._under_way: set[int] = set()
        self._progress = asyncio.Event()  # set when an update is done with
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def offset(self) -> int:
        """The low-water mark: every update below it was handled (Telegram may forget it)."""
        return min(self._under_way) if self._under_way else self._next

    @property
    def under_way(self) -> int:
        """How many updates were fetched and are not done with yet."""
        return len(self._under_way)

    @property
    def running(self) -> bool:
        """Whether the polling task is on."""
        return self._task is not None and not self._task.done()

    def _done_with(self, update: object) -> None:
        if isinstance(update, Update):
            self._under_way.discard(update.update_id)
            self._progress.set()

    async def start(self) -> None:
        """Delete any webhook (``getUpdates`` is refused while one is set), then poll in the
        background. Raises what deleting the webhook raised (a network error, a refused token),
        for :func:`retrying`."""
        await self.app.bot.delete_webhook()
        self._stopping = False
        self._task = asyncio.create_task(self._poll_loop(), name="healthbook:polling")

    async def stop(self) -> None:
        """Stop polling (a poll on its way is abandoned); what was fetched stays queued."""
        self._stopping = True
        task, self._task = self._task, None
        while task is not None and not task.done():  # again, should a library eat the cancel
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)

    async def confirm(self) -> None:
        """Tell Telegram what was handled: one last poll with the low-water mark, not waiting.
        Call it once the application has stopped (it handles the queued updates first); what is
        not done with then comes again at the next start."""
        if self._next == 0:
            return
        try:
            await self._get_updates(dt.timedelta(0))
        except TelegramError as exc:
            log.warning("could not confirm the handled updates to the Bot API: %s", exc)
        if self._under_way:
            log.info("%d updates were not handled: Telegram gives them again at the next start",
                     len(self._under_way))

    async def _get_updates(self, wait: dt.timedelta) -> tuple[Update, ...]:
        if self._request is not None:
            self._request.skip_below = self._next
            self._request.skipped = 0
        return await self.app.bot.get_updates(
            offset=self.offset, timeout=wait, allowed_updates=self.allowed_updates
        )

    async def _poll_loop(self) -> None:
        loop = asyncio.get_running_loop()
        delay = 0.0
        while not self._stopping:
            self._progress.clear()  # before the poll: an update done during it counts
            started = loop.time()
            try:
                updates = await self._get_updates(self.timeout)
            except TimedOut:  # the long poll's connection went quiet: poll again at once
                log.debug("a poll timed out")
                continue
            except RetryAfter as exc:  # (its public retry_after warns without PTB_TIMEDELTA)
                wait = _seconds(getattr(exc, "_retry_after", 1.0)) + 0.5
                log.warning("the Bot API asks to wait %g s before polling again", wait)
                await asyncio.sleep(wait)
                continue
            except TelegramError as exc:  # a refused token too: it may be given back
                delay = 1.0 if delay == 0 else min(self.max_delay, delay * 1.5)
                if isinstance(exc, InvalidToken):  # PTB's message quotes the token: never log it
                    log.error("the Bot API refused the bot token while polling (retrying)")
                elif self.on_lost is not None:
                    self.on_lost(exc)
                await asyncio.sleep(delay)
                continue
            except Exception as exc:  # what came back could not be read: try again
                delay = 1.0 if delay == 0 else min(self.max_delay, delay * 1.5)
                log.error("could not read the updates from the Bot API: %s", type(exc).__name__)
                await asyncio.sleep(delay)
                continue
            delay = 0.0
            known = self._request.skipped if self._request is not None else 0
            fresh = [u for u in updates if u.update_id >= self._next]
            known += len(updates) - len(fresh)
            for update in fresh:
                self._under_way.add(update.update_id)
                self.app.update_queue.put_nowait(update)
            if fresh:
                self._next = max(u.update_id for u in fresh) + 1
            elif known:  # only updates under way came back: wait for one to be done
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.busy_wait):  # (wait_for may eat a cancel)
                        await self._progress.wait()
            if self.offset < self._next or not updates:  # answered at once: pace the polls
                rest = self.busy_interval - (loop.time() - started)
                if rest > 0:
                    await asyncio.sleep(rest)


def _seconds(value: float | dt.timedelta) -> float:
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


async def stop_polling(app: HBApplication, poller: Poller) -> None:
    """Stop polling, handle what was fetched, confirm it, and free everything: the HTTP
    sessions (even when ``getMe`` never worked), the conversations' last state, the database
    pool."""
    await poller.stop()
    if app.running:
        await app.stop()
        if app.post_stop is not None:
            await app.post_stop(app)
    await poller.confirm()
    await app.shutdown()  # returns at once when the start never got that far
    await app.bot.shutdown()
    if app.post_shutdown is not None:
        await app.post_shutdown(app)
