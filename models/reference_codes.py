"""Administrative-unit codes stored in the database: the release they follow (the
``reference_data`` table), moving them onto another release in a data migration, and finding
stored codes the current reference does not know.

Synchronous, on a SQLAlchemy ``Connection`` (migrations run that way; async callers use
``run_sync``). Reports carry table, column, code and row counts, never a row's other contents.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

from models.reference import (
    ADMIN_UNITS,
    ADMIN_UNITS_VERSION,
    CodeMapping,
    admin_units,
    code_mapping,
)

log = logging.getLogger(__name__)

REFERENCE_DATA = sa.table(
    "reference_data",
    sa.column("name", sa.String),
    sa.column("version", sa.String),
    sa.column("applied_at", sa.DateTime(timezone=True)),
)


@dataclass(frozen=True)
class CodeColumn:
    """A column holding province or commune/ward codes (``kind`` is ``province`` or ``ward``)."""

    table: str
    column: str
    kind: str


@dataclass(frozen=True)
class JsonCodes:
    """Codes inside a JSON column: ``keys`` maps a JSON key to its kind; ``key_columns`` identify
    a row."""

    table: str
    key_columns: tuple[str, ...]
    column: str
    keys: tuple[tuple[str, str], ...]


# Where the current schema stores codes (a migration lists those of its own revision).
CODE_COLUMNS: tuple[CodeColumn, ...] = (
    CodeColumn("health_books", "province_code", "province"),
    CodeColumn("health_books", "ward_code", "ward"),
    CodeColumn("sites", "province_code", "province"),
    CodeColumn("sites", "ward_code", "ward"),
)
JSON_CODES: tuple[JsonCodes, ...] = (
    JsonCodes("drafts", ("account_id",), "answers", (("province", "province"), ("ward", "ward"))),
)


@dataclass(frozen=True)
class StoredCode:
    """A stored code, where it is and in how many rows (for reports: no personal data)."""

    where: str  # "health_books.ward_code", "drafts.answers.ward"
    code: Any
    rows: int

    def __str__(self) -> str:
        return f"{self.where} = {self.code} ({self.rows} row{'s' if self.rows != 1 else ''})"


# --- the release a database follows ------------------------------------------------------------


def recorded_version(conn: Connection, name: str = ADMIN_UNITS) -> str | None:
    """The release the database's codes follow, or ``None`` if none is recorded."""
    return conn.execute(
        sa.select(REFERENCE_DATA.c.version).where(REFERENCE_DATA.c.name == name)
    ).scalar_one_or_none()


def record_version(conn: Connection, version: str, name: str = ADMIN_UNITS) -> None:
    """Record that the database's codes now follow ``version``."""
    conn.execute(sa.delete(REFERENCE_DATA).where(REFERENCE_DATA.c.name == name))
    conn.execute(
        sa.insert(REFERENCE_DATA).values(
            name=name, version=version, applied_at=dt.datetime.now(dt.UTC)
        )
    )


# --- moving stored codes onto another release --------------------------------------------------


def _json_type() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(JSONB(), "postgresql")


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _lookup(mapping: CodeMapping, kind: str, code: Any) -> int | None:
    number = _as_int(code)
    if number is None:
        return None
    return mapping.province(number) if kind == "province" else mapping.ward(number)


def remap(
    conn: Connection,
    old: str,
    new: str,
    columns: Iterable[CodeColumn] = CODE_COLUMNS,
    json_codes: Iterable[JsonCodes] = JSON_CODES,
    *,
    name: str = ADMIN_UNITS,
    logger: logging.Logger = log,
) -> list[StoredCode]:
    """Move every stored code of release ``old`` onto release ``new`` (by name and province, see
    ``code_mapping``) and record ``new``; returns the codes it could not map, left as they were.

    Each column is rewritten by one statement, so codes that trade places (A→B, B→C) are not
    mapped twice."""
    mapping = code_mapping(old, new)
    unmapped: list[StoredCode] = []
    for spec in columns:
        column = sa.column(spec.column, sa.Integer)
        table = sa.table(spec.table, column)
        counts = conn.execute(sa.select(column, sa.func.count()).group_by(column)).all()
        changes: dict[int, int] = {}
        for code, rows in counts:
            if code is None:
                continue
            target = _lookup(mapping, spec.kind, code)
            if target is None:
                unmapped.append(StoredCode(f"{spec.table}.{spec.column}", code, rows))
            elif target != code:
                changes[code] = target
        if changes:
            conn.execute(
                sa.update(table)
                .where(column.in_(list(changes)))
                .values({spec.column: sa.case(changes, value=column, else_=column)})
            )
        moved = sum(rows for code, rows in counts if code in changes)
        logger.info("%s.%s: %d rows moved to %s codes", spec.table, spec.column, moved, new)
    for spec in json_codes:
        unmapped += _remap_json(conn, mapping, spec, logger)
    record_version(conn, new, name)
    for item in unmapped:
        logger.warning("admin units %s -> %s: cannot map %s; left as it was", old, new, item)
    return unmapped


