"""Time as the schema holds it: naive UTC (`timestamp without time zone`), and Pacific days.

Every `timestamp` column of the spec holds UTC without a zone; code compares and stores naive
UTC datetimes. Gemini's per-day quotas reset at midnight America/Los_Angeles.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

QUOTA_TZ = ZoneInfo("America/Los_Angeles")  # where Gemini's per-day quotas reset


def utc_now() -> dt.datetime:
    """Now as naive UTC, as the spec's timestamp columns hold it."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def utc_today() -> dt.date:
    """Today's UTC date: the day the usage stats are counted under."""
    return dt.datetime.now(dt.UTC).date()


def naive_utc(moment: dt.datetime) -> dt.datetime:
    """An aware datetime as naive UTC."""
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


def next_pacific_midnight(now: dt.datetime) -> dt.datetime:
    """When the Pacific day of aware `now` ends (aware UTC): per-day quotas reset then."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    next_day = now.astimezone(QUOTA_TZ).date() + dt.timedelta(days=1)
    # Midnight always exists in Los Angeles (DST switches at 02:00).
    return dt.datetime(next_day.year, next_day.month, next_day.day,
                       tzinfo=QUOTA_TZ).astimezone(dt.UTC)


def pacific_day_start(now: dt.datetime) -> dt.datetime:
    """Midnight Pacific that began the Pacific day of aware `now`, as naive UTC: the start of
    the per-day quota window."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    day = now.astimezone(QUOTA_TZ).date()
    start = dt.datetime(day.year, day.month, day.day, tzinfo=QUOTA_TZ)
    return start.astimezone(dt.UTC).replace(tzinfo=None)


def utc_minute_start(now: dt.datetime) -> dt.datetime:
    """The UTC minute of aware `now`, as naive UTC: the per-minute quota window."""
    return naive_utc(now).replace(second=0, microsecond=0)
