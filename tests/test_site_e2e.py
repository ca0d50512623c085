"""End to end at the vaccination site, on Telegram and on Zalo: check-in (command, the ticket's
QR — a deep link on Telegram, the code itself on Zalo — and the code typed alone), recording a
dose or why it was not given, the person told at once; /certificate and /verify. Refusals for
residents, staff of another site and forged buttons (typed data on Zalo) change nothing. One
scenario mixes the channels: the resident on Zalo, the staff on Telegram, one process."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import aiohttp
import pytest
from sqlalchemy import func, select

from bot.standin.zalo import ZaloChatDriver
from models import booking as bk
from models import checkin as ci
from models import healthbook as hb
from models.campaigns import sample_book
from models.qr import qr_png
from models.tables import Account, Booking, Session, Site, Vaccination
from tests.conftest import (
    Both,
    ChatHarness,
    ZaloHarness,
    start_app,
    start_zalo_app,
    stop_app,
    stop_zalo_app,
)
from tests.flows import TR, Person, channel_of, complete, question, t

CAMPAIGN = "covid19_2021"
HOSPITAL = "LC-BVDK"  # the person (aged 65+, the caution group) books here
OTHER_SITE = "LC-BVNL"
AZ = "Vaxzevria / Covishield (AZD1222)"


@pytest.fixture
def bot(chat_sample: ChatHarness) -> ChatHarness:
    """The real Application with the sample data, on Telegram and then on Zalo."""
    return chat_sample


async def restart(bot: ChatHarness) -> None:
    """Stop the bot as ``healthbook run`` does on SIGTERM and start it again (same database)."""
    settings = bot.services.settings
    if isinstance(bot, ZaloHarness):
        await stop_zalo_app(bot.app, bot.http)
        bot.app, bot.http = await start_zalo_app(settings, bot.clock, bot.media_clock)
    else:
        await stop_app(bot.app)
        bot.app = await start_app(settings, bot.clock)


@dataclass
class Scene:
    """A resident with a booking today at the hospital, and a member of its staff."""

    person: Person
    staff: Person
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


async def add_staff(bot: ChatHarness, site_code: str, lang: str = "vi") -> Person:
    """A new user of ``bot``'s channel made staff of ``site_code`` (as ``healthbook staff add``
    does, by channel and id)."""
    staff = bot.user(lang=lang, name="Lan")
    async with bot.session() as session, session.begin():
        account = await ci.grant_staff_to(session, bot.channel, str(staff.user.id), site_code)
        account.locale = lang  # on Zalo, which tells no language, as /language would
    assert account.role == "site_staff"
    return staff


async def book_today(bot: ChatHarness, person: Person) -> tuple[int, str]:
    """A booking today at the hospital for the health book ``person`` wrote."""
    today = bot.services.today()
    async with bot.session() as session, session.begin():
        account = await hb.find_account(session, channel_of(person), str(person.user.id))
        assert account is not None
        book = await hb.own_book(session, account)
        assert book is not None
        slot = await _slot(session, HOSPITAL, today)
        booking = await bk.book(session, book.id, slot.id, CAMPAIGN, None, today)
        return booking.id, booking.code


async def scene(bot: ChatHarness, lang: str = "vi") -> Scene:
    """A person completes their health book through the bot and is booked for today."""
    person = bot.user(lang=lang)
    await complete(person, lang)
    booking_id, code = await book_today(bot, person)
    staff = await add_staff(bot, HOSPITAL, lang)
    return Scene(person, staff, booking_id, code, lang)


async def scan_ticket(staff: Person, code: str) -> None:
    """What the staff's phone does with the ticket's QR: Telegram opens the bot with the deep
    link ``/start checkin-CODE``; on Zalo the QR holds the code, pasted into the chat."""
    if isinstance(staff, ZaloChatDriver):
        await staff.send(code)
    else:
        await staff.send(f"/start checkin-{code}")


async def other_booking(bot: ChatHarness, site_code: str) -> int:
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


async def booking_row(bot: ChatHarness, booking_id: int) -> Booking:
    async with bot.session() as session:
        found = await session.get(Booking, booking_id)
        assert found is not None
        return found


async def vaccinations(bot: ChatHarness) -> list[Vaccination]:
    async with bot.session() as session:
        return list((await session.scalars(select(Vaccination))).all())


async def account_id(bot: ChatHarness, user: Person) -> int:
    async with bot.session() as session:
        found = await session.scalar(
            select(Account.id).where(
                Account.channel == channel_of(user), Account.external_id == str(user.user.id)
            )
        )
        assert found is not None
        return found


def date(lang: str, day: dt.date) -> str:
    return TR.get(lang).date(day)


def advised(person: Person, lang: str) -> bool:
    """Whether the person's last message is the after-care advice (tests/test_aftercare.py)."""
    return (person.last_text or "").startswith(
        t(lang, "aftercare.advice", hotline="1900 9095", emergency="115")
    )


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


