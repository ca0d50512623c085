"""Issue 9, the data review: a deleted book's id is never given to the next one (its audit trail
stays its own); registrations set aside are capped, expire, and show in /mydata and /delete's
counts; an edit of a saved book is set aside, not lost, when another registration begins; one
function erases a book with everything hanging off it; the audit export looks actors up once per
batch; a forged time or hand-over claim changes nothing (the choices offered stand)."""

from __future__ import annotations

import datetime as dt
import io
import json
from types import SimpleNamespace
from typing import Any

from sqlalchemy import event, func, inspect, select

from bot.app import engine_of, forget_handled_updates_job
from bot.cli_audit import BATCH, write_entries
from models import audit, records
from models import family as fam
from models import healthbook as hb
from models.tables import (
    Account,
    AuditEntry,
    Base,
    ChatOffer,
    ConversationState,
    HealthBook,
    ParkedDraft,
    VolunteerWard,
)
from tests.conftest import Harness
from tests.flows import resident, t
from tests.test_hostile_input import SENDS, resident_with_bookings

SAPA, LAO_CAI = 3006, 15


async def _valid_answers(bot: Harness, person: Any) -> dict[str, Any]:
    """A complete, valid set of answers as the chat stores them (taken from a saved book)."""
    async with bot.session() as s:
        acc = await hb.find_account(s, "telegram", str(person.user.id))
        book = await hb.own_book(s, acc)
        assert book is not None
        return hb.answers_of_book(book)


async def _relative(bot: Harness, holder: Any, base: dict[str, Any], name: str) -> int:
    async with bot.session() as s, s.begin():
        acc = await hb.find_account(s, "telegram", str(holder.user.id))
        draft = await hb.start_draft(
            s,
            acc,
            subject="relative",
            relation="father",
            consent=fam.consent_for("relative", "v1", dt.datetime.now(dt.UTC)),
            answers={**base, "id_number": None, "full_name": name, "date_of_birth": "1960-01-01"},
        )
        return (await hb.save_book(s, acc, draft, "v1")).id


# ---------------------------------------------------------------- ids never reused


async def test_audit_trail_of_a_deleted_book_never_shows_on_a_new_book(bot: Harness) -> None:
    holder = await resident(bot, "333333", born="15/3/1990")
    base = await _valid_answers(bot, holder)
    rel_id = await _relative(bot, holder, base, "Lò Văn Bố")
    async with bot.session() as s, s.begin():
        acc = await hb.find_account(s, "telegram", str(holder.user.id))
        await fam.remove_relative(s, acc, rel_id, dt.datetime.now(dt.UTC))
    newcomer = await resident(bot, "444444", born="1/1/1980")
    async with bot.session() as s:
        acc = await hb.find_account(s, "telegram", str(newcomer.user.id))
        book = await hb.own_book(s, acc)
        t_ = bot.services.translations.get("vi", "telegram")
        data = await hb.export_data(s, acc, t_)
        trail = await audit.of_book(s, rel_id)
    assert book is not None and book.id > rel_id  # the deleted book's id is not given again
    assert data["acted_on_records"] == []
    assert [e.action for e in trail] == ["deleted", "created"]  # its trail stays its own


# ---------------------------------------------------------------- registrations set aside


