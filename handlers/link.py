"""/link: one person on two messengers. ``/link`` gives a one-time code; ``/link CODE`` (or the
code typed alone, outside a conversation) on the other messenger joins the two accounts. The
same handlers serve Telegram and Zalo: options only, never a messenger's own types.

Buttons: ``link:here`` (send my messages here), ``link:last`` (to the messenger I used last),
``link:drop:<account id>`` (unlink that account: it must be one of the presser's own person),
``link:yes:<ref>`` / ``link:no:<ref>`` (the answer to "share your health book with …?").

Two guards on a typed code. Wrong codes are limited for the whole process and per messenger
id, in memory, beside the account's own count (:mod:`bot.link_guard`: /delete erases the
account's count, not this one). And a code typed on an account that holds a health book,
bookings or a form in progress joins nothing before its typist says yes, naming the account
that will see and change the book: "send 4827 1930 to the bot to confirm your appointment"
is how someone else's code would reach them. The code stays unused until the yes; the
options carry only an opaque reference to it (:class:`bot.link_guard.PendingLinks`), and a
"no" deletes it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, ConversationHandler

from bot.i18n import Translator
from handlers.common import Turn, callback_parts, inline, parse_id, render_error, turn
from models import accounts
from models import healthbook as hb
from models.addresses import Address
from models.errors import DomainError
from models.tables import Account

Reask = Callable[[Turn], Awaitable[object]]


def named(t: Translator, channel: str, external_id: str) -> str:
    """``Zalo …d6a9``: the messenger and the end of the id, enough for its owner to tell."""
    key = f"link.channel.{channel}"
    shown = t(key) if t.has(key) else channel
    return t("link.account", channel=shown, id=accounts.masked_id(external_id))


def account_name(t: Translator, account: Account) -> str:
    """An account as :func:`named` shows it."""
    return named(t, account.channel, account.external_id)


async def _own(turn_: Turn) -> Account:
    """The sender's own account on this channel (created now if they had none)."""
    if turn_.own is None:
        await turn_.account_or_create()
    assert turn_.own is not None
    return turn_.own


