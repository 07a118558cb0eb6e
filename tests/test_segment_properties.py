"""Property-based: random small data and random rule trees; the compiled SQL selects exactly the
contacts that a plain Python reading of docs/segment-rules.md selects.

The evaluator below is the reference semantics, written from the document and on purpose
independent of the compiler: it reads the rules as plain dicts, contact by contact.
"""

import datetime as dt
import json
import re
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiences.models import Consent, ConsentChange, Contact, Event, Identity, Score
from audiences.selectors.segments import segment_contacts

pytestmark = pytest.mark.django_db

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
MOMENTS = [
    dt.datetime(2026, 3, 15, 12, 0, tzinfo=AMSTERDAM),
    dt.datetime(2025, 12, 30, 8, 0, tzinfo=AMSTERDAM),
    dt.datetime(2027, 2, 28, 10, 0, tzinfo=AMSTERDAM),  # no 29 February this year
    dt.datetime(2028, 2, 28, 23, 30, tzinfo=dt.UTC),  # 29 February in Amsterdam
]
CREATED = [
    dt.datetime(2025, 3, 16, 0, 30, tzinfo=AMSTERDAM),
    dt.datetime(2025, 12, 31, 23, 30, tzinfo=AMSTERDAM),
    dt.datetime(2024, 2, 29, 12, 0, tzinfo=AMSTERDAM),
    dt.datetime(2026, 3, 14, 23, 59, tzinfo=AMSTERDAM),
]
KEYS = ["a", "b", "d"]
TEXTS = ["x", "X", "xy", "", "2026-03-10", "2024-02-29", "2023-02-29", "2026-03-16", "1990-12-31", "1990-01-01"]
NUMBERS = [-2, 0, 1, 2.5, 3, 100]
DATES = ["2024-02-29", "2025-12-31", "2026-03-10", "2026-03-16", "2027-03-01"]

json_scalars = st.one_of(st.sampled_from(TEXTS), st.sampled_from(NUMBERS), st.booleans())
json_values = st.one_of(json_scalars, st.none(), st.sampled_from([[], [1], {}, {"k": 1}]))


# --- Random data -----------------------------------------------------------------------------

events = st.fixed_dictionaries(
    {
        "type": st.sampled_from([Event.Type.PURCHASE, Event.Type.PAGE_VIEW]),
        "days_ago": st.sampled_from([0.5, 3, 10, 40, 400]),
        "value": st.sampled_from([None, Decimal("0"), Decimal("5"), Decimal("12.50"), Decimal("100")]),
        "properties": st.dictionaries(st.sampled_from(["c", "n"]), json_values, max_size=2),
    }
)
contacts = st.fixed_dictionaries(
    {
        "first_name": st.sampled_from(["Anna", "anna", "Bram", ""]),
        "locale": st.sampled_from(["nl", "en"]),
        "created_at": st.sampled_from(CREATED),
        "attributes": st.dictionaries(st.sampled_from(KEYS), json_values, max_size=3),
        "erased": st.sampled_from([False, False, False, True]),
        "events": st.lists(events, max_size=4),
        "consent": st.sampled_from([None, "granted", "withdrawn"]),
        "identities": st.sets(st.sampled_from(["email", "phone"])),
        "churn": st.sampled_from([None, 0.0, 0.5, 1.0]),
    }
)


# --- Random rules ----------------------------------------------------------------------------


