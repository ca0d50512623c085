"""The terminal demo loads the sample agencies, and ``/head CODE`` (a demo command standing for
an admin's ``healthbook agencies set-head``) lets the demo person try /agency and /report."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bot.demo import telegram_chat, zalo_chat
from bot.settings import load_settings


@pytest.mark.parametrize("channel", ["telegram", "zalo"])
async def test_the_demo_person_can_head_a_sample_agency_and_read_its_report(
    tmp_path: Path, channel: str
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    settings = load_settings(None, database={"url": url, "upgrade_on_start": True})
    out = io.StringIO()
    chat_of = telegram_chat if channel == "telegram" else zalo_chat
    async with chat_of(settings, language="vi", sample_data=True, out=out) as chat:
        assert "/head SYT" in chat.intro()
        await chat.say("/report")
        refused = out.getvalue()
        await chat.say("/head NOPE")
        assert "no agency 'NOPE'" in out.getvalue()
        await chat.say("/head SYT")
        assert "you now head Sở Y tế (SYT)" in out.getvalue()
        before = len(out.getvalue())
        await chat.say("/report SYT")
        answer = out.getvalue()[before:]
    assert "bao-cao-SYT" not in refused
    assert "Sở Y tế" in answer and "bao-cao-SYT" in answer, answer[-600:]
