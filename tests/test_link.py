"""One person, two messengers: /link codes (single use, expiring, attempts limited), the data
on the primary's side, messages to the messenger used last (or chosen), unlinking, and /delete
of every linked account, channel by channel. Domain tests on every database of ``db_url``;
end to end over the Telegram stand-in with two Telegram users standing in for two messengers."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.db import create_engine, downgrade, session_factory, transaction, upgrade
from bot.link_guard import Attempt, CodeGuesses, PendingLinks
from bot.standin import ChatDriver
from models import accounts as acc
from models import booking as bk
from models import healthbook as hb
from models.addresses import Address
from models.campaigns import load_sample_data, sample_book
from models.errors import DomainError
from models.tables import Account, Consent, Draft, HealthBook, LinkCode
from tests.conftest import (
    Both,
    Harness,
)
from tests.flows import complete, t
from tests.test_site_e2e import AZ, CAMPAIGN, HOSPITAL, Scene, _slot, add_staff, date, record

NOW = dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.UTC)


@contextlib.contextmanager
def refused(key: str) -> Iterator[None]:
    with pytest.raises(DomainError) as info:
        yield
    assert info.value.key == key


@dataclass
class Db:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    def tx(self) -> contextlib.AbstractAsyncContextManager[AsyncSession]:
        return transaction(self.sessions)

    async def account(
        self, channel: str, external_id: str, *, book: bool = False, locale: str | None = None
    ) -> int:
        async with self.tx() as s:
            account = await hb.ensure_account(s, channel, external_id, locale)
            if book:
                s.add(sample_book(account.id, id_number=None))
            return account.id

    async def code(self, account_id: int, now: dt.datetime = NOW) -> str:
        async with self.tx() as s:
            account = await s.get(Account, account_id)
            assert account is not None
            return await acc.create_link_code(s, account, now)

    async def redeem(self, account_id: int, code: str, now: dt.datetime = NOW) -> int:
        """Redeem (committing what a refusal writes, as a turn does); the primary's id."""
        async with self.tx() as s:
            account = await s.get(Account, account_id)
            assert account is not None
            try:
                return (await acc.redeem_link_code(s, account, code, now)).primary.id
            except DomainError as err:
                failure = err
        raise failure

    async def row(self, account_id: int) -> Account:
        async with self.tx() as s:
            account = await s.get(Account, account_id)
            assert account is not None
            return account

    async def found(self, channel: str, external_id: str) -> int | None:
        async with self.tx() as s:
            account = await hb.find_account(s, channel, external_id, with_draft=True)
            return account.id if account is not None else None


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Db]:
    engine = create_engine(db_url)
    await upgrade(engine)
    try:
        yield Db(engine, session_factory(engine))
    finally:
        await engine.dispose()


def test_codes_are_typed_like_phone_numbers() -> None:
    assert acc.normalize_code("4827 1930") == "48271930"
    assert acc.normalize_code(" 4827-1930 ") == "48271930"
    assert acc.format_code("48271930") == "4827 1930"
    for bad in (
        "",
        "4827193",
        "482719301",
        "4827 193a",
        "٤٨٢٧١٩٣٠",
        "４８２７１９３０",
        "+4827193",
    ):
        assert acc.normalize_code(bad) is None, bad


async def test_a_code_joins_two_accounts_once(db: Db) -> None:
    a = await db.account("telegram", "1001", book=True, locale="en")
    b = await db.account("zalo", "z-2002")
    code = await db.code(a)
    assert re.fullmatch(r"\d{8}", code)
    async with db.tx() as s:  # only a hash is stored
        hashes = (await s.scalars(select(LinkCode.code_hash))).all()
        assert len(hashes) == 1 and code not in hashes[0]
    assert await db.redeem(b, acc.format_code(code)) == a
    assert (await db.row(b)).linked_to == a
    # every handler now works on the person's data, from either messenger
    assert await db.found("zalo", "z-2002") == a
    assert await db.found("telegram", "1001") == a
    async with db.tx() as s:
        primary, own = await hb.find_person(s, "zalo", "z-2002", with_draft=True) or (None, None)
        assert primary is not None and own is not None
        assert (primary.id, own.id, primary.locale) == (a, b, "en")
        assert await s.scalar(select(func.count()).select_from(LinkCode)) == 0
    c = await db.account("zalo", "z-3003")
    with refused("link.wrong"):  # used: gone
        await db.redeem(c, code)
    assert (await db.row(c)).linked_to is None


async def test_a_code_expires_after_ten_minutes(db: Db) -> None:
    a = await db.account("telegram", "1001", book=True)
    b = await db.account("zalo", "z-2002")
    code = await db.code(a)
    with refused("link.expired"):
        await db.redeem(b, code, NOW + dt.timedelta(minutes=10))
    with refused("link.wrong"):  # expired codes are dropped
        await db.redeem(b, code, NOW + dt.timedelta(minutes=5))
    fresh = await db.code(a, NOW + dt.timedelta(minutes=11))
    assert await db.redeem(b, fresh, NOW + dt.timedelta(minutes=20, seconds=59)) == a


async def test_a_new_code_replaces_the_older_one(db: Db) -> None:
    a = await db.account("telegram", "1001", book=True)
    b = await db.account("zalo", "z-2002")
    first = await db.code(a)
    second = await db.code(a, NOW + dt.timedelta(minutes=1))
    if first != second:
        with refused("link.wrong"):
            await db.redeem(b, first)
    assert (await db.row(b)).linked_to is None
    assert await db.redeem(b, second, NOW + dt.timedelta(minutes=2)) == a


