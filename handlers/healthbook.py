"""The health-book conversation: consent, one question at a time, review, save; /profile.

Each step is a state; its handlers parse the answer, store it through :mod:`models.healthbook`
and ask the next question. Bad input never loses anything: the person gets a localized
explanation with an example, and the same question again.
"""

from __future__ import annotations

import datetime as dt
import importlib
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from handlers import account as acct
from handlers.common import (
    REMOVE_KEYBOARD,
    Keyboard,
    KeyButton,
    Turn,
    callback_parts,
    chunk,
    inline,
    parse_id,
    turn,
)
from models import healthbook as hb
from models import validators as v
from models.errors import DomainError, InvalidAnswer
from models.tables import Draft, HealthBook

NAME = "healthbook"
# answered outside the conversation, which goes on: /appointments, and the admins' and staff's
# commands (an admin or staff member in the middle of a health book still reaches them);
# /broadcast is not among them: to anyone but an admin it must look like an unknown command
OUTSIDE = r"^/(appointments|audit|invite|day|reactions|agency|report)(@\w+)?(\s|$)"
PRIVATE = filters.ChatType.PRIVATE
NEW_TEXT = filters.UpdateType.MESSAGE & filters.TEXT & ~filters.COMMAND
MAX_CHOICES = 8
SHORT_ANSWER = 100  # longer than this is no name, date or number


class Step(StrEnum):
    """States of the conversation; all but CONSENT and REVIEW are answer fields."""

    CONSENT = "consent"
    FULL_NAME = "full_name"
    DATE_OF_BIRTH = "date_of_birth"
    GENDER = "gender"
    ID_NUMBER = "id_number"
    PHONE = "phone"
    BHYT = "bhyt"
    ETHNICITY = "ethnicity"
    OCCUPATION = "occupation"
    PRIORITY_GROUP = "priority_group"
    PROVINCE = "province"
    WARD = "ward"
    ADDRESS_LINE = "address_line"
    SCREENING = "screening"
    ALLERGIES = "allergies"
    CHRONIC_CONDITIONS = "chronic_conditions"
    REVIEW = "review"


FREE_TEXT = frozenset({Step.ADDRESS_LINE, Step.ALLERGIES, Step.CHRONIC_CONDITIONS})


@dataclass
class SubjectHooks:
    """How the conversation differs when the book is someone else's (``drafts.subject``:
    ``relative``, handlers/family.py; ``assisted``, handlers/assist.py). Each hook may be None.

    - ``ask(turn, draft, step)``: queue ``step``'s question its own way; True when it did.
    - ``text(turn, draft, step, text)``: handle a typed answer its own way (a volunteer's quick
      entry); the new state, or None to let the usual parsing take it.
    - ``button(turn, draft, step, parts)``: the same for a button of ``hb:STEP:…``.
    - ``saved(turn, book, created)``: what to say once the book is saved (instead of the
      resident's "saved" message).
    - ``before_save(turn, draft)``: a last check when Save is pressed (an old review's Save
      too); True when it queued its own question instead, and nothing is saved.
    """

    ask: Callable[[Turn, Draft, Step], Awaitable[bool]] | None = None
    text: Callable[[Turn, Draft, Step, str], Awaitable[object | None]] | None = None
    button: Callable[[Turn, Draft, Step, list[str]], Awaitable[object | None]] | None = None
    saved: Callable[[Turn, HealthBook, bool], Awaitable[None]] | None = None
    before_save: Callable[[Turn, Draft], Awaitable[bool]] | None = None


#: per draft subject; filled by the modules of :data:`ENTRY_MODULES` when they are imported
HOOKS: dict[str, SubjectHooks] = {}
#: modules whose ``entries()`` handlers start or continue another person's book: entry points of
#: this conversation and fallbacks inside it (so a volunteer can start the next resident mid-way)
ENTRY_MODULES = ("handlers.family", "handlers.assist")


def _hooks(draft: Draft | None) -> SubjectHooks:
    if draft is None or draft.subject == "self":
        return _NO_HOOKS
    return HOOKS.get(draft.subject, _NO_HOOKS)


_NO_HOOKS = SubjectHooks()


def subject_line(turn_: Turn, draft: Draft | None) -> str:
    """Whose book a question is about, atop it, when it is not the person's own."""
    if draft is None or draft.subject == "self":
        return ""
    t = turn_.t
    name = (draft.answers or {}).get("full_name")
    if draft.subject == "relative":
        relation = t(f"relation.{draft.relation or 'other'}")
        return t("subject.relative", relation=relation, name=name or "…") + "\n"
    return t("subject.assisted", name=name or t("subject.new_resident")) + "\n"


