"""A small client of the Zalo Bot Platform API (``POST {base_url}/bot{token}/{method}``).

Answers are ``{"ok": true, "result": …}`` or ``{"ok": false, "error_code": N, "description": …}``;
errors become :class:`ZaloError` (:class:`ZaloRateLimited` for 429 and quota errors,
:class:`ZaloNetworkError` when no answer came). The token is a credential: it appears in no
exception, repr or log line (aiohttp's errors carry the URL, so they are never chained).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import aiohttp

__all__ = [
    "DEFAULT_BASE_URL",
    "ZaloApi",
    "ZaloError",
    "ZaloNetworkError",
    "ZaloRateLimited",
]

DEFAULT_BASE_URL = "https://bot-api.zaloplatforms.com"
_TOKEN = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
_METHOD = re.compile(r"^[A-Za-z]+$")
_RETRY_AFTER = re.compile(r"(?i)retry after (\d{1,5})")
#: seconds to wait after a 429 that does not say how long; a spent quota waits longer
_RATE_LIMIT_WAIT = 2.0
_QUOTA_WAIT = 60.0
#: seconds an answer may take beyond a getUpdates long poll before the call is a network error
_POLL_GRACE = 10.0

log = logging.getLogger(__name__)


class ZaloError(Exception):
    """An error answer of the Zalo API (``error_code`` and ``description``)."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(code, description)
        self.code = code
        self.description = description

    def __str__(self) -> str:
        return f"Zalo API error {self.code}: {self.description}"


class ZaloRateLimited(ZaloError):
    """Too many calls (HTTP 429 or a spent quota); wait ``retry_after`` seconds (a guess)."""

    def __init__(self, code: int, description: str, retry_after: float) -> None:
        super().__init__(code, description)
        self.retry_after = retry_after


class ZaloNetworkError(ZaloError):
    """No usable answer: the connection failed or timed out, or the answer was not JSON."""

    def __init__(self, description: str) -> None:
        super().__init__(0, description)


def _retry_after(body: dict[str, Any], description: str) -> float:
    params = body.get("parameters")
    if isinstance(params, dict) and isinstance(params.get("retry_after"), int | float):
        return max(float(params["retry_after"]), 0.0)
    m = _RETRY_AFTER.search(description)
    if m:
        return float(m.group(1))
    return _QUOTA_WAIT if "quota" in description.casefold() else _RATE_LIMIT_WAIT


def _network_error(exc: BaseException, token: str) -> ZaloNetworkError:
    """The error without its message: aiohttp's messages may contain the URL, hence the token."""
    if isinstance(exc, TimeoutError):
        return ZaloNetworkError("timed out")
    reason = getattr(exc, "strerror", None)  # "Connection refused"
    reason = str(reason).replace(token, "<token>") if reason else ""
    return ZaloNetworkError(f"{type(exc).__name__}{f': {reason}' if reason else ''}")


class ZaloApi:
    """The bot's connection to the Zalo Bot Platform API."""

    def __init__(
        self,
        token: str,
        base_url: str = DEFAULT_BASE_URL,
        session: aiohttp.ClientSession | None = None,
        *,
        request_timeout: float = 20.0,
    ) -> None:
        if not _TOKEN.match(token):
            raise ValueError("a Zalo bot token is digits, a colon, then letters, digits, - or _")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._prefix = f"{self.base_url}/bot{token}/"
        self._session = session
        self._own_session = session is None
        self.request_timeout = request_timeout

    def __repr__(self) -> str:
        return f"ZaloApi(base_url={self.base_url!r})"

    async def close(self) -> None:
        """Close the HTTP session if this client opened it."""
        if self._own_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def __aenter__(self) -> ZaloApi:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if not self._own_session:
                raise RuntimeError("the ClientSession given to ZaloApi is closed")
            self._session = aiohttp.ClientSession()
        return self._session

    async def call(self, method: str, *, read_timeout: float | None = None, **params: Any) -> Any:
        """Call ``method`` with ``params`` (``None`` values left out); return its ``result``."""
        if not _METHOD.match(method):
            raise ValueError("a Zalo API method name is letters only")
        body = {k: v for k, v in params.items() if v is not None}
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=10.0, sock_read=read_timeout or self.request_timeout
        )
        failure: BaseException | None = None
        try:
            async with self._http().post(self._prefix + method, json=body, timeout=timeout) as r:
                status = r.status
                try:
                    answer = await r.json(content_type=None)
                except ValueError:
                    answer = None
        except (aiohttp.ClientError, TimeoutError) as exc:
            failure = exc
        if failure is not None:  # raised here, outside the except block: nothing chained
            err = _network_error(failure, self._token)
            log.warning("Zalo %s: %s", method, err.description)
            raise err
        if not isinstance(answer, dict):
            log.warning("Zalo %s: HTTP %d without a JSON answer", method, status)
            raise ZaloNetworkError(f"HTTP {status} without a JSON answer")
        if answer.get("ok") is True:
            return answer.get("result", True)
        code = answer.get("error_code")
        code = code if isinstance(code, int) and not isinstance(code, bool) else status
        description = str(answer.get("description") or "")[:300].replace(self._token, "<token>")
        if code == 429 or "quota" in description.casefold():
            raise ZaloRateLimited(code, description, _retry_after(answer, description))
        raise ZaloError(code, description)

    async def get_me(self) -> dict[str, Any]:
        """The bot's account: ``id``, ``account_name``, ``account_type``, ``can_join_groups``."""
        return dict(await self.call("getMe"))

    async def get_updates(self, timeout: int = 30) -> dict[str, Any] | None:  # noqa: ASYNC109
        """Long-poll one event for ``timeout`` seconds; None when none came (error 408)."""
        try:
            result = await self.call(
                "getUpdates", timeout=str(timeout), read_timeout=timeout + _POLL_GRACE
            )
        except ZaloError as exc:
            if exc.code == 408:
                return None
            raise
        if not isinstance(result, dict):
            raise ZaloError(0, "getUpdates gave something other than one event")
        return result

    async def send_message(self, chat_id: str, text: str) -> dict[str, Any]:
        """Send plain text (1 to 2,000 characters); returns ``message_id`` and ``date``."""
        return dict(await self.call("sendMessage", chat_id=chat_id, text=text))

    async def send_photo(
        self, chat_id: str, url: str, caption: str | None = None
    ) -> dict[str, Any]:
        """Send the image at ``url`` (Zalo fetches it), with an optional caption."""
        return dict(await self.call("sendPhoto", chat_id=chat_id, photo=url, caption=caption))

    async def send_sticker(self, chat_id: str, sticker: str) -> dict[str, Any]:
        """Send a sticker by its id."""
        return dict(await self.call("sendSticker", chat_id=chat_id, sticker=sticker))

    async def send_chat_action(self, chat_id: str, action: str = "typing") -> None:
        """Show "typing…" in the chat for a moment."""
        await self.call("sendChatAction", chat_id=chat_id, action=action)

    async def set_webhook(self, url: str, secret: str) -> dict[str, Any]:
        """Have events POSTed to ``url`` with ``secret`` (8 to 256 characters) in a header."""
        return dict(await self.call("setWebhook", url=url, secret_token=secret))

    async def delete_webhook(self) -> dict[str, Any]:
        """Stop the webhook (getUpdates works again)."""
        return dict(await self.call("deleteWebhook"))

    async def get_webhook_info(self) -> dict[str, Any]:
        """The webhook's ``url`` (empty when none) and ``updated_at``."""
        return dict(await self.call("getWebhookInfo"))