async def test_parked_drafts_are_capped_and_shown_in_mydata_and_delete(bot: Harness) -> None:
    holder = bot.user()
    async with bot.session() as s, s.begin():
        acc = await hb.ensure_account(s, "telegram", str(holder.user.id), "vi")
        for i in range(40):
            await hb.start_draft(
                s,
                acc,
                subject="relative",
                relation="father",
                consent=fam.consent_for("relative", "v1", dt.datetime.now(dt.UTC)),
                answers={"full_name": f"Người Số {i}", "date_of_birth": "1960-01-01"},
            )
        names = [
            p.answers["full_name"]
            for p in await s.scalars(select(ParkedDraft).order_by(ParkedDraft.id))
        ]
    # the 39 set aside: the 20 most recent are kept, the oldest went
    assert names == [f"Người Số {i}" for i in range(19, 39)]
    async with bot.session() as s:
        acc = await hb.find_account(s, "telegram", str(holder.user.id))
        t_ = bot.services.translations.get("vi", "telegram")
        data = await hb.export_data(s, acc, t_)
        held = await hb.holdings(s, acc)
    dumped = json.dumps(data["parked_drafts"], ensure_ascii=False)
    assert len(data["parked_drafts"]) == hb.PARKED_MAX
    assert "Người Số 38" in dumped and "Người Số 18" not in dumped
    assert data["parked_drafts"][0]["relation"] == {
        "code": "father",
        "name": t("vi", "relation.father"),
    }
    assert data["parked_drafts"][0]["subject"] == "relative"
    assert held.drafts == hb.PARKED_MAX + 1  # and the one in progress
    async with bot.session() as s, s.begin():
        acc = await hb.find_account(s, "telegram", str(holder.user.id))
        await hb.erase_account(s, acc)
    async with bot.session() as s:
        assert await s.scalar(select(func.count()).select_from(ParkedDraft)) == 0


async def test_old_parked_drafts_are_purged_by_the_hourly_job(bot: Harness) -> None:
    now = bot.services.clock()
    async with bot.session() as s, s.begin():
        acc = await hb.ensure_account(s, "telegram", "70001", "vi")
        for days in (31, 29, 1):
            s.add(
                ParkedDraft(
                    account_id=acc.id,
                    subject="relative",
                    relation="mother",
                    consent={},
                    answers={"full_name": f"{days} ngày"},
                    updated_at=now - dt.timedelta(days=days),
                )
            )
    await forget_handled_updates_job(SimpleNamespace(services=bot.services))  # type: ignore[arg-type]
    async with bot.session() as s:
        left = sorted(p.answers["full_name"] for p in await s.scalars(select(ParkedDraft)))
    assert left == ["1 ngày", "29 ngày"]


async def test_an_edit_of_a_saved_book_is_set_aside_when_another_registration_begins(
    bot: Harness,
) -> None:
    holder = await resident(bot, "555555", born="15/3/1990")
    async with bot.session() as s, s.begin():
        acc = await hb.find_account(s, "telegram", str(holder.user.id))
        book = await hb.own_book(s, acc)
        assert book is not None
        book_id = book.id
        draft = await hb.start_draft(s, acc, book)
        draft.answers = {**draft.answers, "address_line": "Tổ 3"}  # an answer changed
        await hb.start_draft(s, acc, subject="relative", relation="mother")
        [parked] = list(await s.scalars(select(ParkedDraft)))
        assert parked.book_id == book_id and parked.answers["address_line"] == "Tổ 3"
        # an edit with nothing changed is simply over when another begins
        draft = await hb.resume_parked(s, acc, parked.id)
        assert draft is not None and draft.book_id == book_id
        draft.answers = hb.answers_of_book(book)
        await hb.start_draft(s, acc, subject="relative", relation="mother")
        parked_now = list(await s.scalars(select(ParkedDraft)))
    # the empty relative's draft was not parked either (no answers)
    assert parked_now == []


# ---------------------------------------------------------------- one book erased completely


async def test_one_function_erases_a_book_with_everything_hanging_off_it(bot: Harness) -> None:
    holder = await resident(bot, "666666", born="15/3/1990")
    base = await _valid_answers(bot, holder)
    rel_id = await _relative(bot, holder, base, "Lò Văn Bố")
    rel2 = await _relative(bot, holder, base, "Lò Thị Mẹ")
    now = dt.datetime.now(dt.UTC)
    async with bot.session() as s, s.begin():
        acc = await hb.find_account(s, "telegram", str(holder.user.id))
        for book_id in (rel_id, rel2):
            await fam.create_handover(s, acc, book_id, now)
        # an edit of each set aside, and one in progress
        for book_id in (rel_id, rel2):
            draft = await hb.start_draft(s, acc, await s.get(HealthBook, book_id))
            draft.answers = {**draft.answers, "address_line": f"Tổ {book_id}"}
        assert await s.scalar(select(func.count()).select_from(ParkedDraft)) == 1
        await fam.remove_relative(s, acc, rel_id, now)  # /family: remove
        assert await hb.get_draft(s, acc) is not None  # the other book's edit stays
        await fam.remove_relative(s, acc, rel2, now)
        assert await hb.get_draft(s, acc) is None
    async with bot.session() as s:
        left = await _rows_about(s, {rel_id, rel2})
    assert left == {}


