import datetime as dt
import html
import json
import re
import time

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from audiences.models import Consent, Event
from campaigns.channels import locmem
from campaigns.models import Delivery, Suppression, WebhookReceipt
from campaigns.selectors import campaign_funnel
from campaigns.tracking.links import click_url, open_pixel_url
from campaigns.tracking.services import delivery_click_record, delivery_open_record, webhook_signature
from tests.campaign_helpers import activated, campaign_for, customer, send_everything
from tests.factories import EventFactory

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "provider-shared-secret"
STATUS_URL = "/api/v1/delivery-status/"


@pytest.fixture(autouse=True)
def _empty_outbox():
    locmem.outbox.clear()
    yield
    locmem.outbox.clear()


@pytest.fixture
def secret(settings):
    settings.DELIVERY_WEBHOOK_SECRET = SECRET
    return SECRET


def sent_campaign(contacts, **fields):
    fields.setdefault("holdout_percent", 0)
    fields.setdefault("holdout_off_reason", "test")
    campaign = activated(campaign_for(contacts, **fields))
    send_everything()
    return campaign


def path_of(url):
    return url.removeprefix(settings.PUBLIC_URL)


def links_in(message):
    """The open pixel and the tracked click links of a sent email, as paths."""
    body = html.unescape(message.html)
    pixel = re.search(r'<img src="([^"]+/t/o/[^"]+\.gif)"', body).group(1)
    clicks = re.findall(r'href="([^"]+/t/c/[^"]+)"', body)
    return path_of(pixel), [path_of(click) for click in clicks]


def events(type_, delivery):
    return Event.objects.filter(type=type_, properties__delivery_id=delivery.pk)


# --- Open pixel -----------------------------------------------------------------------------------


def test_the_pixel_of_a_sent_email_records_its_first_open_once_and_always_returns_the_gif(client):
    contact = customer()
    campaign = sent_campaign([contact])
    delivery = Delivery.objects.get(campaign=campaign, contact=contact)
    pixel, _clicks = links_in(locmem.outbox[0])

    first = client.get(pixel)
    delivery.refresh_from_db()
    opened_at = delivery.opened_at
    second = client.get(pixel)

    for response in (first, second):
        assert response.status_code == 200
        assert response["Content-Type"] == "image/gif"
        assert response.content.startswith(b"GIF89a")
        assert response.content[6:10] == b"\x01\x00\x01\x00"  # 1 x 1 pixel
        assert b"!\xf9\x04\x01" in response.content  # its one colour is transparent
        assert "no-store" in response["Cache-Control"] and "no-cache" in response["Cache-Control"]
    delivery.refresh_from_db()
    assert opened_at is not None and delivery.opened_at == opened_at
    [event] = events("email_opened", delivery)
    assert event.contact_id == contact.pk
    assert event.properties == {"campaign_id": campaign.pk, "delivery_id": delivery.pk, "channel": "email"}


def test_a_bad_pixel_token_records_nothing_and_still_returns_the_same_gif(client):
    contact = customer()
    campaign = sent_campaign([contact])
    delivery = Delivery.objects.get(campaign=campaign, contact=contact)
    good = client.get(path_of(open_pixel_url(delivery.pk)))
    Delivery.objects.filter(pk=delivery.pk).update(opened_at=None)
    Event.objects.all().delete()
    token = path_of(open_pixel_url(delivery.pk)).removeprefix("/t/o/").removesuffix(".gif")

    for bad in (f"{delivery.pk}:forged", f"{delivery.pk + 1}:{token.split(':')[1]}", "nonsense"):
        response = client.get(f"/t/o/{bad}.gif")
        assert response.status_code == 200
        assert response.content == good.content
        assert response["Cache-Control"] == good["Cache-Control"]

    delivery.refresh_from_db()
    assert delivery.opened_at is None
    assert not Event.objects.exists()


def test_a_delivery_that_was_held_back_records_no_open_even_with_a_valid_token():
    contact = customer(consent=())
    campaign = sent_campaign([contact])
    delivery = Delivery.objects.get(campaign=campaign, contact=contact)
    assert delivery.status == Delivery.Status.HELD_BACK

    assert delivery_open_record(delivery_id=delivery.pk) is False

    delivery.refresh_from_db()
    assert delivery.opened_at is None
    assert not Event.objects.filter(type="email_opened").exists()


# --- Clicks ---------------------------------------------------------------------------------------


