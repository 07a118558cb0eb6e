import datetime as dt
import json
import uuid

import pytest
from django.utils import timezone

from audiences.models import Consent, Contact, ContactMerge, Event, Identity, PrivacyRequest
from dialoog.roles import ADMINISTRATOR
from tests.factories import ContactFactory, IdentityFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def integration(db):
    """The webshop's API user."""
    return UserFactory(username="webshop", role=ADMINISTRATOR)


@pytest.fixture
def api(api_client_for, integration):
    return api_client_for(integration)


def test_post_contact_creates_then_updates_by_any_identity(api):
    body = {
        "identities": {"email": " Sanne@Example.NL", "customer_number": "K123"},
        "first_name": "Sanne",
        "attributes": {"city": "Utrecht"},
        "consents": [{"channel": "email", "status": "granted", "proof": "Registratieformulier"}],
    }
    created = api.post("/api/v1/contacts/", body, format="json")
    assert created.status_code == 201, created.json()
    key = created.json()["contact_key"]
    assert created.json()["consents"]["email"]["status"] == "granted"
    assert created.json()["consents"]["sms"]["status"] == "unknown"

    updated = api.post(
        "/api/v1/contacts/",
        {"identities": {"customer_number": "K123", "phone": "06 1234 5678"}, "attributes": {"tier": "gold"}},
        format="json",
    )
    assert updated.status_code == 200
    profile = updated.json()
    assert profile["contact_key"] == key
    assert profile["attributes"] == {"city": "Utrecht", "tier": "gold"}
    assert {(i["kind"], i["value"]) for i in profile["identities"]} == {
        ("email", "sanne@example.nl"),
        ("customer_number", "K123"),
        ("phone", "+31612345678"),
    }


def test_post_contact_with_identities_of_two_contacts_merges_them(api):
    one = api.post("/api/v1/contacts/", {"identities": {"email": "a@example.nl"}}, format="json").json()
    two = api.post("/api/v1/contacts/", {"identities": {"phone": "0611112222"}}, format="json").json()
    both = api.post(
        "/api/v1/contacts/", {"identities": {"email": "a@example.nl", "phone": "+31611112222"}}, format="json"
    )
    assert both.status_code == 200
    assert both.json()["contact_key"] == one["contact_key"]
    # The merged contact's key still answers, with the surviving profile.
    assert api.get(f"/api/v1/contacts/{two['contact_key']}/").json()["contact_key"] == one["contact_key"]
    merge = ContactMerge.objects.get()

    undone = api.post(f"/api/v1/merges/{merge.pk}/unmerge/")
    assert undone.status_code == 200
    assert undone.json()["contact_key"] == two["contact_key"]
    assert Contact.objects.count() == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"identities": {}}, "identities"),
        ({"identities": {"email": "not-an-address"}}, "identities.email"),
        ({"identities": {"phone": "bel me"}}, "identities.phone"),
        ({"identities": {"fax": "123"}}, "identities.fax"),
        (
            {"identities": {"email": "a@example.nl"}, "consents": [{"channel": "pigeon", "status": "granted"}]},
            "consents.0.channel",
        ),
        ({"identities": "a@example.nl"}, "identities"),
    ],
)
def test_post_contact_rejects_bad_input_naming_the_field(api, body, field):
    response = api.post("/api/v1/contacts/", body, format="json")
    assert response.status_code == 400
    assert field in [error["field"] for error in response.json()["errors"]]
    assert not Contact.objects.exists()


def test_profile_lookup_by_email_or_phone_and_recent_events(api, agent, api_client_for):
    contact = ContactFactory(first_name="Joost")
    IdentityFactory(contact=contact, kind="email", value="joost@example.nl")
    IdentityFactory(contact=contact, kind="phone", value="+31687654321")
    other = ContactFactory()
    IdentityFactory(contact=other, kind="email", value="ander@example.nl")
    agent_api = api_client_for(agent)

    by_email = agent_api.get("/api/v1/contacts/", {"email": "JOOST@example.nl"})
    assert by_email.status_code == 200
    assert [c["contact_key"] for c in by_email.json()["results"]] == [str(contact.contact_key)]
    by_phone = agent_api.get("/api/v1/contacts/", {"phone": "06-87654321"})
    assert [c["first_name"] for c in by_phone.json()["results"]] == ["Joost"]
    assert agent_api.get("/api/v1/contacts/", {"phone": "nope"}).status_code == 400
    assert agent_api.get(f"/api/v1/contacts/{uuid.uuid4()}/").status_code == 404


def test_profile_query_count_does_not_grow_with_the_history(api, django_assert_max_num_queries):
    contact = ContactFactory()
    IdentityFactory(contact=contact)
    now = timezone.now()
    Event.objects.bulk_create(
        Event(contact=contact, type="page_view", occurred_at=now - dt.timedelta(minutes=i)) for i in range(60)
    )
    with django_assert_max_num_queries(12):
        response = api.get(f"/api/v1/contacts/{contact.contact_key}/")
    assert len(response.json()["recent_events"]) == 20


