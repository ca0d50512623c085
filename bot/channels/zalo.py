"""Zalo: the same conversations, dispatched through python-telegram-bot's ``Application``.

Zalo's Bot Platform has no buttons, keyboards, edits or callback queries, and gives each event
once, with no update id. So:

- :func:`to_update` turns a Zalo event into a PTB :class:`~telegram.Update` (string ids, the
  event's ``message_id`` as its de-duplication key in ``api_kwargs["update_key"]``), and the
  one ``Application`` code path (handlers, conversation states, ``handled_updates``, typed
  answers resolved against ``chat_offers``) handles it like a Telegram message;
- :class:`ZaloChannel` renders the channel-neutral replies as Zalo calls: choices as numbered
  lines (numbered across the turn's messages, as :func:`~bot.channels.base.numbered` numbers
  them, so a typed ``2`` means the second), pictures by URL from the bot's own
  :class:`~bot.http.MediaStore`, files as an expiring download link, a map pin as a link, long
  texts split at paragraph boundaries under Zalo's 2,000 characters;
- :class:`ZaloBot` is the ``Bot`` the ``Application`` holds (``getMe``, ``sendMessage`` for the
  error and "too fast" words; nothing reaches Telegram);
- :class:`ZaloReceiver` writes each event to the ``inbox`` table (committed) before dispatching
  it and deletes it once its turn is over: a ``kill -9`` in between loses nothing, the next
  start dispatches what is left (``handled_updates`` makes a replay of an applied one a no-op);
- :class:`ZaloPoller` long-polls ``getUpdates`` (one event per call, 408 when none came); the
  webhook is :mod:`bot.http`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from telegram import (
    Chat,
    Message,
    MessageEntity,
    PhotoSize,
    Sticker,
    Update,
    User,
)
from telegram.constants import ChatType, MessageEntityType
from telegram.error import NetworkError
from telegram.ext import ExtBot
from telegram.request import BaseRequest, RequestData

from bot.channels import BLOCKED, RATE_LIMITED, REFUSED, TRANSIENT, Channel, DeliveryError
from bot.channels.base import Keyboard, Options, Reply
from bot.channels.zalo_api import ZaloApi, ZaloError, ZaloNetworkError, ZaloRateLimited
from bot.http import MediaStore
from handlers.common import translator_for
from models import healthbook as hb
from models import inbox
from models.replays import first_delivery

if TYPE_CHECKING:
    from bot.context import HBApplication, Services
    from bot.i18n import Translator
    from bot.settings import Settings
    from handlers.common import Turn

log = logging.getLogger(__name__)

NAME = "zalo"
TEXT_LIMIT = 2000  # Zalo's sendMessage takes 1 to 2,000 characters
INCOMING_LIMIT = 4096  # a longer text is cut (as Telegram's limit): the handlers refuse it anyway
RETRIES = 3  # a rate-limited call is tried again this many times
MAX_WAIT = 30.0  # seconds waited at most before trying a rate-limited call again

TEXT = "message.text.received"
IMAGE = "message.image.received"
STICKER = "message.sticker.received"
UNSUPPORTED = "message.unsupported.received"
EVENTS = frozenset({TEXT, IMAGE, STICKER, UNSUPPORTED})
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CHAT_TYPES = {"PRIVATE": ChatType.PRIVATE, "GROUP": ChatType.GROUP}


# --------------------------------------------------------------------------------------------
# Events → updates
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZaloEvent:
    """A Zalo event, checked: everything the bot uses of it."""

    name: str
    message_id: str
    user_id: str
    chat_id: str
    chat_type: str  # ChatType.PRIVATE or ChatType.GROUP
    display_name: str
    date: dt.datetime
    text: str | None = None
    photo: str | None = None
    caption: str | None = None
    sticker: str | None = None


def _id(value: object) -> str | None:
    return value if isinstance(value, str) and _ID.match(value) else None


def _optional_text(message: dict[str, Any], key: str) -> tuple[bool, str | None]:
    value = message.get(key)
    if value is None:
        return True, None
    if not isinstance(value, str):
        return False, None
    return True, value[:INCOMING_LIMIT]


def parse_event(event: object) -> ZaloEvent | None:
    """The event, if it has the shape Zalo documents (ids strings of letters, digits, ``-`` or
    ``_``; a known event name; text where text is due); None otherwise."""
    if not isinstance(event, dict):
        return None
    name = event.get("event_name")
    message = event.get("message")
    if name not in EVENTS or not isinstance(message, dict):
        return None
    sender, chat = message.get("from"), message.get("chat")
    if not isinstance(sender, dict) or not isinstance(chat, dict):
        return None
    message_id, user_id, chat_id = _id(message.get("message_id")), _id(sender.get("id")), _id(
        chat.get("id")
    )
    chat_type = _CHAT_TYPES.get(chat.get("chat_type"))  # type: ignore[arg-type]
    if message_id is None or user_id is None or chat_id is None or chat_type is None:
        return None
    if sender.get("is_bot") is True:
        return None
    display = sender.get("display_name")
    display = display[:128] if isinstance(display, str) else ""
    millis = message.get("date")
    if millis is None:
        date = dt.datetime.now(dt.UTC)
    elif isinstance(millis, int) and not isinstance(millis, bool) and 0 <= millis < 2**53:
        date = dt.datetime.fromtimestamp(millis / 1000, dt.UTC)
    else:
        return None
    fields: dict[str, str | None] = {}
    for key in ("text", "photo", "caption", "sticker"):
        ok, value = _optional_text(message, key)
        if not ok:
            return None
        fields[key] = value
    if name == TEXT and not fields["text"]:
        return None
    if name == IMAGE and not fields["photo"]:
        return None
    if name == STICKER and _id(fields["sticker"]) is None:
        fields["sticker"] = "sticker"
    return ZaloEvent(
        name=name,
        message_id=message_id,
        user_id=user_id,
        chat_id=chat_id,
        chat_type=chat_type,
        display_name=display,
        date=date,
        text=fields["text"] if name == TEXT else None,
        photo=fields["photo"] if name == IMAGE else None,
        caption=fields["caption"] if name == IMAGE else None,
        sticker=fields["sticker"] if name == STICKER else None,
    )


def _command_entity(text: str) -> tuple[MessageEntity, ...]:
    if not text.startswith("/") or len(text) < 2:
        return ()
    word = text.split(maxsplit=1)[0]
    return (MessageEntity(MessageEntityType.BOT_COMMAND, 0, len(word.encode("utf-16-le")) // 2),)


def to_update(event: object, update_id: int, bot: ExtBot[Any] | None = None) -> Update | None:
    """The PTB update a Zalo event stands for (a text, a picture, a sticker), with its
    ``message_id`` as ``api_kwargs["update_key"]``; None for a malformed event (logged without
    its content) and for ``message.unsupported.received`` (nothing to dispatch)."""
    parsed = event if isinstance(event, ZaloEvent) else parse_event(event)
    if parsed is None:
        log.warning("a malformed Zalo event was ignored")
        return None
    if parsed.name == UNSUPPORTED:
        return None
    user = User(id=parsed.user_id, first_name=parsed.display_name, is_bot=False)  # type: ignore[arg-type]
    chat = Chat(id=parsed.chat_id, type=parsed.chat_type)  # type: ignore[arg-type]
    content: dict[str, Any] = {}
    if parsed.name == TEXT:
        assert parsed.text is not None
        content = {"text": parsed.text, "entities": _command_entity(parsed.text)}
    elif parsed.name == IMAGE:
        content = {
            "photo": (
                PhotoSize(file_id=parsed.message_id, file_unique_id=parsed.message_id,
                          width=0, height=0),
            ),
            "caption": parsed.caption,
        }
    elif parsed.name == STICKER:
        assert parsed.sticker is not None
        content = {
            "sticker": Sticker(
                file_id=parsed.sticker,
                file_unique_id=parsed.sticker,
                width=0,
                height=0,
                is_animated=False,
                is_video=False,
                type=Sticker.REGULAR,
            )
        }
    message = Message(
        message_id=parsed.message_id,  # type: ignore[arg-type]
        date=parsed.date,
        chat=chat,
        from_user=user,
        **content,
    )
    update = Update(update_id, message=message, api_kwargs={"update_key": parsed.message_id})
    if bot is not None:
        message.set_bot(bot)
        update.set_bot(bot)
    return update


# --------------------------------------------------------------------------------------------
# Sending
# --------------------------------------------------------------------------------------------


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters, cut at a paragraph break where there
    is one, else at a line break, else at a space (a word longer than that is cut)."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut = -1
        for sep in ("\n\n", "\n", " "):
            cut = rest.rfind(sep, 0, limit + 1)
            if cut > 0:
                break
        if cut <= 0:
            cut = limit
        head, rest = rest[:cut].rstrip(), rest[cut:].lstrip()
        if head:
            pieces.append(head)
    if rest:
        pieces.append(rest)
    return pieces


async def with_retries(
    call: Callable[[], Awaitable[Any]], *, retries: int = RETRIES, max_wait: float = MAX_WAIT
) -> Any:
    """``call()``, tried again after Zalo's rate limit (429, a spent quota) with the wait it
    asks for (at most ``max_wait`` seconds), ``retries`` times."""
    for attempt in range(retries + 1):
        try:
            return await call()
        except ZaloRateLimited as exc:
            if attempt == retries:
                raise
            wait = min(max(exc.retry_after, 0.2), max_wait) * (attempt + 1)
            log.warning("Zalo asks to slow down: trying again in %g s", wait)
            await asyncio.sleep(min(wait, max_wait))
    raise AssertionError("unreachable")


def _image_type(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    return "application/octet-stream"


def _file_type(name: str) -> str:
    if name.endswith(".json"):
        return "application/json"
    if name.endswith(".pdf"):
        return "application/pdf"
    if name.endswith(".png"):
        return "image/png"
    return "application/octet-stream"


def map_link(lat: float, lon: float) -> str:
    """An OpenStreetMap link to a point."""
    return f"https://www.openstreetmap.org/?mlat={lat:.6f}&mlon={lon:.6f}#map=17/{lat:.6f}/{lon:.6f}"


def _chat_id(chat_id: object) -> str | None:
    return _id(chat_id if isinstance(chat_id, str) else str(chat_id))


class ZaloChannel(Channel):
    """Replies as Zalo calls: numbered choices, pictures by URL, no edits, no toasts."""

    name = NAME
    buttons = False

    def __init__(
        self,
        api: ZaloApi,
        services: Services,
        *,
        media: MediaStore | None = None,
        retries: int = RETRIES,
        max_wait: float = MAX_WAIT,
    ) -> None:
        self.api = api
        self.services = services
        self.media = media
        self.retries = retries
        self.max_wait = max_wait

    def __repr__(self) -> str:
        return f"ZaloChannel({self.api!r})"

    async def deliver(self, current: Turn) -> None:
        """The turn's replies to its chat, in order; there is no pressed message to close or
        to show a notice on, so those are said."""
        outbox = list(current.outbox)
        if current.update.callback_query is not None:  # a typed answer to an option
            if current.close_with and not current.ack:
                outbox.insert(0, Reply(text=current.close_with))
            if current.toast_text and (current.toast_alert or not outbox):
                outbox.insert(0, Reply(text=current.toast_text))
        if current.ack:
            head = outbox[0] if outbox else None
            if head is not None and head.to is None and head.text and head.document is None:
                outbox[0] = dataclasses.replace(head, text=f"✓ {current.ack}\n\n{head.text}")
            else:
                outbox.insert(0, Reply(text=f"✓ {current.ack}"))
        chat_id = str(current.chat_id)
        channels = current.services.channels
        t = current.t
        last = _last_with_choices(outbox)
        number = 0
        for index, out in enumerate(outbox):
            if out.to is not None:
                await channels.send(out.to.channel, out.to.chat_id, out)
                continue
            text, number = render(out, number, t, hint=index == last)
            await self._send(chat_id, out, text, t)

    async def send(self, chat_id: str, reply: Reply, *, retry: bool = True) -> None:
        """One message to a person's chat outside their turn (a notice, a waitlist offer), its
        choices numbered from ``reply.numbered_from``: the sender added them to the chat's open
        choices (``offer_notices``), so that typing a number answers them. ``retry=False``: a
        rate limit is raised at once, not waited out here."""
        target = _chat_id(chat_id)
        if target is None:
            raise DeliveryError("not a Zalo chat id", REFUSED)
        reply = dataclasses.replace(reply, to=None)
        locale = reply.locale or self.services.settings.bot.default_locale
        t = self.services.translations.get(locale, NAME)
        text, _ = render(reply, reply.numbered_from - 1, t, hint=_last_with_choices([reply]) == 0)
        try:
            await self._send(target, reply, text, t, retries=self.retries if retry else 0)
        except ZaloError as exc:
            raise delivery_error(exc) from None

    async def send_text(self, chat_id: str, text: str, *, retries: int | None = None) -> None:
        """Plain text, split under Zalo's limit, each piece retried after a rate limit."""
        for piece in split_text(text):
            await with_retries(
                lambda piece=piece: self.api.send_message(chat_id, piece),  # type: ignore[misc]
                retries=self.retries if retries is None else retries,
                max_wait=self.max_wait,
            )

    async def _send(
        self, chat_id: str, out: Reply, text: str | None, t: Translator, *,
        retries: int | None = None,
    ) -> None:
        retries = self.retries if retries is None else retries
        if out.location is not None:
            lat, lon = out.location
            await self.send_text(chat_id, t("zalo.map", url=map_link(lat, lon)), retries=retries)
            return
        if out.document is not None:
            data, filename = out.document
            if self.media is None:
                note = t("zalo.media_unavailable")
            else:
                url = self.media.put(
                    data, _file_type(filename), filename, owner=(NAME, chat_id)
                )
                until = self.services.now() + dt.timedelta(seconds=self.media.ttl)
                note = t(
                    "zalo.download",
                    name=filename,
                    url=url,
                    minutes=round(self.media.ttl / 60),
                    until=until.strftime("%H:%M"),
                )
            await self.send_text(chat_id, f"{text}\n\n{note}" if text else note, retries=retries)
            return
        if out.photo is not None:
            if self.media is None:
                note = t("zalo.media_unavailable")
                await self.send_text(
                    chat_id, f"{text}\n\n{note}" if text else note, retries=retries
                )
                return
            url = self.media.put(out.photo, _image_type(out.photo), owner=(NAME, chat_id))
            caption = text if text and len(text) <= TEXT_LIMIT else None
            await with_retries(
                lambda: self.api.send_photo(chat_id, url, caption),
                retries=retries,
                max_wait=self.max_wait,
            )
            if text and caption is None:
                await self.send_text(chat_id, text, retries=retries)
            return
        if text:
            await self.send_text(chat_id, text, retries=retries)