def test_a_signed_click_redirects_to_its_target_and_records_the_click_and_the_open(client):
    contact = customer()
    campaign = sent_campaign([contact])
    delivery = Delivery.objects.get(campaign=campaign, contact=contact)
    _pixel, [click] = links_in(locmem.outbox[0])  # the unsubscribe link is left alone

    response = client.get(click)
    client.get(click)  # the same link again: no second event

    assert response.status_code == 302
    assert response["Location"] == "https://shop.example.nl/najaar"
    assert response["Referrer-Policy"] == "no-referrer"
    delivery.refresh_from_db()
    assert delivery.clicked_at is not None
    assert delivery.opened_at == delivery.clicked_at  # images off: the click shows it was opened
    [clicked] = events("email_clicked", delivery)
    assert clicked.properties["url"] == "https://shop.example.nl/najaar"
    assert clicked.properties["campaign_id"] == campaign.pk
    assert events("email_opened", delivery).count() == 1


@pytest.mark.parametrize(
    "tamper",
    [
        lambda q: q.replace("najaar", "evil"),  # another target, same signature
        lambda q: q.replace("shop.example.nl", "evil.example.com"),
        lambda q: re.sub(r"s=[^&]+", "s=forged", q),
        lambda q: re.sub(r"&?s=[^&]+", "", q),  # no signature at all
        lambda q: "u=https%3A%2F%2Fevil.example.com%2F",
    ],
)
def test_a_click_whose_url_or_signature_was_changed_is_a_400_page_and_no_redirect(client, tamper):
    contact = customer()
    campaign = sent_campaign([contact])
    delivery = Delivery.objects.get(campaign=campaign, contact=contact)
    path, query = path_of(click_url(delivery.pk, "https://shop.example.nl/najaar")).split("?")

    response = client.get(f"{path}?{tamper(query)}")

    assert response.status_code == 400
    assert "Location" not in response
    assert b"<html" in response.content
    delivery.refresh_from_db()
    assert delivery.clicked_at is None and delivery.opened_at is None
    assert not Event.objects.filter(type__in=["email_clicked", "email_opened"]).exists()


def test_the_click_signature_binds_the_delivery(client):
    first, second = customer(), customer()
    campaign = sent_campaign([first, second])
    one, other = Delivery.objects.filter(campaign=campaign).order_by("pk")
    query = click_url(one.pk, "https://shop.example.nl/najaar").split("?")[1]

    response = client.get(f"/t/c/{other.pk}/?{query}")

    assert response.status_code == 400
    other.refresh_from_db()
    assert other.clicked_at is None


def test_a_bad_click_page_is_in_english_for_an_english_browser(english):
    response = Client(headers={"accept-language": "en"}).get("/t/c/1/?u=https%3A%2F%2Fevil.example.com%2F&s=x")
    assert response.status_code == 400
    assert "This link is not valid" in response.content.decode()


# --- Status webhooks ------------------------------------------------------------------------------


def post_status(client, payload, *, secret=SECRET, timestamp=None, body=None):
    body = body if body is not None else json.dumps(payload).encode()
    timestamp = int(time.time()) if timestamp is None else timestamp
    return client.post(
        STATUS_URL,
        data=body,
        content_type="application/json",
        headers={"x-dialoog-signature": webhook_signature(body=body, secret=secret, timestamp=timestamp)},
    )


def test_a_signed_delivered_report_sets_delivered_at_and_is_processed_once(client, secret):
    contact = customer()
    campaign = sent_campaign([contact])
    delivery = Delivery.objects.get(campaign=campaign, contact=contact)
    at = timezone.now().replace(microsecond=0) - dt.timedelta(minutes=1)
    payload = {
        "events": [{"id": "evt-1", "type": "delivered", "delivery_id": delivery.pk, "occurred_at": at.isoformat()}]
    }

    first = post_status(client, payload)
    again = post_status(client, payload)  # the provider retries: a new signature, the same event

    assert first.status_code == 200
    assert first.json() == {"results": [{"id": "evt-1", "status": "processed", "delivery_id": delivery.pk}]}
    assert again.status_code == 200
    assert again.json()["results"][0]["status"] == "duplicate"
    delivery.refresh_from_db()
    assert delivery.delivered_at == at
    assert delivery.status == Delivery.Status.SENT
    assert events("email_delivered", delivery).count() == 1
    assert WebhookReceipt.objects.filter(event_id="evt-1").count() == 1