async def test_wrong_codes_are_limited_per_account(db: Db) -> None:
    a = await db.account("telegram", "1001", book=True)
    b = await db.account("zalo", "z-2002")
    code = await db.code(a)
    wrong = f"{(int(code) + 1) % 10**8:08d}"
    for n in range(5):
        with refused("link.wrong"):
            await db.redeem(b, wrong if n % 2 else "12 34", NOW + dt.timedelta(minutes=n))
    with refused("link.too_many_attempts"):  # even the right code, within the 15 minutes
        await db.redeem(b, code, NOW + dt.timedelta(minutes=9))
    assert (await db.row(b)).linked_to is None
    # another account is not held back by b's mistakes
    c = await db.account("zalo", "z-3003")
    later = await db.code(a, NOW + dt.timedelta(minutes=14))
    assert await db.redeem(c, later, NOW + dt.timedelta(minutes=14)) == a
    # and b may try again once the window has passed
    fresh = await db.code(a, NOW + dt.timedelta(minutes=16))
    assert await db.redeem(b, fresh, NOW + dt.timedelta(minutes=16)) == a
    assert (await db.row(b)).link_failures == 0


async def test_own_code_and_already_linked_are_refused(db: Db) -> None:
    a = await db.account("telegram", "1001", book=True)
    b = await db.account("zalo", "z-2002")
    code = await db.code(a)
    with refused("link.same_account"):
        await db.redeem(a, code)
    assert await db.redeem(b, code) == a  # still good on the other messenger
    with refused("link.same_account"):  # the same person already
        await db.redeem(b, await db.code(a))
    d = await db.account("telegram", "4004")
    with refused("link.already_linked"):  # unlink first
        await db.redeem(b, await db.code(d))
    assert (await db.row(b)).linked_to == a


async def test_two_health_books_are_never_merged(db: Db) -> None:
    a = await db.account("telegram", "1001", book=True)
    b = await db.account("zalo", "z-2002", book=True)
    with refused("link.both_have_books"):
        await db.redeem(b, await db.code(a))
    assert (await db.row(a)).linked_to is None and (await db.row(b)).linked_to is None
    assert await db.found("zalo", "z-2002") == b


async def test_the_data_side_stays_primary_and_the_rest_moves_to_it(db: Db) -> None:
    a = await db.account("telegram", "1001", locale="en")  # /link asked on an empty account
    b = await db.account("zalo", "z-2002", book=True)
    async with db.tx() as s:
        account_a = await s.get(Account, a)
        assert account_a is not None
        await hb.give_consent(s, account_a, "2026-12")
        await hb.start_draft(s, account_a)  # a form begun there: b has a book, so it goes
    assert await db.redeem(b, await db.code(a)) == b  # the health book's account
    assert (await db.row(a)).linked_to == b
    assert await db.found("telegram", "1001") == b
    async with db.tx() as s:
        assert (await s.scalars(select(Consent.account_id))).all() == [b]
        assert await s.get(Draft, a) is None and await s.get(Draft, b) is None
        assert (await s.get(Account, b)).locale == "en"  # type: ignore[union-attr]
    # a third account joining a (linked) ends up on b: no chains
    c = await db.account("telegram", "3003")
    assert await db.redeem(c, await db.code(a)) == b
    assert (await db.row(c)).linked_to == b


async def test_a_form_begun_moves_to_the_primary_that_has_none(db: Db) -> None:
    a = await db.account("telegram", "1001")
    b = await db.account("zalo", "z-2002")
    async with db.tx() as s:
        account_a, account_b = await s.get(Account, a), await s.get(Account, b)
        assert account_a is not None and account_b is not None
        await hb.give_consent(s, account_a, "2026-12")
        draft = await hb.start_draft(s, account_b)
        hb.set_answer(draft, "full_name", "Lò Thị Mai")
    assert await db.redeem(b, await db.code(a)) == a  # neither has a book: the code's maker
    async with db.tx() as s:
        primary = await hb.find_account(s, "zalo", "z-2002", with_draft=True)
        assert primary is not None and primary.id == a
        moved = await hb.get_draft(s, primary)
        assert moved is not None and moved.answers == {"full_name": "Lò Thị Mai"}
        assert await s.scalar(select(func.count()).select_from(Draft)) == 1


async def test_accounts_with_links_merge_without_chains(db: Db) -> None:
    a = await db.account("telegram", "1001")
    c = await db.account("zalo", "z-3003")
    assert await db.redeem(c, await db.code(a)) == a
    b = await db.account("zalo", "z-2002", book=True)
    assert await db.redeem(a, await db.code(b)) == b  # a is a primary with c linked
    assert {(await db.row(x)).linked_to for x in (a, c)} == {b}
    async with db.tx() as s:
        person = await acc.person_of(s, await s.get(Account, c))  # type: ignore[arg-type]
        assert [x.id for x in person] == [b, a, c]


