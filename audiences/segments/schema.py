"""The segment rule format (version 1, docs/segment-rules.md): parsed and validated into typed nodes.

Pure code, no I/O. `parse_rules` takes the JSON (a dict, or its text) and returns a `Rules`
tree, or raises `RuleError` listing every problem found, each with the path of the node
(`root.all.1.any.0.within_days`) and a message for the marketeer.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, TypeAlias

from django.utils.translation import gettext as _

from audiences.models import Channel, Event, Identity
from audiences.values import json_value_problem

VERSION = 1
MAX_DEPTH = 32
MAX_LIST = 1000
MAX_KEY_LENGTH = 200
MAX_DAYS = 36_600  # a century, so that "today minus N days" stays a real date
MAX_ANNIVERSARY_DAYS = 366
FIRST_DATE = date(1000, 1, 1)
LAST_DATE = date(9999, 12, 30)

# Python's \d also matches non-ASCII digits; dates are ASCII.
ISO_DATE_SHAPE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
SCORE_NAME = re.compile(r"^[-a-zA-Z0-9_]{1,64}$")

Number: TypeAlias = int | Decimal
Scalar: TypeAlias = str | int | Decimal | bool

TEXT_FIELDS = ("first_name", "last_name", "locale", "timezone")
DATE_FIELDS = ("created_at",)
FIELDS = TEXT_FIELDS + DATE_FIELDS

EQUALITY_OPS = ("eq", "neq")
LIST_OPS = ("in", "not_in")
COMPARISON_OPS = ("gt", "gte", "lt", "lte")
PRESENCE_OPS = ("is_set", "is_not_set")
DAYS_AGO_OPS = ("more_than_days_ago", "less_than_days_ago")
ANNIVERSARY_OP = "anniversary_within_days"

TEXT_FIELD_OPS = (*EQUALITY_OPS, *LIST_OPS, "contains", *PRESENCE_OPS)
DATE_FIELD_OPS = (*EQUALITY_OPS, *COMPARISON_OPS, "between", *DAYS_AGO_OPS, ANNIVERSARY_OP)
ATTRIBUTE_OPS = (
    *EQUALITY_OPS,
    *LIST_OPS,
    "contains",
    *COMPARISON_OPS,
    "between",
    *PRESENCE_OPS,
    *DAYS_AGO_OPS,
    ANNIVERSARY_OP,
)
PROPERTY_OPS = (*EQUALITY_OPS, *LIST_OPS, "contains", *COMPARISON_OPS, "between", *PRESENCE_OPS)
NUMBER_OPS = (*EQUALITY_OPS, *COMPARISON_OPS, "between")
AGGREGATES = ("count", "sum", "avg", "max", "min")
CONSENT_STATUSES = ("granted", "withdrawn", "unknown")

GROUP_KEYS = ("all", "any", "not")
CONDITION_KEYS = ("field", "attribute", "event", "consent", "identity", "score", "segment")
NODE_KEYS = GROUP_KEYS + CONDITION_KEYS


# --- The nodes -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class All:
    nodes: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    nodes: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    node: Node


@dataclass(frozen=True, slots=True)
class Comparison:
    """An operator and its value, already checked against each other.

    `value` is a scalar (eq, neq, contains, gt...: text, a number or a boolean; ISO dates stay
    text), a tuple (in, not_in: the list; between: low and high), a whole number of days
    (days ago, anniversary) or None (is_set, is_not_set).
    """

    op: str
    value: Scalar | tuple[Scalar, ...] | None


@dataclass(frozen=True, slots=True)
class FieldCondition:
    field: str
    comparison: Comparison


@dataclass(frozen=True, slots=True)
class AttributeCondition:
    key: str
    comparison: Comparison


@dataclass(frozen=True, slots=True)
class PropertyFilter:
    key: str
    comparison: Comparison


@dataclass(frozen=True, slots=True)
class EventCondition:
    event_type: str
    where: tuple[PropertyFilter, ...]
    within_days: int | None
    aggregate: str
    property: str | None
    comparison: Comparison


@dataclass(frozen=True, slots=True)
class ConsentCondition:
    channel: str
    status: str


@dataclass(frozen=True, slots=True)
class IdentityCondition:
    kind: str
    present: bool


@dataclass(frozen=True, slots=True)
class ScoreCondition:
    name: str
    comparison: Comparison


@dataclass(frozen=True, slots=True)
class SegmentReference:
    segment_id: int
    path: str  # where the reference stands, for the errors found when it is followed


Node: TypeAlias = (
    All
    | AnyOf
    | Not
    | FieldCondition
    | AttributeCondition
    | EventCondition
    | ConsentCondition
    | IdentityCondition
    | ScoreCondition
    | SegmentReference
)


@dataclass(frozen=True, slots=True)
class Rules:
    version: int
    root: Node


# --- Errors ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class RuleError(ValueError):
    """Rules that cannot be used. `problems` lists every one found; `path` and `message` are the first's."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        if not problems:
            raise ValueError("a RuleError needs at least one problem")
        self.problems = tuple(problems)
        super().__init__("; ".join(str(problem) for problem in self.problems))

    @classmethod
    def at(cls, path: str, message: str) -> RuleError:
        return cls([Problem(path, message)])

    @property
    def path(self) -> str:
        return self.problems[0].path

    @property
    def message(self) -> str:
        return self.problems[0].message


