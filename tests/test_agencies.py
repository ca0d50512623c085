"""Agencies and their staff: the CSV import (all or nothing, every problem by line), the
``healthbook agencies`` commands, and ``/agency`` on Telegram and Zalo (join, move, leave; a
head lists and removes members; forged and stale choices change nothing)."""

from __future__ import annotations

import asyncio
import csv as std_csv
import datetime as dt
import io
import unicodedata
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from bot.cli import app as cli_app
from bot.db import create_engine, session_factory, transaction, upgrade
from handlers import report
from handlers.agency import LEAVE_WORDS, PAGE
from models import agencies as ag
from models import healthbook as hb
from models.errors import DomainError
from models.tables import Account, Agency, AgencyHead, AgencyMember
from tests.conftest import ChatHarness, Harness
from tests.flows import Person, channel_of, resident, t, told

NOW = dt.datetime(2026, 11, 20, 3, 0, tzinfo=dt.UTC)
HEADER = "code,name,parent_code,kind,expected_staff\n"


def csv(*rows: str, header: str = HEADER) -> bytes:
    return (header + "".join(r + "\n" for r in rows)).encode()


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(db_url)
    await upgrade(engine)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


async def run(
    sessions: async_sessionmaker[AsyncSession], data: bytes, now: dt.datetime = NOW
) -> ag.ImportResult:
    async with transaction(sessions) as session:
        return await ag.import_csv(session, data, now)


async def tree(sessions: async_sessionmaker[AsyncSession]) -> dict[str, Agency]:
    async with sessions() as session:
        return {a.code: a for a in await session.scalars(select(Agency))}


def check_paths(agencies: dict[str, Agency]) -> None:
    """Every path is its parent's path and its own id."""
    by_id = {a.id: a for a in agencies.values()}
    for a in agencies.values():
        above = by_id[a.parent_id].path if a.parent_id else "/"
        assert a.path == f"{above}{a.id}/", a.code


# ---------------------------------------------------------------- the CSV


async def test_the_sample_imports_and_again_changes_nothing(
    db: async_sessionmaker[AsyncSession],
) -> None:
    data = ag.SAMPLE.read_bytes()
    rows = data.decode().count("\n") - 1
    assert 40 <= rows <= 80
    done = await run(db, data)
    assert (done.created, done.updated) == (rows, 0)
    agencies = await tree(db)
    check_paths(agencies)
    assert agencies["BVDK"].name == "Bệnh viện Đa khoa tỉnh Lào Cai"
    assert agencies["SVHTTDL"].name == "Sở Văn hóa, Thể thao và Du lịch"  # a quoted comma
    assert agencies["CDC-TN"].path.startswith(agencies["SYT"].path + f"{agencies['CDC'].id}/")
    assert agencies["UBND-P-NGHIALO"].kind == "commune"
    again = await run(db, data)
    assert (again.created, again.updated, again.unchanged) == (0, 0, rows)
    async with db() as session:
        listed = await ag.listing(session, agencies["SYT"])
    assert listed[0].agency.code == "SYT" and listed[0].depth == 0
    seen: set[int] = set()
    for item in listed:  # a parent comes before its sub-units
        assert item.agency.parent_id in seen or item.agency.code == "SYT"
        seen.add(item.agency.id)
    assert {i.agency.code for i in listed if i.depth == 2} >= {"BVDK-NOI", "CDC-XN"}


async def test_bom_and_semicolons_and_an_update(db: async_sessionmaker[AsyncSession]) -> None:
    first = "\ufeffcode;name;parent_code;kind;expected_staff\nSYT;Sở Y tế;;department;30\n"
    done = await run(db, first.encode())
    assert done.created == 1
    second = csv("syt,Sở Y tế tỉnh Lào Cai,,department,31", "BV,Bệnh viện,SYT,hospital,")
    done = await run(db, second)
    assert (done.created, done.updated) == (1, 1)
    agencies = await tree(db)
    assert agencies["SYT"].name == "Sở Y tế tỉnh Lào Cai" and agencies["SYT"].expected_staff == 31
    assert agencies["BV"].expected_staff == 0
    check_paths(agencies)


async def test_moving_a_parent_repaths_its_subtree(db: async_sessionmaker[AsyncSession]) -> None:
    await run(db, ag.SAMPLE.read_bytes())
    before = await tree(db)
    done = await run(db, csv("CDC,CDC Lào Cai,UBND-TINH,unit,41"))
    assert (done.created, done.updated, done.repathed) == (0, 1, 2)
    after = await tree(db)
    check_paths(after)
    top, cdc = after["UBND-TINH"], after["CDC"]
    assert cdc.parent_id == top.id and cdc.path == f"{top.path}{cdc.id}/"
    for code in ("CDC-TN", "CDC-XN"):
        assert after[code].path == f"{cdc.path}{after[code].id}/"
        assert after[code].path != before[code].path
    assert after["BVDK-NOI"].path == before["BVDK-NOI"].path  # elsewhere: untouched