def _remap_json(
    conn: Connection, mapping: CodeMapping, spec: JsonCodes, logger: logging.Logger
) -> list[StoredCode]:
    keys = [sa.column(c) for c in spec.key_columns]
    data = sa.column(spec.column, _json_type())
    table = sa.table(spec.table, *keys, data)
    lost: dict[tuple[str, Any], int] = {}
    updates: list[tuple[Sequence[Any], dict[str, Any]]] = []
    for row in conn.execute(sa.select(*keys, data)).all():
        answers = row[-1]
        if not isinstance(answers, dict):
            continue
        changed = dict(answers)
        for key, kind in spec.keys:
            if answers.get(key) is None:
                continue
            target = _lookup(mapping, kind, answers[key])
            if target is None:
                where = (f"{spec.table}.{spec.column}.{key}", answers[key])
                lost[where] = lost.get(where, 0) + 1
            elif target != _as_int(answers[key]):
                changed[key] = str(target) if isinstance(answers[key], str) else target
        if changed != answers:
            updates.append((tuple(row[:-1]), changed))
    for ident, changed in updates:
        conn.execute(
            sa.update(table)
            .where(*(k == v for k, v in zip(keys, ident, strict=True)))
            .values({spec.column: changed})
        )
    logger.info(
        "%s.%s: %d rows moved to %s codes", spec.table, spec.column, len(updates), mapping.new
    )
    return [StoredCode(where, code, rows) for (where, code), rows in lost.items()]


# --- checking stored codes against the current reference ---------------------------------------


def _known(kind: str, code: Any, version: str) -> bool:
    number = _as_int(code)
    units = admin_units(version)
    return number is not None and number in (units.provinces if kind == "province" else units.wards)


def unknown_codes(
    conn: Connection,
    version: str = ADMIN_UNITS_VERSION,
    columns: Iterable[CodeColumn] = CODE_COLUMNS,
    json_codes: Iterable[JsonCodes] = JSON_CODES,
) -> list[StoredCode]:
    """Stored codes that are not in release ``version`` (by default the one the bot uses)."""
    found: list[StoredCode] = []
    for spec in columns:
        column = sa.column(spec.column, sa.Integer)
        query = sa.select(column, sa.func.count()).select_from(sa.table(spec.table, column))
        for code, rows in conn.execute(query.group_by(column).order_by(column)).all():
            if not _known(spec.kind, code, version):
                found.append(StoredCode(f"{spec.table}.{spec.column}", code, rows))
    for spec in json_codes:
        data = sa.column(spec.column, _json_type())
        counts: dict[tuple[str, Any], int] = {}
        for (answers,) in conn.execute(sa.select(data).select_from(sa.table(spec.table, data))):
            if not isinstance(answers, dict):
                continue
            for key, kind in spec.keys:
                value = answers.get(key)
                if value is not None and not _known(kind, value, version):
                    where = (f"{spec.table}.{spec.column}.{key}", value)
                    counts[where] = counts.get(where, 0) + 1
        found += [StoredCode(w, c, n) for (w, c), n in counts.items()]
    return found


class ReferenceMismatch(RuntimeError):
    """The database's codes follow another release than the one the bot reads."""


def require_current(conn: Connection, version: str = ADMIN_UNITS_VERSION) -> None:
    """Refuse to serve a database whose codes follow another release (its migration has not
    run): every commune/ward code would be read with the wrong meaning."""
    try:
        follows = recorded_version(conn)
    except sa.exc.SQLAlchemyError:  # no reference_data table: a schema older than 0004
        follows = None
    if follows != version:
        raise ReferenceMismatch(
            f"the database's commune/ward codes follow {follows or 'an older release'}, the bot "
            f"reads {version}: run `healthbook db upgrade`"
        )
