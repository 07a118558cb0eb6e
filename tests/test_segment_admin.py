import datetime as dt
import json

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audiences.models import Identity, Segment, SegmentMember
from audiences.selectors import builder
from audiences.selectors.builder import segment_builder_options
from audiences.services.consents import consent_record
from tests.factories import ContactFactory, EventFactory, IdentityFactory, SegmentFactory, UserFactory

EMAIL_GRANTED = {"version": 1, "root": {"all": [{"consent": "email", "status": "granted"}]}}
CHANGELIST = "admin:audiences_segment_changelist"


def granted(contact, channel="email"):
    consent_record(contact=contact, channel=channel, status="granted", source="test")
    return contact


def preview(client, rules, segment=None):
    url = (
        reverse("admin:audiences_segment_preview_change", args=[segment.pk])
        if segment
        else reverse("admin:audiences_segment_preview")
    )
    text = rules if isinstance(rules, str) else json.dumps(rules)
    return client.post(url, {"rules": text})


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


# --- The list ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [3, 30])
def test_the_segment_list_query_count_does_not_grow_with_its_rows(
    english_client, marketeer, django_assert_max_num_queries, rows
):
    for i in range(rows):
        SegmentFactory(name=f"Segment {i:02}", cached_count=i, counted_at=timezone.now())
    client = english_client(marketeer)

    with django_assert_max_num_queries(7):
        response = client.get(reverse(CHANGELIST))

    assert response.status_code == 200
    assert response.content.decode().count('class="field-count_with_age"') == rows


def test_the_segment_list_shows_the_cached_count_and_its_age_never_a_live_count(english_client, marketeer):
    five_minutes_ago = timezone.now() - dt.timedelta(minutes=5, seconds=10)
    SegmentFactory(name="Tuinkopers", cached_count=1234, counted_at=five_minutes_ago, description="Kochten tuinsets")
    SegmentFactory(name="Nog niet geteld")
    granted(ContactFactory())  # a contact the rules would match: the list must not count it

    html = english_client(marketeer).get(reverse(CHANGELIST)).content.decode()

    assert "1,234" in html and "· 5\xa0minutes ago" in html
    assert "Kochten tuinsets" in html
    assert "not counted yet" in html


def test_the_segment_list_searches_by_name(english_client, marketeer):
    SegmentFactory(name="Tuinkopers")
    SegmentFactory(name="Slapers")

    html = english_client(marketeer).get(reverse(CHANGELIST), {"q": "tuin"}).content.decode()

    assert "Tuinkopers" in html and "Slapers" not in html


# --- The live count -------------------------------------------------------------------------


def test_the_preview_counts_the_rules_and_samples_contacts_linked_to_their_pages(english_client, marketeer):
    matching = [granted(ContactFactory()) for _ in range(3)]
    ContactFactory()  # no consent recorded: unknown, not granted
    consent_record(contact=ContactFactory(), channel="email", status="withdrawn", source="test")

    response = preview(english_client(marketeer), EMAIL_GRANTED)

    assert response.status_code == 200
    data = response.json()
    assert data["count"] == 3
    assert data["errors"] == []
    assert {row["contact_key"] for row in data["sample"]} == {str(c.contact_key) for c in matching}
    by_key = {row["contact_key"]: row for row in data["sample"]}
    first = matching[0]
    assert by_key[str(first.contact_key)]["name"] == str(first)
    assert by_key[str(first.contact_key)]["url"] == reverse("admin:audiences_contact_change", args=[first.pk])


def test_the_preview_samples_twenty_of_a_larger_segment(english_client, marketeer):
    for _ in range(23):
        granted(ContactFactory())

    data = preview(english_client(marketeer), EMAIL_GRANTED).json()

    assert data["count"] == 23
    assert len(data["sample"]) == 20


def test_the_preview_counts_event_conditions(english_client, marketeer):
    now = timezone.now()
    twice = ContactFactory()
    EventFactory.create_batch(2, contact=twice, occurred_at=now - dt.timedelta(days=10))
    once = ContactFactory()
    EventFactory(contact=once, occurred_at=now - dt.timedelta(days=10))
    long_ago = ContactFactory()
    EventFactory.create_batch(2, contact=long_ago, occurred_at=now - dt.timedelta(days=200))
    rules = {
        "version": 1,
        "root": {"all": [{"event": "purchase", "within_days": 90, "aggregate": "count", "op": "gte", "value": 2}]},
    }

    data = preview(english_client(marketeer), rules).json()

    assert data["count"] == 1
    assert [row["contact_key"] for row in data["sample"]] == [str(twice.contact_key)]