#: what Zalo answers a message to someone who blocked the bot: not documented (see
#: ``shared/ZALO.md``); taken to be 403 Forbidden, as Telegram answers
BLOCKED_CODES = frozenset({403})


def delivery_error(exc: ZaloError) -> DeliveryError:
    """What a Zalo API error means for a message: rate limited (429 or a spent quota, with its
    wait), transient (no answer, 5xx, 408), blocked (:data:`BLOCKED_CODES`) or refused."""
    name = f"Zalo error {exc.code}"
    if isinstance(exc, ZaloRateLimited):
        return DeliveryError(name, RATE_LIMITED, retry_after=exc.retry_after)
    if isinstance(exc, ZaloNetworkError) or exc.code >= 500 or exc.code in (0, 408):
        return DeliveryError(name, TRANSIENT)
    if exc.code in BLOCKED_CODES:
        return DeliveryError(name, BLOCKED)
    if exc.code in (401, 404):  # the token: nothing wrong with the message
        return DeliveryError(name, TRANSIENT)
    return DeliveryError(name, REFUSED)


def _choice_lines(out: Reply, number: int, t: Translator) -> tuple[list[str], int, bool]:
    """The lines of a reply's choices, numbered on from ``number``; whether any is numbered."""
    lines: list[str] = []
    numbered_any = False
    markup = out.markup
    if isinstance(markup, Options):
        for option in markup.flat():
            number += 1
            numbered_any = True
            lines.append(f"{number}. {option.label}")
    elif isinstance(markup, Keyboard):
        for button in markup.flat():
            if button.asks == "contact":
                lines.append(t("choice.type_phone"))
            elif button.asks == "location":
                lines.append(t("choice.type_place"))
            else:
                number += 1
                numbered_any = True
                lines.append(f"{number}. {button.label}")
    return lines, number, numbered_any


