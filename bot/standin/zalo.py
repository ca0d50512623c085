"""A local stand-in for the Zalo Bot Platform API, for tests, the offline demo and benchmarks.

Every call is ``POST /bot<TOKEN>/<method>`` (GET too; parameters as JSON, form or query string)
answered ``{"ok": true, "result": …}`` or ``{"ok": false, "error_code": N, "description": …}``
(the HTTP status is the error code). Method names are case-sensitive. Facts and their sources:
``../shared/ZALO.md``. Like Zalo:

- ``getUpdates`` long-polls ``timeout`` seconds and answers **one** event, or error 408
  ``Request timeout``; it is refused while a webhook is set;
- with a webhook set, each pushed event is POSTed there as ``{"ok": true, "result": event}`` with
  the header ``X-Bot-Api-Secret-Token``; the HTTP status the bot answered is recorded;
- ``sendMessage`` takes 1 to 2,000 characters of plain text; ``sendPhoto`` takes an image URL and
  *fetches* it (status, content type and size recorded), a failed fetch is an error answer;
- ids are 20 hex characters, dates milliseconds; there are no buttons, edits or update ids.

Run standalone with ``python -m bot.standin.zalo --port 8082``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import itertools
import re
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from bot.channels.choices import fold
from bot.standin.common import (
    DROP,
    ApiError,
    Call,
    ChatLog,
    StandInServer,
    choose,
    json_response,
    text_of,
    wait_event,
)
from bot.standin.driver import BaseDriver
from bot.standin.updates import TINY_PNG

__all__ = [
    "RESPONSE_METHODS",
    "TEXT_LIMIT",
    "WEBHOOK_SECRET_HEADER",
    "Delivery",
    "PhotoFetch",
    "ZaloApiStandIn",
    "ZaloChatDriver",
    "ZaloUser",
    "numbered_options",
    "zalo_id",
    "zalo_image",
    "zalo_sticker",
    "zalo_text",
    "zalo_unsupported",
]

#: Methods that count as "the bot answered this chat" (``sendChatAction`` does not).
RESPONSE_METHODS = frozenset({"sendMessage", "sendPhoto", "sendSticker"})
TEXT_LIMIT = 2000
WEBHOOK_SECRET_HEADER = "X-Bot-Api-Secret-Token"
_METHODS = (
    "getMe", "getUpdates", "setWebhook", "deleteWebhook", "getWebhookInfo", "sendMessage",
    "sendPhoto", "sendSticker", "sendChatAction",
)  # fmt: skip
_TOKEN = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
_NUMBERED = re.compile(r"^(\d+)\. (.+)$")
_DEFAULT_POLL_TIMEOUT = 30
_MAX_POLL_TIMEOUT = 60
_PHOTO_MAX_BYTES = 10 * 1024 * 1024


def zalo_id() -> str:
    """A fresh Zalo-style id: 20 hex characters, like ``6ede9afa66b88fe6d6a9``."""
    return secrets.token_hex(10)


def _now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------------------------
# People and their events
# --------------------------------------------------------------------------------------------


@dataclass
class ZaloUser:
    """A simulated Zalo user; their private chat has the same id."""

    id: str = field(default_factory=zalo_id)
    display_name: str = "Người dùng"

    def to_dict(self) -> dict[str, Any]:
        """The ``from`` object of this person's messages."""
        return {"id": self.id, "display_name": self.display_name, "is_bot": False}

    def chat(self) -> dict[str, Any]:
        """The ``chat`` object of this person's private chat with the bot."""
        return {"id": self.id, "chat_type": "PRIVATE"}


def _event(user: ZaloUser, name: str, **content: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"from": user.to_dict(), "chat": user.chat()}
    message.update({k: v for k, v in content.items() if v is not None})
    message["message_id"] = zalo_id()
    message["date"] = _now_ms()
    return {"event_name": name, "message": message}


def zalo_text(user: ZaloUser, text: str) -> dict[str, Any]:
    """``message.text.received``: the person typed ``text``."""
    return _event(user, "message.text.received", text=text)


def zalo_image(user: ZaloUser, url: str, caption: str | None = None) -> dict[str, Any]:
    """``message.image.received``: the person sent a picture (Zalo gives its URL)."""
    return _event(user, "message.image.received", photo=url, caption=caption)


