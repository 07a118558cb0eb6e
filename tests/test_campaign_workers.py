"""Exactly once with real workers: two Celery worker processes over the suite's broker send a
campaign through the file backend; one is killed with SIGKILL in the middle of a hand-over, or
the campaign is paused and resumed, and every planned delivery is still sent, and written to the
channel, exactly once.

The dispatcher runs here, in the test, every half second as beat would. The workers get the test
database, a small batch, chunk and lease, and the email channel pointed at the file backend
(slowed down, with a journal of every hand-over: tests/journalled_channel.py) through the
environment. A duplicate shows twice: as a second line in the journal, where the file backend
(honouring the idempotency key) writes the message once.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from audiences.models import Consent, ConsentChange, Contact, Identity
from campaigns.channels.locmem import LocmemChannel
from campaigns.models import Campaign, CampaignRun, Delivery, DeliveryBatch
from campaigns.services import campaign_pause, campaign_resume
from campaigns.services.runs import dispatch_tick
from campaigns.services.sending import batch_claim, batch_send
from campaigns.tasks import send_batch_task
from dialoog.celery import app
from dialoog.tasks import ping
from tests.campaign_helpers import activated, campaign_for, outbox, tick
from tests.conftest import celery_worker_command
from tests.journalled_channel import hand_overs

BATCH_SIZE = 50
CHUNK_SIZE = 10
LEASE_SECONDS = 3
CHANNEL_DELAY = 0.003  # seconds per message: a provider over the network, a batch in a few tenths of a second
TICK_SECONDS = 0.5
RUN_TIMEOUT = 60

# Linux: the worker is killed when the test process dies, however it dies (no stray workers
# holding the test database). PR_SET_PDEATHSIG (1) survives the exec into the worker.
DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys; ctypes.CDLL(None).prctl(1, signal.SIGKILL);"
    " os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


# --- Workers -------------------------------------------------------------------------------------


@dataclass
class Worker:
    name: str
    process: subprocess.Popen
    log: Path

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def holds(self, batch: DeliveryBatch) -> bool:
        return batch.leased_by.startswith(f"{self.name}@")


class Workers:
    """Real worker processes, each consuming the test's queue and a ping queue of its own."""

    def __init__(self, env: dict, folder: Path) -> None:
        self.env = env
        self.folder = folder
        self.queue = f"campaign-workers-{uuid.uuid4().hex[:8]}"
        self.started: list[Worker] = []

    def start(self, count: int) -> list[Worker]:
        workers = [self._spawn(f"{self.queue}-{len(self.started) + 1 + number}") for number in range(count)]
        self.started += workers
        for worker in workers:
            try:
                ping.apply_async(queue=f"{worker.name}-ping").get(timeout=60)
            except Exception as exc:  # noqa: BLE001 - whatever went wrong, the worker's log tells why
                pytest.fail(f"Worker {worker.name} did not answer ({exc!r}). Its log:\n{worker.log.read_text()}")
        return workers

    def _spawn(self, name: str) -> Worker:
        log = self.folder / f"{name}.log"
        command = celery_worker_command(name=name, queues=f"{self.queue},{name}-ping")
        launcher = ["-c", DIE_WITH_PARENT] if sys.platform.startswith("linux") else []
        with log.open("w") as log_file:
            process = subprocess.Popen(
                [sys.executable, *launcher, *command],
                cwd=django_settings.BASE_DIR,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return Worker(name, process, log)

    def enqueue(self, batch_ids: list[int]) -> None:
        """campaigns.tasks.enqueue_batches, to this test's queue: no other worker on the broker takes them."""
        for batch_id in batch_ids:
            send_batch_task.apply_async((batch_id,), queue=self.queue)

    def stop(self) -> None:
        for worker in self.started:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        for worker in self.started:
            try:
                worker.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(worker.process.pid, signal.SIGKILL)
                worker.process.wait(timeout=10)
        # The broker keeps the queues (RabbitMQ) and what is left in them: a killed worker's
        # message, the batches enqueued twice.
        with app.connection_for_write() as connection:
            channel = connection.default_channel
            for queue in [self.queue, *(f"{worker.name}-ping" for worker in self.started)]:
                channel.queue_purge(queue)
                channel.queue_delete(queue)


@pytest.fixture
def channel_folder(tmp_path):
    folder = tmp_path / "email"
    folder.mkdir()
    return folder


@pytest.fixture
def journal(tmp_path):
    return tmp_path / "hand-overs.log"


@pytest.fixture
def workers(settings, subprocess_env, tmp_path, channel_folder, journal):
    """Starts workers on demand; stops (or kills) every one at the end and prints their logs,
    which pytest shows when the test failed."""
    settings.CAMPAIGN_BATCH_SIZE = BATCH_SIZE
    settings.CAMPAIGN_CHUNK_SIZE = CHUNK_SIZE
    settings.CAMPAIGN_BATCH_LEASE_SECONDS = LEASE_SECONDS
    env = {
        **subprocess_env,
        "CAMPAIGN_BATCH_SIZE": str(BATCH_SIZE),
        "CAMPAIGN_CHUNK_SIZE": str(CHUNK_SIZE),
        "CAMPAIGN_BATCH_LEASE_SECONDS": str(LEASE_SECONDS),
        "CAMPAIGN_TEST_EMAIL_BACKEND": "tests.journalled_channel.JournalledFileChannel",
        "CAMPAIGN_TEST_EMAIL_OPTIONS": json.dumps(
            {"path": str(channel_folder), "journal": str(journal), "delay": CHANNEL_DELAY}
        ),
        "LOG_LEVEL": "INFO",
    }
    pool = Workers(env, tmp_path)
    yield pool
    pool.stop()
    for worker in pool.started:
        print(f"----- {worker.name} (exit code {worker.process.returncode}) -----")
        print(worker.log.read_text()[-20_000:])


class Dispatcher:
    """The dispatcher's tick, every TICK_SECONDS, as beat would run it, with the workers' enqueue."""

    def __init__(self, workers: Workers) -> None:
        self.workers = workers
        self.last = 0.0
        self.enqueued: list[tuple[float, int]] = []

    def tick_when_due(self) -> None:
        if time.monotonic() - self.last >= TICK_SECONDS:
            self.last = time.monotonic()
            self.enqueued.append((self.last, dispatch_tick(enqueue=self.workers.enqueue).enqueued))

    def until(self, condition, *, timeout: float, what: str, poll: float = 0.01):
        """Tick while waiting for `condition` to return something true; that is returned."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.tick_when_due()
            found = condition()
            if found:
                return found
            time.sleep(poll)
        raise AssertionError(f"Timed out after {timeout} s waiting for {what}")


# --- Data ----------------------------------------------------------------------------------------


def customers(count: int) -> list[Contact]:
    """`count` contacts that may be mailed (an address and a granted consent each), in four statements."""
    contacts = Contact.objects.bulk_create([Contact(first_name=f"Klant {n}", last_name="Werker") for n in range(count)])
    Identity.objects.bulk_create(
        [Identity(contact=c, kind=Identity.Kind.EMAIL, value=f"werker{c.pk}@example.nl") for c in contacts]
    )
    changes = ConsentChange.objects.bulk_create(
        [ConsentChange(contact=c, channel="email", status="granted", source="test") for c in contacts]
    )
    Consent.objects.bulk_create(
        [
            Consent(
                contact_id=change.contact_id,
                channel="email",
                status="granted",
                changed_at=change.recorded_at,
                change=change,
            )
            for change in changes
        ]
    )
    return contacts


def running_campaign(count: int) -> tuple[Campaign, CampaignRun]:
    campaign = activated(campaign_for(customers(count), holdout_percent=0, holdout_off_reason="test"))
    return campaign, CampaignRun.objects.get(campaign=campaign)


def file_name(delivery_id: int) -> str:
    return f"dialoog-delivery-{delivery_id}.json"


def key(delivery_id: int) -> str:
    return f"dialoog-delivery-{delivery_id}"


def in_batch(batch: DeliveryBatch):
    return Delivery.objects.filter(
        run_id=batch.run_id, contact_id__gte=batch.contact_from, contact_id__lte=batch.contact_to
    )


def run_completed(run: CampaignRun) -> bool:
    run.refresh_from_db()
    return run.status == CampaignRun.Status.COMPLETED


def assert_every_delivery_written_once(run: CampaignRun, channel_folder: Path, *, stray_parts: int = 0) -> None:
    """Every planned delivery sent and its message in the channel's folder, whole, once; nothing else there."""
    deliveries = Delivery.objects.filter(run=run)
    assert run.planned == deliveries.count()
    assert Counter(deliveries.values_list("status", flat=True)) == {Delivery.Status.SENT: run.planned}
    names = os.listdir(channel_folder)
    parts = [name for name in names if name.endswith(".part")]  # a write the kill cut short, at most
    assert len(parts) <= stray_parts
    assert sorted(set(names) - set(parts)) == sorted(file_name(pk) for pk in deliveries.values_list("pk", flat=True))
    for delivery_id, to in deliveries.values_list("pk", "to"):
        message = json.loads((channel_folder / file_name(delivery_id)).read_text())
        assert (message["delivery_id"], message["idempotency_key"], message["to"]) == (
            delivery_id,
            key(delivery_id),
            to,
        )


# --- The tests -----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_hand_over_leaves_every_delivery_sent_and_written_exactly_once(
    workers, channel_folder, journal
):
    campaign, run = running_campaign(2000)
    victim, survivor = workers.start(2)
    dispatcher = Dispatcher(workers)

    def victim_mid_hand_over():
        """The victim's batch while it hands a chunk over: marked sending, some of it written, not recorded."""
        if DeliveryBatch.objects.filter(run=run, status=DeliveryBatch.Status.DONE).count() < 3:
            return None
        for batch in DeliveryBatch.objects.filter(run=run, status=DeliveryBatch.Status.CLAIMED):
            if not victim.holds(batch):
                continue
            sending = list(in_batch(batch).filter(status=Delivery.Status.SENDING).values_list("pk", flat=True))
            written = [pk for pk in sending if (channel_folder / file_name(pk)).exists()]
            if 1 <= len(written) <= len(sending) - 2:
                return batch, sending, written
        return None

    batch, sending, written = dispatcher.until(victim_mid_hand_over, timeout=RUN_TIMEOUT, what="the victim mid-chunk")
    victim.kill()
    killed_at = timezone.now()

    # Dead in the window: messages handed over (some in the channel already) and not recorded as sent.
    assert set(in_batch(batch).filter(status=Delivery.Status.SENDING).values_list("pk", flat=True)) == set(sending)
    sent_before = dict(in_batch(batch).filter(status=Delivery.Status.SENT).values_list("pk", "sent_at"))
    first_writes = {pk: (channel_folder / file_name(pk)).stat() for pk in written}

    dispatcher.until(lambda: run_completed(run), timeout=RUN_TIMEOUT, what="the run to complete")

    assert_every_delivery_written_once(run, channel_folder, stray_parts=1)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    # The killed worker's batch: its lease expired, the survivor took it over and finished it.
    batch.refresh_from_db()
    assert batch.status == DeliveryBatch.Status.DONE
    assert batch.attempts >= 2
    assert survivor.holds(batch)
    # What the victim recorded as sent stays as it was; what it did not, the survivor sent.
    assert dict(in_batch(batch).filter(pk__in=sent_before).values_list("pk", "sent_at")) == sent_before
    assert all(
        sent_at > killed_at for sent_at in in_batch(batch).filter(pk__in=sending).values_list("sent_at", flat=True)
    )
    # Handed over again: only deliveries of the window, never one recorded as sent; the channel
    # recognised each by its key and kept the first write.
    handed = hand_overs(journal)
    counts = Counter(handed_key for handed_key, _pid in handed)
    assert set(counts) == {key(pk) for pk in Delivery.objects.filter(run=run).values_list("pk", flat=True)}
    again = {handed_key for handed_key, count in counts.items() if count > 1}
    assert {key(pk) for pk in written} <= again <= {key(pk) for pk in sending}
    assert all(counts[handed_key] == 2 for handed_key in again)
    assert all(
        [pid for k, pid in handed if k == handed_key] == [victim.process.pid, survivor.process.pid]
        for handed_key in again
    )
    for pk, stat in first_writes.items():
        now_stat = (channel_folder / file_name(pk)).stat()
        assert (now_stat.st_ino, now_stat.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    # Each delivery was marked for sending once, those of the window twice.
    attempts = Counter(Delivery.objects.filter(run=run).values_list("attempts", flat=True))
    assert attempts == {1: run.planned - len(sending), 2: len(sending)}
    print(
        f"Killed {victim.name} in batch {batch.pk} with {len(sending)} deliveries marked sending and not recorded,"
        f" {len(written)} of them written by the channel already; handed over again: {len(again)}, each written once."
    )


@pytest.mark.django_db(transaction=True)
def test_pause_stops_the_workers_within_seconds_and_resume_continues_where_they_stopped(
    workers, channel_folder, journal
):
    campaign, run = running_campaign(1000)
    workers.start(2)
    dispatcher = Dispatcher(workers)

    def a_batch_halfway():
        """A claimed batch with a chunk sent and at least two still queued: a pause stops it halfway."""
        if not DeliveryBatch.objects.filter(run=run, status=DeliveryBatch.Status.DONE).exists():
            return None
        for batch in DeliveryBatch.objects.filter(run=run, status=DeliveryBatch.Status.CLAIMED):
            statuses = Counter(in_batch(batch).values_list("status", flat=True))
            if statuses[Delivery.Status.SENT] >= CHUNK_SIZE and statuses[Delivery.Status.QUEUED] >= 2 * CHUNK_SIZE:
                return batch
        return None

    halfway = dispatcher.until(a_batch_halfway, timeout=RUN_TIMEOUT, what="a batch halfway")
    campaign_pause(campaign=Campaign.objects.get(pk=campaign.pk))
    paused_at = time.monotonic()

    claimed = DeliveryBatch.objects.filter(run=run, status=DeliveryBatch.Status.CLAIMED)
    dispatcher.until(lambda: not claimed.exists(), timeout=5, what="the workers to stop", poll=0.05)
    stopped_after = time.monotonic() - paused_at
    sent = dict(Delivery.objects.filter(run=run, status=Delivery.Status.SENT).values_list("pk", "sent_at"))
    files = sorted(os.listdir(channel_folder))
    handed = len(hand_overs(journal))
    attempts = dict(DeliveryBatch.objects.filter(run=run).values_list("pk", "attempts"))
    run.refresh_from_db()
    assert 0 < len(sent) < run.planned

    # Paused: ticks enqueue nothing, no worker takes a batch or sends a message.
    ticks_before = len(dispatcher.enqueued)
    quiet_until = time.monotonic() + 3
    dispatcher.until(lambda: time.monotonic() > quiet_until, timeout=5, what="three quiet seconds", poll=0.1)
    assert len(dispatcher.enqueued) - ticks_before >= 5
    assert all(enqueued == 0 for _at, enqueued in dispatcher.enqueued[ticks_before:])
    assert not claimed.exists()
    assert dict(Delivery.objects.filter(run=run, status=Delivery.Status.SENT).values_list("pk", "sent_at")) == sent
    assert sorted(os.listdir(channel_folder)) == files
    assert len(hand_overs(journal)) == handed == len(files)
    assert dict(DeliveryBatch.objects.filter(run=run).values_list("pk", "attempts")) == attempts
    # The batch that was halfway stopped at its next chunk, its rest queued in it.
    halfway.refresh_from_db()
    assert halfway.status == DeliveryBatch.Status.QUEUED
    assert in_batch(halfway).filter(status=Delivery.Status.QUEUED).exists()
    halfway_sent = set(in_batch(halfway).filter(status=Delivery.Status.SENT).values_list("pk", flat=True))
    assert halfway_sent

    resumed_at = timezone.now()
    campaign_resume(campaign=Campaign.objects.get(pk=campaign.pk))
    dispatcher.until(lambda: run_completed(run), timeout=RUN_TIMEOUT, what="the run to complete")

    assert_every_delivery_written_once(run, channel_folder)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    # Continued, not restarted: what was sent before the pause kept its time and was not handed
    # over again; every message was handed over once.
    assert dict(Delivery.objects.filter(pk__in=sent).values_list("pk", "sent_at")) == sent
    assert Counter(Counter(handed_key for handed_key, _pid in hand_overs(journal)).values()) == {1: run.planned}
    assert set(Delivery.objects.filter(run=run).values_list("attempts", flat=True)) == {1}
    halfway.refresh_from_db()
    assert halfway.status == DeliveryBatch.Status.DONE
    assert halfway.attempts == attempts[halfway.pk] + 1
    rest = list(in_batch(halfway).exclude(pk__in=halfway_sent).values_list("sent_at", flat=True))
    assert rest and all(sent_at > resumed_at for sent_at in rest)
    print(f"Paused with {len(sent)} of {run.planned} sent; the workers stopped within {stopped_after:.2f} s.")


# --- A worker that stalls past its lease ---------------------------------------------------------


class TakenOverChannel(LocmemChannel):
    """Memory, like locmem; while the first chunk is handed over, the worker's lease runs out and
    another worker takes the batch over, as when a worker stalls (a long pause, a slow provider)."""

    def send_batch(self, messages):
        batch = DeliveryBatch.objects.get(status=DeliveryBatch.Status.CLAIMED)
        if batch.leased_by == "stalled":
            DeliveryBatch.objects.filter(pk=batch.pk).update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))
            assert batch_claim(batch_id=batch.pk, worker="successor")
        return super().send_batch(messages)


