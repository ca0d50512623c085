"""The ``healthbook`` command: run the bot, try it in the terminal, manage the database."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from bot.settings import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
db_app = typer.Typer(no_args_is_help=True, help="Database schema (Alembic migrations).")
app.add_typer(db_app, name="db")

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML settings file (default: ./config.toml)")
]

NO_TOKEN = """No Telegram bot token is configured.

To run the real bot:
  1. In Telegram, talk to @BotFather, send /newbot and follow its questions.
  2. Put the token it gives you in config.toml (copy config.example.toml):
       [telegram]
       token = "123456:ABC..."
     or set the environment variable HEALTHBOOK_TELEGRAM__TOKEN.
  3. healthbook run --config config.toml

To try the bot right now, with no token and no network:
  healthbook demo
"""


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def run(config: ConfigOpt = None) -> None:
    """Run the bot with long polling (needs a token)."""
    settings = _settings(config)
    if settings.telegram.token is None:
        typer.echo(NO_TOKEN, err=True)
        raise typer.Exit(2)
    from bot.app import build_application
    from bot.logs import setup_logging

    setup_logging(settings.logging.level)
    if settings.database.upgrade_on_start:
        from bot.db import upgrade_url

        upgrade_url(settings.database.url)  # before the bot reads its conversations
    application = build_application(settings)
    application.run_polling(
        allowed_updates=["message", "callback_query"], timeout=settings.telegram.poll_timeout
    )


@app.command()
def demo(
    config: ConfigOpt = None,
    database: Annotated[str | None, typer.Option(help="database URL for the demo")] = None,
    language: Annotated[str, typer.Option(help="the demo user's Telegram language")] = "vi",
) -> None:
    """Chat with the bot in this terminal: no token, no network (a local Bot API stand-in)."""
    settings = _settings(config)
    if database:
        settings.database.url = database
    from bot.demo import run_demo

    asyncio.run(run_demo(settings, language=language))


@app.command()
def start(config: ConfigOpt = None) -> None:
    """Run the bot if a token is configured, otherwise the terminal demo."""
    settings = _settings(config)
    if settings.telegram.token is None:
        typer.echo(
            "No Telegram token configured: starting the terminal demo "
            "(see README to run the real bot).\n",
            err=True,
        )
        demo(config=config, database=None, language="vi")
    else:
        run(config=config)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None) -> None:
    """Bring the database schema up to date."""
    settings = _settings(config)
    from bot.db import upgrade_url

    upgrade_url(settings.database.url)
    typer.echo("database is up to date")


# --- vaccination booking: campaigns, sites, sessions, staff, certificates ------------------------

campaigns_app = typer.Typer(no_args_is_help=True, help="Vaccination campaigns (TOML files).")
sites_app = typer.Typer(no_args_is_help=True, help="Vaccination sites (CSV files).")
sessions_app = typer.Typer(no_args_is_help=True, help="Vaccination sessions: days, hours, places.")
staff_app = typer.Typer(no_args_is_help=True, help="Site staff who check people in.")
certificate_app = typer.Typer(no_args_is_help=True, help="Signed vaccination certificates.")
app.add_typer(campaigns_app, name="campaigns")
app.add_typer(sites_app, name="sites")
app.add_typer(sessions_app, name="sessions")
app.add_typer(staff_app, name="staff")
app.add_typer(certificate_app, name="certificate")


def _with_database(config: Path | None, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction on a fresh engine (schema upgraded first); data and
    domain errors are printed, one per line, and exit with status 1."""
    settings = _settings(config)
    from bot.db import create_engine, session_factory, transaction, upgrade
    from models.campaigns import DataError
    from models.errors import DomainError

    async def _main() -> T:
        engine = create_engine(settings.database.url, pool_size=settings.database.pool_size)
        try:
            await upgrade(engine)
            async with transaction(session_factory(engine)) as session:
                return await work(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(_main())
    except DataError as exc:
        typer.echo(f"error: {exc.source}:", err=True)
        for problem in exc.problems:
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(1) from None
    except DomainError as exc:
        details = ", ".join(f"{k}={v}" for k, v in exc.params.items())
        typer.echo(f"error: {exc.key}" + (f" ({details})" if details else ""), err=True)
        raise typer.Exit(1) from None


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


@campaigns_app.command("load")
def campaigns_load(
    file: Annotated[Path, typer.Argument(help="campaign TOML file", exists=True, dir_okay=False)],
    config: ConfigOpt = None,
) -> None:
    """Create or update the vaccines and campaigns of a TOML file (by code)."""
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


@sites_app.command("import")
def sites_import(
    file: Annotated[Path, typer.Argument(help="sites CSV file", exists=True, dir_okay=False)],
    config: ConfigOpt = None,
) -> None:
    """Create or update sites from a CSV file (by code); nothing is written if a row is bad."""
    from models.campaigns import import_sites_csv

    result = _with_database(config, lambda session: import_sites_csv(session, file))
    typer.echo(f"sites: {result.created} created, {result.updated} updated")


@sites_app.command("list")
def sites_list(
    config: ConfigOpt = None,
    province: Annotated[int | None, typer.Option(help="current province code, e.g. 15")] = None,
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
    campaign: Annotated[str, typer.Option("--campaign", help="campaign code")],
    start_date: Annotated[str, typer.Option("--from", help="first date, YYYY-MM-DD")],
    site: Annotated[list[str] | None, typer.Option("--site", help="site code (repeatable)")] = None,
    all_sites: Annotated[bool, typer.Option("--all", help="every active site")] = False,
    weeks: Annotated[int | None, typer.Option(help="number of weeks (default 4)")] = None,
    days: Annotated[int | None, typer.Option(help="number of days, instead of weeks")] = None,
    weekdays: Annotated[str, typer.Option(help="e.g. mon-fri, mon,wed,fri, all")] = "mon-fri",
    start: Annotated[str, typer.Option(help="start time, HH:MM")] = "07:30",
    end: Annotated[str, typer.Option(help="end time, HH:MM")] = "11:30",
    capacity: Annotated[int, typer.Option(help="places per session")] = 60,
    config: ConfigOpt = None,
) -> None:
    """Create sessions in bulk; sessions that already exist are left alone."""
    from models.campaigns import create_sessions, parse_weekdays

    if bool(site) == all_sites:
        raise typer.BadParameter("give --site CODE (one or more) or --all")
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
    site: Annotated[str | None, typer.Option(help="site code")] = None,
    date: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    config: ConfigOpt = None,
) -> None:
    """List sessions with their booked places (from today unless --date is given)."""
    from models.campaigns import list_sessions

    day = _parse("date (YYYY-MM-DD)", date, dt.date.fromisoformat) if date else None
    from_date = None if day else _local_today(config)

    async def work(session: AsyncSession) -> list[str]:
        found = await list_sessions(session, site_code=site, date=day, from_date=from_date)
        return [
            f"{s.date} {s.start_time:%H:%M}-{s.end_time:%H:%M}  {st.code:<20} {c.code:<20}"
            f" {s.booked:>4}/{s.capacity:<4} booked"
            for s, st, c in found
        ]

    rows = _with_database(config, work)
    typer.echo("\n".join(rows) if rows else "no sessions")


