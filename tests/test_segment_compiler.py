"""The compiler against small hand-built data: each condition and operator, nesting, references,
erased contacts, one SQL statement, and rule values that try to reach SQL."""

import datetime as dt
import itertools
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection

from audiences.models import Consent, ConsentChange, Contact, Event, Identity, Score, Segment, SegmentMember
from audiences.segments import RuleError
from audiences.segments.compiler import ISO_DATE_SQL_PATTERN
from audiences.selectors.segments import segment_contacts, segment_count, segment_sample
from tests.factories import ContactFactory, EventFactory, IdentityFactory, SegmentFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
NOW = dt.datetime(2026, 3, 15, 12, 0, tzinfo=AMSTERDAM)


def rules(root):
    return {"version": 1, "root": root}


def names(root, now=NOW) -> set[str]:
    """The first names of the contacts the rules select."""
    return set(segment_contacts(rules=rules(root), now=now).values_list("first_name", flat=True))


def person(first_name, **attributes) -> Contact:
    return ContactFactory(first_name=first_name, attributes=attributes)


def consent(contact, channel, status):
    change = ConsentChange.objects.create(contact=contact, channel=channel, status=status, source="test")
    Consent.objects.create(
        contact=contact, channel=channel, status=status, changed_at=change.recorded_at, change=change
    )


def buy(contact, days_ago=1, value=None, type=Event.Type.PURCHASE, **properties):
    return EventFactory(
        contact=contact, type=type, occurred_at=NOW - dt.timedelta(days=days_ago), value=value, properties=properties
    )


# --- Contact fields --------------------------------------------------------------------------


@pytest.fixture
def named():
    ContactFactory(first_name="Anna", last_name="de Vries", locale="nl")
    ContactFactory(first_name="Bram", last_name="", locale="en")
    ContactFactory(first_name="Cees", last_name="Bakker_%", locale="de")


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ({"field": "first_name", "op": "eq", "value": "Anna"}, {"Anna"}),
        ({"field": "first_name", "op": "eq", "value": "anna"}, set()),
        ({"field": "first_name", "op": "neq", "value": "Anna"}, {"Bram", "Cees"}),
        ({"field": "locale", "op": "in", "value": ["nl", "de"]}, {"Anna", "Cees"}),
        ({"field": "locale", "op": "not_in", "value": ["nl", "de"]}, {"Bram"}),
        ({"field": "last_name", "op": "contains", "value": "VRIES"}, {"Anna"}),
        ({"field": "last_name", "op": "contains", "value": "_%"}, {"Cees"}),
        ({"field": "last_name", "op": "contains", "value": "%"}, {"Cees"}),
        ({"field": "last_name", "op": "is_set"}, {"Anna", "Cees"}),
        ({"field": "last_name", "op": "is_not_set"}, {"Bram"}),
    ],
)
def test_text_fields(named, node, expected):
    assert names(node) == expected


@pytest.fixture
def joined():
    """Contacts created on different local dates (Amsterdam): the 14th just before midnight, etc."""
    moments = {
        "Early": dt.datetime(2025, 3, 16, 0, 30, tzinfo=AMSTERDAM),  # a year ago, tomorrow's date
        "Eve": dt.datetime(2026, 3, 13, 23, 59, tzinfo=AMSTERDAM),  # UTC: 22:59 on the 13th
        "Late": dt.datetime(2026, 3, 14, 0, 10, tzinfo=AMSTERDAM),  # UTC: the 13th, Amsterdam: the 14th
        "Today": dt.datetime(2026, 3, 15, 9, 0, tzinfo=AMSTERDAM),
    }
    for name, moment in moments.items():
        Contact.objects.filter(pk=ContactFactory(first_name=name).pk).update(created_at=moment)


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("eq", "2026-03-14", {"Late"}),
        ("neq", "2026-03-14", {"Early", "Eve", "Today"}),
        ("gt", "2026-03-13", {"Late", "Today"}),
        ("gte", "2026-03-14", {"Late", "Today"}),
        ("lt", "2026-03-14", {"Early", "Eve"}),
        ("lte", "2026-03-14", {"Early", "Eve", "Late"}),
        ("between", ["2026-03-13", "2026-03-14"], {"Eve", "Late"}),
        ("more_than_days_ago", 1, {"Early", "Eve"}),
        ("less_than_days_ago", 2, {"Late", "Today"}),
        ("less_than_days_ago", 1, {"Today"}),
        ("anniversary_within_days", 0, {"Today"}),  # the day itself counts
        ("anniversary_within_days", 1, {"Early", "Today"}),
        ("anniversary_within_days", 366, {"Early", "Eve", "Late", "Today"}),
    ],
)
def test_created_at_compares_dates_in_the_marketeers_time_zone(joined, op, value, expected):
    assert names({"field": "created_at", "op": op, "value": value}) == expected


