"""Hostile and odd input: forged callback data of every shape pressed on every button pattern of
the built application, from a stranger and from a resident with bookings, gets a polite answer,
never a traceback, and changes nothing; outcomes at the site need a check-in on the day;
"Reschedule" on a booking that is no longer active is refused at the first press, in words."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from telegram.ext import CallbackQueryHandler, ConversationHandler

from bot.standin import ChatDriver
from handlers.common import ID_MAX, parse_id
from models import booking as bk
from models import checkin as ci
from models import healthbook as hb
from models import lookups as lk
from models.campaigns import load_sample_data, sample_book
from models.tables import Base, Booking, Session, Site, Vaccination
from tests.conftest import Harness
from tests.flows import agree, t

COVID, FLU = "covid19_2021", "influenza_seasonal"
SENDS = {"sendMessage", "sendPhoto", "sendDocument", "sendLocation"}
ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- the parser


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("42", 42),
        ("007", 7),
        (str(ID_MAX), ID_MAX),
        (str(ID_MAX + 1), None),  # would overflow an INTEGER column on PostgreSQL
        ("99999999999999999999", None),
        ("²", None),  # a digit to str.isdigit, not to int()
        ("١٢", None),  # Arabic-Indic digits: int() takes them, ids never have them
        ("-1", None),
        ("+1", None),
        (" 1", None),
        ("1 ", None),
        ("1_000", None),
        ("", None),
        ("x", None),
    ],
)
def test_parse_id_takes_ascii_digits_within_the_column(text: str, expected: int | None) -> None:
    assert parse_id(text) == expected


def test_parse_id_bound_can_be_raised_for_timestamps() -> None:
    assert parse_id("1795000000", high=2**62) == 1795000000
    assert parse_id("9" * 19, high=2**62) is None


# ---------------------------------------------------------------- the people


@dataclass
class World:
    bot: Harness
    stranger: ChatDriver
    resident: ChatDriver
    booked: Booking  # the resident's upcoming booking
    cancelled: Booking  # and one they cancelled


async def _first_slot(session: Any, site_code: str, campaign: str, after: dt.date) -> Session:
    row = await session.scalar(
        select(Session)
        .join(Site, Site.id == Session.site_id)
        .where(Site.code == site_code, Session.date > after)
        .where(Session.campaign_id == (await lk.get_campaign(session, campaign)).id)
        .order_by(Session.date, Session.start_time)
    )
    assert row is not None
    return row


async def resident_with_bookings(bot: Harness, uid: int | None = None) -> World:
    """Sample data; a resident (health book written directly) with a COVID-19 booking and a
    cancelled influenza one, who has started /book; and a stranger who never wrote."""
    today = bot.services.today()
    resident = bot.user(uid)
    async with bot.session() as session, session.begin():
        await load_sample_data(session, today)
        account = await hb.ensure_account(session, "telegram", str(resident.user.id), "vi")
        book = sample_book(account.id, full_name="Lò Thị Mai", id_number="010185001234",
                           id_kind="cccd")  # fmt: skip
        session.add(book)
        await session.flush()
        covid = await _first_slot(session, "LC-TYT-SAPA", COVID, today)
        booked = await bk.book(session, book.id, covid.id, COVID, None, today)
        flu = await _first_slot(session, "LC-TYT-SAPA", FLU, today)
        cancelled = await bk.book(session, book.id, flu.id, FLU, None, today)
        await bk.cancel(session, cancelled, account)
    return World(bot, bot.user(), resident, booked, cancelled)


async def dump(bot: Harness) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order (but ``handled_updates``: every turn records
    its update there, whatever it did)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    async with bot.session() as session:
        for table in Base.metadata.sorted_tables:
            if table.name == "handled_updates":
                continue
            rows = (await session.execute(select(table))).all()
            out[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return out


class Errors(logging.Handler):
    """ERROR records logged anywhere (the error handler logs every traceback at ERROR)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def errors() -> Iterator[Errors]:
    handler = Errors()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


