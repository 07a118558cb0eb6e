"""Runs: the dispatcher's tick, planning a run's deliveries, fanning out its batches, completing it.

The schedule lives in PostgreSQL rows, not in Celery ETAs: a run is a row with `scheduled_for`,
unique per campaign and occurrence. A tick (django-celery-beat, every few seconds) makes the
runs that came due, plans them (each claimed with FOR UPDATE SKIP LOCKED under its planner's
advisory lock, planned in steps that are each safe to repeat: a worker killed while planning
leaves the run planning, and the next tick plans it again), enqueues the batches that wait, takes
back batches whose worker's lease expired, and completes runs whose batches are all done. Every
step is safe to run twice and from two workers at once.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from audiences.models import Contact, Event
from audiences.selectors.segments import segment_query_memory
from campaigns.models import Campaign, CampaignRun, Delivery, DeliveryBatch, TriggerEntry
from campaigns.schedules import from_crontab, latest_occurrence
from campaigns.selectors import campaign_audience
from campaigns.services.lifecycle import campaign_transition
from campaigns.services.policies import throttles_forget
from campaigns.services.sending import CONSENT_CHANNEL
from campaigns.services.variants import (
    variant_run_audience,
    variant_sql,
    variant_winner_run_schedule,
    variant_winner_waits,
    variant_winners_pick,
)
from goals.experiments import experiment_assign, experiment_split, experiment_split_fix
from goals.models import Experiment

logger = logging.getLogger(__name__)

# Enqueue: a function that sends batch ids to the workers (campaigns.tasks wires it to Celery).
Enqueue = Callable[[list[int]], None]


def _occurrence_key(moment: dt.datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%dT%H:%M")


# --- Making runs ---------------------------------------------------------------------------------


def recurring_runs_create(*, now: dt.datetime) -> int:
    """For each running recurring campaign, its latest occurrence that came due since its last run (or
    its activation) becomes a run. Occurrences missed while nothing ticked are not sent one by one."""
    made = 0
    campaigns = Campaign.objects.filter(
        status=Campaign.Status.RUNNING, kind=Campaign.Kind.RECURRING, schedule__isnull=False
    ).select_related("schedule")
    for campaign in campaigns:
        if campaign.ends_at is not None and campaign.ends_at <= now:
            continue
        schedule = campaign.schedule
        assert schedule is not None  # noqa: S101 - filtered on above
        zone = ZoneInfo(str(schedule.timezone))
        last = campaign.runs.order_by("-scheduled_for").values_list("scheduled_for", flat=True).first()
        after = max(filter(None, [last, campaign.activated_at])) if (last or campaign.activated_at) else now
        occurrence = latest_occurrence(
            from_crontab(schedule),
            zone,
            after=after,
            until=now,
        )
        if occurrence is None:
            continue
        created = CampaignRun.objects.bulk_create(
            [CampaignRun(campaign=campaign, occurrence=occurrence.key, scheduled_for=occurrence.at)],
            ignore_conflicts=True,
        )
        made += len(created)
    return made


def _event_filters_sql(filters: dict) -> tuple[str, list]:
    if not filters:
        return "", []
    return " AND e.properties @> %s::jsonb", [json.dumps(filters)]


def trigger_entries_create(*, now: dt.datetime) -> int:
    """For each running triggered campaign, the trigger events that happened since it was activated
    (or in the last day, whichever is later) become pending sends, due after the campaign's delay.
    One INSERT ... SELECT per campaign; an event seen before is skipped by the unique key."""
    made = 0
    lookback = now - dt.timedelta(seconds=settings.CAMPAIGN_TRIGGER_LOOKBACK_SECONDS)
    for campaign in Campaign.objects.filter(status=Campaign.Status.RUNNING, kind=Campaign.Kind.TRIGGERED):
        if campaign.ends_at is not None and campaign.ends_at <= now:
            continue
        since = max(filter(None, [campaign.activated_at, lookback]))
        filters_sql, filters_params = _event_filters_sql(campaign.trigger_filters or {})
        first_only = (
            " AND NOT EXISTS (SELECT 1 FROM audiences_event p WHERE p.contact_id = e.contact_id"
            " AND p.type = e.type AND (p.occurred_at, p.id) < (e.occurred_at, e.id))"
            if campaign.trigger_first_only
            else ""
        )
        dedupe = "e.contact_id::text" if campaign.trigger_first_only else "e.id::text"
        sql = f"""
            INSERT INTO {TriggerEntry._meta.db_table}
                (campaign_id, contact_id, event_id, dedupe_key, triggered_at, due_at, status, reason)
            SELECT %s, e.contact_id, e.id, {dedupe}, e.occurred_at, e.occurred_at + %s, %s, ''
            FROM audiences_event e
            WHERE e.type = %s AND e.occurred_at >= %s AND e.occurred_at <= %s{filters_sql}{first_only}
            ON CONFLICT (campaign_id, dedupe_key) DO NOTHING
        """  # noqa: S608 - fixed SQL fragments and a table name; every value is a parameter
        params: list[Any] = [
            campaign.pk,
            campaign.trigger_delay or dt.timedelta(0),
            TriggerEntry.Status.WAITING,
            campaign.trigger_event_type,
            since,
            now,
            *filters_params,
        ]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            made += cursor.rowcount
        due = campaign.trigger_entries.filter(status=TriggerEntry.Status.WAITING, due_at__lte=now).exists()
        if due:
            CampaignRun.objects.bulk_create(
                [CampaignRun(campaign=campaign, occurrence=f"due:{now:%Y-%m-%dT%H:%M}", scheduled_for=now)],
                ignore_conflicts=True,
            )
    return made


# --- Planning ------------------------------------------------------------------------------------


def _triggered_audience(campaign: Campaign, run: CampaignRun, now: dt.datetime) -> Q:
    """The contacts whose pending send came due by this run, less those a stop event or the segments
    took out (their entries are marked stopped, with why)."""
    entries = campaign.trigger_entries.filter(status=TriggerEntry.Status.WAITING, due_at__lte=run.scheduled_for)
    if campaign.stop_event_types:
        stopped = entries.filter(
            Exists(
                Event.objects.filter(
                    contact=OuterRef("contact"),
                    type__in=campaign.stop_event_types,
                    occurred_at__gt=OuterRef("triggered_at"),
                ).exclude(pk=OuterRef("event"))
            )
        )
        stopped.update(status=TriggerEntry.Status.STOPPED, run=run, reason="stop_event")
    due = campaign.trigger_entries.filter(status=TriggerEntry.Status.WAITING, due_at__lte=run.scheduled_for)
    condition = Q(pk__in=due.values("contact_id"))
    if campaign.include_segments.exists():
        in_audience = campaign_audience(campaign=campaign, now=now)
        out = due.exclude(contact_id__in=in_audience.values("pk"))
        out.update(status=TriggerEntry.Status.STOPPED, run=run, reason="not_in_audience")
        condition &= Q(pk__in=in_audience.values("pk"))
    return condition


DELIVERIES_SQL = """
    INSERT INTO {delivery} (run_id, campaign_id, contact_id, channel, variant_id, status, reason, detail,
                            attempts, "to", provider_id)
    SELECT %s, %s, p.id, ch.channel, {variant},
           CASE WHEN p.held_out THEN %s
                WHEN ch.consent IS NOT NULL AND cs.status IS DISTINCT FROM 'granted' THEN %s
                ELSE %s END,
           CASE WHEN p.held_out THEN ''
                WHEN ch.consent IS NOT NULL AND cs.status IS DISTINCT FROM 'granted' THEN 'no_consent'
                ELSE '' END,
           '', 0, '', ''
    FROM {plan} p
    CROSS JOIN unnest(%s::text[], %s::text[]) AS ch(channel, consent)
    LEFT JOIN audiences_consent cs ON cs.contact_id = p.id AND cs.channel = ch.consent
    WHERE NOT p.excluded
    -- In the unique index's order: each row goes to its right-hand edge (and a batch's contact
    -- range lies together in the table, for the workers' reads and updates).
    ORDER BY p.id, ch.channel
    ON CONFLICT (run_id, contact_id, channel) DO NOTHING
