"""Telegram updates as a person's app would send them: text, button presses, contacts, media."""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass
from types import EllipsisType
from typing import Any

__all__ = [
    "TINY_PNG",
    "TgUser",
    "callback_query",
    "contact_message",
    "document_message",
    "group_chat",
    "location_message",
    "my_chat_member",
    "photo_message",
    "sticker_message",
    "text_message",
    "voice_message",
]


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


def len16(s: str) -> int:
    """Length in UTF-16 code units, as Telegram counts entity offsets."""
    return len(s) + sum(1 for ch in s if ord(ch) > 0xFFFF)


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


def new_file_id(kind: str) -> tuple[str, str]:
    """A fresh (file_id, file_unique_id) pair for a simulated file of ``kind``."""
    n = next(_file_ids)
    return f"standin-{kind}-{n}", f"u{kind[:2]}{n}"


def text_message(user: TgUser, text: str) -> dict[str, Any]:
    """An update with a text message (a ``bot_command`` entity when it starts with ``/``)."""
    content: dict[str, Any] = {"text": text}
    m = _COMMAND.match(text)
    if m:
        content["entities"] = [{"type": "bot_command", "offset": 0, "length": len16(m.group(0))}]
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
    fid, uid = (file_id, f"u{file_id}") if file_id else new_file_id("sticker")
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
    fid, uid = (file_id, f"u{file_id}") if file_id else new_file_id("photo")
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
    fid, uid = (file_id, f"u{file_id}") if file_id else new_file_id("voice")
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
    fid, uid = (file_id, f"u{file_id}") if file_id else new_file_id("document")
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


def update_message(update: dict[str, Any]) -> dict[str, Any] | None:
    """The message an update carries (new, edited or a channel post), if any."""
    for key in ("message", "edited_message", "channel_post", "edited_channel_post"):
        if isinstance(update.get(key), dict):
            return update[key]
    return None
