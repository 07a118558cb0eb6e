"""The nightly "Refresh product recommendations" schedule, as rows django-celery-beat reads (and
marketeers edit)."""

from django.conf import settings
from django.db import migrations

NAME = "Refresh product recommendations"


def create_schedule(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    # At 03:15, when yesterday's orders are in and before the morning's campaigns render.
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="15", hour="3", day_of_week="*", day_of_month="*", month_of_year="*", timezone=settings.TIME_ZONE
    )
    PeriodicTask.objects.get_or_create(
        name=NAME,
        defaults={
            "task": "audiences.tasks.products_refresh_task",
            "crontab": crontab,
            "description": "The products and what is bought together, from the last year's purchases.",
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("audiences", "0013_products"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