async def test_messages_go_to_the_messenger_used_last_or_chosen(db: Db) -> None:
    a = await db.account("telegram", "1001", book=True)
    b = await db.account("zalo", "z-2002")
    await db.redeem(b, await db.code(a))

    async def address() -> Address:
        async with db.tx() as s:
            return await hb.reply_address(s, await s.get(Account, a))  # type: ignore[arg-type]

    async def used(account_id: int) -> None:
        async with db.tx() as s:
            found = await hb.find_person(
                s, *(("telegram", "1001") if account_id == a else ("zalo", "z-2002"))
            )
            assert found is not None
            await acc.note_used(s, found[1], found[0])

    assert await address() == Address("zalo", "z-2002")  # linked there: used last
    await used(a)
    assert await address() == Address("telegram", "1001")
    assert (await db.row(a)).reply_via is None
    await used(b)
    assert await address() == Address("zalo", "z-2002")
    async with db.tx() as s:  # "always send my messages here", on Telegram
        await acc.send_here(s, await s.get(Account, a), fixed=True)  # type: ignore[arg-type]
    await used(b)
    assert await address() == Address("telegram", "1001")
    async with db.tx() as s:
        go, chosen = await acc.messages_go_to(s, await s.get(Account, b))  # type: ignore[arg-type]
        assert (go.id, chosen) == (a, True)
        await acc.send_here(s, await s.get(Account, b), fixed=True)  # type: ignore[arg-type]
    await used(a)
    assert await address() == Address("zalo", "z-2002")
    async with db.tx() as s:  # back to "the one used last"
        await acc.send_here(s, await s.get(Account, a), fixed=False)  # type: ignore[arg-type]
    await used(b)
    assert await address() == Address("zalo", "z-2002")
    await used(a)
    assert await address() == Address("telegram", "1001")


async def test_unlink_leaves_the_data_with_the_primary(db: Db) -> None:
    a = await db.account("telegram", "1001", book=True, locale="en")
    b = await db.account("zalo", "z-2002")
    await db.redeem(b, await db.code(a))
    async with db.tx() as s:
        assert (await s.get(Account, a)).reply_via == b  # type: ignore[union-attr]
        left = await acc.unlink(s, await s.get(Account, b))  # type: ignore[arg-type]
        assert [x.id for x in left] == [b]
    assert (await db.row(a)).reply_via is None
    assert (await db.row(b)).locale == "en"  # keeps the language it spoke
    assert await db.found("zalo", "z-2002") == b
    async with db.tx() as s:
        assert await hb.own_book(s, await s.get(Account, b)) is None  # type: ignore[arg-type]
        with refused("link.not_linked"):
            await acc.unlink(s, await s.get(Account, a))  # type: ignore[arg-type]
    await db.redeem(b, await db.code(a, NOW + dt.timedelta(minutes=1)))
    async with db.tx() as s:  # from the primary's side: every linked account goes
        left = await acc.unlink(s, await s.get(Account, a))  # type: ignore[arg-type]
        assert [x.id for x in left] == [b]
    assert (await db.row(b)).linked_to is None


async def test_erasing_the_person_erases_each_linked_account_on_its_own_channel(db: Db) -> None:
    a = await db.account("telegram", "777", book=True)
    b = await db.account("zalo", "888")
    await db.redeem(b, await db.code(a))
    # same ids on the other channel: other people
    zalo_777 = await db.account("zalo", "777", book=True)
    telegram_888 = await db.account("telegram", "888")
    async with db.tx() as s:
        primary = await hb.find_account(s, "zalo", "888")
        assert primary is not None
        held = await hb.holdings(s, primary)
        assert (held.health_books, held.linked_accounts) == (1, 1)
        await hb.erase_account(s, await s.get(Account, b))  # type: ignore[arg-type]
    async with db.tx() as s:
        left = (await s.scalars(select(Account.id).order_by(Account.id))).all()
        assert left == [zalo_777, telegram_888]
        assert (await s.scalars(select(HealthBook.account_id))).all() == [zalo_777]


# ---------------------------------------------------------------- end to end (Telegram)


def _code(text: str | None) -> str:
    found = re.search(r"/link (\d{4} \d{4})", text or "")
    assert found is not None, text
    return found.group(1)


async def _primary(bot: Harness, user: ChatDriver) -> tuple[int, int]:
    async with bot.session() as s:
        found = await hb.find_person(s, "telegram", str(user.user.id))
        assert found is not None
        return found[0].id, found[1].id


async def test_link_end_to_end(bot: Harness) -> None:
    a = bot.user(name="An")
    await complete(a)
    b = bot.user(name="An (máy 2)", lang="en")
    await a.send("/link")
    text = a.last_text
    assert text is not None and "(10 phút)" in text and "10:10" in text  # 10:00 in Lào Cai
    code = _code(text)
    await b.send("/link 0000 0000")
    assert b.last_text == t("en", "link.wrong")
    await b.send(f"/link {code}")
    # b now speaks the person's language and sees the person's data
    assert b.last_text == t("vi", "link.done", account=f"Telegram …{str(a.user.id)[-4:]}")
    notice = t("vi", "link.notice", account=f"Telegram …{str(b.user.id)[-4:]}")
    assert a.last_text == notice
    unlink_b = t("vi", "link.button.unlink", account=f"Telegram …{str(b.user.id)[-4:]}")
    assert a.buttons == [unlink_b]
    (pa, own_a), (pb, own_b) = await _primary(bot, a), await _primary(bot, b)
    assert pa == pb == own_a != own_b
    await b.send("/mydata")
    assert any("Nguyễn Văn An" in x for x in b.texts)
    assert any(t("vi", "mydata.linked", count=2) in x for x in b.texts)
    await b.send("/start")
    assert b.last_text == t("vi", "start.has_book")
    # the menu, seen from b: the other account, where messages go, the choices
    await b.send("/link")
    assert t("vi", "link.linked_with", accounts=f"Telegram …{str(a.user.id)[-4:]}") in (
        b.last_text or ""
    )
    assert t("vi", "link.button.here") in b.buttons
    # forged buttons change nothing
    for data in ("link:drop:abc", f"link:drop:{own_b}", "link:drop:999999", "link:x", "link:"):
        await b.press_data(data)
        assert b.callback_answers[-1] == t("vi", "error.button.stale"), data
    assert (await _primary(bot, b))[0] == pa
    # a undoes it from the notice: b starts afresh, the book stays with a
    await a.press(unlink_b)
    assert (await _primary(bot, b)) == (own_b, own_b)
    await b.send("/start")
    assert b.last_text != t("vi", "start.has_book")


