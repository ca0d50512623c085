"""Zalo has no Start button: a new person's first words open the welcome and the consent."""

from __future__ import annotations

from tests.conftest import ZaloHarness
from tests.flows import t


async def test_first_words_of_a_new_person_open_the_welcome(zbot: ZaloHarness) -> None:
    person = zbot.user()
    await person.send("xin chào")
    answer = "\n".join(person.texts)
    consent = t("vi", "consent.text", version=zbot.services.settings.bot.consent_version)
    assert consent[:40] in answer
    await person.send("1")  # "Đồng ý", by its number
    assert t("vi", "ask.full_name") in person.last_text


async def test_words_of_someone_known_are_not_a_new_start(zbot: ZaloHarness) -> None:
    person = zbot.user()
    await person.send("/start")
    await person.send("đồng ý")
    await person.send("Lò Thị Mai")
    assert t("vi", "ask.date_of_birth") in person.last_text
    before = len(person.texts)
    await person.send("xin chào")  # an answer to the birth-date question, not a greeting
    assert "Lò" not in person.texts[-1] and len(person.texts) > before
    assert t("vi", "start.welcome") not in "\n".join(person.texts[before:])
