"""Celery tasks of the audiences app: thin, they take ids and call a service."""

import logging

from celery import shared_task

from audiences.insights.products import products_refresh
from audiences.models import Import
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
