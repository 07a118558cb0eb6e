"""Goals' KPIs computed in SQL, their daily snapshots, baselines and status."""

import dataclasses
import datetime as dt
import zoneinfo
from decimal import Decimal

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import ProtectedError
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from audiences.models import Contact, Event, Segment
from audiences.services.consents import consent_record
from goals.experiments import experiment_assign, experiment_create, global_control_condition, global_control_update
from goals.metrics import CATALOGUE
from goals.models import Goal, Metric, Period, Snapshot
from goals.progress import progress
from goals.selectors import goal_total_effect
from goals.services import (
    baseline_window,
    day_window,
    goal_create,
    goal_measure,
    goal_progress,
    goal_update,
    goals_measure,
    kpi_measure,
    required_change,
)
from goals.tasks import measure_goals
from tests.factories import ContactFactory, EventFactory, GoalFactory, SegmentFactory

pytestmark = pytest.mark.django_db

AMSTERDAM = zoneinfo.ZoneInfo("Europe/Amsterdam")
DAY = dt.date(2026, 11, 20)
NOW = dt.datetime(2026, 11, 22, 9, 0, tzinfo=AMSTERDAM)


def at(day: dt.date, hour: int = 12, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=AMSTERDAM)


def goal_for(metric: str, **fields) -> Goal:
    """An unsaved goal over 30 rolling days: what kpi_measure needs."""
    defaults = {
        "name": "Test",
        "domain": "conversions",
        "metric": metric,
        "period": Period.ROLLING,
        "period_days": 30,
        "starts_on": dt.date(2026, 11, 1),
        "deadline": dt.date(2027, 3, 1),
        "target": Decimal(50),
    }
    return Goal(**(defaults | fields))


def measure(metric: str, day: dt.date = DAY, **fields):
    goal = goal_for(metric, **fields)
    return kpi_measure(goal, day_window(goal, day))


def purchase(contact, when, value="10.00", **extra):
    return EventFactory(contact=contact, type=Event.Type.PURCHASE, occurred_at=when, value=Decimal(value), **extra)


def test_every_metric_of_the_model_is_in_the_catalogue_and_back():
    assert set(CATALOGUE) == set(Metric.values)


def test_purchase_metrics_count_the_window_and_the_scope_exactly():
    buyer, twice, idle = ContactFactory(), ContactFactory(), ContactFactory()
    ContactFactory(erased_at=NOW)  # erased contacts are in no scope
    purchase(buyer, at(DAY, 23, 59), "30.00")  # the last minute of the day counts
    purchase(twice, at(DAY - dt.timedelta(days=29), 0, 0), "10.00")  # the first minute of the window counts
    purchase(twice, at(DAY - dt.timedelta(days=3)), "20.00")
    purchase(idle, at(DAY + dt.timedelta(days=1), 0, 0), "99.00")  # the next day does not
    purchase(idle, at(DAY - dt.timedelta(days=30), 23, 59), "99.00")  # nor the day before the window
    EventFactory(contact=idle, type=Event.Type.PAGE_VIEW, occurred_at=at(DAY))

    conversion = measure(Metric.CONVERSION_RATE)
    assert (conversion.numerator, conversion.denominator) == (2, 3)
    assert conversion.value == Decimal("66.6667")
    assert measure(Metric.REVENUE_PER_CONTACT).value == Decimal("20.0000")  # 60 / 3
    assert measure(Metric.AVERAGE_ORDER_VALUE).value == Decimal("20.0000")  # 60 / 3 orders
    assert measure(Metric.PURCHASE_FREQUENCY).value == Decimal("1.5000")  # 3 orders / 2 buyers
    EventFactory(contact=buyer, type=Event.Type.PURCHASE, occurred_at=at(DAY), value=None)
    assert measure(Metric.AVERAGE_ORDER_VALUE).value == Decimal("20.0000")  # still 60 / 3 orders with a value
    assert measure(Metric.PURCHASE_FREQUENCY).value == Decimal(2)  # 4 orders / 2 buyers


