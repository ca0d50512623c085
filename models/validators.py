"""Validators for the health-book answers: pure functions, no Telegram.

Each parser takes what a person typed and returns a clean value, or raises
:class:`~models.errors.InvalidAnswer` whose ``key`` is an ``error.*`` message in
``locales/*/LC_MESSAGES/validators.po`` (the message says what is wrong and shows a right answer).
No exception ever carries a full ID number: only the part that disagrees and the expected value.
Reference data (ethnic groups, occupations, priority groups, screening items, administrative
units) comes from :mod:`models.reference` and is re-exported here.
"""

from __future__ import annotations

import calendar
import datetime as dt
import enum
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import phonenumbers

from models.errors import InvalidAnswer
from models.reference import (
    Answer,
    Ethnicity,
    ScreeningGroup,
    ScreeningItem,
    cccd_provinces,
    common_ethnicities,
    ethnicities,
    ethnicity_aliases,
    ethnicity_by_code,
    is_cccd_province,
    is_occupation,
    is_priority_group,
    is_province,
    occupations,
    priority_groups,
    province_name,
    provinces,
    screening_items,
    ward_example,
    ward_in_province,
    ward_name,
    wards,
)

__all__ = [
    "MAX_AGE",
    "NAME_MAX_LEN",
    "NAME_MIN_LEN",
    "Answer",
    "Ethnicity",
    "Gender",
    "IdNumber",
    "InvalidAnswer",
    "ScreeningGroup",
    "ScreeningItem",
    "age_on",
    "cccd_provinces",
    "clean_text",
    "common_ethnicities",
    "ethnicities",
    "ethnicity_by_code",
    "fold",
    "format_phone",
    "is_occupation",
    "is_priority_group",
    "is_province",
    "mask_bhyt",
    "mask_phone",
    "match_ethnicity",
    "normalize_name",
    "occupations",
    "parse_answer",
    "parse_bhyt",
    "parse_date_of_birth",
    "parse_gender",
    "parse_id_number",
    "parse_phone",
    "priority_groups",
    "province_name",
    "screening_items",
    "search_provinces",
    "search_wards",
    "ward_example",
    "ward_in_province",
    "ward_name",
]

MAX_AGE = 120
NAME_MIN_LEN = 2
NAME_MAX_LEN = 60
SEARCH_LIMIT = 10
_QUERY_ECHO_LEN = 40  # how much of a typed search text an error message repeats

# --- folding and free text -------------------------------------------------------------------

_APOSTROPHES = frozenset("'’‘`´ʼʻ")
_DROP_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})


def fold(text: str) -> str:
    """Accent- and case-insensitive key: ``fold("H'Mông") == fold("hmong") == "hmong"``."""
    out: list[str] = []
    for ch in unicodedata.normalize("NFD", text.casefold()):
        if unicodedata.category(ch).startswith("M") or ch in _APOSTROPHES:
            continue
        if ch == "đ":
            ch = "d"
        out.append(ch if ch.isalnum() else " ")
    return " ".join("".join(out).split())


def _squash(key: str) -> str:
    """A folded key without spaces, so ``"sapa"`` finds ``"sa pa"``."""
    return key.replace(" ", "")


def clean_text(text: str, *, max_len: int = 200, required: bool = True) -> str | None:
    """Tidy free text: NFC, no control characters, single spaces; ``None`` if empty and optional."""
    s = " ".join(unicodedata.normalize("NFC", text).split())
    s = "".join(ch for ch in s if unicodedata.category(ch) not in _DROP_CATEGORIES)
    s = unicodedata.normalize("NFC", " ".join(s.split()))
    if not s:
        if required:
            raise InvalidAnswer("error.text.empty")
        return None
    if len(s) > max_len:
        raise InvalidAnswer("error.text.too_long", max=max_len, length=len(s))
    return s


# --- names -----------------------------------------------------------------------------------

_NAME_MARKS = str.maketrans(
    {
        "’": "'",
        "‘": "'",
        "ʼ": "'",
        "`": "'",
        "´": "'",
        "ʻ": "'",
        "‐": "-",
        "‑": "-",
        "–": "-",
        "—": "-",
    }
)
_NAME_SPLIT = re.compile(r"([-'])")


def _name_chars_ok(name: str) -> bool:
    """Letters (with their combining marks), spaces, apostrophes and hyphens; a letter per word."""
    for word in name.split(" "):
        if not any(unicodedata.category(ch).startswith("L") for ch in word):
            return False
        for ch in word:
            if ch not in "'-" and unicodedata.category(ch)[0] not in "LM":
                return False
    return True


