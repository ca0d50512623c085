"""config.example.toml, the file operators copy, explains every section of the settings and
loads as it is."""

from __future__ import annotations

import tomllib
from pathlib import Path

from bot.settings import Settings, load_settings

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


def test_every_settings_section_is_in_the_example() -> None:
    with EXAMPLE.open("rb") as fh:
        sections = set(tomllib.load(fh))
    missing = sorted(set(Settings.model_fields) - sections)
    assert missing == [], f"config.example.toml lacks [{'], ['.join(missing)}]"
    settings = load_settings(EXAMPLE)
    assert settings.reminders.quiet_start == "21:00" and settings.guide.app_name == "VNeID"
