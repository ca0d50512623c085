"""Where a message to a person goes: a channel and that channel's chat id (no messenger types:
the domain decides *whom* to tell, the channel layer *how*)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Address:
    """A person's chat on one channel."""

    channel: str
    chat_id: str
