"""Business hours: whether a ``Schedule`` is open at an instant, in the schedule's time zone."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from appliance.config.records import Schedule, Weekday

_WEEKDAYS = list(Weekday)  # Monday first, as datetime.weekday() counts


def is_open(schedule: Schedule, at: float) -> bool:
    """Whether ``schedule`` is open at ``at`` (seconds since the epoch).

    The instant is read as local time in the schedule's zone: a holiday date
    is closed all day; otherwise it is open if a period lists the weekday and
    start <= HH:MM < end (``24:00`` ends at midnight).
    """
    local = dt.datetime.fromtimestamp(at, ZoneInfo(schedule.timezone))
    if local.date().isoformat() in schedule.holidays:
        return False
    day = _WEEKDAYS[local.weekday()]
    now = local.strftime("%H:%M")
    return any(day in p.days and p.start <= now < p.end for p in schedule.periods)