async def test_a_code_typed_alone_links_and_a_code_is_single_use(bot: Harness) -> None:
    a, b, c = bot.user(), bot.user(), bot.user()
    await complete(a)
    await a.send("/link")
    code = _code(a.last_text)
    await b.send(code.replace(" ", ""))  # outside any conversation: taken as the code
    assert b.last_text is not None and b.last_text.startswith(t("vi", "link.done", account="")[:10])
    await c.send(f"/link {code}")
    assert c.last_text == t("vi", "link.wrong")
    assert (await _primary(bot, c))[0] != (await _primary(bot, a))[0]


async def test_link_mid_conversation_asks_the_question_again(bot: Harness) -> None:
    a = bot.user()
    await a.send("/start")
    await a.press(t("vi", "button.agree"))
    await a.send("/link")
    assert _code(a.texts[-2])
    assert a.last_text == t("vi", "ask.full_name")


async def test_delete_on_a_linked_account_erases_the_person(bot: Harness) -> None:
    a, b = bot.user(), bot.user()
    await complete(a)
    await a.send("/link")
    await b.send(f"/link {_code(a.last_text)}")
    await b.send("/delete")
    assert t("vi", "delete.item.linked", count=1) in (b.last_text or "")
    await b.press(t("vi", "button.delete_yes"))
    async with bot.session() as s:
        assert await s.scalar(select(func.count()).select_from(Account)) == 0
        assert await s.scalar(select(func.count()).select_from(HealthBook)) == 0


def _dose_told(today: dt.date) -> str:
    return t(
        "vi",
        "site.notify_dose",
        dose=1,
        vaccine=AZ,
        date=date("vi", today),
        site="Bệnh viện Đa khoa tỉnh Lào Cai",
    )


async def test_a_dose_notice_goes_to_the_messenger_used_last(sample: Harness) -> None:
    bot = sample
    a, b = bot.user(name="An"), bot.user(name="An 2")
    await complete(a)
    await a.send("/link")
    await b.send(f"/link {_code(a.last_text)}")
    today = bot.services.today()
    async with bot.session() as s, s.begin():
        account = await hb.find_account(s, "telegram", str(a.user.id))
        book = await hb.own_book(s, account)  # type: ignore[arg-type]
        assert book is not None
        slot = await _slot(s, HOSPITAL, today)
        booking = await bk.book(s, book.id, slot.id, CAMPAIGN, None, today)
        booking_id, booking_code = booking.id, booking.code
    staff = await add_staff(bot, HOSPITAL)
    before_a = len(a.texts)
    await record(Scene(b, staff, booking_id, booking_code, "vi"))
    assert _dose_told(today) in b.texts[-2]  # then the after-care advice, there too
    assert len(a.texts) == before_a  # nothing on the messenger not used last


# ---------------------------------------------------------------- Telegram and Zalo, one process


async def test_telegram_and_zalo_are_one_person(both: Both) -> None:
    tg, zl = both.telegram, both.zalo
    async with tg.session() as s, s.begin():
        await load_sample_data(s, tg.services.today())
    a = tg.user(name="An")
    await complete(a)  # the health book, made on Telegram
    await a.send("/link")
    z = zl.user(name="An")
    await z.send(f"/link {_code(a.last_text)}")
    assert t("vi", "link.done", account=f"Telegram …{str(a.user.id)[-4:]}") in (z.last_text or "")
    # the maker of the code hears of it on Telegram, with the undo button
    notice = t("vi", "link.notice", account=f"Zalo …{z.user.id[-4:]}")
    assert a.last_text == notice
    # the health book made on Telegram, seen on Zalo
    await z.send("/mydata")
    assert any("Nguyễn Văn An" in x for x in z.texts)
    async with zl.session() as s:
        found = await hb.find_person(s, "zalo", z.user.id)
        assert found is not None and found[0].channel == "telegram"
        primary_id = found[0].id
    # a dose recorded by Telegram staff is told on Zalo, the messenger used last
    today = tg.services.today()
    async with tg.session() as s, s.begin():
        book = await s.scalar(select(HealthBook).where(HealthBook.account_id == primary_id))
        assert book is not None
        slot = await _slot(s, HOSPITAL, today)
        booking = await bk.book(s, book.id, slot.id, CAMPAIGN, None, today)
        booking_id, booking_code = booking.id, booking.code
    staff = await add_staff(tg, HOSPITAL)
    before = len(a.texts)
    await record(Scene(a, staff, booking_id, booking_code, "vi"))
    await zl.idle()
    assert any(_dose_told(today) in x for x in z.texts)
    assert len(a.texts) == before
    # back on Telegram: messages follow
    await a.send("/help")
    async with tg.session() as s:
        primary = await s.get(Account, primary_id)
        assert primary is not None
        assert await hb.reply_address(s, primary) == Address("telegram", str(a.user.id))
    # /delete on Zalo erases the person, the Telegram account too
    await z.send("/delete")
    assert t("vi", "delete.item.linked", count=1) in (z.last_text or "")
    await z.press(t("vi", "button.delete_yes"))
    async with tg.session() as s:
        left = (await s.scalars(select(Account.external_id))).all()
        assert str(a.user.id) not in left and z.user.id not in left
        assert await s.scalar(select(func.count()).select_from(HealthBook)) == 0