# --- Attributes ------------------------------------------------------------------------------


@pytest.fixture
def attributed():
    person("Num", age=40, score=7.5, city="Amsterdam", member=True, since="2025-03-14")
    person("Text", age="40", score="abc", city="amstelveen", member="true", since="2026-02-30")
    person("Float", age=40.0, score=2, city=5, member=False, since="2026-03-10", tags=[])
    person("Odd", age=[40], score={"x": 1}, city=None, member=1, since="14-03-2025", tags=["a"])
    person("Empty", city="", note={})
    person("Bare")


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ({"attribute": "age", "op": "eq", "value": 40}, {"Num", "Float"}),
        ({"attribute": "age", "op": "eq", "value": "40"}, {"Text"}),
        ({"attribute": "member", "op": "eq", "value": True}, {"Num"}),
        ({"attribute": "member", "op": "eq", "value": 1}, {"Odd"}),
        ({"attribute": "age", "op": "neq", "value": 40}, {"Text", "Odd", "Empty", "Bare"}),
        ({"attribute": "city", "op": "in", "value": ["Amsterdam", 5]}, {"Num", "Float"}),
        ({"attribute": "city", "op": "not_in", "value": ["Amsterdam", 5]}, {"Text", "Odd", "Empty", "Bare"}),
        ({"attribute": "city", "op": "contains", "value": "AMST"}, {"Num", "Text"}),
        ({"attribute": "city", "op": "contains", "value": "5"}, set()),
        ({"attribute": "score", "op": "gt", "value": 2}, {"Num"}),
        ({"attribute": "score", "op": "gte", "value": 2}, {"Num", "Float"}),
        ({"attribute": "score", "op": "lt", "value": 7.5}, {"Float"}),
        ({"attribute": "score", "op": "lte", "value": 7.5}, {"Num", "Float"}),
        ({"attribute": "score", "op": "between", "value": [2, 7]}, {"Float"}),
        ({"attribute": "since", "op": "gt", "value": "2026-01-01"}, {"Float"}),
        ({"attribute": "since", "op": "lte", "value": "2026-03-10"}, {"Num", "Float"}),
        ({"attribute": "since", "op": "between", "value": ["2025-01-01", "2025-12-31"]}, {"Num"}),
        ({"attribute": "since", "op": "more_than_days_ago", "value": 5}, {"Num"}),
        ({"attribute": "since", "op": "less_than_days_ago", "value": 6}, {"Float"}),
        ({"attribute": "since", "op": "less_than_days_ago", "value": 5}, set()),
        ({"attribute": "since", "op": "anniversary_within_days", "value": 0}, set()),
        ({"attribute": "since", "op": "anniversary_within_days", "value": 365}, {"Num", "Float"}),
        ({"attribute": "city", "op": "is_set"}, {"Num", "Text", "Float"}),
        ({"attribute": "city", "op": "is_not_set"}, {"Odd", "Empty", "Bare"}),
        ({"attribute": "tags", "op": "is_set"}, {"Odd"}),
        ({"attribute": "note", "op": "is_set"}, set()),
        # negation of a condition a contact lacks the attribute for: it holds
        ({"not": {"attribute": "score", "op": "gt", "value": 2}}, {"Text", "Float", "Odd", "Empty", "Bare"}),
        ({"not": {"attribute": "since", "op": "gt", "value": "2000-01-01"}}, {"Text", "Odd", "Empty", "Bare"}),
    ],
)
def test_attributes(attributed, node, expected):
    assert names(node) == expected


