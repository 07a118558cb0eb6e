"""The score table rewritten in place each night: room on its pages, the name indexed, not the value.

Not in one transaction: the indexes are built and dropped CONCURRENTLY, so that a site with
millions of scores keeps scoring and segmenting while this runs.
"""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("audiences", "0018_prediction_schedules"),
    ]

    operations = [
        # Half of each page left free for the next version of its rows: every score is rewritten each
        # night, and a heap-only update needs room on the same page. Pages written before this fill
        # up as rows are rewritten; `VACUUM FULL audiences_score` gives them the room at once.
        migrations.RunSQL(
            "ALTER TABLE audiences_score SET (fillfactor = 50)",
            reverse_sql="ALTER TABLE audiences_score RESET (fillfactor)",
        ),
        # The new index first, so that the score names are never without one.
        AddIndexConcurrently(model_name="score", index=models.Index(fields=["name"], name="score_name_idx")),
        RemoveIndexConcurrently(model_name="score", name="score_name_value_idx"),
        migrations.AlterField(
            model_name="score",
            name="from_prior",
            field=models.BooleanField(
                db_default=False,
                default=False,
                help_text=(
                    "The contact had no events to go on: the score is the average the model learned, not their own."
                ),
                verbose_name="from the prior",
            ),
        ),
    ]
