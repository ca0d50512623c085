"""/family: the relatives an account holder registered, each with their own health book.

``/family`` lists them; each opens with its choices: see the book, edit it, book a place
(``bk:for:ID``, handled by handlers/booking.py), hand it over, remove it. "Add a relative" asks
who they are (father, mother, spouse, child, other), then the consent given on their behalf
(for a child: the holder confirms they are the parent or legal guardian), then the same
health-book questions (handlers/healthbook.py, draft ``subject`` ``relative``). A relative takes
over their own book with ``/join CODE`` (handlers/invites.py calls :func:`join_handover`).

Buttons (every id is checked against the presser on every press: callback data can be forged):
``fam:list``, ``fam:book:ID`` (one relative's book), ``fam:edit:ID``, ``fam:handover:ID``,
``fam:remove:ID`` / ``fam:del:ID`` (ask, then remove), ``fam:add``, ``fam:rel:CODE`` (the
relation, :data:`CODES`), ``fam:ok:CODE`` (consent confirmed: the questions begin),
``fam:cur`` (the relative's book in progress), ``fam:resume:PARKED_ID``, ``fam:guardian`` /
``fam:agreed`` (the age the date of birth shows calls for the other kind of consent),
``fam:claim:REF`` / ``fam:claimno`` (a hand-over claimed after the person's own consent).
Refusals are toasts (on Zalo a message): the choices the person was offered stay.

All of them are entry points and fallbacks of the health-book conversation (:func:`entries`), so
they work in the middle of its questions as well as outside; those that start no questions
leave the conversation where it was.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import exists, select
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, ConversationHandler

from handlers import healthbook
from handlers.common import Turn, callback_parts, inline, parse_id, render_error, turn
from handlers.healthbook import Step, SubjectHooks
from models import custody
from models import family as fam
from models import healthbook as hb
from models.errors import DomainError, InvalidAnswer
from models.tables import BOOKING_ACTIVE, Booking, Draft, HealthBook, ParkedDraft

NAME = healthbook.NAME
PRIVATE = healthbook.PRIVATE
MAX_PARKED = 5  # unfinished registrations offered to continue
#: relations in the buttons' data (``fam:rel:f``): short, and no word another button uses
CODES = {"father": "f", "mother": "m", "spouse": "s", "child": "c", "other": "o"}
RELATION_OF = {code: relation for relation, code in CODES.items()}


def _relation(turn_: Turn, relation: str | None) -> str:
    return turn_.t(f"relation.{relation if relation in custody.RELATIONS else 'other'}")


def _day(value: dt.date | dt.datetime) -> str:
    return value.strftime("%d/%m/%Y")


def _version(turn_: Turn) -> str:
    return turn_.services.settings.bot.consent_version


# ---------------------------------------------------------------- /family: the list


async def show_family(turn_: Turn) -> None:
    """The holder's relatives, the registrations left unfinished, and "Add a relative"."""
    t, session, account = turn_.t, turn_.session, turn_.account
    books = (
        [b for b in await custody.held_books(session, account) if b.relation != "self"]
        if (account is not None)
        else []
    )
    rows: list[list[tuple[str, str]]] = []
    lines = [t("family.title")]
    if books:
        for book in books:
            lines.append(
                t(
                    "family.line",
                    relation=_relation(turn_, book.relation),
                    name=book.full_name,
                    born=_day(book.date_of_birth),
                )
            )
            rows.append(
                [
                    (
                        t(
                            "family.button.book",
                            relation=_relation(turn_, book.relation),
                            name=book.full_name,
                        ),
                        f"fam:book:{book.id}",
                    )
                ]
            )
    else:
        lines.append(t("family.empty"))
    if account is not None:
        draft = await hb.get_draft(session, account)
        if draft is not None and draft.subject == "relative" and draft.book_id is None:
            rows.append([(t("family.button.continue", who=_who(turn_, draft)), "fam:cur")])
        parked_ones = [
            p
            for p in await hb.parked_drafts(session, account)
            if p.subject in ("relative", "self") and p.book_id is None
        ]
        for parked in parked_ones[:MAX_PARKED]:  # the most recent
            rows.append(
                [
                    (
                        t("family.button.continue", who=_who(turn_, parked)),
                        f"fam:resume:{parked.id}",
                    )
                ]
            )
    rows.append([(t("family.button.add"), "fam:add")])
    turn_.say("\n".join(lines), inline(rows))


