"""Campaign measurement: holdouts, the global control group, assignments, uplift, cost and ROI,
and the check that a campaign's goal can be measured. On the real PostgreSQL, against the
statistics of goals/statistics.py on the same numbers."""

import datetime as dt
import hashlib
import math
import threading
import uuid
import zoneinfo
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from audiences.models import Contact, Event, Segment, SegmentMember
from goals.experiments import (
    AssignResult,
    Bucket,
    contacts_without_global_control,
    experiment_assign,
    experiment_create,
    experiment_holdout_off,
    experiment_holdout_set,
    experiment_measure,
    experiment_recipients,
    experiment_record_sends,
    experiment_split,
    experiments_measure,
    global_control,
    global_control_condition,
    global_control_update,
    goal_measurable_problems,
    holdout_bucket,
)
from goals.models import Assignment, ChannelCost, Experiment, GlobalControlGroup, Snapshot, Uplift
from goals.selectors import experiment_result, goal_uplifts
from goals.statistics import Rate, Sample, compare_means, compare_rates
from tests.factories import GoalFactory, SegmentFactory, UserFactory

pytestmark = pytest.mark.django_db

AMSTERDAM = zoneinfo.ZoneInfo("Europe/Amsterdam")
ASSIGNED = dt.datetime(2025, 3, 3, 9, 0, tzinfo=AMSTERDAM)
DAY = dt.date(2025, 3, 20)  # well after the 7-day attribution window of the scenario


def make_contacts(count, tag="audience", keys=None, **fields):
    """`count` contacts marked with `tag` (their last name), in one INSERT; the audience as a queryset."""
    keys = keys or [uuid.uuid4() for _ in range(count)]
    Contact.objects.bulk_create([Contact(last_name=tag, contact_key=key, **fields) for key in keys])
    return Contact.objects.filter(last_name=tag)


def keys_in_buckets(key, *, count, below=None, at_least=None):
    """Contact keys whose bucket for `key` is below `below` (or at least `at_least`): a group chosen in advance."""
    found = []
    while len(found) < count:
        candidate = uuid.uuid4()
        bucket = holdout_bucket(key=key, contact_key=candidate)
        if (below is None or bucket < below) and (at_least is None or bucket >= at_least):
            found.append(candidate)
    return found


def groups_of(experiment):
    return dict(Assignment.objects.filter(experiment=experiment).values_list("contact_id", "group"))


def purchase(contact_id, at, value, type_=Event.Type.PURCHASE):
    return Event(contact_id=contact_id, type=type_, occurred_at=at, value=value)


def within_binomial_spread(observed, size, share, spread=4.5):
    """Whether a count is within `spread` standard deviations of size * share (a false alarm less
    than once in 100,000 runs at 4.5)."""
    expected = size * share
    return abs(observed - expected) <= spread * math.sqrt(size * share * (1 - share))


# --- The bucket --------------------------------------------------------------------------------


def test_the_bucket_is_the_first_32_bits_of_the_md5_of_both_keys():
    key, contact_key = uuid.UUID(int=1), uuid.UUID(int=2)
    digest = hashlib.md5(f"{key}:{contact_key}".encode()).hexdigest()  # noqa: S324 - the specification

    assert holdout_bucket(key=key, contact_key=contact_key) == int(digest[:8], 16) % 10_000


def test_the_bucket_is_the_same_in_python_and_in_postgresql():
    contacts = make_contacts(1_000)
    key = uuid.uuid4()

    in_sql = dict(contacts.annotate(bucket=Bucket(key=key)).values_list("contact_key", "bucket"))

    assert len(in_sql) == 1_000
    assert in_sql == {contact_key: holdout_bucket(key=key, contact_key=contact_key) for contact_key in in_sql}
    assert len(set(in_sql.values())) > 900  # spread over the buckets, not a constant


# --- The global control group ------------------------------------------------------------------


def test_the_global_control_group_is_off_by_default_and_holds_nobody_back():
    contacts = make_contacts(300)

    control = global_control()

    assert (control.pk, control.enabled, control.percent) == (1, False, Decimal(2))
    assert not contacts.filter(global_control_condition()).exists()
    assert contacts_without_global_control(contacts).count() == 300
    assert global_control().pk == 1 and GlobalControlGroup.objects.count() == 1  # asked again: the same row


