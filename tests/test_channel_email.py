"""The email channel against a real SMTP server on loopback: what arrives, and each refusal's outcome."""

import datetime as dt
import socket

import pytest
import time_machine
from django.utils import timezone

from campaigns.channels.base import OutboundMessage, Result
from campaigns.channels.email import EmailChannel
from campaigns.models import Delivery
from tests.campaign_helpers import activated, campaign_for, customer, send_everything
from tests.smtp_server import SMTP_CHANNEL

pytestmark = pytest.mark.django_db(transaction=True)


def _address(contact):
    return contact.identities.get(kind="email").value


def test_a_campaign_goes_through_smtp_one_message_per_sent_delivery_with_unsubscribe_headers(smtp):
    contacts = [customer(first_name=f"Anna{n}") for n in range(6)]
    campaign = activated(campaign_for(contacts, holdout_percent=0, holdout_off_reason="test"))

    send_everything()
    send_everything()

    sent = Delivery.objects.filter(campaign=campaign, status=Delivery.Status.SENT)
    assert sent.count() == 6
    received = smtp.by_delivery()
    assert sorted(received) == sorted(str(pk) for pk in sent.values_list("pk", flat=True))
    assert all(len(messages) == 1 for messages in received.values())
    for delivery in sent:
        message = received[str(delivery.pk)][0]
        assert message["To"] == delivery.to
        assert message["Message-ID"] == f"<dialoog-delivery-{delivery.pk}@localhost>"
        assert delivery.provider_id == message["Message-ID"]
        assert message["Subject"].startswith("Najaarsactie voor Anna")
        unsubscribe = str(message["List-Unsubscribe"]).strip()  # folded: it is longer than a line
        assert unsubscribe.startswith("<http") and unsubscribe.endswith("?channel=email>")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["X-Dialoog-Campaign"] == str(campaign.pk)
        html = message.get_body(preferencelist=("html",))
        text = message.get_body(preferencelist=("plain",))
        assert html is not None and text is not None
        assert "Hallo Anna" in html.get_content() and "/t/c/" in html.get_content()
        assert "Hallo Anna" in text.get_content()


def test_a_refused_address_fails_once_and_the_rest_of_the_batch_is_sent(smtp):
    contacts = [customer() for _ in range(5)]
    refused = contacts[2]
    smtp.refuse(_address(refused))
    campaign = activated(campaign_for(contacts, holdout_percent=0, holdout_off_reason="test"))

    send_everything()
    send_everything()

    failed = Delivery.objects.get(campaign=campaign, contact=refused)
    assert failed.status == Delivery.Status.FAILED
    assert failed.reason == "permanent_error"
    assert failed.attempts == 1
    assert failed.detail.startswith("550")
    assert Delivery.objects.filter(campaign=campaign, status=Delivery.Status.SENT).count() == 4
    assert len(smtp.messages) == 4
    assert _address(refused) not in {message["To"] for message in smtp.messages}


def test_a_451_is_transient_queued_for_later_then_sent_on_the_next_attempt(smtp):
    contacts = [customer() for _ in range(3)]
    greylisted = contacts[1]
    smtp.defer(_address(greylisted), times=1)
    campaign = activated(campaign_for(contacts, holdout_percent=0, holdout_off_reason="test"))

    send_everything()

    waiting = Delivery.objects.get(campaign=campaign, contact=greylisted)
    assert waiting.status == Delivery.Status.QUEUED
    assert waiting.reason == "transient_error"
    assert waiting.detail.startswith("451")
    assert waiting.next_attempt_at > timezone.now()
    assert len(smtp.messages) == 2

    send_everything()  # not due yet: nothing happens
    assert len(smtp.messages) == 2

    with time_machine.travel(waiting.next_attempt_at + dt.timedelta(seconds=1)):
        send_everything()
        send_everything()

    waiting.refresh_from_db()
    assert waiting.status == Delivery.Status.SENT
    assert waiting.attempts == 2
    assert sorted(smtp.by_delivery()) == sorted(
        str(pk) for pk in Delivery.objects.filter(campaign=campaign).values_list("pk", flat=True)
    )


def _message(number, to):
    return OutboundMessage(
        delivery_id=number,
        idempotency_key=f"dialoog-delivery-{number}",
        channel="email",
        to=to,
        contact_key=f"key-{number}",
        subject="Hallo",
        text="Hallo",
        from_email="Dialoog <noreply@example.nl>",
    )


def test_a_dropped_connection_is_transient_and_the_channel_reconnects_for_the_rest(smtp, settings):
    channel = EmailChannel(channel="email", **SMTP_CHANNEL["OPTIONS"])
    channel.open()
    try:
        channel.send_batch([_message(1, "a@example.nl")])
        channel.connection.connection.sock.shutdown(socket.SHUT_RDWR)  # the connection breaks mid-batch
        outcomes = channel.send_batch([_message(2, "b@example.nl"), _message(3, "c@example.nl")])
    finally:
        channel.close()

    assert [outcome.result for outcome in outcomes] == [Result.TRANSIENT, Result.SENT]
    assert [message["To"] for message in smtp.messages] == ["a@example.nl", "c@example.nl"]


def test_an_unreachable_server_fails_the_whole_batch_so_that_every_message_is_tried_again(settings):
    from tests.smtp_server import free_port

    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 2
    channel = EmailChannel(channel="email", **SMTP_CHANNEL["OPTIONS"])
    with pytest.raises(OSError):
        channel.open()