def test_dates_of_attributes_by_anniversary_across_the_year_end_and_29_february():
    person("NewYear", birthday="1980-01-02")
    person("Eve", birthday="1990-12-31")
    person("Leap", birthday="2000-02-29")
    person("March", birthday="1999-03-01")
    person("NotADate", birthday="1999-02-30")
    person("Number", birthday=19991231)
    december_30 = dt.datetime(2025, 12, 30, 8, 0, tzinfo=AMSTERDAM)
    assert names({"attribute": "birthday", "op": "anniversary_within_days", "value": 3}, now=december_30) == {
        "NewYear",
        "Eve",
    }
    # 2027 has no 29 February: the anniversary is on the 28th.
    february_28 = dt.datetime(2027, 2, 28, 8, 0, tzinfo=AMSTERDAM)
    assert names({"attribute": "birthday", "op": "anniversary_within_days", "value": 0}, now=february_28) == {"Leap"}
    march_1 = dt.datetime(2027, 3, 1, 8, 0, tzinfo=AMSTERDAM)
    assert names({"attribute": "birthday", "op": "anniversary_within_days", "value": 0}, now=march_1) == {"March"}
    # 2028 has one.
    leap_day = dt.datetime(2028, 2, 28, 23, 30, tzinfo=dt.UTC)  # 29 February in Amsterdam
    assert names({"attribute": "birthday", "op": "anniversary_within_days", "value": 0}, now=leap_day) == {"Leap"}


def test_the_sql_date_pattern_accepts_exactly_the_dates_of_the_calendar():
    candidates = [
        f"{year}-{month:02d}-{day:02d}"
        for year, month, day in itertools.product(
            ("0000", "1900", "2000", "2023", "2024", "2100"), range(14), range(33)
        )
    ] + [
        "2024-1-01",
        "2024-01-1",
        "20240101",
        " 2024-01-01",
        "2024-01-01 ",
        "2024-01-01T00:00",
        "\uff12\uff10\uff12\uff14-01-01",
    ]  # the last: full-width digits

    def calendar_date(text):
        try:
            return len(text) == 10 and text.isascii() and dt.date.fromisoformat(text) is not None
        except ValueError:
            return False

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT value FROM unnest(%s::text[]) AS value WHERE value ~ %s", [candidates, ISO_DATE_SQL_PATTERN]
        )
        accepted = {row[0] for row in cursor.fetchall()}
    assert accepted == {text for text in candidates if calendar_date(text)}
    assert "2024-02-29" in accepted
    assert "2023-02-29" not in accepted
    assert "2000-02-29" in accepted
    assert "2100-02-29" not in accepted


def test_values_of_the_wrong_type_never_raise():
    person("Junk", age="abc", since="2026-02-30", birthday="31-12-1999", score="NaN")
    person("Good", age=30, since="2026-01-01", birthday="1999-12-31", score=1)
    node = {
        "any": [
            {"attribute": "age", "op": "gt", "value": 18},
            {"attribute": "since", "op": "lt", "value": "2026-03-01"},
            {"attribute": "since", "op": "more_than_days_ago", "value": 1},
            {"attribute": "birthday", "op": "anniversary_within_days", "value": 366},
            {"attribute": "score", "op": "between", "value": [0, 10]},
        ]
    }
    assert names(node) == {"Good"}


# --- Events ----------------------------------------------------------------------------------


