"""The command line of weekly reports: ``healthbook report --week 2026-W48 [--agency CODE |
--communes] --format xlsx|csv --output FILE`` writes a week's report as the chat sends it (the
province's without ``--agency``), ``healthbook report snapshot --week W [--late]`` stores a
week's figures now (after a missed Monday; an older week only with ``--late``, counted with
today's agencies and data), ``healthbook report weeks`` lists the stored weeks, ``healthbook
report forget --week W`` deletes a stored week (e.g. one stored empty by mistake).
Registered on :data:`bot.cli.app` when :mod:`bot.cli` loads.

Every option is checked before the database is opened (a usage error: exit status 2); a
refusal (an unknown agency, a week not ended) is one line and exit status 1.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar
from zoneinfo import ZoneInfo

import typer

from bot.cli import ConfigOpt, _settings, _with_database, app

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from models.reports import Figures, Report

report_app = typer.Typer(
    rich_markup_mode=None,
    invoke_without_command=True,
    no_args_is_help=True,
)
app.add_typer(report_app, name="report")

FORMATS = ("xlsx", "csv", "png")
#: what ``--output -`` means: standard output
STDOUT = "-"
WeekOpt = Annotated[
    str | None,
    typer.Option("--week", help="an ISO week, e.g. 2026-W48", metavar="YEAR-Wnn"),
]


T = TypeVar("T")


class _Refused(Exception):
    """A refusal of the work (one line, exit status 1)."""


def _week(text: str | None, tz: ZoneInfo) -> str:
    from models.reports import last_complete_week, parse_week

    example = last_complete_week(_now(), tz)  # a week that has ended
    if text is None:
        raise typer.BadParameter(f"is required, e.g. --week {example}", param_hint="--week")
    try:
        return parse_week(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{exc}, e.g. {example}", param_hint="--week") from None


LATE_WARNING = (
    "warning: week {week} was stored late ({taken}): counted at its end, but with the "
    "agencies (tree, names, expected staff) and health books of that day; no change since "
    "the week before is counted from it"
)


def _not_stored(week: str, example: str) -> _Refused:
    return _Refused(
        f"no figures were stored for week {week} (e.g. --week {example}); to count it now "
        f"anyway: healthbook report snapshot --week {week} --late (with today's agencies "
        f"and data)"
    )


def _no_agencies() -> _Refused:
    return _Refused("no agencies yet: import them first (healthbook agencies import)")


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """A week that cannot be reported (not stored, no agencies, not ended…) as one line."""
    from models.reports import NoAgencies, NotStored

    try:
        yield
    except NotStored as exc:
        raise _not_stored(exc.week, exc.example) from None
    except NoAgencies:
        raise _no_agencies() from None
    except ValueError as exc:
        raise _Refused(str(exc)) from None


def _run(config: Path | None, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    try:
        return _with_database(config, work)
    except _Refused as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _terminal() -> bool:
    """Whether standard output is a terminal (a workbook or a picture is not written there)."""
    return sys.stdout.isatty()


def _format(fmt: str | None, output: Path) -> str:
    """The file's format: ``--format``, which must agree with the file's extension, else the
    extension's; standard output (``-``) is CSV unless told, xlsx and png only when it is not
    a terminal. A usage error (exit status 2) otherwise."""
    to_stdout = str(output) == STDOUT
    suffix = output.suffix.lower().lstrip(".")
    if fmt is not None:
        fmt = fmt.strip().lower()
        if fmt not in FORMATS:
            raise typer.BadParameter("must be xlsx, csv or png", param_hint="--format")
    if to_stdout:
        fmt = fmt or "csv"
        if fmt != "csv" and _terminal():
            raise typer.BadParameter(
                f"{fmt} is not written to a terminal: redirect it (> file) or name a file",
                param_hint="--output",
            )
        return fmt
    if suffix not in FORMATS:
        if fmt is None:
            raise typer.BadParameter(
                f"{output}: the file's name ends in .xlsx, .csv or .png (or give --format)",
                param_hint="--output",
            )
    elif fmt is not None and fmt != suffix:
        raise typer.BadParameter(
            f"{output} is named .{suffix} but --format is {fmt}", param_hint="--format"
        )
    if output.is_dir() or not output.parent.is_dir():
        raise typer.BadParameter(f"{output}: not a file in an existing folder",
                                 param_hint="--output")  # fmt: skip
    return fmt or suffix


def _local(when: dt.datetime | None, tz: ZoneInfo) -> str:
    return "-" if when is None else f"{when.astimezone(tz):%Y-%m-%d %H:%M}"


def _staff_line(figures: Figures, expected: int) -> str:
    doses = ", ".join(f"dose {n}: {count}" for n, count in enumerate(figures.doses, 1))
    return (
        f"staff joined {figures.joined} of {expected} expected, complete health book "
        f"{figures.complete}, booked {figures.booked}, vaccinated {figures.vaccinated}"
        f"{f' ({doses})' if doses else ''}, relatives registered {figures.relatives}"
    )


def _headline(report: Report) -> str:
    """The report's figures in one line (counts only)."""
    if report.scope == "communes":
        registered = sum(w.registered for w in report.wards)
        adults = sum(w.adults for w in report.wards)
        adults_vaccinated = sum(w.adults_vaccinated for w in report.wards)
        share = f"{adults_vaccinated / adults:.0%}" if adults else "-"
        return (
            f"{len(report.wards)} communes and wards: registered {registered}, booked "
            f"{sum(w.booked for w in report.wards)}, vaccinated "
            f"{sum(w.vaccinated for w in report.wards)}, adults vaccinated "
            f"{adults_vaccinated} of {adults} ({share})"
        )
    expected = sum(line.expected for line in report.lines if line.depth == 0)
    return f"{len(report.lines)} agencies: {_staff_line(report.total, expected)}"


