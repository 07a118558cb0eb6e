"""Where a goal stands, from its snapshots: pure code, no queries.

- **No data**: no snapshot with a value since the start.
- After the deadline: **achieved** when the last value on or before the deadline reached the
  target, else **missed**.
- Before it: **achieved** when the latest value has reached the target; otherwise the trend
  decides: a least-squares line through the values of the last `TREND_DAYS` days (or, with one
  value, the line from the baseline at the start to that value), carried on to the deadline.
  **On track** when it reaches the target there, **at risk** when it does not.

"Reached" follows the goal's direction: up when the target is above the baseline (or, without a
baseline, when higher is better for the metric), down otherwise.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from goals.metrics import FOUR_PLACES
from goals.models import Goal

TREND_DAYS = 28


@dataclass(frozen=True, order=True)
class Point:
    day: dt.date
    value: Decimal


@dataclass(frozen=True)
class Progress:
    status: str  # a Goal.Status value
    current: Decimal | None
    projected: Decimal | None  # the trend's value at the deadline
    trend: tuple[Point, Point] | None  # where the trend line starts and its value at the deadline


def goes_up(*, baseline: Decimal | None, target: Decimal, higher_is_better: bool) -> bool:
    if baseline is None or baseline == target:
        return higher_is_better
    return target > baseline


def reached(value: Decimal, *, target: Decimal, up: bool) -> bool:
    return value >= target if up else value <= target


def _fit(points: list[Point]) -> tuple[float, float, dt.date]:
    """Least squares through the points: (value at the first day, slope per day, first day)."""
    first = points[0].day
    xs = [(point.day - first).days for point in points]
    ys = [float(point.value) for point in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread if spread else 0.0
    return mean_y - slope * mean_x, slope, first


def progress(
    *,
    values: Iterable[tuple[dt.date, Decimal | None]],
    baseline: Decimal | None,
    target: Decimal,
    starts_on: dt.date,
    deadline: dt.date,
    today: dt.date,
    higher_is_better: bool,
) -> Progress:
    points = sorted(Point(day, value) for day, value in values if value is not None and starts_on <= day <= deadline)
    if not points:
        return Progress(Goal.Status.NO_DATA, None, None, None)
    up = goes_up(baseline=baseline, target=target, higher_is_better=higher_is_better)
    latest = points[-1]
    if today > deadline:
        status = Goal.Status.ACHIEVED if reached(latest.value, target=target, up=up) else Goal.Status.MISSED
        return Progress(status, latest.value, None, None)

    recent = [point for point in points if (latest.day - point.day).days < TREND_DAYS]
    if len(recent) == 1 and baseline is not None and latest.day > starts_on:
        recent = [Point(starts_on, baseline), latest]
    start_value, slope, first = _fit(recent)
    projected = Decimal(start_value + slope * (deadline - first).days).quantize(FOUR_PLACES)
    trend = (Point(first, Decimal(start_value).quantize(FOUR_PLACES)), Point(deadline, projected))
    if reached(latest.value, target=target, up=up):
        status = Goal.Status.ACHIEVED
    elif reached(projected, target=target, up=up):
        status = Goal.Status.ON_TRACK
    else:
        status = Goal.Status.AT_RISK
    return Progress(status, latest.value, projected, trend)