def test_a_segment_scope_counts_only_its_contacts():
    inside, outside = ContactFactory(), ContactFactory()
    segment = SegmentFactory(
        kind=Segment.Kind.DYNAMIC,
        rules={"version": 1, "root": {"all": [{"field": "last_name", "op": "eq", "value": "Jansen"}]}},
    )
    Contact.objects.filter(pk=inside.pk).update(last_name="Jansen")
    Contact.objects.filter(pk=outside.pk).update(last_name="de Vries")
    purchase(outside, at(DAY))

    measured = measure(Metric.CONVERSION_RATE, scope_segment=segment)

    assert (measured.numerator, measured.denominator, measured.value) == (0, 1, Decimal(0))


def test_churn_is_the_share_of_last_windows_buyers_who_did_not_buy_again():
    stayed, left, new = ContactFactory(), ContactFactory(), ContactFactory()
    purchase(stayed, at(DAY - dt.timedelta(days=45)))
    purchase(stayed, at(DAY - dt.timedelta(days=2)))
    purchase(left, at(DAY - dt.timedelta(days=40)))
    purchase(new, at(DAY - dt.timedelta(days=1)))  # not a customer of the window before: not in the base

    churn = measure(Metric.CHURN_RATE)

    assert (churn.numerator, churn.denominator, churn.value) == (1, 2, Decimal(50))


def test_opt_in_rate_reads_the_consent_as_it_was_at_the_end_of_the_day():
    granted, withdrawn_later, regranted_later, withdrawn, other_channel = ContactFactory.create_batch(5)
    changes = [
        (granted, "email", "granted", at(DAY - dt.timedelta(days=100))),
        (withdrawn_later, "email", "granted", at(DAY - dt.timedelta(days=100))),
        (withdrawn_later, "email", "withdrawn", at(DAY + dt.timedelta(days=1))),  # after the day: granted then
        (regranted_later, "email", "granted", at(DAY - dt.timedelta(days=100))),
        (regranted_later, "email", "withdrawn", at(DAY, 8)),
        (regranted_later, "email", "granted", at(DAY + dt.timedelta(days=2))),  # withdrawn at the day's end
        (withdrawn, "email", "granted", at(DAY - dt.timedelta(days=100))),
        (withdrawn, "email", "withdrawn", at(DAY, 8)),
        (other_channel, "sms", "granted", at(DAY - dt.timedelta(days=5))),
    ]
    for contact, channel, status, when in changes:
        consent_record(contact=contact, channel=channel, status=status, source="test", recorded_at=when)

    email = measure(Metric.OPT_IN_RATE, channel="email")
    sms = measure(Metric.OPT_IN_RATE, channel="sms")

    assert (email.numerator, email.denominator, email.value) == (2, 5, Decimal(40))
    assert (sms.numerator, sms.value) == (1, Decimal(20))


def test_email_open_and_click_to_open_rates():
    opened, clicked, silent, _ = ContactFactory.create_batch(4)
    EventFactory(contact=opened, type=Event.Type.EMAIL_OPENED, occurred_at=at(DAY))
    EventFactory(contact=clicked, type=Event.Type.EMAIL_OPENED, occurred_at=at(DAY))
    EventFactory(contact=clicked, type=Event.Type.EMAIL_CLICKED, occurred_at=at(DAY))
    EventFactory(contact=silent, type=Event.Type.EMAIL_OPENED, occurred_at=at(DAY - dt.timedelta(days=40)))

    assert measure(Metric.EMAIL_OPEN_RATE).value == Decimal(50)  # 2 of 4 contacts
    assert measure(Metric.EMAIL_CLICK_RATE).value == Decimal(50)  # 1 of the 2 who opened


def test_offer_acceptance_counts_answered_calls_only():
    contact = ContactFactory()
    for outcome in ["accepted", "accepted", "declined", "no_answer", "no_answer"]:
        EventFactory(
            contact=contact, type=Event.Type.CALL_OUTCOME, occurred_at=at(DAY), properties={"outcome": outcome}
        )

    measured = measure(Metric.OFFER_ACCEPTANCE_RATE)

    assert (measured.numerator, measured.denominator) == (2, 3)


def test_nps_is_promoters_minus_detractors_and_skips_scores_that_are_not_numbers():
    contact = ContactFactory()
    for score in [10, 9, 9, 8, 7, 6, 0, "tien", "", 11, "9.5"]:
        EventFactory(contact=contact, type=Event.Type.NPS_RESPONSE, occurred_at=at(DAY), properties={"score": score})

    measured = measure(Metric.NPS)

    # Counted: 10, 9, 9, 8, 7, 6, 0, 9.5 → 4 promoters, 2 detractors of 8 responses.
    assert (measured.numerator, measured.denominator, measured.value) == (2, 8, Decimal(25))


