"""When a recurring campaign (or an audience export) runs: the occurrences of a crontab in its
own timezone. Pure code, no I/O.

An occurrence is named by its wall-clock time in the schedule's timezone ("2026-10-25T02:30").
That name is what a run is unique on, so:

- when a DST change makes 02:30 happen twice (the last Sunday of October in Europe), both are
  the same occurrence and make one run, at the first of them;
- when 02:30 does not happen (the last Sunday of March), the occurrence still runs once, at the
  moment the clock jumps past it (the offset before the change applies, as zoneinfo reads
  fold=0), so a daily campaign never skips a day.

Day of month and day of week are both required to match, as Celery's crontab does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from celery.schedules import crontab

# A yearly schedule has an occurrence within 366 days; Feb 29 within four years.
SEARCH_DAYS = 4 * 366 + 1


@dataclass(frozen=True)
class Occurrence:
    key: str  # wall-clock time in the schedule's timezone, to the minute
    at: dt.datetime  # the moment, timezone-aware (UTC)


def cron(*, minute: str, hour: str, day_of_week: str, day_of_month: str, month_of_year: str) -> crontab:
    """Celery's parser of the five fields (raises ValueError for a field it cannot read)."""
    return crontab(
        minute=minute, hour=hour, day_of_week=day_of_week, day_of_month=day_of_month, month_of_year=month_of_year
    )


def from_crontab(schedule: Any) -> crontab:
    """The crontab of a django-celery-beat CrontabSchedule (or anything with its five fields)."""
    return cron(
        minute=schedule.minute,
        hour=schedule.hour,
        day_of_week=schedule.day_of_week,
        day_of_month=schedule.day_of_month,
        month_of_year=schedule.month_of_year,
    )


def _day_matches(schedule: crontab, day: dt.date) -> bool:
    return (
        day.month in schedule.month_of_year
        and day.day in schedule.day_of_month
        and (day.weekday() + 1) % 7 in schedule.day_of_week  # crontab: Sunday is 0
    )


def _on_day(schedule: crontab, zone: ZoneInfo, day: dt.date) -> list[Occurrence]:
    found = []
    for hour in sorted(schedule.hour):
        for minute in sorted(schedule.minute):
            wall = dt.datetime(day.year, day.month, day.day, hour, minute)  # noqa: DTZ001 - wall-clock time
            found.append(Occurrence(wall.strftime("%Y-%m-%dT%H:%M"), wall.replace(tzinfo=zone).astimezone(dt.UTC)))
    return found


def occurrences(schedule: crontab, zone: ZoneInfo, *, after: dt.datetime, until: dt.datetime) -> Iterator[Occurrence]:
    """Every occurrence after `after` up to and including `until`, in order."""
    day = after.astimezone(zone).date()
    last = until.astimezone(zone).date()
    while day <= last:
        if _day_matches(schedule, day):
            for occurrence in _on_day(schedule, zone, day):
                if after < occurrence.at <= until:
                    yield occurrence
        day += dt.timedelta(days=1)


def latest_occurrence(
    schedule: crontab, zone: ZoneInfo, *, after: dt.datetime, until: dt.datetime
) -> Occurrence | None:
    """The most recent occurrence after `after` up to `until` (a schedule that missed several while
    beat was down sends once, not once per missed occurrence); None when there is none."""
    day = until.astimezone(zone).date()
    first = max(after.astimezone(zone).date(), day - dt.timedelta(days=SEARCH_DAYS))
    while day >= first:
        if _day_matches(schedule, day):
            for occurrence in reversed(_on_day(schedule, zone, day)):
                if after < occurrence.at <= until:
                    return occurrence
        day -= dt.timedelta(days=1)
    return None


def next_occurrences(
    schedule: crontab, zone: ZoneInfo, *, after: dt.datetime, until: dt.datetime, limit: int = 500
) -> list[Occurrence]:
    """The occurrences coming between `after` and `until` (the calendar), at most `limit`."""
    found = []
    seen = set()
    for occurrence in occurrences(schedule, zone, after=after, until=until):
        if occurrence.key in seen:
            continue
        seen.add(occurrence.key)
        found.append(occurrence)
        if len(found) >= limit:
            break
    return found
