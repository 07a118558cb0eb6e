"""Product recommendations, an insight on the customer picture: what is bought together.

Once a night `products_refresh` reads the last year's purchase events (`properties.product`, with
`order_id` to know which lines were one order, `items`, `url` and `image_url` when the shop sends
them) into two small tables: the products with their median price and how many bought them, and
for each pair of products bought in one order, the share of the first one's orders that held the
second. Both in set-based SQL, in one transaction, so a reader sees yesterday's tables or today's.

`products_recommended` then gives each contact of a batch its related products in one query: the
products most often bought with what the contact bought, not what the contact has already; when
that gives too few, the best sellers of the categories the contact bought in. A contact who never
bought anything gets none (templates fall back with `{% for product in products %}…{% else %}`).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from audiences.models import Event, Product, ProductAffinity

WINDOW_DAYS = 365
RECOMMENDED = 3

# One row per purchase line of the window with a product name; a line without an order id is an
# order of its own. `items` counts only when it is a whole number (the shop's data is not trusted).
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
    WHERE e.type = %s AND e.occurred_at >= %s AND e.occurred_at <= %s
      AND coalesce(e.properties ->> 'product', '') <> ''
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


@dataclass
class RefreshResult:
    products: int
    pairs: int


def products_refresh(*, now: dt.datetime | None = None, days: int = WINDOW_DAYS) -> RefreshResult:
    """Rebuild the products and what is bought together from the last `days` of purchases."""
    now = now or timezone.now()
    tables = {"product": Product._meta.db_table, "affinity": ProductAffinity._meta.db_table}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS product_lines")
        cursor.execute(LINES_SQL, [Event.Type.PURCHASE, now - dt.timedelta(days=days), now])
        cursor.execute(PRODUCTS_SQL.format(**tables), [now])
        # Products nobody bought in the window stay known (a template may name them) but sell nothing.
        Product.objects.exclude(refreshed_at=now).update(buyers=0, orders=0, refreshed_at=now)
        ProductAffinity.objects.all().delete()
        cursor.execute(AFFINITY_SQL.format(**tables))
        pairs = cursor.rowcount
    return RefreshResult(products=Product.objects.filter(buyers__gt=0).count(), pairs=pairs)


RECOMMENDED_SQL = """
    WITH bought AS (
        SELECT DISTINCT e.contact_id, p.id AS product_id, p.category
        FROM audiences_event e
        JOIN {product} p ON p.name = e.properties ->> 'product'
        WHERE e.contact_id = ANY(%s) AND e.type = %s
    ), related AS (
        SELECT b.contact_id, a.related_id AS product_id, sum(a.confidence) AS score
        FROM bought b
        JOIN {affinity} a ON a.product_id = b.product_id
        WHERE NOT EXISTS (SELECT 1 FROM bought o WHERE o.contact_id = b.contact_id AND o.product_id = a.related_id)
        GROUP BY 1, 2
    ), ranked AS (
        SELECT contact_id, product_id, row_number() OVER (PARTITION BY contact_id ORDER BY score DESC, product_id) AS n
        FROM related
    )
    SELECT 'related', contact_id, product_id, n, '' FROM ranked WHERE n <= %s
    UNION ALL
    SELECT 'bought', contact_id, product_id, 0, category FROM bought
    UNION ALL
    SELECT 'category', NULL, id, row_number() OVER (PARTITION BY category ORDER BY buyers DESC, id), category
    FROM {product}
    WHERE buyers > 0 AND category IN (SELECT category FROM bought)
"""


def _as_context(product: Product) -> dict[str, Any]:
    return {
        "name": product.name,
        "url": product.url,
        "price": product.price,
        "image_url": product.image_url,
        "category": product.category,
    }


def products_recommended(*, contact_ids: Iterable[int], limit: int = RECOMMENDED) -> dict[int, list[dict[str, Any]]]:
    """Each contact's recommended products, best first, as the template context's `products`
    (name, url, price, image_url, category); contacts without any are left out. Two queries for
    the whole batch."""
    ids = list(contact_ids)
    if not ids:
        return {}
    tables = {"product": Product._meta.db_table, "affinity": ProductAffinity._meta.db_table}
    related: dict[int, list[int]] = defaultdict(list)
    bought: dict[int, set[int]] = defaultdict(set)
    categories: dict[int, set[str]] = defaultdict(set)
    best_sellers: dict[str, list[int]] = defaultdict(list)
    with connection.cursor() as cursor:
        cursor.execute(RECOMMENDED_SQL.format(**tables), [ids, Event.Type.PURCHASE, limit])
        rows = cursor.fetchall()
    for kind, contact_id, product_id, rank, category in sorted(rows, key=lambda row: row[3]):
        if kind == "related":
            related[contact_id].append(product_id)
        elif kind == "bought":
            bought[contact_id].add(product_id)
            categories[contact_id].add(category)
        elif rank <= limit * 4:  # enough to fill up past what a contact already has
            best_sellers[category].append(product_id)
    products = Product.objects.in_bulk({pk for pks in [*related.values(), *best_sellers.values()] for pk in pks})
    found = {}
    for contact_id, has in bought.items():
        chosen = list(related.get(contact_id, []))
        for category in sorted(categories[contact_id]):
            for pk in best_sellers.get(category, []):
                if len(chosen) < limit and pk not in chosen and pk not in has:
                    chosen.append(pk)
        if chosen:
            found[contact_id] = [_as_context(products[pk]) for pk in chosen[:limit]]
    return found
