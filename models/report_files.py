"""The files of a coverage report (:class:`~models.reports.Report`): the workbook (XLSX), the
CSV and the chart (PNG). No messenger types: the caller sends or writes the bytes.

Every text comes from the catalogues (``report.file.*`` and ``report.chart.*`` in
``locales/*/LC_MESSAGES/report.po``) through the translator ``t(key, **params)`` the caller
gives. Times are shown in the province's time (``tz``, ``settings.bot.timezone``).

- The workbook: a summary sheet (the scope, the agency or the province, the week or the live
  moment, the totals with the change since last week), then one sheet per level of the tree
  (level 1: the root's sub-units, or the top-level agencies of the province), each row
  counting its whole subtree; for the province and the communes, a sheet of communes and wards.
  openpyxl (write-only) makes the workbook; the rows of agencies and communes are written as
  the sheets' XML directly (openpyxl takes seconds for 5,000 agencies). The same report gives
  the same bytes (the file's dates are the report's moment).
- The CSV: one table, UTF-8 with a BOM so Excel reads Vietnamese: every agency with its
  ``level`` (0: the root, or the province's total), or the communes for the communes' report.
- The chart: coverage by sub-unit as horizontal bars, the laggards on top, at most
  :data:`MAX_BARS` (the workbook has them all). matplotlib is imported on the first chart only.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
import tempfile
import textwrap
import threading
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as xml_escape
from zoneinfo import ZoneInfo

from models.reference import ward_name
from models.reports import AgencyLine, Figures, Report, WardLine, week_monday
from models.timeutil import as_aware

#: ``t(key, **params) -> str``: a translator (``bot.i18n.Translator``)
Translate = Callable[..., str]

#: the province's time zone when the caller gives none (``bot.timezone``'s default)
PROVINCE_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
#: bars in a chart at most; the rest are in the workbook
MAX_BARS = 25
#: characters in a line of a bar's label (two lines at most)
LABEL_WIDTH = 42

_FORBIDDEN = str.maketrans({c: " " for c in "[]:*?/\\"})  # not allowed in a sheet's name
#: how a column's numbers show: shares as percentages, changes with their sign
_FORMATS = {"share": "0.0%", "change": "+#,##0;-#,##0;0", "count": "#,##0"}


# --------------------------------------------------------------------------------------------
# Columns and rows, shared by the workbook and the CSV
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    header: str
    kind: str  # "text", "name", "count", "share", "change"
    width: float


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _change(now: int, before: int | None) -> int | None:
    return None if before is None else now - before


def _was(before: Figures | None, name: str) -> int | None:
    """A figure of last week (None: none stored)."""
    return None if before is None else int(getattr(before, name))


def _doses(report: Report) -> int:
    """The dose columns: as many as the data has, at least dose 1."""
    figures: list[Figures] = [report.total]
    if report.previous_total is not None:
        figures.append(report.previous_total)
    for line in report.lines:
        figures += [line.own, line.total]
    return max(1, *(len(f.doses) for f in figures))


def _padded(doses: tuple[int, ...], n: int) -> list[int]:
    return list(doses[:n]) + [0] * (n - len(doses))


def _agency_columns(t: Translate, doses: int) -> list[_Column]:
    return [
        _Column(t("report.file.col.code"), "text", 16),
        _Column(t("report.file.col.name"), "name", 48),
        _Column(t("report.file.col.parent"), "text", 16),
        _Column(t("report.file.col.expected"), "count", 12),
        _Column(t("report.file.col.joined"), "count", 12),
        _Column(t("report.file.col.joined_share"), "share", 14),
        _Column(t("report.file.col.complete"), "count", 14),
        _Column(t("report.file.col.complete_share"), "share", 14),
        _Column(t("report.file.col.booked"), "count", 12),
        *(_Column(t("report.file.col.dose", n=n), "count", 12) for n in range(1, doses + 1)),
        _Column(t("report.file.col.relatives"), "count", 14),
        _Column(t("report.file.col.joined_change"), "change", 16),
        _Column(t("report.file.col.complete_change"), "change", 16),
        _Column(t("report.file.col.own_joined"), "count", 14),
        _Column(t("report.file.col.own_complete"), "count", 14),
    ]


def _agency_row(
    line: AgencyLine, parent: str, doses: int, own: bool = True
) -> list[str | int | float | None]:
    """An agency's cells (its subtree's figures), in :func:`_agency_columns`' order; ``own``
    False: no own members' columns (the province's total)."""
    total, before = line.total, line.previous
    return [
        line.code,
        line.name,
        parent,
        line.expected,
        total.joined,
        _share(total.joined, line.expected),
        total.complete,
        _share(total.complete, line.expected),
        total.booked,
        *_padded(total.doses, doses),
        total.relatives,
        _change(total.joined, _was(before, "joined")),
        _change(total.complete, _was(before, "complete")),
        line.own.joined if own else None,
        line.own.complete if own else None,
    ]


def _ward_columns(t: Translate) -> list[_Column]:
    return [
        _Column(t("report.file.col.ward_code"), "text", 12),
        _Column(t("report.file.col.ward_name"), "name", 32),
        _Column(t("report.file.col.registered"), "count", 12),
        _Column(t("report.file.col.adults"), "count", 14),
        _Column(t("report.file.col.booked"), "count", 12),
        _Column(t("report.file.col.vaccinated"), "count", 14),
        _Column(t("report.file.col.adults_vaccinated"), "count", 14),
        _Column(t("report.file.col.adults_share"), "share", 14),
        _Column(t("report.file.col.registered_change"), "change", 16),
    ]


def _ward_label(code: int, t: Translate) -> str:
    try:
        return ward_name(code)
    except KeyError:  # a code of an older release of the list: still shown, by its number
        return t("report.file.unknown_ward", code=code)


def _ward_row(ward: WardLine, t: Translate) -> list[str | int | float | None]:
    return [
        ward.ward_code,
        _ward_label(ward.ward_code, t),
        ward.registered,
        ward.adults,
        ward.booked,
        ward.vaccinated,
        ward.adults_vaccinated,
        ward.adults_share,
        _change(ward.registered, ward.previous_registered),
    ]


def _province_line(report: Report, t: Translate) -> AgencyLine:
    """The province's total as a line: the sum of the top-level agencies."""
    top = [line for line in report.lines if line.depth == 0]
    return AgencyLine(
        agency_id=0, code="", name=t("report.file.province"), kind="", parent_id=None, depth=-1,
        expected=sum(line.expected for line in top), own=Figures(), total=report.total,
        previous=report.previous_total,
    )


