"""/assist: commune volunteers register residents on their behalf (consent read aloud and given
verbally), by quick entry or one question at a time, find them again, follow their progress, and
ask the holder of a book registered already to let them help.

The questions themselves are the health-book conversation's (handlers/healthbook.py): this
module starts an ``assisted`` draft from its entry handlers (:func:`entries`) and changes how
some questions are asked and answered through :data:`healthbook.HOOKS` (quick entry at the name,
no "share my phone" button, the volunteer's communes only, the health declaration as one
checklist). The menu, the search and the residents' list are a small conversation of their own
(:func:`build`), looked at before the others (a negative handler group, see bot/app.py) so that
its buttons and its typed search work in the middle of a registration; any other update leaves
its search state and goes on to the other handlers.

Every id in callback data is checked through :func:`models.custody.require_book`; anyone but an
active volunteer gets the same short notice, and nothing changes.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

from sqlalchemy import exists, select
from telegram import Update
from telegram.ext import (
    ApplicationHandlerStop,
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot.context import HBContext
from bot.persistence import write_state
from handlers import family, healthbook
from handlers.common import (
    Turn,
    callback_ids,
    callback_parts,
    chunk,
    inline,
    is_private,
    parse_id,
    render_error,
    turn,
)
from handlers.healthbook import Step, SubjectHooks, subject_line
from models import assist as ma
from models import custody
from models import family as fam
from models import healthbook as hb
from models import validators as v
from models.errors import DomainError, InvalidAnswer
from models.tables import (
    Account,
    Draft,
    HealthBook,
    ParkedDraft,
    VolunteerWard,
    WaitlistEntry,
)
from models.timeutil import as_aware, to_utc

NAME = "assist"
PRIVATE = filters.ChatType.PRIVATE
NEW_TEXT = filters.UpdateType.MESSAGE & filters.TEXT & ~filters.COMMAND
OURS = r"^as:(?!agree$|r:|e:|dx:|sp:)"
MAX_FOUND = 8


class AssistStep(StrEnum):
    """States of the /assist conversation (the menu and the lists need none)."""

    FIND = "find"


# ---------------------------------------------------------------- who may


async def _volunteer(turn_: Turn) -> Account | None:
    """The sender when they are an active volunteer; else the notice is queued, None."""
    account = turn_.account
    if account is not None and await custody.is_volunteer(turn_.session, account):
        return account
    suspended = custody.is_suspended(account) and await turn_.session.scalar(
        select(exists().where(VolunteerWard.account_id == account.id))  # type: ignore[union-attr]
    )
    refuse(turn_, "assist.suspended_rights" if suspended else "assist.only_volunteers")
    return None


def refuse(turn_: Turn, key: str) -> None:
    """A refusal: on a button, its notice alone (on Zalo a message), so the choices offered
    before still stand; a message otherwise."""
    if turn_.update.callback_query is not None:
        turn_.toast(turn_.t(key), alert=True)
    else:
        turn_.say(turn_.t(key))


def _denied(turn_: Turn) -> None:
    refuse(turn_, "access.denied")


# ---------------------------------------------------------------- the menu


#: answers a new resident's registration starts with (the volunteer's province and commune)
PREFILLED = frozenset({"province", "ward"})


def _empty(draft: Draft | ParkedDraft) -> bool:
    """Whether nothing was answered for anyone yet (a registration just begun, or one whose
    first line was refused): not an unfinished registration, never listed or set aside."""
    return draft.book_id is None and not set(draft.answers or {}) - PREFILLED


async def _drop_empty(turn_: Turn, volunteer: Account) -> None:
    """Delete the volunteer's registration in progress when nothing was answered in it (before
    another begins, so it is not set aside as an unnamed "new resident")."""
    draft = await hb.get_draft(turn_.session, volunteer)
    if draft is not None and draft.subject == "assisted" and _empty(draft):
        await _drop_draft(turn_, volunteer, draft)


async def _drop_draft(turn_: Turn, volunteer: Account, draft: Draft) -> None:
    await turn_.session.delete(draft)
    turn_.session.info.get("drafts", {}).pop(volunteer.id, None)
    await turn_.session.flush()


async def _unfinished(turn_: Turn, volunteer: Account) -> tuple[Draft | None, list[Any]]:
    """The volunteer's registration in progress (when it is a resident's) and the parked ones
    (none of them empty)."""
    draft = await hb.get_draft(turn_.session, volunteer)
    current = draft if draft is not None and draft.subject == "assisted" else None
    if current is not None and _empty(current):
        current = None
    parked = [
        p
        for p in await hb.parked_drafts(turn_.session, volunteer)
        if p.subject == "assisted" and not _empty(p)
    ]
    return current, parked


async def show_menu(turn_: Turn, volunteer: Account) -> None:
    """What a volunteer can do, and where."""
    t = turn_.t
    wards = await custody.volunteer_wards(turn_.session, volunteer)
    current, parked = await _unfinished(turn_, volunteer)
    rows = [
        [(t("assist.button.new"), "as:new")],
        [(t("assist.button.find"), "as:find"), (t("assist.button.mine"), "as:m:0")],
    ]
    unfinished = len(parked) + (1 if current is not None else 0)
    if unfinished:
        rows.append([(t("assist.button.unfinished", count=unfinished), "as:p")])
    communes = ", ".join(v.ward_name(w) for w in wards)
    turn_.say(t("assist.menu", communes=communes), inline(rows))


async def menu(turn_: Turn) -> object:
    """/assist (or Menu): the volunteer's menu; anyone else: what it is and how to join."""
    volunteer = await _volunteer(turn_)
    if volunteer is not None:
        await show_menu(turn_, volunteer)
    return ConversationHandler.END