def test_the_global_control_group_holds_back_a_stable_share_that_grows_without_losing_anyone():
    contacts = make_contacts(2_000)
    user = UserFactory()

    control = global_control_update(enabled=True, percent=Decimal(5), user=user)
    members = set(contacts.filter(global_control_condition()).values_list("contact_key", flat=True))

    assert control.changed_by == user and global_control().enabled
    assert within_binomial_spread(len(members), 2_000, 0.05)
    assert members == {
        contact_key
        for contact_key in contacts.values_list("contact_key", flat=True)
        if holdout_bucket(key=control.key, contact_key=contact_key) < 500
    }
    assert set(contacts_without_global_control(contacts).values_list("contact_key", flat=True)).isdisjoint(members)
    assert contacts_without_global_control(contacts).count() == 2_000 - len(members)

    global_control_update(enabled=True, percent=Decimal(8), user=user)
    more = set(contacts.filter(global_control_condition()).values_list("contact_key", flat=True))
    assert members < more

    global_control_update(enabled=False, percent=Decimal(8), user=user)
    assert not contacts.filter(global_control_condition()).exists()


@pytest.mark.parametrize("percent", [Decimal("0.05"), Decimal("10.5")])
def test_the_global_control_group_share_stays_between_a_tenth_and_ten_percent(english, percent):
    with pytest.raises(ValidationError) as raised:
        global_control_update(enabled=True, percent=percent, user=None)

    assert raised.value.message_dict["percent"] == [
        "The global control group must be between 0.1% and 10% of all contacts."
    ]
    assert not global_control().enabled


def test_assigning_leaves_out_the_global_control_group_and_sending_too_once_it_is_switched_on():
    goal = GoalFactory()
    audience = make_contacts(2_000)
    first = experiment_create(goal=goal, name="Spring sale")
    control = global_control_update(enabled=True, percent=Decimal(5), user=None)
    members = set(audience.filter(global_control_condition()).values_list("pk", flat=True))

    result = experiment_assign(experiment=first, contacts=audience, now=ASSIGNED)

    assert result.excluded == len(members) > 0
    assert result.treatment + result.holdout == 2_000 - len(members) == Assignment.objects.count()
    assert members.isdisjoint(groups_of(first))

    # Assigned while it was off, a member is still not sent to once it is on.
    global_control_update(enabled=False, percent=control.percent, user=None)
    second = experiment_create(goal=goal, name="Summer sale")
    experiment_assign(experiment=second, contacts=audience, now=ASSIGNED)
    treated = {pk for pk, group in groups_of(second).items() if group == Experiment.Group.TREATMENT}
    assert set(experiment_recipients(experiment=second).values_list("pk", flat=True)) == treated

    global_control_update(enabled=True, percent=control.percent, user=None)
    recipients = set(experiment_recipients(experiment=second).values_list("pk", flat=True))
    assert recipients == treated - members
    assert len(recipients) < len(treated)


# --- Experiments and their holdout -------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        (
            {"holdout_percent": Decimal(0)},
            "holdout_percent",
            "A holdout of 0% means the campaign cannot be measured: turn the holdout off instead, and say why.",
        ),
        ({"holdout_percent": Decimal(60)}, "holdout_percent", "The holdout can be at most 50% of the audience."),
        ({"attribution_days": 0}, "__all__", None),
    ],
)
def test_an_experiment_is_created_with_a_holdout_and_a_valid_window(english, fields, field, message):
    with pytest.raises(ValidationError) as raised:
        experiment_create(goal=GoalFactory(), name="Spring sale", **fields)

    assert field in raised.value.message_dict
    if message:
        assert raised.value.message_dict[field] == [message]
    assert not Experiment.objects.exists()


def test_an_experiment_starts_with_a_ten_percent_holdout_on_purchases():
    experiment = experiment_create(goal=GoalFactory(), name="Spring sale")

    experiment.refresh_from_db()
    assert (experiment.holdout_percent, experiment.conversion_event, experiment.attribution_days) == (
        Decimal(10),
        Event.Type.PURCHASE,
        30,
    )


@pytest.mark.parametrize("reason", ["", "   \n"])
def test_turning_the_holdout_off_needs_a_reason(english, reason):
    experiment = experiment_create(goal=GoalFactory(), name="Recall notice")

    with pytest.raises(ValidationError) as raised:
        experiment_holdout_off(experiment=experiment, reason=reason, user=None)

    assert raised.value.message_dict["holdout_off_reason"] == [
        "Say why this campaign has no holdout: without one, its effect on the goal cannot be measured."
    ]
    experiment.refresh_from_db()
    assert experiment.holdout_percent == Decimal(10) and experiment.holdout_off_at is None