def _capitalize(word: str) -> str:
    """``"đỗ"`` → ``"Đỗ"``, ``"h'mông"`` → ``"H'Mông"``: each part after ``'`` or ``-`` too."""
    return "".join(part.capitalize() for part in _NAME_SPLIT.split(word))


def normalize_name(text: str) -> str:
    """A full name written properly: ``"nguyễn văn  an"`` → ``"Nguyễn Văn An"``."""
    words = unicodedata.normalize("NFC", text).translate(_NAME_MARKS).split()
    if not words:
        raise InvalidAnswer("error.name.empty")
    if not _name_chars_ok(" ".join(words)):
        raise InvalidAnswer("error.name.chars")
    name = unicodedata.normalize("NFC", " ".join(_capitalize(w) for w in words))
    name = " ".join(name.translate(_NAME_MARKS).split())
    if not _name_chars_ok(name):  # casing can, very rarely, turn a letter into something else
        raise InvalidAnswer("error.name.chars")
    if not NAME_MIN_LEN <= len(name) <= NAME_MAX_LEN:
        raise InvalidAnswer("error.name.length", min=NAME_MIN_LEN, max=NAME_MAX_LEN)
    return name


# --- dates -----------------------------------------------------------------------------------

_DATE_WORDS = frozenset({"ngay", "thang", "nam", "sinh", "date", "born"})


def _date_parts(text: str) -> tuple[int, int, int]:
    """Day, month and 4-digit year from any accepted format, or ``error.date.format``."""
    tokens = [t for t in fold(unicodedata.normalize("NFKC", text)).split() if t not in _DATE_WORDS]
    if not all(t.isascii() and t.isdigit() for t in tokens):
        raise InvalidAnswer("error.date.format")
    if len(tokens) == 1 and len(tokens[0]) == 8:  # 15031950
        t = tokens[0]
        return int(t[:2]), int(t[2:4]), int(t[4:])
    if len(tokens) == 3:
        a, b, c = tokens
        if len(a) <= 2 and len(b) <= 2 and len(c) == 4:  # 15/3/1950
            return int(a), int(b), int(c)
        if len(a) == 4 and len(b) <= 2 and len(c) <= 2:  # 1950-03-15
            return int(c), int(b), int(a)
    raise InvalidAnswer("error.date.format")


def age_on(dob: dt.date, today: dt.date) -> int:
    """Age in whole years on ``today`` (someone born on 29 February ages on 1 March)."""
    return today.year - dob.year - ((today.month, today.day) < (dob.month, dob.day))


def parse_date_of_birth(text: str, today: dt.date) -> dt.date:
    """A date of birth typed as 15/3/1950, 15-03-1950, 15.03.1950, 1950-03-15, 15031950…"""
    day, month, year = _date_parts(text)
    if not 1 <= month <= 12:
        raise InvalidAnswer("error.date.month", month=month)
    if year < 1:
        raise InvalidAnswer("error.date.too_old", max_age=MAX_AGE)
    days = calendar.monthrange(year, month)[1]
    if not 1 <= day <= days:
        raise InvalidAnswer("error.date.impossible", day=day, month=month, year=year, days=days)
    dob = dt.date(year, month, day)
    if dob > today:
        raise InvalidAnswer("error.date.future", date=dob.strftime("%d/%m/%Y"))
    if age_on(dob, today) > MAX_AGE:
        raise InvalidAnswer("error.date.too_old", max_age=MAX_AGE)
    return dob


def parse_past_day(text: str, today: dt.date) -> dt.date:
    """A day on or before ``today`` as people here write it: ``1/11/2026``, ``01-11-2026``,
    ``2026-11-01``, or ``01/11`` without the year (this year's, or last year's when that day is
    still to come); ``error.date.format`` when it cannot be read as a real day."""
    tokens = [t for t in fold(unicodedata.normalize("NFKC", text)).split() if t not in _DATE_WORDS]
    if len(tokens) == 2 and all(t.isascii() and t.isdigit() and len(t) <= 2 for t in tokens):
        day, month, year = int(tokens[0]), int(tokens[1]), today.year
    else:
        day, month, year = _date_parts(text)
    try:
        found = dt.date(year, month, day)
        if len(tokens) == 2 and found > today:
            found = dt.date(year - 1, month, day)
    except ValueError:
        raise InvalidAnswer("error.date.format") from None
    return found


# --- gender and yes/no answers ---------------------------------------------------------------


class Gender(enum.StrEnum):
    """Gender as recorded on the national form."""

    MALE = "male"
    FEMALE = "female"