def test_the_preview_names_each_error_by_its_path(english_client, marketeer):
    rules = {
        "version": 1,
        "root": {
            "all": [
                {"consent": "email", "status": "granted"},
                {"any": [{"event": "purchase", "within_days": 0}, {"consent": "fax", "status": "granted"}]},
            ]
        },
    }

    response = preview(english_client(marketeer), rules)

    assert response.status_code == 400
    data = response.json()
    assert data["count"] is None and data["sample"] == []
    paths = [error["path"] for error in data["errors"]]
    assert paths == ["root.all.1.any.0.within_days", "root.all.1.any.1.consent"]
    assert all(error["message"] for error in data["errors"])


def test_the_preview_reports_json_that_does_not_parse(english_client, marketeer):
    response = preview(english_client(marketeer), '{"version": 1, "root": ')

    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == ""
    assert "JSON" in response.json()["errors"][0]["message"]


def test_the_preview_refuses_a_segment_that_contains_itself(english_client, marketeer):
    segment = SegmentFactory()
    other = SegmentFactory(rules={"version": 1, "root": {"all": [{"segment": segment.pk}]}})
    itself = {"version": 1, "root": {"all": [{"consent": "email", "status": "granted"}, {"segment": segment.pk}]}}
    through_other = {"version": 1, "root": {"not": {"segment": other.pk}}}
    client = english_client(marketeer)

    direct = preview(client, itself, segment=segment)
    indirect = preview(client, through_other, segment=segment)
    elsewhere = preview(client, itself)  # a new segment may refer to this one

    assert direct.status_code == 400
    assert [error["path"] for error in direct.json()["errors"]] == ["root.all.1.segment"]
    assert indirect.status_code == 400
    assert [error["path"] for error in indirect.json()["errors"]] == ["root.not.segment"]
    assert elsewhere.status_code == 200


def test_the_preview_is_for_who_builds_segments_and_names_contacts_only_to_who_may_see_them(
    english_client, marketeer, analyst, agent
):
    granted(ContactFactory(first_name="Geheim", last_name="Persoon"))
    nobody = UserFactory(username="staff-without-role")  # staff, in no role group
    segment_reader = UserFactory(username="segment-reader")
    segment_reader.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_segment", "change_segment"], content_type__app_label="audiences")
    )

    assert preview(english_client(nobody), EMAIL_GRANTED).status_code == 403
    # Counting by any rule probes the data: analysts and agents read segments, they don't build them.
    assert preview(english_client(agent), EMAIL_GRANTED).status_code == 403
    assert preview(english_client(analyst), EMAIL_GRANTED).status_code == 403
    builder = preview(english_client(marketeer), EMAIL_GRANTED).json()
    assert builder["count"] == 1 and builder["sample"][0]["name"] == "Geheim Persoon"
    blind = preview(english_client(segment_reader), EMAIL_GRANTED).json()
    assert blind["count"] == 1 and blind["sample"] == []  # may change segments, may not see contacts


def test_the_preview_is_a_csrf_protected_post_for_logged_in_users(marketeer):
    url = reverse("admin:audiences_segment_preview")
    anonymous = Client().post(url, {"rules": json.dumps(EMAIL_GRANTED)})
    checked = Client(enforce_csrf_checks=True)
    checked.force_login(marketeer)

    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]
    assert checked.post(url, {"rules": json.dumps(EMAIL_GRANTED)}).status_code == 403
    assert checked.get(url).status_code == 405


# --- The form -----------------------------------------------------------------------------


def add_form(**overrides):
    data = {"name": "Tuinkopers", "kind": "dynamic", "description": "", "rules": json.dumps(EMAIL_GRANTED)}
    data.update(overrides)
    return data


