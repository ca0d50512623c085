"""/agency: staff join their agency with ``/agency CODE`` (moving is allowed and dated); a head
sees and removes the members of their own agency. (Built on :mod:`models.agencies`.)"""

from __future__ import annotations

from telegram.ext import BaseHandler


def handlers() -> list[BaseHandler]:  # type: ignore[type-arg]
    """Top-level handlers: /agency."""
    return []


__all__ = ["handlers"]