async def new_resident(turn_: Turn) -> object:
    """New resident: the consent text to read out, then their agreement."""
    volunteer = await _volunteer(turn_)
    if volunteer is None:
        return ConversationHandler.END
    t = turn_.t
    turn_.say(
        t("assist.consent", version=turn_.services.settings.bot.consent_version),
        inline([[(t("assist.button.agreed"), "as:agree")], [(t("assist.button.menu"), "as:menu")]]),
    )
    return ConversationHandler.END


@turn(healthbook.NAME)
async def consent_given(turn_: Turn) -> object:
    """ "I read it out and they agree": an assisted draft, with the volunteer's commune."""
    volunteer = await _volunteer(turn_)
    if volunteer is None:
        return None
    session = turn_.session
    rows = list(
        await session.scalars(
            select(VolunteerWard)
            .where(VolunteerWard.account_id == volunteer.id)
            .order_by(VolunteerWard.ward_code)
        )
    )
    answers: dict[str, Any] = {}
    if len({r.province_code for r in rows}) == 1:
        answers["province"] = rows[0].province_code
        if len(rows) == 1:
            answers["ward"] = rows[0].ward_code
    now = turn_.services.clock()
    consent = {
        "kind": "verbal",
        "version": turn_.services.settings.bot.consent_version,
        "at": now.isoformat(),
        "by": volunteer.id,
    }
    await _drop_empty(turn_, volunteer)
    draft = await hb.start_draft(
        session, volunteer, subject="assisted", consent=consent, answers=answers
    )
    turn_.close_with = turn_.t("assist.consent_recorded")
    return await healthbook.ask_next(turn_, draft)


@turn(healthbook.NAME)
async def resume_parked(turn_: Turn) -> object:
    """An unfinished registration, continued where it was left."""
    volunteer = await _volunteer(turn_)
    ids = callback_ids(turn_.update, "as:r", 1)
    if volunteer is None:
        return None
    # checked before anything changes: a resident's registration this volunteer set aside
    parked = await turn_.session.get(ParkedDraft, ids[0]) if ids else None
    if parked is None or parked.account_id != volunteer.id or parked.subject != "assisted":
        refuse(turn_, "assist.gone")
        return None
    await _drop_empty(turn_, volunteer)
    draft = await hb.resume_parked(turn_.session, volunteer, parked.id)
    if draft is None:
        refuse(turn_, "assist.gone")
        return None
    turn_.say(turn_.t("resume.welcome_back"))
    return await healthbook.ask_next(turn_, draft)


@turn(healthbook.NAME)
async def edit_resident(turn_: Turn) -> object:
    """Edit: the resident's book as the review, each field editable."""
    volunteer = await _volunteer(turn_)
    ids = callback_ids(turn_.update, "as:e", 1)
    if volunteer is None:
        return None
    try:
        if ids is None:
            raise DomainError("access.denied")
        found = await custody.require_book(turn_.session, volunteer, ids[0])
    except DomainError:
        _denied(turn_)
        return None
    await _drop_empty(turn_, volunteer)
    draft = await hb.start_draft(turn_.session, volunteer, found.book)
    return await healthbook.ask(turn_, draft, Step.REVIEW)


# ---------------------------------------------------------------- find, open, my residents


async def find_prompt(turn_: Turn) -> object:
    """Find: what to type."""
    if await _volunteer(turn_) is None:
        return ConversationHandler.END
    turn_.say(turn_.t("assist.find.ask"))
    return AssistStep.FIND


@turn(NAME)
async def find_text(turn_: Turn) -> object:
    """The name (accents optional), ID number or date of birth typed after Find."""
    volunteer = await _volunteer(turn_)
    if volunteer is None:
        return ConversationHandler.END
    t = turn_.t
    query = turn_.text.strip()
    if not query or len(query) > 60:
        turn_.say(t("assist.find.none") + "\n\n" + t("assist.find.ask"))
        return AssistStep.FIND
    found = await ma.find(turn_.session, volunteer, query, turn_.services.today())
    if not found:
        turn_.say(t("assist.find.none") + "\n\n" + t("assist.find.ask"))
        return AssistStep.FIND
    text = t("assist.find.found", count=len(found))
    if len(found) > MAX_FOUND:
        text += "\n" + t("assist.find.more", count=len(found) - MAX_FOUND)
    rows = [[(_label(b), f"as:o:{b.id}")] for b in found[:MAX_FOUND]]
    turn_.say(text, inline(rows))
    return ConversationHandler.END


def _label(book: HealthBook) -> str:
    return f"{book.full_name} · {book.date_of_birth:%d/%m/%Y}"


async def open_resident(turn_: Turn) -> object:
    """One resident: their book (ID masked) and what can be done for them."""
    volunteer = await _volunteer(turn_)
    ids = callback_ids(turn_.update, "as:o", 1)
    if volunteer is None:
        return ConversationHandler.END
    try:
        if ids is None:
            raise DomainError("access.denied")
        found = await custody.require_book(turn_.session, volunteer, ids[0])
    except DomainError:
        _denied(turn_)
        return ConversationHandler.END
    await show_resident(turn_, found)
    return ConversationHandler.END


