"""Events in: a purchase from the webshop, a call outcome, an NPS answer.

Each event finds its contact by contact key or by any identity it carries (a new identity
makes a new contact). An external id makes ingestion idempotent: the same event sent twice
is stored once, and the second answer says "duplicate". Stored events are committed before
the call returns, so customer service sees a purchase the moment the webshop reports it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from audiences.models import Contact, Event, Identity
from audiences.services.contacts import contact_by_key, contact_resolve, contact_survivor, identities_normalise

MAX_BATCH = 1000


@dataclass
class EventIn:
    """One event, its shape already checked (by the API's serializer or an import)."""

    type: str
    occurred_at: dt.datetime
    contact_key: Any = None
    identities: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    value: Decimal | None = None
    currency: str = ""
    external_id: str | None = None


@dataclass
class EventResult:
    index: int
    status: str  # stored, duplicate or rejected
    id: int | None = None
    contact_key: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)


STORED, DUPLICATE, REJECTED = "stored", "duplicate", "rejected"


def _rejected(index: int, error: ValidationError) -> EventResult:
    errors = []
    for name, messages in error.message_dict.items() if hasattr(error, "error_dict") else [(None, error.messages)]:
        errors += [{"field": name, "code": "invalid", "message": message} for message in messages]
    return EventResult(index=index, status=REJECTED, errors=errors)


def _contacts_for(
    items: list[EventIn], source: str, user: Any, *, may_create: bool, may_change: bool
) -> dict[int, int | ValidationError]:
    """The contact id of each item. Items whose identities all point at one known contact are
    answered from one query; the rest go through resolution, which may create a contact (for
    who may add contacts) or add identities and merge contacts (for who may change them)."""
    contacts: dict[int, int | ValidationError] = {}
    known: dict[tuple[str, str], int] = {}
    normalised: dict[int, list[tuple[str, str]]] = {}
    for index, item in enumerate(items):
        if item.contact_key is not None:
            contact = contact_by_key(contact_key=item.contact_key)
            contacts[index] = (
                contact.pk
                if contact
                else ValidationError({"contact_key": _("No contact has the key %(key)s.") % {"key": item.contact_key}})
            )
            continue
        try:
            normalised[index] = identities_normalise(item.identities)
        except ValidationError as error:
            contacts[index] = error
            continue
        if not normalised[index]:
            contacts[index] = ValidationError(
                {"identities": _("No contact identity: give a contact key, e-mail, phone or customer number.")}
            )
    pairs = {pair for item_pairs in normalised.values() for pair in item_pairs}
    if pairs:
        for kind, value, contact_id in Identity.objects.filter(
            kind__in={kind for kind, _v in pairs}, value__in={value for _k, value in pairs}
        ).values_list("kind", "value", "contact_id"):
            known[(kind, value)] = contact_id
    for index, item_pairs in normalised.items():
        if index in contacts:
            continue
        owners = {known.get(pair) for pair in item_pairs}
        found = owners - {None}
        if len(found) == 1 and (None not in owners or not may_change):
            # One known contact. New identities beside it are only added by who may change contacts.
            contacts[index] = found.pop()  # type: ignore[assignment]
            continue
        if not found and not may_create:
            contacts[index] = ValidationError({"identities": _("No contact has these identities.")})
            continue
        if len(found) > 1 and not may_change:
            contacts[index] = ValidationError(
                {"identities": _("These identities belong to different contacts; someone who may merge contacts must.")}
            )
            continue
        try:
            resolution = contact_resolve(identities=item_pairs, source=source, user=user)
        except ValidationError as error:
            contacts[index] = error
            continue
        survivor = resolution.contact.pk
        contacts[index] = survivor
        for pair in item_pairs:  # later items of the batch find it at once
            known[pair] = survivor
        for merge in resolution.merges:  # a merged contact is gone: whatever pointed at it now points at the survivor
            absorbed = merge.absorbed["id"]
            known = {pair: survivor if owner == absorbed else owner for pair, owner in known.items()}
            for other, owner in contacts.items():
                if owner == absorbed:
                    contacts[other] = survivor
    return contacts


def _lock_contacts(contact_ids: set[int]) -> dict[int, Contact]:
    """The contacts, locked until the events are in, so that no merge removes one in between;
    a contact merged away just before is replaced by the contact it lives on in."""
    # In the order of their ids, as merges lock them: two requests cannot wait on each other.
    locked = {c.pk: c for c in Contact.objects.select_for_update().filter(pk__in=contact_ids).order_by("pk")}
    for contact_id in contact_ids - set(locked):
        survivor = contact_survivor(contact_id=contact_id)
        if survivor is not None:
            locked[contact_id] = Contact.objects.select_for_update().get(pk=survivor.pk)
    return locked