async def show(turn_: Turn) -> None:
    """A new code, when it expires, and (when linked) the other accounts, where messages go,
    and the choices: unlink, send my messages here or to the messenger used last."""
    t, session = turn_.t, turn_.session
    own = await _own(turn_)
    now = turn_.services.clock()
    code = await accounts.create_link_code(session, own, now)
    until = (now + accounts.CODE_LIFE).astimezone(turn_.services.tz)
    lines = [
        t(
            "link.code",
            code=accounts.format_code(code),
            until=f"{until:%H:%M}",
            minutes=int(accounts.CODE_LIFE.total_seconds() // 60),
        )
    ]
    rows: list[list[tuple[str, str]]] = []
    person = await accounts.person_of(session, own)
    others = [a for a in person if a.id != own.id]
    if others:
        target, chosen = await accounts.messages_go_to(session, own)
        lines.append(t("link.linked_with", accounts=", ".join(account_name(t, a) for a in others)))
        lines.append(
            t("link.via_chosen" if chosen else "link.via_last", account=account_name(t, target))
        )
        rows += [
            [(t("link.button.unlink", account=account_name(t, a)), f"link:drop:{a.id}")]
            for a in others
        ]
        if not (chosen and target.id == own.id):
            rows.append([(t("link.button.here"), "link:here")])
        if chosen:
            rows.append([(t("link.button.last"), "link:last")])
    turn_.say("\n\n".join(lines), inline(rows) if rows else None)


REF_MAX = 16  # a pending code's reference in an option (bot.link_guard: 12 characters)


def _holds_data(held: hb.Holdings) -> bool:
    """Whether linking would show someone else a health book, bookings or a form begun."""
    return bool(held.health_books or held.bookings or held.drafts)


async def redeem(turn_: Turn, code: str) -> bool:
    """Join this account to the person whose code it is; whether it was joined (a refusal is
    said). An account that holds data is asked first (nothing joined yet). The code's maker
    is told on their messenger, with a button to undo it."""
    services, t = turn_.services, turn_.t
    now = services.clock()
    attempt = services.link_guesses.admit(turn_.channel, str(turn_.user_id), now)
    if isinstance(attempt, int):  # too many wrong codes: from this id, or from everyone
        turn_.say(t("link.too_many_attempts", minutes=attempt))
        return False
    wrong = False
    try:
        own = await _own(turn_)
        claim = await accounts.check_link_code(turn_.session, own, code, now)
    except DomainError as err:
        wrong = err.key == "link.wrong"
        turn_.say(render_error(t, err))
        return False
    finally:
        services.link_guesses.settle(attempt, wrong=wrong)
    if _holds_data(claim.held):
        ref = services.pending_links.add(own.id, claim.code_hash, claim.expires)
        turn_.say(
            t("link.confirm", account=account_name(t, claim.issuer)),
            inline(
                [
                    [(t("link.button.confirm"), f"link:yes:{ref}")],
                    [(t("button.no"), f"link:no:{ref}")],
                ]
            ),
        )
        return False
    try:
        linked = await accounts.redeem_checked(turn_.session, own, claim.code_hash, now)
    except DomainError as err:
        turn_.say(render_error(t, err))
        return False
    _joined(turn_, own, linked, close=False)
    return True


async def confirmed(turn_: Turn, yes: bool, ref: str) -> bool:
    """The answer to "link?": join (the code checked again: it may have expired), or drop the
    code; whether it was joined. A reference that is not this account's, or forgotten (a
    restart), changes nothing."""
    services, t, own = turn_.services, turn_.t, turn_.own
    now = services.clock()
    pending = None
    if own is not None and 0 < len(ref) <= REF_MAX:
        pending = services.pending_links.take(ref, own.id, now)
    if own is None or pending is None:
        turn_.toast(t("link.confirm_stale"), alert=True)
        return False
    if not yes:
        await accounts.drop_code(turn_.session, pending.code_hash)
        turn_.close_with = t("link.declined")
        return False
    try:
        linked = await accounts.redeem_checked(turn_.session, own, pending.code_hash, now)
    except DomainError as err:
        turn_.close_with = render_error(t, err)
        return False
    _joined(turn_, own, linked, close=True)
    return True


def _joined(turn_: Turn, own: Account, linked: accounts.Linked, *, close: bool) -> None:
    """After a join: the turn speaks for the person (their account, their language) and says
    so (on the answered question, with ``close``); the code's maker is told, with a button to
    undo it."""
    services = turn_.services
    turn_.account = linked.primary
    if linked.primary.locale:
        turn_.t = services.translations.get(linked.primary.locale, services.channel)
    issuer = linked.issuer
    done = turn_.t("link.done", account=account_name(turn_.t, issuer))
    if close:
        turn_.close_with = done
    else:
        turn_.say(done)
    theirs = services.translations.get(linked.primary.locale, issuer.channel)
    turn_.notify(
        Address(issuer.channel, issuer.external_id),
        theirs("link.notice", account=account_name(theirs, own)),
        inline(
            [
                [
                    (
                        theirs("link.button.unlink", account=account_name(theirs, own)),
                        f"link:drop:{own.id}",
                    )
                ]
            ]
        ),
        locale=theirs.locale,
    )


def handlers(conversation: str | None, again: Reask) -> list[BaseHandler]:
    """/link and its buttons, inside ``conversation`` (its question asked again) or outside."""

    @turn(conversation)
    async def link(turn_: Turn) -> object:
        """/link: a code to send on the other messenger; /link CODE: use one."""
        rest = turn_.text.split(maxsplit=1)[1:]
        if rest:
            if await redeem(turn_, rest[0]):
                return ConversationHandler.END  # the person's data may have changed sides
            return await again(turn_)
        await show(turn_)
        return await again(turn_)

    @turn(conversation)
    async def link_answer(turn_: Turn) -> object:
        """A /link button: unlink an account, or choose where messages go."""
        t, session = turn_.t, turn_.session
        parts = callback_parts(turn_.update, "link") or []
        if len(parts) == 2 and parts[0] in ("yes", "no"):  # "link?" answered
            if await confirmed(turn_, parts[0] == "yes", parts[1]):
                return ConversationHandler.END  # the person's data may have changed sides
            return await again(turn_)
        own = turn_.own
        person = await accounts.person_of(session, own) if own is not None else []
        ids = {a.id: a for a in person}
        target_id = parse_id(parts[1]) if len(parts) == 2 and parts[0] == "drop" else None
        if own is None or len(person) < 2:
            turn_.toast(t("error.button.stale"), alert=True)
            return None
        if parts in (["here"], ["last"]):
            await accounts.send_here(session, own, fixed=parts == ["here"])
            turn_.close_with = t("link.here_set" if parts == ["here"] else "link.last_set")
            return await again(turn_)
        if target_id is None or target_id not in ids or target_id == own.id:
            turn_.toast(t("error.button.stale"), alert=True)  # forged, or no longer linked
            return None
        head = person[0]
        await accounts.unlink(session, ids[target_id])
        turn_.account = head if own.linked_to is not None or own.id == head.id else own
        turn_.close_with = t("link.unlinked", account=account_name(t, head))
        return await again(turn_)

    return [CommandHandler("link", link), CallbackQueryHandler(link_answer, pattern=r"^link:")]
