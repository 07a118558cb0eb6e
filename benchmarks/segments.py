"""Segments on a million contacts: count, materialise, and a naive ORM loop, each beside its baseline.

    .venv/bin/python benchmarks/segments.py --contacts 1000000 --seed 1 \\
        --database-url postgres://postgres@127.0.0.1:5432/dialoog_bench

Builds the data with the demo generator (dialoog/demo.py: about ten events per contact) in a
database of its own, unless it holds them already, vacuums and analyses, then prints one JSON
line per figure, with the machine's load average before and after:

- `segment_count`: a five-condition segment of the issue's shape (attributes, event aggregates
  over 90 days by category, consent, nested AND/OR) counted by the compiler (`segment_count`),
  median of `--runs` runs after warm-ups, beside a hand-written SQL query for the same set, run
  interleaved; the counts must agree. Targets: at most 150 ms, and at most 1.3 times the
  hand-written query.
- `segment_count_year_aggregate`: the same with "spent more than 500 euro in 365 days" over all
  purchases instead of the barbecues: the same targets, which a sum over a year of purchases
  per contact cannot meet (see docs/benchmarks.md).
- `segment_materialise`: a segment of about 600,000 contacts frozen into a list by
  `segment_snapshot` (one INSERT ... SELECT), beside a hand-written INSERT ... SELECT of the
  same set. Target: at most 3 s.
- `segment_naive_orm_loop`: the same segment found by looping over the contacts of a
  100,000-contact slice with the ORM (consents and events prefetched, rules checked in
  Python), scaled to the whole table, beside our one query listing the members of the whole
  table. Target: the loop at least 30 times slower. Both must agree on the slice.

The 1,000,000-row CSV import is measured by benchmarks/imports.py, not here.

Dates are relative to a fixed `--as-of` (the data's and the rules' "now"), so every run
sees the same segments. Benchmarks are run by hand, not by the test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/dialoog_bench"
DEFAULT_AS_OF = dt.date(2026, 11, 22)

# The headline count, the shape (attributes, an event aggregate, consent, nested AND/OR),
# five conditions: loyalty members with e-mail consent, born more than 35 years ago, who bought
# garden furniture at least twice in the last 90 days or spent more than 300 euro on barbecues in
# the last 90 days.
COUNT_RULES = {
    "version": 1,
    "root": {
        "all": [
            {"attribute": "loyalty_member", "op": "eq", "value": True},
            {"attribute": "birth_date", "op": "lt", "value": "{born_before}"},
            {
                "any": [
                    {
                        "event": "purchase",
                        "where": [{"property": "category", "op": "eq", "value": "Tuinmeubelen"}],
                        "within_days": 90,
                        "aggregate": "count",
                        "op": "gte",
                        "value": 2,
                    },
                    {
                        "event": "purchase",
                        "where": [{"property": "category", "op": "eq", "value": "Barbecues"}],
                        "within_days": 90,
                        "aggregate": "sum",
                        "op": "gt",
                        "value": 300,
                    },
                ]
            },
            {"consent": "email", "status": "granted"},
        ]
    },
}
COUNT_SQL = """
    SELECT count(*) FROM audiences_contact c
    WHERE c.erased_at IS NULL
      AND c.attributes @> '{"loyalty_member": true}'
      AND c.attributes ->> 'birth_date' < %(born_before)s
      AND c.id IN (SELECT contact_id FROM audiences_event
                   WHERE type = 'purchase' AND occurred_at >= %(since90)s
                     AND category = 'Tuinmeubelen'
                   GROUP BY contact_id HAVING count(*) >= 2
                   UNION
                   SELECT contact_id FROM audiences_event
                   WHERE type = 'purchase' AND occurred_at >= %(since90)s
                     AND category = 'Barbecues'
                   GROUP BY contact_id HAVING sum(value) > 300)
      AND EXISTS (SELECT 1 FROM audiences_consent s
                  WHERE s.contact_id = c.id AND s.channel = 'email' AND s.status = 'granted')
