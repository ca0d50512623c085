"""A first message on a messenger without a Start button (Zalo) opens the welcome.

On Telegram a new person presses Start, which sends ``/start``. Zalo has no such button: people
open the chat and write "xin chào". A text from someone the bot has no account for is taken as
``/start`` there (a /link code typed alone stays a code), so the welcome and the consent come
first, as on Telegram.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from telegram import Bot, Message, MessageEntity, Update

from bot.channels.typed import typed_text
from models import healthbook as hb
from models.accounts import normalize_code

if TYPE_CHECKING:
    from bot.context import Services

START = "/start"


class Known:
    """People this process has seen with an account (a bounded LRU), so that their messages
    cost no lookup."""

    def __init__(self, size: int = 50_000) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, external_id: str) -> bool:
        if external_id in self._ids:
            self._ids.move_to_end(external_id)
            return True
        return False

    def add(self, external_id: str) -> None:
        self._ids[external_id] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)


async def first_contact(update: Update, services: Services, bot: Bot, known: Known) -> Update:
    """``update`` as ``/start`` when it is the first words of someone without an account
    (and with no question of ours open: the consent is asked before any account exists)."""
    text = typed_text(update)
    if text is None or normalize_code(text) is not None:
        return update
    message = update.message
    assert message is not None and message.from_user is not None
    external_id = str(message.from_user.id)
    if external_id in known:
        return update
    async with services.sessions() as session:
        account = await hb.find_account(session, services.channel, external_id)
        offer = await services.offers.load(session, services.channel, str(message.chat.id))
    if account is not None:
        known.add(external_id)
        return update
    if offer.choices:  # answering the welcome's own question (the consent), not arriving
        return update
    start = Message(
        message_id=message.message_id,
        date=message.date,
        chat=message.chat,
        from_user=message.from_user,
        text=START,
        entities=(MessageEntity(MessageEntity.BOT_COMMAND, 0, len(START)),),
    )
    start.set_bot(bot)
    new = Update(update.update_id, message=start, api_kwargs=dict(update.api_kwargs))
    new.set_bot(bot)
    return new
