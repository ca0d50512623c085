"""A bare python-telegram-bot echo bot: the baseline the benchmarks compare against."""

from __future__ import annotations

import argparse

from telegram import Update
from telegram.ext import Application, ContextTypes, MessageHandler, filters


async def echo(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    """Send the text back."""
    assert update.effective_message is not None
    await update.effective_message.reply_text(update.effective_message.text or "")


def main() -> None:
    """``python -m bench.echo_bot --base-url URL``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--concurrency", type=int, default=256)
    args = parser.parse_args()
    app = (
        Application.builder()
        .token("123456:ECHO-baseline")
        .base_url(args.base_url)
        .concurrent_updates(args.concurrency)
        .build()
    )
    app.add_handler(MessageHandler(filters.TEXT, echo))
    app.run_polling(poll_interval=0, timeout=1)


if __name__ == "__main__":
    main()