async def test_the_linking_columns_migration_keeps_every_row(db_url: str) -> None:
    """0006 rebuilds ``accounts`` on SQLite (batch mode): with foreign keys on, the copy's
    DROP TABLE would first delete every row referring to an account (consents, books…)."""
    engine = create_engine(db_url)
    try:
        await upgrade(engine, "0005")
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO accounts (id, channel, external_id, role, created_at) "
                    "VALUES (1, 'telegram', '1', 'resident', CURRENT_TIMESTAMP)"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO consents (account_id, version, given_at) "
                    "VALUES (1, '1', CURRENT_TIMESTAMP)"
                )
            )
        await upgrade(engine)
        await downgrade(engine, "0005")
        await upgrade(engine)
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM consents"))).scalar() == 1
            if conn.dialect.name == "sqlite":  # and on again for the application
                assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
    finally:
        await engine.dispose()


# ---------------------------------------------------------------- guessing, and asking first


def test_code_guesses_are_limited_for_the_bot_and_per_sender_without_keeping_ids() -> None:
    guard = CodeGuesses(per_minute=4, per_sender=2, sender_window=900, senders=3)
    at = NOW
    first = guard.admit("zalo", "z-secret-id", at)
    assert isinstance(first, Attempt)
    guard.settle(first, wrong=True)
    second = guard.admit("zalo", "z-secret-id", at)
    assert isinstance(second, Attempt)
    guard.settle(second, wrong=True)
    assert guard.admit("zalo", "z-secret-id", at) == 15  # minutes to wait
    # the same id on another messenger is someone else
    other = guard.admit("telegram", "z-secret-id", at)
    assert isinstance(other, Attempt)
    guard.settle(other, wrong=False)  # a right code is taken back: it used no budget
    for n in range(2):
        attempt = guard.admit("telegram", f"{n}", at)
        assert isinstance(attempt, Attempt)
        guard.settle(attempt, wrong=True)
    assert guard.admit("telegram", "fresh", at) == 1  # four wrong codes this minute: everyone
    fresh = guard.admit("telegram", "fresh", at + dt.timedelta(seconds=60))
    assert isinstance(fresh, Attempt)
    # the senders are remembered under a keyed hash, and the oldest forgotten past the bound
    assert "z-secret-id" not in repr(vars(guard)) and len(guard._senders) == 3
    guard.settle(fresh, wrong=True)
    assert len(guard._senders) == 3
    # forgotten (the oldest of four): no longer held back, from the memory at least
    assert isinstance(guard.admit("zalo", "z-secret-id", at + dt.timedelta(minutes=1)), Attempt)
    # a sender's window: fifteen minutes from their first wrong code
    guard = CodeGuesses(per_sender=1)
    attempt = guard.admit("zalo", "z-1", at)
    assert isinstance(attempt, Attempt)
    guard.settle(attempt, wrong=True)
    assert guard.admit("zalo", "z-1", at + dt.timedelta(minutes=14, seconds=1)) == 1
    assert isinstance(guard.admit("zalo", "z-1", at + dt.timedelta(minutes=15)), Attempt)


def test_pending_codes_are_bound_to_their_account_and_expire() -> None:
    pending = PendingLinks(size=2)
    ref = pending.add(1, "hash-1", NOW + dt.timedelta(minutes=10))
    assert len(ref) <= 16 and "hash" not in ref
    assert pending.take(ref, 2, NOW) is None  # not theirs: still waiting for 1
    assert pending.take(ref, 1, NOW + dt.timedelta(minutes=10)) is None  # expired
    ref = pending.add(1, "hash-1", NOW + dt.timedelta(minutes=10))
    newer = pending.add(1, "hash-2", NOW + dt.timedelta(minutes=10))  # one per account
    assert pending.take(ref, 1, NOW) is None
    found = pending.take(newer, 1, NOW)
    assert found is not None and found.code_hash == "hash-2"
    assert pending.take(newer, 1, NOW) is None  # answered once
    for account_id in (3, 4, 5):
        pending.add(account_id, "h", NOW + dt.timedelta(minutes=10))
    assert len(pending) == 2


async def test_delete_does_not_reset_the_wrong_code_limit(bot: Harness) -> None:
    a, b = bot.user(), bot.user()
    await a.send("/link")
    code = _code(a.last_text)
    for n in range(5):
        await b.send(f"/link 0000 000{n}")
        assert b.last_text == t("vi", "link.wrong")
    await b.send(f"/link {code}")
    assert b.last_text == t("vi", "link.too_many_attempts", minutes=15)
    await b.send("/delete")  # the account's own count goes with it
    await b.press(t("vi", "button.delete_yes"))
    async with bot.session() as s:
        assert await hb.find_account(s, "telegram", str(b.user.id)) is None
    await b.send(f"/link {code}")
    assert b.last_text == t("vi", "link.too_many_attempts", minutes=15)
    bot.clock.advance(minutes=15)
    await a.send("/link")
    await b.send(f"/link {_code(a.last_text)}")
    assert b.last_text == t("vi", "link.done", account=f"Telegram …{str(a.user.id)[-4:]}")


