"""End to end: /report for heads and admins, and the Monday report through the dispatcher.

Staff join their agencies, complete their health books through the chat, one books and
registers a relative; the clock moves to Monday 08:00; the weekly job stores the week's
figures and plans the messages once; each head receives the summary, the chart and the
workbook of their own agency (opened here, cells checked), the province's recipient the
province's. /report: a head's own agency and a sub-unit, codes out of reach and unknown codes
refused alike, forged presses; an admin's province and communes; a resident refused."""

from __future__ import annotations

import datetime as dt
import io
import logging
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select, update

from bot.app import build_services
from bot.standin import ChatDriver, group_chat
from bot.standin.zalo import ZaloChatDriver
from handlers import report as rh
from models import agencies as ag
from models import booking as bk
from models import healthbook as hb
from models import reports as rp
from models.tables import (
    Account,
    Agency,
    AgencyHead,
    Booking,
    Campaign,
    HealthBook,
    OutboxMessage,
    ReportWeek,
    Session,
    Site,
)
from tests.conftest import ChatHarness, Harness
from tests.flows import TR as TRANSLATIONS
from tests.flows import Person, resident, send_due, sent_file, t

WEDNESDAY = dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.UTC)  # the harness's start, 10:00 local
MONDAY_8 = dt.datetime(2026, 11, 30, 1, 0, tzinfo=dt.UTC)  # 08:00 in Lào Cai
WEEK = "2026-W48"
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
TR = TRANSLATIONS.get("vi")


class _JobContext:
    """What a job callback uses: the services."""

    def __init__(self, h: ChatHarness) -> None:
        self.bot = h.app.bot
        self.services = h.services


# ---------------------------------------------------------------- the world


async def add_agency(
    h: ChatHarness, code: str, name: str, kind: str, parent: str | None = None,
    expected: int = 0,
) -> int:  # fmt: skip
    """An agency (``healthbook agencies add``); its id."""
    async with h.session() as s, s.begin():
        return (await ag.add(s, code, name, kind, parent, expected, h.clock())).id


def external(person: Person) -> str:
    """A person's messenger id, as accounts store it."""
    return str(person.user.id)


async def account_of(h: ChatHarness, person: Person) -> Account:
    """A person's account (made now if they never wrote)."""
    async with h.session() as s, s.begin():
        return await hb.ensure_account(s, h.channel, external(person), "vi")


async def make_head(h: ChatHarness, person: Person, code: str) -> None:
    """``healthbook agencies set-head``."""
    account = await account_of(h, person)
    async with h.session() as s, s.begin():
        agency = await ag.by_code(s, code)
        assert agency is not None
        assert await ag.set_head(s, agency, await s.get(Account, account.id))


async def join(person: Person, code: str) -> None:
    """``/agency CODE`` in the chat."""
    await person.send(f"/agency {code}")
    assert code in (person.last_answer or "")


async def book_for(h: ChatHarness, person: Person) -> None:
    """An appointment for the person's own health book (the next session at Sa Pa)."""
    today = h.services.today()
    async with h.session() as s, s.begin():
        account = await hb.find_account(s, h.channel, external(person))
        assert account is not None
        book = await s.scalar(
            select(HealthBook).where(
                HealthBook.account_id == account.id, HealthBook.relation == "self"
            )
        )
        assert book is not None
        slot, campaign = (
            await s.execute(
                select(Session.id, Campaign.code)
                .join(Site, Site.id == Session.site_id)
                .join(Campaign, Campaign.id == Session.campaign_id)
                .where(Site.code == "LC-TYT-SAPA", Session.date > today)
                .order_by(Session.date, Session.id)
                .limit(1)
            )
        ).one()
        await bk.book(s, book.id, slot, campaign, None, today)


async def add_relative(h: ChatHarness, person: Person) -> None:
    """A relative's health book held by the person (a child: not staff)."""
    async with h.session() as s, s.begin():
        account = await hb.find_account(s, h.channel, external(person))
        assert account is not None
        own = await s.scalar(
            select(HealthBook).where(
                HealthBook.account_id == account.id, HealthBook.relation == "self"
            )
        )
        assert own is not None
        fields = {
            c.key: getattr(own, c.key)
            for c in HealthBook.__table__.columns
            if c.key not in ("id", "id_number", "id_kind", "created_at", "updated_at")
        }
        fields.update(relation="child", full_name="Lò Thị Mai", date_of_birth=dt.date(2015, 6, 1))
        s.add(HealthBook(**fields))


async def backdate_agencies(h: ChatHarness, when: dt.datetime) -> None:
    """Every agency created at ``when`` (a week before they were added is then theirs)."""
    async with h.session() as s, s.begin():
        await s.execute(update(Agency).values(created_at=when))