# ---------------------------------------------------------------- asking


async def ask(turn_: Turn, draft: Draft | None, step: Step | str) -> Step:
    """Queue the question of ``step`` (with its buttons) and return it as the new state."""
    step = Step(step)
    t = turn_.t
    if step is Step.CONSENT:
        turn_.say(
            t("consent.text", version=turn_.services.settings.bot.consent_version),
            inline(
                [[(t("button.agree"), "hb:consent:yes"), (t("button.decline"), "hb:consent:no")]]
            ),
        )
        return step
    assert draft is not None
    hooks = _hooks(draft)
    if hooks.ask is not None and await hooks.ask(turn_, draft, step):
        return step
    if step is Step.REVIEW:
        turn_.say(
            subject_line(turn_, draft) + t("review.title") + "\n\n" + summary(turn_, draft.answers),
            review_keyboard(turn_, draft.answers, other=draft.subject != "self"),
        )
        return step
    markup: object = None
    text = ""
    if step is Step.GENDER:
        markup = inline(
            [[(t("gender.male"), "hb:gender:male"), (t("gender.female"), "hb:gender:female")]]
        )
    elif step is Step.ID_NUMBER:
        no_id = "button.no_id_other" if draft.subject != "self" else "button.no_id"
        markup = inline([[(t(no_id), "hb:id_number:none")]])
    elif step is Step.PHONE and draft.subject != "self":
        # someone else's number is typed: sharing one's own contact would store the wrong one
        text = t("ask.phone_other")
        markup = Keyboard.of([[KeyButton(t("button.no_phone_other"))]])
    elif step is Step.PHONE:
        markup = Keyboard.of(
            [[KeyButton(t("button.share_phone"), "contact")], [KeyButton(t("button.no_phone"))]]
        )
    elif step is Step.BHYT or step is Step.ADDRESS_LINE:
        markup = inline([[(t("button.skip"), f"hb:{step}:skip")]])
    elif step is Step.ETHNICITY:
        markup = inline(
            chunk([(e.name, f"hb:ethnicity:{e.code}") for e in v.common_ethnicities()], 3)
        )
    elif step is Step.OCCUPATION:
        markup = inline(
            chunk([(t(f"occupation.{c}"), f"hb:occupation:{c}") for c in v.occupations()], 2)
        )
    elif step is Step.PRIORITY_GROUP:
        markup = inline(
            [[(t(f"priority.{c}"), f"hb:priority_group:{c}")] for c in v.priority_groups()]
        )
    elif step is Step.PROVINCE:
        default = turn_.services.settings.bot.default_province
        text = t("ask.province", province=v.province_name(default))
        markup = inline([[(v.province_name(default), f"hb:province:{default}")]])
    elif step is Step.WARD:
        province = int(draft.answers["province"])
        text = t(
            "ask.ward",
            province=v.province_name(province),
            example=v.fold(v.ward_example(province)),
        )
    elif step is Step.SCREENING:
        item = hb.next_screening_item(draft)
        assert item is not None
        text = screening_question(turn_, draft, item)
        markup = inline(
            [
                [
                    (t("button.yes"), f"hb:screening:{item.code}:yes"),
                    (t("button.no"), f"hb:screening:{item.code}:no"),
                    (t("button.unknown"), f"hb:screening:{item.code}:unknown"),
                ]
            ]
        )
    elif step is Step.ALLERGIES or step is Step.CHRONIC_CONDITIONS:
        # asked only after a "yes" or "don't know" in the declaration: which ones?
        markup = inline([[(t("button.not_sure"), f"hb:{step}:unknown")]])
    turn_.say(subject_line(turn_, draft) + (text or t(f"ask.{step}")), markup)  # type: ignore[arg-type]
    return step


def screening_question(turn_: Turn, draft: Draft, item: v.ScreeningItem) -> str:
    """One health-declaration item as asked, numbered among the items asked of this person."""
    items = hb.screening_asked(draft.answers or {})
    return turn_.t(
        "ask.screening",
        n=items.index(item) + 1,
        total=len(items),
        question=turn_.t(f"screening.{item.code}"),
    )


async def ask_next(turn_: Turn, draft: Draft) -> Step:
    """Ask whatever the draft needs next (the review once everything is answered)."""
    field = hb.next_field(draft)
    return await ask(turn_, draft, field or Step.REVIEW)