def test_turning_the_holdout_off_records_why_who_and_when_and_everyone_is_treated(english):
    experiment = experiment_create(goal=GoalFactory(), name="Recall notice")
    user = UserFactory()
    now = dt.datetime(2025, 3, 1, 12, tzinfo=AMSTERDAM)

    experiment_holdout_off(
        experiment=experiment, reason="  The law requires every customer to hear of the recall. ", user=user, now=now
    )
    result = experiment_assign(experiment=experiment, contacts=make_contacts(300), now=ASSIGNED)
    experiment_measure(experiment=experiment, day=DAY)

    experiment.refresh_from_db()
    assert experiment.holdout_percent == 0
    assert experiment.holdout_off_reason == "The law requires every customer to hear of the recall."
    assert (experiment.holdout_off_by, experiment.holdout_off_at) == (user, now)
    assert result == AssignResult(treatment=300, holdout=0, excluded=0)
    shown = experiment_result(experiment=experiment)
    assert shown.problem == "No holdout: The law requires every customer to hear of the recall."
    assert shown.conversion is None and shown.incremental_conversions is None and shown.roi is None


def test_setting_the_holdout_again_turns_it_back_on_and_refuses_zero(english):
    experiment = experiment_create(goal=GoalFactory(), name="Recall notice")
    experiment_holdout_off(experiment=experiment, reason="Legal notice", user=UserFactory())

    with pytest.raises(ValidationError) as raised:
        experiment_holdout_set(experiment=experiment, percent=Decimal(0))
    assert "turn the holdout off instead" in raised.value.message_dict["holdout_percent"][0]

    experiment_holdout_set(experiment=experiment, percent=Decimal("12.5"))
    experiment.refresh_from_db()
    assert (experiment.holdout_percent, experiment.holdout_off_reason, experiment.holdout_off_by) == (
        Decimal("12.5"),
        "",
        None,
    )


# --- Assigning ---------------------------------------------------------------------------------


def test_assigning_holds_out_the_share_by_bucket_and_a_second_run_changes_nothing():
    audience = make_contacts(2_000)
    experiment = experiment_create(goal=GoalFactory(), name="Spring sale")

    result = experiment_assign(experiment=experiment, contacts=audience, now=ASSIGNED)
    rows = set(Assignment.objects.values_list("contact_id", "group", "assigned_at"))

    assert result.treatment + result.holdout == 2_000 == len(rows)
    assert result.excluded == 0
    assert within_binomial_spread(result.holdout, 2_000, 0.10)
    buckets = {contact.pk: holdout_bucket(key=experiment.key, contact_key=contact.contact_key) for contact in audience}
    assert {contact_id for contact_id, group, _at in rows if group == Experiment.Group.HOLDOUT} == {
        contact_id for contact_id, bucket in buckets.items() if bucket < 1_000
    }
    assert {assigned_at for _id, _group, assigned_at in rows} == {ASSIGNED}

    again = experiment_assign(experiment=experiment, contacts=audience, now=ASSIGNED + dt.timedelta(days=1))

    assert again == AssignResult(treatment=0, holdout=0, excluded=0)
    assert set(Assignment.objects.values_list("contact_id", "group", "assigned_at")) == rows


def test_the_split_decides_each_contacts_group_by_its_bucket_and_keeps_the_global_control_group_out():
    audience = make_contacts(1_500)
    experiment = experiment_create(goal=GoalFactory(), name="Spring sale", holdout_percent=Decimal(20))
    control = global_control_update(enabled=True, percent=Decimal(5), user=None)

    rows = {
        pk: (held_out, excluded)
        for pk, held_out, excluded in experiment_split(experiment=experiment, contacts=audience)
    }

    assert len(rows) == 1_500
    for contact in audience:
        held_out, excluded = rows[contact.pk]
        assert held_out == (holdout_bucket(key=experiment.key, contact_key=contact.contact_key) < 2_000)
        assert excluded == (holdout_bucket(key=control.key, contact_key=contact.contact_key) < 500)
    assert 0 < sum(excluded for _held_out, excluded in rows.values()) < 1_500

    # What is assigned from the split is what the split said.
    result = experiment_assign(experiment=experiment, contacts=audience, now=ASSIGNED)
    groups = groups_of(experiment)
    assert result.excluded == sum(excluded for _held_out, excluded in rows.values())
    assert groups == {
        pk: Experiment.Group.HOLDOUT if held_out else Experiment.Group.TREATMENT
        for pk, (held_out, excluded) in rows.items()
        if not excluded
    }


