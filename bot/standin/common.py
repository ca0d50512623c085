"""What both stand-ins (Telegram and Zalo) and their chat drivers share."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Self, TypeVar

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


def text_of(message: dict[str, Any]) -> str | None:
    """The text of a bot message, else its caption, else None."""
    text = message.get("text", message.get("caption"))
    return text if isinstance(text, str) else None


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


class ApiError(Exception):
    """An error answer of a messenger API: ``{"ok": false, "error_code", "description"}``."""

    def __init__(self, code: int, description: str, parameters: dict | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def answer(self) -> dict[str, Any]:
        """The JSON answer the API gives."""
        d: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            d["parameters"] = self.parameters
        return d


#: an injected failure that answers nothing: the connection is dropped (``fail_next`` code 0)
DROP = 0


class FloodControl:
    """The messenger's flood limit: at most ``limit`` messages in any second (a sliding window
    of the messages accepted); one more is refused (429) with the seconds until the window has
    room, rounded up as Telegram does."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.accepted: deque[float] = deque()
        self.refused = 0

    def admit(self, now: float) -> float | None:
        """None: accepted now; else the ``retry_after`` to answer."""
        window = self.accepted
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= self.limit:
            self.refused += 1
            return max(1.0, float(int(window[0] + 1.0 - now + 0.999)))
        window.append(now)
        return None