def test_satisfaction_is_the_average_score():
    contact = ContactFactory()
    for score in [5, 4, 3, "goed"]:
        EventFactory(
            contact=contact, type=Event.Type.SATISFACTION_RESPONSE, occurred_at=at(DAY), properties={"score": score}
        )

    assert measure(Metric.SATISFACTION).value == Decimal(4)


@pytest.mark.parametrize("metric", list(Metric.values))
def test_a_period_without_data_is_no_data_never_a_division_by_zero(metric):
    measured = measure(metric, channel="email")  # no contacts, no events

    assert measured.value is None
    assert measured.denominator == 0


@pytest.mark.parametrize(
    ("period", "day", "start", "end"),
    [
        (Period.ROLLING, dt.date(2026, 3, 10), dt.date(2026, 2, 9), dt.date(2026, 3, 11)),
        (Period.MONTH, dt.date(2026, 3, 10), dt.date(2026, 3, 1), dt.date(2026, 3, 11)),
        (Period.QUARTER, dt.date(2026, 5, 31), dt.date(2026, 4, 1), dt.date(2026, 6, 1)),
        (Period.YEAR, dt.date(2026, 12, 31), dt.date(2026, 1, 1), dt.date(2027, 1, 1)),
    ],
)
def test_a_days_window_is_its_rolling_days_or_its_calendar_period_to_date(period, day, start, end):
    window = day_window(goal_for(Metric.CONVERSION_RATE, period=period), day)

    # Midnight in Amsterdam, across the change to summer time on 29 March.
    assert (window.start, window.end) == (at(start, 0), at(end, 0))


@pytest.mark.parametrize(
    ("period", "starts_on", "start", "end"),
    [
        (Period.ROLLING, dt.date(2026, 11, 1), dt.date(2026, 10, 2), dt.date(2026, 11, 1)),
        (Period.MONTH, dt.date(2026, 11, 15), dt.date(2026, 10, 1), dt.date(2026, 11, 1)),
        (Period.QUARTER, dt.date(2026, 11, 15), dt.date(2026, 7, 1), dt.date(2026, 10, 1)),
    ],
)
def test_the_baseline_is_the_period_before_the_start(period, starts_on, start, end):
    goal = goal_for(Metric.CONVERSION_RATE, period=period, starts_on=starts_on)

    window = baseline_window(goal, today=dt.date(2026, 11, 22))

    assert (window.start, window.end) == (at(start, 0), at(end, 0))


def test_a_goal_that_starts_later_takes_the_latest_whole_period_as_its_baseline():
    goal = goal_for(Metric.CONVERSION_RATE, starts_on=dt.date(2027, 1, 1))

    window = baseline_window(goal, today=dt.date(2026, 11, 22))

    assert window.end == at(dt.date(2026, 11, 22), 0)


def new_goal(**fields) -> Goal:
    values = {
        "name": "Meer conversie",
        "domain": "conversions",
        "metric": Metric.CONVERSION_RATE,
        "starts_on": dt.date(2026, 11, 1),
        "deadline": dt.date(2027, 3, 1),
        "target": Decimal(60),
    } | fields
    return goal_create(now=NOW, **values)


def test_creating_a_goal_measures_its_baseline_over_the_period_before_the_start(english):
    buyer, _ = ContactFactory.create_batch(2)
    purchase(buyer, at(dt.date(2026, 10, 15)))  # in the 30 days before 1 November
    purchase(buyer, at(dt.date(2026, 11, 5)))  # after the start: not in the baseline

    goal = new_goal()

    assert goal.baseline == Decimal(50)
    assert goal.baseline_measured_at == NOW
    assert required_change(goal) == "+20%, +10.0 percentage points (50.0% → 60.0%)"


def test_a_target_equal_to_the_baseline_is_refused_and_nothing_is_saved(english):
    buyer, _ = ContactFactory.create_batch(2)
    purchase(buyer, at(dt.date(2026, 10, 15)))

    with pytest.raises(ValidationError) as refused:
        new_goal(target=Decimal(50))

    assert "The target equals the baseline (50.0%)" in refused.value.message_dict["target"][0]
    assert not Goal.objects.exists()


