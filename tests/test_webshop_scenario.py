"""The webshop scenario, end to end: a new customer's first purchase is posted; the contact API
shows it at once, the contact is a buyer and leaves the retargeting export; three days later the
onboarding email with related products goes out once, over SMTP, to a customer with email consent
and not to one without, nor to one who bought again or unsubscribed; a later purchase is a
conversion for the campaign's goal."""

import csv
import datetime as dt
import hashlib
import io
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.test import Client

from audiences.insights.products import products_refresh
from audiences.models import Identity
from audiences.selectors.segments import segment_contacts
from campaigns.models import AudienceExport, Campaign, Delivery, TriggerEntry
from campaigns.selectors import campaign_funnel
from campaigns.services import campaign_activate, campaign_create
from campaigns.services.exports import audience_export_run
from content.selectors import contact_links
from goals.experiments import experiment_measure
from tests.campaign_helpers import message_with, send_everything
from tests.factories import GoalFactory, SegmentFactory, UserFactory

pytestmark = pytest.mark.django_db

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
START = dt.datetime(2026, 12, 7, 10, 0, tzinfo=AMSTERDAM)  # a Monday morning

ONBOARDING_HTML = (
    "<html><body><p>Welkom {{ contact.first_name }}!</p><p>Bij uw aankoop raden we aan:</p>"
    "{% for product in products %}<p>{{ product.name }} ({{ product.price | currency }})</p>"
    "{% else %}<p>Bekijk onze toppers</p>{% endfor %}"
    '<p><a href="https://shop.example.nl/account">Uw account</a></p>'
    '<p><a href="{{ links.unsubscribe }}">Afmelden</a></p></body></html>'
)


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def webshop(api_client_for):
    from dialoog.roles import ADMINISTRATOR

    return api_client_for(UserFactory(username="webshop", role=ADMINISTRATOR))


def post_event(api, event_type, email, external_id, at, **fields):
    response = api.post(
        "/api/v1/events/",
        {"type": event_type, "occurred_at": at.isoformat(), "identities": {"email": email}, "external_id": external_id}
        | fields,
        format="json",
    )
    assert response.status_code == 201, response.json()
    return response.json()


def purchase(api, email, order_id, at, *lines):
    for index, (product, price) in enumerate(lines):
        post_event(
            api,
            "purchase",
            email,
            f"{order_id}-{index}",
            at,
            value=price,
            currency="EUR",
            properties={"category": "Barbecues", "product": product, "order_id": order_id},
        )


