"""Roles and invitations (issue 9): invite codes made in the chat (/invite) and with the CLI,
joined with /join as a commune volunteer or as site staff, refused when unknown, expired, used
up or revoked (nothing changes then), suspension cutting a volunteer's and a staff member's
rights, /day for site staff, admins listed in the settings, and forged presses of the /invite
choices by a resident. End to end on Telegram and Zalo; the model on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.settings import ConfigError, load_settings
from models import checkin as ci
from models import custody
from models import healthbook as hb
from models import invites as inv
from models.errors import DomainError
from models.roles import grant_admin, is_admin
from models.tables import Account, Invite, StaffSite, VolunteerWard
from tests.conftest import ChatHarness, FakeClock, make_settings, start_app, stop_app
from tests.flows import Person, channel_of, complete, t
from tests.test_site_e2e import HOSPITAL, OTHER_SITE, book_today

SA_PA = 3006  # Phường Sa Pa (Lào Cai)
NOW = dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.UTC)
CODE = re.compile(r"^(\d{5} \d{5})$", re.M)


@pytest.fixture
def bot(chat_sample: ChatHarness) -> ChatHarness:
    """The real Application with the sample data, on Telegram and then on Zalo."""
    return chat_sample


def uid(person: Person) -> str:
    return str(person.user.id)


async def account_of(h: ChatHarness, person: Person) -> Account | None:
    async with h.session() as session:
        return await hb.find_account(session, channel_of(person), uid(person))


async def make_admin(h: ChatHarness, person: Person) -> None:
    async with h.session() as session, session.begin():
        await grant_admin(session, h.channel, uid(person))


async def choose(person: Person, label: str) -> None:
    """Answer a choice: its button on Telegram; its label typed or its number on Zalo."""
    await person.press(label)


def code_in(text: str | None) -> str:
    """The invite code, alone on its line in the bot's answer."""
    found = CODE.search(text or "")
    assert found is not None, text
    return found.group(1)


async def invite_in_chat(
    h: ChatHarness, admin: Person, *, staff: bool = False, uses: int = 1, days: int = 7
) -> str:
    """An admin makes an invite through /invite; its code."""
    await admin.send("/invite")
    assert t("vi", "invite.ask_role") in (admin.last_answer or "")
    if staff:
        await choose(admin, t("vi", "invite.role.staff"))
        await admin.send(HOSPITAL.lower())
    else:
        await choose(admin, t("vi", "invite.role.volunteer"))
        assert "Sa Pa" in (admin.last_answer or "")
        await admin.send("sa pa")
        assert "Phường Sa Pa" in (admin.last_answer or "")
        await choose(admin, t("vi", "invite.button.next"))
    assert t("vi", "invite.ask_uses") in (admin.last_answer or "")
    await choose(admin, t("vi", "invite.uses.one") if uses == 1 else f"{uses} người")
    await choose(admin, t("vi", "invite.days.one") if days == 1 else f"{days} ngày")
    answer = admin.last_answer or ""
    code = code_in(answer)
    assert f"/join {code}" in answer
    return code


async def invites_count(h: ChatHarness) -> int:
    async with h.session() as session:
        return int(await session.scalar(select(func.count()).select_from(Invite)) or 0)


# ---------------------------------------------------------------- end to end


async def test_volunteer_joins_by_an_invite_made_in_the_chat(bot: ChatHarness) -> None:
    admin, volunteer, late = bot.user(), bot.user(), bot.user()
    await make_admin(bot, admin)
    code = await invite_in_chat(bot, admin)
    await volunteer.send(f"/join {code}")
    assert volunteer.last_text == t("vi", "join.volunteer", wards="Phường Sa Pa")
    async with bot.session() as session:
        account = await hb.find_account(session, bot.channel, uid(volunteer))
        assert account is not None and account.role == "volunteer"
        assert await custody.volunteer_wards(session, account) == [SA_PA]
        assert await custody.is_volunteer(session, account)
        row = await session.scalar(select(Invite))
        assert row is not None and row.uses_left == 0
    # the one use is taken: refused, nothing changes
    await late.send("/join")
    assert late.last_text == t("vi", "join.ask_code")
    await late.send(code.replace(" ", "-"))
    assert late.last_text == t("vi", "invite.used_up")
    lately = await account_of(bot, late)
    assert lately is None or lately.role == "resident"


