"""Typed answers to offered choices: a ``2``, ``nam`` or ``ko`` typed where buttons (or, on
Zalo, a numbered list) were offered becomes exactly what pressing that button sends.

The choices a turn offers are written with its answer, in its transaction (``chat_offers``), so
a restarted bot resolves a typed number the same way. Before an update is dispatched, a typed
text that matches one of the chat's choices is rewritten: an option into a callback query
carrying the option's code (its id marked ``typed:``, so no toast or edit is attempted), a
reply-keyboard button into the button's label. The handlers then check it exactly as they
check a pressed button: a stale or forged code is refused the same way.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Bot, CallbackQuery, Message, Update
from telegram.constants import ChatType

from bot.channels.base import Choice, Offer
from bot.channels.choices import match
from models.tables import ChatOffer, utcnow

if TYPE_CHECKING:
    from bot.context import Services

TYPED = "typed:"
_MISSING = Offer(())

#: More choices a typed text may name when it names none of the chat's offer: given the
#: session, the services, the update and that offer, an offer of choices not shown but meant
#: to be reachable by their words (the guide's pages from any guide page), or None.
Fallback = Callable[[AsyncSession, "Services", Update, Offer], Awaitable[Offer | None]]
FALLBACKS: list[Fallback] = []


def fallback(hook: Fallback) -> Fallback:
    """Register a :data:`Fallback` (a decorator, used at import)."""
    FALLBACKS.append(hook)
    return hook


def is_typed(query: CallbackQuery) -> bool:
    """Whether a callback query stands for a typed answer (no button was pressed)."""
    return query.id.startswith(TYPED)


class Offers:
    """The choices each chat was last offered, on every channel: read from and written to
    ``chat_offers``, with a bounded cache of what this process wrote or read (memory stays
    flat). One per process, shared by the channels: a waitlist offer made on Zalo to someone
    on Telegram is that person's Telegram chat's offer."""

    def __init__(self, size: int = 50_000) -> None:
        self.size = size
        self._cache: OrderedDict[tuple[str, str], Offer] = OrderedDict()

    def _remember(self, key: tuple[str, str], offer: Offer) -> None:
        self._cache[key] = offer
        self._cache.move_to_end(key)
        if len(self._cache) > self.size:
            self._cache.popitem(last=False)

    async def load(self, session: AsyncSession, channel: str, chat_id: str) -> Offer:
        """What the chat was last offered (empty when nothing)."""
        cached = self._cache.get((channel, chat_id))
        if cached is not None:
            return cached
        row = await session.scalar(
            select(ChatOffer.choices).where(
                ChatOffer.channel == channel, ChatOffer.chat_id == chat_id
            )
        )
        offer = Offer.from_json(row) if row is not None else _MISSING
        self._remember((channel, chat_id), offer)
        return offer

    async def write(self, session: AsyncSession, channel: str, chat_id: str, offer: Offer) -> bool:
        """Store a new offer in the caller's transaction (nothing when unchanged); whether a
        write was made. Call :meth:`written` once it committed."""
        if self._cache.get((channel, chat_id)) == offer:
            return False
        if not offer.choices:
            await session.execute(
                delete(ChatOffer).where(ChatOffer.channel == channel, ChatOffer.chat_id == chat_id)
            )
            return True
        insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
        values = {
            "channel": channel,
            "chat_id": chat_id,
            "choices": offer.to_json(),
            "updated_at": utcnow(),
        }
        stmt = insert(ChatOffer.__table__).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["channel", "chat_id"],
            set_={"choices": stmt.excluded.choices, "updated_at": stmt.excluded.updated_at},
        )
        await session.execute(stmt)
        return True

    def written(self, channel: str, chat_id: str, offer: Offer) -> None:
        """Remember a committed write."""
        self._remember((channel, chat_id), offer)

    def forget(self, channel: str, chat_id: str) -> None:
        """Drop a chat from the cache (its rows were erased)."""
        self._cache.pop((channel, chat_id), None)


def typed_text(update: Update) -> str | None:
    """The text of a person's private message that could answer a choice (not a command)."""
    message = update.message
    if message is None or not message.text or message.chat.type != ChatType.PRIVATE:
        return None
    if message.text.startswith("/"):
        return None
    return message.text


def as_choice(update: Update, choice: Choice, bot: Bot) -> Update:
    """The update a press of ``choice`` would have been: a callback query with its code, or
    (a reply-keyboard button) a message with its label as text."""
    message = update.message
    assert message is not None
    if choice.code is None:
        rewritten = Message(
            message_id=message.message_id,
            date=message.date,
            chat=message.chat,
            from_user=message.from_user,
            text=choice.label,
        )
        rewritten.set_bot(bot)
        new = Update(update.update_id, message=rewritten, api_kwargs=dict(update.api_kwargs))
    else:
        assert message.from_user is not None
        query = CallbackQuery(
            id=f"{TYPED}{update.update_id}",
            from_user=message.from_user,
            chat_instance=TYPED,
            data=choice.code,
            message=message,
        )
        query.set_bot(bot)
        new = Update(update.update_id, callback_query=query, api_kwargs=dict(update.api_kwargs))
    new.set_bot(bot)
    return new


async def resolve(update: Update, services: Services, bot: Bot) -> Update:
    """``update`` as the choice its text names, when it is a typed answer to the chat's last
    offered choices; otherwise unchanged."""
    text = typed_text(update)
    if text is None:
        return update
    assert update.message is not None
    chat = str(update.message.chat.id)
    async with services.sessions() as session:
        offer = await services.offers.load(session, services.channel, chat)
        if not offer.choices:
            return update
        choice = match(text, offer, services.aliases)
        for hook in FALLBACKS if choice is None else ():
            more = await hook(session, services, update, offer)
            choice = match(text, more, services.aliases) if more else None
            if choice is not None:
                break
    if choice is None:
        return update
    return as_choice(update, choice, bot)
