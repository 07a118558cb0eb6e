"""Reads of segments: who is in one, how many, a few of them. One SQL query each.

A dynamic segment's rules are compiled (audiences/segments/) into one query over contacts; a
static segment is its list. Erased contacts are never in a segment.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from audiences.models import Contact, Segment, SegmentMember
from audiences.segments import Rules, compile_rules

# A size PostgreSQL reads for work_mem: a whole number and a unit, nothing else.
WORK_MEM_SHAPE = re.compile(r"^[1-9][0-9]{0,6}(kB|MB|GB)$")


def segment_work_mem() -> str:
    """settings.SEGMENT_WORK_MEM (default 64MB), checked: it goes to the server as a setting."""
    work_mem = getattr(settings, "SEGMENT_WORK_MEM", "64MB")
    if not isinstance(work_mem, str) or not WORK_MEM_SHAPE.match(work_mem):
        raise ImproperlyConfigured(f"SEGMENT_WORK_MEM must be a size such as '64MB', got {work_mem!r}")
    return work_mem


@contextmanager
def segment_query_memory() -> Iterator[None]:
    """A transaction in which PostgreSQL may use settings.SEGMENT_WORK_MEM per hash table or sort.

    A segment's set of contacts (600,000 ids, say) does not fit the default 4MB: a hashed set
    would spill to disk, and a hashed lookup under an OR or a NOT is not even planned then. The
    setting is local to the transaction (`set_config(..., true)`, i.e. SET LOCAL, its value a
    parameter); inside a caller's transaction it is put back afterwards.
    """
    work_mem = segment_work_mem()
    inside_a_transaction = connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('work_mem'), set_config('work_mem', %s, true)", [work_mem])
        previous = cursor.fetchone()[0]
        yield
        if inside_a_transaction:  # else the transaction ends here, and the setting with it
            cursor.execute("SELECT set_config('work_mem', %s, true)", [previous])


def resolve_segment(segment_id: int) -> tuple[str, object] | None:
    """A referenced segment's kind and rules, for the compiler; None when there is no such segment."""
    found = Segment.objects.filter(pk=segment_id).values_list("kind", "rules").first()
    return (found[0], found[1]) if found is not None else None


def segment_condition(
    *,
    segment: Segment | None = None,
    rules: Rules | Mapping[str, Any] | str | None = None,
    now: datetime | None = None,
    per_contact: bool = False,
) -> Q:
    """The condition on contacts of a segment, or of rules not saved yet (the builder's preview).
    Raises RuleError for rules that cannot be used. `per_contact`: for a query about one contact
    (see `compile_rules`)."""
    if (segment is None) == (rules is None):
        raise TypeError("pass a segment or rules, not both")
    if segment is not None and segment.kind == Segment.Kind.STATIC:
        return Q(Exists(SegmentMember.objects.filter(segment=segment, contact=OuterRef("pk"))))
    return compile_rules(
        segment.rules if segment is not None else rules,  # type: ignore[arg-type]
        now=now or timezone.now(),
        resolve_segment=resolve_segment,
        segment_id=segment.pk if segment is not None else None,
        per_contact=per_contact,
    )


def segment_contacts(
    *, segment: Segment | None = None, rules: Rules | Mapping[str, Any] | str | None = None, now: datetime | None = None
) -> QuerySet[Contact]:
    """The contacts in the segment (or meeting the rules) now, not erased. Lazy: one query when used."""
    condition = segment_condition(segment=segment, rules=rules, now=now)
    return Contact.objects.filter(condition, erased_at__isnull=True)


def segment_count(
    *, segment: Segment | None = None, rules: Rules | Mapping[str, Any] | str | None = None, now: datetime | None = None
) -> int:
    contacts = segment_contacts(segment=segment, rules=rules, now=now)  # bad rules raise before any query
    with segment_query_memory():
        return contacts.count()


def segment_sample(
    *,
    segment: Segment | None = None,
    rules: Rules | Mapping[str, Any] | str | None = None,
    now: datetime | None = None,
    size: int = 20,
) -> list[Contact]:
    """A few contacts of the segment, newest first: read along the primary key, so PostgreSQL
    stops as soon as it has found `size` of them instead of sorting the whole segment."""
    return list(segment_contacts(segment=segment, rules=rules, now=now).order_by("-pk")[:size])