def review_keyboard(turn_: Turn, answers: dict, *, other: bool = False) -> object:
    """An edit button per field, then Save."""
    t = turn_.t
    edits = [
        (t("button.edit_field", field=t(f"field.{f}")), f"hb:review:edit:{f}")
        for f in hb.editable_fields(answers)
    ]
    save = t("button.save_other" if other else "button.save")  # not "my" book: a relative's
    return inline([*chunk(edits, 2), [(save, "hb:review:save")]])


def summary(turn_: Turn, answers: dict) -> str:
    """Every answer on its own line, ID numbers partly masked."""
    t = turn_.t
    lines = []
    for field in hb.FIELDS:
        value = answers.get(field)
        if field in hb.DETAILS and value is None and hb.detail_needed(answers, field):
            shown = t("review.not_sure")  # a "yes" in the declaration, no detail given
        else:
            shown = render_value(turn_, field, value)
        lines.append(f"• {t(f'field.{field}')}: {shown}")
    return "\n".join(lines)


def render_value(turn_: Turn, field: str, value: object) -> str:
    """One answer as the person should read it."""
    t = turn_.t
    if value is None or value == "":
        return t("review.none")
    if field == "date_of_birth":
        return dt.date.fromisoformat(str(value)).strftime("%d/%m/%Y")
    if field == "gender":
        return t(f"gender.{value}")
    if field == "id_number":
        assert isinstance(value, dict)
        ident = v.IdNumber(kind=value["kind"], number=value["number"])
        return f"{ident.masked()} ({t('id_kind.' + ident.kind)})"
    if field == "bhyt":
        return v.mask_bhyt(str(value))
    if field == "phone":
        return v.format_phone(str(value))
    if field == "ethnicity":
        return v.ethnicity_by_code(int(str(value))).name
    if field in ("occupation", "priority_group"):
        prefix = "occupation" if field == "occupation" else "priority"
        return t(f"{prefix}.{value}")
    if field == "province":
        return v.province_name(int(str(value)))
    if field == "ward":
        return v.ward_name(int(str(value)))
    if field == "screening":
        assert isinstance(value, dict)
        flagged = [
            t(f"screening_short.{k}") + " — " + t(f"answer.{a}")
            for k, a in value.items()
            if a not in (v.Answer.NO, v.Answer.NOT_APPLICABLE)
        ]
        return t("review.screening_ok") if not flagged else "; ".join(flagged)
    return str(value)


# ---------------------------------------------------------------- entry: /start, consent


@turn(NAME)
async def start(turn_: Turn) -> object:
    """/start: consent first; then the next question, or the saved book's summary."""
    session, account = turn_.session, turn_.account
    if account is not None:
        draft = await hb.get_draft(session, account)
        if draft is not None and (
            draft.subject != "self" or await hb.latest_consent(session, account)
        ):
            turn_.say(turn_.t("resume.welcome_back"))
            return await ask_next(turn_, draft)
        if await hb.own_book(session, account):
            turn_.say(turn_.t("start.has_book"))
            return ConversationHandler.END
    turn_.say(turn_.t("start.welcome"))
    return await ask(turn_, None, Step.CONSENT)


@turn(NAME)
async def consent_answer(turn_: Turn) -> object:
    """Agree: record consent and ask the first question. Decline: store nothing, end."""
    parts = callback_parts(turn_.update, "hb:consent")
    t = turn_.t
    if parts == ["yes"]:
        account = await turn_.account_or_create()
        await hb.give_consent(turn_.session, account, turn_.services.settings.bot.consent_version)
        draft = await hb.get_draft(turn_.session, account) or await hb.start_draft(
            turn_.session, account
        )
        turn_.close_with = t("consent.agreed")
        return await ask_next(turn_, draft)
    if parts == ["no"]:
        if turn_.account is not None and not await hb.own_book(turn_.session, turn_.account):
            await hb.erase_account(turn_.session, turn_.account)
        turn_.close_with = t("consent.declined_short")
        turn_.say(t("consent.declined"), REMOVE_KEYBOARD)
        return ConversationHandler.END
    return await stale_button_in(turn_, Step.CONSENT)


# ---------------------------------------------------------------- answers


async def _draft(turn_: Turn) -> Draft | None:
    if turn_.account is None:
        return None
    return await hb.get_draft(turn_.session, turn_.account)


