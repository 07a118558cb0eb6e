"""What comes back from a sent message: opens, clicks, unsubscribes and the provider's status reports.

Each lands on the delivery (its first open, first click, delivered moment, bounce) and in the data
layer as an event of the contact, through the audiences services, so that segments, KPIs and
triggers see it like any other event. Every write here is safe to repeat: a pixel loaded ten times,
a link clicked twice, a provider that sends the same report again change nothing the second time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audiences.models import Channel, Contact, Event
from audiences.services.consents import consent_record
from audiences.services.events import EventIn, event_ingest
from campaigns.models import Delivery, DeliveryChannel, Suppression, WebhookReceipt
from campaigns.services.policies import suppression_add
from campaigns.tracking.selectors import contact_of_delivery, deliveries_by_id

logger = logging.getLogger(__name__)

# A delivery whose message may have reached the contact: handed over, or being handed over just now
# (an open can arrive before the worker wrote "sent").
REACHABLE = [Delivery.Status.SENT, Delivery.Status.SENDING]
CONSENT_CHANNEL = {
    DeliveryChannel.EMAIL: Channel.EMAIL,
    DeliveryChannel.SMS: Channel.SMS,
    DeliveryChannel.CALLCENTER: Channel.PHONE,
}


def _event_record(
    *, delivery: Delivery, type: str, external_id: str, occurred_at: dt.datetime, **properties: Any
) -> bool:
    """The delivery's outcome as an event of its contact (or the contact it was merged into). The
    external id makes it once per delivery and kind: a repeat is a duplicate, stored once. True
    when it was stored."""
    contact = contact_of_delivery(contact_id=delivery.contact_id)
    if contact is None or contact.erased_at is not None:
        return False  # erased on request: no new personal data about them
    [result] = event_ingest(
        items=[
            EventIn(
                type=type,
                occurred_at=occurred_at,
                contact_key=contact.contact_key,
                properties={
                    "campaign_id": delivery.campaign_id,
                    "delivery_id": delivery.pk,
                    "channel": delivery.channel,
                    **properties,
                },
                external_id=external_id[:255],
            )
        ],
        source="tracking",
        may_create=False,
        may_change=False,
    )
    if result.status == "rejected":
        logger.warning("Delivery %s: its %s event was not stored: %s", delivery.pk, type, result.errors)
    return result.status == "stored"


def _reachable(delivery_id: int) -> Delivery | None:
    return (
        Delivery.objects.filter(pk=delivery_id, status__in=REACHABLE)
        .only("id", "campaign_id", "contact_id", "channel", "opened_at", "clicked_at")
        .first()
    )


def _open(delivery: Delivery, now: dt.datetime) -> bool:
    """Record the delivery's first open; False when it was opened before."""
    if not Delivery.objects.filter(pk=delivery.pk, opened_at__isnull=True).update(opened_at=now):
        return False
    _event_record(
        delivery=delivery,
        type=Event.Type.EMAIL_OPENED,
        external_id=f"dialoog-delivery-{delivery.pk}-opened",
        occurred_at=now,
    )
    return True


def delivery_open_record(*, delivery_id: int, now: dt.datetime | None = None) -> bool:
    """The open pixel was loaded: the delivery's first open, and one email_opened event. True when
    this was its first open; False for a repeat or a delivery that was never sent."""
    now = now or timezone.now()
    delivery = _reachable(delivery_id)
    if delivery is None:
        return False
    with transaction.atomic():
        return _open(delivery, now)


def delivery_click_record(*, delivery_id: int, url: str, now: dt.datetime | None = None) -> bool:
    """A tracked link was followed: the delivery's first click and an email_clicked event per link
    (the same link again is the same event), and its open if the pixel was not loaded (images
    off). True when this link was not clicked before."""
    now = now or timezone.now()
    delivery = _reachable(delivery_id)
    if delivery is None:
        return False
    link = hashlib.sha256(url.encode()).hexdigest()[:32]
    with transaction.atomic():
        _open(delivery, now)
        Delivery.objects.filter(pk=delivery.pk, clicked_at__isnull=True).update(clicked_at=now)
        return _event_record(
            delivery=delivery,
            type=Event.Type.EMAIL_CLICKED,
            external_id=f"dialoog-delivery-{delivery.pk}-clicked-{link}",
            occurred_at=now,
            url=url,
        )


def contact_unsubscribe(*, contact: Contact, channel: str, proof: str) -> bool:
    """Withdraw the contact's consent for the channel, from their unsubscribe link. True when it
    changed; False when it was withdrawn (or never given) already."""
    change, _current = consent_record(
        contact=contact, channel=channel, status="withdrawn", source="unsubscribe link", proof=proof[:2000]
    )
    return change is not None


def contact_preference_set(*, contact: Contact, channel: str, granted: bool, proof: str) -> bool:
    """The contact changed a channel on their preferences page. True when it changed."""
    change, _current = consent_record(
        contact=contact,
        channel=channel,
        status="granted" if granted else "withdrawn",
        source="preferences page",
        proof=proof[:2000],
    )
    return change is not None


# --- Status webhooks ------------------------------------------------------------------------------

PROCESSED, DUPLICATE, UNKNOWN_DELIVERY = "processed", "duplicate", "unknown_delivery"


