"""A refusal on the command line reads as residents read it: the values its message shows are
shown there once, and only the values it does not show follow in brackets."""

from __future__ import annotations

import logging

import pytest

from bot.cli import _render_error
from bot.settings import Settings
from models.errors import DomainError


def test_a_refusal_with_a_placeholder_names_its_value_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings()
    with caplog.at_level(logging.ERROR):
        said = _render_error(
            settings, DomainError("session.ambiguous", campaigns="covid19_2021, influenza_seasonal")
        )
    assert said.count("covid19_2021, influenza_seasonal") == 1, said
    assert not [r for r in caplog.records if "placeholder" in r.getMessage()]


def test_a_value_the_message_does_not_show_follows_in_brackets() -> None:
    said = _render_error(Settings(), DomainError("session.not_found", code="NOPE-7"))
    assert said.endswith("(NOPE-7)"), said
