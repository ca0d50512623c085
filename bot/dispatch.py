"""The dispatcher: sends the outbox's due messages (:mod:`models.outbox`) through each
recipient's channel, at each messenger's pace.

One :class:`Dispatcher` per process (``healthbook run`` starts one when ``[dispatch] in_bot``;
``healthbook dispatch`` runs one alone). It loops:

1. **Claim** a batch (``batch_size``) of due messages, oldest due first, in one transaction:
   each is marked claimed, rendered (:func:`handlers.notices.render`: the text in the
   recipient's language, to the messenger they use now; None drops it, *cancelled*), and the
   choices it offers are written (:func:`handlers.common.offer_notices`) so that a typed number
   answers it. The next batch is claimed while this one is still being sent, so the messenger
   never waits for the database; at most two batches are held in memory, whatever is due.
2. **Send** each through ``services.channels[name].send(chat_id, reply, retry=False)``: at most
   ``telegram_rate`` / ``zalo_rate`` messages a second per channel, one message per
   ``per_chat_seconds`` per chat. A 429 pauses that channel for its ``retry_after`` and the
   message waits its turn again (not an attempt). Network errors and 5xx: tried again after
   ``retry_minutes``, doubling, until ``max_attempts`` tries, then failed with the reason. A
   blocked bot (Telegram 403) marks the account unreachable (``accounts.unreachable_at``) and
   the message failed, ``blocked``: nothing more is sent there until the person writes.
3. **Mark** what happened, in small commits (every few hundredths of a second). A message
   counts as unsettled from the moment its send starts until its outcome is committed, and at
   most ``batch_size`` are unsettled at a time: a crash (kill -9) can send again at most that
   many messages, when their claims time out (``claim_timeout_seconds``) and another pass
   takes them. Nothing is lost: a claim is committed before the send.

PostgreSQL: any number of dispatchers (``FOR UPDATE SKIP LOCKED``). SQLite: one dispatcher
(a second one is warned about at start).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import secrets
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.channels import BLOCKED, RATE_LIMITED, REFUSED, TRANSIENT, DeliveryError
from bot.channels.base import Choice, Offer, Reply, choices_of
from bot.context import Services
from handlers.common import offer_notices
from handlers.notices import after_pass, render
from models import outbox
from models.addresses import Address
from models.tables import Account, OutboxMessage
from models.timeutil import to_utc

log = logging.getLogger(__name__)

#: a channel's pace is a sliding window, as messengers count (Telegram: about 30 messages in
#: any second): at most ``rate`` sends start in any window of a second, so sends the event loop
#: was too busy to start on time are caught up at once; but never faster than this many times
#: the rate, so that a catch-up is not a burst the messenger would refuse
CATCH_UP = 1.5
#: after a 429 the channel also slows down a little (its own rate times this, down to
#: SLOWEST): the messenger counts arrivals, which network and CPU delays bunch up, so a rate
#: just under its limit can still go over it; every RECOVER seconds without a 429 it speeds up
#: again by a step, back to the configured rate
SLOWER = 0.97
SLOWEST = 0.8
RECOVER = 30.0
#: outcomes are committed at least this often while messages go out (seconds)
FLUSH_EVERY = 0.05
#: the code left in a chat's offer in place of a choice whose message did not go out (answered
#: as a stale button)
WITHDRAWN = "gone"
#: how long a channel waits after a 429 that names no wait (seconds)
DEFAULT_PAUSE = 1.0


@dataclass
class Sent:
    """What a dispatcher did (a pass of :func:`drain`, or so far)."""

    sent: int = 0
    failed: int = 0
    dropped: int = 0
    retried: int = 0  # network errors and 5xx: planned again later
    throttled: int = 0  # 429s received
    claimed: int = 0


@dataclass(eq=False)
class _Item:
    """One claimed message on its way."""

    id: int
    to: Address
    reply: Reply
    attempts: int
    broadcast_id: int | None
    claimed: float  # loop time of the claim


#: why a message whose slow part (Reply.prepare) failed was not sent (its ``error``)
RENDER_ERROR = "render error"


class _RenderFailed(Exception):
    """A renderer raised while a batch was rendered without savepoints."""


@dataclass
class _Outcome:
    item: _Item
    reason: str | None  # None: sent
    description: str = ""


class _Pace:
    """A channel's pace: at most ``rate`` sends started in any window of one second (of
    ``1/rate`` seconds when the rate is below one a second), at most :data:`CATCH_UP` times
    the rate at any moment, nothing while paused after a 429, and a little slower for a while
    after one (:data:`SLOWER`)."""

    def __init__(self, rate: float) -> None:
        self.window = max(1.0, 1.0 / rate)
        self.capacity = max(1, int(rate * self.window))
        self.gap = 1.0 / (rate * CATCH_UP)
        self.starts: deque[float] = deque(maxlen=self.capacity)
        self.paused_until = 0.0
        self.factor = 1.0  # share of the rate used now
        self.changed = 0.0  # loop time of the last slow-down or recovery step

    def ready_at(self) -> float:
        """Loop time from which the next send may start."""
        ready = self.paused_until
        if self.starts:
            ready = max(ready, self.starts[-1] + self.gap / self.factor)
            allowed = max(1, int(self.capacity * self.factor))
            if len(self.starts) >= allowed:
                ready = max(ready, self.starts[-allowed] + self.window)
        return ready

    def take(self, now: float) -> None:
        """A send starts now."""
        self.starts.append(now)
        if self.factor < 1.0 and now - self.changed >= RECOVER:
            self.factor = min(1.0, self.factor + (1.0 - SLOWER))
            self.changed = now

    def pause(self, now: float, seconds: float) -> None:
        """Send nothing for ``seconds``, then a little slower (a 429; the 429s of sends that
        were on their way with it slow it down once)."""
        if now >= self.paused_until:
            self.factor = max(SLOWEST, self.factor * SLOWER)
            self.changed = now
        self.paused_until = max(self.paused_until, now + seconds)


@dataclass
class _Lane:
    """One channel's queue of claimed messages and its pace."""

    name: str
    pace: _Pace
    queue: deque[_Item] = field(default_factory=deque)
    chat_free: dict[str, float] = field(default_factory=dict)  # chat → loop time it may get one
    blocked: set[str] = field(default_factory=set)  # chats that blocked the bot in this run
    sending: set[str] = field(default_factory=set)  # chats with a send under way
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


