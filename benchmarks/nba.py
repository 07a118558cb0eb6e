"""The next-best-offer API under load, beside a bare authenticated DRF endpoint in the same run.

    .venv/bin/python benchmarks/nba.py --contacts 1000000 \\
        --database-url postgres://postgres@127.0.0.1:5432/dialoog_nbabench

Builds its own data in the database given (created when missing, then migrated), with bulk SQL,
unless it is there: `--contacts` contacts with a city and a loyalty tier, each with a phone number
and (19 in 20) a granted phone consent, (4 in 5) an email consent, 0 to 5 purchases in the last
year over 12 categories, and a "tuin" score. Then, through the services, as a marketeer would:
a goal and a running campaign, 5 callcenter scripts, and `--offers` (50) live offers, each with
its own dynamic segment (a category bought in a window, a city, a score threshold, consent and a
recent purchase, a tier or a spend: one to three conditions each) and a mix of propensity sources,
limits and a 10% holdout. One user in the Callcenter agent role asks, with its token.

The project is served by gunicorn (production settings, DEBUG off: benchmarks/hello_wsgi.py,
which adds `GET /bench/hello/`, a bare DRF view with the project's authentication and
`IsAuthenticated`), in `--workers` (2) processes of `--threads` (3) threads each (gthread, which
keeps connections alive; `--threads 1` gives the sync worker, a connection per request). The
requests come from `--agents` (300) agents in turn, each with its own token and its own keep-alive
connections (as each agent's console has), so each asks about once a second at 300 a second; the
per-user limit is served at `--agent-rate` (600 a minute, so that the closed loops stay under it)
and counted on every request. The decisions of earlier runs are removed first (`journal_empty`).
The load comes from benchmarks/openloop.py, in this process, on loopback. It prints one JSON line
per figure, with the load average:

- `hello_saturation` and `nba_saturation`: requests a second with `--concurrency` clients sending
  the next request as soon as the last answered, for `--saturation-seconds`; `nba_saturation_ratio`
  compares them. Target: the decision at least half the bare endpoint's throughput.
- `hello_open_loop`: the bare endpoint at `--rate` (300) a second for `--seconds` (60), as the
  reference.
- `nba_open_loop_100`, `nba_open_loop_150` (`--lighter-rates`): the decision at lighter loads.
- `nba_open_loop`: `GET /api/v1/contacts/{key}/next-best-offers/?channel=callcenter&limit=3` over
  random contacts at a constant `--rate` a second for `--seconds`: each request is sent at its
  planned moment whether earlier ones answered or not, and its latency counts from that moment.
  Target: p50 at most 5 ms, p99 at most 25 ms, no errors.

The closed loops come first and the open loops from the lightest to the heaviest, each once the
server has gone quiet, so that an overloaded figure's backlog does not spill into the next.
Every decision is recorded, as in production. Benchmarks are run by hand, not by the test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from render import create_database, emit, load, log, setup_django

ROOT = Path(__file__).resolve().parent.parent
MARK = "nba"
FIRST_NAMES = ["Sanne", "Daan", "Emma", "Lucas", "Julia", "Sem", "Tess", "Milan", "", "Zoë", "Bram", "Fenna"]
CITIES = ["Utrecht", "Amsterdam", "Rotterdam", "Zwolle", "Groningen", "Eindhoven", "Leiden", "Delft"]
TIERS = ["basis", "zilver", "goud"]
CATEGORIES = [
    "Tuinmeubelen",
    "Barbecues",
    "Zaden",
    "Gereedschap",
    "Verlichting",
    "Potten",
    "Planten",
    "Bestrating",
    "Vijvers",
    "Kassen",
    "Kleding",
    "Speelgoed",
]
SCRIPTS = [
    (
        "Goedemiddag {{ contact.first_name | default('meneer/mevrouw') }}, wat fijn dat u belt. "
        "Ik zie dat u klant bent in {{ contact.attributes.city | default('onze regio') }}.",
        "Vraag naar de tuinplannen\nNoem de gratis bezorging",
        "{{ offer.name }}: nu voor {{ offer.price | currency }} met code {{ offer.code }}.",
    ),
    (
        "Dag {{ contact.first_name }}, mag ik u iets voorleggen?",
        "Luister eerst\nBied daarna aan",
        "Speciaal voor u: {{ offer.name }} ({{ offer.price | currency }}).",
    ),
    (
        "{{ contact.first_name | default('Beste klant') }}, u heeft een {{ contact.attributes.tier }} lidmaatschap.",
        "Leden krijgen extra korting",
        "Als {{ contact.attributes.tier }}-lid: {{ offer.name }} voor {{ offer.price | currency }}.",
    ),
    (
        "Goedendag! Fijn dat u contact opneemt.",
        "Check het adres\nBevestig het telefoonnummer",
        "Wist u dat {{ offer.name }} deze week {{ offer.price | currency }} kost?",
    ),
    (
        "Hallo {{ contact.first_name }}, hoe bevalt uw laatste aankoop?",
        "Vraag naar tevredenheid",
        "Daarbij past {{ offer.name }}: {{ offer.price | currency }}.",
    ),
]


def build_contacts(contacts: int, seed: int) -> None:
    """The contacts with their phone numbers, consents, purchases and a score, in bulk SQL."""
    from django.core.management import call_command
    from django.db import connection, transaction

    from audiences.models import Contact

    call_command("migrate", verbosity=0)
    have = Contact.objects.filter(attributes__benchmark=MARK).count()
    if have >= contacts:
        log(f"data: {have:,} benchmark contacts are there already")
        return
    log(f"data: building {contacts - have:,} contacts with a phone number, consents, purchases and a score")
    started = time.perf_counter()
    rng = random.Random(seed)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT setseed(%s)", [rng.random() * 2 - 1])
        cursor.execute(
            """
            CREATE TEMP TABLE new_contact ON COMMIT DROP AS
            WITH made AS (
                INSERT INTO audiences_contact (contact_key, first_name, last_name, locale, timezone, attributes,
                                               created_at, updated_at)
                SELECT gen_random_uuid(), (%(names)s::text[])[1 + (n %% cardinality(%(names)s::text[]))],
                       'Jansen', 'nl', 'Europe/Amsterdam',
                       jsonb_build_object('benchmark', %(mark)s, 'number', n,
                                          'city', (%(cities)s::text[])[1 + ((n * 7) %% 8)],
                                          'tier', (%(tiers)s::text[])[1 + ((n * 13) %% 3)]),
                       now() - make_interval(days => n %% 2000), now()
                FROM generate_series(%(start)s, %(stop)s) AS n
                RETURNING id, (attributes ->> 'number')::int AS number
            )
            SELECT * FROM made
            """,
            {
                "names": FIRST_NAMES,
                "cities": CITIES,
                "tiers": TIERS,
                "mark": MARK,
                "start": have,
                "stop": contacts - 1,
            },
        )
        cursor.execute(
            """
            INSERT INTO audiences_identity (contact_id, kind, value, source, created_at)
            SELECT id, 'phone', '+316' || lpad((10000000 + number)::text, 8, '0'), 'benchmark', now()
            FROM new_contact
            """
        )
        for channel, share in (("phone", 0.95), ("email", 0.8)):
            cursor.execute(
                """
                WITH change AS (
                    INSERT INTO audiences_consentchange (contact_id, channel, status, source, proof, recorded_at)
                    SELECT id, %(channel)s, 'granted', 'benchmark', '', now() - interval '60 days'
                    FROM new_contact WHERE random() < %(share)s
                    RETURNING id, contact_id, recorded_at
                )
                INSERT INTO audiences_consent (contact_id, channel, status, changed_at, change_id)
                SELECT contact_id, %(channel)s, 'granted', recorded_at, id FROM change
                """,
                {"channel": channel, "share": share},
            )
        cursor.execute(
            """
            INSERT INTO audiences_event (contact_id, type, occurred_at, properties, value, currency, created_at)
            SELECT c.id, 'purchase', now() - make_interval(secs => random() * 365 * 86400),
                   jsonb_build_object('category', (%(categories)s::text[])[1 + floor(random() * 12)::int],
                                      'product', 'Product ' || floor(random() * 400)::int),
                   round((10 + random() * 290)::numeric, 2), 'EUR', now()
            FROM new_contact c, generate_series(1, ((c.number::bigint * 7919) %% 6)::int) AS purchase
            """,
            {"categories": CATEGORIES},
        )
        cursor.execute(
            """
            INSERT INTO audiences_score (contact_id, name, value, computed_at)
            SELECT id, 'tuin', random(), now() FROM new_contact
            """
        )
    log(f"data: built in {time.perf_counter() - started:.1f} s; vacuum analyze")
    with connection.cursor() as cursor:
        for table in ("contact", "identity", "consentchange", "consent", "event", "score"):
            cursor.execute(f"VACUUM (ANALYZE) audiences_{table}")


def segment_rules(index: int) -> dict:
    category = CATEGORIES[index % len(CATEGORIES)]
    bought = {"event": "purchase", "where": [{"property": "category", "op": "eq", "value": category}]}
    kinds = [
        {**bought, "within_days": 365},
        {"attribute": "city", "op": "in", "value": [CITIES[index % 8], CITIES[(index + 3) % 8]]},
        {"score": "tuin", "op": "gte", "value": round(0.2 + (index % 7) / 10, 1)},
        {
            "all": [
                {"consent": "email", "status": "granted"},
                {"event": "purchase", "within_days": 90 + index, "aggregate": "count", "op": "gte", "value": 1},
            ]
        },
        {
            "any": [
                {"attribute": "tier", "op": "eq", "value": "goud"},
                {**bought, "within_days": 180, "aggregate": "sum", "property": "value", "op": "gt", "value": 100},
            ]
        },
    ]
    return {"version": 1, "root": kinds[index % len(kinds)]}


def setup_offers(count: int):
    """A goal, a running campaign, the scripts and the live offers, through the services."""
    from django.utils import timezone

    from audiences.models import Contact, Segment, SegmentMember
    from audiences.services.segments import segment_create
    from campaigns.models import Offer
    from campaigns.offers.services import offer_save
    from campaigns.services import campaign_activate, campaign_create
    from content.models import Message, Template
    from content.services import template_version_create
    from goals.models import Goal

    if Offer.objects.filter(name__startswith="Benchmark aanbod", active=True).count() >= count:
        log(f"offers: {count} live offers are there already")
        return
    today = timezone.localdate()
    goal, _created = Goal.objects.update_or_create(
        name="Benchmark nba: conversie",
        defaults={
            "domain": "conversions",
            "metric": "conversion_rate",
            "target": 10,
            "starts_on": today - dt.timedelta(days=10),
            "deadline": today + dt.timedelta(days=80),
        },
    )
    one = Contact.objects.filter(attributes__benchmark=MARK).order_by("pk").first()
    audience, _created = Segment.objects.get_or_create(
        name="Benchmark nba: campagne", defaults={"kind": Segment.Kind.STATIC, "rules": {}}
    )
    SegmentMember.objects.get_or_create(segment=audience, contact=one)
    message, _created = Message.objects.get_or_create(name="Benchmark nba: bevestiging")
    template, _created = Template.objects.get_or_create(message=message, channel=Template.Channel.EMAIL)
    if not template.versions.exists():
        template_version_create(
            template=template, language="nl", subject="Uw aanbod", html="<p>Hallo {{ contact.first_name }}</p>"
        )
    campaign = campaign_create(
        name=f"Benchmark nba {time.time():.0f}",
        goal=goal,
        message=message,
        channels=["email"],
        include_segments=[audience],
    )
    campaign = campaign_activate(campaign=campaign)
    scripts = []
    for number, (text, points, pitch) in enumerate(SCRIPTS, start=1):
        script_message, _created = Message.objects.get_or_create(name=f"Benchmark nba: script {number}")
        script, _created = Template.objects.get_or_create(message=script_message, channel=Template.Channel.SCRIPT)
        template_version_create(template=script, language="nl", text=text, talking_points=points, offer_pitch=pitch)
        scripts.append(script)
    Offer.objects.filter(name__startswith="Benchmark aanbod").update(active=False)
    for index in range(count):
        name = f"Benchmark segment {index + 1:02d}"
        segment = Segment.objects.filter(name=name).first() or segment_create(
            name=name, kind=Segment.Kind.DYNAMIC, rules=segment_rules(index)
        )
        source = ("learned", "score", "fixed")[index % 3]
        offer_save(
            offer=Offer(
                name=f"Benchmark aanbod {index + 1:02d} ({time.time():.0f})",
                code=f"BENCH{index + 1:02d}",
                campaign=campaign,
                script=scripts[index % len(scripts)],
                segment=segment,
                value=20 + (index * 37) % 400,
                propensity_source=source,
                propensity_score="tuin" if source == "score" else "",
                propensity_default=0.05 + (index % 9) / 30,
                lever=1 + (index % 4) / 4,
                max_presentations=3 if index % 2 else None,
                cooldown_days=14,
                daily_capacity=100_000 if index % 5 == 0 else None,
                holdout_percent=10,
            )
        )
    log(f"offers: {count} live offers made")


def agent_tokens(count: int) -> list[str]:
    """`count` users in the Callcenter agent role, each with a token: the load comes from many agents,
    each asking about once a second, as a callcenter's would."""
    from django.contrib.auth.models import Group, User
    from rest_framework.authtoken.models import Token

    from dialoog.roles import CALLCENTER_AGENT

    role = Group.objects.get(name=CALLCENTER_AGENT)
    names = [f"benchmark-agent-{number:03d}" for number in range(count)]
    existing = set(User.objects.filter(username__in=names).values_list("username", flat=True))
    User.objects.bulk_create([User(username=name) for name in names if name not in existing])
    agents = list(User.objects.filter(username__in=names))
    role.user_set.add(*agents)
    with_token = set(Token.objects.filter(user__in=agents).values_list("user_id", flat=True))
    Token.objects.bulk_create(
        [Token(user=agent, key=Token.generate_key()) for agent in agents if agent.pk not in with_token]
    )
    return list(Token.objects.filter(user__in=agents).values_list("key", flat=True))