"""

# The run's batches, cut from its plan: ranges of contact ids with CAMPAIGN_BATCH_SIZE treated
# contacts each (its deliveries are exactly the plan's: a run planned again starts over).
BATCHES_SQL = """
    INSERT INTO {batch} (run_id, contact_from, contact_to, status, leased_by, attempts, created_at)
    SELECT %s, min(id), max(id), %s, '', 0, %s
    FROM (
        SELECT id, (row_number() OVER (ORDER BY id) - 1) / %s AS number
        FROM {plan} WHERE NOT excluded AND NOT held_out
    ) treated
    GROUP BY number
"""


# Each run being planned has a table of its own: its audience split, read by both connections.
PLAN_TABLE_PREFIX = "campaigns_plan_"


@dataclass
class PlanResult:
    run_id: int
    planned: int = 0
    held_out: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    batches: int = 0


def run_plan(*, run_id: int, now: dt.datetime | None = None) -> PlanResult | None:
    """Plan a due run: its audience split once into a plan (through the goal's measurement: who is
    held out, who the global control group keeps out), one delivery per contact and channel in one
    INSERT ... SELECT ... ON CONFLICT DO NOTHING, the holdout split recorded as the measurement's
    assignments, and its batches. None when another planner has the run, it is not due, or it was
    planned before.

    In steps, each its own transaction, so that the deliveries and the assignments (about two thirds
    of the time for a million contacts) are written side by side on two connections. The run is
    claimed (planning) under a session advisory lock that its planner holds until it is done, and the
    measurement's split is fixed from then on: a planner that dies loses the lock with its
    connection, the run stays planning, and the next tick plans it again from the start (what the
    first attempt wrote was never sent, and is replaced); the counts and the sending status are
    written in one last transaction.
    """
    now = now or timezone.now()
    with _planning_lock(run_id) as held:
        if not held:
            return None
        claimed = _plan_claim(run_id=run_id, now=now)
        if claimed is None or claimed.experiment is None:
            return None if claimed is None else PlanResult(run_id=run_id)
        run, campaign, experiment = claimed.run, claimed.campaign, claimed.experiment
        plan = _plan_table(run.pk)
        if claimed.again:
            _plan_start_over(run=run)
        contacts, global_control = _plan_split(run=run, campaign=campaign, experiment=experiment, plan=plan, now=now)
        _side_by_side(
            lambda: _plan_deliveries(run=run, campaign=campaign, plan=plan),
            lambda: _plan_assignments_and_batches(run=run, experiment=experiment, plan=plan, now=now),
            apart=contacts >= settings.CAMPAIGN_PLAN_APART_FROM > 0,
        )
        result = _plan_finish(run=run, campaign=campaign, plan=plan, now=now)
    if result is None:
        return None
    if global_control:
        result.excluded["global_control"] = global_control
    logger.info(
        "Run %s of campaign %s planned: %s to send, %s held out, excluded %s, %s batches",
        run.pk,
        campaign.pk,
        result.planned,
        result.held_out,
        result.excluded,
        result.batches,
    )
    return result


@contextmanager
def _planning_lock(run_id: int) -> Iterator[bool]:
    """A session advisory lock on planning the run, on this connection: whether it was free. Held
    until the planner is done; PostgreSQL lets go of it when the planner's connection ends."""
    key = f"run_plan:{run_id}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [key])
        held = cursor.fetchone()[0]
    try:
        yield held
    finally:
        if held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [key])