"""

# The previous headline, kept as a second figure: the same, but "or spent more than 500 euro in
# the last 365 days" on any purchase, which sums a year of purchases (about a million) per contact.
YEAR_AGGREGATE_RULES = {
    "version": 1,
    "root": {
        "all": [
            {"attribute": "loyalty_member", "op": "eq", "value": True},
            {"attribute": "birth_date", "op": "lt", "value": "{born_before}"},
            {
                "any": [
                    {
                        "event": "purchase",
                        "where": [{"property": "category", "op": "eq", "value": "Tuinmeubelen"}],
                        "within_days": 90,
                        "aggregate": "count",
                        "op": "gte",
                        "value": 2,
                    },
                    {"event": "purchase", "within_days": 365, "aggregate": "sum", "op": "gt", "value": 500},
                ]
            },
            {"consent": "email", "status": "granted"},
        ]
    },
}
YEAR_AGGREGATE_SQL = """
    SELECT count(*) FROM audiences_contact c
    WHERE c.erased_at IS NULL
      AND c.attributes @> '{"loyalty_member": true}'
      AND c.attributes ->> 'birth_date' < %(born_before)s
      AND c.id IN (SELECT contact_id FROM audiences_event
                   WHERE type = 'purchase' AND occurred_at >= %(since90)s
                     AND category = 'Tuinmeubelen'
                   GROUP BY contact_id HAVING count(*) >= 2
                   UNION
                   SELECT contact_id FROM audiences_event
                   WHERE type = 'purchase' AND occurred_at >= %(since)s
                   GROUP BY contact_id HAVING sum(value) > 500)
      AND EXISTS (SELECT 1 FROM audiences_consent s
                  WHERE s.contact_id = c.id AND s.channel = 'email' AND s.status = 'granted')
"""

# About 60% of the contacts: adults over 25 whom we may e-mail, or text if they bought in the
# last two years.
WIDE_RULES = {
    "version": 1,
    "root": {
        "all": [
            {
                "any": [
                    {"consent": "email", "status": "granted"},
                    {"all": [{"consent": "sms", "status": "granted"}, {"event": "purchase", "within_days": 730}]},
                ]
            },
            {"attribute": "birth_date", "op": "lt", "value": "{born_before}"},
        ]
    },
}
WIDE_SELECT = """
    SELECT c.id FROM audiences_contact c
    WHERE c.erased_at IS NULL
      AND c.attributes ->> 'birth_date' < %(born_before)s
      AND c.id IN (
          SELECT contact_id FROM audiences_consent WHERE channel = 'email' AND status = 'granted'
          UNION
          SELECT s.contact_id FROM audiences_consent s
          WHERE s.channel = 'sms' AND s.status = 'granted'
            AND EXISTS (SELECT 1 FROM audiences_event e
                        WHERE e.contact_id = s.contact_id AND e.type = 'purchase' AND e.occurred_at >= %(since2)s)
      )
"""


def with_date(rules: dict, born_before: str) -> dict:
    return json.loads(json.dumps(rules).replace("{born_before}", born_before))


def setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DEBUG", "false")  # no query log growing through the naive loop
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dialoog.settings.base")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def check(holds: bool, problem: str) -> None:
    """Two ways to the same set that disagree make every figure meaningless: stop."""
    if not holds:
        raise SystemExit(f"benchmark stopped: {problem}")


def emit(**figure) -> None:
    print(json.dumps(figure), flush=True)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed(function: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = function()
    return (time.perf_counter() - started) * 1000, result


def build_data(contacts: int, seed: int, as_of: dt.date) -> None:
    from django.core.management import call_command
    from django.db import connection

    from audiences.models import Contact
    from dialoog.demo import demo_contact_key, demo_load

    call_command("migrate", verbosity=0)
    last = demo_contact_key(seed, contacts - 1)
    if Contact.objects.filter(contact_key__in=[demo_contact_key(seed, 0), last]).count() == 2:
        log(f"data: {contacts:,} contacts of seed {seed} are there already")
    else:
        log(f"data: building {contacts:,} contacts of seed {seed} as of {as_of}")
        started = time.perf_counter()

        def progress(done: int, total: int) -> None:
            if done % 100_000 == 0 or done == total:
                log(f"  {done:,} contacts ({time.perf_counter() - started:.0f} s)")

        result = demo_load(contacts=contacts, seed=seed, as_of=as_of, progress=progress)
        seconds = time.perf_counter() - started
        emit(
            figure="demo_data_build",
            seconds=round(seconds, 1),
            contacts=result.contacts_created,
            events=result.events_created,
            identities=result.identities_created,
            consent_changes=result.consents_created,
        )
    log("vacuum analyze")
    with connection.cursor() as cursor:
        for table in ("contact", "identity", "consentchange", "consent", "event", "segmentmember"):
            cursor.execute(f"VACUUM (ANALYZE) audiences_{table}")


def load() -> list[float]:
    """The machine's load average (1, 5, 15 minutes): the figures are only as good as this."""
    return [round(each, 2) for each in os.getloadavg()]


