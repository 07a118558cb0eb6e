"""manage.py measure_goals: measure the goals now, or fill their history with --backfill."""

import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from goals.models import Goal
from goals.services import goals_measure


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as error:
        raise CommandError(f"{text!r} is not a date: write it as YYYY-MM-DD, e.g. 2026-01-31.") from error


class Command(BaseCommand):
    help = (
        "Measure the KPI of every running goal into its daily snapshot (yesterday by default). "
        "With --backfill FROM, measure each day from FROM to yesterday: the history of new goals."
    )

    def add_arguments(self, parser):
        parser.add_argument("--day", type=_date, help="The day to measure (YYYY-MM-DD); default yesterday.")
        parser.add_argument("--backfill", type=_date, metavar="FROM", help="Measure every day from FROM up to --day.")
        parser.add_argument("--goal", type=int, action="append", help="Only this goal (by id); may be repeated.")

    def handle(self, *args, day, backfill, goal, **options):
        yesterday = timezone.localdate() - dt.timedelta(days=1)
        last = day or yesterday
        if last > yesterday:
            raise CommandError(f"{last} has not ended yet: the latest day that can be measured is {yesterday}.")
        first = backfill or last
        if first > last:
            raise CommandError(f"--backfill {first} is after the last day to measure ({last}).")
        goals = None
        if goal:
            goals = Goal.objects.filter(pk__in=goal)
            missing = sorted(set(goal) - set(goals.values_list("pk", flat=True)))
            if missing:
                raise CommandError(f"No goal with id {', '.join(map(str, missing))}.")
        measured = failed = 0
        current = first
        while current <= last:
            running = (goals if goals is not None else Goal.objects.all()).filter(deadline__gte=current)
            if not backfill:
                running = running.filter(starts_on__lte=current)
            # A backfill also fills the days before a goal's start: the history the goal's chart
            # shows beside the baseline.
            for result in goals_measure(day=current, goals=running):
                if result.problem:
                    failed += 1
                    self.stderr.write(f"{current} goal {result.goal.pk} ({result.goal}): {result.problem}")
                else:
                    measured += 1
            current += dt.timedelta(days=1)
        self.stdout.write(f"Measured {measured} snapshot(s) from {first} to {last}; {failed} could not be measured.")
        if failed:
            raise CommandError(f"{failed} snapshot(s) could not be measured; see above.")