# ---------------------------------------------------------------- forged data of every shape


def callback_patterns(app: Any) -> list[tuple[str, bool]]:
    """Every CallbackQueryHandler of the application (conversations walked: entry points,
    states, fallbacks), as (literal prefix of its pattern, whether the pattern is exact)."""
    found: set[tuple[str, bool]] = set()

    def walk(handler: Any) -> None:
        if isinstance(handler, ConversationHandler):
            for h in handler.entry_points:
                walk(h)
            for hs in handler.states.values():
                for h in hs:
                    walk(h)
            for h in handler.fallbacks:
                walk(h)
        elif isinstance(handler, CallbackQueryHandler):
            pattern = handler.pattern
            if pattern is None:
                found.add(("", False))
                return
            assert isinstance(pattern, re.Pattern), pattern
            source = pattern.pattern.removeprefix("^")
            literal = re.match(r"[^.^$*+?{}\[\]\\|()]*", source)
            assert literal is not None
            found.add((literal.group(), source == literal.group() + "$"))

    for group in app.handlers.values():
        for handler in group:
            walk(handler)
    return sorted(found)


def button_prefixes() -> list[str]:
    """The fixed heads of the callback data our buttons carry (``f"ap:rt:{...}"`` → ``ap:rt:``),
    read from the handlers' source: forged ids after them reach the code that parses ids."""
    found: set[str] = set()
    for path in (ROOT / "handlers").glob("*.py"):
        found |= set(re.findall(r'f"([a-z]+(?::[a-z]+)*:)\{', path.read_text(encoding="utf-8")))
    return sorted(found)


UNICODE_DIGITS = "²³¹٠١٢٣٤٥߀߁০১२३௧໑၁᠑０１"  # all "digits" to str.isdigit(), none ASCII
BAD_NUMBER = st.one_of(
    st.text(alphabet=UNICODE_DIGITS, min_size=1, max_size=6),
    st.integers(min_value=ID_MAX + 1, max_value=10**30).map(str),  # overflows the column
    st.integers(min_value=-(10**20), max_value=-1).map(str),
)
FIELD = st.one_of(
    BAD_NUMBER,
    st.just(""),
    st.integers(min_value=10**6, max_value=ID_MAX).map(str),  # well-formed, nothing has it
    st.sampled_from(["x", "a", "d", "delete", "keep", "fever", "other", "pfizer", "20261126"]),
    # anything else, as long as it is no valid token (a bare "en" would rightly change the
    # language): colons give extra fields
    st.text(max_size=10).filter(lambda s: re.fullmatch(r"[A-Za-z0-9_]*", s) is None),
)
SUFFIX = st.tuples(BAD_NUMBER | FIELD, st.lists(FIELD, max_size=3)).map(
    lambda pair: ":".join([pair[0], *pair[1]])
)


def _forged(heads: list[tuple[str, bool]]) -> st.SearchStrategy[str]:
    def build(pair: tuple[tuple[str, bool], str]) -> str:
        (literal, exact), suffix = pair
        if exact:  # "pf:edit" itself is a real button: only its forged neighbours
            suffix = ":" + suffix
        return (literal + suffix).encode()[:64].decode(errors="ignore")  # Telegram's limit

    data = st.tuples(st.sampled_from(heads), SUFFIX).map(build)
    return data.filter(lambda d: d != "")


def _texts(calls: list[Any]) -> list[str]:
    return [
        str(c.params.get("text") or c.params.get("caption") or "")
        for c in calls
        if c.method in SENDS | {"editMessageText", "answerCallbackQuery"}
    ]