async def backdate(h: ChatHarness) -> None:
    """Books and bookings dated at the harness clock (they are dated by the wall clock)."""
    now = h.clock()
    async with h.session() as s, s.begin():
        await s.execute(update(HealthBook).values(created_at=now))
        await s.execute(update(Booking).values(created_at=now))


@dataclass
class World:
    """The agencies, their heads and staff."""

    head_a: Person  # heads SYT (with its sub-unit SYT-VP)
    head_b: Person  # heads SGD
    staff: list[Person]


async def world(h: ChatHarness) -> World:
    """SYT (expected 10) with SYT-VP (expected 4), SGD (expected 8); three staff with saved
    health books: one in SYT (booked, one relative), one in SYT-VP, one in SGD."""
    await add_agency(h, "SYT", "Sở Y tế", "department", expected=10)
    await add_agency(h, "SYT-VP", "Văn phòng Sở Y tế", "unit", "SYT", expected=4)
    await add_agency(h, "SGD", "Sở Giáo dục và Đào tạo", "department", expected=8)
    staff = [await resident(h, f"00000{n}") for n in (1, 2, 3)]
    for person, code in zip(staff, ("SYT", "SYT-VP", "SGD"), strict=True):
        await join(person, code)
    await book_for(h, staff[0])
    await add_relative(h, staff[0])
    await backdate(h)
    head_a, head_b = h.user(), h.user()
    await make_head(h, head_a, "SYT")
    await make_head(h, head_b, "SGD")
    return World(head_a, head_b, staff)


# ---------------------------------------------------------------- what people received


async def photos(person: Person) -> list[bytes]:
    """The pictures the bot sent to a person (on Zalo: fetched from the URL it gave)."""
    if isinstance(person, ZaloChatDriver):
        urls = [m["photo"] for m in person.messages if "photo" in m]
        found = []
        async with aiohttp.ClientSession() as http:
            for url in urls:
                async with http.get(url) as resp:
                    assert resp.status == 200
                    found.append(await resp.read())
        return found
    return [bytes(c.params["photo"].content) for c in person.calls if c.method == "sendPhoto"]


async def file_names(person: Person) -> list[str]:
    """The names of the files the bot sent (on Zalo: the download links' file names)."""
    if isinstance(person, ZaloChatDriver):
        names = []
        urls = [w for x in person.texts for w in x.split() if "/media/" in w]
        async with aiohttp.ClientSession() as http:
            for url in urls:
                async with http.get(url) as resp:
                    names.append(resp.headers.get("Content-Disposition", ""))
        return names
    return [c.params["document"].filename for c in person.calls if c.method == "sendDocument"]


def sheets(data: bytes) -> dict[str, list[tuple[Any, ...]]]:
    """A workbook's sheets as rows of values."""
    wb = load_workbook(io.BytesIO(data), read_only=True)
    return {ws.title: [tuple(r) for r in ws.iter_rows(values_only=True)] for ws in wb.worksheets}


def summary_counts(data: bytes) -> dict[str, Any]:
    """The summary sheet's figures: label → count."""
    first = next(iter(sheets(data).values()))
    return {r[0]: r[1] for r in first if r and len(r) > 1 and isinstance(r[0], str)}


def agency_rows(data: bytes) -> dict[str, dict[str, Any]]:
    """Every agency row of the level sheets: code → {header: value}."""
    code_header = t("vi", "report.file.col.code")
    rows: dict[str, dict[str, Any]] = {}
    for table in sheets(data).values():
        if not table or not table[0] or table[0][0] != code_header:
            continue
        header = table[0]
        for row in table[1:]:
            if row and row[0] is not None:  # the total row has no code
                rows[str(row[0])] = dict(zip(header, row, strict=False))
    return rows


def col(key: str) -> str:
    return t("vi", f"report.file.col.{key}")


async def run_job(h: ChatHarness) -> None:
    await rh.weekly_job(_JobContext(h))  # type: ignore[arg-type]


async def outbox_count(h: ChatHarness) -> int:
    async with h.session() as s:
        return int(
            await s.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.kind.in_(rh.PARTS))
            )
            or 0
        )


# ---------------------------------------------------------------- the weekly report


