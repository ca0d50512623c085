"""The Zalo Bot API stand-in in a process of its own, driven over HTTP like the Telegram one.

:class:`~bot.standin.zalo.ZaloApiStandIn` is driven in-process by the tests; a benchmark drives
it from another process, so this adds the two control routes the Telegram stand-in has:

- ``POST /_standin/event`` with a Zalo event (``{"event_name", "message"}``): queued for
  ``getUpdates`` (or POSTed to the webhook, when one is set); answers ``{"message_id", "seq"}``,
  ``seq`` being the last call recorded before it, so that only what follows counts as the answer;
- ``GET /_standin/wait?chat_id=…&after=SEQ&timeout=S``: the calls to that chat after ``SEQ``,
  once the bot has answered it (``sendMessage``, ``sendPhoto`` or ``sendSticker``) or after
  ``timeout`` seconds.

The bot's messages are not kept (``messages()`` stays empty, the calls are a bounded tail per
chat), so that memory does not grow with the number of residents.

    python -m bench.zalo_standin --port 0     # prints its base URL on stdout
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

from aiohttp import web

from bot.standin.common import json_response
from bot.standin.zalo import ZaloApiStandIn

TOKEN = "1234567890:bench-zalo-token"


class BenchZaloStandIn(ZaloApiStandIn):
    """The Zalo stand-in with a control API over HTTP, for a driver in another process."""

    def _routes(self, app: web.Application) -> None:
        super()._routes(app)
        app.router.add_post("/_standin/event", self._handle_event)
        app.router.add_get("/_standin/wait", self._handle_wait)

    def _new_message(self, st: Any, content: dict[str, Any]) -> dict[str, Any]:
        result = super()._new_message(st, content)
        st.messages.clear()  # the calls carry the texts: keep no second copy per chat
        return result

    async def _handle_event(self, request: web.Request) -> web.Response:
        try:
            event = await request.json()
            seq = self.seq
            message_id = self.push_event(event)
        except (ValueError, KeyError, AttributeError, TypeError):
            return json_response({"error": "not a Zalo event"}, 400)
        return json_response({"message_id": message_id, "seq": seq})

    async def _handle_wait(self, request: web.Request) -> web.Response:
        q = request.query
        chat = q.get("chat_id")
        if not chat:
            return json_response({"error": "chat_id is required"}, 400)
        try:
            after = int(q.get("after", "0"))
            timeout = float(q.get("timeout", "10"))
        except ValueError:
            return json_response({"error": "after and timeout are numbers"}, 400)
        calls = await self.wait_chat(chat, after_seq=after, timeout=timeout)
        return json_response({"calls": [c.to_json() for c in calls], "seq": self.seq})


async def _serve(args: argparse.Namespace) -> None:
    api = BenchZaloStandIn(
        args.token,
        host=args.host,
        port=args.port,
        keep_calls=False,
        max_calls_per_chat=args.max_calls_per_chat,
    )
    await api.serve_until_signalled(lambda: f"Zalo Bot API stand-in (bench) at {api.url}")


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.zalo_standin --port 0``."""
    parser = argparse.ArgumentParser(prog="python -m bench.zalo_standin")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--token", default=TOKEN)
    parser.add_argument("--max-calls-per-chat", type=int, default=64)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
