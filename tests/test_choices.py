"""Typed answers to offered choices (bot/channels/choices.py): numbers, labels with or without
accents and case, aliases from locales/aliases.toml, starts of labels; and what never matches."""

from __future__ import annotations

import tomllib
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bot.channels.base import Choice, Offer, Option, Options, Reply, numbered
from bot.channels.choices import (
    ALIASES_PATH,
    AliasError,
    Aliases,
    _short_forms,
    fold,
    match,
)
from bot.i18n import SUPPORTED, load_catalog
from models import healthbook as hb
from models import validators as v

CATALOGS = {lang: load_catalog(lang) for lang in SUPPORTED}
ALIASES = Aliases.load(CATALOGS)
with ALIASES_PATH.open("rb") as _fh:
    ALIAS_DATA: dict[str, dict[str, list[str]]] = tomllib.load(_fh)

# Every label a question offers, per language: the keys the handlers put on buttons.
LABEL_PREFIXES = (
    "button.", "gender.", "occupation.", "priority.", "book.button_", "appointments.button_",
    "waitlist.button_", "site.button.", "site.reason.", "campaign_name.", "guide.button.",
    "aftercare.button.",
)


def _labels(lang: str) -> dict[str, str]:
    """key → label of every button of ``lang`` (the edit buttons of the review filled in)."""
    cat = CATALOGS[lang]
    labels = {k: t for k, t in cat.items() if k.startswith(LABEL_PREFIXES) and "{" not in t}
    labels["language.name"] = cat["language.name"]
    for field in hb.editable_fields({}):
        labels[f"edit.{field}"] = cat["button.edit_field"].format(field=cat[f"field.{field}"])
    return labels


LABELS = {lang: _labels(lang) for lang in SUPPORTED}


def offer_of(labels: list[str]) -> Offer:
    return Offer(tuple(Choice(n, label, f"code:{n}") for n, label in enumerate(labels, 1)))


def unaccented(text: str) -> str:
    """What a phone without a Vietnamese keyboard types: no marks, đ as d, case kept."""
    out = unicodedata.normalize("NFD", text).replace("đ", "d").replace("Đ", "D")
    return "".join(ch for ch in out if unicodedata.category(ch) != "Mn")


def squashed(text: str) -> str:
    return fold(text).replace(" ", "")


# ---------------------------------------------------------------- fold


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Nghỉ hưu", "nghi huu"),
        ("ĐỒNG Ý ✅", "dong y"),
        ("✅ Tôi đồng ý", "toi dong y"),
        ("  Kinh doanh,   buôn bán ", "kinh doanh buon ban"),
        ("Don't know", "dont know"),
        ("H'Mông", "hmong"),
        ("２", "2"),  # full-width digit
        ("2️⃣", "2"),  # keycap emoji
        ("Sốt / đang bị bệnh cấp tính", "sot dang bi benh cap tinh"),
        ("huỷ", "huy"),  # the other accent placement folds alike
        ("hủy", "huy"),
        ("", ""),
        ("💾 ✏️ …", ""),
    ],
)
def test_fold(text: str, folded: str) -> None:
    assert fold(text) == folded


@given(st.text(max_size=60))
def test_fold_is_idempotent_and_plain(text: str) -> None:
    once = fold(text)
    assert fold(once) == once
    assert once == once.strip() and "  " not in once
    assert all(ch == " " or ch.isalnum() for ch in once)


# ---------------------------------------------------------------- numbers

YES_NO = offer_of(["Có", "Không", "Không biết"])


@pytest.mark.parametrize(
    "text", ["2", " 2 ", "2.", "2)", "(2)", "số 2", "So 2", "so2", "Số 2.", "２", "2️⃣", "#2", "02"]
)
def test_a_number_names_its_choice(text: str) -> None:
    assert match(text, YES_NO) == YES_NO.choices[1]