@pytest.fixture
def shoppers():
    often = person("Often")
    buy(often, days_ago=10, value=Decimal("300"), category="Tuinmeubelen", items=3)
    buy(often, days_ago=30, value=Decimal("250"), category="Tuinmeubelen", items="many")
    buy(often, days_ago=200, value=Decimal("1000"), category="Tuinmeubelen", items=1)
    once = person("Once")
    buy(once, days_ago=5, value=Decimal("40"), category="Verlichting", items=2)
    buy(once, days_ago=6, value=None, category="Verlichting")
    viewer = person("Viewer")
    buy(viewer, days_ago=1, type=Event.Type.PAGE_VIEW, page="/tuin")
    person("Never")


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ({"event": "purchase"}, {"Often", "Once"}),
        ({"event": "page_view"}, {"Viewer"}),
        ({"event": "purchase", "within_days": 7}, {"Once"}),
        (
            {
                "event": "purchase",
                "where": [{"property": "category", "op": "eq", "value": "Tuinmeubelen"}],
                "within_days": 90,
                "aggregate": "count",
                "op": "gte",
                "value": 2,
            },
            {"Often"},
        ),
        ({"event": "purchase", "op": "eq", "value": 0}, {"Viewer", "Never"}),
        ({"event": "purchase", "within_days": 180, "op": "eq", "value": 0}, {"Viewer", "Never"}),
        ({"event": "purchase", "within_days": 7, "op": "eq", "value": 0}, {"Often", "Viewer", "Never"}),
        ({"event": "purchase", "op": "lt", "value": 3}, {"Once", "Viewer", "Never"}),
        ({"event": "purchase", "op": "neq", "value": 2}, {"Often", "Viewer", "Never"}),
        ({"event": "purchase", "op": "between", "value": [0, 2]}, {"Once", "Viewer", "Never"}),
        ({"event": "purchase", "op": "between", "value": [2, 3]}, {"Often", "Once"}),
        ({"event": "purchase", "op": "gt", "value": 2}, {"Often"}),
        ({"event": "purchase", "aggregate": "sum", "within_days": 365, "op": "gt", "value": 500}, {"Often"}),
        (
            {"event": "purchase", "aggregate": "sum", "within_days": 90, "op": "lt", "value": 100},
            {"Once", "Viewer", "Never"},
        ),
        ({"event": "purchase", "aggregate": "sum", "op": "eq", "value": 0}, {"Viewer", "Never"}),
        ({"event": "purchase", "aggregate": "avg", "op": "lt", "value": 100}, {"Once"}),
        ({"event": "purchase", "aggregate": "avg", "op": "gte", "value": 0}, {"Often", "Once"}),
        ({"event": "purchase", "aggregate": "max", "op": "gte", "value": 1000}, {"Often"}),
        ({"event": "purchase", "aggregate": "min", "op": "lte", "value": 250}, {"Often", "Once"}),
        ({"event": "purchase", "aggregate": "sum", "property": "items", "op": "eq", "value": 4}, {"Often"}),
        ({"event": "purchase", "aggregate": "max", "property": "items", "op": "lt", "value": 5}, {"Often", "Once"}),
        ({"event": "purchase", "aggregate": "min", "property": "items", "op": "eq", "value": 1}, {"Often"}),
        ({"event": "purchase", "where": [{"property": "items", "op": "gt", "value": 1}]}, {"Often", "Once"}),
        (
            {"event": "purchase", "where": [{"property": "items", "op": "gt", "value": 1}], "op": "gte", "value": 2},
            set(),
        ),
        ({"event": "purchase", "where": [{"property": "items", "op": "is_set"}], "op": "eq", "value": 1}, {"Once"}),
        ({"event": "purchase", "where": [{"property": "category", "op": "contains", "value": "licht"}]}, {"Once"}),
        (
            {"event": "purchase", "where": [{"property": "category", "op": "not_in", "value": ["Verlichting"]}]},
            {"Often"},
        ),
        ({"event": "page_view", "where": [{"property": "page", "op": "neq", "value": "/tuin"}]}, set()),
        ({"not": {"event": "purchase", "aggregate": "avg", "op": "gt", "value": 0}}, {"Viewer", "Never"}),
    ],
)
def test_events(shoppers, node, expected):
    assert names(node) == expected


