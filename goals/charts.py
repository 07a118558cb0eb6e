"""A goal's progress as an SVG chart, drawn on the server: no JavaScript, nothing from a CDN.

The chart shows the KPI per snapshot (with a gap where a day had no data), the baseline as a
dashed line, the path to the target (from the baseline at the start to the target at the
deadline), the trend carried on to the deadline, and today. Every text in it passes through
`format_html`, so a goal's name cannot break out of the SVG.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

from goals.metrics import CATALOGUE
from goals.models import Goal
from goals.progress import Progress
from goals.services import format_value

WIDTH, HEIGHT = 760, 330
LEFT, RIGHT, TOP, BOTTOM = 72, 24, 16, 80  # the legend sits under the x axis
PLOT_WIDTH, PLOT_HEIGHT = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
DATE_TICKS = 5
LEGEND_CHARACTER = 7.0  # the width of a character at 12px, roughly, to space the legend

KPI_COLOUR = "#2463b0"
TARGET_COLOUR = "#2f855a"
BASELINE_COLOUR = "#718096"
TREND_COLOUR = "#c05621"
TODAY_COLOUR = "#c53030"


class SnapshotLike(Protocol):
    day: dt.date
    value: Decimal | None


@dataclass(frozen=True)
class Scale:
    """Days and values to the chart's coordinates."""

    first_day: dt.date
    last_day: dt.date
    low: float
    high: float

    def x(self, day: dt.date) -> float:
        span = max((self.last_day - self.first_day).days, 1)
        return round(LEFT + (day - self.first_day).days / span * PLOT_WIDTH, 2)

    def y(self, value: Decimal | float) -> float:
        return round(TOP + (self.high - float(value)) / (self.high - self.low) * PLOT_HEIGHT, 2)


def nice_ticks(low: float, high: float, intervals: int = 4) -> list[float]:
    """Round values that cover [low, high] in about `intervals` steps of 1, 2, 2.5 or 5 times a power of ten."""
    if high == low:
        pad = abs(high) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / intervals
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * 0.999)
    first = math.floor(low / step + 1e-9) * step
    last = math.ceil(high / step - 1e-9) * step
    count = round((last - first) / step)
    return [round(first + i * step, 10) for i in range(count + 1)]


def tick_label(value: float, step: float, unit: str) -> str:
    places = max(0, -math.floor(math.log10(step) + 1e-9)) if step else 0
    if step and not math.isclose(round(step, places), step):
        places += 1  # 2.5, 0.25: one place more than the power of ten says
    number = f"{value:+.{places}f}" if unit == "nps" and value else f"{value:.{places}f}"
    if unit == "percent":
        return f"{number}%"
    if unit == "money":
        return f"€ {number}"
    return number


def date_ticks(first: dt.date, last: dt.date) -> list[dt.date]:
    span = (last - first).days
    if span <= 0:
        return [first]
    count = min(DATE_TICKS, span + 1)
    days = sorted({first + dt.timedelta(days=round(span * i / (count - 1))) for i in range(count)})
    return days


def _date_label(day: dt.date, with_year: bool) -> str:
    return date_format(day, "j M Y" if with_year else "j M")


def _runs(points: Sequence[tuple[dt.date, Decimal | None]]) -> list[list[tuple[dt.date, Decimal]]]:
    """The snapshots as runs of consecutive values: a day with no data ends a run."""
    runs: list[list[tuple[dt.date, Decimal]]] = [[]]
    for day, value in points:
        if value is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((day, value))
    return [run for run in runs if run]


def empty_state(*, measured: int) -> SafeString:
    if measured:
        message = _(
            "Measured %(count)s times, but there was no data in the scope yet: "
            "the chart starts with the first measurement that finds some."
        ) % {"count": measured}
    else:
        message = _("No measurements yet: the first comes with the daily measurement.")
    return format_html('<p class="goal-chart-empty">{}</p>', message)