async def test_wrong_codes_are_limited_for_the_whole_bot(bot: Harness) -> None:
    a = bot.user()
    await a.send("/link")
    code = _code(a.last_text)
    for person in range(6):  # thirty wrong codes in a minute, five per person
        guesser = bot.user()
        for n in range(5):
            await guesser.send(f"{person}{n}00 0000")
            assert guesser.last_text == t("vi", "link.wrong")
    honest = bot.user()
    await honest.send(f"/link {code}")  # even a right code, until the minute has passed
    assert honest.last_text == t("vi", "link.too_many_attempts", minutes=1)
    async with bot.session() as s:  # refused before anything was looked up or written
        assert await hb.find_account(s, "telegram", str(honest.user.id)) is None
    bot.clock.advance(seconds=60)
    await honest.send(f"/link {code}")
    assert honest.last_text == t("vi", "link.done", account=f"Telegram …{str(a.user.id)[-4:]}")


def _data(user: ChatDriver) -> list[str]:
    """The data of the newest message's buttons."""
    message = next(m for m in reversed(user.messages) if m.get("reply_markup"))
    return [b["callback_data"] for row in message["reply_markup"]["inline_keyboard"] for b in row]


async def test_a_code_typed_on_an_account_holding_a_book_asks_first(bot: Harness) -> None:
    a, b, c = bot.user(), bot.user(name="Bình"), bot.user()
    await a.send("/link")
    code = _code(a.last_text)
    await complete(b)  # b holds a health book: whoever made the code would see it
    await b.send(f"/link {code}")
    maker = f"Telegram …{str(a.user.id)[-4:]}"
    assert b.last_text == t("vi", "link.confirm", account=maker)
    assert b.buttons == [t("vi", "link.button.confirm"), t("vi", "button.no")]
    data = _data(b)
    assert all(code.replace(" ", "") not in d for d in data)  # only an opaque reference
    (own_a, _), (own_b, _) = await _primary(bot, a), await _primary(bot, b)
    assert own_a != own_b  # nothing joined yet, nobody told
    assert a.last_text is not None and _code(a.last_text) == code
    # someone else's answer, or a forged one, changes nothing
    await c.send("/help")
    await c.press_data(data[0])
    await b.press_data("link:yes:forged")
    assert b.callback_answers[-1] == t("vi", "link.confirm_stale")
    assert (await _primary(bot, a))[0] == own_a
    # typed, as on any messenger: the label without accents
    await b.send("lien ket")
    assert b.last_text == t("vi", "link.done", account=maker)
    assert a.last_text == t("vi", "link.notice", account=f"Telegram …{str(b.user.id)[-4:]}")
    assert (await _primary(bot, a))[0] == own_b  # the book's side is the person's
    await b.press_data(data[0])  # answered once
    assert b.callback_answers[-1] == t("vi", "link.confirm_stale")


async def test_no_to_the_question_drops_the_code(bot: Harness) -> None:
    a, b, c = bot.user(), bot.user(), bot.user()
    await a.send("/link")
    code = _code(a.last_text)
    await complete(b)
    await b.send(code)  # typed alone, outside any conversation
    assert t("vi", "link.button.confirm") in b.buttons
    yes = _data(b)[0]
    await b.press(t("vi", "button.no"))
    assert t("vi", "link.declined") in b.texts
    await b.press_data(yes)
    assert b.callback_answers[-1] == t("vi", "link.confirm_stale")
    await c.send(f"/link {code}")  # the code is gone
    assert c.last_text == t("vi", "link.wrong")
    assert (await _primary(bot, a))[0] != (await _primary(bot, b))[0]


async def test_a_forgotten_question_asks_for_the_code_again(bot: Harness) -> None:
    a, b = bot.user(), bot.user()
    await a.send("/link")
    code = _code(a.last_text)
    await complete(b)
    await b.send(f"/link {code}")
    bot.services.pending_links._by_ref.clear()  # as after a restart
    bot.services.pending_links._by_account.clear()
    await b.press(t("vi", "link.button.confirm"))
    assert b.callback_answers[-1] == t("vi", "link.confirm_stale")
    await b.send(f"/link {code}")  # the code was kept
    await b.press(t("vi", "link.button.confirm"))
    assert t("vi", "link.done", account=f"Telegram …{str(a.user.id)[-4:]}") in b.texts


async def test_the_question_expires_with_the_code(bot: Harness) -> None:
    a, b = bot.user(), bot.user()
    await a.send("/link")
    code = _code(a.last_text)
    await complete(b)
    await b.send(f"/link {code}")
    bot.clock.advance(minutes=10)
    await b.press(t("vi", "link.button.confirm"))
    assert b.callback_answers[-1] == t("vi", "link.confirm_stale")
    assert (await _primary(bot, a))[0] != (await _primary(bot, b))[0]


async def test_on_zalo_the_question_is_answered_by_number_and_delete_forgets_the_chats(
    both: Both,
) -> None:
    tg, zl = both.telegram, both.zalo
    a = tg.user()
    await a.send("/link")
    code = _code(a.last_text)
    z = zl.user()
    async with zl.session() as s, s.begin():  # a health book kept on Zalo
        account = await hb.ensure_account(s, "zalo", z.user.id, "vi")
        s.add(sample_book(account.id, id_number=None))
    await z.send(f"/link {code}")
    maker = f"Telegram …{str(a.user.id)[-4:]}"
    assert t("vi", "link.confirm", account=maker) in (z.last_text or "")
    assert f"1. {t('vi', 'link.button.confirm')}" in (z.last_text or "")
    await z.send("1")
    assert t("vi", "link.done", account=maker) in (z.last_text or "")
    unlink = t("vi", "link.button.unlink", account=f"Zalo …{z.user.id[-4:]}")
    assert a.buttons == [unlink]  # the undo, offered to the code's maker
    # /delete on Zalo erases both accounts; what the process remembered of their chats goes
    await z.send("/delete")
    await z.press(t("vi", "button.delete_yes"))
    async with tg.session() as s:
        offer = await tg.services.offers.load(s, "telegram", str(a.user.id))
        assert offer.choices == ()
    await a.send("1")  # the undo's number no longer names anything
    assert a.last_text == t("vi", "idle.hint")