async def test_staff_joins_and_sees_the_day_list(bot: ChatHarness) -> None:
    admin, staff = bot.user(), bot.user()
    await make_admin(bot, admin)
    code = await invite_in_chat(bot, admin, staff=True, uses=5, days=30)
    await staff.send(f"/join {code.replace(' ', '')}")
    assert (
        t("vi", "join.staff", bot.channel, site="Bệnh viện Đa khoa tỉnh Lào Cai") == staff.last_text
    )
    person = bot.user()
    await complete(person)
    _, booking_code = await book_today(bot, person)
    await staff.send("/day")
    answer = staff.last_answer or ""
    assert booking_code in answer and "Nguyễn Văn An" in answer
    assert t("vi", "status.booked") in answer
    # another day: nobody
    await choose(staff, t("vi", "day.button.after"))
    assert t("vi", "day.none") in (staff.last_answer or "")
    # a resident has no day list; a forged day press shows nothing
    await person.send("/day")
    assert person.last_text == t("vi", "site.staff_only")
    async with bot.session() as session:
        site_id = await session.scalar(select(StaffSite.site_id))
    await person.press_data(f"day:{site_id}:{bot.services.today():%Y%m%d}")
    assert booking_code not in " ".join(person.texts)
    # suspended: no day list, no check-in
    async with bot.session() as session, session.begin():
        account = await hb.find_account(session, bot.channel, uid(staff))
        assert account is not None
        await inv.suspend(session, account, bot.clock())
    await staff.send("/day")
    assert staff.last_text == t("vi", "site.staff_only")
    await staff.send(f"/checkin {booking_code}")
    assert staff.last_text == t("vi", "site.staff_only")


async def test_refused_codes_change_nothing(bot: ChatHarness) -> None:
    admin = bot.user()
    await make_admin(bot, admin)
    expired = await invite_in_chat(bot, admin, days=1)
    revoked = await invite_in_chat(bot, admin)
    async with bot.session() as session, session.begin():
        rows = list(await session.scalars(select(Invite).order_by(Invite.id)))
        await inv.revoke(session, rows[1].id, bot.clock())
    bot.clock.advance(days=2)
    person = bot.user()
    for code, key in (
        (expired, "invite.expired"),
        (revoked, "invite.revoked"),
        ("00000 00000", "invite.unknown"),
        ("hello", "invite.unknown"),
    ):
        await person.send(f"/join {code}")
        assert person.last_text == t("vi", key), code
    async with bot.session() as session:
        assert await session.scalar(select(func.count()).select_from(VolunteerWard)) == 0
        uses = list(await session.scalars(select(Invite.uses_left)))
        assert uses == [1, 1]
    account = await account_of(bot, person)
    assert account is None or account.role == "resident"


async def test_non_admins_cannot_invite_even_with_forged_choices(bot: ChatHarness) -> None:
    resident = bot.user()
    await complete(resident)
    await resident.send("/invite")
    assert resident.last_text == t("vi", "invite.admins_only")
    for data in ("inv:r:v", f"inv:w:{SA_PA}", "inv:next", "inv:n:5", "inv:d:7", "inv:s:1"):
        await resident.press_data(data)
        if bot.channel == "telegram":
            assert resident.callback_answers[-1] == t("vi", "invite.admins_only"), data
    assert await invites_count(bot) == 0
    # a volunteer is no admin either
    volunteer = bot.user()
    async with bot.session() as session, session.begin():
        made = await inv.create_invite(
            session, role="volunteer", now=bot.clock(), province=15, wards=[SA_PA]
        )
    await volunteer.send(f"/join {inv.format_code(made.code)}")
    await volunteer.send("/invite")
    assert volunteer.last_text == t("vi", "invite.admins_only")
    await volunteer.press_data("inv:d:7")
    assert await invites_count(bot) == 1