_GENDER_WORDS = {
    **dict.fromkeys(
        ("nam", "m", "male", "man", "trai", "con trai", "dan ong", "nam gioi"), Gender.MALE
    ),
    **dict.fromkeys(
        ("nu", "f", "female", "woman", "gai", "con gai", "phu nu", "nu gioi"), Gender.FEMALE
    ),
}


def parse_gender(text: str) -> Gender:
    """``nam``/``nữ`` (or ``nu``, ``male``, ``female``, ``m``, ``f``) to a :class:`Gender`."""
    key = fold(text)
    key = key.removeprefix("gioi tinh ").strip()
    try:
        return _GENDER_WORDS[key]
    except KeyError:
        raise InvalidAnswer("error.gender.invalid") from None


_ANSWER_WORDS = {
    **dict.fromkeys(("co", "c", "yes", "y", "co a", "dung", "vang", "da co"), Answer.YES),
    **dict.fromkeys(("khong", "ko", "k", "no", "n", "khong co", "chua", "chua bao gio"), Answer.NO),
    **dict.fromkeys(
        (
            "khong biet",
            "khong ro",
            "chua ro",
            "kb",
            "unknown",
            "dont know",
            "do not know",
            "not sure",
        ),
        Answer.UNKNOWN,
    ),
}


def parse_answer(text: str) -> Answer:
    """A typed screening answer: có / không / không biết (or yes / no / don't know)."""
    try:
        return _ANSWER_WORDS[fold(text)]
    except KeyError:
        raise InvalidAnswer("error.answer.invalid") from None


# --- identity numbers ------------------------------------------------------------------------

MASK_KEEP = 3  # digits of an ID number left visible


@dataclass(frozen=True)
class IdNumber:
    """A checked citizen ID: ``cccd`` (12 digits) or old ``cmnd`` (9 digits)."""

    kind: Literal["cccd", "cmnd"]
    number: str

    def masked(self) -> str:
        """Only the last digits: ``*********789`` (CCCD), ``******456`` (CMND).

        A CCCD's first 6 digits (birth province, century and gender, birth year) are guessable
        from the book itself, so showing them left only 4 digits hidden; now an onlooker lacks
        the province and 3 of the 6 random digits, and staff can still match the card in hand.
        """
        return "*" * (len(self.number) - MASK_KEEP) + self.number[-MASK_KEEP:]

    def __repr__(self) -> str:  # never the full number in logs or tracebacks
        return f"IdNumber(kind={self.kind!r}, number={self.masked()!r})"


_ID_SEPARATORS = re.compile(r"[\s.\-]+")