@dataclass
class _Claimed:
    run: CampaignRun
    campaign: Campaign
    experiment: Experiment | None
    again: bool = False  # an earlier attempt at planning the run was cut short


def _plan_claim(*, run_id: int, now: dt.datetime) -> _Claimed | None:
    """The run, due and not planned yet (or planned in part by a planner that died), marked planning;
    None when it must wait or was cancelled. A run whose campaign has no measurement fails."""
    with transaction.atomic():
        run = (
            CampaignRun.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("campaign__experiment")
            .filter(
                pk=run_id,
                status__in=[CampaignRun.Status.SCHEDULED, CampaignRun.Status.PLANNING],
                scheduled_for__lte=now,
            )
            .first()
        )
        if run is None:
            return None
        campaign = run.campaign
        if campaign.status in (Campaign.Status.CANCELLED, Campaign.Status.COMPLETED):
            # A plan an earlier attempt left is dropped by the tick (plan_tables_forget).
            CampaignRun.objects.filter(pk=run.pk).update(status=CampaignRun.Status.CANCELLED, completed_at=now)
            return None
        if campaign.status == Campaign.Status.PAUSED:
            return None  # planned once the campaign is resumed
        if variant_winner_waits(run=run):
            return None  # planned once its test has a winner (variant_winners_pick)
        if campaign.status == Campaign.Status.SCHEDULED:
            campaign = campaign_transition(campaign=campaign, to=Campaign.Status.RUNNING, now=now)
        if campaign.experiment is None:
            # Activation makes one; a campaign without cannot be measured, so it sends nothing.
            CampaignRun.objects.filter(pk=run.pk).update(
                status=CampaignRun.Status.FAILED, error="The campaign has no measurement.", completed_at=now
            )
            return _Claimed(run=run, campaign=campaign, experiment=None)
        CampaignRun.objects.filter(pk=run.pk).update(status=CampaignRun.Status.PLANNING)
        experiment = experiment_split_fix(experiment=campaign.experiment, now=now)
        return _Claimed(
            run=run, campaign=campaign, experiment=experiment, again=run.status == CampaignRun.Status.PLANNING
        )


