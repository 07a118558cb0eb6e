"""Reads of campaign measurement: each experiment's uplift with its statistics, cost, ROI and share
of its goal's target, for the admin, the API and the dashboard.

The figures come from the latest Uplift (goals/experiments.py writes one per experiment per day)
and goals/statistics.py. When a sample is too small to trust, the comparisons still say so
(`too_small`), but no incremental figure, ROI or share is given: a number from a tiny holdout
would mislead more than no number.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.utils.translation import gettext as _

from goals.metrics import CATALOGUE, FOUR_PLACES, HUNDRED
from goals.models import Experiment, Goal, Metric, Snapshot, Uplift
from goals.statistics import Comparison, Rate, Sample, compare_means, compare_rates, too_small_reason

CENTS = Decimal("0.01")

# The metrics a campaign's incremental conversions or revenue translate into, per scope contact.
SHARE_METRICS = (Metric.CONVERSION_RATE, Metric.REVENUE_PER_CONTACT)


@dataclass(frozen=True)
class UpliftResult:
    """An experiment's latest measured effect, and what it is worth."""

    experiment: Experiment
    uplift: Uplift | None  # the latest measurement, None when never measured
    conversion: Comparison | None  # conversion rate, treatment against holdout
    revenue: Comparison | None  # revenue per contact, treatment against holdout
    incremental_conversions: float | None  # conversions the campaign added in its treatment
    incremental_revenue: Decimal | None  # revenue the campaign added in its treatment
    cost: Decimal  # what its sends cost, as of the latest measurement (0 before the first)
    roi: Decimal | None  # (incremental revenue - cost) / cost
    target_share: Decimal | None  # the share (%) of the goal's required change the campaign brought
    problem: str  # "" when the figures can be trusted, else why they are missing or not to be trusted


def _sample(size: int, revenue: Decimal, squares: Decimal) -> Sample:
    """Revenue per contact as a sample, from the group's sum and sum of squares.

    The variance is computed in Decimal, (Σx² - (Σx)²/n) / (n - 1), where a float would lose the
    small difference of two large numbers; rounding can leave a hair below zero, which is zero.
    """
    mean = revenue / size
    variance = (squares - revenue * revenue / size) / (size - 1)
    return Sample(size=size, mean=float(mean), variance=max(float(variance), 0.0))


def _target_share(goal: Goal, snapshot: Snapshot | None, conversions: float, revenue: Decimal) -> Decimal | None:
    """The campaign's part in the change the goal asks for, in % of (target - baseline).

    Its incremental conversions (or revenue) spread over the goal's scope (the latest snapshot's
    denominator: the contacts the KPI divides by) are the KPI points it moved.
    """
    if goal.metric not in SHARE_METRICS or goal.baseline is None or snapshot is None:
        return None
    if not snapshot.denominator or goal.target == goal.baseline:
        return None
    if goal.metric == Metric.CONVERSION_RATE:
        points = Decimal(conversions) * HUNDRED / snapshot.denominator  # the KPI is in percent
    else:
        points = revenue / snapshot.denominator
    return (points / (goal.target - goal.baseline) * HUNDRED).quantize(CENTS)


def _result(experiment: Experiment, uplift: Uplift | None, snapshot: Snapshot | None) -> UpliftResult:
    def without_figures(problem: str, **comparisons: Comparison) -> UpliftResult:
        return UpliftResult(
            experiment=experiment,
            uplift=uplift,
            conversion=comparisons.get("conversion"),
            revenue=comparisons.get("revenue"),
            incremental_conversions=None,
            incremental_revenue=None,
            cost=uplift.cost if uplift is not None else Decimal(0),
            roi=None,
            target_share=None,
            problem=problem,
        )

    if uplift is None:
        return without_figures(_("Not measured yet."))
    treated, held_out = uplift.treatment_size, uplift.holdout_size
    if held_out == 0 and experiment.holdout_off_reason:
        return without_figures(_("No holdout: %(reason)s") % {"reason": experiment.holdout_off_reason})
    if min(treated, held_out) < 2:  # nothing to compare: the statistics need two contacts a group
        return without_figures(too_small_reason((treated, held_out)))

    conversion = compare_rates(
        treatment=Rate(conversions=uplift.treatment_conversions, size=treated),
        control=Rate(conversions=uplift.holdout_conversions, size=held_out),
    )
    revenue = compare_means(
        treatment=_sample(treated, uplift.treatment_revenue, uplift.treatment_revenue_squares),
        control=_sample(held_out, uplift.holdout_revenue, uplift.holdout_revenue_squares),
    )
    if conversion.too_small or revenue.too_small:
        return without_figures(conversion.reason or revenue.reason, conversion=conversion, revenue=revenue)

    incremental_conversions = conversion.absolute * treated
    incremental_revenue = ((uplift.treatment_revenue / treated - uplift.holdout_revenue / held_out) * treated).quantize(
        CENTS
    )
    roi = ((incremental_revenue - uplift.cost) / uplift.cost).quantize(FOUR_PLACES) if uplift.cost else None
    return UpliftResult(
        experiment=experiment,
        uplift=uplift,
        conversion=conversion,
        revenue=revenue,
        incremental_conversions=incremental_conversions,
        incremental_revenue=incremental_revenue,
        cost=uplift.cost,
        roi=roi,
        target_share=_target_share(experiment.goal, snapshot, incremental_conversions, incremental_revenue),
        problem="",
    )


