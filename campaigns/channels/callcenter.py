"""The callcenter: a campaign's messages become items on the agents' call list.

Each message makes one `CallListItem` with the script rendered for the contact (what to say, the
talking points, the offer's pitch) and the number to call; a message handed over twice finds its
item there (one item per delivery). `call_list_csv` exports a campaign's open items for a dialler
or a spreadsheet, and `call_outcome_record` closes an item with the agent's outcome, which goes
into the customer's history as a `call_outcome` event.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from audiences.selectors.contacts import contact_profiles
from audiences.services.events import EventIn, event_record
from campaigns.channels.base import BaseChannel, OutboundMessage, Outcome
from campaigns.models import CallListItem, Campaign, Delivery

CALL_LIST_COLUMNS = ("contact_key", "name", "phone", "campaign", "script", "pitch")


class CallListChannel(BaseChannel):
    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[Outcome]:
        ids = [message.delivery_id for message in messages]
        deliveries = {
            row["id"]: row for row in Delivery.objects.filter(pk__in=ids).values("id", "campaign_id", "contact_id")
        }
        items = [
            CallListItem(
                delivery_id=message.delivery_id,
                campaign_id=deliveries[message.delivery_id]["campaign_id"],
                contact_id=deliveries[message.delivery_id]["contact_id"],
                phone=message.to,
                script={
                    "text": message.data.get("text", message.text),
                    "talking_points": message.data.get("talking_points", []),
                    "offer_pitch": message.data.get("offer_pitch", ""),
                },
            )
            for message in messages
            if message.delivery_id in deliveries
        ]
        # One item per delivery (its one-to-one key): a second hand-over adds nothing.
        CallListItem.objects.bulk_create(items, ignore_conflicts=True)
        made = dict(CallListItem.objects.filter(delivery_id__in=ids).values_list("delivery_id", "pk"))
        return [
            Outcome.sent(message, provider_id=f"call-list-item-{made[message.delivery_id]}")
            if message.delivery_id in made
            else Outcome.transient(message, "No call list item was made.")
            for message in messages
        ]


def call_list_csv(*, campaign: Campaign, status: str = CallListItem.Status.OPEN) -> str:
    """The campaign's call list items (the open ones, by default) as CSV, oldest first."""
    items = list(
        CallListItem.objects.filter(campaign=campaign, status=status)
        .order_by("created_at", "pk")
        .values("contact_id", "phone", "script")
    )
    profiles = contact_profiles(contact_ids={item["contact_id"] for item in items})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CALL_LIST_COLUMNS)
    for item in items:
        profile: dict[str, Any] = profiles.get(item["contact_id"]) or {}
        script = item["script"] or {}
        name = f"{profile.get('first_name') or ''} {profile.get('last_name') or ''}".strip()
        writer.writerow(
            [
                str(profile.get("contact_key") or ""),
                name,
                item["phone"],
                campaign.name,
                script.get("text", ""),
                script.get("offer_pitch", ""),
            ]
        )
    return out.getvalue()


def call_outcome_record(*, item: CallListItem, outcome: str, agent: Any) -> CallListItem:
    """Close an open call list item with the call's outcome ("interested", "no_answer"...) and put
    the outcome in the customer's history as a `call_outcome` event, once: an item already closed
    is refused, and the event's external id keeps a retried request from storing it twice."""
    outcome = (outcome or "").strip()
    if not outcome:
        raise ValidationError({"outcome": _("Say how the call went.")})
    if len(outcome) > 64:
        raise ValidationError({"outcome": _("An outcome has at most 64 characters.")})
    now = timezone.now()
    with transaction.atomic():
        closed = CallListItem.objects.filter(pk=item.pk, status=CallListItem.Status.OPEN).update(
            status=CallListItem.Status.DONE, outcome=outcome, called_by=agent, called_at=now, updated_at=now
        )
        if not closed:
            raise ValidationError(_("This call was recorded already."))
        item.refresh_from_db()
        event_record(
            item=EventIn(
                type="call_outcome",
                occurred_at=now,
                contact_key=item.contact.contact_key,
                properties={"outcome": outcome, "campaign_id": item.campaign_id, "delivery_id": item.delivery_id},
                external_id=f"call-list-item-{item.pk}",
            ),
            source="callcenter",
            user=agent,
        )
    return item
