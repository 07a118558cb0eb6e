"""Product recommendations: what is bought together, from the purchase events, in a template's
`recommendations` (and `products`, its older name) for each contact of a batch."""

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from audiences.insights.products import products_recommended, products_refresh
from audiences.models import Event, Product, ProductAffinity
from campaigns.channels import locmem
from campaigns.models import Campaign, Delivery
from content.rendering.checks import check_template
from content.rendering.render import compile_template, render
from content.selectors import contact_context, contact_contexts
from tests.campaign_helpers import activated, campaign_for, customer, message_with, send_everything
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now()


def order(contact, *lines, order_id, days_ago=10, **extra):
    """One order: lines of (product, category, value[, items])."""
    for product, category, value, *items in lines:
        Event.objects.create(
            contact=contact,
            type=Event.Type.PURCHASE,
            occurred_at=NOW - dt.timedelta(days=days_ago),
            value=Decimal(value),
            currency="EUR",
            properties={"product": product, "category": category, "order_id": order_id, **extra}
            | ({"items": items[0]} if items else {}),
        )


@pytest.fixture
def shop():
    """Barbecues sold with covers (three orders) and once with a brush; a lounge set alone."""
    buyers = [ContactFactory() for _ in range(5)]
    order(buyers[0], ("Gasbarbecue", "Barbecues", "499"), ("Barbecuehoes", "Barbecues", "39"), order_id="W1")
    order(buyers[1], ("Gasbarbecue", "Barbecues", "599"), ("Barbecuehoes", "Barbecues", "78", "2"), order_id="W2")
    order(buyers[2], ("Gasbarbecue", "Barbecues", "549"), ("Barbecuehoes", "Barbecues", "39"), order_id="W3")
    order(buyers[3], ("Gasbarbecue", "Barbecues", "549"), ("Grillborstel", "Barbecues", "12"), order_id="W4")
    order(buyers[4], ("Loungeset", "Tuinmeubelen", "899"), order_id="W5")
    order(buyers[4], ("Houtskoolbarbecue", "Barbecues", "99"), order_id="W6")
    products_refresh(now=NOW)
    return buyers


def test_the_refresh_knows_each_product_its_median_price_per_item_and_what_is_bought_with_it(shop):
    cover = Product.objects.get(name="Barbecuehoes")
    assert (cover.category, cover.price, cover.buyers, cover.orders) == ("Barbecues", Decimal("39.00"), 3, 3)
    assert Product.objects.get(name="Gasbarbecue").price == Decimal("549.00")
    pairs = {
        (pair.product.name, pair.related.name): (pair.together, pair.confidence)
        for pair in ProductAffinity.objects.select_related("product", "related")
    }
    assert pairs[("Gasbarbecue", "Barbecuehoes")] == (3, 0.75)  # three of its four orders
    assert pairs[("Gasbarbecue", "Grillborstel")] == (1, 0.25)
    assert pairs[("Barbecuehoes", "Gasbarbecue")] == (3, 1.0)
    assert not any("Loungeset" in pair for pair in pairs)  # bought alone
    # Six orders: the cover is in three of them (half), and in three of the barbecue's four.
    cover = ProductAffinity.objects.get(product__name="Gasbarbecue", related__name="Barbecuehoes")
    assert cover.support == pytest.approx(3 / 6)
    assert cover.lift == pytest.approx(0.75 / (3 / 6))


def test_a_buyer_gets_what_is_bought_with_his_products_best_first_never_what_he_has(shop):
    new_buyer = ContactFactory()
    order(new_buyer, ("Gasbarbecue", "Barbecues", "549"), order_id="W7", days_ago=1)

    found = products_recommended(contact_ids=[new_buyer.pk, shop[0].pk, shop[4].pk])

    names = {contact_id: [product["name"] for product in products] for contact_id, products in found.items()}
    # The cover (3 of 4 orders), the brush (1 of 4), then the category's best seller he lacks.
    assert names[new_buyer.pk] == ["Barbecuehoes", "Grillborstel", "Houtskoolbarbecue"]
    assert names[shop[0].pk][0] == "Grillborstel"  # has the barbecue and the cover already
    assert "Gasbarbecue" not in names[shop[0].pk] and "Barbecuehoes" not in names[shop[0].pk]
    # Bought alone: the best sellers of the categories he bought in.
    assert names[shop[4].pk][0] == "Gasbarbecue"
    assert found[new_buyer.pk][0] == {
        "name": "Barbecuehoes",
        "url": "",
        "price": Decimal("39.00"),
        "image_url": "",
        "category": "Barbecues",
        "bought_with": "Gasbarbecue",
    }
    assert found[new_buyer.pk][2]["bought_with"] == ""  # a best seller of the category


