"""`make run`: everything Dialoog needs, in the foreground, stopped together by Ctrl-C."""

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connections

from dialoog.demo import DEMO_PASSWORD, DEMO_USERS
from dialoog.tasks import ping

STOP_GRACE_SECONDS = 15
PR_SET_PDEATHSIG = 1


def _load_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()  # looked up now: nothing may be imported between fork and exec


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGTERM it when `manage.py run` dies."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Command(BaseCommand):
    help = (
        "Run Dialoog for development: migrate, load demo data, then the web server, a Celery worker and "
        "celery beat in the foreground. Ctrl-C stops all of them (and the embedded PostgreSQL)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument(
            "--demo-contacts",
            type=int,
            default=3000,
            help="Demo customers to load (0: none). 3000 are enough to train the churn and lifetime-value models.",
        )

    def handle(self, *args, port, demo_contacts, **options):
        self.stopping = threading.Event()
        self.children = {}
        call_command("migrate", interactive=False, verbosity=1)
        if settings.DEBUG:
            call_command("demo_data", contacts=demo_contacts, seed=1)
        else:
            self.stdout.write("DEBUG is off: no demo data loaded.")
        connections.close_all()

        # From here on Ctrl-C (SIGINT), SIGTERM and a closed terminal stop everything in order.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, lambda *_: self.stopping.set())
        failed = None
        try:
            self._start_children(port)
            self._banner(port)
            threading.Thread(target=self._ping_worker, daemon=True).start()
            while not self.stopping.is_set():
                for name, child in self.children.items():
                    if child.poll() is not None:
                        failed = name
                        self.stopping.set()
                self.stopping.wait(0.5)
        finally:
            self._stop_children()
        if failed:
            self.stderr.write(f"The {failed} process stopped (exit code {self.children[failed].returncode}).")
            sys.exit(1)
        self.stdout.write("Dialoog stopped.")

    def _start_children(self, port):
        env = {
            **os.environ,
            # Children join this process's database (the embedded one included) and broker.
            "DATABASE_URL": settings.DATABASE_URL,
            "DJANGO_SETTINGS_MODULE": os.environ["DJANGO_SETTINGS_MODULE"],
            "PYTHONUNBUFFERED": "1",
        }
        manage = str(settings.BASE_DIR / "manage.py")
        celery = [sys.executable, "-m", "celery", "-A", "dialoog"]
        commands = {
            "web": [sys.executable, manage, "runserver", f"127.0.0.1:{port}"],
            "worker": [*celery, "worker", "--loglevel=INFO", "--concurrency=2", "--hostname=worker@%h"],
            "beat": [*celery, "beat", "--loglevel=INFO"],
        }
        for name, command in commands.items():
            if self.stopping.is_set():
                return
            # Each child gets a session of its own: Ctrl-C reaches only us, and we stop them in
            # order. Should we die without stopping them (kill -9), Linux sends them SIGTERM.
            child = subprocess.Popen(  # noqa: S603 - our own commands, no user input
                command,
                cwd=settings.BASE_DIR,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # async-signal-safe: one prctl call
            )
            self.children[name] = child
            threading.Thread(target=self._relay, args=(name, child), daemon=True).start()

    def _relay(self, name, child):
        for line in child.stdout:
            sys.stdout.write(f"{name:>6} | {line}")
            sys.stdout.flush()

    def _banner(self, port):
        base = f"http://127.0.0.1:{port}"
        users = "\n".join(f"    {username:<10} {DEMO_PASSWORD}   ({role})" for username, role in DEMO_USERS)
        self.stdout.write(
            self.style.SUCCESS("\nDialoog is starting.\n")
            + f"  Admin:     {base}/admin/\n"
            + f"  API docs:  {base}/api/docs/\n"
            + f"  API:       {base}/api/v1/\n"
            + f"  Health:    {base}/healthz\n"
            + f"  Demo users (username, password):\n{users}\n"
            + "  Press Ctrl-C to stop.\n"
        )

    def _ping_worker(self):
        """Show in the log that a task round-trips through the broker to a worker."""
        started = time.monotonic()
        try:
            answer = ping.delay().get(timeout=120)
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            if not self.stopping.is_set():
                self.stderr.write(f"celery | ping did not come back: {exc}")
            return
        self.stdout.write(
            f"celery | ping round-trip through the broker to {answer['worker']} took {time.monotonic() - started:.1f} s"
        )

    def _stop_children(self):
        if not self.children:
            return
        self.stdout.write("\nStopping Dialoog...")
        for child in self.children.values():
            if child.poll() is None:
                child.terminate()  # each stops its own helpers (reloader child, pool processes)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for name, child in self.children.items():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{name} did not stop in {STOP_GRACE_SECONDS} s: killing it.")
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
            # Anything the child left in its session (reloader, pool processes) goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