def test_a_posted_event_is_in_the_profile_when_the_post_returns(api, agent, api_client_for):
    contact = ContactFactory()
    IdentityFactory(contact=contact, kind="customer_number", value="K9")
    purchase = {
        "type": "purchase",
        "occurred_at": "2026-11-22T10:15:00+01:00",
        "identities": {"customer_number": "K9"},
        "value": "129.95",
        "properties": {"category": "Barbecues"},
        "external_id": "order-1001",
    }
    stored = api.post("/api/v1/events/", purchase, format="json")
    assert stored.status_code == 201, stored.json()
    assert stored.json()["status"] == "stored"
    profile = api_client_for(agent).get(f"/api/v1/contacts/{contact.contact_key}/").json()
    assert profile["recent_events"][0]["external_id"] == "order-1001"
    assert profile["recent_events"][0]["currency"] == "EUR"

    again = api.post("/api/v1/events/", purchase, format="json")
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert again.json()["id"] == stored.json()["id"]
    assert Event.objects.count() == 1


def test_a_batch_of_events_is_answered_per_item(api):
    known = ContactFactory()
    IdentityFactory(contact=known, kind="email", value="vast@example.nl")
    base = {"type": "page_view", "occurred_at": "2026-11-20T09:00:00Z"}
    batch = [
        {**base, "identities": {"email": "vast@example.nl"}, "external_id": "v1"},
        {**base, "identities": {"email": "nieuw@example.nl"}, "external_id": "v2"},  # a new contact
        {**base, "identities": {"email": "vast@example.nl"}, "external_id": "v1"},  # the same again
        {**base, "external_id": "v3"},  # whose?
        {**base, "identities": {"phone": "geen nummer"}},
        {**base, "type": "teleported", "identities": {"email": "vast@example.nl"}},
        {**base, "contact_key": str(known.contact_key)},
        "not an object",
    ]
    response = api.post("/api/v1/events/", batch, format="json")
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == [
        "stored",
        "stored",
        "duplicate",
        "rejected",
        "rejected",
        "rejected",
        "stored",
        "rejected",
    ]
    assert results[3]["errors"][0]["field"] == "identities"
    assert results[4]["errors"][0]["field"] == "identities.phone"
    assert results[5]["errors"][0]["field"] == "type"
    assert Event.objects.filter(contact=known).count() == 2
    assert Identity.objects.filter(value="nieuw@example.nl").exists()


def test_events_refuse_more_than_a_thousand_at_once(api):
    event = {"type": "page_view", "occurred_at": "2026-11-20T09:00:00Z", "identities": {"email": "x@example.nl"}}
    response = api.post("/api/v1/events/", [event] * 1001, format="json")
    assert response.status_code == 400
    assert "1000" in response.json()["errors"][0]["message"]
    assert not Event.objects.exists()


def test_consents_endpoint_records_changes(api, agent, api_client_for):
    contact = ContactFactory()
    url = f"/api/v1/contacts/{contact.contact_key}/consents/"
    agent_api = api_client_for(agent)  # agents record what the customer says on the phone
    response = agent_api.post(url, {"channel": "phone", "status": "granted", "proof": "Gesprek 22-11"}, format="json")
    assert response.status_code == 201
    assert response.json()["consents"]["phone"]["status"] == "granted"
    assert agent_api.post(url, {"channel": "phone", "status": "granted"}, format="json").status_code == 200
    assert agent_api.post(url, {"channel": "fax", "status": "granted"}, format="json").status_code == 400
    assert Consent.objects.get(contact=contact).status == "granted"


def test_export_and_erase_through_the_api_are_logged(api):
    contact = ContactFactory(first_name="Els")
    IdentityFactory(contact=contact, kind="email", value="els@example.nl")
    export = api.get(f"/api/v1/contacts/{contact.contact_key}/export/")
    assert export.status_code == 200
    assert export.json()["identities"][0]["value"] == "els@example.nl"
    erased = api.post(f"/api/v1/contacts/{contact.contact_key}/erase/")
    assert erased.status_code == 200
    assert api.get(f"/api/v1/contacts/{contact.contact_key}/").status_code == 404
    assert list(PrivacyRequest.objects.order_by("carried_out_at").values_list("kind", flat=True)) == [
        "export",
        "erasure",
    ]


def test_roles_guard_the_contact_api(api_client_for, agent, analyst):
    contact = ContactFactory()
    agent_api, analyst_api = api_client_for(agent), api_client_for(analyst)
    assert agent_api.post("/api/v1/contacts/", {"identities": {"email": "a@b.nl"}}, format="json").status_code == 403
    assert agent_api.post(f"/api/v1/contacts/{contact.contact_key}/erase/").status_code == 403
    assert analyst_api.get(f"/api/v1/contacts/{contact.contact_key}/export/").status_code == 403
    assert analyst_api.get(f"/api/v1/contacts/{contact.contact_key}/").status_code == 200
    assert (
        analyst_api.post(
            "/api/v1/events/", {"type": "page_view", "occurred_at": "2026-11-20T09:00:00Z"}, format="json"
        ).status_code
        == 403
    )
    assert Contact.objects.get(pk=contact.pk).erased_at is None


