"""A bare aiogram 3 echo bot: the second baseline of ``bench.health_book``.

Needs the ``bench`` extra (``pip install -e '.[bench]'``). It talks to the Bot API stand-in the
way aiogram talks to a self-hosted Bot API server.
"""

from __future__ import annotations

import argparse
import asyncio

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import Message

dispatcher = Dispatcher()


@dispatcher.message()
async def echo(message: Message) -> None:
    """Send the text back."""
    await message.answer(message.text or "")


async def run(server: str) -> None:
    """Poll ``server`` (the stand-in's root URL) until SIGINT or SIGTERM."""
    session = AiohttpSession(api=TelegramAPIServer.from_base(server))
    bot = Bot("123456:AIOGRAM-baseline", session=session)
    await dispatcher.start_polling(bot, polling_timeout=1, allowed_updates=["message"])


def main() -> None:
    """``python -m bench.aiogram_echo --server http://127.0.0.1:PORT``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True, help="root URL of the Bot API (no /bot)")
    args = parser.parse_args()
    asyncio.run(run(args.server))


if __name__ == "__main__":
    main()