def _last_with_choices(outbox: list[Reply]) -> int:
    last = -1
    for index, out in enumerate(outbox):
        if out.to is not None:
            continue
        markup = out.markup
        if isinstance(markup, Options) and markup.flat():
            last = index
        elif isinstance(markup, Keyboard) and any(b.asks == "text" for b in markup.flat()):
            last = index
    return last


def render(out: Reply, number: int, t: Translator, *, hint: bool) -> tuple[str | None, int]:
    """A reply's text with its choices as numbered lines (numbered on from ``number``), and
    the hint when asked: ``"{text}\\n\\n1. Nam\\n2. Nữ\\n\\n{hint}"``; and the last number."""
    lines, number, numbered_any = _choice_lines(out, number, t)
    parts = [out.text] if out.text else []
    if lines:
        parts.append("\n".join(lines))
    if hint and numbered_any:
        parts.append(t("choice.hint"))
    return ("\n\n".join(parts) if parts else None), number


# --------------------------------------------------------------------------------------------
# The Bot the Application holds
# --------------------------------------------------------------------------------------------


class _NoRequest(BaseRequest):
    """The transport of a bot that never talks to Telegram: any call is an error."""

    @property
    def read_timeout(self) -> float | None:
        return None

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = None,
        write_timeout: Any = None,
        connect_timeout: Any = None,
        pool_timeout: Any = None,
    ) -> tuple[int, bytes]:
        raise NetworkError("this bot talks to Zalo, not to the Telegram Bot API")