def test_adding_a_dynamic_segment_keeps_its_rules_and_who_made_it(english_client, marketeer):
    response = english_client(marketeer).post(reverse("admin:audiences_segment_add"), add_form())

    assert response.status_code == 302
    segment = Segment.objects.get(name="Tuinkopers")
    assert segment.rules == EMAIL_GRANTED
    assert segment.kind == Segment.Kind.DYNAMIC
    assert segment.created_by == marketeer


def test_saving_refuses_bad_rules_and_names_the_path(english_client, marketeer):
    bad = {"version": 1, "root": {"all": [{"consent": "email", "status": "granted"}, {"score": "churn", "op": "gt"}]}}

    response = english_client(marketeer).post(reverse("admin:audiences_segment_add"), add_form(rules=json.dumps(bad)))

    assert response.status_code == 200
    assert not Segment.objects.filter(name="Tuinkopers").exists()
    errors = response.context["adminform"].form.errors["rules"]
    assert errors == ["root.all.1.value: gt needs a value"]
    html = response.content.decode()
    # The builder gets the errors with their paths, to show them at the node.
    config = json.loads(html.split('id="segment-builder-config" type="application/json">')[1].split("</script>")[0])
    assert config["errors"] == [{"path": "root.all.1.value", "message": "gt needs a value"}]


def test_saving_refuses_an_empty_dynamic_segment(english_client, marketeer):
    response = english_client(marketeer).post(reverse("admin:audiences_segment_add"), add_form(rules="{}"))

    assert response.status_code == 200
    assert "add at least one condition" in response.context["adminform"].form.errors["rules"][0]
    assert not Segment.objects.exists()


def test_saving_refuses_a_segment_that_refers_to_itself(english_client, marketeer):
    segment = SegmentFactory(name="Tuinkopers")
    rules = {"version": 1, "root": {"any": [{"consent": "email", "status": "granted"}, {"segment": segment.pk}]}}

    response = english_client(marketeer).post(
        reverse("admin:audiences_segment_change", args=[segment.pk]),
        {"name": "Tuinkopers", "description": "", "rules": json.dumps(rules)},
    )

    assert response.status_code == 200
    [error] = response.context["adminform"].form.errors["rules"]
    assert error.startswith("root.any.1.segment: ")
    segment.refresh_from_db()
    assert segment.rules == EMAIL_GRANTED


def test_saving_new_rules_counts_the_segment_again(english_client, marketeer):
    long_ago = timezone.now() - dt.timedelta(days=3)
    segment = SegmentFactory(name="Tuinkopers", cached_count=12, counted_at=long_ago)
    texter = ContactFactory()
    consent_record(contact=texter, channel="sms", status="granted", source="app")
    rules = {"version": 1, "root": {"all": [{"consent": "sms", "status": "granted"}]}}

    response = english_client(marketeer).post(
        reverse("admin:audiences_segment_change", args=[segment.pk]),
        {"name": "Tuinkopers", "description": "Per sms", "rules": json.dumps(rules)},
    )

    assert response.status_code == 302
    segment.refresh_from_db()
    assert (segment.rules, segment.description, segment.cached_count) == (rules, "Per sms", 1)
    assert segment.counted_at > long_ago


def test_the_change_form_embeds_the_builder_with_its_options_and_translatable_labels(client, marketeer):
    contact = ContactFactory(attributes={"loyalty_member": True})
    EventFactory(contact=contact, properties={"category": "Tuinmeubelen"})
    segment = SegmentFactory()
    client.force_login(marketeer)

    html = client.get(reverse("admin:audiences_segment_change", args=[segment.pk])).content.decode()

    assert "audiences/segment-builder.js" in html and "audiences/segment-builder.css" in html

    def script(name):
        return json.loads(html.split(f'id="{name}" type="application/json">')[1].split("</script>")[0])

    config, labels, options = (
        script("segment-builder-config"),
        script("segment-builder-labels"),
        script("segment-builder-options"),
    )
    assert config["previewUrl"] == reverse("admin:audiences_segment_preview_change", args=[segment.pk])
    assert config["segmentId"] == segment.pk
    assert labels["add_condition"] == "+ voorwaarde"  # in the marketeer's language (Dutch by default)
    assert {"key": "loyalty_member", "type": "boolean", "values": []} in options["attributes"]
    assert options["event_properties"]["purchase"] == [{"key": "category", "type": "text", "values": ["Tuinmeubelen"]}]
    # The pickers speak the admin's language (Dutch by default): their labels come from the models.
    assert {"value": "purchase", "label": "Aankoop"} in options["event_types"]