@pytest.mark.django_db(transaction=True)
def test_two_assignments_to_one_experiment_at_once_assign_each_contact_once():
    """Two runs of one campaign planned at the same moment, by two dispatchers: they take turns on the
    experiment's lock, so the second finds the first's rows and neither fails on the unique key."""
    first = make_contacts(600, tag="first")
    second = make_contacts(600, tag="second")
    everyone = Contact.objects.filter(last_name__in=["first", "second"])
    experiment = experiment_create(goal=GoalFactory(), name="Spring sale")
    start = threading.Barrier(2)
    results, errors = [], []

    def assign(contacts):
        try:
            start.wait(timeout=10)
            results.append(experiment_assign(experiment=experiment, contacts=contacts, now=ASSIGNED))
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=assign, args=(audience,)) for audience in (first | second, everyone)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert Assignment.objects.filter(experiment=experiment).count() == 1_200
    assert sorted(result.treatment + result.holdout for result in results) == [0, 1_200]


def test_once_contacts_are_assigned_the_holdout_can_no_longer_change(english):
    first = make_contacts(1_000, tag="first")
    experiment = experiment_create(goal=GoalFactory(), name="Spring sale")
    experiment_assign(experiment=experiment, contacts=first, now=ASSIGNED)
    before = groups_of(experiment)

    with pytest.raises(ValidationError) as larger:
        experiment_holdout_set(experiment=experiment, percent=Decimal(30))
    with pytest.raises(ValidationError) as off:
        experiment_holdout_off(experiment=experiment, reason="Budget", user=None)

    for refused in (larger, off):
        assert "Start a new measurement instead" in refused.value.message_dict["holdout_percent"][0]
    experiment.refresh_from_db()
    assert (experiment.holdout_percent, experiment.holdout_off_reason) == (Decimal(10), "")
    assert groups_of(experiment) == before


def test_erased_contacts_are_never_assigned_and_the_recipients_are_the_treatment():
    audience = make_contacts(400)
    erased = make_contacts(50, tag="audience", erased_at=ASSIGNED - dt.timedelta(days=1))
    erased_ids = set(erased.filter(erased_at__isnull=False).values_list("pk", flat=True))
    experiment = experiment_create(goal=GoalFactory(), name="Spring sale")

    result = experiment_assign(experiment=experiment, contacts=audience, now=ASSIGNED)

    groups = groups_of(experiment)
    assert len(erased_ids) == 50 and erased_ids.isdisjoint(groups)
    assert len(groups) == 400 == result.treatment + result.holdout
    assert set(experiment_recipients(experiment=experiment).values_list("pk", flat=True)) == {
        pk for pk, group in groups.items() if group == Experiment.Group.TREATMENT
    }


def test_an_empty_audience_assigns_nobody():
    experiment = experiment_create(goal=GoalFactory(), name="Spring sale")

    assert experiment_assign(experiment=experiment, contacts=Contact.objects.filter(pk__in=[])) == AssignResult(0, 0, 0)
    assert experiment_assign(experiment=experiment, contacts=Contact.objects.none()) == AssignResult(0, 0, 0)
    assert not Assignment.objects.exists()


def test_sends_add_up_per_channel():
    experiment = experiment_create(goal=GoalFactory(), name="Spring sale")

    experiment_record_sends(experiment=experiment, channel="email", count=600)
    experiment_record_sends(experiment=experiment, channel="email", count=400)
    experiment_record_sends(experiment=experiment, channel="sms", count=100)
    experiment_record_sends(experiment=experiment, channel="phone", count=10)

    assert (experiment.emails_sent, experiment.sms_sent, experiment.calls_made) == (1_000, 100, 10)
    assert Experiment.objects.filter(emails_sent=1_000, sms_sent=100, calls_made=10).count() == 1
    with pytest.raises(ValueError, match="Unknown channel"):
        experiment_record_sends(experiment=experiment, channel="fax", count=1)
    with pytest.raises(ValueError, match="negative"):
        experiment_record_sends(experiment=experiment, channel="sms", count=-1)


# --- Measuring ---------------------------------------------------------------------------------


