"""Rendering personalised emails: the sandboxed engine beside a bare Jinja2 loop over the same template.

    .venv/bin/python benchmarks/render.py --contacts 100000 \\
        --database-url postgres://postgres@127.0.0.1:5432/dialoog_renderbench

Builds its own data in the database given (created when missing, then migrated): `--contacts`
contacts with names (some empty), attributes and scores; a header and a footer block and a
~2 KB HTML email with five variables (first name with a fallback, the offer's name, price and
end date, the unsubscribe link), saved through the services like a marketeer's save: checked,
cleaned with nh3, CSS inlined, once. Then, batch by batch of 1,000 contacts, it loads their
personalisation contexts from PostgreSQL (`contact_contexts`, two queries a batch) and renders
each message by ours (the version's prepared HTML through `compile_template`, cached, and
`render`, every limit on) and by a bare `jinja2.Environment` (autoescaped, the same blocks from
a `DictLoader`, the same Dutch filters), in alternating order so that both see the same
machine; their outputs must agree. One process, one core. Prints one JSON line per figure,
with the load average before and after:

- `render_sandboxed`: HTML bodies per second. Target: at least 10,000, and at least 0.5 times
  the bare loop.
- `render_bare_jinja`: the baseline.
- `render_message`: whole messages per second through `template_render` (subject, preheader,
  HTML and the plain text derived from it), what a send does per contact.
- `context_load`: contexts loaded per second, in batches.

Benchmarks are run by hand, not by the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BATCH = 1_000

FIRST_NAMES = ["Sanne", "Daan", "Emma", "Lucas", "Julia", "Sem", "Tess", "Milan", "", "Zoë", "Bram", "Fenna"]
OFFERS = [("Najaarskorting", "974.25"), ("Tuinweek", "1299.00"), ("Kussendeal", "34.95"), ("Parasolactie", "249.50")]

HEADER = """<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="background:#f4f1ea">
  <tr><td style="padding:24px 32px;font-family:Georgia,serif;font-size:28px;color:#2f4f2f">
    Tuincentrum De Linde <span style="font-size:14px;color:#6b6b6b">sinds 1968</span>
  </td></tr>
</table>"""
FOOTER = """<table role="presentation" width="100%" cellpadding="0" cellspacing="0"
  style="background:#2f4f2f;color:#fff">
  <tr><td style="padding:24px 32px;font-family:Arial,sans-serif;font-size:12px;line-height:18px">
    U ontvangt deze e-mail omdat u klant bent bij Tuincentrum De Linde, Lindelaan 12, 3512 AB Utrecht.
    <a href="{{ links.unsubscribe }}" style="color:#fff">Afmelden</a>
  </td></tr>
</table>"""
BODY = """<!doctype html>
<html lang="nl"><head><meta charset="utf-8"><title>Uw voordeel bij De Linde</title></head>
<body style="margin:0;padding:0;background:#ffffff">
{% include "block:header" %}
<table role="presentation" width="100%" cellpadding="0" cellspacing="0">
  <tr><td style="padding:32px;font-family:Arial,sans-serif;font-size:16px;line-height:24px;color:#333">
    <p>Beste {{ contact.first_name | default("klant") }},</p>
    <p>De dagen worden korter, maar in de tuin is er nog genoeg te doen. Daarom hebben we een aanbieding
    die speciaal voor u is samengesteld: <strong>{{ offer.name }}</strong>. Nu voor slechts
    <strong>{{ offer.price | currency }}</strong>, alleen geldig tot en met {{ offer.valid_until | date }}.</p>
    <p>Kom langs in onze winkel in Utrecht of bestel online. Onze medewerkers helpen u graag bij het kiezen
    van de juiste meubels, kussens en parasols, en bezorgen alles gratis bij u thuis binnen de regio.</p>
    <p style="text-align:center;padding:16px 0">
      <a href="https://shop.example.nl/aanbiedingen" style="background:#2f4f2f;color:#fff;padding:12px 24px;
      border-radius:4px;text-decoration:none;font-weight:bold">Bekijk de aanbieding</a>
    </p>
    <p>Met groene groet,<br>Het team van Tuincentrum De Linde</p>
  </td></tr>
</table>
{% include "block:footer" %}
</body></html>
"""


def emit(**figure) -> None:
    print(json.dumps(figure), flush=True)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DEBUG", "false")  # no query log growing over 100,000 renders
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dialoog.settings.base")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def create_database(database_url: str) -> None:
    """The benchmark's own database, created on the same server when it is missing."""
    import psycopg
    from psycopg import sql

    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(database_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def build_contacts(contacts: int, seed: int) -> list[int]:
    """`contacts` contacts with names (one in twelve without a first name), a city and two scores."""
    from django.core.management import call_command
    from django.db import connection

    from audiences.models import Contact, Score

    call_command("migrate", verbosity=0)
    ids = list(Contact.objects.filter(attributes__benchmark="render").order_by("pk").values_list("pk", flat=True))
    if len(ids) >= contacts:
        log(f"data: {len(ids):,} benchmark contacts are there already")
        return ids[:contacts]
    log(f"data: building {contacts - len(ids):,} contacts")
    rng = random.Random(seed)
    with connection.cursor() as cursor:
        cursor.execute("SELECT setseed(%s)", [rng.random() * 2 - 1])
        cursor.execute(
            """
            INSERT INTO audiences_contact (contact_key, first_name, last_name, locale, timezone, attributes,
                                           created_at, updated_at)
            SELECT gen_random_uuid(), (%(names)s::text[])[1 + (n %% cardinality(%(names)s::text[]))],
                   'de Vries', 'nl', 'Europe/Amsterdam',
                   jsonb_build_object('benchmark', 'render', 'city', 'Utrecht'), now(), now()
            FROM generate_series(%(start)s, %(stop)s) AS n
            """,
            {"names": FIRST_NAMES, "start": len(ids), "stop": contacts - 1},
        )
    ids = list(Contact.objects.filter(attributes__benchmark="render").order_by("pk").values_list("pk", flat=True))
    Score.objects.bulk_create(
        [Score(contact_id=pk, name=name, value=rng.random()) for pk in ids for name in ("churn", "lifetime_value")],
        batch_size=10_000,
        ignore_conflicts=True,
    )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) audiences_contact")
        cursor.execute("VACUUM (ANALYZE) audiences_score")
    return ids[:contacts]


