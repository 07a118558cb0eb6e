"""Segment services: create and update with validated rules, count refresh, snapshot, static lists
from identities; each run twice to show it is idempotent."""

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audiences.models import Contact, Identity, Segment, SegmentMember
from audiences.services.segments import (
    segment_create,
    segment_members_add,
    segment_members_from_identities,
    segment_members_remove,
    segment_refresh_count,
    segment_snapshot,
    segment_update,
)
from tests.factories import ContactFactory, IdentityFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]

VIPS = {"version": 1, "root": {"attribute": "vip", "op": "eq", "value": True}}


def members(segment) -> set[int]:
    return set(SegmentMember.objects.filter(segment=segment).values_list("contact_id", flat=True))


def test_create_a_dynamic_segment_from_rules_or_their_json():
    user = UserFactory()
    segment = segment_create(name="VIP", kind=Segment.Kind.DYNAMIC, rules=VIPS, description="De beste", user=user)
    segment.refresh_from_db()
    assert (segment.rules, segment.created_by, segment.description) == (VIPS, user, "De beste")
    text = '{"version": 1, "root": {"score": "churn", "op": "gt", "value": 0.7}}'
    assert segment_create(name="Churn", kind="dynamic", rules=text).rules["root"]["value"] == 0.7


@pytest.mark.parametrize(
    ("rules", "words"),
    [
        (None, "needs rules"),
        ({"version": 1, "root": {"all": [{"event": "purchase", "within_days": "abc"}]}}, "root.all.0.within_days: "),
        ('{"version": 1, "root": ', "not valid JSON"),
        ({"version": 1, "root": {"segment": 999999}}, "root.segment: There is no segment 999999"),
    ],
)
def test_bad_rules_are_a_validation_error_naming_the_path(rules, words):
    with pytest.raises(ValidationError) as raised:
        segment_create(name="Kapot", kind=Segment.Kind.DYNAMIC, rules=rules)
    assert any(words in message for message in raised.value.message_dict["rules"]), raised.value.message_dict
    assert not Segment.objects.filter(name="Kapot").exists()


def test_a_static_segment_has_no_rules_and_names_are_unique():
    segment_create(name="Lijst", kind=Segment.Kind.STATIC)
    with pytest.raises(ValidationError) as raised:
        segment_create(name="Lijst", kind=Segment.Kind.STATIC)
    assert "name" in raised.value.message_dict
    with pytest.raises(ValidationError) as raised:
        segment_create(name="Lijst 2", kind=Segment.Kind.STATIC, rules=VIPS)
    assert "rules" in raised.value.message_dict


def test_update_refuses_a_cycle_and_keeps_the_old_rules():
    first = segment_create(name="Eerste", kind="dynamic", rules=VIPS)
    second = segment_create(name="Tweede", kind="dynamic", rules={"version": 1, "root": {"segment": first.pk}})
    cycle = {"version": 1, "root": {"any": [{"identity": "email"}, {"segment": second.pk}]}}
    with pytest.raises(ValidationError) as raised:
        segment_update(segment=first, rules=cycle)
    message = raised.value.message_dict["rules"][0]
    assert message.startswith(f"root.any.1.segment: Segment {first.pk} refers back")
    assert f"{first.pk} → {second.pk} → {first.pk}" in message
    with pytest.raises(ValidationError):
        segment_update(segment=first, rules={"version": 1, "root": {"segment": first.pk}})
    first.refresh_from_db()
    assert first.rules == VIPS


def test_update_changes_the_rules_and_forgets_the_stale_count():
    ContactFactory(attributes={"vip": True})
    segment = segment_create(name="VIP", kind="dynamic", rules=VIPS)
    assert segment_refresh_count(segment=segment) == 1
    everyone = {"version": 1, "root": {"not": {"identity": "phone"}}}
    segment_update(segment=segment, rules=everyone, name="Iedereen")
    segment.refresh_from_db()
    assert (segment.name, segment.rules, segment.cached_count, segment.counted_at) == ("Iedereen", everyone, None, None)