def build_scenario(goal):
    """1,000 contacts with a 10% holdout, conversions inside and outside a 7-day window, and sends.

    Treatment: 43 converted (40 bought for 10, 10 of them again for 5; one bought without a value;
    one at the very moment of assignment for 7; one a second before the window closed for 3),
    revenue 460, per contact squares 10 * 15² + 30 * 10² + 7² + 3² = 5,308. Not counted: a
    purchase before the assignment, one the moment the window closed, a page view, and a
    purchase by someone outside the audience. Holdout: 6 bought for 20 (one more bought before).
    Cost: 1,000 emails * 0.01 + 100 SMS * 0.08 + 10 calls * 2.50 = 43.00.
    """
    experiment = experiment_create(goal=goal, name="Spring sale", holdout_percent=Decimal(10), attribution_days=7)
    audience = make_contacts(1_000)
    outsider = make_contacts(1, tag="outsider").get()
    experiment_assign(experiment=experiment, contacts=audience, now=ASSIGNED)
    groups = groups_of(experiment)
    treated = sorted(pk for pk, group in groups.items() if group == Experiment.Group.TREATMENT)
    held_out = sorted(pk for pk, group in groups.items() if group == Experiment.Group.HOLDOUT)
    day = dt.timedelta(days=1)
    window_end = ASSIGNED + dt.timedelta(days=7)
    events = [purchase(pk, ASSIGNED + day, Decimal(10)) for pk in treated[:40]]
    events += [purchase(pk, ASSIGNED + 2 * day, Decimal(5)) for pk in treated[:10]]
    events += [
        purchase(treated[40], ASSIGNED + 3 * day, None),
        purchase(treated[41], ASSIGNED - dt.timedelta(hours=1), Decimal(100)),
        purchase(treated[42], window_end, Decimal(100)),
        purchase(treated[43], ASSIGNED + day, Decimal(100), type_=Event.Type.PAGE_VIEW),
        purchase(treated[44], ASSIGNED, Decimal(7)),
        purchase(treated[45], window_end - dt.timedelta(seconds=1), Decimal(3)),
        purchase(outsider.pk, ASSIGNED + day, Decimal(100)),
    ]
    events += [purchase(pk, ASSIGNED + day, Decimal(20)) for pk in held_out[:6]]
    events.append(purchase(held_out[6], ASSIGNED - day, Decimal(50)))
    Event.objects.bulk_create(events)
    ChannelCost.objects.bulk_create(
        [
            ChannelCost(channel="email", cost_per_message=Decimal("0.01")),
            ChannelCost(channel="sms", cost_per_message=Decimal("0.08")),
            ChannelCost(channel="phone", cost_per_message=Decimal("2.50")),
        ]
    )
    for channel, count in (("email", 1_000), ("sms", 100), ("phone", 10)):
        experiment_record_sends(experiment=experiment, channel=channel, count=count)
    return experiment, len(treated), len(held_out)


def revenues(size, values):
    """Each contact's revenue in a group: the given ones and zeros for the rest."""
    return [float(value) for value in values] + [0.0] * (size - len(values))


def test_the_uplift_counts_conversions_and_revenue_within_the_window_once_per_day():
    experiment, treated, held_out = build_scenario(GoalFactory())

    uplift = experiment_measure(experiment=experiment, day=DAY, now=ASSIGNED + dt.timedelta(days=17))
    experiment_measure(experiment=experiment, day=DAY)

    assert Uplift.objects.count() == 1
    stored = Uplift.objects.get()
    assert stored.pk == uplift.pk and stored.measured_on == DAY
    assert (stored.treatment_size, stored.holdout_size) == (treated, held_out) and treated + held_out == 1_000
    assert (stored.treatment_conversions, stored.treatment_revenue, stored.treatment_revenue_squares) == (
        43,
        Decimal("460.00"),
        Decimal("5308.0000"),
    )
    assert (stored.holdout_conversions, stored.holdout_revenue, stored.holdout_revenue_squares) == (
        6,
        Decimal("120.00"),
        Decimal("2400.0000"),
    )
    assert stored.cost == Decimal("43.00")


def test_the_uplift_of_a_day_counts_only_what_happened_until_its_end():
    experiment, _treated, _held_out = build_scenario(GoalFactory())

    first_day = experiment_measure(experiment=experiment, day=ASSIGNED.date())
    experiment_measure(experiment=experiment, day=DAY)

    # By the end of the first day only the purchase at the moment of assignment had happened.
    assert (first_day.treatment_conversions, first_day.treatment_revenue) == (1, Decimal(7))
    assert (first_day.holdout_conversions, first_day.holdout_revenue) == (0, Decimal(0))
    assert Uplift.objects.filter(experiment=experiment).count() == 2
    assert experiment_result(experiment=experiment).uplift.measured_on == DAY  # the latest is shown
    # Before anyone was assigned, nobody is in either group.
    before = experiment_measure(experiment=experiment, day=ASSIGNED.date() - dt.timedelta(days=1))
    assert (before.treatment_size, before.holdout_size) == (0, 0)


