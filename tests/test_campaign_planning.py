"""Planning a run: its deliveries and its measurement's assignments written side by side on two
connections, a planner killed half-way and the run planned again without a contact twice, a second
planner kept out, a campaign cancelled while it plans, and a recurring campaign whose runs hold out
the contacts its measurement assigned to the holdout. Against the real PostgreSQL, with a real
process killed with SIGKILL."""

import os
import signal
import subprocess
import sys
import threading
from decimal import Decimal

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection

from audiences.models import SegmentMember
from campaigns.models import Campaign, CampaignRun, Delivery, DeliveryBatch
from campaigns.services import campaign_cancel
from campaigns.services.runs import dispatch_tick, run_plan
from goals.experiments import experiment_holdout_set, global_control_condition, global_control_update
from goals.models import Assignment, Experiment
from tests.campaign_helpers import activated, campaign_for, customer

pytestmark = pytest.mark.django_db(transaction=True)


def plan_tables() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'campaigns_plan_%'")
        return [name for (name,) in cursor.fetchall()]


def assert_planned_once(run, contacts, *, without_consent=(), left_out=()):
    """Each contact of the audience has one delivery of the run, held out exactly when its measurement
    assigned it to the holdout; the contacts without consent are held back; the batches cover every
    queued delivery once; the run is sending and its plan is gone."""
    run.refresh_from_db()
    deliveries = list(Delivery.objects.filter(run=run).values_list("contact_id", "status", "reason"))
    expected = {contact.pk for contact in contacts} - set(left_out)
    assert sorted(contact_id for contact_id, _status, _reason in deliveries) == sorted(expected)
    groups = dict(Assignment.objects.filter(experiment=run.campaign.experiment).values_list("contact_id", "group"))
    assert set(groups) == expected
    for contact_id, status, reason in deliveries:
        if groups[contact_id] == Experiment.Group.HOLDOUT:
            assert (status, reason) == (Delivery.Status.HOLDOUT, "")
        elif contact_id in without_consent:
            assert (status, reason) == (Delivery.Status.HELD_BACK, "no_consent")
        else:
            assert (status, reason) == (Delivery.Status.QUEUED, "")
    queued = sorted(contact_id for contact_id, status, _reason in deliveries if status == Delivery.Status.QUEUED)
    covered = sorted(
        contact_id
        for batch in DeliveryBatch.objects.filter(run=run)
        for contact_id in queued
        if batch.contact_from <= contact_id <= batch.contact_to
    )
    assert covered == queued
    assert run.status == CampaignRun.Status.SENDING
    assert run.planned == len(queued)
    assert run.held_out == sum(1 for group in groups.values() if group == Experiment.Group.HOLDOUT) > 0
    assert plan_tables() == []


def test_a_large_run_writes_its_deliveries_and_its_assignments_side_by_side(settings):
    """While the deliveries wait (the consent table locked by another session), the assignments are
    written on the second connection: the two steps do not take turns."""
    settings.CAMPAIGN_PLAN_APART_FROM = 50
    without_consent = [customer(consent=()) for _ in range(15)]
    contacts = [customer() for _ in range(105)] + without_consent
    global_control_update(enabled=True, percent=Decimal(10), user=None)
    members = set(
        type(contacts[0])
        .objects.filter(global_control_condition(), pk__in=[c.pk for c in contacts])
        .values_list("pk", flat=True)
    )
    campaign = activated(campaign_for(contacts, holdout_percent=Decimal(20)))
    run = CampaignRun.objects.get(campaign=campaign)

    with connection.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute("LOCK TABLE audiences_consent IN ACCESS EXCLUSIVE MODE")
        thread, outcome = plan_in_a_thread(run)
        try:
            assigned = wait_for(lambda: Assignment.objects.filter(experiment=campaign.experiment).count(), timeout=20)
            deliveries_meanwhile = Delivery.objects.filter(run=run).count()
        finally:
            cursor.execute("COMMIT")
        thread.join(timeout=30)

    assert assigned == len(contacts) - len(members) > 0
    assert deliveries_meanwhile == 0
    result = outcome["result"]
    assert_planned_once(run, contacts, without_consent={c.pk for c in without_consent} - members, left_out=members)
    assert result.excluded["global_control"] == len(members)
    assert result.excluded.get("no_consent", 0) == run.excluded.get("no_consent", 0) > 0