class ZaloBot(ExtBot[None]):
    """What the ``Application`` holds as its bot: ``getMe`` from Zalo (the bot's user has the
    Zalo id, as a string, and its account name), ``sendMessage`` to Zalo; button answers and
    the command menu do not exist there. The token lives in the :class:`ZaloApi` only."""

    def __init__(self, api: ZaloApi) -> None:
        super().__init__("zalo", request=_NoRequest(), get_updates_request=_NoRequest())
        self._zalo = api

    @property
    def zalo(self) -> ZaloApi:
        """The Zalo API client."""
        return self._zalo

    def __repr__(self) -> str:
        return "ZaloBot()"

    async def initialize(self) -> None:
        """Ask Zalo who the bot is (raises :class:`ZaloError` when it refuses)."""
        if self._bot_initialized:
            return
        me = await self.zalo.get_me()
        bot_id = _id(me.get("id"))
        name = me.get("account_name")
        if bot_id is None or not isinstance(name, str):
            raise ZaloError(0, "getMe gave no usable bot account")
        self._bot_user = User(
            id=bot_id, first_name=name, is_bot=True, username=name  # type: ignore[arg-type]
        )
        self._bot_user.set_bot(self)
        self._requests_initialized = True
        self._bot_initialized = True

    async def shutdown(self) -> None:
        """Close the connection to Zalo."""
        await self.zalo.close()
        self._bot_initialized = False

    async def get_me(self, *args: Any, **kwargs: Any) -> User:  # type: ignore[override]
        """The bot's user (from :meth:`initialize`)."""
        if self._bot_user is None:
            await self.initialize()
        assert self._bot_user is not None
        return self._bot_user

    async def send_message(  # type: ignore[override]
        self, chat_id: int | str, text: str, reply_markup: object = None, **kwargs: Any
    ) -> bool:
        """Plain text to a Zalo chat (the markup is dropped: Zalo has no buttons)."""
        target = _chat_id(chat_id)
        if target is None:
            raise DeliveryError("not a Zalo chat id", REFUSED)
        for piece in split_text(text):
            await with_retries(lambda piece=piece: self.zalo.send_message(target, piece))  # type: ignore[misc]
        return True

    async def answer_callback_query(self, *args: Any, **kwargs: Any) -> bool:  # type: ignore[override]
        """Nothing to answer: a "press" on Zalo was typed."""
        return True

    async def set_my_commands(self, *args: Any, **kwargs: Any) -> bool:  # type: ignore[override]
        """Zalo has no command menu."""
        return True

    async def delete_webhook(self, *args: Any, **kwargs: Any) -> bool:  # type: ignore[override]
        """Done by :class:`ZaloPoller` through the Zalo API."""
        return True