@pytest.mark.django_db
def test_a_worker_that_stalled_past_its_lease_stops_and_leaves_the_batch_to_its_successor(settings):
    settings.CAMPAIGN_CHUNK_SIZE = 2
    settings.CAMPAIGN_CHANNELS = {"email": {"BACKEND": "tests.test_campaign_workers.TakenOverChannel"}}
    outbox().clear()
    _campaign, run = running_campaign(6)
    (batch_id,) = tick()

    stalled = batch_send(batch_id=batch_id, worker="stalled")

    # It noticed at its next chunk, and left the batch as the successor holds it: no third worker gets it.
    assert stalled.stopped and stalled.sent == 2
    batch = DeliveryBatch.objects.get(pk=batch_id)
    assert (batch.status, batch.leased_by) == (DeliveryBatch.Status.CLAIMED, "successor")
    assert tick() == []
    # The successor dies too; once its lease expired, the next worker sends the rest, each message once.
    DeliveryBatch.objects.filter(pk=batch_id).update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))
    settings.CAMPAIGN_CHANNELS = {"email": {"BACKEND": "campaigns.channels.locmem.LocmemChannel"}}
    assert tick() == [batch_id]
    assert batch_send(batch_id=batch_id, worker="next").sent == 4
    sent = Delivery.objects.filter(run=run, status=Delivery.Status.SENT)
    assert sent.count() == 6
    assert sorted(message.delivery_id for message in outbox()) == sorted(sent.values_list("pk", flat=True))
    outbox().clear()


