from audiences.models import Contact
from dialoog.counting import table_count_estimate


def contact_count_estimate() -> int:
    """The number of contacts, without COUNT(*) over millions of rows."""
    return table_count_estimate(Contact)


def contact_segments(*, contact: Contact) -> list:
    """The segments this contact is in now: the static lists it is on, and the dynamic
    segments whose rules it meets (each one indexed query narrowed to this contact)."""
    from audiences.models import Segment
    from audiences.selectors.segments import segment_contacts

    found = []
    for segment in Segment.objects.order_by("name"):
        if segment.kind == Segment.Kind.STATIC:
            if segment.members.filter(contact=contact).exists():
                found.append(segment)
        elif segment_contacts(segment=segment).filter(pk=contact.pk).exists():
            found.append(segment)
    return found
