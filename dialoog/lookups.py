"""`field__any=[...]`: `field = ANY(%s)` with the list as one array parameter.

Django's `__in` writes one placeholder per value, which for the hundreds of ids of a send's batch
costs more to build, quote and parse than the query takes to run; an array is one parameter."""

from __future__ import annotations

from typing import Any

from django.db.models import Field, ForeignObject, Lookup


@ForeignObject.register_lookup
@Field.register_lookup
class AnyLookup(Lookup):
    lookup_name = "any"
    prepare_rhs = False

    def get_prep_lookup(self) -> Any:
        values = list(self.rhs)
        return [self.lhs.output_field.get_prep_value(value) for value in values]

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs} = ANY(%s)", [*lhs_params, self.rhs]