def test_a_goal_without_baseline_data_still_takes_a_target(english):
    goal = new_goal(target=Decimal(5))

    assert goal.baseline is None
    assert "no baseline" in required_change(goal)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"deadline": dt.date(2026, 10, 1)}, "deadline", "The deadline must be after the start."),
        ({"target": Decimal(120)}, "target", "must be between 0 and 100"),
        ({"metric": Metric.OPT_IN_RATE}, "channel", "Choose the channel"),
        ({"metric": Metric.CHURN_RATE, "period": Period.MONTH}, "period", "rolling number of days"),
    ],
)
def test_bad_goals_are_refused_with_the_field_and_why(fields, field, message, english):
    with pytest.raises(ValidationError) as refused:
        new_goal(**fields)

    assert message in " ".join(refused.value.message_dict[field])
    assert not Goal.objects.exists()


def test_a_goal_cannot_be_part_of_a_goal_under_it(english):
    objective = new_goal(name="Minder churn")
    team = new_goal(name="Team winback", parent=objective)

    with pytest.raises(ValidationError) as refused:
        goal_update(goal=objective, parent=team)

    assert "part of itself" in refused.value.message_dict["parent"][0]
    assert Goal.objects.get(pk=objective.pk).parent is None


def test_a_segment_that_a_goal_measures_cannot_be_deleted():
    segment = SegmentFactory()
    goal = new_goal(scope_segment=segment)

    with pytest.raises(ProtectedError) as refused:
        segment.delete()

    assert goal in refused.value.protected_objects
    assert Segment.objects.filter(pk=segment.pk).exists()


def test_the_segment_admin_names_the_goal_that_keeps_a_segment_from_being_deleted(client, marketeer):
    segment = SegmentFactory(name="Tuinbezitters")
    new_goal(name="Meer tuinverkoop", scope_segment=segment)
    client.force_login(marketeer)

    response = client.get(f"/admin/audiences/segment/{segment.pk}/delete/")

    assert response.status_code == 200
    assert "Meer tuinverkoop" in response.content.decode()
    assert response.context["protected"]


def test_changing_what_the_kpi_measures_measures_the_baseline_again_and_drops_the_old_history():
    buyer, _other = ContactFactory.create_batch(2)
    purchase(buyer, at(dt.date(2026, 10, 15)), "40.00")
    goal = new_goal()
    goal_measure(goal=goal, day=DAY)

    goal_update(goal=goal, metric=Metric.REVENUE_PER_CONTACT, target=Decimal(30), now=NOW)

    goal.refresh_from_db()
    assert goal.baseline == Decimal(20)  # 40 euro over 2 contacts
    assert not goal.snapshots.exists()


def test_a_snapshot_is_written_once_per_goal_per_day_and_again_when_measured_again():
    buyer, _ = ContactFactory.create_batch(2)
    goal = new_goal()
    first = goal_measure(goal=goal, day=DAY)
    purchase(buyer, at(DAY))  # a late event for the day

    second = goal_measure(goal=goal, day=DAY)

    assert Snapshot.objects.filter(goal=goal).count() == 1
    assert (first.value, second.value) == (Decimal(0), Decimal(50))
    assert second.pk == first.pk


def test_a_day_without_data_is_a_snapshot_of_no_data():
    goal = new_goal()

    snapshot = goal_measure(goal=goal, day=DAY)

    assert snapshot.value is None
    goal.refresh_from_db()
    assert goal.status == Goal.Status.NO_DATA


def test_measuring_a_day_measures_the_running_goals_and_reports_one_that_cannot_be_measured(english):
    ContactFactory()
    running = new_goal(name="Loopt")
    new_goal(name="Nog niet", starts_on=DAY + dt.timedelta(days=1))
    broken_segment = SegmentFactory()
    broken = new_goal(name="Kapot", scope_segment=broken_segment)
    Segment.objects.filter(pk=broken_segment.pk).update(rules={"version": 1, "root": {"all": [{"nonsense": 1}]}})

    results = goals_measure(day=DAY, now=NOW)

    assert {result.goal.name: bool(result.snapshot) for result in results} == {"Loopt": True, "Kapot": False}
    problem = next(result.problem for result in results if result.goal == broken)
    assert "cannot be evaluated" in problem
    assert list(Snapshot.objects.values_list("goal", flat=True)) == [running.pk]


