import logging

from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from dialoog.health import service_problems

logger = logging.getLogger(__name__)


@never_cache
@require_safe
def healthz(request):
    """200 when the database and the broker answer; 503 naming the one that does not."""
    problems = service_problems()
    for name, reason in problems.items():
        if reason:
            logger.error("Health check: the %s is down: %s", name, reason)
    down = [name for name, reason in problems.items() if reason]
    body = {
        "status": "unavailable" if down else "ok",
        "checks": {name: ("down" if reason else "ok") for name, reason in problems.items()},
    }
    return JsonResponse(body, status=503 if down else 200)