def test_refresh_count_stores_the_count_and_when_twice():
    ContactFactory(attributes={"vip": True})
    ContactFactory(attributes={"vip": False})
    erased = ContactFactory(attributes={"vip": True})
    Contact.objects.filter(pk=erased.pk).update(erased_at=timezone.now())
    segment = segment_create(name="VIP", kind="dynamic", rules=VIPS)
    moment = timezone.now()
    for _ in range(2):
        assert segment_refresh_count(segment=segment, now=moment) == 1
        segment.refresh_from_db()
        assert (segment.cached_count, segment.counted_at) == (1, moment)


def test_snapshot_freezes_a_dynamic_segment_in_one_insert():
    vips = [ContactFactory(attributes={"vip": True}) for _ in range(3)]
    ContactFactory(attributes={"vip": False})
    segment = segment_create(name="VIP", kind="dynamic", rules=VIPS)
    user = UserFactory()
    with CaptureQueriesContext(connection) as queries:
        snapshot = segment_snapshot(segment=segment, user=user)
    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("INSERT INTO audiences_segmentmember")]
    assert len(inserts) == 1
    assert "SELECT" in inserts[0]
    assert (snapshot.kind, snapshot.snapshot_of, snapshot.created_by, snapshot.cached_count) == (
        "static",
        segment,
        user,
        3,
    )
    assert members(snapshot) == {contact.pk for contact in vips}
    # The list is frozen: new VIPs join the dynamic segment, not the snapshot.
    ContactFactory(attributes={"vip": True})
    assert members(snapshot) == {contact.pk for contact in vips}
    again = segment_snapshot(segment=segment, name="VIP maart")
    assert again.name == "VIP maart"
    assert len(members(again)) == 4
    assert snapshot.name != again.name


def test_two_snapshots_in_the_same_second_get_different_names():
    segment = segment_create(name="VIP", kind="dynamic", rules=VIPS)
    moment = timezone.now()
    first = segment_snapshot(segment=segment, now=moment)
    second = segment_snapshot(segment=segment, now=moment)
    assert first.name != second.name
    assert first.name.startswith("VIP")


def test_snapshot_of_bad_rules_creates_nothing():
    segment = segment_create(name="VIP", kind="dynamic", rules=VIPS)
    Segment.objects.filter(pk=segment.pk).update(rules={"version": 1, "root": {"segment": segment.pk}})
    segment.refresh_from_db()
    with pytest.raises(ValueError, match="refers back"):
        segment_snapshot(segment=segment)
    assert Segment.objects.count() == 1


def test_members_add_and_remove_are_idempotent_and_skip_erased_contacts():
    listed = segment_create(name="Lijst", kind="static")
    anna, bram = ContactFactory(), ContactFactory()
    erased = ContactFactory(erased_at=timezone.now())
    assert segment_members_add(segment=listed, contacts=[anna, bram.pk, erased]) == 2
    assert segment_members_add(segment=listed, contacts=[anna, bram.pk, erased]) == 0
    assert segment_members_add(segment=listed, contacts=Contact.objects.all()) == 0
    assert members(listed) == {anna.pk, bram.pk}
    assert segment_members_remove(segment=listed, contacts=[anna]) == 1
    assert segment_members_remove(segment=listed, contacts=[anna]) == 0
    assert members(listed) == {bram.pk}
    dynamic = segment_create(name="VIP", kind="dynamic", rules=VIPS)
    with pytest.raises(ValidationError):
        segment_members_add(segment=dynamic, contacts=[anna])


