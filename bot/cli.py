"""The ``healthbook`` command: run the bot, try it in the terminal, manage the database."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer

from bot.settings import ConfigError, Settings, load_settings

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


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
