"""`GET /api/v1/contacts/{contact_key}/recommendations/`: a contact's recommended products with the
reason for each, for whoever may read the contact; clear errors for an unknown key or a bad limit."""

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from django.utils import timezone

from audiences.insights.products import products_refresh
from audiences.models import Event
from audiences.services.contacts import contact_erase
from dialoog.roles import ANALYST, CALLCENTER_AGENT, MARKETEER
from tests.factories import ContactFactory, UserFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now()


def order(contact, *lines, order_id, days_ago=10):
    """One order: lines of (product, category, value)."""
    for product, category, value in lines:
        Event.objects.create(
            contact=contact,
            type=Event.Type.PURCHASE,
            occurred_at=NOW - dt.timedelta(days=days_ago),
            value=Decimal(value),
            currency="EUR",
            properties={
                "product": product,
                "category": category,
                "order_id": order_id,
                "url": f"https://shop.example.nl/p/{product.lower()}",
            },
        )


@pytest.fixture
def shop():
    """Gas barbecues sold with their covers, twice with a brush; garden chairs alone."""
    for number in range(4):
        lines = [("Gasbarbecue", "Barbecues", "549"), ("Barbecuehoes", "Barbecues", "39")]
        if number < 2:
            lines.append(("Grillborstel", "Barbecues", "12"))
        order(ContactFactory(), *lines, order_id=f"W{number}")
    for number in range(5):
        order(ContactFactory(), ("Tuinstoel", "Tuinmeubelen", "79"), order_id=f"T{number}")
    order(ContactFactory(), ("Houtskoolbarbecue", "Barbecues", "99"), order_id="H1")
    products_refresh(now=NOW)


@pytest.fixture
def buyer(shop):
    """Bought a gas barbecue alone, yesterday."""
    contact = ContactFactory()
    order(contact, ("Gasbarbecue", "Barbecues", "549"), order_id="B1", days_ago=1)
    return contact


@pytest.fixture
def reader(api_client_for):
    """An analyst's API client asking for English, so that messages and reasons read as written."""
    client = api_client_for(UserFactory(username="analist", role=ANALYST))
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def url(key, **query):
    return f"/api/v1/contacts/{key}/recommendations/" + (
        "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
    )


def test_a_buyer_gets_what_is_bought_with_his_product_and_why(reader, buyer):
    response = reader.get(url(buyer.contact_key))

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["contact_key"] == str(buyer.contact_key)
    assert body["recommendations"][0] == {
        "name": "Barbecuehoes",
        "category": "Barbecues",
        "price": "39.00",
        "url": "https://shop.example.nl/p/barbecuehoes",
        "image_url": "",
        "reason": "bought with Gasbarbecue",
    }
    assert [(item["name"], item["reason"]) for item in body["recommendations"]] == [
        ("Barbecuehoes", "bought with Gasbarbecue"),
        ("Grillborstel", "bought with Gasbarbecue"),
        ("Houtskoolbarbecue", "best seller in category Barbecues"),
    ]


def test_the_limit_cuts_the_list_and_a_contact_who_never_bought_gets_none(reader, buyer):
    assert [item["name"] for item in reader.get(url(buyer.contact_key, limit=1)).json()["recommendations"]] == [
        "Barbecuehoes"
    ]
    newcomer = ContactFactory()
    assert reader.get(url(newcomer.contact_key)).json() == {
        "contact_key": str(newcomer.contact_key),
        "recommendations": [],
    }


def test_the_default_is_five_at_most(api_client_for):
    buyer = ContactFactory()
    products = [f"Product {number}" for number in range(8)]
    for number in range(3):
        order(ContactFactory(), *[(name, "Keuken", "10") for name in products], order_id=f"K{number}")
    order(buyer, (products[0], "Keuken", "10"), order_id="K9")
    products_refresh(now=NOW)
    client = api_client_for(UserFactory(username="marketeer-api", role=MARKETEER))

    assert len(client.get(url(buyer.contact_key)).json()["recommendations"]) == 5
    assert len(client.get(url(buyer.contact_key, limit=20)).json()["recommendations"]) == 7


def test_an_unknown_or_erased_contact_is_a_404_that_says_so(reader, buyer):
    unknown = uuid.uuid4()

    response = reader.get(url(unknown))

    assert response.status_code == 404
    assert response.json() == {
        "type": "client_error",
        "errors": [{"field": None, "code": "not_found", "message": f"No contact has the key {unknown}."}],
    }
    old_key = buyer.contact_key
    erased = contact_erase(contact=buyer, note="test")
    assert reader.get(url(old_key)).status_code == 404
    assert reader.get(url(erased.contact_key)).status_code == 404


@pytest.mark.parametrize("limit", ["0", "21", "-3", "vijf", "2.5"])
def test_a_bad_limit_is_a_400_naming_the_field(reader, buyer, limit):
    response = reader.get(f"/api/v1/contacts/{buyer.contact_key}/recommendations/?limit={limit}")

    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "validation_error"
    assert [error["field"] for error in body["errors"]] == ["limit"]


@pytest.mark.parametrize(
    ("role", "status"),
    [(ANALYST, 200), (MARKETEER, 200), (CALLCENTER_AGENT, 200), (None, 403)],
)
def test_who_may_read_a_contact_may_read_its_recommendations(api_client_for, buyer, role, status):
    client = api_client_for(UserFactory(role=role))

    assert client.get(url(buyer.contact_key)).status_code == status
    assert client.get(f"/api/v1/contacts/{buyer.contact_key}/").status_code == status


def test_without_a_token_it_is_a_401(client, buyer):
    assert client.get(url(buyer.contact_key)).status_code == 401


def test_one_contact_s_recommendations_take_a_fixed_number_of_queries(reader, buyer, django_assert_max_num_queries):
    reader.get(url(buyer.contact_key))  # the token's user and permissions remembered
    with django_assert_max_num_queries(4):  # the contact, the recommendations, their products
        response = reader.get(url(buyer.contact_key))
    assert response.status_code == 200


def test_the_endpoint_is_in_the_schema_with_its_errors(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    operation = response.json()["paths"]["/api/v1/contacts/{contact_key}/recommendations/"]["get"]
    assert {"200", "400", "401", "403", "404"} <= set(operation["responses"])
    assert [parameter["name"] for parameter in operation["parameters"] if parameter["in"] == "query"] == ["limit"]
    limit = next(parameter for parameter in operation["parameters"] if parameter["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"], limit["schema"]["default"]) == (1, 20, 5)