@report_app.callback()
def report(
    ctx: typer.Context,
    week: WeekOpt = None,
    agency: Annotated[
        str | None,
        typer.Option(
            "--agency", help="an agency's code: its report and its sub-units'", metavar="CODE"
        ),
    ] = None,
    communes: Annotated[
        bool, typer.Option("--communes", help="the communes and wards' report")
    ] = False,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="xlsx, csv or png (the chart); default: from the file's name",
            metavar="FORMAT",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", help="the file to write; - for standard output", metavar="FILE"),
    ] = None,
    excel: Annotated[
        bool,
        typer.Option(
            "--excel",
            help="CSV for Excel with Vietnamese regional settings: ; between values, decimal "
            "commas",
        ),
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Weekly coverage reports. With --week and --output: write a week's report to a file, the
    province's (every agency, and the communes and wards), one agency's and its sub-units'
    (--agency CODE), or the communes and wards' (--communes); the last complete week is stored
    first when it is not yet, an older week must have been stored. Or: snapshot (store a week
    now), weeks (the stored weeks), forget (delete a stored week)."""
    if ctx.invoked_subcommand is not None:
        if any(v is not None for v in (week, agency, fmt, output, config)) or communes or excel:
            raise typer.BadParameter(
                f"options of the report go after 'report', not before {ctx.invoked_subcommand!r}"
            )
        return
    from models.agencies import normalize_code

    settings = _settings(config)
    tz = ZoneInfo(settings.bot.timezone)
    the_week = _week(week, tz)
    code = None
    if agency is not None:
        try:
            code = normalize_code(agency)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--agency") from None
    if code is not None and communes:
        raise typer.BadParameter("give --agency or --communes, not both")
    if output is None:
        raise typer.BadParameter("is required, e.g. --output report.xlsx", param_hint="--output")
    fmt = _format(fmt, output)
    if excel and fmt != "csv":
        raise typer.BadParameter("is for a CSV file (--format csv)", param_hint="--excel")
    scope = "agency" if code else "communes" if communes else "province"

    async def work(session: AsyncSession) -> Report:
        from models.agencies import by_code
        from models.reports import build

        root = None
        if code is not None:
            root = await by_code(session, code)
            if root is None:
                raise _Refused(f"no agency with code {code}")
        with _refusals():
            return await build(session, scope=scope, tz=tz, now=_now(), week=the_week,
                               agency=root)  # fmt: skip

    built = _run(config, work)
    from bot.i18n import Translations
    from models import report_files

    t = Translations(default=settings.bot.default_locale).get(settings.bot.default_locale)
    if fmt == "xlsx":
        data = report_files.workbook(built, t, tz)
    elif fmt == "png":
        data = report_files.chart(built, t, tz)
    else:
        data = report_files.csv_bytes(built, t, excel_vn=excel)
    to_stdout = str(output) == STDOUT
    try:
        if to_stdout:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            output.write_bytes(data)
    except OSError as exc:
        typer.echo(f"error: {output}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None
    subject = f"agency {code}" if code else scope
    # the standard output holds the file: what it is goes to standard error
    where = "standard output" if to_stdout else str(output)
    typer.echo(f"{where}: {fmt}, week {the_week}, {subject}", err=to_stdout)
    typer.echo(_headline(built), err=to_stdout)
    if built.previous_week is None:
        typer.echo("no figures stored in time for the week before: no change shown",
                   err=to_stdout)  # fmt: skip
    if built.late:
        typer.echo(LATE_WARNING.format(week=the_week, taken=_local(built.taken_at, tz)),
                   err=True)  # fmt: skip


@report_app.command("snapshot")
def snapshot(
    week: WeekOpt = None,
    late: Annotated[
        bool,
        typer.Option(
            "--late",
            help="store a week older than the last complete one: counted at its end, but with "
            "today's agencies and health books",
        ),
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Store a week's figures now (once: a week already stored is left as it is), e.g. after
    a Monday the bot was not running. The last complete week is exact; an older week only
    with --late, and it is marked late."""
    settings = _settings(config)
    tz = ZoneInfo(settings.bot.timezone)
    the_week = _week(week, tz)

    async def work(session: AsyncSession) -> tuple[bool, bool, str, int, int]:
        from sqlalchemy import func, select

        from models.reports import is_late, take_snapshot
        from models.tables import AgencyWeek, ReportWeek, WardWeek

        had = await session.get(ReportWeek, the_week) is not None
        with _refusals():
            stored = await take_snapshot(session, the_week, tz, _now(), late=late)
        agencies = await session.scalar(
            select(func.count()).select_from(AgencyWeek).where(AgencyWeek.week == the_week)
        )
        wards = await session.scalar(
            select(func.count()).select_from(WardWeek).where(WardWeek.week == the_week)
        )
        taken = _local(stored.taken_at, tz)
        return had, is_late(stored), taken, agencies or 0, wards or 0

    had, was_late, taken, agencies, wards = _run(config, work)
    state = "already stored" if had else "stored"
    typer.echo(f"week {the_week} {state} (taken {taken}): {agencies} agencies, {wards} communes "
               f"and wards")  # fmt: skip
    if was_late:
        typer.echo(LATE_WARNING.format(week=the_week, taken=taken), err=True)


@report_app.command("forget")
def forget(
    week: WeekOpt = None,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask")] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="also a week whose Monday messages are already planned (those not "
            "sent yet are dropped)",
        ),
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Delete a stored week's figures, e.g. a week stored empty by mistake; it can be stored
    again (report snapshot --week W, --late for an older week). Asks first, unless --yes."""
    settings = _settings(config)
    tz = ZoneInfo(settings.bot.timezone)
    the_week = _week(week, tz)
    if not yes and not typer.confirm(
        f"delete the stored figures of week {the_week}?", default=False, err=True
    ):
        typer.echo("nothing deleted", err=True)
        raise typer.Exit(1)

    async def work(session: AsyncSession) -> str:
        from models.reports import forget_week
        from models.tables import ReportWeek

        stored = await session.get(ReportWeek, the_week)
        if stored is None:
            raise _Refused(f"week {the_week} is not stored")
        if stored.planned_at is not None and not force:
            raise _Refused(
                f"the messages of week {the_week} were planned at "
                f"{_local(stored.planned_at, tz)}: --force to delete it anyway"
            )
        await forget_week(session, the_week)
        return the_week

    typer.echo(f"week {_run(config, work)} deleted")


@report_app.command("weeks")
def weeks(config: ConfigOpt = None) -> None:
    """The weeks whose figures are stored, latest first: the moment counted at, when they were
    taken, when their Monday messages were planned."""
    settings = _settings(config)
    tz = ZoneInfo(settings.bot.timezone)

    async def work(session: AsyncSession) -> list[str]:
        from sqlalchemy import func, select

        from models.reports import is_late, stored_weeks
        from models.tables import AgencyWeek

        rows = await session.execute(
            select(AgencyWeek.week, func.count()).group_by(AgencyWeek.week)
        )
        counts = {week: n for week, n in rows}
        return [
            f"{w.week}  counted at {_local(w.moment, tz)}  taken {_local(w.taken_at, tz)}"
            f"{' (late)' if is_late(w) else ''}  planned {_local(w.planned_at, tz)}  "
            f"{counts.get(w.week, 0)} agencies"
            for w in await stored_weeks(session)
        ]

    rows = _run(config, work)
    typer.echo("\n".join(rows) if rows else "no week stored yet")
