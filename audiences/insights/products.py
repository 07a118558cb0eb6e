"""Product recommendations, an insight on the customer picture: what is bought together.

Once a night `products_refresh` reads the last year's purchase events (`properties.product`, with
`order_id` to know which lines were one order, `items`, `url` and `image_url` when the shop sends
them) into two small tables: the products with their median price and how many bought them, and
for each pair of products bought in one order how strongly they go together (support, confidence
and lift, see `ProductAffinity`). Both in set-based SQL, in one transaction, so a reader sees
yesterday's tables or today's.

`products_recommended` then gives each contact of a batch its related products in one query: the
products most often bought with what the contact bought, not what the contact has already; when
that gives too few, the best sellers of the categories the contact bought in. A contact who never
bought anything gets none (templates fall back with `{% for product in recommendations %}…{% else %}`).

`recommendations_evaluate` measures all this offline: it hides each customer's last order, learns the
pairs from the rest, and counts how often the recommendations name a product of the hidden order,
beside the shop's overall best sellers.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from audiences.models import Event, Product, ProductAffinity

WINDOW_DAYS = 365
RECOMMENDED = 3

# One row per purchase line of the window with a product name; a line without an order id is an
# order of its own. `items` counts only when it is a whole number (the shop's data is not trusted).
# The orders left out (by contact and order id) are those an offline evaluation hides.
LINES_SQL = """
    CREATE TEMP TABLE product_lines ON COMMIT DROP AS
    SELECT e.contact_id,
           left(e.properties ->> 'product', 200) AS product,
           coalesce(nullif(e.properties ->> 'order_id', ''), 'event:' || e.id::text) AS order_id,
           left(coalesce(e.category, ''), 200) AS category,
           e.value / CASE WHEN e.properties ->> 'items' ~ '^[1-9][0-9]{0,5}$'
                          THEN (e.properties ->> 'items')::int ELSE 1 END AS unit_price,
           CASE WHEN e.properties ->> 'url' ~ '^https?://' THEN left(e.properties ->> 'url', 500) END AS url,
           CASE WHEN e.properties ->> 'image_url' ~ '^https?://' THEN left(e.properties ->> 'image_url', 500) END
               AS image_url,
           e.occurred_at
    FROM audiences_event e
    WHERE e.type = %(purchase)s AND e.occurred_at >= %(since)s AND e.occurred_at <= %(now)s
      AND coalesce(e.properties ->> 'product', '') <> ''
      AND NOT EXISTS (
          SELECT 1 FROM unnest(%(left_out_contacts)s::bigint[], %(left_out_orders)s::text[]) AS h(contact_id, order_id)
          WHERE h.contact_id = e.contact_id
            AND h.order_id = coalesce(nullif(e.properties ->> 'order_id', ''), 'event:' || e.id::text)
      )
"""

PRODUCTS_SQL = """
    INSERT INTO {product} (name, category, price, url, image_url, buyers, orders, refreshed_at)
    SELECT product,
           mode() WITHIN GROUP (ORDER BY category),
           round(percentile_cont(0.5) WITHIN GROUP (ORDER BY unit_price)::numeric, 2),
           coalesce((array_agg(url ORDER BY occurred_at DESC) FILTER (WHERE url IS NOT NULL))[1], ''),
           coalesce((array_agg(image_url ORDER BY occurred_at DESC) FILTER (WHERE image_url IS NOT NULL))[1], ''),
           count(DISTINCT contact_id), count(DISTINCT order_id), %s
    FROM product_lines
    GROUP BY product
    ON CONFLICT (name) DO UPDATE SET
        category = EXCLUDED.category, price = EXCLUDED.price,
        url = CASE WHEN EXCLUDED.url <> '' THEN EXCLUDED.url ELSE {product}.url END,
        image_url = CASE WHEN EXCLUDED.image_url <> '' THEN EXCLUDED.image_url ELSE {product}.image_url END,
        buyers = EXCLUDED.buyers, orders = EXCLUDED.orders, refreshed_at = EXCLUDED.refreshed_at
"""

UNSOLD_SQL = """
    UPDATE {product} SET buyers = 0, orders = 0, refreshed_at = %s
    WHERE NOT EXISTS (SELECT 1 FROM product_lines l WHERE l.product = {product}.name)
"""

AFFINITY_SQL = """
    WITH total AS (SELECT count(DISTINCT order_id)::float AS orders FROM product_lines)
    INSERT INTO {affinity} (product_id, related_id, together, support, confidence, lift)
    SELECT p.id, r.id, count(*),
           count(*) / total.orders,
           count(*)::float / p.orders,
           (count(*)::float / p.orders) / (r.orders / total.orders)
    FROM (SELECT DISTINCT order_id, product FROM product_lines) a
    JOIN (SELECT DISTINCT order_id, product FROM product_lines) b ON b.order_id = a.order_id AND b.product <> a.product
    JOIN {product} p ON p.name = a.product
    JOIN {product} r ON r.name = b.product
    CROSS JOIN total
    GROUP BY p.id, r.id, p.orders, r.orders, total.orders