async def test_checkin_by_command(bot: ChatHarness) -> None:
    s = await scene(bot)
    await s.staff.send(f"/checkin {s.code.lower()[:3]} {s.code.lower()[3:]}")
    assert_card(s, s.staff.last_text)
    assert s.staff.buttons == [t("vi", "site.button.record"), t("vi", "site.button.not_vaccinated")]
    row = await booking_row(bot, s.booking_id)
    assert row.status == "checked_in"
    assert row.checked_in_by == await account_id(bot, s.staff)


async def test_checkin_by_the_tickets_qr(bot: ChatHarness) -> None:
    s = await scene(bot)
    await scan_ticket(s.staff, s.code)
    assert_card(s, s.staff.last_text)
    assert t("vi", "start.welcome") not in s.staff.texts  # the health book was not offered
    assert (await booking_row(bot, s.booking_id)).status == "checked_in"


async def test_checkin_by_the_code_typed_alone(bot: ChatHarness) -> None:
    """On both channels staff may type the code alone (spaces, dashes, any case), and the next
    person's code while a card is still open."""
    s = await scene(bot)
    await s.staff.send(f"{s.code[:3].lower()}-{s.code[3:]}")
    assert_card(s, s.staff.last_text)
    assert (await booking_row(bot, s.booking_id)).status == "checked_in"
    # the card is open (its two choices); another person's code typed now opens theirs
    second_id = await other_booking(bot, HOSPITAL)
    second_code = (await booking_row(bot, second_id)).code
    await s.staff.send(second_code)
    assert second_code in (s.staff.last_text or "")
    assert (await booking_row(bot, second_id)).status == "checked_in"
    await s.staff.press(t("vi", "site.button.not_vaccinated"))  # the newest card's choices
    assert t("vi", "site.reason.other") in s.staff.buttons  # the reasons, for the second one
    await s.staff.send("Hẹn hôm khác")
    assert (await booking_row(bot, second_id)).status == "not_vaccinated"
    assert (await booking_row(bot, s.booking_id)).status == "checked_in"


async def test_checkin_without_code_and_unknown_codes(bot: ChatHarness) -> None:
    staff = await add_staff(bot, HOSPITAL)
    await staff.send("/checkin")
    assert staff.last_text == t("vi", "site.checkin_usage", bot.channel)
    await staff.send("/checkin 2345678")
    assert staff.last_text == t("vi", "booking.not_found")
    await staff.send("/checkin AB1")
    assert staff.last_text == t("vi", "booking.code_invalid", length=7, chars="1")
    await scan_ticket(staff, "ZZZZZZZ")
    assert staff.last_text == t("vi", "booking.not_found")
    await staff.send("xin chào")  # not a code: the usual answer
    assert staff.last_text == t("vi", "idle.hint", bot.channel)