async def test_a_large_file_is_written_in_a_few_statements(db_url: str) -> None:
    """1,000 agencies: one read, one insert, one update (not a statement per row); moving a
    parent rewrites its 99 sub-units in the same few statements."""
    engine = create_engine(db_url)
    await upgrade(engine)
    statements: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    sessions = session_factory(engine)
    try:
        rows = []
        for i in range(10):
            rows.append(f"T{i},Top {i},,department,10")
            rows += [f"T{i}-U{j},Unit {j},T{i},unit,5" for j in range(99)]
        done = await run(sessions, csv(*rows))
        assert done.created == 1000
        writes = [s for s in statements if not s.lstrip().upper().startswith(("SELECT", "SAVE"))]
        assert len(statements) <= 12, statements
        assert len(writes) <= 6, writes
        statements.clear()
        done = await run(sessions, csv("T1,Top 1,T0,department,10"))
        assert (done.updated, done.repathed) == (1, 99)
        assert len(statements) <= 6, statements
        agencies = await tree(sessions)
        check_paths(agencies)
        assert agencies["T1-U5"].path.startswith(agencies["T0"].path)
    finally:
        await engine.dispose()


BASE = csv("TOP,Top,,department,1", "MID,Mid,TOP,unit,1", "LOW,Low,MID,unit,1")
DEEP = HEADER + "".join(f"D{i},Level {i},{f'D{i - 1}' if i else ''},unit,1\n" for i in range(150))
BAD = {
    "missing column": (
        b"code,name,kind,expected_staff\nA,A,unit,1\n",
        1,
        "missing column parent_code",
    ),
    "duplicate": (csv("A,A,,unit,1", "B,B,,unit,1", "a,A again,,unit,1"), 4, "already on line 2"),
    "unknown parent": (csv("A,A,,unit,1", "B,B,NOPE,unit,1"), 3, "unknown parent NOPE"),
    "cycle": (csv("A,A,B,unit,1", "B,B,A,unit,1"), 2, "a cycle of parents: A → B → A"),
    "cycle through the database": (csv("TOP,Top,LOW,department,1"), 2, "a cycle of parents"),
    "own parent": (csv("A,A,A,unit,1"), 2, "cannot be its own parent"),
    "kind": (csv("A,A,,ministry,1"), 2, "unknown kind 'ministry'"),
    "negative": (csv("A,A,,unit,-3"), 2, "not a whole number"),
    "fraction": (csv("A,A,,unit,12.5"), 2, "not a whole number"),
    "empty code": (csv(",A,,unit,1"), 2, "the code is empty"),
    "bad code": (csv("SỞ Y TẾ,A,,unit,1"), 2, "is not valid"),
    "long code": (csv("A" * 33 + ",A,,unit,1"), 2, "longer than 32"),
    "empty name": (csv("A,,,unit,1"), 2, "the name is empty"),
    "encoding": (
        HEADER.encode() + "A,Sở Y tế,,unit,1\n".encode() + "B,Tài chính,,unit,1\n".encode("cp1258"),
        3,
        '"CSV UTF-8',
    ),
    # ids from 4: D124's path is 399 characters, D125's (line 127) would be 403
    "too deep": (DEEP.encode(), 127, "too deep"),
    # characters no name holds: PostgreSQL refuses NUL, a terminal runs ESC, XML has no U+FFFF
    "NUL": (csv("A,Sở\x00Y tế,,unit,1"), 2, "control or invisible character (U+0000, character 3)"),
    "escape": (csv("A,Sở \x1b[2J\x1b[31mY tế,,unit,1"), 2, "(U+001B, character 4)"),
    "bell": (csv("A,Sở\x07,,unit,1"), 2, "U+0007"),
    "U+FFFF": (csv("A,Tổ \uffff,,unit,1"), 2, "U+FFFF"),
    "U+FFFE": (csv("A,Tổ\ufffe,,unit,1"), 2, "U+FFFE"),
    "unassigned": (csv("A,Tổ\U000e0080,,unit,1"), 2, "U+E0080"),
    "private use": (csv("A,Tổ\ue000,,unit,1"), 2, "U+E000"),
    "right-to-left override": (csv("A,Tổ\u202eabc,,unit,1"), 2, "U+202E"),
    "C1 control": (csv("A,Tổ\x9b31m,,unit,1"), 2, "U+009B"),
    # codes /agency or /report read as something else
    "leave word": (csv("LEAVE,Ban Rời,,unit,1"), 2, "the code LEAVE is a word of /agency"),
    "roi": (csv("roi,Ban,,unit,1"), 2, "the code ROI is a word"),
    "thoat": (csv("Thoat,Ban,,unit,1"), 2, "the code THOAT is a word"),
    "province word": (csv("TINH,Tỉnh,,unit,1"), 2, "the code TINH is a word"),
    "commune word": (csv("xa,Xã,,unit,1"), 2, "the code XA is a word"),
    "province": (csv("PROVINCE,Tỉnh,,unit,1"), 2, "the code PROVINCE is a word"),
    "communes": (csv("COMMUNES,Xã,,unit,1"), 2, "the code COMMUNES is a word"),
    "week": (csv("2024-WHO,WHO,,unit,1"), 2, "the code 2024-WHO reads as a week"),
    "week without a dash": (csv("2026w48,Tuần,,unit,1"), 2, "reads as a week"),
    "formula": (csv("-A1,Ban,,unit,1"), 2, "must begin with a letter or a digit"),
    # a CSV UTF-8 file opened in Excel as ANSI (Windows-1252 or -1258) and saved again
    "double-encoded": (
        csv("A,Sở Y tế,,unit,1", "B,Sá»Ÿ Y táº¿,,unit,1"),
        3,
        'the name looks garbled ("á»Ÿ" is "ở" read in the wrong encoding): in Excel use '
        '"Save as" "CSV UTF-8',
    ),
    "double-encoded as 1258": (csv("A,Bệnh viện Ä\x90a khoa,,unit,1"), 2, '"Đ" read in the wrong'),
    "double-encoded capital": (csv("A,TRÆ¯á»œNG,,unit,1"), 2, "looks garbled"),
    "double-encoded á": (csv("A,Chợ CÃ¡,,unit,1"), 2, '"Ã¡" is "á"'),
}


