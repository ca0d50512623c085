"""The command line of agencies: ``healthbook agencies import FILE.csv|--sample``, ``agencies
list [--under CODE]``, ``agencies add`` and ``agencies set-head CODE``. Registered on
:data:`bot.cli.app` when :mod:`bot.cli` loads.

Options are checked before the database is opened (a usage error: exit status 2); a refusal
(an unknown code…) is one line and exit status 1; a CSV
file that cannot be imported lists every problem with its line, and nothing of it is written.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bot.cli import ConfigOpt, _account_option, _Command, _group, _with_database, app
from bot.cli_roles import TelegramIdOpt, ZaloIdOpt

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from models.agencies import ImportResult, Listed

agencies_app = _group("Agencies and their heads: import, list, add, set-head.")
app.add_typer(agencies_app, name="agencies")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


#: problems of a CSV file listed (the others counted)
SHOWN_PROBLEMS = 50


def _code(text: str, hint: str) -> str:
    """An agency code as stored, or a usage error naming the option."""
    from models.agencies import normalize_code

    try:
        return normalize_code(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=hint) from None


@agencies_app.command("import", cls=_Command)
def agencies_import(
    file: Annotated[
        Path | None,
        typer.Argument(
            help="CSV file: code,name,parent_code,kind,expected_staff (UTF-8, , or ;)",
            metavar="FILE",
            show_default=False,
        ),
    ] = None,
    sample: Annotated[
        bool, typer.Option("--sample", help="the sample of Lào Cai's agencies shipped")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Import agencies from a CSV file. Each is created or updated by its code; all or
    nothing: a file with any problem is refused, every problem listed with its line. With
    --sample, the shipped slice of Lào Cai's agencies."""
    from models import agencies as ag

    if (file is None) == (not sample):
        raise typer.BadParameter("give a CSV file or --sample (one of them)")
    source = ag.SAMPLE if sample else file
    assert source is not None
    try:
        with source.open("rb") as stream:  # a larger file is refused: no need to read it all
            data = stream.read(ag.MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot read {source}: {exc.strerror}", param_hint="FILE"
        ) from None

    async def work(session: AsyncSession) -> ImportResult:
        return await ag.import_csv(session, data, _now())

    try:
        done = _with_database(config, work)
    except ag.CsvError as exc:
        count = len(exc.problems)
        typer.echo(
            f"error: {source.name}: nothing was imported "
            f"({count} problem{'s' if count != 1 else ''})",
            err=True,
        )
        for problem in exc.problems[:SHOWN_PROBLEMS]:
            typer.echo(f"  {problem}", err=True)
        if count > SHOWN_PROBLEMS:
            typer.echo(f"  … and {count - SHOWN_PROBLEMS} more problems", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"{done.created} created, {done.updated} updated, {done.unchanged} unchanged"
        + (f", {done.repathed} sub-units moved with their parent" if done.repathed else "")
    )


def _line(listed: Listed) -> str:
    """An agency's line (its name safe for a terminal, whatever an older import let in)."""
    from models.agencies import printable

    agency = listed.agency
    return (
        f"{'  ' * listed.depth}{agency.code}  {printable(agency.name)}  "
        f"{listed.members}/{agency.expected_staff}"
    )


@agencies_app.command("list")
def agencies_list(
    under: Annotated[
        str | None,
        typer.Option("--under", help="only this agency and its sub-units", metavar="CODE"),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """List the tree of agencies. Sub-units indented under their parent: code, name, and
    members now against the expected staff (its own, without its sub-units)."""
    from models import agencies as ag
    from models.errors import DomainError

    code = _code(under, "--under") if under is not None else None

    async def work(session: AsyncSession) -> list[str]:
        top = None
        if code is not None:
            top = await ag.by_code(session, code)
            if top is None:
                raise DomainError("agency.unknown_code", code=code)
        return [_line(listed) for listed in await ag.listing(session, top)]

    rows = _with_database(config, work)
    typer.echo("\n".join(rows) if rows else "no agencies (healthbook agencies import FILE.csv)")


@agencies_app.command("add")
def agencies_add(
    code: Annotated[
        str, typer.Option("--code", help="its code (letters, digits, - _ .)", metavar="CODE")
    ],
    name: Annotated[str, typer.Option("--name", help="its full name", metavar="NAME")],
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            help="department, commune, school, hospital, business, unit or other",
            metavar="KIND",
        ),
    ],
    parent: Annotated[
        str | None,
        typer.Option("--parent", help="the code of the agency it belongs to", metavar="CODE"),
    ] = None,
    expected: Annotated[
        int, typer.Option("--expected", help="its own expected staff", metavar="N")
    ] = 0,
    config: ConfigOpt = None,
) -> None:
    """Add one agency (under --parent, else at the top of the tree)."""
    from models import agencies as ag

    code = _code(code, "--code")
    reserved = ag.code_problem(code)
    if reserved is not None:
        raise typer.BadParameter(reserved, param_hint="--code")
    parent_code = _code(parent, "--parent") if parent is not None else None
    if parent_code == code:
        raise typer.BadParameter("an agency cannot be its own parent", param_hint="--parent")
    try:
        name = ag.clean_name(name)
    except ag.TextProblem as exc:
        raise typer.BadParameter(str(exc), param_hint="--name") from None
    if kind.strip().lower() not in ag.KINDS:
        raise typer.BadParameter(f"one of {', '.join(ag.KINDS)}", param_hint="--kind")
    if not 0 <= expected <= ag.EXPECTED_MAX:
        raise typer.BadParameter(f"a whole number 0 to {ag.EXPECTED_MAX}", param_hint="--expected")

    async def work(session: AsyncSession) -> str:
        agency = await ag.add(session, code, name, kind, parent_code, expected, _now())
        return f"agency {agency.code} added ({agency.name})"

    typer.echo(_with_database(config, work))


@agencies_app.command("set-head", cls=_Command)
def agencies_set_head(
    code: Annotated[str, typer.Argument(help="the agency's code", metavar="CODE")],
    telegram_id: TelegramIdOpt = None,
    zalo_id: ZaloIdOpt = None,
    remove: Annotated[
        bool, typer.Option("--remove", help="take the head role away instead")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Make a person a head of an agency. They see and remove its members and get the weekly
    report of its tree. Give exactly one of --telegram-id and --zalo-id (the person sees
    theirs with /agency in the chat); a person who never wrote to the bot gets an account
    now, as with admin add. --remove takes the role away."""
    from models import agencies as ag
    from models import healthbook as hb
    from models.errors import DomainError

    agency_code = _code(code, "CODE")
    channel, external_id = _account_option(telegram_id, zalo_id)

    async def work(session: AsyncSession) -> str:
        agency = await ag.by_code(session, agency_code)
        if agency is None:
            raise DomainError("agency.unknown_code", code=agency_code)
        who = f"{channel} user {external_id}"
        if remove:
            found = await hb.find_account(session, channel, external_id)
            done = found is not None and await ag.remove_head(session, agency, found)
            return (
                f"{who} is no longer a head of {agency.code}"
                if done
                else (f"{who} was not a head of {agency.code}")
            )
        account = await hb.find_account(session, channel, external_id)
        created = account is None
        if account is None:  # never wrote to the bot, or only what makes no account
            account = await hb.ensure_account(session, channel, external_id)
        done = await ag.set_head(session, agency, account)
        if not done:
            return f"{who} was already a head of {agency.code}"
        return f"{who} is now a head of {agency.code}" + (
            " (a new account: they have not used the bot yet; /agency shows them their staff)"
            if created
            else ""
        )

    typer.echo(_with_database(config, work))
