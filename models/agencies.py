"""Agencies of the province and their staff.

Agencies form a tree (:class:`~models.tables.Agency`): province departments (sở, ban, ngành),
commune people's committees, schools, hospitals, businesses, and their sub-units, each with a
code, a parent, an expected staff count and one or more heads (by messenger account). A
subtree is the agencies whose ``path`` starts with its root's: ``/1/5/`` holds ``/1/5/23/``.

Staff join their agency with ``/agency CODE`` (one at a time; moving closes the old membership
and opens the new one, both dated). A head sees and removes the members of their own agency,
and reads the reports of its subtree. No messenger types here: the caller owns the transaction.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from models.errors import DomainError
from models.reference import DATA_DIR
from models.tables import Account, Agency, AgencyHead, AgencyMember, HealthBook
from models.validators import fold

#: the kinds of agency (the CSV's ``kind`` column)
KINDS = ("department", "commune", "school", "hospital", "business", "unit", "other")
#: an agency code: letters, digits, ``-``, ``_`` and ``.``, up to 32 (the CSV's and /agency's)
CODE_MAX = 32


def normalize_code(text: str) -> str:
    """An agency code as stored: trimmed, upper case; ValueError when it cannot be one."""
    code = text.strip().upper()
    if not code or len(code) > CODE_MAX or not all(c.isascii() and (c.isalnum() or c in "-_.")
                                                     for c in code):
        raise ValueError("an agency code is letters, digits, - _ or ., e.g. SYT or UBND-X-BATXAT")
    return code


#: the code the chat's messages give as an example (``/agency VIDU``): no agency holds it, so
#: staff who copy the example join nobody and are told to ask their agency for its code
EXAMPLE_CODE = "VIDU"
#: codes that /agency or /report read as a word (leave; the province; the communes; the
#: example), whatever agency holds them: refused for new and imported agencies (see
#: :func:`code_problem`)
RESERVED_CODES = frozenset(
    {"LEAVE", "ROI", "THOAT", "PROVINCE", "TINH", "COMMUNES", "XA", EXAMPLE_CODE}
)
_WEEKISH = re.compile(r"^\d{4}-?W", re.IGNORECASE)  # /report reads it as a week


def code_problem(code: str) -> str | None:
    """Why an agency cannot be given ``code`` (as stored, see :func:`normalize_code`), or
    None: a word of /agency or /report, a week, or a first character that is not a letter or
    digit (a spreadsheet would read ``-A1`` as a formula)."""
    if code == EXAMPLE_CODE:
        return (
            f"the code {code} is the example the chat's messages give (/agency {code}): "
            "choose another code"
        )
    if code in RESERVED_CODES:
        return (
            f"the code {code} is a word of /agency or /report (leave, the province, the "
            "communes): choose another code"
        )
    if _WEEKISH.match(code):
        return f"the code {code} reads as a week in /report (like 2026-W48): choose another code"
    if not code[:1].isalnum():
        return f"the code {code} must begin with a letter or a digit"
    return None


class TextProblem(ValueError):
    """A name that cannot be stored: ``key`` and ``params`` name the message (agency.po);
    the text itself says it in English (the CSV's and the command line's language)."""

    def __init__(self, reason: str, key: str, **params: Any) -> None:
        super().__init__(reason)
        self.key, self.params = key, params


#: characters no name holds: controls, invisible formatting, surrogates, private use and
#: unassigned code points (U+FFFE, U+FFFF and the other non-characters among them)
_NOT_IN_A_NAME = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def printable(text: str) -> str:
    """``text`` safe for a terminal: any character that is not printable as ``\\uXXXX``."""
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def _misread_bytes() -> dict[str, int]:
    """Each character a byte 0x80-0xFF reads as in Windows-1252, Windows-1258 or Latin-1."""
    table = {chr(b): b for b in range(0x80, 0x100)}
    for encoding in ("cp1258", "cp1252"):
        for b in range(0x80, 0x100):
            try:
                table[bytes([b]).decode(encoding)] = b
            except UnicodeDecodeError:
                continue
    return table


def _vietnamese_letters() -> frozenset[str]:
    """The letters of Vietnamese beyond ASCII, both cases (precomposed)."""
    tones = ("", "\u0300", "\u0301", "\u0303", "\u0309", "\u0323")
    small = {unicodedata.normalize("NFC", v + t) for v in "aăâeêioôơuưy" for t in tones} | {"đ"}
    return frozenset(c for c in small | {c.upper() for c in small} if not c.isascii())


_MISREAD = _misread_bytes()
_VIETNAMESE = _vietnamese_letters()
#: after Ã or Ă (0xC3), typographic marks are real text ("NGÃ”"), not a letter misread
_MARKS = frozenset("\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u2026\u2039\u203a\xa0\xad")


def garbled(text: str) -> tuple[str, str] | None:
    """The first run of ``text`` that is a Vietnamese letter's UTF-8 read as Windows-1252 or
    -1258 (a CSV UTF-8 file opened in Excel as ANSI and saved again: ``Sá»Ÿ`` for ``Sở``),
    with that letter; None when there is none. Only runs that spell a Vietnamese letter
    count, and real Vietnamese never holds them (a letter read as a byte 0x80-0xBF is not a
    Vietnamese letter)."""
    for i, char in enumerate(text):
        lead = _MISREAD.get(char, 0)
        if not 0xC2 <= lead <= 0xEF:
            continue
        run = text[i : i + (2 if lead < 0xE0 else 3)]
        raw = bytes(_MISREAD.get(c, 0) for c in run)
        if len(run) < (2 if lead < 0xE0 else 3) or not all(0x80 <= b <= 0xBF for b in raw[1:]):
            continue
        if lead == 0xC3 and run[1] in _MARKS:
            continue
        try:
            letter = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if letter in _VIETNAMESE:
            return run, letter
    return None


def clean_name(text: str) -> str:
    """An agency name as stored: spaces trimmed and collapsed, NFC. :class:`TextProblem` when
    it is empty or too long, was read in the wrong encoding, or holds a character no name
    holds (controls, invisible formatting, non-characters, lone surrogates)."""
    misread = garbled(text)
    if misread is not None:
        run, letter = misread
        raise TextProblem(
            f'the name looks garbled ("{printable(run)}" is "{letter}" read in the wrong '
            "encoding)",
            "agency.garbled_name",
            run=printable(run),
            letter=letter,
        )
    name = " ".join(text.split())
    for n, char in enumerate(name, 1):
        if unicodedata.category(char) in _NOT_IN_A_NAME:
            shown = f"U+{ord(char):04X}"
            raise TextProblem(
                f"the name holds a control or invisible character ({shown}, character {n}): "
                "type the name again",
                "agency.bad_character",
                char=shown,
                n=n,
            )
    name = unicodedata.normalize("NFC", name)
    if not name:
        raise TextProblem("the name is empty", "agency.bad_name", max=NAME_MAX)
    if len(name) > NAME_MAX:
        raise TextProblem(
            f"the name is longer than {NAME_MAX} characters", "agency.bad_name", max=NAME_MAX
        )
    return name


def in_subtree(agency: Agency | str, root: Agency | str) -> bool:
    """Whether ``agency`` is ``root`` or one of its sub-units (by their paths)."""
    path = agency if isinstance(agency, str) else agency.path
    prefix = root if isinstance(root, str) else root.path
    return path.startswith(prefix)


async def by_code(session: AsyncSession, code: str) -> Agency | None:
    """The agency of a code (as typed: normalized first), or None."""
    try:
        code = normalize_code(code)
    except ValueError:
        return None
    return await session.scalar(select(Agency).where(Agency.code == code))


@dataclass(frozen=True)
class Named:
    """Agencies whose name is what someone typed (``/agency Sở Y tế``): up to the limit, by
    code, and how many there are in all."""

    agencies: list[tuple[str, str]]  # (code, name)
    total: int


#: a typed name shorter than this (folded) is looked for as a whole name only
_PART_MIN = 4


async def named(session: AsyncSession, text: str, limit: int = 5) -> Named:
    """The agencies whose name, folded (:func:`~models.validators.fold`: no accents, case or
    punctuation), is ``text`` folded; when none is, those whose name begins with it (whole
    words), else those whose name holds it. Joining is by code only: this tells a person who
    typed a name which code they meant."""
    key = fold(text)
    if not key:
        return Named([], 0)
    rows = [(code, name, f" {fold(name)} ") for code, name in
            (await session.execute(select(Agency.code, Agency.name))).all()]  # fmt: skip
    found = [(code, name) for code, name, folded in rows if folded == f" {key} "]
    if not found and len(key) >= _PART_MIN:
        found = [(c, n) for c, n, folded in rows if folded.startswith(f" {key} ")] or [
            (c, n) for c, n, folded in rows if f" {key} " in folded
        ]
    found.sort()
    return Named(found[:limit], len(found))


def _person(account: Account) -> Select[tuple[int]]:
    """The ids of every account of the person ``account`` is one of (linked accounts)."""
    primary = account.linked_to or account.id
    return select(Account.id).where(or_(Account.id == primary, Account.linked_to == primary))


async def headed(session: AsyncSession, account: Account | None) -> list[Agency]:
    """The agencies a person heads (by any of their linked accounts), by code (none for no
    account)."""
    if account is None:
        return []
    return list(
        await session.scalars(
            select(Agency)
            .where(
                Agency.id.in_(
                    select(AgencyHead.agency_id).where(AgencyHead.account_id.in_(_person(account)))
                )
            )
            .order_by(Agency.code)
        )
    )


async def heads(session: AsyncSession, account: Account | None, agency: Agency) -> bool:
    """Whether a person heads ``agency`` itself (not one above it): who sees and removes its
    members."""
    if account is None:
        return False
    found = await session.scalar(
        select(AgencyHead.agency_id)
        .where(AgencyHead.agency_id == agency.id, AgencyHead.account_id.in_(_person(account)))
        .limit(1)
    )
    return found is not None


async def head_accounts(session: AsyncSession, agency: Agency) -> list[Account]:
    """The accounts holding ``agency``'s head role (whom to tell about its staff), by id."""
    return list(
        await session.scalars(
            select(Account)
            .where(
                Account.id.in_(
                    select(AgencyHead.account_id).where(AgencyHead.agency_id == agency.id)
                )
            )
            .order_by(Account.id)
        )
    )


