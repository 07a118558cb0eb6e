"""The rule schema: every node of docs/segment-rules.md parses; every kind of bad input is refused
with the path of the node at fault."""

import json
from decimal import Decimal

import pytest
from django.utils import timezone

from audiences.segments import RuleError, compile_rules, parse_rules
from audiences.segments.schema import (
    All,
    AnyOf,
    AttributeCondition,
    Comparison,
    ConsentCondition,
    EventCondition,
    FieldCondition,
    IdentityCondition,
    Not,
    PropertyFilter,
    ScoreCondition,
    SegmentReference,
)

pytestmark = pytest.mark.usefixtures("english")


def rules(root):
    return {"version": 1, "root": root}


def problems(data) -> list[tuple[str, str]]:
    with pytest.raises(RuleError) as raised:
        parse_rules(data)
    return [(problem.path, problem.message) for problem in raised.value.problems]


def paths(data) -> list[str]:
    return [path for path, _message in problems(data)]


DOC_EXAMPLE = {
    "version": 1,
    "root": {
        "all": [
            {"attribute": "loyalty_member", "op": "eq", "value": True},
            {
                "any": [
                    {
                        "event": "purchase",
                        "where": [{"property": "category", "op": "eq", "value": "Tuinmeubelen"}],
                        "within_days": 90,
                        "aggregate": "count",
                        "op": "gte",
                        "value": 2,
                    },
                    {"event": "purchase", "within_days": 365, "aggregate": "sum", "op": "gt", "value": 500},
                ]
            },
            {"consent": "email", "status": "granted"},
            {"not": {"segment": 12}},
        ]
    },
}


def test_the_documented_example_parses_into_typed_nodes():
    parsed = parse_rules(DOC_EXAMPLE)
    assert parsed.version == 1
    assert parsed.root == All(
        (
            AttributeCondition("loyalty_member", Comparison("eq", True)),
            AnyOf(
                (
                    EventCondition(
                        "purchase",
                        (PropertyFilter("category", Comparison("eq", "Tuinmeubelen")),),
                        90,
                        "count",
                        None,
                        Comparison("gte", 2),
                    ),
                    EventCondition("purchase", (), 365, "sum", None, Comparison("gt", 500)),
                )
            ),
            ConsentCondition("email", "granted"),
            Not(SegmentReference(12, "root.all.3.not")),
        )
    )


def test_json_text_parses_like_the_dict_and_numbers_are_exact():
    assert parse_rules(json.dumps(DOC_EXAMPLE)) == parse_rules(DOC_EXAMPLE)
    parsed = parse_rules('{"version": 1, "root": {"score": "churn", "op": "gt", "value": 0.1}}')
    assert parsed.root == ScoreCondition("churn", Comparison("gt", Decimal("0.1")))
    assert parse_rules(rules({"score": "churn", "op": "gt", "value": 0.1})).root == parsed.root


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ({"field": "first_name", "op": "eq", "value": "Anna"}, FieldCondition("first_name", Comparison("eq", "Anna"))),
        (
            {"field": "locale", "op": "in", "value": ["nl", "en"]},
            FieldCondition("locale", Comparison("in", ("nl", "en"))),
        ),
        ({"field": "last_name", "op": "is_not_set"}, FieldCondition("last_name", Comparison("is_not_set", None))),
        (
            {"field": "created_at", "op": "between", "value": ["2025-01-01", "2025-12-31"]},
            FieldCondition("created_at", Comparison("between", ("2025-01-01", "2025-12-31"))),
        ),
        (
            {"field": "created_at", "op": "anniversary_within_days", "value": 7},
            FieldCondition("created_at", Comparison("anniversary_within_days", 7)),
        ),
        (
            {"attribute": "city", "op": "contains", "value": "dam"},
            AttributeCondition("city", Comparison("contains", "dam")),
        ),
        ({"attribute": "age", "op": "gte", "value": 18}, AttributeCondition("age", Comparison("gte", 18))),
        (
            {"attribute": "birthday", "op": "lt", "value": "2000-02-29"},
            AttributeCondition("birthday", Comparison("lt", "2000-02-29")),
        ),
        (
            {"attribute": "tier", "op": "not_in", "value": ["gold", 3]},
            AttributeCondition("tier", Comparison("not_in", ("gold", 3))),
        ),
        ({"attribute": "x", "op": "is_set", "value": None}, AttributeCondition("x", Comparison("is_set", None))),
        (
            {"attribute": "last_visit", "op": "more_than_days_ago", "value": 0},
            AttributeCondition("last_visit", Comparison("more_than_days_ago", 0)),
        ),
        (
            {"attribute": "birthday", "op": "anniversary_within_days", "value": 366},
            AttributeCondition("birthday", Comparison("anniversary_within_days", 366)),
        ),
        ({"event": "page_view"}, EventCondition("page_view", (), None, "count", None, Comparison("gte", 1))),
        (
            {"event": "purchase", "aggregate": "avg", "property": "items", "op": "between", "value": [1, 2.5]},
            EventCondition("purchase", (), None, "avg", "items", Comparison("between", (1, Decimal("2.5")))),
        ),
        (
            {"event": "purchase", "where": [{"property": "shop", "op": "is_set"}], "op": "eq", "value": 0},
            EventCondition(
                "purchase",
                (PropertyFilter("shop", Comparison("is_set", None)),),
                None,
                "count",
                None,
                Comparison("eq", 0),
            ),
        ),
        ({"consent": "sms", "status": "unknown"}, ConsentCondition("sms", "unknown")),
        ({"identity": "phone", "present": False}, IdentityCondition("phone", False)),
        ({"identity": "email"}, IdentityCondition("email", True)),
        ({"score": "churn-risk_2", "op": "neq", "value": 1}, ScoreCondition("churn-risk_2", Comparison("neq", 1))),
        ({"segment": 3}, SegmentReference(3, "root")),
        ({"not": {"not": {"identity": "email"}}}, Not(Not(IdentityCondition("email", True)))),
    ],
)
def test_every_node_type_parses(node, expected):
    assert parse_rules(rules(node)).root == expected