def _minus(a: Figures, b: Figures) -> Figures:
    n = max(len(a.doses), len(b.doses))
    return Figures(a.joined - b.joined, a.complete - b.complete, a.booked - b.booked,
                   a.relatives - b.relatives,
                   tuple(x - y for x, y in zip(_padded(a.doses, n), _padded(b.doses, n),
                                               strict=True)))


def _own_line(report: Report, t: Translate) -> AgencyLine | None:
    """The root's own members as a line of level 1, "<name> (trực tiếp)", when the root has
    sub-units (None otherwise): with them, level 1 adds up to the root. Its expected staff is
    what the sub-units' leave; last week's figures are the root's less its sub-units' (blank
    when a sub-unit has none), so the changes add up too."""
    root = report.root
    if root is None:
        return None
    children = [line for line in report.lines if line.depth == root.depth + 1]
    if not children:
        return None
    previous = None
    if root.previous is not None and all(c.previous is not None for c in children):
        previous = root.previous
        for child in children:
            previous = _minus(previous, child.previous or Figures())
    return AgencyLine(
        agency_id=root.agency_id, code=root.code, name=t("report.file.own", name=root.name),
        kind=root.kind, parent_id=root.agency_id, depth=root.depth + 1,
        expected=max(0, root.expected - sum(c.expected for c in children)),
        own=root.own, total=root.own, previous=previous,
    )


def _sum_line(lines: list[AgencyLine], name: str) -> AgencyLine:
    """The lines of a sheet added up (last week's: blank when a line has none)."""
    total, own, previous = Figures(), Figures(), Figures()
    for line in lines:
        total, own = total + line.total, own + line.own
        if previous is not None:
            previous = None if line.previous is None else previous + line.previous
    return AgencyLine(
        agency_id=0, code="", name=name, kind="", parent_id=None, depth=-1,
        expected=sum(line.expected for line in lines), own=own, total=total,
        previous=previous if lines else None,
    )


def _leveled(report: Report) -> Iterator[tuple[int, AgencyLine]]:
    """Every agency line with its level: 0 the root; for the province (no root), the
    top-level agencies are level 1 (level 0 is the province's total, not a line)."""
    offset = 0 if report.root is not None else 1
    for line in report.lines:
        yield line.depth + offset, line


def _codes(report: Report) -> dict[int, str]:
    return {line.agency_id: line.code for line in report.lines}


# --------------------------------------------------------------------------------------------
# Texts of the period and the moment
# --------------------------------------------------------------------------------------------


