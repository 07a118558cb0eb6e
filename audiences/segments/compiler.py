"""Segment rules compiled into one query over contacts.

Pure code: `compile_rules` builds a `Q` (with `Exists` and subquery expressions) and runs no
query. Applied to `Contact.objects`, it is one SQL statement. Referenced segments are loaded by
the `resolve_segment` function the caller passes in, so this module stays free of I/O.

Every value of the rules reaches SQL as a query parameter, attribute keys and property names
too; every operator comes from a fixed table here. Every condition is TRUE or FALSE, never
NULL, so that `not` means what it says for contacts that lack an attribute.

Set conditions (consent, identities, events, scores, other segments) are also compiled as the set
of contact ids they hold for (`_contact_ids`). An `any` of them becomes one `UNION` of those sets,
looked up by one `EXISTS`: at the top of the rules PostgreSQL turns that into a (hash) semi-join
and can drive from a small set into contacts by primary key; under an `or` or a `not` it hashes
the union once when it fits `work_mem`, and otherwise probes each branch by its index, contact
by contact, instead of re-reading the whole set per contact.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, TypeAlias
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import (
    Avg,
    BigIntegerField,
    BooleanField,
    Count,
    DecimalField,
    Exists,
    Expression,
    F,
    Func,
    JSONField,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    TextField,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils.translation import gettext as _

from audiences.models import Consent, Event, Identity, Score, Segment, SegmentMember

from .schema import (
    All,
    AnyOf,
    AttributeCondition,
    Comparison,
    ConsentCondition,
    EventCondition,
    FieldCondition,
    IdentityCondition,
    Node,
    Not,
    RuleError,
    Rules,
    Scalar,
    ScoreCondition,
    SegmentReference,
    is_number,
    parse_rules,
)

Resolver: TypeAlias = Callable[[int], "tuple[str, object] | None"]
"""A segment id → (kind, rules), or None when there is no such segment."""

# A date in the calendar, as ISO text: months of the right length, 29 February in leap years only.
# PostgreSQL's and Python's regular expressions both read it the same way ([0-9], not \d).
# The compiler checks dates by string functions (`_when_date`), tested to accept exactly this.
ISO_DATE_SQL_PATTERN = (
    r"^(?!0000)(?:"
    r"[0-9]{4}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)"
    r"|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29"
    r")$"
)

ANNIVERSARY = "anniversary_within_days"
# Every MM-DD of a leap year, as ISO dates write them.
_MONTH_DAYS = [(date(2024, 1, 1) + timedelta(days=offset)).strftime("%m-%d") for offset in range(366)]
_JSON = JSONField()
_TEXT: TextField[str, str] = TextField()
_ID: BigIntegerField[int, int] = BigIntegerField()
_Ids: TypeAlias = "Subquery | Sql"  # a subquery of contact ids: (SELECT contact_id ...)
_COMPARE_SQL = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_COMPARE_LOOKUP = {"eq": "exact", "gt": "gt", "gte": "gte", "lt": "lt", "lte": "lte", "between": "range"}
_EMPTY_AGGREGATE: dict[str, Decimal | int | None] = {
    "count": 0,
    "sum": Decimal(0),
    "avg": None,
    "max": None,
    "min": None,
}


class Sql(Func):
    """A fragment of SQL written here, with `{0}`, `{1}`... standing for compiled expressions.

    The template is never built from rule values: those come in as `Value`s, i.e. parameters.
    """

    def __init__(self, template: str, *expressions: Any, output_field: Any = None) -> None:
        super().__init__(*expressions, output_field=output_field or BooleanField())
        self.sql_template = template

    def as_sql(
        self,
        compiler: Any,
        connection: Any,
        function: str | None = None,
        template: str | None = None,
        arg_joiner: str | None = None,
        **extra_context: Any,
    ) -> tuple[str, list[Any]]:
        compiled = [compiler.compile(expression) for expression in self.get_source_expressions()]
        params: list[Any] = []

        def fill(match: re.Match[str]) -> str:
            sql, expression_params = compiled[int(match.group(1))]
            params.extend(expression_params)
            return str(sql)

        return re.sub(r"\{(\d+)\}", fill, self.sql_template), params


@dataclass(frozen=True, slots=True)
class _Context:
    now: datetime
    today: date
    time_zone: ZoneInfo
    resolve_segment: Resolver
    segments: tuple[int, ...]  # the segments being inlined, outermost first: a cycle's trail
    anchor: str | None  # the path, in the rules compiled, of the reference being followed
    # For one contact at a time (the next-best offer): every condition a lookup by the contact.
    per_contact: bool = False


def compile_rules(
    rules: Rules | Mapping[str, Any] | str,
    *,
    now: datetime,
    resolve_segment: Resolver,
    segment_id: int | None = None,
    time_zone: str | None = None,
    per_contact: bool = False,
) -> Q:
    """The condition on contacts that the rules describe, or RuleError.

    `now` is the moment "the last 30 days" count back from; "today" is its date in `time_zone`
    (the marketeer's, settings.TIME_ZONE). `segment_id` is the segment these rules belong to,
    so that a reference back to it is refused as a cycle.

    `per_contact` compiles for a query about one contact (or a few), such as whether a caller is
    in each offer's segment: every condition becomes a lookup by that contact (an aggregate of
    events one correlated subquery over the contact's own events, an `any` of sets plain ORs),
    where the default form computes sets over all contacts once, which suits a whole segment.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    parsed = rules if isinstance(rules, Rules) else parse_rules(rules)
    zone = ZoneInfo(time_zone or settings.TIME_ZONE)
    resolved: dict[int, tuple[str, object] | None] = {}

    def resolve_once(segment_id: int) -> tuple[str, object] | None:
        # A reference may be looked at twice (as a set, then as a condition): read it once.
        if segment_id not in resolved:
            resolved[segment_id] = resolve_segment(segment_id)
        return resolved[segment_id]

    context = _Context(
        now=now,
        today=now.astimezone(zone).date(),
        time_zone=zone,
        resolve_segment=resolve_once,
        segments=(segment_id,) if segment_id is not None else (),
        anchor=None,
        per_contact=per_contact,
    )
    return _node(parsed.root, context)


def _node(node: Node, context: _Context) -> Q:
    compile_node: Callable[[Any, _Context], Q] = _COMPILERS[type(node)]
    return compile_node(node, context)


# --- Groups ----------------------------------------------------------------------------------


def _all(node: All, context: _Context) -> Q:
    condition = Q()
    for child in node.nodes:
        condition &= _node(child, context)
    return condition


def _any(node: AnyOf, context: _Context) -> Q:
    """OR. Its branches that are sets of contacts become one UNION looked up once (see the module's
    docstring) instead of a correlated subplan each; the other branches are ORed to that."""
    sets: dict[int, _Ids] = {}
    for index, child in enumerate(node.nodes):
        ids = None if context.per_contact else _contact_ids(child, context)
        if ids is not None:
            sets[index] = ids
    if len(sets) < 2:
        conditions = [_node(child, context) for child in node.nodes]
    else:
        conditions = [_member_of(_union(list(sets.values())))]
        conditions += [_node(child, context) for index, child in enumerate(node.nodes) if index not in sets]
    condition = conditions[0]
    for other in conditions[1:]:
        condition |= other
    return condition


def _not(node: Not, context: _Context) -> Q:
    return ~_node(node.node, context)


# --- Contact fields --------------------------------------------------------------------------


def _field(node: FieldCondition, context: _Context) -> Q:
    if node.field == "created_at":
        return _moment_field(node.field, node.comparison, context)
    return _text_field(node.field, node.comparison)


def _text_field(field: str, comparison: Comparison) -> Q:
    # `field` is one of schema.TEXT_FIELDS, never the marketeer's text.
    op, value = comparison.op, comparison.value
    lookups: dict[str, tuple[str, object]] = {
        "eq": ("exact", value),
        "neq": ("exact", value),
        "in": ("in", value),
        "not_in": ("in", value),
        "contains": ("icontains", value),
        "is_set": ("exact", ""),
        "is_not_set": ("exact", ""),
    }
    lookup, argument = lookups[op]
    condition = Q(**{f"{field}__{lookup}": list(argument) if isinstance(argument, tuple) else argument})
    return ~condition if op in ("neq", "not_in", "is_set") else condition


def _moment_field(field: str, comparison: Comparison, context: _Context) -> Q:
    """A date and time field compared by its date in the marketeer's time zone: each date
    becomes the moment its day starts, so the comparison can use an index."""
    op, value = comparison.op, comparison.value

    def day_starts(day: date) -> datetime:
        return datetime.combine(day, time(), tzinfo=context.time_zone)

    def on_or_after(day: date) -> Q:
        return Q(**{f"{field}__gte": day_starts(day)})

    def before(day: date) -> Q:
        return Q(**{f"{field}__lt": day_starts(day)})

    one_day = timedelta(days=1)
    if op == ANNIVERSARY:
        assert isinstance(value, int)  # noqa: S101 - the schema's promise
        local_day = Sql("to_char(timezone({0}, {1}), 'MM-DD')", Value(str(context.time_zone)), F(field))
        return Q(Sql("{0} = ANY({1}::text[])", local_day, Value(_anniversary_days(context.today, value))))
    if op in ("more_than_days_ago", "less_than_days_ago"):
        assert isinstance(value, int)  # noqa: S101 - the schema's promise
        cutoff = context.today - timedelta(days=value)
        if op == "more_than_days_ago":
            return before(cutoff)
        return on_or_after(cutoff + one_day) & before(context.today + one_day)
    if op == "between":
        assert isinstance(value, tuple)  # noqa: S101 - the schema's promise
        low, high = (date.fromisoformat(str(day)) for day in value)
        return on_or_after(low) & before(high + one_day)
    day = date.fromisoformat(str(value))
    conditions = {
        "eq": on_or_after(day) & before(day + one_day),
        "neq": ~(on_or_after(day) & before(day + one_day)),
        "gt": on_or_after(day + one_day),
        "gte": on_or_after(day),
        "lt": before(day),
        "lte": before(day + one_day),
    }
    return conditions[op]


def _anniversary_days(today: date, days: int) -> list[str]:
    """The `MM-DD`s of today and the coming days. In a year without 29 February, a date on
    29 February has its anniversary on the 28th."""
    month_days: list[str] = []
    for offset in range(days + 1):
        day = today + timedelta(days=offset)
        month_days.append(day.strftime("%m-%d"))
        if day.month == 2 and day.day == 28 and not _is_leap(day.year):
            month_days.append("02-29")
    return sorted(set(month_days))


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


# --- JSON values: attributes of contacts, properties of events --------------------------------


def _attribute(node: AttributeCondition, context: _Context) -> Q:
    return _json_condition("attributes", node.key, node.comparison, context)


# Event properties that PostgreSQL also keeps as a generated column (`properties ->> key`):
# conditions on them read the column, which the purchases' category index covers.
COLUMN_PROPERTIES = {"category": "category"}


def _json_condition(column: str, key: str, comparison: Comparison, context: _Context, *, text_index: bool = False) -> Q:
    """A condition on one key of a JSON object column. `column` is ours; the key is a parameter.

    With `text_index`, equality with text also compares `column ->> key` as text, so that an index
    on that expression (the purchases' category) can find the rows; the JSON test beside it keeps
    the exact meaning (the text "5" is not the number 5)."""
    op, value = comparison.op, comparison.value
    json_value = Sql("({0} -> {1}::text)", F(column), Value(key), output_field=_JSON)
    json_text = Sql("({0} ->> {1}::text)", F(column), Value(key), output_field=_TEXT)
    if column == "properties" and key in COLUMN_PROPERTIES:
        # The same text, stored by PostgreSQL in a column of its own that an index covers.
        json_text = Sql("{0}", F(COLUMN_PROPERTIES[key]), output_field=_TEXT)
    negated = op in ("neq", "not_in", "is_not_set")
    positive = {"neq": "eq", "not_in": "in", "is_not_set": "is_set"}.get(op, op)

    if positive == "eq":
        # Containment: 5 equals 5.0, "5" does not equal 5, and a GIN index on the column serves it.
        assert value is not None and not isinstance(value, tuple)  # noqa: S101 - the schema's promise
        condition: Expression = Sql("({0} @> {1}::jsonb)", F(column), Value(_json_object(key, value)))
        if text_index and isinstance(value, str):
            # A missing key gives NULL: false for a negated test (NOT NULL would drop the row),
            # left bare otherwise so that the index on the column can serve it.
            as_text = Sql("COALESCE({0} = {1}, false)" if negated else "{0} = {1}", json_text, Value(value))
            # `->>` gives a string's text, and any other value as JSON text ("5", "true", "[1]"):
            # text that is not JSON can only come from a string, and the text test is exact alone.
            condition = as_text if not _is_json(value) else Sql("({0} AND {1})", as_text, condition)
    elif positive == "in":
        assert isinstance(value, tuple)  # noqa: S101 - the schema's promise
        values = [_json_scalar(item) for item in value]
        condition = Sql("COALESCE({0} = ANY({1}::jsonb[]), false)", json_value, Value(values))
        if text_index and all(isinstance(item, str) for item in value):
            template = "COALESCE({0} = ANY({1}::text[]), false)" if negated else "{0} = ANY({1}::text[])"
            as_text = Sql(template, json_text, Value(list(value)))
            if any(_is_json(str(item)) for item in value):
                as_text = Sql("({0} AND {1})", as_text, condition)
            condition = as_text
    elif positive == "is_set":
        condition = Sql("COALESCE({0} NOT IN ('null', '\"\"', '[]', '{}'), false)", json_value)
    elif op == "contains":
        pattern = "%" + _escape_like(str(value)) + "%"
        condition = _when_string(json_value, Sql("{0} ILIKE {1}", json_text, Value(pattern)))
    elif op in _COMPARE_SQL or op == "between":
        condition = _json_ordered(json_value, json_text, op, value)
    elif op == ANNIVERSARY:
        assert isinstance(value, int)  # noqa: S101 - the schema's promise
        month_day = Sql("substr({0}, 6, 5)", json_text, output_field=_TEXT)
        days = Value(_anniversary_days(context.today, value))
        condition = _when_date(json_text, Sql("{0} = ANY({1}::text[])", month_day, days))
    else:  # more_than_days_ago, less_than_days_ago
        assert isinstance(value, int)  # noqa: S101 - the schema's promise
        cutoff = Value((context.today - timedelta(days=value)).isoformat())
        if op == "more_than_days_ago":
            test = Sql('{0} COLLATE "C" < {1}', json_text, cutoff)
        else:
            test = Sql(
                '{0} COLLATE "C" > {1} AND {0} COLLATE "C" <= {2}', json_text, cutoff, Value(context.today.isoformat())
            )
        condition = _when_date(json_text, test)
    return ~Q(condition) if negated else Q(condition)


def _json_ordered(json_value: Expression, json_text: Expression, op: str, value: Any) -> Expression:
    """gt, gte, lt, lte, between: numbers with numbers, ISO dates with ISO dates (as text in the
    C collation, which orders them by date); a value of another type never matches."""
    bounds = value if op == "between" else (value,)
    if is_number(bounds[0]):
        number = Sql("({0})::numeric", json_text, output_field=DecimalField())
        test = _compare(number, op, bounds)
        return Sql("CASE WHEN jsonb_typeof({0}) = 'number' THEN {1} ELSE false END", json_value, test)
    text = Sql('{0} COLLATE "C"', json_text, output_field=_TEXT)
    return _when_date(json_text, _compare(text, op, bounds))


def _compare(left: Expression, op: str, bounds: tuple[Any, ...]) -> Expression:
    params = [Value(bound) for bound in bounds]
    if op == "between":
        return Sql("{0} BETWEEN {1} AND {2}", left, *params)
    return Sql(f"{{0}} {_COMPARE_SQL[op]} {{1}}", left, *params)


def _when_string(json_value: Expression, test: Expression) -> Expression:
    return Sql("CASE WHEN jsonb_typeof({0}) = 'string' THEN {1} ELSE false END", json_value, test)


def _when_date(json_text: Expression, test: Expression) -> Expression:
    """`test` on the text, holding only when the value is an ISO date of the calendar.

    Exactly what ISO_DATE_SQL_PATTERN accepts, but by plain string functions, the test first (a
    comparison of text, harmless on any text): a regular expression costs about 2 microseconds a
    contact, 2 s on a million of them, these about a third. Only a JSON string can have the shape
    `____-__-__` as `->>` text (numbers, true, objects and arrays cannot), so no type check is needed.
    `MM-DD` is looked up among the days of a leap year (a hashed list); 29 February then needs a
    leap year, whose number is read only once its four characters are known to be digits.
    """
    year = Sql("left({0}, 4)", json_text, output_field=_TEXT)
    month_day = Sql("substr({0}, 6, 5)", json_text, output_field=_TEXT)
    return Sql(
        "CASE WHEN {0} AND {1} LIKE '____-__-__' AND ltrim({2}, '0123456789') = '' AND {2} <> '0000'"
        " AND {3} = ANY({4}::text[])"
        " THEN ({3} <> '02-29' OR (mod(({2})::int, 4) = 0 AND (mod(({2})::int, 100) <> 0 OR mod(({2})::int, 400) = 0)))"
        " ELSE false END",
        test,
        json_text,
        year,
        month_day,
        Value(_MONTH_DAYS),
    )


def _json_scalar(value: Scalar) -> str:
    if isinstance(value, bool | str):
        return json.dumps(value)
    return str(value)  # int or Decimal: JSON's own notation, exact


def _json_object(key: str, value: Scalar) -> str:
    return "{" + json.dumps(key) + ": " + _json_scalar(value) + "}"


def _is_json(text: str) -> bool:
    """Whether the text is JSON, i.e. what `->>` could give for a value that is not a string."""
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# --- Events ----------------------------------------------------------------------------------


def _events(node: EventCondition, context: _Context) -> QuerySet[Event]:
    """The events the condition looks at. The type is compared as it is written (a literal once
    bound), so that the partial index on purchases by category serves `type = 'purchase'`."""
    events = Event.objects.filter(type=node.event_type)
    if node.within_days is not None:
        events = events.filter(occurred_at__gte=context.now - timedelta(days=node.within_days))
    for prop in node.where:
        events = events.filter(_json_condition("properties", prop.key, prop.comparison, context, text_index=True))
    return events


def _at_least_once(node: EventCondition) -> bool | None:
    """True for "did it" (count >= 1), False for "did not" (count = 0), None for other aggregates."""
    if node.aggregate != "count":
        return None
    op_value = (node.comparison.op, node.comparison.value)
    if op_value in (("gte", 1), ("gt", 0), ("neq", 0)):
        return True
    if op_value in (("eq", 0), ("lt", 1), ("lte", 0)):
        return False
    return None


def _event(node: EventCondition, context: _Context) -> Q:
    events = _events(node, context)
    did = _at_least_once(node)
    if did is not None:
        exists = Q(Exists(events.filter(contact=OuterRef("pk"))))
        return exists if did else ~exists

    holds = _amount_condition(node.comparison)
    if context.per_contact:
        # The contact's own events, aggregated (event_contact_type_time_idx): one row or none.
        own = events.filter(contact=OuterRef("pk")).values("contact").annotate(amount=_aggregate(node))
        if not _holds_for(node.comparison, _EMPTY_AGGREGATE[node.aggregate]):
            return Q(Exists(own.filter(holds)))
        return ~Q(Exists(own.filter(~holds)))
    groups = events.values("contact").annotate(amount=_aggregate(node))
    if not _holds_for(node.comparison, _EMPTY_AGGREGATE[node.aggregate]):
        return Q(pk__in=groups.filter(holds).values("contact"))
    # A contact without matching events holds ("spent less than 100"): every contact but those
    # whose events fail. A derived table, so that PostgreSQL can plan an anti-join.
    failing = groups.filter(~holds).values("contact")
    return ~Q(
        Sql(
            'EXISTS (SELECT 1 FROM {0} AS "failing" ("contact_id") WHERE "failing"."contact_id" = {1})',
            Subquery(failing),
            F("pk"),
        )
    )


def _event_ids(node: EventCondition, context: _Context) -> _Ids | None:
    """The contacts with events that make the condition hold, or None when it also holds for
    contacts without any (then it is not a set of event rows)."""
    events = _events(node, context)
    did = _at_least_once(node)
    if did is not None:
        return Subquery(events.values("contact_id")) if did else None
    if _holds_for(node.comparison, _EMPTY_AGGREGATE[node.aggregate]):
        return None
    groups = events.values("contact").annotate(amount=_aggregate(node))
    return Subquery(groups.filter(_amount_condition(node.comparison)).values("contact"))


def _aggregate(node: EventCondition) -> Expression:
    if node.aggregate == "count":
        return Count("*")  # not count(id): an index without the id can answer it
    if node.property is None:
        amount: F | Sql = F("value")
    else:
        amount = Sql(
            "CASE WHEN jsonb_typeof({0}) = 'number' THEN ({1})::numeric END",
            Sql("({0} -> {1}::text)", F("properties"), Value(node.property), output_field=_JSON),
            Sql("({0} ->> {1}::text)", F("properties"), Value(node.property), output_field=_TEXT),
            output_field=DecimalField(),
        )
    if node.aggregate == "sum":
        return Coalesce(Sum(amount), Value(Decimal(0)), output_field=DecimalField())
    functions = {"avg": Avg, "max": Max, "min": Min}
    return functions[node.aggregate](amount, output_field=DecimalField())


def _amount_condition(comparison: Comparison) -> Q:
    value = comparison.value
    if comparison.op == "neq":
        return ~Q(amount=value)
    argument = list(value) if isinstance(value, tuple) else value
    return Q(**{f"amount__{_COMPARE_LOOKUP[comparison.op]}": argument})


def _holds_for(comparison: Comparison, amount: Decimal | int | None) -> bool:
    """Whether the comparison holds for the aggregate of no events (None: it has no value)."""
    if amount is None:
        return False
    value = comparison.value
    if comparison.op == "between":
        assert isinstance(value, tuple)  # noqa: S101 - the schema's promise
        return bool(value[0] <= amount <= value[1])  # type: ignore[operator]
    tests: dict[str, Callable[[Any, Any], bool]] = {
        "eq": lambda a, b: a == b,
        "neq": lambda a, b: a != b,
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }
    return tests[comparison.op](amount, value)


# --- Consent, identities, scores -------------------------------------------------------------


def _consent(node: ConsentCondition, context: _Context) -> Q:
    consents = Consent.objects.filter(contact=OuterRef("pk"), channel=node.channel)
    if node.status == "unknown":
        return ~Q(Exists(consents))
    return Q(Exists(consents.filter(status=node.status)))


def _identity(node: IdentityCondition, context: _Context) -> Q:
    has_one = Q(Exists(Identity.objects.filter(contact=OuterRef("pk"), kind=node.kind)))
    return has_one if node.present else ~has_one


def _scores(node: ScoreCondition) -> QuerySet[Score]:
    comparison = node.comparison
    value = comparison.value
    if comparison.op == "neq":
        test = ~Q(value=value)
    else:
        test = Q(**{f"value__{_COMPARE_LOOKUP[comparison.op]}": list(value) if isinstance(value, tuple) else value})
    return Score.objects.filter(test, name=node.name)


def _score(node: ScoreCondition, context: _Context) -> Q:
    return Q(Exists(_scores(node).filter(contact=OuterRef("pk"))))


# --- Other segments --------------------------------------------------------------------------


def _follow(node: SegmentReference, context: _Context) -> tuple[Node, _Context] | None:
    """The referenced segment: its rules and the context to compile them in, or None for a static
    segment (its list). RuleError for a segment that does not exist, bad rules or a cycle."""
    path = context.anchor or f"{node.path}.segment"
    segment_id = node.segment_id
    if segment_id in context.segments:
        trail = " → ".join(str(each) for each in (*context.segments, segment_id))
        raise RuleError.at(
            path,
            _("Segment %(id)s refers back to itself (%(trail)s): a segment cannot contain itself")
            % {"id": segment_id, "trail": trail},
        )
    found = context.resolve_segment(segment_id)
    if found is None:
        raise RuleError.at(path, _("There is no segment %(id)s") % {"id": segment_id})
    kind, rules = found
    if kind == Segment.Kind.STATIC:
        return None
    try:
        parsed = parse_rules(rules)
    except RuleError as error:
        raise RuleError.at(
            path, _("Segment %(id)s has rules that cannot be used: %(error)s") % {"id": segment_id, "error": error}
        ) from error
    return parsed.root, replace(context, segments=(*context.segments, segment_id), anchor=path)


def _segment(node: SegmentReference, context: _Context) -> Q:
    followed = _follow(node, context)
    if followed is None:
        members = SegmentMember.objects.filter(segment_id=node.segment_id, contact=OuterRef("pk"))
        return Q(Exists(members))
    root, inner = followed
    return _node(root, inner)


# --- Sets of contacts ------------------------------------------------------------------------


def _contact_ids(node: Node, context: _Context) -> _Ids | None:
    """The ids of the contacts the node holds for, as a subquery (`(SELECT contact_id ...)`), when
    it is a set condition: consent granted or withdrawn, an identity present, events that must be
    there, a score, a segment's list or rules made of these, and `any`/`all` of these. None for
    the others (fields, attributes, `not`, and what holds for contacts who have no rows)."""
    if isinstance(node, ConsentCondition):
        if node.status == "unknown":
            return None
        return Subquery(Consent.objects.filter(channel=node.channel, status=node.status).values("contact_id"))
    if isinstance(node, IdentityCondition):
        return Subquery(Identity.objects.filter(kind=node.kind).values("contact_id")) if node.present else None
    if isinstance(node, EventCondition):
        return _event_ids(node, context)
    if isinstance(node, ScoreCondition):
        return Subquery(_scores(node).values("contact_id"))
    if isinstance(node, SegmentReference):
        followed = _follow(node, context)
        if followed is None:
            return Subquery(SegmentMember.objects.filter(segment_id=node.segment_id).values("contact_id"))
        root, inner = followed
        return _contact_ids(root, inner)
    if isinstance(node, AnyOf | All):
        parts: list[_Ids] = []
        for child in node.nodes:
            ids = _contact_ids(child, context)
            if ids is None:
                return None
            parts.append(ids)
        if len(parts) == 1:
            return parts[0]
        return _union(parts) if isinstance(node, AnyOf) else _intersection(parts)
    return None


def _union(parts: list[_Ids]) -> _Ids:
    """`((SELECT ...) UNION (SELECT ...))`: a set, so that its size is estimated as one."""
    template = "(" + " UNION ".join(f"{{{index}}}" for index in range(len(parts))) + ")"
    return Sql(template, *parts, output_field=_ID)


def _intersection(parts: list[_Ids]) -> _Ids:
    """The contacts in every part: the first part's ids, each looked up in the others by a
    correlated EXISTS, which PostgreSQL plans as semi-joins (by index, or hashed), where an
    INTERSECT would read every part in full."""
    # Only placeholders are put together here; what fills them is compiled SQL with parameters.
    lookup = 'EXISTS (SELECT 1 FROM {%d} AS "also" ("contact_id") WHERE "also"."contact_id" = "ids"."contact_id")'
    lookups = " AND ".join(lookup % index for index in range(1, len(parts)))
    template = '(SELECT "ids"."contact_id" FROM {0} AS "ids" ("contact_id") WHERE ' + lookups + ")"  # noqa: S608 - placeholders only
    return Sql(template, *parts, output_field=_ID)


def _member_of(ids: _Ids) -> Q:
    """The contact is one of `ids`: a correlated EXISTS over the set, which PostgreSQL turns into a
    semi-join at the top of the rules, and elsewhere into a hashed lookup or an indexed probe."""
    return Q(Sql('EXISTS (SELECT 1 FROM {0} AS "ids" ("contact_id") WHERE "ids"."contact_id" = {1})', ids, F("pk")))


_COMPILERS: dict[type, Callable[[Any, _Context], Q]] = {
    All: _all,
    AnyOf: _any,
    Not: _not,
    FieldCondition: _field,
    AttributeCondition: _attribute,
    EventCondition: _event,
    ConsentCondition: _consent,
    IdentityCondition: _identity,
    ScoreCondition: _score,
    SegmentReference: _segment,
}