def kill_the_planner_after_its_deliveries(run, subprocess_env):
    """A real planner process for the run, stopped after its deliveries were committed and before its
    assignments (this session holds the measurement's assignment lock), killed with SIGKILL. While it
    lives, a second planner finds the run taken. Returns once the dead planner's session is gone,
    with how many deliveries it had written."""
    experiment_lock = f"experiment_assign:{run.campaign.experiment_id}"
    code = f"import django; django.setup()\nfrom campaigns.services.runs import run_plan\nrun_plan(run_id={run.pk})\n"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [experiment_lock])
        process = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=settings.BASE_DIR,
            env={**subprocess_env, "CAMPAIGN_PLAN_APART_FROM": "0"},
            start_new_session=True,
        )
        try:
            waiting = wait_for(lambda: backend_waiting_on_an_advisory_lock(), timeout=60)
            written = Delivery.objects.filter(run=run).count()
            assert run_plan(run_id=run.pk) is None  # the first planner holds the run
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        finally:
            cursor.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [experiment_lock])
        wait_for(lambda: not backend_alive(waiting), timeout=20)
    return written


def test_a_planner_killed_half_way_leaves_the_run_planning_and_the_next_plans_it_afresh(subprocess_env, english):
    """Once the killed planner's session is gone, the run is still planning, its split fixed (the
    holdout can no longer change), with deliveries and no assignments nor batches. Planning it again
    starts over from the audience as it is then: a contact who left the segment meanwhile gets
    nothing, everyone else one delivery, assigned as marked, in a batch."""
    contacts = [customer() for _ in range(60)]
    campaign = activated(campaign_for(contacts))
    run = CampaignRun.objects.get(campaign=campaign)

    written = kill_the_planner_after_its_deliveries(run, subprocess_env)

    run.refresh_from_db()
    assert written == len(contacts)
    assert run.status == CampaignRun.Status.PLANNING
    assert not Assignment.objects.filter(experiment=campaign.experiment).exists()
    assert not DeliveryBatch.objects.filter(run=run).exists()
    assert plan_tables() == [f"campaigns_plan_{run.pk}"]
    with pytest.raises(ValidationError) as refused:
        experiment_holdout_set(experiment=Experiment.objects.get(pk=campaign.experiment_id), percent=Decimal(30))
    assert "Start a new measurement instead" in refused.value.message_dict["holdout_percent"][0]
    left = contacts.pop()
    SegmentMember.objects.filter(contact=left).delete()

    result = run_plan(run_id=run.pk)

    assert result is not None and result.planned + result.held_out == len(contacts)
    assert not Delivery.objects.filter(run=run, contact_id=left.pk).exists()
    assert_planned_once(run, contacts)
    assert run_plan(run_id=run.pk) is None  # planned: nothing more to do


def test_the_plan_of_a_run_cancelled_after_its_planner_died_is_dropped_by_the_next_tick(subprocess_env):
    campaign = activated(campaign_for([customer() for _ in range(20)]))
    run = CampaignRun.objects.get(campaign=campaign)
    kill_the_planner_after_its_deliveries(run, subprocess_env)

    campaign_cancel(campaign=Campaign.objects.get(pk=campaign.pk))
    assert plan_tables() == [f"campaigns_plan_{run.pk}"]
    dispatch_tick(enqueue=lambda ids: None)

    run.refresh_from_db()
    assert run.status == CampaignRun.Status.CANCELLED
    assert plan_tables() == []
    assert not DeliveryBatch.objects.filter(run=run).exists()


def test_a_campaign_cancelled_while_its_run_is_planned_gets_no_batches():
    contacts = [customer() for _ in range(30)]
    campaign = activated(campaign_for(contacts))
    run = CampaignRun.objects.get(campaign=campaign)
    experiment_lock = f"experiment_assign:{campaign.experiment_id}"

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [experiment_lock])
        thread, outcome = plan_in_a_thread(run)
        try:
            wait_for(lambda: backend_waiting_on_an_advisory_lock(), timeout=20)
            campaign_cancel(campaign=Campaign.objects.get(pk=campaign.pk))
        finally:
            cursor.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [experiment_lock])
        thread.join(timeout=30)

    run.refresh_from_db()
    assert outcome["result"] is None
    assert run.status == CampaignRun.Status.CANCELLED
    assert not DeliveryBatch.objects.filter(run=run).exists()
    assert plan_tables() == []


