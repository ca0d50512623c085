"""Commands that work anywhere, mid-conversation too: /help, /language, /cancel, /mydata, /delete.

Inside a conversation they keep its state (and ask the current question again) or end it;
outside they simply answer.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from telegram import ReplyKeyboardRemove
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, ConversationHandler

from handlers.common import Turn, callback_parts, inline, turn
from models import healthbook as hb

Reask = Callable[[Turn], Awaitable[object]]
DELETE_CONFIRM_SECONDS = 600


def _handlers(conversation: str | None, reask: Reask | None) -> list[BaseHandler]:
    async def again(turn_: Turn) -> object:
        return await reask(turn_) if reask is not None else None

    @turn(conversation)
    async def help_(turn_: Turn) -> object:
        """/help: what the bot does and its commands."""
        s = turn_.services.settings.bot
        turn_.say(turn_.t("help.text", hotline=s.hotline, emergency=s.emergency))
        return await again(turn_)

    @turn(conversation)
    async def language(turn_: Turn) -> object:
        """/language: buttons for each language, each named in its own language."""
        tr = turn_.services.translations
        rows = [[(tr.get(lang)("language.name"), f"lang:{lang}")] for lang in tr.languages]
        turn_.say(turn_.t("language.choose"), inline(rows))
        return None

    @turn(conversation)
    async def language_chosen(turn_: Turn) -> object:
        """A language button: remember the choice for this person, then carry on in it."""
        parts = callback_parts(turn_.update, "lang")
        tr = turn_.services.translations
        if not parts or parts[0] not in tr.languages:
            turn_.toast(turn_.t("error.button.invalid"))
            return None
        account = await turn_.account_or_create()
        account.locale = parts[0]
        turn_.t = tr.get(parts[0])
        turn_.close_with = turn_.t("language.changed")
        return await again(turn_)

    @turn(conversation)
    async def cancel(turn_: Turn) -> object:
        """/cancel: stop for now; the draft is kept for /start."""
        if conversation is None:
            turn_.say(turn_.t("cancel.nothing"), ReplyKeyboardRemove())
            return None
        turn_.say(turn_.t("cancel.kept"), ReplyKeyboardRemove())
        return ConversationHandler.END

    @turn(conversation)
    async def mydata(turn_: Turn) -> object:
        """/mydata: everything stored about me, as a message and a JSON file."""
        if turn_.account is None:
            turn_.say(turn_.t("mydata.nothing"))
            return await again(turn_)
        data = await hb.export_data(turn_.session, turn_.account)
        books, draft = data["health_books"], data["draft"]
        turn_.say(
            turn_.t(
                "mydata.summary",
                consents=len(data["consents"]),
                books=len(books),
                draft=turn_.t("mydata.draft_yes" if draft else "mydata.draft_no"),
            )
        )
        payload = json.dumps(data, ensure_ascii=False, indent=2, default=str).encode()
        turn_.send_document(payload, "healthbook-mydata.json", turn_.t("mydata.file_caption"))
        return await again(turn_)

    @turn(conversation)
    async def delete(turn_: Turn) -> object:
        """/delete: ask to confirm (the button expires after ten minutes)."""
        if turn_.account is None:
            turn_.say(turn_.t("delete.nothing"))
            return await again(turn_)
        stamp = int(turn_.services.clock().timestamp())
        turn_.say(
            turn_.t("delete.confirm"),
            inline(
                [
                    [(turn_.t("button.delete_yes"), f"acct:delete:{stamp}")],
                    [(turn_.t("button.delete_no"), "acct:keep")],
                ]
            ),
        )
        return None

    @turn(conversation)
    async def delete_answer(turn_: Turn) -> object:
        """Confirmation of /delete: erase everything about the person, or keep it."""
        parts = callback_parts(turn_.update, "acct") or []
        now = int(turn_.services.clock().timestamp())
        if parts == ["keep"]:
            turn_.close_with = turn_.t("delete.kept")
            return await again(turn_)
        fresh = (
            len(parts) == 2
            and parts[0] == "delete"
            and parts[1].isdigit()
            and 0 <= now - int(parts[1]) <= DELETE_CONFIRM_SECONDS
        )
        if not fresh:
            turn_.toast(turn_.t("error.button.stale"), alert=True)
            return None
        if turn_.account is not None:
            await hb.erase_account(turn_.session, turn_.account)
        turn_.close_with = turn_.t("delete.done")
        turn_.say(turn_.t("delete.done_more"), ReplyKeyboardRemove())
        return ConversationHandler.END

    return [
        CommandHandler("help", help_),
        CommandHandler("language", language),
        CallbackQueryHandler(language_chosen, pattern=r"^lang:"),
        CommandHandler("cancel", cancel),
        CommandHandler("mydata", mydata),
        CommandHandler("delete", delete),
        CallbackQueryHandler(delete_answer, pattern=r"^acct:"),
    ]


def conversation_fallbacks(conversation: str, reask: Reask) -> list[BaseHandler]:
    """The commands as fallbacks of a conversation: they keep or end its state."""
    return _handlers(conversation, reask)


def standalone() -> list[BaseHandler]:
    """The same commands outside any conversation."""
    return _handlers(None, None)