def worker_name() -> str:
    """Who claims (``outbox.claimed_by``): host, process and a random tag (40 characters at
    most)."""
    host = socket.gethostname()[:20]
    return f"{host}:{os.getpid()}:{secrets.token_hex(3)}"[:40]


class Dispatcher:
    """The loop that claims, sends and marks the outbox's due messages (module docstring)."""

    def __init__(
        self,
        services: Services,
        *,
        worker: str | None = None,
        pace: bool = True,
        loop_clock: Callable[[], float] | None = None,
    ) -> None:
        self.services = services
        self.settings = services.settings.dispatch
        self.worker = worker or worker_name()
        self.pace = pace  # False (drain): no rate, no per-chat spacing
        self.stats = Sent()
        self._loop_clock = loop_clock
        self._lanes: dict[str, _Lane] = {}
        self._outcomes: list[_Outcome] = []
        self._releases: list[_Item] = []
        self._unsettled = asyncio.Semaphore(self.settings.batch_size)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()  # the database loop: outcomes to write, room to claim
        self._stop = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._broadcasts: set[int] = set()
        self._last_hook = 0.0
        self._claim_again_at = 0.0  # after an empty claim: not before the next poll

    # ---------------------------------------------------------------- running

    def _now(self) -> float:
        return self._loop_clock() if self._loop_clock else asyncio.get_running_loop().time()

    async def start(self) -> None:
        """Start the loop as a task (:meth:`stop` ends it)."""
        if self._task is None:
            await self._warn_if_not_alone()
            self._stop.clear()
            self._task = asyncio.create_task(self.run(), name="healthbook:dispatcher")

    async def stop(self) -> None:
        """Stop claiming, let the sends under way finish and be marked, give back what was
        claimed and not sent."""
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            task, self._task = self._task, None
            await task

    @property
    def running(self) -> bool:
        """Whether the loop runs."""
        return self._task is not None and not self._task.done()

    async def run(self) -> None:
        """Claim, send and mark until :meth:`stop` (or, with ``until_idle``, nothing is due)."""
        await self._loop(until_idle=False)

    async def pass_now(self) -> Sent:
        """Send everything due now, then return (what :func:`drain` does)."""
        await self._loop(until_idle=True)
        return self.stats

    async def wait_idle(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Until the running loop has nothing due left (after waking it to look now)."""
        self._idle.clear()
        self._claim_again_at = 0.0
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._idle.wait()

    async def _loop(self, *, until_idle: bool) -> None:
        poll = self.settings.poll_seconds
        try:
            while not self._stop.is_set():
                self._wake.clear()
                did = False
                if self._outcomes or self._releases:
                    await self._flush()
                    did = True
                if self._room() and self._now() >= self._claim_again_at:
                    try:
                        claimed = await self._claim()
                    except Exception as exc:  # the database is away: look again next poll
                        log.warning("could not claim outbox messages: %s", type(exc).__name__)
                        claimed = 0
                    if claimed:
                        did = True
                    else:
                        self._claim_again_at = self._now() + poll
                busy = self._busy()
                if not busy and not did:
                    await self._hooks(force=True)
                    if until_idle and self._now() >= self._claim_again_at - poll:
                        return
                    self._idle.set()
                    await self._sleep(poll)
                    continue
                await self._hooks(force=False)
                if not did:
                    await self._sleep(FLUSH_EVERY)
        finally:
            await self._wind_down()

    def _room(self) -> bool:
        """Whether another batch may be claimed: less than a batch waits to be sent."""
        waiting = sum(len(lane.queue) for lane in self._lanes.values())
        return waiting < self.settings.batch_size and not self._stop.is_set()

    def _busy(self) -> bool:
        return bool(
            self._in_flight
            or self._outcomes
            or self._releases
            or any(lane.queue for lane in self._lanes.values())
        )

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _wind_down(self) -> None:
        """Stopping: no new sends; those under way finish; their outcomes are written and what
        waits is given back (pending again)."""
        for lane in self._lanes.values():
            if lane.task is not None:
                lane.task.cancel()
        for lane in self._lanes.values():
            if lane.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await lane.task
                lane.task = None
            self._releases.extend(lane.queue)
            lane.queue.clear()
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._flush()
        await self._hooks(force=True)

    async def _hooks(self, *, force: bool) -> None:
        """The after-batch hooks (a broadcast's progress), at most once a second while busy."""
        if not self._broadcasts:
            return
        now = self._now()
        if not force and now - self._last_hook < 1.0:
            return
        self._last_hook = now
        ids, self._broadcasts = self._broadcasts, set()
        await after_pass(self.services, ids)

    async def _warn_if_not_alone(self) -> None:
        """On SQLite one dispatcher runs: say so when claims of another look alive."""
        services = self.services
        if services.sessions.kw["bind"].dialect.name != "sqlite":
            return
        since = to_utc(services.clock()) - dt.timedelta(seconds=self.settings.claim_timeout_seconds)
        try:
            async with services.sessions() as session:
                others = await session.scalar(
                    select(func.count())
                    .select_from(OutboxMessage)
                    .where(
                        OutboxMessage.status == "claimed",
                        OutboxMessage.claimed_by != self.worker,
                        OutboxMessage.claimed_at > since,
                    )
                )
        except Exception as exc:  # no schema yet, say: the loop will say more
            log.debug("could not look for another dispatcher: %s", type(exc).__name__)
            return
        if others:
            log.warning(
                "%d outbox messages are claimed by another dispatcher: on SQLite run only one "
                "(healthbook run with [dispatch] in_bot, or healthbook dispatch)",
                others,
            )

    # ---------------------------------------------------------------- the database side

    async def _claim(self) -> int:
        """Claim and render a batch; how many messages it took. Rendered without savepoints
        (each costs two round trips); a renderer's error rolls the batch back, and the batch
        is claimed again with one savepoint per message, so that it costs its own message
        only."""
        try:
            return await self._claim_batch(savepoints=False)
        except _RenderFailed:
            return await self._claim_batch(savepoints=True)

    async def _claim_batch(self, *, savepoints: bool) -> int:
        services = self.services
        settings = services.settings
        now = to_utc(services.clock())
        items: list[_Item] = []
        offered = []
        failed = dropped = 0
        async with services.sessions() as session, session.begin():
            messages = await outbox.claim(
                session,
                now,
                self.worker,
                self.settings.batch_size,
                quiet=settings.reminders.quiet,
                tz=services.tz,
                timeout=dt.timedelta(seconds=self.settings.claim_timeout_seconds),
            )
            for message in messages:
                if message.status != "claimed":  # to an unreachable account: failed
                    failed += 1
                    continue
                try:
                    async with (
                        session.begin_nested() if savepoints else contextlib.nullcontext()
                    ):
                        reply = await render(session, services, message)
                        if reply is not None:
                            assert reply.to is not None
                            offered += await offer_notices(session, services, reply.to, [reply])
                except Exception as exc:  # one renderer's bug costs its own message only
                    log.error("could not render outbox message %s (%s): %s", message.id,
                              message.kind, type(exc).__name__)
                    if not savepoints:
                        raise _RenderFailed from None
                    message.status, message.error = "failed", "render error"
                    failed += 1
                    continue
                if reply is None:
                    message.status, message.error = "cancelled", "no longer applies"
                    dropped += 1
                    continue
                assert reply.to is not None
                items.append(
                    _Item(message.id, reply.to, reply, message.attempts, message.broadcast_id,
                          self._now())
                )
        for written in offered:
            services.offers.written(*written)
        self.stats.failed += failed
        self.stats.dropped += dropped
        self.stats.claimed += len(items)
        for item in items:
            lane = self._lane(item.to.channel)
            lane.queue.append(item)
            lane.wake.set()
        return len(messages)

    async def _flush(self) -> None:
        """Write the outcomes gathered so far (one transaction), then free their places."""
        outcomes, self._outcomes = self._outcomes, []
        releases, self._releases = self._releases, []
        services = self.services
        now = to_utc(services.clock())
        settings = self.settings
        try:
            async with services.sessions() as session, session.begin():
                await outbox.mark_sent(
                    session, [o.item.id for o in outcomes if o.reason is None], now
                )
                for o in outcomes:
                    item = o.item
                    if o.reason is None:
                        continue
                    if o.reason == TRANSIENT:
                        tries = item.attempts + 1
                        if tries >= settings.max_attempts:
                            await outbox.mark_failed(session, item.id, o.description,
                                                     attempts=tries)
                        else:
                            wait = settings.retry_minutes * 2 ** (tries - 1)
                            await outbox.retry_later(
                                session, item.id, tries, now + dt.timedelta(minutes=wait),
                                o.description,
                            )
                        continue
                    if o.reason == BLOCKED:
                        await session.execute(
                            update(Account)
                            .where(
                                Account.channel == item.to.channel,
                                Account.external_id == item.to.chat_id,
                            )
                            .values(unreachable_at=now)
                            .execution_options(synchronize_session=False)
                        )
                    await outbox.mark_failed(session, item.id, o.reason)
                await outbox.release(session, [i.id for i in releases], self.worker)
                unsent = [o.item for o in outcomes if o.reason is not None] + releases
                withdrawn = await self._withdraw(session, unsent)
        except Exception as exc:
            # the database is away: keep them, try again (the sends stay unsettled meanwhile)
            log.warning("could not record sent outbox messages: %s", type(exc).__name__)
            self._outcomes = outcomes + self._outcomes
            self._releases = releases + self._releases
            await asyncio.sleep(1.0)
            return
        for written in withdrawn:
            services.offers.written(*written)
        for o in outcomes:
            self._unsettled.release()
            if o.item.broadcast_id is not None:
                self._broadcasts.add(o.item.broadcast_id)
            if o.reason is None:
                self.stats.sent += 1
            elif o.reason == TRANSIENT and o.item.attempts + 1 < settings.max_attempts:
                self.stats.retried += 1
            else:
                self.stats.failed += 1

    async def _withdraw(
        self, session: AsyncSession, items: list[_Item]
    ) -> list[tuple[str, str, Offer]]:
        """The choices of messages that did not go out (failed, tried again later, given
        back) were written to their chats' offers when claimed: take them back, so that a typed
        number never answers a choice the chat was not shown. Trailing ones are dropped; one
        followed by choices the chat did get keeps its number but answers as a stale button."""
        written: list[tuple[str, str, Offer]] = []
        offers = self.services.offers
        for item in items:
            codes = {code for _label, code in choices_of(item.reply) if code is not None}
            if not codes:
                continue
            where = (item.to.channel, item.to.chat_id)
            current = await offers.load(session, *where)
            choices = list(current.choices)
            while choices and choices[-1].code in codes:
                choices.pop()
            offer = Offer(tuple(
                Choice(c.number, c.label, WITHDRAWN) if c.code in codes else c for c in choices
            ))
            if offer != current and await offers.write(session, *where, offer):
                written.append((*where, offer))
        return written

    # ---------------------------------------------------------------- the messenger side

    def _lane(self, name: str) -> _Lane:
        lane = self._lanes.get(name)
        if lane is None:
            rate = getattr(self.settings, f"{name}_rate", self.settings.telegram_rate)
            lane = self._lanes[name] = _Lane(name, _Pace(rate if self.pace else 1e9))
        if lane.task is None or lane.task.done():
            lane.task = asyncio.create_task(self._send_loop(lane), name=f"healthbook:send:{name}")
        return lane

    async def _send_loop(self, lane: _Lane) -> None:
        """Start each waiting message's send when its channel and its chat may have one."""
        per_chat = self.settings.per_chat_seconds if self.pace else 0.0
        timeout = self.settings.claim_timeout_seconds * 0.8
        while True:
            if not lane.queue:
                lane.wake.clear()
                await lane.wake.wait()
                continue
            now = self._now()
            ready = lane.pace.ready_at()
            if ready > now:
                await asyncio.sleep(ready - now)
                continue
            picked, soonest = None, None
            for index, item in enumerate(lane.queue):
                if item.to.chat_id in lane.sending:  # one at a time per chat, in order
                    continue
                free = lane.chat_free.get(item.to.chat_id, 0.0)
                if free <= now:
                    picked = index
                    break
                soonest = free if soonest is None else min(soonest, free)
                if index >= 4 * self.settings.batch_size:
                    break
            if picked is None:  # every chat waiting has a send under way, or had one lately
                lane.wake.clear()
                wait = None if soonest is None else max(soonest - now, 0.001)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):  # a send ending wakes it too
                        await lane.wake.wait()
                continue
            item = lane.queue[picked]
            del lane.queue[picked]
            if now - item.claimed > timeout:  # claimed too long ago: another may take it
                self._releases.append(item)
                self._wake.set()
                continue
            if item.to.chat_id in lane.blocked:
                await self._unsettled.acquire()
                self._settle(_Outcome(item, outbox.UNREACHABLE))
                continue
            await self._unsettled.acquire()
            now = self._now()
            lane.pace.take(now)
            if per_chat:
                lane.chat_free[item.to.chat_id] = now + per_chat
                if len(lane.chat_free) > 8 * self.settings.batch_size:
                    lane.chat_free = {c: t for c, t in lane.chat_free.items() if t > now}
            lane.sending.add(item.to.chat_id)
            task = asyncio.create_task(self._send(lane, item))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _send(self, lane: _Lane, item: _Item) -> None:
        try:
            await self._send_one(lane, item)
        finally:
            lane.sending.discard(item.to.chat_id)
            lane.wake.set()

    async def _send_one(self, lane: _Lane, item: _Item) -> None:
        channel = self.services.channels.get(lane.name)
        try:
            if channel is None:
                raise DeliveryError(f"no {lane.name} channel here", TRANSIENT)
            if item.reply.prepare is not None:  # outside any transaction (see Reply.prepare)
                try:
                    await item.reply.prepare()
                except Exception as exc:  # a renderer's bug costs its own message only
                    log.error("could not render outbox message %s: %s", item.id,
                              type(exc).__name__)
                    self._settle(_Outcome(item, RENDER_ERROR, RENDER_ERROR))
                    return
                item.reply.prepare = None
            await channel.send(item.to.chat_id, item.reply, retry=False)
        except DeliveryError as exc:
            if exc.reason == RATE_LIMITED:
                wait = exc.retry_after if exc.retry_after is not None else DEFAULT_PAUSE
                lane.pace.pause(self._now(), wait)
                if self.stats.throttled == 0 or wait >= 5:
                    log.warning("%s asks to slow down: pausing %g s", lane.name, wait)
                self.stats.throttled += 1
                lane.queue.appendleft(item)  # not an attempt: its turn again after the pause
                lane.wake.set()
                self._unsettled.release()
                return
            if exc.reason == BLOCKED:
                lane.blocked.add(item.to.chat_id)
            reason = exc.reason if exc.reason in (BLOCKED, TRANSIENT) else REFUSED
            self._settle(_Outcome(item, reason, str(exc) or reason))
            return
        except Exception as exc:  # a bug in a channel: tried again later, like a network error
            log.error("sending outbox message %s failed: %s", item.id, type(exc).__name__)
            self._settle(_Outcome(item, TRANSIENT, type(exc).__name__))
            return
        self._settle(_Outcome(item, None))

    def _settle(self, outcome: _Outcome) -> None:
        self._outcomes.append(outcome)
        if len(self._outcomes) >= 64:  # else written within FLUSH_EVERY
            self._wake.set()


async def drain(services: Services, *, limit: int = 10_000) -> Sent:
    """Send every message due now, once, then return (a test's or a tool's single pass; no
    pacing: the running bot uses :class:`Dispatcher`). ``limit``: no longer used (the pass
    claims in batches of ``[dispatch] batch_size``)."""
    del limit
    dispatcher = Dispatcher(services, pace=False)
    return await dispatcher.pass_now()


__all__ = ["Dispatcher", "Sent", "drain", "worker_name"]
