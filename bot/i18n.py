"""Translations: gettext catalogues under ``locales/<lang>/LC_MESSAGES/*.po`` read with Babel.

Message ids are stable keys (``ask.full_name``); every language must translate every key.
All ``.po`` files of a language are merged, so each area of the bot keeps its own domain file.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babel.messages.pofile import read_po

log = logging.getLogger(__name__)

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
SUPPORTED = ("vi", "en")
DEFAULT_LOCALE = "vi"


def load_catalog(lang: str, locales_dir: Path = LOCALES_DIR) -> dict[str, str]:
    """Read every ``.po`` file of one language as ``{key: text}`` (untranslated skipped)."""
    messages: dict[str, str] = {}
    for po in sorted((locales_dir / lang / "LC_MESSAGES").glob("*.po")):
        with po.open("rb") as fh:
            catalog = read_po(fh, locale=lang)
        for message in catalog:
            if message.id and isinstance(message.id, str) and message.string:
                messages[message.id] = str(message.string)
    return messages


class _Blank(dict[str, Any]):
    """Placeholders the caller did not fill render as nothing rather than crash the chat."""

    def __missing__(self, key: str) -> str:
        log.error("message placeholder {%s} was not given", key)
        return ""


@dataclass(frozen=True)
class Translator:
    """Renders message keys in one language; ``{name}`` placeholders are filled from kwargs."""

    locale: str
    messages: dict[str, str] = field(repr=False)
    fallback: dict[str, str] = field(repr=False)

    def __call__(self, key: str, /, **params: Any) -> str:
        text = self.messages.get(key) or self.fallback.get(key) or key
        if "{" not in text:
            return text
        try:
            return text.format_map(_Blank(params))
        except (ValueError, IndexError):  # a broken translation must not break the chat
            log.error("message %s in %s has a malformed placeholder", key, self.locale)
            return text

    def date(self, value: dt.date) -> str:
        """A date as people here write it: ``Thứ Hai, 07/12/2026`` / ``Monday, 07/12/2026``."""
        return self("date.format", weekday=self(f"weekday.{value.weekday()}"),
                    date=value.strftime("%d/%m/%Y"))

    def has(self, key: str) -> bool:
        """Whether ``key`` exists in this language."""
        return key in self.messages


class Translations:
    """All languages, loaded once at start-up; hands out a :class:`Translator` per locale."""

    def __init__(
        self,
        languages: tuple[str, ...] = SUPPORTED,
        default: str = DEFAULT_LOCALE,
        locales_dir: Path = LOCALES_DIR,
    ) -> None:
        self.default = default
        self.catalogs = {lang: load_catalog(lang, locales_dir) for lang in languages}
        self._translators = {
            lang: Translator(lang, cat, self.catalogs[default])
            for lang, cat in self.catalogs.items()
        }

    @property
    def languages(self) -> tuple[str, ...]:
        """Available language codes, default first."""
        rest = tuple(lang for lang in self.catalogs if lang != self.default)
        return (self.default, *rest)

    def get(self, locale: str | None) -> Translator:
        """The translator for ``locale`` (``vi``, ``en-US``…), or the default language."""
        if locale:
            base = locale.replace("_", "-").split("-")[0].lower()
            if base in self._translators:
                return self._translators[base]
        return self._translators[self.default]

    def best_match(self, telegram_language: str | None) -> str:
        """The language to give a new user from their Telegram client's language."""
        return self.get(telegram_language).locale
