"""The vaccination site and the certificate: /checkin (staff), /certificate, /verify.

Site staff check a person in by their booking code (typed after /checkin or alone, or the
ticket's QR: a ``/start checkin-CODE`` deep link on Telegram, the code itself elsewhere), see
who they are and what they declared, then record the dose (vaccine button, lot number typed)
or why it was not given. The person is told at once.

Callback data carries the booking id and the chosen vaccine (``st:v:<booking>:<vaccine>``); it
may be forged, so role and site are checked again on every press, and the domain checks them
once more when it writes. While a lot number or a reason is being typed, the booking (and the
vaccine) ride in the persisted conversation state itself (``lot:<booking>:<vaccine>``), since
PTB's user_data is not persisted.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot.i18n import Translator
from handlers import aftercare
from handlers.common import (
    Address,
    Turn,
    callback_ids,
    callback_parts,
    chunk,
    inline,
    is_private,
    parse_id,
    render_error,
    timing,
    turn,
)
from models import booking as bk
from models import certificates as certs
from models import checkin as ci
from models import custody
from models import eligibility as elig
from models import healthbook as hb
from models import validators as v
from models.errors import DomainError
from models.qr import qr_png
from models.tables import (
    BOOKING_ACTIVE,
    Account,
    Booking,
    ConversationState,
    HealthBook,
    Site,
    StaffSite,
    Vaccination,
    Vaccine,
)
from models.timeutil import local_date

NAME = "site"
PRIVATE = filters.ChatType.PRIVATE
NEW_TEXT = filters.UpdateType.MESSAGE & filters.TEXT & ~filters.COMMAND
DEEP_LINK = re.compile(r"^/start(?:@\w+)?\s+checkin-(\S+)\s*$")
REASONS = ("fever", "blood_pressure", "refused", "other")


class Stage(StrEnum):
    """States of the check-in conversation. LOT and REASON carry data after a colon."""

    CARD = "card"  # the person's card is shown: record a dose, or not vaccinated
    VACCINE = "vaccine"  # which vaccine was given (buttons)
    LOT = "lot"  # lot:<booking>:<vaccine> — the lot number is typed
    REASON = "reason"  # reason:<booking> — the reason is typed or chosen


class _States(dict[object, list[BaseHandler]]):
    """A state table where ``lot:12:pfizer`` finds the handlers of ``lot``: the data of a state
    survives a restart with it (PTB looks states up with ``get`` and ``in``)."""

    @staticmethod
    def _base(key: object) -> object:
        return key.split(":", 1)[0] if isinstance(key, str) else key

    def get(self, key: object, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(self._base(key), default)

    def __contains__(self, key: object) -> bool:
        return super().__contains__(self._base(key))


# ---------------------------------------------------------------- rendering


async def _vaccine_names(turn_: Turn, codes: list[str]) -> dict[str, str]:
    """Product names of vaccine codes (the code itself when unknown)."""
    rows = await turn_.session.execute(
        select(Vaccine.code, Vaccine.name).where(Vaccine.code.in_(codes))
    )
    names = {code: name for code, name in rows}
    return {code: names.get(code, code) for code in codes}


def _flagged(t: Translator, book: HealthBook, today: dt.date) -> list[str]:
    """The screening answers that are not "no" nor "not applicable" (the derived age item
    included)."""
    answers = book.screening or {}
    lines = []
    for item in v.screening_items(asked_only=False):
        if item.derived:
            answer = item.derived_answer(age=v.age_on(book.date_of_birth, today)).value
        else:
            answer = str(answers.get(item.code, "unknown"))
        if answer not in ("no", "not_applicable"):
            lines.append(f"• {t(f'screening_short.{item.code}')}: {t(f'answer.{answer}')}")
    return lines


def _card(turn_: Turn, found: ci.CheckIn) -> str:
    """Who the person is, what they declared, and what they booked."""
    t, book, booking = turn_.t, found.book, found.booking
    slot = booking.session
    ident = (
        v.IdNumber(kind=book.id_kind, number=book.id_number).masked()  # type: ignore[arg-type]
        if book.id_kind and book.id_number
        else t("site.no_id")
    )
    flagged = _flagged(t, book, turn_.services.today())
    return t(
        "site.card",
        name=book.full_name,
        dob=t.date(book.date_of_birth),
        id=ident,
        screening="\n".join(flagged) if flagged else t("site.screening_all_no"),
        group=t(f"site.group.{found.group.value}"),
        campaign=booking.campaign.name,
        dose=booking.dose,
        site=slot.site.name,
        date=t.date(slot.date),
        time=f"{slot.start_time:%H:%M}–{slot.end_time:%H:%M}",
        code=booking.code,
    )


def _card_buttons(turn_: Turn, booking_id: int) -> Any:
    t = turn_.t
    return inline(
        [
            [(t("site.button.record"), f"st:d:{booking_id}")],
            [(t("site.button.not_vaccinated"), f"st:n:{booking_id}")],
        ]
    )


# ---------------------------------------------------------------- who may act


def _is_staff(account: Account | None) -> bool:
    return (
        account is not None and account.role in ci.STAFF_ROLES and account.suspended_at is None
    )


async def _staff_booking(turn_: Turn, raw_id: str) -> Booking:
    """The booking a button names, if the sender is staff of its site (raises DomainError).

    The domain checks this again when it writes; checking here too means a forged button never
    even shows someone else's booking."""
    account = turn_.account
    if not _is_staff(account):
        raise DomainError("checkin.not_staff")
    assert account is not None
    booking_id = parse_id(raw_id)
    code = (
        await turn_.session.scalar(select(Booking.code).where(Booking.id == booking_id))
        if booking_id is not None
        else None
    )
    if code is None:
        raise DomainError("booking.not_found")
    booking = await bk.find_booking_by_code(turn_.session, code)
    if account.role != "admin":
        bound = await turn_.session.scalar(
            select(StaffSite.site_id).where(
                StaffSite.account_id == account.id,
                StaffSite.site_id == booking.session.site_id,
            )
        )
        if bound is None:
            raise DomainError("checkin.not_your_site")
    return booking


