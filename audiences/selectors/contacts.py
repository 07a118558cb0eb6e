from django.db.models import BooleanField, ExpressionWrapper

from audiences.models import Contact, Segment
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
