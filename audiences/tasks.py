"""Celery tasks of the audiences app: thin, they take ids and call a service."""

import logging

from celery import shared_task

from audiences.insights.predictions import FeatureMismatch, NotEnoughData, prediction_model_train, scores_refresh
from audiences.insights.products import products_refresh
from audiences.models import Import, PredictionModel
from audiences.services.imports import STALE_AFTER, ImportRunning, import_run

logger = logging.getLogger(__name__)


# A message for an import another worker is running comes back this much later: if that worker died,
# the import is stale after STALE_AFTER and this task takes it over; if not, it is done by then.
RETRY_AFTER = int(STALE_AFTER.total_seconds() / 5)


@shared_task(bind=True, acks_late=True, max_retries=10)
def import_run_task(self, import_id: int) -> None:
    """Run a queued import. Safe to run twice: the service leaves a done import alone, and a
    running one is looked at again later (taken over once its worker is seen to have died)."""
    run = Import.objects.defer("content").filter(pk=import_id).first()
    if run is None:
        logger.warning("Import %s no longer exists; nothing to run", import_id)
        return
    try:
        import_run(import_run=run, raise_if_running=True)
    except ImportRunning as running:
        raise self.retry(exc=running, countdown=RETRY_AFTER) from running


@shared_task(acks_late=True, ignore_result=True)
def products_refresh_task() -> dict:
    """Every night (django-celery-beat): the products and what is bought together, from the last
    year's purchases. Safe to run twice: each run rebuilds both tables in one transaction."""
    result = products_refresh()
    logger.info("Products refreshed: %s products sold, %s pairs bought together", result.products, result.pairs)
    return {"products": result.products, "pairs": result.pairs}


@shared_task(acks_late=True, ignore_result=True)
def prediction_models_train_task(kinds: list[str] | None = None) -> dict:
    """Every week (django-celery-beat): a new version of each model, trained and checked on the
    latest data, waiting in the admin to be activated. Too little data is logged, not retried: the
    active model stays in use. Safe to run twice: it adds a version, which is activated or not by a person."""
    trained = {}
    for kind in kinds or PredictionModel.Kind.values:
        try:
            model = prediction_model_train(kind=kind)
        except NotEnoughData as error:
            logger.warning("No new %s model: %s", kind, error)
            trained[kind] = str(error)
            continue
        logger.info("Trained %s: %s", model, model.metrics)
        trained[kind] = f"{model} trained"
    return trained


@shared_task(acks_late=True, ignore_result=True)
def scores_refresh_task() -> dict:
    """Every night (django-celery-beat): every contact scored by each active model. Safe to run twice:
    each run rewrites the scores of a kind in one transaction."""
    try:
        done = scores_refresh()
    except FeatureMismatch as error:
        # That model wrote nothing (its kind keeps yesterday's scores); the others scored.
        logger.error("Scores not refreshed: %s", error)
        done = error.scored
        if not done:
            return {"error": str(error)}
    for scored in done:
        logger.info(
            "%s scored %s contacts (%s from the prior) in %.1f s",
            scored.model,
            scored.contacts,
            scored.from_prior,
            scored.seconds,
        )
    return {scored.model.kind: scored.contacts for scored in done}