async def test_forged_choices_of_an_admin_are_checked(bot: ChatHarness) -> None:
    """An admin's own flow: a ward of another province, a site that does not exist, out of
    range uses and days are refused; a press outside its step is stale."""
    if bot.channel != "telegram":
        pytest.skip("forged callback data: Telegram (Zalo types data as words)")
    admin = bot.user()
    await make_admin(bot, admin)
    await admin.send("/invite")
    await admin.press(t("vi", "invite.role.volunteer"))
    for data in ("inv:w:1", "inv:w:abc", "inv:w:99999999999", "inv:n:5", "inv:d:7"):
        await admin.press_data(data)
        assert admin.callback_answers[-1] == t("vi", "error.button.stale"), data
    await admin.send("sa pa")
    await admin.press(t("vi", "invite.button.next"))
    for data in ("inv:n:0", "inv:n:100000", "inv:n:-1", "inv:d:7"):
        await admin.press_data(data)
        assert admin.callback_answers[-1] == t("vi", "error.button.stale"), data
    await admin.press_data("inv:n:3")
    for data in ("inv:d:0", "inv:d:1000", "inv:d:x"):
        await admin.press_data(data)
        assert admin.callback_answers[-1] == t("vi", "error.button.stale"), data
    assert await invites_count(bot) == 0
    await admin.press_data("inv:d:2")
    code_in(admin.last_text)
    async with bot.session() as session:
        row = await session.scalar(select(Invite))
        assert row is not None and row.uses_left == 3 and row.ward_codes == [SA_PA]


async def test_suspended_volunteer_can_no_longer_act(bot: ChatHarness) -> None:
    admin, volunteer = bot.user(), bot.user()
    await make_admin(bot, admin)
    code = await invite_in_chat(bot, admin)
    await volunteer.send(f"/join {code}")
    async with bot.session() as session, session.begin():
        account = await hb.find_account(session, bot.channel, uid(volunteer))
        assert account is not None
        assert await inv.suspend(session, account, bot.clock())
    async with bot.session() as session:
        account = await hb.find_account(session, bot.channel, uid(volunteer))
        assert account is not None
        assert not await custody.is_volunteer(session, account)
        assert await custody.volunteer_wards(session, account) == []
        with pytest.raises(DomainError) as info:
            await inv.require_volunteer(session, account)
        assert info.value.key == "roles.suspended"
    # a second invite cannot lift it
    other = await invite_in_chat(bot, admin)
    await volunteer.send(f"/join {other}")
    assert volunteer.last_text == t("vi", "invite.suspended")
    async with bot.session() as session, session.begin():
        account = await hb.find_account(session, bot.channel, uid(volunteer))
        assert account is not None
        assert await inv.resume(session, account)
        assert await custody.is_volunteer(session, account)


async def test_admins_listed_in_the_settings(api: object, db_url: str) -> None:
    """``[roles] admins``: the listed account is an admin from the start and may /invite."""
    from bot.standin import BotApiStandIn

    assert isinstance(api, BotApiStandIn)
    clock = FakeClock()
    settings = make_settings(db_url, api)
    settings.roles.admins = ["telegram:4242"]
    app = await start_app(settings, clock)
    try:
        from tests.conftest import Harness

        h = Harness(api, app, clock)
        async with h.session() as session:
            found = await hb.find_account(session, "telegram", "4242")
            assert found is not None and found.role == "admin"
        admin = h.user(4242)
        await admin.send("/invite")
        assert t("vi", "invite.ask_role") in (admin.last_text or "")
    finally:
        await stop_app(app)


# ---------------------------------------------------------------- the model


async def _tx(db_url: str):  # type: ignore[no-untyped-def]
    from bot.db import create_engine, session_factory, upgrade

    engine = create_engine(db_url)
    await upgrade(engine)
    return engine, session_factory(engine)


async def _site(session: object) -> int:
    from models.campaigns import load_sample_data

    await load_sample_data(session, NOW.date())  # type: ignore[arg-type]
    site = await ci.get_site(session, HOSPITAL)  # type: ignore[arg-type,attr-defined]
    return int(site.id)