def event_ingest(
    *,
    items: list[EventIn],
    source: str = "api",
    user: Any = None,
    may_create: bool = True,
    may_change: bool = True,
) -> list[EventResult]:
    """Store a batch of events (at most MAX_BATCH), each answered on its own.

    `may_create` and `may_change` say whether the sender may make new contacts and add
    identities to (or merge) existing ones; without, such an item is rejected."""
    if len(items) > MAX_BATCH:
        raise ValidationError(_("Send at most %(max)d events at once.") % {"max": MAX_BATCH})
    results: list[EventResult | None] = [None] * len(items)
    rows = []
    with transaction.atomic():
        contact_ids = _contacts_for(items, source, user, may_create=may_create, may_change=may_change)
        locked = _lock_contacts({found for found in contact_ids.values() if isinstance(found, int)})
        for index, item in enumerate(items):
            found = contact_ids[index]
            if isinstance(found, ValidationError):
                results[index] = _rejected(index, found)
                continue
            contact = locked.get(found)
            if contact is None:
                results[index] = _rejected(index, ValidationError({"identities": _("The contact no longer exists.")}))
                continue
            if item.type not in Event.Type.values:
                results[index] = _rejected(
                    index,
                    ValidationError(
                        {
                            "type": _("Unknown event type %(type)r; known: %(known)s.")
                            % {"type": item.type, "known": ", ".join(Event.Type.values)}
                        }
                    ),
                )
                continue
            rows.append((index, contact, item))
        stored = _insert(rows)
        for index, contact, _item in rows:
            if index in stored:
                results[index] = EventResult(index, STORED, stored[index], str(contact.contact_key))
            else:
                results[index] = EventResult(index, DUPLICATE, contact_key=str(contact.contact_key))
        duplicates = [r for r in results if r and r.status == DUPLICATE]
        if duplicates:
            external_ids = [items[r.index].external_id for r in duplicates]
            existing = dict(Event.objects.filter(external_id__in=external_ids).values_list("external_id", "id"))
            for result in duplicates:
                result.id = existing.get(items[result.index].external_id)
    return [result for result in results if result is not None]


def _insert(rows: list[tuple[int, Contact, EventIn]]) -> dict[int, int]:
    """INSERT the events in one statement; an external id seen before is skipped by the
    unique constraint, not by a lookup that a concurrent request could race. Returns
    {item index: new event id} for the rows stored."""
    if not rows:
        return {}
    values: list[str] = []
    params: list[Any] = []
    now = timezone.now()
    for index, contact, item in rows:
        values.append("(%s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s)")
        params += [
            contact.pk,
            item.type,
            item.occurred_at,
            json.dumps(item.properties, default=str),
            item.value,
            item.currency,
            item.external_id or None,
            now,
            index,
        ]
    sql = f"""
        WITH incoming (contact_id, type, occurred_at, properties, value, currency, external_id, created_at, item)
            AS (VALUES {", ".join(values)}),
        inserted AS (
            INSERT INTO audiences_event (contact_id, type, occurred_at, properties, value, currency, external_id,
                                         created_at)
            SELECT contact_id, type, occurred_at::timestamptz, properties, value::numeric, currency, external_id,
                   created_at::timestamptz
            FROM incoming ORDER BY item
            ON CONFLICT (external_id) DO NOTHING
            RETURNING id, external_id, contact_id, occurred_at, type
        )
        SELECT inserted.id, incoming.item FROM inserted
        JOIN incoming ON (inserted.external_id = incoming.external_id)
            OR (inserted.external_id IS NULL AND incoming.external_id IS NULL
                AND inserted.contact_id = incoming.contact_id AND inserted.type = incoming.type
                AND inserted.occurred_at = incoming.occurred_at::timestamptz)
    """  # noqa: S608 - only placeholders are interpolated; every value is a parameter
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchall()
    stored: dict[int, int] = {}
    taken: set[int] = set()
    for event_id, index in sorted(found, key=lambda row: row[1]):
        # Two identical events without an external id both match both rows: pair them in order.
        if event_id not in taken and index not in stored:
            stored[index] = event_id
            taken.add(event_id)
    return stored


def event_record(*, item: EventIn, source: str, user: Any = None) -> int:
    """Store one event of a contact known by its key (a call's outcome, an answer to an offer),
    creating and changing no contact; its id, or a ValidationError saying why it was refused.
    A retry with the same external id returns the event stored the first time."""
    [result] = event_ingest(items=[item], source=source, user=user, may_create=False, may_change=False)
    if result.status == REJECTED or result.id is None:
        messages = "; ".join(error["message"] for error in result.errors)
        raise ValidationError(_("The event could not be recorded: %(reason)s") % {"reason": messages})
    return result.id
