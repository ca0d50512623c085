"""End to end: booking defects a reviewer met as a new user (issue 6) — a health book outside
the served province, the reasons behind a caution, the site list's length and order, and the
pointers to /book after cancelling and after saving the health book."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select

from models import booking as bk
from models import validators as v
from models.campaigns import create_sessions
from models.tables import Booking, Site
from tests.conftest import ChatHarness
from tests.flows import question, resident, t

# wording and ordering checks: on Zalo they run on SQLite only (the suite's time; Telegram runs
# them on both databases, and nothing in them differs between databases on Zalo)
pytestmark = pytest.mark.zalo_sqlite_only

TODAY = dt.date(2026, 11, 25)  # the harness clock
SA_PA = "Trạm Y tế phường Sa Pa"


async def site_names(chat_bot: ChatHarness) -> dict[str, Site]:
    async with chat_bot.session() as session:
        return {s.name: s for s in (await session.scalars(select(Site))).all()}


def name_of(label: str) -> str:
    """The site's name in a site button (``Trạm Y tế … · còn 60 chỗ``)."""
    return label.split(" · ")[0].removeprefix("🏥 ")


# ---------------------------------------------------------------- 1. outside the province


async def test_health_book_outside_the_served_province_is_told_so_at_book(
    chat_sample: ChatHarness,
) -> None:
    person = await resident(chat_sample, "001234", province="ha noi", ward="ba dinh")
    await person.send("/book")
    said = t("vi", "book.province_not_served", provinces="Lào Cai", province="Thành phố Hà Nội")
    assert person.last_text == said
    assert "/profile" in said
    assert not person.last_message.get("reply_markup")  # no campaign, no site search
    await person.send("sa pa")  # the conversation is over: no "no site found" loop
    assert t("vi", "book.no_site_found").split("{")[0] not in person.last_text
    async with chat_sample.session() as session:
        assert await session.scalar(select(Booking.id)) is None

    # the day a site opens in Hà Nội, the same person books there; the search hint's example
    # is a commune of Hà Nội, not of Lào Cai
    async with chat_sample.session() as session, session.begin():
        ba_dinh = v.search_wards(v.search_provinces("ha noi")[0][0], "ba dinh")[0][0]
        session.add(
            Site(
                code="HN-TYT-BADINH",
                name="Trạm Y tế phường Ba Đình",
                address="Phường Ba Đình",
                province_code=v.search_provinces("ha noi")[0][0],
                ward_code=ba_dinh,
                lat=21.0368,
                lon=105.8342,
                kind="commune_station",
            )
        )
        await session.flush()
        for code in ("covid19_2021", "influenza_seasonal"):
            await create_sessions(
                session, ["HN-TYT-BADINH"], code, TODAY, weeks=1, weekdays=range(5),
                start=dt.time(7, 30), end=dt.time(11, 30), capacity=10,
            )  # fmt: skip
    await person.send("/book")
    await person.press("COVID-19")
    assert [name_of(b) for b in person.buttons] == ["Trạm Y tế phường Ba Đình"]
    await person.send("sa pa")  # a commune of Lào Cai: not offered to a Hà Nội book
    assert question(person.last_text) == t(
        "vi",
        "book.no_site_found",
        chat_sample.channel,
        province="Thành phố Hà Nội",
        example="Ba Đình",
    )


async def test_no_site_found_example_is_a_real_commune_with_a_site(
    chat_sample: ChatHarness,
) -> None:
    person = await resident(chat_sample, "002345", lang="en")
    await person.send("/book")
    await person.press("COVID-19 vaccination")
    await person.send("xyz")
    text = question(person.last_text)
    rest = text.split("for example: ", 1)[1]
    example = re.split(r"[,.]", rest, maxsplit=1)[0]
    assert example != "Sa Pa"  # the person's own commune is already listed first
    assert text == t(
        "en", "book.no_site_found", chat_sample.channel, province="Lào Cai", example=example
    )
    await person.send(example)  # typing the example finds the sites of that commune
    sites = await site_names(chat_sample)
    found = [sites[name_of(b)] for b in person.buttons]
    assert found and all(v.example_name(v.ward_name(s.ward_code)) == example for s in found)


# ---------------------------------------------------------------- 2. why caution or hospital


async def test_caution_names_age_not_a_declaration(chat_sample: ChatHarness) -> None:
    for lang, uid, campaign in (("vi", "003456", "COVID-19"), ("en", "003457", "COVID-19 vac")):
        person = await resident(chat_sample, uid, born="15/3/1945", lang=lang)  # 81, all "no"
        await person.send("/book")
        await person.press(campaign)
        said = "\n".join(person.texts[-3:])
        age = t(lang, "screening_short.age_65")
        assert t(lang, "book.caution", reasons=f"• {age}") in said
        assert "Theo phần khai báo" not in said and "From your health declaration" not in said


