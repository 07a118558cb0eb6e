"""Training the churn and lifetime-value models and scoring a million contacts, beside SQL alone.

    .venv/bin/python benchmarks/insights.py --contacts 1000000 \\
        --database-url postgres://postgres@127.0.0.1:5432/dialoog_insightsbench

Builds its own data in the database given (created when missing, then migrated) unless it is
there: the demo shop (`dialoog.demo`, seed 7) of `--contacts` contacts, about ten events each over
three years, with the signal the generator plants (churners fade out; each customer buys at a rate
of their own). Then it prints one JSON line per figure, with the load average:

- `insights_train`: per kind, `prediction_model_train` timed, with the figures on its held-out
  period (churn: AUC beside recency alone, Brier; lifetime value: MAE of each candidate beside
  "the same as last year"). The new versions are activated.
- `insights_score`: `scores_refresh` for both kinds, timed: every contact's features in one query,
  predictions in batches, both scores written (COPY and one upsert each). Target: at most 60 s for
  1,000,000 contacts. With the seconds of the shared feature read and of each kind's prediction and
  write;
  twice: the first night (no scores yet: inserts) and again (every score rewritten, as each night).
- `insights_score_sql_baseline`: the baseline, measured after it on the same tables: one
  hand-written `INSERT ... SELECT ... ON CONFLICT` that scores every contact by recency alone
  (days since the last purchase), the least a score can cost on this machine with the same write.

Benchmarks are run by hand, not by the test suite.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from render import create_database, emit, load, log, setup_django

SEED = 7

BASELINE_SQL = """
    INSERT INTO audiences_score (contact_id, name, value, computed_at, from_prior)
    SELECT c.id, 'recency_baseline', coalesce(extract(epoch FROM now() - p.last) / 86400.0, 9999), now(),
           p.last IS NULL
    FROM audiences_contact c
    LEFT JOIN (SELECT contact_id, max(occurred_at) AS last FROM audiences_event WHERE type = 'purchase'
               GROUP BY contact_id) p ON p.contact_id = c.id
    WHERE c.erased_at IS NULL
    ON CONFLICT (contact_id, name) DO UPDATE SET value = EXCLUDED.value, computed_at = EXCLUDED.computed_at,
        from_prior = EXCLUDED.from_prior
"""


def build(contacts: int) -> None:
    from django.core.management import call_command
    from django.db import connection

    from audiences.models import Contact
    from dialoog.demo import demo_load

    call_command("migrate", verbosity=0)
    have = Contact.objects.count()
    if have >= contacts:
        log(f"data: {have:,} contacts there")
        return
    log(f"data: loading the demo shop up to {contacts:,} contacts (seed {SEED})")
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done % 100_000 < 5000:
            log(f"  {done:,} of {total:,} ({time.perf_counter() - started:.0f} s)")

    demo_load(contacts=contacts, seed=SEED, progress=progress)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    log(f"data: built in {time.perf_counter() - started:.0f} s")


def measure() -> None:
    from django.db import connection

    from audiences.insights.predictions import prediction_model_activate, prediction_model_train, scores_refresh
    from audiences.models import Contact, Event, PredictionModel, Score

    contacts = Contact.objects.filter(erased_at=None).count()
    events = Event.objects.count()
    for kind in PredictionModel.Kind.values:
        started = time.perf_counter()
        model = prediction_model_train(kind=kind)
        seconds = time.perf_counter() - started
        prediction_model_activate(model=model, confirm_worse=True)
        figures = {key: value for key, value in model.metrics.items() if key not in ("calibration", "parameters")}
        emit(
            figure="insights_train",
            kind=kind,
            seconds=round(seconds, 1),
            algorithm=model.algorithm,
            learned_from=model.training_rows,
            checked_on=model.evaluation_rows,
            left_out=[note for note in model.notes if "left out" in note],
            contacts=contacts,
            events=events,
            load=load(),
            **figures,
        )

    # The first night writes every score into a table without them; every night after rewrites them.
    Score.objects.filter(name__in=PredictionModel.Kind.values).delete()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE audiences_score")  # as it is before any model ever scored
    for night in ("first", "again"):
        started = time.perf_counter()
        done = scores_refresh()
        seconds = time.perf_counter() - started
        kinds = {
            scored.model.kind: {"predict": round(scored.predict_seconds, 1), "write": round(scored.write_seconds, 1)}
            for scored in done
        }
        emit(
            figure="insights_score",
            night=night,
            contacts=contacts,
            scores_written=Score.objects.filter(name__in=list(kinds)).count(),
            from_prior=done[0].from_prior,
            seconds=round(seconds, 1),
            features_seconds=round(done[0].features_seconds, 1),
            seconds_by_kind=kinds,
            target_seconds=60,
            load=load(),
        )

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(BASELINE_SQL)
        written = cursor.rowcount
    baseline = time.perf_counter() - started
    emit(
        figure="insights_score_sql_baseline",
        contacts=written,
        seconds=round(baseline, 1),
        ours_per_score_over_baseline=round(seconds / len(done) / baseline, 2),
        load=load(),
    )
    Score.objects.filter(name="recency_baseline").delete()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument(
        "--database-url",
        default="postgres://postgres@127.0.0.1:5432/dialoog_insightsbench",
        help="A PostgreSQL database of its own: created when missing, filled once, reused after.",
    )
    parser.add_argument("--build-only", action="store_true", help="Build the data and stop.")
    arguments = parser.parse_args()
    create_database(arguments.database_url)
    setup_django(arguments.database_url)
    build(arguments.contacts)
    if not arguments.build_only:
        measure()


if __name__ == "__main__":
    main()