async def _rows_about(s: Any, ids: set[int]) -> dict[str, int]:
    """Rows of any table (but the audit trail) naming one of these health books."""
    out = {}
    for table in Base.metadata.sorted_tables:
        if table.name == "audit_log":
            continue
        for name in ("health_book_id", "book_id"):
            column = table.c.get(name)
            if column is None:
                continue
            n = await s.scalar(select(func.count()).select_from(table).where(column.in_(ids)))
            if n:
                out[f"{table.name}.{name}"] = n
        if table.name == "health_books":
            n = await s.scalar(select(func.count()).select_from(table).where(table.c.id.in_(ids)))
            if n:
                out["health_books"] = n
    return out


async def test_delete_book_and_erase_account_erase_the_same(bot: Harness) -> None:
    holder = await resident(bot, "777777", born="15/3/1990")
    base = await _valid_answers(bot, holder)
    rel_id = await _relative(bot, holder, base, "Lò Văn Bố")
    vol = bot.user()
    async with bot.session() as s, s.begin():
        vacc = await hb.ensure_account(s, "telegram", str(vol.user.id), "vi")
        vacc.role = "volunteer"
        s.add(VolunteerWard(account_id=vacc.id, ward_code=SAPA, province_code=LAO_CAI))
        await s.flush()
        draft = await hb.start_draft(
            s,
            vacc,
            subject="assisted",
            consent={"kind": "verbal", "version": "v1"},
            answers={**base, "id_number": None, "full_name": "Giàng Thị Dợ", "phone": None},
        )
        assisted = (await hb.save_book(s, vacc, draft, "v1")).id
        await fam.create_handover(s, vacc, assisted, dt.datetime.now(dt.UTC))
        await records.delete_book(s, vacc, assisted)
        acc = await hb.find_account(s, "telegram", str(holder.user.id))
        own = await hb.own_book(s, acc)
        assert own is not None
        own_id = own.id
        await fam.create_handover(s, acc, rel_id, dt.datetime.now(dt.UTC))
        await hb.erase_account(s, acc)  # /delete
    async with bot.session() as s:
        assert await _rows_about(s, {assisted, rel_id, own_id}) == {}


# ---------------------------------------------------------------- indexes


async def test_the_lookups_by_these_columns_have_indexes(bot: Harness) -> None:
    def indexed(conn: Any) -> set[tuple[str, tuple[str, ...]]]:
        found = set()
        for table in (
            "health_books",
            "booking_drafts",
            "handover_codes",
            "parked_drafts",
            "audit_log",
        ):
            for ix in inspect(conn).get_indexes(table):
                found.add((table, tuple(ix["column_names"])))
        return found

    async with engine_of(bot.app).connect() as conn:
        have = await conn.run_sync(indexed)
    for wanted in (
        ("health_books", ("consent_by",)),
        ("booking_drafts", ("health_book_id",)),
        ("handover_codes", ("created_by",)),
        ("parked_drafts", ("book_id",)),
        ("parked_drafts", ("updated_at",)),
        ("audit_log", ("ward_code", "at")),
        ("audit_log", ("action", "at")),
    ):
        assert wanted in have, wanted


# ---------------------------------------------------------------- the audit export