async def test_resident_cannot_check_in(bot: ChatHarness) -> None:
    s = await scene(bot)
    await s.person.send(f"/checkin {s.code}")
    assert s.person.last_text == t("vi", "site.staff_only")
    await s.person.send(f"/start checkin-{s.code}")
    assert s.person.last_text == t("vi", "site.staff_only")
    await s.person.send(s.code)  # their own code typed alone: not a check-in
    assert s.code not in (s.person.last_text or "")
    if bot.channel == "telegram":
        await s.person.press_data(f"st:d:{s.booking_id}")
        assert s.person.callback_answers[-1] == t("vi", "checkin.not_staff")
        await s.person.press_data(f"st:v:{s.booking_id}:astrazeneca")
        assert s.person.callback_answers[-1] == t("vi", "checkin.not_staff")
    else:  # no callback data on Zalo: the same strings typed are just words
        for data in (f"st:d:{s.booking_id}", f"st:v:{s.booking_id}:astrazeneca"):
            await s.person.send(data)
            assert "Nguyễn Văn An" not in (s.person.last_answer or "")
    assert (await booking_row(bot, s.booking_id)).status == "booked"
    assert await vaccinations(bot) == []


async def test_staff_of_another_site_is_refused(bot: ChatHarness) -> None:
    s = await scene(bot)
    stranger = await add_staff(bot, OTHER_SITE)
    await stranger.send(f"/checkin {s.code}")
    assert stranger.last_text == t("vi", "checkin.not_your_site")
    await scan_ticket(stranger, s.code)
    assert stranger.last_text == t("vi", "checkin.not_your_site")
    await stranger.send(s.code)
    assert stranger.last_text == t("vi", "checkin.not_your_site")
    assert "Nguyễn Văn An" not in " ".join(stranger.texts)
    # the right staff checks in; the stranger then tries the buttons with this booking's id
    await s.staff.send(f"/checkin {s.code}")
    for data in (
        f"st:d:{s.booking_id}",
        f"st:v:{s.booking_id}:astrazeneca",
        f"st:n:{s.booking_id}",
        f"st:r:{s.booking_id}:refused",
    ):
        if bot.channel == "telegram":
            await stranger.press_data(data)
            assert stranger.callback_answers[-1] == t("vi", "checkin.not_your_site"), data
        else:  # typed: words, and the other chat's choices are not the stranger's
            await stranger.send(data)
            await stranger.send("1")
            assert "Nguyễn Văn An" not in " ".join(stranger.texts), data
    row = await booking_row(bot, s.booking_id)
    assert row.status == "checked_in" and row.outcome_reason is None
    assert await vaccinations(bot) == []


async def test_forged_buttons_are_refused_and_change_nothing(bot: ChatHarness) -> None:
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
        if bot.channel == "telegram":
            assert s.staff.callback_answers[-1] == t("vi", key), data
        else:  # typed on Zalo: not an answer to the card; its choices again
            assert t("vi", "site.use_buttons") in (s.staff.last_answer or ""), data
            assert s.staff.buttons == [
                t("vi", "site.button.record"),
                t("vi", "site.button.not_vaccinated"),
            ], data
    # numbers the card never offered
    for typed in ("0", "3", "99", "-1", "1.5"):
        await s.staff.send(typed)
        if bot.channel == "zalo":
            assert t("vi", "site.use_buttons") in (s.staff.last_answer or ""), typed
    if bot.channel == "telegram":
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
    assert t(s.lang, "site.ask_vaccine", name="Nguyễn Văn An") in (s.staff.last_text or "")
    assert AZ in s.staff.buttons
    await s.staff.press(AZ)
    assert t(s.lang, "site.ask_lot", vaccine=AZ) in (s.staff.last_text or "")
    await s.staff.send(lot)


