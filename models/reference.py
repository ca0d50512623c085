"""Reference data for the health-book questions: the TOML files in ``models/data`` and the
administrative units of one pinned ``vietnam-provinces`` release, vendored as
``models/data/admin_units/<version>.csv``; each loaded once and cached.

Pure Python, no Telegram. Labels for the codes live in ``locales/*/LC_MESSAGES/validators.po``
(``occupation.<code>``, ``priority.<code>``, ``screening.<code>``).
"""

from __future__ import annotations

import csv
import enum
import re
import tomllib
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent / "data"


@lru_cache(maxsize=16)
def load_data(name: str) -> dict[str, Any]:
    """Parse ``models/data/<name>.toml`` once (callers must not mutate the result)."""
    with (DATA_DIR / f"{name}.toml").open("rb") as fh:
        return tomllib.load(fh)


# --- ethnic groups ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Ethnicity:
    """One of the 54 ethnic groups: GSO code (1..54) and official Vietnamese name."""

    code: int
    name: str


@lru_cache(maxsize=1)
def _ethnicity_rows() -> tuple[tuple[Ethnicity, tuple[str, ...]], ...]:
    """Every group with its aliases, in code order."""
    rows = [
        (
            Ethnicity(int(row["code"]), str(row["name"])),
            tuple(str(a) for a in row.get("aliases", ())),
        )
        for row in load_data("ethnicities")["ethnicity"]
    ]
    return tuple(sorted(rows, key=lambda r: r[0].code))


def ethnicities() -> tuple[Ethnicity, ...]:
    """All 54 ethnic groups in GSO code order."""
    return tuple(e for e, _ in _ethnicity_rows())


def ethnicity_aliases() -> dict[int, tuple[str, ...]]:
    """Other names and spellings of each group, by code (for matching, never displayed)."""
    return {e.code: aliases for e, aliases in _ethnicity_rows()}


@lru_cache(maxsize=1)
def _ethnicity_by_code() -> dict[int, Ethnicity]:
    return {e.code: e for e in ethnicities()}


def ethnicity_by_code(code: int) -> Ethnicity:
    """The group with this GSO code; ``KeyError`` if there is none."""
    return _ethnicity_by_code()[int(code)]


def common_ethnicities() -> tuple[Ethnicity, ...]:
    """The groups most common in Lào Cai, for buttons, most numerous first."""
    return tuple(ethnicity_by_code(c) for c in load_data("ethnicities")["common_lao_cai"])


# --- CCCD province codes (63 pre-2025 provinces) ---------------------------------------------


def cccd_provinces() -> dict[str, str]:
    """The 63 pre-2025 province codes that start a CCCD number (``"010"`` → ``"Lào Cai"``)."""
    return dict(load_data("cccd_provinces")["codes"])


@lru_cache(maxsize=1)
def _cccd_codes() -> frozenset[str]:
    return frozenset(load_data("cccd_provinces")["codes"])


def is_cccd_province(code: str) -> bool:
    """Whether ``code`` (3 digits) is one of the 63 CCCD province codes."""
    return code in _cccd_codes()


# --- occupations and priority groups ---------------------------------------------------------


@lru_cache(maxsize=1)
def _occupations() -> tuple[str, ...]:
    return tuple(str(row["code"]) for row in load_data("occupations")["occupation"])


def occupations() -> list[str]:
    """Occupation codes in the order they are offered."""
    return list(_occupations())


def is_occupation(code: str) -> bool:
    """Whether ``code`` is a known occupation code."""
    return code in _occupations()


@lru_cache(maxsize=1)
def _priority_groups() -> tuple[tuple[str, bool], ...]:
    return tuple(
        (str(row["code"]), bool(row.get("short", False)))
        for row in load_data("priority_groups")["group"]
    )


def priority_groups(*, short_only: bool = False) -> list[str]:
    """Priority-group codes of Resolution 21/NQ-CP in order (``none`` last); optionally only
    those flagged ``short`` for the first menu of buttons."""
    return [code for code, short in _priority_groups() if short or not short_only]