def answer_text(step: Step):
    """Handler for a typed answer to ``step``."""

    @turn(NAME)
    async def on_text(turn_: Turn) -> object:
        draft = await _draft(turn_)
        if draft is None:
            return await lost_draft(turn_)
        if hb.next_field(draft) != step:  # the database knows better than a stale state
            return await ask_next(turn_, draft)
        hooks = _hooks(draft)
        if hooks.text is not None:
            handled = await hooks.text(turn_, draft, step, turn_.text)
            if handled is not None:
                return handled
        try:
            turn_.ack = await accept_text(turn_, draft, step, turn_.text)
        except InvalidAnswer as err:
            return await reject(turn_, draft, step, err)
        if step is Step.WARD and "ward" not in draft.answers:
            return step  # several matches: the buttons were sent
        if step is Step.PHONE:  # close the phone keyboard
            turn_.say(turn_.t("answer.saved"), REMOVE_KEYBOARD)
        return await ask_next(turn_, draft)

    on_text.__name__ = f"on_text_{step}"
    return on_text


async def accept_text(turn_: Turn, draft: Draft, step: Step, text: str) -> str | None:
    """Parse a typed answer for ``step`` and store it; raises InvalidAnswer. Returns what a
    typed answer to a question with buttons resolved to (``"mong"`` → ``"Mông"``), to echo."""
    t = turn_.t
    if len(text) > SHORT_ANSWER and step not in FREE_TEXT:
        # a name, a date, a number…: the example that helps is the question's own, asked next
        raise InvalidAnswer("error.text.too_long_short", length=len(text))
    if len(text) > 1000:
        raise InvalidAnswer("error.text.too_long", length=len(text), max=1000)
    if step is Step.FULL_NAME:
        hb.set_answer(draft, step, v.normalize_name(text))
    elif step is Step.DATE_OF_BIRTH:
        hb.set_answer(draft, step, v.parse_date_of_birth(text, turn_.services.today()))
    elif step is Step.GENDER:
        label = {v.fold(t("gender.male")): "male", v.fold(t("gender.female")): "female"}
        gender = label.get(v.fold(text)) or v.parse_gender(text)
        hb.set_answer(draft, step, gender)
        return t(f"gender.{gender}")
    elif step is Step.ID_NUMBER:
        if v.fold(text) in {v.fold(t("button.no_id")), v.fold(t("button.no_id_other"))}:
            hb.set_answer(draft, step, None)
            return t("button.no_id")
        dob, gender = hb.draft_dob(draft), hb.draft_gender(draft)
        assert dob is not None and gender is not None
        hb.set_answer(draft, step, v.parse_id_number(text, dob, gender))
    elif step is Step.PHONE:
        if v.fold(text) in {v.fold(t("button.no_phone")), v.fold(t("button.no_phone_other"))}:
            hb.set_answer(draft, step, None)
            return t("button.no_phone")
        else:
            hb.set_answer(draft, step, v.parse_phone(text))
    elif step is Step.BHYT:
        skip = v.fold(text) in {v.fold(t("button.skip")), v.fold(t("button.none"))}
        hb.set_answer(draft, step, None if skip else v.parse_bhyt(text))
        return t("button.skip") if skip else None
    elif step is Step.ETHNICITY:
        found = v.match_ethnicity(text)
        if len(found) != 1:
            if len(found) > 1:
                turn_.say(
                    t("ask.choose_one"),
                    inline(
                        chunk([(e.name, f"hb:ethnicity:{e.code}") for e in found[:MAX_CHOICES]], 2)
                    ),
                )
            raise InvalidAnswer("error.ethnicity.unknown") if not found else _Handled()
        hb.set_answer(draft, step, found[0].code)
        return found[0].name
    elif step in (Step.OCCUPATION, Step.PRIORITY_GROUP):
        prefix = "occupation" if step is Step.OCCUPATION else "priority"
        codes = v.occupations() if step is Step.OCCUPATION else v.priority_groups()
        match = typed_label(text, {c: t(f"{prefix}.{c}") for c in codes})
        if match is None:
            raise InvalidAnswer("error.input.use_buttons")
        hb.set_answer(draft, step, match)
        return t(f"{prefix}.{match}")
    elif step is Step.PROVINCE:
        found = v.search_provinces(text)
        if not found:
            raise InvalidAnswer("error.province.none")
        if len(found) > 1 and v.fold(found[0][1]) != v.fold(text):
            turn_.say(
                t("ask.choose_one"),
                inline(
                    chunk([(name, f"hb:province:{code}") for code, name in found[:MAX_CHOICES]], 2)
                ),
            )
            raise _Handled()
        hb.set_answer(draft, step, found[0][0])
        return found[0][1]
    elif step is Step.WARD:
        province = int(draft.answers["province"])
        found = v.search_wards(province, text)
        if not found:
            raise InvalidAnswer(
                "error.ward.none",
                query=v.clean_text(text, max_len=40) or "",
                province=v.province_name(province),
                example=v.ward_example(province),
            )
        exact = [w for w in found if v.fold(w[1]).endswith(v.fold(text))]
        if len(found) == 1 or (len(exact) == 1 and len(found) <= MAX_CHOICES):
            hb.set_answer(draft, step, (exact or found)[0][0])
            return (exact or found)[0][1]
        if len(found) > MAX_CHOICES:
            raise InvalidAnswer("error.ward.too_many", count=len(found))
        turn_.say(
            t("ask.ward_choose"),
            inline(chunk([(name, f"hb:ward:{code}") for code, name in found], 2)),
        )
    elif step is Step.ADDRESS_LINE:
        skip = v.fold(text) == v.fold(t("button.skip"))
        hb.set_answer(draft, step, None if skip else v.clean_text(text, max_len=200))
        return t("button.skip") if skip else None
    elif step is Step.SCREENING:
        item = hb.next_screening_item(draft)
        assert item is not None
        answers = {
            v.fold(t("button.yes")): "yes",
            v.fold(t("button.no")): "no",
            v.fold(t("button.unknown")): "unknown",
        }
        answer = answers.get(v.fold(text))
        if answer is None:
            raise InvalidAnswer("error.input.yes_no")
        hb.set_screening_answer(draft, item.code, v.Answer(answer))
        # named, so the echo atop the next question cannot be read as answering that one
        short = t(f"screening_short.{item.code}")
        return t("echo.screening", item=short, answer=t(f"answer.{answer}"))
    elif step in (Step.ALLERGIES, Step.CHRONIC_CONDITIONS):
        words = ("button.not_sure", "button.none", "button.no", "button.unknown")
        none = v.fold(text) in {v.fold(t(key)) for key in words}
        hb.set_answer(draft, step, None if none else v.clean_text(text, max_len=500))
        return t("button.not_sure") if none else None
    else:
        raise InvalidAnswer("error.input.use_buttons")
    return None


