"""Issue 9, as a whole: the admins' commands in the middle of a health book, and the words a
relative's book is asked in (not "my" phone, not "my" book)."""

from __future__ import annotations

from models import healthbook as hb
from tests.conftest import ChatHarness
from tests.flows import Person, agree, channel_of, t


def uid(person: Person) -> str:
    return str(person.user.id)


async def test_admin_reaches_audit_in_the_middle_of_a_health_book(chat_bot: ChatHarness) -> None:
    h = chat_bot
    admin = h.user()
    await agree(admin)
    await admin.send("Nguyễn Văn An")
    async with h.session() as session, session.begin():
        account = await hb.ensure_account(session, h.channel, uid(admin), "vi")
        account.role = "admin"
    await admin.send("/audit")
    said = admin.last_answer or ""
    assert t("vi", "error.command.unknown") not in said
    assert t("vi", "audit.admins_only") not in said
    # the questions go on where they were: the date of birth is asked next
    await admin.send("/start")
    assert t("vi", "ask.date_of_birth", channel_of(admin)) in admin.last_text
    # a resident is refused /audit mid-way, in words, and loses nothing
    resident = h.user()
    await agree(resident)
    await resident.send("Lò Thị Mai")
    await resident.send("/audit")
    assert resident.last_answer == t("vi", "audit.admins_only")
    await resident.send("/start")
    assert t("vi", "ask.date_of_birth", channel_of(resident)) in resident.last_text


async def test_a_relatives_phone_is_typed_not_shared(chat_bot: ChatHarness) -> None:
    h = chat_bot
    holder = h.user()
    await holder.send("/family")
    await holder.press(t("vi", "family.button.add"))
    await holder.press(t("vi", "relation.father"))
    await holder.press(t("vi", "family.button.consent_relative"))
    await holder.send("Lò Văn Chính")
    await holder.send("2/9/1965")
    await holder.press(t("vi", "gender.male"))
    assert t("vi", "button.no_id_other") in holder.buttons
    await holder.press(t("vi", "button.no_id_other"))
    assert t("vi", "ask.phone_other", channel_of(holder)) in holder.last_text
    if channel_of(holder) == "telegram":  # a reply keyboard: no contact-sharing button
        assert t("vi", "button.share_phone") not in holder.reply_keyboard
        assert not any(b.get("request_contact") for b in holder.reply_buttons)
    await holder.send("không có điện thoại")
    assert t("vi", "ask.bhyt", channel_of(holder)) in holder.last_text


async def test_an_old_save_asks_about_the_same_person_first(chat_bot: ChatHarness) -> None:
    """Save pressed on a review shown before an edit made the resident someone registered
    already (same name and birth date, no ID number): asked about first, nothing saved."""
    from sqlalchemy import func, select

    from models.tables import HealthBook
    from tests.test_assist import make_volunteer, new_resident, rest_of_book
    from tests.test_issue9_volunteers import HOANG

    h = chat_bot
    if h.channel != "telegram":  # Zalo has no old messages' buttons: its choices are the last
        return
    vol = await make_volunteer(h)
    await new_resident(vol)
    await vol.send(HOANG)
    await vol.press(t("vi", "assist.button.correct"))
    await rest_of_book(vol)
    await new_resident(vol)
    await vol.send("hoang van b, 1/1/1950, nam, khong")
    await vol.press(t("vi", "assist.button.correct"))
    await vol.press(t("vi", "assist.button.no_phone"))
    await vol.press(t("vi", "button.skip"))
    await vol.send("hmong")
    await vol.press(t("vi", "occupation.farmer"))
    await vol.press(t("vi", "priority.none"))
    await vol.press(t("vi", "button.skip"))
    await vol.send("0")
    assert t("vi", "review.title") in (vol.last_answer or "")
    await vol.press(t("vi", "button.edit_field", field=t("vi", "field.full_name")))
    await vol.send("hoang van a")
    assert t("vi", "assist.button.same") in vol.buttons  # asked instead of the review
    await vol.press_data("hb:review:save")  # the older review's Save
    assert t("vi", "assist.button.same") in vol.buttons
    async with h.session() as session:
        assert await session.scalar(select(func.count()).select_from(HealthBook)) == 1