def is_priority_group(code: str) -> bool:
    """Whether ``code`` is a known priority-group code (``none`` included)."""
    return any(code == c for c, _ in _priority_groups())


# --- pre-vaccination screening ---------------------------------------------------------------


class Answer(enum.StrEnum):
    """An answer to a screening question."""

    YES = "yes"
    NO = "no"
    UNKNOWN = "unknown"
    NOT_APPLICABLE = "not_applicable"  # not asked of this person (``applies_to``)


class ScreeningGroup(enum.StrEnum):
    """Where a self-declaration points, mildest first (the site decides, the bot only advises)."""

    ELIGIBLE = "eligible"
    CAUTION = "caution"  # vaccinate at the usual site, watched more closely
    REFER = "refer"  # screen and vaccinate at a hospital-level site
    POSTPONE = "postpone"
    CONTRAINDICATED = "contraindicated"

    @property
    def severity(self) -> int:
        """0 for eligible … 4 for contraindicated, to pick the strongest of several."""
        return list(ScreeningGroup).index(self)


@dataclass(frozen=True)
class ScreeningItem:
    """One self-declared screening item; ``derived`` (e.g. ``"age>=65"``) is computed, not asked."""

    code: str
    group_if_yes: ScreeningGroup
    group_if_unknown: ScreeningGroup
    derived: str | None = None
    applies_gender: str | None = None  # asked only of this gender
    applies_min_age: int | None = None
    applies_max_age: int | None = None
    detail: str | None = None  # the free-text field that says which ones, when "yes"

    @property
    def asked(self) -> bool:
        """Whether the bot asks this item (derived ones are computed)."""
        return self.derived is None

    def applies(self, *, gender: str | None, age: int | None) -> bool:
        """Whether the item is asked of this person; what is not known yet does not exclude."""
        if self.applies_gender and gender and gender != self.applies_gender:
            return False
        if age is not None and self.applies_min_age is not None and age < self.applies_min_age:
            return False
        return not (
            age is not None and self.applies_max_age is not None and age > self.applies_max_age
        )

    def derived_answer(self, *, age: int) -> Answer:
        """The answer of a derived item computed from the person's age (``"age>=65"``)."""
        if self.derived is None or not self.derived.startswith("age>="):
            raise ValueError(f"screening item {self.code!r} is not derived from age")
        return Answer.YES if age >= int(self.derived.removeprefix("age>=")) else Answer.NO

    def group_for(self, answer: Answer) -> ScreeningGroup:
        """The group this item points to for ``answer``."""
        if answer is Answer.YES:
            return self.group_if_yes
        if answer is Answer.UNKNOWN:
            return self.group_if_unknown
        return ScreeningGroup.ELIGIBLE


@lru_cache(maxsize=1)
def _screening_items() -> tuple[ScreeningItem, ...]:
    return tuple(
        ScreeningItem(
            code=str(row["code"]),
            group_if_yes=ScreeningGroup(row["group_if_yes"]),
            group_if_unknown=ScreeningGroup(row["group_if_unknown"]),
            derived=row.get("derived"),
            applies_gender=row.get("applies_to", {}).get("gender"),
            applies_min_age=row.get("applies_to", {}).get("min_age"),
            applies_max_age=row.get("applies_to", {}).get("max_age"),
            detail=row.get("detail"),
        )
        for row in load_data("screening")["item"]
    )


def screening_items(asked_only: bool = True) -> list[ScreeningItem]:
    """Screening items in order; by default only those the bot asks (not derived ones)."""
    return [item for item in _screening_items() if item.asked or not asked_only]


# --- administrative units (since 1 July 2025: 34 provinces, then communes/wards) --------------
# One release of the ``vietnam-provinces`` package, vendored in ``models/data/admin_units``: the
# codes stored in the database follow it (the ``reference_data`` table records which), and a
# migration maps stored codes when the pinned release changes (``code_mapping``).