async def test_record_dose_end_to_end(bot: ChatHarness) -> None:
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
    # AstraZeneca: dose 2 from 56 to 84 days after dose 1; then the after-care advice
    assert advised(s.person, "vi")
    assert s.person.texts[-2] == (
        t(
            "vi",
            "site.notify_dose",
            bot.channel,
            dose=1,
            vaccine=AZ,
            date=date("vi", today),
            site="Bệnh viện Đa khoa tỉnh Lào Cai",
        )
        + "\n\n"
        + t(
            "vi",
            "site.notify_next",
            bot.channel,
            dose=2,
            earliest=date("vi", today + dt.timedelta(56)),
            latest=date("vi", today + dt.timedelta(84)),
        )
    )
    # the same choices again: already vaccinated, nothing more is written
    if bot.channel == "telegram":
        await s.staff.press_data(f"st:v:{s.booking_id}:astrazeneca")
        assert s.staff.callback_answers[-1] == t(
            "vi", "vaccination.not_checked_in", status=t("vi", "status.vaccinated")
        )
    else:  # the vaccine's number typed again: no longer a choice on offer, not a lot either
        await s.staff.send("1")
        recorded = t("vi", "site.dose_recorded", name="Nguyễn Văn An", dose=1, vaccine=AZ, lot="1")
        assert recorded not in s.staff.texts
    await s.staff.send(f"/checkin {s.code}")  # checking in a vaccinated person again: refused
    assert "Nguyễn Văn An" not in (s.staff.last_answer or "")
    assert len(await vaccinations(bot)) == 1


async def test_the_lot_step_survives_a_restart(bot: ChatHarness) -> None:
    """The booking and vaccine ride in the persisted state: a restart between the vaccine
    choice and the typed lot number loses nothing."""
    s = await scene(bot)
    await s.staff.send(f"/checkin {s.code}")
    await s.staff.press(t("vi", "site.button.record"))
    await s.staff.press(AZ)
    await restart(bot)
    await s.staff.send("RS-7")
    assert s.staff.last_text == t(
        "vi", "site.dose_recorded", name="Nguyễn Văn An", dose=1, vaccine=AZ, lot="RS-7"
    )
    (vac,) = await vaccinations(bot)
    assert (vac.vaccine_code, vac.lot_number) == ("astrazeneca", "RS-7")


async def test_the_card_choices_survive_a_restart(bot: ChatHarness) -> None:
    """The card's choices are kept in the database: after a restart "record" still answers."""
    s = await scene(bot)
    await s.staff.send(f"/checkin {s.code}")
    await restart(bot)
    await s.staff.press(t("vi", "site.button.record"))
    assert t("vi", "site.ask_vaccine", name="Nguyễn Văn An") in (s.staff.last_text or "")
    await s.staff.press(AZ)
    await s.staff.send("RS-8")
    (vac,) = await vaccinations(bot)
    assert (vac.vaccine_code, vac.lot_number) == ("astrazeneca", "RS-8")


async def test_bad_lot_is_asked_again_and_cancel_records_nothing(bot: ChatHarness) -> None:
    s = await scene(bot)
    await record(s, "x" * 40)
    assert t("vi", "vaccination.lot_invalid", max=32) in s.staff.texts
    assert await vaccinations(bot) == []
    await s.staff.send("/cancel")
    assert s.staff.last_text == t("vi", "site.cancelled")
    await s.staff.send("LOT-1")  # no longer waiting for a lot: not recorded
    assert await vaccinations(bot) == []
    assert (await booking_row(bot, s.booking_id)).status == "checked_in"


async def test_not_vaccinated_with_a_common_reason(bot: ChatHarness) -> None:
    s = await scene(bot)
    await s.staff.send(f"/checkin {s.code}")
    await s.staff.press(t("vi", "site.button.not_vaccinated"))
    assert t("vi", "site.reason.blood_pressure") in s.staff.buttons
    await s.staff.press(t("vi", "site.reason.blood_pressure"))
    reason = t("vi", "site.reason.blood_pressure")
    assert question(s.staff.last_text) == t(
        "vi", "site.not_vaccinated_recorded", name="Nguyễn Văn An", reason=reason
    )
    row = await booking_row(bot, s.booking_id)
    assert (row.status, row.outcome_reason) == ("not_vaccinated", reason)
    assert s.person.last_text == t("vi", "site.notify_not_vaccinated", bot.channel, reason=reason)
    assert await vaccinations(bot) == []


