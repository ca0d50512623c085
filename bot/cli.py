"""The ``healthbook`` command: run the bot, try it in the terminal, manage the database."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand

from bot.cli_audit import audit_app as _audit_app
from bot.settings import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

    from models.certificates import KeyStore
    from models.errors import DomainError

T = TypeVar("T")

# Help as plain text (rich_markup_mode=None): Rich panels show a type for every option,
# "<bool>" for --help included, and keep docstrings' line breaks in the list of commands.
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="The health-book bot: run it, try it in this terminal, manage its database and data.",
    pretty_exceptions_show_locals=False,  # locals may hold personal data (older typer shows them)
)


class _Command(TyperCommand):
    """A command with arguments, its help as click writes it: ``healthbook sites import
    [OPTIONS] FILE``, where typer writes ``{FILE}`` and adds each argument's type."""

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                pieces.append(_argument_name(param))
            else:
                pieces += param.get_usage_pieces(ctx)
        return pieces

    def format_options(self, ctx: typer.Context, formatter: Any) -> None:
        arguments, options = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                arguments.append((_argument_name(param), record[1]))
            else:
                options.append(record)
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _argument_name(param: Any) -> str:
    return param.metavar or (param.name or "").upper()


def _group(help: str) -> typer.Typer:
    """A group of subcommands (its help as plain text too)."""
    return typer.Typer(no_args_is_help=True, rich_markup_mode=None, help=help)


db_app = _group("Database schema (Alembic migrations).")
app.add_typer(db_app, name="db")

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="TOML settings file (default: ./config.toml)", metavar="FILE"
    ),
]

NO_TOKEN = """No bot token is configured (neither [telegram] token nor [zalo] token).

To run the real bot:
  1. In Telegram, talk to @BotFather, send /newbot and follow its questions.
  2. Put the token it gives you in a file config.toml, these two lines:
       [telegram]
       token = "123456:ABC..."
     (or set the environment variable HEALTHBOOK_TELEGRAM__TOKEN instead).
  3. healthbook run --config config.toml
For Zalo, create a bot on the Zalo Bot Platform and put its token under [zalo] instead
(or as well: both are served by one process).

To try the bot right now, with no token and no network:
  healthbook demo
"""


# Bounds of `sessions create` (models.campaigns checks them too; the CLI says so before any work).
MAX_CAPACITY = 10_000
MAX_SPAN_DAYS = 731

# The demo's own database, in the current directory: never the deployment's ([database] url),
# visible to whoever tries the demo (delete it to start over), and one per directory tried in.
DEMO_DATABASE = Path("healthbook-demo.db")


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _check_translations(settings: Settings) -> None:
    """Stop before anything starts if a catalogue is missing or incomplete (the bot would show
    residents raw message keys)."""
    from bot.i18n import CatalogueError, Translations

    try:
        Translations(default=settings.bot.default_locale)
    except CatalogueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _served_settings(config: Path | None) -> Settings:
    """What ``run`` and ``dispatch`` need before they start: settings with a token (else exit
    2), complete catalogues, logging, and the database migrated (before the bot reads its
    conversations)."""
    settings = _settings(config)
    if settings.telegram.token is None and settings.zalo.token is None:
        typer.echo(NO_TOKEN, err=True)
        raise typer.Exit(2)
    _check_translations(settings)
    from bot.logs import setup_logging

    setup_logging(settings.logging.level)
    _prepare_database(settings)
    if settings.roles.admins:  # [roles] admins: admins from the start
        from models.roles import grant_listed

        admins = settings.roles.admins
        _with_database(config, lambda session: grant_listed(session, admins), upgrade_schema=False)
    return settings


@app.command()
def run(config: ConfigOpt = None) -> None:
    """Run the bot (needs a token). Every messenger with a token (Telegram, Zalo or both) is
    served by this one process; it waits for the network if it is down."""
    settings = _served_settings(config)
    from bot.serve import build, serve_async

    try:
        served = build(settings)
    except ConfigError as exc:  # an unusable certificate key, say
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(asyncio.run(serve_async(served, settings)))


@app.command()
def dispatch(config: ConfigOpt = None) -> None:
    """Send the outbox, without polling. Reminders, waitlist offers and broadcasts, for a bot
    run with [dispatch] in_bot = false. On SQLite run one dispatcher only; on PostgreSQL any
    number. SIGINT or SIGTERM stops it."""
    settings = _served_settings(config)
    from bot.app import build_services
    from bot.serve import dispatch_async

    try:
        services = build_services(settings)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(asyncio.run(dispatch_async(settings, services)))


def _prepare_database(settings: Settings) -> None:
    """Upgrade the schema (when ``upgrade_on_start``) and refuse a database the bot cannot serve:
    one that does not answer, or whose commune/ward codes follow another reference release."""
    from sqlalchemy.exc import SQLAlchemyError

    from bot.db import upgrade_url
    from models.reference_codes import ReferenceMismatch

    try:
        upgrade_url(
            settings.database.url, upgrade_schema=settings.database.upgrade_on_start, check=True
        )
    except ReferenceMismatch as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except (OSError, SQLAlchemyError) as exc:  # unreachable, refused, or not a database at all
        raise _database_failure(exc) from None


def _database_failure(exc: Exception) -> typer.Exit:
    """Print, in one line, why the database cannot be used; the exit (status 2) to raise."""
    from bot.logs import describe

    typer.echo(f"error: cannot use the database ({describe(exc)}): check [database] url", err=True)
    return typer.Exit(2)


