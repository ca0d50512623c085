"""/help opens the guide, on Telegram and on Zalo: every page by its option and by its typed
number, "Menu" back; the app's name and links, the hotline and the emergency number come from
settings; the sites page comes from the database (the person's commune first); /help in the
middle of a conversation keeps the conversation and its answers, its numbers are the guide's
while the guide is shown, and "Continue" asks the pending question again (the health book's
own re-ask, or the choices that were open, set aside and offered again)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select, update

from bot.settings import GuideSettings
from handlers.guide import PAGES
from models import healthbook as hb
from models.tables import ChatOffer, Session, Site
from tests.conftest import ChatHarness
from tests.flows import agree, channel_of, question, resident, t

NUMBERS = {"hotline": "1900 9095", "emergency": "115"}
APP = {
    "app": "VNeID",
    "android": "https://play.google.com/store/apps/details?id=com.vnid",
    "ios": "https://apps.apple.com/vn/app/vneid/id1582750588",
}
TODAY = "Thứ Tư, 25/11/2026"  # the harness clock: Wednesday 10:00 in Lào Cai
TOMORROW = "Thứ Năm, 26/11/2026"


def page_text(page: str, lang: str = "vi", **params: str) -> str:
    """What a static page says (the sites page is read from the database)."""
    values = {**APP, **NUMBERS, **params}
    if page == "commands":
        return t(lang, "help.text", **values)
    return t(lang, f"guide.page.{page}", **values)


def labels(lang: str = "vi", **params: str) -> list[str]:
    return [t(lang, f"guide.button.{page}", **{**APP, **params}) for page in PAGES]


async def test_every_page_by_its_option_and_by_its_number(chat_sample: ChatHarness) -> None:
    bot = chat_sample
    person = bot.user()
    await person.send("/help")
    assert question(person.last_text) == t("vi", "guide.menu", **NUMBERS)
    assert person.buttons == labels()  # nothing pending: no "Continue"
    for number, page in enumerate(PAGES, 1):
        label = t("vi", f"guide.button.{page}", **APP)
        await person.press(label)  # the option (its folded label on Zalo, now and then)
        shown = person.last_text or ""
        if page == "sites":
            assert t("vi", "guide.sites.title", province="Lào Cai") in shown
        else:
            assert page_text(page) in shown, page
        assert person.buttons == [t("vi", "guide.button.menu")]
        await person.press(t("vi", "guide.button.menu"))
        assert person.buttons == labels()
        await person.send(str(number))  # the typed number, on either messenger
        assert (person.last_text or "") == shown, page
        await person.send("/help")
    await person.send("sau tiem")  # words for a page, accents not needed
    assert page_text("after") in (person.last_text or "")
    # an old menu's option still opens its page (the guide keeps no state)
    if bot.channel == "telegram":
        await person.press_data("gd:after")
        assert page_text("after") in (person.last_text or "")
        await person.press_data("gd:nowhere")
        assert person.callback_answers[-1] == t("vi", "error.button.invalid")
        await person.press_data("gd:back")  # nothing was set aside
        assert person.last_text == t("vi", "guide.nothing_pending")


async def test_links_and_numbers_come_from_settings(chat_bot: ChatHarness) -> None:
    settings = chat_bot.services.settings
    settings.guide = GuideSettings(
        app_name="VNeID Lào Cai", app_android="https://example.org/a", app_ios="https://example.org/i"
    )
    settings.bot.hotline, settings.bot.emergency = "0214 3820 000", "999"
    own = {"app": "VNeID Lào Cai", "android": "https://example.org/a",
           "ios": "https://example.org/i", "hotline": "0214 3820 000", "emergency": "999"}
    person = chat_bot.user(lang="en")
    if chat_bot.channel == "zalo":  # Zalo tells no language
        await person.send("/language")
        await person.press("English")
    await person.send("/help")
    assert question(person.last_text) == t("en", "guide.menu", **own)
    assert "999" in (person.last_text or "") and "115" not in (person.last_text or "")
    await person.press(t("en", "guide.button.app", **own))
    shown = person.last_text or ""
    assert t("en", "guide.page.app", **own) in shown
    assert "https://example.org/a" in shown and "https://example.org/i" in shown
    assert "VNeID Lào Cai" in shown and "com.vnid" not in shown
    await person.press(t("en", "guide.button.menu"))
    await person.press(t("en", "guide.button.after"))
    shown = person.last_text or ""
    assert "30 minutes" in shown and "999" in shown and "0214 3820 000" in shown
    assert "115" not in shown
    await person.send("/help")
    await person.press(t("en", "guide.button.hotlines"))
    assert t("en", "guide.page.hotlines", **own) in (person.last_text or "")
    await person.send("/help")
    await person.press(t("en", "guide.button.commands"))
    assert t("en", "help.text", **own) in (person.last_text or "")
    assert "/reactions" in (person.last_text or "")


async def test_sites_near_the_person_with_their_coming_hours(chat_sample: ChatHarness) -> None:
    bot = chat_sample
    stranger = bot.user()  # no health book: the province's sites, commune stations first
    await stranger.send("/help")
    await stranger.press(t("vi", "guide.button.sites"))
    shown = stranger.last_text or ""
    assert t("vi", "guide.sites.title", province="Lào Cai") in shown
    assert shown.count("🏥") == 4  # the title and three sites
    assert "Trạm Y tế phường Lào Cai" in shown and "Bệnh viện" not in shown
    assert f"• {TODAY}: 07:30–11:30" in shown and f"• {TOMORROW}: 07:30–11:30" in shown
    assert t("vi", "guide.sites.more", count=5) in shown
    # a resident of Sa Pa: their own commune's station first; today's session there is
    # cancelled, and a session already over today is not shown either
    person = await resident(bot, "000111")
    async with bot.session() as session, session.begin():
        sapa = await session.scalar(select(Site.id).where(Site.code == "LC-TYT-SAPA"))
        await session.execute(
            update(Session)
            .where(Session.site_id == sapa, Session.date == dt.date(2026, 11, 25))
            .values(cancelled_at=bot.clock(), cancel_reason="test")
        )
    await person.send("/help")
    await person.press(t("vi", "guide.button.sites"))
    shown = person.last_text or ""
    assert t("vi", "guide.sites.title_near", commune="Phường Sa Pa") in shown
    first = shown.split("🏥 ")[2]
    assert first.startswith("Trạm Y tế phường Sa Pa\nPhường Sa Pa\n")
    assert f"• {TOMORROW}: 07:30–11:30" in first and TODAY not in first
    bot.clock.advance(hours=2)  # 12:00: this morning's sessions are over everywhere
    await person.send("/help")
    await person.press(t("vi", "guide.button.sites"))
    assert TODAY not in (person.last_text or "")


async def test_help_mid_health_book_keeps_the_conversation(chat_bot: ChatHarness) -> None:
    person = chat_bot.user()
    await agree(person)
    await person.send("Lò Thị Mai")
    await person.send("1/2/1960")
    assert question(person.last_text) == t("vi", "ask.gender")
    await person.send("/help")
    assert question(person.last_text) == t("vi", "guide.menu", **NUMBERS)
    assert person.buttons == [*labels(), t("vi", "guide.button.continue")]
    await person.send("4")  # the guide's numbers while it is shown: "after vaccination"
    assert page_text("after") in (person.last_text or "")
    assert person.buttons == [t("vi", "guide.button.menu"), t("vi", "guide.button.continue")]
    await person.press(t("vi", "guide.button.continue"))  # the question again, its choices
    assert question(person.last_text) == t("vi", "ask.gender")
    await person.send("2")  # its own numbers again: Nữ
    assert t("vi", "ask.id_number") in (person.last_text or "")
    async with chat_bot.session() as session:
        account = await hb.find_account(session, channel_of(person), str(person.user.id))
        assert account is not None
        draft = await hb.get_draft(session, account)
        assert draft is not None
        answers = draft.answers
    assert answers["full_name"] == "Lò Thị Mai" and answers["gender"] == "female"
    assert answers["date_of_birth"] == "1960-02-01"
    # a typed answer while the guide is shown still answers the question
    await person.send("/help")
    await person.send("010160001234")  # a woman born in 1960, in Lào Cai
    assert t("vi", "ask.phone", channel_of(person)) in (person.last_answer or "")


async def test_help_mid_booking_sets_the_choices_aside(chat_sample: ChatHarness) -> None:
    """Booking cannot ask its step again by itself: the days offered when /help came are
    kept aside and offered again by "Continue", with their numbers."""
    bot = chat_sample
    person = await resident(bot, "000222", ward="sa pa")
    await person.send("/book")
    await person.press("COVID-19")
    await person.press("Sa Pa")
    days = person.buttons
    assert days and t("vi", "guide.button.continue") not in days
    await person.send("/help")
    assert person.buttons[-1] == t("vi", "guide.button.continue")
    await person.send("6")  # the sites page
    assert t("vi", "guide.sites.title_near", commune="Phường Sa Pa") in (person.last_text or "")
    await person.send("/help")  # /help again: what was set aside stays the booking's
    async with bot.session() as session:
        aside = await session.scalar(
            select(ChatOffer.choices).where(
                ChatOffer.channel == hb.aside_channel(bot.channel),
                ChatOffer.chat_id == str(person.user.id),
            )
        )
    assert [label for label, _code in aside] == days
    await person.press(t("vi", "guide.button.continue"))
    assert question(person.last_text) == t("vi", "guide.continue")
    assert person.buttons == days
    await person.send("1")  # the first day, by its number again
    assert "07:30–11:30" in person.buttons[0]  # the times of that day
    async with bot.session() as session:  # "Continue" took them back
        n = await session.scalar(
            select(func.count()).select_from(ChatOffer).where(
                ChatOffer.channel == hb.aside_channel(bot.channel)
            )
        )
    assert n == 0


async def test_delete_erases_what_help_set_aside(chat_sample: ChatHarness) -> None:
    bot = chat_sample
    person = await resident(bot, "000333")
    await person.send("/book")
    await person.press("COVID-19")
    await person.send("/help")
    await person.send("/delete")
    await person.press(t("vi", "button.delete_yes"))
    async with bot.session() as session:
        n = await session.scalar(select(func.count()).select_from(ChatOffer))
    assert n == 0


async def test_pages_by_their_words_from_the_menu_and_from_any_page(
    chat_sample: ChatHarness,
) -> None:
    """A page offers only "Menu": another page's words (with or without accents) or its
    number in the menu still open it; from the menu too ("hỏi đáp", "cac lenh")."""
    person = chat_sample.user()
    for text, page in [("hỏi đáp", "faq"), ("cac lenh", "commands"), ("sau tiem", "after")]:
        await person.send("/help")
        await person.send(text)
        assert page_text(page) in (person.last_text or ""), text
    await person.send("/help")
    await person.send("4")  # after vaccination
    assert page_text("after") in (person.last_text or "")
    for text, page in [("sau tiêm", "after"), ("hỏi đáp", "faq"), ("đường dây nóng", "hotlines"),
                       ("truoc tiem", "before"), ("cac lenh", "commands"), ("3", "before")]:
        await person.send(text)  # on a page: Menu only
        assert page_text(page) in (person.last_text or ""), text
        assert person.buttons == [t("vi", "guide.button.menu")]


async def test_on_a_page_mid_health_book_a_typed_answer_still_answers(
    chat_bot: ChatHarness,
) -> None:
    """Pages by their words from a page, while a question waits; its answer still answers it."""
    person = chat_bot.user()
    await agree(person)
    await person.send("/help")
    await person.send("4")
    await person.send("hỏi đáp")  # another page, by its words
    assert page_text("faq") in (person.last_text or "")
    assert person.buttons == [t("vi", "guide.button.menu"), t("vi", "guide.button.continue")]
    await person.send("Lò Thị Mai")  # the name asked before /help
    assert question(person.last_text) == t("vi", "ask.date_of_birth")