# --- Consent, identities, scores -------------------------------------------------------------


def test_consent_granted_withdrawn_and_unknown():
    granted, withdrawn, _unknown = person("Granted"), person("Withdrawn"), person("Unknown")
    consent(granted, "email", "granted")
    consent(withdrawn, "email", "withdrawn")
    consent(withdrawn, "sms", "granted")
    assert names({"consent": "email", "status": "granted"}) == {"Granted"}
    assert names({"consent": "email", "status": "withdrawn"}) == {"Withdrawn"}
    assert names({"consent": "email", "status": "unknown"}) == {"Unknown"}
    assert names({"consent": "sms", "status": "unknown"}) == {"Granted", "Unknown"}


def test_identities_present_and_absent():
    IdentityFactory(contact=person("Mail"), kind=Identity.Kind.EMAIL)
    IdentityFactory(contact=person("Phone"), kind=Identity.Kind.PHONE, value="+31612345678")
    assert names({"identity": "email"}) == {"Mail"}
    assert names({"identity": "phone", "present": True}) == {"Phone"}
    assert names({"identity": "email", "present": False}) == {"Phone"}


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("eq", 0.5, {"Half"}),
        ("neq", 0.5, {"High"}),
        ("gt", 0.5, {"High"}),
        ("gte", 0.5, {"Half", "High"}),
        ("lt", 0.9, {"Half"}),
        ("lte", 0.9, {"Half", "High"}),
        ("between", [0.4, 0.6], {"Half"}),
    ],
)
def test_scores_and_a_contact_without_the_score_never_matches(op, value, expected):
    Score.objects.create(contact=person("Half"), name="churn", value=0.5)
    Score.objects.create(contact=person("High"), name="churn", value=0.9)
    Score.objects.create(contact=person("Other"), name="ltv", value=0.5)
    assert names({"score": "churn", "op": op, "value": value}) == expected


# --- Groups, references, erased contacts, one query -------------------------------------------


def test_all_any_and_not_nest_deeply():
    for first_name, age, city in [("A", 20, "Utrecht"), ("B", 40, "Utrecht"), ("C", 40, "Gouda"), ("D", 60, "Gouda")]:
        person(first_name, age=age, city=city)
    node = {
        "any": [
            {
                "all": [
                    {"attribute": "city", "op": "eq", "value": "Utrecht"},
                    {
                        "not": {
                            "any": [
                                {"attribute": "age", "op": "lt", "value": 30},
                                {"not": {"not": {"field": "first_name", "op": "eq", "value": "X"}}},
                            ]
                        }
                    },
                ]
            },
            {
                "not": {
                    "all": [
                        {"not": {"attribute": "age", "op": "gt", "value": 50}},
                        {"attribute": "city", "op": "eq", "value": "Gouda"},
                    ]
                }
            },
        ]
    }
    # B: Utrecht and not young; D: Gouda but over 50; A: not (young-or-X) fails, but not (Gouda...) holds
    assert names(node) == {"A", "B", "D"}
    assert names({"not": node}) == {"C"}


def test_segment_references_static_and_dynamic():
    anna, bram, cees = person("Anna", vip=True), person("Bram", vip=True), person("Cees")
    listed = SegmentFactory(kind=Segment.Kind.STATIC, rules={})
    SegmentMember.objects.create(segment=listed, contact=anna)
    SegmentMember.objects.create(segment=listed, contact=cees)
    vips = SegmentFactory(rules=rules({"attribute": "vip", "op": "eq", "value": True}))
    both = SegmentFactory(rules=rules({"all": [{"segment": vips.pk}, {"segment": listed.pk}]}))
    assert names({"segment": listed.pk}) == {"Anna", "Cees"}
    assert names({"segment": vips.pk}) == {"Anna", "Bram"}
    assert names({"not": {"segment": both.pk}}) == {"Bram", "Cees"}
    assert set(segment_contacts(segment=both, now=NOW)) == {anna}
    assert set(segment_contacts(segment=listed, now=NOW)) == {anna, cees}
    assert bram not in segment_contacts(segment=both, now=NOW)