def consent(api, email, channel="email"):
    contact_key = api.get("/api/v1/contacts/", {"email": email}).json()["results"][0]["contact_key"]
    response = api.post(
        f"/api/v1/contacts/{contact_key}/consents/",
        {"channel": channel, "status": "granted", "proof": "Aangevinkt bij het afrekenen"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    return contact_key


def test_a_first_purchase_starts_the_onboarding_email_three_days_later_and_a_later_purchase_converts(
    webshop, smtp, time_machine
):
    time_machine.move_to(START - dt.timedelta(days=30), tick=False)
    # What the shop has sold before: barbecues with covers and brushes, the related products.
    for number in range(4):
        shopper = f"vaste.klant{number}@example.nl"
        lines = [("Gasbarbecue", "549.00"), ("Barbecuehoes", "39.00")] + ([("Grillborstel", "12.00")] * (number % 2))
        purchase(webshop, shopper, f"W-old-{number}", START - dt.timedelta(days=60), *lines)
    products_refresh()
    buyers = SegmentFactory(name="Kopers", rules={"version": 1, "root": {"event": "purchase"}})
    retargeting = SegmentFactory(
        name="Retargeting",
        rules={
            "version": 1,
            "root": {"all": [{"event": "page_view", "within_days": 30}, {"not": {"segment": buyers.pk}}]},
        },
    )
    retargeting_export = AudienceExport.objects.create(name="Retargeting", segment=retargeting, enabled=True)
    goal = GoalFactory(name="Tweede aankoop binnen 30 dagen")
    campaign = campaign_activate(
        campaign=campaign_create(
            name="Onboarding na de eerste aankoop",
            goal=goal,
            kind=Campaign.Kind.TRIGGERED,
            trigger_event_type="purchase",
            trigger_first_only=True,
            trigger_delay=dt.timedelta(days=3),
            stop_event_types=["purchase"],
            message=message_with(html=ONBOARDING_HTML, name="Onboarding"),
            channels=["email"],
            include_segments=[buyers],
            holdout_percent=0,
            holdout_off_reason="Every new customer is welcomed; its effect is measured on the second purchase.",
        )
    )

    # Four visitors of the shop; each buys for the first time on Monday morning.
    time_machine.move_to(START, tick=False)
    visitors = ["sanne@example.nl", "daan@example.nl", "emma@example.nl", "lucas@example.nl"]
    for number, email in enumerate(visitors):
        post_event(webshop, "page_view", email, f"view-{number}", START - dt.timedelta(days=2))
    audience_export_run(export=retargeting_export)
    assert sha256("sanne@example.nl") in retargeting_export.content.decode()

    sanne = consent(webshop, "sanne@example.nl")  # opted in at the checkout
    consent(webshop, "emma@example.nl")
    consent(webshop, "lucas@example.nl")  # daan did not opt in
    for number, email in enumerate(visitors):
        purchase(webshop, email, f"W-{number}", START, ("Gasbarbecue", "499.00"))

    # At once: the purchase in the profile, the contact a buyer, out of the retargeting export.
    profile = webshop.get(f"/api/v1/contacts/{sanne}/").json()
    latest = profile["recent_events"][0]
    assert (latest["type"], latest["properties"]["product"], latest["value"]) == ("purchase", "Gasbarbecue", "499.00")
    contact = Identity.objects.get(kind="email", value="sanne@example.nl").contact
    assert segment_contacts(segment=buyers).filter(pk=contact.pk).exists()
    audience_export_run(export=retargeting_export)
    exported = {row["email_sha256"] for row in csv.DictReader(io.StringIO(retargeting_export.content.decode()))}
    assert sha256("sanne@example.nl") not in exported

    # The next days: emma buys again (stop), lucas unsubscribes from the link in an earlier mail.
    time_machine.move_to(START + dt.timedelta(minutes=1), tick=False)
    send_everything()
    assert TriggerEntry.objects.filter(campaign=campaign).count() == 4
    time_machine.move_to(START + dt.timedelta(days=1), tick=False)
    purchase(webshop, "emma@example.nl", "W-emma-2", START + dt.timedelta(days=1), ("Barbecuehoes", "39.00"))
    lucas = Identity.objects.get(kind="email", value="lucas@example.nl").contact
    unsubscribe = contact_links(lucas.contact_key)["unsubscribe"].removeprefix(settings.PUBLIC_URL)
    assert Client().post(f"{unsubscribe}?channel=email").status_code == 200
    time_machine.move_to(START + dt.timedelta(days=2, hours=23), tick=False)
    send_everything()
    assert smtp.messages == []  # not yet: three days after the purchase

    time_machine.move_to(START + dt.timedelta(days=3, minutes=1), tick=False)
    send_everything()
    send_everything()  # and once more, as the next tick

    assert [message["To"] for message in smtp.messages] == ["sanne@example.nl"]
    html = smtp.messages[0].get_body(("html",)).get_content()
    assert "Barbecuehoes" in html and "Grillborstel" in html  # bought with barbecues
    assert "Gasbarbecue (" not in html  # what she has already
    assert smtp.messages[0]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    reasons = {
        entry.contact.identities.get(kind="email").value: (entry.status, entry.reason)
        for entry in TriggerEntry.objects.filter(campaign=campaign).select_related("contact")
    }
    assert reasons["emma@example.nl"] == (TriggerEntry.Status.STOPPED, "stop_event")
    held = dict(
        Delivery.objects.filter(campaign=campaign)
        .exclude(status=Delivery.Status.SENT)
        .values_list("contact__identities__value", "reason")
    )
    assert held == {"daan@example.nl": "no_consent", "lucas@example.nl": "no_consent"}

    # A week later Sanne buys again: a conversion for the campaign's goal.
    time_machine.move_to(START + dt.timedelta(days=10), tick=False)
    purchase(webshop, "sanne@example.nl", "W-sanne-2", START + dt.timedelta(days=10), ("Barbecuehoes", "39.00"))
    assert campaign_funnel(campaign=campaign)["converted"] == 1
    uplift = experiment_measure(experiment=campaign.experiment, day=(START + dt.timedelta(days=10)).date())
    assert uplift.treatment_conversions == 1
