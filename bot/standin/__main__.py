"""Command line: ``python -m bot.standin --port 8081`` serves the Telegram Bot API stand-in."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from bot.standin.telegram import BotApiStandIn


async def _serve(args: argparse.Namespace) -> None:
    api = BotApiStandIn(
        args.bot_username,
        args.bot_id,
        host=args.host,
        port=args.port,
        keep_calls=not args.no_keep_calls,
        max_calls_per_chat=args.max_calls_per_chat,
        max_messages_per_chat=args.max_messages_per_chat,
        flood_limit=args.flood_limit,
        count_received=args.count_received,
    )
    await api.serve_until_signalled(
        lambda: (
            f"Telegram Bot API stand-in for @{api.bot_username} at {api.url} "
            f"(file URL {api.base_file_url})"
        )
    )


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m bot.standin --port 8081``."""
    parser = argparse.ArgumentParser(prog="python -m bot.standin", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081, help="0 picks a free port")
    parser.add_argument("--bot-username", default="healthbook_demo_bot")
    parser.add_argument("--bot-id", type=int, default=7000000001)
    parser.add_argument("--no-keep-calls", action="store_true", help="keep only per-chat tails")
    parser.add_argument("--max-calls-per-chat", type=int, default=None)
    parser.add_argument("--max-messages-per-chat", type=int, default=None)
    parser.add_argument(
        "--flood-limit", type=float, default=None, help="messages a second, 429 above (off)"
    )
    parser.add_argument(
        "--count-received", action="store_true", help="count each chat's texts (duplicates)"
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