async def show_resident(turn_: Turn, found: custody.Access, head: str = "") -> None:
    """A resident's page (the caller checked the sender may act on the book)."""
    book = found.book
    t = turn_.t
    status = (await ma.statuses(turn_.session, [book.id]))[book.id]
    rows = [
        [
            (t("assist.button.edit"), f"as:e:{book.id}"),
            (t("assist.button.book"), f"bk:for:{book.id}"),
        ],
        [
            (t("assist.button.appointments"), f"as:a:{book.id}"),
            (t("assist.button.ticket"), f"bk:ticket:{book.id}"),
        ],
    ]
    # a book with a holder is theirs to hand over; a child's stays where it is
    if fam.may_hand_over(found) and fam.old_enough(book, turn_.services.clock()):
        rows[1].append((t("assist.button.handover"), f"as:h:{book.id}"))
    rows.append([(t("assist.button.menu"), "as:menu")])
    turn_.say(
        head
        + t("assist.resident", status=t(f"assist.status.{status}"))
        + "\n\n"
        + healthbook.summary(turn_, hb.answers_of_book(book)),
        inline(rows),
    )


async def resident_appointments(turn_: Turn) -> object:
    """Appointments: the resident's upcoming bookings (Reschedule, Cancel), places held for
    them and waitlists (as /appointments shows the sender's own: the same choices, each
    checked against the book's custody on every press), then the past ones."""
    volunteer = await _volunteer(turn_)
    ids = callback_ids(turn_.update, "as:a", 1)
    if volunteer is None:
        return ConversationHandler.END
    try:
        if ids is None:
            raise DomainError("access.denied")
        book = (await custody.require_book(turn_.session, volunteer, ids[0])).book
    except DomainError:
        _denied(turn_)
        return ConversationHandler.END
    await show_appointments(turn_, book)
    return ConversationHandler.END


async def show_appointments(turn_: Turn, book: HealthBook) -> None:
    """One book's appointments, in /appointments' words and with its choices (the caller
    checked the sender may act on the book)."""
    from handlers import booking as bkh  # it imports this module's neighbours
    from models import booking as bk

    t = turn_.t
    session = turn_.session
    upcoming = await bk.bookings_for(session, book)
    past = await bk.bookings_for(
        session, book, statuses=("vaccinated", "not_vaccinated", "cancelled", "expired")
    )
    now = to_utc(turn_.services.clock())
    entries = [
        e
        for e in await session.scalars(
            select(WaitlistEntry)
            .where(
                WaitlistEntry.health_book_id == book.id,
                WaitlistEntry.status.in_(("waiting", "offered")),
            )
            .order_by(WaitlistEntry.created_at, WaitlistEntry.id)
        )
        if e.status == "waiting"
        or (e.offer_expires_at is not None and as_aware(e.offer_expires_at) > now)
    ]
    back = [
        [(t("assist.button.book"), f"bk:for:{book.id}")],
        [(t("assist.button.open"), f"as:o:{book.id}"), (t("assist.button.menu"), "as:menu")],
    ]
    head = bkh.whose(turn_, book)
    if not upcoming and not past and not entries:
        turn_.say(head + t("assist.appointments.none"), inline(back))
        return
    said = await bkh._person_appointments(turn_, upcoming, past, entries)
    said[0] = (head + said[0][0], said[0][1])
    if not upcoming and said[-1][1] is None:  # nothing ahead: booking again offered under it
        said[-1] = (said[-1][0], inline(back))
    for text, markup in said:
        turn_.say(text, markup)


async def hand_over(turn_: Turn) -> object:
    """Hand over: a one-time code the resident sends with /join to hold their own book."""
    volunteer = await _volunteer(turn_)
    ids = callback_ids(turn_.update, "as:h", 1)
    if volunteer is None:
        return ConversationHandler.END
    now = turn_.services.clock()
    try:
        if ids is None:
            raise DomainError("access.denied")
        book = (await custody.require_book(turn_.session, volunteer, ids[0])).book
        code = await fam.create_handover(turn_.session, volunteer, book.id, now)
    except DomainError as err:
        if err.key == "access.denied":
            _denied(turn_)
        else:
            turn_.say(render_error(turn_.t, err))
        return ConversationHandler.END
    family.say_handover_code(turn_, book, code, now, (turn_.t("assist.button.menu"), "as:menu"))
    return ConversationHandler.END