def _outcome_allowed(turn_: Turn, booking: Booking, *, dose: bool) -> None:
    """Refuse (DomainError) unless an outcome may be recorded now: the person checked in, on
    the session's day (the domain checks this again when it writes)."""
    if not dose and booking.status not in BOOKING_ACTIVE:
        raise DomainError("checkin.not_active", status=booking.status)
    key = "vaccination.not_checked_in" if dose else "outcome.not_checked_in"
    ci.require_checked_in_today(booking, turn_.services.now(), key)


def _refuse(turn_: Turn, err: DomainError) -> None:
    """A refusal: on the pressed button as an alert, otherwise as a message."""
    text = render_error(turn_.t, err)
    if turn_.update.callback_query is not None:
        turn_.toast(text, alert=True)
    else:
        turn_.say(text)


# ---------------------------------------------------------------- check-in


async def show_checkin(turn_: Turn, code: str) -> object:
    """Check ``code`` in for the sender (site staff) and show the person's card."""
    if not _is_staff(turn_.account):
        turn_.say(turn_.t("site.staff_only"))
        return ConversationHandler.END
    assert turn_.account is not None
    try:
        found = await ci.check_in(turn_.session, turn_.account, code, turn_.services.now())
    except DomainError as err:
        turn_.say(render_error(turn_.t, err))
        return ConversationHandler.END
    turn_.say(_card(turn_, found), _card_buttons(turn_, found.booking.id))
    return Stage.CARD


def looks_like_code(text: str) -> bool:
    """Whether a typed message is a booking code alone (any case, spaces or dashes): what the
    ticket's QR holds on Zalo, which has no deep links."""
    try:
        bk.normalize_code(text)
    except DomainError:
        return False
    return True


