"""A local stand-in for the Telegram Bot API over HTTP, for tests, the offline demo and benchmarks.

The real python-telegram-bot ``Application`` talks to it exactly as it would to
``api.telegram.org``: build it with ``.base_url(api.base_url).base_file_url(api.base_file_url)``.
PTB sends ``application/x-www-form-urlencoded`` bodies (``multipart/form-data`` when uploading
files); every non-string value (numbers, booleans, ``reply_markup`` …) is a JSON-encoded string.
JSON bodies are accepted as well.

Besides the Bot API (``/bot<token>/<method>``) the server offers a small control API for a load
driver in another process (``/_standin/update``, ``/_standin/wait``, ``/_standin/stats``,
``/_standin/fail``) and serves uploaded files under ``/file/bot<token>/<path>``.

Run standalone with ``python -m bot.standin --port 8081``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import html
import ipaddress
import itertools
import json
import re
import signal
import socket
import sys
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import EllipsisType
from typing import Any

from aiohttp import web

__all__ = [
    "RESPONSE_METHODS",
    "TINY_PNG",
    "BotApiStandIn",
    "Call",
    "ChatDriver",
    "StandInTimeoutError",
    "TgFile",
    "TgUser",
    "callback_query",
    "contact_message",
    "document_message",
    "forbid_network",
    "group_chat",
    "location_message",
    "my_chat_member",
    "photo_message",
    "sticker_message",
    "text_message",
    "voice_message",
]

# --------------------------------------------------------------------------------------------
# Data classes
# --------------------------------------------------------------------------------------------


class StandInTimeoutError(AssertionError):
    """The bot did not make the expected calls within the timeout."""


@dataclass
class TgUser:
    """A simulated Telegram user; their private chat has the same id."""

    id: int
    first_name: str = "Test"
    language_code: str | None = "vi"
    username: str | None = None
    last_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The Telegram ``User`` object of this person."""
        d: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            d["last_name"] = self.last_name
        if self.username:
            d["username"] = self.username
        if self.language_code:
            d["language_code"] = self.language_code
        return d

    def chat(self) -> dict[str, Any]:
        """The Telegram ``Chat`` object of this person's private chat with the bot."""
        d: dict[str, Any] = {"id": self.id, "type": "private", "first_name": self.first_name}
        if self.last_name:
            d["last_name"] = self.last_name
        if self.username:
            d["username"] = self.username
        return d


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


