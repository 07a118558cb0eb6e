"""A worker's batch: claim it with a lease, apply the contact policies, render, hand the messages
to the channel backends, record each outcome.

Each chunk of deliveries is marked "sending" (committed) before the hand-over and recorded after
it. A worker killed anywhere leaves its lease to expire; the next worker takes the batch over and
sends what is not recorded as sent, with the same idempotency key per delivery, so a provider
that was handed a message just before the kill recognises it (see channels/base.py). Nothing
that was recorded as sent is sent again: the unique delivery row says so.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import F, Min, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from audiences.models import Channel as ConsentChannel
from audiences.models import Identity
from audiences.selectors.contacts import contact_addresses, contact_consents, contact_profiles
from campaigns.channels import channel_backend
from campaigns.channels.base import BaseChannel, OutboundMessage, Outcome, Result
from campaigns.models import Campaign, CampaignRun, Delivery, DeliveryBatch, DeliveryChannel
from campaigns.services.lifecycle import TEMPLATE_CHANNEL
from campaigns.services.policies import (
    CAPPED_CHANNELS,
    contact_policy,
    contact_zone,
    quiet_until,
    sent_counts,
    suppressed_addresses,
    throttle_take,
)
from campaigns.tracking.links import tracked_html
from content.models import Template, TemplateVersion
from content.rendering.errors import RenderError, TemplateSourceError
from content.selectors import (
    BlockSources,
    Recommendations,
    context_from_profile,
    published_blocks,
    template_version_for,
)
from content.services import template_render
from goals.experiments import experiment_record_sends

logger = logging.getLogger(__name__)

CONSENT_CHANNEL: dict[str, str] = {
    DeliveryChannel.EMAIL: ConsentChannel.EMAIL,
    DeliveryChannel.SMS: ConsentChannel.SMS,
    DeliveryChannel.CALLCENTER: ConsentChannel.PHONE,
}
ADDRESS_KIND: dict[str, str] = {
    DeliveryChannel.EMAIL: Identity.Kind.EMAIL,
    DeliveryChannel.SMS: Identity.Kind.PHONE,
    DeliveryChannel.CALLCENTER: Identity.Kind.PHONE,
}
SENT_CHANNEL: dict[str, str] = {
    DeliveryChannel.EMAIL: "email",
    DeliveryChannel.SMS: "sms",
    DeliveryChannel.CALLCENTER: "phone",
}


def lease() -> dt.timedelta:
    return dt.timedelta(seconds=settings.CAMPAIGN_BATCH_LEASE_SECONDS)


def backoff(attempts: int) -> dt.timedelta:
    """How long a transient failure waits before its next attempt: doubling from the base."""
    return dt.timedelta(seconds=settings.CAMPAIGN_RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))


@dataclass
class BatchResult:
    claimed: bool
    sent: int = 0
    failed: int = 0
    held_back: int = 0
    deferred: int = 0
    stopped: bool = False  # paused or cancelled while it held the batch
    reasons: Counter[str] = field(default_factory=Counter)


@dataclass
class Record:
    """What happened to one delivery, written back in one statement per chunk."""

    id: int
    status: str
    reason: str = ""
    detail: str = ""
    to: str = ""
    provider_id: str = ""
    sent_at: dt.datetime | None = None
    next_attempt_at: dt.datetime | None = None


# --- Claiming ------------------------------------------------------------------------------------


def _live() -> Q:
    return Q(run__status=CampaignRun.Status.SENDING, run__campaign__status=Campaign.Status.RUNNING)


def batch_claim(*, batch_id: int, worker: str, now: dt.datetime | None = None) -> DeliveryBatch | None:
    """Take the batch for `worker`, if it is queued and due, or claimed by a worker whose lease expired,
    and its campaign is running. None when someone else has it, it is done, or it must wait."""
    now = now or timezone.now()
    claimable = Q(status=DeliveryBatch.Status.QUEUED) & (Q(not_before__isnull=True) | Q(not_before__lte=now))
    claimable |= Q(status=DeliveryBatch.Status.CLAIMED, lease_expires_at__lt=now)
    claimed = DeliveryBatch.objects.filter(claimable, _live(), pk=batch_id).update(
        status=DeliveryBatch.Status.CLAIMED,
        leased_by=worker[:200],
        lease_expires_at=now + lease(),
        not_before=None,
    )
    if not claimed:
        return None
    DeliveryBatch.objects.filter(pk=batch_id).update(attempts=F("attempts") + 1)
    return DeliveryBatch.objects.select_related("run__campaign__experiment").get(pk=batch_id)


def _still_ours(batch: DeliveryBatch, worker: str, now: dt.datetime) -> bool:
    """Renew the lease, if the batch is still ours and its campaign still running (a pause shows here)."""
    return bool(
        DeliveryBatch.objects.filter(
            _live(), pk=batch.pk, status=DeliveryBatch.Status.CLAIMED, leased_by=worker[:200]
        ).update(lease_expires_at=now + lease())
    )


def _release(batch: DeliveryBatch, *, worker: str, now: dt.datetime) -> None:
    """Leave the batch for later: what it did not send stays queued in it. Only while it is still
    ours: a worker that stalled past its lease must not release the batch its successor now holds
    (the dispatcher would hand it to a third worker, to send beside the second)."""
    ours = DeliveryBatch.objects.filter(pk=batch.pk, status=DeliveryBatch.Status.CLAIMED, leased_by=worker[:200])
    remaining = Delivery.objects.filter(
        run_id=batch.run_id,
        contact_id__gte=batch.contact_from,
        contact_id__lte=batch.contact_to,
        status__in=[Delivery.Status.QUEUED, Delivery.Status.SENDING],
    )
    if remaining.exists():
        retry_at = remaining.aggregate(first=Min("next_attempt_at"))["first"]
        ours.update(
            status=DeliveryBatch.Status.QUEUED,
            leased_by="",
            lease_expires_at=None,
            enqueued_at=None,
            not_before=retry_at if retry_at and retry_at > now else None,
        )
    else:
        ours.update(status=DeliveryBatch.Status.DONE, lease_expires_at=None, done_at=now)


# --- Composing -----------------------------------------------------------------------------------


class Composer:
    """Builds each delivery's message, reading what the whole batch needs once: the profiles and
    the addresses of its chunk, and (taken over from the batch's `previous` chunk's composer) the
    templates, their versions per language and the published blocks, with the versions compiled
    against them."""

    def __init__(
        self, campaign: Campaign, contact_ids: list[int], channels: set[str], previous: Composer | None = None
    ) -> None:
        self.campaign = campaign
        self.campaign_context = {"id": campaign.pk, "name": campaign.name}
        self.profiles = contact_profiles(contact_ids=contact_ids)
        self.recommendations = Recommendations(contact_ids)
        self.addresses = {
            kind: contact_addresses(contact_ids=contact_ids, kind=kind)
            for kind in {ADDRESS_KIND[channel] for channel in channels if channel in ADDRESS_KIND}
        }
        self.blocks: BlockSources | None = previous.blocks if previous else None
        self.versions: dict[tuple[int, str, str], TemplateVersion | None] = previous.versions if previous else {}
        self.templates: dict[tuple[int, str], Template | None] = previous.templates if previous else {}

    def address(self, channel: str, contact_id: int) -> str:
        if channel in ADDRESS_KIND:
            return self.addresses[ADDRESS_KIND[channel]].get(contact_id, "")
        profile = self.profiles.get(contact_id)
        return str(profile["contact_key"]) if profile else ""

    def template(self, message_id: int, channel: str) -> Template | None:
        key = (message_id, channel)
        if key not in self.templates:
            self.templates[key] = (
                Template.objects.select_related("sender_profile").filter(message_id=message_id, channel=channel).first()
            )
        return self.templates[key]

    def version(self, template: Template, language: str) -> TemplateVersion | None:
        key = (template.pk, template.channel, language)
        if key not in self.versions:
            version = template_version_for(template=template, language=language)
            if version is not None:
                version.template = template
            self.versions[key] = version
        return self.versions[key]

    def compose(self, delivery: dict[str, Any], message_id: int | None) -> OutboundMessage:
        """The message for one delivery; raises RenderError or TemplateSourceError when it cannot be made."""
        channel = delivery["channel"]
        contact_id = delivery["contact_id"]
        profile = self.profiles[contact_id]
        common = {
            "delivery_id": delivery["id"],
            "idempotency_key": f"dialoog-delivery-{delivery['id']}",
            "channel": channel,
            "to": self.address(channel, contact_id),
            "contact_key": str(profile["contact_key"]),
            "campaign": self.campaign_context,
        }
        if channel not in TEMPLATE_CHANNEL:
            # The run names what a print file belongs to (direct mail): one file per run for the mailing house.
            return OutboundMessage(**common, data={**_profile_data(profile), "run_id": delivery.get("run_id")})
        template = self.template(message_id, TEMPLATE_CHANNEL[DeliveryChannel(channel)]) if message_id else None
        version = self.version(template, profile["locale"]) if template is not None else None
        if template is None or version is None:
            raise TemplateSourceError([])
        if self.blocks is None:
            self.blocks = published_blocks()
        context = context_from_profile(
            profile, campaign=self.campaign_context, products=self.recommendations.of(contact_id)
        )
        rendered = template_render(version=version, context=context, blocks=self.blocks)
        if channel == DeliveryChannel.EMAIL:
            links = context["links"]
            unsubscribe = f"{links['unsubscribe']}?channel=email"
            sender = template.sender_profile
            return OutboundMessage(
                **common,
                subject=rendered.subject,
                html=tracked_html(rendered.html, delivery["id"], skip=tuple(links.values())),
                text=rendered.text,
                from_email=sender.from_address if sender else settings.DEFAULT_FROM_EMAIL,
                reply_to=sender.reply_to if sender and sender.reply_to else "",
                headers={
                    # RFC 8058 one-click unsubscribe, required by the large mailbox providers for bulk mail.
                    "List-Unsubscribe": f"<{unsubscribe}>",
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                    "X-Dialoog-Delivery": str(delivery["id"]),
                    "X-Dialoog-Campaign": str(self.campaign.pk),
                },
                data={"template_version_id": version.pk},
            )
        if channel == DeliveryChannel.SMS:
            return OutboundMessage(**common, text=rendered.text, data={"template_version_id": version.pk})
        return OutboundMessage(
            **common,
            text=rendered.text,
            data={
                "template_version_id": version.pk,
                "text": rendered.text,
                "talking_points": rendered.talking_points,
                "offer_pitch": rendered.offer_pitch,
            },
        )


def _profile_data(profile: dict[str, Any]) -> dict[str, Any]:
    """What direct mail and webhooks carry: the contact's name, language and attributes (the postal
    address lives in the attributes: street, house_number, postal_code, city)."""
    return {
        "contact_key": str(profile["contact_key"]),
        "first_name": profile["first_name"],
        "last_name": profile["last_name"],
        "locale": profile["locale"],
        "attributes": profile["attributes"] or {},
    }


# --- Recording -----------------------------------------------------------------------------------


def _mark_sending(ids: list[int]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Delivery._meta.db_table} SET status = %s, attempts = attempts + 1 WHERE id = ANY(%s)",  # noqa: S608
            [Delivery.Status.SENDING, ids],
        )


def _record(records: Iterable[Record]) -> None:
    rows = list(records)
    if not rows:
        return
    ids = [r.id for r in rows]
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {Delivery._meta.db_table} AS d
            SET status = v.status, reason = v.reason, detail = v.detail,
                "to" = CASE WHEN v."to" = '' THEN d."to" ELSE v."to" END,
                provider_id = v.provider_id, sent_at = v.sent_at, next_attempt_at = v.next_attempt_at
            FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
                        %s::timestamptz[], %s::timestamptz[])
                AS v(id, status, reason, detail, "to", provider_id, sent_at, next_attempt_at)
            -- The ids again, as a condition on the table: its primary key finds the rows whatever its
            -- statistics say (taken while it was small, they had it read whole for a hash join on
            -- every chunk).
            WHERE d.id = v.id AND d.id = ANY(%s)
            """,  # noqa: S608 - a table name; every value is a parameter
            [
                ids,
                [r.status for r in rows],
                [r.reason[:64] for r in rows],
                [r.detail[:2000] for r in rows],
                [r.to[:255] for r in rows],
                [r.provider_id[:255] for r in rows],
                [r.sent_at for r in rows],
                [r.next_attempt_at for r in rows],
                ids,
            ],
        )