def hand_written_memory(cursor) -> None:
    """The hand-written queries get the same work_mem as ours (settings.SEGMENT_WORK_MEM)."""
    from audiences.selectors.segments import segment_work_mem

    cursor.execute("SELECT set_config('work_mem', %s, true)", [segment_work_mem()])


def measure_count(
    figure: str, rules_template: dict, sql: str, now: dt.datetime, as_of: dt.date, runs: int, warmups: int
) -> None:
    from django.db import connection, transaction

    from audiences.selectors.segments import segment_count

    born_before = (as_of.replace(year=as_of.year - 35)).isoformat()
    rules = with_date(rules_template, born_before)
    params = {
        "born_before": born_before,
        "since": now - dt.timedelta(days=365),
        "since90": now - dt.timedelta(days=90),
    }

    def ours() -> int:
        return segment_count(rules=rules, now=now)

    def baseline() -> int:
        with transaction.atomic(), connection.cursor() as cursor:
            hand_written_memory(cursor)
            cursor.execute(sql, params)
            return cursor.fetchone()[0]

    load_before = load()
    for _ in range(warmups):
        ours(), baseline()
    ours_ms, baseline_ms = [], []
    for _ in range(runs):  # interleaved, so that a busy moment of the machine hits both
        ms, ours_n = timed(ours)
        ours_ms.append(ms)
        ms, baseline_n = timed(baseline)
        baseline_ms.append(ms)
    check(ours_n == baseline_n, f"{figure}: the compiler counts {ours_n}, the hand-written query {baseline_n}")
    ours_median, baseline_median = statistics.median(ours_ms), statistics.median(baseline_ms)
    ratio = ours_median / baseline_median
    emit(
        figure=figure,
        ours_ms=round(ours_median, 1),
        baseline_ms=round(baseline_median, 1),
        ratio=round(ratio, 2),
        target="ours <= 150 ms and <= 1.3 x hand-written SQL, same count",
        ok=ours_median <= 150 and ratio <= 1.3,
        n=ours_n,
        runs=runs,
        ours_min_ms=round(min(ours_ms), 1),
        baseline_min_ms=round(min(baseline_ms), 1),
        load_before=load_before,
        load_after=load(),
    )


def measure_materialise(now: dt.datetime, as_of: dt.date, runs: int) -> int:
    from django.db import connection, transaction

    from audiences.models import Segment, SegmentMember
    from audiences.services.segments import segment_snapshot

    Segment.objects.filter(name__startswith="bench:").delete()
    born_before = as_of.replace(year=as_of.year - 25).isoformat()
    wide = Segment.objects.create(name="bench: wide", rules=with_date(WIDE_RULES, born_before))
    hand = Segment.objects.create(name="bench: hand-written", kind=Segment.Kind.STATIC)
    params = {"since2": now - dt.timedelta(days=730), "born_before": born_before, "segment": hand.pk, "now": now}

    def ours() -> Segment:
        return segment_snapshot(segment=wide, name="bench: snapshot", now=now)

    def baseline() -> int:
        with transaction.atomic(), connection.cursor() as cursor:
            hand_written_memory(cursor)
            cursor.execute(
                "INSERT INTO audiences_segmentmember (segment_id, contact_id, added_at)"  # noqa: S608 - constant SQL
                f" SELECT %(segment)s, id, %(now)s FROM ({WIDE_SELECT}) AS chosen",
                params,
            )
            return cursor.rowcount

    load_before = load()
    ours_ms, baseline_ms = [], []
    for _ in range(runs):  # each list emptied again outside the time measured
        ms, snapshot = timed(ours)
        ours_ms.append(ms)
        ours_n = snapshot.cached_count
        snapshot.delete()
        ms, baseline_n = timed(baseline)
        baseline_ms.append(ms)
        SegmentMember.objects.filter(segment=hand).delete()
    check(ours_n == baseline_n, f"the snapshot holds {ours_n}, the hand-written insert {baseline_n}")
    ours_median, baseline_median = statistics.median(ours_ms), statistics.median(baseline_ms)
    emit(
        figure="segment_materialise",
        ours_ms=round(ours_median, 1),
        baseline_ms=round(baseline_median, 1),
        ratio=round(ours_median / baseline_median, 2),
        target="ours <= 3000 ms (about 600,000 members)",
        ok=ours_median <= 3000,
        n=ours_n,
        runs=runs,
        ours_min_ms=round(min(ours_ms), 1),
        baseline_min_ms=round(min(baseline_ms), 1),
        load_before=load_before,
        load_after=load(),
    )
    hand.delete()
    wide.delete()
    return ours_n


