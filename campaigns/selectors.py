"""Reads of the delivery layer that more than one caller needs."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from django.db import connection
from django.db.models import Count, DateTimeField, Exists, ExpressionWrapper, OuterRef, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from audiences.models import Contact, Event
from audiences.selectors.segments import segment_condition
from campaigns.models import Campaign, CampaignRun, CampaignVariant, Delivery
from content.models import Message
from goals.models import Experiment


def campaign_audience(*, campaign: Campaign, now: dt.datetime | None = None) -> QuerySet[Contact]:
    """The contacts the campaign is for now: in any of its segments and in none of its excluded
    segments, not erased. Lazy: one query when used. Raises RuleError for a segment whose rules
    cannot be used."""
    now = now or timezone.now()
    included = Q(pk__in=[])
    for segment in campaign.include_segments.all():
        included |= segment_condition(segment=segment, now=now)
    contacts = Contact.objects.filter(included, erased_at__isnull=True)
    for segment in campaign.exclude_segments.all():
        contacts = contacts.exclude(segment_condition(segment=segment, now=now))
    return contacts


def campaign_messages(*, campaign: Campaign) -> list[Message]:
    """What the campaign sends: its variants' messages, or its one message."""
    variants = list(campaign.variants.select_related("message").prefetch_related("message__templates"))
    if variants:
        return [variant.message for variant in variants]
    if campaign.message_id is None:
        return []
    return list(Message.objects.filter(pk=campaign.message_id).prefetch_related("templates"))


def _converted_after_send(campaign: Campaign) -> Exists:
    """The condition on the campaign's sent deliveries that their contact converted: had the
    measurement's conversion event (a purchase unless it says otherwise) within its attribution
    days after the delivery was sent. The one definition the funnel and the variant test count."""
    conversion_event = Experiment._meta.get_field("conversion_event").default
    days = Experiment._meta.get_field("attribution_days").default
    if campaign.experiment_id is not None:
        conversion_event, days = (
            Experiment.objects.filter(pk=campaign.experiment_id)
            .values_list("conversion_event", "attribution_days")
            .get()
        )
    return Exists(
        Event.objects.filter(
            contact_id=OuterRef("contact_id"),
            type=conversion_event,
            occurred_at__gte=OuterRef("sent_at"),
            occurred_at__lt=ExpressionWrapper(
                OuterRef("sent_at") + Value(dt.timedelta(days=days)), output_field=DateTimeField()
            ),
        )
    )


def campaign_deliveries(*, campaign_id: int) -> QuerySet[Delivery]:
    """A campaign's deliveries, read through its runs: the deliveries' unique key starts with the
    run, and they keep no index on the campaign (see Delivery.campaign)."""
    return Delivery.objects.filter(run__campaign_id=campaign_id)


def campaign_funnel(*, campaign: Campaign) -> dict[str, Any]:
    """How far the campaign's messages got, over all its runs: planned (every delivery written for
    the treatment), holdout, queued (still to send, sending included), sent, failed, held back by
    reason, and of the sent: delivered, opened, clicked, and converted: the treated contacts (with a
    sent delivery) who had the measurement's conversion event (a purchase unless it says otherwise)
    within its attribution days after their delivery was sent. Each contact converts once, however
    many messages or purchases. Four queries whatever the campaign's size."""
    deliveries = campaign_deliveries(campaign_id=campaign.pk)
    sent = Q(status=Delivery.Status.SENT)
    counts = deliveries.aggregate(
        total=Count("pk"),
        holdout=Count("pk", filter=Q(status=Delivery.Status.HOLDOUT)),
        queued=Count("pk", filter=Q(status__in=[Delivery.Status.QUEUED, Delivery.Status.SENDING])),
        sent=Count("pk", filter=sent),
        failed=Count("pk", filter=Q(status=Delivery.Status.FAILED)),
        held_back=Count("pk", filter=Q(status=Delivery.Status.HELD_BACK)),
        delivered=Count("pk", filter=sent & Q(delivered_at__isnull=False)),
        opened=Count("pk", filter=sent & Q(opened_at__isnull=False)),
        clicked=Count("pk", filter=sent & Q(clicked_at__isnull=False)),
        bounced=Count("pk", filter=sent & Q(reason="hard_bounce")),
        complained=Count("pk", filter=sent & Q(reason="complaint")),
    )
    held_back_by_reason = dict(
        deliveries.filter(status=Delivery.Status.HELD_BACK)
        .values_list("reason")
        .annotate(count=Count("pk"))
        .order_by("reason")
    )
    converted = deliveries.filter(sent, _converted_after_send(campaign)).aggregate(
        n=Count("contact_id", distinct=True)
    )["n"]
    total = counts.pop("total")
    return {
        "planned": total - counts["holdout"],
        **counts,
        "held_back_by_reason": held_back_by_reason,
        "converted": converted,
    }


@dataclass(frozen=True)
class VariantResult:
    """How one variant of an A/B/n test did: the contacts it was sent to, and of them how many
    clicked and how many converted (as the funnel counts a conversion)."""

    variant: CampaignVariant
    treated: int
    clicked: int
    converted: int

    @property
    def conversion_rate(self) -> Fraction | None:
        return Fraction(self.converted, self.treated) if self.treated else None

    @property
    def click_rate(self) -> Fraction | None:
        return Fraction(self.clicked, self.treated) if self.treated else None


