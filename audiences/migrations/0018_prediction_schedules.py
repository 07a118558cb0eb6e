"""The weekly "Train churn and lifetime-value models" and nightly "Score contacts" schedules, as rows
django-celery-beat reads (and marketeers edit)."""

from django.conf import settings
from django.db import migrations

SCHEDULES = [
    # Sunday at 02:00: a new version of each model, to be looked at and activated on Monday.
    (
        "Train churn and lifetime-value models",
        "audiences.tasks.prediction_models_train_task",
        {"minute": "0", "hour": "2", "day_of_week": "0"},
        "A new version of each prediction model, trained and checked on the latest data; activate it in the admin.",
    ),
    # Every night at 04:00, after the products (03:15) and before the morning's campaigns render.
    (
        "Score contacts",
        "audiences.tasks.scores_refresh_task",
        {"minute": "0", "hour": "4", "day_of_week": "*"},
        "Every contact's churn risk and lifetime value, by the active models.",
    ),
]


def create_schedules(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, when, description in SCHEDULES:
        crontab, _ = CrontabSchedule.objects.get_or_create(
            **when, day_of_month="*", month_of_year="*", timezone=settings.TIME_ZONE
        )
        PeriodicTask.objects.get_or_create(
            name=name, defaults={"task": task, "crontab": crontab, "description": description}
        )


def remove_schedules(apps, schema_editor):
    names = [name for name, *_rest in SCHEDULES]
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=names).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("audiences", "0017_prediction_models_and_pair_measures"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedules, remove_schedules)]
