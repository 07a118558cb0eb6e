import re

import pytest
from django.conf import settings
from django.test import Client

from audiences.models import Consent, ConsentChange
from campaigns.channels import locmem
from campaigns.models import Delivery
from campaigns.services.runs import dispatch_tick
from campaigns.services.sending import batch_send
from content.selectors import contact_links
from tests.campaign_helpers import activated, campaign_for, customer, send_everything

pytestmark = pytest.mark.django_db(transaction=True)

ONE_CLICK = "List-Unsubscribe=One-Click"


@pytest.fixture(autouse=True)
def _empty_outbox():
    locmem.outbox.clear()
    yield
    locmem.outbox.clear()


def unsubscribe_path(contact, channel=None):
    path = contact_links(contact.contact_key)["unsubscribe"].removeprefix(settings.PUBLIC_URL)
    return f"{path}?channel={channel}" if channel else path


def preferences_path(contact):
    return contact_links(contact.contact_key)["preferences"].removeprefix(settings.PUBLIC_URL)


def consent_of(contact, channel="email"):
    return Consent.objects.select_related("change").get(contact=contact, channel=channel)


def no_csrf_client(**headers):
    """A client that, like a mailbox provider's server, has no cookies and no CSRF token."""
    return Client(enforce_csrf_checks=True, headers=headers)


def test_the_page_is_in_the_contacts_language_dutch_and_changes_nothing_on_get():
    contact = customer(locale="nl")

    response = Client(headers={"accept-language": "nl"}).get(unsubscribe_path(contact))

    assert response.status_code == 200
    assert response["Content-Language"] == "nl"
    page = response.content.decode()
    assert '<html lang="nl">' in page
    assert '<form method="post">' in page and "<button" in page
    assert "/admin/" not in page and "Django" not in page  # its own page, no admin chrome
    assert response["Cache-Control"].startswith("max-age=0")
    assert consent_of(contact).status == "granted"


def test_the_page_is_in_english_for_an_english_contact_naming_the_channel(english):
    contact = customer(locale="en")

    email = Client(headers={"accept-language": "nl"}).get(unsubscribe_path(contact))
    sms = Client().get(unsubscribe_path(contact, "sms"))

    assert email["Content-Language"] == "en"
    assert "Do you no longer want to receive emails from us?" in email.content.decode()
    assert "text messages (SMS)" in sms.content.decode()


def test_a_contact_in_a_language_we_do_not_have_gets_the_browsers(english):
    contact = customer(locale="de")

    response = Client(headers={"accept-language": "en-GB,en;q=0.9"}).get(unsubscribe_path(contact, "phone"))

    assert response["Content-Language"] == "en"
    assert "phone calls" in response.content.decode()


def test_the_button_withdraws_the_consent_for_the_channel_and_confirms(english):
    contact = customer(locale="en", consent=("email", "sms"))

    response = Client(headers={"user-agent": "Firefox"}).post(unsubscribe_path(contact, "sms"))

    assert response.status_code == 200
    assert "You will no longer receive text messages (SMS) from us." in response.content.decode()
    withdrawn = consent_of(contact, "sms")
    assert withdrawn.status == "withdrawn"
    assert withdrawn.change.source == "unsubscribe link"
    assert "unsubscribe page button" in withdrawn.change.proof and "Firefox" in withdrawn.change.proof
    assert consent_of(contact, "email").status == "granted"


def test_one_click_unsubscribe_works_without_csrf_token_or_cookies_and_is_idempotent():
    contact = customer()
    client = no_csrf_client()

    first = client.post(
        unsubscribe_path(contact, "email"), data=ONE_CLICK, content_type="application/x-www-form-urlencoded"
    )
    again = client.post(
        unsubscribe_path(contact, "email"), data=ONE_CLICK, content_type="application/x-www-form-urlencoded"
    )

    assert first.status_code == again.status_code == 200
    assert not first.cookies  # no CSRF or session cookie is handed out
    consent = consent_of(contact)
    assert consent.status == "withdrawn"
    assert "RFC 8058" in consent.change.proof
    assert ConsentChange.objects.filter(contact=contact, channel="email", status="withdrawn").count() == 1


def test_the_list_unsubscribe_header_of_a_sent_email_stops_the_next_campaign():
    contact = customer()
    activated(campaign_for([contact], holdout_percent=0, holdout_off_reason="test"))
    send_everything()
    [message] = locmem.outbox
    header = re.fullmatch(r"<(.+)>", message.headers["List-Unsubscribe"]).group(1)

    response = no_csrf_client().post(
        header.removeprefix(settings.PUBLIC_URL), data=ONE_CLICK, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200

    later = activated(campaign_for([contact], holdout_percent=0, holdout_off_reason="test"))
    send_everything()
    held = Delivery.objects.get(campaign=later, contact=contact)
    assert held.status == Delivery.Status.HELD_BACK
    assert held.reason == "no_consent"
    assert len(locmem.outbox) == 1


def test_unsubscribing_after_planning_holds_the_message_back_at_send_time():
    contact = customer()
    campaign = activated(campaign_for([contact], holdout_percent=0, holdout_off_reason="test"))
    enqueued = []
    dispatch_tick(enqueue=enqueued.extend)

    no_csrf_client().post(
        unsubscribe_path(contact, "email"), data=ONE_CLICK, content_type="application/x-www-form-urlencoded"
    )
    for batch_id in enqueued:
        batch_send(batch_id=batch_id, worker="w")

    delivery = Delivery.objects.get(campaign=campaign, contact=contact)
    assert delivery.status == Delivery.Status.HELD_BACK
    assert delivery.reason == "no_consent"
    assert not locmem.outbox


@pytest.mark.parametrize("token", ["nonsense", "00000000-0000-0000-0000-000000000000:forged"])
def test_a_bad_token_is_a_404_page_in_plain_words(english, token):
    contact = customer()

    get = Client(headers={"accept-language": "en"}).get(f"/m/{token}/unsubscribe/")
    post = no_csrf_client().post(
        f"/m/{token}/unsubscribe/", data=ONE_CLICK, content_type="application/x-www-form-urlencoded"
    )

    assert get.status_code == post.status_code == 404
    assert "This link does not work" in get.content.decode()
    assert consent_of(contact).status == "granted"


def test_a_token_of_a_contact_signed_with_another_salt_is_not_accepted():
    from django.core import signing

    contact = customer()
    token = signing.Signer(salt="campaigns.tracking").sign(str(contact.contact_key))

    response = no_csrf_client().post(
        f"/m/{token}/unsubscribe/", data=ONE_CLICK, content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 404
    assert consent_of(contact).status == "granted"


def test_the_preferences_page_shows_each_channel_and_changes_it(english):
    contact = customer(locale="en")
    client = Client()

    page = client.get(preferences_path(contact)).content.decode()
    assert "Emails: yes" in page and "Text messages (SMS): no" in page and "Phone calls: no" in page

    response = client.post(preferences_path(contact), {"channel": "sms", "granted": "1"})
    assert response.status_code == 302
    client.post(preferences_path(contact), {"channel": "email", "granted": "0"})

    assert consent_of(contact, "sms").status == "granted"
    assert consent_of(contact, "sms").change.source == "preferences page"
    assert consent_of(contact, "email").status == "withdrawn"
    assert "Saved." in client.get(response["Location"]).content.decode()


def test_the_preferences_page_keeps_its_csrf_protection():
    contact = customer()

    response = no_csrf_client().post(preferences_path(contact), {"channel": "sms", "granted": "1"})

    assert response.status_code == 403
    assert not Consent.objects.filter(contact=contact, channel="sms").exists()