def _local(moment: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    return as_aware(moment).astimezone(tz)


def period(report: Report, t: Translate, tz: ZoneInfo = PROVINCE_TZ) -> str:
    """``Tuần 2026-W48 (23/11/2026 – 29/11/2026)``, or ``Trực tiếp lúc 09:15 ngày 26/11/2026``."""
    if report.week is None:
        local = _local(report.moment, tz)
        return t("report.file.live", time=local.strftime("%H:%M"),
                 date=local.strftime("%d/%m/%Y"))
    monday = week_monday(report.week)
    return t("report.file.week", week=report.week, start=monday.strftime("%d/%m/%Y"),
             end=(monday + dt.timedelta(days=6)).strftime("%d/%m/%Y"))


def _moment(report: Report, t: Translate, tz: ZoneInfo) -> str:
    local = _local(report.moment, tz)
    return t("report.file.moment_value", time=local.strftime("%H:%M"),
             date=local.strftime("%d/%m/%Y"), zone=str(tz))


def _subject(report: Report, t: Translate) -> str:
    if report.root is not None:
        return f"{report.root.name} ({report.root.code})"
    return t("report.file.province")


# --------------------------------------------------------------------------------------------
# The workbook
# --------------------------------------------------------------------------------------------


def _sheet_title(text: str, taken: set[str]) -> str:
    """A sheet's name Excel accepts: no ``[]:*?/\\``, at most 31 characters, not taken."""
    base = " ".join(_clean(text).translate(_FORBIDDEN).split()).strip("'")[:31] or "Sheet"
    title, n = base, 1
    while title.casefold() in taken:
        n += 1
        suffix = f" ({n})"
        title = base[: 31 - len(suffix)] + suffix
    taken.add(title.casefold())
    return title


class _Book:
    """A write-only workbook: sheets written row by row, styled cells made on the way."""

    def __init__(self, moment: dt.datetime) -> None:
        from openpyxl import Workbook
        from openpyxl.styles import Alignment, Font

        self.wb = Workbook(write_only=True)
        when = as_aware(moment).astimezone(dt.UTC).replace(tzinfo=None)
        self.wb.properties.created = self.wb.properties.modified = when
        self.wb.properties.creator = self.wb.properties.lastModifiedBy = "healthbook-bot"
        self.bold = Font(bold=True)
        self.title_font = Font(bold=True, size=14)
        self.wrap = Alignment(wrap_text=True, vertical="top")
        self.taken: set[str] = set()
        self.tables: dict[int, tuple[Any, list[str]]] = {}  # rows of XML by sheet

    def sheet(self, title: str, widths: Iterable[float], freeze: str | None = None) -> Any:
        """A new sheet; widths and frozen panes go before the first row (write-only). A sheet
        with frozen panes is a table: printed landscape, as wide as the page, its header on
        every page."""
        from openpyxl.utils import get_column_letter
        from openpyxl.worksheet.properties import PageSetupProperties

        ws = self.wb.create_sheet(_sheet_title(title, self.taken))
        for i, width in enumerate(widths, 1):
            ws.column_dimensions[get_column_letter(i)].width = width
        if freeze:
            ws.freeze_panes = freeze
            ws.page_setup.orientation = "landscape"
            ws.page_setup.fitToWidth, ws.page_setup.fitToHeight = 1, 0  # pages down as needed
            ws.sheet_properties.pageSetUpPr = PageSetupProperties(fitToPage=True)
            ws.print_title_rows = "1:1"
        return ws

    def cell(self, ws: Any, value: Any, *, kind: str = "text", bold: bool = False,
             font: Any = None) -> Any:
        from openpyxl.cell import WriteOnlyCell

        value = _clean(value)
        cell = WriteOnlyCell(ws, value=value if value != "" else None)
        if isinstance(value, str) and value:
            # text as text, whatever it begins with: openpyxl makes "=…" a formula and
            # "#N/A" an error; a name is never either
            cell.data_type = "s"
        if font is not None:
            cell.font = font
        elif bold:
            cell.font = self.bold
        if kind in _FORMATS:
            cell.number_format = _FORMATS[kind]
        return cell

    def header(self, ws: Any, columns: list[_Column]) -> None:
        ws.append([self._header_cell(ws, c.header) for c in columns])

    def _header_cell(self, ws: Any, text: str) -> Any:
        cell = self.cell(ws, text, bold=True)
        cell.alignment = self.wrap
        return cell

    def row(self, ws: Any, columns: list[_Column], values: list[Any]) -> None:
        ws.append([
            None if v is None else self.cell(ws, v, kind=c.kind)
            for c, v in zip(columns, values, strict=True)
        ])

    def table(
        self, ws: Any, columns: list[_Column], rows: Iterable[list[Any]],
        total: list[Any] | None = None,
    ) -> None:
        """Rows below the header, as the sheet's XML made here: openpyxl spends some 20 µs
        on a cell, seconds for 5,000 agencies; these are spliced in when the file is saved.
        The header and the rows get an autofilter; ``total`` is a bold row below them,
        outside the filter, so sorting leaves it last."""
        from openpyxl.utils import get_column_letter

        styles = self._styles(ws, columns)
        letters = [get_column_letter(i) for i in range(1, len(columns) + 1)]
        chunks = self.tables.setdefault(id(ws), (ws, []))[1]
        number = 1 + len(chunks)  # a chunk a row, below the header
        for values in rows:
            number += 1
            chunks.append(_row_xml(number, letters, styles, values))
        ws.auto_filter.ref = f"A1:{letters[-1]}{number}"
        if total is not None:
            chunks.append(_row_xml(number + 1, letters, self._styles(ws, columns, bold=True),
                                   total))

    def _styles(self, ws: Any, columns: list[_Column], bold: bool = False) -> list[str]:
        """Each column's style attribute (`` s="3"``) for :func:`_row_xml`."""
        from openpyxl.cell import WriteOnlyCell

        styles = []
        for column in columns:
            cell = WriteOnlyCell(ws)
            cell.number_format = _FORMATS.get(column.kind, "General")
            if bold:
                cell.font = self.bold
            styles.append(f' s="{cell.style_id}"' if cell.has_style else "")
        return styles

    def save(self, moment: dt.datetime) -> bytes:
        """The workbook's bytes; every part of the archive dated at the report's moment, so
        the same report gives the same file."""
        from openpyxl.writer.excel import ExcelWriter

        raw = io.BytesIO()
        with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            ExcelWriter(self.wb, archive).save()  # save_workbook would stamp "modified" now
        # the paths are known once saved
        spliced = {ws.path[1:]: "".join(chunks).encode() for ws, chunks in self.tables.values()}
        return _restamp(raw.getvalue(), moment, spliced)


#: what XML 1.0 cannot hold (its ``Char``): control characters but tab and line ends, lone
#: surrogates, U+FFFE and U+FFFF; one of them in a name would make the whole workbook unreadable
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
#: characters in a cell at most (Excel's limit; openpyxl cuts there too)
_CELL_MAX = 32_767


def _clean(value: Any) -> Any:
    """Text without the characters a workbook cannot hold (a name pasted from elsewhere may
    have one), at most :data:`_CELL_MAX` long; anything else as it is."""
    if not isinstance(value, str):
        return value
    return _NOT_XML.sub("", value)[:_CELL_MAX]


def _text_xml(value: str) -> str:
    return xml_escape(_clean(value))


def _row_xml(number: int, letters: list[str], styles: list[str], values: list[Any]) -> str:
    """One ``<row>`` of a sheet: numbers as numbers, text inline, blanks left out."""
    parts = [f'<row r="{number}">']
    for letter, style, value in zip(letters, styles, values, strict=True):
        if value is None:
            continue
        if isinstance(value, str):
            if value:
                parts.append(f'<c r="{letter}{number}" t="inlineStr"{style}><is>'
                             f'<t xml:space="preserve">{_text_xml(value)}</t></is></c>')
        elif isinstance(value, int | float) and not isinstance(value, bool):
            parts.append(f'<c r="{letter}{number}"{style}><v>{value!r}</v></c>')
        else:
            raise TypeError(f"a report cell holds {type(value).__name__}")
    parts.append("</row>")
    return "".join(parts)


def _restamp(data: bytes, moment: dt.datetime, spliced: dict[str, bytes]) -> bytes:
    """The same zip archive with every member dated ``moment`` (UTC; zip needs 1980 on), and
    the rows made by :meth:`_Book.table` put at the end of their sheets."""
    when = as_aware(moment).astimezone(dt.UTC)
    stamp = (max(when.year, 1980), when.month, when.day, when.hour, when.minute, when.second)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            member = zipfile.ZipInfo(info.filename, date_time=stamp)
            member.compress_type = zipfile.ZIP_DEFLATED
            member.external_attr = 0o600 << 16
            content = src.read(info.filename)
            if info.filename in spliced:
                end = b"</sheetData>"
                if end not in content:
                    raise ValueError(f"{info.filename}: no sheetData to add rows to")
                content = content.replace(end, spliced[info.filename] + end, 1)
            dst.writestr(member, content)
    return out.getvalue()


def _summary(book: _Book, report: Report, t: Translate, tz: ZoneInfo, doses: int) -> None:
    ws = book.sheet(t("report.file.sheet.summary"), (40, 44, 20, 20))
    ws.append([book.cell(ws, t(f"report.file.title.{report.scope}"), font=book.title_font)])
    ws.append([])
    about = [
        ("report.file.scope", t(f"report.file.scope.{report.scope}")),
        ("report.file.agency", _subject(report, t)),
        ("report.file.period", period(report, t, tz)),
        ("report.file.moment", _moment(report, t, tz)),
        ("report.file.compared",
         t("report.file.previous_week", week=report.previous_week) if report.previous_week
         else t("report.file.no_previous")),
    ]
    if report.scope == "communes":
        about.pop(1)
    for key, value in about:
        ws.append([book.cell(ws, t(key), bold=True), book.cell(ws, value)])
    ws.append([])
    columns = [
        _Column(t("report.file.figure"), "text", 0),
        _Column(t("report.file.count"), "count", 0),
        _Column(t("report.file.share"), "share", 0),
        _Column(t("report.file.col.change"), "change", 0),
    ]
    if report.scope != "communes" or report.lines:
        line = report.root if report.root is not None else _province_line(report, t)
        total, before, expected = report.total, report.previous_total, line.expected
        book.header(ws, columns)
        # (label, now, last week's, whether it is a share of the expected staff)
        staff: list[tuple[str, int, int | None, bool]] = [
            (t("report.file.col.expected"), expected, None, False),
            (t("report.file.col.joined"), total.joined, _was(before, "joined"), True),
            (t("report.file.col.complete"), total.complete, _was(before, "complete"), True),
            (t("report.file.col.booked"), total.booked, _was(before, "booked"), True),
        ]
        before_doses = _padded(before.doses, doses) if before else [None] * doses
        for n, (now, then) in enumerate(zip(_padded(total.doses, doses), before_doses,
                                            strict=True), 1):
            staff.append((t("report.file.col.dose", n=n), now, then, True))
        staff.append((t("report.file.col.relatives"), total.relatives,
                      _was(before, "relatives"), False))
        for label, count, then, shared in staff:
            book.row(ws, columns, [label, count, _share(count, expected) if shared else None,
                                   _change(count, then)])
        ws.append([])
    if report.wards:
        book.header(ws, [
            _Column(t("report.file.residents"), "text", 0), columns[1],
            _Column(t("report.file.col.adults_share"), "share", 0), columns[3],
        ])
        wards = report.wards
        previous = [w.previous_registered for w in wards]
        before_registered = (None if any(p is None for p in previous)
                             else sum(p for p in previous if p is not None))
        adults = sum(w.adults for w in wards)
        adults_vaccinated = sum(w.adults_vaccinated for w in wards)
        for key, count, share, changed in (
            ("report.file.col.wards", len(wards), None, None),
            ("report.file.col.registered", sum(w.registered for w in wards), None,
             _change(sum(w.registered for w in wards), before_registered)),
            ("report.file.col.adults", adults, None, None),
            ("report.file.col.booked", sum(w.booked for w in wards), None, None),
            ("report.file.col.vaccinated", sum(w.vaccinated for w in wards), None, None),
            ("report.file.col.adults_vaccinated", adults_vaccinated,
             _share(adults_vaccinated, adults), None),
        ):
            book.row(ws, columns, [t(key), count, share, changed])
        ws.append([])
    if any(level > 0 for level, _ in _leveled(report)):  # the level sheets, explained
        ws.append([book.cell(ws, t("report.file.note"))])
        if report.root is None:
            ws.append([book.cell(ws, t("report.file.note.total"))])
        else:
            ws.append([book.cell(ws, t("report.file.note.own", name=report.root.name))])


def workbook(report: Report, t: Translate, tz: ZoneInfo = PROVINCE_TZ) -> bytes:
    """The report as an XLSX workbook: a summary sheet, one sheet per level of the tree, the
    communes and wards (province and communes); Vietnamese or English headers as ``t`` speaks."""
    doses = _doses(report)
    book = _Book(report.moment)
    _summary(book, report, t, tz, doses)
    columns = _agency_columns(t, doses)
    codes = _codes(report)
    own = _own_line(report, t)
    levels = sorted({level for level, _ in _leveled(report) if level > 0})
    for level in levels:
        ws = book.sheet(t("report.file.sheet.level", n=level), (c.width for c in columns), "C2")
        book.header(ws, columns)
        lines = [line for at, line in _leveled(report) if at == level]
        if level == 1 and own is not None:  # the root's own members first: level 1 adds up
            lines.insert(0, own)
        book.table(ws, columns, (
            _agency_row(line, codes.get(line.parent_id, "") if line.parent_id is not None else "",
                        doses)
            for line in lines
        ), total=_agency_row(_sum_line(lines, t("report.file.total")), "", doses))
    if report.wards or report.scope == "communes":
        ward_columns = _ward_columns(t)
        ws = book.sheet(t("report.file.sheet.wards"), (c.width for c in ward_columns), "C2")
        book.header(ws, ward_columns)
        book.table(ws, ward_columns, (_ward_row(ward, t) for ward in report.wards),
                   total=_ward_total(report.wards, t))
    return book.save(report.moment)


def _ward_total(wards: list[WardLine], t: Translate) -> list[Any]:
    """The communes added up, in :func:`_ward_columns`' order."""
    adults = sum(w.adults for w in wards)
    adults_vaccinated = sum(w.adults_vaccinated for w in wards)
    registered = sum(w.registered for w in wards)
    previous = [w.previous_registered for w in wards]
    return [
        None, t("report.file.total"), registered, adults, sum(w.booked for w in wards),
        sum(w.vaccinated for w in wards), adults_vaccinated, _share(adults_vaccinated, adults),
        None if not wards or None in previous
        else registered - sum(p for p in previous if p is not None),
    ]


# --------------------------------------------------------------------------------------------
# The CSV
# --------------------------------------------------------------------------------------------


#: what makes a spreadsheet read a CSV field as a formula (OWASP's list)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_value(value: Any, kind: str, decimal: str = ".") -> Any:
    if value is None:
        return ""
    if kind == "share":
        return f"{value * 100:.1f}".replace(".", decimal)
    if isinstance(value, str):
        value = _clean(value)  # as in the workbook: a lone surrogate could not even be encoded
        if value.startswith(_FORMULA_START):
            # a name or code as text, never a formula Excel or LibreOffice would run:
            # the quote is how they mark text; numbers (a change of -3) stay numbers
            return "'" + value
    return value


def csv_bytes(report: Report, t: Translate, *, excel_vn: bool = False) -> bytes:
    """The report as one CSV table (UTF-8 with a BOM): the agencies with their ``level``
    (0: the root, or the province's total), or the communes and wards for the communes.

    By default ``,`` between fields and ``.`` in decimals (``49.1``), for programs.
    ``excel_vn``: as Excel with Vietnamese regional settings reads a CSV it opens, ``;``
    between fields and ``,`` in decimals (``49,1``)."""
    delimiter, decimal = (";", ",") if excel_vn else (",", ".")
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    if report.scope == "communes":
        columns = _ward_columns(t)
        writer.writerow([c.header for c in columns])
        for ward in report.wards:
            writer.writerow(_csv_value(v, c.kind, decimal)
                            for c, v in zip(columns, _ward_row(ward, t), strict=True))
    else:
        doses = _doses(report)
        columns = [_Column(t("report.file.col.level"), "count", 0), *_agency_columns(t, doses)]
        codes = _codes(report)
        writer.writerow([c.header for c in columns])
        if report.root is None:  # the province: its total first, as level 0
            total = _province_line(report, t)
            writer.writerow(_csv_value(v, c.kind, decimal) for c, v in zip(
                columns, [0, *_agency_row(total, "", doses, own=False)], strict=True))
        for level, line in _leveled(report):
            parent = codes.get(line.parent_id, "") if line.parent_id is not None else ""
            values = [level, *_agency_row(line, parent, doses)]
            writer.writerow(_csv_value(v, c.kind, decimal)
                            for c, v in zip(columns, values, strict=True))
    return "\ufeff".encode() + out.getvalue().encode("utf-8")


# --------------------------------------------------------------------------------------------
# The chart
# --------------------------------------------------------------------------------------------

_CHART_LOCK = threading.Lock()  # matplotlib's font caches are shared: one chart at a time
_DARK, _LIGHT, _GREY = "#1f5fa8", "#b7d0ea", "#555555"
_FONT = "DejaVu Sans"  # Vietnamese letters all drawn; shipped with matplotlib


@dataclass(frozen=True)
class _Bar:
    """A bar: two shares, each as (part, whole): for agencies, complete and joined, both of
    the expected staff; for communes, adults vaccinated of the adults and vaccinated of the
    registered."""

    label: str
    main_of: tuple[int, int]
    second_of: tuple[int, int]

    @property
    def main(self) -> float | None:
        return _share(*self.main_of)

    @property
    def second(self) -> float | None:
        return _share(*self.second_of)


_GLYPHS: frozenset[int] | None = None  # the characters the chart's font draws


def _glyphs() -> frozenset[int]:
    """The characters DejaVu Sans (the charts' font, shipped with matplotlib) has a glyph for;
    read once, under :data:`_CHART_LOCK`."""
    global _GLYPHS
    if _GLYPHS is None:
        from matplotlib import font_manager
        from matplotlib.ft2font import FT2Font

        path = font_manager.findfont(font_manager.FontProperties(family=_FONT),
                                     fallback_to_default=False)
        _GLYPHS = frozenset(FT2Font(path).get_charmap())
    return _GLYPHS


def _short(text: str) -> str:
    """A name as a label: one space between words, letters composed (NFC: a letter and its
    marks as one glyph, as the font draws them), without what the font cannot draw (an emoji,
    a control character, a character XML cannot hold) rather than a box in its place."""
    glyphs = _glyphs()
    text = "".join(c for c in unicodedata.normalize("NFC", text)
                   if c.isspace() or (ord(c) in glyphs and unicodedata.category(c) != "Cc"))
    return _words(text)


def _agency_bar(line: AgencyLine) -> _Bar:
    return _Bar(_short(line.name) or line.code, (line.total.complete, line.expected),
                (line.total.joined, line.expected))


def _bars(report: Report, t: Translate) -> tuple[list[_Bar], str, str]:
    """The bars of a chart and their two legends."""
    if report.scope == "communes":
        bars = [
            _Bar(_short(_ward_label(w.ward_code, t)), (w.adults_vaccinated, w.adults),
                 (w.vaccinated, w.registered))
            for w in report.wards
        ]
        return bars, t("report.chart.adults_vaccinated"), t("report.chart.vaccinated")
    legends = t("report.chart.complete"), t("report.chart.joined")
    root = report.root
    if root is None:
        return [_agency_bar(line) for line in report.lines if line.depth == 0], *legends
    children = [line for line in report.lines if line.depth == root.depth + 1]
    if not children:
        return [_agency_bar(root)], *legends
    bars = [_agency_bar(line) for line in children]
    if root.own.joined:
        expected = max(0, root.expected - sum(line.expected for line in children))
        bars.append(_Bar(_words(t("report.chart.own", name=_short(root.name) or root.code)),
                         (root.own.complete, expected), (root.own.joined, expected)))
    return bars, *legends


def _chosen(report: Report, t: Translate) -> tuple[list[_Bar], int, str, str]:
    """The bars a chart shows, the lowest first (no expected staff last), at most
    :data:`MAX_BARS`; how many there were; the two legends."""
    bars, main_legend, second_legend = _bars(report, t)
    ranked = sorted(bars, key=lambda b: (b.main is None, b.main or 0.0, b.second or 0.0, b.label))
    return ranked[:MAX_BARS], len(ranked), main_legend, second_legend


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f}%"