@pytest.mark.parametrize(
    ("data", "path", "words"),
    [
        # the document
        ([], "", "Expected an object"),
        ({"root": {"identity": "email"}}, "version", "required"),
        ({"version": 2, "root": {"identity": "email"}}, "version", "Only version 1"),
        ({"version": True, "root": {"identity": "email"}}, "version", "Only version 1"),
        ({"version": 1}, "root", "required"),
        ({"version": 1, "root": {"identity": "email"}, "extra": 1}, "extra", "Unknown key"),
        ('{"version": 1, "root": ', "", "not valid JSON"),
        ('{"version": 1, "root": {"score": "a", "op": "gt", "value": NaN}}', "", "not valid JSON"),
        ("[[[[" * 10_000, "", ""),
        # nodes
        (rules([]), "root", "Expected a node"),
        (rules({}), "root", "exactly one of"),
        (rules({"all": [{"identity": "email"}], "any": [{"identity": "email"}]}), "root", "got all, any"),
        (rules({"all": []}), "root.all", "at least one node"),
        (rules({"any": {"identity": "email"}}), "root.any", "takes a list"),
        (rules({"all": [{"identity": "email"}, {"any": [{"bogus": 1}]}]}), "root.all.1.any.0", "exactly one of"),
        (rules({"not": "x"}), "root.not", "Expected a node"),
        (rules({"all": [{"identity": "email", "colour": "red"}]}), "root.all.0.colour", "Unknown key 'colour'"),
        # fields
        (rules({"field": "password", "op": "eq", "value": "x"}), "root.field", "Unknown field"),
        (rules({"field": "first_name", "op": "gt", "value": "x"}), "root.op", "Unknown operator"),
        (rules({"field": "first_name", "op": "eq", "value": 5}), "root.value", "with text"),
        (rules({"field": "first_name", "op": "in", "value": ["a", 1]}), "root.value.1", "lists text"),
        (rules({"field": "created_at", "op": "gt", "value": 5}), "root.value", "date (YYYY-MM-DD)"),
        (rules({"field": "created_at", "op": "gt", "value": "2026-02-30"}), "root.value", "not a date in the calendar"),
        (rules({"field": "created_at", "op": "contains", "value": "x"}), "root.op", "Unknown operator"),
        (rules({"field": "first_name", "value": "x"}), "root.op", "required"),
        # attributes
        (rules({"attribute": "", "op": "eq", "value": 1}), "root.attribute", "1 to 200"),
        (rules({"attribute": 5, "op": "eq", "value": 1}), "root.attribute", "1 to 200"),
        (rules({"attribute": "a", "op": "like", "value": 1}), "root.op", "Unknown operator 'like'"),
        (rules({"attribute": "a", "op": "eq"}), "root.value", "needs a value"),
        (rules({"attribute": "a", "op": "eq", "value": None}), "root.value", "text, a number or true/false"),
        (rules({"attribute": "a", "op": "eq", "value": [1]}), "root.value", "text, a number or true/false"),
        (rules({"attribute": "a", "op": "gt", "value": "abc"}), "root.value", "got 'abc'"),
        (rules({"attribute": "a", "op": "gt", "value": True}), "root.value", "a number or a date"),
        (rules({"attribute": "a", "op": "in", "value": []}), "root.value", "1 to 1000"),
        (rules({"attribute": "a", "op": "in", "value": list(range(1001))}), "root.value", "1 to 1000"),
        (rules({"attribute": "a", "op": "in", "value": [1, True]}), "root.value.1", "text or numbers"),
        (rules({"attribute": "a", "op": "between", "value": [1]}), "root.value", "[low, high]"),
        (
            rules({"attribute": "a", "op": "between", "value": [1, "2026-01-01"]}),
            "root.value",
            "two numbers or two dates",
        ),
        (rules({"attribute": "a", "op": "between", "value": [5, 1]}), "root.value", "low value first"),
        (rules({"attribute": "a", "op": "contains", "value": ""}), "root.value", "some text"),
        (rules({"attribute": "a", "op": "is_set", "value": 1}), "root.value", "takes no value"),
        (
            rules({"attribute": "a", "op": "more_than_days_ago", "value": "abc"}),
            "root.value",
            "whole number of days, got 'abc'",
        ),
        (rules({"attribute": "a", "op": "less_than_days_ago", "value": 1.5}), "root.value", "whole number of days"),
        (rules({"attribute": "a", "op": "anniversary_within_days", "value": 367}), "root.value", "between 0 and 366"),
        # events
        (rules({"event": "bought"}), "root.event", "Unknown event type 'bought'"),
        (
            rules({"event": "purchase", "within_days": "abc"}),
            "root.within_days",
            "within_days must be a whole number of days, got 'abc'",
        ),
        (rules({"event": "purchase", "within_days": 0}), "root.within_days", "between 1 and"),
        (rules({"event": "purchase", "within_days": True}), "root.within_days", "whole number"),
        (rules({"event": "purchase", "aggregate": "median"}), "root.aggregate", "Unknown aggregate"),
        (rules({"event": "purchase", "property": "items"}), "root.property", "not with count"),
        (rules({"event": "purchase", "op": "gte"}), "root.value", "needs a value"),
        (rules({"event": "purchase", "value": 3}), "root.op", "required"),
        (rules({"event": "purchase", "op": "gte", "value": 1.5}), "root.value", "whole number"),
        (rules({"event": "purchase", "op": "contains", "value": 1}), "root.op", "Unknown operator"),
        (rules({"event": "purchase", "aggregate": "sum", "op": "gt", "value": "500"}), "root.value", "with a number"),
        (rules({"event": "purchase", "where": {"property": "a"}}), "root.where", "list of property filters"),
        (
            rules({"event": "purchase", "where": [{"property": "a", "op": "eq", "value": 1, "x": 2}]}),
            "root.where.0.x",
            "Unknown key",
        ),
        (
            rules({"event": "purchase", "where": [{"property": "a", "op": "anniversary_within_days", "value": 1}]}),
            "root.where.0.op",
            "Unknown operator",
        ),
        (rules({"event": "purchase", "where": [{"op": "eq", "value": 1}]}), "root.where.0.property", "required"),
        # consent, identity, score, segment
        (rules({"consent": "fax", "status": "granted"}), "root.consent", "Unknown channel"),
        (rules({"consent": "email", "status": "maybe"}), "root.status", "Unknown consent status"),
        (rules({"consent": "email"}), "root.status", "required"),
        (rules({"identity": "passport"}), "root.identity", "Unknown identity kind"),
        (rules({"identity": "email", "present": "yes"}), "root.present", "true or false"),
        (rules({"score": "churn risk", "op": "gt", "value": 1}), "root.score", "letters, digits"),
        (rules({"score": "churn", "op": "contains", "value": "x"}), "root.op", "Unknown operator"),
        (rules({"score": "churn", "op": "gt", "value": "0.5"}), "root.value", "with a number"),
        (rules({"segment": "12"}), "root.segment", "segment's id"),
        (rules({"segment": 0}), "root.segment", "segment's id"),
        (rules({"segment": True}), "root.segment", "segment's id"),
    ],
)
def test_bad_input_is_refused_with_the_path(data, path, words):
    found = problems(data)
    assert found[0][0] == path, found
    assert words in found[0][1], found


