"""A bare Zalo echo bot on the project's :class:`~bot.channels.zalo_api.ZaloApi`: the Zalo
baseline of ``bench.health_book`` (``getUpdates`` → ``sendMessage``, nothing else).

Like the Telegram echo bots it answers each message in a task of its own while polling goes on;
Zalo's ``getUpdates`` gives one event per call, so one long poll is out at a time, as the
health-book bot's poller does (``--pollers`` runs several side by side, to see what that
changes; Zalo does not say whether it allows it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from bot.channels.zalo_api import ZaloApi, ZaloError


async def echo(api: ZaloApi, event: dict) -> None:
    """Send the text back."""
    message = event.get("message") or {}
    chat = (message.get("chat") or {}).get("id")
    text = message.get("text")
    if isinstance(chat, str) and isinstance(text, str) and text:
        with contextlib.suppress(ZaloError):
            await api.send_message(chat, text[:2000])


async def poll(api: ZaloApi, tasks: set[asyncio.Task[None]]) -> None:
    """Long-poll one event at a time; each answered in its own task."""
    while True:
        try:
            event = await api.get_updates(timeout=1)
        except ZaloError:
            await asyncio.sleep(0.5)
            continue
        if event is not None:
            task = asyncio.create_task(echo(api, event))
            tasks.add(task)
            task.add_done_callback(tasks.discard)


async def run(base_url: str, token: str, pollers: int) -> None:
    """Poll until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks: set[asyncio.Task[None]] = set()
    async with ZaloApi(token, base_url) as api:
        await api.delete_webhook()
        polling = [asyncio.create_task(poll(api, tasks)) for _ in range(pollers)]
        await stop.wait()
        for task in polling:
            task.cancel()
        await asyncio.gather(*polling, *tasks, return_exceptions=True)


def main() -> None:
    """``python -m bench.zalo_echo --base-url URL --token TOKEN``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True, help="root URL of the Zalo Bot API")
    parser.add_argument("--token", required=True)
    parser.add_argument("--pollers", type=int, default=1, help="long polls out at a time")
    args = parser.parse_args()
    asyncio.run(run(args.base_url, args.token, args.pollers))


if __name__ == "__main__":
    main()
