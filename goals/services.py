"""Goals: creating them with their baseline, and measuring their KPI into daily snapshots.

Campaign measurement (holdouts, assignments, uplift, cost) is in goals/experiments.py.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
import zoneinfo
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from audiences.models import Contact
from audiences.segments import RuleError
from audiences.selectors.segments import segment_contacts, segment_query_memory
from goals.metrics import CATALOGUE, Measured, Scope, Window
from goals.models import GlobalControlGroup, Goal, Metric, Period, Snapshot
from goals.progress import Progress, progress

logger = logging.getLogger(__name__)

# The fields that define what the KPI measures: changing one makes the history measure something
# else (it goes) and measures the baseline again, as does moving the start.
KPI_FIELDS = ("metric", "channel", "scope_segment", "period", "period_days")
BASELINE_FIELDS = (*KPI_FIELDS, "starts_on")

# What a target can be, per unit of the metric.
TARGET_RANGES = {
    "percent": (Decimal(0), Decimal(100)),
    "nps": (Decimal(-100), Decimal(100)),
    "score": (Decimal(0), Decimal(10)),
    "money": (Decimal(0), None),
    "number": (Decimal(0), None),
}


class NotMeasurable(Exception):
    """The goal's KPI cannot be measured as it stands; the message says why."""


def start_of(day: dt.date) -> dt.datetime:
    """Midnight at the start of the day in the marketeer's timezone (settings.TIME_ZONE)."""
    return dt.datetime.combine(day, dt.time(), tzinfo=zoneinfo.ZoneInfo(settings.TIME_ZONE))


