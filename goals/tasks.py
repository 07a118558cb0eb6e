"""Celery tasks of the goals app: thin, they call a service."""

import datetime as dt
import logging

from celery import shared_task
from django.utils import timezone

from goals.experiments import experiments_measure
from goals.services import goals_measure

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, ignore_result=False)
def measure_goals(day: str | None = None) -> dict[str, int]:
    """Yesterday's snapshot of every running goal (or of `day`, an ISO date), and the uplift of their
    campaigns. Run daily by the "Measure goals" schedule (django-celery-beat, editable in the
    admin). Safe to run twice: a goal has one snapshot per day, written again."""
    measured_day = dt.date.fromisoformat(day) if day else timezone.localdate() - dt.timedelta(days=1)
    results = goals_measure(day=measured_day)
    problems = [result for result in results if result.problem]
    for result in problems:
        logger.warning("Goal %s (%s) not measured: %s", result.goal.pk, result.goal, result.problem)
    uplifts = experiments_measure(day=measured_day)
    return {"measured": len(results) - len(problems), "not_measured": len(problems), "uplifts": len(uplifts)}
