"""Every message exists in every language, and every key the code uses exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.i18n import SUPPORTED, Translations, load_catalog
from models import validators as v

ROOT = Path(__file__).resolve().parent.parent
KEY = re.compile(r"""\bt\(\s*["']([a-z_]+\.[a-z_.]+)["']""")
RAISED = re.compile(r"""(?:InvalidAnswer|DomainError)\(\s*["']([a-z_]+\.[a-z_.]+)["']""")


def test_every_language_has_every_message() -> None:
    catalogs = {lang: load_catalog(lang) for lang in SUPPORTED}
    keys = set().union(*catalogs.values())
    for lang, catalog in catalogs.items():
        missing = sorted(keys - set(catalog))
        assert not missing, f"{lang} lacks {missing}"


def test_placeholders_agree_between_languages() -> None:
    catalogs = {lang: load_catalog(lang) for lang in SUPPORTED}
    field = re.compile(r"\{([a-z_]+)\}")
    for key, text in catalogs["vi"].items():
        for lang in SUPPORTED:
            assert set(field.findall(text)) == set(field.findall(catalogs[lang][key])), (lang, key)


def test_every_key_used_in_code_exists() -> None:
    catalog = load_catalog("vi")
    used: set[str] = set()
    for folder in ("bot", "handlers", "models"):
        for path in (ROOT / folder).rglob("*.py"):
            source = path.read_text(encoding="utf-8")
            used |= set(KEY.findall(source)) | set(RAISED.findall(source))
    missing = sorted(k for k in used if k not in catalog)
    assert not missing, missing
    assert len(used) > 50


@pytest.mark.parametrize("lang", SUPPORTED)
def test_data_driven_labels_exist(lang: str) -> None:
    t = Translations().get(lang)
    keys = [f"occupation.{c}" for c in v.occupations()]
    keys += [f"priority.{c}" for c in v.priority_groups()]
    keys += [f"screening.{i.code}" for i in v.screening_items()]
    keys += [f"screening_short.{i.code}" for i in v.screening_items(asked_only=False)]
    keys += [f"field.{f}" for f in ("full_name", "phone", "ward", "screening")]
    assert all(t.has(k) for k in keys), [k for k in keys if not t.has(k)]


def test_vietnamese_is_accented() -> None:
    """A guard against catalogues typed without diacritics."""
    catalog = load_catalog("vi")
    plain = [
        k
        for k, text in catalog.items()
        if len(text) > 30
        and not re.search(r"[àáảãạăâđèéẻẽẹêìíỉĩịòóỏõọôơùúủũụưỳýỷỹỵ]", text.lower())
    ]
    assert not plain, plain


def test_translator_falls_back_to_vietnamese_and_best_match() -> None:
    tr = Translations()
    assert tr.best_match("en-GB") == "en"
    assert tr.best_match("fr") == "vi"
    assert tr.best_match(None) == "vi"
