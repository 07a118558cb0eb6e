from collections.abc import Iterable
from typing import Any

from django.db.models import BooleanField, ExpressionWrapper

from audiences.models import Consent, ConsentChange, Contact, Identity, Score, Segment
from audiences.segments import RuleError
from audiences.selectors.segments import segment_condition
from dialoog.counting import table_count_estimate


def contact_count_estimate() -> int:
    """The number of contacts, without COUNT(*) over millions of rows."""
    return table_count_estimate(Contact)


def contact_segments(*, contact: Contact) -> list[Segment]:
    """The segments this contact is in now: the static lists it is on, and the dynamic segments
    whose rules it meets. One query for all of them: each segment's condition becomes a yes/no
    column of this one contact's row."""
    segments = list(Segment.objects.order_by("name"))
    columns = {}
    for segment in segments:
        try:
            columns[f"in_{segment.pk}"] = ExpressionWrapper(
                segment_condition(segment=segment, per_contact=True), BooleanField()
            )
        except RuleError:
            continue  # it refers to a segment deleted since: in no one's list of memberships
    if not columns:
        return []
    row = Contact.objects.filter(pk=contact.pk).annotate(**columns).values(*columns).first() or {}
    return [segment for segment in segments if row.get(f"in_{segment.pk}")]


PROFILE_FIELDS = ("id", "contact_key", "first_name", "last_name", "locale", "timezone", "created_at", "attributes")


def contact_profiles(*, contact_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """What personalisation reads of each contact (fields, attributes, scores by name), by id, as
    plain dicts: two queries for a batch of any size. Erased contacts are left out."""
    ids = list(contact_ids)
    profiles = {
        row["id"]: {**row, "scores": {}}
        for row in Contact.objects.filter(pk__any=ids, erased_at__isnull=True).values(*PROFILE_FIELDS)
    }
    for contact_id, name, value in Score.objects.filter(contact_id__any=list(profiles)).values_list(
        "contact_id", "name", "value"
    ):
        profiles[contact_id]["scores"][name] = value
    return profiles


# Which identity names a contact in a list, best first.
IDENTITY_PREFERENCE = (
    Identity.Kind.EMAIL,
    Identity.Kind.PHONE,
    Identity.Kind.CUSTOMER_NUMBER,
    Identity.Kind.WEBSHOP_ID,
    Identity.Kind.CRM_ID,
    Identity.Kind.DEVICE_ID,
)


def contact_primary_identities(*, contact_ids: Iterable[int]) -> dict[int, str]:
    """The identity that best names each contact (an e-mail address before a phone number before a
    customer number...), by contact id, in one query; contacts without identities are left out."""
    rank: dict[str, int] = {kind: index for index, kind in enumerate(IDENTITY_PREFERENCE)}
    best: dict[int, tuple[int, str]] = {}
    for contact_id, kind, value in (
        Identity.objects.filter(contact_id__in=list(contact_ids))
        .order_by("pk")
        .values_list("contact_id", "kind", "value")
    ):
        if contact_id not in best or rank.get(kind, 99) < best[contact_id][0]:
            best[contact_id] = (rank.get(kind, 99), value)
    return {contact_id: value for contact_id, (_rank, value) in best.items()}


def contact_addresses(*, contact_ids: Iterable[int], kind: str) -> dict[int, str]:
    """Each contact's address of one kind (an email address, a phone number), by contact id, in one
    query: the first one recorded when a contact has several. Contacts without one are left out."""
    found: dict[int, str] = {}
    for contact_id, value in (
        Identity.objects.filter(contact_id__any=list(contact_ids), kind=kind)
        .order_by("pk")
        .values_list("contact_id", "value")
    ):
        found.setdefault(contact_id, value)
    return found


def contact_consents(*, contact_ids: Iterable[int], channel: str) -> set[int]:
    """The contacts, of these, whose current consent for `channel` is granted: one indexed query."""
    return set(
        Consent.objects.filter(
            contact_id__any=list(contact_ids), channel=channel, status=ConsentChange.Status.GRANTED
        ).values_list("contact_id", flat=True)
    )
