"""Contact policies, applied when a message is about to be handed to its channel: consent (in
sending.py, through the data layer), suppressed addresses, the frequency cap across campaigns,
quiet hours in the contact's own timezone, and throttles shared by every worker."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from campaigns.models import ContactPolicy, Delivery, DeliveryChannel, Suppression, ThrottleWindow

# Channels whose messages count towards the frequency cap: messages to the contact. A webhook
# tells another system, not the contact.
CAPPED_CHANNELS = (DeliveryChannel.EMAIL, DeliveryChannel.SMS, DeliveryChannel.CALLCENTER, DeliveryChannel.DIRECT_MAIL)


def contact_policy() -> ContactPolicy:
    """The single policy row, created with the defaults (quiet hours for SMS and calls) when first asked for."""
    policy, _created = ContactPolicy.objects.get_or_create(
        pk=1, defaults={"quiet_channels": [DeliveryChannel.SMS, DeliveryChannel.CALLCENTER]}
    )
    return policy


def contact_zone(name: str | None) -> ZoneInfo:
    """The contact's timezone; the organisation's (settings.TIME_ZONE) when it has none or an unknown one."""
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo(settings.TIME_ZONE)


def quiet_until(*, policy: ContactPolicy, channel: str, zone: ZoneInfo, now: dt.datetime) -> dt.datetime | None:
    """When the channel may reach a contact in `zone` again, if it may not now; None if it may."""
    if channel not in policy.quiet_channels:
        return None
    local = now.astimezone(zone)
    day = local.date()
    for _attempt in range(8):
        allowed_day = not (policy.quiet_sunday and day.weekday() == 6)
        start = dt.datetime.combine(day, policy.quiet_start, tzinfo=zone)
        end = dt.datetime.combine(day, policy.quiet_end, tzinfo=zone)
        if allowed_day and local < end:
            return None if local >= start else start.astimezone(dt.UTC)
        day += dt.timedelta(days=1)
        local = dt.datetime.combine(day, dt.time(0), tzinfo=zone)
    return None  # unreachable with a valid policy: every week has a day that is not Sunday


def sent_counts(*, contact_ids: Iterable[int], since: dt.datetime) -> tuple[Counter[int], Counter[tuple[int, str]]]:
    """Messages sent to each contact since `since`: in total, and per (contact, channel)."""
    total: Counter[int] = Counter()
    per_channel: Counter[tuple[int, str]] = Counter()
    rows = Delivery.objects.filter(
        contact_id__any=list(contact_ids), status=Delivery.Status.SENT, sent_at__gte=since, channel__in=CAPPED_CHANNELS
    ).values_list("contact_id", "channel")
    for contact_id, channel in rows:
        total[contact_id] += 1
        per_channel[(contact_id, channel)] += 1
    return total, per_channel


def suppressed_addresses(*, channel: str, addresses: Iterable[str]) -> set[str]:
    return set(
        Suppression.objects.filter(channel=channel, address__any=list(addresses)).values_list("address", flat=True)
    )


def suppression_add(*, channel: str, address: str, reason: str, detail: str = "") -> Suppression:
    """No campaign sends to this address over this channel again (a hard bounce, a complaint)."""
    suppression, _created = Suppression.objects.get_or_create(
        channel=channel, address=address, defaults={"reason": reason, "detail": detail[:2000]}
    )
    return suppression


def throttle_take(*, key: str, limit: int, want: int, now: dt.datetime | None = None) -> tuple[int, dt.datetime]:
    """Take up to `want` of this minute's `limit` for `key` (a channel or a campaign), shared by all
    workers through one row per key and minute. Returns how many were granted and when the next
    minute starts (when the caller may ask again)."""
    now = now or timezone.now()
    minute = now.replace(second=0, microsecond=0)
    next_minute = minute + dt.timedelta(minutes=1)
    if want <= 0:
        return 0, next_minute
    table = ThrottleWindow._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (key, minute, count) VALUES (%s, %s, 0) ON CONFLICT (key, minute) DO NOTHING",  # noqa: S608 - a table name
            [key, minute],
        )
        cursor.execute(f"SELECT count FROM {table} WHERE key = %s AND minute = %s FOR UPDATE", [key, minute])  # noqa: S608
        used = cursor.fetchone()[0]
        granted = max(0, min(want, limit - used))
        if granted:
            cursor.execute(
                f"UPDATE {table} SET count = count + %s WHERE key = %s AND minute = %s",  # noqa: S608 - a table name
                [granted, key, minute],
            )
    return granted, next_minute


def throttles_forget(*, before: dt.datetime) -> int:
    """Remove the throttle counts of minutes before `before` (the dispatcher keeps the table small)."""
    deleted, _per_model = ThrottleWindow.objects.filter(minute__lt=before).delete()
    return deleted