async def test_not_vaccinated_with_a_typed_reason(bot: ChatHarness) -> None:
    s = await scene(bot)
    await s.staff.send(f"/checkin {s.code}")
    await s.staff.press(t("vi", "site.button.not_vaccinated"))
    await s.staff.send("Sốt 38,5 độ")  # typed straight away
    row = await booking_row(bot, s.booking_id)
    assert (row.status, row.outcome_reason) == ("not_vaccinated", "Sốt 38,5 độ")
    assert s.person.last_text == t(
        "vi", "site.notify_not_vaccinated", bot.channel, reason="Sốt 38,5 độ"
    )


async def test_not_vaccinated_other_reason_typed_after_the_choice(bot: ChatHarness) -> None:
    s = await scene(bot)
    await scan_ticket(s.staff, s.code)
    await s.staff.press(t("vi", "site.button.not_vaccinated"))
    await s.staff.press(t("vi", "site.reason.other"))
    assert t("vi", "site.ask_reason_text") in (s.staff.last_text or "")
    await s.staff.send("Đi công tác, hẹn tuần sau")
    row = await booking_row(bot, s.booking_id)
    assert (row.status, row.outcome_reason) == ("not_vaccinated", "Đi công tác, hẹn tuần sau")


# ---------------------------------------------------------------- certificate


async def qr_bytes(bot: ChatHarness, photo: dict[str, object]) -> bytes:
    """The picture of a photo message: the uploaded file on Telegram; on Zalo what its URL
    (the bot's own web server) serves."""
    if bot.channel == "telegram":
        return bot.api.files[photo["photo"][0]["file_id"]].content  # type: ignore[index,union-attr,no-any-return]
    fetched = photo["fetched"]
    assert fetched.ok and fetched.content_type == "image/png"  # type: ignore[attr-defined]
    async with aiohttp.ClientSession() as http, http.get(str(photo["photo"])) as resp:
        assert resp.status == 200
        return await resp.read()


async def test_certificate_qr_verifies_and_a_tampered_one_does_not(bot: ChatHarness) -> None:
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
    assert photo["caption"] == t("vi", "certificate.qr_caption", bot.channel)
    assert await qr_bytes(bot, photo) == qr_png(payload)

    anyone = bot.user(lang="vi")
    await anyone.send(f"/verify {payload}")
    assert (anyone.last_text or "").startswith(
        t("vi", "certificate.valid", initials="NVA", birth_year=1950)
        + "\n"
        + t("vi", "certificate.issued", date=date("vi", dt.date(2026, 11, 25)))
    )
    assert t(
        "vi",
        "certificate.verified_dose",
        date=date("vi", dt.date(2026, 11, 25)),
        vaccine=AZ,
        dose=1,
    ) in (anyone.last_text or "")
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


async def test_certificate_without_book_or_doses(bot: ChatHarness) -> None:
    stranger = bot.user()
    await stranger.send("/certificate")
    assert stranger.last_text == t("vi", "certificate.no_book")
    s = await scene(bot)
    await s.person.send("/certificate")
    assert s.person.last_text == t("vi", "certificate.no_doses")


# ---------------------------------------------------------------- English


