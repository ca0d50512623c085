"""Input validators and reference data: examples for every rule, properties, and catalogue keys."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from babel.messages.pofile import read_po
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from models import validators as v
from models.errors import InvalidAnswer
from models.validators import Answer, Gender, IdNumber, ScreeningGroup

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "models" / "validators.py"
LANGS = ("vi", "en")
TODAY = dt.date(2025, 11, 25)
SA_PA = 3006  # Phường Sa Pa, Lào Cai (province 15)
LAO_CAI = 15

relaxed = settings(deadline=None, max_examples=150)


@lru_cache(maxsize=2)
def catalog(lang: str) -> dict[str, str]:
    """The validators.po messages of one language."""
    path = ROOT / "locales" / lang / "LC_MESSAGES" / "validators.po"
    with path.open("rb") as fh:
        cat = read_po(fh, locale=lang)
    return {str(m.id): str(m.string) for m in cat if m.id}


def expect(key: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> InvalidAnswer:
    """Call ``fn``; it must raise ``key``, and the message must render in every language."""
    with pytest.raises(InvalidAnswer) as info:
        fn(*args, **kwargs)
    err = info.value
    assert err.key == key, (err.key, err.params)
    for lang in LANGS:
        text = catalog(lang)[key]
        rendered = text.format(**err.params) if err.params else text
        assert "{" not in rendered and rendered.strip(), (lang, key, rendered)
    return err


# --- fold ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b"), [
    ("H'Mông", "hmong"),
    ("H’MÔNG", "hmong"),
    ("ĐỖ THỊ  Hoa", "do thi hoa"),
    ("Bà Rịa - Vũng Tàu", "ba ria vung tau"),
    ("Khơ-me", "kho me"),
    ("  Phường   Sa Pa. ", "phuong sa pa"),
    ("Nghĩa Lộ", "nghia lo"),
])
def test_fold_examples(a: str, b: str) -> None:
    assert v.fold(a) == v.fold(b) == b


def test_fold_decomposed_input_equals_composed() -> None:
    assert v.fold(unicodedata.normalize("NFD", "Mường Khương")) == "muong khuong"


@relaxed
@given(st.text())
def test_fold_is_idempotent(text: str) -> None:
    once = v.fold(text)
    assert v.fold(once) == once
    assert once == once.strip() and "  " not in once


# --- clean_text ------------------------------------------------------------------------------


def test_clean_text_tidies() -> None:
    assert v.clean_text("  Thôn\tLùng   Vai\n xã Bản Hồ ") == "Thôn Lùng Vai xã Bản Hồ"
    assert v.clean_text(unicodedata.normalize("NFD", "Tổ 5")) == "Tổ 5"
    assert v.clean_text("Thôn\x00 A\u200b\u200e") == "Thôn A"


def test_clean_text_empty() -> None:
    expect("error.text.empty", v.clean_text, "   \n")
    expect("error.text.empty", v.clean_text, "\x00\u200b")
    assert v.clean_text("  ", required=False) is None
    assert v.clean_text("", required=False) is None


def test_clean_text_too_long() -> None:
    assert v.clean_text("a" * 10, max_len=10) == "a" * 10
    err = expect("error.text.too_long", v.clean_text, "a" * 11, max_len=10)
    assert err.params["max"] == 10


@relaxed
@given(st.text(), st.integers(min_value=1, max_value=50), st.booleans())
def test_clean_text_output_is_clean_and_short(text: str, max_len: int, required: bool) -> None:
    try:
        out = v.clean_text(text, max_len=max_len, required=required)
    except InvalidAnswer as err:
        assert err.key in ("error.text.empty", "error.text.too_long")
        return
    if out is None:
        assert not required
        return
    assert 0 < len(out) <= max_len
    assert not any(unicodedata.category(ch) in ("Cc", "Cf") for ch in out)
    assert out == out.strip() and "  " not in out
    assert unicodedata.is_normalized("NFC", out)


# --- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("typed", "name"), [
    ("nguyễn văn  an", "Nguyễn Văn An"),
    ("ĐỖ THỊ HOA", "Đỗ Thị Hoa"),
    ("  đặng   thị   ánh  ", "Đặng Thị Ánh"),
    (unicodedata.normalize("NFD", "lý thị mỷ"), "Lý Thị Mỷ"),
    ("thào a sính", "Thào A Sính"),
    ("ksor h'hen", "Ksor H'Hen"),
    ("ksor h’hen", "Ksor H'Hen"),
    ("hoàng thị-lan", "Hoàng Thị-Lan"),
    ("An", "An"),
])
def test_normalize_name_examples(typed: str, name: str) -> None:
    assert v.normalize_name(typed) == name


@pytest.mark.parametrize(("typed", "key"), [
    ("", "error.name.empty"),
    ("   ", "error.name.empty"),
    ("Nguyễn Văn 3", "error.name.chars"),
    ("An 😀", "error.name.chars"),
    ("An\x00Bình", "error.name.chars"),
    ("An\u200bBình", "error.name.chars"),
    ("Nguyễn - An", "error.name.chars"),
    ("Nguyễn V. An", "error.name.chars"),
    ("'-", "error.name.chars"),
    ("A", "error.name.length"),
    ("Nguyễn " * 9 + "Văn An", "error.name.length"),
])
def test_normalize_name_rejects(typed: str, key: str) -> None:
    expect(key, v.normalize_name, typed)


def test_name_length_limits() -> None:
    assert v.normalize_name("a" * 60) == "A" + "a" * 59
    err = expect("error.name.length", v.normalize_name, "a" * 61)
    assert err.params == {"min": 2, "max": 60}


@relaxed
@given(st.text())
def test_normalize_name_is_idempotent(text: str) -> None:
    try:
        name = v.normalize_name(text)
    except InvalidAnswer as err:
        assert err.key.startswith("error.name.")
        return
    assert v.normalize_name(name) == name
    assert unicodedata.is_normalized("NFC", name)
    assert name == name.strip() and "  " not in name
    assert 2 <= len(name) <= 60


@relaxed
@given(st.lists(st.text(alphabet="aăâbcdđeêghiklmnoôơpqrstuưvxyàảãáạằẳẵắặầẩẫấậèẻẽéẹềểễếệìỉĩíị"
                                 "òỏõóọồổỗốộờởỡớợùủũúụừửữứựỳỷỹýỵ", min_size=1, max_size=7),
                min_size=1, max_size=4))
def test_normalize_name_capitalizes_vietnamese_words(words: list[str]) -> None:
    assume(len(" ".join(words)) >= 2)
    name = v.normalize_name(" ".join(w.upper() for w in words))
    assert name.split(" ") == [w[0].upper() + w[1:] for w in words]


# --- dates -----------------------------------------------------------------------------------


@pytest.mark.parametrize("typed", [
    "15/3/1950", "15/03/1950", "15-03-1950", "15.03.1950", "1950-03-15", "15031950",
    "15 3 1950", "  15/03/1950  ", "15 / 03 / 1950", "ngày 15 tháng 3 năm 1950",
    "１５/０３/１９５０",
])
def test_date_formats(typed: str) -> None:
    assert v.parse_date_of_birth(typed, TODAY) == dt.date(1950, 3, 15)


@pytest.mark.parametrize("typed", [
    "15/3/50", "15/03", "1950", "abc", "", "15/3/1950/1", "150350", "15/3/19500", "1/1/950",
    "15-03-1950x", "١٥/٠٣/١٩٥٠",
])
def test_date_format_errors(typed: str) -> None:
    expect("error.date.format", v.parse_date_of_birth, typed, TODAY)


def test_impossible_dates_say_which() -> None:
    err = expect("error.date.impossible", v.parse_date_of_birth, "31/02/1990", TODAY)
    assert err.params == {"day": 31, "month": 2, "year": 1990, "days": 28}
    assert "31" in catalog("vi")[err.key].format(**err.params)
    assert expect("error.date.impossible", v.parse_date_of_birth, "29/02/1900",
                  TODAY).params["days"] == 28
    expect("error.date.impossible", v.parse_date_of_birth, "00/01/1990", TODAY)
    expect("error.date.impossible", v.parse_date_of_birth, "31/04/1990", TODAY)
    assert v.parse_date_of_birth("29/02/2000", TODAY) == dt.date(2000, 2, 29)
    err = expect("error.date.month", v.parse_date_of_birth, "15/13/1990", TODAY)
    assert err.params == {"month": 13}
    expect("error.date.month", v.parse_date_of_birth, "1990-00-10", TODAY)


def test_future_and_too_old() -> None:
    assert v.parse_date_of_birth("25/11/2025", TODAY) == TODAY
    err = expect("error.date.future", v.parse_date_of_birth, "26/11/2025", TODAY)
    assert err.params == {"date": "26/11/2025"}
    assert v.parse_date_of_birth("26/11/1904", TODAY) == dt.date(1904, 11, 26)  # 120 years old
    err = expect("error.date.too_old", v.parse_date_of_birth, "25/11/1904", TODAY)  # 121
    assert err.params == {"max_age": 120}
    expect("error.date.too_old", v.parse_date_of_birth, "01/01/0000", TODAY)


def test_age_on() -> None:
    dob = dt.date(1950, 3, 15)
    assert v.age_on(dob, dt.date(2025, 3, 14)) == 74
    assert v.age_on(dob, dt.date(2025, 3, 15)) == 75
    leap = dt.date(2000, 2, 29)
    assert v.age_on(leap, dt.date(2021, 2, 28)) == 20
    assert v.age_on(leap, dt.date(2021, 3, 1)) == 21
    assert v.age_on(leap, dt.date(2024, 2, 29)) == 24


FORMATS: list[Callable[[dt.date], str]] = [
    lambda d: f"{d.day}/{d.month}/{d.year}",
    lambda d: d.strftime("%d/%m/%Y"),
    lambda d: d.strftime("%d-%m-%Y"),
    lambda d: d.strftime("%d.%m.%Y"),
    lambda d: d.isoformat(),
    lambda d: d.strftime("%d%m%Y"),
    lambda d: f"{d.day} {d.month} {d.year}",
    lambda d: f"  {d.day:02d}/{d.month:02d}/{d.year}  ",
]


@relaxed
@given(st.dates(min_value=dt.date(1904, 11, 26), max_value=TODAY),
       st.sampled_from(range(len(FORMATS))))
def test_any_valid_date_round_trips(dob: dt.date, fmt: int) -> None:
    assert v.parse_date_of_birth(FORMATS[fmt](dob), TODAY) == dob


# --- gender and answers ----------------------------------------------------------------------


@pytest.mark.parametrize(("typed", "gender"), [
    ("nam", Gender.MALE), ("Nam", Gender.MALE), ("male", Gender.MALE), ("M", Gender.MALE),
    ("nữ", Gender.FEMALE), ("Nữ", Gender.FEMALE), ("nu", Gender.FEMALE),
    ("NỮ", Gender.FEMALE), ("female", Gender.FEMALE), ("f", Gender.FEMALE),
    (" giới tính nữ ", Gender.FEMALE),
])
def test_parse_gender(typed: str, gender: Gender) -> None:
    assert v.parse_gender(typed) is gender


def test_gender_values_and_errors() -> None:
    assert Gender("male") is Gender.MALE and str(Gender.FEMALE) == "female"
    for typed in ("", "x", "nam nữ", "2"):
        expect("error.gender.invalid", v.parse_gender, typed)


@pytest.mark.parametrize(("typed", "answer"), [
    ("Có", Answer.YES), ("yes", Answer.YES), ("không", Answer.NO), ("ko", Answer.NO),
    ("No", Answer.NO), ("Không biết", Answer.UNKNOWN), ("không rõ", Answer.UNKNOWN),
    ("don't know", Answer.UNKNOWN),
])
def test_parse_answer(typed: str, answer: Answer) -> None:
    assert v.parse_answer(typed) is answer


def test_answer_errors() -> None:
    assert [a.value for a in Answer] == ["yes", "no", "unknown", "not_applicable"]
    expect("error.answer.invalid", v.parse_answer, "có lẽ")


# --- ID numbers ------------------------------------------------------------------------------

DOB_M = dt.date(1950, 3, 15)


def test_cccd_accepted_with_separators() -> None:
    for typed in ("010050123456", "010 050 123 456", "010.050.123.456", "010-050-123456",
                  "０１００５０１２３４５６"):
        ident = v.parse_id_number(typed, DOB_M, Gender.MALE)
        assert ident == IdNumber("cccd", "010050123456")
    assert v.parse_id_number("015195123456", dt.date(1995, 1, 1), Gender.FEMALE).kind == "cccd"
    assert v.parse_id_number("010300654321", dt.date(2000, 6, 1), Gender.FEMALE).kind == "cccd"
    assert v.parse_id_number("079212000001", dt.date(2012, 6, 1), Gender.MALE).kind == "cccd"


def test_cmnd_and_masks() -> None:
    ident = v.parse_id_number("063 123 456", DOB_M, Gender.FEMALE)
    assert ident == IdNumber("cmnd", "063123456")
    assert ident.masked() == "******456"
    cccd = IdNumber("cccd", "010123456789")
    assert cccd.masked() == "*********789"  # province, century/gender and birth year hidden too
    assert "010123456789" not in repr(cccd) and "010123456789" not in str(cccd)


@pytest.mark.parametrize("typed", ["", "abc", "01005012345", "0100501234567", "01005012345X",
                                   "12345678", "0100501234５6a"])
def test_id_format_errors(typed: str) -> None:
    expect("error.id.format", v.parse_id_number, typed, DOB_M, Gender.MALE)


def _no_full_number(err: InvalidAnswer, number: str) -> None:
    rendered = [catalog(lang)[err.key].format(**err.params) for lang in LANGS]
    for text in (str(err), repr(err), *map(str, err.params.values()), *rendered):
        assert number not in text


def test_id_province_error() -> None:
    err = expect("error.id.province", v.parse_id_number, "003050123456", DOB_M, Gender.MALE)
    assert err.params == {"code": "003"}
    _no_full_number(err, "003050123456")


def test_id_gender_digit_error() -> None:
    # 4th digit 0 = male born in the 1900s, but she said female, born 1995
    number = "010095123456"
    err = expect("error.id.gender_digit", v.parse_id_number, number, dt.date(1995, 5, 1),
                 Gender.FEMALE)
    assert err.params == {"digit": 0, "year": 1995, "expected": 1}
    _no_full_number(err, number)
    expect("error.id.gender_digit", v.parse_id_number, "010250123456", dt.date(2050, 1, 1),
           Gender.FEMALE)


def test_id_century_digit_error() -> None:
    number = "010295123456"  # 2 = male born 2000–2099, but born 1995
    err = expect("error.id.century_digit", v.parse_id_number, number, dt.date(1995, 5, 1),
                 Gender.MALE)
    assert err.params == {"digit": 2, "digit_from": 2000, "digit_to": 2099, "year": 1995,
                          "expected": 0}
    _no_full_number(err, number)
    # wrong century and wrong gender: the century is reported
    assert expect("error.id.century_digit", v.parse_id_number, "010395123456",
                  dt.date(1995, 5, 1), Gender.MALE).params["digit"] == 3


def test_id_year_error() -> None:
    number = "010051123456"
    err = expect("error.id.year", v.parse_id_number, number, DOB_M, Gender.MALE)
    assert err.params == {"digits": "51", "year": 1950, "expected": "50"}
    _no_full_number(err, number)


PROVINCE_CODES = sorted(v.cccd_provinces())


@relaxed
@given(st.sampled_from(PROVINCE_CODES),
       st.dates(min_value=dt.date(1905, 1, 1), max_value=TODAY),
       st.sampled_from(list(Gender)),
       st.text(alphabet="0123456789", min_size=6, max_size=6),
       st.integers(min_value=0, max_value=9))
def test_cccd_property(code: str, dob: dt.date, gender: Gender, tail: str, other: int) -> None:
    digit = (dob.year // 100 - 19) * 2 + (gender is Gender.FEMALE)
    number = f"{code}{digit}{dob.year % 100:02d}{tail}"
    assert v.parse_id_number(number, dob, gender) == IdNumber("cccd", number)
    assume(other != digit)
    wrong = number[:3] + str(other) + number[4:]
    key = "error.id.gender_digit" if other // 2 == digit // 2 else "error.id.century_digit"
    err = expect(key, v.parse_id_number, wrong, dob, gender)
    assert err.params["digit"] == other and err.params["expected"] == digit
    _no_full_number(err, wrong)


# --- phone numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize("typed", [
    "0912 345 678", "0912345678", "+84912345678", "84912345678", "+84 912 345 678",
    "0084912345678", "(091) 234-5678", "0912.345.678", "０９１２３４５６７８",
])
def test_phone_formats(typed: str) -> None:
    assert v.parse_phone(typed) == "+84912345678"


@pytest.mark.parametrize(("typed", "key"), [
    ("", "error.phone.invalid"),
    ("12345", "error.phone.invalid"),
    ("abc", "error.phone.invalid"),
    ("0912-ABC-DEF", "error.phone.invalid"),
    ("+1 650 253 0000", "error.phone.invalid"),
    ("09123456789", "error.phone.invalid"),
    ("0214 3840 123", "error.phone.not_mobile"),
    ("1900 9095", "error.phone.not_mobile"),
])
def test_phone_errors(typed: str, key: str) -> None:
    expect(key, v.parse_phone, typed)


def test_old_eleven_digit_number_gets_its_new_form() -> None:
    err = expect("error.phone.old_number", v.parse_phone, "0168 123 4567")
    assert err.params == {"suggestion": "0381 234 567", "number": "+84381234567"}
    assert v.parse_phone(err.params["suggestion"]) == "+84381234567"
    assert expect("error.phone.old_number", v.parse_phone,
                  "+84 123 456 7890").params["suggestion"] == "0834 567 890"


def test_format_phone_as_people_write_it() -> None:
    assert v.format_phone("+84912345678") == "0912 345 678"
    assert v.format_phone("+14155550100") == "+14155550100"  # not Vietnamese: as stored


def test_mask_phone() -> None:
    assert v.mask_phone("+84912345678") == "+84 91*****78"
    assert "345" not in v.mask_phone("+84912345678")


MOBILE_PREFIXES = ["32", "33", "34", "35", "36", "37", "38", "39", "56", "58", "59", "70", "76",
                   "77", "78", "79", "81", "82", "83", "84", "85", "86", "88", "90", "91", "93",
                   "94", "96", "97", "98"]


@relaxed
@given(st.sampled_from(MOBILE_PREFIXES), st.text(alphabet="0123456789", min_size=7, max_size=7),
       st.sampled_from(["0{n}", "+84{n}", "84{n}", "0{a} {b} {c}", "+84 {a} {b} {c}"]))
def test_phone_round_trips(prefix: str, rest: str, style: str) -> None:
    n = prefix + rest
    typed = style.format(n=n, a=n[:3], b=n[3:6], c=n[6:])
    out = v.parse_phone(typed)
    assert out == "+84" + n
    assert v.parse_phone(out) == out
    assert re.fullmatch(r"\+84\d{9}", out)


# --- BHYT ------------------------------------------------------------------------------------


def test_bhyt() -> None:
    assert v.parse_bhyt("hn 4 01 0123456789") == "HN4010123456789"
    assert v.parse_bhyt("GD4-01-0123456789") == "GD4010123456789"
    assert v.mask_bhyt("HN4010123456789") == "HN4**********89"
    for typed in ("", "HN401012345678", "HN40101234567890", "H14010123456789",
                  "HNA010123456789", "010123456789"):
        expect("error.bhyt.format", v.parse_bhyt, typed)
    assert expect("error.bhyt.level", v.parse_bhyt, "HN6010123456789").params == {"digit": "6"}
    expect("error.bhyt.level", v.parse_bhyt, "HN0010123456789")


# --- ethnic groups ---------------------------------------------------------------------------


def test_ethnicity_data() -> None:
    groups = v.ethnicities()
    assert [e.code for e in groups] == list(range(1, 55))
    assert len({e.name for e in groups}) == 54
    assert v.ethnicity_by_code(1).name == "Kinh"
    assert v.ethnicity_by_code(8).name == "Mông"
    assert v.ethnicity_by_code(5).name == "Khơ-me"
    assert v.ethnicity_by_code(25).name == "Giáy"
    with pytest.raises(KeyError):
        v.ethnicity_by_code(55)
    common = [e.name for e in v.common_ethnicities()]
    assert common[:4] == ["Kinh", "Mông", "Tày", "Dao"]
    assert {"Giáy", "Hà Nhì", "Phù Lá", "Thái", "Nùng"} <= set(common)


@pytest.mark.parametrize(("typed", "name"), [
    ("hmong", "Mông"), ("H'Mông", "Mông"), ("Mèo", "Mông"), ("mong", "Mông"),
    ("khmer", "Khơ-me"), ("Khơ me", "Khơ-me"), ("kinh", "Kinh"), ("dân tộc Tày", "Tày"),
    ("người Dao", "Dao"), ("giay", "Giáy"), ("Xá Phó", "Phù Lá"), ("ha nhi", "Hà Nhì"),
    ("ha nh", "Hà Nhì"), ("bo y", "Bố Y"), ("tay", "Tày"), ("Việt", "Kinh"),
])
def test_match_ethnicity(typed: str, name: str) -> None:
    assert v.match_ethnicity(typed)[0].name == name


def test_match_ethnicity_ranks_and_errors() -> None:
    found = [e.name for e in v.match_ethnicity("tay")]
    assert found[0] == "Tày" and "Thái" in found  # Tày Khao… are Thái aliases
    expect("error.ethnicity.unknown", v.match_ethnicity, "xyzzy")
    expect("error.ethnicity.unknown", v.match_ethnicity, "  ")


# --- administrative units --------------------------------------------------------------------


def test_provinces() -> None:
    assert len(v.provinces()) == 34
    assert v.province_name(LAO_CAI) == "Lào Cai"
    assert v.is_province(LAO_CAI) and not v.is_province(99)
    for typed in ("lao cai", "Lào Cai", "tỉnh Lào Cai", "LAOCAI", "  lào   cai "):
        assert v.search_provinces(typed)[0] == (LAO_CAI, "Lào Cai")
    assert v.search_provinces("hồ chí minh")[0][0] == 79
    assert v.search_provinces("thanh pho ha noi")[0][0] == 1
    assert v.search_provinces("hà")[0][1] in {"Hà Tĩnh", "Thành phố Hà Nội"}
    expect("error.province.none", v.search_provinces, "atlantis")
    err = expect("error.province.too_many", v.search_provinces, "an", limit=2)
    assert err.params["count"] > 2
    with pytest.raises(KeyError):
        v.province_name(99)


def test_wards() -> None:
    assert len(v.wards(LAO_CAI)) == 99
    for typed in ("sa pa", "Sa Pa", "sapa", "phường sa pa", "P. Sa Pa"):
        assert v.search_wards(LAO_CAI, typed)[0] == (SA_PA, "Phường Sa Pa"), typed
    assert v.search_wards(LAO_CAI, "xã bản hồ")[0][1] == "Xã Bản Hồ"
    assert v.search_wards(LAO_CAI, "lao cai")[0][1] == "Phường Lào Cai"
    assert v.search_wards(LAO_CAI, "muong")[0][1].startswith("Xã Mường")
    assert v.ward_name(SA_PA) == "Phường Sa Pa"
    assert v.ward_in_province(SA_PA, LAO_CAI)
    assert not v.ward_in_province(SA_PA, 1)
    assert not v.ward_in_province(1, LAO_CAI)
    with pytest.raises(KeyError):
        v.ward_name(1)


def test_ward_search_ranks_exact_then_prefix_then_substring() -> None:
    names = [n for _, n in v.search_wards(LAO_CAI, "ban")]
    assert all(n.startswith("Xã Bản") for n in names[:4])  # prefix matches, by folded name
    assert names[:4] == sorted(names[:4], key=v.fold)
    assert names[-1] == "Xã Văn Bàn"  # substring last
    err = expect("error.ward.too_many", v.search_wards, LAO_CAI, "ban", limit=3)
    assert err.params["count"] == len(names)
    # an exact match is never refused, however many others match
    assert v.search_wards(LAO_CAI, "bản hồ", limit=1) == [(3046, "Xã Bản Hồ")]
    err = expect("error.ward.none", v.search_wards, LAO_CAI, "Hoàn Kiếm")
    assert err.params["query"] == "Hoàn Kiếm"
    expect("error.ward.none", v.search_wards, 99, "sa pa")


# --- occupations, priority groups, screening, CCCD codes -------------------------------------


def test_occupations_and_priority_groups() -> None:
    assert v.occupations() == [
        "health_worker", "teacher", "civil_servant", "armed_forces", "police", "farmer",
        "worker", "business", "student", "retired", "homemaker", "unemployed", "other",
    ]
    assert v.is_occupation("farmer") and not v.is_occupation("astronaut")
    groups = v.priority_groups()
    assert groups == [f"p{i:02d}" for i in range(1, 12)] + ["none"]
    short = v.priority_groups(short_only=True)
    assert set(short) < set(groups) and "none" in short and "p01" in short
    assert v.is_priority_group("none") and v.is_priority_group("p11")
    assert not v.is_priority_group("p99")


def test_screening_items() -> None:
    every = v.screening_items(asked_only=False)
    assert [i.code for i in every] == [
        "anaphylaxis", "covid_6m", "vaccine_14d", "immunodeficiency", "immunosuppressants",
        "acute_illness", "chronic_progressing", "chronic_controlled", "pregnant_breastfeeding",
        "age_65", "bleeding_anticoagulant", "other_allergies",
    ]
    asked = v.screening_items()
    assert "age_65" not in [i.code for i in asked] and len(asked) == 11
    by_code = {i.code: i for i in every}
    yes = {code: item.group_if_yes for code, item in by_code.items()}
    assert yes["anaphylaxis"] is ScreeningGroup.CONTRAINDICATED
    for code in ("covid_6m", "vaccine_14d", "immunosuppressants", "acute_illness",
                 "chronic_progressing"):
        assert yes[code] is ScreeningGroup.POSTPONE, code
    for code in ("chronic_controlled", "pregnant_breastfeeding", "age_65",
                 "bleeding_anticoagulant", "other_allergies"):
        assert yes[code] is ScreeningGroup.CAUTION, code  # at the usual site (3802)
    assert yes["immunodeficiency"] is ScreeningGroup.REFER  # to a hospital (3802)
    age = by_code["age_65"]
    assert age.derived == "age>=65"
    assert age.derived_answer(age=65) is Answer.YES and age.derived_answer(age=64) is Answer.NO
    with pytest.raises(ValueError):
        by_code["anaphylaxis"].derived_answer(age=70)
    assert by_code["anaphylaxis"].group_for(Answer.NO) is ScreeningGroup.ELIGIBLE
    assert by_code["anaphylaxis"].group_for(Answer.UNKNOWN) is ScreeningGroup.CAUTION
    severities = [g.severity for g in ScreeningGroup]
    assert severities == sorted(severities) == [0, 1, 2, 3, 4]


def test_cccd_province_codes() -> None:
    codes = v.cccd_provinces()
    assert len(codes) == 63
    assert all(re.fullmatch(r"\d{3}", c) for c in codes)
    assert codes["010"] == "Lào Cai" and codes["015"] == "Yên Bái" and codes["079"] == "Hồ Chí Minh"


# --- no crash on any text --------------------------------------------------------------------

PARSERS: list[Callable[[str], Any]] = [
    v.fold,
    v.clean_text,
    v.normalize_name,
    lambda s: v.parse_date_of_birth(s, TODAY),
    v.parse_gender,
    v.parse_answer,
    lambda s: v.parse_id_number(s, DOB_M, Gender.MALE),
    lambda s: v.parse_id_number(s, dt.date(2003, 1, 1), Gender.FEMALE),
    v.parse_phone,
    v.parse_bhyt,
    v.match_ethnicity,
    v.search_provinces,
    lambda s: v.search_wards(LAO_CAI, s),
]


@relaxed
@given(st.sampled_from(range(len(PARSERS))),
       st.one_of(st.text(), st.text(alphabet="0123456789 +-./()abcHNđĐ'’\t\n", max_size=30)))
def test_random_text_only_raises_invalid_answer(index: int, text: str) -> None:
    try:
        PARSERS[index](text)
    except InvalidAnswer as err:
        assert err.key in catalog("vi") and err.key in catalog("en")


# --- message catalogues ----------------------------------------------------------------------


def _raised_keys() -> set[str]:
    return set(re.findall(r"""["'](error\.[a-z_.]+)["']""", SOURCE.read_text(encoding="utf-8")))


def _label_keys() -> list[str]:
    keys = [f"occupation.{c}" for c in v.occupations()]
    keys += [f"priority.{c}" for c in v.priority_groups()]
    keys += [f"screening.{i.code}" for i in v.screening_items(asked_only=False)]
    return keys


@pytest.mark.parametrize("lang", LANGS)
def test_every_key_exists_with_text(lang: str) -> None:
    keys = _raised_keys()
    assert len(keys) >= 25
    messages = catalog(lang)
    missing = sorted(k for k in (*keys, *_label_keys()) if not messages.get(k, "").strip())
    assert not missing, (lang, missing)


def test_languages_agree() -> None:
    vi, en = catalog("vi"), catalog("en")
    assert set(vi) == set(en)
    field = re.compile(r"\{(\w+)\}")
    for key, text in vi.items():
        assert set(field.findall(text)) == set(field.findall(en[key])), key


def test_error_messages_give_an_example() -> None:
    """Each error shows a right answer: an example, the exact value expected, or every choice."""
    for key in _raised_keys():
        vi, en = catalog("vi")[key], catalog("en")[key]
        assert any(s in vi for s in ("ví dụ", "{expected}", "Xin trả lời:")), key
        assert any(s in en for s in ("for example", "{expected}", "Please answer:")), key


@pytest.mark.parametrize("lang", LANGS)
def test_brace_format_flags(lang: str) -> None:
    text = (ROOT / "locales" / lang / "LC_MESSAGES" / "validators.po").read_text(encoding="utf-8")
    for block in text.split("\n\n"):
        if 'msgid ""\nmsgstr ""\n"Project' in block:
            continue
        has_field = re.search(r"\{\w+\}", block.split("msgstr", 1)[-1]) is not None
        assert has_field == ("#, python-brace-format" in block), block


def test_every_raised_key_is_exercised_here() -> None:
    """Each error key in the source is asserted by some test in this file."""
    tests = Path(__file__).read_text(encoding="utf-8")
    unexercised = sorted(k for k in _raised_keys() if f'"{k}"' not in tests)
    assert not unexercised, unexercised