def _outcome_record(outcome: Outcome, delivery: dict[str, Any], to: str, now: dt.datetime) -> Record:
    if outcome.result == Result.SENT:
        return Record(delivery["id"], Delivery.Status.SENT, to=to, provider_id=outcome.provider_id, sent_at=now)
    attempts = delivery["attempts"] + 1
    if outcome.result == Result.TRANSIENT and attempts < settings.CAMPAIGN_MAX_ATTEMPTS:
        return Record(
            delivery["id"],
            Delivery.Status.QUEUED,
            reason="transient_error",
            detail=outcome.error,
            to=to,
            next_attempt_at=now + backoff(attempts),
        )
    reason = "permanent_error" if outcome.result == Result.PERMANENT else "retries_exhausted"
    return Record(delivery["id"], Delivery.Status.FAILED, reason=reason, detail=outcome.error, to=to)


# --- The batch -----------------------------------------------------------------------------------


def _deliveries(batch: DeliveryBatch, now: dt.datetime) -> list[dict[str, Any]]:
    rows: Any = (
        Delivery.objects.filter(
            Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
            run_id=batch.run_id,
            contact_id__gte=batch.contact_from,
            contact_id__lte=batch.contact_to,
            status__in=[Delivery.Status.QUEUED, Delivery.Status.SENDING],
        )
        .order_by("contact_id", "channel")
        .values("id", "run_id", "contact_id", "channel", "variant_id", "attempts", "status")
    )
    return list(rows)


