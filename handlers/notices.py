"""What each kind of outbox message says (:mod:`models.outbox`): a renderer per kind, called by
the dispatcher (:mod:`bot.dispatch`) when the message is sent, in the recipient's language and
with their messenger's variants of the catalogue. A renderer returns the :class:`Reply` (text
and options), or None when the message no longer applies (the dose was booked meanwhile…): it
is then dropped, not sent."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from bot.channels.base import Reply
from bot.context import Services
from bot.i18n import Translator
from models import custody
from models import healthbook as hb
from models.addresses import Address
from models.tables import Account, HealthBook, OutboxMessage

log = logging.getLogger(__name__)


@dataclass
class Notice:
    """One outbox message about to be sent, with what its renderer needs."""

    session: AsyncSession
    services: Services
    message: OutboxMessage
    account: Account  # the recipient (the account holding the health book)
    to: Address  # where it goes: the messenger they use
    t: Translator  # their language, their messenger's wording


Renderer = Callable[[Notice], Awaitable[Reply | None]]
RENDERERS: dict[str, Renderer] = {}
#: called by the dispatcher after each batch with the broadcasts whose copies it sent or failed
#: (a broadcast's progress message is updated there)
PassHook = Callable[[Services, set[int]], Awaitable[None]]
AFTER_PASS: list[PassHook] = []


async def after_pass(services: Services, broadcast_ids: set[int]) -> None:
    """Run the after-batch hooks (each one's failure logged, never the dispatcher's)."""
    for hook in AFTER_PASS:
        try:
            await hook(services, broadcast_ids)
        except Exception as exc:
            log.warning("after-batch hook %s failed: %s", hook.__name__, type(exc).__name__)


def renders(*kinds: str) -> Callable[[Renderer], Renderer]:
    """Register the renderer of some kinds of message."""

    def register(fn: Renderer) -> Renderer:
        for kind in kinds:
            if kind in RENDERERS:
                raise ValueError(f"two renderers for {kind}")
            RENDERERS[kind] = fn
        return fn

    return register


async def render(session: AsyncSession, services: Services, message: OutboxMessage) -> Reply | None:
    """The message as its recipient will read it, addressed to their messenger; None when it
    should not be sent (no renderer, no account any more, or the renderer says it no longer
    applies)."""
    renderer = RENDERERS.get(message.kind)
    account = await session.get(Account, message.account_id)
    if renderer is None or account is None:
        return None
    to = await hb.reply_address(session, account)
    t = services.translations.get(
        account.locale or services.settings.bot.default_locale, to.channel
    )
    reply = await renderer(Notice(session, services, message, account, to, t))
    if reply is None:
        return None
    if message.health_book_id is not None and reply.text:
        # about a relative's or a helped resident's appointment: say whose, to the one who acts
        # for them (not to site staff told of a reaction: they are told no name)
        book = await session.get(HealthBook, message.health_book_id)
        found = await custody.access(session, account, book) if book is not None else None
        if found is not None and found.for_another:
            reply.text = t("notice.for", name=found.book.full_name) + "\n" + reply.text
    reply.to = to
    reply.locale = account.locale or services.settings.bot.default_locale
    return reply


__all__ = ["AFTER_PASS", "RENDERERS", "Notice", "Renderer", "after_pass", "render", "renders"]
