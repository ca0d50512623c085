"""The dispatcher survives what goes wrong around it (found in review of issue 8): a database
error while claiming does not end the loop; the claim is tried again at the next poll. The
choices of a message that did not go out cannot be answered by a typed number."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from bot import dispatch
from bot.channels import REFUSED
from bot.dispatch import Dispatcher, drain
from models import outbox
from models.tables import Account
from tests.conftest import Harness, ZaloHarness
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


async def test_a_typed_number_never_answers_a_choice_that_did_not_go_out(
    zbot: ZaloHarness,
) -> None:
    """A message's choices are offered when it is claimed: when it is refused, they are taken
    back, and the number it would have given chooses nothing."""
    person = zbot.user()
    account_id = await add_account(zbot, person.user.id)
    [refused] = await add_notes(zbot, account_id, language_options=True)
    zbot.api.fail_next("sendMessage", 400, "Bad Request")
    await drain(zbot.services)
    assert (await statuses(zbot))[refused][:2] == ("failed", REFUSED)
    assert zbot.api.messages(person.user.id) == []
    await person.send("1")  # "1. English" was never shown
    async with zbot.session() as session:
        account = await session.get(Account, account_id)
        assert account is not None and account.locale == "vi"
    # the same choices in a message that does go out answer as usual
    await add_notes(zbot, account_id, language_options=True)
    assert (await drain(zbot.services)).sent == 1
    await person.send("1")
    async with zbot.session() as session:
        account = await session.get(Account, account_id)
        assert account is not None and account.locale == "en"
