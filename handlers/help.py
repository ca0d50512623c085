"""Outside any conversation: /profile, and a friendly answer to anything unexpected."""

from __future__ import annotations

from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, MessageHandler, filters

from handlers import account, healthbook, link, site
from handlers.common import Turn, turn
from models.accounts import normalize_code


@turn()
async def fallback_text(turn_: Turn) -> None:
    """Any message outside a conversation: say how to begin (a /link code typed alone is
    used as one; a booking code typed alone by site staff checks that person in)."""
    if normalize_code(turn_.text) is not None:
        await link.redeem(turn_, turn_.text)
        return
    if await site.checkin_typed(turn_):  # site staff typing a booking code alone
        return
    await idle_answer(turn_)


async def idle_answer(turn_: Turn) -> None:
    """What a message outside any conversation gets (an unknown command too): the last
    choices again when it names none of them, else how to begin. Also the answer to a
    command someone may not use (/broadcast), so that it gives away nothing."""
    if turn_.update.message is not None and turn_.update.message.text:
        offer = await turn_.services.offers.load(turn_.session, turn_.channel, str(turn_.chat_id))
        if offer.choices:  # an answer to the last choices that names none of them: them again
            await turn_.say_again_with_choices(turn_.t("error.input.use_buttons"))
            return
    turn_.say(turn_.t("idle.hint"))


@turn()
async def fallback_button(turn_: Turn) -> None:
    """A button from a finished conversation."""
    turn_.toast(turn_.t("error.button.stale"))


def handlers() -> list[BaseHandler]:
    """Top-level handlers, checked after the conversations."""
    return [
        CommandHandler("profile", healthbook.profile),
        *account.standalone(),
        # private chats only: a group gets no catch-all reply (handlers/groups.py)
        MessageHandler(filters.ChatType.PRIVATE & ~filters.UpdateType.EDITED, fallback_text),
        CallbackQueryHandler(fallback_button),
    ]
