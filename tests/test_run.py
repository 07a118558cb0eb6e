"""`make run`: migrate, demo data, web server, worker and beat together; Ctrl-C stops them all."""

import signal
import socket
import subprocess
import sys
import threading
import urllib.request

import psutil
import pytest
from django.conf import settings

from dialoog.demo import DEMO_PASSWORD


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback only
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return None, ""


@pytest.mark.smoke
def test_run_serves_everything_and_ctrl_c_leaves_nothing_behind(transactional_db, subprocess_env, tmp_path, wait_until):
    port = free_port()
    env = {**subprocess_env, "DJANGO_SETTINGS_MODULE": "dialoog.settings.base", "CELERY_BROKER_DIR": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run", "--port", str(port), "--demo-contacts", "5"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True).start()
    output = lambda: "".join(lines)  # noqa: E731
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: "ping round-trip through the broker" in output(), timeout=90, message="the ping")
        wait_until(lambda: get(f"{base}/healthz")[0] == 200, timeout=30, message="/healthz")
        _status, body = get(f"{base}/healthz")
        assert '"database": "ok"' in body and '"broker": "ok"' in body
        assert get(f"{base}/admin/login/")[0] == 200
        assert get(f"{base}/api/docs/")[0] == 200
        assert get(f"{base}/api/schema/")[0] == 200
        assert f"{base}/admin/" in output() and f"{base}/api/docs/" in output()
        assert f"marketeer  {DEMO_PASSWORD}" in output()
        assert "beat: Starting..." in output()
        family = psutil.Process(process.pid).children(recursive=True)
        assert len(family) >= 3  # web server, worker, beat (and their helpers)
    except BaseException:
        process.kill()
        raise

    process.send_signal(signal.SIGINT)  # what Ctrl-C sends
    assert process.wait(timeout=60) == 0, output()[-3000:]
    assert "Dialoog stopped." in output()
    _gone, alive = psutil.wait_procs(family, timeout=5)
    assert alive == [], [p.cmdline() for p in alive]