@pytest.mark.parametrize(
    "text",
    ["0", "4", "-1", "+1", "1.5", "1,5", "1 2", "2021", "123456", "0912345678", "0912 345 678",
     "+84 912 345 678", "001234567890", "số 12345", "2.000.000", "1/2"],
)
def test_other_numbers_name_nothing(text: str) -> None:
    assert match(text, YES_NO) is None


def test_numbers_off() -> None:
    """Where a typed number means something of its own, only labels count."""
    assert match("1", YES_NO, numbers=False) is None
    assert match("ko", YES_NO, ALIASES, numbers=False) == YES_NO.choices[1]
    years = offer_of(["2021", "2022"])
    assert match("2022", years, numbers=False) == years.choices[1]
    assert match("1", years, numbers=False) is None
    assert match("1. Có", YES_NO, numbers=False) is None


@given(st.from_regex(r"[0-9]{4,15}", fullmatch=True), st.sampled_from(["", " ", "."]))
def test_long_digit_strings_never_resolve(digits: str, sep: str) -> None:
    text = sep.join([digits[:4], digits[4:]]) if sep and len(digits) > 4 else digits
    labels = list(LABELS["vi"].values())[:40]
    assert match(text, offer_of(labels), ALIASES) is None
    assert match(text, offer_of(labels), ALIASES, numbers=False) is None


def test_a_copied_numbered_line() -> None:
    """"1. Nam" copied whole from the Zalo list is choice 1; a line that contradicts itself is
    nothing."""
    gender = offer_of(["Nam", "Nữ"])
    assert match("1. Nam", gender) == gender.choices[0]
    assert match("2. nu", gender) == gender.choices[1]
    assert match("2. Nam", gender) is None


# ---------------------------------------------------------------- labels


def test_labels_without_accents_case_emoji_or_spaces() -> None:
    consent = offer_of([CATALOGS["vi"]["button.agree"], CATALOGS["vi"]["button.decline"]])
    assert match("tôi đồng ý", consent) == consent.choices[0]
    assert match("TOI KHONG DONG Y", consent) == consent.choices[1]
    assert match("❌Tôi không đồng ý❌", consent) == consent.choices[1]
    assert match("khongbiet", YES_NO) == YES_NO.choices[2]


def test_short_forms_of_labels() -> None:
    campaign = offer_of(["Tiêm vắc xin phòng COVID-19 (2021)", "Tiêm vắc xin cúm mùa"])
    assert match("tiem vac xin phong covid 19", campaign) == campaign.choices[0]
    sites = offer_of(["Trạm Y tế xã Bản Phiệt · còn 5 chỗ", "Trạm Y tế xã Bản Qua · hết chỗ"])
    assert match("Trạm y tế xã Bản Qua", sites) == sites.choices[1]
    assert _short_forms("Bắc Hà (cũ) · còn 5 chỗ") >= {"bac ha"}


def test_starts_of_words() -> None:
    occupations = offer_of([CATALOGS["vi"][f"occupation.{c}"] for c in v.occupations()])
    by_code = dict(zip(v.occupations(), occupations.choices, strict=True))
    assert match("lam nghiep", occupations) == by_code["farmer"]  # its part after the comma
    assert match("kinh", occupations) == by_code["business"]
    assert match("hoc sinh", occupations) == by_code["student"]
    assert match("sinh vien", occupations) == by_code["student"]
    assert match("buon ban", occupations) == by_code["business"]
    assert match("cong", occupations) is None  # Công an, Công nhân, … công chức: a tie
    assert match("noi", occupations) is None  # three letters are too few
    assert match("ông", occupations) is None  # not the start of a word ("Công")
    assert match("nghiep", occupations) is None  # a word inside a part is not its start
    priorities = offer_of([CATALOGS["vi"][f"priority.{c}"] for c in v.priority_groups()])
    assert match("tiếp", priorities) is None  # not "…, cán bộ thường tiếp xúc nhiều người"
    assert match("Không thuộc nhóm nào", priorities).label.startswith("Không thuộc")  # type: ignore[union-attr]


