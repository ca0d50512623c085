"""Translations: gettext catalogues under ``locales/<lang>/LC_MESSAGES/*.po`` read with Babel.

Message ids are stable keys (``ask.full_name``); every language must translate every key.
All ``.po`` files of a language are merged, so each area of the bot keeps its own domain file.
The catalogues are checked when they are loaded, at start-up: a missing directory, language or
message is a :class:`CatalogueError` naming what is missing, never a key shown to a resident.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babel.messages.pofile import read_po

log = logging.getLogger(__name__)

# ``locales`` sits beside ``bot`` both in the source tree and where the wheel installs them
LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
SUPPORTED = ("vi", "en")
DEFAULT_LOCALE = "vi"
SHOWN_MISSING = 10  # keys named in a CatalogueError, the rest counted


class CatalogueError(RuntimeError):
    """The translations cannot be used as installed; the message names what is missing."""


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
    """Renders message keys in one language; ``{name}`` placeholders are filled from kwargs.
    With a ``channel``, a message ``key@channel`` (say ``error.input.use_buttons@zalo``, where
    there are no buttons to press) is used in place of ``key`` where a catalogue has one."""

    locale: str
    messages: dict[str, str] = field(repr=False)
    fallback: dict[str, str] = field(repr=False)
    channel: str | None = None

    def __call__(self, key: str, /, **params: Any) -> str:
        text = None
        if self.channel is not None:
            variant = f"{key}@{self.channel}"
            text = self.messages.get(variant) or self.fallback.get(variant)
        if text is None:
            text = self.messages.get(key) or self.fallback.get(key)
        if text is None:  # a key built at run time that no catalogue has: a bug to fix
            log.error("message %s is in no catalogue", key)
            return key
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


def load_checked(
    languages: tuple[str, ...], locales_dir: Path = LOCALES_DIR
) -> dict[str, dict[str, str]]:
    """Every language's catalogue, or :class:`CatalogueError` if the directory or a language is
    missing, or a language lacks a message another one has (it would show as a raw key)."""
    if not locales_dir.is_dir():
        raise CatalogueError(
            f"translations not found: no directory {locales_dir} "
            "(the package is installed without its locales/ catalogues)"
        )
    catalogs: dict[str, dict[str, str]] = {}
    for lang in languages:
        folder = locales_dir / lang / "LC_MESSAGES"
        catalogs[lang] = load_catalog(lang, locales_dir)
        if not catalogs[lang]:
            raise CatalogueError(f"translations for {lang!r} not found: no messages in {folder}")
    every = set().union(*catalogs.values())
    problems = []
    for lang, catalog in catalogs.items():
        missing = sorted(every - catalog.keys())
        if missing:
            named = ", ".join(missing[:SHOWN_MISSING])
            rest = len(missing) - SHOWN_MISSING
            more = f" and {rest} more" if rest > 0 else ""
            problems.append(f"{lang!r} lacks {len(missing)} message(s): {named}{more}")
    if problems:
        raise CatalogueError(
            f"incomplete translations in {locales_dir}:\n  " + "\n  ".join(problems)
        )
    return catalogs


class Translations:
    """All languages, loaded and checked once at start-up; a :class:`Translator` per locale."""

    def __init__(
        self,
        languages: tuple[str, ...] = SUPPORTED,
        default: str = DEFAULT_LOCALE,
        locales_dir: Path = LOCALES_DIR,
    ) -> None:
        if default not in languages:
            raise CatalogueError(f"default language {default!r} is not one of {languages}")
        self.default = default
        self.catalogs = load_checked(languages, locales_dir)
        self._translators = {
            lang: Translator(lang, cat, self.catalogs[default])
            for lang, cat in self.catalogs.items()
        }
        self._variants: dict[tuple[str, str], Translator] = {}

    @property
    def languages(self) -> tuple[str, ...]:
        """Available language codes, default first."""
        rest = tuple(lang for lang in self.catalogs if lang != self.default)
        return (self.default, *rest)

    def get(self, locale: str | None, channel: str | None = None) -> Translator:
        """The translator for ``locale`` (``vi``, ``en-US``…), or the default language; with
        ``channel``, one that prefers that channel's variants of messages."""
        translator = self._translators[self.default]
        if locale:
            base = locale.replace("_", "-").split("-")[0].lower()
            translator = self._translators.get(base, translator)
        if channel is None or channel == "telegram":
            return translator
        key = (translator.locale, channel)
        found = self._variants.get(key)
        if found is None:
            found = self._variants[key] = dataclasses.replace(translator, channel=channel)
        return found

    def best_match(self, telegram_language: str | None) -> str:
        """The language to give a new user from their Telegram client's language."""
        return self.get(telegram_language).locale