def test_merge_through_the_api(api):
    a, b = ContactFactory(), ContactFactory()
    IdentityFactory(contact=b, kind="email", value="b@example.nl")
    response = api.post(f"/api/v1/contacts/{a.contact_key}/merge/", {"other": str(b.contact_key)}, format="json")
    assert response.status_code == 201
    assert Identity.objects.get(value="b@example.nl").contact_id == a.pk
    assert (
        api.post(f"/api/v1/contacts/{a.contact_key}/merge/", {"other": str(uuid.uuid4())}, format="json").status_code
        == 400
    )
    listed = api.get("/api/v1/merges/").json()["results"]
    assert listed[0]["absorbed_key"] == str(b.contact_key)


def test_an_agent_cannot_create_or_merge_contacts_through_events(api_client_for, agent):
    a, b = ContactFactory(), ContactFactory()
    IdentityFactory(contact=a, kind="email", value="a@example.nl")
    IdentityFactory(contact=b, kind="customer_number", value="K1")
    base = {"type": "call_outcome", "occurred_at": "2026-11-20T09:00:00Z", "properties": {"outcome": "accepted"}}
    batch = [
        {**base, "identities": {"email": "a@example.nl", "customer_number": "K1"}},  # two contacts
        {**base, "identities": {"email": "nieuw@example.nl"}},  # nobody yet
        {**base, "identities": {"email": "a@example.nl", "phone": "0612345678"}},  # known, plus a new phone
    ]
    results = api_client_for(agent).post("/api/v1/events/", batch, format="json").json()["results"]
    assert [r["status"] for r in results] == ["rejected", "rejected", "stored"]
    assert not ContactMerge.objects.exists()
    assert Contact.objects.count() == 2
    assert not Identity.objects.filter(kind="phone").exists()  # the event went in; the phone was not tied to a
    assert Event.objects.get().contact_id == a.pk


def test_a_merge_in_the_middle_of_a_batch_sends_later_items_to_the_survivor(api):
    older = ContactFactory()
    IdentityFactory(contact=older, kind="phone", value="+31611111111")
    newer = ContactFactory()
    IdentityFactory(contact=newer, kind="email", value="a@example.nl")
    IdentityFactory(contact=newer, kind="customer_number", value="K1")
    base = {"type": "page_view", "occurred_at": "2026-11-20T09:00:00Z"}
    batch = [
        {**base, "identities": {"email": "a@example.nl"}},
        {**base, "identities": {"email": "a@example.nl", "phone": "0611111111"}},  # merges newer into older
        {**base, "identities": {"customer_number": "K1"}},
    ]
    response = api.post("/api/v1/events/", batch, format="json")
    assert response.status_code == 200
    assert [r["status"] for r in response.json()["results"]] == ["stored", "stored", "stored"]
    assert set(Event.objects.values_list("contact_id", flat=True)) == {older.pk}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"identities": {"email": "a@example.nl"}, "attributes": {"x": 1e400}}', "attributes.x"),
        ('{"identities": {"email": "a@example.nl"}, "attributes": {"x": "a\\u0000b"}}', "attributes.x"),
        ('{"identities": {"email": "a@example.nl"}, "attributes": {"n": 1e30}}', "attributes.n"),
        ('{"identities": {"email": "a@example.nl"}, "timezone": "Not/AZone"}', "timezone"),
        ('{"identities": {"customer_number": "a\\u0000b"}}', "identities"),
    ],
)
def test_values_postgresql_cannot_store_are_refused_with_a_400(api, body, field):
    response = api.post("/api/v1/contacts/", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert any(error["field"].startswith(field) for error in response.json()["errors"])
    assert not Contact.objects.exists()


def test_event_properties_postgresql_cannot_store_reject_that_item_only(api):
    base = {"type": "page_view", "occurred_at": "2026-11-20T09:00:00Z", "identities": {"email": "a@example.nl"}}
    body = json.dumps([{**base, "external_id": "ok"}, {**base, "properties": {"x": "bad\x00"}}])
    response = api.post("/api/v1/events/", body, content_type="application/json")
    assert [r["status"] for r in response.json()["results"]] == ["stored", "rejected"]
    assert api.get("/api/v1/contacts/", {"customer_number": "a\x00b"}).status_code == 400


def test_merges_stay_listed_when_their_survivor_was_merged_away(api):
    a, b, c = ContactFactory(), ContactFactory(), ContactFactory()
    first = api.post(f"/api/v1/contacts/{b.contact_key}/merge/", {"other": str(c.contact_key)}, format="json")
    api.post(f"/api/v1/contacts/{a.contact_key}/merge/", {"other": str(b.contact_key)}, format="json")
    listed = api.get("/api/v1/merges/").json()
    assert listed["count"] == 2
    assert len(listed["results"]) == 2
    older = api.get(f"/api/v1/merges/{first.json()['id']}/").json()
    assert older["survivor_key"] is None  # b lives on in a now