async def test_caution_and_refer_name_the_declared_items(chat_sample: ChatHarness) -> None:
    person = await resident(
        chat_sample,
        "004567",
        answers={"bleeding_anticoagulant": "button.yes", "anaphylaxis": "button.unknown"},
    )
    await person.send("/book")
    await person.press("COVID-19")
    reasons = "\n".join(
        [
            "• " + t("vi", "book.reason_unknown", item=t("vi", "screening_short.anaphylaxis")),
            "• " + t("vi", "screening_short.bleeding_anticoagulant"),
        ]
    )
    said = "\n".join(person.texts[-3:])
    assert t("vi", "book.caution", reasons=reasons) in said
    assert t("vi", "screening_short.age_65") not in said  # 36 years old

    referred = await resident(
        chat_sample, "005678", answers={"immunodeficiency": "button.yes"}, lang="en"
    )
    await referred.send("/book")
    await referred.press("COVID-19 vac")
    reasons = "• " + t("en", "screening_short.immunodeficiency")
    assert t("en", "book.refer_hospital", reasons=reasons) in "\n".join(referred.texts[-3:])


# ---------------------------------------------------------------- 3. the site list


async def test_site_list_says_more_sites_exist_and_how_to_reach_them(
    chat_sample: ChatHarness,
) -> None:
    person = await resident(chat_sample, "006789")  # Phường Sa Pa
    await person.send("/book")
    await person.press("COVID-19")
    sites = await site_names(chat_sample)
    listed = [name_of(b) for b in person.buttons]
    hidden = sorted(set(sites) - set(listed))
    assert len(listed) == 6 and len(hidden) == 2
    hint = question(person.last_text)
    example = re.split(r"[,.]", hint.split("ví dụ: ", 1)[1], maxsplit=1)[0]
    assert hint == t("vi", "book.site_hint_more", chat_sample.channel, more=2, example=example)
    await person.send(example)  # the example brings up a site that was not listed
    assert any(name_of(b) in hidden for b in person.buttons)


async def test_site_list_own_commune_first_then_nearest_to_it(chat_sample: ChatHarness) -> None:
    person = await resident(chat_sample, "007890")  # Phường Sa Pa
    await person.send("/book")
    await person.press("COVID-19")
    sites = await site_names(chat_sample)
    listed = [name_of(b) for b in person.buttons]
    own = sites[SA_PA]
    assert listed[0] == SA_PA
    away = [bk.haversine_km((own.lat, own.lon), (sites[n].lat, sites[n].lon)) for n in listed]
    assert away == sorted(away)  # every site has places: nearest to Sa Pa first
    assert "km" not in " ".join(person.buttons)  # not a distance from the person


async def test_site_list_puts_commune_stations_before_hospitals_without_own_station(
    chat_sample: ChatHarness,
) -> None:
    person = await resident(
        chat_sample, "008901", ward="bao ha"
    )  # Xã Bảo Hà: no station of its own
    await person.send("/book")
    await person.press("COVID-19")
    sites = await site_names(chat_sample)
    kinds = [sites[name_of(b)].kind for b in person.buttons]
    assert kinds[0] != "hospital"
    assert kinds == sorted(kinds, key=lambda k: k == "hospital")  # hospitals last
    hidden = set(sites) - {name_of(b) for b in person.buttons}
    communes = {v.example_name(v.ward_name(sites[n].ward_code)) for n in hidden}
    hint = question(person.last_text)
    example = re.split(r"[,.]", hint.split("ví dụ: ", 1)[1], maxsplit=1)[0]
    assert example in communes
    more = len(hidden)
    assert hint == t("vi", "book.site_hint_more", chat_sample.channel, more=more, example=example)


# ---------------------------------------------------------------- 4. pointers to /book


async def test_pointers_to_book_after_saving_and_after_cancelling(chat_sample: ChatHarness) -> None:
    person = await resident(chat_sample, "009012")
    assert "/book" in person.last_text  # the health book is saved: what to do next
    await person.send("/book")
    await person.press("COVID-19")
    await person.press("Sa Pa")
    await person.press(person.buttons[0])
    await person.press(person.buttons[0])
    await person.press(t("vi", "book.button_confirm"))
    await person.send("/appointments")
    assert t("vi", "appointments.book_again") not in person.last_text  # one is still ahead
    await person.press(t("vi", "appointments.button_cancel"))
    await person.press(t("vi", "appointments.button_cancel_yes"))
    async with chat_sample.session() as session:
        code = await session.scalar(select(Booking.code))
    assert t("vi", "appointments.cancelled", code=code) in person.texts  # the pressed message
    assert "/book" in t("vi", "appointments.cancelled", code=code)
    await person.send("/appointments")
    assert person.last_text.startswith(t("vi", "appointments.cancelled_list"))
    assert person.last_text.endswith("\n\n" + t("vi", "appointments.book_again"))
