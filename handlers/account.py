"""Commands that work anywhere, mid-conversation too: /help, /language, /cancel, /mydata, /delete.

Inside a conversation they keep its state (and ask the current question again) or end it;
outside they simply answer.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, ConversationHandler

from bot.context import Services
from bot.http import MediaStore
from bot.i18n import Translator
from handlers import aftercare, guide, link
from handlers import audit as audit_words
from handlers.common import REMOVE_KEYBOARD, Turn, callback_parts, inline, parse_id, turn
from models import accounts
from models import healthbook as hb
from models import validators as v
from models.tables import Account

Reask = Callable[[Turn], Awaitable[object]]
DELETE_CONFIRM_SECONDS = 600


def _handlers(conversation: str | None, reask: Reask | None) -> list[BaseHandler]:
    async def again(turn_: Turn) -> object:
        return await reask(turn_) if reask is not None else None

    @turn(conversation)
    async def help_(turn_: Turn) -> object:
        """/help: the guide's menu (handlers/guide.py); the conversation under way stays where
        it is, and the guide's "Continue" asks its question again."""
        await guide.open_guide(turn_, reask=reask is not None)
        return None

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
        turn_.t = tr.get(parts[0], turn_.channel)
        turn_.close_with = turn_.t("language.changed")
        return await again(turn_)

    @turn(conversation)
    async def cancel(turn_: Turn) -> object:
        """/cancel: stop for now; the draft is kept for /start."""
        if conversation is None:
            turn_.say(turn_.t("cancel.nothing"), REMOVE_KEYBOARD)
            return None
        turn_.say(turn_.t("cancel.kept"), REMOVE_KEYBOARD)
        return ConversationHandler.END

    @turn(conversation)
    async def mydata(turn_: Turn) -> object:
        """/mydata: everything stored about me, as a message and a JSON file."""
        if turn_.account is None:
            turn_.say(turn_.t("mydata.nothing"))
            return await again(turn_)
        data = await hb.export_data(turn_.session, turn_.account, turn_.t)
        for text in mydata_messages(turn_.t, data):
            turn_.say(text)
        payload = json.dumps(data, ensure_ascii=False, indent=2).encode()
        turn_.send_document(payload, "healthbook-mydata.json", turn_.t("mydata.file_caption"))
        return await again(turn_)

    @turn(conversation)
    async def delete(turn_: Turn) -> object:
        """/delete: ask to confirm (the button expires after ten minutes)."""
        if turn_.account is None:
            turn_.say(turn_.t("delete.nothing"))
            return await again(turn_)
        stamp = int(turn_.services.clock().timestamp())
        held = await hb.holdings(turn_.session, turn_.account)
        turn_.say(
            delete_confirmation(turn_.t, held),
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
        stamp = parse_id(parts[1], high=2**62) if len(parts) == 2 else None
        fresh = (
            parts[0] == "delete"
            and stamp is not None
            and 0 <= now - stamp <= DELETE_CONFIRM_SECONDS
        )
        if not fresh:
            turn_.toast(turn_.t("error.button.stale"), alert=True)
            return None
        if turn_.account is not None:
            erased = await accounts.person_of(turn_.session, turn_.account)
            named_them = await hb.erase_account(turn_.session, turn_.account)
            forget(turn_.services, erased)
            for chat in named_them:  # a head's list of members: that line's name is gone
                turn_.services.offers.forget(*chat)
        turn_.close_with = turn_.t("delete.done")
        turn_.say(turn_.t("delete.done_more"), REMOVE_KEYBOARD)
        return ConversationHandler.END

    return [
        CommandHandler("help", help_),
        CommandHandler("language", language),
        CallbackQueryHandler(language_chosen, pattern=r"^lang:"),
        CommandHandler("cancel", cancel),
        CommandHandler("mydata", mydata),
        CommandHandler("delete", delete),
        CallbackQueryHandler(delete_answer, pattern=r"^acct:"),
        *link.handlers(conversation, again),
        *guide.handlers(conversation, reask),
        *aftercare.handlers(conversation, again),
    ]


def forget(services: Services, erased: list[Account]) -> None:
    """What this process holds in memory about erased accounts' chats: their last choices
    (the cache over ``chat_offers``), their files' links (Zalo's media store: 404 from now on)
    and a /link code waiting for their "yes". Done before the commit: if the erasure failed,
    nothing is lost that matters (the choices are read again, a link or a code asked again)."""
    for account in erased:
        chat = (account.channel, account.external_id)  # a private chat's id is its person's
        services.offers.forget(*chat)
        media = getattr(services.channels.get(account.channel), "media", None)
        if isinstance(media, MediaStore):
            media.drop(chat)
        services.pending_links.drop(account.id)


MESSAGE_LIMIT = 4000  # Telegram takes 4096 characters per message; a margin for safety


def pack_messages(blocks: list[str], limit: int = MESSAGE_LIMIT) -> list[str]:
    """Blocks, a blank line apart, in as few messages as fit the limit (cut between lines; a
    single line longer than a message is cut where it must)."""
    messages: list[str] = []
    current = ""
    for line in "\n\n".join(blocks).split("\n"):
        while len(line) > limit:
            messages += [current, line[:limit]]
            current, line = "", line[limit:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            messages.append(current)
            candidate = line
        current = candidate
    messages.append(current)
    return [m.strip() for m in messages if m.strip()]


def _name(value: dict | None, t: Translator) -> str:
    """The name of a coded value (its code when the name is no longer known)."""
    if not value:
        return t("review.none")
    return str(value.get("name") or value.get("code"))


def _book_lines(t: Translator, answers: dict, *, unlike: dict | None = None) -> list[str]:
    """A health book (or the answers of a draft) field by field, ID numbers masked; with
    ``unlike``, only the answers that differ from it."""
    lines = []
    for field in hb.FIELDS:
        if field not in answers or (unlike is not None and unlike.get(field) == answers[field]):
            continue
        value = answers[field]
        if isinstance(value, dict) and "code" in value:
            text = _name(value, t)
        elif field == "id_number" and isinstance(value, dict) and value.get("number"):
            masked = v.IdNumber(kind=value.get("kind"), number=str(value["number"])).masked()
            text = f"{masked} ({value.get('kind_name') or value.get('kind')})"
        elif field == "bhyt" and value:
            text = v.mask_bhyt(str(value))
        elif field == "screening" and isinstance(value, list):
            flagged = [
                t("screening_short." + item["code"])
                + " — "
                + (item["answer_name"] or item["answer"])
                for item in value
                if item["answer"] not in ("no", "not_applicable")
            ]
            text = "; ".join(flagged) if flagged else t("review.screening_ok")
        else:
            text = str(value) if value not in (None, "", {}, []) else t("review.none")
        lines.append(f"• {t(f'field.{field}')}: {text}")
    return lines


def _book_heading(t: Translator, book: dict) -> str:
    """Whose book it is: one's own, or a relative's (named, with the relation), then the
    consent given for a relative's book (its kind, when, the terms' version)."""
    if book.get("relation") in (None, "self"):
        return t("mydata.book", updated=book["updated_at"])
    relation = book["relation"]
    heading = t(
        "mydata.book_of",
        relation=t(f"relation.{relation}") if t.has(f"relation.{relation}") else relation,
        name=book.get("full_name") or "—",
        updated=book["updated_at"],
    )
    consent = book.get("consent")
    if consent is None or consent["kind"] is None:
        return heading
    given = t(
        "mydata.book_consent",
        kind=_name(consent["kind"], t),
        when=consent["at"] or t("review.none"),
        version=consent["version"] or t("review.none"),
    )
    return heading + "\n" + given


def mydata_messages(t: Translator, data: dict) -> list[str]:
    """Everything :func:`models.healthbook.export_data` gathered, in words, in messages that
    each fit Telegram's limit."""
    account = data["account"]
    blocks = [
        t("mydata.title"),
        t(
            "mydata.account",
            language=_name(account["language"], t),
            role=_name(account["role"], t),
            since=account["created_at"] or t("review.none"),
        ),
    ]

    def section(key: str, items: list[str]) -> None:
        if items:
            blocks.append("\n".join([t(key, count=len(items)), *items]))

    if data.get("linked_accounts"):
        section(
            "mydata.linked",
            [
                "• " + link.named(t, a["channel"], a["user_id"])
                for a in [account, *data["linked_accounts"]]
            ],
        )
    section(
        "mydata.consents",
        [
            t("mydata.consent_item", when=c["given_at"], version=c["version"])
            for c in data["consents"]
        ],
    )
    for book in data["health_books"]:
        blocks.append("\n".join([_book_heading(t, book), *_book_lines(t, book)]))
    draft = data["draft"]
    if draft is not None and draft["edits_saved_book"] and data["health_books"]:
        changed = _book_lines(t, draft["answers"], unlike=data["health_books"][0])
        blocks.append("\n".join([t("mydata.draft_edit", count=len(changed)), *changed]))
    elif draft is not None:
        answers = draft["answers"]
        blocks.append("\n".join([t("mydata.draft", count=len(answers)), *_book_lines(t, answers)]))
    section(
        "mydata.bookings",
        [
            t(
                "mydata.booking_item",
                code=b["code"],
                campaign=_name(b["campaign"], t),
                dose=b["dose"],
                site=_name(b["site"], t),
                date=b["date"],
                hours=b["hours"],
                status=_name(b["status"], t),
            )
            for b in data["bookings"]
        ],
    )
    section(
        "mydata.waitlist",
        [
            t(
                "mydata.waitlist_item",
                campaign=_name(e["campaign"], t),
                dose=e["dose"],
                site=_name(e["site"] or (e["session"] or {}).get("site"), t),
                when=(
                    (e["session"] or {}).get("date")
                    or e["date"]
                    or t("mydata.waitlist_from", date=e["not_before"])
                ),
                status=_name(e["status"], t),
            )
            for e in data["waitlist"]
        ],
    )
    section(
        "mydata.vaccinations",
        [
            t(
                "mydata.vaccination_item",
                campaign=_name(d["campaign"], t),
                dose=d["dose"],
                vaccine=_name(d["vaccine"], t),
                lot=d["lot_number"],
                when=d["given_at"],
                site=_name(d["site"], t),
            )
            for d in data["vaccinations"]
        ],
    )
    section(
        "mydata.staff_sites",
        [
            t("mydata.staff_site_item", site=_name(x["site"], t), since=x["since"])
            for x in data["staff_sites"]
        ],
    )
    _agency_blocks(t, data, blocks, section)
    section(
        "mydata.reminders",
        [
            t(
                "mydata.reminder_item_for" if r.get("about") else "mydata.reminder_item",
                kind=_name(r["kind"], t) if r["kind"]["name"] else t("reminder.kind.other"),
                when=r["due_at"],
                name=r.get("about") or "",
            )
            for r in data.get("reminders", [])
        ],
    )
    section(
        "mydata.reactions",
        [
            t(
                "mydata.reaction_item",
                severity=_name(r["severity"], t),
                dose=r["dose"],
                site=_name(r["site"], t),
                when=r["reported_at"],
            )
            for r in data.get("reactions", [])
        ],
    )
    section(  # who acted on their records for them: by role and commune (the audit trail)
        "mydata.acted_on",
        [
            t(
                "mydata.acted_on_item",
                when=e["at"],
                action=_name(e["action"], t),
                book=e["health_book"],
                role=audit_words.role_name(t, e["by"]["role"]["code"]) if e["by"]["role"] else "—",
                commune=e["by"]["commune"] or "—",
                fields=audit_words.field_names(t, e["fields"]),
            )
            for e in data.get("acted_on_records", [])
        ],
    )
    section(
        "mydata.volunteer_wards",
        [
            t(
                "mydata.volunteer_ward_item",
                commune=w["commune"]["name"] or w["commune"]["code"],
                since=w["since"],
            )
            for w in data.get("volunteer_communes", [])
        ],
    )
    if data["staff_records"]:
        blocks.append(t("mydata.staff_records", count=data["staff_records"]))
    if data.get("acted_for_others"):
        blocks.append(t("mydata.acted_for_others", count=data["acted_for_others"]))
    if data["booking_draft"] is not None:
        blocks.append(
            t("mydata.booking_draft", campaign=_name(data["booking_draft"]["campaign"], t))
        )
    if data["conversations"]:
        blocks.append(t("mydata.conversations", count=len(data["conversations"])))
    blocks.append(t("mydata.file_note"))
    return pack_messages(blocks)


def _agency_blocks(
    t: Translator, data: dict, blocks: list[str], section: Callable[[str, list[str]], None]
) -> None:
    """The agency they work in now and since when, those they were in before (how each
    ended, never who ended it), the agencies they head, and how many members they removed."""
    memberships = data.get("agency_memberships", [])
    for m in memberships:
        if m["left_at"] is None:
            agency = m["agency"]
            blocks.append(
                t("mydata.agency", name=agency["name"], code=agency["code"], since=m["joined_at"])
            )
    section(
        "mydata.agency_past",
        [
            t(
                "mydata.agency_past_item",
                name=m["agency"]["name"],
                code=m["agency"]["code"],
                since=m["joined_at"],
                until=m["left_at"],
                how=_name(m["ended"], t),
            )
            for m in memberships
            if m["left_at"] is not None
        ],
    )
    section(
        "mydata.agency_heads",
        [
            t(
                "mydata.agency_head_item",
                name=h["agency"]["name"],
                code=h["agency"]["code"],
                since=h["since"],
            )
            for h in data.get("agency_heads", [])
        ],
    )
    if data.get("agency_removals_made"):
        blocks.append(t("mydata.agency_removals", count=data["agency_removals_made"]))


def delete_confirmation(t: Translator, held: hb.Holdings) -> str:
    """What /delete will erase, kind by kind with counts, and what becomes of booked places."""
    items = [
        ("delete.item.health_books", held.health_books),
        ("delete.item.bookings", held.bookings),
        ("delete.item.places", held.places_held),
        ("delete.item.waitlist", held.waitlist),
        ("delete.item.vaccinations", held.vaccinations),
        ("delete.item.drafts", held.drafts),
        ("delete.item.consents", held.consents),
        ("delete.item.staff_sites", held.staff_sites),
        ("delete.item.staff_records", held.staff_records),
        ("delete.item.agency_memberships", held.agency_memberships),
        ("delete.item.agency_heads", held.agency_heads),
        ("delete.item.agency_removals", held.agency_removals),
        ("delete.item.linked", held.linked_accounts),
        ("delete.item.reminders", held.reminders),
        ("delete.item.reactions", held.reactions),
    ]
    lines = [t(key, count=count) for key, count in items if count]
    return "\n".join([t("delete.confirm"), *lines, t("delete.item.account"), "", t("delete.final")])


def conversation_fallbacks(conversation: str, reask: Reask) -> list[BaseHandler]:
    """The commands as fallbacks of a conversation: they keep or end its state."""
    return _handlers(conversation, reask)


def standalone() -> list[BaseHandler]:
    """The same commands outside any conversation."""
    return _handlers(None, None)