def zalo_sticker(
    user: ZaloUser, sticker: str | None = None, url: str | None = None
) -> dict[str, Any]:
    """``message.sticker.received``."""
    sticker = sticker or zalo_id()
    url = url or f"https://zalo-api.zadn.vn/api/emoticon/sticker/webpc?eid={sticker}"
    return _event(user, "message.sticker.received", sticker=sticker, url=url)


def zalo_unsupported(user: ZaloUser) -> dict[str, Any]:
    """``message.unsupported.received``: what Zalo sends, without content, for protected users."""
    return _event(user, "message.unsupported.received")


def _event_message(event: dict[str, Any]) -> dict[str, Any]:
    message = event.get("message")
    if not isinstance(message, dict) or not isinstance(message.get("message_id"), str):
        raise ValueError("a Zalo event needs a message with a string message_id")
    return message


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


def _bad(description: str) -> ApiError:
    return ApiError(400, description)


@dataclass
class PhotoFetch:
    """What the stand-in got when it fetched a ``sendPhoto`` URL, as Zalo would."""

    url: str
    status: int | None
    content_type: str | None
    size: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        """The URL answered 2xx with an image."""
        return self.error is None


@dataclass
class Delivery:
    """One POST of an event to the bot's webhook."""

    message_id: str
    status: int | None
    error: str | None = None
    body: str = ""