async def checkin_typed(turn_: Turn) -> bool:
    """A booking code typed alone by site staff, outside the check-in: check it in, as
    ``/checkin CODE`` does. False (nothing said) when the sender is not staff or the text is
    not a code, so that the caller answers as it would anyway."""
    if not (_is_staff(turn_.account) and looks_like_code(turn_.text)):
        return False
    await show_checkin(turn_, turn_.text)
    return True


async def checkin_from_deeplink(turn_: Turn, code: str) -> None:
    """/start checkin-CODE (the ticket's QR scanned by the staff's camera): the check-in card."""
    await show_checkin(turn_, code)


@turn(NAME)
async def checkin(turn_: Turn) -> object:
    """/checkin CODE: check a person in."""
    args = turn_.context.args or []
    if not _is_staff(turn_.account):
        turn_.say(turn_.t("site.staff_only"))
        return ConversationHandler.END
    if not args:
        turn_.say(turn_.t("site.checkin_usage"))
        return ConversationHandler.END
    return await show_checkin(turn_, "".join(args))


@turn(NAME)
async def checkin_deep_link(turn_: Turn) -> object:
    """/start checkin-CODE."""
    match = DEEP_LINK.match(turn_.text)
    return await show_checkin(turn_, match.group(1) if match else "")


# ---------------------------------------------------------------- record a dose


@turn(NAME)
async def record_pressed(turn_: Turn) -> object:
    """ "Record dose": the campaign's vaccines as buttons."""
    parts = callback_parts(turn_.update, "st:d") or [""]
    try:
        booking = await _staff_booking(turn_, parts[0])
        _outcome_allowed(turn_, booking, dose=True)
    except DomainError as err:
        _refuse(turn_, err)
        return None
    codes = list(booking.campaign.vaccine_codes or [])
    names = await _vaccine_names(turn_, codes)
    turn_.ack = turn_.t("site.button.record")
    turn_.say(
        turn_.t("site.ask_vaccine", name=booking.health_book.full_name),
        inline(chunk([(names[c], f"st:v:{booking.id}:{c}") for c in codes], 1)),
    )
    return Stage.VACCINE


@turn(NAME)
async def vaccine_chosen(turn_: Turn) -> object:
    """A vaccine button: ask for the lot number (kept in the state with the booking)."""
    parts = callback_parts(turn_.update, "st:v") or []
    try:
        if len(parts) != 2:
            raise DomainError("booking.not_found")
        booking = await _staff_booking(turn_, parts[0])
        _outcome_allowed(turn_, booking, dose=True)
        codes = list(booking.campaign.vaccine_codes or [])
        if parts[1] not in codes:
            raise DomainError(
                "vaccination.wrong_vaccine", vaccine=parts[1], allowed=", ".join(codes)
            )
    except DomainError as err:
        _refuse(turn_, err)
        return None
    name = (await _vaccine_names(turn_, [parts[1]]))[parts[1]]
    turn_.ack = name
    turn_.say(turn_.t("site.ask_lot", vaccine=name))
    return f"{Stage.LOT}:{booking.id}:{parts[1]}"


async def _state_data(turn_: Turn, stage: Stage) -> list[str] | None:
    """The data of the current ``stage`` (``lot:<booking>:<vaccine>`` → [booking, vaccine]),
    read from the persisted state."""
    state = await turn_.session.scalar(
        select(ConversationState.state).where(
            ConversationState.channel == turn_.channel,
            ConversationState.name == NAME,
            ConversationState.chat_id == str(turn_.chat_id),
            ConversationState.user_id == str(turn_.user_id),
        )
    )
    if not state or not state.startswith(f"{stage}:"):
        return None
    return state.split(":")[1:]


