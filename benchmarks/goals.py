"""Goals on a million contacts: one day's snapshot of each KPI, and a day of 50 goals.

    .venv/bin/python benchmarks/goals.py --contacts 1000000 --seed 1 \\
        --database-url postgres://postgres@127.0.0.1:5432/dialoog_bench

Uses the demo data of benchmarks/segments.py (1,000,000 contacts, about 10,000,000 events),
building it unless it is there, then prints one JSON line per figure:

- `goal_snapshot_<metric>`: one day's value of the metric for a goal scoped to a segment (loyalty
  members with e-mail consent, about a third of the contacts), measured by `kpi_measure` as the
  daily snapshot does, median of `--runs` runs after a warm-up. Beside it, in the same run, the
  baseline: counting the segment alone (`segment_count`), the least any segment-scoped KPI must
  do. Target: at most 2 s each. For the conversion rate, a hand-written query (a plain join of
  the segment's contacts and the window's purchases) must give the same numbers.
- `goals_measure_50`: `goals_measure` for one day over 50 goals (every metric, scoped to five
  segments and to everyone), snapshots written and statuses set, beside the sum of the single
  snapshots' medians. Target: at most 60 s. `goals_measure_50_with_global_control`: the same
  with the global control group on (2%), each goal measuring its members as well.
- `experiment_assign_and_measure`: the segment's contacts assigned to a campaign's treatment and
  holdout (one INSERT ... SELECT), and one day's uplift measured over them (median).

The goals and segments it makes are named "Benchmark ..." and removed at the end.
Benchmarks are run by hand, not by the test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from segments import DEFAULT_AS_OF, DEFAULT_DATABASE_URL, build_data, check, emit, load, log, setup_django

SCOPE_RULES = {
    "version": 1,
    "root": {
        "all": [
            {"attribute": "loyalty_member", "op": "eq", "value": True},
            {"consent": "email", "status": "granted"},
        ]
    },
}
# The other scopes of the 50 goals: broad and narrow, attributes, events and consent.
OTHER_SCOPES = {
    "Benchmark: bought in 90 days": {
        "version": 1,
        "root": {"event": "purchase", "within_days": 90, "aggregate": "count", "op": "gte", "value": 1},
    },
    "Benchmark: phone consent": {"version": 1, "root": {"consent": "phone", "status": "granted"}},
    "Benchmark: loyalty members": {
        "version": 1,
        "root": {"attribute": "loyalty_member", "op": "eq", "value": True},
    },
    "Benchmark: in Utrecht": {"version": 1, "root": {"attribute": "city", "op": "eq", "value": "Utrecht"}},
}

CONVERSION_SQL = """
    SELECT count(DISTINCT e.contact_id)
    FROM audiences_event e
    JOIN audiences_contact c ON c.id = e.contact_id
    WHERE e.type = 'purchase' AND e.occurred_at >= %s AND e.occurred_at < %s
      AND c.erased_at IS NULL AND (c.attributes -> 'loyalty_member') = 'true'::jsonb
      AND EXISTS (
          SELECT 1 FROM audiences_consent k
          WHERE k.contact_id = c.id AND k.channel = 'email' AND k.status = 'granted'
      )