def _period_start(goal: Goal, day: dt.date) -> dt.date:
    if goal.period == Period.MONTH:
        return day.replace(day=1)
    if goal.period == Period.QUARTER:
        return day.replace(month=3 * ((day.month - 1) // 3) + 1, day=1)
    if goal.period == Period.YEAR:
        return day.replace(month=1, day=1)
    return day + dt.timedelta(days=1 - goal.period_days)


def day_window(goal: Goal, day: dt.date) -> Window:
    """What a snapshot of the day measures: the rolling days ending with it, or its calendar
    period up to and including it."""
    return Window(start=start_of(_period_start(goal, day)), end=start_of(day + dt.timedelta(days=1)))


def baseline_window(goal: Goal, *, today: dt.date) -> Window:
    """The period before the goal's start: the rolling days before it, or the whole calendar
    period before the one it starts in. A goal that starts later takes the latest whole period."""
    first = min(goal.starts_on, today)
    if goal.period == Period.ROLLING:
        return day_window(goal, first - dt.timedelta(days=1))
    end = _period_start(goal, first)
    return Window(start=start_of(_period_start(goal, end - dt.timedelta(days=1))), end=start_of(end))


def goal_scope(goal: Goal, *, now: dt.datetime, control: bool = False) -> Scope:
    """The contacts the KPI is measured on: the scope segment as it was at `now`, or everyone;
    with `control`, only the scope's members of the global control group."""
    if goal.scope_segment_id is None:
        contacts = Contact.objects.filter(erased_at__isnull=True)
    else:
        try:
            contacts = segment_contacts(segment=goal.scope_segment, now=now)
        except RuleError as error:
            raise NotMeasurable(
                _("The scope segment “%(segment)s” cannot be evaluated: %(error)s")
                % {"segment": goal.scope_segment, "error": error}
            ) from error
    if control:
        # Imported here: goals.experiments builds on this module.
        from goals.experiments import global_control_condition

        contacts = contacts.filter(global_control_condition())
    sql, params = contacts.values("pk").query.sql_with_params()
    return Scope(sql=sql, params=params)


def kpi_measure(goal: Goal, window: Window, *, scope: Scope | None = None) -> Measured:
    """The goal's KPI over a window, in one query (with the segment's memory for its scope)."""
    scope = scope or goal_scope(goal, now=window.end)
    with segment_query_memory():
        return CATALOGUE[goal.metric].measure(scope, window, goal.channel)


def _check(goal: Goal) -> None:
    """What a goal must be, beyond its model's clean(): a target that asks for a change, within
    the metric's range, and a tree without cycles."""
    errors: dict[str, list[str]] = {}
    unit = CATALOGUE[goal.metric].unit
    low, high = TARGET_RANGES[unit]
    if goal.target is not None:
        if goal.target < low or (high is not None and goal.target > high):
            errors.setdefault("target", []).append(
                _("For %(metric)s the target must be between %(low)s and %(high)s.")
                % {"metric": goal.get_metric_display(), "low": low, "high": high}
                if high is not None
                else _("For %(metric)s the target cannot be below %(low)s.")
                % {"metric": goal.get_metric_display(), "low": low}
            )
        if goal.baseline is not None and goal.target == goal.baseline:
            errors.setdefault("target", []).append(
                _(
                    "The target equals the baseline (%(baseline)s): a goal asks for a change. "
                    "Set a target above or below it."
                )
                % {"baseline": format_value(goal.baseline, goal.metric)}
            )
    ancestor = goal.parent
    seen: set[int] = set()
    while ancestor is not None and ancestor.pk not in seen:
        if goal.pk is not None and ancestor.pk == goal.pk:
            errors.setdefault("parent", []).append(_("A goal cannot be part of itself or of a goal under it."))
            break
        seen.add(ancestor.pk)
        ancestor = ancestor.parent
    if errors:
        raise ValidationError(errors)


def _measure_baseline(goal: Goal, *, now: dt.datetime) -> None:
    window = baseline_window(goal, today=timezone.localdate(now))
    try:
        goal.baseline = kpi_measure(goal, window).value
    except NotMeasurable as error:
        raise ValidationError({"scope_segment": str(error)}) from error
    goal.baseline_measured_at = now


@transaction.atomic
def goal_create(*, owner: Any = None, now: dt.datetime | None = None, **fields: Any) -> Goal:
    """A new goal, its baseline measured over the period before its start."""
    goal = Goal(owner=owner, **fields)
    goal.full_clean()
    _measure_baseline(goal, now=now or timezone.now())
    _check(goal)
    goal.save()
    return goal


@transaction.atomic
def goal_update(*, goal: Goal, now: dt.datetime | None = None, **fields: Any) -> Goal:
    """Changes a goal. A change to what its KPI measures drops the snapshots (they measured
    something else) and measures the baseline again; a new start only measures the baseline again."""

    def changed(names: tuple[str, ...]) -> bool:
        return any(name in names and getattr(goal, name) != value for name, value in fields.items())

    kpi_changed = changed(KPI_FIELDS) and not (
        # The channel counts only for the opt-in rate.
        {name for name in KPI_FIELDS if changed((name,))} == {"channel"}
        and fields.get("metric", goal.metric) != Metric.OPT_IN_RATE
    )
    baseline_changed = kpi_changed or changed(BASELINE_FIELDS)
    for name, value in fields.items():
        setattr(goal, name, value)
    goal.full_clean()
    if baseline_changed:
        _measure_baseline(goal, now=now or timezone.now())
    _check(goal)
    goal.save()
    if kpi_changed:
        goal.snapshots.all().delete()
    if baseline_changed:
        goal_refresh_status(goal=goal, today=timezone.localdate(now or timezone.now()))
    return goal


def goal_measure(
    *,
    goal: Goal,
    day: dt.date,
    now: dt.datetime | None = None,
    scope: Scope | None = None,
    control: bool | None = None,
    control_scope: Scope | None = None,
) -> Snapshot:
    """The goal's snapshot of the day: written, or written again (one per goal per day). With the
    global control group on (`control`, read from its settings when not given), its members' KPI
    is measured beside it, in `control_scope` when given."""
    window = day_window(goal, day)
    measured = kpi_measure(goal, window, scope=scope)
    if control is None:
        control = global_control_enabled()
    in_control = None
    if control:
        in_control = kpi_measure(goal, window, scope=control_scope or goal_scope(goal, now=window.end, control=True))
    fields = {
        "value": measured.value,
        "numerator": measured.numerator,
        "denominator": measured.denominator,
        "control_value": in_control.value if in_control else None,
        "control_numerator": in_control.numerator if in_control else None,
        "control_denominator": in_control.denominator if in_control else None,
        "measured_at": now or timezone.now(),
    }
    Snapshot.objects.bulk_create(
        [Snapshot(goal=goal, day=day, **fields)],
        update_conflicts=True,
        unique_fields=["goal", "day"],
        update_fields=list(fields),
    )
    return Snapshot.objects.get(goal=goal, day=day)


def global_control_enabled() -> bool:
    return GlobalControlGroup.objects.filter(pk=1, enabled=True).exists()


def _next(day: dt.date) -> dt.date:
    return day + dt.timedelta(days=1)


def judged_values(goal: Goal, values: Iterable[tuple[dt.date, Decimal | None]]) -> list[tuple[dt.date, Decimal | None]]:
    """The snapshots a goal is judged on. A calendar goal's snapshot counts its period so far
    (the month up to the day), which climbs through every period and cannot be set against a
    whole period's baseline or target: it is judged on the snapshots of whole periods, those
    taken on a period's last day. A rolling goal is judged on every snapshot."""
    if goal.period == Period.ROLLING:
        return list(values)
    return [(day, value) for day, value in values if _period_start(goal, day + dt.timedelta(days=1)) == _next(day)]


def goal_progress(*, goal: Goal, values: Iterable[tuple[dt.date, Decimal | None]], today: dt.date) -> Progress:
    """Where the goal stands, from its snapshots' (day, value) pairs."""
    return progress(
        values=judged_values(goal, values),
        baseline=goal.baseline,
        target=goal.target,
        starts_on=goal.starts_on,
        deadline=goal.deadline,
        today=today,
        higher_is_better=CATALOGUE[goal.metric].higher_is_better,
    )


def goal_refresh_status(*, goal: Goal, today: dt.date) -> Goal:
    """The goal's status, current value and trend, from its snapshots."""
    values = list(goal.snapshots.order_by("day").values_list("day", "value"))
    found = goal_progress(goal=goal, values=values, today=today)
    latest = next((day for day, value in reversed(values) if value is not None), None)
    Goal.objects.filter(pk=goal.pk).update(
        status=found.status, current_value=found.current, projected_value=found.projected, measured_on=latest
    )
    goal.status, goal.current_value, goal.projected_value, goal.measured_on = (
        found.status,
        found.current,
        found.projected,
        latest,
    )
    return goal


@dataclass(frozen=True)
class Measurement:
    goal: Goal
    day: dt.date
    snapshot: Snapshot | None
    problem: str = ""


@contextmanager
def day_scopes(day: dt.date) -> Iterator[Callable[..., Scope]]:
    """Scopes as they were at the end of the day, each evaluated once and kept in a temporary
    table for the goals that share it: fifty goals on six segments evaluate six segments, not
    fifty. `scope_of(goal, control=True)` is the scope's part in the global control group.
    The tables go when the block ends."""
    end = start_of(day + dt.timedelta(days=1))
    tables: dict[tuple[int | None, bool], Scope | NotMeasurable] = {}
    names: list[str] = []  # made by uuid4 below, never from input

    def scope_of(goal: Goal, *, control: bool = False) -> Scope:
        key = (goal.scope_segment_id, control)
        if key not in tables:
            try:
                scope = goal_scope(goal, now=end, control=control)
            except NotMeasurable as error:
                tables[key] = error
            else:
                table = f"goal_scope_{uuid.uuid4().hex}"
                names.append(table)
                # In a savepoint of its own, outside any goal's: a goal's rollback must not take
                # the table the next goals share with it.
                with transaction.atomic(), segment_query_memory(), connection.cursor() as cursor:
                    cursor.execute(f"CREATE TEMPORARY TABLE {table} (id) AS {scope.sql}", scope.params)
                    cursor.execute(f"ANALYZE {table}")  # so the planner knows its size
                tables[key] = Scope(sql=f"SELECT id FROM {table}", params=())  # noqa: S608
        found = tables[key]
        if isinstance(found, NotMeasurable):
            raise found
        return found

    try:
        yield scope_of
    finally:
        with connection.cursor() as cursor:
            for table in names:
                cursor.execute(f"DROP TABLE IF EXISTS {table}")


def goals_measure(*, day: dt.date, goals: Any = None, now: dt.datetime | None = None) -> list[Measurement]:
    """One day's snapshot of every goal running that day (or of the goals given), each in its own
    transaction: a goal that cannot be measured is reported and does not stop the others.
    Running it again for the same day writes the same snapshots again, not new ones."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    if goals is None:
        goals = Goal.objects.filter(starts_on__lte=day, deadline__gte=day)
    results = []
    control = global_control_enabled()
    with day_scopes(day) as scope_of:
        for goal in goals.select_related("scope_segment").order_by("scope_segment", "pk"):
            try:
                scope = scope_of(goal)
                control_scope = scope_of(goal, control=True) if control else None
                with transaction.atomic():
                    snapshot = goal_measure(
                        goal=goal, day=day, now=now, scope=scope, control=control, control_scope=control_scope
                    )
                    goal_refresh_status(goal=goal, today=today)
            except NotMeasurable as error:
                logger.warning("goal %s not measured for %s: %s", goal.pk, day, error)
                results.append(Measurement(goal, day, None, str(error)))
                continue
            except DatabaseError as error:  # a timeout, say: this goal waits for the next run
                logger.exception("goal %s not measured for %s", goal.pk, day)
                results.append(Measurement(goal, day, None, _("The database failed: %(error)s") % {"error": error}))
                continue
            results.append(Measurement(goal, day, snapshot))
    # Goals past their deadline are settled (achieved or missed) without measuring again.
    # (A goal that never had data stays "no data"; one settled stays settled.)
    for goal in Goal.objects.filter(deadline__lt=today, status__in=[Goal.Status.ON_TRACK, Goal.Status.AT_RISK]):
        goal_refresh_status(goal=goal, today=today)
    return results


def format_value(value: Decimal | None, metric: str) -> str:
    """A KPI value as a marketeer reads it: 12.5%, € 34.20, 1.8, +23."""
    if value is None:
        return _("no data")
    unit = CATALOGUE[metric].unit
    if unit == "percent":
        return f"{value:.1f}%"
    if unit == "money":
        return f"€ {value:.2f}"
    if unit == "nps":
        return f"{value:+.0f}"
    return f"{value:.2f}"


def required_change(goal: Goal) -> str:
    """What the target asks of the baseline, as the admin shows it beside it: "+20% (5.0% → 6.0%)"."""
    if goal.baseline is None or goal.target is None:
        return _("no baseline: there was no data in the period before the start")
    difference = goal.target - goal.baseline
    unit = CATALOGUE[goal.metric].unit
    points = _("%(change)+.1f percentage points") % {"change": difference} if unit == "percent" else ""
    if goal.baseline == 0:
        relative = points or f"{difference:+.2f}"
    else:
        relative = f"{difference / abs(goal.baseline) * 100:+.0f}%" + (f", {points}" if points else "")
    return f"{relative} ({format_value(goal.baseline, goal.metric)} → {format_value(goal.target, goal.metric)})"