async def test_model_join_refusals_and_roles(db_url: str) -> None:
    engine, sessions = await _tx(db_url)
    try:
        async with sessions() as s, s.begin():
            await _site(s)
            a = await hb.ensure_account(s, "telegram", "1")
            b = await hb.ensure_account(s, "zalo", "abc")
            staff = await hb.ensure_account(s, "telegram", "2")
            admin = await grant_admin(s, "telegram", "3")
            await ci.grant_staff(s, staff, HOSPITAL)
            vol = await inv.create_invite(
                s, role="volunteer", now=NOW, province=15, wards=[SA_PA, SA_PA], uses=3
            )
            assert vol.invite.ward_codes == [SA_PA]
            assert inv.normalize_code(inv.format_code(vol.code)) == vol.code
            assert inv.normalize_code(f" {vol.code[:3]}-{vol.code[3:]}.") == vol.code
            assert inv.normalize_code("１２３４５６７８９０") is None
            for who in (a, staff, admin):
                joined = await inv.join(s, who, inv.format_code(vol.code), NOW)
                assert joined.wards == [SA_PA]
            assert (a.role, staff.role, admin.role) == ("volunteer", "site_staff", "admin")
            assert vol.invite.uses_left == 0
            with pytest.raises(DomainError) as info:
                await inv.join(s, b, vol.code, NOW)
            assert info.value.key == "invite.used_up"
            with pytest.raises(DomainError) as info:
                await inv.join(s, a, "1234567890", NOW)
            assert info.value.key == "invite.unknown"
            site = await inv.create_invite(s, role="site_staff", now=NOW, site=HOSPITAL, days=1)
            with pytest.raises(DomainError) as info:
                await inv.join(s, b, site.code, NOW + dt.timedelta(days=1))
            assert info.value.key == "invite.expired"
            joined = await inv.join(s, a, site.code, NOW)
            assert joined.site is not None and a.role == "site_staff"
            with pytest.raises(DomainError) as info:
                await inv.join(s, a, vol.code, NOW)
            assert info.value.key == "invite.used_up"
            # listing (with the residents each registered), suspension, removal
            from models.campaigns import sample_book
            from models.tables import Assist

            for via in ("registered", "registered", "linked"):
                book = sample_book(None, id_number=None, relation="assisted", ward_code=SA_PA)  # type: ignore[arg-type]
                s.add(book)
                await s.flush()
                s.add(Assist(health_book_id=book.id, account_id=a.id, via=via))
            await s.flush()
            listed = {x.account.external_id: x for x in await inv.volunteers(s)}
            assert set(listed) == {"1", "2", "3"} and listed["1"].wards == [SA_PA]
            assert (listed["1"].registered, listed["2"].registered) == (2, 0)
            assert not listed["1"].suspended
            assert [(x.account.external_id, x.sites) for x in await inv.staff(s)] == [
                ("1", [HOSPITAL]),
                ("2", [HOSPITAL]),
            ]
            with pytest.raises(DomainError) as info:
                await inv.suspend(s, admin, NOW)
            assert info.value.key == "roles.is_admin"
            with pytest.raises(DomainError) as info:
                await inv.suspend(s, b, NOW)
            assert info.value.key == "roles.nothing_to_suspend"
            assert await inv.suspend(s, a, NOW) and not await inv.suspend(s, a, NOW)
            with pytest.raises(DomainError) as info:
                await ci.require_site_staff(s, a, joined.site.id)
            assert info.value.key == "checkin.not_staff"
            assert await inv.remove(s, a) == 1 and a.role == "site_staff"
            assert await inv.remove_staff(s, a) == 1 and a.role == "resident"
            assert a.suspended_at is None  # nothing left to suspend
            assert await inv.remove(s, admin) == 1 and admin.role == "admin"
            with pytest.raises(DomainError) as info:
                await inv.remove(s, admin)
            assert info.value.key == "roles.not_volunteer"
            # bad invites
            for kwargs, key in (
                ({"role": "admin"}, "invite.bad_role"),
                ({"role": "volunteer", "province": 15, "wards": []}, "invite.no_wards"),
                ({"role": "volunteer", "province": 15, "wards": [1]}, "invite.ward_unknown"),
                (
                    {"role": "volunteer", "province": 15, "wards": [SA_PA], "uses": 0},
                    "invite.bad_uses",
                ),
                (
                    {"role": "volunteer", "province": 15, "wards": [SA_PA], "days": 91},
                    "invite.bad_days",
                ),
                ({"role": "site_staff"}, "invite.no_site"),
                ({"role": "site_staff", "site": "NOPE"}, "site.not_found"),
            ):
                with pytest.raises(DomainError) as info:
                    await inv.create_invite(s, now=NOW, **kwargs)  # type: ignore[arg-type]
                assert info.value.key == key, kwargs
    finally:
        await engine.dispose()


