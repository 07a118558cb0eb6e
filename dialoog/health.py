"""Checks of the services Dialoog needs: each returns None when healthy, else the reason.

The reason can name hosts and users, so it goes to the log, not to whoever asks /healthz.
"""

from django.db import DatabaseError, connection

from dialoog.celery import app as celery_app


def database_problem(db=None) -> str | None:
    try:
        with (db or connection).cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return f"{type(exc).__name__}: {exc}".strip()
    return None


def broker_problem(timeout: float = 2.0) -> str | None:
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - any failure to reach the broker means "down"
        return f"{type(exc).__name__}: {exc}".strip()
    return None


def service_problems() -> dict[str, str | None]:
    return {"database": database_problem(), "broker": broker_problem()}