async def test_forged_callback_data_of_every_shape(bot: Harness, errors: Errors) -> None:
    world = await resident_with_bookings(bot)
    resident, stranger = world.resident, world.stranger
    # the resident is mid-way through /book, at the time windows (its buttons are live)
    await resident.send("/book")
    await resident.press("cúm mùa")  # the influenza booking was cancelled: bookable again
    await resident.press("Sa Pa")
    await resident.press(resident.buttons[0])
    keyboard = (resident.last_message or {}).get("reply_markup", {}).get("inline_keyboard", [])
    assert keyboard and keyboard[0][0]["callback_data"].startswith("bk:t:")
    patterns = callback_patterns(bot.app)
    prefixes = {literal for literal, _ in patterns}
    for expected in ("ap:", "wl:", "acct:", "lang:", "st:n:", "st:r:", "bk:ok:", "hb:consent:"):
        assert expected in prefixes, (expected, prefixes)
    heads = button_prefixes()
    assert "ap:rt:" in heads and "acct:delete:" in heads
    for head in heads:  # each reaches a handler of its own, not only the catch-all
        assert any(head.startswith(p) or p.startswith(head) for p, _ in patterns if p), head
    heads_and_patterns = sorted(set(patterns) | {(head, False) for head in heads})
    before = await dump(bot)
    private = (world.booked.code, world.cancelled.code, "Lò Thị Mai", "010185001234")
    error_text = t("vi", "error.internal")
    loop = asyncio.get_running_loop()

    def press(person: ChatDriver, data: str) -> list[Any]:
        return asyncio.run_coroutine_threadsafe(person.press_data(data), loop).result(30)

    @settings(
        max_examples=70,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(data=_forged(heads_and_patterns), who=st.sampled_from(["stranger", "resident"]))
    @example(data="ap:x:²", who="resident")  # the issue's examples, always tried
    @example(data="wl:a:²", who="resident")
    @example(data="acct:delete:²", who="stranger")
    @example(data="ap:x:99999999999999999999", who="stranger")
    def property_(data: str, who: str) -> None:
        person = stranger if who == "stranger" else resident
        seen = len(errors.records)
        calls = press(person, data)  # raises when the bot never answers
        assert any(c.method == "answerCallbackQuery" for c in calls), data
        assert sum(c.method in SENDS for c in calls) <= 1, data  # a toast or one short message
        texts = _texts(calls)
        assert error_text not in texts, data
        assert errors.records[seen:] == [], (data, [r.getMessage() for r in errors.records])
        if person is stranger:
            assert not any(p in text for p in private for text in texts), data

    await asyncio.to_thread(property_)
    after = await dump(bot)
    for table, rows in before.items():
        assert after[table] == rows, table


@pytest.mark.parametrize(
    "data",
    ["ap:x:²", "wl:a:²", "acct:delete:²", "ap:x:99999999999999999999", "ap:rt:{booked}:²",
     "ap:rt:{booked}:99999999999999999999", "bk:ok:1:²", "st:n:-1", "hb:ethnicity:999"],
)  # fmt: skip
async def test_forged_ids_from_the_issue_get_a_toast(
    bot: Harness, errors: Errors, data: str
) -> None:
    world = await resident_with_bookings(bot)
    before = await dump(bot)
    for person in (world.stranger, world.resident):
        calls = await person.press_data(data.format(booked=world.booked.id))
        assert [c.method for c in calls if c.method in SENDS] == []
        [answer] = [c for c in calls if c.method == "answerCallbackQuery"]
        assert answer.params.get("text")  # a word, not a silent spinner
        assert t("vi", "error.internal") not in _texts(calls)
    assert errors.records == []
    assert await dump(bot) == before


# ---------------------------------------------------------------- reschedule a dead booking


async def test_reschedule_of_a_cancelled_booking_is_refused_at_the_first_press(
    bot: Harness,
) -> None:
    world = await resident_with_bookings(bot)
    person = world.resident
    await person.send("/appointments")
    assert any(world.booked.code in text for text in person.texts)
    # cancelled elsewhere (another device, the commune office): the old message still has buttons
    async with bot.session() as session, session.begin():
        account = await hb.find_account(session, "telegram", str(person.user.id))
        assert account is not None
        await bk.cancel(session, world.booked.id, account)
    refusal = t("vi", "booking.not_active", status=t("vi", "status.cancelled"))
    for button in ("appointments.button_reschedule", "appointments.button_cancel"):
        calls = await person.press(t("vi", button))
        assert person.callback_answers[-1] == refusal
        assert "cancelled" not in refusal
        assert [c.method for c in calls if c.method in SENDS] == []  # no days, no confirmation


# ---------------------------------------------------------------- outcomes need a check-in


async def _staff(bot: Harness, site_code: str) -> ChatDriver:
    staff = bot.user(name="Lan")
    async with bot.session() as session, session.begin():
        account = await hb.ensure_account(session, "telegram", str(staff.user.id), "vi")
        await ci.grant_staff(session, account, site_code)
    return staff


async def _outcomes(bot: Harness, booking_id: int) -> tuple[str, str | None, int]:
    async with bot.session() as session:
        row = await session.get(Booking, booking_id)
        assert row is not None
        doses = len((await session.scalars(select(Vaccination))).all())
        return row.status, row.outcome_reason, doses


async def test_outcomes_need_a_check_in_on_the_sessions_day(bot: Harness) -> None:
    world = await resident_with_bookings(bot)
    booking = world.booked  # at the staff's own site, on a later day, never checked in
    staff = await _staff(bot, "LC-TYT-SAPA")
    not_in = t("vi", "outcome.not_checked_in", status=t("vi", "status.booked"))
    no_dose = t("vi", "vaccination.not_checked_in", status=t("vi", "status.booked"))
    for data, refusal in (
        (f"st:n:{booking.id}", not_in),
        (f"st:r:{booking.id}:fever", not_in),
        (f"st:r:{booking.id}:other", not_in),
        (f"st:d:{booking.id}", no_dose),
        (f"st:v:{booking.id}:astrazeneca", no_dose),
    ):
        await staff.press_data(data)
        assert staff.callback_answers[-1] == refusal, data
    assert await _outcomes(bot, booking.id) == ("booked", None, 0)

    # on the day, checked in; the next day the same buttons are refused
    async with bot.session() as session:
        slot = await session.get(Session, booking.session_id)
        assert slot is not None
        day = slot.date
    bot.clock.current = dt.datetime.combine(day, dt.time(1, 0), tzinfo=dt.UTC)  # 08:00 local
    await staff.send(f"/checkin {booking.code}")
    assert t("vi", "site.button.not_vaccinated") in staff.buttons
    bot.clock.advance(days=1)
    wrong_day = t("vi", "checkin.wrong_day", date=bot.services.translations.get("vi").date(day))
    for data in (f"st:n:{booking.id}", f"st:r:{booking.id}:fever", f"st:d:{booking.id}"):
        await staff.press_data(data)
        assert staff.callback_answers[-1] == wrong_day, data
    assert await _outcomes(bot, booking.id) == ("checked_in", None, 0)

    # and on the day itself it works
    bot.clock.advance(days=-1)
    await staff.press_data(f"st:r:{booking.id}:fever")
    status, reason, _ = await _outcomes(bot, booking.id)
    assert status == "not_vaccinated" and reason


# ---------------------------------------------------------------- a code no list has


async def test_forged_codes_at_a_question_keep_the_question(bot: Harness, errors: Errors) -> None:
    person = bot.user()
    await agree(person)
    await person.send("Lò Thị Mai")
    await person.send("15/3/1990")
    await person.press(t("vi", "gender.female"))
    await person.send("010190001234")
    await person.send(t("vi", "button.no_phone"))
    await person.press(t("vi", "button.skip"))
    assert t("vi", "ask.ethnicity") in person.last_text
    for data in ("hb:ethnicity:999", "hb:ethnicity:²", "hb:ethnicity:99999999999999999999"):
        await person.press_data(data)
        assert person.callback_answers[-1] == t("vi", "error.button.invalid"), data
        assert t("vi", "ask.ethnicity") in person.last_text
    assert errors.records == []
    await person.send("hmong")  # the earlier answers are all still there
    assert t("vi", "ask.occupation") in person.last_text