@turn(NAME)
async def lot_typed(turn_: Turn) -> object:
    """The lot number: record the dose, tell the staff and the person."""
    data = await _state_data(turn_, Stage.LOT)
    if data is None or len(data) != 2:
        turn_.say(turn_.t("site.start_again"))
        return ConversationHandler.END
    booking_id, vaccine = data
    t = turn_.t
    try:
        booking = await _staff_booking(turn_, booking_id)
        assert turn_.account is not None
        window = await ci.record_dose(
            turn_.session,
            turn_.account,
            booking.id,
            vaccine,
            turn_.text,
            turn_.services.now(),
            timing=timing(turn_.services),
        )
    except DomainError as err:
        turn_.say(render_error(t, err))
        if err.key == "vaccination.lot_invalid":
            return None  # same question: type the lot again
        return ConversationHandler.END
    name = (await _vaccine_names(turn_, [vaccine]))[vaccine]
    book = booking.health_book
    lot = turn_.text.strip()
    turn_.say(
        t("site.dose_recorded", name=book.full_name, dose=booking.dose, vaccine=name, lot=lot)
    )
    await _notify_dose(turn_, book, booking, name, window)
    await aftercare.after_dose(turn_, booking)  # the advice now, the check-in planned
    return ConversationHandler.END


async def _person(turn_: Turn, book: HealthBook) -> tuple[Address, Translator] | None:
    """Where the health book's holder reads their messages, and their language."""
    account = await turn_.session.get(Account, book.account_id)
    if account is None:
        return None
    to = await hb.reply_address(turn_.session, account)
    return to, turn_.services.translations.get(account.locale, to.channel)


async def _notify_dose(
    turn_: Turn, book: HealthBook, booking: Booking, vaccine: str, window: elig.DoseWindow | None
) -> None:
    person = await _person(turn_, book)
    if person is None:
        return
    to, t = person
    text = t(
        "site.notify_dose",
        dose=booking.dose,
        vaccine=vaccine,
        date=t.date(turn_.services.today()),
        site=booking.session.site.name,
    )
    if window is not None:
        if window.latest is not None:
            text += "\n\n" + t(
                "site.notify_next",
                dose=window.dose,
                earliest=t.date(window.earliest),
                latest=t.date(window.latest),
            )
        else:
            text += "\n\n" + t(
                "site.notify_next_open", dose=window.dose, earliest=t.date(window.earliest)
            )
    turn_.notify(to, text, locale=t.locale)


# ---------------------------------------------------------------- not vaccinated


@turn(NAME)
async def not_vaccinated_pressed(turn_: Turn) -> object:
    """ "Not vaccinated today": common reasons as buttons, or a reason typed."""
    parts = callback_parts(turn_.update, "st:n") or [""]
    try:
        booking = await _staff_booking(turn_, parts[0])
        _outcome_allowed(turn_, booking, dose=False)
    except DomainError as err:
        _refuse(turn_, err)
        return None
    t = turn_.t
    turn_.ack = t("site.button.not_vaccinated")
    turn_.say(
        t("site.ask_reason", name=booking.health_book.full_name),
        inline([[(t(f"site.reason.{r}"), f"st:r:{booking.id}:{r}")] for r in REASONS]),
    )
    return f"{Stage.REASON}:{booking.id}"


@turn(NAME)
async def reason_chosen(turn_: Turn) -> object:
    """A reason button ("other": type it)."""
    parts = callback_parts(turn_.update, "st:r") or []
    if len(parts) != 2 or parts[1] not in REASONS:
        turn_.toast(turn_.t("error.button.invalid"), alert=True)
        return None
    if parts[1] == "other":
        try:
            booking = await _staff_booking(turn_, parts[0])
            _outcome_allowed(turn_, booking, dose=False)
        except DomainError as err:
            _refuse(turn_, err)
            return None
        turn_.ack = turn_.t("site.reason.other")
        turn_.say(turn_.t("site.ask_reason_text"))
        return f"{Stage.REASON}:{booking.id}"
    # stored in the default language: the record reads the same whoever wrote it
    default = turn_.services.translations.get(turn_.services.translations.default)
    return await _not_vaccinated(turn_, parts[0], default(f"site.reason.{parts[1]}"))


