"""A local stand-in for the Telegram Bot API over HTTP, for tests, the offline demo and benchmarks.

The real python-telegram-bot ``Application`` talks to it exactly as it would to
``api.telegram.org``: build it with ``.base_url(api.base_url).base_file_url(api.base_file_url)``.
PTB sends ``application/x-www-form-urlencoded`` bodies (``multipart/form-data`` when uploading
files); every non-string value (numbers, booleans, ``reply_markup`` …) is a JSON-encoded string.
JSON bodies are accepted as well.

Besides the Bot API (``/bot<token>/<method>``) the server offers a small control API for a load
driver in another process (``/_standin/update``, ``/_standin/wait``, ``/_standin/stats``,
``/_standin/fail``) and serves uploaded files under ``/file/bot<token>/<path>``.

Texts are plain: ``parse_mode`` is refused (the bot never formats; Zalo cannot). Run standalone
with ``python -m bot.standin --port 8081``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.standin.common import (
    DROP,
    ApiError,
    Call,
    ChatLog,
    StandInServer,
    StandInTimeoutError,
    json_response,
    wait_event,
)
from bot.standin.updates import len16, new_file_id, update_message

__all__ = ["RESPONSE_METHODS", "BotApiStandIn", "TgFile"]


@dataclass
class TgFile:
    """A file known to the stand-in: uploaded by the bot or registered for a simulated user."""

    file_id: str
    file_unique_id: str
    filename: str | None
    mime_type: str | None
    size: int
    content: bytes = field(repr=False)
    file_path: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly description (without the bytes)."""
        return {
            "file_id": self.file_id,
            "filename": self.filename,
            "mime_type": self.mime_type,
            "size": self.size,
        }


def _bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


_STRING_KEYS = frozenset(
    {
        "text", "caption", "parse_mode", "callback_query_id", "url", "title", "address",
        "action", "file_id", "language_code", "inline_message_id", "description",
        "short_description", "name", "secret_token", "ip_address", "data", "foursquare_id",
        "foursquare_type", "google_place_id", "google_place_type", "business_connection_id",
        "message_effect_id", "document", "photo", "audio", "video", "voice", "animation",
        "sticker", "thumbnail", "video_note", "certificate", "phone_number", "first_name",
        "last_name", "vcard", "emoji", "query", "switch_inline_query", "filename",
    }
)  # fmt: skip
_JSONISH = re.compile(r"^\s*(?:[\[{\"]|-?\d|true$|false$|null$)")


def _decode_value(key: str, value: Any) -> Any:
    if not isinstance(value, str) or key in _STRING_KEYS or not _JSONISH.match(value):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _as_int(value: Any, default: int | None = None) -> int | None:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _chat_key(value: Any) -> int | str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except ValueError:
        return str(value)


def _strip(text: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Telegram trims leading and trailing whitespace of texts; shift entities accordingly."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    lead = len16(text[: len(text) - len(text.lstrip())])
    total = len16(stripped)
    fixed = []
    for e in entities:
        start = max(e["offset"] - lead, 0)
        end = min(e["offset"] - lead + e["length"], total)
        if end > start:
            fixed.append({**e, "offset": start, "length": end - start})
    return stripped, fixed


RESPONSE_METHODS = frozenset(
    {
        "sendMessage", "editMessageText", "editMessageReplyMarkup", "editMessageCaption",
        "sendDocument", "sendPhoto", "sendLocation", "sendVenue", "answerCallbackQuery",
        "deleteMessage", "deleteMessages",
    }
)  # fmt: skip

_CANONICAL = [
    "getMe", "getUpdates", "deleteWebhook", "setWebhook", "getWebhookInfo", "logOut", "close",
    "setMyCommands", "getMyCommands", "deleteMyCommands", "setChatMenuButton",
    "getChatMenuButton", "sendChatAction", "sendMessage", "editMessageText",
    "editMessageReplyMarkup", "editMessageCaption", "deleteMessage", "deleteMessages",
    "answerCallbackQuery", "sendDocument", "sendPhoto", "sendLocation", "sendVenue", "getFile",
    "getChat", "setMyDescription", "setMyShortDescription", "setMyName",
]  # fmt: skip
_CANONICAL_BY_LOWER = {m.lower(): m for m in _CANONICAL}
_TOKEN = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
_NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the "
    "same as a current content and reply markup of the message"
)
_MIME_EXT = {
    "application/pdf": ".pdf", "image/png": ".png", "image/jpeg": ".jpg", "text/plain": ".txt",
    "text/csv": ".csv", "audio/ogg": ".oga", "image/webp": ".webp",
}  # fmt: skip


