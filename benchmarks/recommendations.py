"""Product recommendations on the demo shop: do they find what was bought together, beside the best sellers?

    .venv/bin/python benchmarks/recommendations.py --contacts 20000 \\
        --database-url postgres://postgres@127.0.0.1:5432/dialoog_recobench

Builds the data with the demo generator (dialoog/demo.py, whose orders hold planted pairs such as a
gas barbecue with its cover: `BOUGHT_TOGETHER`) in a database of its own (created when missing,
then migrated), unless it holds them already. Then prints one JSON line per figure, with the
machine's load average before and after:

- `recommendations_hit_at_k`, one line per ranking of `RANKINGS` (the one in use is marked
  `in_use`): `recommendations_evaluate` hides each customer's last order of two products or more,
  learns the pairs from every other purchase (rolled back afterwards), recommends `--k` products
  from what the customer had plus the first line of the hidden order, and counts a hit when another
  product of that order is among them. Beside it, in the same run on the same orders, the baseline:
  the shop's best sellers the customer does not have yet. Target: at least 1.5 times the baseline.
- `planted_pairs_found`, one line per ranking: of the demo's planted pairs (`BOUGHT_TOGETHER`, 18
  accessories of 11 products), how many are among their product's first related products (as many
  as it has planted), and for how many products the first one is the accessory planted with the
  highest chance; beside the baseline, the shop's best sellers other than the product itself.
- `products_refresh`: the nightly refresh of the products and their pairs (median of `--runs`),
  beside the hand-written SELECT of the pairs alone (the same self-join, nothing written).

Dates are relative to a fixed `--as-of`, so every run sees the same orders. Benchmarks are run by
hand, not by the test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from render import create_database, emit, load, log, setup_django

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/dialoog_recobench"
DEFAULT_AS_OF = dt.date(2026, 11, 22)

# The pairs of the last year, as products_refresh counts them, without writing anything.
PAIRS_SQL = """
    WITH lines AS (
        SELECT e.properties ->> 'product' AS product,
               coalesce(nullif(e.properties ->> 'order_id', ''), 'event:' || e.id::text) AS order_id
        FROM audiences_event e
        WHERE e.type = 'purchase' AND e.occurred_at >= %s AND e.occurred_at <= %s
          AND coalesce(e.properties ->> 'product', '') <> ''
    ), distinct_lines AS (SELECT DISTINCT order_id, product FROM lines)
    SELECT count(*) FROM (
        SELECT a.product, b.product, count(*)
        FROM distinct_lines a JOIN distinct_lines b ON b.order_id = a.order_id AND b.product <> a.product
        GROUP BY 1, 2
    ) AS pairs
"""


# A product's related products, best first by a ranking of RANKINGS (`a` is the pair).
RELATED_SQL = """
    SELECT p.name, r.name
    FROM audiences_productaffinity a
    JOIN audiences_product p ON p.id = a.product_id
    JOIN audiences_product r ON r.id = a.related_id
    ORDER BY p.name, {score} DESC, r.name
