from django.core.management.base import BaseCommand, CommandError

from audiences.insights.predictions import FeatureMismatch, scores_refresh
from audiences.models import PredictionModel


class Command(BaseCommand):
    help = "Score every contact with the active churn and lifetime-value models (what the nightly task does)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--kind", choices=PredictionModel.Kind.values, action="append", help="Only this kind (repeatable)."
        )

    def handle(self, *args, kind, **options):
        refused = None
        try:
            done = scores_refresh(kinds=kind)
        except FeatureMismatch as error:
            refused, done = error, error.scored
        self.report(done)
        if refused:
            raise CommandError(f"Not scored: {refused}")
        if not done:
            raise CommandError(
                "No active model to score with: train one (manage.py train_models) and activate it in the admin."
            )

    def report(self, done):
        for scored in done:
            self.stdout.write(
                f"{scored.model}: {scored.contacts} contacts scored in {scored.seconds:.1f} s "
                f"({scored.from_prior} with no events, scored from the prior {scored.model.prior:.4g})."
            )
