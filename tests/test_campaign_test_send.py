"""Test-send: the campaign's messages rendered as a real send renders them, to a few addresses,
recorded nowhere as a delivery."""

from collections.abc import Sequence

import pytest
from django.contrib.admin.models import LogEntry
from django.core.exceptions import ValidationError
from django.urls import reverse

from campaigns.channels.base import BaseChannel, OutboundMessage, Outcome
from campaigns.models import CampaignVariant, Delivery
from campaigns.services.test_send import MAX_ADDRESSES, campaign_test_send
from content.models import Template
from content.services import template_version_create
from tests.campaign_helpers import EMAIL_HTML, activated, campaign_for, customer, message_with, outbox, send_everything
from tests.factories import TemplateFactory

pytestmark = pytest.mark.django_db


class RefusingChannel(BaseChannel):
    """A provider that refuses every address."""

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[Outcome]:
        return [Outcome.permanent(message, "550 5.1.1 mailbox unavailable") for message in messages]


@pytest.fixture(autouse=True)
def _empty_outbox():
    outbox().clear()
    yield
    outbox().clear()


@pytest.fixture
def as_marketeer(english_client, marketeer):
    return english_client(marketeer)


def send_url(campaign):
    return reverse("admin:campaigns_campaign_test_send", args=[campaign.pk])


def test_a_draft_is_test_sent_from_its_page_with_test_in_the_subject(as_marketeer, marketeer):
    contact = customer(first_name="Joris")
    campaign = campaign_for([contact], channels=("email", "sms"))

    form = as_marketeer.get(send_url(campaign))
    response = as_marketeer.post(
        send_url(campaign), {"addresses": "tester@example.nl\n\n06-12345678\n", "contact": ""}, follow=True
    )

    assert form.status_code == 200
    assert f"personalised as {contact}" in form.content.decode()
    assert response.redirect_chain[-1][0] == reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    by_channel = {message.channel: message for message in outbox()}
    assert set(by_channel) == {"email", "sms"}
    email, sms = by_channel["email"], by_channel["sms"]
    assert email.to == "tester@example.nl"
    assert email.subject == "[TEST] Najaarsactie voor Joris"
    assert sms.to == "+31612345678"
    assert sms.text == "[TEST] Hoi Joris, 20% korting!"
    assert not Delivery.objects.exists()
    html = response.content.decode()
    assert "Test sent to tester@example.nl (Email). Subject: [TEST] Najaarsactie voor Joris" in html
    assert "Test sent to +31612345678 (SMS)." in html
    entry = LogEntry.objects.get(object_id=str(campaign.pk))
    assert entry.user == marketeer
    assert "tester@example.nl" in entry.get_change_message()


def test_a_test_is_the_real_message_and_counts_for_nothing(marketeer):
    contact = customer(first_name="Sanne")
    campaign = activated(campaign_for([contact], holdout_percent=0, holdout_off_reason="test"))

    [outcome] = campaign_test_send(campaign=campaign, addresses=["tester@example.nl"], contact=contact, user=marketeer)
    [test] = outbox()
    assert outcome.sent
    assert not Delivery.objects.exists()  # no frequency cap, goal or funnel sees it
    outbox().clear()
    send_everything()
    [real] = outbox()

    assert test.subject == f"[TEST] {real.subject}"
    assert (test.text, test.from_email, test.reply_to) == (real.text, real.from_email, real.reply_to)
    assert test.to == "tester@example.nl" != real.to
    assert test.headers["List-Unsubscribe"] == real.headers["List-Unsubscribe"]
    assert "List-Unsubscribe-Post" not in test.headers  # no one-click withdrawal for the real contact
    assert test.headers["X-Dialoog-Test"] == "1"
    assert "/t/c/0/" in test.html  # tracked links that point at no delivery
    assert Delivery.objects.filter(campaign=campaign, status=Delivery.Status.SENT).count() == 1


def test_personalised_as_a_chosen_contact(as_marketeer):
    first, chosen = customer(first_name="Eerste"), customer(first_name="Gekozen")
    campaign = campaign_for([first, chosen])
    address = chosen.identities.get(kind="email").value

    as_marketeer.post(send_url(campaign), {"addresses": "tester@example.nl", "contact": address})

    [message] = outbox()
    assert message.subject == "[TEST] Najaarsactie voor Gekozen"
    assert message.to == "tester@example.nl"


