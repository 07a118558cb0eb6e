"""Reads of segments: who is in one, how many, a few of them. One SQL query each.

A dynamic segment's rules are compiled (audiences/segments/) into one query over contacts; a
static segment is its list. Erased contacts are never in a segment.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from audiences.models import Contact, Segment, SegmentMember
from audiences.segments import Rules, compile_rules


def resolve_segment(segment_id: int) -> tuple[str, object] | None:
    """A referenced segment's kind and rules, for the compiler; None when there is no such segment."""
    found = Segment.objects.filter(pk=segment_id).values_list("kind", "rules").first()
    return (found[0], found[1]) if found is not None else None


def segment_condition(
    *, segment: Segment | None = None, rules: Rules | Mapping[str, Any] | str | None = None, now: datetime | None = None
) -> Q:
    """The condition on contacts of a segment, or of rules not saved yet (the builder's preview).
    Raises RuleError for rules that cannot be used."""
    if (segment is None) == (rules is None):
        raise TypeError("pass a segment or rules, not both")
    if segment is not None and segment.kind == Segment.Kind.STATIC:
        return Q(Exists(SegmentMember.objects.filter(segment=segment, contact=OuterRef("pk"))))
    return compile_rules(
        segment.rules if segment is not None else rules,  # type: ignore[arg-type]
        now=now or timezone.now(),
        resolve_segment=resolve_segment,
        segment_id=segment.pk if segment is not None else None,
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
    return segment_contacts(segment=segment, rules=rules, now=now).count()


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
