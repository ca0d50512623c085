"""(being built: issue 9)"""

from __future__ import annotations

from telegram.ext import BaseHandler


def handlers() -> list[BaseHandler]:
    """Top-level handlers."""
    return []