async def test_the_link_notice_on_zalo_says_how_to_answer_in_its_readers_language(
    both: Both,
) -> None:
    """The notice to the code's maker (with its Unlink choice) is in their language, and so is
    Zalo's line under its numbered choices (it was the bot's default language)."""
    tg, zl = both.telegram, both.zalo
    z = zl.user(name="An")
    await z.send("/link")
    code = _code(z.last_text)
    a = tg.user(name="An")
    await a.send("/link")
    async with tg.session() as s, s.begin():
        for account in (await s.scalars(select(Account))).all():
            account.locale = "en"
    await a.send(f"/link {code}")
    await zl.idle()
    notice = z.last_text or ""
    assert notice.startswith(t("en", "link.notice", account=f"Telegram …{str(a.user.id)[-4:]}"))
    assert notice.endswith(t("en", "choice.hint", "zalo"))
    assert t("vi", "choice.hint", "zalo") not in notice


# ---------------------------------------------------------------- agencies, after /link


async def _agencies(db: Db, *codes: str) -> list[int]:
    from models import agencies as ag

    async with db.tx() as s:
        return [
            (await ag.add(s, code, f"Cơ quan {code}", "unit", None, 5, NOW)).id for code in codes
        ]


async def _booked_before(db: Db, account_id: int) -> None:
    """The account's health book made ten days before NOW (reports count at a moment)."""
    from sqlalchemy import update

    async with db.tx() as s:
        await s.execute(
            update(HealthBook)
            .where(HealthBook.account_id == account_id)
            .values(created_at=NOW - dt.timedelta(days=10))
        )


async def _memberships(db: Db) -> list[tuple[int, int, str | None]]:
    from models.tables import AgencyMember

    async with db.tx() as s:
        rows = await s.execute(
            select(AgencyMember.account_id, AgencyMember.agency_id, AgencyMember.left_reason)
            .order_by(AgencyMember.id)
        )  # fmt: skip
        return [tuple(r) for r in rows.all()]


async def test_linking_moves_the_agency_and_the_head_role_to_the_primary(db: Db) -> None:
    """Telegram joined X and heads X; the Zalo account holding the health book stays primary:
    the membership and the role move to it, so the person is counted once, complete, and
    /agency (which reads the primary) sees both; a later /agency Y moves them."""
    from models import agencies as ag
    from models import reports as rp
    from models.tables import Agency, AgencyHead

    x, y = await _agencies(db, "X", "Y")
    tg = await db.account("telegram", "1001")
    zl = await db.account("zalo", "z-2002", book=True)
    await _booked_before(db, zl)
    async with db.tx() as s:
        account, agency = await s.get(Account, tg), await s.get(Agency, x)
        assert account is not None and agency is not None
        await ag.join(s, account, agency, NOW - dt.timedelta(days=5))
        await ag.set_head(s, agency, account)
    assert await db.redeem(tg, await db.code(zl)) == zl
    assert await _memberships(db) == [(zl, x, None)]
    async with db.tx() as s:
        primary = await s.get(Account, zl)
        assert primary is not None
        current = await ag.membership(s, zl)
        assert current is not None and current.agency_id == x
        assert current.joined_at.replace(tzinfo=dt.UTC) == NOW - dt.timedelta(days=5)
        assert [a.code for a in await ag.headed(s, primary)] == ["X"]
        assert (await s.scalars(select(AgencyHead.account_id))).all() == [zl]
        figures = await rp.own_figures(s, NOW + dt.timedelta(minutes=1))
        assert (figures[x].joined, figures[x].complete) == (1, 1)
        moved = await ag.join(s, primary, await s.get(Agency, y), NOW + dt.timedelta(hours=1))  # type: ignore[arg-type]
        assert moved.status == "moved"
    assert await _memberships(db) == [(zl, x, "moved"), (zl, y, None)]


async def test_two_open_memberships_become_one_when_linked(db: Db) -> None:
    """Both accounts were staff somewhere: the most recent choice stays open and the other is
    closed as a move at the link's time; in the same agency, the earlier date stays."""
    from models import agencies as ag
    from models import reports as rp
    from models.tables import Agency, AgencyHead, AgencyMember

    x, y = await _agencies(db, "X", "Y")
    tg = await db.account("telegram", "1001")
    zl = await db.account("zalo", "z-2002", book=True)
    other = await db.account("zalo", "z-3003")
    await _booked_before(db, zl)
    async with db.tx() as s:
        for account_id, agency_id, days in ((tg, y, 2), (zl, x, 5), (other, x, 6)):
            account, agency = await s.get(Account, account_id), await s.get(Agency, agency_id)
            assert account is not None and agency is not None
            await ag.join(s, account, agency, NOW - dt.timedelta(days=days))
            await ag.set_head(s, agency, account)  # tg heads Y, zl and other head X
    assert await db.redeem(tg, await db.code(zl)) == zl  # tg joined Y later: Y stays
    assert await _memberships(db) == [(zl, y, None), (zl, x, "moved"), (other, x, None)]
    async with db.tx() as s:
        closed = await s.scalar(select(AgencyMember).where(AgencyMember.left_at.is_not(None)))
        assert closed is not None and closed.left_at is not None
        assert closed.left_at.replace(tzinfo=dt.UTC) == NOW
        heads = await s.execute(select(AgencyHead.agency_id, AgencyHead.account_id))
        assert sorted(heads.all()) == sorted([(x, zl), (y, zl), (x, other)])
        figures = await rp.own_figures(s, NOW + dt.timedelta(minutes=1))
        assert (figures[x].joined, figures[y].joined, figures[y].complete) == (1, 1, 1)
    # the same agency on both sides (and the same head role): one membership, the earlier date
    assert await db.redeem(other, await db.code(zl, NOW + dt.timedelta(hours=1)),
                           NOW + dt.timedelta(hours=1)) == zl  # fmt: skip
    async with db.tx() as s:
        assert await s.scalar(select(func.count()).where(AgencyMember.left_at.is_(None))) == 1
        assert (await ag.membership(s, zl)).agency_id == y  # type: ignore[union-attr]
        heads = await s.execute(select(AgencyHead.agency_id, AgencyHead.account_id))
        assert sorted(heads.all()) == sorted([(x, zl), (y, zl)])


