"""What the segment builder offers in its pickers, read cheaply on a million contacts.

Attribute keys and event property names are free-form JSON keys: they are read from a
bounded sample of the newest rows (through the indexes that order them), never from a
scan of every contact or event. A key used only by old rows is missing from the pickers;
the marketeer can still type it, the datalists only suggest.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from django.db import connection
from django.db.models import Field
from django.utils.text import capfirst

from audiences.models import Channel, Contact, Event, Identity, Score, Segment

ATTRIBUTE_SAMPLE = 5_000
EVENT_SAMPLE_PER_TYPE = 1_000
MAX_KEYS = 200
MAX_SEGMENTS = 500
# Text values are suggested for keys with few distinct ones (a category, a city), not for
# order numbers or street names.
MAX_DISTINCT_SUGGESTED = 40
MAX_SUGGESTIONS = 25

# The contact fields rules may use (docs/segment-rules.md), with the kind of value they hold.
CONTACT_FIELDS = {
    "first_name": "text",
    "last_name": "text",
    "locale": "text",
    "timezone": "text",
    "created_at": "date",
}

# A JSON value's kind as the builder's value inputs know it; ISO dates are text in JSON.
_VALUE_KIND_SQL = """
    CASE
        WHEN jsonb_typeof(value) = 'string' AND (value #>> '{}') ~ '^\\d{4}-\\d{2}-\\d{2}' THEN 'date'
        WHEN jsonb_typeof(value) = 'string' THEN 'text'
        ELSE jsonb_typeof(value)
    END
"""


def _keys_with_kinds(rows: Iterable[tuple[str, str, int, list[str] | None]]) -> list[dict[str, Any]]:
    """[(key, kind, n, values), ...] -> [{"key", "type", "values"}, ...]: each key with its most
    common kind and, for text with few distinct values, the most common ones; sorted by key."""
    best: dict[str, tuple[int, str, list[str] | None]] = {}
    for key, kind, n, values in rows:
        if key not in best or n > best[key][0]:
            best[key] = (n, kind, values)
    return [{"key": key, "type": best[key][1], "values": best[key][2] or []} for key in sorted(best)[:MAX_KEYS]]


def _sample_keys_sql(sample: str, group: str = "") -> str:
    """Keys, kinds, counts and suggested text values of the JSON objects `sample` yields (as `obj`)."""
    return f"""
        WITH pairs AS (
            SELECT {group} kv.key, kv.value, {_VALUE_KIND_SQL} AS kind
            FROM ({sample}) AS sample
            CROSS JOIN LATERAL jsonb_each(sample.obj) AS kv
            WHERE jsonb_typeof(kv.value) <> 'null'
        ),
        texts AS (
            SELECT {group} key, value #>> '{{}}' AS text, count(*) AS n
            FROM pairs WHERE kind = 'text'
            GROUP BY {group} key, value #>> '{{}}'
        ),
        suggested AS (
            SELECT {group} key,
                   (array_agg(text ORDER BY n DESC, text))[1:{MAX_SUGGESTIONS}] AS suggestions
            FROM texts
            GROUP BY {group} key
            HAVING count(*) <= {MAX_DISTINCT_SUGGESTED}
        )
        SELECT {group} pairs.key, pairs.kind, count(*), suggested.suggestions
        FROM pairs LEFT JOIN suggested USING ({group} key)
        GROUP BY {group} pairs.key, pairs.kind, suggested.suggestions
    """  # noqa: S608 - built from constants and the models' table names


def _attribute_keys() -> list[dict[str, Any]]:
    contacts = Contact._meta.db_table
    # The newest contacts come from contact_created_idx; jsonb_each over 5,000 small objects.
    sample = f"""
        SELECT attributes AS obj FROM {contacts}
        WHERE jsonb_typeof(attributes) = 'object' AND attributes <> '{{}}'::jsonb
        ORDER BY created_at DESC
        LIMIT %s
    """  # noqa: S608 - table names from the models, values as parameters
    with connection.cursor() as cursor:
        cursor.execute(_sample_keys_sql(sample), [ATTRIBUTE_SAMPLE])
        return _keys_with_kinds(cursor.fetchall())


def _event_properties() -> dict[str, list[dict[str, Any]]]:
    events = Event._meta.db_table
    # Per type, the newest events through event_type_time_idx (type, occurred_at).
    sample = f"""
        SELECT types.event_type, newest.properties AS obj
        FROM unnest(%s::text[]) AS types(event_type)
        CROSS JOIN LATERAL (
            SELECT properties FROM {events}
            WHERE type = types.event_type AND jsonb_typeof(properties) = 'object' AND properties <> '{{}}'::jsonb
            ORDER BY occurred_at DESC
            LIMIT %s
        ) AS newest
    """  # noqa: S608 - table names from the models, values as parameters
    with connection.cursor() as cursor:
        cursor.execute(_sample_keys_sql(sample, group="event_type,"), [list(Event.Type.values), EVENT_SAMPLE_PER_TYPE])
        rows = cursor.fetchall()
    by_type: dict[str, list] = {}
    for event_type, *row in rows:
        by_type.setdefault(event_type, []).append(row)
    return {event_type: _keys_with_kinds(found) for event_type, found in by_type.items()}


def _score_names() -> list[str]:
    scores = Score._meta.db_table
    # The distinct names by skipping through score_name_idx (a loose index scan): a few
    # index probes per name, not a pass over one score row per contact.
    sql = f"""
        WITH RECURSIVE names(name) AS (
            (SELECT name FROM {scores} ORDER BY name LIMIT 1)
            UNION ALL
            SELECT (SELECT s.name FROM {scores} AS s WHERE s.name > names.name ORDER BY s.name LIMIT 1)
            FROM names WHERE names.name IS NOT NULL
        )
        SELECT name FROM names WHERE name IS NOT NULL LIMIT %s
    """  # noqa: S608 - table names from the models, values as parameters
    with connection.cursor() as cursor:
        cursor.execute(sql, [MAX_KEYS])
        return [name for (name,) in cursor.fetchall()]


def _choices(choices: Iterable[tuple[object, object]]) -> list[dict[str, str]]:
    return [{"value": str(value), "label": str(label)} for value, label in choices]


def segment_builder_options() -> dict[str, Any]:
    """Everything the builder's pickers offer: fields, attribute keys, event types with their
    property names, channels, identity kinds, score names and the segments one may refer to."""
    fields = [
        # Concrete columns of Contact, not relations: each has a verbose name.
        {
            "value": name,
            "label": capfirst(cast("Field[Any, Any]", Contact._meta.get_field(name)).verbose_name),
            "type": kind,
        }
        for name, kind in CONTACT_FIELDS.items()
    ]
    segments = [
        {"value": pk, "label": name, "kind": kind}
        for pk, name, kind in Segment.objects.order_by("name").values_list("pk", "name", "kind")[:MAX_SEGMENTS]
    ]
    return {
        "fields": fields,
        "attributes": _attribute_keys(),
        "event_types": _choices(Event.Type.choices),
        "event_properties": _event_properties(),
        "channels": _choices(Channel.choices),
        "identity_kinds": _choices(Identity.Kind.choices),
        "scores": _score_names(),
        "segments": segments,
    }