def test_parts_are_what_commas_and_spaced_slashes_separate() -> None:
    reasons = offer_of([LABELS["vi"][f"site.reason.{r}"] for r in
                        ("fever", "blood_pressure", "refused", "other")])
    assert match("đang bị bệnh", reasons) == reasons.choices[0]  # "Sốt / đang bị bệnh cấp tính"
    no_id = offer_of([LABELS["vi"]["button.no_id"]])  # "Tôi không có CCCD/CMND"
    assert match("cmnd", no_id) is None
    times = offer_of(["07:30–09:00 · còn 5 chỗ", "09:00–11:00 · còn 2 chỗ"])
    assert match("09:00", times) == times.choices[1]  # a time: the slot that starts then
    assert match("0900", times) is None


def test_a_tie_is_not_settled_by_a_looser_rule() -> None:
    twice = offer_of(["Bắc Hà", "Bắc Hà", "Bắc Hà 2"])
    assert match("bac ha", twice) is None
    assert match("Bắc Hà 2", twice) == twice.choices[2]


def test_long_or_empty_text() -> None:
    assert match("", YES_NO, ALIASES) is None
    assert match("   ", YES_NO, ALIASES) is None
    assert match("🙂", YES_NO, ALIASES) is None
    assert match("không " * 50, YES_NO, ALIASES) is None
    assert match("1", Offer(), ALIASES) is None


def test_keyboard_buttons_are_choices_too() -> None:
    from bot.channels.base import Keyboard, KeyButton

    keyboard = Keyboard.of([[KeyButton("📱 Share", asks="contact")], ["Tôi không có điện thoại"]])
    replies = [Reply("?", keyboard)]
    offer = numbered(replies)
    assert offer is not None
    assert match("1", offer) == Choice(1, "Tôi không có điện thoại", None)
    assert match("ko có", offer, ALIASES) == offer.choices[0]


# ---------------------------------------------------------------- aliases


@pytest.mark.parametrize(
    ("text", "key", "question"),
    [
        ("ko", "button.no", ["button.yes", "button.no", "button.unknown"]),
        ("k", "button.no", ["button.yes", "button.no", "button.unknown"]),
        ("hok", "button.no", ["button.yes", "button.no", "button.unknown"]),
        ("KHONG", "button.no", ["button.yes", "button.no", "button.unknown"]),
        ("co", "button.yes", ["button.yes", "button.no", "button.unknown"]),
        ("c", "button.yes", ["button.yes", "button.no", "button.unknown"]),
        ("yes", "button.yes", ["button.yes", "button.no", "button.unknown"]),
        ("vâng", "button.yes", ["button.yes", "button.no", "button.unknown"]),
        ("dạ", "button.yes", ["button.yes", "button.no", "button.unknown"]),
        ("ừ", "button.yes", ["button.yes", "button.no", "button.unknown"]),
        ("ko biết", "button.unknown", ["button.yes", "button.no", "button.unknown"]),
        ("kb", "button.unknown", ["button.yes", "button.no", "button.unknown"]),
        ("đồng ý", "button.agree", ["button.agree", "button.decline"]),
        ("DONG Y ✅", "button.agree", ["button.agree", "button.decline"]),
        ("ok", "button.agree", ["button.agree", "button.decline"]),
        ("dc", "button.agree", ["button.agree", "button.decline"]),
        ("ko", "button.decline", ["button.agree", "button.decline"]),
        ("không đồng ý", "button.decline", ["button.agree", "button.decline"]),
        ("hưu trí", "occupation.retired", [f"occupation.{c}" for c in v.occupations()]),
        ("về hưu", "occupation.retired", [f"occupation.{c}" for c in v.occupations()]),
        ("lam ruong", "occupation.farmer", [f"occupation.{c}" for c in v.occupations()]),
        ("nông dân", "occupation.farmer", [f"occupation.{c}" for c in v.occupations()]),
        ("làm nương", "occupation.farmer", [f"occupation.{c}" for c in v.occupations()]),
        ("bác sĩ", "occupation.health_worker", [f"occupation.{c}" for c in v.occupations()]),
        ("trai", "gender.male", ["gender.male", "gender.female"]),
        ("nu", "gender.female", ["gender.male", "gender.female"]),
        ("gái", "gender.female", ["gender.male", "gender.female"]),
        ("bo qua", "button.skip", ["button.skip"]),
        ("ko có", "button.skip", ["button.skip"]),
        ("không", "button.no_id", ["button.no_id"]),
        ("ko", "button.delete_no", ["button.delete_yes", "button.delete_no"]),
        ("xoa het", "button.delete_yes", ["button.delete_yes", "button.delete_no"]),
        ("ok", "book.button_confirm", ["book.button_confirm", "book.button_other_time"]),
        ("quay lại", "book.button_other_time", ["book.button_confirm", "book.button_other_time"]),
        ("có", "appointments.button_cancel_yes",
         ["appointments.button_cancel_yes", "appointments.button_keep"]),
        ("ko", "appointments.button_keep",
         ["appointments.button_cancel_yes", "appointments.button_keep"]),
        ("nhận", "waitlist.button_take", ["waitlist.button_take", "waitlist.button_decline"]),
        ("sốt", "site.reason.fever", ["site.reason.fever", "site.reason.blood_pressure",
                                      "site.reason.refused", "site.reason.other"]),
        ("lưu", "button.save", ["edit.full_name", "edit.gender", "button.save"]),
    ],
)
def test_aliases_at_the_questions_asked(text: str, key: str, question: list[str]) -> None:
    offer = offer_of([LABELS["vi"][k] for k in question])
    found = match(text, offer, ALIASES)
    assert found is not None and found.label == LABELS["vi"][key], (text, found)