class StandInServer:
    """What both stand-ins are made of: an aiohttp server, the recorded calls, waiting for them.

    For the dispatcher's tests and benchmark, off unless asked: ``flood_limit`` (messages a
    second, answered 429 above it), per-chat blocking (``block_user``: 403), injected errors
    and dropped connections (``fail_next``), and ``count_received``: how many times each chat
    got each text (:meth:`duplicates`)."""

    #: the largest request body accepted
    max_body = 20 * 1024 * 1024
    #: the calls that put a message in a chat (flood control, counts)
    message_methods: frozenset[str] = frozenset()

    def __init__(
        self,
        host: str,
        port: int,
        *,
        keep_calls: bool,
        max_calls_per_chat: int | None,
        flood_limit: float | None = None,
        count_received: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.keep_calls = keep_calls
        self.max_calls_per_chat = max_calls_per_chat
        self.flood = FloodControl(flood_limit) if flood_limit else None
        self.count_received = count_received
        #: chat → text → how many times it was delivered (with ``count_received``)
        self.received: dict[Any, Counter[str]] = {}
        self._delivered = 0
        self._duplicates = 0
        self.calls: list[Call] = []
        self._chats: dict[Any, ChatLog] = {}
        self._seq = 0
        self._method_counts: Counter[str] = Counter()
        self._error_count = 0
        self._failures: dict[str, deque[ApiError]] = {}
        self._pollers_event = asyncio.Event()
        self._calls_event = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None

    # ---------------------------------------------------------------- to provide

    def _routes(self, app: web.Application) -> None:
        """Add the API's routes to ``app``."""
        raise NotImplementedError

    def _new_chat(self, key: Any) -> ChatLog:
        raise NotImplementedError

    def _key(self, chat_id: Any) -> Any:
        """The key of a chat id as given by a caller (None: no chat)."""
        return chat_id

    def _answered(self, call: Call) -> bool:
        """Whether ``call`` counts as the bot answering its chat."""
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        """Counters for a load driver."""
        raise NotImplementedError

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start serving on ``host``/``port`` (port 0 picks a free port)."""
        app = web.Application(client_max_size=self.max_body)
        self._routes(app)
        app.router.add_get("/_standin/stats", self._handle_stats)
        self._closing = False
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, shutdown_timeout=1.0)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Wake all waiters and shut the server down."""
        self._closing = True
        self._wake_pollers()
        self._wake_calls()
        for st in self._chats.values():
            st.notify()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """Root URL of the server, e.g. ``http://127.0.0.1:PORT``."""
        if not self.port:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What the bot is configured with to reach this API."""
        return self.url

    @property
    def seq(self) -> int:
        """Sequence number of the most recent recorded call (0 before any call)."""
        return self._seq

    async def serve_until_signalled(self, banner: Callable[[], str]) -> None:
        """Serve until SIGINT or SIGTERM: ``base_url`` on stdout (for a parent process to read),
        ``banner()`` on stderr (for people)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        async with self:
            print(self.base_url, flush=True)
            print(f"{banner()}; Ctrl+C to stop", file=sys.stderr, flush=True)
            await stop.wait()

    # ---------------------------------------------------------------- calls

    def chat_calls(self, chat_id: Any, after_seq: int = 0) -> list[Call]:
        """Calls attributed to a chat with ``seq > after_seq`` (the kept tail only)."""
        st = self._chats.get(self._key(chat_id))
        return st.calls_after(after_seq) if st else []

    async def wait_chat(
        self,
        chat_id: Any,
        *,
        after_seq: int,
        timeout: float = 10.0,  # noqa: ASYNC109
        settle: float = 0.0,
        require: Callable[[Call], bool] | None = None,
    ) -> list[Call]:
        """Wait for a call to a chat (``seq > after_seq``) matching ``require``, then for quiet.

        ``require`` defaults to "the bot answered". Returns every call to the chat after
        ``after_seq`` (an empty or non-matching list on timeout). ``settle`` is the quiet time
        the chat must have before returning.
        """
        key = self._key(chat_id)
        if key is None:
            raise ValueError("chat_id is required")
        return await self._chat(key).wait(
            after_seq, timeout, settle, require or self._answered, lambda: self._closing
        )

    def _chat(self, key: Any) -> Any:
        st = self._chats.get(key)
        if st is None:
            st = self._chats[key] = self._new_chat(key)
        return st

    def _wake_pollers(self) -> None:
        ev, self._pollers_event = self._pollers_event, asyncio.Event()
        ev.set()

    def _wake_calls(self) -> None:
        ev, self._calls_event = self._calls_event, asyncio.Event()
        ev.set()

    def _injected(self, key: str) -> None:
        """Raise the next error queued for ``key`` by ``fail_next``, if any."""
        failures = self._failures.get(key)
        if failures:
            raise failures.popleft()

    def _flood_checked(self, method: str) -> None:
        """Refuse a message above the flood limit (429 with ``retry_after``)."""
        if self.flood is None or method not in self.message_methods:
            return
        wait = self.flood.admit(time.monotonic())
        if wait is not None:
            raise ApiError(
                429, f"Too Many Requests: retry after {int(wait)}", {"retry_after": int(wait)}
            )

    @property
    def throttled(self) -> int:
        """Messages refused by the flood limit."""
        return self.flood.refused if self.flood is not None else 0

    def duplicates(self) -> int:
        """Messages a chat got more than once (the same text again), with ``count_received``."""
        return self._duplicates

    def delivered(self) -> int:
        """Messages delivered, with ``count_received``."""
        return self._delivered

    def _record(
        self, method: str, params: dict[str, Any], result: Any, chat: Any, error: ApiError | None
    ) -> Call:
        self._seq += 1
        call = Call(
            method=method,
            params=params,
            result=result,
            time=time.time(),
            seq=self._seq,
            chat_id=chat,
            ok=error is None,
            error=error.answer() if error else None,
        )
        self._method_counts[method] += 1
        if error is not None:
            self._error_count += 1
        elif self.count_received and chat is not None and method in self.message_methods:
            texts = self.received.setdefault(chat, Counter())
            text = text_of(params) or ""
            self._duplicates += texts[text] > 0
            self._delivered += 1
            texts[text] += 1
        if self.keep_calls:
            self.calls.append(call)
        if chat is not None:
            self._chat(chat).add(call)
        self._wake_calls()
        return call

    @staticmethod
    def _respond(call: Call, request: web.Request | None = None) -> web.Response:
        if call.error and call.error["error_code"] == DROP and request is not None:
            if request.transport is not None:  # no answer at all: the connection is cut
                request.transport.close()
            raise ConnectionResetError("dropped by the stand-in")
        if call.error:
            return json_response(call.error, int(call.error["error_code"]))
        if call.result is None:  # Zalo's sendChatAction answers a bare {"ok": true}
            return json_response({"ok": True})
        return json_response({"ok": True, "result": call.result})

    async def _handle_stats(self, request: web.Request) -> web.Response:
        return json_response(self.stats())
