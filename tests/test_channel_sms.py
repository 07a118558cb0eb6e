"""The SMS channels: through the project's SMS backends, and to an HTTP provider (a local server here)."""

import base64
from urllib.parse import parse_qs

import pytest

from campaigns.channels.base import OutboundMessage, Result
from campaigns.channels.sms import HttpSmsChannel
from campaigns.models import ContactPolicy, Delivery
from dialoog import sms
from tests.campaign_helpers import activated, campaign_for, customer, send_everything
from tests.http_server import http_server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_quiet_hours():
    """SMS keep quiet hours by default; these tests send whatever the hour on the machine."""
    ContactPolicy.objects.update_or_create(pk=1, defaults={"quiet_channels": []})


@pytest.fixture
def provider():
    with http_server() as server:
        yield server


def _phone(contact):
    return contact.identities.get(kind="phone").value


def _sms_campaign(count):
    contacts = [customer(email=False, phone=True, consent=("sms",), first_name=f"Bram{n}") for n in range(count)]
    campaign = activated(campaign_for(contacts, channels=("sms",), holdout_percent=0, holdout_off_reason="test"))
    return contacts, campaign


def test_the_sms_channel_hands_each_message_to_the_configured_sms_backend(settings):
    settings.SMS_BACKEND = "dialoog.sms.backends.locmem.SmsBackend"
    settings.CAMPAIGN_CHANNELS = {**settings.CAMPAIGN_CHANNELS, "sms": {"BACKEND": "campaigns.channels.sms.SmsChannel"}}
    sms.outbox.clear()
    contacts, campaign = _sms_campaign(3)

    send_everything()
    send_everything()

    assert Delivery.objects.filter(campaign=campaign, status=Delivery.Status.SENT).count() == 3
    assert sorted(message.to for message in sms.outbox) == sorted(_phone(contact) for contact in contacts)
    assert all(message.text.startswith("Hoi Bram") and message.sender == settings.SMS_SENDER for message in sms.outbox)
    sms.outbox.clear()


def test_an_http_provider_gets_each_sms_with_its_reference_a_500_is_retried_and_a_400_recorded_once(settings, provider):
    settings.CAMPAIGN_CHANNELS = {
        **settings.CAMPAIGN_CHANNELS,
        "sms": {
            "BACKEND": "campaigns.channels.sms.HttpSmsChannel",
            "OPTIONS": {
                "url": provider.url,
                "token": "s3cret-token",
                "fields": {"text": "body", "sender": "from"},
                "sender": "DeLinde",
                "backoff": 0.01,
            },
        },
    }
    contacts, campaign = _sms_campaign(4)
    rejected = contacts[1]
    provider.reject(field_value=_phone(rejected), status=400)
    provider.fail_next(500)  # the first request: retried inside the call

    send_everything()
    send_everything()

    failed = Delivery.objects.get(campaign=campaign, contact=rejected)
    assert failed.status == Delivery.Status.FAILED
    assert failed.reason == "permanent_error"
    assert failed.attempts == 1
    assert "HTTP 400" in failed.detail and "refused with 400" in failed.detail
    sent = Delivery.objects.filter(campaign=campaign, status=Delivery.Status.SENT)
    assert sent.count() == 3
    bodies = [request.json() for request in provider.requests]
    assert len(bodies) == 5  # four messages, one of them twice after the 500
    assert sum(1 for body in bodies if body["to"] == _phone(rejected)) == 1
    for delivery in sent:
        mine = [body for body in bodies if body["to"] == delivery.to]
        assert mine[-1]["reference"] == f"dialoog-delivery-{delivery.pk}"
        assert mine[-1]["from"] == "DeLinde"
        assert mine[-1]["body"].startswith("Hoi Bram")
        assert delivery.provider_id.startswith("msg-")
    assert all(r.headers["Authorization"] == "Bearer s3cret-token" for r in provider.requests)
    assert all(r.headers["Idempotency-Key"] == r.json()["reference"] for r in provider.requests)
    assert all("s3cret-token" not in delivery.detail for delivery in Delivery.objects.filter(campaign=campaign))


def _message(number, to):
    return OutboundMessage(
        delivery_id=number,
        idempotency_key=f"dialoog-delivery-{number}",
        channel="sms",
        to=to,
        contact_key="k",
        text="Hoi",
    )


def test_a_provider_that_times_out_is_retried_then_the_message_is_transient_and_the_rest_goes_on(provider):
    channel = HttpSmsChannel(channel="sms", url=provider.url, timeout=0.3, retries=1, backoff=0.01)
    provider.stall_next(seconds=1.0, times=2)

    outcomes = channel.send_batch([_message(1, "+31610000001"), _message(2, "+31610000002")])

    assert [outcome.result for outcome in outcomes] == [Result.TRANSIENT, Result.SENT]
    assert "Timed out" in outcomes[0].error
    assert [request.json()["to"] for request in provider.requests] == ["+31610000001", "+31610000001", "+31610000002"]


def test_a_provider_still_failing_after_the_retries_leaves_the_message_transient(provider):
    channel = HttpSmsChannel(channel="sms", url=provider.url, retries=2, backoff=0.01)
    provider.fail_next(503, times=3)

    [outcome] = channel.send_batch([_message(1, "+31610000001")])

    assert outcome.result == Result.TRANSIENT
    assert outcome.error.startswith("HTTP 503")
    assert len(provider.requests) == 3


def test_a_429_is_retried_and_a_form_payload_with_a_login_is_posted(provider):
    channel = HttpSmsChannel(
        channel="sms", url=provider.url, payload="form", username="dialoog", password="pw", backoff=0.01
    )
    provider.fail_next(429)

    [outcome] = channel.send_batch([_message(7, "+31610000007")])

    assert outcome.result == Result.SENT
    assert outcome.provider_id == "msg-2"
    assert len(provider.requests) == 2
    form = parse_qs(provider.requests[-1].body.decode())
    assert form == {"to": ["+31610000007"], "text": ["Hoi"], "sender": ["Dialoog"], "reference": ["dialoog-delivery-7"]}
    assert provider.requests[-1].headers["Authorization"] == "Basic " + base64.b64encode(b"dialoog:pw").decode()
    assert provider.requests[-1].headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_a_provider_that_cannot_be_reached_is_transient():
    from tests.smtp_server import free_port

    channel = HttpSmsChannel(channel="sms", url=f"http://127.0.0.1:{free_port()}/x", retries=1, backoff=0.01)

    [outcome] = channel.send_batch([_message(1, "+31610000001")])

    assert outcome.result == Result.TRANSIENT
    assert outcome.error.startswith("No connection")


def test_a_provider_down_for_several_messages_in_a_row_leaves_the_rest_of_the_batch_untried(provider):
    channel = HttpSmsChannel(channel="sms", url=provider.url, retries=0, give_up_after=2)
    provider.fail_next(502, times=10)

    outcomes = channel.send_batch([_message(n, f"+3161000000{n}") for n in range(1, 6)])

    assert [outcome.result for outcome in outcomes] == [Result.TRANSIENT] * 5
    assert len(provider.requests) == 2  # the other three wait for the batch's next attempt
    assert outcomes[4].error.startswith("Not tried")
