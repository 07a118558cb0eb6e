"""The WSGI application as gunicorn loads it: the project, with the garbage collector tuned."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_loading_the_wsgi_application_freezes_what_loading_made_and_tunes_the_collector():
    script = (
        "import gc, json; from dialoog.wsgi import application; "
        "print(json.dumps({'frozen': gc.get_freeze_count(), 'threshold': gc.get_threshold(), "
        "'app': type(application).__name__}))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "dialoog.settings.test"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])

    assert seen["app"] == "WSGIHandler"
    assert seen["frozen"] > 10_000  # Django and the project's modules, out of the collector's way
    assert seen["threshold"] == [7_000, 10, 10]
