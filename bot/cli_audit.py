"""``healthbook audit export``: the audit trail (what was done for another person, by whom, in
which role, when, which fields) as CSV or JSON lines, streamed from the database in batches
(memory stays flat however long the log). Ids only: the actor's messenger id, the book's number,
the commune's code; never a name or a value."""

from __future__ import annotations

import csv
import datetime as dt
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

audit_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="The audit trail of what was done for another person.",
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="TOML settings file (default: ./config.toml)", metavar="FILE"
    ),
]

COLUMNS = ("at", "action", "role", "actor", "health_book_id", "ward_code", "fields")
FORMATS = ("csv", "jsonl")


def _day(option: str, text: str | None) -> dt.date | None:
    if text is None:
        return None
    try:
        if len(text) != 10:
            raise ValueError(text)
        return dt.date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a date: write YYYY-MM-DD (2026-11-01)", param_hint=option
        ) from None


@audit_app.command("export")
def export(
    since: Annotated[
        str | None, typer.Option(help="from this local day on (YYYY-MM-DD)", metavar="DATE")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="up to this local day, included (YYYY-MM-DD)", metavar="DATE")
    ] = None,
    ward: Annotated[
        int | None, typer.Option(help="only this commune (its code)", metavar="CODE")
    ] = None,
    action: Annotated[
        str | None, typer.Option(help="only this action (booked, created…)", metavar="ACTION")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv or jsonl", metavar="FORMAT")] = "csv",
    out: Annotated[
        Path | None, typer.Option(help="write here (default: standard output)", metavar="FILE")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Export the audit trail, oldest first: when (local time, with its offset), action, role,
    actor (channel:id), health book number, commune code, names of the fields changed."""
    from zoneinfo import ZoneInfo

    from bot import cli
    from models import audit

    if fmt not in FORMATS:
        raise typer.BadParameter(f"{fmt!r}: one of {', '.join(FORMATS)}", param_hint="--format")
    if action is not None and action not in audit.ACTIONS:
        raise typer.BadParameter(
            f"{action!r}: one of {', '.join(audit.ACTIONS)}", param_hint="--action"
        )
    if ward is not None and ward <= 0:
        raise typer.BadParameter("a commune code is a positive number", param_hint="--ward")
    first, last = _day("--since", since), _day("--until", until)
    if first and last and last < first:
        raise typer.BadParameter("--until is before --since", param_hint="--until")
    tz = ZoneInfo(cli._settings(config).bot.timezone)

    def midnight(day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(), tzinfo=tz).astimezone(dt.UTC)

    filters = audit.Filters(
        ward_code=ward,
        action=action,
        since=midnight(first) if first else None,
        until=midnight(last + dt.timedelta(days=1)) if last else None,
    )

    async def work(session: AsyncSession) -> int:
        handle: TextIO = out.open("w", encoding="utf-8", newline="") if out else sys.stdout
        try:
            return await write_entries(session, filters, handle, fmt, tz)
        finally:
            if out:
                handle.close()

    count = cli._with_database(config, work)
    typer.echo(f"{count} audit entries exported", err=True)


#: entries written per batch: their actors are looked up together, one query a batch
BATCH = 1000


async def write_entries(
    session: AsyncSession, filters: Any, handle: TextIO, fmt: str, tz: dt.tzinfo
) -> int:
    """Write every entry matching ``filters`` to ``handle`` as they are read; how many. The
    actors (channel:id) are looked up once per batch of :data:`BATCH` entries, and only that
    batch's are kept (memory stays flat however many actors)."""
    from sqlalchemy import select

    from models import audit
    from models.tables import Account, AuditEntry

    writer = csv.writer(handle) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(COLUMNS)
    count = 0

    async def flush(entries: list[AuditEntry]) -> None:
        ids = {e.actor_id for e in entries if e.actor_id is not None}
        actors: dict[int, str] = {}
        if ids:
            found = await session.execute(
                select(Account.id, Account.channel, Account.external_id).where(Account.id.in_(ids))
            )
            actors = {row[0]: f"{row[1]}:{row[2]}" for row in found}
        for e in entries:
            actor = actors.get(e.actor_id, "") if e.actor_id is not None else ""
            at = e.at if e.at.tzinfo is not None else e.at.replace(tzinfo=dt.UTC)
            values = (
                at.astimezone(tz).isoformat(timespec="seconds"),
                e.action,
                e.actor_role,
                actor,
                e.health_book_id,
                e.ward_code,
                list(e.fields or []),
            )
            if writer is not None:
                writer.writerow(
                    [*("" if v is None else v for v in values[:-1]), " ".join(values[-1])]
                )
            else:
                handle.write(json.dumps(dict(zip(COLUMNS, values, strict=True))) + "\n")

    pending: list[AuditEntry] = []
    async for e in audit.stream(session, filters, batch=BATCH):
        pending.append(e)
        count += 1
        if len(pending) >= BATCH:
            await flush(pending)
            pending = []
    if pending:
        await flush(pending)
    return count


__all__ = ["audit_app", "write_entries"]