@pytest.mark.parametrize("case", list(BAD))
async def test_a_bad_file_is_refused_with_its_line_and_nothing_is_written(
    db: async_sessionmaker[AsyncSession], case: str
) -> None:
    await run(db, BASE)
    before = await tree(db)
    data, line, reason = BAD[case]
    with pytest.raises(ag.CsvError) as err:
        await run(db, data + (b"" if case in ("encoding", "too deep") else b"NEW,New,,unit,1\n"))
    found = [p for p in err.value.problems if p.line == line]
    assert found and reason in found[0].reason, err.value.problems
    assert err.value.problems[0].line == line
    after = await tree(db)
    assert sorted(after) == sorted(before)
    assert {c: (a.name, a.parent_id, a.path) for c, a in after.items()} == {
        c: (a.name, a.parent_id, a.path) for c, a in before.items()
    }


async def test_every_problem_is_listed(db: async_sessionmaker[AsyncSession]) -> None:
    data = csv("A,A,,unit,x", "B,,,school,1", "C,C,ZZ,unit,1", "A,A,,unit,1")
    with pytest.raises(ag.CsvError) as err:
        await run(db, data)
    assert [p.line for p in err.value.problems] == [2, 3, 4, 5]
    assert str(err.value.problems[0]).startswith("line 2: expected_staff 'x'")
    with pytest.raises(ag.CsvError) as err:
        await run(db, csv("A,A,,unit,1", "C,C,ZZ,unit,1"))
    assert [str(p) for p in err.value.problems] == [
        "line 3: unknown parent ZZ: neither in the file nor already imported"
    ]
    assert await tree(db) == {}


# ---------------------------------------------------------------- memberships


async def account(session: AsyncSession, external_id: str) -> Account:
    return await hb.ensure_account(session, "telegram", external_id, "vi")


async def test_join_move_leave_and_remove(db: async_sessionmaker[AsyncSession]) -> None:
    await run(db, ag.SAMPLE.read_bytes())
    async with transaction(db) as s:
        staff, head, other = [await account(s, x) for x in ("1", "2", "3")]
        syt, cdc, stc = [await ag.by_code(s, c) for c in ("SYT", "CDC", "stc")]
        assert syt and cdc and stc
        assert (await ag.join(s, staff, syt, NOW)).status == "joined"
        assert (await ag.join(s, staff, syt, NOW)).status == "already"
        later = NOW + dt.timedelta(days=3)
        moved = await ag.join(s, staff, cdc, later)
        assert moved.status == "moved" and moved.previous is not None
        assert moved.previous.code == "SYT"
        rows = list(await s.scalars(select(AgencyMember).order_by(AgencyMember.id)))
        assert [(r.agency_id, r.left_reason) for r in rows] == [(syt.id, "moved"), (cdc.id, None)]
        assert rows[0].left_at is not None and rows[0].left_at.replace(tzinfo=dt.UTC) == later
        await ag.set_head(s, syt, head)  # SYT is above CDC: its head reads, does not remove
        await ag.set_head(s, stc, other)  # another agency's head may not either
        member = rows[1].id
        with pytest.raises(DomainError):
            await ag.remove_member(s, other, cdc, member, later)
        with pytest.raises(DomainError):  # the member is not in SYT itself
            await ag.remove_member(s, head, syt, member, later)
        with pytest.raises(DomainError):  # a head of the agency above
            await ag.remove_member(s, head, cdc, member, later)
        assert await ag.may_read(s, head, cdc) and not await ag.heads(s, head, cdc)
        await ag.set_head(s, cdc, head)
        done = await ag.remove_member(s, head, cdc, member, later)
        assert done.account_id == staff.id
        row = await s.get(AgencyMember, member)
        assert row is not None and (row.left_reason, row.removed_by) == ("removed", head.id)
        with pytest.raises(DomainError):  # twice: no longer in it
            await ag.remove_member(s, head, cdc, member, later)
        assert await ag.leave(s, staff, later) is None
        await ag.join(s, staff, stc, later)
        left = await ag.leave(s, staff, later)
        assert left is not None and left.code == "STC"