def test_a_contact_that_is_not_found_is_a_form_error(as_marketeer):
    campaign = campaign_for([customer()])

    response = as_marketeer.post(send_url(campaign), {"addresses": "tester@example.nl", "contact": "nobody@x.nl"})

    assert response.status_code == 200
    assert "No contact has “nobody@x.nl”." in response.content.decode()
    assert outbox() == []


def test_an_empty_audience_personalises_with_the_sample_profile(marketeer):
    campaign = campaign_for([])

    [outcome] = campaign_test_send(campaign=campaign, addresses=["tester@example.nl"], user=marketeer)

    assert outcome.sent
    assert outbox()[0].subject == "[TEST] Najaarsactie voor Sanne"


def test_each_variant_is_sent(marketeer):
    campaign = campaign_for([customer(first_name="Lotte")])
    for name, subject in [("A", "Korting voor {{ contact.first_name }}"), ("B", "{{ contact.first_name }}, kijk!")]:
        template = TemplateFactory(channel=Template.Channel.EMAIL)
        template_version_create(template=template, language="nl", subject=subject, html=EMAIL_HTML)
        CampaignVariant.objects.create(campaign=campaign, name=name, message=template.message)

    outcomes = campaign_test_send(campaign=campaign, addresses=["tester@example.nl"], user=marketeer)

    assert [outcome.variant for outcome in outcomes] == ["A", "B"]
    assert sorted(message.subject for message in outbox()) == [
        "[TEST] [A] Korting voor Lotte",
        "[TEST] [B] Lotte, kijk!",
    ]


@pytest.mark.parametrize(
    ("addresses", "error"),
    [
        ("tester@example.nl\nnonsense", "Line 2: “nonsense” is neither an email address nor a phone number."),
        ("tester@example\n", "Line 1: “tester@example” is not an email address."),
        ("\n\n0612345678", "Line 3: “0612345678” is a phone number, but this campaign sends no SMS."),
        ("", "This field is required."),
        ("\n \n", "Give at least one email address or phone number, one a line."),
        (
            "\n".join(f"tester{n}@example.nl" for n in range(MAX_ADDRESSES + 1)),
            f"A test goes to at most {MAX_ADDRESSES} addresses at a time; these are {MAX_ADDRESSES + 1}.",
        ),
    ],
)
def test_bad_addresses_are_refused_naming_the_line(as_marketeer, addresses, error):
    campaign = campaign_for([customer()])

    response = as_marketeer.post(send_url(campaign), {"addresses": addresses})

    assert response.status_code == 200
    assert error in response.content.decode()
    assert outbox() == []


def test_an_email_address_for_a_campaign_without_email_is_refused(marketeer, english):
    campaign = campaign_for([customer(phone=True, consent=("sms",))], channels=("sms",))

    with pytest.raises(ValidationError) as refused:
        campaign_test_send(campaign=campaign, addresses=["0612345678", "tester@example.nl"], user=marketeer)

    assert refused.value.message_dict == {
        "addresses": ["Line 2: “tester@example.nl” is an email address, but this campaign sends no email."]
    }
    assert outbox() == []


def test_a_template_that_fails_its_checks_says_why(as_marketeer):
    message = message_with(email=False)
    template = TemplateFactory(message=message, channel=Template.Channel.EMAIL)  # no version yet
    campaign = campaign_for([customer()], message=message)

    response = as_marketeer.post(send_url(campaign), {"addresses": "tester@example.nl"})

    html = response.content.decode()
    assert "The test was not sent:" in html
    assert f"“{template}” has no version in its default language (nl)." in html
    assert outbox() == []


def test_a_refusing_provider_is_an_outcome_shown_to_the_marketeer(as_marketeer, settings):
    settings.CAMPAIGN_CHANNELS = {
        **settings.CAMPAIGN_CHANNELS,
        "email": {"BACKEND": "tests.test_campaign_test_send.RefusingChannel"},
    }
    campaign = campaign_for([customer()])

    response = as_marketeer.post(send_url(campaign), {"addresses": "tester@example.nl"}, follow=True)

    assert "The test to tester@example.nl (Email) failed: 550 5.1.1 mailbox unavailable" in response.content.decode()
    assert not LogEntry.objects.exists()  # nothing was sent