@pytest.mark.zalo_sqlite_only
async def test_monday_report_reaches_each_head_with_their_own_figures(
    chat_sample: ChatHarness,
) -> None:
    h = chat_sample
    w = await world(h)
    recipient = h.user()
    await account_of(h, recipient)  # the Department of Health wrote to the bot once
    h.services.settings.reports.recipients = [f"{h.channel}:{external(recipient)}"]

    h.clock.current = MONDAY_8 - dt.timedelta(minutes=1)
    await run_job(h)  # 07:59: W48's figures stored, nothing planned yet
    async with h.session() as s:
        stored = await s.get(ReportWeek, WEEK)
        assert stored is not None and stored.planned_at is None
    before = await outbox_count(h)
    assert before == 0
    h.clock.current = MONDAY_8
    await run_job(h)
    await run_job(h)  # twice: planned once
    assert await outbox_count(h) == before + 9  # 2 heads and 1 recipient, 3 parts each

    # a restart: a new process on the same database plans nothing again
    again = build_services(h.services.settings, clock=h.clock)
    try:
        assert await rh.run_weekly(again) is None
    finally:
        await again.sessions.kw["bind"].dispose()
    assert await outbox_count(h) == before + 9

    h.clock.advance(seconds=3)
    await send_due(h)

    a_text = "\n".join(w.head_a.texts)
    assert t("vi", "report.title.agency", name="Sở Y tế", code="SYT") in a_text
    monday, sunday = dt.date(2026, 11, 23), dt.date(2026, 11, 29)
    assert t("vi", "report.when.week", week=WEEK, first=TR.date(monday), last=TR.date(sunday)) in (
        a_text
    )
    assert "SGD" not in a_text  # never another agency's
    for png in await photos(w.head_a):
        assert png.startswith(b"\x89PNG")
    assert len(await photos(w.head_a)) == 1
    data = await sent_file(w.head_a)
    totals = summary_counts(data)
    assert totals[col("expected")] == 14
    assert totals[col("joined")] == 2  # SYT and its sub-unit
    assert totals[col("complete")] == 2
    assert totals[col("booked")] == 1
    assert totals[col("relatives")] == 1  # the child is not staff
    rows = agency_rows(data)
    assert set(rows) == {"SYT", "SYT-VP"}  # SYT's own members, its sub-unit; SGD is not in it
    assert rows["SYT"][col("joined")] == 1  # "Sở Y tế (trực tiếp)": level 1 adds up to the total
    assert rows["SYT"][col("expected")] == 10
    assert (rows["SYT"][col("complete")], rows["SYT"][col("booked")]) == (1, 1)
    assert rows["SYT-VP"][col("joined")] == 1
    assert rows["SYT-VP"][col("complete")] == 1
    assert rows["SYT-VP"][col("booked")] == 0

    b_text = "\n".join(w.head_b.texts)
    assert t("vi", "report.title.agency", name="Sở Giáo dục và Đào tạo", code="SGD") in b_text
    assert "SYT" not in b_text
    b_totals = summary_counts(await sent_file(w.head_b))
    assert (b_totals[col("joined")], b_totals[col("booked")]) == (1, 0)

    assert t("vi", "report.title.province") in "\n".join(recipient.texts)
    province = await sent_file(recipient)
    p_totals = summary_counts(province)
    assert p_totals[col("joined")] == 3
    assert p_totals[col("relatives")] == 1
    assert {"SYT", "SYT-VP", "SGD"} <= set(agency_rows(province))
    assert p_totals[col("registered")] == 4  # residents: three staff and the child
    for person in (w.head_a, w.head_b, recipient):
        assert any(WEEK in name for name in await file_names(person))
    for person in w.staff:  # staff receive nothing
        assert not any(t("vi", "report.title.province") in x for x in person.texts)


async def test_a_head_removed_before_monday_receives_nothing(chat_sample: ChatHarness) -> None:
    h = chat_sample
    await add_agency(h, "SYT", "Sở Y tế", "department", expected=3)
    head = h.user()
    await make_head(h, head, "SYT")
    h.clock.current = MONDAY_8
    await run_job(h)
    async with h.session() as s, s.begin():
        await s.execute(AgencyHead.__table__.delete())
    h.clock.advance(seconds=3)
    await send_due(h)
    assert head.texts == [] and await file_names(head) == []


# ---------------------------------------------------------------- /report in the chat