def test_a_report_may_name_the_delivery_by_its_message_id(client, secret):
    contact = customer()
    campaign = sent_campaign([contact])
    delivery = Delivery.objects.get(campaign=campaign, contact=contact)
    message_id = f"<dialoog-delivery-{delivery.pk}@mail.example.nl>"

    response = post_status(client, {"events": [{"id": "evt-m", "type": "delivered", "message_id": message_id}]})

    assert response.status_code == 200
    assert response.json()["results"][0]["status"] == "processed"
    delivery.refresh_from_db()
    assert delivery.delivered_at is not None


def test_an_unknown_delivery_is_answered_and_not_noted_as_processed(client, secret):
    response = post_status(client, {"events": [{"id": "evt-x", "type": "delivered", "delivery_id": 987654}]})

    assert response.status_code == 200
    assert response.json()["results"] == [{"id": "evt-x", "status": "unknown_delivery", "delivery_id": 987654}]
    assert not WebhookReceipt.objects.exists()


def test_a_hard_bounce_suppresses_the_address_so_a_later_campaign_holds_it_back(client, secret):
    contact = customer()
    campaign = sent_campaign([contact])
    delivery = Delivery.objects.get(campaign=campaign, contact=contact)
    payload = {"events": [{"id": "b-1", "type": "bounced", "bounce": "hard", "delivery_id": delivery.pk}]}

    assert post_status(client, payload).status_code == 200

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SENT  # it was handed over; the reason says what became of it
    assert delivery.reason == "hard_bounce"
    assert Suppression.objects.get(channel="email", address=delivery.to).reason == "hard_bounce"
    assert events("email_bounced", delivery).get().properties["bounce"] == "hard"
    later = sent_campaign([contact])
    held = Delivery.objects.get(campaign=later, contact=contact)
    assert held.status == Delivery.Status.HELD_BACK
    assert held.reason == "suppressed"


def test_a_soft_bounce_suppresses_nothing(client, secret):
    contact = customer()
    campaign = sent_campaign([contact])
    delivery = Delivery.objects.get(campaign=campaign, contact=contact)

    post_status(client, {"events": [{"id": "s-1", "type": "bounced", "bounce": "soft", "delivery_id": delivery.pk}]})

    delivery.refresh_from_db()
    assert delivery.reason == "soft_bounce"
    assert not Suppression.objects.exists()
    assert events("email_bounced", delivery).get().properties["bounce"] == "soft"


def test_a_complaint_suppresses_the_address_and_withdraws_the_email_consent(client, secret):
    contact = customer()
    campaign = sent_campaign([contact])
    delivery = Delivery.objects.get(campaign=campaign, contact=contact)

    response = post_status(client, {"events": [{"id": "c-1", "type": "complained", "delivery_id": delivery.pk}]})

    assert response.status_code == 200
    assert Suppression.objects.get(channel="email", address=delivery.to).reason == "complaint"
    consent = Consent.objects.select_related("change").get(contact=contact, channel="email")
    assert consent.status == "withdrawn"
    assert consent.change.source == "spam complaint"
    assert events("email_complained", delivery).count() == 1


def test_a_bad_signature_is_refused_with_403_and_changes_nothing(client, secret):
    contact = customer()
    campaign = sent_campaign([contact])
    delivery = Delivery.objects.get(campaign=campaign, contact=contact)
    payload = {"events": [{"id": "c-2", "type": "complained", "delivery_id": delivery.pk}]}
    body = json.dumps(payload).encode()

    wrong_secret = post_status(client, payload, secret="guessed")
    signed_other_body = client.post(
        STATUS_URL,
        data=body,
        content_type="application/json",
        headers={"x-dialoog-signature": webhook_signature(body=b"{}", secret=SECRET, timestamp=int(time.time()))},
    )
    unsigned = client.post(STATUS_URL, data=body, content_type="application/json")

    for response in (wrong_secret, signed_other_body, unsigned):
        assert response.status_code == 403
        assert response.json()["type"] == "client_error"
    assert not Suppression.objects.exists()
    assert not WebhookReceipt.objects.exists()


@pytest.mark.parametrize("offset", [-301, 301, -3600])
def test_a_stale_or_future_timestamp_is_refused_with_400(client, secret, offset):
    contact = customer()
    campaign = sent_campaign([contact])
    delivery = Delivery.objects.get(campaign=campaign, contact=contact)
    payload = {"events": [{"id": "d-1", "type": "delivered", "delivery_id": delivery.pk}]}

    response = post_status(client, payload, timestamp=int(time.time()) + offset)

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "X-Dialoog-Signature"
    delivery.refresh_from_db()
    assert delivery.delivered_at is None


