"""The bot's own web server (``[http] listen``): Zalo's webhook, and the images and files the
bot sends over Zalo (which takes a picture only as a URL it fetches).

- ``POST /zalo/webhook``: the ``X-Bot-Api-Secret-Token`` header is compared in constant time
  with ``[zalo] webhook_secret``; missing or wrong, the answer is 403 and nothing is read. An
  event is written to the inbox and queued before the answer (200), so that a crash cannot
  lose it.
- ``GET /media/{token}``: a picture or file put in the :class:`MediaStore`, under a token of
  256 random bits that expires (a ticket's QR is a check-in credential), then 404. Each item
  belongs to the chat it was sent to: a chat keeps only its newest few (one person asking for
  files over and over cannot push everyone else's links out), and /delete drops the chat's
  links at once (:meth:`MediaStore.drop`).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/zalo/webhook"
MEDIA_PATH = "/media/"
SECRET_HEADER = "X-Bot-Api-Secret-Token"
MAX_BODY = 256 * 1024  # a Zalo event is a few hundred bytes


# whose an item is: (channel, chat id) of the chat it was sent to
Owner = tuple[str, str]


@dataclass(frozen=True)
class Media:
    """One stored picture or file."""

    data: bytes
    content_type: str
    filename: str | None
    expires: float  # on the store's clock
    owner: Owner | None = None


class MediaStore:
    """Pictures and files for links that expire, in memory, bounded in count and bytes (the
    oldest go first) and per owner (the chat it was sent to keeps its ``per_owner`` newest).
    The tokens are :func:`secrets.token_urlsafe` (256 bits): unguessable."""

    def __init__(
        self,
        public_url: str,
        *,
        ttl: float = 15 * 60,
        max_items: int = 2_000,
        max_bytes: int = 64 * 1024 * 1024,
        per_owner: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.public_url = public_url.rstrip("/")
        self.ttl = ttl
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.per_owner = per_owner
        self.clock = clock
        self._items: OrderedDict[str, Media] = OrderedDict()
        self._owned: dict[Owner, list[str]] = {}  # each owner's tokens, oldest first
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(
        self,
        data: bytes,
        content_type: str,
        filename: str | None = None,
        *,
        owner: Owner | None = None,
    ) -> str:
        """Keep ``data`` for :attr:`ttl` seconds; its public URL. With an ``owner``, that
        owner's oldest items beyond :attr:`per_owner` are dropped."""
        self._expire()
        token = secrets.token_urlsafe(32)
        self._items[token] = Media(data, content_type, filename, self.clock() + self.ttl, owner)
        self._bytes += len(data)
        if owner is not None:
            tokens = self._owned.setdefault(owner, [])
            tokens.append(token)
            while len(tokens) > self.per_owner:
                self._remove(tokens[0])
        while self._items and (len(self._items) > self.max_items or self._bytes > self.max_bytes):
            self._remove(next(iter(self._items)))
        return f"{self.public_url}{MEDIA_PATH}{token}"

    def get(self, token: str) -> Media | None:
        """What ``token`` names, unless it expired, was dropped or never existed."""
        self._expire()
        return self._items.get(token)

    def drop(self, owner: Owner) -> int:
        """Forget every item of ``owner`` (its account was erased): their links answer 404
        from now on. How many there were."""
        tokens = list(self._owned.get(owner, ()))
        for token in tokens:
            self._remove(token)
        return len(tokens)

    def _remove(self, token: str) -> None:
        item = self._items.pop(token, None)
        if item is None:
            return
        self._bytes -= len(item.data)
        if item.owner is not None:
            tokens = self._owned.get(item.owner, [])
            if token in tokens:
                tokens.remove(token)
            if not tokens:
                self._owned.pop(item.owner, None)

    def _expire(self) -> None:
        now = self.clock()
        while self._items:
            token, first = next(iter(self._items.items()))
            if first.expires > now:
                break
            self._remove(token)


# what the webhook does with an event: write it to the inbox and queue it; False when the
# event was not usable (answered 200 all the same: Zalo need not send it again)
Accept = Callable[[Any], Awaitable[bool]]


class HttpServer:
    """One aiohttp server for the bot: the webhook (when ``accept`` and ``secret`` are given)
    and the media links (when ``media`` is)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        media: MediaStore | None = None,
        accept: Accept | None = None,
        secret: str | None = None,
    ) -> None:
        if accept is not None and not secret:
            raise ValueError("a webhook needs its secret")
        self.host = host
        self.port = port
        self.media = media
        self.accept = accept
        self._secret = (secret or "").encode()
        self._runner: web.AppRunner | None = None

    def __repr__(self) -> str:
        return f"HttpServer(host={self.host!r}, port={self.port})"

    def set_secret(self, secret: str) -> None:
        """The webhook's secret (set before :meth:`start`)."""
        self._secret = secret.encode()

    @property
    def url(self) -> str:
        """Where it listens, e.g. ``http://127.0.0.1:8080``."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen (port 0 picks a free one, then :attr:`port` is it)."""
        app = web.Application(client_max_size=MAX_BODY)
        if self.accept is not None:
            if not self._secret:
                raise ValueError("a webhook needs its secret")
            app.router.add_post(WEBHOOK_PATH, self._webhook)
        if self.media is not None:
            app.router.add_get(MEDIA_PATH + "{token}", self._media)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, shutdown_timeout=2.0)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening (requests under way are finished first)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _webhook(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "").encode("utf-8", "replace")
        if not hmac.compare_digest(given, self._secret):
            log.warning("a webhook call without the right secret was refused")
            return web.json_response({"ok": False}, status=403)
        try:
            body = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            # RecursionError: JSON nested deeper than the parser goes ("[[[[…")
            log.warning(
                "a webhook body that is not usable JSON was refused: %s", type(exc).__name__
            )
            return web.json_response({"ok": False}, status=400)
        except web.HTTPRequestEntityTooLarge:
            return web.json_response({"ok": False}, status=413)
        # Zalo POSTs {"ok": true, "result": event}; the bare event is taken too
        event = body.get("result", body) if isinstance(body, dict) else None
        assert self.accept is not None
        try:
            await self.accept(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the inbox could not be written: let Zalo try again
            log.error("a webhook event could not be kept: %s", type(exc).__name__)
            return web.json_response({"ok": False}, status=500)
        return web.json_response({"ok": True})

    async def _media(self, request: web.Request) -> web.StreamResponse:
        assert self.media is not None
        token = request.match_info["token"]
        item = self.media.get(token) if len(token) <= 64 else None
        if item is None:
            raise web.HTTPNotFound()
        headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
        if item.filename:
            headers["Content-Disposition"] = f'attachment; filename="{item.filename}"'
        return web.Response(body=item.data, content_type=item.content_type, headers=headers)


__all__ = [
    "MEDIA_PATH",
    "SECRET_HEADER",
    "WEBHOOK_PATH",
    "HttpServer",
    "Media",
    "MediaStore",
    "Owner",
]