def typed_label(text: str, labels: dict[str, str]) -> str | None:
    """The code of the button whose label was typed: the whole label, or the start of one label
    only («Không thuộc nhóm nào» for «Không thuộc nhóm nào ở trên»); accents and case ignored."""
    wanted = v.fold(text)
    if not wanted:
        return None
    exact = [c for c, label in labels.items() if v.fold(label) == wanted]
    if exact:
        return exact[0]
    start = [c for c, label in labels.items() if v.fold(label).startswith(wanted)]
    return start[0] if len(start) == 1 and len(wanted) >= 4 else None


class _Handled(InvalidAnswer):
    """The reply (a choice of buttons) is already queued: ask nothing more."""

    def __init__(self) -> None:
        super().__init__("")


def answer_button(step: Step):
    """Handler for a button pressed on the question of ``step``."""

    @turn(NAME)
    async def on_button(turn_: Turn) -> object:
        parts = callback_parts(turn_.update, f"hb:{step}")
        draft = await _draft(turn_)
        if draft is None:
            return await lost_draft(turn_)
        if parts is None or hb.next_field(draft) != step:
            return await stale_button_in(turn_, step, draft)
        hooks = _hooks(draft)
        if hooks.button is not None:
            handled = await hooks.button(turn_, draft, step, parts)
            if handled is not None:
                return handled
        item = hb.next_screening_item(draft) if step is Step.SCREENING else None
        question = screening_question(turn_, draft, item) if item is not None else ""
        try:
            label = accept_button(turn_, draft, step, parts)
        except InvalidAnswer:
            turn_.toast(turn_.t("error.button.invalid"))
            return await ask(turn_, draft, step)
        following = hb.next_field(draft)
        if turn_.typed and item is not None:  # typed: echoed, named, atop the next question
            short = turn_.t(f"screening_short.{item.code}")
            turn_.ack = turn_.t("echo.screening", item=short, answer=label)
        elif step is Step.SCREENING and following == Step.SCREENING:
            turn_.edit_pressed = True  # the declaration steps through its items in one message
        elif step is Step.SCREENING:
            # the last item keeps its question and answer, so the answer cannot be read as
            # belonging to whatever is asked next
            turn_.close_with = f"{question}\n✓ {label}"
        else:
            turn_.ack = label
            if step is Step.PHONE:  # the suggested new number: close the phone keyboard
                turn_.ack, turn_.close_with = None, f"✓ {label}"
                turn_.say(turn_.t("answer.phone_saved"), REMOVE_KEYBOARD)
        return await ask_next(turn_, draft)

    on_button.__name__ = f"on_button_{step}"
    return on_button


