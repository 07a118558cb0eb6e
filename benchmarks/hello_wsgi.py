"""A WSGI application for gunicorn: the whole project plus `GET /bench/hello/` (benchmarks/hello_urls.py).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/dialoog_sendbench \\
        .venv/bin/gunicorn benchmarks.hello_wsgi:application --bind 127.0.0.1:8001 --workers 3

(from the repository's root; benchmarks/openloop.py's `gunicorn_serving` does this). Production
settings (dialoog.settings.production), DEBUG forced off (no query log growing in memory), with
defaults for what production requires besides DATABASE_URL, each overridable from the environment:
a fixed benchmark-only SECRET_KEY (the same in every worker, so session cookies hold across them),
ALLOWED_HOSTS 127.0.0.1 and localhost, PUBLIC_URL, the Redis broker on 127.0.0.1:6379 (which
/healthz checks), no HTTPS redirect (plain HTTP on loopback), LOG_LEVEL WARNING.

/healthz answers carry the answering worker's process id in X-Bench-Worker, so that
`gunicorn_serving` waits until every worker has loaded the project.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dialoog.settings.production")
os.environ["DEBUG"] = "false"
os.environ.setdefault("SECRET_KEY", "dialoog-benchmarks-only-loopback-never-deployed-0123456789abcdefghijkl")
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
os.environ.setdefault("PUBLIC_URL", "http://127.0.0.1:8000")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("LOG_LEVEL", "WARNING")

from django.conf import settings  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

from dialoog.collector import collector_tune  # noqa: E402

# This module is benchmarks.hello_wsgi from the root, or hello_wsgi with benchmarks/ on the path.
settings.ROOT_URLCONF = __name__.rpartition(".")[0] + ".hello_urls" if "." in __name__ else "hello_urls"
_django = get_wsgi_application()
collector_tune()  # as dialoog/wsgi.py does in production
if settings.DEBUG:
    raise RuntimeError("DEBUG is on: every query would be kept in memory; the benchmark needs it off")


def application(environ, start_response):
    if environ.get("PATH_INFO") != "/healthz":
        return _django(environ, start_response)

    def start_naming_worker(status, headers, exc_info=None):
        return start_response(status, [*headers, ("X-Bench-Worker", str(os.getpid()))], exc_info)

    return _django(environ, start_naming_worker)