async def test_two_people_race_for_the_last_use(db_url: str) -> None:
    engine, sessions = await _tx(db_url)
    try:
        async with sessions() as s, s.begin():
            a = (await hb.ensure_account(s, "telegram", "11")).id
            b = (await hb.ensure_account(s, "telegram", "12")).id
            made = await inv.create_invite(s, role="volunteer", now=NOW, province=15, wards=[SA_PA])

        async def attempt(account_id: int) -> str:
            try:
                async with sessions() as s, s.begin():
                    account = await s.get(Account, account_id)
                    assert account is not None
                    await inv.join(s, account, made.code, NOW)
                    await asyncio.sleep(0.05)  # hold the transaction open
                return "joined"
            except DomainError as err:
                return err.key

        results = sorted(await asyncio.gather(attempt(a), attempt(b)))
        assert results == ["invite.used_up", "joined"], results
        async with sessions() as s:
            assert await s.scalar(select(func.count()).select_from(VolunteerWard)) == 1
            assert await s.scalar(select(Invite.uses_left)) == 0
    finally:
        await engine.dispose()


def test_roles_admins_setting_is_checked() -> None:
    settings = load_settings(None, roles={"admins": ["telegram:123", " zalo:abc ", "telegram:123"]})
    assert settings.roles.admins == ["telegram:123", "zalo:abc"]
    for bad in (["123"], ["telegram:-1"], ["zalo:a b"], ["facebook:1"], ["telegram:"]):
        with pytest.raises(ConfigError) as info:
            load_settings(None, roles={"admins": bad})
        assert "roles.admins" in str(info.value)


def test_is_admin_honours_the_listed_accounts() -> None:
    account = Account(channel="zalo", external_id="abc", role="resident")
    assert not is_admin(account) and not is_admin(None, ["zalo:abc"])
    assert is_admin(account, ["zalo:abc"]) and not is_admin(account, ["telegram:abc"])


# ---------------------------------------------------------------- the command line