def test_a_contact_who_never_bought_anything_gets_no_products(shop):
    assert products_recommended(contact_ids=[ContactFactory().pk]) == {}


def test_the_shop_s_bad_data_is_left_out_not_a_failure():
    buyer = ContactFactory()
    order(
        buyer,
        ("Tuinstoel", "Tuinmeubelen", "98", "two"),  # items not a number: counted as one
        ("", "Tuinmeubelen", "10"),  # no product name
        order_id="W1",
        url="javascript:alert(1)",
        image_url="https://cdn.example.nl/stoel.jpg",
    )

    result = products_refresh(now=NOW)

    chair = Product.objects.get()
    assert (chair.name, chair.price, chair.url, chair.image_url) == (
        "Tuinstoel",
        Decimal("98.00"),
        "",
        "https://cdn.example.nl/stoel.jpg",
    )
    assert (result.products, result.pairs) == (1, 0)


def test_purchases_older_than_a_year_are_forgotten_and_a_refresh_twice_gives_the_same(shop):
    old = ContactFactory()
    order(old, ("Kamado", "Barbecues", "899"), ("Grillborstel", "Barbecues", "12"), order_id="W0", days_ago=400)
    first = products_refresh(now=NOW)
    pairs = set(ProductAffinity.objects.values_list("product__name", "related__name", "together"))

    again = products_refresh(now=NOW)

    assert first == again
    assert set(ProductAffinity.objects.values_list("product__name", "related__name", "together")) == pairs
    assert not Product.objects.filter(name="Kamado").exists()


def test_a_batch_of_contexts_reads_the_recommendations_only_when_a_template_asks(shop, django_assert_num_queries):
    with django_assert_num_queries(2):  # the profiles and their scores
        contexts = contact_contexts(contact_ids=[buyer.pk for buyer in shop])
    with django_assert_num_queries(2):  # the whole batch's recommendations, and their products
        first = list(contexts[shop[0].pk]["recommendations"])
    with django_assert_num_queries(0):
        others = [len(contexts[buyer.pk]["recommendations"]) for buyer in shop[1:]]
        # The older name is the same list, read once.
        assert all(contexts[buyer.pk]["products"] is contexts[buyer.pk]["recommendations"] for buyer in shop)
        assert list(contexts[shop[0].pk]["products"]) == first
    assert first and all(others)


PRODUCTS_HTML = (
    "<html><body><p>Hallo {{ contact.first_name }},</p>"
    "{% for product in products %}<p>{{ product.name }} voor {{ product.price | currency }}</p>"
    "{% else %}<p>Bekijk onze toppers</p>{% endfor %}"
    '<p><a href="{{ links.unsubscribe }}">Afmelden</a></p></body></html>'
)


def test_a_campaign_email_shows_each_contact_his_recommended_products():
    buyers = [customer() for _ in range(3)]
    order(buyers[0], ("Gasbarbecue", "Barbecues", "499"), ("Barbecuehoes", "Barbecues", "39"), order_id="W1")
    order(buyers[1], ("Gasbarbecue", "Barbecues", "549"), order_id="W2")
    products_refresh(now=NOW)
    campaign = campaign_for(
        buyers, message=message_with(html=PRODUCTS_HTML), holdout_percent=0, holdout_off_reason="Service message."
    )
    locmem.outbox.clear()

    activated(campaign)
    send_everything()

    html = {
        Delivery.objects.get(pk=message.delivery_id).contact_id: message.html
        for message in locmem.outbox
        if message.delivery_id
    }
    assert "Barbecuehoes voor" in html[buyers[1].pk]
    assert "Gasbarbecue" not in html[buyers[1].pk]
    assert "Bekijk onze toppers" in html[buyers[2].pk]  # never bought: the template's fallback
    locmem.outbox.clear()