def test_a_cycle_stored_in_the_database_is_refused_when_compiling():
    first = SegmentFactory(rules=rules({"identity": "email"}))
    second = SegmentFactory(rules=rules({"segment": first.pk}))
    Segment.objects.filter(pk=first.pk).update(rules=rules({"any": [{"identity": "phone"}, {"segment": second.pk}]}))
    first.refresh_from_db()
    with pytest.raises(RuleError) as raised:
        segment_count(segment=first, now=NOW)
    assert raised.value.path == "root.any.1.segment"
    assert f"{first.pk} → {second.pk} → {first.pk}" in raised.value.message


def test_erased_contacts_are_never_in_a_segment():
    kept, erased = person("Kept", vip=True), person("Erased", vip=True)
    Contact.objects.filter(pk=erased.pk).update(erased_at=NOW)
    listed = SegmentFactory(kind=Segment.Kind.STATIC, rules={})
    SegmentMember.objects.create(segment=listed, contact=kept)
    SegmentMember.objects.create(segment=listed, contact=erased)
    assert names({"attribute": "vip", "op": "eq", "value": True}) == {"Kept"}
    assert names({"not": {"attribute": "vip", "op": "eq", "value": True}}) == set()
    assert set(segment_contacts(segment=listed)) == {kept}


def test_a_segment_is_one_sql_statement(django_assert_num_queries):
    person("Anna", vip=True)
    listed = SegmentFactory(kind=Segment.Kind.STATIC, rules={})
    inner = SegmentFactory(rules=rules({"not": {"identity": "phone"}}))
    every_kind = rules(
        {
            "all": [
                {"field": "created_at", "op": "less_than_days_ago", "value": 30000},
                {"attribute": "vip", "op": "eq", "value": True},
                {"any": [{"event": "purchase", "aggregate": "sum", "op": "lt", "value": 5}, {"segment": listed.pk}]},
                {"event": "purchase", "within_days": 9, "op": "eq", "value": 0},
                {"consent": "email", "status": "unknown"},
                {"not": {"score": "churn", "op": "gt", "value": 1}},
                {"segment": inner.pk},
            ]
        }
    )
    contacts = segment_contacts(rules=every_kind)  # references are resolved here
    with django_assert_num_queries(1):
        assert contacts.count() == 1
    with django_assert_num_queries(3):  # the two referenced segments are read, then one query
        assert [c.first_name for c in segment_sample(rules=every_kind, size=5)] == ["Anna"]


def test_the_sample_is_the_newest_few():
    made = [person(f"P{n}", vip=True) for n in range(5)]
    person("Q", vip=False)
    sample = segment_sample(rules=rules({"attribute": "vip", "op": "eq", "value": True}), size=3)
    assert sample == made[:-4:-1]


# --- Rule values never reach SQL as text -----------------------------------------------------