def comparisons(kind):
    """(op, value) pairs for a kind of thing compared: json, text, date, number or count."""
    numbers = st.sampled_from(NUMBERS)
    dates = st.sampled_from(DATES)
    ordered = numbers | dates if kind == "json" else dates if kind == "date" else numbers
    if kind == "count":
        ordered = st.sampled_from([0, 1, 2, 3])
    pairs = st.tuples(st.sampled_from(["gt", "gte", "lt", "lte"]), ordered)
    between = st.tuples(ordered, ordered).filter(lambda pair: isinstance(pair[0], str) == isinstance(pair[1], str))
    options = [pairs, st.tuples(st.just("between"), between.map(sorted))]
    if kind in ("json", "number", "count"):
        options.append(st.tuples(st.sampled_from(["eq", "neq"]), json_scalars if kind == "json" else ordered))
    if kind == "date":
        options.append(st.tuples(st.sampled_from(["eq", "neq"]), dates))
    if kind in ("json", "text"):
        texts = st.sampled_from(["x", "X", "an", "Anna", "", "nl"])
        items = st.lists(st.sampled_from(TEXTS) | numbers if kind == "json" else texts, min_size=1, max_size=3)
        options.append(st.tuples(st.sampled_from(["in", "not_in"]), items))
        options.append(st.tuples(st.just("contains"), st.sampled_from(["x", "X", "an", "-0", "9"])))
        options.append(st.tuples(st.sampled_from(["is_set", "is_not_set"]), st.none()))
    if kind == "text":
        options = [
            st.tuples(st.sampled_from(["eq", "neq"]), texts),
            st.tuples(st.sampled_from(["in", "not_in"]), st.lists(texts, min_size=1, max_size=3)),
            st.tuples(st.just("contains"), st.sampled_from(["A", "n", "ram"])),
            st.tuples(st.sampled_from(["is_set", "is_not_set"]), st.none()),
        ]
    if kind in ("json", "date"):
        days = st.sampled_from([0, 1, 5, 30, 400])
        options.append(st.tuples(st.sampled_from(["more_than_days_ago", "less_than_days_ago"]), days))
        options.append(st.tuples(st.just("anniversary_within_days"), st.sampled_from([0, 1, 3, 20, 366])))
    return st.one_of(options)


def condition(key_name, key, kind):
    def node(pair):
        op, value = pair
        result = {key_name: key, "op": op}
        if value is not None:
            result["value"] = value
        return result

    return comparisons(kind).map(node)


property_filters = st.builds(
    lambda key, pair: {"property": key, "op": pair[0], **({"value": pair[1]} if pair[1] is not None else {})},
    st.sampled_from(["c", "n"]),
    comparisons("json").filter(
        lambda pair: pair[0] not in ("more_than_days_ago", "less_than_days_ago", "anniversary_within_days")
    ),
)


@st.composite
def event_conditions(draw):
    node = {"event": draw(st.sampled_from(["purchase", "page_view"]))}
    where = draw(st.lists(property_filters, max_size=2))
    if where:
        node["where"] = where
    within = draw(st.sampled_from([None, 1, 7, 30, 365]))
    if within is not None:
        node["within_days"] = within
    aggregate = draw(st.sampled_from(["count", "sum", "avg", "max", "min"]))
    if aggregate != "count" or draw(st.booleans()):
        node["aggregate"] = aggregate
    if aggregate != "count" and draw(st.booleans()):
        node["property"] = "n"
    if draw(st.booleans()) or aggregate != "count":
        op, value = draw(comparisons("count" if aggregate == "count" else "number"))
        node.update(op=op, value=value)
    return node


leaves = st.one_of(
    st.sampled_from(["first_name", "locale"]).flatmap(lambda field: condition("field", field, "text")),
    condition("field", "created_at", "date"),
    st.sampled_from([*KEYS, "zz"]).flatmap(lambda key: condition("attribute", key, "json")),
    event_conditions(),
    event_conditions(),  # the richest semantics: drawn twice as often
    st.builds(
        lambda status: {"consent": "email", "status": status}, st.sampled_from(["granted", "withdrawn", "unknown"])
    ),
    st.builds(
        lambda kind, present: {"identity": kind, "present": present}, st.sampled_from(["email", "phone"]), st.booleans()
    ),
    condition("score", "churn", "number"),
)
nodes = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda items: {"all": items}),
        st.lists(children, min_size=1, max_size=3).map(lambda items: {"any": items}),
        children.map(lambda child: {"not": child}),
    ),
    max_leaves=6,
)


# --- The reference evaluator -----------------------------------------------------------------

