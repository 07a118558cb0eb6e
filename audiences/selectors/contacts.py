from collections.abc import Iterable
from typing import Any

from django.db.models import BooleanField, ExpressionWrapper

from audiences.models import Contact, Score, Segment
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
            columns[f"in_{segment.pk}"] = ExpressionWrapper(segment_condition(segment=segment), BooleanField())
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
        for row in Contact.objects.filter(pk__in=ids, erased_at__isnull=True).values(*PROFILE_FIELDS)
    }
    for contact_id, name, value in Score.objects.filter(contact_id__in=list(profiles)).values_list(
        "contact_id", "name", "value"
    ):
        profiles[contact_id]["scores"][name] = value
    return profiles
