"""The province's local dates, and timestamps stored in UTC."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

# Dates of doses and sessions are local dates; Vietnam has kept UTC+7 without DST since 1975
# (the same zone as the settings' default ``bot.timezone``).
LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def to_utc(ts: dt.datetime) -> dt.datetime:
    """Timestamps are written in UTC: SQLite keeps the wall time and drops the offset."""
    if ts.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return ts.astimezone(dt.UTC)


def as_aware(ts: dt.datetime) -> dt.datetime:
    """A timestamp read back (SQLite returns naive UTC) as an aware one."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=dt.UTC)


def local_date(ts: dt.datetime) -> dt.date:
    """The province's calendar date of an aware timestamp."""
    return as_aware(ts).astimezone(LOCAL_TZ).date()
