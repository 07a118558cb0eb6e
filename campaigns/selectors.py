"""Reads of the delivery layer that more than one caller needs."""

from __future__ import annotations

import datetime as dt

from django.db.models import Q, QuerySet
from django.utils import timezone

from audiences.models import Contact
from audiences.selectors.segments import segment_condition
from campaigns.models import Campaign
from content.models import Message


def campaign_audience(*, campaign: Campaign, now: dt.datetime | None = None) -> QuerySet[Contact]:
    """The contacts the campaign is for now: in any of its segments and in none of its excluded
    segments, not erased. Lazy: one query when used. Raises RuleError for a segment whose rules
    cannot be used."""
    now = now or timezone.now()
    included = Q(pk__in=[])
    for segment in campaign.include_segments.all():
        included |= segment_condition(segment=segment, now=now)
    contacts = Contact.objects.filter(included, erased_at__isnull=True)
    for segment in campaign.exclude_segments.all():
        contacts = contacts.exclude(segment_condition(segment=segment, now=now))
    return contacts


def campaign_messages(*, campaign: Campaign) -> list[Message]:
    """What the campaign sends: its variants' messages, or its one message."""
    variants = list(campaign.variants.select_related("message").prefetch_related("message__templates"))
    if variants:
        return [variant.message for variant in variants]
    if campaign.message_id is None:
        return []
    return list(Message.objects.filter(pk=campaign.message_id).prefetch_related("templates"))