"""

TABLES = {"product": Product._meta.db_table, "affinity": ProductAffinity._meta.db_table}


@dataclass
class RefreshResult:
    products: int
    pairs: int


def products_refresh(
    *,
    now: dt.datetime | None = None,
    days: int = WINDOW_DAYS,
    leave_out: Collection[tuple[int, str]] = (),
) -> RefreshResult:
    """Rebuild the products and what is bought together from the last `days` of purchases.

    `leave_out` holds orders, as (contact id, order id), that the refresh does not see: the
    orders `recommendations_evaluate` hides to ask whether the recommendations find them."""
    now = now or timezone.now()
    params: dict[str, Any] = {
        "purchase": Event.Type.PURCHASE,
        "since": now - dt.timedelta(days=days),
        "now": now,
        "left_out_contacts": [contact_id for contact_id, _order in leave_out],
        "left_out_orders": [order_id for _contact, order_id in leave_out],
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS product_lines")
        cursor.execute(LINES_SQL, params)
        cursor.execute(PRODUCTS_SQL.format(**TABLES), [now])
        # Products nobody bought in the window stay known (a template may name them) but sell nothing.
        # Told by the lines, not by `refreshed_at`: a refresh at the same moment that leaves orders out
        # (an evaluation) must not keep what those orders sold.
        cursor.execute(UNSOLD_SQL.format(**TABLES), [now])
        ProductAffinity.objects.all().delete()
        cursor.execute(AFFINITY_SQL.format(**TABLES))
        pairs = cursor.rowcount
    return RefreshResult(products=Product.objects.filter(buyers__gt=0).count(), pairs=pairs)


# How a related product is scored, summed over the contact's products it is bought with (`a` is
# the pair). Measured with `recommendations_evaluate` on the demo shop, whose orders hold planted
# pairs (benchmarks/recommendations.py, 20,000 contacts; seeds 1 and 2, about 2,150 hidden orders
# each), hit rate at 5: confidence 0.609 and 0.609, lift 0.577 and 0.571, the three blends 0.59 to
# 0.60; the best sellers 0.090 and 0.098. Of the 11 products with planted accessories (seed 1),
# confidence ranks the one planted with the highest chance first for 10, lift for 6.
#
# Confidence stays: it is the share of the product's orders that also hold the other one, which is
# what "bought this, also bought" asks. Lift divides by how often the other product sells at all,
# and so puts the rarer accessory first (the gas barbecue's tool set, in 30% of its orders, lift 29,
# above its cover, in 54%, lift 19) and lets in rare products seen together by chance; the blends
# find fewer hidden products than confidence alone. Lift stays on each pair, for the products page,
# to tell a real pair from chance.
RANKINGS = {
    "confidence": "a.confidence",
    "lift": "a.lift",
    "confidence_lift": "a.confidence * ln(1 + a.lift)",
    "confidence_above_chance": "CASE WHEN a.lift > 1 THEN a.confidence ELSE 0 END",
    "confidence_times_lift": "a.confidence * a.lift",
}
RANKING = "confidence"

# What the contacts of the batch bought: from their purchase events, or given (an evaluation gives
# what a contact had bought before the order it hides).
BOUGHT_FROM_EVENTS = """
    SELECT DISTINCT e.contact_id, p.id AS product_id, p.category
    FROM audiences_event e
    JOIN {product} p ON p.name = e.properties ->> 'product'
    WHERE e.contact_id = ANY(%(contacts)s) AND e.type = %(purchase)s
"""
BOUGHT_GIVEN = """
    SELECT DISTINCT g.contact_id, p.id AS product_id, p.category
    FROM unnest(%(given_contacts)s::bigint[], %(given_products)s::text[]) AS g(contact_id, product)
    JOIN {product} p ON p.name = g.product
