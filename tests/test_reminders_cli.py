"""``healthbook reminders list|set``: the rules as a table; changes strictly checked, then the
kind's pending reminders re-planned from their anchors (and the count said)."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from bot.db import create_engine, session_factory, transaction
from models import outbox
from models.tables import Account, OutboxMessage
from tests.test_cli import healthbook

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


async def _pending_reminder(db: Path) -> tuple[int, dt.datetime]:
    """One pending evening reminder of an appointment ten days from now (real time: the
    command plans with the real clock)."""
    engine = create_engine(f"sqlite+aiosqlite:///{db}")
    try:
        async with transaction(session_factory(engine)) as session:
            account = Account(channel="telegram", external_id="555", locale="vi")
            session.add(account)
            await session.flush()
            day = dt.datetime.now(TZ).date() + dt.timedelta(days=10)
            anchor = dt.datetime.combine(day, dt.time(7, 30), tzinfo=TZ)
            row = outbox.enqueue(
                session,
                kind="appointment_eve",
                account_id=account.id,
                due_at=anchor - dt.timedelta(hours=13, minutes=30),
                anchor_at=anchor,
                dedupe="test-eve",
            )
            await session.flush()
            return row.id, anchor
    finally:
        await engine.dispose()


async def _row(db: Path, row_id: int) -> OutboxMessage:
    engine = create_engine(f"sqlite+aiosqlite:///{db}")
    try:
        async with session_factory(engine)() as session:
            row = await session.scalar(select(OutboxMessage).where(OutboxMessage.id == row_id))
            assert row is not None
            return row
    finally:
        await engine.dispose()


async def test_reminders_list_and_set(tmp_path: Path) -> None:
    def run(*args: str) -> tuple[int, str, str]:
        result = healthbook("reminders", *args, cwd=tmp_path)
        assert "Traceback" not in result.stderr, result.stderr
        return result.returncode, result.stdout, result.stderr

    code, out, _ = await asyncio.to_thread(run, "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "kind", "anchor", "offset", "unit", "at", "quiet", "active", "texts", "pending",
    ]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows["appointment_eve"] == ["appointment", "-1", "days", "18:00", "no", "yes", "-", "0"]
    assert rows["appointment_morning"][3:5] == ["06:30", "yes"]
    assert rows["healthbook_unfinished"][1:4] == ["24", "hours", "-"]
    db = tmp_path / "healthbook.db"
    row_id, anchor = await _pending_reminder(db)

    # refused, with the reason, and nothing changed
    for args, status, said in [
        (("nope", "--on"), 1, "unknown kind 'nope'"),
        (("appointment_eve", "--at", "7pm"), 2, "is not a time HH:MM"),
        (("appointment_eve", "--unit", "weeks"), 2, "use minutes, hours or days"),
        (("appointment_eve", "--offset", "x"), 2, "--offset"),
        (("appointment_eve", "--text", "vi=Mai {ten}"), 2, "unknown placeholder {ten}"),
        (("appointment_eve", "--text", "fr=Demain"), 2, "unknown language 'fr'"),
        (("appointment_eve", "--text", "Mai"), 2, "write LANG=TEXT"),
        (("appointment_eve",), 2, "nothing to change"),
        (("dose_due", "--offset", "-3"), 1, "negative offset"),
        (("waitlist_offer", "--off"), 1, "cannot be turned off"),
    ]:
        code, _, err = await asyncio.to_thread(run, "set", *args)
        assert (code, said in err) == (status, True), (args, err)
    assert (await _row(db, row_id)).status == "pending"

    # moved to 19:00 with a Vietnamese text: the pending one is re-planned
    code, out, err = await asyncio.to_thread(
        run, "set", "appointment_eve", "--at", "19:00", "--text", "vi=Mai {day}: {site}"
    )
    assert code == 0, err
    assert "appointment_eve: 1 pending reminders re-planned, 0 cancelled" in out
    assert out.splitlines()[1].split()[4:9] == ["19:00", "no", "yes", "vi", "1"]
    row = await _row(db, row_id)
    due = row.due_at.replace(tzinfo=dt.UTC) if row.due_at.tzinfo is None else row.due_at
    expected = dt.datetime.combine(anchor.date() - dt.timedelta(days=1), dt.time(19), tzinfo=TZ)
    assert due == expected
    # turned off: cancelled
    code, out, _ = await asyncio.to_thread(run, "set", "appointment_eve", "--off")
    assert code == 0 and "0 pending reminders re-planned, 1 cancelled" in out
    assert (await _row(db, row_id)).status == "cancelled"
    code, out, _ = await asyncio.to_thread(run, "list")
    eve = next(line for line in out.splitlines() if line.startswith("appointment_eve"))
    assert eve.split()[5:] == ["no", "no", "vi", "0"]  # quiet, active, texts, pending


def test_reminders_set_warns_of_a_time_in_the_quiet_hours(tmp_path: Path) -> None:
    """Accepted (an admin may want it), but said: the reminders wait until the quiet hours end."""
    result = healthbook("reminders", "set", "appointment_eve", "--at", "21:30", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "21:30 is in the quiet hours (21:00–07:00)" in result.stderr
    assert "held until 07:00 the next morning" in result.stderr
    assert "21:30" in result.stdout.splitlines()[1]
    # out of the quiet hours, or allowed in them: nothing to warn of
    for args in (("--at", "20:00"), ("--at", "22:00", "--quiet-ok")):
        result = healthbook("reminders", "set", "appointment_eve", *args, cwd=tmp_path)
        assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