"""


def median_seconds(function, runs: int) -> tuple[float, object]:
    function()  # warm-up: the first run reads from disk, the daily task's does not
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def goal_for(metric: str, segment, as_of: dt.date):
    from goals.models import Goal

    return Goal(
        name=f"Benchmark: {metric}",
        domain="conversions",
        metric=metric,
        channel="email" if metric == "opt_in_rate" else "",
        scope_segment=segment,
        period_days=90 if metric == "churn_rate" else 30,
        starts_on=as_of - dt.timedelta(days=30),
        deadline=as_of + dt.timedelta(days=90),
        target=Decimal(1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--as-of", type=dt.date.fromisoformat, default=DEFAULT_AS_OF)
    parser.add_argument("--runs", type=int, default=3, help="Timed runs of each snapshot (median).")
    parser.add_argument("--goals", type=int, default=50)
    args = parser.parse_args()
    setup_django(args.database_url)

    from django.core.management import call_command
    from django.db import connection

    from audiences.models import Segment
    from audiences.selectors.segments import segment_contacts, segment_count
    from goals.experiments import (
        experiment_assign,
        experiment_create,
        experiment_measure,
        global_control,
        global_control_update,
    )
    from goals.metrics import CATALOGUE
    from goals.models import Experiment, Goal
    from goals.services import day_window, goal_create, goals_measure, kpi_measure, start_of

    call_command("migrate", verbosity=0)
    build_data(args.contacts, args.seed, args.as_of)
    day = args.as_of - dt.timedelta(days=1)
    now = start_of(args.as_of)
    Experiment.objects.filter(name="Bench").delete()
    Goal.objects.filter(name__startswith="Benchmark").delete()
    segment, _ = Segment.objects.update_or_create(
        name="Benchmark: loyal with e-mail consent", defaults={"kind": Segment.Kind.DYNAMIC, "rules": SCOPE_RULES}
    )
    log(f"load before: {load()}")

    scope_seconds, scope_size = median_seconds(lambda: segment_count(segment=segment, now=now), args.runs)
    emit(figure="goal_scope_count", seconds=round(scope_seconds, 3), contacts=scope_size)
    singles = 0.0
    for metric in CATALOGUE:
        goal = goal_for(metric, segment, args.as_of)
        window = day_window(goal, day)
        seconds, measured = median_seconds(lambda goal=goal, window=window: kpi_measure(goal, window), args.runs)
        singles += seconds
        emit(
            figure=f"goal_snapshot_{metric}",
            seconds=round(seconds, 3),
            target_seconds=2,
            baseline_scope_count_seconds=round(scope_seconds, 3),
            ratio_to_baseline=round(seconds / scope_seconds, 2),
            value=str(measured.value),
            numerator=str(measured.numerator),
            denominator=str(measured.denominator),
        )
        if metric == "conversion_rate":
            check(measured.denominator == scope_size, "the conversion rate's scope differs from the segment's count")
            with connection.cursor() as cursor:
                started = time.perf_counter()
                cursor.execute(CONVERSION_SQL, [window.start, window.end])
                buyers = cursor.fetchone()[0]
                hand_written = time.perf_counter() - started
            emit(figure="goal_snapshot_conversion_rate_hand_written", seconds=round(hand_written, 3))
            check(measured.numerator == buyers, f"conversion: {measured.numerator} buyers, hand-written {buyers}")

    scopes = [segment, None]
    for name, rules in OTHER_SCOPES.items():
        scopes.append(Segment.objects.update_or_create(name=name, defaults={"kind": "dynamic", "rules": rules})[0])
    metrics = list(CATALOGUE)
    for number in range(args.goals):
        goal = goal_for(metrics[number % len(metrics)], scopes[number % len(scopes)], args.as_of)
        goal.name = f"Benchmark goal {number + 1}: {goal.metric}"
        fields = {field.name: getattr(goal, field.name) for field in Goal._meta.concrete_fields if field.editable}
        fields.pop("id")
        fields.pop("owner")
        fields.pop("parent")
        fields["target"] = Decimal("5.5")  # within every unit's range
        goal_create(now=now, **fields)
    started = time.perf_counter()
    results = goals_measure(day=day, goals=Goal.objects.filter(name__startswith="Benchmark goal"), now=now)
    seconds = time.perf_counter() - started
    check(not [result for result in results if result.problem], "a goal could not be measured")
    emit(
        figure="goals_measure_50",
        goals=len(results),
        seconds=round(seconds, 1),
        target_seconds=60,
        baseline_sum_of_single_snapshots_seconds=round(singles * len(results) / len(metrics), 1),
    )

    # The same day with the global control group on (2%): each goal also measures its members.
    previous = global_control()
    was = (previous.enabled, previous.percent)
    global_control_update(enabled=True, percent=Decimal(2), user=None)
    try:
        started = time.perf_counter()
        results = goals_measure(day=day, goals=Goal.objects.filter(name__startswith="Benchmark goal"), now=now)
        seconds = time.perf_counter() - started
    finally:
        global_control_update(enabled=was[0], percent=was[1], user=None)
    check(not [result for result in results if result.problem], "a goal could not be measured")
    emit(
        figure="goals_measure_50_with_global_control", goals=len(results), seconds=round(seconds, 1), target_seconds=60
    )

    # A campaign's uplift: its segment-sized audience assigned (10% held out), then one day measured.
    experiment = experiment_create(goal=Goal.objects.filter(name__startswith="Benchmark goal").first(), name="Bench")
    audience = segment_contacts(segment=segment, now=now)
    started = time.perf_counter()
    assigned = experiment_assign(experiment=experiment, contacts=audience, now=now - dt.timedelta(days=30))
    assign_seconds = time.perf_counter() - started
    seconds, uplift = median_seconds(lambda: experiment_measure(experiment=experiment, day=day, now=now), args.runs)
    emit(
        figure="experiment_assign_and_measure",
        contacts=assigned.treatment + assigned.holdout,
        holdout=assigned.holdout,
        assign_seconds=round(assign_seconds, 2),
        measure_seconds=round(seconds, 2),
        treatment_conversions=uplift.treatment_conversions,
        holdout_conversions=uplift.holdout_conversions,
    )
    log(f"load after: {load()}")
    Experiment.objects.filter(name="Bench").delete()
    Goal.objects.filter(name__startswith="Benchmark").delete()
    Segment.objects.filter(name__startswith="Benchmark").delete()


if __name__ == "__main__":
    main()