def test_without_a_secret_every_report_is_refused_with_503(client, settings):
    settings.DELIVERY_WEBHOOK_SECRET = ""
    response = post_status(client, {"events": []}, secret="")
    assert response.status_code == 503
    assert "DELIVERY_WEBHOOK_SECRET" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"id": "e", "type": "opened", "delivery_id": 1}, "events.0.type"),
        ({"id": "e", "type": "bounced", "delivery_id": 1}, "events.0.bounce"),
        ({"id": "e", "type": "delivered"}, "events.0.delivery_id"),
        ({"id": "e", "type": "delivered", "message_id": "<abc@example.nl>"}, "events.0.message_id"),
        ({"type": "delivered", "delivery_id": 1}, "events.0.id"),
    ],
)
def test_a_bad_payload_is_a_400_that_names_the_field(client, secret, event, field):
    response = post_status(client, {"events": [event]})
    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == [field]


def test_a_body_that_is_not_json_is_a_400(client, secret):
    response = post_status(client, None, body=b"not json")
    assert response.status_code == 400


def test_the_status_webhook_is_in_the_api_schema_with_its_errors(client, marketeer):
    client.force_login(marketeer)
    schema = client.get("/api/schema/?format=json").json()
    operation = schema["paths"]["/api/v1/delivery-status/"]["post"]
    assert {"200", "400", "403", "503"} <= set(operation["responses"])


# --- The funnel -----------------------------------------------------------------------------------


def test_the_funnel_counts_each_step_and_conversions_inside_the_attribution_window(django_assert_num_queries):
    buyer, late_buyer, early_buyer, reader, no_consent = [customer() for _ in range(4)] + [customer(consent=())]
    campaign = sent_campaign([buyer, late_buyer, early_buyer, reader, no_consent])
    by_contact = {d.contact_id: d for d in Delivery.objects.filter(campaign=campaign)}
    sent_at = by_contact[buyer.pk].sent_at
    EventFactory(contact=buyer, occurred_at=sent_at + dt.timedelta(days=2))
    EventFactory(contact=buyer, occurred_at=sent_at + dt.timedelta(days=3))  # converts once
    EventFactory(contact=late_buyer, occurred_at=sent_at + dt.timedelta(days=40))  # after the 30 days
    EventFactory(contact=early_buyer, occurred_at=sent_at - dt.timedelta(hours=1))  # before the message
    EventFactory(contact=reader, type=Event.Type.PAGE_VIEW, occurred_at=sent_at + dt.timedelta(days=1))
    delivery_open_record(delivery_id=by_contact[reader.pk].pk)
    delivery_open_record(delivery_id=by_contact[buyer.pk].pk)
    delivery_click_record(delivery_id=by_contact[buyer.pk].pk, url="https://shop.example.nl/najaar")
    Delivery.objects.filter(pk=by_contact[buyer.pk].pk).update(delivered_at=sent_at)

    with django_assert_num_queries(4):
        funnel = campaign_funnel(campaign=campaign)

    assert funnel == {
        "planned": 5,
        "holdout": 0,
        "queued": 0,
        "sent": 4,
        "failed": 0,
        "held_back": 1,
        "held_back_by_reason": {"no_consent": 1},
        "delivered": 1,
        "opened": 2,
        "clicked": 1,
        "bounced": 0,
        "complained": 0,
        "converted": 1,
    }
    campaign.experiment.attribution_days = 45
    campaign.experiment.save(update_fields=["attribution_days"])
    assert campaign_funnel(campaign=campaign)["converted"] == 2


def test_the_funnel_counts_the_holdout_apart_and_never_as_converted():
    contacts = [customer() for _ in range(30)]
    campaign = sent_campaign(contacts, holdout_percent=50)
    holdout = Delivery.objects.filter(campaign=campaign, status=Delivery.Status.HOLDOUT)
    for delivery in holdout:
        EventFactory(contact=delivery.contact, occurred_at=timezone.now() + dt.timedelta(hours=1))

    funnel = campaign_funnel(campaign=campaign)

    run = campaign.runs.get()
    assert funnel["holdout"] == run.held_out == holdout.count() > 0
    assert funnel["planned"] == funnel["sent"] == run.planned == 30 - run.held_out
    assert funnel["converted"] == 0