async def test_one_agency_on_both_accounts_keeps_the_earlier_date(db: Db) -> None:
    from models import agencies as ag
    from models.tables import Agency

    (x,) = await _agencies(db, "X")
    tg = await db.account("telegram", "1001")
    zl = await db.account("zalo", "z-2002", book=True)
    async with db.tx() as s:
        for account_id, days in ((tg, 3), (zl, 7)):
            account, agency = await s.get(Account, account_id), await s.get(Agency, x)
            assert account is not None and agency is not None
            await ag.join(s, account, agency, NOW - dt.timedelta(days=days))
    assert await db.redeem(tg, await db.code(zl)) == zl
    assert await _memberships(db) == [(zl, x, "moved"), (zl, x, None)]
    async with db.tx() as s:
        current = await ag.membership(s, zl)
        assert current is not None
        assert current.joined_at.replace(tzinfo=dt.UTC) == NOW - dt.timedelta(days=7)


async def test_unlinking_leaves_the_agency_and_the_head_role_with_the_primary(db: Db) -> None:
    """Like every datum of the person: the account that leaves starts with none."""
    from models import agencies as ag
    from models.tables import Agency

    (x,) = await _agencies(db, "X")
    tg = await db.account("telegram", "1001")
    zl = await db.account("zalo", "z-2002", book=True)
    async with db.tx() as s:
        account, agency = await s.get(Account, tg), await s.get(Agency, x)
        assert account is not None and agency is not None
        await ag.join(s, account, agency, NOW - dt.timedelta(days=5))
        await ag.set_head(s, agency, account)
    await db.redeem(tg, await db.code(zl))
    async with db.tx() as s:
        await acc.unlink(s, await s.get(Account, tg))  # type: ignore[arg-type]
    async with db.tx() as s:
        alone, primary = await s.get(Account, tg), await s.get(Account, zl)
        assert alone is not None and primary is not None
        assert await ag.membership(s, tg) is None and await ag.headed(s, alone) == []
        assert (await ag.membership(s, zl)).agency_id == x  # type: ignore[union-attr]
        assert [a.code for a in await ag.headed(s, primary)] == ["X"]


async def test_a_head_who_links_keeps_their_list_and_can_be_removed(bot: Harness) -> None:
    """End to end: a head made by their Telegram id links it to the account that holds their
    health book: /agency shows their staff on either account, and set-head --remove given
    the first id (it names the person) takes the role away."""
    from bot.cli import app as _commands  # noqa: F401  (cli_roles loads with the commands)
    from bot.cli_roles import _account
    from models import agencies as ag

    async with bot.session() as s, s.begin():
        agency = await ag.add(s, "X", "Trạm Y tế X", "unit", None, 5, bot.clock())
        await ag.add(s, "Y", "Trạm Y tế Y", "unit", None, 5, bot.clock())
    staff, head = bot.user(), bot.user()
    await staff.send("/agency X")
    await head.send("/agency X")
    async with bot.session() as s, s.begin():
        found = await hb.find_account(s, "telegram", str(head.user.id))
        assert found is not None and agency is not None
        await ag.set_head(s, await ag.by_code(s, "X"), found)  # type: ignore[arg-type]
    other = bot.user()  # the same person's other messenger, with their health book
    await complete(other)
    await other.send("/link")
    await head.send(f"/link {_code(other.last_text)}")
    assert (await _primary(bot, head))[0] == (await _primary(bot, other))[0]
    for person in (head, other):
        await person.send("/agency")
        shown = "\n".join(person.texts[-2:])
        assert t("vi", "agency.yours", name="Trạm Y tế X", code="X", date="")[:20] in shown
        assert t("vi", "agency.head_title", name="Trạm Y tế X", code="X", count=2,
                 expected=5) in shown  # fmt: skip
    await other.send("/agency Y")  # one person, one agency: X counts 1 now
    async with bot.session() as s:
        x = await ag.by_code(s, "X")
        assert x is not None and await ag.member_count(s, x) == 1
    async with bot.session() as s, s.begin():  # what `agencies set-head X --remove` does
        account = await _account(s, "telegram", str(head.user.id))
        x = await ag.by_code(s, "X")
        assert x is not None and await ag.remove_head(s, x, account)
    await other.send("/agency")
    assert t("vi", "agency.head_title", name="Trạm Y tế X", code="X", count=1,
             expected=5) not in "\n".join(other.texts[-2:])  # fmt: skip