def _plan_start_over(*, run: CampaignRun) -> None:
    """An earlier attempt's deliveries removed, so that the run is planned afresh from its audience as
    it is now (a contact who left it since, or a trigger stopped since, gets nothing). Nothing of them
    was sent: only a sending run's batches are handed out. One statement (a delivery of a run that
    never sent has no call-list item to cascade to)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {Delivery._meta.db_table} WHERE run_id = %s", [run.pk])  # noqa: S608


def _plan_split(
    *, run: CampaignRun, campaign: Campaign, experiment: Experiment, plan: str, now: dt.datetime
) -> tuple[int, int]:
    """The run's audience, split by its measurement, into the run's plan: a table of its own (id,
    held_out, excluded) that both connections read, unlogged (it lives for minutes and is made again
    if planning starts over). Returns how many contacts it plans for and how many the global control
    group keeps out."""
    with segment_query_memory(), connection.cursor() as cursor:
        if campaign.kind == Campaign.Kind.TRIGGERED:
            audience = Contact.objects.filter(_triggered_audience(campaign, run, now), erased_at__isnull=True)
        else:
            audience = campaign_audience(campaign=campaign, now=now)
        audience = variant_run_audience(run=run, audience=audience)
        cursor.execute(f"DROP TABLE IF EXISTS {plan}")
        try:
            split_sql, split_params = experiment_split(experiment=experiment, contacts=audience).query.sql_with_params()
        except EmptyResultSet:  # an audience that is empty by construction
            cursor.execute(f"CREATE UNLOGGED TABLE {plan} (id bigint, held_out boolean, excluded boolean)")
            return 0, 0
        # Each row carries an md5 of the contact's key (its bucket), which the planner does not count:
        # told that rows cost little to pass on, it splits a large audience over parallel workers.
        cursor.execute("SELECT set_config('parallel_tuple_cost', '0.01', true)")
        cursor.execute(
            f"CREATE UNLOGGED TABLE {plan} (id, held_out, excluded) AS {split_sql}",
            split_params,
        )
        cursor.execute(f"ANALYZE {plan}")
        cursor.execute(f"SELECT count(*) FILTER (WHERE NOT excluded), count(*) FILTER (WHERE excluded) FROM {plan}")  # noqa: S608
        contacts, global_control = cursor.fetchone()
    return contacts, global_control


def _plan_deliveries(*, run: CampaignRun, campaign: Campaign, plan: str) -> None:
    """One delivery per planned contact and channel, the holdout marked and those without consent
    held back, in one INSERT ... SELECT ... ON CONFLICT DO NOTHING."""
    variant, variant_params = variant_sql(run=run, contact_id="p.id")
    channels = list(campaign.channels)
    with segment_query_memory(), connection.cursor() as cursor:
        cursor.execute(
            DELIVERIES_SQL.format(delivery=Delivery._meta.db_table, plan=plan, variant=variant),
            [
                run.pk,
                campaign.pk,
                *variant_params,
                Delivery.Status.HOLDOUT,
                Delivery.Status.HELD_BACK,
                Delivery.Status.QUEUED,
                channels,
                [CONSENT_CHANNEL.get(channel) for channel in channels],
            ],
        )


def _plan_assignments_and_batches(*, run: CampaignRun, experiment: Experiment, plan: str, now: dt.datetime) -> None:
    """The plan's split recorded in the measurement (who is in the treatment, who in the holdout),
    then the run's batches cut from the plan (those of an earlier attempt replaced: a run that is
    not sending yet has none enqueued)."""
    with segment_query_memory():
        experiment_assign(experiment=experiment, split=(f"SELECT id, held_out, excluded FROM {plan}", []), now=now)  # noqa: S608
    with segment_query_memory(), connection.cursor() as cursor:
        DeliveryBatch.objects.filter(run=run).delete()
        cursor.execute(
            BATCHES_SQL.format(batch=DeliveryBatch._meta.db_table, plan=plan),
            [run.pk, DeliveryBatch.Status.QUEUED, now, settings.CAMPAIGN_BATCH_SIZE],
        )


def _plan_finish(*, run: CampaignRun, campaign: Campaign, plan: str, now: dt.datetime) -> PlanResult | None:
    """The run's counts and its status (sending, or completed with nothing to send), and the plan
    dropped, in one transaction. None when the campaign was cancelled or completed meanwhile: the run
    is cancelled, its deliveries stay unsent."""
    result = PlanResult(run_id=run.pk)
    with segment_query_memory(), connection.cursor() as cursor:
        planning = CampaignRun.objects.select_for_update(of=("self",)).filter(
            pk=run.pk, status=CampaignRun.Status.PLANNING
        )
        campaign_status = Campaign.objects.filter(pk=campaign.pk).values_list("status", flat=True).first()
        if not list(planning.values_list("pk", flat=True)) or campaign_status in (
            Campaign.Status.CANCELLED,
            Campaign.Status.COMPLETED,
        ):
            CampaignRun.objects.filter(pk=run.pk, status=CampaignRun.Status.PLANNING).update(
                status=CampaignRun.Status.CANCELLED, completed_at=now
            )
            DeliveryBatch.objects.filter(run=run).delete()  # never enqueued: the run was not sending
            _plan_drop(plan)
            return None
        cursor.execute(
            f"SELECT status, reason, count(*) FROM {Delivery._meta.db_table} WHERE run_id = %s GROUP BY 1, 2",  # noqa: S608
            [run.pk],
        )
        for status, reason, count in cursor.fetchall():
            if status == Delivery.Status.QUEUED:
                result.planned += count
            elif status == Delivery.Status.HOLDOUT:
                result.held_out += count
            else:
                result.excluded[reason] = result.excluded.get(reason, 0) + count
        batches = DeliveryBatch.objects.filter(run=run)
        if not result.planned:
            batches.delete()  # nothing to send: everyone held out or held back
        result.batches = batches.count()
        if campaign.kind == Campaign.Kind.TRIGGERED:
            campaign.trigger_entries.filter(status=TriggerEntry.Status.WAITING, due_at__lte=run.scheduled_for).update(
                status=TriggerEntry.Status.PLANNED, run=run
            )
        CampaignRun.objects.filter(pk=run.pk).update(
            status=CampaignRun.Status.SENDING if result.batches else CampaignRun.Status.COMPLETED,
            planned=result.planned,
            held_out=result.held_out,
            excluded=result.excluded,
            planned_at=now,
            completed_at=None if result.batches else now,
        )
        if run.purpose == CampaignRun.Purpose.TEST:
            variant_winner_run_schedule(run=run, now=now)
        _plan_drop(plan)
    return result


def _plan_table(run_id: int) -> str:
    return connection.ops.quote_name(f"{PLAN_TABLE_PREFIX}{int(run_id)}")


def _plan_drop(plan: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {plan}")


def _side_by_side(first: Callable[[], None], second: Callable[[], None], *, apart: bool) -> None:
    """Runs `first` on this connection and `second` beside it, in a thread on a connection of its
    own, when `apart`; else one after the other. Always one after the other inside a caller's
    transaction, whose uncommitted rows another connection could not see."""
    if not apart or connection.in_atomic_block:
        first()
        second()
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="run-plan") as pool:
        beside = pool.submit(_on_own_connection, second)
        try:
            first()
        except BaseException:
            wait([beside])
            if beside.exception() is not None:
                logger.error("Planning beside failed too", exc_info=beside.exception())
            raise
        beside.result()


def _on_own_connection(function: Callable[[], None]) -> None:
    try:
        function()
    finally:
        connection.close()  # this thread's own


# --- Fanning out, taking back, completing ---------------------------------------------------------


def batches_enqueue(*, enqueue: Enqueue, now: dt.datetime | None = None, limit: int = 20_000) -> int:
    """Send the batches that wait to the workers: queued and due, not enqueued since a lease ago (a
    message lost with a broker restart is sent again), of running campaigns. Batches whose worker's
    lease expired are queued again first."""
    now = now or timezone.now()
    live = Q(run__status=CampaignRun.Status.SENDING, run__campaign__status=Campaign.Status.RUNNING)
    DeliveryBatch.objects.filter(live, status=DeliveryBatch.Status.CLAIMED, lease_expires_at__lt=now).update(
        status=DeliveryBatch.Status.QUEUED, leased_by="", lease_expires_at=None, enqueued_at=None
    )
    stale = now - dt.timedelta(seconds=settings.CAMPAIGN_BATCH_LEASE_SECONDS)
    with transaction.atomic():
        ids = list(
            DeliveryBatch.objects.filter(live, status=DeliveryBatch.Status.QUEUED)
            .filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
            .filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=stale))
            .order_by("pk")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("pk", flat=True)[:limit]
        )
        if ids:
            DeliveryBatch.objects.filter(pk__in=ids).update(enqueued_at=now)
            transaction.on_commit(lambda: enqueue(ids))
    return len(ids)


def runs_complete(*, now: dt.datetime | None = None) -> int:
    """Runs whose batches are all done are completed; a one-off campaign with its run completed is
    too, and a recurring or triggered one past its end once its runs in progress are."""
    now = now or timezone.now()
    open_batches = DeliveryBatch.objects.filter(run=OuterRef("pk")).exclude(status=DeliveryBatch.Status.DONE)
    done = CampaignRun.objects.filter(status=CampaignRun.Status.SENDING).filter(~Exists(open_batches))
    completed = 0
    for run in done.select_related("campaign"):
        if CampaignRun.objects.filter(pk=run.pk, status=CampaignRun.Status.SENDING).update(
            status=CampaignRun.Status.COMPLETED, completed_at=now
        ):
            completed += 1
    finished = Campaign.objects.filter(status=Campaign.Status.RUNNING).filter(
        Q(kind=Campaign.Kind.ONE_OFF)
        & ~Exists(
            CampaignRun.objects.filter(
                campaign=OuterRef("pk"),
                status__in=[CampaignRun.Status.SCHEDULED, CampaignRun.Status.PLANNING, CampaignRun.Status.SENDING],
            )
        )
        | Q(kind__in=[Campaign.Kind.RECURRING, Campaign.Kind.TRIGGERED], ends_at__lte=now)
        # Its last runs sent first: a run being planned or sent when the end comes is finished.
        & ~Exists(
            CampaignRun.objects.filter(
                campaign=OuterRef("pk"), status__in=[CampaignRun.Status.PLANNING, CampaignRun.Status.SENDING]
            )
        )
    )
    for campaign in finished:
        campaign_transition(campaign=campaign, to=Campaign.Status.COMPLETED, now=now)
    return completed


def plan_tables_forget() -> int:
    """The plans of runs no longer planning, dropped: left behind when a planner died and its run was
    cancelled before another planner took it up. One that a live planner holds (its lock taken) is
    left to it. Returns how many were dropped."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND starts_with(tablename, %s)",
            [PLAN_TABLE_PREFIX],
        )
        names = [name for (name,) in cursor.fetchall()]
    runs = {int(suffix): name for name in names if (suffix := name.removeprefix(PLAN_TABLE_PREFIX)).isdigit()}
    planning = set(
        CampaignRun.objects.filter(pk__in=list(runs), status=CampaignRun.Status.PLANNING).values_list("pk", flat=True)
    )
    dropped = 0
    for run_id in runs.keys() - planning:
        with _planning_lock(run_id) as held:
            if held:
                _plan_drop(_plan_table(run_id))
                dropped += 1
    return dropped


