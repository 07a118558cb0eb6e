"""Reads behind the public pages and the status webhook: whose link is this, which delivery is meant."""

from __future__ import annotations

import re
from typing import Any

from django.core import signing

from audiences.models import Channel, Consent, Contact
from audiences.services.contacts import contact_by_key, contact_survivor
from campaigns.models import Delivery
from content.selectors import LINK_SALT

# The Message-ID and idempotency key a delivery is sent with: "<dialoog-delivery-42@host>".
MESSAGE_ID = re.compile(r"dialoog-delivery-(\d+)(?:@|>|$)")


def contact_for_link(*, token: str) -> Contact | None:
    """The contact a personal link (content.selectors.contact_links) belongs to, or the contact it was
    merged into; None for a token that was not signed by us."""
    try:
        contact_key = signing.Signer(salt=LINK_SALT).unsign(token)
    except signing.BadSignature:
        return None
    return contact_by_key(contact_key=contact_key)


def contact_of_delivery(*, contact_id: int) -> Contact | None:
    """The contact a delivery went to, or the contact it lives on in when it was merged away since."""
    contact = Contact.objects.filter(pk=contact_id).first()
    return contact if contact is not None else contact_survivor(contact_id=contact_id)


def contact_consent_states(*, contact: Contact) -> list[dict[str, Any]]:
    """The contact's current consent per channel, every channel listed (no row: not given)."""
    current = dict(Consent.objects.filter(contact=contact).values_list("channel", "status"))
    return [
        {
            "channel": channel,
            "label": label,
            "status": current.get(channel, ""),
            "granted": current.get(channel) == "granted",
        }
        for channel, label in Channel.choices
    ]


def delivery_id_from_message_id(message_id: str) -> int | None:
    match = MESSAGE_ID.search(message_id or "")
    return int(match.group(1)) if match else None


def deliveries_by_id(*, ids: list[int]) -> dict[int, Delivery]:
    return {
        delivery.pk: delivery
        for delivery in Delivery.objects.filter(pk__in=ids).only(
            "id", "campaign_id", "contact_id", "channel", "status", "reason", "to", "delivered_at"
        )
    }