ADMIN_UNITS = "admin_units"  # its name in the reference_data table
ADMIN_UNITS_VERSION = "2026.9.0"
ADMIN_UNITS_DIR = DATA_DIR / "admin_units"


@dataclass(frozen=True, eq=False)
class AdminUnits:
    """One release's list, in the release's order: provinces ``code → name`` and communes/wards
    ``code → (name, province code)``; names are official, with their type word."""

    version: str
    provinces: dict[int, str]
    wards: dict[int, tuple[str, int]]


@lru_cache(maxsize=4)
def admin_units(version: str = ADMIN_UNITS_VERSION) -> AdminUnits:
    """The vendored list of one release (``FileNotFoundError`` if it is not vendored)."""
    provinces: dict[int, str] = {}
    wards: dict[int, tuple[str, int]] = {}
    with (ADMIN_UNITS_DIR / f"{version}.csv").open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["kind"] == "province":
                provinces[int(row["code"])] = row["name"]
            else:
                wards[int(row["code"])] = (row["name"], int(row["province_code"]))
    return AdminUnits(version, provinces, wards)


def _short_province_name(name: str) -> str:
    # "Tỉnh Lào Cai" reads "Lào Cai" after "tỉnh" in questions; cities keep "Thành phố"
    return name.removeprefix("Tỉnh ")


@lru_cache(maxsize=1)
def provinces() -> tuple[tuple[int, str], ...]:
    """The 34 current provinces as ``(code, name)`` in the reference's order; a province is named
    without "Tỉnh" (``"Lào Cai"``), a centrally-run city with it (``"Thành phố Hà Nội"``)."""
    units = admin_units().provinces
    return tuple((code, _short_province_name(name)) for code, name in units.items())


@lru_cache(maxsize=1)
def _wards_by_province() -> dict[int, tuple[tuple[int, str], ...]]:
    grouped: dict[int, list[tuple[int, str]]] = {}
    for code, (name, province) in admin_units().wards.items():
        grouped.setdefault(province, []).append((code, name))
    return {province: tuple(units) for province, units in grouped.items()}


# The example a question about the commune/ward shows, per province: one people there know;
# a province not listed shows its first unit in the reference's order.
_WARD_EXAMPLES = {15: "Phường Sa Pa"}


def ward_example(province_code: int) -> str:
    """A real commune/ward of the province, named as a person would type it (``"Sa Pa"``)."""
    units = wards(province_code)
    preferred = _WARD_EXAMPLES.get(int(province_code))
    name = preferred if preferred in {n for _, n in units} else (units[0][1] if units else "")
    for prefix in ("Đặc khu ", "Thị trấn ", "Phường ", "Xã "):
        if name.startswith(prefix):
            return name.removeprefix(prefix)
    return name


def wards(province_code: int) -> tuple[tuple[int, str], ...]:
    """Communes, wards and special zones of one province as ``(code, name)``; empty if unknown."""
    try:
        return _wards_by_province().get(int(province_code), ())
    except (TypeError, ValueError):
        return ()


@lru_cache(maxsize=1)
def _province_names() -> dict[int, str]:
    return dict(provinces())


def is_province(code: int) -> bool:
    """Whether ``code`` is one of the 34 current provinces."""
    return int(code) in _province_names()


def province_name(code: int) -> str:
    """The current province's name (``15`` → ``"Lào Cai"``); ``KeyError`` if unknown."""
    return _province_names()[int(code)]


def ward_name(code: int) -> str:
    """The commune/ward's name with its prefix (``"Phường Sa Pa"``); ``KeyError`` if unknown."""
    return admin_units().wards[int(code)][0]


def ward_in_province(ward_code: int, province_code: int) -> bool:
    """Whether the commune/ward exists and belongs to the province."""
    found = admin_units().wards.get(int(ward_code))
    return found is not None and found[1] == int(province_code)


# --- mapping codes from one release to another --------------------------------------------------

