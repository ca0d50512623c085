"""Logging that never writes personal data or the bot token in clear.

Three layers, because no single one is enough:

* our own log calls never interpolate answers (names, addresses and health answers cannot be
  recognised by a pattern, so they must never be handed to a logger in the first place);
* libraries that dump whole updates, request bodies or SQL parameters at DEBUG are kept at INFO
  or above whatever the configured level (:func:`setup_logging`), and the engine hides SQL
  parameters (``bot.db``);
* every record that reaches our handler is masked (:class:`MaskingFilter`): ID and phone
  numbers in any spelling, insurance codes, dates, tokens; Telegram objects are reduced to their
  class name; exceptions are rendered as their class, a masked first line and the stack.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from typing import IO, Any

from telegram import TelegramObject, Update

_SEP = r"[ .\-]?"  # how people space numbers: 0912 345 678, 0912.345.678, 0010-4567-8901
_DIGITS = re.compile(rf"(?<![\w+])\+?\d(?:{_SEP}\d){{8,}}(?![\w])")  # 9 digits or more
_DATE_WORDS = r"(?:ngày|ngay|tháng|thang|năm|nam|sinh|\s)*"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"bot\d{3,}:[A-Za-z0-9_-]{3,}"), "bot<token>"),  # Bot API URLs (Zalo's are short)
    (re.compile(r"(?<![\w])\d{5,}:[A-Za-z0-9_-]{20,}"), "<token>"),  # a bare token
    # health-insurance card: 2 letters, the benefit level, 12 digits (HT3 01 01 234 56789)
    (re.compile(rf"(?<![^\W\d_])[A-Za-z]{{2}}{_SEP}\d(?:{_SEP}\d){{12}}(?!\d)"), "<bhyt>"),
    # dates: 15/3/1950, 15-03-1950, 15.03.1950, 15 3 1950, 1950-03-15, ngày 15 tháng 3 năm 1950
    (re.compile(r"(?<![\d.])\d{4}([/\-])\d{1,2}\1\d{1,2}(?![\d])"), "<date>"),
    (re.compile(r"(?<![\d.])\d{1,2}[/.\- ]\d{1,2}[/.\- ]\d{4}(?!\d)"), "<date>"),
    (
        re.compile(
            rf"(?i)(?<!\d)\d{{1,2}}{_DATE_WORDS}(?:tháng|thang){_DATE_WORDS}\d{{1,2}}"
            rf"{_DATE_WORDS}\d{{4}}(?!\d)"
        ),
        "<date>",
    ),
    (re.compile(r"(?<![\w.])\d{8}(?![\w])"), "<number>"),  # 15031950 is a date of birth too
    (_DIGITS, ""),  # ID and phone numbers: see _number
)


def _number(match: re.Match[str]) -> str:
    """A run of 9 or more digits: a phone number, a CCCD (12) or a CMND (9), or some id."""
    digits = re.sub(r"\D", "", match.group(0))
    if (len(digits) == 10 and digits[0] == "0") or (len(digits) == 11 and digits[:2] == "84"):
        return "<phone>"
    if len(digits) > 12:  # several numbers in a row
        return "<number>"
    keep = 3 if len(digits) == 12 else 2
    return digits[:keep] + "*" * (len(digits) - 2 * keep) + digits[-keep:]


def mask(text: str) -> str:
    """Mask ID numbers, phone numbers, insurance codes, dates and bot tokens in ``text``."""
    for pattern, repl in _PATTERNS:
        text = pattern.sub(_number if pattern is _DIGITS else repl, text)
    return text


def describe(exc: BaseException) -> str:
    """An exception as its class and the masked first line of its message. Later lines are
    left out: they hold SQL parameters, PostgreSQL's ``DETAIL: Key (…)=(…)`` and pydantic's
    ``input_value=…``."""
    try:
        lines = str(exc).strip().splitlines()
    except Exception:  # an exception whose message cannot even be rendered
        lines = []
    first = mask(_QUOTED.sub(_quoted, lines[0])) if lines else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


# Quoted values in an error's first line ("invalid input for query argument $1: 'Lò Văn Páo'")
# may be answers; only code-like keys (``full_name``, ``booking.not_found``) stay readable.
_QUOTED = re.compile(r"""'([^'\n]*)'|"([^"\n]*)"|«([^»\n]*)»|“([^”\n]*)”""")
_CODE_LIKE = re.compile(r"[a-z][a-z0-9]*(?:[_.][a-z0-9]+)+")