async def test_report_for_a_head(chat_sample: ChatHarness) -> None:
    h = chat_sample
    w = await world(h)
    head = w.head_a
    await head.send("/report")  # one agency: its report at once, live
    text = "\n".join(head.texts)
    assert t("vi", "report.title.agency", name="Sở Y tế", code="SYT") in text
    assert t("vi", "report.line.joined", count=2, expected=14, percent="14%", change="") in text
    totals = summary_counts(await sent_file(head))
    assert totals[col("joined")] == 2
    assert len(await photos(head)) == 1

    await head.send("/report syt-vp")  # a sub-unit, typed in lower case
    assert summary_counts(await sent_file(head))[col("joined")] == 1
    assert any("bao-cao-SYT-VP-" in name for name in await file_names(head))

    refusal_other = t("vi", "report.no_such_report", code="SGD", example="SYT")
    await head.send("/report SGD")  # another agency's code
    assert head.last_answer == refusal_other
    await head.send("/report NOPE")  # a code that does not exist: the same refusal
    assert head.last_answer == t("vi", "report.no_such_report", code="NOPE", example="SYT")
    await head.send("/report tinh")  # the province is the admins'
    assert head.last_answer == t("vi", "report.no_such_report", code="tinh", example="SYT")

    await head.send("/report SYT 2026-W60")  # written right, but no such week
    assert (head.last_answer or "").startswith(
        t("vi", "report.no_such_week", year=2026, number=60)
    )
    await head.send("/report SYT 2026-W49")  # not over yet
    assert head.last_answer == t(
        "vi", "report.week_not_over", week="2026-W49", last="2026-W47", example="SYT 2026-W47"
    )

    files_before = len(await file_names(head))
    sgd = await add_agency(h, "SGD-X", "Trường X", "school", "SGD")
    for data in (f"rp:a:{sgd}", "rp:p", "rp:c", "rp:a:1x", "rp:a:99999999999", "rp:a:1:2026-W99"):
        await head.press_data(data)  # forged presses
        if isinstance(head, ZaloChatDriver):
            # on Zalo there is no data to forge: typed, it reads as nothing offered
            continue
        assert head.callback_answers[-1] == t("vi", "report.stale"), data
    assert len(await file_names(head)) == files_before


async def test_report_for_an_admin_and_a_resident(chat_sample: ChatHarness) -> None:
    h = chat_sample
    await world(h)
    admin = h.user()
    account = await account_of(h, admin)
    h.services.settings.roles.admins = [f"{h.channel}:{account.external_id}"]
    await admin.send("/report")
    assert t("vi", "report.choice.province") in admin.buttons
    await admin.press(t("vi", "report.choice.province"))
    assert t("vi", "report.title.province") in "\n".join(admin.texts)
    province = summary_counts(await sent_file(admin))
    assert province[col("joined")] == 3
    await admin.send("/report xã")
    said = "\n".join(admin.texts)
    assert t("vi", "report.title.communes") in said
    assert "Phường Sa Pa: 4" in said  # the communes' top line
    await admin.send("/report SGD")  # any agency
    assert summary_counts(await sent_file(admin))[col("joined")] == 1

    nobody = h.user()
    refusal = (
        t("vi", "report.not_allowed")
        + "\n\n"
        + t("vi", "agency.your_id", id=f"{h.channel}:{external(nobody)}")
    )  # their id, as an admin types it for set-head
    await nobody.send("/report")
    assert nobody.last_answer == refusal
    await nobody.send("/report SYT")
    assert nobody.last_answer == refusal

    # a [reports] recipient (the Department of Health) gets the province's every week, and may
    # ask for it (and any agency's) again
    h.services.settings.reports.recipients = [f"{h.channel}:{external(nobody)}"]
    await nobody.send("/report tinh")
    assert t("vi", "report.title.province") in "\n".join(nobody.texts)
    assert summary_counts(await sent_file(nobody))[col("joined")] == 3


async def test_a_past_week_stays_the_same_after_a_member_moves(chat_sample: ChatHarness) -> None:
    h = chat_sample
    w = await world(h)
    h.clock.current = MONDAY_8
    await run_job(h)  # W48 stored
    head = w.head_a
    await head.send(f"/report SYT {WEEK}")
    week_before = await sent_file(head)
    assert agency_rows(week_before)["SYT-VP"][col("joined")] == 1

    await join(w.staff[1], "SGD")  # moves from SYT-VP to SGD in W49
    h.clock.advance(hours=1)
    await head.send(f"/report SYT {WEEK}")
    week_after = await sent_file(head)
    assert agency_rows(week_after) == agency_rows(week_before)
    assert summary_counts(week_after) == summary_counts(week_before)

    await head.send("/report SYT")  # live: moved away, and the change since W48 said
    live = await sent_file(head)
    assert agency_rows(live)["SYT-VP"][col("joined")] == 0
    text = "\n".join(head.texts)
    down = t("vi", "report.change.down", count="1")
    assert t("vi", "report.line.joined", count=1, expected=14, percent="7%", change=down) in text


async def test_report_mid_health_book_leaves_it_alone(chat_sample: ChatHarness) -> None:
    h = chat_sample
    await add_agency(h, "SYT", "Sở Y tế", "department", expected=3)
    head = h.user()
    await make_head(h, head, "SYT")
    await head.send("/start")
    await head.press(t("vi", "button.agree"))
    assert t("vi", "ask.full_name") in (head.last_text or "")
    await head.send("/report")
    assert t("vi", "report.title.agency", name="Sở Y tế", code="SYT") in "\n".join(head.texts)
    await head.send("Lò Văn Páo")  # the health book goes on where it was
    assert t("vi", "ask.date_of_birth") in (head.last_text or "")