def test_each_run_of_a_recurring_campaign_holds_out_whom_its_measurement_assigned_to_the_holdout(time_machine):
    import datetime as dt

    from django_celery_beat.models import CrontabSchedule

    from campaigns.services.runs import dispatch_tick

    first = [customer() for _ in range(80)]
    time_machine.move_to(dt.datetime(2026, 12, 1, 7, tzinfo=dt.UTC), tick=False)
    schedule = CrontabSchedule.objects.create(
        minute="0", hour="9", day_of_week="*", day_of_month="*", month_of_year="*", timezone="Europe/Amsterdam"
    )
    campaign = activated(
        campaign_for(first, kind=Campaign.Kind.RECURRING, schedule=schedule, holdout_percent=Decimal(30)),
        now=dt.datetime(2026, 12, 1, 7, tzinfo=dt.UTC),
    )
    time_machine.move_to(dt.datetime(2026, 12, 1, 9, 0, 5, tzinfo=dt.UTC), tick=False)
    dispatch_tick(enqueue=lambda ids: None)
    first_run = CampaignRun.objects.get(campaign=campaign)
    assert_planned_once(first_run, first)

    newcomers = [customer() for _ in range(40)]
    SegmentMember.objects.bulk_create(
        [SegmentMember(segment=campaign.include_segments.get(), contact=contact) for contact in newcomers]
    )
    time_machine.move_to(dt.datetime(2026, 12, 2, 9, 0, 5, tzinfo=dt.UTC), tick=False)
    dispatch_tick(enqueue=lambda ids: None)

    second_run = CampaignRun.objects.filter(campaign=campaign).exclude(pk=first_run.pk).get()
    assert_planned_once(second_run, first + newcomers)
    assert Assignment.objects.filter(experiment=campaign.experiment).count() == 120


def test_a_recurring_campaign_past_its_end_sends_the_run_it_was_planning_before_it_completes(time_machine):
    import datetime as dt

    from django_celery_beat.models import CrontabSchedule

    from campaigns.channels import locmem
    from campaigns.services.runs import recurring_runs_create, runs_complete
    from tests.campaign_helpers import send_everything

    locmem.outbox.clear()
    time_machine.move_to(dt.datetime(2026, 12, 1, 7, tzinfo=dt.UTC), tick=False)
    schedule = CrontabSchedule.objects.create(
        minute="0", hour="9", day_of_week="*", day_of_month="*", month_of_year="*", timezone="Europe/Amsterdam"
    )
    campaign = activated(
        campaign_for(
            [customer() for _ in range(12)],
            kind=Campaign.Kind.RECURRING,
            schedule=schedule,
            ends_at=dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC),
        ),
        now=dt.datetime(2026, 12, 1, 7, tzinfo=dt.UTC),
    )
    time_machine.move_to(dt.datetime(2026, 12, 1, 9, 0, 5, tzinfo=dt.UTC), tick=False)
    recurring_runs_create(now=dt.datetime(2026, 12, 1, 9, 0, 5, tzinfo=dt.UTC))
    run = CampaignRun.objects.get(campaign=campaign)
    CampaignRun.objects.filter(pk=run.pk).update(status=CampaignRun.Status.PLANNING)  # its planner died
    time_machine.move_to(dt.datetime(2026, 12, 1, 13, tzinfo=dt.UTC), tick=False)

    runs_complete()
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING  # not while its run is planning

    send_everything()

    run.refresh_from_db()
    campaign.refresh_from_db()
    assert run.status == CampaignRun.Status.COMPLETED
    assert len(locmem.outbox) == run.planned > 0
    assert campaign.status == Campaign.Status.COMPLETED
    locmem.outbox.clear()


# --- Helpers ------------------------------------------------------------------------------------


def plan_in_a_thread(run):
    """`run_plan` for the run in a thread of its own, as a second dispatcher would: the thread, and
    where its result goes (`outcome["result"]`)."""
    outcome = {}

    def planner():
        try:
            outcome["result"] = run_plan(run_id=run.pk)
        finally:
            connection.close()

    thread = threading.Thread(target=planner)
    thread.start()
    return thread, outcome


def wait_for(probe, *, timeout):
    """The first truthy answer of `probe`, asked every 50 ms, on a connection of this thread's own."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        answer = probe()
        if answer:
            return answer
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting after {timeout} s")
        time.sleep(0.05)


def backend_waiting_on_an_advisory_lock():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND wait_event = 'advisory' AND pid <> pg_backend_pid()"
        )
        row = cursor.fetchone()
    return row[0] if row else None


def backend_alive(pid):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone() is not None