@turn(NAME)
async def reason_typed(turn_: Turn) -> object:
    """A reason typed in words."""
    data = await _state_data(turn_, Stage.REASON)
    if not data:
        turn_.say(turn_.t("site.start_again"))
        return ConversationHandler.END
    return await _not_vaccinated(turn_, data[0], turn_.text)


async def _not_vaccinated(turn_: Turn, booking_id: str, reason: str) -> object:
    t = turn_.t
    try:
        booking = await _staff_booking(turn_, booking_id)
        assert turn_.account is not None
        await ci.record_not_vaccinated(
            turn_.session, turn_.account, booking.id, reason, turn_.services.now()
        )
    except DomainError as err:
        _refuse(turn_, err)
        if err.key == "vaccination.reason_invalid":
            return None
        return ConversationHandler.END
    book = booking.health_book
    if turn_.update.callback_query is not None:
        turn_.close_with = t("site.ask_reason", name=book.full_name)
    turn_.say(t("site.not_vaccinated_recorded", name=book.full_name, reason=reason.strip()))
    person = await _person(turn_, book)
    if person is not None:
        to, pt = person
        turn_.notify(to, pt("site.notify_not_vaccinated", reason=reason.strip()), locale=pt.locale)
    return ConversationHandler.END


# ---------------------------------------------------------------- mid-way


@turn(NAME)
async def use_buttons(turn_: Turn) -> object:
    """Typing where a button is expected: the choices again; a booking code typed alone (the
    next person in the queue, from the ticket's QR on Zalo) checks that one in instead."""
    if _is_staff(turn_.account) and looks_like_code(turn_.text):
        return await show_checkin(turn_, turn_.text)
    await turn_.say_again_with_choices(turn_.t("site.use_buttons"))
    return None


@turn(NAME)
async def cancel(turn_: Turn) -> object:
    """/cancel during a check-in: nothing is recorded."""
    turn_.say(turn_.t("site.cancelled"))
    return ConversationHandler.END


# ---------------------------------------------------------------- certificate


@turn()
async def certificate(turn_: Turn) -> None:
    """/certificate: my doses, and a signed QR code that anyone can check with /verify; then a
    choice per relative whose book the account holds (``cert:BOOK``, access checked)."""
    t = turn_.t
    held = await custody.held_books(turn_.session, turn_.account) if turn_.account else []
    own = next((b for b in held if b.relation == "self"), None)
    others = [b for b in held if b.relation != "self"]
    if own is None and not others:
        turn_.say(t("certificate.no_book"))
        return
    if own is not None:
        await show_certificate(turn_, own)
    if others:
        private = is_private(turn_.update)
        turn_.say(
            t("certificate.others"),
            inline(
                [
                    [(b.full_name if private else t(f"relation.{b.relation}"), f"cert:{b.id}")]
                    for b in others
                ]
            ),
        )


@turn()
async def certificate_of(turn_: Turn) -> None:
    """A relative's (or a helped resident's) certificate, ``cert:BOOK``: access checked on
    every press (the data can be forged)."""
    ids = callback_ids(turn_.update, "cert", 1)
    if ids is None:
        turn_.toast(turn_.t("error.button.invalid"))
        return
    try:
        found = await custody.require_book(turn_.session, turn_.account, ids[0])
    except DomainError as err:
        turn_.toast(render_error(turn_.t, err), alert=True)
        return
    await show_certificate(turn_, found.book)