def naive_member(contact, since2: dt.datetime, born_before: str) -> bool:
    """WIDE_RULES, as someone would write them in Python over prefetched relations."""
    birth_date = contact.attributes.get("birth_date")
    if not isinstance(birth_date, str) or not birth_date < born_before:
        return False
    consents = {consent.channel: consent.status for consent in contact.consents.all()}
    if consents.get("email") == "granted":
        return True
    return consents.get("sms") == "granted" and any(event.occurred_at >= since2 for event in contact.events.all())


def measure_naive_loop(now: dt.datetime, as_of: dt.date, slice_size: int, total: int) -> None:
    from django.db.models import Prefetch

    from audiences.models import Consent, Contact, Event
    from audiences.selectors.segments import segment_contacts, segment_query_memory

    since2 = now - dt.timedelta(days=730)
    born_before = as_of.replace(year=as_of.year - 25).isoformat()
    rules = with_date(WIDE_RULES, born_before)
    first_ids = Contact.objects.order_by("pk").values_list("pk", flat=True)
    low = first_ids[0]
    high = first_ids[slice_size - 1]

    def naive() -> set[int]:
        contacts = (
            Contact.objects.filter(pk__range=(low, high), erased_at__isnull=True)
            .order_by("pk")
            .prefetch_related(
                Prefetch("consents", queryset=Consent.objects.all()),
                Prefetch("events", queryset=Event.objects.filter(type="purchase")),
            )
        )
        return {
            contact.pk for contact in contacts.iterator(chunk_size=2000) if naive_member(contact, since2, born_before)
        }

    def ours() -> list[int]:
        with segment_query_memory():
            return list(segment_contacts(rules=rules, now=now).values_list("pk", flat=True))

    load_before = load()
    timed(ours)  # warm-up
    ours_ms, members = timed(ours)
    naive_ms, naive_members = timed(naive)
    in_slice = {pk for pk in members if low <= pk <= high}
    check(in_slice == naive_members, f"the loop finds {len(naive_members)} in the slice, the query {len(in_slice)}")
    scaled_ms = naive_ms * total / slice_size
    emit(
        figure="segment_naive_orm_loop",
        ours_ms=round(ours_ms, 1),
        baseline_ms=round(scaled_ms, 1),
        ratio=round(scaled_ms / ours_ms, 1),
        target="naive loop (slice scaled to the table) >= 30 x slower than ours",
        ok=scaled_ms / ours_ms >= 30,
        n=len(members),
        slice=slice_size,
        slice_ms=round(naive_ms, 1),
        slice_members=len(naive_members),
        load_before=load_before,
        load_after=load(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--as-of", type=dt.date.fromisoformat, default=DEFAULT_AS_OF)
    parser.add_argument("--runs", type=int, default=15, help="Timed runs of the count (median).")
    parser.add_argument("--warmups", type=int, default=2)
    parser.add_argument("--materialise-runs", type=int, default=3)
    parser.add_argument("--slice", type=int, default=100_000, help="Contacts the naive loop goes through.")
    parser.add_argument(
        "--only", choices=["count", "year", "materialise", "naive"], action="append", help="Measure only these."
    )
    args = parser.parse_args()
    setup_django(args.database_url)

    from django.utils import timezone

    from audiences.models import Contact

    build_data(args.contacts, args.seed, args.as_of)
    # "Now" is the end of the data's last day, in the shop's time zone.
    now = timezone.make_aware(dt.datetime.combine(args.as_of, dt.time(23, 59, 59)))
    total = Contact.objects.count()
    only = set(args.only or ["count", "year", "materialise", "naive"])
    if "count" in only:
        measure_count("segment_count", COUNT_RULES, COUNT_SQL, now, args.as_of, args.runs, args.warmups)
    if "year" in only:
        measure_count(
            "segment_count_year_aggregate",
            YEAR_AGGREGATE_RULES,
            YEAR_AGGREGATE_SQL,
            now,
            args.as_of,
            args.runs,
            args.warmups,
        )
    if "materialise" in only:
        measure_materialise(now, args.as_of, args.materialise_runs)
    if "naive" in only:
        measure_naive_loop(now, args.as_of, min(args.slice, total), total)
    emit(figure="csv_import_1m_rows", skipped="measured by benchmarks/imports.py")


if __name__ == "__main__":
    main()