def test_the_products_page_lists_them_by_buyers_and_shows_what_is_bought_with_each(shop, english_client, marketeer):
    client = english_client(marketeer)
    barbecue = Product.objects.get(name="Gasbarbecue")

    listing = client.get("/admin/audiences/product/")
    page = client.get(f"/admin/audiences/product/{barbecue.pk}/change/")

    assert listing.status_code == 200
    assert listing.content.decode().index("Gasbarbecue") < listing.content.decode().index("Grillborstel")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Barbecuehoes <span class='help'>(in 75% of its orders)</span>" in html
    assert "3 orders together, 50.0% of all orders; 1.5 times as often as by chance" in html
    assert client.get("/admin/audiences/product/add/").status_code == 403


ONBOARDING_HTML = (
    "<html><body><p>Hallo {{ contact.first_name }}, bedankt voor je eerste bestelling!</p>"
    "{% for product in recommendations %}"
    "<p>{{ product.name }} voor {{ product.price | currency }}"
    "{% if product.bought_with %}, past bij je {{ product.bought_with }}{% endif %}</p>"
    "{% else %}<p>Bekijk onze toppers</p>{% endfor %}"
    '<p><a href="{{ links.unsubscribe }}">Afmelden</a></p></body></html>'
)


def test_the_onboarding_email_after_a_first_purchase_shows_the_related_products(time_machine):
    start = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)
    shoppers = [ContactFactory() for _ in range(3)]
    for number, shopper in enumerate(shoppers):
        order(shopper, ("Gasbarbecue", "Barbecues", "549"), ("Barbecuehoes", "Barbecues", "39"), order_id=f"O{number}")
    order(shoppers[0], ("Kussenhoes", "Woontextiel", "12"), order_id="O9", days_ago=20)
    products_refresh(now=start)
    newcomer, other = customer(first_name="Sanne"), customer()
    time_machine.move_to(start, tick=False)
    campaign = campaign_for(
        [newcomer, other],
        message=message_with(html=ONBOARDING_HTML),
        kind=Campaign.Kind.TRIGGERED,
        trigger_event_type=Event.Type.PURCHASE,
        trigger_first_only=True,
        holdout_percent=0,
        holdout_off_reason="Service message.",
    )
    activated(campaign, now=start)
    locmem.outbox.clear()
    Event.objects.create(
        contact=newcomer,
        type=Event.Type.PURCHASE,
        occurred_at=start + dt.timedelta(minutes=5),
        value=Decimal("549"),
        currency="EUR",
        properties={"product": "Gasbarbecue", "category": "Barbecues", "order_id": "O10"},
    )

    time_machine.move_to(start + dt.timedelta(minutes=6), tick=False)
    send_everything()

    [message] = [message for message in locmem.outbox if message.delivery_id]
    assert Delivery.objects.get(pk=message.delivery_id).contact_id == newcomer.pk
    assert "Barbecuehoes voor € 39,00, past bij je Gasbarbecue" in message.html
    assert "Gasbarbecue voor" not in message.html  # never what was just bought
    assert "Bekijk onze toppers" not in message.html
    locmem.outbox.clear()


def test_a_template_reads_recommendations_and_products_as_the_same_list(shop):
    sanne = ContactFactory(first_name="Sanne")
    order(sanne, ("Gasbarbecue", "Barbecues", "549"), order_id="W8", days_ago=1)
    context = contact_context(contact=sanne)
    source = (
        "{% for p in recommendations %}{{ p.name }} ({{ p.bought_with }});{% endfor %}"
        "|{% for p in products %}{{ p.name }};{% endfor %}"
    )
    assert check_template(source, channel="sms", blocks={}, published=()) == []

    rendered = render(compile_template(source, channel="sms", version_key=("recommendations", 1)), context)

    assert rendered == (
        "Barbecuehoes (Gasbarbecue);Grillborstel (Gasbarbecue);Houtskoolbarbecue ();"
        "|Barbecuehoes;Grillborstel;Houtskoolbarbecue;"
    )
