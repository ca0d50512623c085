"""Logging that never writes personal data or the bot token in clear."""

from __future__ import annotations

import logging
import re

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"bot\d{5,}:[A-Za-z0-9_-]{10,}"), "bot<token>"),  # Bot API URLs
    (re.compile(r"(?<![\w])\+?84\d{8,10}(?!\d)"), "<phone>"),
    (re.compile(r"(?<![\w])[A-Z]{2}\d{13}(?!\d)"), "<bhyt>"),
    (re.compile(r"(?<!\d)(\d{3})\d{6}(\d{3})(?!\d)"), r"\1******\2"),  # CCCD: 12 digits
    (re.compile(r"(?<!\d)0\d{9}(?!\d)"), "<phone>"),
    (re.compile(r"(?<!\d)(\d{2})\d{5}(\d{2})(?!\d)"), r"\1*****\2"),  # CMND: 9 digits
)


def mask(text: str) -> str:
    """Mask ID numbers, phone numbers, health-insurance codes and bot tokens in ``text``."""
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class MaskingFilter(logging.Filter):
    """Rewrites each record's message with :func:`mask` before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask in place; never drops a record."""
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the record
            message = str(record.msg)
        record.msg, record.args = mask(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = mask(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def setup_logging(level: str = "INFO") -> None:
    """Log to stderr through the masking filter; quiet the HTTP client's per-request lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(MaskingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
