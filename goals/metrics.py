"""The KPI catalogue: each metric defined once, computed in one SQL query over the data layer.

A metric is measured for a scope (the contacts of a segment, or everyone) over a window of
time, [start, end). It gives a numerator and a denominator; the value is their ratio in the
metric's unit, or None ("no data") when there is nothing to divide by, never a division by zero.

The queries read the events of the window through `event_type_time_idx` (type, occurred_at,
with contact and value included), so a day's snapshot reads one window of one event type, and
join it to the scope's contacts by a hash join. A join, not `IN (SELECT id FROM scope)`: the
planner cannot see how many distinct ids a CTE holds, guesses 200, and then probes the events
index once per scope contact (187,000 probes, 5 s, instead of one pass over the window).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import connection
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from goals.models import Metric

HUNDRED = Decimal(100)
FOUR_PLACES = Decimal("0.0001")  # as the KPI values are stored (decimal_places=4)


@dataclass(frozen=True)
class Window:
    """A stretch of time, [start, end), and for churn the stretch before it."""

    start: dt.datetime
    end: dt.datetime


@dataclass(frozen=True)
class Measured:
    value: Decimal | None
    numerator: Decimal
    denominator: Decimal


@dataclass(frozen=True)
class Scope:
    """The contacts a KPI is measured on, as SQL selecting their ids, with its parameters."""

    sql: str
    params: Sequence[Any]


# What a metric counts: its numerator and denominator (contacts, orders, euros, responses).
Counts = tuple[Any, Any]


@dataclass(frozen=True)
class MetricDefinition:
    key: Metric
    unit: str  # percent, money, number, score or nps: how the value is read and shown
    higher_is_better: bool
    definition: Promise
    counts: Callable[[Scope, Window, str], Counts]

    @property
    def scale(self) -> Decimal:
        """Percentages and NPS are shares times 100; amounts, numbers and scores are plain ratios."""
        return HUNDRED if self.unit in ("percent", "nps") else Decimal(1)

    def ratio(self, numerator: Any, denominator: Any) -> Measured:
        """The value of a numerator and denominator in this metric's unit: None when there is
        nothing to divide by."""
        numerator, denominator = Decimal(numerator or 0), Decimal(denominator or 0)
        value = None if denominator == 0 else (numerator * self.scale / denominator).quantize(FOUR_PLACES)
        return Measured(value=value, numerator=numerator, denominator=denominator)

    def measure(self, scope: Scope, window: Window, channel: str) -> Measured:
        return self.ratio(*self.counts(scope, window, channel))


def _fetch(scope: Scope, sql: str, params: Sequence[Any]) -> tuple:
    """One row of a query over the scope's contacts, which it reads as the CTE `scope(id)`.
    The scope's SQL is the ORM's own, with its values as parameters."""
    query = f"WITH scope (id) AS MATERIALIZED ({scope.sql}) {sql}"
    with connection.cursor() as cursor:
        cursor.execute(query, [*scope.params, *params])
        return cursor.fetchone()


def _purchases(scope: Scope, window: Window) -> tuple[int, int, int, int, Decimal]:
    """The scope's contacts, how many of them bought in the window, their orders, the orders with
    a value, and the revenue."""
    row = _fetch(
        scope,
        """
        , bought AS (
            SELECT e.contact_id, count(*) AS orders, count(e.value) AS valued, coalesce(sum(e.value), 0) AS revenue
            FROM audiences_event e
            WHERE e.type = 'purchase' AND e.occurred_at >= %s AND e.occurred_at < %s
            GROUP BY e.contact_id
        )
        SELECT (SELECT count(*) FROM scope), count(*), coalesce(sum(orders), 0), coalesce(sum(valued), 0),
               coalesce(sum(revenue), 0)
        FROM bought JOIN scope ON scope.id = bought.contact_id
        """,
        [window.start, window.end],
    )
    return row[0], row[1], row[2], row[3], row[4]


def conversion_rate(scope: Scope, window: Window, channel: str) -> Counts:
    contacts, buyers, _orders, _valued, _revenue = _purchases(scope, window)
    return buyers, contacts


def revenue_per_contact(scope: Scope, window: Window, channel: str) -> Counts:
    contacts, _buyers, _orders, _valued, revenue = _purchases(scope, window)
    return revenue, contacts


def average_order_value(scope: Scope, window: Window, channel: str) -> Counts:
    # A purchase without a value (an import that left it out) is not an order worth nothing.
    _contacts, _buyers, _orders, valued, revenue = _purchases(scope, window)
    return revenue, valued


def purchase_frequency(scope: Scope, window: Window, channel: str) -> Counts:
    _contacts, buyers, orders, _valued, _revenue = _purchases(scope, window)
    return orders, buyers


def churn_rate(scope: Scope, window: Window, channel: str) -> Counts:
    """Of the scope's contacts who bought in the window before this one (as long), the share
    who did not buy in this one: "no purchase within N days"."""
    before = window.start - (window.end - window.start)
    row = _fetch(
        scope,
        """
        , customers AS (
            SELECT DISTINCT e.contact_id FROM audiences_event e
            WHERE e.type = 'purchase' AND e.occurred_at >= %s AND e.occurred_at < %s
        ),
        stayed AS (
            SELECT DISTINCT e.contact_id FROM audiences_event e
            WHERE e.type = 'purchase' AND e.occurred_at >= %s AND e.occurred_at < %s
        )
        SELECT count(*) FILTER (WHERE stayed.contact_id IS NULL), count(*)
        FROM customers
        JOIN scope ON scope.id = customers.contact_id
        LEFT JOIN stayed ON stayed.contact_id = customers.contact_id
        """,
        [before, window.start, window.start, window.end],
    )
    return row[0], row[1]


def opt_in_rate(scope: Scope, window: Window, channel: str) -> Counts:
    """The share of the scope's contacts whose consent for the channel was granted at the window's end.

    The current consent (one row per contact and channel) answers for every contact whose
    consent last changed before then; only those with a later change are looked up in the history.
    """
    row = _fetch(
        scope,
        """
                SELECT count(*) FILTER (
            WHERE CASE
                WHEN k.contact_id IS NULL THEN NULL
                WHEN k.changed_at < %s THEN k.status
                ELSE (
                    SELECT c.status FROM audiences_consentchange c
                    WHERE c.contact_id = scope.id AND c.channel = %s AND c.recorded_at < %s
                    ORDER BY c.recorded_at DESC
                    LIMIT 1
                )
            END = 'granted'
        ), count(*)
        FROM scope
        LEFT JOIN audiences_consent k ON k.contact_id = scope.id AND k.channel = %s
        """,
        [window.end, channel, window.end, channel],
    )
    return row[0], row[1]


def _email_engagement(scope: Scope, window: Window) -> tuple[int, int, int]:
    row = _fetch(
        scope,
        """
        , engaged AS (
            SELECT e.contact_id, bool_or(e.type = 'email_clicked') AS clicked
            FROM audiences_event e
            WHERE e.type IN ('email_opened', 'email_clicked') AND e.occurred_at >= %s AND e.occurred_at < %s
            GROUP BY e.contact_id
        )
        SELECT (SELECT count(*) FROM scope), count(*), count(*) FILTER (WHERE clicked)
        FROM engaged JOIN scope ON scope.id = engaged.contact_id
        """,
        [window.start, window.end],
    )
    return row[0], row[1], row[2]


def email_open_rate(scope: Scope, window: Window, channel: str) -> Counts:
    contacts, opened, _clicked = _email_engagement(scope, window)
    return opened, contacts


def email_click_rate(scope: Scope, window: Window, channel: str) -> Counts:
    _contacts, opened, clicked = _email_engagement(scope, window)
    return clicked, opened


def offer_acceptance_rate(scope: Scope, window: Window, channel: str) -> Counts:
    row = _fetch(
        scope,
        """
                SELECT count(*) FILTER (WHERE e.properties ->> 'outcome' = 'accepted'), count(*)
        FROM audiences_event e
        JOIN scope ON scope.id = e.contact_id
        WHERE e.type = 'call_outcome' AND e.occurred_at >= %s AND e.occurred_at < %s
          AND e.properties ->> 'outcome' IN ('accepted', 'declined')
        """,
        [window.start, window.end],
    )
    return row[0], row[1]


# A score property that is a plain number; anything else (text, a typo) is not counted.
_NUMBER = r"^[0-9]{1,3}(\.[0-9]+)?$"


def _scores(scope: Scope, window: Window, event_type: str, aggregates: str) -> tuple:
    return _fetch(
        scope,
        f"""
        , scores AS (
            SELECT (e.properties ->> 'score')::numeric AS score
            FROM audiences_event e
            JOIN scope ON scope.id = e.contact_id
            WHERE e.type = %s AND e.occurred_at >= %s AND e.occurred_at < %s
              AND e.properties ->> 'score' ~ %s
        )
        SELECT {aggregates} FROM scores WHERE score <= 10
        """,  # noqa: S608 - the aggregates are this module's constants
        [event_type, window.start, window.end, _NUMBER],
    )


def nps(scope: Scope, window: Window, channel: str) -> Counts:
    """Promoters (9 and 10) minus detractors (0 to 6), as a share of the responses: -100 to 100."""
    promoters_minus_detractors = "count(*) FILTER (WHERE score >= 9) - count(*) FILTER (WHERE score <= 6)"
    row = _scores(scope, window, "nps_response", f"{promoters_minus_detractors}, count(*)")
    return row[0], row[1]


def satisfaction(scope: Scope, window: Window, channel: str) -> Counts:
    row = _scores(scope, window, "satisfaction_response", "coalesce(sum(score), 0), count(*)")
    return row[0], row[1]


CATALOGUE: dict[str, MetricDefinition] = {
    each.key: each
    for each in [
        MetricDefinition(
            Metric.CONVERSION_RATE,
            "percent",
            True,
            _("The share of the contacts in scope who bought at least once in the period."),
            conversion_rate,
        ),
        MetricDefinition(
            Metric.REVENUE_PER_CONTACT,
            "money",
            True,
            _("The revenue of the period's purchases divided by the contacts in scope."),
            revenue_per_contact,
        ),
        MetricDefinition(
            Metric.AVERAGE_ORDER_VALUE,
            "money",
            True,
            _("The revenue of the period's purchases divided by their number (purchases without a value left out)."),
            average_order_value,
        ),
        MetricDefinition(
            Metric.PURCHASE_FREQUENCY,
            "number",
            True,
            _("Purchases per buying contact in the period."),
            purchase_frequency,
        ),
        MetricDefinition(
            Metric.CHURN_RATE,
            "percent",
            False,
            _("Of the contacts who bought in the N days before, the share with no purchase within the last N days."),
            churn_rate,
        ),
        MetricDefinition(
            Metric.OPT_IN_RATE,
            "percent",
            True,
            _("The share of the contacts in scope with consent for the channel at the end of the day."),
            opt_in_rate,
        ),
        MetricDefinition(
            Metric.EMAIL_OPEN_RATE,
            "percent",
            True,
            _("The share of the contacts in scope who opened an email in the period."),
            email_open_rate,
        ),
        MetricDefinition(
            Metric.EMAIL_CLICK_RATE,
            "percent",
            True,
            _("Of the contacts who opened an email in the period, the share who clicked."),
            email_click_rate,
        ),
        MetricDefinition(
            Metric.OFFER_ACCEPTANCE_RATE,
            "percent",
            True,
            _("Accepted offers as a share of the calls with an answer (accepted or declined) in the period."),
            offer_acceptance_rate,
        ),
        MetricDefinition(
            Metric.NPS,
            "nps",
            True,
            _("NPS responses in the period: the share of promoters (9-10) minus that of detractors (0-6)."),
            nps,
        ),
        MetricDefinition(
            Metric.SATISFACTION,
            "score",
            True,
            _("The average score of the satisfaction responses in the period."),
            satisfaction,
        ),
    ]
}
