"""Celery tasks of the delivery layer: thin, they take ids and call a service; each is safe to run twice."""

from __future__ import annotations

import logging
import socket

from celery import shared_task
from django.utils import timezone

from campaigns.offers.services import offer_assignments_record
from campaigns.services.exports import audience_exports_due
from campaigns.services.runs import dispatch_tick
from campaigns.services.sending import batch_send

logger = logging.getLogger(__name__)


def enqueue_batches(batch_ids: list[int]) -> None:
    for batch_id in batch_ids:
        send_batch_task.delay(batch_id)


@shared_task(acks_late=True, ignore_result=True)
def dispatch_task() -> dict:
    """The dispatcher's tick (django-celery-beat, every 10 seconds): due runs, batches, leases."""
    result = dispatch_tick(enqueue=enqueue_batches)
    return {"planned": result.planned, "enqueued": result.enqueued, "completed": result.completed}


@shared_task(bind=True, acks_late=True, ignore_result=True)
def send_batch_task(self, batch_id: int) -> dict:
    """Send one batch; a second message for the same batch finds it claimed or done and does nothing."""
    worker = f"{self.request.hostname or socket.gethostname()}:{self.request.id}"
    result = batch_send(batch_id=batch_id, worker=worker)
    if result.claimed:
        logger.info(
            "Batch %s: %s sent, %s failed, %s held back, %s deferred%s",
            batch_id,
            result.sent,
            result.failed,
            result.held_back,
            result.deferred,
            " (stopped: campaign paused or cancelled)" if result.stopped else "",
        )
    return {"claimed": result.claimed, "sent": result.sent}


@shared_task(acks_late=True, ignore_result=True)
def audience_exports_task() -> dict:
    """Every minute (django-celery-beat): the audience exports whose schedule came due; each
    occurrence is exported once, also when two of these run at the same time."""
    result = audience_exports_due(now=timezone.now())
    return {"exported": result.exported, "failed": result.failed}


@shared_task(acks_late=True, ignore_result=True)
def offer_assignments_task() -> dict:
    """Every minute (django-celery-beat): the contacts each offer was the top offer for, recorded in
    its measurement; safe to run twice."""
    return {"assigned": offer_assignments_record(now=timezone.now())}
