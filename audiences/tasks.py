"""Celery tasks of the audiences app: thin, they take ids and call a service."""

import logging

from celery import shared_task

from audiences.models import Import
from audiences.services.imports import import_run

logger = logging.getLogger(__name__)


@shared_task
def import_run_task(import_id: int) -> None:
    """Run a queued import. Safe to run twice: the service leaves a done or running import alone."""
    run = Import.objects.defer("content").filter(pk=import_id).first()
    if run is None:
        logger.warning("Import %s no longer exists; nothing to run", import_id)
        return
    import_run(import_run=run)
