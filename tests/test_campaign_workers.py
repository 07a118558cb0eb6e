"""What a worker dying or stalling mid-batch leaves behind: a worker that stalled past its lease
leaves the batch to its successor, and the file backend never leaves half a message.
"""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest
from django.utils import timezone

from audiences.models import Consent, ConsentChange, Contact, Identity
from campaigns.channels.locmem import LocmemChannel
from campaigns.models import Campaign, CampaignRun, Delivery, DeliveryBatch
from campaigns.services.sending import batch_claim, batch_send
from tests.campaign_helpers import activated, campaign_for, outbox, tick

LEASE_SECONDS = 3


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


class FullDisk:
    """A file whose write fails, as on a disk that filled up."""

    def __init__(self, descriptor: int) -> None:
        self.descriptor = descriptor

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        os.close(self.descriptor)

    def write(self, text: str) -> int:
        os.write(self.descriptor, text[: len(text) // 2].encode())
        raise OSError(28, "No space left on device")


def test_the_file_backend_leaves_no_half_a_message_behind_and_writes_it_whole_next_time(tmp_path, monkeypatch):
    from campaigns.channels import filebased
    from campaigns.channels.base import OutboundMessage, Result

    message = OutboundMessage(
        delivery_id=8, idempotency_key=key(8), channel="email", to="klant@example.nl", contact_key="k", subject="Hallo"
    )
    backend = filebased.FileChannel(channel="email", path=str(tmp_path))
    with monkeypatch.context() as patched:
        patched.setattr(filebased.os, "fdopen", lambda descriptor, *args, **kwargs: FullDisk(descriptor))
        (failed,) = backend.send_batch([message])
    assert failed.result == Result.TRANSIENT
    assert "No space left on device" in failed.error
    assert os.listdir(tmp_path) == []

    (sent,) = backend.send_batch([message])

    assert sent.result == Result.SENT
    assert os.listdir(tmp_path) == [file_name(8)]
    assert json.loads((tmp_path / file_name(8)).read_text())["subject"] == "Hallo"