async def may_read(session: AsyncSession, account: Account | None, agency: Agency) -> bool:
    """Whether a person heads ``agency`` or one of the agencies above it (its reports)."""
    return any(in_subtree(agency, root) for root in await headed(session, account))


async def membership(session: AsyncSession, account_id: int) -> AgencyMember | None:
    """An account's open membership (the agency it is staff of now), or None."""
    return await session.scalar(
        select(AgencyMember).where(
            AgencyMember.account_id == account_id, AgencyMember.left_at.is_(None)
        )
    )


# --------------------------------------------------------------------------------------------
# Importing the tree from a CSV file (healthbook agencies import)
# --------------------------------------------------------------------------------------------

#: the CSV's columns (a header row names them, in any order; other columns are ignored)
COLUMNS = ("code", "name", "parent_code", "kind", "expected_staff")
NAME_MAX = 200
PATH_MAX = 400  # agencies.path is String(400)
EXPECTED_MAX = 1_000_000
#: the largest file imported (about 20 times the province's agencies): larger is refused
MAX_FILE_BYTES = 5_000_000
MAX_ROWS = 20_000
SAMPLE = DATA_DIR / "agencies_sample.csv"


@dataclass(frozen=True)
class ImportResult:
    """What an import did: agencies created, changed (name, kind, parent or expected staff),
    left as they were, and sub-units whose place in the tree moved with a parent."""

    created: int
    updated: int
    unchanged: int = 0
    repathed: int = 0