"""

# Rows of three kinds: each contact's related products, best first, with the product of theirs
# that counts most for it (`because`); what each contact bought; the best sellers of those categories.
RECOMMENDED_SQL = """
    WITH bought AS ({bought}), related AS (
        SELECT b.contact_id, a.related_id AS product_id, sum({score}) AS score,
               (array_agg(b.product_id ORDER BY {score} DESC, b.product_id))[1] AS because
        FROM bought b
        JOIN {affinity} a ON a.product_id = b.product_id
        WHERE NOT EXISTS (SELECT 1 FROM bought o WHERE o.contact_id = b.contact_id AND o.product_id = a.related_id)
        GROUP BY 1, 2
    ), ranked AS (
        SELECT contact_id, product_id, because,
               row_number() OVER (PARTITION BY contact_id ORDER BY score DESC, product_id) AS n
        FROM related
        WHERE score > 0
    )
    SELECT 'related', contact_id, product_id, n, '', because FROM ranked WHERE n <= %(limit)s
    UNION ALL
    SELECT 'bought', contact_id, product_id, 0, category, NULL FROM bought
    UNION ALL
    SELECT 'category', NULL, id, row_number() OVER (PARTITION BY category ORDER BY buyers DESC, id), category, NULL
    FROM {product}
    WHERE buyers > 0 AND category IN (SELECT category FROM bought)
"""


def _as_context(product: Product, bought_with: Product | None) -> dict[str, Any]:
    return {
        "name": product.name,
        "url": product.url,
        "price": product.price,
        "image_url": product.image_url,
        "category": product.category,
        # The contact's product it goes with; empty for a best seller of the category.
        "bought_with": bought_with.name if bought_with else "",
    }


def products_recommended(
    *, contact_ids: Iterable[int], limit: int = RECOMMENDED, ranking: str = RANKING
) -> dict[int, list[dict[str, Any]]]:
    """Each contact's recommended products, best first, as the template context's `recommendations`
    (name, url, price, image_url, category, bought_with); contacts without any are left out. Two
    queries for the whole batch."""
    ids = list(contact_ids)
    if not ids:
        return {}
    return _recommended(BOUGHT_FROM_EVENTS, {"contacts": ids}, limit=limit, ranking=ranking)


def _recommended(
    bought_sql: str, params: Mapping[str, Any], *, limit: int, ranking: str
) -> dict[int, list[dict[str, Any]]]:
    sql = RECOMMENDED_SQL.format(bought=bought_sql.format(**TABLES), score=RANKINGS[ranking], **TABLES)
    related: dict[int, list[tuple[int, int]]] = defaultdict(list)
    bought: dict[int, set[int]] = defaultdict(set)
    categories: dict[int, set[str]] = defaultdict(set)
    best_sellers: dict[str, list[int]] = defaultdict(list)
    with connection.cursor() as cursor:
        cursor.execute(sql, {**params, "purchase": Event.Type.PURCHASE, "limit": limit})
        rows = cursor.fetchall()
    for kind, contact_id, product_id, rank, category, because in sorted(rows, key=lambda row: row[3]):
        if kind == "related":
            related[contact_id].append((product_id, because))
        elif kind == "bought":
            bought[contact_id].add(product_id)
            categories[contact_id].add(category)
        elif rank <= limit * 4:  # enough to fill up past what a contact already has
            best_sellers[category].append(product_id)
    wanted = {pk for pairs in related.values() for pair in pairs for pk in pair}
    products = Product.objects.in_bulk(wanted | {pk for pks in best_sellers.values() for pk in pks})
    found = {}
    for contact_id, has in bought.items():
        # (product, the contact's product it goes with, or None for a best seller of the category)
        chosen: list[tuple[int, int | None]] = list(related.get(contact_id, []))
        for category in sorted(categories[contact_id]):
            for pk in best_sellers.get(category, []):
                if len(chosen) < limit and pk not in has and all(pk != other for other, _ in chosen):
                    chosen.append((pk, None))
        if chosen:
            found[contact_id] = [
                _as_context(products[pk], products[because] if because else None) for pk, because in chosen[:limit]
            ]
    return found


# --- Offline evaluation --------------------------------------------------------------------------

# Every purchase line of the contacts whose last order (up to `as_of`, within the window) holds two
# products or more, in the order the shop sent them, with whether the line is of that last order.
EVALUATED_LINES_SQL = """
    WITH lines AS (
        SELECT e.id, e.contact_id, e.occurred_at, left(e.properties ->> 'product', 200) AS product,
               coalesce(nullif(e.properties ->> 'order_id', ''), 'event:' || e.id::text) AS order_id
        FROM audiences_event e
        WHERE e.type = %(purchase)s AND e.occurred_at <= %(as_of)s AND coalesce(e.properties ->> 'product', '') <> ''
    ), last AS (
        SELECT DISTINCT ON (contact_id) contact_id, order_id, occurred_at
        FROM lines
        ORDER BY contact_id, occurred_at DESC, order_id DESC
    ), checked AS (
        SELECT last.contact_id, last.order_id
        FROM last JOIN lines ON lines.contact_id = last.contact_id AND lines.order_id = last.order_id
        WHERE last.occurred_at >= %(since)s
        GROUP BY 1, 2
        HAVING count(DISTINCT lines.product) >= 2
    )
    SELECT l.contact_id, l.order_id, l.order_id = c.order_id AS hidden, l.product
    FROM lines l JOIN checked c ON c.contact_id = l.contact_id
    ORDER BY l.contact_id, l.id