def goal_chart_svg(
    *,
    goal: Goal,
    snapshots: Iterable[SnapshotLike],
    progress: Progress,
    today: dt.date | None = None,
) -> SafeString:
    """The goal's chart as SVG markup, ready to put in a page."""
    today = today or timezone.localdate()
    unit = CATALOGUE[goal.metric].unit
    points = sorted((snapshot.day, snapshot.value) for snapshot in snapshots)
    values = [value for _day, value in points if value is not None]
    if not values:
        return empty_state(measured=len(points))

    first_day = min(goal.starts_on, points[0][0])
    last_day = max(goal.deadline, points[-1][0])
    shown: list[Decimal] = [*values, goal.target]
    if goal.baseline is not None:
        shown.append(goal.baseline)
    if progress.trend is not None:
        shown += [point.value for point in progress.trend]
    low, high = float(min(shown)), float(max(shown))
    # A little room above and below, so that no line runs along the chart's edge (none below 0
    # for values that cannot be negative).
    room = (high - low) * 0.04
    ticks = nice_ticks(max(low - room, 0.0) if low >= 0 else low - room, high + room)
    scale = Scale(first_day, last_day, ticks[0], ticks[-1])
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    title_id, desc_id = f"goal-chart-{goal.pk}-title", f"goal-chart-{goal.pk}-desc"

    parts: list[SafeString] = [
        format_html(
            '<svg xmlns="http://www.w3.org/2000/svg" class="goal-chart" viewBox="0 0 {} {}" role="img" '
            'aria-labelledby="{} {}" font-family="sans-serif" font-size="12">',
            WIDTH,
            HEIGHT,
            title_id,
            desc_id,
        ),
        format_html('<title id="{}">{}</title>', title_id, _("%(goal)s: progress") % {"goal": goal.name}),
        format_html('<desc id="{}">{}</desc>', desc_id, describe(goal=goal, points=points, progress=progress)),
    ]

    # The y axis: grid lines with the values in the metric's unit.
    parts.append(
        format_html_join(
            "",
            '<g class="y-tick"><line x1="{}" x2="{}" y1="{}" y2="{}" stroke="currentColor" stroke-opacity="0.15"/>'
            '<text x="{}" y="{}" text-anchor="end" dominant-baseline="middle" fill="currentColor">{}</text></g>',
            (
                (
                    LEFT,
                    WIDTH - RIGHT,
                    scale.y(tick),
                    scale.y(tick),
                    LEFT - 8,
                    scale.y(tick),
                    tick_label(tick, step, unit),
                )
                for tick in ticks
            ),
        )
    )
    # The x axis: a few dates from the first day to the deadline.
    with_year = first_day.year != last_day.year
    axis_y = TOP + PLOT_HEIGHT
    parts.append(
        format_html(
            '<line class="x-axis" x1="{}" x2="{}" y1="{}" y2="{}" stroke="currentColor" stroke-opacity="0.5"/>',
            LEFT,
            WIDTH - RIGHT,
            axis_y,
            axis_y,
        )
    )
    ticks_x = date_ticks(first_day, last_day)
    parts.append(
        format_html_join(
            "",
            '<g class="x-tick"><line x1="{}" x2="{}" y1="{}" y2="{}" stroke="currentColor" stroke-opacity="0.5"/>'
            '<text x="{}" y="{}" text-anchor="{}" fill="currentColor">{}</text></g>',
            (
                (
                    scale.x(day),
                    scale.x(day),
                    axis_y,
                    axis_y + 5,
                    scale.x(day),
                    axis_y + 18,
                    # The last date ends at the deadline, so that it stays inside the chart.
                    "end" if len(ticks_x) > 1 and day == ticks_x[-1] else "middle",
                    _date_label(day, with_year),
                )
                for day in ticks_x
            ),
        )
    )

    if goal.baseline is not None:
        parts.append(
            format_html(
                '<line class="baseline-line" x1="{}" x2="{}" y1="{}" y2="{}" stroke="{}" stroke-width="1.5" '
                'stroke-dasharray="6 4"><title>{}</title></line>',
                LEFT,
                WIDTH - RIGHT,
                scale.y(goal.baseline),
                scale.y(goal.baseline),
                BASELINE_COLOUR,
                _("Baseline: %(value)s") % {"value": format_value(goal.baseline, goal.metric)},
            )
        )
        target_from = (scale.x(goal.starts_on), scale.y(goal.baseline))
    else:
        target_from = (scale.x(first_day), scale.y(goal.target))
    target_to = (scale.x(goal.deadline), scale.y(goal.target))
    parts.append(
        format_html(
            '<line class="target-line" x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="2">'
            "<title>{}</title></line>"
            '<circle class="target-point" cx="{}" cy="{}" r="5" fill="{}"/>',
            *target_from,
            *target_to,
            TARGET_COLOUR,
            _("Target: %(value)s on %(deadline)s")
            % {"value": format_value(goal.target, goal.metric), "deadline": date_format(goal.deadline)},
            *target_to,
            TARGET_COLOUR,
        )
    )

    if progress.trend is not None:
        start, end = progress.trend
        parts.append(
            format_html(
                '<line class="trend-line" x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="2" '
                'stroke-dasharray="2 4" stroke-linecap="round"><title>{}</title></line>',
                scale.x(start.day),
                scale.y(start.value),
                scale.x(end.day),
                scale.y(end.value),
                TREND_COLOUR,
                _("Trend at the deadline: %(value)s") % {"value": format_value(end.value, goal.metric)},
            )
        )

    if first_day <= today <= last_day:
        parts.append(
            format_html(
                '<g class="today-marker"><line x1="{}" x2="{}" y1="{}" y2="{}" stroke="{}" stroke-width="1"/>'
                '<text x="{}" y="{}" text-anchor="middle" fill="{}">{}</text></g>',
                scale.x(today),
                scale.x(today),
                TOP,
                axis_y,
                TODAY_COLOUR,
                scale.x(today),
                TOP + 10,
                TODAY_COLOUR,
                _("Today"),
            )
        )

    # The KPI last, on top: a line per run of days with data, a dot per snapshot.
    parts.append(
        format_html_join(
            "",
            '<polyline class="kpi-line" points="{}" fill="none" stroke="{}" stroke-width="2"/>',
            ((" ".join(f"{scale.x(day)},{scale.y(value)}" for day, value in run), KPI_COLOUR) for run in _runs(points)),
        )
    )
    parts.append(
        format_html_join(
            "",
            '<circle class="kpi-point" cx="{}" cy="{}" r="3" fill="{}" data-day="{}"><title>{}: {}</title></circle>',
            (
                (
                    scale.x(day),
                    scale.y(value),
                    KPI_COLOUR,
                    day.isoformat(),
                    date_format(day),
                    format_value(value, goal.metric),
                )
                for day, value in points
                if value is not None
            ),
        )
    )
    parts.append(
        legend(
            has_baseline=goal.baseline is not None,
            has_trend=progress.trend is not None,
            has_today=first_day <= today <= last_day,
        )
    )
    parts.append(mark_safe("</svg>"))
    return mark_safe("".join(parts))  # noqa: S308 - every part above is built by format_html


