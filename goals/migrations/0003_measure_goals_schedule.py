"""The daily "Measure goals" schedule, as rows django-celery-beat reads (and marketeers edit)."""

from django.conf import settings
from django.db import migrations

NAME = "Measure goals"


def create_schedule(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    # At 02:30, when yesterday's events are in and before the marketeers start their day.
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="30", hour="2", day_of_week="*", day_of_month="*", month_of_year="*", timezone=settings.TIME_ZONE
    )
    PeriodicTask.objects.get_or_create(
        name=NAME,
        defaults={
            "task": "goals.tasks.measure_goals",
            "crontab": crontab,
            "description": "Yesterday's snapshot of every running goal, and the uplift of their campaigns.",
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("goals", "0002_smart_goals_and_measurement"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