def test_the_status_follows_the_snapshots():
    buyers = ContactFactory.create_batch(10)
    goal = new_goal(target=Decimal(30))
    for number, contact in enumerate(buyers[:4]):
        purchase(contact, at(dt.date(2026, 11, 3 + number * 5)))
    for day in [dt.date(2026, 11, 5), dt.date(2026, 11, 10), dt.date(2026, 11, 15), dt.date(2026, 11, 20)]:
        goals_measure(day=day, now=NOW)

    goal.refresh_from_db()
    # 10%, 20%, 30%, 40%: the target is reached.
    assert (goal.status, goal.current_value, goal.measured_on) == (Goal.Status.ACHIEVED, Decimal(40), DAY)


def series(*values, start=dt.date(2026, 1, 1)):
    return [
        (start + dt.timedelta(days=10 * index), None if value is None else Decimal(value))
        for index, value in enumerate(values)
    ]


@pytest.mark.parametrize(
    ("values", "today", "status"),
    [
        (series(None, None), dt.date(2026, 2, 1), Goal.Status.NO_DATA),
        (series(10, 12, 14), dt.date(2026, 1, 22), Goal.Status.ON_TRACK),  # +0.2 a day reaches 20 by April
        (series(10, 10.5, 11), dt.date(2026, 1, 22), Goal.Status.AT_RISK),  # +0.05 a day does not
        (series(10, 15, 21), dt.date(2026, 1, 22), Goal.Status.ACHIEVED),
        (series(10, 15, 21), dt.date(2026, 4, 2), Goal.Status.ACHIEVED),
        (series(10, 12, 14), dt.date(2026, 4, 2), Goal.Status.MISSED),
    ],
)
def test_progress_statuses(values, today, status):
    found = progress(
        values=values,
        baseline=Decimal(10),
        target=Decimal(20),
        starts_on=dt.date(2026, 1, 1),
        deadline=dt.date(2026, 4, 1),
        today=today,
        higher_is_better=True,
    )

    assert found.status == status


def test_a_goal_to_bring_a_rate_down_is_on_track_when_the_trend_falls_to_the_target():
    found = progress(
        values=series(30, 28, 26),
        baseline=Decimal(30),
        target=Decimal(20),
        starts_on=dt.date(2026, 1, 1),
        deadline=dt.date(2026, 4, 1),
        today=dt.date(2026, 1, 22),
        higher_is_better=False,
    )

    assert found.status == Goal.Status.ON_TRACK
    assert found.projected == Decimal("12.0000")  # -0.2 a day for 90 days from 30
    assert found.trend[1].day == dt.date(2026, 4, 1)


def test_one_measurement_is_judged_by_the_line_from_the_baseline():
    found = progress(
        values=series(11, start=dt.date(2026, 1, 31)),
        baseline=Decimal(10),
        target=Decimal(20),
        starts_on=dt.date(2026, 1, 1),
        deadline=dt.date(2026, 4, 1),
        today=dt.date(2026, 2, 1),
        higher_is_better=True,
    )

    # +1 in 30 days heads for 13 by the deadline, not 20.
    assert found.status == Goal.Status.AT_RISK
    assert found.projected == Decimal("13.0000")


def test_the_backfill_fills_every_day_and_running_it_again_adds_nothing(capsys):
    ContactFactory()
    goal = new_goal(starts_on=dt.date(2026, 11, 10))

    call_command("measure_goals", "--backfill", "2026-11-01", "--day", "2026-11-20")
    call_command("measure_goals", "--backfill", "2026-11-01", "--day", "2026-11-20")

    days = list(goal.snapshots.values_list("day", flat=True))
    assert days == [dt.date(2026, 11, 1) + dt.timedelta(days=n) for n in range(20)]
    assert "Measured 20 snapshot(s) from 2026-11-01 to 2026-11-20" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--backfill", "1-11-2026"], "is not a date: write it as YYYY-MM-DD"),
        (["--day", "2999-01-01"], "has not ended yet"),
        (["--backfill", "2026-11-21", "--day", "2026-11-20"], "is after the last day"),
        (["--goal", "999999"], "No goal with id 999999"),
    ],
)
def test_the_command_says_what_is_wrong_with_its_arguments(arguments, message):
    with pytest.raises(CommandError, match=message):
        call_command("measure_goals", *arguments)
    assert not Snapshot.objects.exists()


