import datetime as dt
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from dialoog.demo import DEMO_PASSWORD, DEMO_USERS, MAX_CONTACTS, MAX_SEED, demo_insights, demo_load


class Command(BaseCommand):
    help = (
        "Load a believable Dutch webshop: demo users for each role, goals, a campaign and N customers "
        "with identities from several systems, consent histories and a few years of events "
        "(purchases, page views, newsletters, calls, surveys). Deterministic for a seed; running it again adds nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--contacts", type=int, default=1000, help="Number of customers (default 1000).")
        parser.add_argument("--seed", type=int, default=1, help="Seed: the same seed gives the same customers.")
        parser.add_argument(
            "--force",
            action="store_true",
            help="Load it although DEBUG is off. The demo users have a published password: never on a real site.",
        )
        parser.add_argument(
            "--as-of",
            type=dt.date.fromisoformat,
            default=None,
            help="Date the history ends on (YYYY-MM-DD, default today).",
        )

    def handle(self, *args, contacts, seed, as_of, force, **options):
        if not settings.DEBUG and not force:
            raise CommandError(
                "Demo data makes users whose password is published in the README, so it is only loaded "
                "with DEBUG on (development). Pass --force to load it anyway, never on a real site."
            )
        if not 0 <= contacts <= MAX_CONTACTS:
            raise CommandError(f"--contacts must be between 0 and {MAX_CONTACTS}.")
        if not 0 <= seed <= MAX_SEED:
            raise CommandError(f"--seed must be between 0 and {MAX_SEED}.")
        started = time.monotonic()
        reported = [0]

        def progress(done: int, total: int) -> None:
            # A large load tells how far it is, about every tenth; a small one stays quiet.
            if total >= 50_000 and done * 10 // total > reported[0]:
                reported[0] = done * 10 // total
                self.stderr.write(f"{done:,} of {total:,} contacts ({time.monotonic() - started:.0f} s)")

        result = demo_load(contacts=contacts, seed=seed, as_of=as_of, progress=progress)
        self.stdout.write(
            f"Demo data (seed {seed}): {result.contacts_created} contacts, {result.identities_created} identities, "
            f"{result.consents_created} consent changes and {result.events_created} events added "
            f"in {time.monotonic() - started:.1f} s."
        )
        for username in result.users_created:
            self.stdout.write(f"Created demo user {username!r} with password {DEMO_PASSWORD!r}.")
        if not result.users_created:
            self.stdout.write(f"Demo users: {', '.join(name for name, _role in DEMO_USERS)} (already there).")
        for line in demo_insights(as_of=as_of):
            self.stdout.write(f"Insights: {line}")
