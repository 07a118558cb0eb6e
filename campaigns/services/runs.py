"""Runs: the dispatcher's tick, planning a run's deliveries, fanning out its batches, completing it.

The schedule lives in PostgreSQL rows, not in Celery ETAs: a run is a row with `scheduled_for`,
unique per campaign and occurrence. A tick (django-celery-beat, every few seconds) makes the
runs that came due, plans them (each claimed with FOR UPDATE SKIP LOCKED, planned in one
transaction: a worker killed while planning leaves the run scheduled for the next tick), enqueues
the batches that wait, takes back batches whose worker's lease expired, and completes runs whose
batches are all done. Every step is safe to run twice and from two workers at once.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.db.models.expressions import RawSQL
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
from goals.experiments import experiment_assign
from goals.models import Assignment, Experiment

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


PLAN_SQL = """
    INSERT INTO {delivery} (run_id, campaign_id, contact_id, channel, variant_id, status, reason, detail,
                            attempts, "to", provider_id)
    SELECT %s, %s, a.contact_id, ch.channel, {variant},
           CASE WHEN a."group" = %s THEN %s
                WHEN ch.consent IS NOT NULL AND cs.status IS DISTINCT FROM 'granted' THEN %s
                ELSE %s END,
           CASE WHEN a."group" = %s THEN ''
                WHEN ch.consent IS NOT NULL AND cs.status IS DISTINCT FROM 'granted' THEN 'no_consent'
                ELSE '' END,
           '', 0, '', ''
    FROM {assignment} a
    JOIN run_audience r ON r.id = a.contact_id
    CROSS JOIN unnest(%s::text[], %s::text[]) AS ch(channel, consent)
    LEFT JOIN audiences_consent cs ON cs.contact_id = a.contact_id AND cs.channel = ch.consent
    WHERE a.experiment_id = %s
    -- In the unique index's order: each row goes to its right-hand edge (and a batch's contact
    -- range lies together in the table, for the workers' reads and updates).
    ORDER BY a.contact_id, ch.channel
    ON CONFLICT (run_id, contact_id, channel) DO NOTHING
"""

BATCHES_SQL = """
    INSERT INTO {batch} (run_id, contact_from, contact_to, status, leased_by, attempts, created_at)
    SELECT %s, min(contact_id), max(contact_id), %s, '', 0, %s
    FROM (
        SELECT contact_id, (dense_rank() OVER (ORDER BY contact_id) - 1) / %s AS number
        FROM {delivery} WHERE run_id = %s AND status = %s
    ) numbered
    GROUP BY number
"""


@dataclass
class PlanResult:
    run_id: int
    planned: int = 0
    held_out: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    batches: int = 0


def run_plan(*, run_id: int, now: dt.datetime | None = None) -> PlanResult | None:
    """Plan a due run: its audience (materialised once), the holdout split (through the goal's
    measurement), one delivery per contact and channel in one INSERT ... SELECT ... ON CONFLICT DO
    NOTHING, and its batches. All in one transaction, on a run claimed with FOR UPDATE SKIP LOCKED:
    None when another worker has it, it is not due, or it was planned before."""
    now = now or timezone.now()
    with transaction.atomic():
        run = (
            CampaignRun.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("campaign__experiment")
            .filter(pk=run_id, status=CampaignRun.Status.SCHEDULED, scheduled_for__lte=now)
            .first()
        )
        if run is None:
            return None
        campaign = run.campaign
        if campaign.status in (Campaign.Status.CANCELLED, Campaign.Status.COMPLETED):
            CampaignRun.objects.filter(pk=run.pk).update(status=CampaignRun.Status.CANCELLED, completed_at=now)
            return None
        if campaign.status == Campaign.Status.PAUSED:
            return None  # planned once the campaign is resumed
        if variant_winner_waits(run=run):
            return None  # planned once its test has a winner (variant_winners_pick)
        if campaign.status == Campaign.Status.SCHEDULED:
            campaign = campaign_transition(campaign=campaign, to=Campaign.Status.RUNNING, now=now)
        experiment = campaign.experiment
        result = PlanResult(run_id=run.pk)
        if experiment is None:  # activation makes one; a campaign without cannot be measured, so it sends nothing
            CampaignRun.objects.filter(pk=run.pk).update(
                status=CampaignRun.Status.FAILED, error="The campaign has no measurement.", completed_at=now
            )
            return result
        if campaign.kind == Campaign.Kind.TRIGGERED:
            audience = Contact.objects.filter(_triggered_audience(campaign, run, now), erased_at__isnull=True)
        else:
            audience = campaign_audience(campaign=campaign, now=now)
        audience = variant_run_audience(run=run, audience=audience)
        audience_sql, audience_params = audience.values("pk").query.sql_with_params()
        with segment_query_memory(), connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS run_audience")
            cursor.execute(
                f"CREATE TEMP TABLE run_audience ON COMMIT DROP AS SELECT q.id FROM ({audience_sql}) AS q(id)",  # noqa: S608
                audience_params,
            )
            cursor.execute("ANALYZE run_audience")
            assigned = experiment_assign(
                experiment=experiment,
                contacts=Contact.objects.filter(pk__in=RawSQL("SELECT id FROM run_audience", ())),
                now=now,
            )
            variant, variant_params = variant_sql(run=run, contact_id="a.contact_id")
            channels = list(campaign.channels)
            consents = [CONSENT_CHANNEL.get(channel) for channel in channels]
            cursor.execute(
                PLAN_SQL.format(
                    delivery=Delivery._meta.db_table,
                    assignment=Assignment._meta.db_table,
                    variant=variant,
                ),
                [
                    run.pk,
                    campaign.pk,
                    *variant_params,
                    Experiment.Group.HOLDOUT,
                    Delivery.Status.HOLDOUT,
                    Delivery.Status.HELD_BACK,
                    Delivery.Status.QUEUED,
                    Experiment.Group.HOLDOUT,
                    channels,
                    consents,
                    experiment.pk,
                ],
            )
            cursor.execute(
                BATCHES_SQL.format(batch=DeliveryBatch._meta.db_table, delivery=Delivery._meta.db_table),
                [
                    run.pk,
                    DeliveryBatch.Status.QUEUED,
                    now,
                    settings.CAMPAIGN_BATCH_SIZE,
                    run.pk,
                    Delivery.Status.QUEUED,
                ],
            )
            result.batches = cursor.rowcount
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
        if assigned.excluded:
            result.excluded["global_control"] = assigned.excluded
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
    """Runs whose batches are all done are completed; a one-off campaign with its run completed is too."""
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
    )
    for campaign in finished:
        campaign_transition(campaign=campaign, to=Campaign.Status.COMPLETED, now=now)
    return completed


def due_runs(*, now: dt.datetime | None = None) -> list[int]:
    now = now or timezone.now()
    return list(
        CampaignRun.objects.filter(
            status=CampaignRun.Status.SCHEDULED,
            scheduled_for__lte=now,
            campaign__status__in=[Campaign.Status.SCHEDULED, Campaign.Status.RUNNING, Campaign.Status.CANCELLED],
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
    return TickResult(runs_made, entries_made, planned, enqueued, completed)