@app.command("sample-data")
def sample_data(
    config: ConfigOpt = None,
    today: Annotated[str | None, typer.Option(help="first day, YYYY-MM-DD (default today)")] = None,
) -> None:
    """Load the sample campaigns, Lào Cai sites and 4 weeks of sessions (idempotent)."""
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
    telegram_id: Annotated[int, typer.Option("--telegram-id", help="the person's Telegram id")],
    site: Annotated[str, typer.Option("--site", help="site code")],
    config: ConfigOpt = None,
) -> None:
    """Let a Telegram user check people in and record doses at a site (role site_staff)."""
    from models.booking import grant_staff
    from models.healthbook import ensure_account

    async def work(session: AsyncSession) -> str:
        account = await ensure_account(session, "telegram", str(telegram_id))
        await grant_staff(session, account, site)
        return account.role

    role = _with_database(config, work)
    typer.echo(f"telegram user {telegram_id} is now {role} at {site}")


@staff_app.command("list")
def staff_list(config: ConfigOpt = None) -> None:
    """List site staff and their sites."""
    from sqlalchemy import select

    from models.tables import Account, Site, StaffSite

    async def work(session: AsyncSession) -> list[str]:
        rows = await session.execute(
            select(Account.channel, Account.external_id, Account.role, Site.code)
            .join(StaffSite, StaffSite.account_id == Account.id)
            .join(Site, Site.id == StaffSite.site_id)
            .order_by(Site.code, Account.external_id)
        )
        return [f"{code:<20} {channel}:{ext}  ({role})" for channel, ext, role, code in rows]

    rows = _with_database(config, work)
    typer.echo("\n".join(rows) if rows else "no site staff")


@certificate_app.command("verify")
def certificate_verify(
    payload: Annotated[str, typer.Argument(help="the text of the certificate's QR code")],
    config: ConfigOpt = None,
    secret: Annotated[
        str | None,
        typer.Option(
            envvar="HEALTHBOOK_CERTIFICATE_SECRET",
            help="signing secret (default: the bot's, from the settings)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Check a vaccination certificate's signature and show what it carries."""
    from models.booking import verify_certificate
    from models.errors import DomainError

    if secret is not None:
        key = secret.encode("utf-8")
    else:
        from types import SimpleNamespace

        from bot.context import Services

        settings = _settings(config)
        token = settings.telegram.token
        if settings.security.certificate_secret is None and token is None:
            typer.echo("error: no [security] certificate_secret and no bot token set", err=True)
            raise typer.Exit(2)
        # the very key the bot signs with (Services needs only the settings for it)
        holder: Any = SimpleNamespace(settings=settings)
        key = Services.certificate_secret(holder, token.get_secret_value() if token else "")
    try:
        data = verify_certificate(payload, key)
    except ValueError as exc:  # a secret too short to be one
        raise typer.BadParameter(str(exc)) from None
    except DomainError:
        typer.echo("INVALID: forged, altered or not a certificate", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"valid certificate: {data['initials']}, born {data['birth_year']}")
    for dose in data["doses"]:
        typer.echo(f"  {dose['date']}  {dose['vaccine']:<16} dose {dose['dose']}")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
