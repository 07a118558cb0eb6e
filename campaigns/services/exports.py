"""Audience exports: a segment as a customer list for advertising platforms, hashed.

Advertising platforms (Meta Custom Audiences, Google Customer Match, TikTok, LinkedIn) match
customer lists on SHA-256 hashes of normalised emails and phone numbers: the webshop uploads its
buyers to leave them out of retargeting, or to seed a lookalike audience. Dialoog never writes a
plain address into such a file.

The file is CSV, UTF-8, with a header and one row per contact in the segment::

    email_sha256,phone_sha256
    3c5e...,9f86...
    a1b2...,

- `email_sha256`: the contact's first email address (the oldest identity), trimmed and lower-cased,
  hashed. Identities are stored normalised already (lower case); trimming and lower-casing again
  costs nothing and keeps the hash right for a value that came in another way.
- `phone_sha256`: the contact's first phone number, as its digits only: E.164 with its country
  code and without the "+" (+31612345678 becomes 31612345678), hashed. This is Meta's form (and
  TikTok's); Google Customer Match asks for the "+" to be kept, so a list for Google matches on
  the email column only until a per-platform format is added.
- Either column may be empty; a contact with neither address is left out (it cannot be matched).
- Hashes are lower-case hex, 64 characters. Rows are in contact order.

Separate columns per identifier, one row per person, is what Meta's and Google's customer-list
uploads take. Erased contacts are never in a segment, so never in a file.

The hashing is done by PostgreSQL (`encode(sha256(convert_to(value, 'UTF8')), 'hex')`) in one
query, the segment's own, whose result `COPY ... TO STDOUT` streams to the file: no address comes
into Python, not even to hash it.

Scheduled exports: `audience_exports_due` (every minute, from `campaigns.tasks.audience_exports_task`)
exports each enabled export whose crontab had an occurrence since the one it last exported. The
occurrence is claimed with a conditional update of `last_occurrence`, so two workers, or a beat
that fires twice, export it once; occurrences are named by their wall-clock time in the crontab's
timezone, so the hour a DST change repeats is one occurrence (see campaigns/schedules.py).
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext
from django_celery_beat.models import CrontabSchedule

from audiences.models import Identity
from audiences.segments import RuleError
from audiences.selectors.segments import segment_contacts, segment_query_memory
from campaigns.models import AudienceExport
from campaigns.schedules import cron, latest_occurrence

logger = logging.getLogger(__name__)

HEADER = ("email_sha256", "phone_sha256")

# One statement: the segment's contacts, each with the hash of its first email and first phone.
# `{audience}` is the segment's compiled query (its parameters come with it); the identity lookups
# are served by identity_contact_kind_idx.
EXPORT_SQL = """
COPY (
    SELECT exported.email_sha256, exported.phone_sha256
    FROM (
        SELECT
            audience.id,
            (
                SELECT encode(sha256(convert_to(lower(btrim(identity.value)), 'UTF8')), 'hex')
                FROM {identity} AS identity
                WHERE identity.contact_id = audience.id AND identity.kind = %s AND btrim(identity.value) <> ''
                ORDER BY identity.id
                LIMIT 1
            ) AS email_sha256,
            (
                SELECT encode(sha256(convert_to(regexp_replace(identity.value, '[^0-9]', '', 'g'), 'UTF8')), 'hex')
                FROM {identity} AS identity
                WHERE identity.contact_id = audience.id AND identity.kind = %s
                    AND regexp_replace(identity.value, '[^0-9]', '', 'g') <> ''
                ORDER BY identity.id
                LIMIT 1
            ) AS phone_sha256
        FROM ({audience}) AS audience (id)
    ) AS exported
    WHERE exported.email_sha256 IS NOT NULL OR exported.phone_sha256 IS NOT NULL
    ORDER BY exported.id
) TO STDOUT WITH (FORMAT csv, HEADER true, ENCODING 'UTF8')
"""


def audience_export_filename(export: AudienceExport) -> str:
    """The download's name: the export's name and when it was written ("kopers-20261025-0300.csv")."""
    name = slugify(export.name) or f"audience-{export.pk}"
    stamp = f"-{timezone.localtime(export.exported_at):%Y%m%d-%H%M}" if export.exported_at else ""
    return f"{name}{stamp}.csv"


def _segment_refused(export: AudienceExport, error: RuleError) -> ValidationError:
    return ValidationError(
        gettext("The segment %(segment)s cannot be exported: its rules cannot be used (%(problem)s).")
        % {"segment": export.segment, "problem": error},
        code="segment_invalid",
    )


def audience_export_run(*, export: AudienceExport, now: dt.datetime | None = None) -> AudienceExport:
    """Write the export's file from its segment as it is now, and store it with its row count.
    Raises ValidationError when the segment's rules cannot be used."""
    now = now or timezone.now()
    try:
        audience = segment_contacts(segment=export.segment, now=now).order_by().values("pk")
    except RuleError as error:
        raise _segment_refused(export, error) from error
    audience_sql, audience_params = audience.query.sql_with_params()
    statement = EXPORT_SQL.format(identity=Identity._meta.db_table, audience=audience_sql)
    params = [Identity.Kind.EMAIL.value, Identity.Kind.PHONE.value, *audience_params]
    content = io.BytesIO()
    # Django's cursor wraps psycopg's, which has COPY; the parameters are bound client-side.
    with segment_query_memory(), connection.cursor() as cursor, cursor.cursor.copy(statement, params) as copy:
        for block in copy:
            content.write(block)
    data = content.getvalue()
    # Hex hashes and commas only: every line is one row, the first the header.
    row_count = max(data.count(b"\n") - 1, 0)
    AudienceExport.objects.filter(pk=export.pk).update(
        content=data, row_count=row_count, exported_at=now, updated_at=now
    )
    export.content, export.row_count, export.exported_at = data, row_count, now
    logger.info("Audience export %s: %s rows from segment %s", export.pk, row_count, export.segment_id)
    return export