def publish_blocks() -> None:
    """The header and the footer block, saved and published through the services (again only when
    their published body differs)."""
    from content.models import ContentBlock
    from content.services import block_create, block_publish, block_version_create

    for slug, body in (("header", HEADER), ("footer", FOOTER)):
        block = ContentBlock.objects.filter(slug=slug).first()
        if block is not None and block.published_version and block.published_version.body == body:
            continue
        version = (
            block_version_create(block=block, body=body)
            if block
            else block_create(name=slug.title(), slug=slug, kind=slug, body=body)
        )
        if version.problems:
            raise SystemExit(f"benchmark stopped: block {slug} has problems: {version.problems}")
        block_publish(version=version)


def save_content():
    """The blocks and the email, saved and published as a marketeer would: checked and prepared once."""
    from content.models import Message, Template
    from content.services import template_version_create

    publish_blocks()
    message, _created = Message.objects.get_or_create(name="Benchmark: najaarsactie")
    template, _created = Template.objects.get_or_create(message=message, channel=Template.Channel.EMAIL)
    version = template_version_create(
        template=template,
        language="nl",
        subject="{{ offer.name }}: speciaal voor u, {{ contact.first_name | default('klant') }}",
        preheader="Alleen geldig tot en met {{ offer.valid_until | date }}",
        html=BODY,
    )
    if version.problems:
        raise SystemExit(f"benchmark stopped: the template has problems: {version.problems}")
    return version


def offers(rng: random.Random) -> list[dict]:
    import datetime as dt
    from decimal import Decimal

    return [
        {
            "name": name,
            "price": Decimal(price),
            "valid_until": dt.date(2026, 11, 1) + dt.timedelta(days=rng.randrange(60)),
        }
        for name, price in OFFERS
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCHMARK_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dialoog_renderbench"),
    )
    arguments = parser.parse_args()

    create_database(arguments.database_url)
    setup_django(arguments.database_url)
    import jinja2

    from content.rendering import filters
    from content.rendering.render import compile_template, render
    from content.selectors import contact_contexts, published_blocks
    from content.services import template_render

    ids = build_contacts(arguments.contacts, arguments.seed)
    version = save_content()
    blocks = published_blocks()
    compiled = compile_template(
        version.prepared_html, channel="email_html", version_key=("template", version.pk, "html"), blocks=blocks.html
    )
    bare = jinja2.Environment(
        autoescape=True,
        loader=jinja2.DictLoader({f"block:{slug}": source for slug, source in blocks.html.items()}),
        keep_trailing_newline=True,
    )
    bare.filters.update(currency=filters.currency, date=filters.date, safe_url=filters.safe_url)
    bare_template = bare.from_string(version.prepared_html)
    log(f"template: {len(version.prepared_html):,} characters prepared, blocks {sorted(blocks.html)}")

    rng = random.Random(arguments.seed)
    choices = offers(rng)
    load_before = load()
    ours = baseline = whole = loading = 0.0
    size = 0
    for batch_number, start in enumerate(range(0, len(ids), BATCH)):
        started = time.perf_counter()
        batch = list(contact_contexts(contact_ids=ids[start : start + BATCH], offer=rng.choice(choices)).values())
        loading += time.perf_counter() - started
        runs = [
            ("ours", lambda batch=batch: [render(compiled, context) for context in batch]),
            ("bare", lambda batch=batch: [bare_template.render(context) for context in batch]),
        ]
        if batch_number % 2:
            runs.reverse()
        outputs = {}
        for name, run in runs:
            started = time.perf_counter()
            outputs[name] = run()
            elapsed = time.perf_counter() - started
            if name == "ours":
                ours += elapsed
            else:
                baseline += elapsed
        if outputs["ours"] != outputs["bare"]:
            raise SystemExit("benchmark stopped: the sandboxed and the bare render disagree.")
        started = time.perf_counter()
        for context in batch:
            template_render(version=version, context=context, blocks=blocks)
        whole += time.perf_counter() - started
        size = len(outputs["ours"][0])
    load_after = load()
    count = len(ids)
    common = {"contacts": count, "message_chars": size, "load_before": load_before, "load_after": load_after}
    ours_rate, bare_rate = count / ours, count / baseline
    emit(
        figure="render_sandboxed",
        messages_per_second=round(ours_rate),
        seconds=round(ours, 3),
        ratio_to_bare=round(ours_rate / bare_rate, 3),
        target_messages_per_second=10_000,
        target_ratio=0.5,
        met=ours_rate >= 10_000 and ours_rate >= 0.5 * bare_rate,
        **common,
    )
    emit(figure="render_bare_jinja", messages_per_second=round(bare_rate), seconds=round(baseline, 3), **common)
    emit(figure="render_message", messages_per_second=round(count / whole), seconds=round(whole, 3), **common)
    emit(
        figure="context_load",
        contexts_per_second=round(count / loading),
        seconds=round(loading, 3),
        batch=BATCH,
        **common,
    )


if __name__ == "__main__":
    main()