async def cli(h: ChatHarness, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``healthbook ARGS`` on the harness's database (in a thread: the bot keeps running)."""
    from tests.test_cli import healthbook

    config = tmp_path / "config.toml"
    url = h.services.settings.database.url
    config.write_text(f'[database]\nurl = "{url}"\n')
    return await asyncio.to_thread(healthbook, *args, "--config", str(config), cwd=tmp_path)


@pytest.mark.zalo_sqlite_only
async def test_cli_invites_volunteers_and_staff(bot: ChatHarness, tmp_path: Path) -> None:
    option = "--telegram-id" if bot.channel == "telegram" else "--zalo-id"
    made = await cli(bot, tmp_path, "invite", "create", "--role", "volunteer", "--ward", "3006")
    assert made.returncode == 0, made.stderr
    code = made.stdout.strip().splitlines()[-1]
    assert CODE.fullmatch(code), made.stdout
    volunteer = bot.user()
    await volunteer.send(f"/join {code}")
    assert volunteer.last_text == t("vi", "join.volunteer", wards="Phường Sa Pa")
    listed = await cli(bot, tmp_path, "volunteers", "list")
    assert f"{bot.channel}:{uid(volunteer)}  active  0 registered  Phường Sa Pa" in listed.stdout
    ok = await cli(bot, tmp_path, "volunteers", "suspend", option, uid(volunteer))
    assert ok.returncode == 0 and "suspended" in ok.stdout, ok.stderr
    account = await account_of(bot, volunteer)
    async with bot.session() as session:
        assert not await custody.is_volunteer(session, account)
    assert "suspended" in (await cli(bot, tmp_path, "volunteers", "list")).stdout
    ok = await cli(bot, tmp_path, "volunteers", "resume", option, uid(volunteer))
    assert ok.returncode == 0 and "resumed" in ok.stdout
    ok = await cli(bot, tmp_path, "volunteers", "remove", option, uid(volunteer))
    assert ok.returncode == 0 and "now resident" in ok.stdout, ok.stdout
    account = await account_of(bot, volunteer)
    assert account is not None and account.role == "resident"
    # staff, by invite; then removed
    made = await cli(bot, tmp_path, "invite", "create", "--role", "staff", "--site", HOSPITAL)
    code = made.stdout.strip().splitlines()[-1]
    staff = bot.user()
    await staff.send(f"/join {code}")
    assert (await account_of(bot, staff)).role == "site_staff"  # type: ignore[union-attr]
    listed = await cli(bot, tmp_path, "invite", "list", "--all")
    assert "used_up" in listed.stdout and "volunteer" in listed.stdout
    assert (await cli(bot, tmp_path, "volunteers", "suspend", option, uid(staff))).returncode == 0
    listed = await cli(bot, tmp_path, "staff", "list")
    assert f"{bot.channel}:{uid(staff)}  (site_staff, suspended)" in listed.stdout
    ok = await cli(bot, tmp_path, "staff", "remove", option, uid(staff), "--site", HOSPITAL)
    assert ok.returncode == 0 and "now resident" in ok.stdout, ok.stderr
    await staff.send("/day")
    assert staff.last_text == t("vi", "site.staff_only")
    # revoked in the CLI: refused in the chat
    made = await cli(bot, tmp_path, "invite", "create", "--role", "staff", "--site", OTHER_SITE)
    code = made.stdout.strip().splitlines()[-1]
    async with bot.session() as session:
        invite_id = await session.scalar(select(func.max(Invite.id)))
    assert (await cli(bot, tmp_path, "invite", "revoke", str(invite_id))).returncode == 0
    await staff.send(f"/join {code}")
    assert staff.last_text == t("vi", "invite.revoked")
    # strictly checked options: usage errors (2), refusals (1), nothing written
    before = await invites_count(bot)
    for args, status, said in (
        (("invite", "create", "--role", "boss"), 2, "must be volunteer or staff"),
        (("invite", "create", "--role", "volunteer"), 2, "at least one --ward"),
        (("invite", "create", "--role", "volunteer", "--ward", "x1"), 2, "not a commune"),
        (("invite", "create", "--role", "volunteer", "--ward", "1"), 2, "not a commune/ward"),
        (("invite", "create", "--role", "staff"), 2, "needs --site"),
        (
            ("invite", "create", "--role", "staff", "--site", HOSPITAL, "--ward", "3006"),
            2,
            "--ward",
        ),
        (("invite", "create", "--role", "staff", "--site", HOSPITAL, "--uses", "0"), 2, "--uses"),
        (("invite", "create", "--role", "staff", "--site", HOSPITAL, "--days", "91"), 2, "--days"),
        (("invite", "create", "--role", "staff", "--site", "NOPE"), 1, "NOPE"),
        (("invite", "revoke", "0"), 2, "not an invite id"),
        (("invite", "revoke", "999999"), 1, "999999"),
        (("volunteers", "suspend"), 2, "exactly one of --telegram-id and --zalo-id"),
        (("volunteers", "suspend", "--telegram-id", "05"), 2, "positive whole number"),
        (("volunteers", "suspend", "--telegram-id", "424242"), 1, t("vi", "roles.no_account")),
        (("volunteers", "remove", option, uid(staff)), 1, t("vi", "roles.not_volunteer")),
        (("staff", "remove", option, uid(staff)), 1, t("vi", "roles.not_staff")),
        (("admin", "remove", option, uid(staff)), 1, t("vi", "roles.not_admin")),
    ):
        bad = await cli(bot, tmp_path, *args)
        assert bad.returncode == status, (args, bad.stdout, bad.stderr)
        assert said in " ".join(bad.stderr.split()), (args, bad.stderr)
        assert "Traceback" not in bad.stderr
    assert await invites_count(bot) == before
    # admin remove: back to what their bindings give
    admin = bot.user()
    await make_admin(bot, admin)
    ok = await cli(bot, tmp_path, "admin", "remove", option, uid(admin))
    assert ok.returncode == 0 and ok.stdout.strip().endswith("is now resident"), ok.stdout
    await admin.send("/invite")
    assert admin.last_text == t("vi", "invite.admins_only")