def campaign_variant_results(*, campaign: Campaign, purpose: str | None = None) -> list[VariantResult]:
    """Each of the campaign's variants, in their order, with its treated contacts (a sent delivery
    of that variant), clicks and conversions: over all its runs, or its runs of one purpose (the
    variant test). A contact counts once per variant, however many channels. Three queries."""
    deliveries = campaign_deliveries(campaign_id=campaign.pk).filter(
        status=Delivery.Status.SENT, variant_id__isnull=False
    )
    if purpose is not None:
        deliveries = deliveries.filter(run__purpose=purpose)
    counts = {
        row["variant_id"]: row
        for row in deliveries.values("variant_id")
        .annotate(
            treated=Count("contact_id", distinct=True),
            clicked=Count("contact_id", distinct=True, filter=Q(clicked_at__isnull=False)),
            converted=Count("contact_id", distinct=True, filter=_converted_after_send(campaign)),
        )
        .order_by("variant_id")
    }
    empty = {"treated": 0, "clicked": 0, "converted": 0}
    return [
        VariantResult(
            variant=variant,
            treated=counts.get(variant.pk, empty)["treated"],
            clicked=counts.get(variant.pk, empty)["clicked"],
            converted=counts.get(variant.pk, empty)["converted"],
        )
        for variant in CampaignVariant.objects.filter(campaign_id=campaign.pk).order_by("pk")
    ]


PROGRESS_STATUSES = {
    "queued": (Delivery.Status.QUEUED, Delivery.Status.SENDING),
    "sent": (Delivery.Status.SENT,),
    "failed": (Delivery.Status.FAILED,),
    "held_back": (Delivery.Status.HELD_BACK,),
    "holdout": (Delivery.Status.HOLDOUT,),
}


def campaigns_progress(*, campaign_ids: list[int]) -> dict[int, dict[str, int]]:
    """Per campaign, how many of its deliveries are queued (sending included), sent, failed, held
    back and in the holdout, as `campaign_funnel` counts them: one query for any number of campaigns
    (through its runs: the deliveries' unique key starts with the run and includes the status)."""
    progress = {campaign_id: dict.fromkeys(PROGRESS_STATUSES, 0) for campaign_id in campaign_ids}
    part_of = {status: name for name, statuses in PROGRESS_STATUSES.items() for status in statuses}
    counts = (
        Delivery.objects.filter(run__campaign_id__in=campaign_ids)
        .values_list("run__campaign_id", "status")
        .annotate(count=Count("*"))
        .order_by()
    )
    for campaign_id, status, count in counts:
        if status in part_of:
            progress[campaign_id][part_of[status]] += count
    return progress


def campaign_run_totals(*, campaign: Campaign) -> dict[str, Any]:
    """What the campaign's runs planned, over all of them: how many runs, the deliveries to send,
    the holdout, and the contacts left out by reason. Two queries whatever the number of runs."""
    totals = CampaignRun.objects.filter(campaign_id=campaign.pk).aggregate(
        runs=Count("pk"), planned=Coalesce(Sum("planned"), 0), held_out=Coalesce(Sum("held_out"), 0)
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT e.key, SUM(CASE WHEN jsonb_typeof(e.value) = 'number' THEN (e.value)::numeric ELSE 0 END)
            FROM {CampaignRun._meta.db_table} AS r CROSS JOIN LATERAL jsonb_each(r.excluded) AS e
            WHERE r.campaign_id = %s AND jsonb_typeof(r.excluded) = 'object'
            GROUP BY e.key ORDER BY e.key
            """,  # noqa: S608 - a table name; the value is a parameter
            [campaign.pk],
        )
        excluded = {reason: int(count) for reason, count in cursor.fetchall()}
    return {**totals, "excluded": excluded, "excluded_total": sum(excluded.values())}


@dataclass
class ChannelProgress:
    """A campaign's deliveries over one channel, by where they are."""

    channel: str
    holdout: int = 0
    queued: int = 0  # still to send (waiting ones included)
    sending: int = 0
    sent: int = 0
    failed: int = 0
    held_back: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    waiting_by_reason: dict[str, int] = field(default_factory=dict)  # queued for later: quiet hours, throttled...
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    held_back_by_reason: dict[str, int] = field(default_factory=dict)


def campaign_progress(*, campaign: Campaign) -> dict[str, ChannelProgress]:
    """The campaign's deliveries per channel (in the campaign's channel order): queued, sending,
    sent, failed and held back, with the reasons, and of the sent the delivered, opened and
    clicked. One query, grouped by channel, status and reason."""
    rows = (
        campaign_deliveries(campaign_id=campaign.pk)
        .values_list("channel", "status", "reason")
        .annotate(
            count=Count("pk"),
            delivered=Count("pk", filter=Q(delivered_at__isnull=False)),
            opened=Count("pk", filter=Q(opened_at__isnull=False)),
            clicked=Count("pk", filter=Q(clicked_at__isnull=False)),
        )
        .order_by()
    )
    progress = {channel: ChannelProgress(channel) for channel in campaign.channels}
    for channel, status, reason, count, delivered, opened, clicked in rows:
        found = progress.setdefault(channel, ChannelProgress(channel))
        if status == Delivery.Status.HOLDOUT:
            found.holdout += count
        elif status == Delivery.Status.QUEUED:
            found.queued += count
            if reason:
                found.waiting_by_reason[reason] = found.waiting_by_reason.get(reason, 0) + count
        elif status == Delivery.Status.SENDING:
            found.sending += count
        elif status == Delivery.Status.SENT:
            found.sent += count
            found.delivered += delivered
            found.opened += opened
            found.clicked += clicked
        elif status == Delivery.Status.FAILED:
            found.failed += count
            found.failed_by_reason[reason or "unknown"] = found.failed_by_reason.get(reason or "unknown", 0) + count
        elif status == Delivery.Status.HELD_BACK:
            found.held_back += count
            found.held_back_by_reason[reason or "unknown"] = (
                found.held_back_by_reason.get(reason or "unknown", 0) + count
            )
    return progress
