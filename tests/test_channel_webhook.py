"""The webhook channel against a local receiver: signed JSON, one POST per message, retried on a 500."""

import time

import pytest

from campaigns.channels.webhook import SIGNATURE_HEADER, webhook_signature, webhook_signature_verify
from campaigns.models import Delivery
from tests.campaign_helpers import activated, campaign_for, customer, message_with, send_everything
from tests.http_server import http_server

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "whsec-test-secret"


@pytest.fixture
def receiver(settings):
    with http_server() as server:
        settings.CAMPAIGN_CHANNELS = {
            **settings.CAMPAIGN_CHANNELS,
            "webhook": {
                "BACKEND": "campaigns.channels.webhook.WebhookChannel",
                "OPTIONS": {"url": server.url, "secret": SECRET, "backoff": 0.01},
            },
        }
        yield server


def test_each_message_is_posted_once_signed_with_the_secret_and_a_500_is_retried(receiver):
    contacts = [customer(consent=(), first_name=f"Cor{n}", attributes={"city": "Utrecht"}) for n in range(3)]
    campaign = activated(
        campaign_for(
            contacts,
            channels=("webhook",),
            message=message_with(email=False),
            holdout_percent=0,
            holdout_off_reason="test",
        )
    )
    receiver.fail_next(500)

    send_everything()
    send_everything()

    sent = Delivery.objects.filter(campaign=campaign, status=Delivery.Status.SENT)
    assert sent.count() == 3
    assert len(receiver.requests) == 4  # the first one twice
    assert (
        receiver.requests[0].body != b""
        and receiver.requests[0].json()["delivery_id"] == (receiver.requests[1].json()["delivery_id"])
    )
    by_delivery = {request.json()["delivery_id"]: request for request in receiver.requests[1:]}
    assert sorted(by_delivery) == sorted(sent.values_list("pk", flat=True))
    for delivery in sent:
        request = by_delivery[delivery.pk]
        assert webhook_signature_verify(secret=SECRET, body=request.body, header=request.headers[SIGNATURE_HEADER])
        assert not webhook_signature_verify(
            secret="another-secret", body=request.body, header=request.headers[SIGNATURE_HEADER]
        )
        body = request.json()
        assert body["idempotency_key"] == request.headers["Idempotency-Key"] == f"dialoog-delivery-{delivery.pk}"
        assert body["campaign"] == {"id": campaign.pk, "name": campaign.name}
        assert body["contact"]["contact_key"] == str(delivery.contact.contact_key)
        assert body["contact"]["first_name"].startswith("Cor")
        assert body["contact"]["attributes"] == {"city": "Utrecht"}
        assert body["sent_at"]


def test_a_signature_of_another_body_or_too_old_does_not_verify():
    now = int(time.time())
    header = webhook_signature(secret=SECRET, body=b'{"a":1}', timestamp=now)

    assert webhook_signature_verify(secret=SECRET, body=b'{"a":1}', header=header)
    assert not webhook_signature_verify(secret=SECRET, body=b'{"a":2}', header=header)
    assert not webhook_signature_verify(secret=SECRET, body=b'{"a":1}', header=header, now=now + 3600)
    assert not webhook_signature_verify(secret=SECRET, body=b'{"a":1}', header="v1=deadbeef")