MISSING = object()
ISO_SHAPE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def is_number(value):
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def as_date(value):
    if not isinstance(value, str) or not ISO_SHAPE.match(value):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def json_equal(stored, wanted):
    if isinstance(wanted, bool) or isinstance(stored, bool):
        return isinstance(stored, bool) and isinstance(wanted, bool) and stored == wanted
    if is_number(wanted):
        return is_number(stored) and Decimal(str(stored)) == Decimal(str(wanted))
    return isinstance(stored, str) and stored == wanted


def ordered(stored, op, bounds):
    """gt..between of a JSON value: numbers with numbers, calendar dates with dates."""
    if is_number(bounds[0]):
        if not is_number(stored):
            return False
        stored, bounds = Decimal(str(stored)), [Decimal(str(bound)) for bound in bounds]
    else:
        stored, bounds = as_date(stored), [dt.date.fromisoformat(bound) for bound in bounds]
        if stored is None:
            return False
    return compare(stored, op, bounds)


def compare(stored, op, bounds):
    if op == "between":
        return bounds[0] <= stored <= bounds[1]
    wanted = bounds[0]
    return {
        "eq": stored == wanted,
        "neq": stored != wanted,
        "gt": stored > wanted,
        "gte": stored >= wanted,
        "lt": stored < wanted,
        "lte": stored <= wanted,
    }[op]


def is_leap(year):
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def anniversary(day, today, days):
    for offset in range(days + 1):
        coming = today + dt.timedelta(days=offset)
        if (day.month, day.day) == (coming.month, coming.day):
            return True
        if (day.month, day.day) == (2, 29) and (coming.month, coming.day) == (2, 28) and not is_leap(coming.year):
            return True
    return False


def dated(day, op, value, today):
    """The date operators on a date (None: not a date, never holds)."""
    if day is None:
        return False
    if op == "more_than_days_ago":
        return day < today - dt.timedelta(days=value)
    if op == "less_than_days_ago":
        return today - dt.timedelta(days=value) < day <= today
    return anniversary(day, today, value)


def json_holds(stored, op, value, today):
    if op == "eq":
        return json_equal(stored, value)
    if op == "neq":
        return not json_equal(stored, value)
    if op == "in":
        return any(json_equal(stored, item) for item in value)
    if op == "not_in":
        return not any(json_equal(stored, item) for item in value)
    if op == "contains":
        return isinstance(stored, str) and value.lower() in stored.lower()
    if op in ("is_set", "is_not_set"):
        empty = stored is MISSING or stored is None or stored == "" or stored == [] or stored == {}
        return empty if op == "is_not_set" else not empty
    if op in ("gt", "gte", "lt", "lte"):
        return ordered(stored, op, [value])
    if op == "between":
        return ordered(stored, op, value)
    return dated(as_date(stored), op, value, today)


def text_holds(stored, op, value):
    return {
        "eq": lambda: stored == value,
        "neq": lambda: stored != value,
        "in": lambda: stored in value,
        "not_in": lambda: stored not in value,
        "contains": lambda: value.lower() in stored.lower(),
        "is_set": lambda: stored != "",
        "is_not_set": lambda: stored == "",
    }[op]()


def created_holds(created_at, op, value, today):
    day = created_at.astimezone(AMSTERDAM).date()
    if op in ("more_than_days_ago", "less_than_days_ago", "anniversary_within_days"):
        return dated(day, op, value, today)
    bounds = [dt.date.fromisoformat(each) for each in (value if op == "between" else [value])]
    return compare(day, op, bounds)


def aggregate_of(node, matching):
    aggregate = node.get("aggregate", "count")
    if aggregate == "count":
        return len(matching)
    if "property" in node:
        amounts = [
            Decimal(str(e["properties"][node["property"]]))
            for e in matching
            if is_number(e["properties"].get(node["property"]))
        ]
    else:
        amounts = [e["value"] for e in matching if e["value"] is not None]
    if aggregate == "sum":
        return sum(amounts, Decimal(0))
    if not amounts:
        return None
    return {"avg": lambda: sum(amounts) / len(amounts), "max": lambda: max(amounts), "min": lambda: min(amounts)}[
        aggregate
    ]()