def _count_share(part: int, whole: int, thousands: str = ".") -> str:
    """``12/40 · 30%``: the count with its share, so 1 of 2 reads unlike 50 of 100;
    thousands grouped as the language does (``1.250``, ``1,250``)."""
    if not whole:
        return "–"
    return (f"{part:,}/{whole:,}".replace(",", thousands)
            + f" · {_percent(_share(part, whole))}")


def _axis_end(largest: float) -> float:
    """Where the share axis ends (percent): at 100, a share's end, unless every bar is at
    most 40%; then at the first of 10, 20 or 50 above the largest with a little room, so
    0–10% coverage is not squeezed into the left tenth. The ticks say where it ends."""
    for end in (10.0, 20.0, 50.0):
        if largest <= end * 0.8:
            return end
    return 100.0


def _title(report: Report, t: Translate) -> str:
    if report.root is not None:
        root = report.root
        return t("report.chart.title.agency", name=_short(root.name), code=root.code)
    return t(f"report.chart.title.{report.scope}")


def _matplotlib_dirs() -> None:
    """matplotlib keeps its settings and font list in ``~/.config`` and ``~/.cache``; where the
    home is read-only (a service account) it would make a new temporary directory at every
    start, rebuild the font list there and log a warning: give it one lasting directory under
    the system's temporary directory instead. Only before matplotlib is first imported."""
    if os.environ.get("MPLCONFIGDIR"):
        return
    try:
        home = Path.home()
        for base, default in (("XDG_CONFIG_HOME", ".config"), ("XDG_CACHE_HOME", ".cache")):
            folder = Path(os.environ.get(base) or home / default) / "matplotlib"
            folder.mkdir(parents=True, exist_ok=True)
            if not os.access(folder, os.W_OK):
                raise PermissionError(folder)
        return
    except (OSError, RuntimeError):
        pass
    uid = getattr(os, "getuid", lambda: "user")()
    fallback = Path(tempfile.gettempdir()) / f"healthbook-matplotlib-{uid}"
    try:
        fallback.mkdir(mode=0o700, exist_ok=True)
    except OSError:
        return  # matplotlib makes its own temporary directory
    if os.access(fallback, os.W_OK):
        os.environ["MPLCONFIGDIR"] = str(fallback)


