"""Recurring campaigns: one run per occurrence of the schedule in its own timezone, through a DST
change, a beat that fires twice (also at the same moment from two workers), and a beat that was
down for days."""

import datetime as dt
import threading
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django_celery_beat.models import CrontabSchedule

from campaigns.channels import locmem
from campaigns.models import Campaign, CampaignRun, ContactPolicy, Delivery
from campaigns.schedules import cron, latest_occurrence, next_occurrences
from campaigns.services.runs import dispatch_tick
from campaigns.services.sending import batch_send
from tests.campaign_helpers import activated, campaign_for, customer, send_everything

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
UTC = dt.UTC


@pytest.fixture(autouse=True)
def _empty_outbox():
    locmem.outbox.clear()
    yield
    locmem.outbox.clear()


def daily(hour="2", minute="30", zone="Europe/Amsterdam", **fields):
    return CrontabSchedule.objects.create(
        minute=minute,
        hour=hour,
        day_of_week=fields.get("day_of_week", "*"),
        day_of_month="*",
        month_of_year="*",
        timezone=zone,
    )


def every(start, end, step=dt.timedelta(minutes=10)):
    moment = start
    while moment <= end:
        yield moment
        moment += step


def recurring(time_machine, contacts, schedule, *, activated_at, **fields):
    time_machine.move_to(activated_at, tick=False)  # the goal's deadline is counted from here
    campaign = campaign_for(
        contacts,
        kind=Campaign.Kind.RECURRING,
        schedule=schedule,
        holdout_percent=0,
        holdout_off_reason="Service message: everyone gets it.",
        **fields,
    )
    return activated(campaign, now=activated_at)


# --- The occurrences themselves (pure) -------------------------------------------------------------


def test_when_the_clocks_go_back_two_thirty_happens_twice_and_is_one_occurrence_at_the_first():
    schedule = cron(minute="30", hour="2", day_of_week="*", day_of_month="*", month_of_year="*")

    found = next_occurrences(
        schedule, AMSTERDAM, after=dt.datetime(2026, 10, 24, tzinfo=UTC), until=dt.datetime(2026, 10, 27, tzinfo=UTC)
    )

    assert [(o.key, o.at) for o in found] == [
        ("2026-10-24T02:30", dt.datetime(2026, 10, 24, 0, 30, tzinfo=UTC)),  # CEST, +02:00
        ("2026-10-25T02:30", dt.datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),  # the first 02:30 (CEST)
        ("2026-10-26T02:30", dt.datetime(2026, 10, 26, 1, 30, tzinfo=UTC)),  # CET, +01:00
    ]


def test_when_the_clocks_go_forward_the_missing_two_thirty_still_happens_once():
    schedule = cron(minute="30", hour="2", day_of_week="*", day_of_month="*", month_of_year="*")

    found = next_occurrences(
        schedule, AMSTERDAM, after=dt.datetime(2027, 3, 27, tzinfo=UTC), until=dt.datetime(2027, 3, 29, 12, tzinfo=UTC)
    )

    assert [o.key for o in found] == ["2027-03-27T02:30", "2027-03-28T02:30", "2027-03-29T02:30"]
    # 02:30 does not exist on 28 March: it runs when the clock jumps past it, 03:30 CEST.
    assert found[1].at == dt.datetime(2027, 3, 28, 1, 30, tzinfo=UTC)


def test_a_schedule_missed_for_days_has_the_latest_occurrence_only():
    schedule = cron(minute="0", hour="9", day_of_week="*", day_of_month="*", month_of_year="*")

    latest = latest_occurrence(
        schedule,
        AMSTERDAM,
        after=dt.datetime(2026, 12, 1, 9, tzinfo=UTC),
        until=dt.datetime(2026, 12, 4, 12, tzinfo=UTC),
    )

    assert latest.key == "2026-12-04T09:00"