def test_every_problem_is_reported_not_only_the_first():
    data = rules(
        {
            "all": [
                {"attribute": "a", "op": "gt", "value": "abc"},
                {"any": [{"event": "purchase", "within_days": "abc"}, {"identity": "passport"}]},
                {"consent": "fax", "status": "maybe"},
            ]
        }
    )
    assert paths(data) == [
        "root.all.0.value",
        "root.all.1.any.0.within_days",
        "root.all.1.any.1.identity",
        "root.all.2.consent",
        "root.all.2.status",
    ]


def test_an_error_says_path_and_message_in_one_line():
    with pytest.raises(RuleError) as raised:
        parse_rules(rules({"all": [{"event": "purchase", "within_days": "abc"}]}))
    error = raised.value
    assert error.path == "root.all.0.within_days"
    assert error.message == "within_days must be a whole number of days, got 'abc'"
    assert str(error) == "root.all.0.within_days: within_days must be a whole number of days, got 'abc'"


def test_nesting_is_bounded():
    node = {"identity": "email"}
    for _ in range(40):
        node = {"not": node}
    assert "deeper than 32" in problems(rules(node))[0][1]


def compile_with(segments: dict, data, segment_id=None):
    """Compiles against segments kept in a dict: id → (kind, rules). No database."""
    return compile_rules(data, now=timezone.now(), resolve_segment=segments.get, segment_id=segment_id)