def chart(report: Report, t: Translate, tz: ZoneInfo = PROVINCE_TZ) -> bytes:
    """A PNG bar chart of coverage by sub-unit (about 1000 pixels wide): the share of the
    expected staff with a complete health book (dark) and who joined (light), the lowest on
    top; for the communes, the share of adults vaccinated. At most :data:`MAX_BARS` bars."""
    with _CHART_LOCK:
        _matplotlib_dirs()
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        shown, count, main_legend, second_legend = _chosen(report, t)
        # names are drawn as written: a "$" is a dollar, never the start of a formula
        # (mathtext would draw "5$ và 10$" in italics, and "$\foo$" would not draw at all)
        with matplotlib.rc_context({"font.family": _FONT, "font.size": 10,
                                    "text.parse_math": False, "text.usetex": False}):
            fig = Figure(figsize=(10, 2.2 + 0.4 * max(1, len(shown))), dpi=100,
                         layout="constrained")
            FigureCanvasAgg(fig)
            ax = fig.add_subplot()
            title = _one_line(_title(report, t), 80)
            measure = t("report.chart.measure.communes" if report.scope == "communes"
                        else "report.chart.measure.staff")
            fig.suptitle(f"{title}\n{measure}\n{period(report, t, tz)}", x=0.01, ha="left",
                         fontsize=12)
            if shown:
                _draw_bars(ax, shown, t, main_legend, second_legend,
                           grouped=report.scope == "communes")
            else:
                ax.text(0.5, 0.5, t("report.chart.none"), ha="center", va="center",
                        transform=ax.transAxes, color=_GREY, fontsize=12)
                ax.set_axis_off()
            notes = [_moment(report, t, tz)]
            if count > len(shown):
                notes.append(t("report.chart.more", shown=len(shown), total=count))
            fig.supxlabel("  ·  ".join(notes), x=0.01, ha="left", fontsize=8, color=_GREY)
            out = io.BytesIO()
            fig.savefig(out, format="png", dpi=100, metadata={"Software": None})
        return out.getvalue()