# --- Through the dispatcher -------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_daily_campaign_sends_once_on_the_night_the_clocks_go_back(time_machine):
    contacts = [customer(), customer()]
    campaign = recurring(time_machine, contacts, daily(), activated_at=dt.datetime(2026, 10, 24, 12, tzinfo=UTC))

    # Beat ticks every ten minutes through the night of 25 October, 02:00-03:00 happening twice.
    for moment in every(dt.datetime(2026, 10, 24, 20, tzinfo=UTC), dt.datetime(2026, 10, 25, 4, tzinfo=UTC)):
        time_machine.move_to(moment, tick=False)
        send_everything()

    run = CampaignRun.objects.get(campaign=campaign)
    assert (run.occurrence, run.scheduled_for) == ("2026-10-25T02:30", dt.datetime(2026, 10, 25, 0, 30, tzinfo=UTC))
    assert run.status == CampaignRun.Status.COMPLETED
    assert sorted(message.delivery_id for message in locmem.outbox) == sorted(
        Delivery.objects.filter(run=run, status=Delivery.Status.SENT).values_list("pk", flat=True)
    )
    assert len(locmem.outbox) == 2

    # The next night, an hour later in UTC (CET), the next run.
    for moment in every(dt.datetime(2026, 10, 26, 0, tzinfo=UTC), dt.datetime(2026, 10, 26, 2, tzinfo=UTC)):
        time_machine.move_to(moment, tick=False)
        send_everything()
    assert list(
        CampaignRun.objects.filter(campaign=campaign)
        .order_by("scheduled_for")
        .values_list("occurrence", "scheduled_for")
    ) == [
        ("2026-10-25T02:30", dt.datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
        ("2026-10-26T02:30", dt.datetime(2026, 10, 26, 1, 30, tzinfo=UTC)),
    ]
    assert len(locmem.outbox) == 4


@pytest.mark.django_db
def test_a_daily_campaign_sends_once_on_the_night_the_clocks_go_forward(time_machine):
    campaign = recurring(time_machine, [customer()], daily(), activated_at=dt.datetime(2027, 3, 27, 12, tzinfo=UTC))

    for moment in every(dt.datetime(2027, 3, 27, 22, tzinfo=UTC), dt.datetime(2027, 3, 28, 4, tzinfo=UTC)):
        time_machine.move_to(moment, tick=False)
        send_everything()

    run = CampaignRun.objects.get(campaign=campaign)
    assert (run.occurrence, run.scheduled_for) == ("2027-03-28T02:30", dt.datetime(2027, 3, 28, 1, 30, tzinfo=UTC))
    assert len(locmem.outbox) == 1


@pytest.mark.django_db
def test_an_hourly_campaign_has_one_run_per_wall_clock_hour_through_the_doubled_hour(time_machine):
    schedule = daily(hour="*", minute="30")
    ContactPolicy.objects.update_or_create(pk=1, defaults={"cap_total": 20, "cap_per_channel": 20})
    campaign = recurring(time_machine, [customer()], schedule, activated_at=dt.datetime(2026, 10, 24, 21, tzinfo=UTC))

    for moment in every(dt.datetime(2026, 10, 24, 21, 40, tzinfo=UTC), dt.datetime(2026, 10, 25, 3, tzinfo=UTC)):
        time_machine.move_to(moment, tick=False)
        send_everything()

    occurrences = list(
        CampaignRun.objects.filter(campaign=campaign).order_by("scheduled_for").values_list("occurrence", flat=True)
    )
    assert occurrences == [
        "2026-10-24T23:30",
        "2026-10-25T00:30",
        "2026-10-25T01:30",
        "2026-10-25T02:30",  # the first 02:30; the second (CET) is the same occurrence
        "2026-10-25T03:30",
    ]
    assert len(locmem.outbox) == len(occurrences)


@pytest.mark.django_db
def test_a_beat_that_fires_twice_makes_one_run_and_sends_once(time_machine):
    contacts = [customer() for _ in range(3)]
    campaign = recurring(
        time_machine, contacts, daily(hour="9", minute="0"), activated_at=dt.datetime(2026, 12, 3, 12, tzinfo=UTC)
    )
    time_machine.move_to(dt.datetime(2026, 12, 4, 8, 0, 5, tzinfo=UTC), tick=False)  # 09:00:05 in Amsterdam

    send_everything()
    send_everything()  # the same tick again, as a beat that fired twice
    time_machine.move_to(dt.datetime(2026, 12, 4, 8, 0, 15, tzinfo=UTC), tick=False)
    send_everything()  # and the next tick

    run = CampaignRun.objects.get(campaign=campaign)
    assert run.occurrence == "2026-12-04T09:00"
    assert Delivery.objects.filter(campaign=campaign).count() == 3
    assert sorted(message.to for message in locmem.outbox) == sorted(
        Delivery.objects.filter(campaign=campaign).values_list("to", flat=True)
    )
    assert len(locmem.outbox) == 3


@pytest.mark.django_db
def test_a_beat_that_was_down_for_days_sends_the_latest_occurrence_once(time_machine):
    campaign = recurring(
        time_machine, [customer()], daily(hour="9", minute="0"), activated_at=dt.datetime(2026, 12, 1, 7, tzinfo=UTC)
    )
    time_machine.move_to(dt.datetime(2026, 12, 4, 12, tzinfo=UTC), tick=False)

    send_everything()

    assert list(CampaignRun.objects.filter(campaign=campaign).values_list("occurrence", flat=True)) == [
        "2026-12-04T09:00"
    ]
    assert len(locmem.outbox) == 1


@pytest.mark.django_db
def test_a_recurring_campaign_stops_at_its_end_and_completes(time_machine):
    campaign = recurring(
        time_machine,
        [customer()],
        daily(hour="9", minute="0"),
        activated_at=dt.datetime(2026, 12, 1, 7, tzinfo=UTC),
        ends_at=dt.datetime(2026, 12, 2, 12, tzinfo=UTC),
    )
    for day in (1, 2, 3, 4):
        time_machine.move_to(dt.datetime(2026, 12, day, 8, 30, tzinfo=UTC), tick=False)
        send_everything()

    assert list(
        CampaignRun.objects.filter(campaign=campaign).order_by("scheduled_for").values_list("occurrence", flat=True)
    ) == [
        "2026-12-01T09:00",
        "2026-12-02T09:00",
    ]
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED


@pytest.mark.django_db(transaction=True)
def test_two_dispatchers_ticking_at_the_same_moment_make_one_run_and_enqueue_each_batch_once(time_machine):
    contacts = [customer() for _ in range(5)]
    activated_at = dt.datetime(2026, 12, 3, 12, tzinfo=UTC)
    campaign = recurring(time_machine, contacts, daily(hour="9", minute="0"), activated_at=activated_at)
    moment = dt.datetime(2026, 12, 4, 8, 0, 5, tzinfo=UTC)
    start = threading.Barrier(2)
    enqueued: list[list[int]] = [[], []]
    errors = []

    def dispatcher(index):
        try:
            start.wait(timeout=10)
            dispatch_tick(enqueue=enqueued[index].extend, now=moment)
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=dispatcher, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    run = CampaignRun.objects.get(campaign=campaign)
    assert run.occurrence == "2026-12-04T09:00"
    batches = enqueued[0] + enqueued[1]
    assert len(batches) == len(set(batches)) == run.batches.count() >= 1
    for batch_id in batches * 2:  # each batch also delivered twice by the broker
        batch_send(batch_id=batch_id, worker="worker")
    assert Delivery.objects.filter(run=run, status=Delivery.Status.SENT).count() == 5
    assert len(locmem.outbox) == 5