_TONE_MARKS = frozenset("\u0300\u0301\u0303\u0309\u0323")  # huyền, sắc, ngã, hỏi, nặng
_SAME_MARKS = str.maketrans({"–": "-", "—": "-", "‐": "-", "‑": "-", "’": "'", "‘": "'", "ʼ": "'"})
_TYPE_WORDS = ("thành phố", "tỉnh", "đặc khu", "phường", "thị trấn", "xã")


def unit_key(name: str) -> str:
    """A unit's name for matching across releases: case, spaces, kinds of dash and apostrophe,
    and where the tone mark sits (``Thuỷ``/``Thủy``, ``Hoà``/``Hòa``) do not count."""
    text = unicodedata.normalize("NFC", name).translate(_SAME_MARKS).casefold()
    text = re.sub(r"\s*-\s*", " - ", text)
    words = []
    for word in text.split():
        parts = unicodedata.normalize("NFD", word)
        tones = "".join(ch for ch in parts if ch in _TONE_MARKS)
        letters = "".join(ch for ch in parts if ch not in _TONE_MARKS)
        words.append(unicodedata.normalize("NFC", letters) + tones)
    return " ".join(words)


def _without_type(key: str) -> str:
    for word in _type_keys():
        if key.startswith(word + " "):
            return key[len(word) + 1 :]
    return key


@lru_cache(maxsize=1)
def _type_keys() -> tuple[str, ...]:
    return tuple(unit_key(word) for word in _TYPE_WORDS)


@dataclass(frozen=True, eq=False)
class CodeMapping:
    """How the codes of release ``old`` map onto release ``new``: every old code that has exactly
    one counterpart (same code included), and the old codes that have none or several."""

    old: str
    new: str
    provinces: dict[int, int]
    wards: dict[int, int]
    unmapped_provinces: frozenset[int]
    unmapped_wards: frozenset[int]

    def province(self, code: int) -> int | None:
        """The new code of an old province code; ``None`` if it cannot be mapped or is unknown."""
        return self.provinces.get(code)

    def ward(self, code: int) -> int | None:
        """The new code of an old commune/ward code; ``None`` if unmappable or unknown."""
        return self.wards.get(code)


def _by_province(units: AdminUnits) -> dict[int, dict[int, str]]:
    grouped: dict[int, dict[int, str]] = {}
    for code, (name, province) in units.wards.items():
        grouped.setdefault(province, {})[code] = name
    return grouped


def _match(names: dict[int, str], candidates: dict[int, str]) -> dict[int, int]:
    """Old code → new code where exactly one candidate has the same name key or, when none has,
    the same key without the type word (a commune that became a ward, "Tỉnh" added or dropped)."""
    exact: dict[str, list[int]] = {}
    bare: dict[str, list[int]] = {}
    for code, name in candidates.items():
        key = unit_key(name)
        exact.setdefault(key, []).append(code)
        bare.setdefault(_without_type(key), []).append(code)
    found = {}
    for code, name in names.items():
        key = unit_key(name)
        hits = exact.get(key) or bare.get(_without_type(key), [])
        if len(hits) == 1:
            found[code] = hits[0]
    return found


@lru_cache(maxsize=8)
def code_mapping(old: str, new: str) -> CodeMapping:
    """Map release ``old``'s codes onto release ``new`` by name: provinces across the country,
    communes/wards within their (mapped) province. Codes are never trusted across releases:
    the same number can name another unit in the next one."""
    before, after = admin_units(old), admin_units(new)
    provinces = _match(before.provinces, after.provinces)
    new_wards = _by_province(after)
    wards: dict[int, int] = {}
    for province, names in _by_province(before).items():
        if province in provinces:
            wards.update(_match(names, new_wards.get(provinces[province], {})))
    return CodeMapping(
        old,
        new,
        provinces,
        wards,
        frozenset(before.provinces.keys() - provinces.keys()),
        frozenset(before.wards.keys() - wards.keys()),
    )