def event_holds(contact, node, now, today):
    matching = [
        event
        for event in contact["events"]
        if event["type"] == node["event"]
        and ("within_days" not in node or event["days_ago"] <= node["within_days"])
        and all(
            json_holds(event["properties"].get(f["property"], MISSING), f["op"], f.get("value"), today)
            for f in node.get("where", [])
        )
    ]
    amount = aggregate_of(node, matching)
    op, value = node.get("op", "gte"), node.get("value", 1)
    if amount is None:
        return False
    bounds = [Decimal(str(each)) for each in (value if op == "between" else [value])]
    return compare(Decimal(amount), op, bounds)


def holds(contact, node, now):
    today = now.astimezone(AMSTERDAM).date()
    if "all" in node:
        return all(holds(contact, child, now) for child in node["all"])
    if "any" in node:
        return any(holds(contact, child, now) for child in node["any"])
    if "not" in node:
        return not holds(contact, node["not"], now)
    if "field" in node:
        if node["field"] == "created_at":
            return created_holds(contact["created_at"], node["op"], node.get("value"), today)
        return text_holds(contact[node["field"]], node["op"], node.get("value"))
    if "attribute" in node:
        return json_holds(contact["attributes"].get(node["attribute"], MISSING), node["op"], node.get("value"), today)
    if "event" in node:
        return event_holds(contact, node, now, today)
    if "consent" in node:
        return (contact["consent"] or "unknown") == node["status"]
    if "identity" in node:
        return (node["identity"] in contact["identities"]) == node["present"]
    if "score" in node:
        if contact["churn"] is None:
            return False
        value = node["value"]
        bounds = [Decimal(str(each)) for each in (value if node["op"] == "between" else [value])]
        return compare(Decimal(str(contact["churn"])), node["op"], bounds)
    raise AssertionError(f"no reference semantics for {node}")


# --- The property ----------------------------------------------------------------------------


def store(specs, now) -> dict[int, dict]:
    stored = {}
    for index, spec in enumerate(specs):
        contact = Contact.objects.create(
            first_name=spec["first_name"], locale=spec["locale"], attributes=spec["attributes"]
        )
        Contact.objects.filter(pk=contact.pk).update(
            created_at=spec["created_at"], erased_at=now if spec["erased"] else None
        )
        for number, event in enumerate(spec["events"]):
            Event.objects.create(
                contact=contact,
                type=event["type"],
                occurred_at=now - dt.timedelta(days=event["days_ago"]),
                value=event["value"],
                properties=event["properties"],
                external_id=f"{contact.pk}-{number}",
            )
        if spec["consent"]:
            change = ConsentChange.objects.create(
                contact=contact, channel="email", status=spec["consent"], source="test"
            )
            Consent.objects.create(
                contact=contact, channel="email", status=spec["consent"], changed_at=now, change=change
            )
        for kind in spec["identities"]:
            Identity.objects.create(contact=contact, kind=kind, value=f"{kind}-{contact.pk}-{index}")
        if spec["churn"] is not None:
            Score.objects.create(contact=contact, name="churn", value=spec["churn"])
        stored[contact.pk] = spec
    return stored


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    specs=st.lists(contacts, min_size=1, max_size=5),
    roots=st.lists(nodes, min_size=1, max_size=3),
    now=st.sampled_from(MOMENTS),
)
def test_the_compiled_query_selects_what_the_rules_say(specs, roots, now):
    with transaction.atomic():
        stored = store(specs, now)
        # Every subtree on its own too, so that no condition's mistake hides behind an all or an any.
        for node in {json.dumps(tree, sort_keys=True): tree for root in roots for tree in subtrees(root)}.values():
            rules = {"version": 1, "root": node}
            selected = set(segment_contacts(rules=rules, now=now).values_list("pk", flat=True))
            expected = {pk for pk, spec in stored.items() if not spec["erased"] and holds(spec, node, now)}
            assert selected == expected, rules
        transaction.set_rollback(True)


def subtrees(node):
    yield node
    for child in node.get("all", node.get("any", [node["not"]] if "not" in node else [])):
        yield from subtrees(child)
