"""Errors as JSON that names the field and the reason.

Every error response has the same shape::

    {"type": "validation_error",
     "errors": [{"field": "deadline", "code": "invalid", "message": "..."}]}

`field` is a dotted path into the request body (`items.2.email`), or null for an error
that is not about one field (authentication, permissions, a missing object).
"""

import logging

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import ProtectedError, RestrictedError
from django.http import Http404
from django.utils.translation import gettext as _
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

logger = logging.getLogger(__name__)


class ErrorSerializer(serializers.Serializer):
    field = serializers.CharField(allow_null=True, help_text="Dotted path of the field, or null.")
    code = serializers.CharField(help_text="Machine-readable reason, e.g. `required`, `invalid`.")
    message = serializers.CharField(help_text="The reason, in the user's language.")


class ErrorResponseSerializer(serializers.Serializer):
    type = serializers.ChoiceField(
        choices=["validation_error", "client_error", "server_error"],
        help_text="`validation_error` for a bad payload, `client_error` for everything else a client caused.",
    )
    errors = ErrorSerializer(many=True)


def flatten_errors(detail, path: str | None = None) -> list[dict]:
    """Turn DRF's nested error detail into a flat list of {field, code, message}."""
    if isinstance(detail, dict):
        errors = []
        for key, value in detail.items():
            key_path = None if key == api_settings.NON_FIELD_ERRORS_KEY else str(key)
            errors += flatten_errors(value, f"{path}.{key_path}" if path and key_path else key_path or path)
        return errors
    if isinstance(detail, list):
        errors = []
        for index, value in enumerate(detail):
            # A list of messages stays on its field; a list of objects gets an index per item.
            item_index = f"{path}.{index}" if path else str(index)
            item_path = item_index if isinstance(value, (dict, list)) else path
            errors += flatten_errors(value, item_path)
        return errors
    return [{"field": path, "code": getattr(detail, "code", "invalid"), "message": str(detail)}]


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "protected"


def _protected(exc: ProtectedError | RestrictedError) -> Conflict:
    objects = getattr(exc, "protected_objects", None) or getattr(exc, "restricted_objects", ())
    blocking = sorted({str(obj._meta.verbose_name_plural) for obj in objects})
    return Conflict(
        _("This cannot be deleted while %(blocking)s refer to it.") % {"blocking": ", ".join(blocking)},
        code="protected",
    )


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        # A service's full_clean() said no: the same shape as a serializer's errors.
        exc = exceptions.ValidationError(serializers.as_serializer_error(exc))
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, (ProtectedError, RestrictedError)):
        exc = _protected(exc)
    response = drf_exception_handler(exc, context)
    if response is None:
        # A bug of ours: logged with its traceback, answered in the same JSON shape.
        logger.exception("Unhandled error in %s", context.get("view").__class__.__name__, exc_info=exc)
        set_rollback()
        return Response(
            {
                "type": "server_error",
                "errors": [{"field": None, "code": "server_error", "message": _("Something went wrong on our side.")}],
            },
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    kind = "validation_error" if isinstance(exc, exceptions.ValidationError) else "client_error"
    response.data = {"type": kind, "errors": flatten_errors(exc.detail)}
    return response