def test_the_daily_measurement_is_a_schedule_marketeers_can_edit():
    task = PeriodicTask.objects.get(name="Measure goals")

    assert task.task == "goals.tasks.measure_goals"
    assert (task.crontab.hour, task.crontab.minute, task.enabled) == ("2", "30", True)


@time_machine.travel(dt.datetime(2026, 11, 21, 2, 30, tzinfo=AMSTERDAM), tick=False)
def test_the_task_measures_yesterday_and_twice_is_once():
    ContactFactory()
    goal = GoalFactory(starts_on=dt.date(2026, 11, 1), deadline=dt.date(2027, 1, 1))

    first = measure_goals()
    second = measure_goals()

    assert first == second == {"measured": 1, "not_measured": 0, "uplifts": 0}
    assert list(goal.snapshots.values_list("day", flat=True)) == [dt.date(2026, 11, 20)]


@pytest.mark.django_db(transaction=True)
def test_the_task_runs_on_a_real_worker(celery_worker):
    ContactFactory()
    goal = GoalFactory(starts_on=dt.date(2026, 11, 1), deadline=dt.date(2027, 1, 1))

    answer = measure_goals.apply_async(kwargs={"day": "2026-11-20"}, queue=celery_worker["queue"]).get(timeout=60)

    assert answer == {"measured": 1, "not_measured": 0, "uplifts": 0}
    assert goal.snapshots.get().value == Decimal(0)


def test_goals_that_share_a_scope_evaluate_it_once_and_leave_no_tables_behind():
    buyer, _ = ContactFactory.create_batch(2)
    purchase(buyer, at(DAY))
    segment = SegmentFactory(rules={"version": 1, "root": {"field": "last_name", "op": "is_set"}})
    for metric in [Metric.CONVERSION_RATE, Metric.REVENUE_PER_CONTACT]:
        new_goal(metric=metric, target=Decimal(5), scope_segment=segment)
        new_goal(metric=metric, target=Decimal(5))

    with CaptureQueriesContext(connection) as queries:
        results = goals_measure(day=DAY, now=NOW)

    assert sorted(str(result.snapshot.value) for result in results) == ["5.0000", "5.0000", "50.0000", "50.0000"]
    assert sum("CREATE TEMPORARY TABLE" in query["sql"] for query in queries.captured_queries) == 2
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'goal_scope_%%'")
        assert cursor.fetchone()[0] == 0


@time_machine.travel(dt.datetime(2026, 11, 21, 2, 30, tzinfo=AMSTERDAM), tick=False)
def test_the_task_also_measures_the_uplift_of_the_goals_campaigns():
    goal = GoalFactory(starts_on=dt.date(2026, 11, 1), deadline=dt.date(2027, 1, 1))
    experiment = experiment_create(goal=goal, name="Winback")
    ContactFactory.create_batch(20)
    assigned = experiment_assign(experiment=experiment, contacts=Contact.objects.all(), now=at(dt.date(2026, 11, 10)))

    answer = measure_goals()

    assert answer["uplifts"] == 1
    uplift = experiment.uplifts.get()
    assert (uplift.measured_on, uplift.treatment_size + uplift.holdout_size) == (dt.date(2026, 11, 20), 20)
    assert uplift.holdout_size == assigned.holdout


def test_a_calendar_goal_is_judged_on_whole_periods_not_on_a_month_so_far():
    goal = goal_for(
        Metric.CONVERSION_RATE,
        period=Period.MONTH,
        starts_on=dt.date(2026, 5, 1),
        deadline=dt.date(2026, 12, 31),
        baseline=Decimal(10),
        target=Decimal(12),
    )
    # A flat 10% a month: the month so far climbs from 0.5% to 10% every month.
    climbing = [(dt.date(2026, 5, day), Decimal(day) / 2) for day in range(1, 21)]

    assert goal_progress(goal=goal, values=climbing, today=dt.date(2026, 5, 21)).status == Goal.Status.NO_DATA

    months = [(dt.date(2026, 5, 31), Decimal(10)), (dt.date(2026, 6, 30), Decimal(10))]
    judged = goal_progress(goal=goal, values=climbing + months, today=dt.date(2026, 7, 1))
    assert (judged.status, judged.current) == (Goal.Status.AT_RISK, Decimal(10))