class Sender:
    """Sends one claimed batch, chunk by chunk."""

    def __init__(self, batch: DeliveryBatch, worker: str) -> None:
        self.batch = batch
        self.worker = worker
        self.run = batch.run
        self.campaign = batch.run.campaign
        self.policy = contact_policy()
        self.result = BatchResult(claimed=True)
        self.backends: dict[str, BaseChannel] = {}
        self.variant_messages = dict(self.campaign.variants.values_list("pk", "message_id"))
        self.composer: Composer | None = None
        self.handed_over = 0

    def backend(self, channel: str) -> BaseChannel:
        if channel not in self.backends:
            backend = channel_backend(channel)
            backend.open()
            self.backends[channel] = backend
        return self.backends[channel]

    def close(self) -> None:
        for backend in self.backends.values():
            try:
                backend.close()
            except Exception:
                logger.warning("Closing the %s backend failed", backend.channel, exc_info=True)

    def send(self) -> BatchResult:
        now = timezone.now()
        deliveries = _deliveries(self.batch, now)
        # Read, check and render in large pieces (a few queries for hundreds of deliveries); hand
        # over in chunks, each marked 'sending' before and recorded after (`send_chunk`).
        piece = max(settings.CAMPAIGN_COMPOSE_SIZE, settings.CAMPAIGN_CHUNK_SIZE)
        try:
            for start in range(0, len(deliveries), piece):
                if self.result.stopped:
                    break
                self.send_piece(deliveries[start : start + piece], timezone.now())
        finally:
            self.close()
        _release(self.batch, worker=self.worker, now=timezone.now())
        return self.result

    def go_on(self) -> bool:
        """Before each chunk but the batch's first: the lease renewed, or stop (paused, cancelled, taken over)."""
        if self.handed_over and not _still_ours(self.batch, self.worker, timezone.now()):
            self.result.stopped = True
        self.handed_over += 1
        return not self.result.stopped

    def hold(self, records: list[Record], delivery: dict[str, Any], reason: str, detail: str = "") -> None:
        records.append(Record(delivery["id"], Delivery.Status.HELD_BACK, reason=reason, detail=detail))
        self.result.held_back += 1
        self.result.reasons[reason] += 1

    def defer(self, records: list[Record], delivery: dict[str, Any], until: dt.datetime, reason: str) -> None:
        records.append(Record(delivery["id"], Delivery.Status.QUEUED, reason=reason, next_attempt_at=until))
        self.result.deferred += 1

    def send_piece(self, piece: list[dict[str, Any]], now: dt.datetime) -> None:
        """Check a piece of the batch against the contact policies, render what may go, and hand it to
        the channels chunk by chunk: each chunk marked 'sending' (committed) before and recorded after,
        so a worker killed in between leaves at most one chunk whose fate the channel knows."""
        contact_ids = sorted({d["contact_id"] for d in piece})
        channels = {d["channel"] for d in piece}
        composer = self.composer = Composer(self.campaign, contact_ids, channels, previous=self.composer)
        consents = {
            channel: contact_consents(contact_ids=contact_ids, channel=CONSENT_CHANNEL[DeliveryChannel(channel)])
            for channel in channels
            if channel in CONSENT_CHANNEL
        }
        suppressed = {
            channel: suppressed_addresses(
                channel=channel, addresses=[composer.address(channel, c) for c in contact_ids]
            )
            for channel in channels
        }
        total, per_channel = sent_counts(contact_ids=contact_ids, since=now - dt.timedelta(days=self.policy.cap_days))
        records: list[Record] = []
        ready: dict[str, list[tuple[dict[str, Any], OutboundMessage]]] = defaultdict(list)
        for delivery in piece:
            channel, contact_id = delivery["channel"], delivery["contact_id"]
            profile = composer.profiles.get(contact_id)
            if profile is None:
                self.hold(records, delivery, "erased", _("The contact was erased or merged away."))
                continue
            if channel in consents and contact_id not in consents[channel]:
                self.hold(records, delivery, "no_consent", _("No consent for this channel when it was to be sent."))
                continue
            address = composer.address(channel, contact_id)
            if not address:
                self.hold(records, delivery, "no_address", _("The contact has no address for this channel."))
                continue
            if address in suppressed[channel]:
                self.hold(records, delivery, "suppressed", _("The address bounced or complained before."))
                continue
            if channel in CAPPED_CHANNELS and (
                total[contact_id] >= self.policy.cap_total
                or per_channel[(contact_id, channel)] >= self.policy.cap_per_channel
            ):
                self.hold(
                    records,
                    delivery,
                    "frequency_cap",
                    _("The contact had %(count)s messages in the last %(days)s days already.")
                    % {"count": total[contact_id], "days": self.policy.cap_days},
                )
                continue
            quiet = quiet_until(policy=self.policy, channel=channel, zone=contact_zone(profile["timezone"]), now=now)
            if quiet is not None:
                self.defer(records, delivery, quiet, "quiet_hours")
                continue
            message_id = self.variant_messages.get(delivery["variant_id"]) or self.campaign.message_id
            try:
                message = composer.compose(delivery, message_id)
            except (RenderError, TemplateSourceError) as error:
                records.append(
                    Record(
                        delivery["id"],
                        Delivery.Status.FAILED,
                        reason="render_error",
                        detail=str(error) or _("The template has no version for this contact."),
                    )
                )
                self.result.failed += 1
                self.result.reasons["render_error"] += 1
                continue
            if channel in CAPPED_CHANNELS:
                total[contact_id] += 1
                per_channel[(contact_id, channel)] += 1
            ready[channel].append((delivery, message))
        ready = self.throttle(ready, records, now)
        if records:
            _record(records)
        chunk_size = settings.CAMPAIGN_CHUNK_SIZE
        sent: Counter[str] = Counter()
        try:
            for channel, pairs in ready.items():
                for start in range(0, len(pairs), chunk_size):
                    if not self.go_on():
                        return  # the rest stays queued, untouched, for whoever sends the batch next
                    chunk = pairs[start : start + chunk_size]
                    _mark_sending([delivery["id"] for delivery, _message in chunk])
                    records = self.hand_over(channel, chunk)
                    _record(records)
                    sent[channel] += sum(1 for record in records if record.status == Delivery.Status.SENT)
        finally:
            self.sends_record(sent)

    def sends_record(self, sent: Counter[str]) -> None:
        """What the piece sent, added to the measurement's counts per channel (its cost), once per piece."""
        experiment = self.campaign.experiment
        if experiment is None:
            return
        for channel, count in sent.items():
            if count and channel in SENT_CHANNEL:
                experiment_record_sends(experiment=experiment, channel=SENT_CHANNEL[channel], count=count)

    def throttle(
        self, ready: dict[str, list[tuple[dict[str, Any], OutboundMessage]]], records: list[Record], now: dt.datetime
    ) -> dict[str, list[tuple[dict[str, Any], OutboundMessage]]]:
        """Keep what the channel's and the campaign's per-minute limits grant; defer the rest to the next minute."""
        limits = settings.CAMPAIGN_CHANNEL_THROTTLES
        kept: dict[str, list[tuple[dict[str, Any], OutboundMessage]]] = {}
        campaign_limit = self.campaign.throttle_per_minute
        for channel, pairs in ready.items():
            granted = len(pairs)
            next_minute = now
            if limits.get(channel):
                granted, next_minute = throttle_take(
                    key=f"channel:{channel}", limit=limits[channel], want=granted, now=now
                )
            if campaign_limit:
                granted, next_minute = throttle_take(
                    key=f"campaign:{self.campaign.pk}", limit=campaign_limit, want=granted, now=now
                )
            kept[channel] = pairs[:granted]
            for delivery, _message in pairs[granted:]:
                self.defer(records, delivery, next_minute, "throttled")
        return kept

    def hand_over(self, channel: str, pairs: list[tuple[dict[str, Any], OutboundMessage]]) -> list[Record]:
        now = timezone.now()
        by_id = {delivery["id"]: (delivery, message) for delivery, message in pairs}
        try:
            outcomes = self.backend(channel).send_batch([message for _delivery, message in pairs])
        except Exception as error:
            logger.warning("The %s backend failed a whole batch: %r", channel, error, exc_info=True)
            outcomes = [Outcome.transient(message, f"{type(error).__name__}: {error}") for _d, message in pairs]
        records = []
        seen = set()
        for outcome in outcomes:
            if outcome.delivery_id not in by_id or outcome.delivery_id in seen:
                continue
            seen.add(outcome.delivery_id)
            delivery, message = by_id[outcome.delivery_id]
            record = _outcome_record(outcome, delivery, message.to, now)
            records.append(record)
            self.count(record)
        for delivery_id, (delivery, message) in by_id.items():
            if delivery_id not in seen:  # a backend that forgot a message: not known to be sent, so tried again
                record = _outcome_record(
                    Outcome.transient(message, _("The channel reported no outcome.")), delivery, message.to, now
                )
                records.append(record)
                self.count(record)
        return records

    def count(self, record: Record) -> None:
        if record.status == Delivery.Status.SENT:
            self.result.sent += 1
        elif record.status == Delivery.Status.FAILED:
            self.result.failed += 1
            self.result.reasons[record.reason] += 1
        else:
            self.result.deferred += 1


def batch_send(*, batch_id: int, worker: str) -> BatchResult:
    """Claim batch `batch_id` and send it. Safe to run twice, and from two workers at once: only one
    holds the lease, and a delivery recorded as sent is never taken again."""
    batch = batch_claim(batch_id=batch_id, worker=worker)
    if batch is None:
        return BatchResult(claimed=False)
    # No transaction around it: the 'sending' mark must commit before the hand-over, and each
    # outcome as soon as it is known.
    return Sender(batch, worker).send()
