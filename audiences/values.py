"""What free JSON (attributes, event properties, rule values) may hold, so that PostgreSQL
stores and compares it: no NUL characters, finite numbers of a sane size, bounded nesting.
Pure code, no I/O."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from django.utils.translation import gettext as _

# Beyond 10**18 a number is not an amount, a count or a score but a mistake (and PostgreSQL's
# numeric comparisons and Python's int-to-text conversion get slow, or refuse).
MAX_NUMBER = 10**18
MAX_DEPTH = 20


def json_value_problem(
    value: Any, path: str = "", depth: int = 0, max_depth: int = MAX_DEPTH
) -> tuple[str, str] | None:
    """(path, message) of the first part of `value` that cannot be stored, or None."""
    if depth > max_depth:
        return path, _("is nested deeper than %(depth)s levels") % {"depth": max_depth}
    if isinstance(value, str):
        return (path, _("contains a NUL character")) if "\x00" in value else None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | Decimal):
        if isinstance(value, float) and not math.isfinite(value):
            return path, _("is not a finite number")
        if isinstance(value, Decimal) and not value.is_finite():
            return path, _("is not a finite number")
        if abs(value) >= MAX_NUMBER:
            return path, _("is too large a number")
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            key_path = f"{path}.{key}" if path else str(key)
            if not isinstance(key, str) or "\x00" in key:
                return path, _("has a key with a NUL character")
            problem = json_value_problem(item, key_path, depth + 1, max_depth)
            if problem:
                return problem
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            problem = json_value_problem(item, f"{path}.{index}" if path else str(index), depth + 1, max_depth)
            if problem:
                return problem
        return None
    return path, _("cannot be stored (%(type)s)") % {"type": type(value).__name__}