@app.command()
def demo(
    config: ConfigOpt = None,
    database: Annotated[
        str | None,
        typer.Option(
            help="database URL for the demo, used as it is (default: ./healthbook-demo.db, "
            "with sample campaigns, sites and sessions)",
            metavar="URL",
            show_default=False,
        ),
    ] = None,
    language: Annotated[
        str,
        typer.Option(help="the demo user's Telegram language (Zalo tells none)", metavar="LANG"),
    ] = "vi",
    channel: Annotated[
        str,
        typer.Option(
            help="the messenger to simulate: telegram (buttons) or zalo (numbered text)",
            metavar="NAME",
        ),
    ] = "telegram",
) -> None:
    """Chat with the bot in this terminal. No token and no network: the messenger's API
    (Telegram, or Zalo with --channel zalo) is simulated on this computer."""
    from pydantic import ValidationError
    from sqlalchemy.engine import make_url

    from bot.demo import CHANNELS, run_demo
    from bot.settings import DatabaseSettings

    if channel not in CHANNELS:
        typer.echo(f"error: --channel: one of {', '.join(CHANNELS)}, not {channel!r}", err=True)
        raise typer.Exit(2)
    settings = _settings(config)
    _check_translations(settings)
    if database is None:  # never the [database] of the settings: it may be the deployment's
        if not os.access(DEMO_DATABASE.resolve().parent, os.W_OK):
            typer.echo(
                f"error: the demo keeps its database in the current directory, "
                f"{DEMO_DATABASE.resolve().parent}, which is read-only here: run it from "
                "a directory you can write to, or give --database URL",
                err=True,
            )
            raise typer.Exit(2)
        url = f"sqlite+aiosqlite:///{DEMO_DATABASE.resolve()}"
        settings.database = DatabaseSettings(url=url, upgrade_on_start=True)
        note = f"{DEMO_DATABASE.resolve()}, the demo's own (delete it to start over)"
    else:
        try:
            settings.database = DatabaseSettings(
                **{**settings.database.model_dump(), "url": database}
            )
        except ValidationError as exc:
            typer.echo(f"error: --database: {exc.errors()[0]['msg']}", err=True)
            raise typer.Exit(2) from None
        note = make_url(settings.database.url).render_as_string(hide_password=True)
    typer.echo(f"(database: {note})")
    try:
        asyncio.run(
            run_demo(
                settings,
                language=language,
                sample_data=database is None,
                channel="zalo" if channel == "zalo" else "telegram",
            )
        )
    except KeyboardInterrupt:  # Ctrl-C: the bot was stopped cleanly all the same
        typer.echo("\nbye")


@app.command()
def start(config: ConfigOpt = None) -> None:
    """Run the bot, or the demo if there is no token. The terminal demo starts when no token
    is configured."""
    settings = _settings(config)
    if settings.telegram.token is None and settings.zalo.token is None:
        typer.echo(
            "No Telegram or Zalo token configured: starting the terminal demo "
            "(see README to run the real bot).\n",
            err=True,
        )
        demo(config=config, database=None, language="vi", channel="telegram")
    else:
        run(config=config)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None) -> None:
    """Bring the database schema up to date."""
    from sqlalchemy.exc import SQLAlchemyError

    from bot.db import upgrade_url

    settings = _settings(config)
    try:
        upgrade_url(settings.database.url)
    except (OSError, SQLAlchemyError) as exc:
        raise _database_failure(exc) from None
    typer.echo("database is up to date")


# --- vaccination booking: campaigns, sites, sessions, staff, certificates ------------------------

campaigns_app = _group("Vaccination campaigns (TOML files).")
sites_app = _group("Vaccination sites (CSV files).")
sessions_app = _group("Vaccination sessions: days, hours, places.")
staff_app = _group("Site staff who check people in.")
certificate_app = _group("Signed vaccination certificates.")
app.add_typer(campaigns_app, name="campaigns")
app.add_typer(sites_app, name="sites")
app.add_typer(sessions_app, name="sessions")
app.add_typer(staff_app, name="staff")
app.add_typer(certificate_app, name="certificate")
app.add_typer(_audit_app, name="audit")  # healthbook audit export (bot/cli_audit.py)


class _Unusable(Exception):
    """The database could not be opened or upgraded (``__cause__`` says why)."""


def _with_database(
    config: Path | None,
    work: Callable[[AsyncSession], Awaitable[T]],
    *,
    upgrade_schema: bool = True,
) -> T:
    """Run ``work`` in one transaction on a fresh engine (schema upgraded first unless
    ``upgrade_schema`` is false). A database that cannot be opened is one line and exit status 2;
    data and domain errors are printed, one per line, and exit with status 1."""
    settings = _settings(config)
    from sqlalchemy.exc import SQLAlchemyError

    from bot.db import (
        create_engine,
        session_factory,
        settle_connection_threads,
        transaction,
        upgrade,
    )
    from models.campaigns import DataError
    from models.errors import DomainError

    async def _run(engine: AsyncEngine) -> T:
        try:
            if upgrade_schema:
                await upgrade(engine)
            else:  # open it all the same: a failure is the database's, not the work's
                async with engine.connect():
                    pass
        except (OSError, SQLAlchemyError) as exc:
            raise _Unusable from exc
        async with transaction(session_factory(engine)) as session:
            return await work(session)

    async def _main() -> T:
        engine = create_engine(settings.database.url, pool_size=settings.database.pool_size)
        try:
            result = await _run(engine)
        except BaseException:
            await engine.dispose()
            await settle_connection_threads()  # no thread traceback once the loop has closed
            raise
        await engine.dispose()
        return result

    try:
        return asyncio.run(_main())
    except _Unusable as exc:
        assert isinstance(exc.__cause__, Exception)
        raise _database_failure(exc.__cause__) from None
    except SQLAlchemyError as exc:  # the work itself: the database refused a statement
        from bot.logs import describe

        typer.echo(f"error: the database refused the change ({describe(exc)})", err=True)
        raise typer.Exit(1) from None
    except DataError as exc:
        typer.echo(f"error: {exc.source}:", err=True)
        for problem in exc.problems:
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(1) from None
    except DomainError as exc:
        typer.echo(f"error: {_render_error(settings, exc)}", err=True)
        raise typer.Exit(1) from None