def accept_button(turn_: Turn, draft: Draft, step: Step, parts: list[str]) -> str:
    """Check a pressed button's value (it may be forged) and store it; returns its label."""
    t = turn_.t
    value = parts[0] if parts else ""
    if step is Step.GENDER and value in ("male", "female"):
        hb.set_answer(draft, step, value)
        return t(f"gender.{value}")
    if step is Step.PHONE and value == "use" and len(parts) == 2:
        number = v.parse_phone(parts[1])  # the data may be forged: checked like typed text
        hb.set_answer(draft, step, number)
        return v.format_phone(number)
    if step is Step.ID_NUMBER and value == "none":
        hb.set_answer(draft, step, None)
        return t("button.no_id")
    if step in (Step.BHYT, Step.ADDRESS_LINE) and value == "skip":
        hb.set_answer(draft, step, None)
        return t("button.skip")
    if step in (Step.ALLERGIES, Step.CHRONIC_CONDITIONS) and value == "unknown":
        hb.set_answer(draft, step, None)
        return t("button.not_sure")
    code = parse_id(value)  # ethnicity, province and ward buttons carry codes
    if step is Step.ETHNICITY and code is not None:
        try:
            ethnicity = v.ethnicity_by_code(code)
        except KeyError:
            raise InvalidAnswer("error.button.invalid") from None
        hb.set_answer(draft, step, ethnicity.code)
        return ethnicity.name
    if step is Step.OCCUPATION and v.is_occupation(value):
        hb.set_answer(draft, step, value)
        return t(f"occupation.{value}")
    if step is Step.PRIORITY_GROUP and v.is_priority_group(value):
        hb.set_answer(draft, step, value)
        return t(f"priority.{value}")
    if step is Step.PROVINCE and code is not None and v.is_province(code):
        hb.set_answer(draft, step, code)
        return v.province_name(code)
    if step is Step.WARD and code is not None:
        if v.ward_in_province(code, int(draft.answers["province"])):
            hb.set_answer(draft, step, code)
            return v.ward_name(code)
    if step is Step.SCREENING and len(parts) == 2 and parts[1] in ("yes", "no", "unknown"):
        item = hb.next_screening_item(draft)
        if item is not None and item.code == parts[0]:
            hb.set_screening_answer(draft, item.code, v.Answer(parts[1]))
            return t(f"button.{parts[1]}")
    raise InvalidAnswer("error.button.invalid")


async def reject(turn_: Turn, draft: Draft, step: Step, err: InvalidAnswer) -> Step:
    """Explain what is wrong, then ask the same question again (the other answers stay)."""
    if not isinstance(err, _Handled):
        markup = None
        if err.key == "error.phone.old_number":  # one press accepts the new number
            label = turn_.t("button.use_number", number=err.params["suggestion"])
            markup = inline([[(label, f"hb:phone:use:{err.params['number']}")]])
        turn_.say(turn_.t(err.key, **err.params), markup)
        await ask(turn_, draft, step)
    return step


# ---------------------------------------------------------------- review and save


@turn(NAME)
async def review_button(turn_: Turn) -> object:
    """Edit one field (then come back here), or save the health book."""
    parts = callback_parts(turn_.update, "hb:review")
    draft = await _draft(turn_)
    t = turn_.t
    if draft is None:
        return await lost_draft(turn_)
    if parts is None or hb.next_field(draft) is not None:
        return await stale_button_in(turn_, Step.REVIEW, draft)
    if parts[:1] == ["edit"] and len(parts) == 2 and parts[1] in hb.editable_fields(draft.answers):
        hb.begin_edit(draft, parts[1])
        turn_.close_with = t("review.editing", field=t(f"field.{parts[1]}"))
        return await ask_next(turn_, draft)
    if parts != ["save"]:
        turn_.toast(t("error.button.invalid"))
        return None
    assert turn_.account is not None
    updating = draft.book_id is not None
    hooks = _hooks(draft)
    if hooks.before_save is not None and await hooks.before_save(turn_, draft):
        return Step.REVIEW
    try:
        async with turn_.session.begin_nested():
            book = await hb.save_book(
                turn_.session, turn_.account, draft, turn_.services.settings.bot.consent_version
            )
    except InvalidAnswer as err:
        field = str(err.params.pop("field", "")) or hb.next_field(draft) or "full_name"
        hb.forget_answer(draft, field)
        turn_.say(t(err.key, **err.params))
        return await ask_next(turn_, draft)
    except DomainError as err:
        turn_.close_with = t("review.title")
        turn_.say(t(err.key, **err.params))
        if err.key == "error.id.duplicate":
            hb.begin_edit(draft, "id_number")
            return await ask_next(turn_, draft)
        return ConversationHandler.END
    turn_.close_with = t("review.saved_short")
    if hooks.saved is not None:
        await hooks.saved(turn_, book, not updating)
    else:
        turn_.say(t("saved.updated" if updating else "saved.new"))
    return ConversationHandler.END


