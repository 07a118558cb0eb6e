"""The embedded PostgreSQL: started on demand, shared by processes, stopped by the last one."""

import json
import subprocess
import sys

import psutil
from django.conf import settings

from dialoog.embedded_postgres import _forget_dead_handles
from tests.conftest import clean_env

START_AND_QUERY = """
import sys
from pathlib import Path
import psycopg
from dialoog.embedded_postgres import embedded_database_url
from urllib.parse import unquote, urlsplit
url = embedded_database_url(Path(sys.argv[1]))
parts = urlsplit(url)
with psycopg.connect(host=unquote(parts.hostname), user="postgres", dbname=parts.path[1:]) as conn:
    conn.execute("CREATE TABLE IF NOT EXISTS kept (n int)")
    conn.execute("INSERT INTO kept VALUES (1)")
    print(*conn.execute(
        "SELECT current_database(), current_setting('server_version_num'), count(*) FROM kept"
    ).fetchone())
"""


def postmaster_running(pgdata) -> bool:
    pid_file = pgdata / "postmaster.pid"
    return pid_file.exists() and psutil.pid_exists(int(pid_file.read_text().split()[0]))


def start_query_and_exit(pgdata) -> list[str]:
    """A process of its own starts (or joins) the server, writes a row, and exits."""
    result = subprocess.run(
        [sys.executable, "-c", START_AND_QUERY, str(pgdata)],
        cwd=settings.BASE_DIR,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_the_embedded_server_starts_serves_our_database_and_stops_with_its_last_user(tmp_path):
    pgdata = tmp_path / "postgres"

    database, version, rows = start_query_and_exit(pgdata)

    assert database == "dialoog"
    assert int(version) >= 180000
    assert rows == "1"
    assert (pgdata / "PG_VERSION").read_text().strip() == "18"
    assert not postmaster_running(pgdata)

    # Running it again starts the server on the same data: what was written is still there.
    assert start_query_and_exit(pgdata)[2] == "2"
    assert not postmaster_running(pgdata)


def test_handles_of_dead_processes_are_forgotten(tmp_path):
    alive = psutil.Process().pid
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    (tmp_path / ".handle_pids.json").write_text(json.dumps([alive, dead_pid]))

    _forget_dead_handles(tmp_path)

    assert json.loads((tmp_path / ".handle_pids.json").read_text()) == [alive]