async def test_late_planning_and_weekly_off(bot: Harness) -> None:
    h = bot
    await add_agency(h, "SYT", "Sở Y tế", "department", expected=3)
    head, recipient = h.user(), h.user()
    await make_head(h, head, "SYT")
    await account_of(h, recipient)
    h.services.settings.reports.recipients = [f"telegram:{external(recipient)}"]
    h.services.settings.reports.weekly = False
    h.clock.current = MONDAY_8 + dt.timedelta(days=1, hours=7)  # Tuesday 15:00: down on Monday
    await run_job(h)
    async with h.session() as s:
        stored = await s.get(ReportWeek, WEEK)
        assert stored is not None and stored.planned_at is None  # stored, not sent: off
    assert await outbox_count(h) == 0
    h.services.settings.reports.weekly = True
    await run_job(h)  # back on: sent late
    assert await outbox_count(h) == 6
    h.services.settings.reports.recipients = []  # no longer a recipient: dropped
    h.clock.advance(seconds=3)
    await send_due(h)
    assert recipient.texts == []
    assert t("vi", "report.title.agency", name="Sở Y tế", code="SYT") in "\n".join(head.texts)


def test_send_time_follows_the_settings(bot: Harness) -> None:
    services = bot.services
    assert rh.send_time(WEEK, services) == MONDAY_8
    services.settings.reports.day, services.settings.reports.time = "friday", "17:30"
    assert rh.send_time(WEEK, services) == dt.datetime(2026, 12, 4, 10, 30, tzinfo=dt.UTC)


def test_arguments_and_presses_are_read_strictly() -> None:
    assert rh.parse_args(["2026w48", "syt"]) == rh.Asked(None, "syt", WEEK, "syt")
    assert rh.parse_args(["Tỉnh"]).scope == "province"
    assert rh.parse_args(["xã", "2026-W47"]) == rh.Asked("communes", None, "2026-W47", "xã")
    for words in (["SYT", "SGD"], ["tinh", "xa"], ["2026-W47", "2026-W48"]):
        with pytest.raises(rh.BadArgs):
            rh.parse_args(words)
    with pytest.raises(rh.BadArgs):
        rh.parse_args(["2026-W60"])
    assert rh.parse_press(["a", "12"]) == (rh.Target("agency", 12), None)
    assert rh.parse_press(["p", WEEK]) == (rh.Target("province"), WEEK)
    for forged in (["a"], ["a", "-1"], ["a", "１２"], ["p", "2026w48"], ["c", WEEK, "x"], ["z"]):
        assert rh.parse_press(forged) is None, forged


async def test_report_choices_mid_health_book_keep_its_question(chat_sample: ChatHarness) -> None:
    h = chat_sample
    await add_agency(h, "SYT", "Sở Y tế", "department", expected=3)
    await add_agency(h, "SGD", "Sở Giáo dục và Đào tạo", "department", expected=5)
    head = h.user()
    await make_head(h, head, "SYT")
    await make_head(h, head, "SGD")
    await head.send("/start")
    await head.press(t("vi", "button.agree"))
    await head.send("Lò Văn Páo")
    await head.send("15/3/1990")
    assert t("vi", "ask.gender") in (head.last_text or "")
    await head.send("/report")  # two agencies: choose
    sgd = t("vi", "report.choice.agency", code="SGD", name="Sở Giáo dục và Đào tạo")
    assert sgd in head.buttons
    await head.press(sgd)
    assert t("vi", "report.title.agency", name="Sở Giáo dục và Đào tạo", code="SGD") in "\n".join(
        head.texts[-3:]
    )
    await head.send("1")  # the gender question's first choice, as it was numbered
    assert t("vi", "ask.id_number") in (head.last_text or "")


async def test_a_head_in_a_group_gets_no_report(bot: Harness) -> None:
    await add_agency(bot, "SYT", "Sở Y tế", "department", expected=3)
    head = bot.user()
    await make_head(bot, head, "SYT")
    group = ChatDriver(bot.api, head.user, idle=bot.idle, chat=group_chat(-1001234567890))
    calls = await group.send("/report")
    assert [c.params.get("text") for c in calls if c.method == "sendMessage"] == [
        t("vi", "group.private_only")
    ]
    await group.send("/report SYT", expect_reply=False)
    assert not any(c.method in ("sendDocument", "sendPhoto") for c in bot.api.calls)
    assert [m["text"] for m in group.messages] == [t("vi", "group.private_only")]