# ---------------------------------------------------------------- /profile


@turn()
async def profile(turn_: Turn) -> None:
    """/profile: the saved health book, with a button to edit it."""
    await show_profile(turn_)


@turn(NAME)
async def profile_midway(turn_: Turn) -> object:
    """/profile in the middle of the questions: the saved book, then the current question."""
    await show_profile(turn_, edit_button=False)
    return await _reask(turn_)


async def show_profile(turn_: Turn, *, edit_button: bool = True) -> None:
    """The saved book as a message."""
    book = await _book(turn_)
    if book is None:
        turn_.say(turn_.t("profile.none"))
        return
    answers = hb.answers_of_book(book)
    turn_.say(
        turn_.t("profile.title") + "\n\n" + summary(turn_, answers),
        inline([[(turn_.t("button.edit"), "pf:edit")]]) if edit_button else None,
    )


async def _book(turn_: Turn) -> HealthBook | None:
    if turn_.account is None:
        return None
    return await hb.own_book(turn_.session, turn_.account)


@turn(NAME)
async def profile_edit(turn_: Turn) -> object:
    """Edit button under /profile: a draft copy of the book, shown as the review."""
    book = await _book(turn_)
    if book is None or turn_.account is None:
        turn_.toast(turn_.t("error.button.stale"))
        return ConversationHandler.END
    draft = await hb.start_draft(turn_.session, turn_.account, book)
    return await ask(turn_, draft, Step.REVIEW)


# ---------------------------------------------------------------- anything else, mid-way


async def current_step(turn_: Turn) -> tuple[Draft | None, Step]:
    """Where the person stands, from the database."""
    draft = await _draft(turn_)
    if draft is None:
        return None, Step.CONSENT
    field = hb.next_field(draft)
    return draft, Step(field) if field else Step.REVIEW


async def lost_draft(turn_: Turn) -> object:
    """The draft is gone (deleted elsewhere): start over politely."""
    turn_.toast(turn_.t("error.button.stale"))
    turn_.say(turn_.t("resume.start_over"))
    return ConversationHandler.END


async def stale_button_in(turn_: Turn, step: Step, draft: Draft | None = None) -> object:
    """A button from an old message, or forged data: a polite notice and the current question."""
    turn_.toast(turn_.t("error.button.stale"))
    if draft is None and step is not Step.CONSENT:
        draft = await _draft(turn_)
    if draft is None:
        return await ask(turn_, None, Step.CONSENT) if step is Step.CONSENT else None
    return await ask_next(turn_, draft)


@turn(NAME)
async def stale_button(turn_: Turn) -> object:
    """Any button that does not belong to the current question."""
    draft, step = await current_step(turn_)
    return await stale_button_in(turn_, step, draft)


@turn(NAME)
async def not_text(turn_: Turn) -> object:
    """A sticker, photo, voice, location… where a typed answer or a button is expected."""
    draft, step = await current_step(turn_)
    turn_.say(turn_.t("error.input.not_text"))
    return await ask(turn_, draft, step) if draft or step is Step.CONSENT else None


@turn(NAME)
async def unknown_command(turn_: Turn) -> object:
    """A command the conversation does not know: say so, ask the same question again."""
    draft, step = await current_step(turn_)
    turn_.say(turn_.t("error.command.unknown"))
    return await ask(turn_, draft, step)


@turn(NAME)
async def text_at_button_step(turn_: Turn) -> object:
    """Typing where only buttons make sense (consent, review)."""
    draft, step = await current_step(turn_)
    turn_.say(turn_.t("error.input.use_buttons"))
    return await ask(turn_, draft, step)