def contact_keys(sample: int, seed: int) -> list[str]:
    """A random sample of the benchmark's contact keys, read with one query."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT setseed(%s)", [random.Random(seed).random() * 2 - 1])
        cursor.execute(
            "SELECT contact_key::text FROM audiences_contact WHERE attributes ->> 'benchmark' = %s"
            " ORDER BY random() LIMIT %s",
            [MARK, sample],
        )
        return [row[0] for row in cursor.fetchall()]


def journal_empty() -> None:
    """Every run starts from the same history: the decisions (and any answers) of earlier runs are
    removed, or each run would find the same contacts with more offers presented than the last."""
    from django.db import connection

    from campaigns.models import OfferDay, OfferDecision, OfferDecisionItem, OfferResponse

    tables = ", ".join(model._meta.db_table for model in (OfferResponse, OfferDecisionItem, OfferDecision, OfferDay))
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE " + tables)


def measure(arguments) -> None:
    from django.db import connection
    from openloop import gunicorn_serving, open_loop, saturate

    journal_empty()
    keys = contact_keys(50_000, arguments.seed)
    log(f"load: {len(keys):,} random contacts to ask about")
    rng = random.Random(arguments.seed)
    order = [rng.randrange(len(keys)) for _ in range(200_000)]

    def nba(i: int) -> str:
        return f"/api/v1/contacts/{keys[order[i % len(order)]]}/next-best-offers/?channel=callcenter&limit=3"

    def hello(i: int) -> str:
        return "/bench/hello/"

    agents = [{"Authorization": f"Token {key}", "Accept": "application/json"} for key in agent_tokens(arguments.agents)]

    def headers(i: int) -> dict[str, str]:
        return agents[i % len(agents)]

    connection.close()
    env = {
        "DATABASE_URL": arguments.database_url,
        "DATABASE_CONN_MAX_AGE": "600",
        "NEXT_BEST_OFFER_RATE": arguments.agent_rate,
    }
    with gunicorn_serving(
        wsgi_app="benchmarks.hello_wsgi:application", env=env, workers=arguments.workers, threads=arguments.threads
    ) as (
        host,
        port,
    ):
        common = {"host": host, "port": port, "headers": headers, "clients": len(agents)}
        # Warm every worker's catalogue and connection, then measure: the closed loops first, then
        # the open loops from the lightest load to the heaviest (an overloaded server's backlog
        # would otherwise spill into the next figure), each after the server has gone quiet.
        open_loop(paths=nba, rate=100, duration=10, **common)
        throughput = {}
        for figure, paths in (("hello_saturation", hello), ("nba_saturation", nba)):
            quiet(host, port)
            before = load()
            result = saturate(
                paths=paths,
                concurrency=arguments.concurrency,
                duration=arguments.saturation_seconds,
                warmup=2,
                **common,
            )
            summary = result.summary()
            throughput[figure] = summary["throughput_rps"]
            emit(figure=figure, **summary, load_before=before, load_after=load())
        ratio = throughput["nba_saturation"] / throughput["hello_saturation"]
        emit(
            figure="nba_saturation_ratio",
            nba_rps=throughput["nba_saturation"],
            hello_rps=throughput["hello_saturation"],
            ratio=round(ratio, 3),
            target="nba >= 0.5 x hello",
            target_met=ratio >= 0.5,
        )
        runs = [("hello_open_loop", hello, arguments.rate, "reference")]
        runs += [(f"nba_open_loop_{rate:g}", nba, rate, "below the target rate") for rate in arguments.lighter_rates]
        runs += [("nba_open_loop", nba, arguments.rate, "p50 <= 5 ms, p99 <= 25 ms, no errors")]
        for figure, paths, rate, target in runs:
            quiet(host, port)
            before = load()
            result = open_loop(paths=paths, rate=rate, duration=arguments.seconds, warmup=2, **common)
            summary = result.summary()
            ok = None
            if figure == "nba_open_loop":
                ok = summary["p50_ms"] <= 5 and summary["p99_ms"] <= 25 and result.error_count == 0
            emit(figure=figure, target=target, target_met=ok, **summary, load_before=before, load_after=load())


def quiet(host: str, port: int, *, within_ms: float = 50, timeout: float = 120) -> None:
    """Wait until the server answers /healthz within `within_ms`: what an earlier figure left in its
    queue has been worked off."""
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        started = time.perf_counter()
        probe = http.client.HTTPConnection(host, port, timeout=10)
        try:
            probe.request("GET", "/healthz")
            probe.getresponse().read()
        except OSError:
            pass
        finally:
            probe.close()
        if (time.perf_counter() - started) * 1000 < within_ms:
            time.sleep(1)
            return
        time.sleep(1)
    log("the server did not go quiet: the next figure starts anyway")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--offers", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument(
        "--lighter-rates", type=lambda text: [float(rate) for rate in text.split(",") if rate], default=[100.0, 150.0]
    )
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--saturation-seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--agents", type=int, default=300, help="agents asking, each with its own token and limit")
    parser.add_argument("--agent-rate", default="600/min", help="the per-agent limit served (NEXT_BEST_OFFER_RATE)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn processes (one per core did best here)")
    parser.add_argument("--threads", type=int, default=3, help="more than 1: gthread workers, connections kept alive")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/dialoog_nbabench")
    parser.add_argument("--build-only", action="store_true", help="build the data and the offers, measure nothing")
    arguments = parser.parse_args()

    create_database(arguments.database_url)
    setup_django(arguments.database_url)
    build_contacts(arguments.contacts, arguments.seed)
    setup_offers(arguments.offers)
    if not arguments.build_only:
        measure(arguments)


if __name__ == "__main__":
    main()