def test_a_static_list_from_a_column_of_identities_reports_what_it_could_not_use():
    listed = segment_create(name="Beurs", kind="static")
    anna = IdentityFactory(kind=Identity.Kind.EMAIL, value="anna@example.nl").contact
    bram = IdentityFactory(kind=Identity.Kind.EMAIL, value="bram@example.nl").contact
    IdentityFactory(kind=Identity.Kind.PHONE, value="+31612345678")
    gone = IdentityFactory(kind=Identity.Kind.EMAIL, value="gone@example.nl").contact
    Contact.objects.filter(pk=gone.pk).update(erased_at=timezone.now())
    column = [
        " Anna@Example.NL ",
        "bram@example.nl",
        "anna@example.nl",  # the same person twice: on the list once
        "nobody@example.nl",
        "gone@example.nl",
        "not an address",
        "",
        "+31612345678",  # a phone number is not an e-mail address
    ]
    result = segment_members_from_identities(segment=listed, kind="email", values=column)
    assert (result.found, result.added) == (3, 2)
    assert result.not_found == ["nobody@example.nl", "gone@example.nl"]
    assert [value for value, _why in result.invalid] == ["not an address", "", "+31612345678"]
    assert all(why for _value, why in result.invalid)
    assert members(listed) == {anna.pk, bram.pk}
    again = segment_members_from_identities(segment=listed, kind="email", values=column)
    assert (again.found, again.added, again.not_found) == (3, 0, result.not_found)
    assert members(listed) == {anna.pk, bram.pk}


def test_identities_of_other_kinds_are_normalised_the_same_way():
    listed = segment_create(name="Bellen", kind="static")
    phone = IdentityFactory(kind=Identity.Kind.PHONE, value="+31612345678").contact
    result = segment_members_from_identities(segment=listed, kind="phone", values=["06-12345678", "12"])
    assert (result.found, result.added, result.not_found, len(result.invalid)) == (1, 1, [], 1)
    assert members(listed) == {phone.pk}
    with pytest.raises(ValidationError):
        segment_members_from_identities(segment=listed, kind="passport", values=["x"])


def test_snapshot_of_many_contacts_is_fast():
    """The hot path at a smaller scale: 20,000 contacts, frozen in one statement in well under a second."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audiences_contact (created_at, updated_at, contact_key, first_name, last_name, locale,"
            " timezone, attributes)"
            " SELECT now(), now(), gen_random_uuid(), 'P', '', 'nl', '', jsonb_build_object('vip', n % 2 = 0)"
            " FROM generate_series(1, 20000) AS n"
        )
    segment = segment_create(name="VIP", kind="dynamic", rules=VIPS)
    started = dt.datetime.now(tz=dt.UTC)
    snapshot = segment_snapshot(segment=segment)
    elapsed = dt.datetime.now(tz=dt.UTC) - started
    assert snapshot.cached_count == 10_000
    assert SegmentMember.objects.filter(segment=snapshot).count() == 10_000
    assert elapsed < dt.timedelta(seconds=2)


# --- Memory for segment queries --------------------------------------------------------------


def work_mem() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW work_mem")
        return cursor.fetchone()[0]


def test_segment_queries_get_their_work_mem_and_give_it_back(settings):
    from audiences.selectors.segments import segment_count, segment_query_memory

    settings.SEGMENT_WORK_MEM = "48MB"
    before = work_mem()
    with segment_query_memory():
        assert work_mem() == "48MB"
    assert work_mem() == before  # inside the test's transaction, put back
    ContactFactory(attributes={"vip": True})
    with CaptureQueriesContext(connection) as queries:
        assert segment_count(rules={"version": 1, "root": {"attribute": "vip", "op": "eq", "value": True}}) == 1
    assert any("set_config('work_mem'" in query["sql"] for query in queries.captured_queries)
    assert work_mem() == before


@pytest.mark.parametrize("value", ["64", "64 MB", "64MB'; DROP TABLE audiences_contact; --", "0MB", 64, "1TB"])
def test_a_work_mem_that_is_not_a_plain_size_is_refused(settings, value):
    from django.core.exceptions import ImproperlyConfigured

    from audiences.selectors.segments import segment_query_memory

    settings.SEGMENT_WORK_MEM = value
    with pytest.raises(ImproperlyConfigured), segment_query_memory():
        pass
