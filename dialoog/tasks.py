import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(bind=True, ignore_result=False)
def ping(self) -> dict:
    """Round-trips through the broker: shows in the worker's log that a worker answers."""
    logger.info("pong from worker %s (task %s)", self.request.hostname, self.request.id)
    return {"pong": True, "worker": self.request.hostname}
