"""Reference data for the health-book questions: the TOML files in ``models/data`` and the
administrative units of the ``vietnam-provinces`` package, each loaded once and cached.

Pure Python, no Telegram. Labels for the codes live in ``locales/*/LC_MESSAGES/validators.po``
(``occupation.<code>``, ``priority.<code>``, ``screening.<code>``).
"""

from __future__ import annotations

import enum
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from vietnam_provinces import Province, Ward

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


class ScreeningGroup(enum.StrEnum):
    """Where a self-declaration points, mildest first (the site decides, the bot only advises)."""

    ELIGIBLE = "eligible"
    CAUTION = "caution"
    POSTPONE = "postpone"
    CONTRAINDICATED = "contraindicated"

    @property
    def severity(self) -> int:
        """0 for eligible … 3 for contraindicated, to pick the strongest of several."""
        return list(ScreeningGroup).index(self)


@dataclass(frozen=True)
class ScreeningItem:
    """One self-declared screening item; ``derived`` (e.g. ``"age>=65"``) is computed, not asked."""

    code: str
    group_if_yes: ScreeningGroup
    group_if_unknown: ScreeningGroup
    derived: str | None = None

    @property
    def asked(self) -> bool:
        """Whether the bot asks this item (derived ones are computed)."""
        return self.derived is None

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
        )
        for row in load_data("screening")["item"]
    )


def screening_items(asked_only: bool = True) -> list[ScreeningItem]:
    """Screening items in order; by default only those the bot asks (not derived ones)."""
    return [item for item in _screening_items() if item.asked or not asked_only]


# --- administrative units (since 1 July 2025: 34 provinces, then communes/wards) --------------


@lru_cache(maxsize=1)
def provinces() -> tuple[tuple[int, str], ...]:
    """The 34 current provinces as ``(code, name)``, in the package's order."""
    return tuple((int(p.code), p.name) for p in Province.iter_all())


@lru_cache(maxsize=64)
def wards(province_code: int) -> tuple[tuple[int, str], ...]:
    """Communes, wards and special zones of one province as ``(code, name)``; empty if unknown."""
    try:
        return tuple((int(w.code), w.name) for w in Ward.iter_by_province(int(province_code)))
    except (ValueError, KeyError):
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


@lru_cache(maxsize=4096)
def _ward(code: int) -> tuple[str, int] | None:
    try:
        ward = Ward.from_code(code)
    except (ValueError, KeyError):
        return None
    return ward.name, int(ward.province_code)


def ward_name(code: int) -> str:
    """The commune/ward's name with its prefix (``"Phường Sa Pa"``); ``KeyError`` if unknown."""
    found = _ward(int(code))
    if found is None:
        raise KeyError(code)
    return found[0]


def ward_in_province(ward_code: int, province_code: int) -> bool:
    """Whether the commune/ward exists and belongs to the province."""
    found = _ward(int(ward_code))
    return found is not None and found[1] == int(province_code)
