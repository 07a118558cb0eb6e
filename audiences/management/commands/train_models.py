import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from audiences.insights.predictions import (
    HORIZON_DAYS,
    FeatureMismatch,
    NotEnoughData,
    WorseThanActive,
    prediction_model_activate,
    prediction_model_train,
)
from audiences.models import PredictionModel

Kind = PredictionModel.Kind


class Command(BaseCommand):
    help = (
        "Train a new version of the churn and lifetime-value models on this database's data, check it on "
        "the latest held-out period and print its figures. It is not used until it is activated "
        "(here with --activate, or in the admin)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--kind", choices=Kind.values, action="append", help="Only this kind (repeatable).")
        parser.add_argument(
            "--horizon-days",
            type=int,
            default=None,
            help=f"Churn: no purchase in this many days (default {HORIZON_DAYS[Kind.CHURN]}); "
            f"lifetime value: revenue over them (default {HORIZON_DAYS[Kind.LIFETIME_VALUE]}).",
        )
        parser.add_argument(
            "--as-of", type=dt.date.fromisoformat, default=None, help="Train as if today were this day (YYYY-MM-DD)."
        )
        parser.add_argument(
            "--activate", action="store_true", help="Activate each new version unless it is worse than the active one."
        )
        parser.add_argument(
            "--confirm-worse",
            action="store_true",
            help="With --activate: activate it even when it did worse than the active one on its held-out period.",
        )

    def handle(self, *args, kind, horizon_days, as_of, activate, confirm_worse, **options):
        if horizon_days is not None and not 7 <= horizon_days <= 730:
            raise CommandError("--horizon-days must be between 7 and 730.")
        moment = timezone.make_aware(dt.datetime.combine(as_of, dt.time())) if as_of else None
        failed = []
        for one in kind or Kind.values:
            try:
                model = prediction_model_train(kind=one, as_of=moment, horizon_days=horizon_days)
            except NotEnoughData as error:
                failed.append(f"{Kind(one).label}: {error}")
                continue
            self.stdout.write(self.describe(model))
            for note in model.notes:
                self.stdout.write(f"  note: {note}")
            if activate:
                try:
                    prediction_model_activate(model=model, confirm_worse=confirm_worse)
                    self.stdout.write(f"  activated: {model} now writes the {model.kind} scores.")
                except WorseThanActive as error:
                    self.stdout.write(f"  not activated: {error} (--confirm-worse, or in the admin)")
                except FeatureMismatch as error:
                    self.stdout.write(f"  not activated: {error}")
        if failed:
            raise CommandError("\n".join(failed))

    @staticmethod
    def describe(model: PredictionModel) -> str:
        figures = model.metrics
        if model.kind == Kind.CHURN:
            result = f"{model.headline()}, Brier {figures['brier']}, churn rate {figures['churn_rate']}"
        else:
            result = f"{model.headline()}; {figures['chosen']} kept, each: {figures['mae_by_model']}"
        return (
            f"{model} ({model.algorithm}): learned from {model.training_rows} contacts before "
            f"{model.trained_until:%Y-%m-%d}, checked on {model.evaluation_rows} before "
            f"{model.evaluated_until:%Y-%m-%d}: {result}."
        )
