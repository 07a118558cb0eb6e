"""Counting big tables without COUNT(*): PostgreSQL's own estimate, exact when small."""

from typing import Any, cast

from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Model, QuerySet
from django.utils.functional import cached_property

EXACT_BELOW = 100_000


def table_count_estimate(model: type[Model]) -> int:
    """The number of rows of a model's table, from PostgreSQL's statistics.

    Below EXACT_BELOW rows (or before the table was first analysed) counting is cheap and exact.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [model._meta.db_table])
        row = cursor.fetchone()
    if row is None or row[0] < EXACT_BELOW:
        return model._default_manager.count()
    return row[0]


class EstimatedCountPaginator(Paginator):
    """An admin paginator for tables of millions of rows: the unfiltered list uses the
    estimate, so paging through contacts does not count the whole table on every page.
    A search or filter counts exactly (it is served by an index)."""

    @cached_property
    def count(self) -> int:
        query = getattr(self.object_list, "query", None)
        if query is not None and not query.where:
            # Only a queryset has a query.
            return table_count_estimate(cast("QuerySet[Any]", self.object_list).model)
        return super().count