# --- The file backend ----------------------------------------------------------------------------


def full_disk_write():
    """os.write as on a disk that fills up: the first write goes half-way, the next finds no space."""
    real_write = os.write
    writes = []

    def write(descriptor: int, data) -> int:
        writes.append(len(data))
        if len(writes) > 1:
            raise OSError(28, "No space left on device")
        return real_write(descriptor, bytes(data[: len(data) // 2]))

    return write


def test_the_file_backend_leaves_no_half_a_message_behind_and_writes_it_whole_next_time(tmp_path, monkeypatch):
    from campaigns.channels import filebased
    from campaigns.channels.base import OutboundMessage, Result

    message = OutboundMessage(
        delivery_id=8, idempotency_key=key(8), channel="email", to="klant@example.nl", contact_key="k", subject="Hallo"
    )
    backend = filebased.FileChannel(channel="email", path=str(tmp_path))
    with monkeypatch.context() as patched:
        patched.setattr(filebased.os, "write", full_disk_write())
        (failed,) = backend.send_batch([message])
    assert failed.result == Result.TRANSIENT
    assert "No space left on device" in failed.error
    assert os.listdir(tmp_path) == []

    (sent,) = backend.send_batch([message])

    assert sent.result == Result.SENT
    assert os.listdir(tmp_path) == [file_name(8)]
    assert json.loads((tmp_path / file_name(8)).read_text())["subject"] == "Hallo"