def test_the_result_compares_the_groups_with_the_statistics_and_counts_what_the_campaign_added():
    experiment, treated, held_out = build_scenario(GoalFactory())
    experiment_measure(experiment=experiment, day=DAY)

    result = experiment_result(experiment=experiment)

    assert result.problem == ""
    assert result.conversion == compare_rates(
        treatment=Rate(conversions=43, size=treated), control=Rate(conversions=6, size=held_out)
    )
    expected = compare_means(
        treatment=Sample.of(revenues(treated, [15] * 10 + [10] * 30 + [0, 7, 3])),
        control=Sample.of(revenues(held_out, [20] * 6)),
    )
    assert result.revenue.treatment == pytest.approx(expected.treatment)
    assert result.revenue.control == pytest.approx(expected.control)
    assert (result.revenue.low, result.revenue.high) == pytest.approx((expected.low, expected.high))
    assert result.revenue.p_value == pytest.approx(expected.p_value)
    assert not result.revenue.too_small
    assert result.incremental_conversions == pytest.approx(43 - 6 * treated / held_out)
    assert float(result.incremental_revenue) == pytest.approx(460 - 120 * treated / held_out, abs=0.005)
    assert result.cost == Decimal("43.00")
    assert float(result.roi) == pytest.approx((float(result.incremental_revenue) - 43) / 43, abs=1e-4)


def test_a_channel_without_a_cost_costs_nothing():
    experiment, _treated, _held_out = build_scenario(GoalFactory())
    ChannelCost.objects.filter(channel="phone").delete()

    experiment_measure(experiment=experiment, day=DAY)

    assert Uplift.objects.get().cost == Decimal("18.00")  # 10 for the emails, 8 for the SMS, no calls


def test_without_any_cost_there_is_no_roi():
    experiment, _treated, _held_out = build_scenario(GoalFactory())
    ChannelCost.objects.all().delete()
    experiment_measure(experiment=experiment, day=DAY)

    result = experiment_result(experiment=experiment)

    assert result.cost == 0 and result.roi is None
    assert result.incremental_revenue is not None and result.problem == ""


@pytest.mark.parametrize(
    ("metric", "baseline", "target", "denominator", "share"),
    [
        # incremental conversions / 10,000 contacts * 100 = KPI points, of 5 points asked
        ("conversion_rate", "5", "10", 10_000, lambda conversions, revenue: conversions / 10_000 * 100 / 5 * 100),
        # incremental revenue / 5,000 contacts = euro per contact, of 2.50 asked
        ("revenue_per_contact", "20", "22.50", 5_000, lambda conversions, revenue: revenue / 5_000 / 2.5 * 100),
    ],
)
def test_the_campaign_s_share_of_the_goal_s_target_change(metric, baseline, target, denominator, share):
    goal = GoalFactory(metric=metric, baseline=Decimal(baseline), target=Decimal(target))
    measured_at = timezone.now()
    Snapshot.objects.bulk_create(
        [
            Snapshot(
                goal=goal, day=DAY - dt.timedelta(days=2), value=1, numerator=1, denominator=99, measured_at=measured_at
            ),
            Snapshot(
                goal=goal,
                day=DAY - dt.timedelta(days=1),
                value=1,
                numerator=1,
                denominator=denominator,
                measured_at=measured_at,
            ),
            Snapshot(goal=goal, day=DAY, value=None, numerator=0, denominator=0, measured_at=measured_at),
        ]
    )
    experiment, _treated, _held_out = build_scenario(goal)
    experiment_measure(experiment=experiment, day=DAY)

    result = experiment_result(experiment=experiment)

    expected = share(result.incremental_conversions, float(result.incremental_revenue))
    assert expected != 0
    assert float(result.target_share) == pytest.approx(expected, abs=0.005)


@pytest.mark.parametrize(
    ("goal_fields", "with_snapshot"),
    [
        ({"metric": "email_open_rate", "baseline": Decimal(20)}, True),  # not a figure conversions move
        ({"metric": "conversion_rate", "baseline": None}, True),  # no baseline: no change asked
        ({"metric": "conversion_rate", "baseline": Decimal(5)}, False),  # no snapshot: no scope size
    ],
)
def test_no_share_of_the_target_without_what_it_is_computed_from(goal_fields, with_snapshot):
    goal = GoalFactory(target=Decimal(30), **goal_fields)
    if with_snapshot:
        Snapshot.objects.create(goal=goal, day=DAY, value=1, numerator=1, denominator=1_000, measured_at=timezone.now())
    experiment, _treated, _held_out = build_scenario(goal)
    experiment_measure(experiment=experiment, day=DAY)

    result = experiment_result(experiment=experiment)

    assert result.problem == "" and result.incremental_conversions is not None
    assert result.target_share is None