class _ZaloChat(ChatLog):
    __slots__ = ("messages",)

    def __init__(self, max_calls: int | None) -> None:
        super().__init__(max_calls)
        self.messages: list[dict[str, Any]] = []


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ZaloApiStandIn(StandInServer):
    """An in-process HTTP server that behaves like the Zalo Bot Platform API for one bot."""

    _chats: dict[str, _ZaloChat]  # type: ignore[assignment]
    message_methods = RESPONSE_METHODS

    def __init__(
        self,
        token: str = "1234567890:standin-zalo-token",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        bot_id: str = "1459232241454765289",
        account_name: str = "bot.HealthBook",
        keep_calls: bool = True,
        max_calls_per_chat: int | None = None,
        flood_limit: float | None = None,
        count_received: bool = False,
    ) -> None:
        if not _TOKEN.match(token):
            raise ValueError("a Zalo bot token is digits, a colon, then letters, digits, - or _")
        super().__init__(
            host,
            port,
            keep_calls=keep_calls,
            max_calls_per_chat=max_calls_per_chat if keep_calls else max_calls_per_chat or 100,
            flood_limit=flood_limit,
            count_received=count_received,
        )
        self.blocked: set[str] = set()
        self.token = token
        self.bot: dict[str, Any] = {
            "id": bot_id,
            "account_name": account_name,
            "account_type": "BASIC",
            "can_join_groups": False,
        }
        self.fetches: list[PhotoFetch] = []
        self.deliveries: list[Delivery] = []
        self.webhook_url = ""
        self.webhook_secret = ""
        self.webhook_updated_at = 0
        self._pending: deque[dict[str, Any]] = deque()
        self._taken: set[str] = set()
        self._events_pushed = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._http: aiohttp.ClientSession | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            m: getattr(self, "_m_" + re.sub(r"(?<!^)(?=[A-Z])", "_", m).lower()) for m in _METHODS
        }

    # ---------------------------------------------------------------- lifecycle

    def _routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/bot{token}/{method}", self._handle_bot)
        app.router.add_get("/_standin/photo/{name}", self._handle_photo)

    async def start(self) -> None:
        """Start serving on ``host``/``port`` (port 0 picks a free port)."""
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        await super().start()

    async def stop(self) -> None:
        """Stop webhook deliveries, wake all waiters and shut the server down."""
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await super().stop()
        if self._http is not None:
            http, self._http = self._http, None
            await http.close()

    # ---------------------------------------------------------------- injecting

    def push_event(self, event: dict[str, Any]) -> str:
        """Queue an event for ``getUpdates``, or POST it to the webhook; return its message_id."""
        message_id = _event_message(event)["message_id"]
        chat = event["message"].get("chat", {}).get("id")
        if isinstance(chat, str):
            self._chat(chat)
        self._events_pushed += 1
        if self.webhook_url:
            task = asyncio.get_running_loop().create_task(self.deliver(event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._pending.append(event)
            self._wake_pollers()
        return message_id

    async def deliver(self, event: dict[str, Any]) -> Delivery:
        """POST ``event`` to the webhook now (as Zalo does, possibly again); record the answer."""
        message_id = _event_message(event)["message_id"]
        if not self.webhook_url or self._http is None:
            raise RuntimeError("no webhook is set (or the stand-in is not started)")
        headers = {WEBHOOK_SECRET_HEADER: self.webhook_secret}
        try:
            async with self._http.post(
                self.webhook_url, json={"ok": True, "result": event}, headers=headers
            ) as resp:
                body = (await resp.text())[:500]
                delivery = Delivery(message_id, resp.status, body=body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            delivery = Delivery(message_id, None, error=type(exc).__name__)
        self.deliveries.append(delivery)
        if delivery.status is not None:  # the bot's server had it, whatever it answered
            self._taken.add(message_id)
        return delivery

    async def redeliver(self, event: dict[str, Any]) -> Delivery:
        """Deliver the same event once more, as Zalo may after a slow or failed answer."""
        return await self.deliver(event)

    def taken(self, message_id: str) -> bool:
        """Whether the bot has had the event: handed out by getUpdates or POSTed to its webhook."""
        return message_id in self._taken

    def fail_next(
        self, method: str, code: int = 429, description: str | None = None, *, times: int = 1
    ) -> None:
        """Make the next ``times`` calls of ``method`` answer error ``code`` (0: no answer at
        all, the connection is dropped)."""
        if description is None:
            description = {
                429: "Quota exceeded",
                401: "Unauthorized",
                403: "Forbidden",
                500: "Internal Server Error",
                502: "Bad Gateway",
                DROP: "connection dropped",
            }.get(code, "Bad Request")
        queue = self._failures.setdefault(method, deque())
        queue.extend(ApiError(code, description) for _ in range(times))

    def block_user(self, chat_id: str, blocked: bool = True) -> None:
        """Simulate a person who blocked the bot: messages to them are refused. What Zalo
        answers then is not documented (``shared/ZALO.md``): 403 Forbidden, as Telegram."""
        if blocked:
            self.blocked.add(chat_id)
        else:
            self.blocked.discard(chat_id)

    # ---------------------------------------------------------------- inspecting

    def messages(self, chat_id: str) -> list[dict[str, Any]]:
        """The bot's messages in a chat, oldest first (``text``, or ``photo`` and ``caption`` …)."""
        st = self._chats.get(chat_id)
        return list(st.messages) if st else []

    def stats(self) -> dict[str, Any]:
        """Counters: events pushed/pending, calls by method, chats, errors, deliveries."""
        return {
            "events_pushed": self._events_pushed,
            "pending_events": len(self._pending),
            "calls_total": self._seq,
            "calls_by_method": dict(self._method_counts),
            "errors": self._error_count,
            "chats": len(self._chats),
            "deliveries": len(self.deliveries),
            "seq": self._seq,
            "throttled": self.throttled,
            "delivered": self.delivered(),
            "duplicates": self.duplicates(),
        }

    # ---------------------------------------------------------------- internals

    def _new_chat(self, key: str) -> _ZaloChat:
        return _ZaloChat(self.max_calls_per_chat)

    def _answered(self, call: Call) -> bool:
        return call.method in RESPONSE_METHODS

    async def call(self, method: str, params: dict[str, Any], token: str | None = None) -> Call:
        """Execute one API method (as if received over HTTP with ``token``) and record it."""
        result: Any = None
        error: ApiError | None = None
        try:
            if token is not None and not secrets.compare_digest(
                token.encode("utf-8", "replace"), self.token.encode()
            ):
                raise ApiError(401, "Unauthorized")
            handler = self._handlers.get(method)
            if handler is None:
                raise ApiError(404, "Not Found")
            self._injected(method)
            self._flood_checked(method)
            result = handler(params)
            if asyncio.iscoroutine(result):
                result = await result
        except ApiError as exc:
            error = exc
        chat = params.get("chat_id")
        return self._record(
            method, params, result, chat if isinstance(chat, str) and chat else None, error
        )

    async def _read_params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if not request.can_read_body:
            return params
        if request.content_type == "application/json":
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("the JSON body must be an object")
            params.update(body)
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
        return params

    async def _handle_bot(self, request: web.Request) -> web.Response:
        try:
            params = await self._read_params(request)
        except ValueError:
            return json_response(_bad("Invalid request body").answer(), 400)
        call = await self.call(request.match_info["method"], params, request.match_info["token"])
        return self._respond(call, request)

    async def _handle_photo(self, request: web.Request) -> web.Response:
        return web.Response(body=TINY_PNG, content_type="image/png")

    def photo_url(self) -> str:
        """A fresh URL of a small PNG served here: what a person's picture looks like to the bot."""
        return f"{self.url}/_standin/photo/{zalo_id()}.png"

    # ---------------------------------------------------------------- parameters

    @staticmethod
    def _string(params: dict[str, Any], key: str, *, required: bool = True) -> str | None:
        value = params.get(key)
        if value is None or value == "":
            if required:
                raise _bad(f"{key} is required")
            return None
        if not isinstance(value, str):
            raise _bad(f"{key} must be a string")
        return value

    def _target(self, params: dict[str, Any]) -> _ZaloChat:
        chat_id = self._string(params, "chat_id")
        assert chat_id is not None
        if chat_id in self.blocked:
            raise ApiError(403, "Forbidden: the user has blocked the bot")
        return self._chat(chat_id)

    @staticmethod
    def _text(value: str | None, what: str) -> None:
        if value is not None and not 1 <= len(value) <= TEXT_LIMIT:
            raise _bad(f"{what} must be 1 to {TEXT_LIMIT} characters")

    def _new_message(self, st: _ZaloChat, content: dict[str, Any]) -> dict[str, Any]:
        result = {"message_id": zalo_id(), "date": _now_ms()}
        st.messages.append({**result, **content})
        return result

    async def _fetch(self, url: str) -> PhotoFetch:
        assert self._http is not None
        try:
            async with self._http.get(url) as resp:
                content = await resp.content.read(_PHOTO_MAX_BYTES + 1)
                ctype = resp.content_type
                fetch = PhotoFetch(url, resp.status, ctype, len(content))
                if resp.status != 200:
                    fetch.error = f"HTTP {resp.status}"
                elif not ctype.startswith("image/"):
                    fetch.error = f"not an image ({ctype})"
                elif len(content) > _PHOTO_MAX_BYTES:
                    fetch.error = "image too large"
        except (aiohttp.ClientError, TimeoutError, RuntimeError) as exc:
            # RuntimeError: forbid_network refused a non-loopback address
            fetch = PhotoFetch(url, None, None, 0, error=type(exc).__name__)
        self.fetches.append(fetch)
        return fetch

    # ---------------------------------------------------------------- API methods

    def _m_get_me(self, params: dict[str, Any]) -> dict[str, Any]:
        return dict(self.bot)

    async def _m_get_updates(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.webhook_url:
            raise _bad("getUpdates is not available while a webhook is set; use deleteWebhook")
        raw = params.get("timeout", _DEFAULT_POLL_TIMEOUT)
        try:
            timeout = float(raw)
        except (TypeError, ValueError):
            raise _bad("timeout must be a number of seconds") from None
        timeout = min(max(timeout, 0.0), _MAX_POLL_TIMEOUT)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._pending:
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closing:
                raise ApiError(408, "Request timeout")
            await wait_event(self._pollers_event, remaining)
        event = self._pending.popleft()
        self._taken.add(event["message"]["message_id"])
        return event

    def _m_set_webhook(self, params: dict[str, Any]) -> dict[str, Any]:
        url = self._string(params, "url")
        secret = self._string(params, "secret_token")
        assert url is not None and secret is not None
        parts = urlsplit(url)
        local_http = parts.scheme == "http" and _loopback(parts.hostname or "")
        if not parts.hostname or (parts.scheme != "https" and not local_http):
            raise _bad("url must be an HTTPS URL")
        if not 8 <= len(secret) <= 256:
            raise _bad("secret_token must be 8 to 256 characters")
        self.webhook_url, self.webhook_secret = url, secret
        self.webhook_updated_at = _now_ms()
        return {"url": url, "updated_at": self.webhook_updated_at}

    def _m_delete_webhook(self, params: dict[str, Any]) -> dict[str, Any]:
        self.webhook_url = self.webhook_secret = ""
        self.webhook_updated_at = _now_ms()
        return {"url": "", "updated_at": self.webhook_updated_at}

    def _m_get_webhook_info(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"url": self.webhook_url, "updated_at": self.webhook_updated_at}

    def _m_send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        st = self._target(params)
        text = self._string(params, "text")
        self._text(text, "text")
        return self._new_message(st, {"text": text})

    async def _m_send_photo(self, params: dict[str, Any]) -> dict[str, Any]:
        st = self._target(params)
        url = self._string(params, "photo")
        caption = self._string(params, "caption", required=False)
        self._text(caption, "caption")
        assert url is not None
        if urlsplit(url).scheme not in ("http", "https"):
            raise _bad("photo must be an http(s) URL")
        fetch = await self._fetch(url)
        if not fetch.ok:
            raise _bad(f"can't get the photo: {fetch.error}")
        content: dict[str, Any] = {"photo": url, "fetched": fetch}
        if caption is not None:
            content["caption"] = caption
        return self._new_message(st, content)

    def _m_send_sticker(self, params: dict[str, Any]) -> dict[str, Any]:
        st = self._target(params)
        return self._new_message(st, {"sticker": self._string(params, "sticker")})

    def _m_send_chat_action(self, params: dict[str, Any]) -> None:
        self._target(params)
        if self._string(params, "action") not in ("typing", "upload_photo"):
            raise _bad("action must be typing or upload_photo")


# --------------------------------------------------------------------------------------------
# ZaloChatDriver
# --------------------------------------------------------------------------------------------


def numbered_options(texts: list[str]) -> list[tuple[str, str]]:
    """The ``(number, label)`` pairs of lines like ``2. Nữ`` in the given texts, in order."""
    options = []
    for text in texts:
        for line in text.splitlines():
            m = _NUMBERED.match(line.strip())
            if m:
                options.append((m.group(1), m.group(2).strip()))
    return options


def _phone_as_typed(phone: str) -> str:
    """How a person types their number: ``+84912345678`` → ``0912345678``."""
    digits = re.sub(r"[\s.()-]", "", phone)
    local = re.sub(r"^\+?84", "0", digits)
    return local if re.fullmatch(r"0\d{9}", local) else digits


class ZaloChatDriver(BaseDriver):
    """One simulated person chatting with the bot through a :class:`ZaloApiStandIn`.

    It offers what :class:`~bot.standin.driver.ChatDriver` offers, done the Zalo way: there are
    no buttons, so ``press`` types the number of the matching numbered line (``1. Nam``) of the
    bot's newest answer that has such lines, and ``share_contact`` types the phone number.
    """

    answer_methods = RESPONSE_METHODS
    api: ZaloApiStandIn
    #: with ``press_by="alternate"``: how often each (options, option) was answered so far
    pressed: ClassVar[Counter[tuple[tuple[str, ...], str]]] = Counter()

    def __init__(
        self,
        api: ZaloApiStandIn,
        user: ZaloUser | str | None = None,
        *,
        location_as_text: bool = False,
        press_by: str = "number",
        **options: Any,
    ) -> None:
        """``press_by``: how :meth:`press` answers: ``"number"`` types the option's number,
        ``"label"`` its label folded (no accents, lower case), ``"alternate"`` the folded label
        then the number, by turns, for each option of each set of options, counted across every
        driver of the process (so that a question reached twice in a test run is answered both
        ways; one reached once is answered by its label, the harder of the two to match).
        ``options``: those of :class:`~bot.standin.driver.BaseDriver` (``idle`` …)."""
        super().__init__(api, **options)
        if user is None:
            user = ZaloUser()
        if press_by not in ("number", "label", "alternate"):
            raise ValueError(f"press_by: number, label or alternate, not {press_by!r}")
        self.user = user if isinstance(user, ZaloUser) else ZaloUser(id=user)
        self.location_as_text = location_as_text
        self.press_by = press_by
        # how many bot messages the chat had when this person wrote each time
        self._marks: list[int] = []

    @property
    def chat_id(self) -> str:
        """The private chat's id (equal to the user id)."""
        return self.user.id

    # ------------------------------------------------------------ acting

    async def push(
        self,
        event: dict[str, Any],
        *,
        expect_reply: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> list[Call]:
        """Push any event and wait for the bot's answer; return the calls to this chat."""
        after = self.api.seq
        self._marks.append(len(self.api.messages(self.chat_id)))
        message_id = self.api.push_event(event)
        return await self._answer(
            after,
            lambda: self.api.taken(message_id),
            expect_reply=expect_reply,
            timeout=timeout,
            what=f"event {message_id}",
        )

    async def send(self, text: str, **kw: Any) -> list[Call]:
        """Type a text message and wait for the answer."""
        return await self.push(zalo_text(self.user, text), **kw)

    async def press(self, label_or_number: str, **kw: Any) -> list[Call]:
        """Type the number of the offered option whose label matches (as ``ChatDriver.press``)."""
        options = self._offered()
        if not options:
            raise AssertionError(f"no numbered options in the bot's answers in chat {self.chat_id}")
        number, label = choose(
            label_or_number,
            options,
            lambda o: o[1],
            lambda o: o[0],
            describe=lambda o: f"{o[0]}. {o[1]}",
        )
        return await self.send(self._typed(number, label, options), **kw)

    def _typed(self, number: str, label: str, options: list[tuple[str, str]]) -> str:
        """What the person types for the option: its number or its folded label."""
        folded = fold(label)
        # a folded label another option shares, or that reads as a number, can only be numbered
        unique = bool(folded) and sum(fold(o[1]) == folded for o in options) == 1
        if self.press_by == "number" or not unique or folded.isdigit():
            return number
        if self.press_by == "label":
            return folded
        key = tuple(o[1] for o in options)
        count = ZaloChatDriver.pressed[key, label]
        ZaloChatDriver.pressed[key, label] = count + 1
        return folded if count % 2 == 0 else number

    async def press_data(self, data: str, message: Any = None, **kw: Any) -> list[Call]:
        """Zalo has no callback data to forge: type ``data`` instead."""
        return await self.send(data, **kw)

    async def share_contact(self, phone: str, **kw: Any) -> list[Call]:
        """Zalo cannot share contacts: type the phone number as people do (``0912…``)."""
        kw.pop("user_id", None)
        return await self.send(_phone_as_typed(phone), **kw)

    async def send_location(self, lat: float, lon: float, **kw: Any) -> list[Call]:
        """Zalo has no location sharing; with ``location_as_text`` the coordinates are typed."""
        if not self.location_as_text:
            raise AssertionError("Zalo has no location sharing")
        return await self.send(f"{lat}, {lon}", **kw)

    async def send_sticker(self, **kw: Any) -> list[Call]:
        """Send a sticker."""
        return await self.push(zalo_sticker(self.user), **kw)

    async def send_photo(self, caption: str | None = None, **kw: Any) -> list[Call]:
        """Send a picture (a small PNG the stand-in serves)."""
        return await self.push(zalo_image(self.user, self.api.photo_url(), caption), **kw)

    async def send_unsupported(self, **kw: Any) -> list[Call]:
        """What Zalo sends instead of the content when the sender is a protected user."""
        return await self.push(zalo_unsupported(self.user), **kw)

    # ------------------------------------------------------------ observing

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The bot's messages in this chat, oldest first."""
        return self.api.messages(self.chat_id)

    @property
    def last_message(self) -> dict[str, Any] | None:
        """The newest bot message in this chat, or None."""
        msgs = self.messages
        return msgs[-1] if msgs else None

    @property
    def last_text(self) -> str | None:
        """Text or caption of the newest bot message (one part of a split answer)."""
        msg = self.last_message
        return None if msg is None else text_of(msg)

    @property
    def last_answer(self) -> str | None:
        """All messages of the bot's answer to the person's last message, joined with newlines."""
        texts = self._answers()[-1]
        return "\n".join(texts) if texts else None

    @property
    def texts(self) -> list[str]:
        """Texts/captions of the bot's messages in this chat, oldest first."""
        return [t for m in self.messages if (t := text_of(m)) is not None]

    @property
    def buttons(self) -> list[str]:
        """Labels of the numbered options of the newest answer that offers some."""
        return [label for _, label in self._offered()]

    @property
    def reply_keyboard(self) -> list[str]:
        """Zalo has no keyboards."""
        return []

    @property
    def reply_buttons(self) -> list[dict[str, Any]]:
        """Zalo has no keyboards."""
        return []

    @property
    def callback_answers(self) -> list[str]:
        """Zalo has no button presses to answer."""
        return []

    def _answers(self) -> list[list[str]]:
        """The texts of the bot's messages grouped by the person's message they follow."""
        msgs = self.messages
        bounds = [0, *self._marks, len(msgs)]
        return [
            [t for m in msgs[a:b] if (t := text_of(m)) is not None]
            for a, b in itertools.pairwise(bounds)
        ]

    def _offered(self) -> list[tuple[str, str]]:
        for texts in reversed(self._answers()):
            options = numbered_options(texts)
            if options:
                return options
        return []


# --------------------------------------------------------------------------------------------
# Standalone entry point
# --------------------------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> None:
    api = ZaloApiStandIn(args.token, host=args.host, port=args.port)
    await api.serve_until_signalled(lambda: f"Zalo Bot API stand-in at {api.url}")


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m bot.standin.zalo --port 8082``."""
    parser = argparse.ArgumentParser(prog="python -m bot.standin.zalo", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082, help="0 picks a free port")
    parser.add_argument("--token", default="1234567890:standin-zalo-token")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