async def show_certificate(turn_: Turn, book: HealthBook) -> None:
    """A book's doses and its signed QR code (named in a private chat when not one's own)."""
    t = turn_.t
    rows = (
        await turn_.session.execute(
            select(Vaccination, Site.name)
            .outerjoin(Site, Site.id == Vaccination.site_id)
            .where(Vaccination.health_book_id == book.id)
            .order_by(Vaccination.given_at, Vaccination.id)
        )
    ).all()
    other = book.account_id != (turn_.account.id if turn_.account else None)
    other = other or book.relation != "self"
    if not rows:
        private = is_private(turn_.update)
        head = t("book.for", name=book.full_name) + "\n" if other and private else ""
        turn_.say(head + t("certificate.no_doses"))
        return
    names = await _vaccine_names(turn_, sorted({vac.vaccine_code for vac, _ in rows}))
    lines = [
        t(
            "certificate.dose_line",
            date=t.date(local_date(vac.given_at)),
            vaccine=names[vac.vaccine_code],
            dose=vac.dose,
            site=site or "—",
        )
        for vac, site in rows
    ]
    services = turn_.services
    payload = await certs.certificate_payload(
        turn_.session, book, services.keyring, issued=services.today()
    )
    turn_.say(t("certificate.title", name=book.full_name) + "\n\n" + "\n".join(lines))
    turn_.send_photo(qr_png(payload), caption=t("certificate.qr_caption"))
    turn_.say(payload)


@turn()
async def verify(turn_: Turn) -> None:
    """/verify PAYLOAD: whether a certificate is genuine, and what it says."""
    t = turn_.t
    payload = "".join(turn_.context.args or [])
    if not payload:
        turn_.say(t("certificate.verify_usage"))
        return
    try:
        data = certs.verify_certificate(payload, turn_.services.keyring)
    except DomainError as err:
        turn_.say(render_error(t, err))
        return
    names = await _vaccine_names(turn_, sorted({d["vaccine"] for d in data["doses"]}))
    lines = [
        t(
            "certificate.verified_dose",
            date=t.date(d["date"]),
            vaccine=names[d["vaccine"]],
            dose=d["dose"],
        )
        for d in data["doses"]
    ]
    turn_.say(
        t("certificate.valid", initials=data["initials"], birth_year=data["birth_year"])
        + "\n"
        + t("certificate.issued", date=t.date(data["issued"]))
        + "\n"
        + "\n".join(lines)
    )


# ---------------------------------------------------------------- wiring


def handlers() -> list[BaseHandler]:
    """Top-level handlers: /certificate and /verify."""
    return [
        CommandHandler("certificate", certificate),
        CommandHandler("verify", verify),
        CallbackQueryHandler(certificate_of, pattern=r"^cert:"),
    ]


def build() -> ConversationHandler:
    """The check-in conversation, as a transition table. Register it before the health-book
    conversation, so that ``/start checkin-CODE`` reaches it first."""
    buttons: list[BaseHandler] = [
        CallbackQueryHandler(record_pressed, pattern=r"^st:d:"),
        CallbackQueryHandler(not_vaccinated_pressed, pattern=r"^st:n:"),
        CallbackQueryHandler(vaccine_chosen, pattern=r"^st:v:"),
        CallbackQueryHandler(reason_chosen, pattern=r"^st:r:"),
    ]
    commands: list[BaseHandler] = [
        CommandHandler("checkin", checkin, filters=PRIVATE),
        CommandHandler("start", checkin_deep_link, filters=PRIVATE & filters.Regex(DEEP_LINK)),
    ]
    states = _States(
        {
            Stage.CARD: [MessageHandler(NEW_TEXT, use_buttons)],
            Stage.VACCINE: [MessageHandler(NEW_TEXT, use_buttons)],
            Stage.LOT: [MessageHandler(NEW_TEXT, lot_typed)],
            Stage.REASON: [MessageHandler(NEW_TEXT, reason_typed)],
        }
    )
    with warnings.catch_warnings():
        # per_message=False is deliberate: every button carries its booking and is re-checked
        warnings.filterwarnings("ignore", "If 'per_message=False'", PTBUserWarning)
        return ConversationHandler(
            entry_points=[*commands, *buttons],
            states=states,
            fallbacks=[*commands, *buttons, CommandHandler("cancel", cancel)],
            name=NAME,
            persistent=True,
            allow_reentry=False,
        )
