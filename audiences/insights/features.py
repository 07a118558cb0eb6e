"""What the prediction models know of a contact at a moment: features computed in SQL.

One query reads every contact's features as of a moment `as_of` from the events and the
consent history before it (recency, frequency and money over several windows, tenure, the
categories bought in, engagement, consent), and a second one what happened in a period after
it (bought at all, revenue): the outcome a model learns to predict. Both are set-based over
the data layer and come back through a binary `COPY`, read straight into numpy arrays: a
million contacts' features are one array, not a million Python rows.

Features are named; a trained model keeps the names it was trained on, so that scoring can
tell a model that no longer fits this list (`FeatureMismatch`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from django.db import connection
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from audiences.models import ConsentChange, Contact, Event

StrOrPromise = str | Promise


@dataclass(frozen=True)
class Feature:
    name: str
    sql: str  # an expression over the query's joined aggregates, NULL-free
    description: StrOrPromise


# Days between two moments, as a float.
def _days(later: str, earlier: str) -> str:
    return f"extract(epoch FROM {later} - {earlier}) / 86400.0"


FEATURES: tuple[Feature, ...] = (
    Feature(
        "recency_days",
        f"coalesce(p.last_days, greatest({_days('%(as_of)s', 'least(c.created_at, a.first_event)')}, 0))",
        _("Days since the last purchase (since the first sign of the contact when they never bought)."),
    ),
    Feature(
        "tenure_days",
        f"greatest({_days('%(as_of)s', 'least(c.created_at, a.first_event)')}, 0)",
        _("Days since the contact was first known."),
    ),
    Feature("first_purchase_days", "coalesce(p.first_days, 0)", _("Days since the first purchase (0: never).")),
    Feature("purchase_days_90", "coalesce(p.days_90, 0)", _("Days with a purchase in the last 90 days.")),
    Feature("purchase_days_365", "coalesce(p.days_365, 0)", _("Days with a purchase in the last year.")),
    Feature("purchase_days_all", "coalesce(p.days_all, 0)", _("Days with a purchase, ever.")),
    Feature("revenue_90", "coalesce(p.revenue_90, 0)", _("Revenue in the last 90 days.")),
    Feature("revenue_365", "coalesce(p.revenue_365, 0)", _("Revenue in the last year.")),
    Feature("revenue_all", "coalesce(p.revenue_all, 0)", _("Revenue, ever.")),
    Feature("categories_365", "coalesce(k.categories, 0)", _("Categories bought in, in the last year.")),
    Feature("page_views_90", "coalesce(a.page_views_90, 0)", _("Pages viewed in the last 90 days.")),
    Feature("email_opens_90", "coalesce(a.opens_90, 0)", _("E-mails opened in the last 90 days.")),
    Feature("email_clicks_90", "coalesce(a.clicks_90, 0)", _("E-mails clicked in the last 90 days.")),
    Feature("calls_365", "coalesce(a.calls_365, 0)", _("Callcenter calls in the last year.")),
    Feature("consent_email", "coalesce(s.email, 0)", _("E-mail consent (1) or not (0).")),
    Feature("consent_sms", "coalesce(s.sms, 0)", _("SMS consent (1) or not (0).")),
    Feature("consent_phone", "coalesce(s.phone, 0)", _("Callcenter consent (1) or not (0).")),
)
FEATURE_NAMES: tuple[str, ...] = tuple(feature.name for feature in FEATURES)

# Purchases are counted in days with a purchase (the unit of the lifetime-value model): the
# lines of one order, or two orders on one day, are one purchase.
FEATURES_SQL = """
    WITH days AS (
        -- A day's purchases, with the moment of its last one: the windows count from the events'
        -- own times, not from the start of their day.
        SELECT contact_id, max(occurred_at) AS at, min(occurred_at) AS first_at,
               sum(coalesce(value, 0))::float8 AS revenue
        FROM {event}
        WHERE type = 'purchase' AND occurred_at < %(as_of)s {event_contacts}
        GROUP BY contact_id, date_trunc('day', occurred_at)
    ), p AS (
        SELECT contact_id,
               count(*) AS days_all,
               count(*) FILTER (WHERE at >= %(as_of)s - interval '90 days') AS days_90,
               count(*) FILTER (WHERE at >= %(as_of)s - interval '365 days') AS days_365,
               sum(revenue) AS revenue_all,
               sum(revenue) FILTER (WHERE at >= %(as_of)s - interval '90 days') AS revenue_90,
               sum(revenue) FILTER (WHERE at >= %(as_of)s - interval '365 days') AS revenue_365,
               extract(epoch FROM %(as_of)s - min(first_at)) / 86400.0 AS first_days,
               extract(epoch FROM %(as_of)s - max(at)) / 86400.0 AS last_days
        FROM days GROUP BY contact_id
    ), k AS (
        SELECT contact_id, count(DISTINCT category) AS categories
        FROM {event}
        WHERE type = 'purchase' AND occurred_at >= %(as_of)s - interval '365 days' AND occurred_at < %(as_of)s
              {event_contacts}
        GROUP BY contact_id
    ), a AS (
        SELECT contact_id,
               min(occurred_at) AS first_event,
               count(*) FILTER (WHERE type = 'page_view' AND occurred_at >= %(as_of)s - '90 days'::interval)
                   AS page_views_90,
               count(*) FILTER (WHERE type = 'email_opened' AND occurred_at >= %(as_of)s - '90 days'::interval)
                   AS opens_90,
               count(*) FILTER (WHERE type = 'email_clicked' AND occurred_at >= %(as_of)s - '90 days'::interval)
                   AS clicks_90,
               count(*) FILTER (WHERE type = 'call_outcome' AND occurred_at >= %(as_of)s - '365 days'::interval)
                   AS calls_365
        FROM {event}
        WHERE occurred_at < %(as_of)s {event_contacts}
        GROUP BY contact_id
    ), s AS (
        SELECT contact_id,
               max(CASE WHEN channel = 'email' AND status = 'granted' THEN 1 ELSE 0 END) AS email,
               max(CASE WHEN channel = 'sms' AND status = 'granted' THEN 1 ELSE 0 END) AS sms,
               max(CASE WHEN channel = 'phone' AND status = 'granted' THEN 1 ELSE 0 END) AS phone
        FROM (
            SELECT DISTINCT ON (contact_id, channel) contact_id, channel, status
            FROM {consent_change}
            WHERE recorded_at < %(as_of)s {consent_contacts}
            ORDER BY contact_id, channel, recorded_at DESC, id DESC
        ) newest
        GROUP BY contact_id
    )
    SELECT c.id::int8, (a.contact_id IS NOT NULL)::int::float8, {features}
    FROM {contact} c
    LEFT JOIN p ON p.contact_id = c.id
    LEFT JOIN k ON k.contact_id = c.id
    LEFT JOIN a ON a.contact_id = c.id
    LEFT JOIN s ON s.contact_id = c.id
    WHERE c.erased_at IS NULL {contacts}
    ORDER BY c.id
