"""End to end at the vaccination site: check-in (command and QR deep link), recording a dose or
why it was not given, the person told at once; /certificate and /verify. Refusals for residents,
staff of another site and forged buttons change nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select
from telegram.ext import ConversationHandler

from bot.app import build_application, prepare_database
from bot.context import HBApplication
from bot.polling import Poller
from bot.settings import Settings
from bot.standin import BotApiStandIn, ChatDriver
from handlers import site
from models import booking as bk
from models import checkin as ci
from models import healthbook as hb
from models.campaigns import load_sample_data, sample_book
from models.qr import qr_png
from models.tables import Account, Booking, Session, Site, Vaccination
from tests.conftest import FakeClock, Harness, make_settings, stop_app
from tests.flows import TR, complete, t

CAMPAIGN = "covid19_2021"
HOSPITAL = "LC-BVDK"  # the person (aged 65+, the caution group) books here
OTHER_SITE = "LC-BVNL"
AZ = "Vaxzevria / Covishield (AZD1222)"


def _register_site(app: object) -> None:
    """Wire the site handlers as bot/app.py will: the check-in conversation before the
    health-book conversation, /certificate and /verify right after it, before the catch-all
    handlers of help.py (no-op once bot/app.py does it)."""
    groups = app.handlers  # type: ignore[attr-defined]
    wired = any(
        isinstance(h, ConversationHandler) and h.name == site.NAME
        for handlers in groups.values()
        for h in handlers
    )
    if wired:
        return
    main = groups[0]
    after = next(i for i, h in enumerate(main) if isinstance(h, ConversationHandler)) + 1
    main[after:after] = site.handlers()
    main.insert(0, site.build())


async def start_with_site(settings: Settings, clock: FakeClock) -> HBApplication:
    """Build (with the site handlers), initialise and start polling, as ``start_app`` does."""
    app = build_application(settings, clock=clock, rate_limit=False)
    _register_site(app)
    await prepare_database(app)
    await app.initialize()
    poller = Poller(app, timeout=settings.telegram.poll_timeout)
    app.bot_data["poller"] = poller
    await poller.start()
    await app.start()
    return app


@pytest.fixture
async def bot(api: BotApiStandIn, db_url: str) -> AsyncIterator[Harness]:
    """The real Application with the site handlers, polling the stand-in, with sample data."""
    clock = FakeClock()
    harness = Harness(api, await start_with_site(make_settings(db_url, api), clock), clock)
    try:
        async with harness.session() as session, session.begin():
            await load_sample_data(session, harness.services.today())
        yield harness
    finally:
        await stop_app(harness.app)  # a test may have restarted it


@dataclass
class Scene:
    """A resident with a booking today at the hospital, and a member of its staff."""

    person: ChatDriver
    staff: ChatDriver
    booking_id: int
    code: str
    lang: str


async def _slot(session: object, site_code: str, day: dt.date) -> Session:
    row = await session.scalar(  # type: ignore[attr-defined]
        select(Session)
        .join(Site, Site.id == Session.site_id)
        .where(Site.code == site_code, Session.date == day)
        .order_by(Session.start_time)
    )
    assert row is not None
    return row


async def add_staff(bot: Harness, site_code: str, lang: str = "vi") -> ChatDriver:
    """A new Telegram user made staff of ``site_code``."""
    staff = bot.user(lang=lang, name="Lan")
    async with bot.session() as session, session.begin():
        account = await hb.ensure_account(session, "telegram", str(staff.user.id), lang)
        await ci.grant_staff(session, account, site_code)
    assert account.role == "site_staff"
    return staff


async def scene(bot: Harness, lang: str = "vi") -> Scene:
    """A person completes their health book through the bot and is booked for today."""
    person = bot.user(lang=lang)
    await complete(person, lang)
    today = bot.services.today()
    async with bot.session() as session, session.begin():
        account = await hb.find_account(session, "telegram", str(person.user.id))
        assert account is not None
        book = await hb.own_book(session, account)
        assert book is not None
        slot = await _slot(session, HOSPITAL, today)
        booking = await bk.book(session, book.id, slot.id, CAMPAIGN, None, today)
        booking_id, code = booking.id, booking.code
    staff = await add_staff(bot, HOSPITAL, lang)
    return Scene(person, staff, booking_id, code, lang)


async def other_booking(bot: Harness, site_code: str) -> int:
    """A booking today of another person (a health book written directly) at ``site_code``."""
    today = bot.services.today()
    async with bot.session() as session, session.begin():
        account = await hb.ensure_account(session, "telegram", "77", "vi")
        book = sample_book(account.id, date_of_birth=dt.date(1990, 5, 4), consent_version="1")
        session.add(book)
        await session.flush()
        slot = await _slot(session, site_code, today)
        booking = await bk.book(session, book.id, slot.id, CAMPAIGN, None, today)
        return booking.id


async def booking_row(bot: Harness, booking_id: int) -> Booking:
    async with bot.session() as session:
        found = await session.get(Booking, booking_id)
        assert found is not None
        return found


async def vaccinations(bot: Harness) -> list[Vaccination]:
    async with bot.session() as session:
        return list((await session.scalars(select(Vaccination))).all())


async def account_id(bot: Harness, user: ChatDriver) -> int:
    async with bot.session() as session:
        found = await session.scalar(
            select(Account.id).where(Account.external_id == str(user.user.id))
        )
        assert found is not None
        return found


def date(lang: str, day: dt.date) -> str:
    return TR.get(lang).date(day)


def assert_card(s: Scene, text: str | None) -> None:
    """The check-in card: who (ID masked), what they declared, what they booked."""
    assert text is not None
    assert "Nguyễn Văn An" in text
    assert date(s.lang, dt.date(1950, 3, 15)) in text
    assert "*********234" in text and "010050" not in text
    assert t(s.lang, "screening_short.age_65") in text  # derived from the date of birth
    assert t(s.lang, "site.group.caution") in text
    assert "COVID-19" in text and "Bệnh viện Đa khoa tỉnh Lào Cai" in text
    assert s.code in text and "07:30–11:30" in text
    assert date(s.lang, dt.date(2026, 11, 25)) in text


# ---------------------------------------------------------------- check-in


async def test_checkin_by_command(bot: Harness) -> None:
    s = await scene(bot)
    await s.staff.send(f"/checkin {s.code.lower()[:3]} {s.code.lower()[3:]}")
    assert_card(s, s.staff.last_text)
    assert s.staff.buttons == [t("vi", "site.button.record"), t("vi", "site.button.not_vaccinated")]
    row = await booking_row(bot, s.booking_id)
    assert row.status == "checked_in"
    assert row.checked_in_by == await account_id(bot, s.staff)


async def test_checkin_by_deep_link(bot: Harness) -> None:
    s = await scene(bot)
    await s.staff.send(f"/start checkin-{s.code}")
    assert_card(s, s.staff.last_text)
    assert t("vi", "start.welcome") not in s.staff.texts  # the health book was not offered
    assert (await booking_row(bot, s.booking_id)).status == "checked_in"


async def test_checkin_without_code_and_unknown_codes(bot: Harness) -> None:
    staff = await add_staff(bot, HOSPITAL)
    await staff.send("/checkin")
    assert staff.last_text == t("vi", "site.checkin_usage")
    await staff.send("/checkin 2345678")
    assert staff.last_text == t("vi", "booking.not_found")
    await staff.send("/checkin AB1")
    assert staff.last_text == t("vi", "booking.code_invalid", length=7, chars="1")
    await staff.send("/start checkin-ZZZZZZZ")
    assert staff.last_text == t("vi", "booking.not_found")


async def test_resident_cannot_check_in(bot: Harness) -> None:
    s = await scene(bot)
    await s.person.send(f"/checkin {s.code}")
    assert s.person.last_text == t("vi", "site.staff_only")
    await s.person.send(f"/start checkin-{s.code}")
    assert s.person.last_text == t("vi", "site.staff_only")
    await s.person.press_data(f"st:d:{s.booking_id}")
    assert s.person.callback_answers[-1] == t("vi", "checkin.not_staff")
    await s.person.press_data(f"st:v:{s.booking_id}:astrazeneca")
    assert s.person.callback_answers[-1] == t("vi", "checkin.not_staff")
    assert (await booking_row(bot, s.booking_id)).status == "booked"
    assert await vaccinations(bot) == []


async def test_staff_of_another_site_is_refused(bot: Harness) -> None:
    s = await scene(bot)
    stranger = await add_staff(bot, OTHER_SITE)
    await stranger.send(f"/checkin {s.code}")
    assert stranger.last_text == t("vi", "checkin.not_your_site")
    assert "Nguyễn Văn An" not in " ".join(stranger.texts)
    await stranger.send(f"/start checkin-{s.code}")
    assert stranger.last_text == t("vi", "checkin.not_your_site")
    # the right staff checks in; the stranger then tries the buttons with this booking's id
    await s.staff.send(f"/checkin {s.code}")
    for data in (
        f"st:d:{s.booking_id}",
        f"st:v:{s.booking_id}:astrazeneca",
        f"st:n:{s.booking_id}",
        f"st:r:{s.booking_id}:refused",
    ):
        await stranger.press_data(data)
        assert stranger.callback_answers[-1] == t("vi", "checkin.not_your_site"), data
    row = await booking_row(bot, s.booking_id)
    assert row.status == "checked_in" and row.outcome_reason is None
    assert await vaccinations(bot) == []


async def test_forged_buttons_are_refused_and_change_nothing(bot: Harness) -> None:
    s = await scene(bot)
    elsewhere = await other_booking(bot, OTHER_SITE)
    await s.staff.send(f"/checkin {s.code}")
    forged = {
        f"st:d:{elsewhere}": "checkin.not_your_site",
        f"st:v:{elsewhere}:pfizer": "checkin.not_your_site",
        f"st:n:{elsewhere}": "checkin.not_your_site",
        f"st:r:{elsewhere}:refused": "checkin.not_your_site",
        f"st:r:{elsewhere}:other": "checkin.not_your_site",
        "st:d:999999": "booking.not_found",
        "st:v:abc:pfizer": "booking.not_found",
        "st:v:1": "booking.not_found",
        "st:d:99999999999999999999": "booking.not_found",
        "st:n:²": "booking.not_found",
    }
    for data, key in forged.items():
        await s.staff.press_data(data)
        assert s.staff.callback_answers[-1] == t("vi", key), data
    await s.staff.press_data(f"st:v:{s.booking_id}:vaxigrip_tetra")
    assert s.staff.callback_answers[-1] == t(
        "vi",
        "vaccination.wrong_vaccine",
        vaccine="vaxigrip_tetra",
        allowed="astrazeneca, pfizer, moderna, sinopharm",
    )
    await s.staff.press_data(f"st:r:{s.booking_id}:nonsense")
    assert s.staff.callback_answers[-1] == t("vi", "error.button.invalid")
    assert (await booking_row(bot, elsewhere)).status == "booked"
    assert (await booking_row(bot, s.booking_id)).status == "checked_in"
    assert await vaccinations(bot) == []


# ---------------------------------------------------------------- recording


async def record(s: Scene, lot: str = "AB1234") -> None:
    await s.staff.send(f"/checkin {s.code}")
    await s.staff.press(t(s.lang, "site.button.record"))
    assert t(s.lang, "site.ask_vaccine", name="Nguyễn Văn An") in s.staff.last_text
    assert AZ in s.staff.buttons
    await s.staff.press(AZ)
    assert t(s.lang, "site.ask_lot", vaccine=AZ) in s.staff.last_text
    await s.staff.send(lot)


async def test_record_dose_end_to_end(bot: Harness) -> None:
    s = await scene(bot)
    await record(s, " AB1234 ")
    assert s.staff.last_text == t(
        "vi", "site.dose_recorded", name="Nguyễn Văn An", dose=1, vaccine=AZ, lot="AB1234"
    )
    (vac,) = await vaccinations(bot)
    assert (vac.vaccine_code, vac.lot_number, vac.dose) == ("astrazeneca", "AB1234", 1)
    assert vac.booking_id == s.booking_id and vac.recorded_by == await account_id(bot, s.staff)
    assert (await booking_row(bot, s.booking_id)).status == "vaccinated"
    today = dt.date(2026, 11, 25)
    # AstraZeneca: dose 2 from 56 to 84 days after dose 1
    assert s.person.last_text == (
        t(
            "vi",
            "site.notify_dose",
            dose=1,
            vaccine=AZ,
            date=date("vi", today),
            site="Bệnh viện Đa khoa tỉnh Lào Cai",
        )
        + "\n\n"
        + t(
            "vi",
            "site.notify_next",
            dose=2,
            earliest=date("vi", today + dt.timedelta(56)),
            latest=date("vi", today + dt.timedelta(84)),
        )
    )
    # the same buttons again: already vaccinated, nothing more is written
    await s.staff.press_data(f"st:v:{s.booking_id}:astrazeneca")
    assert s.staff.callback_answers[-1] == t(
        "vi", "vaccination.not_checked_in", status=t("vi", "status.vaccinated")
    )
    assert len(await vaccinations(bot)) == 1


async def test_the_lot_step_survives_a_restart(bot: Harness) -> None:
    """The booking and vaccine ride in the persisted state: a restart between the vaccine
    button and the typed lot number loses nothing."""
    s = await scene(bot)
    await s.staff.send(f"/checkin {s.code}")
    await s.staff.press(t("vi", "site.button.record"))
    await s.staff.press(AZ)
    await stop_app(bot.app)
    bot.app = await start_with_site(bot.services.settings, bot.clock)
    await s.staff.send("RS-7")
    assert s.staff.last_text == t(
        "vi", "site.dose_recorded", name="Nguyễn Văn An", dose=1, vaccine=AZ, lot="RS-7"
    )
    (vac,) = await vaccinations(bot)
    assert (vac.vaccine_code, vac.lot_number) == ("astrazeneca", "RS-7")


async def test_bad_lot_is_asked_again_and_cancel_records_nothing(bot: Harness) -> None:
    s = await scene(bot)
    await record(s, "x" * 40)
    assert t("vi", "vaccination.lot_invalid", max=32) in s.staff.texts
    assert await vaccinations(bot) == []
    await s.staff.send("/cancel")
    assert s.staff.last_text == t("vi", "site.cancelled")
    await s.staff.send("LOT-1")  # no longer waiting for a lot: not recorded
    assert await vaccinations(bot) == []
    assert (await booking_row(bot, s.booking_id)).status == "checked_in"


async def test_not_vaccinated_with_a_common_reason(bot: Harness) -> None:
    s = await scene(bot)
    await s.staff.send(f"/checkin {s.code}")
    await s.staff.press(t("vi", "site.button.not_vaccinated"))
    assert t("vi", "site.reason.blood_pressure") in s.staff.buttons
    await s.staff.press(t("vi", "site.reason.blood_pressure"))
    reason = t("vi", "site.reason.blood_pressure")
    assert s.staff.last_text == t(
        "vi", "site.not_vaccinated_recorded", name="Nguyễn Văn An", reason=reason
    )
    row = await booking_row(bot, s.booking_id)
    assert (row.status, row.outcome_reason) == ("not_vaccinated", reason)
    assert s.person.last_text == t("vi", "site.notify_not_vaccinated", reason=reason)
    assert await vaccinations(bot) == []


async def test_not_vaccinated_with_a_typed_reason(bot: Harness) -> None:
    s = await scene(bot)
    await s.staff.send(f"/checkin {s.code}")
    await s.staff.press(t("vi", "site.button.not_vaccinated"))
    await s.staff.send("Sốt 38,5 độ")  # typed straight away
    row = await booking_row(bot, s.booking_id)
    assert (row.status, row.outcome_reason) == ("not_vaccinated", "Sốt 38,5 độ")
    assert s.person.last_text == t("vi", "site.notify_not_vaccinated", reason="Sốt 38,5 độ")


async def test_not_vaccinated_other_reason_typed_after_the_button(bot: Harness) -> None:
    s = await scene(bot)
    await s.staff.send(f"/start checkin-{s.code}")
    await s.staff.press(t("vi", "site.button.not_vaccinated"))
    await s.staff.press(t("vi", "site.reason.other"))
    assert t("vi", "site.ask_reason_text") in s.staff.last_text
    await s.staff.send("Đi công tác, hẹn tuần sau")
    row = await booking_row(bot, s.booking_id)
    assert (row.status, row.outcome_reason) == ("not_vaccinated", "Đi công tác, hẹn tuần sau")


# ---------------------------------------------------------------- certificate


async def test_certificate_qr_verifies_and_a_tampered_one_does_not(bot: Harness) -> None:
    s = await scene(bot)
    await record(s)
    before = len(s.person.messages)
    await s.person.send("/certificate")
    title, photo, text = s.person.messages[before:]
    assert t("vi", "certificate.title", name="Nguyễn Văn An") in title["text"]
    assert (
        t(
            "vi",
            "certificate.dose_line",
            date=date("vi", dt.date(2026, 11, 25)),
            vaccine=AZ,
            dose=1,
            site="Bệnh viện Đa khoa tỉnh Lào Cai",
        )
        in title["text"]
    )
    payload = text["text"]
    assert payload.startswith(f"HB2.{bot.services.keyring.active_id}.")
    assert photo["caption"] == t("vi", "certificate.qr_caption")
    assert bot.api.files[photo["photo"][0]["file_id"]].content == qr_png(payload)

    anyone = bot.user(lang="vi")
    await anyone.send(f"/verify {payload}")
    assert anyone.last_text.startswith(
        t("vi", "certificate.valid", initials="NVA", birth_year=1950)
        + "\n"
        + t("vi", "certificate.issued", date=date("vi", dt.date(2026, 11, 25)))
    )
    assert (
        t(
            "vi",
            "certificate.verified_dose",
            date=date("vi", dt.date(2026, 11, 25)),
            vaccine=AZ,
            dose=1,
        )
        in anyone.last_text
    )
    prefix, kid, body, tag = payload.split(".")
    tampered = f"{prefix}.{kid}.{body[:-2]}{'A' if body[-2] != 'A' else 'B'}{body[-1]}.{tag}"
    await anyone.send(f"/verify {tampered}")
    assert anyone.last_text == t("vi", "certificate.invalid")
    await anyone.send("/verify HB2.abc")
    assert anyone.last_text == t("vi", "certificate.invalid")
    await anyone.send("/verify HB1.eyJuIjoiTlZBIn0.AAAAAAAAAAAAAAAAAAAAAA")  # before Ed25519
    assert anyone.last_text == t("vi", "certificate.outdated")
    await anyone.send("/verify")
    assert anyone.last_text == t("vi", "certificate.verify_usage")


async def test_certificate_without_book_or_doses(bot: Harness) -> None:
    stranger = bot.user()
    await stranger.send("/certificate")
    assert stranger.last_text == t("vi", "certificate.no_book")
    s = await scene(bot)
    await s.person.send("/certificate")
    assert s.person.last_text == t("vi", "certificate.no_doses")


# ---------------------------------------------------------------- English


async def test_english_end_to_end(bot: Harness) -> None:
    s = await scene(bot, "en")
    await s.staff.send(f"/start checkin-{s.code}")
    assert_card(s, s.staff.last_text)
    assert "Date of birth" in s.staff.last_text
    await record(s, "EN-42")
    assert s.staff.last_text == t(
        "en", "site.dose_recorded", name="Nguyễn Văn An", dose=1, vaccine=AZ, lot="EN-42"
    )
    today = dt.date(2026, 11, 25)
    assert (
        t(
            "en",
            "site.notify_next",
            dose=2,
            earliest=date("en", today + dt.timedelta(56)),
            latest=date("en", today + dt.timedelta(84)),
        )
        in s.person.last_text
    )
    await s.person.send("/certificate")
    payload = s.person.last_text
    await s.person.send(f"/verify {payload}")
    assert s.person.last_text.startswith(
        t("en", "certificate.valid", initials="NVA", birth_year=1950)
    )
    await s.person.send(f"/checkin {s.code}")
    assert s.person.last_text == t("en", "site.staff_only")
    async with bot.session() as session:
        n = await session.scalar(select(func.count()).select_from(Vaccination))
    assert n == 1
