"""python-telegram-bot persistence on SQLAlchemy, written through on every state change.

Only conversation states are persisted here: everything else a person gives lives in the
domain tables (drafts, health books). Handlers write the new state in the *same transaction*
as the answer that caused it (:func:`write_state`), so a ``kill -9`` can never separate the
two; :meth:`SQLPersistence.update_conversation` writes it again on PTB's own schedule.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram.ext import BasePersistence, PersistenceInput
from telegram.ext._utils.types import CDCData, ConversationDict, ConversationKey

from models.tables import ConversationState, utcnow


async def write_state(
    session: AsyncSession,
    name: str,
    key: ConversationKey,
    state: object | None,
    channel: str = "telegram",
) -> None:
    """Upsert (or delete, for ``None``) one conversation's state inside the caller's transaction."""
    chat_id, user_id = str(key[0]), str(key[-1])
    if state is None:
        await session.execute(
            delete(ConversationState).where(
                ConversationState.channel == channel,
                ConversationState.name == name,
                ConversationState.chat_id == chat_id,
                ConversationState.user_id == user_id,
            )
        )
        return
    values = {
        "channel": channel,
        "name": name,
        "chat_id": chat_id,
        "user_id": user_id,
        "state": str(state),
        "updated_at": utcnow(),
    }
    insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(ConversationState.__table__).values(**values)  # Core: no ORM bulk path
    stmt = stmt.on_conflict_do_update(
        index_elements=["channel", "name", "chat_id", "user_id"],
        set_={"state": stmt.excluded.state, "updated_at": stmt.excluded.updated_at},
    )
    await session.execute(stmt)


_MISSING = object()


class WrittenStates:
    """The states this process last wrote, so an unchanged state is not written again
    (a bounded LRU: memory stays flat however many people come and go)."""

    def __init__(self, size: int = 50_000) -> None:
        self.size = size
        self._states: OrderedDict[tuple[str, str, str], str | None] = OrderedDict()

    def unchanged(self, name: str, key: ConversationKey, state: str | None) -> bool:
        """Whether ``state`` is what this process last wrote for the conversation."""
        return self._states.get((name, str(key[0]), str(key[-1])), _MISSING) == state

    def written(self, name: str, key: ConversationKey, state: str | None) -> None:
        """Remember a committed write."""
        k = (name, str(key[0]), str(key[-1]))
        self._states[k] = state
        self._states.move_to_end(k)
        if len(self._states) > self.size:
            self._states.popitem(last=False)


class SQLPersistence(BasePersistence[dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    """One channel's conversation states in the ``conversation_states`` table; no user, chat
    or bot data. Ids are stored as text and given back as the channel has them (Telegram's
    as integers, Zalo's as strings)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        update_interval: float = 60,
        *,
        channel: str = "telegram",
        numeric_ids: bool = True,
    ):
        super().__init__(
            store_data=PersistenceInput(
                bot_data=False, chat_data=False, user_data=False, callback_data=False
            ),
            update_interval=update_interval,
        )
        self.sessions = sessions
        self.channel = channel
        self.numeric_ids = numeric_ids

    async def get_conversations(self, name: str) -> ConversationDict:
        """States of the conversations that were under way when the bot stopped."""
        async with self.sessions() as session:
            rows = await session.execute(
                select(
                    ConversationState.chat_id, ConversationState.user_id, ConversationState.state
                ).where(ConversationState.channel == self.channel, ConversationState.name == name)
            )
            if self.numeric_ids:
                return {(int(chat), int(user)): state for chat, user, state in rows}
            return {(chat, user): state for chat, user, state in rows}

    async def update_conversation(
        self, name: str, key: ConversationKey, new_state: object | None
    ) -> None:
        """Write one state (PTB calls this on its schedule; handlers already wrote it)."""
        async with self.sessions() as session, session.begin():
            await write_state(session, name, key, new_state, self.channel)

    async def get_user_data(self) -> dict[int, dict[Any, Any]]:
        """Not stored: user data lives in domain tables."""
        return {}

    async def get_chat_data(self) -> dict[int, dict[Any, Any]]:
        """Not stored."""
        return {}

    async def get_bot_data(self) -> dict[Any, Any]:
        """Not stored."""
        return {}

    async def get_callback_data(self) -> CDCData | None:
        """Not stored: callback data is plain, verified strings."""
        return None

    async def update_user_data(self, user_id: int, data: dict[Any, Any]) -> None:
        """Not stored."""

    async def update_chat_data(self, chat_id: int, data: dict[Any, Any]) -> None:
        """Not stored."""

    async def update_bot_data(self, data: dict[Any, Any]) -> None:
        """Not stored."""

    async def update_callback_data(self, data: CDCData) -> None:
        """Not stored."""

    async def drop_chat_data(self, chat_id: int) -> None:
        """Not stored."""

    async def drop_user_data(self, user_id: int) -> None:
        """Not stored."""

    async def refresh_user_data(self, user_id: int, user_data: dict[Any, Any]) -> None:
        """Not stored."""

    async def refresh_chat_data(self, chat_id: int, chat_data: dict[Any, Any]) -> None:
        """Not stored."""

    async def refresh_bot_data(self, bot_data: dict[Any, Any]) -> None:
        """Not stored."""

    async def flush(self) -> None:
        """Nothing buffered: every write already went to the database."""
