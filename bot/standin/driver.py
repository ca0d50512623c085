"""Simulated people chatting with the bot through a stand-in, as end-to-end tests drive it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from bot.standin.common import Call, StandInTimeoutError, choose, text_of
from bot.standin.telegram import RESPONSE_METHODS, BotApiStandIn
from bot.standin.updates import (
    TINY_PNG,
    TgUser,
    callback_query,
    contact_message,
    document_message,
    location_message,
    photo_message,
    sticker_message,
    text_message,
    update_message,
    voice_message,
)

__all__ = ["BaseDriver", "ChatDriver"]


class _StandIn(Protocol):
    @property
    def seq(self) -> int: ...

    async def wait_chat(
        self,
        chat_id: Any,
        *,
        after_seq: int,
        timeout: float = ...,  # noqa: ASYNC109
        settle: float = ...,
    ) -> list[Call]: ...

    def chat_calls(self, chat_id: Any, after_seq: int = 0) -> list[Call]: ...


class BaseDriver:
    """What every channel's driver does alike: wait for the bot's answer and check its calls."""

    #: Methods that count as "the bot answered" (a typing notice does not).
    answer_methods: frozenset[str] = frozenset()

    def __init__(
        self,
        api: _StandIn,
        *,
        settle: float = 0.05,
        timeout: float = 10.0,
        quiet_timeout: float = 0.3,
        strict: bool = False,
        idle: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.api = api
        # In-process bots can say when they have finished an update: better than any settle time
        self.idle = idle
        self.settle = settle
        self.timeout = timeout
        self.quiet_timeout = quiet_timeout
        self.strict = strict

    @property
    def chat_id(self) -> Any:
        """The id of the chat this person writes in."""
        raise NotImplementedError

    def _answered(self, call: Call) -> bool:
        return call.method in self.answer_methods

    async def _answer(
        self,
        after: int,
        taken: Callable[[], bool],
        *,
        expect_reply: bool,
        timeout: float | None,  # noqa: ASYNC109
        what: str,
    ) -> list[Call]:
        """The bot's calls to this chat after seq ``after``, once it has answered or gone quiet.

        ``taken`` says whether the bot has taken the pushed input off the stand-in.
        """
        if timeout is None:
            timeout = self.timeout if expect_reply else self.quiet_timeout
        calls = await self.api.wait_chat(
            self.chat_id, after_seq=after, timeout=timeout, settle=0 if self.idle else self.settle
        )
        if self.idle is not None and (calls or not expect_reply):
            if not calls:  # "no answer" means nothing once the bot has had the input
                await self._until(taken, what)
            await self.idle()
            calls = self.api.chat_calls(self.chat_id, after_seq=after)
        if expect_reply and not any(self._answered(c) for c in calls):
            made = ", ".join(c.method for c in calls) or "no calls at all"
            raise StandInTimeoutError(
                f"the bot did not answer chat {self.chat_id} within {timeout}s ({made})"
            )
        if self.strict:
            failed = [c for c in calls if not c.ok]
            if failed:
                details = "; ".join(f"{c.method}: {c.error}" for c in failed)
                raise AssertionError(f"the bot made failing calls: {details}")
        return calls

    async def _until(self, taken: Callable[[], bool], what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while not taken():
            if loop.time() > deadline:
                raise StandInTimeoutError(f"the bot never took {what}")
            await asyncio.sleep(0.005)

    @property
    def calls(self) -> list[Call]:
        """All recorded calls attributed to this chat."""
        return self.api.chat_calls(self.chat_id)

    @property
    def errors(self) -> list[Call]:
        """Calls to this chat that the stand-in answered with an error."""
        return [c for c in self.calls if not c.ok]


def _flatten_labels(rows: Iterable[Iterable[Any]]) -> list[str]:
    labels = []
    for row in rows:
        for button in row:
            labels.append(button if isinstance(button, str) else str(button.get("text", "")))
    return labels


class ChatDriver(BaseDriver):
    """One simulated person chatting with the bot through a :class:`BotApiStandIn`."""

    answer_methods = RESPONSE_METHODS
    api: BotApiStandIn

    def __init__(
        self,
        api: BotApiStandIn,
        user: TgUser | int,
        *,
        chat: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        """``options``: those of :class:`BaseDriver` (``settle``, ``timeout``, ``idle`` …)."""
        super().__init__(api, **options)
        self.user = user if isinstance(user, TgUser) else TgUser(id=user)
        self.chat = chat  # a group (see group_chat) this person writes in; None: private chat
        self._mark = 0  # how many bot messages the chat had when this person last wrote

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
        self._mark = len(self.api.messages(self.chat_id))
        msg = update_message(update)
        if self.chat is not None and msg is not None:
            msg["chat"] = self.chat
        uid = self.api.push_update(update)
        return await self._answer(
            after,
            lambda: not self.api.unconfirmed(uid),
            expect_reply=expect_reply,
            timeout=timeout,
            what=f"update {uid}",
        )

    async def send(self, text: str, **kw: Any) -> list[Call]:
        """Send a text message (commands get a ``bot_command`` entity) and wait for the answer."""
        return await self.push(text_message(self.user, text), **kw)

    async def press(self, label_or_data: str, **kw: Any) -> list[Call]:
        """Press an inline button of the newest message with an inline keyboard."""
        msg = self._keyboard_message()
        if msg is None:
            raise AssertionError(f"no bot message with an inline keyboard in chat {self.chat_id}")
        buttons = [b for row in msg["reply_markup"]["inline_keyboard"] for b in row]
        button = choose(
            label_or_data,
            buttons,
            lambda b: str(b.get("text", "")),
            lambda b: b.get("callback_data"),
            describe=lambda b: f"{b.get('text')!r} (data {b.get('callback_data', '-')!r})",
        )
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
        return None if msg is None else text_of(msg)

    @property
    def last_answer(self) -> str | None:
        """The messages the bot sent after the person's last update, joined with newlines (as
        ``ZaloChatDriver.last_answer``; an earlier message the bot edited is not in it)."""
        texts = [t for m in self.messages[self._mark :] if (t := text_of(m)) is not None]
        return "\n".join(texts) if texts else None

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
        return [t for m in self.messages if (t := text_of(m)) is not None]

    @property
    def callback_answers(self) -> list[str]:
        """Texts of answerCallbackQuery calls for this user's button presses ('' if none)."""
        return [
            str(c.params.get("text") or "")
            for c in self.calls
            if c.method == "answerCallbackQuery" and c.ok
        ]
