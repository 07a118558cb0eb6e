"""Reads for the agent console (/agent/): who the agent is looking for, the customer's profile beside
the offers, and the call list.

Each function is a fixed, small number of queries, whatever the customer's history holds: the
console is opened on every call.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import Exists, OuterRef, Q, Subquery
from django.db.models.functions import Greatest

from audiences.models import Consent, Contact, Event, Identity
from campaigns.models import CallListItem, Offer, OfferDecisionItem, OfferResponse

PURCHASES_SHOWN = 5
OPEN_ITEMS_SHOWN = 10
EARLIER_OFFERS_SHOWN = 10


@dataclass(frozen=True)
class Purchase:
    occurred_at: dt.datetime
    product: str
    category: str
    value: Decimal | None
    currency: str


@dataclass(frozen=True)
class EarlierOffer:
    """An offer this customer was presented or answered before, with the latest answer (if any)."""

    offer_id: int
    name: str
    last_presented_at: dt.datetime | None
    outcome: str | None
    reason: str
    answered_at: dt.datetime | None


@dataclass(frozen=True)
class CallListEntry:
    id: int
    contact_id: int
    campaign_name: str
    phone: str
    status: str
    outcome: str
    created_at: dt.datetime
    script: dict[str, Any]


@dataclass(frozen=True)
class AgentProfile:
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    # channel -> (status, changed at); a channel without a row is unknown, which is not consent
    consents: dict[str, tuple[str, dt.datetime]] = field(default_factory=dict)
    purchases: list[Purchase] = field(default_factory=list)
    open_items: list[CallListEntry] = field(default_factory=list)
    earlier_offers: list[EarlierOffer] = field(default_factory=list)


def agent_contact_key(*, lookup: str, value: Any) -> uuid.UUID | None:
    """The contact key of the (unerased) contact found by `lookup` ("contact_key", "email" or
    "phone", its value normalised by `contact_lookup`), or None. One query."""
    contacts = Contact.objects.filter(erased_at__isnull=True)
    if lookup == "contact_key":
        contacts = contacts.filter(contact_key=value)
    elif lookup in (Identity.Kind.EMAIL, Identity.Kind.PHONE):
        contacts = contacts.filter(pk=Subquery(Identity.objects.filter(kind=lookup, value=value).values("contact_id")))
    else:
        raise ValueError(f"Unknown lookup {lookup!r}")
    return contacts.values_list("contact_key", flat=True).first()


def _entry(row: dict[str, Any]) -> CallListEntry:
    return CallListEntry(
        id=row["id"],
        contact_id=row["contact_id"],
        campaign_name=row["campaign__name"],
        phone=row["phone"],
        status=row["status"],
        outcome=row["outcome"],
        created_at=row["created_at"],
        script=row["script"] or {},
    )


_ENTRY_FIELDS = ("id", "contact_id", "campaign__name", "phone", "status", "outcome", "created_at", "script")


def agent_profile(*, contact_id: int, exclude_decision_id: int | None = None) -> AgentProfile:
    """What the agent sees of the customer beside the offers: addresses, consent per channel, the
    last purchases, the customer's open call-list items, and the offers made before with the latest
    answer to each (the offers of `exclude_decision_id`, the one on screen, are not "before").
    Five queries."""
    emails: list[str] = []
    phones: list[str] = []
    for kind, value in (
        Identity.objects.filter(contact_id=contact_id, kind__in=[Identity.Kind.EMAIL, Identity.Kind.PHONE])
        .order_by("pk")
        .values_list("kind", "value")
    ):
        (emails if kind == Identity.Kind.EMAIL else phones).append(value)

    consents = {
        channel: (status, changed_at)
        for channel, status, changed_at in Consent.objects.filter(contact_id=contact_id).values_list(
            "channel", "status", "changed_at"
        )
    }

    purchases = [
        Purchase(
            occurred_at=row["occurred_at"],
            product=str((row["properties"] or {}).get("product") or ""),
            category=str((row["properties"] or {}).get("category") or ""),
            value=row["value"],
            currency=row["currency"],
        )
        for row in Event.objects.filter(contact_id=contact_id, type=Event.Type.PURCHASE)
        .order_by("-occurred_at", "-pk")
        .values("occurred_at", "properties", "value", "currency")[:PURCHASES_SHOWN]
    ]

    open_items = [
        _entry(row)
        for row in CallListItem.objects.filter(contact_id=contact_id, status=CallListItem.Status.OPEN)
        .order_by("created_at", "pk")
        .values(*_ENTRY_FIELDS)[:OPEN_ITEMS_SHOWN]
    ]

    return AgentProfile(
        emails=emails,
        phones=phones,
        consents=consents,
        purchases=purchases,
        open_items=open_items,
        earlier_offers=_earlier_offers(contact_id=contact_id, exclude_decision_id=exclude_decision_id),
    )


def _earlier_offers(*, contact_id: int, exclude_decision_id: int | None) -> list[EarlierOffer]:
    """One query over the (few) offers: each one this customer was presented or answered, with its
    latest presentation and latest answer, found by the contact's indexes on both tables."""
    presented = OfferDecisionItem.objects.filter(contact_id=contact_id, offer_id=OuterRef("pk"), presented=True)
    if exclude_decision_id is not None:
        presented = presented.exclude(decision_id=exclude_decision_id)
    answered = OfferResponse.objects.filter(contact_id=contact_id, offer_id=OuterRef("pk")).order_by("-created_at")
    rows = (
        Offer.objects.filter(Q(Exists(presented)) | Q(Exists(answered)))
        .annotate(
            last_presented_at=Subquery(presented.order_by("-created_at").values("created_at")[:1]),
            outcome=Subquery(answered.values("outcome")[:1]),
            reason=Subquery(answered.values("reason")[:1]),
            answered_at=Subquery(answered.values("created_at")[:1]),
        )
        .annotate(latest=Greatest("last_presented_at", "answered_at"))
        .order_by("-latest", "name")
        .values("pk", "name", "last_presented_at", "outcome", "reason", "answered_at")[:EARLIER_OFFERS_SHOWN]
    )
    return [
        EarlierOffer(
            offer_id=row["pk"],
            name=row["name"],
            last_presented_at=row["last_presented_at"],
            outcome=row["outcome"],
            reason=row["reason"] or "",
            answered_at=row["answered_at"],
        )
        for row in rows
    ]


