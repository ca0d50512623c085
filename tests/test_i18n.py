"""Every message exists in every language, and every key the code uses exists."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from bot.i18n import LOCALES_DIR, SUPPORTED, CatalogueError, Translations, load_catalog
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


def _copy_locales(tmp_path: Path) -> Path:
    target = tmp_path / "locales"
    shutil.copytree(LOCALES_DIR, target, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return target


def test_catalogues_load_from_a_copy(tmp_path: Path) -> None:
    t = Translations(locales_dir=_copy_locales(tmp_path)).get("vi")
    assert t("button.agree") == "✅ Tôi đồng ý"


def test_missing_catalogue_directory_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match=r"no directory .*nowhere"):
        Translations(locales_dir=tmp_path / "nowhere")


def test_missing_language_fails_at_start(tmp_path: Path) -> None:
    locales = _copy_locales(tmp_path)
    shutil.rmtree(locales / "en")
    with pytest.raises(CatalogueError, match="translations for 'en' not found"):
        Translations(locales_dir=locales)


def test_incomplete_language_fails_at_start_naming_the_keys(tmp_path: Path) -> None:
    """A message one language lacks would reach residents as its raw key."""
    locales = _copy_locales(tmp_path)
    po = locales / "en" / "LC_MESSAGES" / "healthbook.po"
    text = po.read_text(encoding="utf-8")
    entry = re.search(r'msgid "button\.agree"\nmsgstr "[^"]*"\n', text)
    assert entry is not None
    po.write_text(text.replace(entry.group(0), ""), encoding="utf-8")
    with pytest.raises(CatalogueError) as err:
        Translations(locales_dir=locales)
    assert "'en' lacks 1 message(s): button.agree" in str(err.value)
    (locales / "vi" / "LC_MESSAGES" / "booking.po").unlink()  # a whole file of keys
    with pytest.raises(CatalogueError, match=r"'vi' lacks \d+ message\(s\): .* and \d+ more"):
        Translations(locales_dir=locales)


def test_unknown_default_language_fails() -> None:
    with pytest.raises(CatalogueError, match="'fr'"):
        Translations(default="fr")


# Messages only ever sent on Telegram (handlers/groups.py answers in Telegram groups; Zalo bots
# join no groups), so they may speak of its buttons.
TELEGRAM_ONLY = frozenset({"group.private_only"})
PRESS = re.compile(r"bấm|nút|nhấn|\bpress(es|ed|ing)?\b|\bbuttons?\b|\btap\b|keyboard", re.I)


def test_channel_variants_have_a_base_and_exist_in_every_language() -> None:
    catalogs = {lang: load_catalog(lang) for lang in SUPPORTED}
    variants = {lang: {k for k in cat if "@" in k} for lang, cat in catalogs.items()}
    assert variants["vi"], "no channel variant at all: the Zalo wording is missing"
    for lang, keys in variants.items():
        assert keys == variants["vi"], (lang, keys ^ variants["vi"])
        for key in keys:
            base, _, channel = key.partition("@")
            assert channel == "zalo", key  # the only channel with variants so far
            assert base in catalogs[lang], f"{key} has no base message {base}"


def test_variants_take_the_same_placeholders_as_their_base() -> None:
    """The code fills a variant with the base message's parameters."""
    field = re.compile(r"\{([a-z_]+)\}")
    for lang in SUPPORTED:
        catalog = load_catalog(lang)
        for key, text in catalog.items():
            if "@" in key:
                base = catalog[key.partition("@")[0]]
                assert set(field.findall(text)) == set(field.findall(base)), (lang, key)


@pytest.mark.parametrize("lang", SUPPORTED)
def test_nothing_on_zalo_asks_to_press_a_button(lang: str) -> None:
    """Zalo has no buttons: what it shows (a message's variant, else the message) never says
    to press one, except messages only Telegram sends."""
    catalog = load_catalog(lang)
    shown = {
        key: catalog.get(f"{key}@zalo", text) for key, text in catalog.items() if "@" not in key
    }
    pressing = {
        key: text for key, text in shown.items() if key not in TELEGRAM_ONLY and PRESS.search(text)
    }
    assert not pressing, pressing
    assert TELEGRAM_ONLY <= catalog.keys()  # an allow-list entry left behind after a rename


def test_telegram_keeps_its_button_wording_and_zalo_gets_the_variant() -> None:
    translations = Translations()
    telegram, zalo = translations.get("vi"), translations.get("vi", "zalo")
    assert translations.get("vi", "telegram") is telegram
    assert "«📱 Gửi số điện thoại của tôi»" in telegram("ask.phone")
    assert zalo("ask.phone").startswith("Xin gõ số điện thoại")
    assert PRESS.search(telegram("ask.phone")) and not PRESS.search(zalo("ask.phone"))
    assert "📍" not in zalo("book.site_hint", example="Bảo Hà")
    assert zalo("book.site_hint", example="Bảo Hà").endswith("ví dụ: Bảo Hà.")
    assert zalo("ask.bhyt") == telegram("ask.bhyt")  # no variant: the message itself
    assert translations.get("en", "zalo")("ask.phone").startswith("Please type your mobile")