def _render_error(settings: Settings, err: DomainError) -> str:
    """A refusal as residents read it, in the default language; the values its message does not
    show (the code that was not found…) follow in brackets, as the administrator typed them."""
    from bot.i18n import Translations
    from handlers.common import render_error

    t = Translations(default=settings.bot.default_locale).get(None)
    template = t.messages.get(err.key) or t.fallback.get(err.key) or err.key  # unfilled
    unshown = [str(v) for k, v in err.params.items() if "{" + k + "}" not in template]
    return render_error(t, err) + (f" ({', '.join(unshown)})" if unshown else "")


def _local_today(config: Path | None) -> dt.date:
    from zoneinfo import ZoneInfo

    return dt.datetime.now(ZoneInfo(_settings(config).bot.timezone)).date()


def _parse(kind: str, text: str, parser: Callable[[str], T]) -> T:
    try:
        return parser(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a {kind}") from None


def _ages(low: int, high: int | None) -> str:
    def fmt(months: int) -> str:
        return f"{months // 12}y" if months % 12 == 0 else f"{months}m"

    if high is None:
        return f"{fmt(low)}+"
    return f"{fmt(low)}-{high // 12}y" if high % 12 == 11 else f"{fmt(low)}-{high}m"


@campaigns_app.command("load", cls=_Command)
def campaigns_load(
    file: Annotated[
        Path, typer.Argument(help="campaign TOML file", exists=True, dir_okay=False, metavar="FILE")
    ],
    config: ConfigOpt = None,
) -> None:
    """Load campaigns from a TOML file. Its vaccines and campaigns are created or updated
    (by code)."""
    from models.campaigns import load_campaign_file

    async def work(session: AsyncSession) -> list[str]:
        campaigns = await load_campaign_file(session, file)
        return [
            f"{c.code}: {c.doses} dose(s), vaccines {', '.join(c.vaccine_codes)}" for c in campaigns
        ]

    for line in _with_database(config, work):
        typer.echo(f"loaded {line}")


@campaigns_app.command("list")
def campaigns_list(config: ConfigOpt = None) -> None:
    """List the campaigns."""
    from models.campaigns import list_campaigns

    async def work(session: AsyncSession) -> list[str]:
        rows = []
        for c in await list_campaigns(session):
            period = f"{c.starts_on}..{c.ends_on or ''}"
            state = "active" if c.active else "inactive"
            ages = _ages(c.min_age_months, c.max_age_months)
            rows.append(
                f"{c.code:<22} {c.doses} dose(s)  ages {ages:<8} {period:<23} {state:<8}"
                f" {c.name}  [{', '.join(c.vaccine_codes)}]"
            )
        return rows

    rows = _with_database(config, work)
    typer.echo("\n".join(rows) if rows else "no campaigns (try: healthbook sample-data)")


@sites_app.command("import", cls=_Command)
def sites_import(
    file: Annotated[
        Path, typer.Argument(help="sites CSV file", exists=True, dir_okay=False, metavar="FILE")
    ],
    config: ConfigOpt = None,
) -> None:
    """Create or update sites from a CSV file (by code). Nothing is written if a row is bad;
    the file is CSV UTF-8, comma-separated, its first line naming the columns."""
    from models.campaigns import import_sites_csv

    result = _with_database(config, lambda session: import_sites_csv(session, file))
    typer.echo(f"sites: {result.created} created, {result.updated} updated")


@sites_app.command("list")
def sites_list(
    config: ConfigOpt = None,
    province: Annotated[
        int | None, typer.Option(help="current province code, e.g. 15", metavar="CODE")
    ] = None,
) -> None:
    """List the sites."""
    from models import validators as v
    from models.campaigns import list_sites

    async def work(session: AsyncSession) -> list[str]:
        rows = []
        for s in await list_sites(session, province):
            try:
                ward = v.ward_name(s.ward_code)
            except KeyError:
                ward = f"ward {s.ward_code}?"
            state = "" if s.active else "  (inactive)"
            rows.append(
                f"{s.code:<20} {s.kind:<16} {ward:<22} {s.lat:.4f},{s.lon:.4f}  {s.name}{state}"
            )
        return rows

    rows = _with_database(config, work)
    typer.echo("\n".join(rows) if rows else "no sites (try: healthbook sample-data)")


@sessions_app.command("create")
def sessions_create(
    campaign: Annotated[str, typer.Option("--campaign", help="campaign code", metavar="CODE")],
    start_date: Annotated[
        str, typer.Option("--from", help="first date, YYYY-MM-DD", metavar="DATE")
    ],
    site: Annotated[
        list[str] | None, typer.Option("--site", help="site code (repeatable)", metavar="CODE")
    ] = None,
    all_sites: Annotated[bool, typer.Option("--all", help="every active site")] = False,
    weeks: Annotated[
        int | None,
        typer.Option(help="number of weeks (default 4)", min=1, max=104, metavar="N"),
    ] = None,
    days: Annotated[
        int | None,
        typer.Option(
            help="number of days, instead of weeks", min=1, max=MAX_SPAN_DAYS, metavar="N"
        ),
    ] = None,
    weekdays: Annotated[
        str, typer.Option(help="e.g. mon-fri, mon,wed,fri, all", metavar="DAYS")
    ] = "mon-fri",
    start: Annotated[str, typer.Option(help="start time, HH:MM", metavar="HH:MM")] = "07:30",
    end: Annotated[str, typer.Option(help="end time, HH:MM", metavar="HH:MM")] = "11:30",
    capacity: Annotated[
        int,
        typer.Option(help="places per session", min=1, max=MAX_CAPACITY, metavar="N"),
    ] = 60,
    config: ConfigOpt = None,
) -> None:
    """Create sessions in bulk. Sessions that already exist are left alone; a period or a
    capacity out of range is refused before anything is written."""
    from models.campaigns import create_sessions, parse_weekdays

    if bool(site) == all_sites:
        raise typer.BadParameter("give --site CODE (one or more) or --all")
    if weeks is not None and days is not None:
        raise typer.BadParameter("give --weeks or --days, not both")
    first = _parse("date (YYYY-MM-DD)", start_date, dt.date.fromisoformat)
    t_start = _parse("time (HH:MM)", start, dt.time.fromisoformat)
    t_end = _parse("time (HH:MM)", end, dt.time.fromisoformat)

    async def work(session: AsyncSession) -> Any:
        return await create_sessions(
            session,
            None if all_sites else site,
            campaign,
            first,
            days=days,
            weeks=weeks,
            weekdays=parse_weekdays(weekdays),
            start=t_start,
            end=t_end,
            capacity=capacity,
        )

    made = _with_database(config, work)
    typer.echo(
        f"sessions: {made.created} created, {made.existing} already there, "
        f"{made.outside_campaign} skipped (outside the campaign's dates)"
    )


@sessions_app.command("list")
def sessions_list(
    site: Annotated[str | None, typer.Option(help="site code", metavar="CODE")] = None,
    date: Annotated[str | None, typer.Option(help="YYYY-MM-DD", metavar="DATE")] = None,
    config: ConfigOpt = None,
) -> None:
    """List sessions and their booked places. From today on, unless --date is given."""
    from models.campaigns import list_sessions

    day = _parse("date (YYYY-MM-DD)", date, dt.date.fromisoformat) if date else None
    from_date = None if day else _local_today(config)

    async def work(session: AsyncSession) -> list[str]:
        found = await list_sessions(session, site_code=site, date=day, from_date=from_date)
        return [
            f"{s.date} {s.start_time:%H:%M}-{s.end_time:%H:%M}  {st.code:<20} {c.code:<20}"
            f" {s.booked:>4}/{s.capacity:<4} booked"
            + ("  cancelled" if s.cancelled_at is not None else "")
            for s, st, c in found
        ]

    rows = _with_database(config, work)
    typer.echo("\n".join(rows) if rows else "no sessions")


@app.command("sample-data")
def sample_data(
    config: ConfigOpt = None,
    today: Annotated[
        str | None, typer.Option(help="first day, YYYY-MM-DD (default today)", metavar="DATE")
    ] = None,
) -> None:
    """Load sample campaigns, sites and sessions. Two campaigns, Lào Cai sites and 4 weeks of
    sessions; loading them again changes nothing."""
    from models.campaigns import load_sample_data

    first = _parse("date", today, dt.date.fromisoformat) if today else _local_today(config)
    summary = _with_database(config, lambda session: load_sample_data(session, first))
    typer.echo(
        f"sample data: {summary['campaigns']} campaigns, {summary['sites']} sites, "
        f"{summary['sessions_created']} sessions created "
        f"({summary['sessions_existing']} already there)"
    )


@staff_app.command("add")
def staff_add(
    site: Annotated[str, typer.Option("--site", help="site code", metavar="CODE")],
    telegram_id: Annotated[
        str | None,
        typer.Option("--telegram-id", help="the person's Telegram id (a number)", metavar="ID"),
    ] = None,
    zalo_id: Annotated[
        str | None,
        typer.Option("--zalo-id", help="the person's Zalo id (letters and digits)", metavar="ID"),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Let a Telegram or Zalo user check people in at a site. They also record doses there
    (role site_staff). Give exactly one of --telegram-id and --zalo-id."""
    from models.checkin import grant_staff_to, staff_external_id

    if (telegram_id is None) == (zalo_id is None):
        raise typer.BadParameter("give exactly one of --telegram-id and --zalo-id")
    channel, raw = ("telegram", telegram_id) if telegram_id is not None else ("zalo", zalo_id)
    assert raw is not None
    option = f"--{channel}-id"
    try:
        external_id = staff_external_id(channel, raw)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None

    async def work(session: AsyncSession) -> str:
        account = await grant_staff_to(session, channel, external_id, site)
        return account.role

    role = _with_database(config, work)
    typer.echo(f"{channel} user {external_id} is now {role} at {site}")


@staff_app.command("list")
def staff_list(config: ConfigOpt = None) -> None:
    """List site staff and their sites."""
    from sqlalchemy import select

    from models.tables import Account, Site, StaffSite

    async def work(session: AsyncSession) -> list[str]:
        rows = await session.execute(
            select(Account.channel, Account.external_id, Account.role, Site.code)
            .add_columns(Account.suspended_at)
            .join(StaffSite, StaffSite.account_id == Account.id)
            .join(Site, Site.id == StaffSite.site_id)
            .order_by(Site.code, Account.external_id)
        )
        return [
            f"{code:<20} {channel}:{ext}  ({role}{', suspended' if suspended else ''})"
            for channel, ext, role, code, suspended in rows
        ]

    rows = _with_database(config, work)
    typer.echo("\n".join(rows) if rows else "no site staff")


reminders_app = _group("Reminder rules: when each kind goes.")
app.add_typer(reminders_app, name="reminders")


def _rule_row(rule: Any, pending: int) -> str:
    at = f"{rule.delivery_time:%H:%M}" if rule.delivery_time is not None else "-"
    texts = ",".join(sorted(rule.texts or {})) or "-"
    return (
        f"{rule.kind:<22} {rule.anchor:<12} {rule.offset:>6} {rule.unit:<8} {at:<6} "
        f"{'yes' if rule.quiet_ok else 'no':<6} {'yes' if rule.active else 'no':<6} "
        f"{texts:<8} {pending:>7}"
    )


_RULE_HEADER = (
    f"{'kind':<22} {'anchor':<12} {'offset':>6} {'unit':<8} {'at':<6} {'quiet':<6} "
    f"{'active':<6} {'texts':<8} {'pending':>7}"
)


@reminders_app.command("list")
def reminders_list(config: ConfigOpt = None) -> None:
    """List the reminder rules. Kind, anchor, offset and unit, delivery time (local), whether
    it may go in quiet hours, active, languages with their own text, reminders pending."""
    from models import outbox
    from models import reminders as rm

    async def work(session: AsyncSession) -> list[str]:
        rules = await outbox.rules(session)
        pending = await rm.pending_counts(session)
        return [_rule_row(rules[k], pending.get(k, 0)) for k in sorted(rules)]

    rows = _with_database(config, work)
    typer.echo("\n".join([_RULE_HEADER, *rows]))


def _clock(text: str) -> dt.time | None:
    """``--at``: HH:MM (24-hour), or ``none``."""
    if text.strip().lower() == "none":
        return None
    hour, sep, minute = text.partition(":")
    if not (sep and hour.isascii() and hour.isdigit() and minute.isascii() and minute.isdigit()
            and len(hour) <= 2 and len(minute) == 2 and int(hour) < 24 and int(minute) < 60):
        raise typer.BadParameter(f"{text!r} is not a time HH:MM (or none)", param_hint="--at")
    return dt.time(int(hour), int(minute))


@reminders_app.command("set", cls=_Command)
def reminders_set(
    kind: Annotated[str, typer.Argument(help="the kind of reminder (see reminders list)")],
    offset: Annotated[
        int | None, typer.Option(help="units from the anchor (negative: before)", metavar="N")
    ] = None,
    unit: Annotated[
        str | None, typer.Option(help="minutes, hours or days", metavar="UNIT")
    ] = None,
    at: Annotated[
        str | None,
        typer.Option("--at", help="local delivery time HH:MM, or none", metavar="HH:MM"),
    ] = None,
    quiet_ok: Annotated[
        bool | None,
        typer.Option("--quiet-ok/--no-quiet-ok", help="may go during the quiet hours"),
    ] = None,
    active: Annotated[bool | None, typer.Option("--on/--off", help="sent or not")] = None,
    text: Annotated[
        list[str] | None,
        typer.Option(
            "--text",
            help="this language's own text, with the catalogue's placeholders "
            "(LANG= goes back to the catalogue's text)",
            metavar="LANG=TEXT",
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Change a reminder rule. The kind's pending reminders are planned again from their
    anchors (turning it off cancels them)."""
    from zoneinfo import ZoneInfo

    from bot.i18n import SUPPORTED
    from models import reminders as rm

    if unit is not None and unit not in ("minutes", "hours", "days"):
        raise typer.BadParameter(f"{unit!r}: use minutes, hours or days", param_hint="--unit")
    delivery: dt.time | bool | None = False if at is None else _clock(at)
    texts: dict[str, str | None] = {}
    for item in text or []:
        lang, sep, body = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r}: write LANG=TEXT", param_hint="--text")
        lang = lang.strip()
        try:
            texts[lang] = rm.check_text(kind, lang, body, SUPPORTED) if body else None
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--text") from None
    if (offset, unit, quiet_ok, active) == (None, None, None, None) and at is None and not texts:
        raise typer.BadParameter("nothing to change: give at least one option")
    settings = _settings(config)
    tz = ZoneInfo(settings.bot.timezone)

    async def work(session: AsyncSession) -> tuple[Any, int, int, int]:
        try:
            rule = await rm.set_rule(
                session,
                kind,
                offset=offset,
                unit=unit,
                delivery_time=delivery,
                quiet_ok=quiet_ok,
                active=active,
                texts=texts or None,
            )
        except ValueError as exc:
            raise _Refused(str(exc)) from None
        timing = rm.Timing(tz, settings.reminders.quiet, dt.datetime.now(dt.UTC))
        moved, cancelled = await rm.replan_kind(session, kind, timing)
        pending = (await rm.pending_counts(session)).get(kind, 0)
        return rule, moved, cancelled, pending

    try:
        rule, moved, cancelled, pending = _with_database(config, work)
    except _Refused as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(_RULE_HEADER)
    typer.echo(_rule_row(rule, pending))
    typer.echo(f"{kind}: {moved} pending reminders re-planned, {cancelled} cancelled")
    if rule.delivery_time is not None and not rule.quiet_ok and rule.active:
        from models.outbox import after_quiet_hours

        start, end = settings.reminders.quiet
        at_local = dt.datetime.combine(dt.date(2000, 1, 3), rule.delivery_time, tzinfo=tz)
        held = after_quiet_hours(at_local, settings.reminders.quiet, tz).astimezone(tz)
        if held != at_local:
            typer.echo(
                f"warning: {rule.delivery_time:%H:%M} is in the quiet hours "
                f"({start:%H:%M}–{end:%H:%M}): these reminders are held until {held:%H:%M}"
                + (" the next morning" if held.date() != at_local.date() else "")
                + " (--quiet-ok lets them go)",
                err=True,
            )


class _Refused(Exception):
    """A change the domain refused (said in one line, exit status 1)."""


def _key_store(config: Path | None) -> KeyStore:
    from bot.context import key_store

    return key_store(_settings(config))


def _key_failure(exc: Exception) -> typer.Exit:
    """Print why the keys cannot be used (never key material); the exit to raise."""
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(1)


@certificate_app.command("keygen")
def certificate_keygen(config: ConfigOpt = None) -> None:
    """Create the certificate signing key. It refuses to replace one: see rotate."""
    from models.certificates import KeyringError

    store = _key_store(config)
    try:
        kid = store.keygen()
    except (KeyringError, OSError) as exc:
        raise _key_failure(exc) from None
    typer.echo(f"created the certificate signing key {store.signing_path} (key id {kid})")
    typer.echo(
        f"Back up {store.signing_path} and {store.public_dir}: the public keys there verify "
        "every certificate ever signed."
    )


@certificate_app.command("rotate")
def certificate_rotate(
    config: ConfigOpt = None,
    compromised: Annotated[
        bool,
        typer.Option(
            "--compromised",
            help="the old key leaked: do not keep it, so certificates it signed stop being "
            "valid (their holders get new ones with /certificate)",
        ),
    ] = False,
) -> None:
    """Sign new certificates with a new key. The old public key is kept, so certificates
    already issued stay verifiable."""
    from models.certificates import KeyringError

    store = _key_store(config)
    try:
        old, new = store.rotate(keep_old=not compromised)
    except (KeyringError, OSError) as exc:
        raise _key_failure(exc) from None
    typer.echo(f"new certificate signing key {store.signing_path} (key id {new})")
    if compromised:
        typer.echo(f"certificates signed with key {old} are no longer valid")
    else:
        typer.echo(f"certificates signed with key {old} stay valid")
    typer.echo("Restart the bot to use the new key.")


@certificate_app.command("public-key")
def certificate_public_key(config: ConfigOpt = None) -> None:
    """Print the public keys that verify certificates. With their key ids, as PEM: all that an
    outside verifier needs (healthbook certificate verify --public-key FILE)."""
    from models.certificates import KeyringError, public_pem

    try:
        keyring = _key_store(config).load(create=False)
    except (KeyringError, OSError) as exc:
        raise _key_failure(exc) from None
    if not keyring.verifying:
        typer.echo("error: no certificate keys yet (healthbook certificate keygen)", err=True)
        raise typer.Exit(1)
    active = keyring.active_id
    ordered = sorted(keyring.verifying.items(), key=lambda item: item[0] != active)
    for kid, key in ordered:
        typer.echo(f"# key id {kid} ({'active' if kid == active else 'retired'})")
        typer.echo(public_pem(key), nl=False)


@certificate_app.command("verify", cls=_Command)
def certificate_verify(
    payload: Annotated[
        str, typer.Argument(help="the text of the certificate's QR code", metavar="PAYLOAD")
    ],
    config: ConfigOpt = None,
    public_key: Annotated[
        list[Path] | None,
        typer.Option(
            "--public-key",
            help="PEM file of public keys, e.g. saved from healthbook certificate public-key "
            "(repeatable; default: the keys of the bot's settings, no secret needed)",
            metavar="FILE",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Check a certificate's signature and show what it carries."""
    from models.certificates import Keyring, KeyringError, parse_public_keys, verify_certificate
    from models.errors import DomainError

    try:
        if public_key:
            keys = []
            for path in public_key:
                try:
                    keys += parse_public_keys(path.read_bytes(), str(path))
                except OSError as exc:
                    raise KeyringError(f"cannot read {path}: {exc.strerror}") from None
            keyring = Keyring.of_public(keys)
        else:
            keyring = _key_store(config).load(create=False)
    except KeyringError as exc:
        raise _key_failure(exc) from None
    if not keyring.verifying:
        typer.echo("error: no public keys to check with (see --public-key)", err=True)
        raise typer.Exit(2)
    try:
        data = verify_certificate(payload, keyring)
    except DomainError as err:
        if err.key == "certificate.outdated":
            typer.echo(
                "INVALID: an old-format (HB1) certificate, which can no longer be checked; "
                "its holder can get a new one with /certificate",
                err=True,
            )
        else:
            typer.echo(
                "INVALID: forged, altered, not a certificate, or signed by a key "
                "not among the public keys",
                err=True,
            )
        raise typer.Exit(1) from None
    typer.echo(
        f"valid certificate: {data['initials']}, born {data['birth_year']}; "
        f"issued {data['issued']}, key id {data['key_id']}"
    )
    for dose in data["doses"]:
        typer.echo(f"  {dose['date']}  {dose['vaccine']:<16} dose {dose['dose']}")


reference_app = _group("Reference data (administrative units).")
app.add_typer(reference_app, name="reference")


@reference_app.command("check")
def reference_check(config: ConfigOpt = None) -> None:
    """Find stored codes that the reference does not know. Lists province and commune/ward
    codes (codes, places and row counts only); exit status 1 if there are any, 2 if there is no
    database to check. It changes nothing."""
    from sqlalchemy.engine import Connection

    from models.reference import ADMIN_UNITS_VERSION

    missing = _missing_sqlite_file(_settings(config).database.url)
    if missing is not None:  # connecting would create it
        typer.echo(
            f"error: no database at {missing}: check [database] url "
            "(`healthbook db upgrade` creates one)",
            err=True,
        )
        raise typer.Exit(2)

    def inspect(conn: Connection) -> tuple[str | None, str | None, str | None, list[Any]]:
        from alembic.migration import MigrationContext
        from alembic.script import ScriptDirectory

        from bot.db import alembic_config
        from models.reference_codes import recorded_version, unknown_codes

        current = MigrationContext.configure(conn).get_current_revision()
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        if current is None or current != head:
            return current, head, None, []
        return current, head, recorded_version(conn), unknown_codes(conn)

    async def work(session: AsyncSession) -> tuple[str | None, str | None, str | None, list[Any]]:
        conn = await session.connection()
        return await conn.run_sync(inspect)

    current, head, recorded, unknown = _with_database(config, work, upgrade_schema=False)
    if current is None:
        typer.echo(
            "error: the database has no tables yet, so nothing to check: check [database] url "
            "(`healthbook db upgrade` creates them)",
            err=True,
        )
        raise typer.Exit(2)
    if current != head:
        typer.echo(
            f"error: the database schema is at revision {current}, this bot's is {head}: "
            "run `healthbook db upgrade`, then check again",
            err=True,
        )
        raise typer.Exit(2)
    typer.echo(f"administrative units: bot uses {ADMIN_UNITS_VERSION}, database follows {recorded}")
    for item in unknown:
        typer.echo(f"  not in {ADMIN_UNITS_VERSION}: {item}")
    if recorded != ADMIN_UNITS_VERSION or unknown:
        raise typer.Exit(1)
    typer.echo("every stored code is in the reference")


def _missing_sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL when it does not exist (``None`` for any other database)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    name = parsed.database
    if parsed.get_backend_name() != "sqlite" or not name or name == ":memory:":
        return None
    if name.startswith("file:"):  # a URI filename: ?mode=… decides, let SQLite say
        return None
    path = Path(name)
    return None if path.exists() else path.resolve()


# --- admins, broadcasts, cancelling a session -------------------------------------------------

admin_app = _group("Admins of the health department: /broadcast in the chat.")
broadcast_app = _group("Messages to residents, sent by the bot's dispatcher.")
app.add_typer(admin_app, name="admin")
app.add_typer(broadcast_app, name="broadcast")


def _account_option(telegram_id: str | None, zalo_id: str | None) -> tuple[str, str]:
    """The channel and strictly checked id of exactly one of --telegram-id and --zalo-id."""
    from models.checkin import staff_external_id

    if (telegram_id is None) == (zalo_id is None):
        raise typer.BadParameter("give exactly one of --telegram-id and --zalo-id")
    channel, raw = ("telegram", telegram_id) if telegram_id is not None else ("zalo", zalo_id)
    assert raw is not None
    try:
        return channel, staff_external_id(channel, raw)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=f"--{channel}-id") from None


@admin_app.command("add")
def admin_add(
    telegram_id: Annotated[
        str | None,
        typer.Option("--telegram-id", help="the person's Telegram id (a number)", metavar="ID"),
    ] = None,
    zalo_id: Annotated[
        str | None,
        typer.Option("--zalo-id", help="the person's Zalo id (letters and digits)", metavar="ID"),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Make a Telegram or Zalo user an admin (role admin). Admins send /broadcast and act as
    staff at every site. Give exactly one of --telegram-id and --zalo-id. Idempotent."""
    from models.roles import grant_admin

    channel, external_id = _account_option(telegram_id, zalo_id)

    async def work(session: AsyncSession) -> str:
        return (await grant_admin(session, channel, external_id)).role

    role = _with_database(config, work)
    typer.echo(f"{channel} user {external_id} is now {role}")


@admin_app.command("list")
def admin_list(config: ConfigOpt = None) -> None:
    """List the admins."""
    from models.roles import admins

    async def work(session: AsyncSession) -> list[str]:
        return [f"{a.channel}:{a.external_id}" for a in await admins(session)]

    rows = _with_database(config, work)
    typer.echo("\n".join(rows) if rows else "no admins")


def _text_or_exit(settings: Settings, text: str) -> str:
    from models.broadcasts import clean_text
    from models.errors import DomainError

    try:
        return clean_text(text)
    except DomainError as exc:
        typer.echo(f"error: --text: {_render_error(settings, exc)}", err=True)
        raise typer.Exit(2) from None


@broadcast_app.command("send")
def broadcast_send(
    text: Annotated[
        str, typer.Option("--text", help="the message, as people will read it", metavar="TEXT")
    ],
    audience: Annotated[
        str,
        typer.Option(
            "--audience",
            help="everyone, commune:CODE, site:SITECODE:YYYY-MM-DD or due:CAMPAIGN",
            metavar="WHO",
        ),
    ],
    yes: Annotated[bool, typer.Option("--yes", help="send without asking")] = False,
    config: ConfigOpt = None,
) -> None:
    """Send a message to residents. Prints how many will get it and asks before sending
    (unless --yes). The bot's dispatcher sends the copies (or healthbook dispatch); quiet
    hours hold them until morning."""
    from zoneinfo import ZoneInfo

    from models import broadcasts as bc

    settings = _settings(config)
    body = _text_or_exit(settings, text)
    tz = ZoneInfo(settings.bot.timezone)
    today = _local_today(config)

    async def counted(session: AsyncSession) -> tuple[int, str]:
        chosen = await bc.parse_audience(session, audience)
        return await bc.count(session, chosen, today, tz), chosen.kind

    count, kind = _with_database(config, counted)
    typer.echo(f"{count} people will receive it")
    if count == 0:
        why = {
            "everyone": "no one has agreed to the bot's terms yet",
            "commune": "no one who agreed to the bot's terms has a health book in this commune",
            "site_day": "no one is booked at this site on that day",
            "due": "no one is due for this campaign's next dose without a booking",
        }.get(kind, "no one is in this audience")
        typer.echo(f"nothing sent: {why}", err=True)
        raise typer.Exit(1)
    if not yes and not typer.confirm("Send it?", default=False):
        typer.echo("nothing sent")
        raise typer.Exit(1)

    async def queue(session: AsyncSession) -> tuple[int, int]:
        from models.outbox import after_quiet_hours
        from models.tables import Broadcast

        chosen = await bc.parse_audience(session, audience)
        now = dt.datetime.now(dt.UTC)
        draft = Broadcast(text=body, audience=chosen.kind, audience_params=chosen.params(),
                          total=0, status="draft", progress_shown={})
        session.add(draft)
        await session.flush()
        due = after_quiet_hours(now, settings.reminders.quiet, tz)
        total = await bc.send(session, draft, today=today, tz=tz, due_at=due)
        return draft.id, total

    number, total = _with_database(config, queue)
    typer.echo(
        f"broadcast {number}: {total} messages queued (the bot sends them; "
        f"see healthbook broadcast status {number})"
    )


@broadcast_app.command("status", cls=_Command)
def broadcast_status(
    number: Annotated[
        int | None, typer.Argument(help="the broadcast's number (default: the last 20)",
                                   metavar="ID", min=1, max=2**31 - 1, show_default=False)
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """How far broadcasts have gone: sent / failed / left (created at local time,
    bot.timezone)."""
    from zoneinfo import ZoneInfo

    from sqlalchemy import select

    from models import broadcasts as bc
    from models.errors import DomainError
    from models.tables import Broadcast
    from models.timeutil import as_aware

    tz = ZoneInfo(_settings(config).bot.timezone)

    async def work(session: AsyncSession) -> list[str]:
        if number is not None:
            found = await session.get(Broadcast, number)
            if found is None or found.status == "draft":
                raise DomainError("broadcast.not_found", broadcast=number)
            shown = [found]
        else:
            shown = list(
                await session.scalars(
                    select(Broadcast)
                    .where(Broadcast.status != "draft")
                    .order_by(Broadcast.id.desc())
                    .limit(20)
                )
            )
        lines = []
        for b in shown:
            p = await bc.progress(session, b.id)
            when = f"{as_aware(b.created_at).astimezone(tz):%Y-%m-%d %H:%M}"
            where = f"{b.audience} {b.audience_params}" if b.audience_params else b.audience
            lines.append(
                f"broadcast {b.id} ({when}, {where}, {b.status}): "
                f"sent {p.sent} / failed {p.failed} / left {p.left}"
                + (f" / dropped {p.dropped}" if p.dropped else "")
            )
        return lines

    lines = _with_database(config, work)
    typer.echo("\n".join(lines) if lines else "no broadcasts")


@sessions_app.command("cancel")
def sessions_cancel(
    session_id: Annotated[
        int | None,
        typer.Option("--id", help="the session's id", metavar="N", min=1, max=2**31 - 1),
    ] = None,
    site: Annotated[str | None, typer.Option(help="site code", metavar="CODE")] = None,
    date: Annotated[str | None, typer.Option(help="YYYY-MM-DD", metavar="DATE")] = None,
    start: Annotated[str | None, typer.Option(help="start time, HH:MM", metavar="HH:MM")] = None,
    campaign: Annotated[
        str | None,
        typer.Option(help="campaign code, when several have a session then", metavar="CODE"),
    ] = None,
    reason: Annotated[
        str | None, typer.Option(help="told to the people booked (one line)", metavar="TEXT")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="cancel without asking")] = False,
    config: ConfigOpt = None,
) -> None:
    """Cancel a session: --id N, or --site, --date and --start (and --campaign when several
    campaigns have a session then). Prints how many bookings it cancels and asks first
    (unless --yes); a session already over or cancelled is refused. Its bookings are
    cancelled, its waitlist released, and each booked person is told by the bot (with Book
    again)."""
    from zoneinfo import ZoneInfo

    from models.errors import DomainError
    from models.sessions_admin import cancel_session, clean_reason, find_session

    if session_id is None and not (site and date and start):
        raise typer.BadParameter("give --id N, or --site CODE --date YYYY-MM-DD --start HH:MM")
    if session_id is not None and (site or date or start or campaign):
        raise typer.BadParameter("give --id, or --site/--date/--start, not both")
    day = _parse("date (YYYY-MM-DD)", date, dt.date.fromisoformat) if date else None
    at = _parse("time (HH:MM)", start, dt.time.fromisoformat) if start else None
    settings = _settings(config)
    try:
        why = clean_reason(reason)
    except DomainError as exc:
        typer.echo(f"error: --reason: {_render_error(settings, exc)}", err=True)
        raise typer.Exit(2) from None
    tz = ZoneInfo(settings.bot.timezone)
    today = _local_today(config)

    async def still_open(session: AsyncSession, number: int | None) -> Any:
        """The session, refused when cancelled already or over (its day past, or today and
        its end time passed: nobody can come any more)."""
        from sqlalchemy import func, select

        from models.tables import BOOKING_ACTIVE, Booking

        slot = await find_session(  # by id once asked: the one that was shown
            session, session_id=number, site=site, date=day, start=at, campaign=campaign
        )
        if slot.cancelled_at is not None:
            raise DomainError("session.already_cancelled", date=slot.date)
        now = dt.datetime.now(tz)
        if slot.date < now.date() or (slot.date == now.date() and slot.end_time <= now.time()):
            raise DomainError("session.past", date=slot.date)
        booked = await session.scalar(
            select(func.count()).select_from(Booking).where(
                Booking.session_id == slot.id, Booking.status.in_(BOOKING_ACTIVE)
            )
        )
        return slot, int(booked or 0)

    async def asked(session: AsyncSession) -> tuple[int, str, int]:
        slot, booked = await still_open(session, session_id)
        what = f"session {slot.id} ({slot.date} {slot.start_time:%H:%M}–{slot.end_time:%H:%M})"
        return slot.id, what, booked

    number, what, booked = _with_database(config, asked)
    typer.echo(f"{what}: {booked} bookings will be cancelled and their people told")
    if not yes and not typer.confirm("Cancel this session?", default=False):
        typer.echo("nothing changed")
        raise typer.Exit(1)

    async def work(session: AsyncSession) -> str:
        slot, _ = await still_open(session, number)
        done = await cancel_session(
            session, slot, now=dt.datetime.now(tz), today=today, reason=why,
        )
        return (
            f"session {slot.id} ({slot.date} {slot.start_time:%H:%M}) cancelled: "
            f"{done.bookings} bookings cancelled, {done.notified} people to be told, "
            f"{done.waitlist} waitlist entries released"
        )

    typer.echo(_with_database(config, work))


# invite, volunteers, staff remove, admin remove (cli_roles), agencies (cli_agencies) and
# report (cli_reports): their own modules, on the groups above
from bot import cli_agencies as _cli_agencies  # noqa: E402, F401
from bot import cli_reports as _cli_reports  # noqa: E402, F401
from bot import cli_roles as _cli_roles  # noqa: E402, F401


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