# --- The pickers' options -----------------------------------------------------------------


def test_the_builder_options_read_keys_from_the_newest_rows_only(db, django_assert_num_queries, monkeypatch):
    old = ContactFactory(attributes={"old_key": "x"})
    old.created_at = timezone.now() - dt.timedelta(days=400)
    old.save(update_fields=["created_at"])
    for i in range(3):
        ContactFactory(attributes={"city": ["Utrecht", "Gouda", "Utrecht"][i], "spent": 10 * i})
    EventFactory(type="page_view", properties={"url": "/tuin"}, occurred_at=timezone.now() - dt.timedelta(days=300))
    EventFactory(type="page_view", properties={"product": "Parasol"})
    segment = SegmentFactory(name="Tuinkopers")
    monkeypatch.setattr(builder, "ATTRIBUTE_SAMPLE", 3)
    monkeypatch.setattr(builder, "EVENT_SAMPLE_PER_TYPE", 1)

    with django_assert_num_queries(4):
        options = segment_builder_options()

    assert options["attributes"] == [
        {"key": "city", "type": "text", "values": ["Utrecht", "Gouda"]},
        {"key": "spent", "type": "number", "values": []},
    ]
    assert options["event_properties"] == {"page_view": [{"key": "product", "type": "text", "values": ["Parasol"]}]}
    assert options["segments"] == [{"value": segment.pk, "label": "Tuinkopers", "kind": "dynamic"}]
    assert [kind["value"] for kind in options["identity_kinds"]] == list(Identity.Kind.values)


def test_the_builder_options_list_each_score_name_once(db):
    from audiences.models import Score

    for name in ["churn_risk", "lifetime_value", "churn_risk"]:
        Score.objects.create(contact=ContactFactory(), name=name, value=0.5)

    assert segment_builder_options()["scores"] == ["churn_risk", "lifetime_value"]


# --- Actions ------------------------------------------------------------------------------


def test_refresh_count_counts_the_selected_segments(english_client, marketeer):
    for _ in range(3):
        granted(ContactFactory())
    email, sms = SegmentFactory(), SegmentFactory(rules={"version": 1, "root": {"consent": "sms", "status": "granted"}})

    response = english_client(marketeer).post(
        reverse(CHANGELIST), {"action": "refresh_count", "_selected_action": [email.pk, sms.pk]}
    )

    assert response.status_code == 302
    email.refresh_from_db()
    sms.refresh_from_db()
    assert (email.cached_count, sms.cached_count) == (3, 0)
    assert email.counted_at is not None
    assert messages_of(response) == ["Counted 2 segments."]


def test_analysts_cannot_refresh_or_snapshot(english_client, analyst):
    segment = SegmentFactory()

    html = english_client(analyst).get(reverse(CHANGELIST)).content.decode()

    assert segment.name in html
    assert 'value="refresh_count"' not in html and 'value="snapshot_as_static"' not in html


def test_snapshot_freezes_a_dynamic_segment_into_a_list(english_client, marketeer):
    inside = [granted(ContactFactory()) for _ in range(2)]
    ContactFactory()
    dynamic = SegmentFactory(name="Mailbaar")
    already_a_list = SegmentFactory(name="Lijst", kind=Segment.Kind.STATIC, rules={})

    response = english_client(marketeer).post(
        reverse(CHANGELIST), {"action": "snapshot_as_static", "_selected_action": [dynamic.pk, already_a_list.pk]}
    )

    assert response.status_code == 302
    snapshot = Segment.objects.get(snapshot_of=dynamic)
    assert snapshot.kind == Segment.Kind.STATIC
    assert snapshot.created_by == marketeer
    assert set(snapshot.members.values_list("contact_id", flat=True)) == {c.pk for c in inside}
    assert Segment.objects.filter(snapshot_of=already_a_list).count() == 0
    shown = messages_of(response)
    assert any("Lijst is already a list" in message for message in shown)
    assert any(snapshot.name in message for message in shown)


# --- Static lists -------------------------------------------------------------------------