# --------------------------------------------------------------------------------------------
# Receiving: the inbox, polling
# --------------------------------------------------------------------------------------------


class ZaloReceiver:
    """Takes Zalo events (from :class:`ZaloPoller` or the webhook) into the application: each
    is written to the inbox (committed), then queued; once its turn is over its row is
    deleted. A copy of an event in the inbox is not queued again."""

    def __init__(self, app: HBApplication) -> None:
        self.app = app
        self.services: Services = app.bot_data["services"]
        self._seq = 0
        self._under_way: set[str] = set()
        self._done_keys: list[str] = []
        self._flusher: asyncio.Task[None] | None = None
        processor = app.update_processor
        previous = getattr(processor, "on_done", None)

        def done(update: object) -> None:
            self._done_with(update)
            if previous is not None:
                previous(update)

        processor.on_done = done  # type: ignore[attr-defined]
        app.bot_data["zalo_receiver"] = self

    @property
    def under_way(self) -> int:
        """Events queued or being handled (their inbox rows not yet deleted)."""
        return len(self._under_way)

    async def accept(self, event: object) -> bool:
        """Take one event: False when it is malformed (nothing is kept or answered)."""
        return await self.accept_many([event]) == 1

    async def accept_many(self, events: list[object]) -> int:
        """Take events in the order Zalo gave them, kept in the inbox in one transaction, then
        queued; how many were usable (a malformed one is logged, without its content)."""
        kept: list[tuple[ZaloEvent, object]] = []
        usable = 0
        for event in events:
            parsed = parse_event(event)
            if parsed is None:
                log.warning("a malformed Zalo event was ignored")
                continue
            usable += 1
            if parsed.name == UNSUPPORTED:
                await self._unsupported(parsed)
            elif parsed.message_id not in self._under_way:  # else a copy of one under way
                kept.append((parsed, event))
        if not kept:
            return usable
        services = self.services
        fresh: list[ZaloEvent] = []
        async with services.sessions() as session, session.begin():
            now = services.clock()
            for parsed, event in kept:
                if await inbox.put(
                    session, NAME, parsed.message_id, parsed.chat_id, event, now  # type: ignore[arg-type]
                ):
                    fresh.append(parsed)
        for parsed in fresh:
            if parsed.message_id not in self._under_way:  # the same event twice in a batch
                self._queue(parsed)
        return usable

    async def replay(self) -> int:
        """Queue the events a crash left in the inbox (oldest first); how many."""
        async with self.services.sessions() as session:
            rows = await inbox.pending(session, NAME)
            payloads = [(row.update_key, row.payload) for row in rows]
        count = 0
        for key, payload in payloads:
            parsed = parse_event(payload)
            if parsed is None or parsed.name == UNSUPPORTED or key in self._under_way:
                self._done_keys.append(key)  # nothing to do with it: forget it
                continue
            self._queue(parsed)
            count += 1
        self._flush_soon()
        if count:
            log.info("%d Zalo events left by the last run are handled first", count)
        return count

    def _queue(self, parsed: ZaloEvent) -> None:
        self._seq += 1
        update = to_update(parsed, self._seq, self.app.bot)
        assert update is not None
        self._under_way.add(parsed.message_id)
        self.app.update_queue.put_nowait(update)

    def _done_with(self, update: object) -> None:
        if isinstance(update, Update) and update.api_kwargs:
            key = update.api_kwargs.get("update_key")
            if isinstance(key, str):
                self._done_keys.append(key)
                self._flush_soon()

    def _flush_soon(self) -> None:
        if self._done_keys and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush(), name="healthbook:zalo-inbox"
            )

    async def _flush(self) -> None:
        while self._done_keys:
            keys, self._done_keys = self._done_keys, []
            try:
                async with self.services.sessions() as session, session.begin():
                    await inbox.remove(session, NAME, keys)
            except Exception as exc:  # left in the inbox: replayed (as a no-op) at next start
                log.warning("could not clear handled Zalo events from the inbox: %s",
                            type(exc).__name__)
            finally:
                self._under_way.difference_update(keys)

    async def idle(self) -> None:
        """Until the inbox rows of the events done with are deleted."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.wait({self._flusher})
        self._flush_soon()
        if self._flusher is not None and not self._flusher.done():
            await asyncio.wait({self._flusher})

    async def _unsupported(self, parsed: ZaloEvent) -> None:
        """Zalo did not pass the content on (a protected user): say who can help, once per
        event, and touch no conversation."""
        if parsed.chat_type != ChatType.PRIVATE:
            return
        services = self.services
        async with services.sessions() as session, session.begin():
            if not await first_delivery(session, NAME, parsed.message_id, services.clock()):
                return
            account = await hb.find_account(session, NAME, parsed.user_id)
        t = translator_for(services, account, Update(0))
        channel = services.channels.get(NAME)
        try:
            if isinstance(channel, ZaloChannel):
                await channel.send_text(parsed.chat_id, t("zalo.unsupported"))
        except ZaloError as exc:
            log.warning("could not answer an unsupported Zalo message: %s", exc.code)


class ZaloPoller:
    """Long polling of Zalo's ``getUpdates`` (one event per call; 408 is "nothing came"), each
    event through the :class:`ZaloReceiver`; every failure is one log line, then a back-off.

    Polling and keeping run side by side: while the events fetched are written to the inbox
    (together, in one transaction), the next poll is on its way. Stopping stops polling, then
    writes and queues what was fetched."""

    def __init__(
        self,
        app: HBApplication,
        api: ZaloApi,
        timeout: int = 30,
        *,
        receiver: ZaloReceiver | None = None,
        max_delay: float = 30.0,
        batch: int = 100,
    ) -> None:
        self.app = app
        self.api = api
        self.timeout = timeout
        self.receiver = receiver or app.bot_data.get("zalo_receiver") or ZaloReceiver(app)
        self.max_delay = max_delay
        self.batch = batch
        self._fetched: asyncio.Queue[object] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the polling task is on."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Remove any webhook (``getUpdates`` is refused while one is set), queue what the
        inbox holds, then poll in the background."""
        await self.api.delete_webhook()
        await self.receiver.replay()
        self._writer = asyncio.create_task(self._write_loop(), name="healthbook:zalo-inbox-write")
        self._task = asyncio.create_task(self._loop(), name="healthbook:zalo-polling")

    async def stop(self) -> None:
        """Stop polling (an event still being fetched stays Zalo's), then keep and queue what
        was fetched."""
        task, self._task = self._task, None
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)
        writer, self._writer = self._writer, None
        if writer is not None:
            self._fetched.put_nowait(_STOP)
            await asyncio.wait({writer})

    async def _loop(self) -> None:
        delay = 0.0
        while True:
            try:
                event = await self.api.get_updates(self.timeout)
            except ZaloRateLimited as exc:
                wait = min(exc.retry_after, self.max_delay)
                log.warning("Zalo asks to wait %g s before polling again", wait)
                await asyncio.sleep(wait)
                continue
            except ZaloError as exc:  # network errors too; the token never appears
                delay = 1.0 if delay == 0 else min(self.max_delay, delay * 1.5)
                # a network error was logged by the client already: one line per failure
                level = logging.DEBUG if isinstance(exc, ZaloNetworkError) else logging.WARNING
                log.log(level, "could not poll Zalo: %s (again in %g s)", _short(exc), delay)
                await asyncio.sleep(delay)
                continue
            delay = 0.0
            if event is not None:
                self._fetched.put_nowait(event)

    async def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            events = [await self._fetched.get()]
            while len(events) < self.batch and not self._fetched.empty():
                events.append(self._fetched.get_nowait())
            if _STOP in events:
                stopping = True
                events = [e for e in events if e is not _STOP]
                while not self._fetched.empty():
                    e = self._fetched.get_nowait()
                    if e is not _STOP:
                        events.append(e)
            if not events:
                continue
            try:
                await self.receiver.accept_many(events)
            except Exception:  # one bad event, or the database away for a moment: one by one
                for event in events:
                    await self.keep_one(event)

    async def keep_one(self, event: object, *, tries: int = 3, wait: float = 0.2) -> bool:
        """Write one event to the inbox and queue it, trying again after a short wait; whether
        it was kept. Only an event that cannot be kept at all is lost, with one log line."""
        for attempt in range(1, tries + 1):
            try:
                await self.receiver.accept_many([event])
                return True
            except Exception as exc:
                if attempt == tries:
                    log.error("a Zalo event could not be kept, so it was not handled: %s",
                              type(exc).__name__)
                    return False
                await asyncio.sleep(wait * attempt)
        return False