class SignatureError(Exception):
    """The request was not signed with our secret (403)."""


class StaleSignatureError(Exception):
    """Signed, but too long ago or in the future: a replay, or a clock far off (400)."""


def webhook_signature_verify(*, header: str, body: bytes, secret: str, now: dt.datetime | None = None) -> None:
    """Check `X-Dialoog-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. Several v1
    values may be given (while the secret is rotated); one must match. Raises SignatureError or
    StaleSignatureError."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _sep, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError) as error:
        raise SignatureError("no timestamp") from error
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, given) for given in parts.get("v1", [])):
        raise SignatureError("no matching signature")
    now = now or timezone.now()
    if abs(now.timestamp() - timestamp) > settings.DELIVERY_WEBHOOK_TOLERANCE_SECONDS:
        raise StaleSignatureError(timestamp)


def webhook_signature(*, body: bytes, secret: str, timestamp: int) -> str:
    """The header a provider sends (for tests and for a provider adapter that re-signs)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass
class StatusReport:
    """One event of the provider, its shape checked by the API's serializer."""

    id: str
    type: str  # delivered, bounced, complained
    delivery_id: int
    occurred_at: dt.datetime
    bounce: str = ""  # hard or soft, for a bounce
    detail: str = ""


def _receipt_take(provider: str, event_id: str) -> bool:
    """Note the provider's event as processed; False when it was before (ON CONFLICT: two requests
    with the same event at once cannot both take it)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {WebhookReceipt._meta.db_table} (provider, event_id, received_at) VALUES (%s, %s, %s) "  # noqa: S608 - a table name
            "ON CONFLICT (provider, event_id) DO NOTHING RETURNING id",
            [provider, event_id[:255], timezone.now()],
        )
        return cursor.fetchone() is not None


def _apply(report: StatusReport, delivery: Delivery, provider: str) -> None:
    def record(type: str, **properties: Any) -> None:
        # The email_* events are about email; an SMS provider's reports change the delivery only.
        if delivery.channel == DeliveryChannel.EMAIL:
            _event_record(
                delivery=delivery,
                type=type,
                external_id=f"dialoog-status-{provider}-{report.id}",
                occurred_at=report.occurred_at,
                **properties,
            )

    if report.type == "delivered":
        Delivery.objects.filter(pk=delivery.pk, delivered_at__isnull=True).update(delivered_at=report.occurred_at)
        record(Event.Type.EMAIL_DELIVERED)
        return
    if report.type == "bounced":
        # The delivery stays "sent": it was handed over (and counted as a send of the experiment and
        # towards the frequency cap); the reason says what became of it.
        if report.bounce == "hard":
            Delivery.objects.filter(pk=delivery.pk).update(reason="hard_bounce", detail=report.detail[:2000])
            if delivery.to:
                suppression_add(
                    channel=delivery.channel,
                    address=delivery.to,
                    reason=Suppression.Reason.HARD_BOUNCE,
                    detail=report.detail,
                )
        else:
            Delivery.objects.filter(pk=delivery.pk, reason="").update(reason="soft_bounce", detail=report.detail[:2000])
        record(Event.Type.EMAIL_BOUNCED, bounce=report.bounce)
        return
    # complained: marked as spam. Never again to this address, and the contact no longer wants it.
    Delivery.objects.filter(pk=delivery.pk).update(reason="complaint", detail=report.detail[:2000])
    if delivery.to:
        suppression_add(
            channel=delivery.channel, address=delivery.to, reason=Suppression.Reason.COMPLAINT, detail=report.detail
        )
    contact = contact_of_delivery(contact_id=delivery.contact_id)
    if contact is not None and delivery.channel in CONSENT_CHANNEL:
        consent_record(
            contact=contact,
            channel=CONSENT_CHANNEL[DeliveryChannel(delivery.channel)],
            status="withdrawn",
            source="spam complaint",
            proof=f"{provider} event {report.id} about delivery {delivery.pk}",
            recorded_at=min(report.occurred_at, timezone.now()),
        )
    record(Event.Type.EMAIL_COMPLAINED)


def delivery_status_ingest(*, reports: list[StatusReport], provider: str) -> list[dict[str, Any]]:
    """Apply a provider's status reports, each once (by its provider and id): delivered sets the
    delivery's delivered moment; a hard bounce suppresses the address; a complaint suppresses it and
    withdraws the contact's consent for the channel. Each becomes an event of the contact.
    Returns per report its id and `processed`, `duplicate` or `unknown_delivery`."""
    deliveries = deliveries_by_id(ids=[report.delivery_id for report in reports])
    results = []
    for report in reports:
        delivery = deliveries.get(report.delivery_id)
        if delivery is None:
            # No receipt: nothing was done, so the same report may be sent again later.
            results.append({"id": report.id, "status": UNKNOWN_DELIVERY, "delivery_id": report.delivery_id})
            continue
        with transaction.atomic():
            # Receipt and effects commit together: a failure leaves the report to be sent again.
            if not _receipt_take(provider, report.id):
                results.append({"id": report.id, "status": DUPLICATE, "delivery_id": delivery.pk})
                continue
            _apply(report, delivery, provider)
        results.append({"id": report.id, "status": PROCESSED, "delivery_id": delivery.pk})
    return results