"""


def planted_pairs(related: dict[str, list[str]], planted: dict) -> tuple[int, int, int]:
    """(planted accessories among their product's first related ones, all of them, products whose
    first related product is the accessory planted with the highest chance)."""
    found = total = strongest_first = 0
    for product, accessories in planted.items():
        wanted = {accessory for _category, accessory, _chance in accessories}
        first = related.get(product, [])
        found += len(wanted & set(first[: len(wanted)]))
        total += len(wanted)
        strongest_first += bool(first) and first[0] == max(accessories, key=lambda each: each[2])[1]
    return found, total, strongest_first


def build_data(contacts: int, seed: int, as_of: dt.date) -> None:
    from django.core.management import call_command
    from django.db import connection

    from audiences.models import Contact
    from dialoog.demo import demo_contact_key, demo_load

    call_command("migrate", verbosity=0)
    if (
        Contact.objects.filter(
            contact_key__in=[demo_contact_key(seed, 0), demo_contact_key(seed, contacts - 1)]
        ).count()
        == 2
    ):
        log(f"data: {contacts:,} contacts of seed {seed} are there already")
    else:
        log(f"data: building {contacts:,} contacts of seed {seed} as of {as_of}")
        started = time.perf_counter()
        result = demo_load(contacts=contacts, seed=seed, as_of=as_of)
        emit(
            figure="demo_data_build",
            seconds=round(time.perf_counter() - started, 1),
            contacts=result.contacts_created,
            events=result.events_created,
        )
    with connection.cursor() as cursor:
        for table in ("audiences_event", "audiences_product", "audiences_productaffinity"):
            cursor.execute(f"VACUUM (ANALYZE) {table}")


def median_seconds(run, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3, help="Timed runs of the refresh (median).")
    parser.add_argument("--as-of", type=dt.date.fromisoformat, default=DEFAULT_AS_OF)
    parser.add_argument("--database-url", default=os.environ.get("BENCHMARK_DATABASE_URL", DEFAULT_DATABASE_URL))
    arguments = parser.parse_args()

    create_database(arguments.database_url)
    setup_django(arguments.database_url)
    from django.db import connection

    from audiences.insights.products import RANKING, RANKINGS, products_refresh, recommendations_evaluate
    from audiences.models import Product, ProductAffinity
    from dialoog.demo import BOUGHT_TOGETHER
    from goals.services import start_of

    build_data(arguments.contacts, arguments.seed, arguments.as_of)
    now = start_of(arguments.as_of + dt.timedelta(days=1))
    load_before = load()
    common = {"contacts": arguments.contacts, "seed": arguments.seed, "as_of": arguments.as_of.isoformat()}

    products_refresh(now=now)  # what the nightly refresh left; the evaluation must leave it so
    before = list(ProductAffinity.objects.order_by("pk").values_list("product_id", "related_id", "confidence"))
    for ranking in RANKINGS:
        started = time.perf_counter()
        result = recommendations_evaluate(as_of=now, k=arguments.k, ranking=ranking)
        emit(
            figure="recommendations_hit_at_k",
            ranking=ranking,
            in_use=ranking == RANKING,
            k=result.k,
            hit_rate=round(result.hit_rate, 4),
            baseline_best_sellers_hit_rate=round(result.baseline_hit_rate, 4),
            ratio_to_baseline=round(result.hit_rate / result.baseline_hit_rate, 2) if result.baseline_hits else None,
            target_ratio=1.5,
            orders=result.orders,
            hits=result.hits,
            baseline_hits=result.baseline_hits,
            seconds=round(time.perf_counter() - started, 2),
            **common,
        )
    after = list(ProductAffinity.objects.order_by("pk").values_list("product_id", "related_id", "confidence"))
    if before != after:
        raise SystemExit("benchmark stopped: the evaluation changed the pairs templates read.")

    best_sellers = list(Product.objects.filter(buyers__gt=0).order_by("-buyers", "id").values_list("name", flat=True))
    baseline = planted_pairs(
        {product: [name for name in best_sellers if name != product] for product in BOUGHT_TOGETHER}, BOUGHT_TOGETHER
    )
    for ranking, score in RANKINGS.items():
        related: dict[str, list[str]] = {}
        with connection.cursor() as cursor:
            cursor.execute(RELATED_SQL.format(score=score))
            for product, other in cursor.fetchall():
                related.setdefault(product, []).append(other)
        found, total, strongest_first = planted_pairs(related, BOUGHT_TOGETHER)
        emit(
            figure="planted_pairs_found",
            ranking=ranking,
            in_use=ranking == RANKING,
            found=found,
            planted=total,
            strongest_first=strongest_first,
            products=len(BOUGHT_TOGETHER),
            baseline_best_sellers_found=baseline[0],
            baseline_best_sellers_strongest_first=baseline[2],
            **common,
        )

    refresh = median_seconds(lambda: products_refresh(now=now), arguments.runs)
    since = now - dt.timedelta(days=365)

    def select_pairs() -> None:
        with connection.cursor() as cursor:
            cursor.execute(PAIRS_SQL, [since, now])
            cursor.fetchone()

    bare = median_seconds(select_pairs, arguments.runs)
    emit(
        figure="products_refresh",
        seconds=round(refresh, 3),
        baseline_select_pairs_seconds=round(bare, 3),
        ratio_to_baseline=round(refresh / bare, 2),
        products=Product.objects.filter(buyers__gt=0).count(),
        pairs=ProductAffinity.objects.count(),
        load_before=load_before,
        load_after=load(),
        **common,
    )


if __name__ == "__main__":
    main()