class _ChatState(ChatLog):
    __slots__ = ("blocked", "chat", "messages", "next_message_id", "reply_keyboard")

    def __init__(self, chat_id: int | str, max_calls: int | None) -> None:
        super().__init__(max_calls)
        if isinstance(chat_id, int) and chat_id > 0:
            self.chat: dict[str, Any] = {"id": chat_id, "type": "private", "first_name": "Test"}
        elif isinstance(chat_id, int):
            self.chat = {"id": chat_id, "type": "group", "title": "Group"}
        else:
            self.chat = {"id": -1000000000001, "type": "channel", "title": chat_id}
        self.messages: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self.next_message_id = 1
        self.reply_keyboard: dict[str, Any] | None = None
        self.blocked = False


def _is_response(call: Call) -> bool:
    return call.method in RESPONSE_METHODS


class BotApiStandIn(StandInServer):
    """An in-process HTTP server that behaves like the Telegram Bot API for one bot."""

    max_body = 60 * 1024 * 1024
    message_methods = frozenset(
        {"sendMessage", "sendPhoto", "sendDocument", "sendLocation", "sendVenue"}
    )
    _chats: dict[int | str, _ChatState]  # type: ignore[assignment]

    def __init__(
        self,
        bot_username: str = "healthbook_demo_bot",
        bot_id: int = 7000000001,
        *,
        bot_first_name: str = "HealthBook Demo",
        host: str = "127.0.0.1",
        port: int = 0,
        keep_calls: bool = True,
        max_calls_per_chat: int | None = None,
        max_messages_per_chat: int | None = None,
        strict_chats: bool = False,
        flood_limit: float | None = None,
        count_received: bool = False,
    ) -> None:
        self.bot_username = bot_username
        self.bot_id = bot_id
        self.bot_user: dict[str, Any] = {
            "id": bot_id,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
        }
        if not keep_calls and max_calls_per_chat is None:
            max_calls_per_chat = 100
        if not keep_calls and max_messages_per_chat is None:
            max_messages_per_chat = 100
        super().__init__(
            host,
            port,
            keep_calls=keep_calls,
            max_calls_per_chat=max_calls_per_chat,
            flood_limit=flood_limit,
            count_received=count_received,
        )
        self.max_messages_per_chat = max_messages_per_chat
        self.strict_chats = strict_chats
        self.files: dict[str, TgFile] = {}
        self._files_by_path: dict[str, TgFile] = {}
        self._file_counter = itertools.count(1)
        self.commands: dict[str, list[dict[str, Any]]] = {}
        self.menu_buttons: dict[str, Any] = {}
        self.webhook_url = ""
        self._pending: deque[dict[str, Any]] = deque()
        self._last_update_id = 0
        self._updates_pushed = 0
        self._poll_generation = 0
        self._callback_chats: OrderedDict[str, int | str] = OrderedDict()
        self._open_callbacks: set[str] = set()
        self._cursors: dict[int | str, int] = {}
        self._handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            m.lower(): getattr(self, "_m_" + re.sub(r"(?<!^)(?=[A-Z])", "_", m).lower())
            for m in _CANONICAL
        }

    # ---------------------------------------------------------------- lifecycle

    def _routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/bot{token}/{method}", self._handle_bot)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        app.router.add_post("/_standin/update", self._handle_push)
        app.router.add_get("/_standin/wait", self._handle_wait)
        app.router.add_post("/_standin/fail", self._handle_fail)

    @property
    def base_url(self) -> str:
        """Value for ``ApplicationBuilder.base_url`` (PTB appends the token)."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        """Value for ``ApplicationBuilder.base_file_url``."""
        return f"{self.url}/file/bot"

    # ---------------------------------------------------------------- injecting

    def push_update(self, update: dict[str, Any]) -> int:
        """Queue an update for ``getUpdates`` (assigning ``update_id``) and wake long polls."""
        if "update_id" in update:
            uid = int(update["update_id"])
            self._last_update_id = max(self._last_update_id, uid)
        else:
            self._last_update_id += 1
            uid = self._last_update_id
            update = {"update_id": uid, **update}
        self._note_update(update)
        self._pending.append(update)
        self._updates_pushed += 1
        self._wake_pollers()
        return uid

    def unconfirmed(self, update_id: int) -> bool:
        """Whether the bot has not yet confirmed ``update_id`` (a later ``getUpdates`` offset)."""
        return any(int(u["update_id"]) == update_id for u in self._pending)

    def fail_next(
        self,
        method: str,
        error_code: int = 429,
        retry_after: int = 1,
        *,
        description: str | None = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``method`` answer a Telegram error (``error_code``
        0: no answer at all, the connection is dropped)."""
        params: dict[str, Any] | None = None
        if description is None:
            description = {
                429: f"Too Many Requests: retry after {retry_after}",
                400: "Bad Request",
                401: "Unauthorized",
                403: "Forbidden: bot was blocked by the user",
                409: "Conflict",
                500: "Internal Server Error",
                502: "Bad Gateway",
                DROP: "connection dropped",
            }.get(error_code, "Error")
        if error_code == 429:
            params = {"retry_after": retry_after}
        queue = self._failures.setdefault(method.lower(), deque())
        for _ in range(times):
            queue.append(ApiError(error_code, description, params))

    def block_user(self, chat_id: int, blocked: bool = True) -> None:
        """Simulate a user who blocked the bot: sends to them answer 403."""
        self._chat(chat_id).blocked = blocked

    def register_file(
        self,
        content: bytes,
        *,
        file_id: str | None = None,
        filename: str | None = None,
        mime_type: str | None = None,
    ) -> TgFile:
        """Make ``file_id`` known so that ``getFile`` and downloads of it work."""
        if file_id is None:
            file_id, unique = new_file_id("file")
        else:
            unique = f"u{file_id}"
        ext = _MIME_EXT.get(mime_type or "", "")
        if filename and "." in filename:
            ext = filename[filename.rfind(".") :]
        f = TgFile(
            file_id=file_id,
            file_unique_id=unique,
            filename=filename,
            mime_type=mime_type,
            size=len(content),
            content=content,
            file_path=f"files/file_{next(self._file_counter)}{ext}",
        )
        self.files[file_id] = f
        self._files_by_path[f.file_path] = f
        return f

    # ---------------------------------------------------------------- inspecting

    def messages(self, chat_id: int | str) -> list[dict[str, Any]]:
        """Current state of the bot's messages in a chat (edits applied, deleted removed)."""
        st = self._chats.get(_chat_key(chat_id) or 0)
        return list(st.messages.values()) if st else []

    def reply_keyboard(self, chat_id: int | str) -> dict[str, Any] | None:
        """The ReplyKeyboardMarkup currently shown in a chat, if any."""
        st = self._chats.get(_chat_key(chat_id) or 0)
        return st.reply_keyboard if st else None

    def stats(self) -> dict[str, Any]:
        """Counters: updates pushed/pending, calls by method, chats, errors."""
        return {
            "updates_pushed": self._updates_pushed,
            "pending_updates": len(self._pending),
            "last_update_id": self._last_update_id,
            "calls_total": self._seq,
            "calls_by_method": dict(self._method_counts),
            "errors": self._error_count,
            "chats": len(self._chats),
            "seq": self._seq,
            "kept_calls": len(self.calls),
            "throttled": self.throttled,
            "delivered": self.delivered(),
            "duplicates": self.duplicates(),
        }

    # ---------------------------------------------------------------- waiting

    async def wait_for_calls(
        self,
        predicate: Callable[[Call], bool],
        *,
        count: int = 1,
        timeout: float = 10.0,  # noqa: ASYNC109
        after_index: int = 0,
    ) -> list[Call]:
        """Wait until ``count`` calls in ``calls[after_index:]`` match; return the matches."""
        if not self.keep_calls:
            raise RuntimeError("wait_for_calls needs keep_calls=True")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        matches: list[Call] = []
        cursor = after_index
        while True:
            while cursor < len(self.calls):
                if predicate(self.calls[cursor]):
                    matches.append(self.calls[cursor])
                cursor += 1
            if len(matches) >= count:
                return matches
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closing:
                seen = ", ".join(c.method for c in self.calls[after_index:][-20:]) or "none"
                raise StandInTimeoutError(
                    f"only {len(matches)} of {count} expected calls within {timeout}s; "
                    f"recent calls: {seen}"
                )
            await wait_event(self._calls_event, remaining)

    async def next_messages(
        self,
        chat_id: int | str,
        timeout: float = 10.0,  # noqa: ASYNC109
        *,
        settle: float = 0.05,
    ) -> list[dict[str, Any]]:
        """Messages the bot sent or edited in a chat since the previous ``next_messages`` call."""
        key = _chat_key(chat_id)
        assert key is not None
        after = self._cursors.get(key, 0)
        calls = await self.wait_chat(key, after_seq=after, timeout=timeout, settle=settle)
        if not any(_is_response(c) for c in calls):
            raise StandInTimeoutError(f"the bot sent nothing to chat {key} within {timeout}s")
        self._cursors[key] = calls[-1].seq
        return [c.result for c in calls if c.ok and isinstance(c.result, dict)]

    # ---------------------------------------------------------------- internals

    def _new_chat(self, key: int | str) -> _ChatState:
        return _ChatState(key, self.max_calls_per_chat)

    def _key(self, chat_id: Any) -> int | str | None:
        return _chat_key(chat_id)

    def _answered(self, call: Call) -> bool:
        return _is_response(call)

    def _note_update(self, update: dict[str, Any]) -> None:
        msg = update_message(update)
        cq = update.get("callback_query")
        if isinstance(cq, dict):
            msg = cq.get("message") if isinstance(cq.get("message"), dict) else None
            chat_id = msg["chat"]["id"] if msg else cq.get("from", {}).get("id")
            qid = str(cq.get("id"))
            self._callback_chats[qid] = chat_id
            self._open_callbacks.add(qid)
            if len(self._callback_chats) > 100_000:
                old, _ = self._callback_chats.popitem(last=False)
                self._open_callbacks.discard(old)
            if chat_id is not None:
                self._chat(chat_id)
            return
        if msg and isinstance(msg.get("chat"), dict) and "id" in msg["chat"]:
            chat = msg["chat"]
            st = self._chat(chat["id"])
            keep = ("id", "type", "title", "username", "first_name", "last_name")
            st.chat = {k: chat[k] for k in keep if k in chat}

    def _call_chat(self, method: str, params: dict[str, Any]) -> int | str | None:
        if method == "answerCallbackQuery":
            return self._callback_chats.get(str(params.get("callback_query_id")))
        if method == "getUpdates":
            return None
        return _chat_key(params.get("chat_id"))

    async def call(self, method: str, params: dict[str, Any], token: str = "") -> Call:
        """Execute one Bot API method (as if received over HTTP) and record it."""
        lower = method.lower()
        canonical = _CANONICAL_BY_LOWER.get(lower, method)
        chat = self._call_chat(canonical, params)
        error: ApiError | None = None
        result: Any = None
        try:
            if token and not _TOKEN.match(token):
                raise ApiError(401, "Unauthorized")
            self._injected(lower)
            self._flood_checked(canonical)
            handler = self._handlers.get(lower)
            if handler is None:
                raise ApiError(404, "Not Found")
            result = handler(params)
            if asyncio.iscoroutine(result):
                result = await result
        except ApiError as exc:
            error = exc
            result = None
        return self._record(canonical, params, result, chat, error)

    async def _read_params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = {k: _decode_value(k, v) for k, v in request.query.items()}
        if request.method not in ("POST", "PUT") or not request.can_read_body:
            return params
        ctype = request.content_type
        if ctype == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                params.update({k: _decode_value(k, v) for k, v in body.items()})
            return params
        if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            files: dict[str, TgFile] = {}
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    content = value.file.read()
                    value.file.close()
                    files[key] = self._store_upload(
                        key, value.filename, value.content_type, content
                    )
                else:
                    params[key] = _decode_value(key, value)
            for key, value in list(params.items()):
                if isinstance(value, str) and value.startswith("attach://"):
                    name = value[len("attach://") :]
                    if name in files:
                        params[key] = files.pop(name)
            for key, f in files.items():
                params.setdefault(key, f)
        return params

    def _store_upload(
        self, field_name: str, filename: str | None, mime_type: str | None, content: bytes
    ) -> TgFile:
        kind = field_name if field_name in ("document", "photo", "voice", "audio") else "file"
        file_id, _ = new_file_id(kind)
        return self.register_file(content, file_id=file_id, filename=filename, mime_type=mime_type)

    # ---------------------------------------------------------------- HTTP handlers

    async def _handle_bot(self, request: web.Request) -> web.Response:
        try:
            params = await self._read_params(request)
        except ValueError as exc:
            return json_response(_bad(f"can't parse request: {exc}").answer(), 400)
        call = await self.call(request.match_info["method"], params, request.match_info["token"])
        return self._respond(call, request)

    async def _handle_file(self, request: web.Request) -> web.Response:
        f = self._files_by_path.get(request.match_info["path"])
        if f is not None:
            return web.Response(
                body=f.content, content_type=f.mime_type or "application/octet-stream"
            )
        return json_response({"ok": False, "error_code": 404, "description": "Not Found"}, 404)

    async def _handle_push(self, request: web.Request) -> web.Response:
        update = await request.json()
        if not isinstance(update, dict):
            return json_response({"error": "update must be a JSON object"}, 400)
        seq = self._seq
        uid = self.push_update(update)
        return json_response({"update_id": uid, "seq": seq})

    async def _handle_wait(self, request: web.Request) -> web.Response:
        q = request.query
        chat = _chat_key(q.get("chat_id"))
        if chat is None:
            return json_response({"error": "chat_id is required"}, 400)
        after = _as_int(q.get("after"), 0) or 0
        timeout = float(q.get("timeout", "10"))
        settle = float(q.get("settle", "0"))
        calls = await self.wait_chat(chat, after_seq=after, timeout=timeout, settle=settle)
        return json_response({"calls": [c.to_json() for c in calls], "seq": self._seq})

    async def _handle_fail(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.fail_next(
            body["method"],
            int(body.get("error_code", 429)),
            int(body.get("retry_after", 1)),
            description=body.get("description"),
            times=int(body.get("times", 1)),
        )
        return json_response({"ok": True})

    # ---------------------------------------------------------------- message helpers

    def _target(self, params: dict[str, Any]) -> _ChatState:
        key = _chat_key(params.get("chat_id"))
        if key is None:
            raise _bad("chat_id is empty")
        if self.strict_chats and key not in self._chats:
            raise _bad("chat not found")
        st = self._chat(key)
        if st.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return st

    def _format(
        self, params: dict[str, Any], key: str, *, required: bool, limit: int
    ) -> tuple[str | None, list[dict[str, Any]]]:
        raw = params.get(key)
        if raw is None:
            if required:
                raise _bad("message text is empty")
            return None, []
        raw = str(raw)
        entities = params.get("entities" if key == "text" else "caption_entities")
        if params.get("parse_mode"):
            # The bot sends plain text everywhere (Zalo has no formatting): fail loudly if it stops.
            raise _bad("the stand-in supports plain text only, not parse_mode")
        text, ents = raw, entities if isinstance(entities, list) else []
        text, ents = _strip(text, ents)
        if not text and required:
            raise _bad("message text is empty")
        if len(text) > limit:
            raise _bad("message is too long" if key == "text" else "message caption is too long")
        return text, ents

    @staticmethod
    def _inline_markup(params: dict[str, Any]) -> dict[str, Any] | None:
        rm = params.get("reply_markup")
        if rm is None:
            return None
        if not isinstance(rm, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        rows = rm.get("inline_keyboard")
        if rows is None:
            return None
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise _bad("can't parse inline keyboard markup")
        for row in rows:
            for button in row:
                if not isinstance(button, dict) or not button.get("text"):
                    raise _bad("can't parse inline keyboard button: Text must be non-empty")
                actions = [k for k in button if k != "text"]
                if not actions:
                    raise _bad(
                        "can't parse inline keyboard button: "
                        "Text buttons are unallowed in the inline keyboard"
                    )
                if "callback_data" in button:
                    data = str(button["callback_data"]).encode("utf-8")
                    if not 1 <= len(data) <= 64:
                        raise _bad("BUTTON_DATA_INVALID")
        return rm if any(rows) else None

    @staticmethod
    def _apply_reply_keyboard(st: _ChatState, params: dict[str, Any]) -> None:
        rm = params.get("reply_markup")
        if isinstance(rm, dict):
            if "keyboard" in rm:
                st.reply_keyboard = rm
            elif rm.get("remove_keyboard"):
                st.reply_keyboard = None

    def _new_message(
        self, st: _ChatState, params: dict[str, Any], content: dict[str, Any]
    ) -> dict[str, Any]:
        inline = self._inline_markup(params)
        msg: dict[str, Any] = {
            "message_id": st.next_message_id,
            "from": self.bot_user,
            "chat": st.chat,
            "date": int(time.time()),
        }
        msg.update(content)
        if inline is not None:
            msg["reply_markup"] = inline
        st.next_message_id += 1
        st.messages[msg["message_id"]] = msg
        if self.max_messages_per_chat is not None:
            while len(st.messages) > self.max_messages_per_chat:
                st.messages.popitem(last=False)
        self._apply_reply_keyboard(st, params)
        return msg

    def _text_content(self, params: dict[str, Any], key: str, limit: int) -> dict[str, Any]:
        text, ents = self._format(params, key, required=key == "text", limit=limit)
        content: dict[str, Any] = {}
        if text:
            content[key] = text
            if ents:
                content["entities" if key == "text" else "caption_entities"] = ents
        return content

    def _existing(self, params: dict[str, Any], what: str) -> tuple[_ChatState, int, dict]:
        st = self._target(params)
        mid = _as_int(params.get("message_id"))
        msg = st.messages.get(mid) if mid is not None else None
        if msg is None:
            raise _bad(f"message to {what} not found")
        return st, mid, msg  # type: ignore[return-value]

    def _replace(self, st: _ChatState, mid: int, old: dict, changes: dict) -> dict[str, Any]:
        drop = {"reply_markup", "edit_date", *changes}
        new = {k: v for k, v in old.items() if k not in drop}
        new.update({k: v for k, v in changes.items() if v is not None})
        new["edit_date"] = int(time.time())
        st.messages[mid] = new
        return new

    def _file_param(self, params: dict[str, Any], key: str, kind: str) -> TgFile:
        value = params.get(key)
        if isinstance(value, TgFile):
            return value
        if isinstance(value, str) and value:
            known = self.files.get(value)
            if known is not None:
                return known
            if value.startswith(("http://", "https://")):
                name = value.rstrip("/").rsplit("/", 1)[-1] or kind
                return self.register_file(b"", filename=name)
            raise _bad("wrong file identifier/HTTP URL specified")
        raise _bad(f"there is no {kind} in the request")

    # ---------------------------------------------------------------- Bot API methods

    def _m_get_me(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _m_get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = _as_int(params.get("offset"), 0) or 0
        limit = min(max(_as_int(params.get("limit"), 100) or 100, 1), 100)
        timeout = max(float(params.get("timeout") or 0), 0.0)
        self._poll_generation += 1
        generation = self._poll_generation
        self._wake_pollers()  # a previous long poll is terminated with 409, like Telegram
        if offset < 0:
            while len(self._pending) > -offset:
                self._pending.popleft()
        elif offset:
            while self._pending and int(self._pending[0]["update_id"]) < offset:
                self._pending.popleft()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._pending and not self._closing:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await wait_event(self._pollers_event, remaining)
            if generation != self._poll_generation:
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one "
                    "bot instance is running",
                )
        return list(itertools.islice(self._pending, limit))

    def _m_delete_webhook(self, params: dict[str, Any]) -> bool:
        self.webhook_url = ""
        if params.get("drop_pending_updates"):
            self._pending.clear()
        return True

    def _m_set_webhook(self, params: dict[str, Any]) -> bool:
        url = params.get("url") or ""
        if url and not str(url).startswith("https://"):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        self.webhook_url = str(url)
        if params.get("drop_pending_updates"):
            self._pending.clear()
        return True

    def _m_get_webhook_info(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }

    def _m_log_out(self, params: dict[str, Any]) -> bool:
        return True

    def _m_close(self, params: dict[str, Any]) -> bool:
        return True

    @staticmethod
    def _commands_key(params: dict[str, Any]) -> str:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps([scope, params.get("language_code") or ""], sort_keys=True)

    def _m_set_my_commands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _bad("can't parse commands JSON object")
        for c in commands:
            name = c.get("command", "") if isinstance(c, dict) else ""
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(name)):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(str(c.get("description", ""))) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands[self._commands_key(params)] = commands
        return True

    def _m_get_my_commands(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        return self.commands.get(self._commands_key(params), [])

    def _m_delete_my_commands(self, params: dict[str, Any]) -> bool:
        self.commands.pop(self._commands_key(params), None)
        return True

    def _m_set_chat_menu_button(self, params: dict[str, Any]) -> bool:
        self.menu_buttons[str(params.get("chat_id", ""))] = params.get("menu_button") or {
            "type": "default"
        }
        return True

    def _m_get_chat_menu_button(self, params: dict[str, Any]) -> Any:
        return self.menu_buttons.get(str(params.get("chat_id", "")), {"type": "commands"})

    def _m_set_my_description(self, params: dict[str, Any]) -> bool:
        return True

    def _m_set_my_short_description(self, params: dict[str, Any]) -> bool:
        return True

    def _m_set_my_name(self, params: dict[str, Any]) -> bool:
        return True

    def _m_get_chat(self, params: dict[str, Any]) -> dict[str, Any]:
        st = self._target(params)
        return {**st.chat, "accent_color_id": 0, "max_reaction_count": 11}

    def _m_send_chat_action(self, params: dict[str, Any]) -> bool:
        self._target(params)
        if not params.get("action"):
            raise _bad("wrong parameter action in request")
        return True

    def _m_send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        st = self._target(params)
        content = self._text_content(params, "text", 4096)
        return self._new_message(st, params, content)

    def _m_edit_message_text(self, params: dict[str, Any]) -> Any:
        if params.get("inline_message_id"):
            self._format(params, "text", required=True, limit=4096)
            return True
        st, mid, old = self._existing(params, "edit")
        if "text" not in old:
            raise _bad("there is no text in the message to edit")
        text, ents = self._format(params, "text", required=True, limit=4096)
        inline = self._inline_markup(params)
        if (
            old.get("text") == text
            and old.get("entities", []) == ents
            and old.get("reply_markup") == inline
        ):
            raise _bad(_NOT_MODIFIED)
        return self._replace(
            st, mid, old, {"text": text, "entities": ents or None, "reply_markup": inline}
        )

    def _m_edit_message_caption(self, params: dict[str, Any]) -> Any:
        if params.get("inline_message_id"):
            return True
        st, mid, old = self._existing(params, "edit")
        if "text" in old:
            raise _bad("there is no caption in the message to edit")
        caption, ents = self._format(params, "caption", required=False, limit=1024)
        inline = self._inline_markup(params)
        if (
            old.get("caption") == caption
            and old.get("caption_entities", []) == ents
            and old.get("reply_markup") == inline
        ):
            raise _bad(_NOT_MODIFIED)
        changes = {"caption": caption, "caption_entities": ents or None, "reply_markup": inline}
        return self._replace(st, mid, old, changes)

    def _m_edit_message_reply_markup(self, params: dict[str, Any]) -> Any:
        if params.get("inline_message_id"):
            return True
        st, mid, old = self._existing(params, "edit")
        inline = self._inline_markup(params)
        if old.get("reply_markup") == inline:
            raise _bad(_NOT_MODIFIED)
        return self._replace(st, mid, old, {"reply_markup": inline})

    def _m_delete_message(self, params: dict[str, Any]) -> bool:
        st = self._target(params)
        mid = _as_int(params.get("message_id"))
        if mid is None or st.messages.pop(mid, None) is None:
            raise _bad("message to delete not found")
        return True

    def _m_delete_messages(self, params: dict[str, Any]) -> bool:
        st = self._target(params)
        ids = params.get("message_ids")
        if not isinstance(ids, list) or not ids:
            raise _bad("message identifiers are not specified")
        for mid in ids:
            st.messages.pop(_as_int(mid) or 0, None)
        return True

    def _m_answer_callback_query(self, params: dict[str, Any]) -> bool:
        qid = str(params.get("callback_query_id") or "")
        if qid not in self._open_callbacks:
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        if len(str(params.get("text") or "")) > 200:
            raise _bad("MESSAGE_TOO_LONG")
        self._open_callbacks.discard(qid)
        return True

    def _m_send_document(self, params: dict[str, Any]) -> dict[str, Any]:
        st = self._target(params)
        f = self._file_param(params, "document", "document")
        document = {
            "file_id": f.file_id,
            "file_unique_id": f.file_unique_id,
            "file_name": params.get("filename") or f.filename or "document",
            "mime_type": f.mime_type or "application/octet-stream",
            "file_size": f.size,
        }
        content = {"document": document, **self._text_content(params, "caption", 1024)}
        return self._new_message(st, params, content)

    def _m_send_photo(self, params: dict[str, Any]) -> dict[str, Any]:
        st = self._target(params)
        f = self._file_param(params, "photo", "photo")
        width, height = _image_size(f.content)
        photo = [
            {
                "file_id": f.file_id,
                "file_unique_id": f.file_unique_id,
                "width": width,
                "height": height,
                "file_size": f.size,
            }
        ]
        content = {"photo": photo, **self._text_content(params, "caption", 1024)}
        return self._new_message(st, params, content)

    @staticmethod
    def _location(params: dict[str, Any]) -> dict[str, float]:
        try:
            lat, lon = float(params["latitude"]), float(params["longitude"])
        except (KeyError, TypeError, ValueError):
            raise _bad("wrong latitude or longitude") from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise _bad("wrong latitude or longitude")
        return {"latitude": lat, "longitude": lon}

    def _m_send_location(self, params: dict[str, Any]) -> dict[str, Any]:
        st = self._target(params)
        return self._new_message(st, params, {"location": self._location(params)})

    def _m_send_venue(self, params: dict[str, Any]) -> dict[str, Any]:
        st = self._target(params)
        location = self._location(params)
        if not params.get("title") or not params.get("address"):
            raise _bad("venue title and address must be non-empty")
        venue = {"location": location, "title": params["title"], "address": params["address"]}
        for key in ("foursquare_id", "foursquare_type", "google_place_id", "google_place_type"):
            if params.get(key):
                venue[key] = params[key]
        return self._new_message(st, params, {"venue": venue, "location": location})

    def _m_get_file(self, params: dict[str, Any]) -> dict[str, Any]:
        f = self.files.get(str(params.get("file_id") or ""))
        if f is None:
            raise _bad("invalid file_id")
        return {
            "file_id": f.file_id,
            "file_unique_id": f.file_unique_id,
            "file_size": f.size,
            "file_path": f.file_path,
        }


def _image_size(content: bytes) -> tuple[int, int]:
    if content[:8] == b"\x89PNG\r\n\x1a\n" and len(content) >= 24:
        return int.from_bytes(content[16:20], "big"), int.from_bytes(content[20:24], "big")
    return 800, 600