@pytest.mark.parametrize("held_out", [0, 2])
def test_a_tiny_holdout_says_the_sample_is_too_small_instead_of_a_misleading_number(english, held_out):
    goal = GoalFactory(baseline=Decimal(5), target=Decimal(10))
    Snapshot.objects.create(goal=goal, day=DAY, value=5, numerator=50, denominator=1_000, measured_at=timezone.now())
    experiment = experiment_create(goal=goal, name="Tiny", holdout_percent=Decimal(2))
    keys = keys_in_buckets(experiment.key, count=20 - held_out, at_least=200)
    keys += keys_in_buckets(experiment.key, count=held_out, below=200)
    audience = make_contacts(20, keys=keys)
    experiment_assign(experiment=experiment, contacts=audience, now=ASSIGNED)
    Event.objects.bulk_create(
        [purchase(contact.pk, ASSIGNED + dt.timedelta(days=1), Decimal(80)) for contact in audience[:12]]
    )
    ChannelCost.objects.create(channel="email", cost_per_message=Decimal("0.10"))
    experiment_record_sends(experiment=experiment, channel="email", count=20)
    experiment_measure(experiment=experiment, day=DAY)

    result = experiment_result(experiment=experiment)

    assert (result.uplift.treatment_size, result.uplift.holdout_size) == (20 - held_out, held_out)
    assert result.problem.startswith(
        f"Too few contacts to measure: {20 - held_out} in the treatment, {held_out} in the holdout"
    )
    assert (result.incremental_conversions, result.incremental_revenue, result.roi, result.target_share) == (
        None,
        None,
        None,
        None,
    )
    assert result.cost == Decimal("2.00")
    if held_out:  # the comparisons are there, and say they cannot be trusted
        assert result.conversion.too_small and result.revenue.too_small
        assert result.conversion.reason == result.problem
    else:  # nothing to compare with
        assert result.conversion is None and result.revenue is None


def test_an_experiment_never_measured_says_so(english):
    result = experiment_result(experiment=experiment_create(goal=GoalFactory(), name="Spring sale"))

    assert result.problem == "Not measured yet."
    assert (result.uplift, result.conversion, result.revenue, result.roi, result.cost) == (None, None, None, None, 0)


def test_the_daily_measurement_covers_experiments_until_their_attribution_window_after_the_deadline():
    today = timezone.localdate()
    running = experiment_create(goal=GoalFactory(), name="Running")
    experiment_assign(experiment=running, contacts=make_contacts(50), now=timezone.now())
    unassigned = experiment_create(goal=GoalFactory(), name="Not planned yet")
    just_ended = GoalFactory(starts_on=today - dt.timedelta(days=60), deadline=today - dt.timedelta(days=1))
    closing = experiment_create(goal=just_ended, name="Window still open", attribution_days=7)
    experiment_assign(experiment=closing, contacts=make_contacts(50, tag="closing"), now=timezone.now())
    long_ended = GoalFactory(starts_on=today - dt.timedelta(days=60), deadline=today - dt.timedelta(days=8))
    over = experiment_create(goal=long_ended, name="Over", attribution_days=7)
    experiment_assign(experiment=over, contacts=make_contacts(50, tag="others"), now=timezone.now())

    measured = experiments_measure(day=today)
    experiments_measure(day=today)

    assert [uplift.experiment_id for uplift in measured] == [running.pk, closing.pk]
    assert measured[0].treatment_size + measured[0].holdout_size == 50
    assert sorted(Uplift.objects.values_list("experiment_id", "measured_on")) == [
        (running.pk, today),
        (closing.pk, today),
    ]
    assert not Uplift.objects.filter(experiment__in=[unassigned, over]).exists()


# --- The goal's experiments --------------------------------------------------------------------


def goal_with_experiments(count, name):
    """A goal with `count` measured experiments (40 contacts a group, 10 treated and 8 held out bought: enough
    to be trusted, so each result reaches its goal's snapshot for the share), and one not measured."""
    goal = GoalFactory(name=name, baseline=Decimal(5), target=Decimal(10))
    Snapshot.objects.create(goal=goal, day=DAY, value=5, numerator=50, denominator=1_000, measured_at=timezone.now())
    experiments = []
    for number in range(count):
        experiment = experiment_create(goal=goal, name=f"{name} {number}", holdout_percent=Decimal(50))
        treated = keys_in_buckets(experiment.key, count=40, at_least=5_000)
        held_out = keys_in_buckets(experiment.key, count=40, below=5_000)
        audience = make_contacts(80, tag=f"{name} {number}", keys=treated + held_out)
        experiment_assign(experiment=experiment, contacts=audience, now=ASSIGNED)
        buyers = [*audience.filter(contact_key__in=treated[:10]), *audience.filter(contact_key__in=held_out[:8])]
        Event.objects.bulk_create(
            [purchase(buyer.pk, ASSIGNED + dt.timedelta(days=1), Decimal(25)) for buyer in buyers]
        )
        experiment_measure(experiment=experiment, day=DAY)
        experiments.append(experiment)
    experiments.append(experiment_create(goal=goal, name=f"{name} not measured"))
    return goal, experiments