@turn(NAME)
async def contact_answer(turn_: Turn) -> object:
    """The 'share my phone number' button: a Telegram contact."""
    draft = await _draft(turn_)
    message = turn_.update.effective_message
    if draft is None or message is None or message.contact is None:
        return await lost_draft(turn_)
    if hb.next_field(draft) != Step.PHONE:
        return await ask_next(turn_, draft)
    try:
        hb.set_answer(draft, Step.PHONE, v.parse_phone(message.contact.phone_number))
    except InvalidAnswer as err:
        return await reject(turn_, draft, Step.PHONE, err)
    turn_.say(turn_.t("answer.phone_saved"), REMOVE_KEYBOARD)
    return await ask_next(turn_, draft)


@turn(NAME)
async def resume(turn_: Turn) -> object:
    """/start in the middle: carry on where the person was."""
    draft, step = await current_step(turn_)
    if draft is None:
        return await ask(turn_, None, Step.CONSENT)
    turn_.say(turn_.t("resume.welcome_back"))
    return await ask(turn_, draft, step)


def build() -> ConversationHandler:
    """The conversation, as a transition table: each state lists what it accepts."""
    states: dict[object, list[BaseHandler]] = {
        Step.CONSENT: [
            CallbackQueryHandler(consent_answer, pattern=r"^hb:consent:"),
            MessageHandler(NEW_TEXT, text_at_button_step),
        ],
        Step.REVIEW: [
            CallbackQueryHandler(review_button, pattern=r"^hb:review:"),
            MessageHandler(NEW_TEXT, text_at_button_step),
        ],
    }
    for step in Step:
        if step in (Step.CONSENT, Step.REVIEW):
            continue
        handlers: list[BaseHandler] = [
            CallbackQueryHandler(answer_button(step), pattern=rf"^hb:{step}:"),
            MessageHandler(NEW_TEXT, answer_text(step)),
        ]
        if step is Step.PHONE:
            handlers.insert(0, MessageHandler(filters.CONTACT & PRIVATE, contact_answer))
        states[step] = handlers
    with warnings.catch_warnings():
        # per_message=False is deliberate: buttons are checked against the draft instead
        warnings.filterwarnings("ignore", "If 'per_message=False'", PTBUserWarning)
        return _conversation(states)


def _entries() -> list[BaseHandler]:
    handlers: list[BaseHandler] = []
    for name in ENTRY_MODULES:
        handlers.extend(importlib.import_module(name).entries())
    return handlers


def _midway() -> list[BaseHandler]:
    """Fallbacks only (not entry points) of :data:`ENTRY_MODULES`: commands of top-level
    handlers that must also work in the middle of the questions (/join CODE)."""
    handlers: list[BaseHandler] = []
    for name in ENTRY_MODULES:
        handlers.extend(getattr(importlib.import_module(name), "midway", list)())
    return handlers


def _conversation(states: dict[object, list[BaseHandler]]) -> ConversationHandler:
    entries = _entries()
    return ConversationHandler(
        entry_points=[
            *entries,
            CommandHandler("start", start, filters=PRIVATE),
            CallbackQueryHandler(profile_edit, pattern=r"^pf:edit$"),
            # "Continue" in the reminder of a health book left unfinished
            CallbackQueryHandler(start, pattern=r"^hb:resume$"),
        ],
        states=states,
        fallbacks=[
            CommandHandler("start", resume, filters=PRIVATE),
            CallbackQueryHandler(resume, pattern=r"^hb:resume$"),
            CommandHandler("profile", profile_midway),
            *entries,
            *_midway(),
            *acct.conversation_fallbacks(NAME, reask=_reask),
            # /appointments and a held place's Take / Decline belong to booking (handlers
            # outside this conversation): a place offered mid-way is taken without leaving it
            MessageHandler(filters.COMMAND & ~filters.Regex(OUTSIDE), unknown_command),
            # a reminder's "I'll come" too (rm:, handlers/reminders.py), and a report chosen
            # (rp:, handlers/report.py: /report works mid-way)
            CallbackQueryHandler(stale_button, pattern=r"^(?!wl:|rm:|rp:)"),
            MessageHandler(filters.UpdateType.MESSAGE & ~filters.TEXT, not_text),
        ],
        name=NAME,
        persistent=True,
        allow_reentry=False,
    )


async def _reask(turn_: Turn) -> Step:
    draft, step = await current_step(turn_)
    return await ask(turn_, draft, step)