def test_moving_the_start_measures_the_baseline_again_but_keeps_the_history():
    buyer, _other = ContactFactory.create_batch(2)
    purchase(buyer, at(dt.date(2026, 10, 15)))
    goal = new_goal()
    goal_measure(goal=goal, day=DAY)
    assert goal.baseline == Decimal(50)

    goal_update(goal=goal, starts_on=dt.date(2026, 11, 20), now=NOW)

    goal.refresh_from_db()
    assert goal.baseline == Decimal(0)  # 15 October is before the 30 days before 20 November
    assert goal.snapshots.count() == 1


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"period_days": 0}, "period_days", "between 1 and 3,660 days"),
        ("self", "parent", "part of itself"),
    ],
)
def test_rules_of_the_database_are_refused_on_their_field_first(change, field, message, english):
    goal = new_goal()
    fields = {"parent": goal} if change == "self" else change

    with pytest.raises(ValidationError) as refused:
        goal_update(goal=goal, **fields)

    assert message in " ".join(refused.value.message_dict[field])
    assert "__all__" not in refused.value.message_dict


def test_a_database_error_on_one_goal_does_not_stop_the_others(monkeypatch, english):
    ContactFactory()
    # The failing goal first: the scope it shares with the next must survive its rollback.
    new_goal(name="Valt om", metric=Metric.NPS, target=Decimal(20))
    new_goal(name="Gaat goed")

    def times_out(scope, window, channel):
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL statement_timeout = 1; SELECT pg_sleep(1)")

    monkeypatch.setitem(CATALOGUE, Metric.NPS, dataclasses.replace(CATALOGUE[Metric.NPS], counts=times_out))

    results = goals_measure(day=DAY, now=NOW)

    outcome = {result.goal.name: result.problem for result in results}
    assert outcome["Gaat goed"] == ""
    assert outcome["Valt om"].startswith("The database failed: canceling statement due to statement timeout")
    assert list(Snapshot.objects.values_list("goal__name", flat=True)) == ["Gaat goed"]


@pytest.fixture
def as_english_marketeer(english_client, marketeer):
    return english_client(marketeer)


def test_with_the_global_control_group_on_each_snapshot_measures_its_members_beside_the_rest(as_english_marketeer):
    contacts = ContactFactory.create_batch(400)
    global_control_update(enabled=True, percent=Decimal(10), user=None)
    members = set(Contact.objects.filter(global_control_condition()).values_list("pk", flat=True))
    for contact in contacts[:200]:  # half of everyone buys, control members included
        purchase(contact, at(DAY))
    goal = new_goal(target=Decimal(70))

    goals_measure(day=DAY, now=NOW)

    snapshot = goal.snapshots.get()
    bought_in_control = len(members & {contact.pk for contact in contacts[:200]})
    assert (snapshot.numerator, snapshot.denominator) == (200, 400)
    assert (snapshot.control_numerator, snapshot.control_denominator) == (bought_in_control, len(members))
    assert 20 <= len(members) <= 60  # about 10% of 400
    effect = goal_total_effect(goal=goal)
    expected_rest = Decimal((200 - bought_in_control) * 100) / (400 - len(members))
    assert effect.everyone_else == expected_rest.quantize(Decimal("0.0001"))
    assert effect.comparison is not None and effect.comparison.treatment == pytest.approx(float(expected_rest) / 100)

    html = as_english_marketeer.get(reverse("admin:goals_goal_change", args=[goal.pk])).content.decode()
    assert "Total effect of all marketing" in html
    assert f"({len(members)} contacts in scope, who get no marketing at all)" in html


def test_with_the_global_control_group_off_a_snapshot_measures_no_control_part():
    ContactFactory.create_batch(3)
    goal = new_goal()

    goals_measure(day=DAY, now=NOW)

    assert goal.snapshots.get().control_denominator is None
    assert goal_total_effect(goal=goal) is None
