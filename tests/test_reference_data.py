"""Administrative units: the bot reads its vendored copy of one vietnam-provinces release, the
database records that release, and migration 0004 moves codes stored with 2025.10.1 onto
2026.9.0 by name and province, reporting what it cannot map."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import sqlite3
import subprocess
import sys
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from bot.db import create_engine, downgrade, upgrade
from models import reference as r
from models.reference_codes import recorded_version, unknown_codes

ROOT = Path(__file__).resolve().parent.parent
LAO_CAI = 15
CAM_DUONG_OLD, CAM_DUONG = 2674, 2671  # Phường Cam Đường in 2025.10.1 and 2026.9.0
NOT_A_CODE = 987654
ENV = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHBOOK_")}


# --- the vendored reference ------------------------------------------------------------------


def test_the_bot_reads_the_pinned_2026_release() -> None:
    assert r.ADMIN_UNITS_VERSION == "2026.9.0"
    assert r.ward_name(CAM_DUONG) == "Phường Cam Đường"
    assert r.ward_in_province(CAM_DUONG, LAO_CAI)
    assert not r.ward_in_province(CAM_DUONG_OLD, LAO_CAI)
    with pytest.raises(KeyError):
        r.ward_name(CAM_DUONG_OLD)
    assert r.province_name(LAO_CAI) == "Lào Cai"  # the release says "Tỉnh Lào Cai"
    assert r.province_name(1) == "Thành phố Hà Nội"
    assert len(r.provinces()) == 34 and len(r.wards(LAO_CAI)) == 99
    assert r.wards(99) == () and r.wards("x") == ()  # type: ignore[arg-type]


@pytest.mark.parametrize("version", ["2025.10.1", "2026.9.0"])
def test_each_vendored_release_is_whole(version: str) -> None:
    units = r.admin_units(version)
    assert len(units.provinces) == 34 and len(units.wards) == 3321
    assert {province for _, province in units.wards.values()} == set(units.provinces)
    assert all(name.strip() for name in units.provinces.values())


def test_nothing_imports_the_package() -> None:
    """The package is not a dependency: the bot, its settings and its CLI work without it."""
    code = (
        "import sys; sys.modules['vietnam_provinces'] = None\n"  # any import of it fails
        "import bot.app, bot.cli, handlers.healthbook, models.validators as v\n"
        "from bot.settings import load_settings\n"
        "assert load_settings(None, bot={'default_province': 15}).bot.default_province == 15\n"
        "assert v.search_wards(15, 'cam duong')[0] == (2671, 'Phường Cam Đường')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "vietnam-provinces" not in (ROOT / "pyproject.toml").read_text()


def test_settings_refuse_an_unknown_province() -> None:
    from bot.settings import ConfigError, load_settings

    with pytest.raises(ConfigError, match="default_province"):
        load_settings(None, bot={"default_province": 99})


# --- mapping one release onto another --------------------------------------------------------


def test_names_match_whatever_the_spelling() -> None:
    key = r.unit_key
    assert key("Xã Đàm Thuỷ") == key("Xã Đàm Thủy")  # where the tone mark sits
    assert key("Phường Hoà Bình") == key("phường  Hòa Bình")
    assert key("Xã Chân Mây – Lăng Cô") == key("Xã Chân Mây - Lăng Cô")
    assert key("Xã Ea H’leo") == key("Xã Ea H'Leo")
    assert key("Xã Bắc Sơn") != key("Xã Bác Sơn")
    assert key("Xã Bắc Sơn") != key("Phường Bắc Sơn")


def test_2025_codes_map_onto_2026_by_name() -> None:
    m = r.code_mapping("2025.10.1", "2026.9.0")
    assert m.ward(CAM_DUONG_OLD) == CAM_DUONG
    assert m.ward(3006) == 3006  # Phường Sa Pa: unchanged
    assert m.ward(196) == 226 and m.ward(226) == 229  # Hà Nội: 226 is another ward in 2026
    assert m.ward(20152) == 20137  # "Chân Mây – Lăng Cô", a dash of another kind in 2026
    assert m.province(LAO_CAI) == LAO_CAI  # "Lào Cai" became "Tỉnh Lào Cai"
    assert m.ward(NOT_A_CODE) is None and m.province(99) is None
    assert not m.unmapped_wards and not m.unmapped_provinces
    changed = {old for old, new in m.wards.items() if old != new}
    assert len(changed) == 123


def _release(tmp: Path, rows: list[tuple[str, int, str, str]]) -> str:
    version = f"test-{uuid.uuid4().hex[:8]}"
    with (tmp / f"{version}.csv").open("w", encoding="utf-8") as fh:
        fh.write("kind,code,name,province_code\n")
        fh.writelines(f"{k},{c},{n},{p}\n" for k, c, n, p in rows)
    return version


def test_mapping_reports_what_it_cannot_map(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(r, "ADMIN_UNITS_DIR", tmp_path)
    old = _release(
        tmp_path,
        [
            ("province", 1, "Tỉnh Một", ""),
            ("province", 2, "Tỉnh Hai", ""),
            ("ward", 10, "Xã An Hòa", "1"),
            ("ward", 11, "Xã Bình Minh", "1"),  # renamed: no counterpart
            ("ward", 12, "Xã Tân Lập", "1"),  # became a ward (phường)
            ("ward", 13, "Xã Đông Hưng", "1"),  # two candidates
            ("ward", 20, "Xã An Hòa", "2"),  # same name, other province
        ],
    )
    new = _release(
        tmp_path,
        [
            ("province", 1, "Một", ""),
            ("province", 3, "Tỉnh Hai", ""),  # renumbered province
            ("ward", 11, "Xã An Hoà", "1"),
            ("ward", 14, "Xã Hòa Bình", "1"),
            ("ward", 15, "Phường Tân Lập", "1"),
            ("ward", 16, "Phường Đông Hưng", "1"),
            ("ward", 17, "Xã Đông Hưng Mới", "1"),
            ("ward", 18, "Đặc khu Đông Hưng", "1"),
            ("ward", 30, "Xã An Hòa", "3"),
        ],
    )
    m = r.code_mapping(old, new)
    assert m.provinces == {1: 1, 2: 3}
    assert m.wards == {10: 11, 12: 15, 20: 30}
    assert m.unmapped_wards == {11, 13}


# --- the data migration ----------------------------------------------------------------------

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
WHEN = sa.DateTime(timezone=True)
ACCOUNTS = sa.table(
    "accounts", *(sa.column(c) for c in ("id", "channel", "external_id", "role")),
    sa.column("created_at", WHEN),
)  # fmt: skip
BOOKS = sa.table(
    "health_books",
    *(sa.column(c) for c in ("id", "account_id", "full_name", "province_code", "ward_code")),
    *(sa.column(c) for c in ("relation", "gender", "ethnicity", "occupation", "priority_group")),
    sa.column("date_of_birth", sa.Date), sa.column("screening", JSON),
    sa.column("consent_version"), sa.column("created_at", WHEN), sa.column("updated_at", WHEN),
)  # fmt: skip
SITES = sa.table(
    "sites",
    *(sa.column(c) for c in ("id", "code", "name", "address", "province_code", "ward_code")),
    *(sa.column(c) for c in ("lat", "lon", "kind")), sa.column("active", sa.Boolean),
)  # fmt: skip
DRAFTS = sa.table(
    "drafts", sa.column("account_id"), sa.column("answers", JSON), sa.column("updated_at", WHEN)
)
SECRET_NAME = "Lò Thị Mẩy"


async def _database_at_0003(url: str) -> Any:
    """A database made by the previous release: schema 0003, rows with 2025.10.1 codes."""
    engine = create_engine(url)
    await upgrade(engine, "0003")
    now = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    book = {
        "account_id": 1, "full_name": SECRET_NAME, "relation": "self",
        "date_of_birth": dt.date(1950, 2, 3), "gender": "female", "ethnicity": 1,
        "occupation": "farmer", "priority_group": "none", "screening": {},
        "consent_version": "1", "created_at": now, "updated_at": now,
    }  # fmt: skip
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(ACCOUNTS),
            [
                {"id": a, "channel": "telegram", "external_id": str(a), "role": "resident",
                 "created_at": now}
                for a in (1, 2, 3)
            ],
        )  # fmt: skip
        await conn.execute(
            sa.insert(BOOKS),
            [
                {**book, "id": book_id, "ward_code": ward, "province_code": province}
                for book_id, ward, province in (
                    (1, CAM_DUONG_OLD, LAO_CAI),
                    (2, 196, 1),  # Hà Nội: 196 → 226 while 226 → 229, in one pass
                    (3, 226, 1),
                    (4, 3006, LAO_CAI),  # unchanged
                    (5, NOT_A_CODE, LAO_CAI),  # in no release: reported, left alone
                )
            ],
        )
        await conn.execute(
            sa.insert(SITES).values(
                id=1, code="LC-BVDK", name="Bệnh viện", address="Đường M9", province_code=15,
                ward_code=CAM_DUONG_OLD, lat=22.4, lon=104.0, kind="hospital", active=True,
            )
        )  # fmt: skip
        await conn.execute(
            sa.insert(DRAFTS),
            [
                {"account_id": 1, "updated_at": now,
                 "answers": {"full_name": SECRET_NAME, "province": 15, "ward": CAM_DUONG_OLD}},
                # Xã Trạm Tấu, as text
                {"account_id": 2, "updated_at": now, "answers": {"province": "15", "ward": "4591"}},
                {"account_id": 3, "updated_at": now, "answers": {"full_name": SECRET_NAME}},
            ],
        )  # fmt: skip
    return engine


async def _stored(engine: Any) -> dict[str, Any]:
    async with engine.connect() as conn:
        books = dict((await conn.execute(sa.select(BOOKS.c.id, BOOKS.c.ward_code))).all())
        sites = dict((await conn.execute(sa.select(SITES.c.id, SITES.c.ward_code))).all())
        drafts = dict(
            (await conn.execute(sa.select(DRAFTS.c.account_id, DRAFTS.c.answers))).all()
        )
    return {"books": books, "sites": sites, "drafts": drafts}


async def test_migration_moves_stored_codes_and_records_the_release(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = await _database_at_0003(db_url)
    try:
        with caplog.at_level(logging.INFO):
            await upgrade(engine)
        stored = await _stored(engine)
        assert stored["books"] == {1: CAM_DUONG, 2: 226, 3: 229, 4: 3006, 5: NOT_A_CODE}
        assert stored["sites"] == {1: CAM_DUONG}
        assert stored["drafts"] == {
            1: {"full_name": SECRET_NAME, "province": 15, "ward": CAM_DUONG},
            2: {"province": "15", "ward": "4606"},
            3: {"full_name": SECRET_NAME},
        }
        async with engine.connect() as conn:
            assert await conn.run_sync(recorded_version) == "2026.9.0"
            unknown = await conn.run_sync(unknown_codes)
        assert [str(u) for u in unknown] == [f"health_books.ward_code = {NOT_A_CODE} (1 row)"]

        report = [rec for rec in caplog.records if rec.name.startswith("alembic")]
        warnings = [rec.getMessage() for rec in report if rec.levelno == logging.WARNING]
        assert warnings == [
            f"admin units 2025.10.1 -> 2026.9.0: cannot map "
            f"health_books.ward_code = {NOT_A_CODE} (1 row); left as it was"
        ]
        assert "health_books.ward_code: 3 rows moved" in caplog.text
        assert SECRET_NAME not in caplog.text

        # and back: the previous release's code reads its own codes again
        await downgrade(engine, "0003")
        stored = await _stored(engine)
        assert stored["books"] == {1: CAM_DUONG_OLD, 2: 196, 3: 226, 4: 3006, 5: NOT_A_CODE}
        assert stored["drafts"][2] == {"province": "15", "ward": "4591"}
    finally:
        await engine.dispose()


async def test_a_new_database_records_the_release_the_bot_uses(db_url: str) -> None:
    """Bumping ADMIN_UNITS_VERSION without a migration that moves the codes fails here."""
    engine = create_engine(db_url)
    try:
        await upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(recorded_version) == r.ADMIN_UNITS_VERSION
            assert await conn.run_sync(unknown_codes) == []
    finally:
        await engine.dispose()


def test_reference_check_lists_unknown_codes(tmp_path: Path) -> None:
    def check(*command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot", *(command or ("reference", "check"))],
            cwd=tmp_path, capture_output=True, text=True, timeout=60, env=ENV,
        )  # fmt: skip

    assert check("db", "upgrade").returncode == 0  # a check creates no database
    done = check()
    assert done.returncode == 0, done.stderr
    assert "database follows 2026.9.0" in done.stdout
    with closing(sqlite3.connect(tmp_path / "healthbook.db")) as db, db:
        db.execute(
            "INSERT INTO sites (code, name, address, province_code, ward_code, lat, lon, kind, "
            "active) VALUES ('X', 'Trạm', 'x', 15, 2674, 22.4, 104.0, 'hospital', 1)"
        )
    done = check()
    assert done.returncode == 1
    assert "not in 2026.9.0: sites.ward_code = 2674 (1 row)" in done.stdout


async def test_the_bot_refuses_a_database_with_codes_of_another_release(db_url: str) -> None:
    """With upgrade_on_start off and migration 0004 not run, stored codes mean other places."""
    from bot.app import build_application, engine_of, prepare_database
    from bot.settings import load_settings
    from models.reference_codes import ReferenceMismatch

    engine = await _database_at_0003(db_url)
    await engine.dispose()
    settings = load_settings(
        None, telegram={"token": "1:A"}, database={"url": db_url, "upgrade_on_start": False}
    )
    app = build_application(settings, rate_limit=False)
    try:
        with pytest.raises(ReferenceMismatch, match="healthbook db upgrade"):
            await prepare_database(app)
        await upgrade(engine_of(app))
        await prepare_database(app)  # now it follows 2026.9.0
    finally:
        await engine_of(app).dispose()


async def test_run_refuses_a_database_with_codes_of_another_release(tmp_path: Path) -> None:
    """``healthbook run`` (not only the application tests start) checks the release too, and says
    so in one line; a database that does not answer is one line as well."""
    from tests.test_cli import healthbook

    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    engine = await _database_at_0003(url)
    await engine.dispose()
    env = {
        "HEALTHBOOK_TELEGRAM__TOKEN": "1:A",
        "HEALTHBOOK_TELEGRAM__BASE_URL": "http://127.0.0.1:9/bot",
        "HEALTHBOOK_DATABASE__URL": url,
        "HEALTHBOOK_DATABASE__UPGRADE_ON_START": "false",
    }
    done = await asyncio.to_thread(healthbook, "run", cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert "codes follow an older release" in done.stderr, done.stderr
    assert "healthbook db upgrade" in done.stderr
    assert "Traceback" not in done.stderr

    env["HEALTHBOOK_DATABASE__URL"] = "postgresql+asyncpg://nobody@127.0.0.1:9/none"
    done = await asyncio.to_thread(healthbook, "run", cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert "cannot use the database" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