@pytest.mark.parametrize(
    ("text", "key", "question"),
    [
        ("y", "button.yes", ["button.yes", "button.no", "button.unknown"]),
        ("nope", "button.no", ["button.yes", "button.no", "button.unknown"]),
        ("idk", "button.unknown", ["button.yes", "button.no", "button.unknown"]),
        ("agree", "button.agree", ["button.agree", "button.decline"]),
        ("pensioner", "occupation.retired", [f"occupation.{c}" for c in v.occupations()]),
        ("farmer", "occupation.farmer", [f"occupation.{c}" for c in v.occupations()]),
    ],
)
def test_english_aliases(text: str, key: str, question: list[str]) -> None:
    offer = offer_of([LABELS["en"][k] for k in question])
    found = match(text, offer, ALIASES)
    assert found is not None and found.label == LABELS["en"][key], (text, found)


def test_the_language_chooser() -> None:
    languages = offer_of([CATALOGS["vi"]["language.name"], CATALOGS["en"]["language.name"]])
    assert match("tieng viet", languages, ALIASES) == languages.choices[0]
    assert match("vietnamese", languages, ALIASES) == languages.choices[0]
    assert match("tiếng anh", languages, ALIASES) == languages.choices[1]
    assert match("ENGLISH", languages, ALIASES) == languages.choices[1]


def test_destructive_and_contrary_words_name_nothing() -> None:
    delete = offer_of([LABELS["vi"]["button.delete_yes"], LABELS["vi"]["button.delete_no"]])
    assert match("có", delete, ALIASES) is None  # erasing everything takes more than "có"
    assert match("ok", delete, ALIASES) is None
    assert match("dung xoa", delete, ALIASES) is None  # "đừng xóa" and "đúng, xóa" fold alike
    assert match("yes", delete, ALIASES) is None


def test_an_alias_naming_two_choices_names_neither() -> None:
    """"k" is "Không" and "Tôi không đồng ý": offered together, it answers neither."""
    both = offer_of([LABELS["vi"]["button.no"], LABELS["vi"]["button.decline"], "Có"])
    assert match("k", both, ALIASES) is None
    assert match("không", both, ALIASES) == both.choices[0]  # the exact label still wins


def test_an_english_k_is_not_vietnamese_no() -> None:
    """Aliases stand for labels of their own language: "k" is "Không", not "No"."""
    english = offer_of([LABELS["en"]["button.yes"], LABELS["en"]["button.no"]])
    assert match("k", english, ALIASES) is None