def due_runs(*, now: dt.datetime | None = None) -> list[int]:
    now = now or timezone.now()
    return list(
        CampaignRun.objects.filter(
            # Planning runs too: a planner that died left them so (run_plan skips those still planned).
            status__in=[CampaignRun.Status.SCHEDULED, CampaignRun.Status.PLANNING],
            scheduled_for__lte=now,
            # Of cancelled and completed campaigns too: planning them cancels their runs left behind.
            campaign__status__in=[
                Campaign.Status.SCHEDULED,
                Campaign.Status.RUNNING,
                Campaign.Status.CANCELLED,
                Campaign.Status.COMPLETED,
            ],
        )
        .order_by("scheduled_for")
        .values_list("pk", flat=True)
    )


@dataclass
class TickResult:
    runs_made: int
    entries_made: int
    planned: list[int]
    enqueued: int
    completed: int


def dispatch_tick(*, enqueue: Enqueue, now: dt.datetime | None = None) -> TickResult:
    """One tick of the dispatcher: make the runs that came due, pick the winners of the variant tests
    that are over, plan the due runs, enqueue waiting batches, take back expired leases, complete
    what is done."""
    now = now or timezone.now()
    runs_made = recurring_runs_create(now=now)
    entries_made = trigger_entries_create(now=now)
    variant_winners_pick(now=now)
    planned = [run_id for run_id in due_runs(now=now) if run_plan(run_id=run_id, now=now) is not None]
    enqueued = batches_enqueue(enqueue=enqueue, now=now)
    completed = runs_complete(now=now)
    throttles_forget(before=now - dt.timedelta(hours=1))
    plan_tables_forget()
    return TickResult(runs_made, entries_made, planned, enqueued, completed)