def _latest_uplifts(experiment_ids: list[int]) -> dict[int, Uplift]:
    """Each experiment's latest Uplift, in one query (DISTINCT ON)."""
    if not experiment_ids:
        return {}
    latest = (
        Uplift.objects.filter(experiment_id__in=experiment_ids)
        .order_by("experiment_id", "-measured_on")
        .distinct("experiment_id")
    )
    return {uplift.experiment_id: uplift for uplift in latest}


def _latest_snapshots(goals: Iterable[Goal]) -> dict[int, Snapshot]:
    """The latest snapshot with a value of each goal a share can be computed for, in one query."""
    goal_ids = [goal.pk for goal in goals if goal.metric in SHARE_METRICS and goal.baseline is not None]
    if not goal_ids:
        return {}
    latest = (
        Snapshot.objects.filter(goal_id__in=goal_ids, value__isnull=False)
        .order_by("goal_id", "-day")
        .distinct("goal_id")
    )
    return {snapshot.goal_id: snapshot for snapshot in latest}


def experiment_result(*, experiment: Experiment) -> UpliftResult:
    """One experiment's latest result (its goal, latest uplift and goal's latest snapshot: up to 3 queries)."""
    goal = experiment.goal
    uplift = _latest_uplifts([experiment.pk]).get(experiment.pk)
    snapshot = _latest_snapshots([goal]).get(goal.pk) if uplift is not None else None
    return _result(experiment, uplift, snapshot)


def goal_uplifts(*, goals: Iterable[Goal]) -> dict[int, list[UpliftResult]]:
    """Each goal's experiments with their latest results, newest experiment first, by goal id.

    At most three queries whatever the number of goals and experiments: the experiments, their
    latest uplifts and the goals' latest snapshots. Every goal given has an entry, [] when it
    has no experiments.
    """
    by_id = {goal.pk: goal for goal in goals}
    results: dict[int, list[UpliftResult]] = {goal_id: [] for goal_id in by_id}
    if not by_id:
        return results
    experiments = list(Experiment.objects.filter(goal_id__in=by_id).order_by("goal_id", "-created_at", "-pk"))
    if not experiments:
        return results
    uplifts = _latest_uplifts([experiment.pk for experiment in experiments])
    snapshots = _latest_snapshots(by_id.values())
    for experiment in experiments:
        experiment.goal = by_id[experiment.goal_id]  # the goal we were given: no query per experiment
        results[experiment.goal_id].append(
            _result(experiment, uplifts.get(experiment.pk), snapshots.get(experiment.goal_id))
        )
    return results


# Metrics whose numerator and denominator count contacts: two groups' values are proportions of
# independent contacts, which the two-proportion test compares.
CONTACT_RATES = {
    Metric.CONVERSION_RATE,
    Metric.CHURN_RATE,
    Metric.OPT_IN_RATE,
    Metric.EMAIL_OPEN_RATE,
    Metric.EMAIL_CLICK_RATE,
}


@dataclass(frozen=True)
class TotalEffect:
    """The total effect of all marketing on a goal's KPI on a day: the scope less the global control
    group (everyone marketing may reach) against the group's members (whom it never reaches)."""

    day: object
    control: Decimal | None
    everyone_else: Decimal | None
    difference: Decimal | None
    control_size: Decimal
    comparison: Comparison | None  # for contact rates only; None for amounts, scores and NPS
    problem: str


def goal_total_effect(*, goal: Goal) -> TotalEffect | None:
    """From the goal's latest snapshot measured with the global control group; None when there is none."""
    snapshot = goal.snapshots.exclude(control_denominator=None).order_by("-day").first()
    if snapshot is None or snapshot.control_numerator is None or snapshot.control_denominator is None:
        return None
    rest_numerator = snapshot.numerator - snapshot.control_numerator
    rest_denominator = snapshot.denominator - snapshot.control_denominator
    everyone_else = CATALOGUE[goal.metric].ratio(rest_numerator, rest_denominator).value
    control = snapshot.control_value
    difference = None if control is None or everyone_else is None else everyone_else - control
    comparison = None
    problem = ""
    if control is None or everyone_else is None:
        problem = _("No data in one of the groups.")
    elif goal.metric in CONTACT_RATES:
        comparison = compare_rates(
            treatment=Rate(int(rest_numerator), int(rest_denominator)),
            control=Rate(int(snapshot.control_numerator), int(snapshot.control_denominator)),
        )
        problem = comparison.reason if comparison.too_small else ""
    return TotalEffect(
        day=snapshot.day,
        control=control,
        everyone_else=everyone_else,
        difference=difference,
        control_size=snapshot.control_denominator,
        comparison=comparison,
        problem=problem,
    )