def _real_questions(lang: str) -> list[list[str]]:
    """The option keys of every question the conversations ask (labels built from keys)."""
    occupations = [f"occupation.{c}" for c in v.occupations()]
    priorities = [f"priority.{c}" for c in v.priority_groups()]
    edits = [f"edit.{f}" for f in hb.editable_fields({})]
    return [
        ["button.agree", "button.decline"],
        ["gender.male", "gender.female"],
        ["button.no_id"],
        ["button.no_phone"],
        ["button.skip"],
        occupations,
        priorities,
        ["button.yes", "button.no", "button.unknown"],
        ["button.not_sure"],
        [*edits, "button.save"],
        ["button.edit"],
        ["button.delete_yes", "button.delete_no"],
        ["book.button_confirm", "book.button_other_time"],
        ["appointments.button_reschedule", "appointments.button_cancel"],
        ["appointments.button_cancel_yes", "appointments.button_keep"],
        ["waitlist.button_take", "waitlist.button_decline"],
        ["appointments.button_leave_waitlist"],
        # /appointments with a held place, a booking and a waitlist, numbered across them
        ["waitlist.button_take", "waitlist.button_decline", "appointments.button_reschedule",
         "appointments.button_cancel", "appointments.button_leave_waitlist"],
        ["site.button.record", "site.button.not_vaccinated"],
        ["site.reason.fever", "site.reason.blood_pressure", "site.reason.refused",
         "site.reason.other"],
    ]


def _allowed(text: str, lang: str, key: str) -> bool:
    """Whether ``text`` may name the button of ``key``: one of its aliases, its label, a
    shorter name of it, or the start of words of it."""
    label = LABELS[lang][key]
    table = ALIAS_DATA.get(lang, {})
    same = [k for k in table if squashed(LABELS[lang].get(k, "")) == squashed(label)]
    mine = {squashed(a) for k in same for a in table[k]}  # "Công an": police, priority p04
    return (
        squashed(text) in mine
        or squashed(text) == squashed(label)
        or squashed(text) in {s.replace(" ", "") for s in _short_forms(label)}
        or (" " + fold(text)) in (" " + fold(label))
    )


@pytest.mark.parametrize("lang", SUPPORTED)
def test_every_question_every_way(lang: str) -> None:
    """At every question: each option by its number, label, folded label, upper case and
    accent-free label; and no alias in the file picks a button it was not written for."""
    every_alias = {a for table in ALIAS_DATA.values() for words in table.values() for a in words}
    for keys in _real_questions(lang):
        labels = [LABELS[lang][k] for k in keys]
        offer = offer_of(labels)
        for choice, key in zip(offer.choices, keys, strict=True):
            for text in (str(choice.number), choice.label, fold(choice.label),
                         choice.label.upper(), unaccented(choice.label)):
                assert match(text, offer, ALIASES) == choice, (lang, key, text)
        for alias in every_alias:
            found = match(alias, offer, ALIASES)
            if found is not None:
                key = keys[found.number - 1]
                assert _allowed(alias, lang, key), (lang, alias, key)