def test_a_segment_referring_to_itself_is_refused_with_the_path():
    with pytest.raises(RuleError) as raised:
        compile_with({}, rules({"all": [{"identity": "email"}, {"not": {"segment": 5}}]}), segment_id=5)
    assert raised.value.path == "root.all.1.not.segment"
    assert "5 → 5" in raised.value.message


def test_a_cycle_through_other_segments_is_refused_at_the_reference_that_starts_it():
    segments = {
        7: ("dynamic", rules({"any": [{"identity": "phone"}, {"segment": 8}]})),
        8: ("dynamic", rules({"segment": 5})),
    }
    with pytest.raises(RuleError) as raised:
        compile_with(segments, rules({"all": [{"identity": "email"}, {"segment": 7}]}), segment_id=5)
    assert raised.value.path == "root.all.1.segment"
    assert "5 → 7 → 8 → 5" in raised.value.message


def test_a_cycle_among_referenced_segments_is_refused_too():
    segments = {7: ("dynamic", rules({"segment": 8})), 8: ("dynamic", rules({"segment": 7}))}
    with pytest.raises(RuleError) as raised:
        compile_with(segments, rules({"segment": 7}))
    assert raised.value.path == "root.segment"
    assert "7 → 8 → 7" in raised.value.message


def test_unknown_and_broken_referenced_segments_are_refused_with_the_path():
    segments = {9: ("dynamic", {"version": 1, "root": {"all": []}})}
    with pytest.raises(RuleError) as raised:
        compile_with(segments, rules({"any": [{"identity": "email"}, {"segment": 404}]}))
    assert (raised.value.path, raised.value.message) == ("root.any.1.segment", "There is no segment 404")
    with pytest.raises(RuleError) as raised:
        compile_with(segments, rules({"not": {"segment": 9}}))
    assert raised.value.path == "root.not.segment"
    assert "root.all: all needs at least one node" in raised.value.message


def test_a_static_segment_is_looked_up_not_followed():
    compile_with({5: ("static", {})}, rules({"segment": 5}), segment_id=6)
    with pytest.raises(RuleError):
        compile_with({5: ("static", {})}, rules({"segment": 6}), segment_id=6)


@pytest.mark.parametrize(
    ("rules", "path", "message"),
    [
        ({"version": 1, "root": {"attribute": "s", "op": "contains", "value": "a\x00"}}, "root.value", "NUL"),
        ({"version": 1, "root": {"attribute": "a\x00", "op": "is_set"}}, "root.attribute", "NUL"),
        ({"version": 1, "root": {"field": "first_name", "op": "eq", "value": "x\x00"}}, "root.value", "NUL"),
        ('{"version": 1, "root": {"attribute": "n", "op": "gt", "value": 1e999999}}', "root.value", "too large"),
        ({"version": 1, "root": {"score": "churn", "op": "gt", "value": float("inf")}}, "root.value", "finite"),
    ],
)
def test_values_postgresql_cannot_compare_are_refused_before_any_query(rules, path, message):
    with pytest.raises(RuleError) as error:
        parse_rules(rules)
    assert error.value.path == path
    assert message in error.value.message