class _Invalid(Exception):
    """A node that cannot be parsed further; its problem is already recorded."""


def show(value: object) -> str:
    """A value as the marketeer wrote it, shortened."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    if isinstance(value, str):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def iso_date(value: object) -> date | None:
    """The date an ISO `YYYY-MM-DD` text stands for, or None."""
    if not isinstance(value, str) or not ISO_DATE_SHAPE.match(value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def is_number(value: object) -> bool:
    return isinstance(value, int | Decimal) and not isinstance(value, bool)


# --- The parser ------------------------------------------------------------------------------


def parse_rules(data: object) -> Rules:
    """Rules from their JSON (a dict, or its text), or RuleError naming every problem."""
    parser = _Parser()
    rules = parser.parse(data)
    if parser.problems or rules is None:
        raise RuleError(parser.problems or [Problem("", _("The rules could not be read."))])
    return rules


def _join(path: str, key: str | int) -> str:
    return f"{path}.{key}" if path else str(key)


class _Parser:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def fail(self, path: str, message: str) -> _Invalid:
        self.problems.append(Problem(path, message))
        return _Invalid()

    # The document

    def parse(self, data: object) -> Rules | None:
        if isinstance(data, str | bytes):
            try:
                data = json.loads(data, parse_float=Decimal, parse_constant=_refuse_constant)
            except (ValueError, RecursionError) as error:
                self.fail("", _("The rules are not valid JSON: %(error)s") % {"error": error})
                return None
        # Values PostgreSQL cannot compare (NUL characters, numbers beyond any amount) are
        # refused here, not found by a failing query when the segment is used.
        problem = json_value_problem(data, max_depth=4 * MAX_DEPTH + 8)
        if problem:
            path, message = problem
            self.fail(path, message)
            return None
        try:
            return self.document(_decimals(data))
        except _Invalid:
            return None
        except RecursionError:
            self.fail("", _("The rules nest deeper than %(depth)s levels") % {"depth": MAX_DEPTH})
            return None

    def document(self, data: object) -> Rules:
        obj = self.mapping(data, "", {"version", "root"}, required=("version", "root"))
        version = obj["version"]
        if not isinstance(version, int) or isinstance(version, bool) or version != VERSION:
            self.fail("version", _("Only version %(version)s is known, got %(value)s") % {
                "version": VERSION, "value": show(version)
            })  # fmt: skip
        root = self.node(obj["root"], "root", depth=0)
        return Rules(version=VERSION, root=root)

    def mapping(self, data: object, path: str, allowed: set[str], required: Sequence[str] = ()) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            raise self.fail(path, _("Expected an object ({...}), got %(value)s") % {"value": show(data)})
        problems = False
        for key in data:
            if key not in allowed:
                self.fail(
                    _join(path, str(key)),
                    _("Unknown key %(key)s; allowed here: %(allowed)s")
                    % {"key": show(key), "allowed": ", ".join(sorted(allowed))},
                )
                problems = True
        for key in required:
            if key not in data:
                self.fail(_join(path, key), _("%(key)s is required") % {"key": key})
                problems = True
        if problems:
            raise _Invalid()
        return dict(data)

    # Nodes

    def node(self, data: object, path: str, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise self.fail(path, _("The rules nest deeper than %(depth)s levels") % {"depth": MAX_DEPTH})
        if not isinstance(data, Mapping):
            raise self.fail(path, _("Expected a node (an object), got %(value)s") % {"value": show(data)})
        kinds = [key for key in NODE_KEYS if key in data]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else ", ".join(sorted(map(str, data))) or _("nothing")
            raise self.fail(
                path,
                _("A node has exactly one of %(kinds)s; got %(found)s")
                % {"kinds": ", ".join(NODE_KEYS), "found": found},
            )
        kind = kinds[0]
        if kind in GROUP_KEYS:
            return self.group(kind, data, path, depth)
        parse = getattr(self, f"{kind}_condition")
        result: Node = parse(data, path)
        return result

    def group(self, kind: str, data: Mapping[str, Any], path: str, depth: int) -> Node:
        self.mapping(data, path, {kind})
        here = _join(path, kind)
        if kind == "not":
            return Not(self.node(data["not"], here, depth + 1))
        items = data[kind]
        if not isinstance(items, list):
            raise self.fail(
                here, _("%(kind)s takes a list of nodes, got %(value)s") % {"kind": kind, "value": show(items)}
            )
        if not items:
            raise self.fail(here, _("%(kind)s needs at least one node") % {"kind": kind})
        nodes: list[Node] = []
        for index, item in enumerate(items):
            try:
                nodes.append(self.node(item, _join(here, index), depth + 1))
            except _Invalid:
                continue
        if len(nodes) != len(items):
            raise _Invalid()
        return All(tuple(nodes)) if kind == "all" else AnyOf(tuple(nodes))

    def field_condition(self, data: Mapping[str, Any], path: str) -> FieldCondition:
        obj = self.mapping(data, path, {"field", "op", "value"}, required=("field", "op"))
        field = obj["field"]
        if field not in FIELDS:
            raise self.fail(
                _join(path, "field"),
                _("Unknown field %(value)s; known: %(known)s") % {"value": show(field), "known": ", ".join(FIELDS)},
            )
        kind = "date" if field in DATE_FIELDS else "text"
        ops = DATE_FIELD_OPS if kind == "date" else TEXT_FIELD_OPS
        return FieldCondition(field, self.comparison(obj, path, ops, kind))

    def attribute_condition(self, data: Mapping[str, Any], path: str) -> AttributeCondition:
        obj = self.mapping(data, path, {"attribute", "op", "value"}, required=("attribute", "op"))
        key = self.key(obj["attribute"], _join(path, "attribute"))
        return AttributeCondition(key, self.comparison(obj, path, ATTRIBUTE_OPS, "json"))

    def property_filter(self, data: object, path: str) -> PropertyFilter:
        obj = self.mapping(data, path, {"property", "op", "value"}, required=("property", "op"))
        key = self.key(obj["property"], _join(path, "property"))
        return PropertyFilter(key, self.comparison(obj, path, PROPERTY_OPS, "json"))

    def event_condition(self, data: Mapping[str, Any], path: str) -> EventCondition:
        allowed = {"event", "where", "within_days", "aggregate", "property", "op", "value"}
        obj = self.mapping(data, path, allowed, required=("event",))
        event_type = obj["event"]
        if event_type not in Event.Type.values:
            self.fail(
                _join(path, "event"),
                _("Unknown event type %(value)s; known: %(known)s")
                % {"value": show(event_type), "known": ", ".join(Event.Type.values)},
            )
        problems_before = len(self.problems)
        where = self.where(obj.get("where", []), _join(path, "where"))
        within_days = obj.get("within_days")
        if within_days is not None:
            within_days = self.days(within_days, _join(path, "within_days"), "within_days", low=1, high=MAX_DAYS)
        aggregate = obj.get("aggregate", "count")
        if aggregate not in AGGREGATES:
            self.fail(
                _join(path, "aggregate"),
                _("Unknown aggregate %(value)s; known: %(known)s")
                % {"value": show(aggregate), "known": ", ".join(AGGREGATES)},
            )
        prop = obj.get("property")
        if prop is not None:
            prop = self.key(prop, _join(path, "property"))
            if aggregate == "count":
                self.fail(
                    _join(path, "property"),
                    _("property goes with the aggregates sum, avg, max and min, not with count"),
                )
        if "op" not in obj and "value" not in obj:
            comparison = Comparison("gte", 1)
        else:
            kind = "count" if aggregate == "count" else "number"
            comparison = self.comparison(obj, path, NUMBER_OPS, kind, value_required=True)
        if len(self.problems) > problems_before:
            raise _Invalid()
        return EventCondition(event_type, where, within_days, aggregate, prop, comparison)

    def where(self, data: object, path: str) -> tuple[PropertyFilter, ...]:
        if not isinstance(data, list):
            raise self.fail(path, _("where takes a list of property filters, got %(value)s") % {"value": show(data)})
        filters: list[PropertyFilter] = []
        for index, item in enumerate(data):
            try:
                filters.append(self.property_filter(item, _join(path, index)))
            except _Invalid:
                continue
        if len(filters) != len(data):
            raise _Invalid()
        return tuple(filters)

    def consent_condition(self, data: Mapping[str, Any], path: str) -> ConsentCondition:
        obj = self.mapping(data, path, {"consent", "status"}, required=("consent", "status"))
        channel, status = obj["consent"], obj["status"]
        if channel not in Channel.values:
            self.fail(
                _join(path, "consent"),
                _("Unknown channel %(value)s; known: %(known)s")
                % {"value": show(channel), "known": ", ".join(Channel.values)},
            )
        if status not in CONSENT_STATUSES:
            self.fail(
                _join(path, "status"),
                _("Unknown consent status %(value)s; known: %(known)s")
                % {"value": show(status), "known": ", ".join(CONSENT_STATUSES)},
            )
        if channel not in Channel.values or status not in CONSENT_STATUSES:
            raise _Invalid()
        return ConsentCondition(channel, status)

    def identity_condition(self, data: Mapping[str, Any], path: str) -> IdentityCondition:
        obj = self.mapping(data, path, {"identity", "present"}, required=("identity",))
        kind, present = obj["identity"], obj.get("present", True)
        if kind not in Identity.Kind.values:
            self.fail(
                _join(path, "identity"),
                _("Unknown identity kind %(value)s; known: %(known)s")
                % {"value": show(kind), "known": ", ".join(Identity.Kind.values)},
            )
        if not isinstance(present, bool):
            self.fail(
                _join(path, "present"), _("present must be true or false, got %(value)s") % {"value": show(present)}
            )
        if kind not in Identity.Kind.values or not isinstance(present, bool):
            raise _Invalid()
        return IdentityCondition(kind, present)

    def score_condition(self, data: Mapping[str, Any], path: str) -> ScoreCondition:
        obj = self.mapping(data, path, {"score", "op", "value"}, required=("score", "op"))
        name = obj["score"]
        if not isinstance(name, str) or not SCORE_NAME.match(name):
            raise self.fail(
                _join(path, "score"),
                _("A score name is 1 to 64 letters, digits, - or _, got %(value)s") % {"value": show(name)},
            )
        return ScoreCondition(name, self.comparison(obj, path, NUMBER_OPS, "number"))

    def segment_condition(self, data: Mapping[str, Any], path: str) -> SegmentReference:
        obj = self.mapping(data, path, {"segment"})
        segment_id = obj["segment"]
        if not isinstance(segment_id, int) or isinstance(segment_id, bool) or segment_id < 1:
            raise self.fail(
                _join(path, "segment"), _("segment takes a segment's id, got %(value)s") % {"value": show(segment_id)}
            )
        return SegmentReference(segment_id, path)

    # Values

    def key(self, data: object, path: str) -> str:
        if not isinstance(data, str) or not data or len(data) > MAX_KEY_LENGTH:
            raise self.fail(
                path,
                _("Expected a name of 1 to %(max)s characters, got %(value)s")
                % {"max": MAX_KEY_LENGTH, "value": show(data)},
            )
        return data

    def days(self, data: object, path: str, name: str, low: int, high: int) -> int:
        if not isinstance(data, int) or isinstance(data, bool):
            raise self.fail(
                path, _("%(name)s must be a whole number of days, got %(value)s") % {"name": name, "value": show(data)}
            )
        if not low <= data <= high:
            raise self.fail(
                path,
                _("%(name)s must be between %(low)s and %(high)s days, got %(value)s")
                % {"name": name, "low": low, "high": high, "value": data},
            )
        return data

    def comparison(
        self, obj: Mapping[str, Any], path: str, ops: Sequence[str], kind: str, value_required: bool = False
    ) -> Comparison:
        """`kind` is what is compared: text (a text field), date (a date field), json (an attribute or
        property: any JSON value), number (a score, an aggregate) or count (a whole number)."""
        op_path, value_path = _join(path, "op"), _join(path, "value")
        if "op" not in obj:
            raise self.fail(op_path, _("op is required"))
        op = obj["op"]
        if op not in ops:
            raise self.fail(
                op_path,
                _("Unknown operator %(value)s here; allowed: %(known)s") % {"value": show(op), "known": ", ".join(ops)},
            )
        if "value" not in obj and (value_required or op not in PRESENCE_OPS):
            raise self.fail(value_path, _("%(op)s needs a value") % {"op": op})
        value = obj.get("value")
        if op in PRESENCE_OPS:
            if value is not None:
                raise self.fail(value_path, _("%(op)s takes no value") % {"op": op})
            return Comparison(op, None)
        if op in DAYS_AGO_OPS:
            return Comparison(op, self.days(value, value_path, op, low=0, high=MAX_DAYS))
        if op == ANNIVERSARY_OP:
            return Comparison(op, self.days(value, value_path, op, low=0, high=MAX_ANNIVERSARY_DAYS))
        if op in LIST_OPS:
            return Comparison(op, self.value_list(value, value_path, op, kind))
        if op == "between":
            return Comparison(op, self.between(value, value_path, kind))
        if op == "contains":
            if not isinstance(value, str) or not value:
                raise self.fail(value_path, _("contains needs some text, got %(value)s") % {"value": show(value)})
            return Comparison(op, value)
        if op in COMPARISON_OPS:
            return Comparison(op, self.ordered(value, value_path, op, kind))
        return Comparison(op, self.equal(value, value_path, op, kind))

    def equal(self, value: object, path: str, op: str, kind: str) -> Scalar:
        if kind == "text":
            if isinstance(value, str):
                return value
            raise self.fail(
                path, _("%(op)s compares this field with text, got %(value)s") % {"op": op, "value": show(value)}
            )
        if kind in ("date", "number", "count"):
            return self.ordered(value, path, op, kind)
        if isinstance(value, str | bool) or is_number(value):
            return value  # type: ignore[return-value]
        raise self.fail(
            path,
            _("%(op)s compares with text, a number or true/false, got %(value)s") % {"op": op, "value": show(value)},
        )

    def ordered(self, value: object, path: str, op: str, kind: str) -> Scalar:
        if kind == "count":
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
            raise self.fail(path, _("A count compares with a whole number, got %(value)s") % {"value": show(value)})
        if kind == "number":
            if is_number(value):
                return value  # type: ignore[return-value]
            raise self.fail(path, _("%(op)s compares with a number, got %(value)s") % {"op": op, "value": show(value)})
        if kind == "date":
            if isinstance(value, str) and self.iso_date(value, path, op):
                return value
            raise self.fail(
                path,
                _("%(op)s compares this field with a date (YYYY-MM-DD), got %(value)s")
                % {"op": op, "value": show(value)},
            )
        if kind == "json":
            if is_number(value):
                return value  # type: ignore[return-value]
            if isinstance(value, str) and self.iso_date(value, path, op):
                return value
            raise self.fail(
                path,
                _("%(op)s compares with a number or a date (YYYY-MM-DD), got %(value)s")
                % {"op": op, "value": show(value)},
            )
        raise self.fail(path, _("%(op)s does not apply to text fields") % {"op": op})

    def iso_date(self, value: str, path: str, op: str) -> bool:
        if not ISO_DATE_SHAPE.match(value):
            return False
        parsed = iso_date(value)
        if parsed is None:
            raise self.fail(path, _("%(value)s is not a date in the calendar") % {"value": show(value)})
        if not FIRST_DATE <= parsed <= LAST_DATE:
            raise self.fail(
                path,
                _("A date lies between %(first)s and %(last)s, got %(value)s")
                % {"first": FIRST_DATE.isoformat(), "last": LAST_DATE.isoformat(), "value": show(value)},
            )
        return True

    def value_list(self, value: object, path: str, op: str, kind: str) -> tuple[Scalar, ...]:
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_LIST:
            raise self.fail(
                path,
                _("%(op)s takes a list of 1 to %(max)s values, got %(value)s")
                % {"op": op, "max": MAX_LIST, "value": show(value)},
            )
        items: list[Scalar] = []
        for index, item in enumerate(value):
            if kind == "text" and not isinstance(item, str):
                self.fail(
                    _join(path, index),
                    _("%(op)s lists text for this field, got %(value)s") % {"op": op, "value": show(item)},
                )
            elif not isinstance(item, str) and not is_number(item):
                self.fail(
                    _join(path, index),
                    _("%(op)s lists text or numbers, got %(value)s") % {"op": op, "value": show(item)},
                )
            else:
                items.append(item)
        if len(items) != len(value):
            raise _Invalid()
        return tuple(items)

    def between(self, value: object, path: str, kind: str) -> tuple[Scalar, Scalar]:
        if not isinstance(value, list) or len(value) != 2:
            raise self.fail(path, _("between takes [low, high], got %(value)s") % {"value": show(value)})
        low = self.ordered(value[0], _join(path, 0), "between", kind)
        high = self.ordered(value[1], _join(path, 1), "between", kind)
        if is_number(low) != is_number(high):
            raise self.fail(path, _("between takes two numbers or two dates, got %(value)s") % {"value": show(value)})
        if low > high:  # type: ignore[operator]
            raise self.fail(path, _("between takes the low value first, got %(value)s") % {"value": show(value)})
        return (low, high)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def _decimals(data: object) -> object:
    """JSON already decoded (by Django's JSONField, say): floats become Decimals, as if decoded with
    parse_float=Decimal, so that 0.1 means 0.1; NaN and infinity stay floats and are refused as
    numbers."""
    if isinstance(data, float):
        return Decimal(repr(data)) if math.isfinite(data) else data
    if isinstance(data, Mapping):
        return {key: _decimals(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_decimals(item) for item in data]
    return data