@dataclass
class DueResult:
    exported: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)


def _latest_key(schedule: CrontabSchedule, *, after: dt.datetime, now: dt.datetime) -> str | None:
    occurrence = latest_occurrence(
        cron(
            minute=schedule.minute,
            hour=schedule.hour,
            day_of_week=schedule.day_of_week,
            day_of_month=schedule.day_of_month,
            month_of_year=schedule.month_of_year,
        ),
        ZoneInfo(str(schedule.timezone)),
        after=after,
        until=now,
    )
    return occurrence.key if occurrence is not None else None


def audience_exports_due(*, now: dt.datetime | None = None) -> DueResult:
    """Export every enabled, scheduled export whose crontab had an occurrence after the one it last
    exported (occurrences missed while nothing ran export once, not once each). Safe to run twice
    and from two workers at once: each occurrence is claimed by one conditional update, in the same
    transaction as the file, so a worker that dies mid-export leaves it for the next tick."""
    now = now or timezone.now()
    result = DueResult()
    exports = (
        AudienceExport.objects.filter(enabled=True, schedule__isnull=False)
        .defer("content")
        .select_related("schedule", "segment")
    )
    for export in exports:
        if export.schedule is None:
            continue
        key = _latest_key(export.schedule, after=export.created_at, now=now)
        # Keys are wall-clock times "YYYY-MM-DDTHH:MM": in text order they are in time order.
        if key is None or key <= export.last_occurrence:
            continue
        with transaction.atomic():
            claimed = AudienceExport.objects.filter(pk=export.pk, last_occurrence=export.last_occurrence).update(
                last_occurrence=key
            )
            if not claimed:
                continue  # another worker has this occurrence
            try:
                with transaction.atomic():
                    audience_export_run(export=export, now=now)
            except ValidationError as error:
                # The segment is broken: the occurrence is spent, the next one tries again.
                result.failed[export.pk] = " ".join(error.messages)
                logger.warning("Audience export %s of occurrence %s refused: %s", export.pk, key, error.messages)
                continue
        export.last_occurrence = key
        result.exported.append(export.pk)
    return result
