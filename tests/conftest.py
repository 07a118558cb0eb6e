import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.utils import translation
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from dialoog.roles import ANALYST, CALLCENTER_AGENT, MARKETEER
from tests.factories import UserFactory


def pytest_collection_modifyitems(config, items):
    """Browser tests run last: Playwright's event loop stays in the main thread after them."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


def clean_env(**overrides) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    return {**env, **overrides}


CHROMIUM_CANDIDATES = (
    "chromium",
    "chromium-browser",
    "/usr/bin/chromium",
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture
def marketeer(db):
    return UserFactory(username="marketeer-test", role=MARKETEER)


@pytest.fixture
def analyst(db):
    return UserFactory(username="analyst-test", role=ANALYST)


@pytest.fixture
def agent(db):
    return UserFactory(username="agent-test", role=CALLCENTER_AGENT)


@pytest.fixture
def api_client_for():
    """An API client that authenticates with the user's token, as other systems do."""

    def make(user):
        client = APIClient()
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


def database_url(settings_dict) -> str:
    host = quote(settings_dict["HOST"] or "", safe="")
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    password = f":{quote(settings_dict['PASSWORD'])}" if settings_dict.get("PASSWORD") else ""
    return f"postgres://{settings_dict['USER']}{password}@{host}{port}/{settings_dict['NAME']}"


@pytest.fixture(scope="session", autouse=True)
def _close_stray_test_database_sessions(django_db_setup, django_db_blocker):
    """Let the test database be dropped at the end.

    Once a browser test ran, Playwright's event loop makes Django keep connections per
    context (greenlet) rather than per thread, and the flush after a transactional test can
    leave one open where pytest-django's teardown does not reach it.
    """
    yield
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(scope="session")
def test_database_url(django_db_setup, django_db_blocker) -> str:
    """A URL for the test database, for the processes a test starts."""
    with django_db_blocker.unblock():
        return database_url(connection.settings_dict)


@pytest.fixture(scope="session")
def subprocess_env(test_database_url) -> dict:
    return clean_env(
        DJANGO_SETTINGS_MODULE="dialoog.settings.test", DATABASE_URL=test_database_url, PYTHONUNBUFFERED="1"
    )


def celery_worker_command(*, name: str, queues: str) -> list[str]:
    """The arguments (after the interpreter) of a real Celery worker for a test: the solo pool, a
    hostname and queues of its own. Not --without-heartbeat: on RabbitMQ the solo pool's event loop
    then sits for seconds on a message it has read already (celery/celery#2519); the heartbeat's
    timer wakes it up."""
    return [
        "-m",
        "celery",
        "-A",
        "dialoog",
        "worker",
        "--pool=solo",
        f"--hostname={name}@%h",
        f"--queues={queues}",
        "--loglevel=INFO",
        "--without-gossip",
        "--without-mingle",
    ]


@pytest.fixture(scope="session")
def celery_worker(subprocess_env, tmp_path_factory):
    """A real Celery worker process on the configured broker (filesystem or Redis), consuming
    a queue of its own so that no other worker on the same broker answers for it."""
    from dialoog.tasks import ping

    name = f"test-{uuid.uuid4().hex[:8]}"
    queue = f"{name}-queue"
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, *celery_worker_command(name=name, queues=queue)],
            cwd=settings.BASE_DIR,
            env=subprocess_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        ping.apply_async(queue=queue).get(timeout=60)
    except Exception as exc:  # noqa: BLE001 - whatever went wrong, the worker's log tells why
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        pytest.fail(f"The Celery worker did not answer ({exc!r}). Its log:\n{log.read_text()}")
    yield {"name": name, "queue": queue, "log": log, "process": process}
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def _find_chromium() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), *CHROMIUM_CANDIDATES):
        found = candidate and shutil.which(candidate)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Launch the system Chromium: Playwright cannot download its own browser here."""
    chromium = _find_chromium()
    if chromium is None:
        message = (
            "No Chromium found for the browser tests. Install it (`sudo apt-get install chromium` on "
            "Debian/Ubuntu, `brew install --cask chromium` on macOS) or set CHROMIUM to its path."
        )
        if os.environ.get("DIALOOG_REQUIRE_BROWSER"):
            pytest.fail(message)  # CI: browser tests must run, not skip
        pytest.skip(message)
    return {**browser_type_launch_args, "executable_path": chromium, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser(browser):
    # Playwright's sync API keeps an event loop running in the main thread from here on, and
    # Django would refuse every ORM call of the tests as "async". Browser tests run last and
    # are synchronous; processes the tests start do not inherit this (clean_env).
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    return browser


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    """A Dutch marketeer's browser: it asks for Dutch pages."""
    return {**browser_context_args, "locale": "nl-NL"}


@pytest.fixture
def wait_until():
    def wait(predicate, timeout=30.0, interval=0.2, message="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            time.sleep(interval)
        raise AssertionError(f"Timed out after {timeout} s waiting for {message}")

    return wait


@pytest.fixture(autouse=True)
def _fresh_auth_memory():
    """Every test starts with no token or permission remembered from an earlier one."""
    from dialoog.authentication import forget_all

    forget_all()
    yield
    forget_all()


@pytest.fixture(autouse=True)
def _fresh_offer_catalogue():
    """Every test decides with the offers it made: the catalogue a process keeps for a few seconds
    would otherwise carry offers over from an earlier test, rolled back since."""
    from campaigns.offers.catalogue import catalogue_forget

    catalogue_forget()
    yield
    catalogue_forget()


@pytest.fixture(autouse=True)
def _default_language():
    """Every test starts in the default language (Dutch): a request in an earlier test leaves
    its language active in the thread, which would make results depend on the order."""
    translation.activate(settings.LANGUAGE_CODE)
    yield
    translation.deactivate()


@pytest.fixture
def english():
    """Messages in English, as the code writes them (Dutch is the default language)."""
    with translation.override("en"):
        yield


@pytest.fixture
def english_client():
    """A logged-in admin client that asks for English pages, so messages read as written."""

    def make(user):
        client = Client(headers={"accept-language": "en"})
        client.force_login(user)
        return client

    return make


def log_in_in_english(page, live_server_url: str, username: str, password: str) -> None:
    """Log in through the admin's login page, switching it to English first, so that a browser test
    reads the words as the code writes them and a translation does not break it."""
    page.goto(f"{live_server_url}/admin/login/")
    page.get_by_label("Taal").select_option("en")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


@pytest.fixture
def smtp(settings):
    """A real SMTP server on loopback (aiosmtpd) that the campaigns' email channel sends to."""
    from tests.smtp_server import SMTP_CHANNEL, smtp_server

    with smtp_server() as (server, port):
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.EMAIL_TIMEOUT = 5
        # A new dict, so that the test settings' locmem channels come back after the test.
        settings.CAMPAIGN_CHANNELS = {**settings.CAMPAIGN_CHANNELS, "email": SMTP_CHANNEL}
        yield server