def _quoted(match: re.Match[str]) -> str:
    value = next(g for g in match.groups() if g is not None)
    if _CODE_LIKE.fullmatch(value):
        return match.group(0)
    return match.group(0)[0] + "…" + match.group(0)[-1]


def format_exception(exc: BaseException) -> str:
    """A traceback without the data: each exception of the chain described by
    :func:`describe`, with its stack (code locations and source lines, no local values)."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None:
        seen.add(id(current))
        stack = "".join(traceback.format_tb(current.__traceback__))
        parts.append(f"Traceback (most recent call last):\n{stack}{describe(current)}")
        if current.__cause__ is not None:
            link, current = _CAUSE, current.__cause__
        elif current.__context__ is not None and not current.__suppress_context__:
            link, current = _CONTEXT, current.__context__
        else:
            break
        if id(current) in seen:
            break
        parts.append(link)
    return "\n".join(reversed(parts))


_CAUSE = "\nThe above exception was the direct cause of the following exception:\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n"


def _redact(arg: Any) -> Any:
    """Telegram objects (updates, messages, users) are personal data through and through."""
    if isinstance(arg, Update):
        return f"<Update {arg.update_id}>"
    if isinstance(arg, TelegramObject):
        return f"<{type(arg).__name__}>"
    if isinstance(arg, bytes | bytearray):
        return f"<{len(arg)} bytes>"
    return arg


class MaskingFilter(logging.Filter):
    """Rewrites each record's message with :func:`mask` before any handler formats it (so the
    formatter's own timestamps are never taken for dates)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask in place; never drops a record."""
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact(v) for k, v in record.args.items()}
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the record
            message = str(record.msg)
        record.msg, record.args = mask(message), None
        if record.exc_info:
            exc = record.exc_info[1]
            record.exc_text = format_exception(exc) if exc is not None else None
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = mask(record.exc_text)
        if record.stack_info:
            record.stack_info = mask(record.stack_info)
        return True


#: Library loggers and the lowest level they may log at: below it they print whole updates
#: ("Processing update …", "Calling Bot API endpoint … with parameters …"), request bodies,
#: SQL and its parameters or result rows (aiosqlite: "executing <function … params>").
QUIET_LOGGERS: dict[str, int] = {
    "telegram": logging.INFO,  # telegram.Bot, telegram.ext.Application, ConversationHandler…
    "httpx": logging.WARNING,  # one line per request
    "httpcore": logging.WARNING,
    "aiohttp": logging.INFO,
    "aiosqlite": logging.INFO,
    "asyncpg": logging.INFO,
    "apscheduler": logging.WARNING,  # a line per job run
    "sqlalchemy": logging.WARNING,
    "alembic.runtime.plugins": logging.WARNING,  # "setup plugin …": a line per plugin
    "matplotlib": logging.INFO,  # a report's chart: ~150 "findfont: score(…)" lines each
    "PIL": logging.INFO,  # the PNG writer's chunks
}
#: Loggers some setting may raise to INFO (``[database] echo``), never to DEBUG (result rows).
_NEVER_DEBUG = ("sqlalchemy.engine", "sqlalchemy.engine.Engine", "sqlalchemy.pool")


def quiet_libraries(level: int) -> None:
    """Keep the loggers of :data:`QUIET_LOGGERS` at their floor or above, whatever ``level``."""
    for name, floor in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(floor, level))
    for name in _NEVER_DEBUG:
        logger = logging.getLogger(name)
        if logger.level != logging.NOTSET and logger.level < logging.INFO:
            logger.setLevel(logging.INFO)


def setup_logging(level: str = "INFO", stream: IO[str] | None = None) -> None:
    """Log to ``stream`` (stderr) through the masking filter; libraries that dump updates,
    requests or SQL stay at INFO or above even when ``level`` is DEBUG."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(MaskingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet_libraries(root.level)
