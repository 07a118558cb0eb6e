"""The offline check of the recommendations: each customer's last order hidden, the pairs learnt
from the rest, a hit when the recommendations name another product of the hidden order; beside
the shop's best sellers, on the demo shop with its planted pairs, leaving the real tables as they were."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from audiences.insights.products import (
    RANKING,
    RANKINGS,
    products_recommended,
    products_refresh,
    recommendations_evaluate,
)
from audiences.models import Event, Product, ProductAffinity
from dialoog.demo import BOUGHT_TOGETHER, demo_load
from goals.services import start_of
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now()
AS_OF = dt.date(2026, 11, 22)


def order(contact, *products, order_id, days_ago):
    for product, category in products:
        Event.objects.create(
            contact=contact,
            type=Event.Type.PURCHASE,
            occurred_at=NOW - dt.timedelta(days=days_ago),
            value=Decimal("10"),
            currency="EUR",
            properties={"product": product, "category": category, "order_id": order_id},
        )


def related_ranked(product):
    """The products bought with `product`, best first, by the ranking the recommendations use."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT r.name FROM audiences_productaffinity a
            JOIN audiences_product p ON p.id = a.product_id JOIN audiences_product r ON r.id = a.related_id
            WHERE p.name = %s ORDER BY {RANKINGS[RANKING]} DESC, r.name
            """,  # noqa: S608 - the ranking is one of ours
            [product],
        )
        return [name for (name,) in cursor.fetchall()]


def tables():
    """The products and pairs templates read, all of their columns."""
    products = sorted(Product.objects.values_list("name", "category", "price", "buyers", "orders", "refreshed_at"))
    pairs = sorted(
        ProductAffinity.objects.values_list(
            "product__name", "related__name", "together", "support", "confidence", "lift"
        )
    )
    return products, pairs


BARBECUE = ("Gasbarbecue", "Barbecues")
COVER = ("Barbecuehoes", "Barbecues")


def test_a_hidden_order_is_found_only_from_what_others_bought_together_and_the_tables_stay():
    earlier_buyer, newcomer, lounger, long_gone = (ContactFactory() for _ in range(4))
    # Bought a barbecue with its cover, then a chair alone: the last order holds one product, not checked.
    order(earlier_buyer, BARBECUE, COVER, order_id="A1", days_ago=30)
    order(earlier_buyer, ("Tuinstoel", "Tuinmeubelen"), order_id="A2", days_ago=5)
    # One order, the barbecue first: hidden, the cover found through the others' orders.
    order(newcomer, BARBECUE, COVER, order_id="B1", days_ago=20)
    # The lounge set with its cushions only in the hidden order: nothing else tells that they go together.
    order(lounger, BARBECUE, COVER, order_id="C1", days_ago=40)
    order(lounger, ("Loungeset", "Tuinmeubelen"), ("Buitenkussens", "Tuinmeubelen"), order_id="C2", days_ago=3)
    # Last bought more than a year ago: outside the window, not checked.
    order(long_gone, ("Kamado", "Barbecues"), ("Grillborstel", "Barbecues"), order_id="D1", days_ago=400)
    products_refresh(now=NOW)
    before = tables()

    result = recommendations_evaluate(as_of=NOW, k=5)

    # Checked: the newcomer (a hit: the cover) and the lounger (a miss). The best sellers the
    # newcomer lacks start with the cover too; the lounger has the barbecue and its cover already.
    assert (result.orders, result.hits, result.baseline_hits) == (2, 1, 1)
    assert (result.hit_rate, result.baseline_hit_rate, result.k, result.ranking) == (0.5, 0.5, 5, RANKING)
    assert tables() == before
    assert ProductAffinity.objects.filter(product__name="Loungeset", related__name="Buitenkussens").exists()


def test_nothing_to_check_gives_zero_rates_and_an_unknown_ranking_is_refused():
    result = recommendations_evaluate(as_of=NOW)

    assert (result.orders, result.hits, result.hit_rate, result.baseline_hit_rate) == (0, 0, 0.0, 0.0)
    with pytest.raises(ValueError, match="confidence"):
        recommendations_evaluate(as_of=NOW, ranking="popularity")


@pytest.mark.parametrize("seed", [1, 2])
def test_on_the_demo_shop_the_recommendations_find_the_hidden_products_far_more_often_than_best_sellers(seed):
    demo_load(contacts=3000, seed=seed, as_of=AS_OF)
    as_of = start_of(AS_OF + dt.timedelta(days=1))
    before = tables()

    result = recommendations_evaluate(as_of=as_of, k=5)

    assert result.orders > 200
    assert result.baseline_hits > 0
    assert result.hit_rate >= 1.5 * result.baseline_hit_rate, result
    assert result.hit_rate > 0.4, result
    assert tables() == before  # rolled back: what templates read is untouched


def test_the_planted_pairs_are_more_than_chance_and_first_for_their_product():
    demo_load(contacts=3000, seed=1, as_of=AS_OF)

    cover = ProductAffinity.objects.get(product__name="Gasbarbecue", related__name="Barbecuehoes")
    assert cover.lift > 1
    assert related_ranked("Gasbarbecue")[0] == "Barbecuehoes"
    # Every planted accessory is among the first of its product's related products.
    for product, accessories in BOUGHT_TOGETHER.items():
        planted = {accessory for _category, accessory, _chance in accessories}
        assert set(related_ranked(product)[: len(planted)]) == planted, product
    # And so a customer who just bought the gas barbecue is shown its cover first.
    newcomer = ContactFactory()
    order(newcomer, BARBECUE, order_id="N1", days_ago=1)
    assert products_recommended(contact_ids=[newcomer.pk], limit=5)[newcomer.pk][0]["name"] == "Barbecuehoes"