def test_a_goal_s_uplifts_take_the_same_few_queries_for_one_goal_or_five(english, django_assert_num_queries):
    goals = [goal_with_experiments(2, f"Goal {number}") for number in range(5)]

    with django_assert_num_queries(3):
        one = goal_uplifts(goals=[goals[0][0]])
    with django_assert_num_queries(3):
        five = goal_uplifts(goals=[goal for goal, _experiments in goals])

    assert list(one) == [goals[0][0].pk]
    assert list(five) == [goal.pk for goal, _experiments in goals]
    for goal, experiments in goals:
        results = five[goal.pk]
        assert [result.experiment for result in results] == experiments[::-1]  # newest first
        assert results[0].uplift is None and results[0].problem == "Not measured yet."
        for result in results[1:]:
            assert (result.uplift.treatment_size, result.uplift.holdout_size) == (40, 40)
            assert result.problem == "" and result.incremental_conversions == pytest.approx(2)
            assert result.target_share == Decimal("4.00")  # 2 of 1,000 contacts: 0.2 points of the 5 asked
        assert [result.experiment.goal for result in results] == [goal] * 3


def test_a_goal_without_experiments_has_none():
    goal = GoalFactory()

    assert goal_uplifts(goals=[goal]) == {goal.pk: []}
    assert goal_uplifts(goals=[]) == {}


# --- No goal, no campaign ----------------------------------------------------------------------


def static_segment(name, contacts):
    segment = SegmentFactory(name=name, kind=Segment.Kind.STATIC, rules={})
    SegmentMember.objects.bulk_create([SegmentMember(segment=segment, contact=contact) for contact in contacts])
    return segment


def test_a_campaign_without_a_goal_cannot_be_activated(english):
    assert goal_measurable_problems(goal=None) == ["Choose the goal this campaign serves."]


def test_a_goal_past_its_deadline_is_refused(english):
    today = dt.date(2025, 6, 1)
    goal = GoalFactory(name="Spring", starts_on=dt.date(2025, 3, 1), deadline=dt.date(2025, 5, 31))

    assert goal_measurable_problems(goal=goal, today=today) == [
        "The goal “Spring” passed its deadline on 2025-05-31: choose a goal that is still running."
    ]
    assert goal_measurable_problems(goal=goal, today=dt.date(2025, 5, 31)) == []


def test_a_goal_whose_scope_cannot_be_evaluated_is_refused(english):
    segment = SegmentFactory(name="Broken", rules={"version": 1, "root": {"no such rule": True}})
    goal = GoalFactory(scope_segment=segment)

    problems = goal_measurable_problems(goal=goal, audience=make_contacts(3))

    assert len(problems) == 1
    assert problems[0].startswith("The scope segment “Broken” cannot be evaluated")


def test_an_audience_outside_the_goal_s_scope_is_refused_and_one_inside_it_passes(english, django_assert_num_queries):
    in_scope = list(make_contacts(5, tag="in scope"))
    elsewhere = make_contacts(5, tag="elsewhere")
    goal = GoalFactory(scope_segment=static_segment("Loyal customers", in_scope))
    goal.scope_segment  # noqa: B018 - loaded before counting the queries

    with django_assert_num_queries(1):
        problems = goal_measurable_problems(goal=goal, audience=elsewhere)
    assert problems == [
        "None of the campaign's audience is in the goal's scope segment “Loyal customers”, "
        "so the campaign cannot move its KPI."
    ]

    overlapping = Contact.objects.filter(last_name__in=["elsewhere"]) | Contact.objects.filter(pk=in_scope[0].pk)
    assert goal_measurable_problems(goal=goal, audience=overlapping) == []


def test_a_goal_on_all_contacts_needs_an_audience_that_is_not_all_erased(english):
    goal = GoalFactory()
    gone = make_contacts(3, tag="gone", erased_at=ASSIGNED)

    assert goal_measurable_problems(goal=goal, audience=make_contacts(3)) == []
    assert goal_measurable_problems(goal=goal, audience=gone) == [
        "None of the campaign's audience is among the contacts the goal measures, so it cannot move its KPI."
    ]
