"""Typed answers to a question with choices: a number, a label, or a word people use for it.

Every channel offers its choices numbered (:func:`bot.channels.base.numbered`). Whatever a person
types while a chat has an offer goes through :func:`match` first; a choice it finds answers as
that choice's button would have (its code, or a keyboard button's label as text). The rules, in
order, each refusing on a tie (two choices found by the same rule is no answer):

1. the whole text is a number from 1 to N: ``2``, ``2.``, ``số 2``, ``２``, ``2️⃣`` (a text of
   digits that is not such a number, a phone or an ID number, stops here: it is never a choice);
2. the label, folded (:func:`fold`: accents, case, emoji and punctuation ignored, spaces too:
   ``khongbiet`` is ``Không biết``); also ``1. Nam``, the line of a numbered list copied whole;
3. the label without a parenthetical ``(…)`` or what follows a ``·`` (``Bắc Hà`` for
   ``Bắc Hà · còn 5 chỗ``);
4. a word people type for a label, kept as data in ``locales/aliases.toml`` (:class:`Aliases`):
   ``ko``, ``k`` and ``hok`` for ``Không``, ``hưu trí`` for ``Nghỉ hưu``;
5. the start of the label, or of one of its parts between commas, at least four letters long:
   ``kinh`` or ``buon ban`` for ``Kinh doanh, buôn bán``, ``sinh vien`` for ``Học sinh, sinh
   viên`` (a word inside a part is not enough: ``tiếp`` is not ``…, cán bộ thường tiếp xúc…``).

Anything else is no choice (``None``): the caller sends the numbered list again, or, at a
question that also takes typed answers, handles the text as typed.
"""

from __future__ import annotations

import functools
import re
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bot.channels.base import Choice, Offer

ALIASES_PATH = Path(__file__).resolve().parent.parent.parent / "locales" / "aliases.toml"
PREFIX_MIN = 4  # letters a typed start of a label needs: "nong", not "no"
NUMBER_DIGITS = 3  # "12" is a choice; "0912345678" is a phone number, never choice 1

_APOSTROPHES = frozenset("'’‘`´ʼʻ")  # dropped, not spaced: "don't" and "dont" fold alike
_KEEP = frozenset("LN")  # letters and digits; everything else (emoji, punctuation) is a space
# "2", "số 2", "so2", "no 2", "#2" (the '#' and '.' are gone once folded)
_NUMBER = re.compile(r"(?:(?:so|no|nr)\s?)?(\d+)")
_NUMBERED_LINE = re.compile(r"(\d{1,3}) (.+)")  # "1. Nam" copied from a numbered list
_AFTER_DOT = re.compile(r"\s+[·•|]\s+.*$")  # "Bắc Hà · còn 5 chỗ" → "Bắc Hà"
_PARENTHESIS = re.compile(r"\s*[(\[][^()\[\]]*[)\]]")
_HAS_SHORT = re.compile(r"[(\[·•|]")
# where a label's parts begin: "Học sinh, sinh viên", "Sốt / đang bị…" (not "CCCD/CMND", "7:30")
_PARTS = re.compile(r"[,;·•|()\[\]–—]|\s/\s|:\s")


def fold(text: str) -> str:
    """Text as compared: NFKD without combining marks, ``đ`` as ``d``, case-folded, anything
    but letters and digits made a space, single spaces. ``"ĐỒNG Ý ✅"`` → ``"dong y"``."""
    out: list[str] = []
    # NFKD before casefold too: "𝕬" is "A" only once decomposed, and casefold may compose
    for ch in unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold()):
        category = unicodedata.category(ch)
        if category[0] == "M" or ch in _APOSTROPHES:
            continue
        if ch == "đ":  # has no decomposition; casefold made "Đ" this one already
            ch = "d"
        out.append(ch if category[0] in _KEEP else " ")
    return " ".join("".join(out).split())


def _squash(folded: str) -> str:
    """A folded text without its spaces: ``khong biet`` and ``khongbiet`` are one answer."""
    return folded.replace(" ", "")


@functools.lru_cache(maxsize=8192)
def _fold_label(label: str) -> str:
    """:func:`fold` for labels: the same buttons come back in offer after offer."""
    return fold(label)