def _who(turn_: Turn, draft: object) -> str:
    """A registration in progress, as a choice names it: ``Father: Lò Văn Páo`` / ``You``."""
    subject = getattr(draft, "subject", "relative")
    name = (getattr(draft, "answers", None) or {}).get("full_name") or "…"
    if subject == "self":
        return turn_.t("family.yourself")
    return f"{_relation(turn_, getattr(draft, 'relation', None))}: {name}"


@turn(NAME)
async def family_command(turn_: Turn) -> object:
    """/family (anywhere: in the middle of the questions they wait where they were)."""
    await show_family(turn_)
    return None


# ---------------------------------------------------------------- one relative


async def _relative(turn_: Turn, book_id: int) -> HealthBook | None:
    """The relative's book ``book_id`` the presser holds; ``access.denied`` said otherwise."""
    try:
        found = await custody.require_book(turn_.session, turn_.account, book_id)
        if found.capacity != "relative":
            raise DomainError("access.denied")
    except DomainError as err:
        # a toast (on Zalo a message): the choices the person has stay as they are
        turn_.toast(render_error(turn_.t, err), alert=True)
        return None
    return found.book


async def _choices(turn_: Turn, book: HealthBook) -> object:
    t = turn_.t
    rows = [
        [(t("family.button.edit"), f"fam:edit:{book.id}")],
        [(t("family.button.booking"), f"bk:for:{book.id}")],
        [(t("family.button.remove"), f"fam:remove:{book.id}")],
        [(t("family.button.list"), "fam:list")],
    ]
    if fam.old_enough(book, turn_.services.clock()):  # a child's book stays with the parent
        rows.insert(2, [(t("family.button.handover"), f"fam:handover:{book.id}")])
    booked = await turn_.session.scalar(
        select(
            exists().where(Booking.health_book_id == book.id, Booking.status.in_(BOOKING_ACTIVE))
        )
    )
    if booked:  # its ticket, to print or show (handlers/booking.py)
        rows.insert(2, [(t("family.button.ticket"), f"bk:ticket:{book.id}")])
    return inline(rows)


async def show_book(turn_: Turn, book: HealthBook) -> None:
    """A relative's book as /profile shows one's own, with what can be done for them."""
    t = turn_.t
    turn_.say(
        t("family.book.title", relation=_relation(turn_, book.relation), name=book.full_name)
        + "\n\n"
        + healthbook.summary(turn_, hb.answers_of_book(book)),
        await _choices(turn_, book),
    )


async def _edit(turn_: Turn, book_id: int) -> object:
    book = await _relative(turn_, book_id)
    if book is None or turn_.account is None:
        return None
    draft = await hb.start_draft(turn_.session, turn_.account, book)
    return await healthbook.ask(turn_, draft, Step.REVIEW)


async def _handover(turn_: Turn, book_id: int) -> None:
    book = await _relative(turn_, book_id)
    if book is None:
        return
    now = turn_.services.clock()
    try:
        code = await fam.create_handover(turn_.session, turn_.account, book.id, now)
    except DomainError as err:  # a child's book stays with the parent or guardian
        back = inline([[(turn_.t("family.button.list"), "fam:list")]])
        turn_.say(render_error(turn_.t, err), back)
        return
    say_handover_code(turn_, book, code, now, (turn_.t("family.button.list"), "fam:list"))