def _draw_bars(
    ax: Any, shown: list[_Bar], t: Translate, main_legend: str, second_legend: str,
    grouped: bool = False,
) -> None:
    """Light bars for the second share, dark ones for the main share; each bar's counts and
    shares written after it ("12/40 · 30% — đã tham gia 20/40 · 50%"), so a 0% bar still
    shows; the first bar on top. Agencies: the dark bar in front of the light one (complete
    is part of joined, both of the expected staff). Communes (``grouped``): the two side by
    side, as their bases differ (adults, everyone registered) and the dark may be longer."""
    from matplotlib.ticker import PercentFormatter

    ys = list(range(len(shown)))
    seconds = [100 * (b.second or 0.0) for b in shown]
    mains = [100 * (b.main or 0.0) for b in shown]
    if grouped:
        ax.barh([y + 0.2 for y in ys], seconds, height=0.38, color=_LIGHT, label=second_legend)
        ax.barh([y - 0.2 for y in ys], mains, height=0.38, color=_DARK, label=main_legend)
    else:
        ax.barh(ys, seconds, height=0.8, color=_LIGHT, label=second_legend)
        ax.barh(ys, mains, height=0.45, color=_DARK, label=main_legend)
    top = _axis_end(max(0.0, *seconds, *mains))
    value = "report.chart.value.communes" if grouped else "report.chart.value.staff"
    thousands = t("report.chart.thousands")
    for y, bar, a, b in zip(ys, shown, mains, seconds, strict=True):
        if bar.main is None and bar.second is None:
            text, colour = t("report.chart.no_expected"), _GREY
        else:
            text = t(value, main=_count_share(*bar.main_of, thousands),
                     second=_count_share(*bar.second_of, thousands))
            colour = "black"
        # after the longer bar; past the axis' end if need be (the layout makes room)
        ax.text(max(a, b) + top * 0.01, y, text, va="center", fontsize=9, color=colour,
                clip_on=False)
    ax.set_yticks(ys, [_wrapped(b.label) for b in shown], fontsize=9)
    ax.set_ylim(len(shown) - 0.5, -0.5)  # the lowest on top, no margin
    ax.set_xlim(0, top)
    ax.xaxis.set_major_formatter(PercentFormatter(xmax=100, decimals=0))
    ax.set_xlabel(t("report.chart.axis"))
    ax.xaxis.grid(True, color="#dddddd")
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], labels[::-1], loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=2,
              fontsize=9, frameon=False, borderaxespad=0.2)


def _words(text: str) -> str:
    """One space between words."""
    return " ".join(text.split())


def _one_line(text: str, width: int) -> str:
    text = _words(text)
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def _wrapped(label: str) -> str:
    """A bar's label on at most two lines."""
    return "\n".join(textwrap.wrap(label, LABEL_WIDTH, max_lines=2, placeholder=" …"))


__all__ = ["MAX_BARS", "PROVINCE_TZ", "chart", "csv_bytes", "period", "workbook"]