async def test_audit_export_looks_actors_up_once_per_batch(bot: Harness) -> None:
    at = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    async with bot.session() as s, s.begin():
        actors = [Account(channel="zalo", external_id=f"v{n}", locale="vi") for n in range(30)]
        s.add_all(actors)
        await s.flush()
        total = 2 * BATCH + 5
        s.add_all(
            AuditEntry(
                at=at + dt.timedelta(minutes=n),
                actor_id=actors[n % 30].id,
                actor_role="volunteer",
                health_book_id=n,
                action="booked",
                fields=["session"],
                ward_code=SAPA,
            )
            for n in range(total)
        )
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sync_engine = engine_of(bot.app).sync_engine
    event.listen(sync_engine, "before_cursor_execute", seen)
    try:
        out = io.StringIO()
        async with bot.session() as s:
            count = await write_entries(s, audit.Filters(), out, "jsonl", dt.UTC)
    finally:
        event.remove(sync_engine, "before_cursor_execute", seen)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert count == total and len(rows) == total
    assert rows[0]["actor"] == "zalo:v0" and rows[31]["actor"] == "zalo:v1"
    lookups = [x for x in statements if "FROM accounts" in x]
    assert len(lookups) == 3, len(lookups)  # one per batch, not one per actor


# ---------------------------------------------------------------- forged presses


async def test_a_forged_time_is_refused_by_a_toast_and_the_times_stand(bot: Harness) -> None:
    world = await resident_with_bookings(bot)
    person = world.resident
    await person.send("/book")
    await person.press("cúm mùa")
    await person.press("Sa Pa")
    await person.press(person.buttons[0])
    async with bot.session() as s:
        offer = await s.get(ChatOffer, ("telegram", str(person.user.id)))
        assert offer is not None and offer.choices
        before = list(offer.choices)
    for data in ("bk:t:999999:999999", "bk:t:1:999999", "bk:t:999999:1"):
        calls = await person.press_data(data)
        assert [c.method for c in calls if c.method in SENDS] == [], data
        [answer] = [c for c in calls if c.method == "answerCallbackQuery"]
        assert answer.params.get("text"), data
    async with bot.session() as s:
        offer = await s.get(ChatOffer, ("telegram", str(person.user.id)))
        assert offer is not None and list(offer.choices) == before


async def test_a_forged_hand_over_claim_changes_nothing(bot: Harness) -> None:
    stranger = bot.user()
    calls = await stranger.press_data("fam:claim:ABCDEFGH")
    assert [c.method for c in calls if c.method in SENDS] == []
    assert any(c.method == "answerCallbackQuery" and c.params.get("text") for c in calls)
    async with bot.session() as s:
        assert await hb.find_account(s, "telegram", str(stranger.user.id)) is None
    # someone in the middle of their registration: it stays where it was
    person = bot.user()
    await person.send("/start")
    async with bot.session() as s:
        states = sorted((c.name, c.state) for c in await s.scalars(select(ConversationState)))
        accounts = await s.scalar(select(func.count()).select_from(Account))
    calls = await person.press_data("fam:claim:ZZZZZZZZ")
    assert [c.method for c in calls if c.method in SENDS] == []
    async with bot.session() as s:
        assert (
            sorted((c.name, c.state) for c in await s.scalars(select(ConversationState))) == states
        )
        assert await s.scalar(select(func.count()).select_from(Account)) == accounts


async def test_parked_drafts_move_with_the_data_when_accounts_are_linked(bot: Harness) -> None:
    from models import accounts
    from models.campaigns import sample_book

    now = dt.datetime.now(dt.UTC)
    async with bot.session() as s, s.begin():
        maker = await hb.ensure_account(s, "telegram", "71001", "vi")
        typist = await hb.ensure_account(s, "zalo", "z71002", "vi")
        s.add(sample_book(typist.id, full_name="Lò Thị Mai"))  # the typist is the primary
        for name in ("Lò Văn Bố", "Lò Thị Mẹ"):
            await hb.start_draft(
                s, maker, subject="relative", relation="father", answers={"full_name": name}
            )
        code = await accounts.create_link_code(s, maker, now)
    async with bot.session() as s, s.begin():
        typist = await hb.find_account(s, "zalo", "z71002")
        linked = await accounts.redeem_link_code(s, typist, code, now)
        assert linked.primary.id == typist.id
        names = [p.answers["full_name"] for p in await hb.parked_drafts(s, typist)]
    assert names == ["Lò Văn Bố"]
