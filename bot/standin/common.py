"""What both stand-ins (Telegram and Zalo) and their chat drivers share."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")


class StandInTimeoutError(AssertionError):
    """The bot did not make the expected calls within the timeout."""


@dataclass
class Call:
    """One recorded Bot API call made by the bot."""

    method: str
    params: dict[str, Any]
    result: Any
    time: float
    seq: int = 0
    chat_id: int | str | None = None
    ok: bool = True
    error: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly form used by the HTTP control API."""
        return {
            "seq": self.seq,
            "method": self.method,
            "params": self.params,
            "result": self.result,
            "ok": self.ok,
            "error": self.error,
            "chat_id": self.chat_id,
            "time": self.time,
        }


async def wait_event(ev: asyncio.Event, seconds: float) -> None:
    """Wait for ``ev`` at most ``seconds`` (no error on timeout)."""
    if seconds <= 0:
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await ev.wait()


def _json_default(obj: Any) -> Any:
    to_json = getattr(obj, "to_json", None)
    if callable(to_json):
        return to_json()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, bytes):
        return f"<{len(obj)} bytes>"
    return str(obj)


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON response (UTF-8, non-ASCII kept; objects with ``to_json`` serialised by it)."""
    body = json.dumps(data, ensure_ascii=False, default=_json_default).encode("utf-8")
    return web.Response(body=body, status=status, content_type="application/json")


def choose(
    wanted: str,
    options: Sequence[T],
    label: Callable[[T], str],
    key: Callable[[T], str | None] = lambda _: None,
    *,
    describe: Callable[[T], str] | None = None,
) -> T:
    """The option a person means by ``wanted``, as a tester would press it.

    An exact label wins, then an exact key (callback data, a number), then the only label that
    contains ``wanted`` ignoring case. No match or an ambiguous one fails the test.
    """
    folded = wanted.casefold()
    chosen = (
        [o for o in options if label(o) == wanted]
        or [o for o in options if key(o) is not None and key(o) == wanted]
        or [o for o in options if folded in label(o).casefold()]
    )
    if not chosen:
        shown = ", ".join((describe or (lambda o: repr(label(o))))(o) for o in options)
        raise AssertionError(f"no button matches {wanted!r}; available: {shown or 'none'}")
    if len(chosen) > 1 and label(chosen[0]) != wanted:
        raise AssertionError(
            f"{wanted!r} matches several buttons: {', '.join(repr(label(o)) for o in chosen)}"
        )
    return chosen[0]


class ChatLog:
    """The calls a stand-in recorded for one chat, and a way to wait for more of them."""

    __slots__ = ("calls", "event", "last_activity")

    def __init__(self, max_calls: int | None) -> None:
        self.calls: deque[Call] = deque(maxlen=max_calls)
        self.event = asyncio.Event()
        self.last_activity = 0.0

    def add(self, call: Call) -> None:
        """Record ``call`` and wake whoever waits on this chat."""
        self.calls.append(call)
        self.last_activity = asyncio.get_running_loop().time()
        self.notify()

    def calls_after(self, seq: int) -> list[Call]:
        """The kept calls with ``seq`` greater than ``seq``, oldest first."""
        out: list[Call] = []
        for call in reversed(self.calls):
            if call.seq <= seq:
                break
            out.append(call)
        out.reverse()
        return out

    def notify(self) -> None:
        """Wake every waiter."""
        ev, self.event = self.event, asyncio.Event()
        ev.set()

    async def wait(
        self,
        after_seq: int,
        timeout: float,  # noqa: ASYNC109
        settle: float,
        require: Callable[[Call], bool],
        closing: Callable[[], bool],
    ) -> list[Call]:
        """Wait for a call after ``after_seq`` matching ``require``, then ``settle`` s of quiet."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not any(require(c) for c in self.calls_after(after_seq)):
            remaining = deadline - loop.time()
            if remaining <= 0 or closing():
                return self.calls_after(after_seq)
            await wait_event(self.event, remaining)
        while settle > 0 and not closing():
            quiet_for = loop.time() - self.last_activity
            if quiet_for >= settle:
                break
            await wait_event(self.event, settle - quiet_for)
        return self.calls_after(after_seq)