def _short_forms(label: str) -> set[str]:
    """The label's shorter names, folded: without a parenthetical, before a ``·``."""
    forms: set[str] = set()
    if not _HAS_SHORT.search(label):
        return forms
    for cut in (_PARENTHESIS.sub("", label), _AFTER_DOT.sub("", label)):
        forms.add(_fold_label(cut))
        forms.add(_fold_label(_PARENTHESIS.sub("", _AFTER_DOT.sub("", cut))))
    forms.discard("")
    return forms


class AliasError(ValueError):
    """``aliases.toml`` cannot be used: the message names the language, key or alias."""


@dataclass(frozen=True)
class Aliases:
    """Words people type for a label: squashed folded alias → the squashed folded labels it
    stands for (one per language section that lists it)."""

    index: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def targets(self, squashed: str) -> frozenset[str]:
        """The labels (squashed, folded) an alias stands for; empty when it is none."""
        return self.index.get(squashed, frozenset())

    @classmethod
    def from_data(
        cls, data: Mapping[str, object], catalogs: Mapping[str, Mapping[str, str]]
    ) -> Aliases:
        """From ``{lang: {message key: [alias, …]}}``: each alias stands for that key's label in
        that language. Unknown languages or keys, labels with placeholders, and aliases that
        fold to nothing or to a number are :class:`AliasError`."""
        index: dict[str, set[str]] = {}
        for lang, table in data.items():
            if lang not in catalogs:
                raise AliasError(f"aliases: unknown language [{lang}]")
            if not isinstance(table, Mapping):
                raise AliasError(f"aliases: [{lang}] must be a table of message keys")
            for key, words in table.items():
                label = catalogs[lang].get(key)
                if label is None:
                    raise AliasError(f"aliases: [{lang}] {key} is in no catalogue")
                if "{" in label:
                    raise AliasError(f"aliases: [{lang}] {key} has a placeholder in its label")
                if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
                    raise AliasError(f"aliases: [{lang}] {key} must be a list of strings")
                target = _squash(fold(label))
                for word in words:
                    alias = _squash(fold(word))
                    if not alias or alias.isdigit():
                        raise AliasError(f"aliases: [{lang}] {key}: {word!r} is not a word")
                    index.setdefault(alias, set()).add(target)
        return cls({alias: frozenset(labels) for alias, labels in index.items()})

    @classmethod
    def load(cls, catalogs: Mapping[str, Mapping[str, str]], path: Path = ALIASES_PATH) -> Aliases:
        """Read ``aliases.toml`` against the catalogues (``Translations.catalogs``); at start-up,
        so that a renamed message key is an error then, not a word that silently stops working."""
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise AliasError(f"aliases: cannot read {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise AliasError(f"aliases: {path} is not valid TOML: {exc}") from None
        return cls.from_data(data, catalogs)


NO_ALIASES = Aliases()


@dataclass(frozen=True)
class _Folded:
    """One choice's label, folded once (see :func:`_prepare`)."""

    choice: Choice
    whole: str  # the label, squashed
    short: frozenset[str]  # its shorter names, squashed
    spaced: tuple[str, ...]  # the label and its shorter names, with spaces
    parts: tuple[str, ...]  # the label and each of its parts between commas, with spaces


@functools.lru_cache(maxsize=2048)
def _prepare(offer: Offer) -> tuple[_Folded, ...]:
    """Fold an offer's labels; an offer read from the database again is equal, and cached."""
    rows = []
    for choice in offer.choices:
        whole = _fold_label(choice.label)
        shorter = _short_forms(choice.label) - {whole}
        pieces = (_fold_label(piece) for piece in _PARTS.split(choice.label))
        rows.append(
            _Folded(
                choice,
                _squash(whole),
                frozenset(_squash(s) for s in shorter),
                (whole, *sorted(shorter)),
                tuple(dict.fromkeys([whole, *(p for p in pieces if p)])),
            )
        )
    return tuple(rows)


def _found(choices: Iterable[Choice]) -> list[Choice]:
    """The distinct choices a rule found."""
    return list(dict.fromkeys(choices))


def match(
    text: str, offer: Offer, aliases: Aliases = NO_ALIASES, *, numbers: bool = True
) -> Choice | None:
    """The choice of ``offer`` that ``text`` names, or ``None``: no rule found one, or the first
    rule that found any found more than one (a tie is never settled by a looser rule).

    ``numbers=False`` is for a question where a typed number means something of its own (a
    booking code, a year): then only labels, aliases and starts of labels count."""
    choices = offer.choices
    if not choices or len(text) > 200:  # a choice is a few words; a long text is an answer
        return None
    if (moment := _moment(text)) is not None:  # "30/11", "7:30": the one label showing it
        kind, shown = moment
        found = _found(
            c for c in choices
            if (shown in c.label if kind == "day" else c.label.startswith(shown))
        )  # fmt: skip
        if found:
            return found[0] if len(found) == 1 else None
    folded = fold(text)
    if not folded:
        return None
    if numbers and (number := _NUMBER.fullmatch(folded)) is not None:
        raw = number.group(1)
        if len(raw) > NUMBER_DIGITS or text.strip().startswith(("-", "+")):
            return None
        n = int(raw)
        return choices[n - 1] if 1 <= n <= len(choices) else None
    rows = _prepare(offer)
    if folded.replace(" ", "").isdigit():  # a label of digits ("2021") typed whole, no looser
        found = _found(r.choice for r in rows if folded in r.spaced)
        return found[0] if len(found) == 1 else None
    key = _squash(folded)
    rules: list[Iterable[Choice]] = [
        (r.choice for r in rows if r.whole == key),
        _numbered_line(folded, rows) if numbers else (),
        (r.choice for r in rows if key in r.short),
    ]
    if targets := aliases.targets(key):
        rules.append(
            r.choice for r in rows if r.whole in targets or not r.short.isdisjoint(targets)
        )
    if len(key) >= PREFIX_MIN:
        rules.append(r.choice for r in rows if any(p.startswith(folded) for p in r.parts))
    for rule in rules:
        found = _found(rule)
        if found:
            return found[0] if len(found) == 1 else None
    return None


_DATE = re.compile(r"(?:ngay\s*)?(\d{1,2})\s*[/.-]\s*(\d{1,2})(?:\s*[/.-]\s*(\d{2}|\d{4}))?")
_TIME = re.compile(r"(?:luc\s*)?(\d{1,2})\s*(?:(:|h|g|gio)\s*(\d{2})?)\s*(?:phut)?")


def _moment(text: str) -> tuple[str, str] | None:
    """A typed day (``30/11``, ``30-11-2026``) as labels show it (``30/11``, ``30/11/2026``),
    or a typed time (``7:30``, ``7h30``, ``7 giờ``) as ``07:30``; None when it is neither."""
    plain = "".join(
        ch for ch in unicodedata.normalize("NFKD", text.replace("đ", "d").replace("Đ", "d"))
        if not unicodedata.combining(ch)
    ).casefold().strip()  # fmt: skip
    if (day := _DATE.fullmatch(plain)) is not None:
        d, m, y = int(day.group(1)), int(day.group(2)), day.group(3)
        if not (1 <= d <= 31 and 1 <= m <= 12):
            return None
        shown = f"{d:02d}/{m:02d}"
        if y is not None:
            shown += f"/{int(y) + 2000 if len(y) == 2 else int(y)}"
        return "day", shown
    if (time := _TIME.fullmatch(plain)) is not None:
        h, minute = int(time.group(1)), int(time.group(3) or 0)
        if h <= 23 and minute <= 59:
            return "time", f"{h:02d}:{minute:02d}"
    return None


def _numbered_line(folded: str, rows: tuple[_Folded, ...]) -> list[Choice]:
    """``1. Nam`` copied whole from a numbered list: choice 1 if its label is ``Nam``."""
    line = _NUMBERED_LINE.fullmatch(folded)
    if line is None or not 1 <= (n := int(line.group(1))) <= len(rows):
        return []
    row = rows[n - 1]
    wanted = _squash(line.group(2))
    return [row.choice] if wanted == row.whole or wanted in row.short else []