_STOP = object()


def _short(exc: ZaloError) -> str:
    return f"error {exc.code}" if exc.code else exc.description


# --------------------------------------------------------------------------------------------
# Wiring
# --------------------------------------------------------------------------------------------


def build_zalo_application(
    settings: Settings,
    *,
    services: Services | None = None,
    clock: Callable[[], dt.datetime] | None = None,
    api: ZaloApi | None = None,
    media: MediaStore | None = None,
    jobs: bool = False,
) -> HBApplication:
    """The Zalo bot: the same handlers and state store as Telegram's, over a :class:`ZaloBot`
    and a :class:`ZaloChannel` (pictures and files by URL from ``media``, when given)."""
    from bot.app import build_application

    if api is None:
        token = settings.zalo.token
        if token is None:
            raise ValueError("no Zalo token configured")
        api = ZaloApi(token.get_secret_value(), settings.zalo.base_url)
    zalo_api = api
    bot = ZaloBot(zalo_api)

    def make_channel(app: HBApplication) -> Channel:
        return ZaloChannel(zalo_api, app.bot_data["services"], media=media)

    app = build_application(
        settings,
        services=services,
        clock=clock,
        channel=NAME,
        bot=bot,
        make_channel=make_channel,
        jobs=jobs,
    )
    app.bot_data["zalo_api"] = zalo_api
    app.bot_data["media"] = media
    ZaloReceiver(app)
    return app


__all__ = [
    "NAME",
    "TEXT_LIMIT",
    "ZaloBot",
    "ZaloChannel",
    "ZaloEvent",
    "ZaloPoller",
    "ZaloReceiver",
    "build_zalo_application",
    "delivery_error",
    "map_link",
    "parse_event",
    "render",
    "split_text",
    "to_update",
]
