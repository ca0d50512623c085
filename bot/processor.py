"""Update processing: many people at once, each person's updates strictly in order, and one
person's burst slowing only that person.

PTB's processor takes a global concurrency slot *before* handing an update over; waiting for the
person's turn inside that slot would let one person's forty queued taps fill every slot while
everybody else waits. Here the slot is taken only once it is the person's turn, and a person's
queue is capped: what comes beyond the cap is dropped, with one polite word per burst.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

log = logging.getLogger(__name__)

MAX_PENDING_PER_PERSON = 20
# Called for an update dropped from a burst: ``first`` asks to say something (until something
# was said in this burst), otherwise a pressed button only needs its spinner stopped. Returns
# whether the person was told (nothing is said in a group, say).
Overflow = Callable[[Update, bool], Awaitable[bool]]
# Called once an update is done with, however it ended: handled, its handler raised, or dropped
# over the cap (bot/polling.py confirms to Telegram only the updates done with).
Done = Callable[[object], None]


@dataclass
class _Person:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    pending: int = 0  # updates of this person waiting or being handled
    logged: bool = False  # this burst is in the log
    warned: bool = False  # told to slow down during this burst
    telling: bool = False  # being told right now (the next drops need not say it again)


class PerUserUpdateProcessor(BaseUpdateProcessor):
    """Concurrent across people, sequential per person (a double tap is handled after the
    first), at most ``max_pending`` updates queued per person."""

    def __init__(
        self,
        max_concurrent_updates: int,
        *,
        max_pending: int = MAX_PENDING_PER_PERSON,
        on_overflow: Overflow | None = None,
        on_done: Done | None = None,
    ) -> None:
        super().__init__(max_concurrent_updates)
        self.max_pending = max_pending
        self.on_overflow = on_overflow
        self.on_done = on_done
        self._people: dict[int, _Person] = {}
        self._held = 0  # updates in our hands, waiting for their turn or being handled

    @property
    def current_concurrent_updates(self) -> int:
        """Updates taken and not yet done, those waiting for their person's turn included (so
        that "nothing under way" means what it says)."""
        return self._held

    async def process_update(  # type: ignore[misc]  # PTB marks it final; see the module doc
        self, update: object, coroutine: Awaitable[Any]
    ) -> None:
        """Wait for the person's turn, then for a global slot, then handle the update."""
        self._held += 1
        try:
            key = _user_key(update)
            if key is None:
                await super().process_update(update, coroutine)
                return
            person = self._people.get(key)
            if person is None:
                person = self._people[key] = _Person()
            if person.pending >= self.max_pending:
                await self._overflow(update, person, coroutine)
                return
            person.pending += 1
            try:
                async with person.lock:
                    await super().process_update(update, coroutine)  # the slot, only now
            finally:
                person.pending -= 1
                if person.pending == 0:
                    del self._people[key]  # memory stays flat however many people came and went
        finally:
            self._held -= 1
            if self.on_done is not None:
                self.on_done(update)

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        """Handle the update (the person's turn and a slot are already held)."""
        await coroutine

    async def _overflow(self, update: object, person: _Person, coroutine: Awaitable[Any]) -> None:
        if inspect.iscoroutine(coroutine):
            coroutine.close()  # never started: nothing to undo
        if not person.logged:
            person.logged = True
            log.warning("a burst of updates from one person: the excess is dropped")
        if self.on_overflow is None or not isinstance(update, Update):
            return
        first = not (person.warned or person.telling)
        person.telling = person.telling or first
        told = False
        try:
            told = await self.on_overflow(update, first)
        except Exception as exc:  # telling them is a courtesy: never fail over it
            log.warning("could not answer a dropped update: %s", type(exc).__name__)
        finally:
            if first:
                person.telling = False
                person.warned = told

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to free."""


def _user_key(update: object) -> int | None:
    if isinstance(update, Update):
        if update.effective_user is not None:
            return update.effective_user.id
        if update.effective_chat is not None:
            return update.effective_chat.id
    return None