def say_handover_code(
    turn_: Turn, book: HealthBook, code: str, now: dt.datetime, back: tuple[str, str]
) -> None:
    """The hand-over code just made for ``book``, until when it holds, and ``back`` (a choice
    to return by): the same words from /family and from /assist."""
    until = (now + fam.HANDOVER_LIFE).astimezone(turn_.services.tz)
    turn_.say(
        turn_.t(
            "family.handover.code",
            name=book.full_name,
            code=fam.format_handover(code),
            until=f"{until:%d/%m %H:%M}",
            hours=int(fam.HANDOVER_LIFE.total_seconds() // 3600),
        ),
        inline([[back]]),
    )


async def _ask_remove(turn_: Turn, book_id: int) -> None:
    book = await _relative(turn_, book_id)
    if book is None:
        return
    t = turn_.t
    turn_.say(
        t("family.remove.confirm", name=book.full_name, relation=_relation(turn_, book.relation)),
        inline(
            [
                [(t("family.button.remove_yes"), f"fam:del:{book.id}")],
                [(t("family.button.remove_no"), f"fam:book:{book.id}")],
            ]
        ),
    )


async def _remove(turn_: Turn, book_id: int) -> object:
    if await _relative(turn_, book_id) is None:
        return None
    assert turn_.account is not None
    editing = await hb.get_draft(turn_.session, turn_.account)
    was_editing = editing is not None and editing.book_id == book_id
    name = await fam.remove_relative(turn_.session, turn_.account, book_id, turn_.services.clock())
    turn_.say(turn_.t("family.removed", name=name))
    await show_family(turn_)
    return ConversationHandler.END if was_editing else None


# ---------------------------------------------------------------- adding a relative


def _ask_relation(turn_: Turn) -> None:
    t = turn_.t
    rows = [[(t(f"relation.{r}"), f"fam:rel:{CODES[r]}")] for r in custody.RELATIONS]
    rows.append([(t("family.button.cancel"), "fam:list")])
    turn_.say(t("family.ask.relation"), inline(rows))


def _ask_consent(turn_: Turn, relation: str) -> None:
    t = turn_.t
    kind = "guardian" if relation == "child" else "relative"
    turn_.say(
        t(
            f"family.consent.{kind}",
            relation=_relation(turn_, relation),
            version=_version(turn_),
        ),
        inline(
            [
                [(t(f"family.button.consent_{kind}"), f"fam:ok:{CODES[relation]}")],
                [(t("family.button.cancel"), "fam:list")],
            ]
        ),
    )


async def _begin(turn_: Turn, relation: str) -> object:
    """Consent confirmed: the holder's own agreement recorded if they had none (they read the
    same terms), and the relative's questions begin."""
    account = await turn_.account_or_create()
    session, version = turn_.session, _version(turn_)
    if await hb.latest_consent(session, account) is None:
        await hb.give_consent(session, account, version)
    kind = "guardian" if relation == "child" else "relative"
    consent = fam.consent_for(kind, version, turn_.services.clock())
    draft = await hb.start_draft(
        session, account, subject="relative", relation=relation, consent=consent
    )
    turn_.close_with = turn_.t(f"family.consent.given_{kind}")
    return await healthbook.ask_next(turn_, draft)


async def _continue(turn_: Turn, parked_id: int | None) -> object:
    account = turn_.account
    if account is None:
        turn_.toast(turn_.t("error.button.stale"))
        return None
    if parked_id is None:
        draft = await hb.get_draft(turn_.session, account)
    else:
        # checked before anything changes: only one's own registration of oneself or a
        # relative (what /family lists; a volunteer's resident is continued from /assist)
        parked = await turn_.session.get(ParkedDraft, parked_id)
        mine = parked is not None and parked.account_id == account.id
        if parked is None or not mine or parked.subject not in ("relative", "self"):
            turn_.toast(turn_.t("error.button.stale"))
            return None
        draft = await hb.resume_parked(turn_.session, account, parked_id)
    if draft is None:
        turn_.toast(turn_.t("error.button.stale"))
        return None
    turn_.say(turn_.t("resume.welcome_back"))
    return await healthbook.ask_next(turn_, draft)


async def _consent_kind(turn_: Turn, draft: Draft) -> str | None:
    kind = (draft.consent or {}).get("kind")
    if kind is None and draft.book_id is not None:
        book = await turn_.session.get(HealthBook, draft.book_id)
        kind = book.consent_kind if book is not None else None
    return kind


async def _reconsent(turn_: Turn, kind: str) -> object:
    """The holder confirmed the kind of consent the date of birth calls for (at the review)."""
    account = turn_.account
    draft = await hb.get_draft(turn_.session, account) if account is not None else None
    if account is None or draft is None or draft.subject != "relative":
        turn_.toast(turn_.t("error.button.stale"))
        return None
    minor = fam.is_minor((draft.answers or {}).get("date_of_birth"), turn_.services.today())
    if hb.next_field(draft) is not None or minor is None or minor != (kind == "guardian"):
        return await healthbook.stale_button_in(turn_, Step.REVIEW, draft)
    now = turn_.services.clock()
    draft.consent = fam.consent_for(kind, _version(turn_), now)
    if draft.book_id is not None:  # a saved book: the confirmation holds from now on
        book = await turn_.session.get(HealthBook, draft.book_id)
        if book is not None and book.account_id == account.id:
            book.consent_kind, book.consent_by, book.consent_at = kind, account.id, now
    turn_.close_with = turn_.t(f"family.consent.given_{kind}")
    return await healthbook.ask(turn_, draft, Step.REVIEW)


# ---------------------------------------------------------------- hand-over: /join CODE


async def join_handover(turn_: Turn, code: str) -> bool:
    """``/join CODE`` with a hand-over code (``GD-XXXX-XXXX``): take over one's own health
    book. False when ``code`` is no hand-over code, or none that exists (used up): /join
    (handlers/invites.py) says so and counts it as a wrong guess. True when the reply (the
    book taken over, the consent to give first, or why not) is queued."""
    if fam.normalize_handover(code) is None:
        return False
    t, session = turn_.t, turn_.session
    try:
        offered = await fam.check_handover(session, turn_.account, code, turn_.services.clock())
    except DomainError as err:
        if err.key == "family.join.unknown":
            return False  # counted as a wrong code, and said so, by /join
        turn_.say(render_error(t, err))
        return True
    if turn_.account is None or await hb.latest_consent(session, turn_.account) is None:
        turn_.say(
            t("family.join.consent_first", name=offered.book.full_name)
            + "\n\n"
            + t("consent.text", version=_version(turn_)),
            inline(
                [
                    [(t("button.agree"), f"fam:claim:{offered.ref}")],
                    [(t("button.decline"), "fam:claimno")],
                ]
            ),
        )
        return True
    await _claim(turn_, code=code)
    return True


async def _claim(turn_: Turn, *, code: str | None = None, ref: str | None = None) -> bool:
    """Take the book over (the code typed, or its button after the consent); whether it was
    (a refused one changes nothing)."""
    t, session, services = turn_.t, turn_.session, turn_.services
    now = services.clock()
    try:
        if ref is not None:  # the consent given now: the code checked first, nothing if bad
            await fam.check_handover(session, turn_.account, None, now, ref=ref)
            account = await turn_.account_or_create()
            if await hb.latest_consent(session, account) is None:
                await hb.give_consent(session, account, _version(turn_))
        else:
            account = await turn_.account_or_create()
        done = await fam.claim_handover(session, account, code, now, ref=ref)
    except DomainError as err:
        if ref is not None:  # a button: a toast (the choices stay)
            turn_.toast(render_error(t, err), alert=True)
        else:
            turn_.say(render_error(t, err))
        return False
    turn_.close_with = t("consent.agreed") if ref is not None else None
    turn_.say(t("family.join.done", name=done.book.full_name))
    previous = done.previous
    if previous is not None:
        to = await hb.reply_address(session, previous)
        theirs = services.translations.get(previous.locale, to.channel)
        turn_.notify(
            to,
            theirs(
                "family.handover.notice"
                if done.capacity == "relative"
                else "family.handover.notice_volunteer",
                name=done.book.full_name,
            ),
            locale=theirs.locale,
        )
    return True


# ---------------------------------------------------------------- the buttons


@turn(NAME)
async def family_button(turn_: Turn) -> object:
    """Every ``fam:`` button (see the module's docstring)."""
    parts = callback_parts(turn_.update, "fam") or []
    action, rest = (parts[0], parts[1:]) if parts else ("", [])
    one = parse_id(rest[0]) if len(rest) == 1 else None
    if action == "list" and not rest:
        await show_family(turn_)
        return None
    if action == "book" and one is not None:
        book = await _relative(turn_, one)
        if book is not None:
            await show_book(turn_, book)
        return None
    if action == "edit" and one is not None:
        return await _edit(turn_, one)
    if action == "handover" and one is not None:
        await _handover(turn_, one)
        return None
    if action == "remove" and one is not None:
        await _ask_remove(turn_, one)
        return None
    if action == "del" and one is not None:
        return await _remove(turn_, one)
    if action == "add" and not rest:
        _ask_relation(turn_)
        return None
    relation = RELATION_OF.get(rest[0]) if len(rest) == 1 else None
    if action == "rel" and relation is not None:
        _ask_consent(turn_, relation)
        return None
    if action == "ok" and relation is not None:
        return await _begin(turn_, relation)
    if action == "cur" and not rest:
        return await _continue(turn_, None)
    if action == "resume" and one is not None:
        return await _continue(turn_, one)
    if action in ("guardian", "agreed") and not rest:
        return await _reconsent(turn_, "guardian" if action == "guardian" else "relative")
    if action == "claim" and len(rest) == 1:
        if not await _claim(turn_, ref=rest[0]):
            return None  # forged or stale: nothing changed, the conversation stays
        # their own registration in progress, if any, gave way to the book taken over
        gone = turn_.account is not None and await hb.get_draft(turn_.session, turn_.account)
        return ConversationHandler.END if gone is None else None
    if action == "claimno" and not rest:
        turn_.close_with = turn_.t("consent.declined_short")
        turn_.say(turn_.t("family.join.declined"))
        return None
    turn_.toast(turn_.t("error.button.stale"))
    return None


# ---------------------------------------------------------------- hooks of the questions


async def _ask_hook(turn_: Turn, draft: Draft, step: Step) -> bool:
    """At the review: the consent the relative's age calls for, when it is not the one given
    (a "child" who is an adult, an "other" relative who is a minor), or none was recorded."""
    if step is not Step.REVIEW:
        return False
    born_on = (draft.answers or {}).get("date_of_birth")
    kind = await _consent_kind(turn_, draft)
    minor = fam.is_minor(born_on, turn_.services.today())
    if minor is None or (
        kind in ("relative", "guardian")
        and not fam.consent_mismatch(kind, born_on, turn_.services.today())
    ):
        return False
    t = turn_.t
    name = (draft.answers or {}).get("full_name") or "…"
    born = _day(dt.date.fromisoformat(draft.answers["date_of_birth"]))
    wanted = "guardian" if minor else "agreed"
    turn_.say(
        healthbook.subject_line(turn_, draft)
        + t(f"family.review.{wanted}", name=name, born=born, version=_version(turn_)),
        inline(
            [
                [
                    (
                        t(f"family.button.consent_{'guardian' if minor else 'relative'}"),
                        f"fam:{wanted}",
                    )
                ],
                [
                    (
                        t("button.edit_field", field=t("field.date_of_birth")),
                        "hb:review:edit:date_of_birth",
                    )
                ],
            ]
        ),
    )
    return True


async def _refused(turn_: Turn, draft: Draft, before: tuple[dict, str | None]) -> object:
    """The ID number just given checked against the family and the other books: a problem
    puts the answers back as they were, says what is wrong and asks again. A resident's
    numbers found in another book count as wrong codes do for /link and /join
    (bot/link_guard.py): a few, then a wait, so that nobody tries numbers to learn which are
    registered."""
    assert turn_.account is not None
    guard, attempt = turn_.services.link_guesses, None
    ident = (draft.answers or {}).get("id_number")
    if (
        isinstance(ident, dict)
        and ident.get("number")
        and not await custody.is_volunteer(turn_.session, turn_.account)
    ):
        attempt = guard.admit(turn_.channel, str(turn_.user_id), turn_.services.clock())
        if isinstance(attempt, int):  # too many: from this sender, or from everyone
            draft.answers, draft.editing = before
            turn_.ack = None
            turn_.say(turn_.t("family.error.id_wait", minutes=attempt))
            return await healthbook.ask(turn_, draft, Step.ID_NUMBER)
    problem = None
    try:
        problem = await fam.relative_problem(
            turn_.session, turn_.account, draft.answers or {}, draft.book_id
        )
    finally:
        if attempt is not None:
            guard.settle(attempt, wrong=problem is not None and problem.key == fam.ID_REGISTERED)
    if problem is None:
        return await healthbook.ask_next(turn_, draft)
    draft.answers, draft.editing = before
    turn_.ack = None
    params = dict(problem.params)
    if "relation" in params:
        params["relation"] = _relation(turn_, str(params["relation"]))
    if isinstance(params.get("date"), dt.date):
        params["date"] = _day(params["date"])
    turn_.say(turn_.t(problem.key, **params))
    return await healthbook.ask(turn_, draft, Step.ID_NUMBER)


async def _text_hook(turn_: Turn, draft: Draft, step: Step, text: str) -> object | None:
    if step is not Step.ID_NUMBER:
        return None
    before = (dict(draft.answers or {}), draft.editing)
    try:
        turn_.ack = await healthbook.accept_text(turn_, draft, step, text)
    except InvalidAnswer as err:
        return await healthbook.reject(turn_, draft, step, err)
    return await _refused(turn_, draft, before)


async def _button_hook(turn_: Turn, draft: Draft, step: Step, parts: list[str]) -> object | None:
    if step is not Step.ID_NUMBER:
        return None
    before = (dict(draft.answers or {}), draft.editing)
    try:
        turn_.ack = healthbook.accept_button(turn_, draft, step, parts)
    except InvalidAnswer:
        return None  # the usual way: a notice and the same question
    return await _refused(turn_, draft, before)


async def _saved_hook(turn_: Turn, book: HealthBook, created: bool) -> None:
    t = turn_.t
    turn_.say(
        t(
            "family.saved.new" if created else "family.saved.updated",
            relation=_relation(turn_, book.relation),
            name=book.full_name,
        ),
        inline(
            [
                [(t("family.button.booking"), f"bk:for:{book.id}")],
                [(t("family.button.list"), "fam:list")],
            ]
        ),
    )


healthbook.HOOKS["relative"] = SubjectHooks(
    ask=_ask_hook, text=_text_hook, button=_button_hook, saved=_saved_hook
)


def entries() -> list[BaseHandler]:
    """Handlers that start or continue a health book in the health-book conversation."""
    return [
        CommandHandler("family", family_command, filters=PRIVATE),
        CallbackQueryHandler(family_button, pattern=r"^fam:"),
    ]


@turn(NAME)
async def join_midway(turn_: Turn) -> object:
    """/join CODE in the middle of the health-book questions (someone registering themselves
    is given their hand-over code): the code used as /join uses it (handlers/invites.py), then
    the question again, unless their book was just handed over (then it is theirs, done)."""
    from handlers import invites  # it imports this module

    rest = turn_.text.split(maxsplit=1)[1:]
    if not rest or not rest[0].strip():
        turn_.say(turn_.t("family.join.with_code"))
    else:
        await invites.redeem(turn_, rest[0])
    draft = await hb.get_draft(turn_.session, turn_.account) if turn_.account else None
    if draft is None:
        return ConversationHandler.END
    return await healthbook.ask_next(turn_, draft)


def midway() -> list[BaseHandler]:
    """Fallbacks of the health-book conversation that are no entry points to it."""
    return [CommandHandler("join", join_midway, filters=PRIVATE)]


def handlers() -> list[BaseHandler]:
    """Top-level handlers (all of /family lives in :func:`entries`)."""
    return []