#: lines named when one problem is on many lines (the others counted)
SHOWN_LINES = 5


@dataclass(frozen=True)
class CsvProblem:
    """One reason a CSV file cannot be imported, at its line (1 is the header); the same
    reason on other lines too, ``also``, is said once with them (``lines 2, 5, 7 and 12
    more: …``)."""

    line: int
    reason: str
    also: tuple[int, ...] = ()

    def __str__(self) -> str:
        if not self.also:
            return f"line {self.line}: {self.reason}"
        lines = [self.line, *self.also]
        shown, rest = [str(n) for n in lines[:SHOWN_LINES]], len(lines) - SHOWN_LINES
        if rest > 0:
            named = ", ".join(shown) + f" and {rest} more"
        else:
            named = ", ".join(shown[:-1]) + f" and {shown[-1]}"
        return f"lines {named}: {self.reason}"


class CsvError(ValueError):
    """A CSV file that cannot be imported; ``problems`` lists every reason, by line. Nothing
    of the file was written."""

    def __init__(self, problems: Sequence[CsvProblem]) -> None:
        self.problems = sorted(problems, key=lambda p: p.line)
        super().__init__("; ".join(str(p) for p in self.problems))


@dataclass
class _Row:
    line: int
    code: str
    name: str
    parent: str | None
    kind: str
    expected: int


@dataclass
class _Node:
    """An agency as it will be after the import (existing or new)."""

    code: str
    parent: str | None
    id: int  # a new agency's: the id it will likely get
    line: int | None = None  # in the file