def test_every_key_of_the_file_exists_in_every_language() -> None:
    for lang, table in ALIAS_DATA.items():
        assert lang in SUPPORTED
        for key in table:
            assert key in CATALOGS[lang], (lang, key)
            assert "{" not in CATALOGS[lang][key], key


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"fr": {"button.yes": ["oui"]}}, "unknown language"),
        ({"vi": {"button.nope": ["ko"]}}, "in no catalogue"),
        ({"vi": {"button.edit_field": ["sửa"]}}, "placeholder"),
        ({"vi": {"button.yes": "có"}}, "list of strings"),
        ({"vi": {"button.yes": ["✅"]}}, "not a word"),
        ({"vi": {"button.yes": ["1"]}}, "not a word"),
        ({"vi": ["button.yes"]}, "table"),
    ],
)
def test_a_bad_aliases_file_is_an_error(data: dict, error: str) -> None:
    with pytest.raises(AliasError, match=error):
        Aliases.from_data(data, CATALOGS)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(AliasError, match="cannot read"):
        Aliases.load(CATALOGS, tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[vi\n", encoding="utf-8")
    with pytest.raises(AliasError, match="not valid TOML"):
        Aliases.load(CATALOGS, bad)


# ---------------------------------------------------------------- properties


def _distinct(labels: list[str]) -> bool:
    """No two labels one answer: folded apart, and no label a shorter name of another."""
    keys = [squashed(label) for label in labels]
    shorts = [{s.replace(" ", "") for s in _short_forms(label)} for label in labels]
    return len(set(keys)) == len(keys) and not any(
        keys[i] in shorts[j] for i in range(len(labels)) for j in range(len(labels)) if i != j
    )


def offers(lang: str) -> st.SearchStrategy[list[str]]:
    return st.lists(
        st.sampled_from(sorted(set(LABELS[lang].values()))), min_size=1, max_size=25, unique=True
    ).filter(_distinct)


@settings(max_examples=200, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.sampled_from(SUPPORTED).flatmap(offers), st.data())
def test_every_choice_by_number_and_label(labels: list[str], data: st.DataObject) -> None:
    offer = offer_of(labels)
    choice = data.draw(st.sampled_from(offer.choices))
    for text in (str(choice.number), f"số {choice.number}", f"{choice.number}.", choice.label,
                 fold(choice.label), choice.label.upper(), choice.label.lower(),
                 unaccented(choice.label), f"  {choice.label}  "):
        assert match(text, offer, ALIASES) == choice, text
    # the same offer read back from the database
    assert match(choice.label, Offer.from_json(offer.to_json()), ALIASES) == choice


def _alias_cases(lang: str) -> list[tuple[str, str]]:
    return sorted((alias, key) for key, words in ALIAS_DATA[lang].items() for alias in words)


def _targets(alias: str) -> set[str]:
    return set(ALIASES.targets(squashed(alias)))


@settings(max_examples=300, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.data())
def test_aliases_resolve_among_other_labels(data: st.DataObject) -> None:
    lang = data.draw(st.sampled_from(SUPPORTED))
    alias, key = data.draw(st.sampled_from(_alias_cases(lang)))
    label = LABELS[lang][key]
    targets = _targets(alias)

    def unrelated(other: str) -> bool:
        """A label the alias cannot also name by an earlier or equal rule."""
        forms = {s.replace(" ", "") for s in _short_forms(other)} | {squashed(other)}
        return not forms & (targets | {squashed(alias)})

    others = data.draw(
        st.lists(st.sampled_from(sorted(set(LABELS[lang].values()))), max_size=12, unique=True)
    )
    others = [o for o in others if o != label and unrelated(o)]
    labels = data.draw(st.permutations([label, *others]))
    assume(_distinct(labels))
    found = match(alias, offer_of(labels), ALIASES)
    assert found is not None and found.label == label, (alias, key, labels)


@settings(max_examples=200)
@given(st.data())
def test_ambiguous_aliases_resolve_to_nothing(data: st.DataObject) -> None:
    lang = data.draw(st.sampled_from(SUPPORTED))
    by_target: dict[str, list[str]] = {}
    for label in set(LABELS[lang].values()):
        by_target.setdefault(squashed(label), []).append(label)
    shared = [
        (alias, sorted(targets))
        for alias, _ in _alias_cases(lang)
        if len(targets := [t for t in _targets(alias) if t in by_target]) >= 2
    ]
    alias, targets = data.draw(st.sampled_from(shared))
    pair = data.draw(st.lists(st.sampled_from(targets), min_size=2, max_size=2, unique=True))
    labels = [by_target[t][0] for t in pair]
    assume(_distinct(labels) and squashed(alias) not in {squashed(x) for x in labels})
    assume(not any(squashed(alias) in {s.replace(" ", "") for s in _short_forms(x)}
                   for x in labels))
    assert match(alias, offer_of(labels), ALIASES) is None, (alias, labels)


@given(st.text(max_size=40), st.lists(st.text(max_size=30), max_size=8))
def test_any_text_any_offer_never_crashes(text: str, labels: list[str]) -> None:
    offer = offer_of(labels)
    found = match(text, offer, ALIASES)
    assert found is None or found in offer.choices


def test_an_offer_is_folded_once() -> None:
    from bot.channels.choices import _prepare

    offer = offer_of([f"Trạm Y tế xã số {n} · còn {n} chỗ" for n in range(1, 31)])
    match("tram", offer)
    before = _prepare.cache_info().hits
    for _ in range(5):
        match("Trạm Y tế xã số 7", Offer.from_json(offer.to_json()))
    assert _prepare.cache_info().hits >= before + 5


def test_options_as_offered() -> None:
    replies = [Reply("?", Options.of([[("Có", "hb:s:yes"), ("Không", "hb:s:no")]]))]
    offer = numbered(replies)
    assert offer is not None
    assert match("ko", offer, ALIASES) == Choice(2, "Không", "hb:s:no")
    assert Option("Có", "x").label == "Có"


DAYS = Offer(
    (
        Choice(1, "Thứ Hai, 30/11/2026 · còn 5 chỗ", "bk:d:1:20261130"),
        Choice(2, "Thứ Ba, 01/12/2026 · còn 3 chỗ", "bk:d:1:20261201"),
    )
)
TIMES = Offer(
    (
        Choice(1, "07:30–11:30 · còn 60 chỗ", "bk:t:1:7"),
        Choice(2, "13:30–16:30 · còn 5 chỗ", "bk:t:1:8"),
    )
)


@pytest.mark.parametrize(
    ("typed", "offer", "number"),
    [
        ("30/11", DAYS, 1), ("1/12", DAYS, 2), ("01/12/2026", DAYS, 2), ("ngày 30/11", DAYS, 1),
        ("1-12-26", DAYS, 2), ("7:30", TIMES, 1), ("07:30", TIMES, 1), ("7h30", TIMES, 1),
        ("13h30", TIMES, 2), ("lúc 13 giờ 30", TIMES, 2),
    ],
)  # fmt: skip
def test_a_typed_day_or_time_picks_the_choice_showing_it(
    typed: str, offer: Offer, number: int
) -> None:
    found = match(typed, offer)
    assert found is not None and found.number == number


@pytest.mark.parametrize("typed", ["2/12", "31/11/2025", "11:30", "9:00", "32/1"])
def test_a_day_or_time_no_choice_shows_is_none(typed: str) -> None:
    assert match(typed, DAYS) is None and match(typed, TIMES) is None


def test_a_notice_joins_the_open_choices_numbered_after_them() -> None:
    from bot.channels.base import with_notice
    from models.addresses import Address

    question = Offer((Choice(1, "Nam", "hb:gender:male"), Choice(2, "Nữ", "hb:gender:female")))
    to = Address("zalo", "abc")
    offer_reply = Reply(
        text="Có chỗ cho bạn",
        markup=Options.of([[("✅ Nhận chỗ", "wl:a:7")], [("Không cần nữa", "wl:d:7")]]),
        to=to,
    )
    joined = with_notice(question, [offer_reply])
    assert offer_reply.numbered_from == 3
    assert [c.code for c in joined.choices] == [
        "hb:gender:male", "hb:gender:female", "wl:a:7", "wl:d:7"
    ]  # fmt: skip
    assert match("2", joined) == joined.choices[1]  # the question's numbers still hold
    assert match("3", joined) == joined.choices[2]  # the place, by its own number
    assert match("nhan cho", joined) == joined.choices[2]
    again = Reply(text="Vẫn giữ chỗ", markup=offer_reply.markup, to=to)
    twice = with_notice(joined, [again])  # the same offer sent again is not listed twice
    assert [c.code for c in twice.choices] == [c.code for c in joined.choices]
    assert again.numbered_from == 3
