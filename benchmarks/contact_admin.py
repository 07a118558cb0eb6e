"""The contact admin on a million contacts: the pages an agent uses, each beside its baseline.

    .venv/bin/python benchmarks/contact_admin.py \\
        --database-url postgres://postgres@127.0.0.1:5432/dialoog_bench

Uses the data that benchmarks/segments.py builds (the demo generator, 1,000,000 contacts);
build it first. Logs in as the demo agent through Django's test client (no network) and
prints one JSON line per page: the median of `--runs` requests after a warm-up, its query
count, and beside it the baseline that a stock admin would run for the same page:

- `contact_list`: the first page, beside `SELECT COUNT(*)` over all contacts (what the stock
  paginator runs on every page, and what our estimate avoids);
- `search_email`, `search_phone`, `search_key`, `search_last_name`: the search box, beside a
  substring search (`ILIKE '%...%'`) over identities or last names (what `search_fields`
  would run);
- `contact_page`: one contact with identities, consent history, timeline and segments,
  beside a plain primary-key fetch of the contact;
- `picker_email`, `picker_phone`, `picker_last_name`: the contact picker of the template
  preview (at most 10 contacts with the identity that names each), which reuses the contact
  list's search, beside the same substring search.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/dialoog_bench"


def _median_ms(function, runs: int) -> float:
    function()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dialoog.settings.base")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection, reset_queries
    from django.test import Client

    from audiences.models import Contact, Identity

    settings.ALLOWED_HOSTS = ["*"]
    if Contact.objects.count() < 100_000:
        sys.exit("Build the data first: benchmarks/segments.py --contacts 1000000 --seed 1")
    agent = get_user_model().objects.get(username="agent")
    client = Client(headers={"accept-language": "en"})
    client.force_login(agent)

    sample = Contact.objects.order_by("pk")[500_000]
    email = Identity.objects.filter(kind="email").order_by("pk").values_list("value", flat=True)[500_000]
    phone = Identity.objects.filter(kind="phone").order_by("pk").values_list("value", flat=True)[300_000]
    spelled_phone = "0" + phone[3:5] + "-" + phone[5:]  # as a customer says it: 06-12345678

    def page(url: str, params: dict | None = None):
        def fetch():
            response = client.get(url, params or {})
            if response.status_code != 200:
                sys.exit(f"{url} answered {response.status_code}")
            return response

        return fetch

    def sql(statement: str, params: list):
        def run():
            with connection.cursor() as cursor:
                cursor.execute(statement, params)
                cursor.fetchall()

        return run

    changelist = "/admin/audiences/contact/"
    picker = "/admin/content/template/contacts/"
    cases = [
        ("contact_list", page(changelist), sql("SELECT COUNT(*) FROM audiences_contact", [])),
        (
            "search_email",
            page(changelist, {"q": email.upper()}),
            sql("SELECT contact_id FROM audiences_identity WHERE value ILIKE %s", [f"%{email}%"]),
        ),
        (
            "search_phone",
            page(changelist, {"q": spelled_phone}),
            sql("SELECT contact_id FROM audiences_identity WHERE value ILIKE %s", [f"%{phone[3:]}%"]),
        ),
        (
            "search_key",
            page(changelist, {"q": str(sample.contact_key)}),
            sql("SELECT id FROM audiences_contact WHERE contact_key::text ILIKE %s", [f"%{sample.contact_key}%"]),
        ),
        (
            "search_last_name",
            page(changelist, {"q": sample.last_name}),
            sql("SELECT id FROM audiences_contact WHERE last_name ILIKE %s", [f"%{sample.last_name}%"]),
        ),
        (
            "contact_page",
            page(f"/admin/audiences/contact/{sample.pk}/change/"),
            sql("SELECT * FROM audiences_contact WHERE id = %s", [sample.pk]),
        ),
        (
            "picker_email",
            page(picker, {"q": email}),
            sql("SELECT contact_id FROM audiences_identity WHERE value ILIKE %s LIMIT 10", [f"%{email}%"]),
        ),
        (
            "picker_phone",
            page(picker, {"q": spelled_phone}),
            sql("SELECT contact_id FROM audiences_identity WHERE value ILIKE %s LIMIT 10", [f"%{phone[3:]}%"]),
        ),
        (
            "picker_last_name",
            page(picker, {"q": sample.last_name}),
            sql("SELECT id FROM audiences_contact WHERE last_name ILIKE %s LIMIT 10", [f"%{sample.last_name}%"]),
        ),
    ]
    owner = Identity.objects.get(kind="phone", value=phone).contact
    if str(owner.contact_key) not in client.get(changelist, {"q": spelled_phone}).text:
        sys.exit(f"searching {spelled_phone} did not find its contact {owner.contact_key}")
    if str(owner.contact_key) not in client.get(picker, {"q": spelled_phone}).text:
        sys.exit(f"the picker did not find {spelled_phone}'s contact {owner.contact_key}")
    for figure, ours, baseline in cases:
        settings.DEBUG = True
        reset_queries()
        ours()
        queries = len(connection.queries)
        settings.DEBUG = False
        ours_ms, baseline_ms = _median_ms(ours, args.runs), _median_ms(baseline, args.runs)
        line = {
            "figure": figure,
            "ours_ms": ours_ms,
            "baseline_ms": baseline_ms,
            "ratio": round(ours_ms / baseline_ms, 2) if baseline_ms else None,
            "queries": queries,
            "runs": args.runs,
            "load": round(os.getloadavg()[0], 2),
        }
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