# ---------------------------------------------------------------- weeks asked for in the chat


async def test_an_older_week_is_never_stored_from_the_chat(chat_sample: ChatHarness) -> None:
    """A head's /report of an old week stores nothing and answers with the nearest stored
    week; the last complete week is stored on demand; a week stored late (the command line's
    --late) says so."""
    h = chat_sample
    w = await world(h)
    await backdate_agencies(h, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    head = w.head_a
    for week in ("2001-W01", "2026-W40"):
        await head.send(f"/report SYT {week}")
        assert head.last_answer == t(
            "vi", "report.no_week", week=week, example="SYT 2026-W47"
        )  # none stored: the last complete week, which can be
    async with h.session() as s:
        assert await s.scalar(select(func.count()).select_from(ReportWeek)) == 0
    await head.send("/report SYT 2026-W47")  # the last complete week: stored now
    assert t("vi", "report.title.agency", name="Sở Y tế", code="SYT") in "\n".join(head.texts)
    await head.send("/report SYT 2026-W40")
    assert head.last_answer == t("vi", "report.no_week", week="2026-W40", example="SYT 2026-W47")
    async with h.session() as s, s.begin():
        assert [w.week for w in await rp.stored_weeks(s)] == ["2026-W47"]
        await rp.take_snapshot(s, "2026-W45", h.services.tz, h.clock(), late=True)
    await head.send("/report SYT 2026-W45")
    said = "\n".join(head.texts[-3:])
    assert t("vi", "report.late", day=TR.date(h.services.today())) in said
    assert t("vi", "report.no_change_yet") in said


@pytest.mark.parametrize("week", ["9999-W52", "0001-W01"])
async def test_a_far_week_is_refused_politely(chat_sample: ChatHarness, week: str) -> None:
    h = chat_sample
    w = await world(h)
    await w.head_a.send(f"/report SYT {week}")
    assert (w.head_a.last_answer or "").startswith(t("vi", "report.bad_week", week="2026-W47"))
    assert rh.parse_press(["a", "1", week]) is None
    if not isinstance(w.head_a, ZaloChatDriver):
        async with h.session() as s:
            syt = await ag.by_code(s, "SYT")
        assert syt is not None
        await w.head_a.press_data(f"rp:a:{syt.id}:{week}")
        assert w.head_a.callback_answers[-1] == t("vi", "report.stale")


# ---------------------------------------------------------------- the Monday burst


@pytest.mark.zalo_sqlite_only
async def test_the_weekly_report_is_built_once_per_agency_and_drawn_once_per_language(
    chat_sample: ChatHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three heads of SYT (two read Vietnamese, one English), one of SGD, a province
    recipient: one build per report, one chart and one workbook per report and language;
    each reader gets their own language."""
    from models import report_files

    h = chat_sample
    w = await world(h)
    second, english = h.user(), h.user(lang="en")
    async with h.session() as s, s.begin():
        await hb.ensure_account(s, h.channel, external(english), "en")
    for person in (second, english):
        await make_head(h, person, "SYT")
    recipient = h.user()
    await account_of(h, recipient)
    h.services.settings.reports.recipients = [f"{h.channel}:{external(recipient)}"]
    built: list[Any] = []
    drawn: list[str] = []
    written: list[str] = []
    real_build, real_chart, real_book = rp.build, report_files.chart, report_files.workbook

    async def build(*args: Any, **kw: Any) -> rp.Report:
        built.append((kw["scope"], kw["agency"]))
        return await real_build(*args, **kw)

    def chart(report: rp.Report, tr: Any, tz: Any) -> bytes:
        drawn.append(tr.locale)
        return real_chart(report, tr, tz)

    def workbook(report: rp.Report, tr: Any, tz: Any) -> bytes:
        written.append(tr.locale)
        return real_book(report, tr, tz)

    monkeypatch.setattr(rp, "build", build)
    monkeypatch.setattr(report_files, "chart", chart)
    monkeypatch.setattr(report_files, "workbook", workbook)
    h.clock.current = MONDAY_8
    await run_job(h)
    h.clock.advance(seconds=3)
    await send_due(h)
    async with h.session() as s:
        ids = [(await ag.by_code(s, code)).id for code in ("SYT", "SGD")]  # type: ignore[union-attr]
    assert sorted(built, key=str) == sorted(
        [("agency", ids[0]), ("agency", ids[1]), ("province", None)], key=str
    )  # once each, whatever the number of readers and parts
    assert sorted(drawn) == sorted(written) == ["en", "vi", "vi", "vi"]
    assert t("en", "report.title.agency", name="Sở Y tế", code="SYT") in "\n".join(english.texts)
    for person in (w.head_a, second):
        assert t("vi", "report.title.agency", name="Sở Y tế", code="SYT") in "\n".join(
            person.texts
        )
        assert summary_counts(await sent_file(person))[col("joined")] == 2
    english_book = summary_counts(await sent_file(english))
    assert english_book[t("en", "report.file.col.joined")] == 2

    await w.head_a.send(f"/report SYT {WEEK}")  # the stored week, asked in the chat: cached
    assert len(built) == 3 and len(drawn) == 4
    assert summary_counts(await sent_file(w.head_a))[col("joined")] == 2


async def test_unreachable_recipients_are_counted_in_the_log(
    bot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = bot
    await add_agency(h, "SYT", "Sở Y tế", "department", expected=3)
    recipient = h.user()
    await account_of(h, recipient)
    h.services.settings.reports.recipients = [
        f"telegram:{external(recipient)}", "telegram:987654321", "zalo:1234567890123",
    ]  # fmt: skip
    h.clock.current = MONDAY_8
    with caplog.at_level(logging.INFO, logger="handlers.report"):
        await run_job(h)
        await run_job(h)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "2 of the [reports] recipients" in warnings[0]
    assert not any(x in warnings[0] for x in ("987654321", "1234567890123", external(recipient)))
    assert await outbox_count(h) == 3


# ---------------------------------------------------------------- the message and the workbook


def _stored_report(wards: list[rp.WardLine]) -> rp.Report:
    """A week's province report: SYT (14 expected, 2 joined, 2 complete; 1 joined the week
    before), and the communes."""
    root = rp.AgencyLine(1, "SYT", "Sở Y tế", "department", None, 0, 14, rp.Figures(2, 2),
                         rp.Figures(2, 2), rp.Figures(1, 1))  # fmt: skip
    return rp.Report(
        "province", WEEK, rp.week_end(WEEK, TZ), previous_week="2026-W47", lines=[root],
        total=rp.Figures(2, 2), previous_total=rp.Figures(1, 1), wards=wards,
    )  # fmt: skip


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_the_message_and_the_workbook_say_the_same_shares(lang: str) -> None:
    """Joined and complete as shares of the expected staff in both, the expected staff named
    in the message; the residents' change the same in both (a commune new this week counts
    from 0)."""
    from models.report_files import workbook

    tr = TRANSLATIONS.get(lang)
    report = _stored_report([
        rp.WardLine(3006, 15, registered=5, previous_registered=3),
        rp.WardLine(3007, 15, registered=2, previous_registered=0),
    ])  # fmt: skip
    said = rh.summary(tr, report, TZ)
    first = next(iter(sheets(workbook(report, tr, TZ)).values()))
    rows = {r[0]: r for r in first if r and isinstance(r[0], str)}
    for key, count in (("joined", 2), ("complete", 2)):
        share = rows[t(lang, f"report.file.col.{key}")][2]
        assert round(100 * share) == 14
        assert t(lang, f"report.line.{key}", count=count, expected=14, percent="14%",
                 change=t(lang, "report.change.up", count="1")) in said  # fmt: skip
    change = rows[t(lang, "report.file.col.registered")][3]
    assert change == 4
    up = t(lang, "report.change.up", count="4")
    assert t(lang, "report.line.residents", registered=7, vaccinated=0, change=up) in said


# ---------------------------------------------------------------- review: what readers see


def test_a_week_number_alone_means_the_latest_week_ended() -> None:
    """``W47``, ``w47``, ``tuần 47``, ``tuan 47``: the latest week 47 that has ended; a week
    number the year does not have is said so."""
    now = WEDNESDAY  # 2026-W48: W47 has ended, W48 not yet
    for words in (["W47"], ["w47"], ["tuần", "47"], ["tuan", "47"], ["SYT", "Tuần", "47"]):
        assert rh.parse_args(words, now, TZ).week == "2026-W47", words
    assert rh.parse_args(["W48"], now, TZ).week == "2025-W48"  # this year's is not over
    assert rh.parse_args(["SYT", "tuần", "47"], now, TZ).code == "SYT"
    with pytest.raises(rh.BadArgs) as err:
        rh.parse_args(["2026-W60"], now, TZ)
    assert err.value.key == "report.no_such_week"
    assert err.value.params == {"year": 2026, "number": 60}
    with pytest.raises(rh.BadArgs) as err:
        rh.parse_args(["W53"], now, TZ)  # 2025 has no week 53
    assert err.value.params == {"year": 2025, "number": 53}


@pytest.mark.parametrize(("lang", "big"), [("vi", "2.737"), ("en", "2,737")])
def test_counts_have_thousands_and_the_change_is_not_in_brackets(lang: str, big: str) -> None:
    tr = TRANSLATIONS.get(lang)
    root = rp.AgencyLine(1, "SYT", "Sở Y tế", "department", None, 0, 2737, rp.Figures(1200, 2),
                         rp.Figures(1200, 2), rp.Figures(1144, 3))  # fmt: skip
    report = rp.Report(
        "agency", WEEK, rp.week_end(WEEK, TZ), previous_week="2026-W47", root=root,
        lines=[root], total=rp.Figures(1200, 2), previous_total=rp.Figures(1144, 3),
    )  # fmt: skip
    said = rh.summary(tr, report, TZ)
    thousand = "1.200" if lang == "vi" else "1,200"
    up = t(lang, "report.change.up", count="56")
    assert t(lang, "report.line.joined", count=thousand, expected=big, percent="44%",
             change=up) in said  # fmt: skip
    assert t(lang, "report.change.down", count="1") in said
    assert "(+" not in said and "(-" not in said


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_the_message_names_figures_as_the_workbook_does(lang: str) -> None:
    said = rh.summary(TRANSLATIONS.get(lang), _stored_report([]), TZ).splitlines()
    for key in ("joined", "complete", "booked"):
        label = t(lang, f"report.file.col.{key}") + ":"
        assert any(line.startswith(label) for line in said), (key, said)


def test_the_communes_summary_has_no_double_blank_line() -> None:
    report = rp.Report(
        "communes", WEEK, rp.week_end(WEEK, TZ), wards=[rp.WardLine(3006, 15, registered=4)]
    )
    said = rh.summary(TR, report, TZ)
    assert "\n\n\n" not in said and said.count("\n\n") == 1


async def test_a_week_is_not_stored_before_the_agencies_exist(
    chat_sample: ChatHarness, caplog: pytest.LogCaptureFixture
) -> None:
    """No agency: the weekly job waits (said once in the log), /report of a week says to
    import them first, the communes' live report works; once imported, the week is stored."""
    h = chat_sample
    admin = h.user()
    account = await account_of(h, admin)
    h.services.settings.roles.admins = [f"{h.channel}:{account.external_id}"]
    with caplog.at_level(logging.INFO, logger="handlers.report"):
        for _ in range(3):
            await run_job(h)
    waiting = [r.getMessage() for r in caplog.records if "no agencies yet" in r.getMessage()]
    assert len(waiting) == 1 and "healthbook agencies import" in waiting[0]
    async with h.session() as s:
        assert await s.scalar(select(func.count()).select_from(ReportWeek)) == 0
    await admin.send("/report tinh 2026-W47")
    assert admin.last_answer == t("vi", "report.no_agencies")
    await admin.send("/report xa")  # live: counted
    assert t("vi", "report.title.communes") in "\n".join(admin.texts[-4:])
    async with h.session() as s:
        assert await s.scalar(select(func.count()).select_from(ReportWeek)) == 0

    await add_agency(h, "SYT", "Sở Y tế", "department", expected=3)
    await backdate_agencies(h, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    await run_job(h)
    async with h.session() as s:
        assert [w.week for w in await rp.stored_weeks(s)] == ["2026-W47"]


async def test_the_workbook_says_what_it_is_and_how_to_get_it_again(
    chat_sample: ChatHarness,
) -> None:
    """The Monday message says it is the weekly report; its workbook and /report's carry a
    caption naming the week and what to type (on Zalo, above the download link)."""
    h = chat_sample
    w = await world(h)
    h.clock.current = MONDAY_8
    await run_job(h)
    h.clock.advance(seconds=3)
    await send_due(h)
    said = w.head_a.texts
    assert said[0].startswith(t("vi", "report.weekly") + "\n\n")
    week_caption = t("vi", "report.caption.week", week=WEEK, example=f"SYT {WEEK}")
    assert any(x.startswith(week_caption) for x in said)
    if isinstance(w.head_a, ZaloChatDriver):
        assert any(x.startswith(week_caption) and "/media/" in x for x in said)

    await w.head_a.send("/report")  # live: named by its time, and how to see the latest
    caption = t(
        "vi", "report.caption.live", time="08:00", day=TR.date(dt.date(2026, 11, 30)),
        example="SYT",
    )  # fmt: skip
    assert any(x.startswith(caption) for x in w.head_a.texts)
    assert not any(x.startswith(t("vi", "report.weekly")) for x in w.head_a.texts[len(said):])
    await w.head_a.send("/report tuần 48")  # the week's number only: the latest week 48
    assert any(x.startswith(week_caption) for x in w.head_a.texts[-2:])
