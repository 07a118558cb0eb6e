"""`make run`: migrate, demo data, web server, worker and beat together; Ctrl-C stops them all."""

import contextlib
import html
import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.parse
import urllib.request

import psutil
import pytest
from django.conf import settings

from dialoog.demo import DEMO_PASSWORD
from tests.conftest import clean_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Browser:
    """Just enough of a browser (cookies, Dutch) to log into the admin over real HTTP."""

    def __init__(self, base):
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self.opener.addheaders = [("Accept-Language", "nl")]

    def get(self, path, data=None):
        try:
            with self.opener.open(self.base + path, data=data, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError as error:
            return None, repr(error)

    def login(self, username, password):
        status, page = self.get("/admin/login/?next=/admin/")
        found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert found, f"no login form ({status}): {page[:500]}"
        token = html.unescape(found.group(1))
        form = {"csrfmiddlewaretoken": token, "username": username, "password": password, "next": "/admin/"}
        return self.get("/admin/login/?next=/admin/", urllib.parse.urlencode(form).encode())


class Running:
    """A command running in a session of its own, its output collected as it comes."""

    def __init__(self, command, env):
        self.process = subprocess.Popen(
            command,
            cwd=settings.BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines = []
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True).start()

    @property
    def output(self):
        return "".join(self.lines)

    def family(self):
        return psutil.Process(self.process.pid).children(recursive=True)

    def ctrl_c(self):
        """What a terminal does on Ctrl-C: SIGINT to the whole foreground process group."""
        os.killpg(self.process.pid, signal.SIGINT)

    def kill_all(self):
        with contextlib.suppress(psutil.NoSuchProcess):
            for proc in [*self.family(), psutil.Process(self.process.pid)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()


def postmaster_running(pgdata) -> bool:
    pid_file = pgdata / "postmaster.pid"
    return pid_file.exists() and psutil.pid_exists(int(pid_file.read_text().split()[0]))


@pytest.mark.smoke
def test_make_run_on_a_fresh_machine_serves_everything_and_ctrl_c_leaves_nothing_behind(tmp_path, wait_until):
    pgdata = tmp_path / "postgres"
    port = free_port()
    env = {
        **clean_env(PORT=str(port), EMBEDDED_POSTGRES_DIR=str(pgdata), CELERY_BROKER_DIR=str(tmp_path / "broker")),
        "DJANGO_SETTINGS_MODULE": "dialoog.settings.base",
    }
    env.pop("DATABASE_URL", None)  # the embedded PostgreSQL, as on a fresh machine
    base = f"http://127.0.0.1:{port}"

    first = Running(["make", "run"], env)
    try:
        wait_until(lambda: "ping round-trip through the broker" in first.output, timeout=120, message="the ping")
        browser = Browser(base)
        wait_until(lambda: browser.get("/healthz")[0] == 200, timeout=30, message="/healthz")
        assert '"database": "ok"' in browser.get("/healthz")[1]
        assert browser.get("/api/docs/")[0] == 200
        assert browser.get("/api/schema/")[0] == 200
        for url in (f"{base}/admin/", f"{base}/api/docs/"):
            assert url in first.output
        # Log in with the credentials it printed and see the dashboard.
        assert f"marketeer  {DEMO_PASSWORD}" in first.output
        status, dashboard = browser.login("marketeer", DEMO_PASSWORD)
        assert status == 200 and "Dialoog-dashboard" in dashboard
        assert re.search(r"\b3\.?000 klanten", dashboard), "the 3,000 demo customers on the dashboard"
        assert "beat: Starting..." in first.output
        family = first.family()
        assert postmaster_running(pgdata)
    except BaseException:
        first.kill_all()
        raise

    first.ctrl_c()
    first.process.wait(timeout=60)
    assert "Dialoog stopped." in first.output, first.output[-3000:]
    _gone, alive = psutil.wait_procs(family, timeout=10)
    assert alive == [], f"left behind: {[p.pid for p in alive]}"
    assert not postmaster_running(pgdata)

    # Again: the data is still there, nothing is loaded twice.
    second = Running(["make", "run"], env)
    try:
        wait_until(lambda: "Dialoog is starting" in second.output, timeout=120, message="the second start")
        assert "0 contacts" in second.output and "(already there)" in second.output
        browser = Browser(base)
        wait_until(lambda: browser.get("/healthz")[0] == 200, timeout=30, message="/healthz")
        assert browser.login("marketeer", DEMO_PASSWORD)[0] == 200
        family = second.family()
    except BaseException:
        second.kill_all()
        raise
    second.ctrl_c()
    second.process.wait(timeout=60)
    assert psutil.wait_procs(family, timeout=10)[1] == []
    assert not postmaster_running(pgdata)


def test_when_run_itself_is_killed_its_children_stop_too(subprocess_env, tmp_path, transactional_db, wait_until):
    env = {**subprocess_env, "DJANGO_SETTINGS_MODULE": "dialoog.settings.base", "CELERY_BROKER_DIR": str(tmp_path)}
    run = Running([sys.executable, "manage.py", "run", "--port", str(free_port()), "--demo-contacts", "0"], env)
    try:
        wait_until(lambda: "ping round-trip through the broker" in run.output, timeout=90, message="the ping")
        family = run.family()
        assert len(family) >= 3
    except BaseException:
        run.kill_all()
        raise

    run.process.kill()  # kill -9: no chance to stop anything itself

    _gone, alive = psutil.wait_procs(family, timeout=30)
    if alive:
        for proc in alive:
            proc.kill()
    assert alive == [], f"left behind: {[p.pid for p in alive]}"