HOSTILE = [
    "'; DROP TABLE audiences_contact; --",
    "x') OR 1=1 --",
    "a\"b'c\\d%_",
    "$$; DELETE FROM audiences_event; $$",
    "name}' -> 'x",
    "0",
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_text_in_every_condition_is_either_refused_or_a_literal(hostile):
    target = person(hostile, **{hostile: hostile, "plain": hostile})
    buy(target, days_ago=1, value=Decimal("5"), **{hostile: hostile, "plain": 3})
    person("Other", plain="other")
    literal = {
        "attribute key and value": {"attribute": hostile, "op": "eq", "value": hostile},
        "attribute in": {"attribute": "plain", "op": "in", "value": [hostile, "zzz"]},
        "attribute contains": {"attribute": hostile, "op": "contains", "value": hostile},
        "attribute is_set": {"attribute": hostile, "op": "is_set"},
        "field": {"field": "first_name", "op": "eq", "value": hostile},
        "field contains": {"field": "first_name", "op": "contains", "value": hostile},
        "field in": {"field": "first_name", "op": "in", "value": [hostile]},
        "property": {"event": "purchase", "where": [{"property": hostile, "op": "eq", "value": hostile}]},
        "property contains": {
            "event": "purchase",
            "where": [{"property": hostile, "op": "contains", "value": hostile}],
        },
        "aggregate property": {"event": "purchase", "aggregate": "sum", "property": "plain", "op": "eq", "value": 3},
    }
    for label, node in literal.items():
        assert names(node) == {hostile}, label
    assert names({"event": "purchase", "aggregate": "sum", "property": hostile, "op": "gt", "value": 0}) == set()
    refused = [
        {"field": hostile, "op": "eq", "value": "x"},
        {"attribute": "a", "op": hostile, "value": "x"},
        {"event": hostile},
        {"event": "purchase", "aggregate": hostile},
        {"consent": hostile, "status": "granted"},
        {"consent": "email", "status": hostile},
        {"identity": hostile},
        {"segment": hostile},
        {hostile: 1},
    ]
    if hostile != "0":  # "0" is a name a score may have
        refused.append({"score": hostile, "op": "gt", "value": 1})
    for node in refused:
        with pytest.raises(RuleError):
            segment_contacts(rules=rules(node), now=NOW)
    assert Contact.objects.count() == 2
    assert Event.objects.count() == 1


# --- The shape of the SQL: sets of contacts, the category index, dates ----------------------


def sql_of(root) -> str:
    query = segment_contacts(rules=rules(root), now=NOW).query
    sql, params = query.sql_with_params()
    with connection.cursor() as cursor:
        return cursor.mogrify(sql, params)


def test_an_any_of_set_conditions_is_one_union_looked_up_once():
    listed = SegmentFactory(kind=Segment.Kind.STATIC, rules={})
    mail, phone, both, buyer, scored, member, nobody = (
        person(name) for name in ("Mail", "Phone", "Both", "Buyer", "Scored", "Member", "Nobody")
    )
    consent(mail, "email", "granted")
    consent(both, "email", "withdrawn")
    consent(both, "sms", "granted")
    IdentityFactory(contact=phone, kind=Identity.Kind.PHONE, value="+31612345678")
    buy(both, days_ago=3)
    buy(buyer, days_ago=3, value=Decimal("80"))
    buy(buyer, days_ago=4, value=Decimal("40"))
    buy(nobody, days_ago=400, value=Decimal("500"))
    Score.objects.create(contact=scored, name="churn", value=0.9)
    SegmentMember.objects.create(segment=listed, contact=member)
    branches = [
        {"consent": "email", "status": "granted"},
        {"identity": "phone"},
        {"all": [{"consent": "sms", "status": "granted"}, {"event": "purchase", "within_days": 30}]},
        {"event": "purchase", "within_days": 30, "aggregate": "sum", "op": "gt", "value": 100},
        {"score": "churn", "op": "gte", "value": 0.5},
        {"segment": listed.pk},
    ]
    sql = sql_of({"any": branches})
    # One EXISTS over one UNION of six sets: no correlated subplan per branch.
    assert sql.count(" UNION ") == 5
    assert sql.count('WHERE "ids"."contact_id" = "audiences_contact"."id"') == 1
    assert sql.count("EXISTS") == 2  # the lookup, and the `all`'s second set looked up in its first
    assert names({"any": branches}) == {"Mail", "Phone", "Both", "Buyer", "Scored", "Member"}
    assert names({"not": {"any": branches}}) == {"Nobody"}
    # Beside a condition that is not a set, the sets stay one union, ORed with it.
    mixed = {"any": [*branches[:2], {"attribute": "vip", "op": "eq", "value": True}]}
    assert sql_of(mixed).count(" UNION ") == 1
    assert names(mixed) == {"Mail", "Phone"}


def test_what_holds_without_rows_is_not_taken_for_a_set():
    buy(person("Buyer"), days_ago=3, value=Decimal("80"))
    person("Never")
    never_or_little = {
        "any": [
            {"event": "purchase", "op": "eq", "value": 0},
            {"event": "purchase", "aggregate": "sum", "op": "lt", "value": 10},
            {"consent": "email", "status": "unknown"},
            {"identity": "email", "present": False},
        ]
    }
    assert " UNION " not in sql_of(never_or_little)
    assert names(never_or_little) == {"Buyer", "Never"}  # neither has consent or an e-mail identity


def test_the_category_is_compared_as_its_column_so_that_the_purchase_index_serves():
    garden = person("Garden")
    buy(garden, category="Tuinmeubelen")
    buy(person("Number"), category=5)
    buy(person("Text"), category="5")
    node = {"event": "purchase", "where": [{"property": "category", "op": "eq", "value": "Tuinmeubelen"}]}
    sql = sql_of(node)
    assert """U0."category" = 'Tuinmeubelen'""" in sql  # the generated column: properties ->> 'category'
    other = {"event": "purchase", "where": [{"property": "product", "op": "eq", "value": "Hoes"}]}
    assert """(U0."properties" ->> 'product'::text) = 'Hoes'""" in sql_of(other)
    assert "@>" not in sql  # "Tuinmeubelen" is no JSON: only a string gives that text
    assert "U0.\"type\" = 'purchase'" in sql
    assert names(node) == {"Garden"}
    # Text that ->> could also give for a number keeps the JSON test: "5" is not 5.
    five = {"event": "purchase", "where": [{"property": "category", "op": "eq", "value": "5"}]}
    assert "@>" in sql_of(five)
    assert names(five) == {"Text"}
    listed = {"event": "purchase", "where": [{"property": "category", "op": "in", "value": ["Tuinmeubelen", "5"]}]}
    assert names(listed) == {"Garden", "Text"}


def test_dates_are_checked_exactly_as_the_pattern_checks_them():
    candidates = [
        f"{year}-{month:02d}-{day:02d}"
        for year, month, day in itertools.product(
            ("0000", "0001", "1900", "2000", "2023", "2024", "2100", "9999"), range(14), range(33)
        )
    ] + [
        "2024-1-01",
        "20240101",
        " 2024-01-01",
        "2024-01-01 ",
        "2024-01-01T00:00",
        "\uff12\uff10\uff12\uff14-01-01",
        "2a24-01-01",
        "-024-01-01",
        "2024-0a-01",
        "2024-01-0-",
        "2024/01/01",
        "----------",
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT value FROM unnest(%s::text[]) AS value WHERE value ~ %s", [candidates, ISO_DATE_SQL_PATTERN]
        )
        by_pattern = {row[0] for row in cursor.fetchall()}
    for index, text in enumerate(candidates):
        person(f"P{index}", d=text)
    person("Number", d=20240101)
    # Within 366 days every day and month comes round: this holds exactly for the dates.
    chosen = names({"attribute": "d", "op": "anniversary_within_days", "value": 366})
    assert chosen == {f"P{index}" for index, text in enumerate(candidates) if text in by_pattern}
    assert "2024-02-29" in by_pattern and "2100-02-29" not in by_pattern


def test_not_equal_holds_for_events_without_that_property():
    plain = person("Plain")
    buy(plain)  # no properties at all
    garden = person("Garden")
    buy(garden, category="Tuinmeubelen", c="Tuinmeubelen")
    for key in ("category", "c"):  # the generated column, and a property in the JSON only
        node = {"event": "purchase", "where": [{"property": key, "op": "neq", "value": "Tuinmeubelen"}]}
        assert names(node) == {"Plain"}
        listed = {"event": "purchase", "where": [{"property": key, "op": "not_in", "value": ["Tuinmeubelen"]}]}
        assert names(listed) == {"Plain"}
