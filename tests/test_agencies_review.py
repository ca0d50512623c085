"""Agencies as their users meet them (the trial review of issue 10): a future head learns
their id and is made head without having an account; on Zalo the numbers a head types are
the numbers shown next to the members, page after page and agency by agency; the example
code is no agency's; a removed member is told, and their quick return told to the head; a
workbook or a file in the wrong encoding is refused in one line; thousands separators; a
name typed instead of a code; one name for the role."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import re
from pathlib import Path

import pytest
from openpyxl import Workbook
from typer.testing import CliRunner

from bot.cli import app as cli_app
from handlers.agency import PAGE
from models import agencies as ag
from models import healthbook as hb
from models.errors import DomainError
from models.tables import HealthBook
from tests.conftest import ChatHarness, ZaloHarness
from tests.flows import Person, channel_of, t
from tests.test_agencies import HEADER, cli, csv, load_sample, make_head, memberships

CDC_NAME = "Trung tâm Kiểm soát bệnh tật tỉnh Lào Cai"
TN_NAME = "Khoa Phòng chống bệnh truyền nhiễm"
LOCALES = Path(__file__).resolve().parent.parent / "locales"


def day(h: ChatHarness, when: dt.datetime, fmt: str = "%d/%m") -> str:
    return when.astimezone(h.services.tz).strftime(fmt)


def label(h: ChatHarness, name: str | None, since: dt.datetime) -> str:
    """A member as the head's list shows them."""
    if name is None:
        return t("vi", "agency.member_no_book", date=day(h, since))
    return t("vi", "agency.member", name=name, date=day(h, since))


async def staff_of(
    h: ChatHarness, code: str, names: list[str | None], start: dt.datetime
) -> list[Person]:
    """People of agency ``code`` on the harness's channel, joined a day apart from ``start``,
    each with their own health book named as given (None: without one)."""
    people = []
    async with h.session() as s, s.begin():
        agency = await ag.by_code(s, code)
        assert agency is not None
        for n, name in enumerate(names):
            person = h.user()
            account = await hb.ensure_account(s, channel_of(person), str(person.user.id), "vi")
            if name is not None:
                s.add(
                    HealthBook(
                        account_id=account.id, relation="self", full_name=name,
                        date_of_birth=dt.date(1985, 1, 1), gender="female", ethnicity=1,
                        occupation="officer", priority_group="none", province_code=15,
                        ward_code=1, consent_version="v1",
                    )
                )  # fmt: skip
            await ag.join(s, account, agency, start + dt.timedelta(days=n))
            people.append(person)
    return people


async def account_ids(h: ChatHarness, people: list[Person]) -> list[int]:
    async with h.session() as s:
        found = [await hb.find_account(s, channel_of(p), str(p.user.id)) for p in people]
    assert all(found)
    return [a.id for a in found if a is not None]


def numbered(text: str | None) -> dict[int, str]:
    """The numbered lines of a Zalo answer: what typing each number chooses."""
    return {int(m[1]): m[2] for m in re.finditer(r"^(\d+)\. (.+)$", text or "", re.MULTILINE)}


# ---------------------------------------------------------------- T1: a future head


