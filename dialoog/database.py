"""PostgreSQL beyond what Django's cursors do."""

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.db import connection


@contextmanager
def server_bound_cursor() -> Iterator[psycopg.Cursor]:
    """A psycopg cursor on Django's connection (in its transaction) that sends its parameters
    apart from the SQL, `%b` ones in binary. Django's cursors bind on the client: every value is
    quoted into the SQL text in Python (a file as a hex literal twice its size, each string
    through a regular expression). Database errors come out as Django's."""
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        yield cursor