async def my_residents(turn_: Turn) -> object:
    """My residents: registered, booked, vaccinated, then a page of them with their status."""
    volunteer = await _volunteer(turn_)
    if volunteer is None:
        return ConversationHandler.END
    ids = callback_ids(turn_.update, "as:m", 1)
    page = ids[0] if ids else 0
    t = turn_.t
    books = await ma.residents(turn_.session, volunteer)
    states = await ma.statuses(turn_.session, [b.id for b in books])
    values = list(states.values())
    current, parked = await _unfinished(turn_, volunteer)
    unfinished = len(parked) + (1 if current is not None else 0)
    pages = max(1, -(-len(books) // ma.PAGE))
    page = min(page, pages - 1)
    shown = books[page * ma.PAGE : (page + 1) * ma.PAGE]
    text = t(
        "assist.progress",
        registered=len(books),
        booked=values.count("booked"),
        vaccinated=values.count("vaccinated"),
        unfinished=unfinished,
    )
    if not books:
        text += "\n\n" + t("assist.mine.none")
    elif pages > 1:
        text += "\n" + t("assist.mine.page", page=page + 1, pages=pages)
    rows = [[(f"{t(f'assist.icon.{states[b.id]}')} {_label(b)}", f"as:o:{b.id}")] for b in shown]
    nav = []
    if page > 0:
        nav.append((t("assist.button.previous"), f"as:m:{page - 1}"))
    if page + 1 < pages:
        nav.append((t("assist.button.next_page"), f"as:m:{page + 1}"))
    if nav:
        rows.append(nav)
    if unfinished:
        rows.append([(t("assist.button.unfinished", count=unfinished), "as:p")])
    rows.append([(t("assist.button.menu"), "as:menu")])
    turn_.say(text, inline(rows))
    return ConversationHandler.END


async def unfinished(turn_: Turn) -> object:
    """Unfinished: the registration in progress and those set aside, to continue."""
    volunteer = await _volunteer(turn_)
    if volunteer is None:
        return ConversationHandler.END
    t = turn_.t
    current, parked = await _unfinished(turn_, volunteer)
    rows = []
    if current is not None:
        name = _draft_name(turn_, current.answers)
        rows.append([(t("assist.button.continue", name=name), "hb:resume"),
                     (t("assist.button.discard", name=name), "as:dq:c")])  # fmt: skip
    for p in parked[: 2 * MAX_FOUND]:
        name = _draft_name(turn_, p.answers)
        rows.append([(name, f"as:r:{p.id}"),
                     (t("assist.button.discard", name=name), f"as:dq:{p.id}")])  # fmt: skip
    if not rows:
        turn_.say(t("assist.unfinished.none"), inline([[(t("assist.button.menu"), "as:menu")]]))
        return ConversationHandler.END
    rows.append([(t("assist.button.menu"), "as:menu")])
    turn_.say(t("assist.unfinished", count=len(rows) - 1), inline(rows))
    return ConversationHandler.END


async def _discardable(
    turn_: Turn, volunteer: Account, which: str
) -> tuple[Draft | ParkedDraft, bool] | None:
    """The unfinished registration a Discard names (``c``: the one in progress; else a number
    set aside), when it is this volunteer's and a resident's; and whether it is the one in
    progress. None otherwise (gone, or forged)."""
    if which == "c":
        current = await hb.get_draft(turn_.session, volunteer)
        if current is None or current.subject != "assisted" or _empty(current):
            return None
        return current, True
    parked_id = parse_id(which)
    parked = await turn_.session.get(ParkedDraft, parked_id) if parked_id else None
    if parked is None or parked.account_id != volunteer.id or parked.subject != "assisted":
        return None
    return parked, False


async def discard_ask(turn_: Turn) -> object:
    """Discard, asked first: whose registration, and that what was typed goes."""
    volunteer = await _volunteer(turn_)
    if volunteer is None:
        return ConversationHandler.END
    parts = callback_parts(turn_.update, "as:dq") or []
    found = await _discardable(turn_, volunteer, parts[0]) if len(parts) == 1 else None
    if found is None:
        refuse(turn_, "assist.gone")
        return ConversationHandler.END
    t = turn_.t
    turn_.say(
        t("assist.discard.ask", name=_draft_name(turn_, found[0].answers)),
        inline(
            [
                [(t("assist.button.discard_yes"), f"as:dx:{parts[0]}")],
                [(t("assist.button.keep"), "as:p")],
            ]
        ),
    )
    return ConversationHandler.END


@turn(healthbook.NAME)
async def discard(turn_: Turn) -> object:
    """Discard confirmed: the registration is deleted (nothing of it kept); when it was the
    one in progress, its questions stop."""
    volunteer = await _volunteer(turn_)
    if volunteer is None:
        return None
    parts = callback_parts(turn_.update, "as:dx") or []
    found = await _discardable(turn_, volunteer, parts[0]) if len(parts) == 1 else None
    if found is None:
        refuse(turn_, "assist.gone")
        return None
    draft, current = found
    name = _draft_name(turn_, draft.answers)
    if current:
        assert isinstance(draft, Draft)
        await _drop_draft(turn_, volunteer, draft)
    else:
        await turn_.session.delete(draft)
        await turn_.session.flush()
    left, parked = await _unfinished(turn_, volunteer)
    rows = [[(turn_.t("assist.button.new"), "as:new"), (turn_.t("assist.button.menu"), "as:menu")]]
    if left is not None or parked:
        count = len(parked) + (left is not None)
        rows.insert(0, [(turn_.t("assist.button.unfinished", count=count), "as:p")])
    turn_.say(turn_.t("assist.discarded", name=name), inline(rows))
    # the one in progress gone: its questions end; one set aside: whatever is under way goes on
    return ConversationHandler.END if current else None


def _draft_name(turn_: Turn, answers: dict[str, Any] | None) -> str:
    name = (answers or {}).get("full_name")
    return str(name) if name else turn_.t("subject.new_resident")


# ---------------------------------------------------------------- the holder's answer


async def link_answer(turn_: Turn) -> object:
    """The holder of a book answers a volunteer's link request: Accept or Decline."""
    t = turn_.t
    accept = (turn_.update.callback_query.data or "").startswith("as:la:")  # type: ignore[union-attr]
    ids = callback_ids(turn_.update, "as:la" if accept else "as:ld", 2)
    account = turn_.account
    try:
        if ids is None or account is None:
            raise DomainError("access.denied")
        book_id, volunteer_id = ids
        if accept:
            book, volunteer = await ma.accept_link(turn_.session, account, book_id, volunteer_id)
        else:
            found = await custody.require_book(turn_.session, account, book_id)
            if found.capacity not in ("self", "relative"):
                raise DomainError("access.denied")
            book, volunteer = found.book, await turn_.session.get(Account, volunteer_id)
    except DomainError as err:
        refuse(turn_, err.key)
        return ConversationHandler.END
    turn_.close_with = t("assist.link.accepted" if accept else "assist.link.declined")
    if volunteer is not None:
        theirs = turn_.services.translations.get(volunteer.locale, volunteer.channel)
        markup = inline([[(theirs("assist.button.open"), f"as:o:{book.id}")]]) if accept else None
        turn_.notify(
            await hb.reply_address(turn_.session, volunteer),
            theirs(
                "assist.link.accepted_volunteer" if accept else "assist.link.declined_volunteer",
                name=book.full_name,
            ),
            markup,
            locale=volunteer.locale,
        )
    return ConversationHandler.END


# ---------------------------------------------------------------- routing of as: buttons

ROUTES: dict[str, Callable[[Turn], Awaitable[object]]] = {
    "menu": menu,
    "new": new_resident,
    "find": find_prompt,
    "m": my_residents,
    "p": unfinished,
    "o": open_resident,
    "h": hand_over,
    "dq": discard_ask,
    "a": resident_appointments,
    "la": link_answer,
    "ld": link_answer,
}


@turn(NAME)
async def on_button(turn_: Turn) -> object:
    """Any of the assist buttons (ids in them forged-checked by each)."""
    parts = callback_parts(turn_.update, "as") or [""]
    route = ROUTES.get(parts[0])
    if route is None:
        turn_.toast(turn_.t("error.button.stale"))
        return ConversationHandler.END
    return await route(turn_)


@turn(NAME)
async def on_command(turn_: Turn) -> object:
    """/assist."""
    return await menu(turn_)


def stopping(fn: Callable[[Update, HBContext], Awaitable[object]]):  # type: ignore[no-untyped-def]
    """Handled here: no other handler group sees the update (a private chat's only)."""

    @functools.wraps(fn)
    async def handler(update: Update, context: HBContext) -> object:
        if not is_private(update):
            return None  # groups: GroupGuard says what it says
        raise ApplicationHandlerStop(await fn(update, context))

    return handler


async def leave_search(update: Update, context: HBContext) -> object:
    """Anything else while the search waits for a text: the search is over, and the update
    goes on to the other handlers as if it had not been here."""
    if update.effective_chat is not None and update.effective_user is not None:
        services = context.services
        key = (update.effective_chat.id, update.effective_user.id)
        async with services.sessions() as session, session.begin():
            await write_state(session, NAME, key, None, services.channel)
        services.written_states.written(NAME, key, None)
    return ConversationHandler.END


def build() -> ConversationHandler:
    """The /assist conversation: the menu and its buttons, and the search's typed text."""
    command = CommandHandler("assist", stopping(on_command), filters=PRIVATE)
    buttons = CallbackQueryHandler(stopping(on_button), pattern=OURS)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "If 'per_message=False'", PTBUserWarning)
        return ConversationHandler(
            entry_points=[command, buttons],
            states={
                AssistStep.FIND: [MessageHandler(NEW_TEXT & PRIVATE, stopping(find_text))],
            },
            fallbacks=[
                command,
                buttons,
                MessageHandler(filters.ALL, leave_search),
                CallbackQueryHandler(leave_search),
            ],
            name=NAME,
            persistent=True,
            allow_reentry=True,
        )


# ---------------------------------------------------------------- the health book's hooks


async def _wards_in(turn_: Turn, draft: Draft) -> list[int]:
    """The volunteer's communes in the draft's province."""
    assert turn_.account is not None
    wards = await custody.volunteer_wards(turn_.session, turn_.account)
    province = (draft.answers or {}).get("province")
    return [w for w in wards if province is not None and v.ward_in_province(w, int(province))]


def _checklist_mode(draft: Draft) -> bool:
    """Whether the declaration is asked as one checklist: nothing of it answered yet."""
    given = (draft.answers or {}).get("screening") or {}
    return not any(item.code in given for item in hb.screening_asked(draft.answers or {}))


async def _stopped(turn_: Turn) -> bool:
    """Whether the sender may no longer register residents (suspended, or no commune left):
    then why is said, and the registration stays as it is (kept for when they may again)."""
    if await custody.is_volunteer(turn_.session, turn_.account):
        return False
    turn_.say(
        turn_.t(
            "assist.suspended" if custody.is_suspended(turn_.account) else "assist.only_volunteers"
        )
    )
    return True


async def ask(turn_: Turn, draft: Draft, step: Step) -> bool:
    """The questions a volunteer is asked differently."""
    if await _stopped(turn_):
        return True  # no question: the next answer ends the conversation (hook_text)
    if await _same_person_warning(turn_, draft):
        return True  # answered first (as:sp:…); anything else asks it again
    t = turn_.t
    head = subject_line(turn_, draft)
    if step is Step.FULL_NAME and not draft.editing:  # the name alone, from the review
        turn_.say(head + t("assist.ask.full_name"))
        return True
    if step is Step.PHONE:
        turn_.say(
            head + t("assist.ask.phone"),
            inline([[(t("assist.button.no_phone"), "hb:phone:none")]]),
        )
        return True
    if step is Step.WARD:
        wards = await _wards_in(turn_, draft)
        if not wards:
            turn_.say(head + t("error.ward.not_yours"))
            return False
        turn_.say(
            head + t("assist.ask.ward"),
            inline(chunk([(v.ward_name(w), f"hb:ward:{w}") for w in wards], 2)),
        )
        return True
    if step is Step.SCREENING and _checklist_mode(draft):
        items = hb.screening_asked(draft.answers or {})
        lines = "\n".join(f"{n}. {t(f'screening.{i.code}')}" for n, i in enumerate(items, 1))
        turn_.say(head + t("assist.ask.screening", items=lines))
        return True
    return False


def _no_word(turn_: Turn, text: str, label_key: str) -> bool:
    folded = v.fold(text)
    return folded in ma.NO_ID_WORDS or folded == v.fold(turn_.t(label_key))


async def hook_text(turn_: Turn, draft: Draft, step: Step, text: str) -> object | None:
    """A volunteer's typed answers: the quick entry, the checklist, "no phone", "no ID"."""
    if await _stopped(turn_):
        return ConversationHandler.END
    if _pending_same(draft):  # "the same person?" comes first
        return await healthbook.ask(turn_, draft, step)
    if step is Step.FULL_NAME:
        return await quick_entry(turn_, draft, text)
    if step is Step.ID_NUMBER:
        return await typed_id(turn_, draft, text)
    if step is Step.PHONE and _no_word(turn_, text, "assist.button.no_phone"):
        hb.set_answer(draft, step, None)
        turn_.ack = turn_.t("assist.button.no_phone")
        return await healthbook.ask_next(turn_, draft)
    if step is Step.SCREENING and _checklist_mode(draft):
        return await checklist(turn_, draft, text)
    if step is Step.WARD:
        wards = await _wards_in(turn_, draft)
        wanted = v.fold(text)
        matches = [w for w in wards if wanted and wanted in v.fold(v.ward_name(w))]
        if len(matches) == 1:
            hb.set_answer(draft, step, matches[0])
            turn_.ack = v.ward_name(matches[0])
            return await healthbook.ask_next(turn_, draft)
        turn_.say(turn_.t("error.ward.not_yours"))
        return await healthbook.ask(turn_, draft, step)
    return None


async def quick_entry(turn_: Turn, draft: Draft, text: str) -> object | None:
    """Name, date of birth, gender and ID in one line: checked, stored, shown to confirm."""
    t = turn_.t
    if draft.editing:  # the name alone, asked again from the review
        return None
    try:
        entry = ma.parse_quick(text, turn_.services.today())
    except ma.QuickEntryError as err:
        lines = []
        if err.missing:
            lines.append(
                t("assist.quick.missing", parts=", ".join(t(f"field.{p}") for p in err.missing))
            )
        for part, bad in err.wrong:
            lines.append(f"• {t(f'field.{part}')}: {t(bad.key, **bad.params)}")
        if err.unknown:
            shown = ", ".join(f"«{v.clean_text(u, max_len=30, required=False) or ''}»"
                              for u in err.unknown[:3])  # fmt: skip
            lines.append(t("assist.quick.unknown", parts=shown))
        turn_.say("\n".join(lines) + "\n\n" + t("assist.quick.example"))
        return await healthbook.ask(turn_, draft, Step.FULL_NAME)
    if entry is None:
        return None  # a name: the usual answer
    if entry.id_number is not None:
        refused = await _duplicate(turn_, draft, entry.id_number.number, Step.FULL_NAME)
        if refused is not None:
            return refused
    answers = entry.answers()
    for field_name in ("full_name", "date_of_birth", "gender", "phone", "ethnicity", "id_number"):
        if field_name in answers:
            hb.set_answer(draft, field_name, answers[field_name])
    draft.consent = {**(draft.consent or {}), "quick": sorted(answers)}
    following = hb.next_field(draft) or "review"
    shown = "\n".join(
        f"• {t(f'field.{f}')}: {healthbook.render_value(turn_, f, draft.answers.get(f))}"
        for f in hb.FIELDS
        if f in answers
    )
    turn_.say(
        subject_line(turn_, draft) + t("assist.quick.check", lines=shown),
        inline(
            [
                [
                    (t("assist.button.correct"), f"hb:{following}:qe:ok"),
                    (t("assist.button.fix"), f"hb:{following}:qe:fix"),
                ]
            ]
        ),
    )
    return Step(following)


async def typed_id(turn_: Turn, draft: Draft, text: str) -> object | None:
    """The ID step: "không" is no ID; a number registered already is refused (link offered)."""
    if v.fold(text) in ma.NO_ID_WORDS:
        hb.set_answer(draft, Step.ID_NUMBER, None)
        turn_.ack = turn_.t("button.no_id")
        return await healthbook.ask_next(turn_, draft)
    dob, gender = hb.draft_dob(draft), hb.draft_gender(draft)
    if dob is None or gender is None:
        return None
    try:
        number = v.parse_id_number(text, dob, gender).number
    except InvalidAnswer:
        return None  # the usual message, the same question
    return await _duplicate(turn_, draft, number, Step.ID_NUMBER)


def _registered_on(turn_: Turn, book: HealthBook) -> str:
    return as_aware(book.created_at).astimezone(turn_.services.tz).date().strftime("%d/%m/%Y")


async def _duplicate(turn_: Turn, draft: Draft, number: str, step: Step) -> object | None:
    """None when the number is no other book's. A resident of the volunteer's commune nobody
    holds (their volunteer left, or another registered them): the volunteer helps them from
    now on (:func:`models.assist.adopt`), the registration, a duplicate, is dropped, and their
    page is offered. Otherwise where and since when (nothing more), the number refused (the
    same question), and for a book with a holder a link request offered; nothing stored."""
    t = turn_.t
    holder = await hb.id_holder(turn_.session, number)
    if holder is None or holder.id == draft.book_id:
        return None
    volunteer = turn_.account
    assert volunteer is not None
    if draft.book_id is None and (
        await custody.access(turn_.session, volunteer, holder) is not None
        or await ma.adopt(turn_.session, volunteer, holder)
    ):
        return await _take_on(turn_, volunteer, draft, holder)
    where = v.ward_name(holder.ward_code)
    text = t("assist.dup", commune=where, date=_registered_on(turn_, holder))
    if holder.account_id is None and _empty(draft):  # nothing else typed: nothing kept
        await _drop_draft(turn_, volunteer, draft)
        turn_.say(
            text + "\n" + t("assist.dup.no_holder"),
            inline([[(t("assist.button.next"), "as:new"), (t("assist.button.menu"), "as:menu")]]),
        )
        return ConversationHandler.END
    draft.consent = {**(draft.consent or {}), "link_book": holder.id}
    if holder.account_id is None:
        turn_.say(text + "\n" + t("assist.dup.no_holder"))
    else:
        turn_.say(
            text + "\n" + t("assist.dup.offer"),
            inline([[(t("assist.button.link"), f"hb:{step}:link")]]),
        )
    return await healthbook.ask(turn_, draft, step)


async def _take_on(turn_: Turn, volunteer: Account, draft: Draft, book: HealthBook) -> object:
    """The person is registered already in the volunteer's commune, and the volunteer may act
    on their book: say so, drop this registration (never one person twice), offer their page."""
    t = turn_.t
    await _drop_draft(turn_, volunteer, draft)
    when = _registered_on(turn_, book)
    turn_.say(
        t("assist.dup.yours", commune=v.ward_name(book.ward_code), date=when),
        inline(
            [
                [(t("assist.button.open"), f"as:o:{book.id}")],
                [(t("assist.button.next"), "as:new"), (t("assist.button.menu"), "as:menu")],
            ]
        ),
    )
    return ConversationHandler.END


async def _same_person_warning(turn_: Turn, draft: Draft) -> bool:
    """A new resident without an ID number whose name (without accents) and date of birth a
    book of the same commune has: the volunteer is asked first whether it is the same person
    (where and when it was registered, nothing more). True when the question was queued."""
    answers = draft.answers or {}
    if draft.book_id is not None or draft.editing or answers.get("id_number", 0) is not None:
        return False  # an edit, an ID number given (checked on its own), or not asked yet
    dob, ward, name = hb.draft_dob(draft), answers.get("ward"), answers.get("full_name")
    if dob is None or not isinstance(ward, int) or not name:
        return False
    consent = dict(draft.consent or {})
    distinct = tuple(i for i in consent.get("distinct", ()) if isinstance(i, int))
    same = await ma.same_person(turn_.session, ward, str(name), dob, skip=distinct)
    if same is None:
        consent.pop("same_as", None)
        draft.consent = consent
        return False
    draft.consent = {**consent, "same_as": same.id}
    t = turn_.t
    when = _registered_on(turn_, same)
    turn_.say(
        subject_line(turn_, draft)
        + t("assist.same.ask", commune=v.ward_name(same.ward_code), date=when),
        inline(
            [
                [(t("assist.button.same"), "as:sp:same")],
                [(t("assist.button.different"), "as:sp:other")],
            ]
        ),
    )
    return True


@turn(healthbook.NAME)
async def same_person_answer(turn_: Turn) -> object:
    """The answer to "the same person?": the same (their page when the volunteer may act on
    it, or may from now on; a link request to offer when someone holds the book; this
    registration dropped), or a different person (the questions go on, saved as new)."""
    volunteer = await _volunteer(turn_)
    if volunteer is None:
        return None
    t = turn_.t
    parts = callback_parts(turn_.update, "as:sp") or []
    draft = await hb.get_draft(turn_.session, volunteer)
    same_id = (draft.consent or {}).get("same_as") if draft is not None else None
    if draft is None or draft.subject != "assisted" or not isinstance(same_id, int):
        turn_.toast(t("error.button.stale"))
        return None
    book = await turn_.session.get(HealthBook, same_id)
    if parts == ["other"] or book is None:
        consent = dict(draft.consent or {})
        consent.pop("same_as", None)
        consent["distinct"] = [*consent.get("distinct", []), same_id]
        draft.consent = consent
        turn_.close_with = t("assist.same.different")
        return await healthbook.ask_next(turn_, draft)
    if parts == ["link"] and book.account_id is not None:
        draft.consent = {**(draft.consent or {}), "link_book": book.id}
        return await link_request(turn_, draft)
    if parts != ["same"]:
        turn_.toast(t("error.button.invalid"))
        return None
    found = await custody.access(turn_.session, volunteer, book)
    if found is None and await ma.adopt(turn_.session, volunteer, book):
        found = await custody.access(turn_.session, volunteer, book)
    if found is not None:
        await _drop_draft(turn_, volunteer, draft)
        turn_.close_with = t("assist.same.same")
        await show_resident(turn_, found, t("assist.same.opened") + "\n")
        return ConversationHandler.END
    if book.account_id is not None:  # someone holds it: only they may let the volunteer help
        turn_.say(
            t("assist.dup.offer"),
            inline(
                [
                    [(t("assist.button.link"), "as:sp:link")],
                    [(t("assist.button.different"), "as:sp:other")],
                ]
            ),
        )
        return None
    turn_.say(t("assist.dup.no_holder"))
    return None


def _pending_same(draft: Draft) -> bool:
    return isinstance((draft.consent or {}).get("same_as"), int)


async def checklist(turn_: Turn, draft: Draft, text: str) -> object:
    """The declaration as one answer: the numbers that apply ("3 7"), "?5" for don't know,
    "0" for none; each item stored on its own."""
    items = hb.screening_asked(draft.answers or {})
    tokens = text.replace(",", " ").replace(";", " ").split()
    yes: set[int] = set()
    unknown: set[int] = set()
    ok = bool(tokens)
    if tokens and [v.fold(x) for x in tokens] in (["0"], ["khong"], ["ko"], ["none"], ["no"]):
        tokens = []
    for token in tokens:
        target = unknown if token.startswith("?") else yes
        n = parse_id(token.lstrip("?"))
        if n is None or n > len(items):
            ok = False
            break
        target.add(n)
    if not ok or yes & unknown:
        turn_.say(turn_.t("assist.screening.invalid", count=len(items)))
        return await healthbook.ask(turn_, draft, Step.SCREENING)
    for n, item in enumerate(items, 1):
        answer = v.Answer.YES if n in yes else v.Answer.UNKNOWN if n in unknown else v.Answer.NO
        hb.set_screening_answer(draft, item.code, answer)
    flagged = sorted(yes | unknown)
    turn_.ack = turn_.t(
        "assist.screening.echo",
        items=", ".join(("?" if n in unknown else "") + str(n) for n in flagged) or "0",
    )
    return await healthbook.ask_next(turn_, draft)


async def hook_button(turn_: Turn, draft: Draft, step: Step, parts: list[str]) -> object | None:
    """A volunteer's buttons on the questions: quick entry's Correct / Fix, no phone, their
    communes, the link request."""
    if await _stopped(turn_):
        return ConversationHandler.END
    if _pending_same(draft):  # "the same person?" comes first
        turn_.toast(turn_.t("error.button.stale"))
        return await healthbook.ask(turn_, draft, step)
    t = turn_.t
    if parts[:1] == ["qe"] and len(parts) == 2:
        if parts[1] == "fix":
            for field_name in (draft.consent or {}).get("quick", ()):
                if field_name in hb.FIELDS:
                    hb.forget_answer(draft, field_name)
            turn_.close_with = t("assist.quick.fixing")
            return await healthbook.ask(turn_, draft, Step.FULL_NAME)
        turn_.close_with = t("assist.quick.confirmed")
        return await healthbook.ask_next(turn_, draft)
    if parts == ["link"] and step in (Step.FULL_NAME, Step.ID_NUMBER):
        return await link_request(turn_, draft)
    if step is Step.PHONE and parts == ["none"]:
        hb.set_answer(draft, step, None)
        turn_.ack = t("assist.button.no_phone")
        return await healthbook.ask_next(turn_, draft)
    if step is Step.WARD:
        code = parse_id(parts[0]) if len(parts) == 1 else None
        if code is None or code not in await _wards_in(turn_, draft):
            turn_.toast(t("error.ward.not_yours"))
            return await healthbook.ask(turn_, draft, step)
        return None  # one of theirs: the usual handling
    return None


async def link_request(turn_: Turn, draft: Draft) -> object:
    """Send the holder of the book with that ID a request to let this volunteer help; the
    registration, a duplicate, is dropped."""
    t = turn_.t
    volunteer = turn_.account
    book_id = (draft.consent or {}).get("link_book")
    book = await turn_.session.get(HealthBook, book_id) if isinstance(book_id, int) else None
    if volunteer is None or book is None:
        turn_.toast(t("error.button.stale"))
        return await healthbook.ask_next(turn_, draft)
    try:
        holder = await ma.request_link(turn_.session, volunteer, book)
    except DomainError as err:
        turn_.say(t(err.key))
        return await healthbook.ask_next(turn_, draft)
    theirs = turn_.services.translations.get(holder.locale, holder.channel)
    turn_.notify(
        await hb.reply_address(turn_.session, holder),
        theirs("assist.link.ask", commune=v.ward_name(book.ward_code), name=book.full_name),
        inline(
            [
                [
                    (theirs("assist.button.accept"), f"as:la:{book.id}:{volunteer.id}"),
                    (theirs("assist.button.decline"), f"as:ld:{book.id}:{volunteer.id}"),
                ]
            ]
        ),
        locale=holder.locale,
    )
    await turn_.session.delete(draft)
    turn_.session.info.get("drafts", {}).pop(volunteer.id, None)
    turn_.close_with = t("assist.link.sent_short")
    turn_.say(
        t("assist.link.sent"),
        inline([[(t("assist.button.next"), "as:new"), (t("assist.button.menu"), "as:menu")]]),
    )
    return ConversationHandler.END


async def saved(turn_: Turn, book: HealthBook, created: bool) -> None:
    """Saved: whose, where, and the next things to do for them."""
    t = turn_.t
    turn_.say(
        t(
            "assist.saved" if created else "assist.updated",
            name=book.full_name,
            commune=v.ward_name(book.ward_code),
        ),
        inline(
            [
                [
                    (t("assist.button.book"), f"bk:for:{book.id}"),
                    (t("assist.button.ticket"), f"bk:ticket:{book.id}"),
                ],
                [(t("assist.button.next"), "as:new")],
            ]
        ),
    )


async def before_save(turn_: Turn, draft: Draft) -> bool:
    """Save pressed (an older review's Save too): the same checks as every question (rights,
    the same person twice) before anything is written."""
    return await _stopped(turn_) or await _same_person_warning(turn_, draft)


healthbook.HOOKS["assisted"] = SubjectHooks(
    ask=ask, text=hook_text, button=hook_button, saved=saved, before_save=before_save
)


# ---------------------------------------------------------------- wiring


def entries() -> list[BaseHandler]:
    """Handlers that start or continue a health book in the health-book conversation."""
    return [
        CallbackQueryHandler(consent_given, pattern=r"^as:agree$"),
        CallbackQueryHandler(resume_parked, pattern=r"^as:r:"),
        CallbackQueryHandler(edit_resident, pattern=r"^as:e:"),
        CallbackQueryHandler(discard, pattern=r"^as:dx:"),
        CallbackQueryHandler(same_person_answer, pattern=r"^as:sp:"),
    ]


def handlers() -> list[BaseHandler]:
    """Top-level handlers (the /assist conversation is :func:`build`, in a group of its own)."""
    return []


__all__ = ["NAME", "AssistStep", "build", "entries", "handlers"]