async def test_english_end_to_end(bot: ChatHarness) -> None:
    s = await scene(bot, "en")
    await scan_ticket(s.staff, s.code)
    assert_card(s, s.staff.last_text)
    assert "Date of birth" in (s.staff.last_text or "")
    await record(s, "EN-42")
    assert s.staff.last_text == t(
        "en", "site.dose_recorded", name="Nguyễn Văn An", dose=1, vaccine=AZ, lot="EN-42"
    )
    today = dt.date(2026, 11, 25)
    assert t(
        "en",
        "site.notify_next",
        bot.channel,
        dose=2,
        earliest=date("en", today + dt.timedelta(56)),
        latest=date("en", today + dt.timedelta(84)),
    ) in s.person.texts[-2]
    assert advised(s.person, "en")
    await s.person.send("/certificate")
    payload = s.person.last_text
    await s.person.send(f"/verify {payload}")
    assert (s.person.last_text or "").startswith(
        t("en", "certificate.valid", initials="NVA", birth_year=1950)
    )
    await s.person.send(f"/checkin {s.code}")
    assert s.person.last_text == t("en", "site.staff_only")
    async with bot.session() as session:
        n = await session.scalar(select(func.count()).select_from(Vaccination))
    assert n == 1


# ---------------------------------------------------------------- both channels, one process


async def test_resident_on_zalo_staff_on_telegram(both_sample: Both) -> None:
    """The ticket booked on Zalo holds the code; Telegram staff type it, record the dose, and
    the resident is told on Zalo, in Zalo's words; the certificate's QR comes by URL."""
    tg, zl = both_sample.telegram, both_sample.zalo
    person = zl.user()
    await complete(person)
    booking_id, code = await book_today(zl, person)
    staff = await add_staff(tg, HOSPITAL)
    s = Scene(person, staff, booking_id, code, "vi")
    await staff.send(code)  # the code the Zalo ticket's QR holds, typed or pasted
    assert_card(s, staff.last_text)
    await record(s, "MX-1")
    assert staff.last_text == t(
        "vi", "site.dose_recorded", name="Nguyễn Văn An", dose=1, vaccine=AZ, lot="MX-1"
    )
    today = dt.date(2026, 11, 25)
    assert advised(person, "vi")
    told_person = person.texts[-2]
    assert told_person.startswith(
        t(
            "vi",
            "site.notify_dose",
            "zalo",
            dose=1,
            vaccine=AZ,
            date=date("vi", today),
            site="Bệnh viện Đa khoa tỉnh Lào Cai",
        )
    )
    (vac,) = await vaccinations(zl)
    assert vac.recorded_by == await account_id(tg, staff)
    before = len(person.messages)
    await person.send("/certificate")
    _title, photo, text = person.messages[before:]
    assert await qr_bytes(zl, photo) == qr_png(text["text"])
    # the payload read on Telegram by anyone
    anyone = tg.user()
    await anyone.send(f"/verify {text['text']}")
    assert (anyone.last_text or "").startswith(
        t("vi", "certificate.valid", initials="NVA", birth_year=1950)
    )


async def test_a_ticket_booked_on_zalo_is_checked_in_from_its_qr(both_sample: Both) -> None:
    """The whole way on Zalo's side: /book gives a ticket whose QR (fetched by URL) holds the
    booking code itself; staff on Telegram send that code on the day and see the card."""
    from tests.test_booking_e2e import book_first_place, younger_person

    tg, zl = both_sample.telegram, both_sample.zalo
    person = await younger_person(zl)
    await book_first_place(person)
    async with zl.session() as session:
        booking = await session.scalar(select(Booking).where(Booking.status == "booked"))
        assert booking is not None
        slot = await session.get(Session, booking.session_id)
        assert slot is not None
        site = await session.get(Site, slot.site_id)
        assert site is not None
    photo = next(m for m in person.messages if "photo" in m)
    assert await qr_bytes(zl, photo) == qr_png(booking.code)  # the code, no deep link
    staff = await add_staff(tg, site.code)
    # on the session's day, at 8:00 in Lào Cai
    zl.clock.current = dt.datetime.combine(slot.date, dt.time(1, 0), tzinfo=dt.UTC)
    await staff.send(booking.code)
    card = staff.last_text or ""
    assert "Lò Văn Páo" in card and booking.code in card and site.name in card
    assert (await booking_row(tg, booking.id)).status == "checked_in"