async def test_two_joins_at_once_leave_one_open_membership(
    db: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second of two simultaneous joins read "no membership" before the first was
    written: the unique index refuses its row, and it reads again (a move)."""
    await run(db, BASE)
    async with transaction(db) as s:
        person = await account(s, "1")
        top, mid = await ag.by_code(s, "TOP"), await ag.by_code(s, "MID")
        assert top and mid
        await ag.join(s, person, top, NOW)
    real = ag.membership
    calls = 0

    async def stale_once(session: AsyncSession, account_id: int) -> AgencyMember | None:
        nonlocal calls
        calls += 1
        return None if calls == 1 else await real(session, account_id)

    monkeypatch.setattr(ag, "membership", stale_once)
    async with transaction(db) as s:
        person = await account(s, "1")
        mid = await ag.by_code(s, "MID")
        assert mid
        done = await ag.join(s, person, mid, NOW)
    assert done.status == "moved" and calls == 2
    async with db() as s:
        open_rows = await s.scalar(select(func.count()).where(AgencyMember.left_at.is_(None)))
    assert open_rows == 1


# ---------------------------------------------------------------- the command line


def cli(tmp_path: Path) -> Callable[..., tuple[int, str, str]]:
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "cli.db"}"\n')
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(cli_app, [*args, "--config", str(config)])
        assert result.exception is None or isinstance(result.exception, SystemExit), result
        return result.exit_code, result.stdout, result.stderr

    return invoke


def test_cli_import_list_add(tmp_path: Path) -> None:
    run_cli = cli(tmp_path)
    code, out, _ = run_cli("agencies", "list")
    assert code == 0 and "no agencies" in out
    code, out, err = run_cli("agencies", "import", "--sample")
    assert code == 0, err
    assert out.startswith("66 created, 0 updated")
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "NEW1,Mới,,unit,1\nNEW2,Mới 2,NOPE,unit,1\nNEW1,x,,unit,1\n")
    code, out, err = run_cli("agencies", "import", str(bad))
    assert code == 1
    assert err.splitlines() == [
        "error: bad.csv: nothing was imported (2 problems)",
        "  line 3: unknown parent NOPE: neither in the file nor already imported",
        "  line 4: the code NEW1 is already on line 2",
    ]
    code, out, _ = run_cli("agencies", "list", "--under", "cdc")
    assert out.splitlines() == [
        "CDC  Trung tâm Kiểm soát bệnh tật tỉnh Lào Cai  0/40",
        "  CDC-TN  Khoa Phòng chống bệnh truyền nhiễm  0/22",
        "  CDC-XN  Khoa Xét nghiệm - Chẩn đoán hình ảnh  0/17",
    ]
    code, out, err = run_cli(
        "agencies", "add", "--code", "cdc-tc", "--name", "Khoa Tiêm chủng", "--kind", "unit",
        "--parent", "CDC", "--expected", "12",
    )  # fmt: skip
    assert code == 0, err
    assert "CDC-TC" in out
    _, out, _ = run_cli("agencies", "list", "--under", "CDC")
    assert "  CDC-TC  Khoa Tiêm chủng  0/12" in out.splitlines()
    code, _, err = run_cli("agencies", "add", "--code", "CDC-TC", "--name", "x", "--kind", "unit")
    assert code == 1 and "CDC-TC" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("agencies", "add", "--code", "X", "--name", "x", "--kind", "sở")
    assert code == 2 and "--kind" in err
    code, _, err = run_cli("agencies", "add", "--code", "X", "--name", "x", "--kind", "unit",
                           "--parent", "NOPE")  # fmt: skip
    assert code == 1 and "NOPE" in err
    code, _, err = run_cli("agencies", "import", "--sample", str(bad))
    assert code == 2
    code, _, err = run_cli("agencies", "list", "--under", "NOPE")
    assert code == 1 and "NOPE" in err


def test_cli_set_head(tmp_path: Path) -> None:
    """set-head works for an id that never wrote to the bot (or only sent what makes no
    account, such as /agency or /report): the account is made, as admin add makes it."""
    run_cli = cli(tmp_path)
    assert run_cli("agencies", "import", "--sample")[0] == 0

    async def accounts() -> list[tuple[str, str]]:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
        try:
            async with session_factory(engine)() as s:
                rows = await s.execute(select(Account.channel, Account.external_id))
                return [tuple(r) for r in rows.all()]
        finally:
            await engine.dispose()

    code, out, _ = run_cli("agencies", "set-head", "SYT", "--zalo-id", "abc123", "--remove")
    assert (code, out.strip()) == (0, "zalo user abc123 was not a head of SYT")
    assert asyncio.run(accounts()) == []  # taking a role away makes no account
    code, out, err = run_cli("agencies", "set-head", "syt", "--zalo-id", "abc123")
    assert code == 0, err
    assert out.strip() == (
        "zalo user abc123 is now a head of SYT (a new account: they have not used the bot "
        "yet; /agency shows them their staff)"
    )
    assert asyncio.run(accounts()) == [("zalo", "abc123")]
    code, out, _ = run_cli("agencies", "set-head", "BVDK", "--zalo-id", "abc123")
    assert out.strip() == "zalo user abc123 is now a head of BVDK"  # the account is there now
    code, out, _ = run_cli("agencies", "set-head", "SYT", "--zalo-id", "abc123")
    assert "already" in out
    code, _, err = run_cli("agencies", "set-head", "NOPE", "--zalo-id", "abc123")
    assert code == 1 and "NOPE" in err
    code, _, _ = run_cli("agencies", "set-head", "SYT")
    assert code == 2
    code, _, err = run_cli("agencies", "set-head", "SYT", "--telegram-id", "12ab")
    assert code == 2 and "--telegram-id" in err
    code, out, _ = run_cli("agencies", "set-head", "SYT", "--zalo-id", "abc123", "--remove")
    assert code == 0 and "no longer a head of SYT" in out
    assert asyncio.run(accounts()) == [("zalo", "abc123")]


# ---------------------------------------------------------------- /agency in the chat


async def load_sample(h: ChatHarness) -> None:
    async with h.session() as session, session.begin():
        await ag.import_csv(session, ag.SAMPLE.read_bytes(), h.clock())


async def account_id(h: ChatHarness, person: Person) -> int:
    async with h.session() as session:
        found = await hb.find_account(session, channel_of(person), str(person.user.id))
        assert found is not None
        return found.id


async def memberships(h: ChatHarness) -> list[tuple[int, str, str | None, int | None]]:
    async with h.session() as session:
        rows = await session.execute(
            select(AgencyMember.account_id, Agency.code, AgencyMember.left_reason,
                   AgencyMember.removed_by)
            .join(Agency, Agency.id == AgencyMember.agency_id)
            .order_by(AgencyMember.id)
        )  # fmt: skip
        return [tuple(r) for r in rows.all()]


async def make_head(h: ChatHarness, person: Person, code: str) -> None:
    async with h.session() as session, session.begin():
        agency = await ag.by_code(session, code)
        found = await hb.find_account(session, channel_of(person), str(person.user.id))
        assert agency is not None and found is not None
        session.add(AgencyHead(agency_id=agency.id, account_id=found.id))


def your_id(person: Person) -> str:
    """The lines /agency adds for someone who heads nothing: their id, as an admin types it."""
    return t("vi", "agency.your_id", id=f"{channel_of(person)}:{person.user.id}")


async def test_staff_join_move_and_leave(chat_bot: ChatHarness) -> None:
    await load_sample(chat_bot)
    staff = chat_bot.user()
    await staff.send("/agency")
    assert staff.last_text == t("vi", "agency.how_to_join", example="VIDU") + "\n\n" + your_id(
        staff
    )
    for wrong in ("/agency NOPE", "/agency SYT CDC", "/agency " + "A" * 60):
        await staff.send(wrong)
        assert staff.last_text == t("vi", "agency.unknown", example="VIDU"), wrong
    await staff.send("/agency syt")
    expected = "\n\n".join(
        [
            t("vi", "agency.joined", name="Sở Y tế", code="SYT"),
            t("vi", "agency.meaning"),
            t("vi", "agency.no_book"),
        ]
    )
    assert staff.last_text == expected
    await staff.send("/agency SYT")
    assert staff.last_text == t("vi", "agency.already", name="Sở Y tế", code="SYT")
    chat_bot.clock.advance(days=2)
    moved_at = chat_bot.clock()
    await staff.send("/agency CDC")
    assert staff.last_text is not None
    assert staff.last_text.startswith(
        t("vi", "agency.moved", old="Sở Y tế", name="Trung tâm Kiểm soát bệnh tật tỉnh Lào Cai",
          code="CDC")
    )  # fmt: skip
    me = await account_id(chat_bot, staff)
    assert await memberships(chat_bot) == [(me, "SYT", "moved", None), (me, "CDC", None, None)]
    async with chat_bot.session() as session:
        old = await session.scalar(select(AgencyMember).where(AgencyMember.left_at.is_not(None)))
        new = await session.scalar(select(AgencyMember).where(AgencyMember.left_at.is_(None)))
        assert old is not None and new is not None and old.left_at is not None
        assert old.left_at.replace(tzinfo=dt.UTC) == moved_at
        assert new.joined_at.replace(tzinfo=dt.UTC) == moved_at
    await staff.send("/agency")
    assert staff.last_text == t(
        "vi", "agency.yours", name="Trung tâm Kiểm soát bệnh tật tỉnh Lào Cai", code="CDC",
        date=moved_at.astimezone(chat_bot.services.tz).strftime("%d/%m/%Y"),
    ) + "\n\n" + your_id(staff)  # fmt: skip
    assert "/agency roi" in staff.last_text and "leave" not in staff.last_text
    await staff.send("/agency roi")
    assert staff.last_text == t(
        "vi", "agency.left", name="Trung tâm Kiểm soát bệnh tật tỉnh Lào Cai"
    )
    await staff.send("/agency leave")
    assert staff.last_text == t("vi", "agency.not_member", example="VIDU")
    assert [r[2] for r in await memberships(chat_bot)] == ["moved", "left"]


@pytest.mark.zalo_sqlite_only
async def test_a_head_lists_and_removes_a_member(chat_bot: ChatHarness) -> None:
    await load_sample(chat_bot)
    booked = await resident(chat_bot, "001234")  # a health book: their name shows
    await booked.send("/agency CDC")
    assert t("vi", "agency.no_book") not in (booked.last_text or "")
    bare = chat_bot.user()
    await bare.send("/agency cdc")
    head = chat_bot.user()
    await head.send("/agency SYT")
    await make_head(chat_bot, head, "CDC")
    await head.send("/agency")
    listed = head.last_answer or ""
    assert t("vi", "agency.head_title", name="Trung tâm Kiểm soát bệnh tật tỉnh Lào Cai",
             code="CDC", count=2, expected=40) in listed  # fmt: skip
    day = chat_bot.clock().astimezone(chat_bot.services.tz).strftime("%d/%m")
    paos = t("vi", "agency.member", name="Lò Văn Páo", date=day)
    nobody = t("vi", "agency.member_no_book", date=day)
    assert head.buttons == [paos, nobody]  # the list is the choices: no other numbers
    assert paos == f"Lò Văn Páo (từ {day})" and "chưa có sổ sức khỏe" in nobody
    # a member leaves; their old choice is refused and nothing changes
    await bare.send("/agency leave")
    before = await memberships(chat_bot)
    await head.press(nobody)
    assert t("vi", "agency.stale") in told(head)
    assert await memberships(chat_bot) == before
    await head.send("/agency")
    await head.press(paos)
    cdc_name = "Trung tâm Kiểm soát bệnh tật tỉnh Lào Cai"
    asked = t("vi", "agency.confirm_remove", who=paos, agency=cdc_name)
    assert asked in (head.last_text or "")
    assert await memberships(chat_bot) == before  # asked first
    await head.press(t("vi", "agency.button.confirm"))
    done = t("vi", "agency.removed", who=paos, agency=cdc_name)
    assert done in (head.last_text or "")
    head_id = await account_id(chat_bot, head)
    member_id = await account_id(chat_bot, booked)
    assert (member_id, "CDC", "removed", head_id) in await memberships(chat_bot)
    await head.send("/agency")
    assert t("vi", "agency.no_members", code="CDC") in (head.last_answer or "")


async def test_forged_removals_change_nothing(chat_bot: ChatHarness) -> None:
    await load_sample(chat_bot)
    staff, stranger, other_head = chat_bot.user(), chat_bot.user(), chat_bot.user()
    await staff.send("/agency CDC")
    await stranger.send("/agency CDC")
    await other_head.send("/agency STC")
    await make_head(chat_bot, other_head, "STC")
    async with chat_bot.session() as session:
        cdc = await ag.by_code(session, "CDC")
        row = await session.scalar(select(AgencyMember.id).order_by(AgencyMember.id))
    assert cdc is not None and row is not None
    before = await memberships(chat_bot)
    forged = [f"ag:ok:{cdc.id}:{row}", f"ag:rm:{cdc.id}:{row}", f"ag:pg:{cdc.id}:0",
              "ag:ok:abc:1", f"ag:ok:{cdc.id}", f"ag:ok:{cdc.id}:{row}:1",
              "ag:ok:99999999999999999999:1", f"ag:zz:{cdc.id}:{row}"]  # fmt: skip
    for person in (stranger, other_head):
        await person.send("/agency")
        for data in forged:
            await person.press_data(data)
            if chat_bot.channel == "telegram":
                assert person.callback_answers[-1] == t("vi", "agency.stale"), data
    # on Zalo a number typed without such a choice offered removes nobody either
    await stranger.send("1")
    assert await memberships(chat_bot) == before


async def test_a_long_list_comes_in_pages(chat_bot: ChatHarness) -> None:
    await load_sample(chat_bot)
    head = chat_bot.user()
    await head.send("/agency SGDDT")
    await make_head(chat_bot, head, "THPT-SO1-LC")
    async with chat_bot.session() as session, session.begin():
        school = await ag.by_code(session, "THPT-SO1-LC")
        assert school is not None
        for n in range(PAGE + 2):
            teacher = await hb.ensure_account(session, "telegram", str(900000 + n), "vi")
            await ag.join(session, teacher, school, chat_bot.clock())
    await head.send("/agency")
    first = head.last_text or ""
    assert t("vi", "agency.page", page=1, pages=2) in first
    today = chat_bot.clock().astimezone(chat_bot.services.tz).strftime("%d/%m")
    nobody = t("vi", "agency.member_no_book", date=today)
    assert head.buttons == [nobody] * PAGE + [t("vi", "agency.button.more")]
    await head.press(t("vi", "agency.button.more"))
    second = head.last_text or ""
    assert t("vi", "agency.page", page=2, pages=2) in second
    assert head.buttons == [nobody] * 2


# ---------------------------------------------------------------- names, codes and sizes

#: real names (beside the sample's): capitals, quotes, dashes, Ã and Ă beside marks
REAL_NAMES = [
    "TRƯỜNG THCS NGÃ BA",
    "Quán “NGÃ” ba",
    "CÔNG TY “LÊ–ĐÔNG”",
    "NGÃ’S",
    "ĂN UỐNG – Hợp tác xã Bắc Hà",
    "Trạm Y tế xã Tả Phìn",
    "Ủy ban nhân dân phường Cốc Lếu",
    "Bệnh viện Đa khoa khu vực Bắc Hà (Lào Cai)",
    "Trường Mầm non Hoa Ban – điểm trường Sín Chéng",
    "Chi cục Thú y, Trồng trọt & Bảo vệ thực vật",
    "Ban Quản lý dự án 1/5",
    "Công ty CP Apatit Việt Nam…",
]
ALPHABET = (
    "aàáảãạăằắẳẵặâầấẩẫậbcdđeèéẻẽẹêềếểễệghiìíỉĩịklmnoòóỏõọôồốổỗộơờớởỡợpqrstuùúủũụưừứửữựvxyỳýỷỹỵ"
)
ALPHABET += ALPHABET.upper() + "0123456789 ,.-()&/'\"“”‘’–—…"


def _misread(name: str, encoding: str) -> str:
    """``name``'s UTF-8 read as ``encoding`` the way Windows does (an undefined byte: the
    control character of that number), as Excel opens a CSV UTF-8 file as ANSI."""
    out = []
    for byte in name.encode():
        try:
            out.append(bytes([byte]).decode(encoding))
        except UnicodeDecodeError:
            out.append(chr(byte))
    return "".join(out)


def test_names_are_trimmed_collapsed_and_composed() -> None:
    assert ag.clean_name("  Sở  Y\ttế\u00a0 Lào\nCai ") == "Sở Y tế Lào Cai"
    assert ag.clean_name(unicodedata.normalize("NFD", "Sở Y tế")) == "Sở Y tế"
    with pytest.raises(ag.TextProblem) as err:
        ag.clean_name("Sở \x1b[31mY tế")
    assert err.value.key == "agency.bad_character" and err.value.params == {
        "char": "U+001B",
        "n": 4,
    }
    with pytest.raises(ag.TextProblem):
        ag.clean_name("Tổ\ud800")  # a lone surrogate (a command line's undecodable byte)
    assert ag.printable("Sở\x1b[2J\u202e") == "Sở\\u001b[2J\\u202e"


def test_real_names_are_not_taken_for_garbled_ones_and_misread_ones_are() -> None:
    sample = list(std_csv.reader(io.StringIO(ag.SAMPLE.read_text(encoding="utf-8-sig"))))[1:]
    names = [row[1] for row in sample] + REAL_NAMES
    for name in names:
        assert ag.garbled(name) is None, name
        assert ag.clean_name(name) == name
    for name in names:
        if name.isascii():
            continue
        for encoding in ("cp1252", "cp1258"):
            wrong = _misread(name, encoding)
            assert ag.garbled(wrong) is not None, (name, encoding, wrong)


@given(st.text(alphabet=ALPHABET, max_size=40))
@settings(max_examples=300, deadline=None)
def test_no_vietnamese_text_is_taken_for_a_garbled_one(name: str) -> None:
    assert ag.garbled(name) is None


def test_the_words_of_agency_and_report_are_no_codes() -> None:
    """/agency ROI leaves, /report TINH is the province: such a code could never be used."""
    words = set(LEAVE_WORDS) | set(report.PROVINCE_WORDS) | set(report.COMMUNE_WORDS)
    for word in words:
        try:
            code = ag.normalize_code(word)
        except ValueError:
            continue  # with accents: no code anyway
        assert ag.code_problem(code), word
    for week_like in ("2026-W48", "2026W48", "2024-WHO", "1999WA"):
        assert ag.code_problem(week_like), week_like
    for fine in ("SYT", "2026", "UBND-XA-SAPA", "XA1", "ROI-2", "8TH"):
        assert ag.code_problem(fine) is None, fine


async def test_add_refuses_what_an_import_refuses(db: async_sessionmaker[AsyncSession]) -> None:
    cases = [
        (("LEAVE", "Ban"), "agency.reserved_code"),
        (("2026-W48", "Ban"), "agency.reserved_code"),
        (("_X", "Ban"), "agency.reserved_code"),
        (("A", "Sở\x00Y tế"), "agency.bad_character"),
        (("A", "Tổ \uffff"), "agency.bad_character"),
        (("A", "Sá»Ÿ Y táº¿"), "agency.garbled_name"),
        (("A", "   "), "agency.bad_name"),
    ]
    for (code, name), key in cases:
        async with transaction(db) as s:
            with pytest.raises(DomainError) as err:
                await ag.add(s, code, name, "unit", None, 1, NOW)
            assert err.value.key == key, (code, name)
    async with transaction(db) as s:
        added = await ag.add(s, "A", "  Sở   Y tế ", "unit", None, 1, NOW)
        assert added.name == "Sở Y tế"
    assert list(await tree(db)) == ["A"]


async def test_too_many_agencies_or_too_large_a_file(db: async_sessionmaker[AsyncSession]) -> None:
    many = csv(*(f"A{i},Cơ quan {i},,unit,1" for i in range(ag.MAX_ROWS + 1)))
    with pytest.raises(ag.CsvError) as err:
        await run(db, many)
    assert [str(p) for p in err.value.problems] == [
        f"line {ag.MAX_ROWS + 2}: more than 20,000 agencies in one file: split it into several "
        "files, parents first, and import them one after the other"
    ]
    large = csv("A,A,,unit,1") + b"," * ag.MAX_FILE_BYTES
    with pytest.raises(ag.CsvError) as err:
        await run(db, large)
    assert [p.line for p in err.value.problems] == [1]
    assert "larger than 5 MB" in err.value.problems[0].reason
    assert await tree(db) == {}
    done = await run(db, csv(*(f"A{i},Cơ quan {i},,unit,1" for i in range(ag.MAX_ROWS))))
    assert done.created == ag.MAX_ROWS


def test_cli_refuses_odd_codes_and_names_and_lists_safely(tmp_path: Path) -> None:
    run_cli = cli(tmp_path)
    assert run_cli("agencies", "import", "--sample")[0] == 0
    for code in ("ROI", "tinh", "2026-W48"):
        status, _, err = run_cli("agencies", "add", "--code", code, "--name", "Ban", "--kind",
                                 "unit")  # fmt: skip
        assert status == 2 and "--code" in err, err
    status, _, err = run_cli("agencies", "add", "--code", "X", "--name", "Sở\x1b[31m", "--kind",
                             "unit")  # fmt: skip
    assert status == 2 and "U+001B" in err and "\x1b" not in err, err
    status, _, err = run_cli("agencies", "add", "--code", "X", "--name", "Sá»Ÿ", "--kind", "unit")
    assert status == 2 and "garbled" in err, err

    async def older_import() -> None:  # a name let in before names were checked
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
        try:
            async with transaction(session_factory(engine)) as s:
                cdc = await ag.by_code(s, "CDC")
                assert cdc is not None
                cdc.name = "CDC\x1b[2J\x1b[31m\u202e"
        finally:
            await engine.dispose()

    asyncio.run(older_import())
    _, out, _ = run_cli("agencies", "list", "--under", "CDC")
    assert out.splitlines()[0] == "CDC  CDC\\u001b[2J\\u001b[31m\\u202e  0/40"
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "".join(f"N{i},Ban,,ministry,1\n" for i in range(60)))
    status, _, err = run_cli("agencies", "import", str(bad))
    lines = err.splitlines()
    assert status == 1 and lines[0] == "error: bad.csv: nothing was imported (60 problems)"
    assert len(lines) == 52 and lines[-1] == "  … and 10 more problems"


async def test_a_parent_head_cannot_reach_a_sub_units_staff(bot: Harness) -> None:
    """/agency lists the agencies one heads; a forged page or removal of a sub-unit (CDC
    under SYT) from SYT's head is refused and shows no names (they read its reports). (On
    Telegram: Zalo has no callback data to forge.)"""
    chat_bot = bot
    await load_sample(chat_bot)
    staff, head = chat_bot.user(), chat_bot.user()
    await staff.send("/agency CDC")
    await head.send("/agency SYT")
    await make_head(chat_bot, head, "SYT")
    async with chat_bot.session() as session:
        cdc = await ag.by_code(session, "CDC")
        row = await session.scalar(select(AgencyMember.id).join(Agency).where(Agency.code == "CDC"))
    assert cdc is not None and row is not None
    await head.send("/agency")
    before, shown = await memberships(chat_bot), len(head.texts)
    for data in (f"ag:pg:{cdc.id}:0", f"ag:rm:{cdc.id}:{row}", f"ag:ok:{cdc.id}:{row}"):
        await head.press_data(data)
        assert head.callback_answers[-1] == t("vi", "agency.stale"), data
    after = "\n".join(head.texts[shown:])
    assert "CDC" not in after and "chưa có sổ sức khỏe" not in after
    assert await memberships(chat_bot) == before