"""
EVALUATION_BATCH = 5000


@dataclass(frozen=True)
class Evaluation:
    """How often the top `k` recommendations name a product of the order they did not see (a hit),
    beside the shop's best sellers recommended to the same customers."""

    k: int
    ranking: str
    orders: int  # the hidden last orders checked
    hits: int
    baseline_hits: int
    refresh_seconds: float  # the refresh without the hidden orders, as a measure of its cost

    @property
    def hit_rate(self) -> float:
        return self.hits / self.orders if self.orders else 0.0

    @property
    def baseline_hit_rate(self) -> float:
        return self.baseline_hits / self.orders if self.orders else 0.0


@dataclass
class _Contact:
    """A contact of the evaluation: the order hidden from the refresh, its products in the order the
    shop sent them, and the products the contact bought before it."""

    order_id: str = ""
    lines: list[str] = field(default_factory=list)
    earlier: set[str] = field(default_factory=set)


def recommendations_evaluate(
    *, as_of: dt.datetime, k: int = 5, days: int = WINDOW_DAYS, ranking: str = RANKING
) -> Evaluation:
    """Hide each contact's last order of two products or more (of the last `days` before `as_of`),
    learn what is bought together from all other purchases, recommend `k` products from what the
    contact bought earlier plus the first line of the hidden order (the product in the basket, as
    the onboarding email after a purchase knows it), and count a hit when any other product of
    the hidden order is among them. The baseline recommends the best sellers the contact does not
    have yet, from the same purchases.

    The pairs are learnt from every purchase but the hidden orders (one refresh for all, not one per
    contact): another customer's later orders count, as they would in any one night's refresh.
    The refresh runs in a transaction that is rolled back: the products and pairs that templates
    read are the same afterwards (a nightly refresh meanwhile waits for it)."""
    if ranking not in RANKINGS:
        raise ValueError(f"Unknown ranking {ranking!r}; choose one of {', '.join(RANKINGS)}.")
    since = as_of - dt.timedelta(days=days)
    contacts: dict[int, _Contact] = defaultdict(_Contact)
    with connection.cursor() as cursor:
        cursor.execute(EVALUATED_LINES_SQL, {"purchase": Event.Type.PURCHASE, "as_of": as_of, "since": since})
        for contact_id, order_id, hidden, product in cursor.fetchall():
            contact = contacts[contact_id]
            if hidden:
                contact.order_id = order_id
                contact.lines.append(product)
            else:
                contact.earlier.add(product)
    # What the contact had when the recommendations are made, and what the hidden order added.
    seen = {contact_id: {*contact.earlier, contact.lines[0]} for contact_id, contact in contacts.items()}
    targets = {contact_id: set(contact.lines[1:]) - {contact.lines[0]} for contact_id, contact in contacts.items()}

    recommended: dict[int, list[str]] = {}
    with transaction.atomic():
        started = time.perf_counter()
        products_refresh(
            now=as_of, days=days, leave_out=[(contact_id, contact.order_id) for contact_id, contact in contacts.items()]
        )
        refresh_seconds = time.perf_counter() - started
        ids = list(contacts)
        for start in range(0, len(ids), EVALUATION_BATCH):
            batch = ids[start : start + EVALUATION_BATCH]
            given = [(contact_id, product) for contact_id in batch for product in sorted(seen[contact_id])]
            found = _recommended(
                BOUGHT_GIVEN,
                {"given_contacts": [c for c, _p in given], "given_products": [p for _c, p in given]},
                limit=k,
                ranking=ranking,
            )
            recommended.update({c: [product["name"] for product in found.get(c, [])] for c in batch})
        most_seen = max((len(products) for products in seen.values()), default=0)
        best_sellers = list(
            Product.objects.filter(buyers__gt=0)
            .order_by("-buyers", "id")
            .values_list("name", flat=True)[: k + most_seen]
        )
        transaction.set_rollback(True)

    hits = baseline_hits = 0
    for contact_id, wanted in targets.items():
        hits += bool(wanted & set(recommended[contact_id][:k]))
        baseline = [name for name in best_sellers if name not in seen[contact_id]][:k]
        baseline_hits += bool(wanted & set(baseline))
    return Evaluation(
        k=k,
        ranking=ranking,
        orders=len(targets),
        hits=hits,
        baseline_hits=baseline_hits,
        refresh_seconds=refresh_seconds,
    )