_SAVE_AS = 'in Excel use "Save as" "CSV UTF-8 (Comma delimited)"'


#: how files that are not CSV text begin, and what they are
_NOT_TEXT = (
    (b"PK\x03\x04", "an Excel workbook (.xlsx)"),
    (b"\xd0\xcf\x11\xe0", "an old Excel workbook (.xls)"),
    (b"\xff\xfe", "UTF-16 text (Excel's \"Unicode Text\")"),
    (b"\xfe\xff", "UTF-16 text"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a picture"),
    (b"\xff\xd8\xff", "a picture"),
)


def _decode(data: bytes) -> str:
    """The file's text (a BOM dropped). CsvError in one line: for a workbook or any other
    file that is not text, what it is; for text that is not UTF-8, the lines that are not
    (the first few, then how many more)."""
    kind = next((what for magic, what in _NOT_TEXT if data.startswith(magic)), None)
    if kind is not None:
        raise CsvError([CsvProblem(1, f"this is {kind}, not a CSV file: {_SAVE_AS}")])
    if data[:4096].count(b"\x00") >= 4:  # one in a name is that name's fault, said by line
        raise CsvError([CsvProblem(1, f"this is not a text file: {_SAVE_AS}")])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    bad = []
    for number, raw in enumerate(data.split(b"\n"), 1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            bad.append(number)
    reason = f"the text is not UTF-8 (letters with accents are unreadable); {_SAVE_AS}"
    bad = bad or [1]
    raise CsvError([CsvProblem(bad[0], reason, tuple(bad[1:]))])


def _delimiter(header: str) -> str:
    """``,`` or ``;`` (Excel in Vietnamese writes ``;``): whichever the header holds more of."""
    return ";" if header.count(";") > header.count(",") else ","


def _rows(text: str) -> tuple[list[_Row], list[CsvProblem]]:
    """Every row read and checked on its own (codes, names, kinds, numbers, duplicates): the
    rows whose code and parent code can be placed in the tree, and every problem."""
    header_line = text.split("\n", 1)[0]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(header_line))
    try:
        header = next(reader)
    except StopIteration:
        return [], [
            CsvProblem(1, "the file is empty: a header row is needed: " + ",".join(COLUMNS))
        ]
    names = [h.strip().lower() for h in header]
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        return [], [
            CsvProblem(
                1,
                f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                f"(the header must name: {','.join(COLUMNS)})",
            )
        ]
    index = {c: names.index(c) for c in COLUMNS}
    rows: list[_Row] = []
    problems: list[CsvProblem] = []
    seen: dict[str, int] = {}
    end = reader.line_num
    count = 0
    for record in reader:
        line, end = end + 1, reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        count += 1
        if count > MAX_ROWS:
            problems.append(CsvProblem(line, _TOO_MANY))
            break
        cells = {c: (record[i].strip() if i < len(record) else "") for c, i in index.items()}
        row_problems = []
        raw_code = cells["code"]
        code = ""
        if not raw_code:
            row_problems.append("the code is empty")
        elif len(raw_code) > CODE_MAX:
            row_problems.append(f"the code {raw_code[:40]!r} is longer than {CODE_MAX} characters")
        else:
            try:
                code = normalize_code(raw_code)
            except ValueError:
                row_problems.append(
                    f"the code {raw_code!r} is not valid (letters, digits, - _ or . only)"
                )
            else:
                reserved = code_problem(code)
                if reserved is not None:
                    row_problems.append(reserved)
        placed = bool(code)  # in the tree check (its other faults are reported all the same)
        if code and code in seen:
            row_problems.append(f"the code {code} is already on line {seen[code]}")
            placed = False
        elif code:
            seen[code] = line
        try:
            name = clean_name(cells["name"])
        except TextProblem as problem:
            name = ""
            row_problems.append(
                f"{problem}: {_SAVE_AS}" if problem.key == "agency.garbled_name" else str(problem)
            )
        parent: str | None = None
        if cells["parent_code"]:
            try:
                parent = normalize_code(cells["parent_code"])
            except ValueError:
                row_problems.append(f"the parent code {cells['parent_code'][:40]!r} is not valid")
                placed = False
        if parent is not None and parent == code:
            row_problems.append(f"the agency {code} cannot be its own parent")
            placed = False
        kind = cells["kind"].lower()
        if kind not in KINDS:
            row_problems.append(f"unknown kind {cells['kind'][:30]!r} (one of: {', '.join(KINDS)})")
        expected = 0
        raw = cells["expected_staff"]
        if raw:
            number = staff_count(raw)
            if number is not None:
                expected = number
            else:
                row_problems.append(
                    f"expected_staff {cells['expected_staff'][:20]!r} is not a whole number "
                    f"from 0 to {EXPECTED_MAX}"
                )
        problems += [CsvProblem(line, reason) for reason in row_problems]
        if placed:
            rows.append(_Row(line, code, name, parent, kind, expected))
    if not rows and not problems:
        problems.append(CsvProblem(1, "the file has a header but no agencies"))
    return rows, problems


#: a whole number with its thousands grouped as Excel writes them: ``1.200`` (Vietnamese),
#: ``1,200``, ``1 200`` (one separator throughout, groups of exactly three digits)
_GROUPED = re.compile(r"\d{1,3}([., ])\d{3}(?:\1\d{3})*")


def staff_count(text: str) -> int | None:
    """An expected staff count as a spreadsheet writes it: ``1200``, or with its thousands
    grouped (``1.200``, ``1,200``, ``1 200``: groups of exactly three digits, so ``1.5``
    is not 15); None when it is not a whole number from 0 to :data:`EXPECTED_MAX`."""
    raw = text.strip().replace("\u00a0", " ").replace("\u202f", " ")  # Excel's group spaces
    if not raw.isascii():
        return None
    if raw.isdigit():
        number = int(raw)
    elif _GROUPED.fullmatch(raw):
        number = int(re.sub(r"\D", "", raw))
    else:
        return None
    return number if number <= EXPECTED_MAX else None


_SPLIT = "split it into several files, parents first, and import them one after the other"
_TOO_MANY = f"more than {MAX_ROWS:,} agencies in one file: {_SPLIT}"
_TOO_LARGE = f"the file is larger than {MAX_FILE_BYTES // 1_000_000} MB: {_SPLIT}"


def _check_tree(rows: list[_Row], nodes: dict[str, _Node]) -> list[CsvProblem]:
    """Unknown parents, cycles and too deep a tree, once every row is in ``nodes`` (a new
    agency with the id it will likely get)."""
    problems: list[CsvProblem] = []
    for row in rows:
        if row.parent is not None and row.parent not in nodes:
            reason = f"unknown parent {row.parent}: neither in the file nor already imported"
            problems.append(CsvProblem(row.line, reason))
    if problems:
        return problems
    # walk up from each agency of the file; a walk that meets itself is a cycle
    state: dict[str, int] = {}  # 1: being walked, 2: reaches a root
    depth: dict[str, int] = {}  # path length in characters, ids estimated for new agencies
    reported: set[frozenset[str]] = set()
    for row in rows:
        chain: list[str] = []
        code: str | None = row.code
        while code is not None and state.get(code) is None:
            state[code] = 1
            chain.append(code)
            code = nodes[code].parent
        if code is not None and state[code] == 1:  # back to a code of this walk: a cycle
            cycle = chain[chain.index(code) :]
            key = frozenset(cycle)
            if key not in reported:
                reported.add(key)
                at = min((nodes[c].line or row.line for c in cycle), default=row.line)
                shown = " → ".join([*cycle, code])
                problems.append(CsvProblem(at, f"a cycle of parents: {shown}"))
            for c in chain:
                state[c] = 3  # in or above a cycle: no depth
            continue
        length = 1 if code is None else depth.get(code, -1)
        for c in reversed(chain):
            if length < 0:
                state[c] = 3
                continue
            node = nodes[c]
            length += len(str(node.id)) + 1
            depth[c] = length
            state[c] = 2
    for row in rows:
        if depth.get(row.code, 0) > PATH_MAX:
            reason = (
                f"the tree is too deep above {row.code} (its path would need "
                f"{depth[row.code]} characters, at most {PATH_MAX})"
            )
            problems.append(CsvProblem(row.line, reason))
    return problems


async def import_csv(session: AsyncSession, data: bytes, now: dt.datetime) -> ImportResult:
    """Create or update agencies from a CSV file (``code,name,parent_code,kind,expected_staff``,
    UTF-8, ``,`` or ``;``), by code. All or nothing: every problem is found first and raised
    together as :class:`CsvError` (nothing written). Then, in bulk whatever the file's size:
    one insert of the new agencies, one update of the changed ones and of the paths of every
    agency under one whose parent changed. (The caller rolls back on a :class:`CsvError`.)"""
    if len(data) > MAX_FILE_BYTES:
        raise CsvError([CsvProblem(1, _TOO_LARGE)])
    rows, problems = _rows(_decode(data))
    if not rows:
        raise CsvError(problems)
    existing = {
        r.code: r
        for r in await session.execute(
            select(
                Agency.id, Agency.code, Agency.parent_id, Agency.path, Agency.name, Agency.kind,
                Agency.expected_staff,
            )
        )
    }  # fmt: skip
    code_of = {r.id: r.code for r in existing.values()}
    nodes = {
        code: _Node(code, code_of[r.parent_id] if r.parent_id else None, r.id)
        for code, r in existing.items()
    }
    top = max(code_of, default=0)
    for row in rows:
        node = nodes.get(row.code)
        if node is None:
            top += 1
            nodes[row.code] = _Node(row.code, row.parent, top, row.line)
        else:
            node.parent, node.line = row.parent, row.line
    problems += _check_tree(rows, nodes)
    if problems:
        raise CsvError(problems)
    created = [r for r in rows if r.code not in existing]
    ids = {code: r.id for code, r in existing.items()}
    if created:
        inserted = await session.execute(
            insert(Agency).returning(Agency.id, Agency.code),
            [
                {
                    "code": r.code,
                    "name": r.name,
                    "kind": r.kind,
                    "path": "/",
                    "expected_staff": r.expected,
                    "created_at": now,
                    "updated_at": now,
                }
                for r in created
            ],
        )
        ids.update({code: i for i, code in inserted.all()})
    # the tree as it will be: every agency's parent, then every path from the roots down
    parent_of: dict[int, int | None] = {r.id: r.parent_id for r in existing.values()}
    changes: dict[int, dict[str, Any]] = {}
    moved: set[int] = set()
    updated = unchanged = 0
    for row in rows:
        agency_id, parent_id = ids[row.code], ids[row.parent] if row.parent else None
        parent_of[agency_id] = parent_id
        was = existing.get(row.code)
        if was is None:
            changes[agency_id] = {"parent_id": parent_id}
        elif (was.name, was.kind, was.expected_staff, was.parent_id) == (
            row.name, row.kind, row.expected, parent_id,
        ):  # fmt: skip
            unchanged += 1
        else:
            updated += 1
            if was.parent_id != parent_id:
                moved.add(agency_id)
            changes[agency_id] = {
                "name": row.name,
                "kind": row.kind,
                "expected_staff": row.expected,
                "parent_id": parent_id,
                "updated_at": now,
            }
    children: dict[int | None, list[int]] = {}
    for agency_id, parent_id in parent_of.items():
        children.setdefault(parent_id, []).append(agency_id)
    old_path = {r.id: r.path for r in existing.values()}
    lines = {ids[r.code]: r.line for r in rows}
    repathed = 0
    stack: list[tuple[int, str, int]] = [(i, "/", 1) for i in children.get(None, [])]
    while stack:
        agency_id, above, line = stack.pop()
        path = f"{above}{agency_id}/"
        line = lines.get(agency_id, line)  # the row that put it there
        if len(path) > PATH_MAX:  # ids came out longer than foreseen: refused all the same
            code = next(c for c, i in ids.items() if i == agency_id)
            raise CsvError([CsvProblem(line, f"the tree is too deep above {code}")])
        if old_path.get(agency_id) != path:
            if agency_id in old_path and agency_id not in moved:
                repathed += 1
            changes.setdefault(agency_id, {})["path"] = path
        stack.extend((child, path, line) for child in children.get(agency_id, []))
    if changes:
        await session.execute(
            update(Agency), [{"id": agency_id, **values} for agency_id, values in changes.items()]
        )
    # bulk statements leave loaded objects as they were: read those again
    for held in [o for o in session.identity_map.values() if isinstance(o, Agency)]:
        await session.refresh(held)
    return ImportResult(len(created), updated, unchanged, repathed)


# --------------------------------------------------------------------------------------------
# One agency at a time (healthbook agencies add|list|set-head)
# --------------------------------------------------------------------------------------------


async def add(
    session: AsyncSession,
    code: str,
    name: str,
    kind: str,
    parent_code: str | None,
    expected_staff: int,
    now: dt.datetime | None = None,
) -> Agency:
    """A new agency under ``parent_code`` (None: at the top). Refused (DomainError) for a bad
    or reserved code (:func:`code_problem`), a bad name (:func:`clean_name`), kind or count,
    a code already taken or an unknown parent."""
    try:
        code = normalize_code(code)
    except ValueError:
        raise DomainError("agency.bad_code", code=printable(code[:40])) from None
    if code_problem(code) is not None:
        raise DomainError("agency.reserved_code", code=code)
    try:
        name = clean_name(name)
    except TextProblem as problem:
        raise DomainError(problem.key, **problem.params) from None
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise DomainError("agency.bad_kind", kinds=", ".join(KINDS))
    if not 0 <= expected_staff <= EXPECTED_MAX:
        raise DomainError("agency.bad_expected", max=EXPECTED_MAX)
    if await session.scalar(select(Agency.id).where(Agency.code == code)) is not None:
        raise DomainError("agency.exists", code=code)
    parent = None
    if parent_code:
        parent = await by_code(session, parent_code)
        if parent is None:
            raise DomainError("agency.unknown_parent", code=parent_code.strip()[:40])
    when = now or dt.datetime.now(dt.UTC)
    agency = Agency(
        code=code,
        name=name,
        kind=kind,
        parent_id=parent.id if parent else None,
        path="/",
        expected_staff=expected_staff,
        created_at=when,
        updated_at=when,
    )
    session.add(agency)
    await session.flush()
    agency.path = f"{parent.path if parent else '/'}{agency.id}/"
    if len(agency.path) > PATH_MAX:
        raise DomainError("agency.too_deep")
    await session.flush()
    return agency


async def set_head(session: AsyncSession, agency: Agency, account: Account) -> bool:
    """Make an account a head of ``agency`` (give the primary: the person's data are there);
    False when the person (by any of their accounts) was one already."""
    if await heads(session, account, agency):
        return False
    session.add(AgencyHead(agency_id=agency.id, account_id=account.id))
    await session.flush()
    return True


async def remove_head(session: AsyncSession, agency: Agency, account: Account) -> bool:
    """Take ``agency``'s head role from the person ``account`` is one of (from each of their
    linked accounts); False when they were not its head."""
    done = await session.execute(
        delete(AgencyHead)
        .where(AgencyHead.agency_id == agency.id, AgencyHead.account_id.in_(_person(account)))
        .execution_options(synchronize_session="fetch")
    )
    await session.flush()
    return bool(done.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Listed:
    """An agency in tree order: how deep under the listing's top, and its members now (its
    own, not its sub-units')."""

    agency: Agency
    depth: int
    members: int


async def listing(session: AsyncSession, under: Agency | None = None) -> list[Listed]:
    """The tree (or the subtree of ``under``), parents before their sub-units, sub-units by
    code; each with its members now (one query for the agencies, one for the counts)."""
    query = select(Agency)
    counted = (
        select(AgencyMember.agency_id, func.count())
        .where(AgencyMember.left_at.is_(None))
        .group_by(AgencyMember.agency_id)
    )
    if under is not None:
        query = query.where(Agency.path.startswith(under.path))
        counted = counted.join(Agency, Agency.id == AgencyMember.agency_id).where(
            Agency.path.startswith(under.path)
        )
    agencies = list(await session.scalars(query))
    counts: dict[int, int] = {i: n for i, n in (await session.execute(counted)).all()}
    ids = {a.id for a in agencies}
    children: dict[int | None, list[Agency]] = {}
    for agency in agencies:
        parent = agency.parent_id if agency.parent_id in ids else None
        children.setdefault(parent, []).append(agency)
    for siblings in children.values():
        siblings.sort(key=lambda a: a.code, reverse=True)
    out: list[Listed] = []
    stack = [(a, 0) for a in children.get(None, [])]
    while stack:
        agency, depth = stack.pop()
        out.append(Listed(agency, depth, counts.get(agency.id, 0)))
        stack.extend((child, depth + 1) for child in children.get(agency.id, []))
    return out


# --------------------------------------------------------------------------------------------
# Staff (/agency)
# --------------------------------------------------------------------------------------------


#: a person removed from an agency who joins it again within this many days: its heads are
#: told (they removed them; anyone can type a code)
REJOIN_DAYS = 30


@dataclass(frozen=True)
class Joined:
    """The answer to ``/agency CODE``: ``joined`` (first agency), ``moved`` (from
    ``previous``) or ``already`` (a member of it already); ``removed_at``: when a head of
    it last removed this person, if within :data:`REJOIN_DAYS`."""

    status: str
    agency: Agency
    previous: Agency | None = None
    removed_at: dt.datetime | None = None


async def join(session: AsyncSession, account: Account, agency: Agency, now: dt.datetime) -> Joined:
    """Make an account staff of ``agency`` from ``now``: an open membership elsewhere is
    closed (``moved``). Two joins at once for one account: the unique index on open
    memberships lets one through; the other reads it again (``already`` or a move), and
    after a second collision is refused (``agency.busy``)."""
    for _ in range(2):
        current = await membership(session, account.id)
        if current is not None and current.agency_id == agency.id:
            return Joined("already", agency)
        try:
            async with session.begin_nested():
                if current is not None:
                    current.left_at, current.left_reason = now, "moved"
                    await session.flush()
                session.add(AgencyMember(account_id=account.id, agency_id=agency.id, joined_at=now))
                await session.flush()
        except IntegrityError:  # another join of this account came first: read it again
            continue
        removed_at = await session.scalar(
            select(func.max(AgencyMember.left_at)).where(
                AgencyMember.account_id == account.id,
                AgencyMember.agency_id == agency.id,
                AgencyMember.left_reason == "removed",
                AgencyMember.left_at > now - dt.timedelta(days=REJOIN_DAYS),
            )
        )
        if current is None:
            return Joined("joined", agency, removed_at=removed_at)
        previous = await session.get(Agency, current.agency_id)
        return Joined("moved", agency, previous, removed_at)
    raise DomainError("agency.busy")


async def leave(session: AsyncSession, account: Account, now: dt.datetime) -> Agency | None:
    """Close an account's open membership (``left``); the agency it left, None if none."""
    current = await membership(session, account.id)
    if current is None:
        return None
    current.left_at, current.left_reason = now, "left"
    await session.flush()
    return await session.get(Agency, current.agency_id)


@dataclass(frozen=True)
class Member:
    """A staff member as their head sees them: the membership's id, since when, and the name
    of their own health book (None when they have none yet)."""

    id: int
    account_id: int
    joined_at: dt.datetime
    name: str | None


def _member_columns() -> tuple[Any, ...]:
    """A membership's id, account, start, and the name of the member's own health book."""
    name = (
        select(HealthBook.full_name)
        .where(HealthBook.account_id == AgencyMember.account_id, HealthBook.relation == "self")
        .order_by(HealthBook.id)
        .limit(1)
        .scalar_subquery()
    )
    return AgencyMember.id, AgencyMember.account_id, AgencyMember.joined_at, name


async def members(
    session: AsyncSession, agency: Agency, *, offset: int = 0, limit: int | None = None
) -> list[Member]:
    """The open memberships of ``agency`` (not its sub-units'), in the order they joined,
    with the name of each member's own health book. For its heads only: check first."""
    query = (
        select(*_member_columns())
        .where(AgencyMember.agency_id == agency.id, AgencyMember.left_at.is_(None))
        .order_by(AgencyMember.joined_at, AgencyMember.id)
        .offset(offset)
        .limit(limit)
    )
    return [Member(*row) for row in (await session.execute(query)).all()]


async def member_count(session: AsyncSession, agency: Agency) -> int:
    """How many members ``agency`` has now (its own)."""
    return int(
        await session.scalar(
            select(func.count()).where(
                AgencyMember.agency_id == agency.id, AgencyMember.left_at.is_(None)
            )
        )
        or 0
    )


async def open_member(session: AsyncSession, agency: Agency, member_id: int) -> Member | None:
    """One open membership of ``agency`` by its id, with its name; None when it is not (any
    more) in it."""
    row = (
        await session.execute(
            select(*_member_columns()).where(
                AgencyMember.id == member_id,
                AgencyMember.agency_id == agency.id,
                AgencyMember.left_at.is_(None),
            )
        )
    ).first()
    return Member(*row) if row is not None else None


async def remove_member(
    session: AsyncSession, head: Account, agency: Agency, member_id: int, now: dt.datetime
) -> Member:
    """A head takes a member out of ``agency`` (``removed``, ``removed_by`` the head).
    ``member_id`` is the membership's id (what the head was shown). Refused (DomainError
    ``agency.not_allowed``) unless ``head`` heads that agency itself (a head of one above it
    reads its reports, not its staff's names) and the member is still in it."""
    if not await heads(session, head, agency):
        raise DomainError("agency.not_allowed")
    member = await open_member(session, agency, member_id)
    row = await session.get(AgencyMember, member_id) if member is not None else None
    if member is None or row is None or row.left_at is not None:
        raise DomainError("agency.not_allowed")
    row.left_at, row.left_reason, row.removed_by = now, "removed", head.id
    await session.flush()
    return member
