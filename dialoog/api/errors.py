"""Errors as JSON that names the field and the reason.

Every error response has the same shape::

    {"type": "validation_error",
     "errors": [{"field": "deadline", "code": "invalid", "message": "..."}]}

`field` is a dotted path into the request body (`items.2.email`), or null for an error
that is not about one field (authentication, permissions, a missing object).
"""

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, serializers
from rest_framework.views import exception_handler as drf_exception_handler


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
            key_path = None if key in ("non_field_errors", "detail") else str(key)
            errors += flatten_errors(value, f"{path}.{key_path}" if path and key_path else key_path or path)
        return errors
    if isinstance(detail, list):
        errors = []
        for index, value in enumerate(detail):
            # A list of errors for one field stays on that field; a list of objects gets an index.
            item_path = f"{path}.{index}" if path is not None and isinstance(value, (dict, list)) else path
            errors += flatten_errors(value, item_path)
        return errors
    return [{"field": path, "code": getattr(detail, "code", "invalid"), "message": str(detail)}]


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        # A service's full_clean() said no: the same shape as a serializer's errors.
        exc = exceptions.ValidationError(serializers.as_serializer_error(exc))
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    kind = "validation_error" if isinstance(exc, exceptions.ValidationError) else "client_error"
    response.data = {"type": kind, "errors": flatten_errors(exc.detail)}
    return response
