"""The dispatcher survives what goes wrong around it (found in review of issue 8): a database
error while claiming does not end the loop; the claim is tried again at the next poll."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from bot import dispatch
from bot.dispatch import Dispatcher
from models import outbox
from tests.conftest import Harness
from tests.test_dispatch import add_account, add_notes, note_kind, notes_to, statuses

__all__ = ["note_kind"]  # the test_note renderer, registered for every test here


async def test_a_database_error_while_claiming_does_not_stop_the_dispatcher(
    bot: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await add_account(bot, 7901)
    [note] = await add_notes(bot, a)
    real = outbox.claim
    failures = [OperationalError("SELECT", {}, Exception("server closed the connection"))]

    async def flaky(*args: Any, **kw: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real(*args, **kw)

    monkeypatch.setattr(dispatch.outbox, "claim", flaky)
    bot.services.settings.dispatch.poll_seconds = 0.05
    d = Dispatcher(bot.services)
    await d.start()
    try:
        for _ in range(100):  # the failed claim, then the next poll's
            await d.wait_idle(1.0)
            if not d.running:
                break
            if (await statuses(bot))[note][0] == "sent":
                break
            await asyncio.sleep(0.05)
        assert d.running  # still there after the error
    finally:
        await d.stop()
    assert failures == []
    assert (await statuses(bot))[note][0] == "sent"
    assert notes_to(bot.api, 7901) == [f"note {note}: #0"]
