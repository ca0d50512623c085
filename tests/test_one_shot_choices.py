"""A removal's "Yes, remove" answers only the very next message: after any other command, a
"1" typed later (on Zalo every choice is typed; on Telegram numbers may be typed too) never
removes anyone (second trial review of issue 10)."""

from __future__ import annotations

import pytest

from tests.conftest import ChatHarness
from tests.flows import t
from tests.test_agencies import load_sample, make_head, memberships


async def asked_to_remove(h: ChatHarness):  # type: ignore[no-untyped-def]
    """A head of CDC (and of SYT) with one member, asked "remove them?"."""
    await load_sample(h)
    member = h.user()
    await member.send("/agency CDC")
    head = h.user()
    await head.send("/agency SYT")
    await make_head(h, head, "CDC")
    await head.send("/agency")
    assert head.buttons, head.last_answer
    await head.send("1")  # the first member
    assert t("vi", "agency.button.confirm") in head.buttons
    return head


@pytest.mark.parametrize("aside", ["/report CDC", "/help", "/agency roi", "/agency"])
async def test_a_number_typed_after_another_message_never_confirms_a_removal(
    chat_bot: ChatHarness, aside: str
) -> None:
    head = await asked_to_remove(chat_bot)
    await head.send(aside)
    before = await memberships(chat_bot)
    await head.send("1")
    assert not any(reason == "removed" for _, _, reason, _ in await memberships(chat_bot))
    if aside != "/agency":  # (there, "1" is the member list's first line: asked again)
        assert await memberships(chat_bot) == before


async def test_report_choices_after_a_removal_question_start_from_one(
    chat_bot: ChatHarness,
) -> None:
    head = await asked_to_remove(chat_bot)
    await make_head(chat_bot, head, "SYT")  # two agencies: /report offers a choice
    before = await memberships(chat_bot)
    await head.send("/report")
    assert t("vi", "agency.button.confirm") not in head.buttons
    await head.send("1")  # the first report offered, not "Yes, remove"
    assert await memberships(chat_bot) == before
    assert "📊" in "\n".join(head.texts[-3:])


async def test_the_removal_is_confirmed_by_the_next_message(chat_bot: ChatHarness) -> None:
    head = await asked_to_remove(chat_bot)
    await head.send("1")
    assert [r[2] for r in await memberships(chat_bot)].count("removed") == 1