class _ApiError(Exception):
    """An error answer of the Bot API."""

    def __init__(self, code: int, description: str, parameters: dict | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def answer(self) -> dict[str, Any]:
        d: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            d["parameters"] = self.parameters
        return d


def _bad(description: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {description}")


# --------------------------------------------------------------------------------------------
# Helpers: utf-16 lengths, parameter decoding, formatting (parse_mode)
# --------------------------------------------------------------------------------------------


def _len16(s: str) -> int:
    return len(s) + sum(1 for ch in s if ord(ch) > 0xFFFF)


def _byte_offset(s: str, i: int) -> int:
    return len(s[:i].encode("utf-8"))


# Parameters whose values are plain strings and must never be JSON-decoded.
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


class _ParseError(Exception):
    pass


_HTML_TAGS = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline",
    "ins": "underline", "s": "strikethrough", "strike": "strikethrough",
    "del": "strikethrough", "tg-spoiler": "spoiler", "span": "spoiler", "a": "text_link",
    "code": "code", "pre": "pre", "blockquote": "blockquote", "tg-emoji": "custom_emoji",
}  # fmt: skip
_HTML_ATTR = re.compile(r"""([a-zA-Z_-]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?""")
_HTML_ENTITY = re.compile(r"&(lt|gt|amp|quot|#\d{1,7}|#[xX][0-9a-fA-F]{1,6});")


class _Builder:
    """Accumulates plain text and entities (offsets in UTF-16 code units)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0
        self.entities: list[dict[str, Any]] = []

    def add(self, s: str) -> None:
        self.parts.append(s)
        self.pos += _len16(s)

    def entity(self, etype: str, start: int, **extra: Any) -> None:
        if self.pos > start:
            e = {"type": etype, "offset": start, "length": self.pos - start}
            e.update({k: v for k, v in extra.items() if v is not None})
            self.entities.append(e)

    def result(self) -> tuple[str, list[dict[str, Any]]]:
        ents = sorted(self.entities, key=lambda e: (e["offset"], -e["length"]))
        return "".join(self.parts), ents


def _parse_html(src: str) -> tuple[str, list[dict[str, Any]]]:
    out = _Builder()
    stack: list[tuple[str, str, int, dict[str, str]]] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c == "<":
            j = src.find(">", i)
            if j == -1:
                raise _ParseError(f"Unclosed start tag at byte offset {_byte_offset(src, i)}")
            inner = src[i + 1 : j]
            if inner.startswith("/"):
                name = inner[1:].strip().lower()
                if not stack:
                    raise _ParseError(f"Unexpected end tag at byte offset {_byte_offset(src, i)}")
                tag, etype, start, attrs = stack.pop()
                if name != tag:
                    raise _ParseError(
                        f"Unmatched end tag at byte offset {_byte_offset(src, i)}, "
                        f'expected "</{tag}>", found "</{name}>"'
                    )
                cls = attrs.get("class", "")
                if (
                    tag == "code"
                    and stack
                    and stack[-1][0] == "pre"
                    and cls.startswith("language-")
                ):
                    stack[-1][3]["language"] = cls[len("language-") :]
                elif etype == "text_link":
                    out.entity(etype, start, url=attrs.get("href", ""))
                elif etype == "pre":
                    out.entity(etype, start, language=attrs.get("language"))
                elif etype == "custom_emoji":
                    out.entity(etype, start, custom_emoji_id=attrs.get("emoji-id"))
                else:
                    out.entity(etype, start)
            else:
                m = re.match(r"([a-zA-Z][\w-]*)(.*)$", inner, re.S)
                name = m.group(1).lower() if m else inner.split(" ", 1)[0]
                if not m or name not in _HTML_TAGS:
                    raise _ParseError(
                        f'Unsupported start tag "{name}" at byte offset {_byte_offset(src, i)}'
                    )
                attrs = {
                    a.group(1).lower(): html.unescape(a.group(2) or a.group(3) or a.group(4) or "")
                    for a in _HTML_ATTR.finditer(m.group(2))
                }
                etype = _HTML_TAGS[name]
                if name == "span" and attrs.get("class") != "tg-spoiler":
                    raise _ParseError(
                        f'Tag "span" must have class "tg-spoiler" at byte offset '
                        f"{_byte_offset(src, i)}"
                    )
                if name == "blockquote" and "expandable" in attrs:
                    etype = "expandable_blockquote"
                stack.append((name, etype, out.pos, attrs))
            i = j + 1
            continue
        if c == "&":
            m = _HTML_ENTITY.match(src, i)
            if m:
                out.add(html.unescape(m.group(0)))
                i = m.end()
                continue
        j = i + 1
        while j < n and src[j] not in "<&":
            j += 1
        out.add(src[i:j])
        i = j
    if stack:
        raise _ParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return out.result()


_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_TOGGLES = (
    ("||", "spoiler", "Spoiler"),
    ("__", "underline", "Underline"),
    ("*", "bold", "Bold"),
    ("_", "italic", "Italic"),
    ("~", "strikethrough", "Strikethrough"),
)


def _md_code(src: str, i: int, fence: str, escapes: bool) -> tuple[str, int]:
    """Read code starting after ``fence`` at ``i``; return (content, index after closing)."""
    buf: list[str] = []
    j, n = i, len(src)
    while j < n:
        if escapes and src[j] == "\\" and j + 1 < n:
            buf.append(src[j + 1])
            j += 2
            continue
        if src.startswith(fence, j):
            return "".join(buf), j + len(fence)
        buf.append(src[j])
        j += 1
    raise _ParseError("")


def _split_language(content: str) -> tuple[str, str | None]:
    if "\n" in content:
        first, rest = content.split("\n", 1)
        if first and not any(ch.isspace() for ch in first):
            return rest, first
        if not first:
            return rest, None
    return content, None


def _parse_markdown_v2(src: str) -> tuple[str, list[dict[str, Any]]]:
    out = _Builder()
    stack: list[tuple[str, str, int, int]] = []  # (kind, name, start, src index)
    i, n = 0, len(src)
    line_start = True
    while i < n:
        c = src[i]
        if c == "\\":
            if i + 1 < n and 0 < ord(src[i + 1]) <= 126:
                out.add(src[i + 1])
                i += 2
                line_start = False
                continue
            raise _ParseError(
                "Character '\\' is reserved and must be escaped with the preceding '\\'"
            )
        if c == "`":
            fence = "```" if src.startswith("```", i) else "`"
            try:
                content, end = _md_code(src, i + len(fence), fence, escapes=True)
            except _ParseError:
                kind = "Pre" if fence == "```" else "Code"
                raise _ParseError(
                    f"Can't find end of {kind} entity at byte offset {_byte_offset(src, i)}"
                ) from None
            start = out.pos
            if fence == "```":
                content, lang = _split_language(content)
                out.add(content)
                out.entity("pre", start, language=lang)
            else:
                out.add(content)
                out.entity("code", start)
            i = end
            line_start = False
            continue
        if c == ">" and line_start:
            i += 1
            continue
        toggled = False
        for marker, kind, name in _MDV2_TOGGLES:
            if src.startswith(marker, i):
                if stack and stack[-1][0] == kind:
                    _, _, start, _ = stack.pop()
                    out.entity(kind, start)
                else:
                    stack.append((kind, name, out.pos, i))
                i += len(marker)
                toggled = True
                break
        if toggled:
            line_start = False
            continue
        if c == "[":
            stack.append(("link", "TextUrl", out.pos, i))
            i += 1
            continue
        if c == "]" and stack and stack[-1][0] == "link":
            _, _, start, src_i = stack.pop()
            if i + 1 >= n or src[i + 1] != "(":
                raise _ParseError(
                    f"Can't find end of a URL for the entity at byte offset "
                    f"{_byte_offset(src, src_i)}"
                )
            try:
                url, end = _md_code(src, i + 2, ")", escapes=True)
            except _ParseError:
                raise _ParseError(
                    f"Can't find end of a URL at byte offset {_byte_offset(src, i + 1)}"
                ) from None
            out.entity("text_link", start, url=url)
            i = end
            continue
        if c in _MDV2_RESERVED:
            raise _ParseError(
                f"Character '{c}' is reserved and must be escaped with the preceding '\\'"
            )
        out.add(c)
        line_start = c == "\n"
        i += 1
    if stack:
        _, name, _, src_i = stack[-1]
        raise _ParseError(
            f"Can't find end of {name} entity at byte offset {_byte_offset(src, src_i)}"
        )
    return out.result()


def _parse_markdown(src: str) -> tuple[str, list[dict[str, Any]]]:
    out = _Builder()
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c == "\\" and i + 1 < n and src[i + 1] in "*_`[":
            out.add(src[i + 1])
            i += 2
            continue
        if c in "*_`[":
            fence = "```" if src.startswith("```", i) else ("]" if c == "[" else c)
            opener = 3 if fence == "```" else 1
            j = src.find(fence, i + opener)
            if j == -1:
                raise _ParseError(
                    f"Can't find end of the entity starting at byte offset {_byte_offset(src, i)}"
                )
            content = src[i + opener : j]
            start = out.pos
            end = j + len(fence)
            if fence == "```":
                content, lang = _split_language(content)
                out.add(content)
                out.entity("pre", start, language=lang)
            elif c == "[":
                out.add(content)
                if end < n and src[end] == "(":
                    k = src.find(")", end)
                    if k != -1:
                        out.entity("text_link", start, url=src[end + 1 : k])
                        end = k + 1
            else:
                out.add(content)
                out.entity({"*": "bold", "_": "italic", "`": "code"}[c], start)
            i = end
            continue
        out.add(c)
        i += 1
    return out.result()


_PARSERS: dict[str, Callable[[str], tuple[str, list[dict[str, Any]]]]] = {
    "html": _parse_html,
    "markdownv2": _parse_markdown_v2,
    "markdown": _parse_markdown,
}


def _strip(text: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Telegram trims leading and trailing whitespace of texts; shift entities accordingly."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    lead = _len16(text[: len(text) - len(text.lstrip())])
    total = _len16(stripped)
    fixed = []
    for e in entities:
        start = max(e["offset"] - lead, 0)
        end = min(e["offset"] - lead + e["length"], total)
        if end > start:
            fixed.append({**e, "offset": start, "length": end - start})
    return stripped, fixed


# --------------------------------------------------------------------------------------------
# Update factories
# --------------------------------------------------------------------------------------------

_incoming_message_ids = itertools.count(1_000_001)
_callback_ids = itertools.count(1)
_file_ids = itertools.count(1)
_COMMAND = re.compile(r"^/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,64})?(?=\s|$)")

# A valid 1×1 PNG, used as the content of simulated photos.
TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63f8cfc0f01f0005000201e2217bc40000000049454e44ae426082"
)


_TINY_PNG_SIZE = len(TINY_PNG)


def _message(user: TgUser, **content: Any) -> dict[str, Any]:
    msg = {
        "message_id": next(_incoming_message_ids),
        "from": user.to_dict(),
        "chat": user.chat(),
        "date": int(time.time()),
    }
    msg.update(content)
    return {"message": msg}


def _new_file_id(kind: str) -> tuple[str, str]:
    n = next(_file_ids)
    return f"standin-{kind}-{n}", f"u{kind[:2]}{n}"


def text_message(user: TgUser, text: str) -> dict[str, Any]:
    """An update with a text message (a ``bot_command`` entity when it starts with ``/``)."""
    content: dict[str, Any] = {"text": text}
    m = _COMMAND.match(text)
    if m:
        content["entities"] = [{"type": "bot_command", "offset": 0, "length": _len16(m.group(0))}]
    return _message(user, **content)


def callback_query(user: TgUser, message: dict[str, Any] | None, data: str) -> dict[str, Any]:
    """An update with a callback query for ``data`` pressed on the bot's ``message``."""
    cq: dict[str, Any] = {
        "id": f"cq{next(_callback_ids)}",
        "from": user.to_dict(),
        "chat_instance": f"ci{user.id}",
        "data": data,
    }
    if message is not None:
        cq["message"] = message
    return {"callback_query": cq}


def contact_message(
    user: TgUser,
    phone_number: str,
    user_id: int | EllipsisType | None = ...,
    *,
    first_name: str | None = None,
) -> dict[str, Any]:
    """A shared contact; ``user_id`` defaults to the sender (``None`` omits it)."""
    contact: dict[str, Any] = {
        "phone_number": phone_number,
        "first_name": first_name or user.first_name,
    }
    uid = user.id if user_id is ... else user_id
    if uid is not None:
        contact["user_id"] = uid
    return _message(user, contact=contact)


def location_message(user: TgUser, lat: float, lon: float) -> dict[str, Any]:
    """A shared location."""
    return _message(user, location={"latitude": lat, "longitude": lon})


def sticker_message(user: TgUser, *, emoji: str = "👍", file_id: str | None = None) -> dict:
    """A sticker message."""
    fid, uid = (file_id, f"u{file_id}") if file_id else _new_file_id("sticker")
    sticker = {
        "file_id": fid, "file_unique_id": uid, "type": "regular", "width": 512,
        "height": 512, "is_animated": False, "is_video": False, "emoji": emoji,
        "file_size": 1024,
    }  # fmt: skip
    return _message(user, sticker=sticker)


def photo_message(
    user: TgUser,
    *,
    caption: str | None = None,
    file_id: str | None = None,
    file_size: int = _TINY_PNG_SIZE,
) -> dict[str, Any]:
    """A photo message (one size)."""
    fid, uid = (file_id, f"u{file_id}") if file_id else _new_file_id("photo")
    photo = [
        {"file_id": fid, "file_unique_id": uid, "width": 1, "height": 1, "file_size": file_size}
    ]
    content: dict[str, Any] = {"photo": photo}
    if caption is not None:
        content["caption"] = caption
    return _message(user, **content)


def voice_message(
    user: TgUser, *, duration: int = 2, file_id: str | None = None, file_size: int = 4
) -> dict[str, Any]:
    """A voice message."""
    fid, uid = (file_id, f"u{file_id}") if file_id else _new_file_id("voice")
    voice = {
        "file_id": fid, "file_unique_id": uid, "duration": duration,
        "mime_type": "audio/ogg", "file_size": file_size,
    }  # fmt: skip
    return _message(user, voice=voice)


def document_message(
    user: TgUser,
    *,
    file_name: str = "report.pdf",
    mime_type: str = "application/pdf",
    file_size: int = 1234,
    caption: str | None = None,
    file_id: str | None = None,
) -> dict[str, Any]:
    """A document message."""
    fid, uid = (file_id, f"u{file_id}") if file_id else _new_file_id("document")
    doc = {
        "file_id": fid, "file_unique_id": uid, "file_name": file_name,
        "mime_type": mime_type, "file_size": file_size,
    }  # fmt: skip
    content: dict[str, Any] = {"document": doc}
    if caption is not None:
        content["caption"] = caption
    return _message(user, **content)


def group_chat(chat_id: int, title: str = "Group", kind: str = "group") -> dict[str, Any]:
    """A Telegram ``Chat`` of a group (``supergroup``, ``channel``); their ids are negative."""
    return {"id": chat_id, "type": kind, "title": title}


def my_chat_member(
    user: TgUser, chat: dict[str, Any], bot: dict[str, Any], old: str = "left", new: str = "member"
) -> dict[str, Any]:
    """``user`` changed the bot's membership of ``chat`` (by default: added it)."""
    return {
        "my_chat_member": {
            "chat": chat,
            "from": user.to_dict(),
            "date": int(time.time()),
            "old_chat_member": {"status": old, "user": bot},
            "new_chat_member": {"status": new, "user": bot},
        }
    }


def _update_message(update: dict[str, Any]) -> dict[str, Any] | None:
    for key in ("message", "edited_message", "channel_post", "edited_channel_post"):
        if isinstance(update.get(key), dict):
            return update[key]
    return None


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------

#: Methods that count as "the bot answered this chat" (``sendChatAction`` does not).
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


class _ChatState:
    __slots__ = (
        "blocked", "calls", "chat", "event", "last_activity", "messages", "next_message_id",
        "reply_keyboard",
    )  # fmt: skip

    def __init__(self, chat_id: int | str, max_calls: int | None) -> None:
        if isinstance(chat_id, int) and chat_id > 0:
            self.chat: dict[str, Any] = {"id": chat_id, "type": "private", "first_name": "Test"}
        elif isinstance(chat_id, int):
            self.chat = {"id": chat_id, "type": "group", "title": "Group"}
        else:
            self.chat = {"id": -1000000000001, "type": "channel", "title": chat_id}
        self.messages: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self.calls: deque[Call] = deque(maxlen=max_calls)
        self.event = asyncio.Event()
        self.last_activity = 0.0
        self.next_message_id = 1
        self.reply_keyboard: dict[str, Any] | None = None
        self.blocked = False

    def calls_after(self, seq: int) -> list[Call]:
        out: list[Call] = []
        for call in reversed(self.calls):
            if call.seq <= seq:
                break
            out.append(call)
        out.reverse()
        return out

    def notify(self) -> None:
        ev, self.event = self.event, asyncio.Event()
        ev.set()


async def _wait_event(ev: asyncio.Event, seconds: float) -> None:
    if seconds <= 0:
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await ev.wait()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, TgFile):
        return obj.to_json()
    if isinstance(obj, Call):
        return obj.to_json()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, bytes):
        return f"<{len(obj)} bytes>"
    return str(obj)


