"""/report (agency heads and admins) and the weekly report: a short summary, a chart of
coverage by sub-unit and a workbook, in the chat and, every week, through the dispatcher.
(Built on :mod:`models.reports`.)"""

from __future__ import annotations

from telegram.ext import BaseHandler

from bot.context import HBContext


def handlers() -> list[BaseHandler]:  # type: ignore[type-arg]
    """Top-level handlers: /report."""
    return []


async def weekly_job(context: HBContext) -> None:
    """Every minute: once the weekly time has come, store last week's figures and plan the
    messages to every agency head and the province's recipients (once per week)."""


__all__ = ["handlers", "weekly_job"]