def call_list_open_count(*, at_most: int = 100) -> int:
    """How many call-list items are open, counted up to `at_most` (the partial index of open items;
    never a count of the whole list)."""
    return CallListItem.objects.filter(status=CallListItem.Status.OPEN)[:at_most].count()


def call_list_next() -> tuple[int, uuid.UUID] | None:
    """The oldest open call-list item of a customer who is not erased: its id and the contact key.
    One query (call_list_open_idx)."""
    row = (
        CallListItem.objects.filter(status=CallListItem.Status.OPEN)
        .filter(Exists(Contact.objects.filter(pk=OuterRef("contact_id"), erased_at__isnull=True)))
        .order_by("created_at", "pk")
        .values_list("pk", "contact__contact_key")
        .first()
    )
    return (row[0], row[1]) if row is not None else None


def call_list_entry(*, item_id: int, contact_id: int | None = None) -> CallListEntry | None:
    """One call-list item with its campaign's name (of this contact, when given), or None."""
    items = CallListItem.objects.filter(pk=item_id)
    if contact_id is not None:
        items = items.filter(contact_id=contact_id)
    row = items.values(*_ENTRY_FIELDS).first()
    return _entry(row) if row is not None else None


def call_list_item(*, item_id: int) -> CallListItem | None:
    """The call-list item to close with an outcome (what `call_outcome_record` takes), or None."""
    return CallListItem.objects.filter(pk=item_id).select_related("contact").first()