def test_a_csv_of_identities_fills_a_static_list_and_reports_what_it_found(english_client, marketeer):
    anna = IdentityFactory(value="anna@example.nl").contact
    bram = IdentityFactory(value="bram@example.nl").contact
    segment = SegmentFactory(name="Beurs 2026", kind=Segment.Kind.STATIC, rules={})
    csv = "naam;email\nAnna;Anna@Example.nl\nBram;bram@example.nl\nCor;cor@example.nl\nDirk;geen-adres\n"
    upload = SimpleUploadedFile("beurs.csv", csv.encode(), content_type="text/csv")

    response = english_client(marketeer).post(
        reverse("admin:audiences_segment_change", args=[segment.pk]),
        {"name": "Beurs 2026", "description": "", "identity_kind": "email", "identities_file": upload},
    )

    assert response.status_code == 302
    assert set(segment.members.values_list("contact_id", flat=True)) == {anna.pk, bram.pk}
    [message] = [m for m in messages_of(response) if m.startswith("From the file:")]
    assert "2 found (2 new on the list), 1 not found, 1 invalid" in message
    assert "cor@example.nl" in message and "geen-adres" in message


def test_a_csv_of_phone_numbers_without_header_fills_a_new_static_list(english_client, marketeer):
    carla = IdentityFactory(kind=Identity.Kind.PHONE, value="+31612345678").contact
    upload = SimpleUploadedFile("bellers.csv", b"06-12345678\n0687654321\n", content_type="text/csv")

    response = english_client(marketeer).post(
        reverse("admin:audiences_segment_add"),
        add_form(name="Bellers", kind="static", identity_kind="phone", identities_file=upload),
    )

    assert response.status_code == 302
    segment = Segment.objects.get(name="Bellers")
    assert segment.kind == Segment.Kind.STATIC and segment.rules == {}
    assert list(segment.members.values_list("contact_id", flat=True)) == [carla.pk]
    [message] = [m for m in messages_of(response) if m.startswith("From the file:")]
    assert "1 found (1 new on the list), 1 not found, 0 invalid" in message


def test_a_dynamic_segment_takes_no_file(english_client, marketeer):
    upload = SimpleUploadedFile("lijst.csv", b"email\nanna@example.nl\n", content_type="text/csv")

    response = english_client(marketeer).post(
        reverse("admin:audiences_segment_add"), add_form(identity_kind="email", identities_file=upload)
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["identities_file"]
    assert not Segment.objects.exists()


def test_members_are_taken_off_a_static_list_on_its_page(english_client, marketeer):
    segment = SegmentFactory(name="Beurs 2026", kind=Segment.Kind.STATIC, rules={})
    stay, leave = ContactFactory(), ContactFactory()
    SegmentMember.objects.create(segment=segment, contact=stay)
    SegmentMember.objects.create(segment=segment, contact=leave)
    client = english_client(marketeer)

    page = client.get(reverse("admin:audiences_segment_change", args=[segment.pk])).content.decode()
    response = client.post(
        reverse("admin:audiences_segment_change", args=[segment.pk]),
        {"name": "Beurs 2026", "description": "", "identity_kind": "email", "remove_members": [leave.pk]},
    )

    assert "2 contacts on the list." in page
    assert reverse("admin:audiences_contact_change", args=[leave.pk]) in page
    assert response.status_code == 302
    assert list(segment.members.values_list("contact_id", flat=True)) == [stay.pk]
    assert "1 contact taken off the list." in messages_of(response)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("email\n".encode("utf-16"), "UTF-16"),
        (b'email\n"' + b"a" * 200_000 + b'"\n', "cannot be read as CSV"),
    ],
)
def test_a_csv_that_cannot_be_read_is_refused_on_the_form(english_client, marketeer, content, message):
    segment = SegmentFactory(name="Lijst", kind=Segment.Kind.STATIC, rules={})
    upload = SimpleUploadedFile("lijst.csv", content, content_type="text/csv")

    response = english_client(marketeer).post(
        reverse("admin:audiences_segment_change", args=[segment.pk]),
        {"name": "Lijst", "description": "", "identity_kind": "email", "identities_file": upload},
    )

    assert response.status_code == 200
    [error] = response.context["adminform"].form.errors["identities_file"]
    assert message in error
    assert not segment.members.exists()