async def test_a_future_head_is_told_their_id_and_made_head_by_it(
    chat_bot: ChatHarness, db_url: str, tmp_path: Path
) -> None:
    """/agency from someone with no account shows their id as an admin types it; set-head
    with that id works although they have no account (it makes one); then /agency shows
    them their agency's staff, and no id any more."""
    await load_sample(chat_bot)
    person = chat_bot.user()
    await person.send("/agency")
    channel, uid = channel_of(person), str(person.user.id)
    shown = t("vi", "agency.your_id", id=f"{channel}:{uid}")
    assert person.last_text is not None and person.last_text.endswith("\n\n" + shown)
    assert "thủ trưởng cơ quan" in shown
    async with chat_bot.session() as s:
        assert await hb.find_account(s, channel, uid) is None  # /agency makes no account
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n')
    result = await asyncio.to_thread(
        CliRunner().invoke,
        cli_app,
        ["agencies", "set-head", "CDC", f"--{channel}-id", uid, "--config", str(config)],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{channel} user {uid} is now a head of CDC (a new account")
    await person.send("/agency")
    answer = "\n".join(person.texts[-2:])
    assert t("vi", "agency.head_title", name=CDC_NAME, code="CDC", count=0, expected=40) in answer
    assert shown not in answer


# ---------------------------------------------------------------- T2: Zalo numbers


async def test_on_zalo_the_number_typed_is_the_member_shown(zbot: ZaloHarness) -> None:
    """A head of two agencies chooses one, then types the number shown next to a member:
    exactly that member is removed, on page 1 and on page 2 (numbered from 1 again), in
    either agency; a member without a health book shows since when, and the confirmation
    names what the head saw."""
    h = zbot
    await load_sample(h)
    head = h.user()
    await head.send("/agency SYT")
    start = h.clock() - dt.timedelta(days=20)
    names: list[str | None] = [f"Nhân viên {n:02d}" if n % 4 else None for n in range(1, 14)]
    cdc = await staff_of(h, "CDC", names, start)
    tn = await staff_of(h, "CDC-TN", ["Lò Thị Mai", None], start)
    await make_head(h, head, "CDC")
    await make_head(h, head, "CDC-TN")
    labels = [label(h, name, start + dt.timedelta(days=n)) for n, name in enumerate(names)]
    more = t("vi", "agency.button.more")

    await head.send("/agency")
    assert numbered(head.last_answer) == {
        1: t("vi", "agency.headed_choice", name=CDC_NAME, code="CDC", count=13),
        2: t("vi", "agency.headed_choice", name=TN_NAME, code="CDC-TN", count=2),
    }
    assert "Nhân viên" not in (head.last_answer or "")  # one agency per answer
    await head.send("1")
    page = head.last_answer or ""
    assert numbered(page) == {**{n: labels[n - 1] for n in range(1, PAGE + 1)}, PAGE + 1: more}
    assert all(page.count(each) == 1 for each in labels[:PAGE])  # each member listed once
    assert "chưa có sổ sức khỏe" in labels[3] and not re.search(r"\d+\. \d", page)

    # page 1: type 3, the number shown next to labels[2]
    ids = await account_ids(h, cdc)
    await head.send("3")
    assert t("vi", "agency.confirm_remove", who=labels[2], agency=CDC_NAME) in (
        head.last_answer or ""
    )
    await head.send("1")  # 1. Có, xóa
    assert t("vi", "agency.removed", who=labels[2], agency=CDC_NAME) in (head.last_answer or "")
    removed = [row for row in await memberships(h) if row[2] == "removed"]
    assert removed == [(ids[2], "CDC", "removed", (await account_ids(h, [head]))[0])]
    assert cdc[2].last_text == t("vi", "agency.removed_notice", agency=CDC_NAME, code="CDC")

    # page 2, numbered from 1: its first member (without a health book) is typed 1
    left = labels[:2] + labels[3:]
    await head.send("/agency")
    await head.send("1")
    await head.send(str(PAGE + 1))
    page = head.last_answer or ""
    assert t("vi", "agency.page", page=2, pages=2) in page
    assert numbered(page) == {1: left[PAGE], 2: left[PAGE + 1]}
    assert "chưa có sổ sức khỏe" in left[PAGE]
    await head.send("1")
    assert t("vi", "agency.confirm_remove", who=left[PAGE], agency=CDC_NAME) in (
        head.last_answer or ""
    )
    await head.send("1")
    removed = [row[0] for row in await memberships(h) if row[2] == "removed"]
    assert removed == [ids[2], ids[11]]  # labels[11] is left[PAGE]

    # the other agency: its own list, numbered from 1
    await head.send("/agency")
    await head.send("2")
    mai = label(h, "Lò Thị Mai", start)
    assert numbered(head.last_answer) == {1: mai, 2: label(h, None, start + dt.timedelta(days=1))}
    await head.send("1")
    assert t("vi", "agency.confirm_remove", who=mai, agency=TN_NAME) in (head.last_answer or "")
    await head.send("1")
    removed = [row[0] for row in await memberships(h) if row[2] == "removed"]
    assert removed == [ids[2], ids[11], (await account_ids(h, tn[:1]))[0]]


# ---------------------------------------------------------------- T5: the example code


async def test_the_example_code_is_no_agency(chat_bot: ChatHarness) -> None:
    """Staff who copy the example are told it is one; no agency can take its code."""
    await load_sample(chat_bot)
    staff = chat_bot.user()
    await staff.send("/agency")
    assert "/agency VIDU" in (staff.last_text or "") and "SYT" not in (staff.last_text or "")
    for typed in ("/agency VIDU", "/agency vidu"):
        await staff.send(typed)
        assert staff.last_text == t("vi", "agency.example_code", code="VIDU")
    assert await memberships(chat_bot) == []
    assert ag.EXAMPLE_CODE == "VIDU" and "VIDU" in ag.RESERVED_CODES and ag.code_problem("VIDU")
    async with chat_bot.session() as s:
        with pytest.raises(DomainError) as err:
            await ag.add(s, "vidu", "Ví dụ", "unit", None, 1)
        assert err.value.key == "agency.reserved_code"
        with pytest.raises(ag.CsvError) as csv_err:
            await ag.import_csv(s, csv("VIDU,Ví dụ,,unit,1"), chat_bot.clock())
        assert "the code VIDU is the example" in str(csv_err.value)


# ---------------------------------------------------------------- T6: removed, and back


async def test_a_removed_member_is_told_and_a_quick_return_told_to_the_head(
    chat_bot: ChatHarness,
) -> None:
    h = chat_bot
    await load_sample(h)
    head = h.user()
    await head.send("/agency SYT")
    start = h.clock() - dt.timedelta(days=2)
    [member] = await staff_of(h, "CDC", ["Lò Văn Páo"], start)
    await make_head(h, head, "CDC")

    async def remove() -> dt.datetime:
        await head.send("/agency")
        await head.press(label(h, "Lò Văn Páo", start))
        await head.press(t("vi", "agency.button.confirm"))
        return h.clock()

    removed_at = await remove()
    assert member.last_text == t("vi", "agency.removed_notice", agency=CDC_NAME, code="CDC")
    h.clock.advance(days=10)
    await member.send("/agency CDC")
    assert t("vi", "agency.rejoined", date=day(h, removed_at, "%d/%m/%Y")) in (
        member.last_text or ""
    )
    assert head.last_text == t(
        "vi", "agency.rejoined_notice", who=label(h, "Lò Văn Páo", h.clock()), agency=CDC_NAME,
        code="CDC", date=day(h, removed_at, "%d/%m/%Y"),
    )  # fmt: skip
    start = h.clock()
    await remove()
    h.clock.advance(days=31)  # back after more than 30 days: nobody is told
    told = len(head.texts)
    await member.send("/agency CDC")
    assert t("vi", "agency.joined", name=CDC_NAME, code="CDC") in (member.last_text or "")
    assert "xóa" not in (member.last_text or "") and len(head.texts) == told


# ---------------------------------------------------------------- T10: files and numbers


def _workbook() -> bytes:
    book = Workbook()
    book.active.append(["code", "name", "parent_code", "kind", "expected_staff"])
    book.active.append(["SYT", "Sở Y tế", "", "department", 30])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_a_workbook_or_a_wrong_encoding_is_one_line(tmp_path: Path) -> None:
    data = _workbook()
    assert data.startswith(b"PK")
    with pytest.raises(ag.CsvError) as err:
        ag._decode(data)
    assert [str(p) for p in err.value.problems] == [
        'line 1: this is an Excel workbook (.xlsx), not a CSV file: in Excel use "Save as" '
        '"CSV UTF-8 (Comma delimited)"'
    ]
    with pytest.raises(ag.CsvError) as err:
        ag._decode(bytes(range(256)) * 4)
    assert len(err.value.problems) == 1 and "not a text file" in str(err.value.problems[0])
    rows = "".join(f"A{n},Xã Bát Xát {n},,school,1\n" for n in range(20))
    with pytest.raises(ag.CsvError) as err:
        ag._decode((HEADER + rows).encode("cp1252"))  # Excel's plain "CSV"
    assert [str(p) for p in err.value.problems] == [
        "lines 2, 3, 4, 5, 6 and 15 more: the text is not UTF-8 (letters with accents are "
        'unreadable); in Excel use "Save as" "CSV UTF-8 (Comma delimited)"'
    ]
    few = HEADER + "A,Xã Bát Xát,,unit,1\nB,B,,unit,1\nC,Bà Ân,,unit,1\n"
    with pytest.raises(ag.CsvError) as err:
        ag._decode(few.encode("cp1252"))
    assert str(err.value.problems[0]).startswith("lines 2 and 4: the text is not UTF-8")
    # on the command line: one line after the summary
    run_cli = cli(tmp_path)
    book = tmp_path / "agencies.xlsx"
    book.write_bytes(data)
    code, _, stderr = run_cli("agencies", "import", str(book))
    assert code == 1 and len(stderr.splitlines()) == 2, stderr
    assert "Excel workbook" in stderr


def test_expected_staff_with_thousands_separators() -> None:
    for typed in ("1200", "1.200", "1,200", "1 200", "1\u00a0200", " 1.200 "):
        assert ag.staff_count(typed) == 1200, typed
    assert ag.staff_count("1.000.000") == 1_000_000
    for typed in ("1.5", "12 00", "1,2000", "1.200,5", "1.200.000.0", "-1", "1.000.001", "x"):
        assert ag.staff_count(typed) is None, typed
    rows, problems = ag._rows(
        HEADER + 'A,A,,unit,1.200\nB,B,,unit,"1,200"\nC,C,,unit,1 200\nD,D,,unit,1.5\n'
    )
    assert [r.expected for r in rows] == [1200, 1200, 1200, 0]
    assert [p.line for p in problems] == [5]


def test_the_example_codes_of_the_help_are_in_the_samples_style() -> None:
    with pytest.raises(ValueError) as err:
        ag.normalize_code("sở y tế")
    examples = re.findall(r"\b[A-Z][A-Z0-9]*(?:-[A-Z0-9]+)+\b|\bSYT\b", str(err.value))
    sample = ag.SAMPLE.read_text(encoding="utf-8")
    assert examples and all(f"\n{code}," in sample for code in examples), examples


# ---------------------------------------------------------------- T11: words and names


async def test_a_name_instead_of_a_code(chat_bot: ChatHarness) -> None:
    """Joining is by code only; a name gets the code it means (or up to five)."""
    await load_sample(chat_bot)
    staff = chat_bot.user()
    for typed in ("/agency Sở Y tế", "/agency so y te", "/agency sở-y-tế"):
        await staff.send(typed)
        assert staff.last_text == t("vi", "agency.did_you_mean", name="Sở Y tế", code="SYT")
    await staff.send("/agency Trung tâm Y tế khu vực")
    lines = (staff.last_text or "").split("\n")
    assert lines[0] == t("vi", "agency.did_you_mean_many", count=3)
    assert lines[1:] == [
        t("vi", "agency.did_you_mean_line", name=f"Trung tâm Y tế khu vực {place}", code=code)
        for code, place in (("TTYT-BACHA", "Bắc Hà"), ("TTYT-BATXAT", "Bát Xát"),
                            ("TTYT-SAPA", "Sa Pa"))
    ]  # fmt: skip
    await staff.send("/agency Trường")
    lines = (staff.last_text or "").split("\n")
    assert len(lines) == 1 + 5 + 1 and lines[-1].startswith("… và")
    # the 12 schools begin with the word; "Sở Nông nghiệp và Môi trường" only holds it
    assert lines[0] == t("vi", "agency.did_you_mean_many", count=12)
    assert "SNNMT" not in (staff.last_text or "")
    await staff.send("/agency y tế apatit")  # held, not begun with
    assert staff.last_text == t(
        "vi", "agency.did_you_mean", name="Trung tâm Y tế Apatit", code="APATIT-TTYT"
    )
    await staff.send("/agency Sở")  # too short to look for inside names
    assert staff.last_text == t("vi", "agency.unknown", example="VIDU")
    assert await memberships(chat_bot) == []


def test_one_name_for_the_role() -> None:
    """ "thủ trưởng cơ quan" / "agency head" everywhere in agency.po; /agency roi, not leave."""
    vi = (LOCALES / "vi" / "LC_MESSAGES" / "agency.po").read_text(encoding="utf-8")
    en = (LOCALES / "en" / "LC_MESSAGES" / "agency.po").read_text(encoding="utf-8")
    assert "phụ trách" not in vi.lower() and "thủ trưởng cơ quan" in vi
    assert "in charge" not in en and "agency head" in en
    assert "/agency leave" not in vi and "/agency roi" in t("vi", "agency.yours", name="A",
                                                             code="A", date="1")  # fmt: skip
