"""Personal data stays out of logs (at any level) and out of group chats."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import event, func, select
from telegram.ext import MessageHandler, filters

from bot.app import engine_of
from bot.logs import describe, format_exception, mask, setup_logging
from bot.settings import load_settings
from bot.standin import BotApiStandIn, ChatDriver, group_chat, my_chat_member
from bot.standin.zalo import ZaloApiStandIn, ZaloChatDriver
from handlers.common import Turn, turn
from models import validators as v
from models.tables import Account, ConversationState, Draft, HealthBook
from tests.conftest import (
    TOKEN,
    FakeClock,
    Harness,
    MonotonicClock,
    ZaloHarness,
    make_zalo_settings,
    start_app,
    start_zalo_app,
    stop_app,
    stop_zalo_app,
)
from tests.flows import agree, channel_of, complete, t

# --- masking ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret",
    [
        "0912 345 678", "0912.345.678", "0912-345-678", "+84 912 345 678", "+84912345678",
        "84912345678", "0010 4567 8901", "001 045 678 901", "001045678901", "063 123 456",
        "HT3010123456789", "HT 3 01 01 234 56789", "ht3-010-123-456-789", "15/3/1950",
        "07/11/1958", "7-11-1958", "15.03.1950", "1950-03-15", "15031950",
        "ngày 15 tháng 3 năm 1950", "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
    ],
)  # fmt: skip
def test_mask_hides_every_spelling(secret: str) -> None:
    masked = mask(f"answer was {secret}, then more")
    digits = re.sub(r"\D", "", secret)
    assert secret not in masked
    assert digits[-6:] not in re.sub(r"\D", "", masked)  # not even the tail of the number
    assert masked.startswith("answer was ") and masked.endswith(", then more")


def test_mask_hides_a_short_zalo_token_in_an_api_url() -> None:
    line = "POST https://bot-api.zaloplatforms.com/bot12345689:abc-xyz/getUpdates failed"
    assert "abc-xyz" not in mask(line) and "12345689" not in mask(line)


def test_mask_leaves_ordinary_text() -> None:
    line = "update 42 took 0.125 s at 127.0.0.1:8081 (20,7 km), version 2026.9.0"
    assert mask(line) == line


def test_exceptions_keep_their_class_and_first_line_only() -> None:
    # the data comes from a variable, as in real code: from Python 3.13 a traceback quotes every
    # line of the raising statement, and a literal there would be quoted with it
    message = "cannot write the row of 0987 654 321\n[parameters: ('Lò Thị Páo', '1958-11-07')]"
    try:
        try:
            raise KeyError("missing")
        except KeyError as inner:
            raise RuntimeError(message) from inner
    except RuntimeError as exc:
        text = format_exception(exc)
        assert describe(exc) == "RuntimeError: cannot write the row of <phone>"
    assert "RuntimeError: cannot write the row of <phone>" in text
    assert "KeyError" in text and "test_privacy.py" in text  # the chain and the stack stay
    assert "Páo" not in text and "1958" not in text and "654" not in text


# --- logs at DEBUG ---------------------------------------------------------------------------


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Everything every logger writes, through ``setup_logging("DEBUG")`` as in production;
    the logging configuration is put back afterwards."""
    manager = logging.root.manager
    levels = {n: lg.level for n, lg in manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    setup_logging("DEBUG", stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, logger in list(manager.loggerDict.items()):
            if isinstance(logger, logging.Logger):
                logger.setLevel(levels.get(name, logging.NOTSET))


def test_a_report_chart_adds_no_library_lines_at_debug(log_output: io.StringIO) -> None:
    """matplotlib writes ~150 "findfont" lines per chart at DEBUG: held at INFO, as the other
    libraries are, so a Monday's charts do not drown the bot's own lines."""
    import datetime as dt

    from bot.i18n import Translations
    from models import report_files
    from models import reports as rp

    line = rp.AgencyLine(1, "SYT", "Sở Y tế", "department", None, 0, 10, rp.Figures(4, 2),
                         rp.Figures(4, 2))
    report = rp.Report("agency", "2026-W47", dt.datetime(2026, 11, 23, 17, tzinfo=dt.UTC),
                       root=line, lines=[line], total=line.total)
    assert report_files.chart(report, Translations().get("vi"))[:4] == b"\x89PNG"
    logged = log_output.getvalue()
    assert "findfont" not in logged and "matplotlib" not in logged, logged[:300]


@pytest.fixture
async def logged_bot(
    api: BotApiStandIn, db_url: str, log_output: io.StringIO
) -> AsyncIterator[Harness]:
    """The bot with logging set up first and SQL echo on (statements logged at INFO)."""
    settings = load_settings(
        None,
        telegram={"token": TOKEN, "base_url": api.base_url, "base_file_url": api.base_file_url,
                  "poll_timeout": 1},
        database={"url": db_url, "echo": True},
    )  # fmt: skip
    clock = FakeClock()
    app = await start_app(settings, clock)
    try:
        yield Harness(api, app, clock)
    finally:
        await stop_app(app)


PAO = {  # a Hmong woman of Sa Pa, answered with every spelling people use
    "full_name": "Lò Thị Páo",
    "date_of_birth": "7/11/1958",
    "id_number": "0101 5800 4321",  # Lào Cai (010), woman born in the 1900s (1), 1958
    "phone": "0987 654 321",
    "bhyt": "HT 3 01 01 234 56789",
    "address_line": "Thôn Phìn Hồ Thầu",
    "allergies": "dị ứng tôm cua",
    "chronic_conditions": "tiểu đường týp 2",
}
DINH = {
    "full_name": "Sùng A Dình",
    "date_of_birth": "02-01-1985",
    "id_number": "010 085 123 456",
    "phone": "+84 912 345 678",
    "address_line": "Bản Tả Van Giáy",
}
MY = {"full_name": "Giàng Thị Mỷ"}


def spellings(*people: dict[str, str]) -> set[str]:
    """Every way a value may be written: as typed, as stored, without accents, digits only."""
    out: set[str] = set()
    for person in people:
        for field, value in person.items():
            out |= {value, v.fold(value), value.upper(), v.fold(value).upper()}
            if field in ("full_name", "address_line", "allergies", "chronic_conditions"):
                words = value.split()
                out |= {" ".join(words[-2:]), v.fold(" ".join(words[-2:]))}  # "Thị Páo"
            digits = re.sub(r"\D", "", value)
            if len(digits) >= 8:
                out |= {digits, digits[-9:]}
            if field == "date_of_birth":
                d, m, y = (int(x) for x in re.split(r"\D", value))
                out |= {f"{y}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y}", f"{d}/{m}/{y}"}
            if field == "bhyt":
                out.add(re.sub(r"\W", "", value).upper())
    out |= {f'"{item.code}"' for item in v.screening_items()}  # the screening answers' JSON
    return {s for s in out if len(s) >= 6}


def on_statement(bot: Harness, prefix: str, action: Any) -> Any:
    """Run ``action(dbapi_connection, parameters)`` before each SQL statement starting with
    ``prefix``: what another writer, or a failing server, would do at that moment."""

    def before(conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(prefix.upper()):
            action(conn.connection, parameters)

    sync_engine = engine_of(bot.app).sync_engine
    event.listen(sync_engine, "before_cursor_execute", before)
    return lambda: event.remove(sync_engine, "before_cursor_execute", before)


async def fill_in(
    person: ChatDriver | ZaloChatDriver, data: dict[str, str], *, female: bool
) -> None:
    """The health book up to its review, every answer typed where typing is allowed."""
    await agree(person)
    await person.send(data["full_name"])
    await person.send(data["date_of_birth"])
    await person.press(t("vi", "gender.female" if female else "gender.male"))
    await person.send(data["id_number"])
    assert t("vi", "ask.phone", channel_of(person)) in person.last_text
    await person.send(data["phone"])
    assert t("vi", "ask.bhyt") in person.last_text
    if "bhyt" in data:
        await person.send(data["bhyt"])
    else:
        await person.press(t("vi", "button.skip"))
    await person.send("hmong")
    await person.press(t("vi", "occupation.farmer"))
    await person.press(t("vi", "priority.none"))
    await person.press("Lào Cai")
    await person.send("sa pa")
    assert t("vi", "ask.address_line") in person.last_text
    await person.send(data["address_line"])
    gender = "female" if female else "male"
    asked = [i for i in v.screening_items() if i.applies(gender=gender, age=None)]
    for n, item in enumerate(asked):  # "yes" to allergies and chronic illness: both are asked
        yes = n % 2 or item.code in ("other_allergies", "chronic_controlled")
        await person.press(t("vi", "button.yes" if yes else "button.no"))
    assert t("vi", "ask.allergies") in person.last_text
    await person.send(data.get("allergies", t("vi", "button.none")))
    await person.send(data.get("chronic_conditions", t("vi", "button.none")))
    assert t("vi", "review.title") in person.last_text


async def test_nothing_personal_is_logged_at_debug(
    logged_bot: Harness, log_output: io.StringIO
) -> None:
    bot = logged_bot
    pao = bot.user(name=PAO["full_name"])
    await fill_in(pao, PAO, female=True)
    await pao.press(t("vi", "button.save"))
    assert pao.last_text == t("vi", "saved.new")
    await pao.send("/mydata")
    await pao.send("/profile")

    # a race the ID check cannot see: Páo changes her ID to Dình's between his check and his
    # insert. The database refuses the second copy (IntegrityError, on every backend).
    dinh = bot.user(name=DINH["full_name"])
    await fill_in(dinh, DINH, female=False)
    theirs, mine = (re.sub(r"\D", "", p["id_number"]) for p in (PAO, DINH))

    def steal(dbapi: Any, _params: Any) -> None:
        cursor = dbapi.cursor()
        cursor.execute(f"UPDATE health_books SET id_number = '{mine}' WHERE id_number = '{theirs}'")
        cursor.close()

    undo = on_statement(bot, "INSERT INTO health_books", steal)
    await dinh.press(t("vi", "button.save"))
    undo()
    assert dinh.last_text == t("vi", "error.internal")
    await dinh.press(t("vi", "button.save"))  # nothing was lost: saving again works
    assert dinh.last_text == t("vi", "saved.new")

    # an unexpected failure whose message carries the statement's data after its first line
    my = bot.user(name=MY["full_name"])
    await agree(my)

    def fail(_dbapi: Any, params: Any) -> None:
        raise RuntimeError(f"server closed the connection unexpectedly\nwhile writing {params!r}")

    undo = on_statement(bot, "UPDATE drafts", fail)
    await my.send(MY["full_name"])
    undo()
    assert my.last_text == t("vi", "error.internal")
    await my.send(MY["full_name"])
    assert t("vi", "ask.date_of_birth") in my.last_text

    logged = log_output.getvalue()
    assert "IntegrityError" in logged and "RuntimeError" in logged  # both failures were logged
    assert "INSERT INTO health_books" in logged  # SQL echo was on, statements are there
    assert "parameters hidden" in logged  # … and their parameters are not
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ", logged, re.M)  # timestamps intact
    leaked = sorted(s for s in spellings(PAO, DINH, MY) if s.casefold() in logged.casefold())
    assert not leaked, leaked


async def test_nothing_personal_is_logged_at_debug_on_zalo(
    zapi: ZaloApiStandIn, db_url: str, log_output: io.StringIO
) -> None:
    """The same on Zalo: its events, inbox, typed answers, media links and /mydata file."""
    settings = make_zalo_settings(db_url, zapi)
    settings.database.echo = True
    clock = FakeClock()
    app, http = await start_zalo_app(settings, clock)
    try:
        bot = ZaloHarness(zapi, app, clock, http, MonotonicClock())
        pao = bot.user(name=PAO["full_name"])
        await fill_in(pao, PAO, female=True)
        await pao.press(t("vi", "button.save"))
        assert t("vi", "saved.new") in pao.last_text
        await pao.send("/mydata")
        await pao.send("/profile")
    finally:
        await stop_zalo_app(app, http)
    logged = log_output.getvalue()
    assert "INSERT INTO inbox" in logged  # SQL echo was on, the events went through the inbox
    leaked = sorted(s for s in spellings(PAO) if s.casefold() in logged.casefold())
    assert not leaked, leaked
    assert pao.user.id not in logged  # nor the person's Zalo id


# --- group chats -----------------------------------------------------------------------------

GROUP = -1001234567890


def in_group(bot: Harness, person: ChatDriver, chat_id: int = GROUP, **kw: Any) -> ChatDriver:
    """The same person writing in a group the bot is a member of."""
    return ChatDriver(bot.api, person.user, idle=bot.idle, chat=group_chat(chat_id, **kw))


async def counts(bot: Harness) -> tuple[int, ...]:
    async with bot.session() as session:
        tables = (Account, Draft, HealthBook, ConversationState)
        return tuple(
            [int(await session.scalar(select(func.count()).select_from(x)) or 0) for x in tables]
        )


def sent(calls: list) -> list[str]:
    return [c.method for c in calls if c.method != "getUpdates"]


async def test_group_gets_one_notice_and_nothing_personal(bot: Harness) -> None:
    person = bot.user()
    await complete(person)
    private_calls = len(person.calls)
    before = await counts(bot)
    group = in_group(bot, person, kind="supergroup")

    calls = await group.send("/mydata")
    assert sent(calls) == ["sendMessage"]
    notice = calls[0].params
    assert notice["text"] == t("vi", "group.private_only")
    button = notice["reply_markup"]["inline_keyboard"][0][0]
    assert button["url"] == f"https://t.me/{bot.api.bot_username}"
    assert button["text"] == t("vi", "group.button.private")

    # within ten minutes: silence, whatever is said
    for text in ("/start", "/certificate", "/mydata@" + bot.api.bot_username, "/delete",
                 "/book", "/profile", "/appointments", "/checkin", "0912 345 678", "xin chào"):
        assert sent(await group.send(text, expect_reply=False)) == [], text
    await group.send_photo(expect_reply=False)
    assert [m["text"] for m in group.messages] == [t("vi", "group.private_only")]
    assert not any(c.method in ("sendDocument", "sendPhoto") for c in bot.api.calls)
    assert len(person.calls) == private_calls  # nothing went to the private chat either
    assert await counts(bot) == before

    bot.clock.advance(minutes=11)
    assert sent(await group.send("/start@someotherbot", expect_reply=False)) == []
    calls = await group.send("/start@" + bot.api.bot_username.upper())
    assert sent(calls) == ["sendMessage"]
    assert calls[0].params["text"] == t("vi", "group.private_only")
    assert await counts(bot) == before


async def test_added_to_a_group_says_so_once_in_the_adders_language(bot: Harness) -> None:
    adder = bot.user(lang="en")
    group = in_group(bot, adder, -4242, title="Thôn Lếch Dao")
    assert group.chat is not None
    calls = await group.push(my_chat_member(adder.user, group.chat, bot.api.bot_user))
    assert sent(calls) == ["sendMessage"]
    assert calls[0].params["text"] == t("en", "group.private_only")
    assert sent(await group.send("/start", expect_reply=False)) == []  # already told
    bot.clock.advance(hours=1)
    removed = my_chat_member(adder.user, group.chat, bot.api.bot_user, old="member", new="left")
    assert sent(await group.push(removed, expect_reply=False)) == []


async def test_a_button_pressed_in_a_group_only_stops_its_spinner(bot: Harness) -> None:
    person = bot.user()
    await complete(person)
    group = in_group(bot, person)
    await group.send("/help")  # the notice, with its URL button
    calls = await group.press_data("acct:delete:yes", message=group.last_message)
    assert sent(calls) == ["answerCallbackQuery"]
    assert not calls[0].params.get("text")
    assert await counts(bot) == (1, 0, 1, 0)  # the book is still there


async def test_no_turn_can_send_into_a_group(bot: Harness) -> None:
    """Even a handler that wrongly runs ahead of the group guard sends nothing to a group."""

    @turn()
    async def leaky(turn_: Turn) -> None:
        turn_.notify(GROUP, "Lò Thị Páo, 0101 5800 4321")  # from a private chat too
        if turn_.text == "hello":
            turn_.say("Lò Thị Páo, 0101 5800 4321")
            turn_.send_document(b'{"full_name": "Lo Thi Pao"}', "mydata.json")

    bot.app.add_handler(MessageHandler(filters.ALL, leaky), group=-2)
    person = bot.user()
    group = in_group(bot, person)
    assert sent(await group.send("hello", expect_reply=False)) == []
    await person.send("/help")  # in private: the leaky turn may notify only people
    assert person.last_text is not None and t("vi", "help.text")[:20] in person.last_text
    assert not bot.api.chat_calls(GROUP)


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        ("invalid input for query argument $1: 'Lò Văn Páo' (expected str)",
         "DataError: invalid input for query argument $1: '…' (expected str)"),
        ('value "an" is not valid', 'DataError: value "…" is not valid'),
        ("no such key 'full_name' in «booking.not_found»",
         "DataError: no such key 'full_name' in «booking.not_found»"),
    ],
)
def test_quoted_values_in_an_error_line_are_hidden(message: str, shown: str) -> None:
    """asyncpg's DataError quotes the value it refused, which may be an answer."""

    class DataError(Exception):
        pass

    assert describe(DataError(message)) == shown
