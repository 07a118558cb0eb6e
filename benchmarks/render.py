"""Rendering personalised emails: the sandboxed engine beside a bare Jinja2 loop over the same template.

    .venv/bin/python benchmarks/render.py --contacts 100000 --seed 1

A ~2 KB HTML email with two blocks (header and footer, included by slug) and five variables
(first name with a fallback, the offer's name, price and end date, the unsubscribe link), for
`--contacts` sample contacts whose contexts are built in batches of 1,000. Each batch is rendered
by ours (`compile_template` once, then `render` per contact, with every limit on) and by a bare
`jinja2.Environment` (autoescaped, blocks from a `DictLoader`, the same Dutch filters), in
alternating order so that both see the same machine; outputs must agree. One process, one core. Prints one
JSON line per figure, with the load average before and after:

- `render_sandboxed`: messages per second. Target: at least 10,000.
- `render_bare_jinja`: the baseline. Target: ours at least 0.5 times it.

Needs no database. Benchmarks are run by hand, not by the test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
import time
from decimal import Decimal
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


def contexts(rng: random.Random, start: int, count: int) -> list[dict]:
    batch = []
    for number in range(start, start + count):
        offer_name, price = rng.choice(OFFERS)
        batch.append(
            {
                "contact": {"first_name": rng.choice(FIRST_NAMES), "last_name": "de Vries", "attributes": {}},
                "offer": {
                    "name": offer_name,
                    "price": Decimal(price),
                    "valid_until": dt.date(2026, 11, 1) + dt.timedelta(days=rng.randrange(60)),
                },
                "links": {"unsubscribe": f"https://mail.example.nl/afmelden/{number:08x}"},
            }
        )
    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    arguments = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    import django
    from django.conf import settings

    if not settings.configured:  # no database, no apps: the engine needs translations and the timezone only
        settings.configure(USE_I18N=True, USE_TZ=True, TIME_ZONE="Europe/Amsterdam", LANGUAGE_CODE="en")
    django.setup()
    import jinja2

    from content.rendering import filters
    from content.rendering.render import compile_template, render

    blocks = {"header": HEADER, "footer": FOOTER}
    compiled = compile_template(BODY, channel="email_html", version_key=("benchmark", 1), blocks=blocks)
    bare = jinja2.Environment(
        autoescape=True,
        loader=jinja2.DictLoader({f"block:{slug}": source for slug, source in blocks.items()}),
        keep_trailing_newline=True,
    )
    bare.filters.update(currency=filters.currency, date=filters.date)
    bare_template = bare.from_string(BODY)

    rng = random.Random(arguments.seed)
    load_before = load()
    ours = baseline = 0.0
    size = 0
    for batch_number, start in enumerate(range(0, arguments.contacts, BATCH)):
        batch = contexts(rng, start, min(BATCH, arguments.contacts - start))
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
            raise SystemExit("The sandboxed and the bare render disagree.")
        size = len(outputs["ours"][0])
    load_after = load()
    common = {
        "contacts": arguments.contacts,
        "message_chars": size,
        "load_before": load_before,
        "load_after": load_after,
    }
    ours_rate, bare_rate = arguments.contacts / ours, arguments.contacts / baseline
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


if __name__ == "__main__":
    main()
