"""Contact import speed: `manage.py import_contacts` on a generated file, twice, beside a bare COPY.

    DATABASE_URL=postgres://.../dialoog_bench .venv/bin/python benchmarks/imports.py --rows 1000000

The database must be migrated and is emptied of contacts first (fresh run). The file is
seeded: semicolon-delimited, Dutch dates, e-mail + phone + customer number, three attributes,
an e-mail consent, and about 3 % bad rows. Prints one JSON line per figure.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dialoog.settings.base")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from audiences.models import Contact, Import  # noqa: E402

HEADER = "E-mailadres;Mobiel;Klantnummer;Voornaam;Achternaam;Geboortedatum;Woonplaats;Punten;Nieuwsbrief\n"
FIRST = ["Jan", "Piet", "Klaas", "Anna", "Sanne", "Fleur", "Daan", "Sem", "Emma", "Lotte", "Thijs", "Noor"]
LAST = ["de Jong", "Jansen", "de Vries", "van den Berg", "Bakker", "Visser", "Smit", "Meijer", "Mulder"]
CITIES = ["Amsterdam", "Rotterdam", "Utrecht", "Den Haag", "Eindhoven", "Groningen", "Tilburg", "Delft"]


def generate(path: Path, rows: int, seed: int) -> int:
    rng = random.Random(seed)
    bad = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(HEADER)
        for n in range(rows):
            email = f"klant{n}@example.nl"
            phone = f"06-{10000000 + n:08d}"
            birth = f"{rng.randint(1, 28):02d}-{rng.randint(1, 12):02d}-{rng.randint(1940, 2005)}"
            points = f"{rng.randint(0, 5000)},{rng.randint(0, 99):02d}"
            consent = rng.choice(("ja", "nee", "ja", ""))
            roll = rng.random()
            if roll < 0.01:
                email = f"klant{n}(at)example.nl"
                bad += 1
            elif roll < 0.02:
                birth = "31-02-1990"
                bad += 1
            elif roll < 0.03:
                phone = "0612"
                bad += 1
            out.write(
                f"{email};{phone};K{n:08d};{rng.choice(FIRST)};{rng.choice(LAST)};{birth};{rng.choice(CITIES)};"
                f"{points};{consent}\n"
            )
    return bad


def reset() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE audiences_contact, audiences_identity, audiences_consentchange, audiences_consent,"
            " audiences_event, audiences_contactmerge, audiences_import, audiences_importrejectedrow CASCADE"
        )
        cursor.execute("VACUUM ANALYZE audiences_contact")


def bare_copy(path: Path) -> float:
    """The baseline: the same file COPYed as it is into a plain table of text columns."""
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_bare_copy")
        cursor.execute(
            "CREATE UNLOGGED TABLE bench_bare_copy (email text, phone text, customer_number text, first_name text,"
            " last_name text, birth_date text, city text, points text, consent text)"
        )
        started = time.perf_counter()
        with (
            path.open("rb") as source,
            cursor.cursor.copy("COPY bench_bare_copy FROM STDIN WITH (FORMAT csv, DELIMITER ';', HEADER true)") as copy,
        ):
            while chunk := source.read(1 << 20):
                copy.write(chunk)
        elapsed = time.perf_counter() - started
        cursor.execute("DROP TABLE bench_bare_copy")
    return elapsed


class StepTimes(logging.Handler):
    """Collects the pipeline's per-statement timings (its DEBUG log: seconds, rows, SQL)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.steps: list[tuple[float, int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.args and len(record.args) == 3:
            seconds, rows, sql = record.args
            self.steps.append((float(seconds), rows, " ".join(str(sql).split())[:70]))


def timed_import(path: Path) -> tuple[float, Import, StepTimes]:
    steps = StepTimes()
    pipeline_log = logging.getLogger("audiences.imports.pipeline")
    pipeline_log.addHandler(steps)
    pipeline_log.setLevel(logging.DEBUG)
    try:
        started = time.perf_counter()
        call_command("import_contacts", str(path), stdout=io.StringIO(), stderr=io.StringIO())
        elapsed = time.perf_counter() - started
    finally:
        pipeline_log.removeHandler(steps)
    return elapsed, Import.objects.defer("content").order_by("-pk").first(), steps


def emit(figure: str, seconds: float, rows: int, **extra) -> None:
    print(json.dumps({"figure": figure, "rows": rows, "seconds": round(seconds, 2), **extra}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "klanten.csv"
        started = time.perf_counter()
        bad = generate(path, args.rows, args.seed)
        emit(
            "generate file",
            time.perf_counter() - started,
            args.rows,
            bad_rows=bad,
            megabytes=round(path.stat().st_size / 1e6, 1),
        )
        reset()
        emit(
            "baseline: bare COPY of the file into a text table",
            bare_copy(path),
            args.rows,
            load_average=round(os.getloadavg()[0], 2),
        )
        for run in ("first run (fresh database)", "second run (same file)"):
            seconds, done, steps = timed_import(path)
            emit(
                f"import_contacts, {run}",
                seconds,
                args.rows,
                created=done.created_count,
                updated=done.updated_count,
                unchanged=done.unchanged_count,
                rejected=done.rejected_count,
                rows_per_second=round(args.rows / seconds),
                load_average=round(os.getloadavg()[0], 2),
            )
            # The slow steps of this run (statements and stage phases of 0.5 s or more), in order.
            slow = [{"s": round(sec, 2), "rows": rows, "step": text} for sec, rows, text in steps.steps if sec >= 0.5]
            print(json.dumps({"figure": f"steps of the {run}", "steps": slow}), flush=True)
        emit("contacts in the database", 0, Contact.objects.count())


if __name__ == "__main__":
    main()
