"""(being built: issue 9)"""

from __future__ import annotations

from telegram.ext import BaseHandler


def entries() -> list[BaseHandler]:
    """Handlers that start or continue a health book in the health-book conversation."""
    return []


def handlers() -> list[BaseHandler]:
    """Top-level handlers."""
    return []
