"""The dispatcher: sends the outbox's due messages (:mod:`models.outbox`) through each
recipient's channel.

A message is claimed (in a committed transaction) before it is sent and marked sent right
after; rendering (the text in the recipient's language, to the messenger they use now) and the
choices it offers (so that a typed number answers it) are written with the claim."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select, update

from bot.channels.base import Reply
from bot.context import Services
from handlers.common import offer_notices
from handlers.notices import after_pass, render
from models.tables import OutboxMessage
from models.timeutil import to_utc

log = logging.getLogger(__name__)


@dataclass
class Sent:
    """What a pass of the dispatcher did."""

    sent: int = 0
    failed: int = 0
    dropped: int = 0


async def drain(services: Services, *, limit: int = 10_000) -> Sent:
    """Send every message due now (a test's or a tool's single pass; the running bot uses the
    dispatcher loop)."""
    stats = Sent()
    now = to_utc(services.clock())
    async with services.sessions() as session, session.begin():
        due = list(
            await session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.status == "pending", OutboxMessage.due_at <= now)
                .order_by(OutboxMessage.due_at, OutboxMessage.id)
                .limit(limit)
            )
        )
        out: list[tuple[int, Reply]] = []
        broadcasts = {m.broadcast_id for m in due if m.broadcast_id is not None}
        offered = []
        for message in due:
            reply = await render(session, services, message)
            message.claimed_at = now
            if reply is None:
                message.status = "cancelled"
                message.error = "no longer applies"
                stats.dropped += 1
                continue
            message.status = "claimed"
            assert reply.to is not None
            offered += await offer_notices(session, services, reply.to, [reply])
            out.append((message.id, reply))
    for written in offered:
        services.offers.written(*written)
    for message_id, reply in out:
        assert reply.to is not None
        ok = await services.channels.send(reply.to.channel, reply.to.chat_id, reply)
        async with services.sessions() as session, session.begin():
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == message_id)
                .values(
                    status="sent" if ok else "failed",
                    sent_at=to_utc(services.clock()) if ok else None,
                    error=None if ok else "refused",
                )
            )
        if ok:
            stats.sent += 1
        else:
            stats.failed += 1
    if broadcasts:
        await after_pass(services, broadcasts)
    return stats


__all__ = ["Sent", "drain"]