"""

OUTCOMES_SQL = """
    SELECT c.id::int8, (o.contact_id IS NOT NULL)::int::float8, coalesce(o.revenue, 0)::float8
    FROM {contact} c
    LEFT JOIN (
        SELECT contact_id, sum(coalesce(value, 0)) AS revenue
        FROM {event}
        WHERE type = 'purchase' AND occurred_at >= %(start)s AND occurred_at < %(end)s
        GROUP BY contact_id
    ) o ON o.contact_id = c.id
    WHERE c.erased_at IS NULL
    ORDER BY c.id
"""

_TABLES = {
    "contact": Contact._meta.db_table,
    "event": Event._meta.db_table,
    "consent_change": ConsentChange._meta.db_table,
}
COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"  # PostgreSQL's binary COPY format, in and out
_COPY_HEADER = 19  # the signature, flags, header extension length


class CopyFormatError(Exception):
    """PostgreSQL's binary COPY stream is not the fixed-width rows this reader expects."""


def _read_binary(sql: str, params: dict, float_columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of (int8, float8 x n), none NULL, as (ids, values) through a binary COPY: every row
    has the same length, so numpy reads the whole stream as one structured array. The stream's
    shape is checked first: a NULL or a column of another type would shift every row after it."""
    fields: list[tuple[str, str]] = [("count", ">i2"), ("id_length", ">i4"), ("id", ">i8")]
    for i in range(float_columns):
        fields += [(f"length_{i}", ">i4"), (f"value_{i}", ">f8")]
    row = np.dtype(fields)
    with connection.cursor() as cursor:
        statement = cursor.mogrify(sql, params)
        if isinstance(statement, bytes):
            statement = statement.decode()
        buffer = bytearray()
        with cursor.copy(f"COPY ({statement}) TO STDOUT (FORMAT BINARY)") as copy:
            for block in copy:
                buffer += block
    header = _COPY_HEADER + int.from_bytes(buffer[15:19], "big")  # and the header extension, if any
    body = len(buffer) - header - 2
    if buffer[:11] != COPY_SIGNATURE or buffer[-2:] != b"\xff\xff" or body % row.itemsize:
        raise CopyFormatError(f"unexpected binary COPY stream of {len(buffer)} bytes")
    data = np.frombuffer(buffer, dtype=row, count=body // row.itemsize, offset=header)
    lengths = [data["id_length"], *(data[f"length_{i}"] for i in range(float_columns))]
    if (data["count"] != 1 + float_columns).any() or any((length != 8).any() for length in lengths):
        raise CopyFormatError("a row of the binary COPY stream has a NULL or a column of another width")
    values = np.empty((len(data), float_columns), dtype=np.float64)
    for i in range(float_columns):
        values[:, i] = data[f"value_{i}"]
    return data["id"].astype(np.int64), values


@dataclass
class FeatureTable:
    """Every contact's features at a moment: `values[i]` are contact `ids[i]`'s, in `names` order."""

    as_of: dt.datetime
    ids: np.ndarray  # int64, ascending
    has_events: np.ndarray  # bool: the contact had any event before `as_of`
    values: np.ndarray  # float64, (contacts, features)
    names: tuple[str, ...] = FEATURE_NAMES

    def __len__(self) -> int:
        return len(self.ids)

    def columns(self, names: list[str] | tuple[str, ...]) -> np.ndarray:
        """The values of these features, in this order (a model's own list)."""
        index = {name: i for i, name in enumerate(self.names)}
        return self.values[:, [index[name] for name in names]]

    def column(self, name: str) -> np.ndarray:
        return self.values[:, self.names.index(name)]

    def subset(self, rows: np.ndarray) -> FeatureTable:
        """These rows only (a boolean mask or positions)."""
        return FeatureTable(
            as_of=self.as_of, ids=self.ids[rows], has_events=self.has_events[rows], values=self.values[rows]
        )


def features_read(*, as_of: dt.datetime, contact_ids: list[int] | None = None) -> FeatureTable:
    """The features of every contact not erased (or of `contact_ids`) as of `as_of`."""
    params: dict = {"as_of": as_of}
    where = {"contacts": "", "event_contacts": "", "consent_contacts": ""}
    if contact_ids is not None:
        params["ids"] = list(contact_ids)
        where = {
            "contacts": "AND c.id = ANY(%(ids)s)",
            "event_contacts": "AND contact_id = ANY(%(ids)s)",
            "consent_contacts": "AND contact_id = ANY(%(ids)s)",
        }
    sql = FEATURES_SQL.format(
        **_TABLES, **where, features=", ".join(f"({feature.sql})::float8" for feature in FEATURES)
    )
    ids, values = _read_binary(sql, params, 1 + len(FEATURES))
    return FeatureTable(as_of=as_of, ids=ids, has_events=values[:, 0] > 0, values=values[:, 1:])


@dataclass
class Outcomes:
    """What each contact did in [start, end): bought at all, and for how much."""

    ids: np.ndarray
    bought: np.ndarray  # bool
    revenue: np.ndarray  # float64


def outcomes_read(*, ids: np.ndarray, start: dt.datetime, end: dt.datetime) -> Outcomes:
    """The outcome of each contact of `ids` (ascending) in [start, end), in the same order. A
    contact gone since (merged into another) reads as having done nothing."""
    found, values = _read_binary(OUTCOMES_SQL.format(**_TABLES), {"start": start, "end": end}, 2)
    position = np.clip(np.searchsorted(found, ids), 0, max(len(found) - 1, 0))
    known = (found[position] == ids) if len(found) else np.zeros(len(ids), dtype=bool)
    bought = np.where(known, values[position, 0] > 0, False) if len(found) else known
    revenue = np.where(known, values[position, 1], 0.0) if len(found) else np.zeros(len(ids))
    return Outcomes(ids=ids, bought=bought, revenue=revenue)