def legend(*, has_baseline: bool, has_trend: bool, has_today: bool) -> SafeString:
    items = [(_("KPI"), KPI_COLOUR, "")]
    if has_baseline:
        items.append((_("Baseline"), BASELINE_COLOUR, "6 4"))
    items.append((_("Path to the target"), TARGET_COLOUR, ""))
    if has_trend:
        items.append((_("Trend"), TREND_COLOUR, "2 4"))
    if has_today:
        items.append((_("Today"), TODAY_COLOUR, ""))
    y = HEIGHT - 22
    entries, x = [], float(LEFT)
    for label, colour, dashes in items:
        entries.append((x, x + 24, y, y, colour, dashes or "none", x + 30, y, label))
        x += 30 + LEGEND_CHARACTER * len(str(label)) + 24  # the label's width, roughly, and a gap
    return format_html(
        '<g class="legend">{}</g>',
        format_html_join(
            "",
            '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="{}" stroke-width="2" stroke-dasharray="{}"/>'
            '<text x="{}" y="{}" dominant-baseline="middle" fill="currentColor">{}</text>',
            entries,
        ),
    )


def describe(*, goal: Goal, points: Sequence[tuple[dt.date, Decimal | None]], progress: Progress) -> str:
    """The chart in words, for a screen reader."""
    sentences = [
        _("%(metric)s from %(start)s to %(deadline)s, target %(target)s.")
        % {
            "metric": goal.get_metric_display(),
            "start": date_format(goal.starts_on),
            "deadline": date_format(goal.deadline),
            "target": format_value(goal.target, goal.metric),
        }
    ]
    if goal.baseline is not None:
        sentences.append(_("Baseline %(value)s.") % {"value": format_value(goal.baseline, goal.metric)})
    latest = next(((day, value) for day, value in reversed(points) if value is not None), None)
    if latest is not None:
        sentences.append(
            _("Latest value %(value)s on %(day)s.")
            % {"value": format_value(latest[1], goal.metric), "day": date_format(latest[0])}
        )
    if progress.trend is not None:
        sentences.append(
            _("The trend reaches %(value)s at the deadline.")
            % {"value": format_value(progress.trend[1].value, goal.metric)}
        )
    return " ".join(sentences)