def _json_response(data: Any, status: int = 200) -> web.Response:
    body = json.dumps(data, ensure_ascii=False, default=_json_default).encode("utf-8")
    return web.Response(body=body, status=status, content_type="application/json")


def _is_response(call: Call) -> bool:
    return call.method in RESPONSE_METHODS


class BotApiStandIn:
    """An in-process HTTP server that behaves like the Telegram Bot API for one bot."""

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
    ) -> None:
        self.bot_username = bot_username
        self.bot_id = bot_id
        self.bot_user: dict[str, Any] = {
            "id": bot_id,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
        }
        self.host = host
        self.port = port
        self.keep_calls = keep_calls
        if not keep_calls and max_calls_per_chat is None:
            max_calls_per_chat = 100
        if not keep_calls and max_messages_per_chat is None:
            max_messages_per_chat = 100
        self.max_calls_per_chat = max_calls_per_chat
        self.max_messages_per_chat = max_messages_per_chat
        self.strict_chats = strict_chats
        self.calls: list[Call] = []
        self.files: dict[str, TgFile] = {}
        self._files_by_path: dict[str, TgFile] = {}
        self._file_counter = itertools.count(1)
        self.commands: dict[str, list[dict[str, Any]]] = {}
        self.menu_buttons: dict[str, Any] = {}
        self.webhook_url = ""
        self._chats: dict[int | str, _ChatState] = {}
        self._pending: deque[dict[str, Any]] = deque()
        self._last_update_id = 0
        self._updates_pushed = 0
        self._updates_event = asyncio.Event()
        self._calls_event = asyncio.Event()
        self._poll_generation = 0
        self._seq = 0
        self._method_counts: Counter[str] = Counter()
        self._error_count = 0
        self._failures: dict[str, deque[_ApiError]] = {}
        self._callback_chats: OrderedDict[str, int | str] = OrderedDict()
        self._open_callbacks: set[str] = set()
        self._cursors: dict[int | str, int] = {}
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            m.lower(): getattr(self, "_m_" + re.sub(r"(?<!^)(?=[A-Z])", "_", m).lower())
            for m in _CANONICAL
        }

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start serving on ``host``/``port`` (port 0 picks a free port)."""
        app = web.Application(client_max_size=60 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_bot)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        app.router.add_post("/_standin/update", self._handle_push)
        app.router.add_get("/_standin/wait", self._handle_wait)
        app.router.add_get("/_standin/stats", self._handle_stats)
        app.router.add_post("/_standin/fail", self._handle_fail)
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

    async def __aenter__(self) -> BotApiStandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """Root URL of the server, e.g. ``http://127.0.0.1:PORT``."""
        if not self.port:
            raise RuntimeError("BotApiStandIn is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """Value for ``ApplicationBuilder.base_url`` (PTB appends the token)."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        """Value for ``ApplicationBuilder.base_file_url``."""
        return f"{self.url}/file/bot"

    @property
    def seq(self) -> int:
        """Sequence number of the most recent recorded call (0 before any call)."""
        return self._seq

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
        """Make the next ``times`` calls of ``method`` answer a Telegram error."""
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
            }.get(error_code, "Error")
        if error_code == 429:
            params = {"retry_after": retry_after}
        queue = self._failures.setdefault(method.lower(), deque())
        for _ in range(times):
            queue.append(_ApiError(error_code, description, params))

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
            file_id, unique = _new_file_id("file")
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

    def chat_calls(self, chat_id: int | str, after_seq: int = 0) -> list[Call]:
        """Calls attributed to a chat with ``seq > after_seq`` (the kept tail only)."""
        st = self._chats.get(_chat_key(chat_id) or 0)
        return st.calls_after(after_seq) if st else []

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
            await _wait_event(self._calls_event, remaining)

    async def wait_chat(
        self,
        chat_id: int | str,
        *,
        after_seq: int,
        timeout: float = 10.0,  # noqa: ASYNC109
        settle: float = 0.0,
        require: Callable[[Call], bool] = _is_response,
    ) -> list[Call]:
        """Wait for a call to a chat (``seq > after_seq``) matching ``require``, then for quiet.

        Returns every call to the chat after ``after_seq`` (an empty or non-matching list on
        timeout). ``settle`` is the quiet time the chat must have before returning.
        """
        key = _chat_key(chat_id)
        if key is None:
            raise ValueError("chat_id is required")
        st = self._chat(key)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not any(require(c) for c in st.calls_after(after_seq)):
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closing:
                return st.calls_after(after_seq)
            await _wait_event(st.event, remaining)
        while settle > 0 and not self._closing:
            quiet_for = loop.time() - st.last_activity
            if quiet_for >= settle:
                break
            await _wait_event(st.event, settle - quiet_for)
        return st.calls_after(after_seq)

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

    def _chat(self, key: int | str) -> _ChatState:
        st = self._chats.get(key)
        if st is None:
            st = self._chats[key] = _ChatState(key, self.max_calls_per_chat)
        return st

    def _wake_pollers(self) -> None:
        ev, self._updates_event = self._updates_event, asyncio.Event()
        ev.set()

    def _wake_calls(self) -> None:
        ev, self._calls_event = self._calls_event, asyncio.Event()
        ev.set()

    def _note_update(self, update: dict[str, Any]) -> None:
        msg = _update_message(update)
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

    def _record(
        self,
        method: str,
        params: dict[str, Any],
        result: Any,
        chat: int | str | None,
        error: _ApiError | None = None,
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
        if self.keep_calls:
            self.calls.append(call)
        if chat is not None:
            st = self._chat(chat)
            st.calls.append(call)
            st.last_activity = asyncio.get_running_loop().time()
            st.notify()
        self._wake_calls()
        return call

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
        error: _ApiError | None = None
        result: Any = None
        try:
            if token and not _TOKEN.match(token):
                raise _ApiError(401, "Unauthorized")
            failures = self._failures.get(lower)
            if failures:
                raise failures.popleft()
            handler = self._handlers.get(lower)
            if handler is None:
                raise _ApiError(404, "Not Found")
            result = handler(params)
            if asyncio.iscoroutine(result):
                result = await result
        except _ApiError as exc:
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
        file_id, _ = _new_file_id(kind)
        return self.register_file(content, file_id=file_id, filename=filename, mime_type=mime_type)

    # ---------------------------------------------------------------- HTTP handlers

    async def _handle_bot(self, request: web.Request) -> web.Response:
        try:
            params = await self._read_params(request)
        except ValueError as exc:
            return _json_response(_bad(f"can't parse request: {exc}").answer(), 400)
        call = await self.call(request.match_info["method"], params, request.match_info["token"])
        if call.error:
            return _json_response(call.error, int(call.error["error_code"]))
        return _json_response({"ok": True, "result": call.result})

    async def _handle_file(self, request: web.Request) -> web.Response:
        f = self._files_by_path.get(request.match_info["path"])
        if f is not None:
            return web.Response(
                body=f.content, content_type=f.mime_type or "application/octet-stream"
            )
        return _json_response({"ok": False, "error_code": 404, "description": "Not Found"}, 404)

    async def _handle_push(self, request: web.Request) -> web.Response:
        update = await request.json()
        if not isinstance(update, dict):
            return _json_response({"error": "update must be a JSON object"}, 400)
        seq = self._seq
        uid = self.push_update(update)
        return _json_response({"update_id": uid, "seq": seq})

    async def _handle_wait(self, request: web.Request) -> web.Response:
        q = request.query
        chat = _chat_key(q.get("chat_id"))
        if chat is None:
            return _json_response({"error": "chat_id is required"}, 400)
        after = _as_int(q.get("after"), 0) or 0
        timeout = float(q.get("timeout", "10"))
        settle = float(q.get("settle", "0"))
        calls = await self.wait_chat(chat, after_seq=after, timeout=timeout, settle=settle)
        return _json_response({"calls": [c.to_json() for c in calls], "seq": self._seq})

    async def _handle_stats(self, request: web.Request) -> web.Response:
        return _json_response(self.stats())

    async def _handle_fail(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.fail_next(
            body["method"],
            int(body.get("error_code", 429)),
            int(body.get("retry_after", 1)),
            description=body.get("description"),
            times=int(body.get("times", 1)),
        )
        return _json_response({"ok": True})

    # ---------------------------------------------------------------- message helpers

    def _target(self, params: dict[str, Any]) -> _ChatState:
        key = _chat_key(params.get("chat_id"))
        if key is None:
            raise _bad("chat_id is empty")
        if self.strict_chats and key not in self._chats:
            raise _bad("chat not found")
        st = self._chat(key)
        if st.blocked:
            raise _ApiError(403, "Forbidden: bot was blocked by the user")
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
        mode = params.get("parse_mode")
        if isinstance(entities, list):
            text, ents = raw, entities
        elif mode:
            parser = _PARSERS.get(str(mode).lower())
            if parser is None:
                raise _bad(f"unsupported parse_mode {mode}")
            try:
                text, ents = parser(raw)
            except _ParseError as exc:
                raise _bad(f"can't parse entities: {exc}") from None
        else:
            text, ents = raw, []
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
            raise _ApiError(
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
            await _wait_event(self._updates_event, remaining)
            if generation != self._poll_generation:
                raise _ApiError(
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


# --------------------------------------------------------------------------------------------
# ChatDriver
# --------------------------------------------------------------------------------------------


def _flatten_labels(rows: Iterable[Iterable[Any]]) -> list[str]:
    labels = []
    for row in rows:
        for button in row:
            labels.append(button if isinstance(button, str) else str(button.get("text", "")))
    return labels


class ChatDriver:
    """One simulated person chatting with the bot through a :class:`BotApiStandIn`."""

    def __init__(
        self,
        api: BotApiStandIn,
        user: TgUser | int,
        *,
        settle: float = 0.05,
        timeout: float = 10.0,
        quiet_timeout: float = 0.3,
        strict: bool = False,
        idle: Callable[[], Awaitable[None]] | None = None,
        chat: dict[str, Any] | None = None,
    ) -> None:
        self.api = api
        # In-process bots can say when they have finished an update: better than any settle time
        self.idle = idle
        self.user = user if isinstance(user, TgUser) else TgUser(id=user)
        self.chat = chat  # a group (see group_chat) this person writes in; None: private chat
        self.settle = settle
        self.timeout = timeout
        self.quiet_timeout = quiet_timeout
        self.strict = strict

    @property
    def chat_id(self) -> int:
        """The chat's id: the group's, else the private chat's (equal to the user id)."""
        return int(self.chat["id"]) if self.chat is not None else self.user.id

    # ------------------------------------------------------------ acting

    async def push(
        self,
        update: dict[str, Any],
        *,
        expect_reply: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> list[Call]:
        """Push any update and wait for the bot's answer; return the calls to this chat."""
        after = self.api.seq
        msg = _update_message(update)
        if self.chat is not None and msg is not None:
            msg["chat"] = self.chat
        uid = self.api.push_update(update)
        if timeout is None:
            timeout = self.timeout if expect_reply else self.quiet_timeout
        calls = await self.api.wait_chat(
            self.chat_id, after_seq=after, timeout=timeout, settle=0 if self.idle else self.settle
        )
        if self.idle is not None and (calls or not expect_reply):
            if not calls:  # "no answer" means nothing once the bot has had the update
                await self._until_confirmed(uid)
            await self.idle()
            calls = self.api.chat_calls(self.chat_id, after_seq=after)
        if expect_reply and not any(_is_response(c) for c in calls):
            what = ", ".join(c.method for c in calls) or "no calls at all"
            raise StandInTimeoutError(
                f"the bot did not answer chat {self.chat_id} within {timeout}s ({what})"
            )
        if self.strict:
            failed = [c for c in calls if not c.ok]
            if failed:
                details = "; ".join(f"{c.method}: {c.error}" for c in failed)
                raise AssertionError(f"the bot made failing calls: {details}")
        return calls

    async def _until_confirmed(self, update_id: int) -> None:
        """Until the bot has taken ``update_id`` off the stand-in (confirmed it by a later poll)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while self.api.unconfirmed(update_id):
            if loop.time() > deadline:
                raise StandInTimeoutError(f"the bot never took update {update_id}")
            await asyncio.sleep(0.005)

    async def send(self, text: str, **kw: Any) -> list[Call]:
        """Send a text message (commands get a ``bot_command`` entity) and wait for the answer."""
        return await self.push(text_message(self.user, text), **kw)

    async def press(self, label_or_data: str, **kw: Any) -> list[Call]:
        """Press an inline button of the newest message with an inline keyboard."""
        msg = self._keyboard_message()
        if msg is None:
            raise AssertionError(f"no bot message with an inline keyboard in chat {self.chat_id}")
        buttons = [b for row in msg["reply_markup"]["inline_keyboard"] for b in row]
        wanted = label_or_data.casefold()
        chosen = (
            [b for b in buttons if b.get("text") == label_or_data]
            or [b for b in buttons if b.get("callback_data") == label_or_data]
            or [b for b in buttons if wanted in str(b.get("text", "")).casefold()]
        )
        available = [f"{b.get('text')!r} (data {b.get('callback_data', '-')!r})" for b in buttons]
        if not chosen:
            raise AssertionError(
                f"no button matches {label_or_data!r}; available: {', '.join(available)}"
            )
        if len(chosen) > 1 and chosen[0].get("text") != label_or_data:
            raise AssertionError(
                f"{label_or_data!r} matches several buttons: "
                f"{', '.join(repr(b.get('text')) for b in chosen)}"
            )
        button = chosen[0]
        if "callback_data" not in button:
            raise AssertionError(f"button {button.get('text')!r} has no callback_data: {button}")
        return await self.push(callback_query(self.user, msg, button["callback_data"]), **kw)

    async def press_data(
        self, data: str, message: dict[str, Any] | None = None, **kw: Any
    ) -> list[Call]:
        """Send arbitrary (possibly forged) callback data, on ``message`` or the newest one."""
        if message is None:
            message = self._keyboard_message() or self.last_message
        if message is None:
            message = {
                "message_id": 1,
                "from": self.api.bot_user,
                "chat": self.chat or self.user.chat(),
                "date": int(time.time()),
                "text": "",
            }
        return await self.push(callback_query(self.user, message, data), **kw)

    async def share_contact(self, phone: str, **kw: Any) -> list[Call]:
        """Share a phone number as a contact (the sender's own by default)."""
        user_id = kw.pop("user_id", ...)
        return await self.push(contact_message(self.user, phone, user_id), **kw)

    async def send_location(self, lat: float, lon: float, **kw: Any) -> list[Call]:
        """Share a location."""
        return await self.push(location_message(self.user, lat, lon), **kw)

    async def send_sticker(self, **kw: Any) -> list[Call]:
        """Send a sticker."""
        update = sticker_message(self.user)
        sticker = update["message"]["sticker"]
        self.api.register_file(b"RIFF\x00\x00\x00\x00WEBP", file_id=sticker["file_id"],
                               mime_type="image/webp")  # fmt: skip
        return await self.push(update, **kw)

    async def send_photo(self, caption: str | None = None, **kw: Any) -> list[Call]:
        """Send a (1×1 PNG) photo; its file can be fetched with getFile."""
        update = photo_message(self.user, caption=caption, file_size=len(TINY_PNG))
        fid = update["message"]["photo"][0]["file_id"]
        self.api.register_file(TINY_PNG, file_id=fid, mime_type="image/png")
        return await self.push(update, **kw)

    async def send_voice(self, **kw: Any) -> list[Call]:
        """Send a voice message."""
        update = voice_message(self.user)
        self.api.register_file(
            b"OggS", file_id=update["message"]["voice"]["file_id"], mime_type="audio/ogg"
        )
        return await self.push(update, **kw)

    async def send_document(
        self,
        content: bytes = b"%PDF-1.4\n%%EOF\n",
        *,
        file_name: str = "report.pdf",
        mime_type: str = "application/pdf",
        caption: str | None = None,
        **kw: Any,
    ) -> list[Call]:
        """Send a document whose bytes the bot can download."""
        update = document_message(
            self.user,
            file_name=file_name,
            mime_type=mime_type,
            file_size=len(content),
            caption=caption,
        )
        fid = update["message"]["document"]["file_id"]
        self.api.register_file(content, file_id=fid, filename=file_name, mime_type=mime_type)
        return await self.push(update, **kw)

    # ------------------------------------------------------------ observing

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Current state of the bot's messages in this chat."""
        return self.api.messages(self.chat_id)

    @property
    def last_message(self) -> dict[str, Any] | None:
        """The newest bot message in this chat (after edits), or None."""
        msgs = self.api._chats.get(self.chat_id)
        if msgs is None or not msgs.messages:
            return None
        return next(reversed(msgs.messages.values()))

    @property
    def last_text(self) -> str | None:
        """Text or caption of the newest bot message in this chat, after edits."""
        msg = self.last_message
        if msg is None:
            return None
        return msg.get("text", msg.get("caption"))

    def _keyboard_message(self) -> dict[str, Any] | None:
        st = self.api._chats.get(self.chat_id)
        if st is None:
            return None
        for msg in reversed(st.messages.values()):
            if msg.get("reply_markup", {}).get("inline_keyboard"):
                return msg
        return None

    @property
    def buttons(self) -> list[str]:
        """Labels of the newest message with an inline keyboard, flattened."""
        msg = self._keyboard_message()
        return _flatten_labels(msg["reply_markup"]["inline_keyboard"]) if msg else []

    @property
    def reply_keyboard(self) -> list[str]:
        """Labels of the reply keyboard currently shown (empty after ``remove_keyboard``)."""
        markup = self.api.reply_keyboard(self.chat_id)
        return _flatten_labels(markup.get("keyboard", [])) if markup else []

    @property
    def reply_buttons(self) -> list[dict[str, Any]]:
        """Buttons of the reply keyboard shown, as dicts (``text``, ``request_contact`` …)."""
        markup = self.api.reply_keyboard(self.chat_id)
        if not markup:
            return []
        return [
            {"text": b} if isinstance(b, str) else dict(b)
            for row in markup.get("keyboard", [])
            for b in row
        ]

    @property
    def texts(self) -> list[str]:
        """Texts/captions of the bot's current messages in this chat, oldest first."""
        return [
            m.get("text", m.get("caption"))
            for m in self.messages
            if m.get("text", m.get("caption")) is not None
        ]

    @property
    def calls(self) -> list[Call]:
        """All recorded calls attributed to this chat."""
        return self.api.chat_calls(self.chat_id)

    @property
    def callback_answers(self) -> list[str]:
        """Texts of answerCallbackQuery calls for this user's button presses ('' if none)."""
        return [
            str(c.params.get("text") or "")
            for c in self.calls
            if c.method == "answerCallbackQuery" and c.ok
        ]

    @property
    def errors(self) -> list[Call]:
        """Calls to this chat that the stand-in answered with an error."""
        return [c for c in self.calls if not c.ok]


# --------------------------------------------------------------------------------------------
# Network guard
# --------------------------------------------------------------------------------------------


def _loopback_allowed(sock: socket.socket, address: Any) -> bool:
    if sock.family == getattr(socket, "AF_UNIX", object()):
        return True
    host = address[0] if isinstance(address, tuple) and address else address
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def forbid_network() -> Callable[[], None]:
    """Make connects to non-loopback addresses raise RuntimeError; return an undo callable."""
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def connect(self: socket.socket, address: Any) -> None:
        if not _loopback_allowed(self, address):
            raise RuntimeError("network access outside loopback is forbidden in tests")
        return original_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not _loopback_allowed(self, address):
            raise RuntimeError("network access outside loopback is forbidden in tests")
        return original_connect_ex(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]

    def undo() -> None:
        socket.socket.connect = original_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = original_connect_ex  # type: ignore[method-assign]

    return undo


# --------------------------------------------------------------------------------------------
# Standalone entry point
# --------------------------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> None:
    api = BotApiStandIn(
        args.bot_username,
        args.bot_id,
        host=args.host,
        port=args.port,
        keep_calls=not args.no_keep_calls,
        max_calls_per_chat=args.max_calls_per_chat,
        max_messages_per_chat=args.max_messages_per_chat,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with api:
        print(api.base_url, flush=True)
        print(
            f"Telegram Bot API stand-in for @{api.bot_username} at {api.url} "
            f"(file URL {api.base_file_url}); Ctrl+C to stop",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m bot.standin --port 8081``."""
    parser = argparse.ArgumentParser(prog="python -m bot.standin", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081, help="0 picks a free port")
    parser.add_argument("--bot-username", default="healthbook_demo_bot")
    parser.add_argument("--bot-id", type=int, default=7000000001)
    parser.add_argument("--no-keep-calls", action="store_true", help="keep only per-chat tails")
    parser.add_argument("--max-calls-per-chat", type=int, default=None)
    parser.add_argument("--max-messages-per-chat", type=int, default=None)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