def _century_digit(year: int, gender: Gender) -> int:
    """The CCCD 4th digit for a birth year and gender: 1900s 0/1, 2000s 2/3, 2100s 4/5…"""
    return (year // 100 - 19) * 2 + (1 if gender is Gender.FEMALE else 0)


def parse_id_number(text: str, dob: dt.date, gender: Gender) -> IdNumber:
    """A CCCD (12 digits, checked against date of birth and gender) or an old CMND (9 digits)."""
    number = _ID_SEPARATORS.sub("", unicodedata.normalize("NFKC", text))
    if not (number.isascii() and number.isdigit()) or len(number) not in (9, 12):
        raise InvalidAnswer("error.id.format")
    if len(number) == 9:
        return IdNumber("cmnd", number)
    if not is_cccd_province(number[:3]):
        raise InvalidAnswer("error.id.province", code=number[:3])
    digit = int(number[3])
    expected = _century_digit(dob.year, gender)
    if 0 <= expected <= 9 and digit != expected:
        if digit // 2 != expected // 2:
            start = 1900 + (digit // 2) * 100
            raise InvalidAnswer(
                "error.id.century_digit",
                digit=digit,
                digit_from=start,
                digit_to=start + 99,
                year=dob.year,
                expected=expected,
            )
        raise InvalidAnswer("error.id.gender_digit", digit=digit, year=dob.year, expected=expected)
    if number[4:6] != f"{dob.year % 100:02d}":
        raise InvalidAnswer(
            "error.id.year", digits=number[4:6], year=dob.year, expected=f"{dob.year % 100:02d}"
        )
    return IdNumber("cccd", number)


# --- phone numbers ---------------------------------------------------------------------------

_PHONE_CHARS = re.compile(r"\+?[0-9 ().\-]+", re.ASCII)
# Mobile prefixes changed from 11 to 10 digits in 2018 (old 01xx → new 0xx).
_OLD_MOBILE_PREFIXES = {
    "120": "70",
    "121": "79",
    "122": "77",
    "126": "76",
    "128": "78",
    "123": "83",
    "124": "84",
    "125": "85",
    "127": "81",
    "129": "82",
    "162": "32",
    "163": "33",
    "164": "34",
    "165": "35",
    "166": "36",
    "167": "37",
    "168": "38",
    "169": "39",
    "186": "56",
    "188": "58",
    "199": "59",
}


def _national_digits(digits: str) -> str | None:
    """The digits after the country code or trunk 0 of a Vietnamese number, if it is one."""
    for prefix in ("0084", "84", "0"):
        if digits.startswith(prefix):
            return digits[len(prefix) :]
    return None


def parse_phone(text: str) -> str:
    """A Vietnamese mobile number (``0912 345 678``, ``+84912345678``…) in E.164 form."""
    s = " ".join(unicodedata.normalize("NFKC", text).split())
    if not s or len(s) > 30 or not _PHONE_CHARS.fullmatch(s):
        raise InvalidAnswer("error.phone.invalid")
    national = _national_digits(re.sub(r"\D", "", s))
    if national and len(national) == 10 and national[:3] in _OLD_MOBILE_PREFIXES:
        new = "0" + _OLD_MOBILE_PREFIXES[national[:3]] + national[3:]
        e164 = "+84" + new[1:]
        raise InvalidAnswer("error.phone.old_number", suggestion=format_phone(e164), number=e164)
    try:
        number = phonenumbers.parse(s, "VN")
    except phonenumbers.NumberParseException:
        raise InvalidAnswer("error.phone.invalid") from None
    if phonenumbers.region_code_for_number(number) != "VN" or not phonenumbers.is_valid_number(
        number
    ):
        raise InvalidAnswer("error.phone.invalid")
    kind = phonenumbers.number_type(number)
    if kind not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        raise InvalidAnswer("error.phone.not_mobile")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def format_phone(e164: str) -> str:
    """A Vietnamese mobile number as people write it: ``+84912345678`` → ``0912 345 678``
    (any other number as stored)."""
    if e164.startswith("+84") and len(e164) == 12 and e164[3:].isdigit():
        national = "0" + e164[3:]
        return f"{national[:4]} {national[4:7]} {national[7:]}"
    return e164


def mask_phone(e164: str) -> str:
    """An E.164 number with its middle hidden: ``+84912345678`` → ``+84 91*****78``."""
    if e164.startswith("+84") and len(e164) > 7:
        national = e164[3:]
        return f"+84 {national[:2]}{'*' * (len(national) - 4)}{national[-2:]}"
    return e164[:3] + "*" * max(len(e164) - 5, 0) + e164[-2:]


# --- health-insurance card -------------------------------------------------------------------

_BHYT_SHAPE = re.compile(r"[A-Z]{2}[0-9]{13}", re.ASCII)


def parse_bhyt(text: str) -> str:
    """A BHYT card code: 2 letters, benefit level 1–5, 12 digits (15 characters, upper case)."""
    code = _ID_SEPARATORS.sub("", unicodedata.normalize("NFKC", text)).upper()
    if not _BHYT_SHAPE.fullmatch(code):
        raise InvalidAnswer("error.bhyt.format")
    if code[2] not in "12345":
        raise InvalidAnswer("error.bhyt.level", digit=code[2])
    return code


def mask_bhyt(code: str) -> str:
    """A BHYT code with its middle hidden: group and level kept, ``HN4**********89``."""
    return code[:3] + "*" * max(len(code) - 5, 0) + code[-2:]


# --- searching by name -----------------------------------------------------------------------

Candidate = tuple[int, str]  # (code, display name)


def _rank(queries: Iterable[str], key: str) -> int | None:
    """0 exact, 1 prefix, 2 substring, ``None`` no match (spaces ignored as a fallback)."""
    best: int | None = None
    key_sq = _squash(key)
    for q in queries:
        if not q:
            continue
        q_sq = _squash(q)
        if q == key or q_sq == key_sq:
            return 0
        if key.startswith(q) or key_sq.startswith(q_sq):
            best = 1
        elif best is None and len(q_sq) >= 2 and (q in key or q_sq in key_sq):
            best = 2
    return best


def _strip_prefix(key: str, prefixes: tuple[str, ...]) -> str:
    """``key`` without one leading prefix word (``"phuong sa pa"`` → ``"sa pa"``)."""
    for prefix in prefixes:
        if key.startswith(prefix + " "):
            return key[len(prefix) + 1 :]
    return key


def _echo(text: str) -> str:
    """What the person typed, tidied and shortened, to repeat in a message."""
    s = clean_text(text, max_len=10**6, required=False) or ""
    return s if len(s) <= _QUERY_ECHO_LEN else s[: _QUERY_ECHO_LEN - 1] + "…"


_ETHNICITY_PREFIXES = ("dan toc", "nguoi", "toc")


@lru_cache(maxsize=1)
def _ethnicity_index() -> tuple[tuple[Ethnicity, tuple[str, ...]], ...]:
    aliases = ethnicity_aliases()
    return tuple(
        (e, tuple(dict.fromkeys(fold(n) for n in (e.name, *aliases.get(e.code, ())))))
        for e in ethnicities()
    )


def match_ethnicity(text: str) -> list[Ethnicity]:
    """Ethnic groups matching what was typed, best first (exact name or alias, then prefix,
    then substring); ``error.ethnicity.unknown`` if none."""
    folded = fold(text)
    queries = (folded, _strip_prefix(folded, _ETHNICITY_PREFIXES))
    ranked: list[tuple[int, int, Ethnicity]] = []
    for ethnicity, keys in _ethnicity_index():
        ranks = [r for r in (_rank(queries, k) for k in keys) if r is not None]
        if ranks:
            ranked.append((min(ranks), ethnicity.code, ethnicity))
    if not ranked:
        raise InvalidAnswer("error.ethnicity.unknown")
    ranked.sort(key=lambda r: (r[0], r[1]))
    return [e for _, _, e in ranked]


_ADMIN_PREFIXES = (
    "dac khu",
    "thi tran",
    "thi xa",
    "thanh pho",
    "phuong",
    "tinh",
    "xa",
    "tp",
    "tx",
    "tt",
)

# Abbreviations people type before a name; queries are matched with and without them.
_QUERY_PREFIXES = (*_ADMIN_PREFIXES, "p", "x")

_Index = tuple[tuple[int, str, str], ...]  # (code, name, folded name without its prefix)


def _admin_index(units: Iterable[Candidate]) -> _Index:
    return tuple((code, name, _strip_prefix(fold(name), _ADMIN_PREFIXES)) for code, name in units)


@lru_cache(maxsize=1)
def _province_index() -> _Index:
    return _admin_index(provinces())


@lru_cache(maxsize=64)
def _ward_index(province_code: int) -> _Index:
    return _admin_index(wards(province_code))


def _search(index: _Index, text: str) -> list[tuple[int, Candidate]]:
    folded = fold(text)
    queries = (folded, _strip_prefix(folded, _QUERY_PREFIXES))
    found = [
        (r, key, (code, name))
        for code, name, key in index
        if (r := _rank(queries, key)) is not None
    ]
    found.sort(key=lambda f: (f[0], f[1]))
    return [(r, cand) for r, _, cand in found]


def example_name(name: str) -> str:
    """A unit's name without its prefix word, as a person would type it."""
    for prefix in ("Đặc khu", "Thị trấn", "Thành phố", "Phường", "Tỉnh", "Xã"):
        if name.startswith(prefix + " "):
            return name[len(prefix) + 1 :]
    return name


def _pick(
    found: list[tuple[int, Candidate]], limit: int, too_many: str, query: str
) -> list[Candidate]:
    """At most ``limit`` candidates; too many without an exact match asks for more letters."""
    exact = any(r == 0 for r, _ in found)
    if len(found) > limit and not exact:
        raise InvalidAnswer(
            too_many, count=len(found), query=query, example=example_name(found[0][1][1])
        )
    return [cand for _, cand in found[:limit]]


def search_provinces(text: str, *, limit: int = SEARCH_LIMIT) -> list[Candidate]:
    """Current provinces matching the typed name, best first, as ``(code, name)``."""
    found = _search(_province_index(), text)
    if not found:
        raise InvalidAnswer("error.province.none", query=_echo(text))
    return _pick(found, limit, "error.province.too_many", _echo(text))


def search_wards(province_code: int, text: str, *, limit: int = SEARCH_LIMIT) -> list[Candidate]:
    """Communes/wards of one province matching the typed name (``sa pa`` → Phường Sa Pa first)."""
    index = _ward_index(int(province_code))
    found = _search(index, text)
    if not found:
        example = ward_example(province_code)
        try:
            province = province_name(province_code)
        except KeyError:
            province = ""
        raise InvalidAnswer(
            "error.ward.none", query=_echo(text), province=province, example=example
        )
    return _pick(found, limit, "error.ward.too_many", _echo(text))
