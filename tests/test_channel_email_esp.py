"""Campaign email through an ESP's API with django-anymail: the ESP's test backend stands for the
service (which is not on this machine); what it refuses or fails comes back as the ESP's errors."""

import pytest
from anymail.backends.test import EmailBackend as AnymailTestBackend
from anymail.exceptions import AnymailAPIError
from anymail.message import AnymailRecipientStatus
from django.core import mail

from campaigns.models import Delivery
from tests.campaign_helpers import activated, campaign_for, customer, send_everything

pytestmark = pytest.mark.django_db


class RefusingEsp(AnymailTestBackend):
    """The ESP: refuses an address it knows as bounced, answers 500 for one it cannot take now."""

    def post_to_esp(self, payload, message):
        to = message.to[0]
        if to.startswith("bounced"):
            rejected = AnymailRecipientStatus(
                message_id=None, status="rejected"
            )  # anymail raises AnymailRecipientsRefused
            message.anymail_test_response = {"recipient_status": {to: rejected}}
        elif to.startswith("invalid"):
            message.anymail_test_response = AnymailAPIError(status_code=422)
        elif to.startswith("busy"):
            message.anymail_test_response = AnymailAPIError("The ESP's API answered 503: try again later")
        return super().post_to_esp(payload, message)


@pytest.fixture
def esp(settings):
    settings.ANYMAIL = {}
    settings.CAMPAIGN_CHANNELS = {
        **settings.CAMPAIGN_CHANNELS,
        "email": {
            "BACKEND": "campaigns.channels.email.EmailChannel",
            "OPTIONS": {"EMAIL_BACKEND": f"{__name__}.RefusingEsp"},
        },
    }
    mail.outbox = []
    yield mail.outbox
    mail.outbox = []


def test_an_esp_gets_each_message_with_its_unsubscribe_headers_and_its_refusals_are_recorded(esp):
    fine, bounced, invalid, busy = customer(), customer(), customer(), customer()
    for contact, prefix in ((bounced, "bounced"), (invalid, "invalid"), (busy, "busy")):
        identity = contact.identities.get(kind="email")
        identity.value = f"{prefix}@example.nl"
        identity.save()
    campaign = activated(
        campaign_for(
            [fine, bounced, invalid, busy], holdout_percent=0, holdout_off_reason="Every customer, for the test."
        )
    )

    send_everything()

    deliveries = {d.contact_id: d for d in Delivery.objects.filter(campaign=campaign)}
    sent = deliveries[fine.pk]
    assert sent.status == Delivery.Status.SENT
    message = next(m for m in esp if m.to == [sent.to])
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.extra_headers["Message-ID"].startswith(f"<dialoog-delivery-{sent.pk}@")
    assert sent.provider_id == str(message.anymail_status.message_id)  # the ESP's own id, for its reports
    assert (deliveries[bounced.pk].status, deliveries[bounced.pk].reason) == (Delivery.Status.FAILED, "permanent_error")
    assert (deliveries[invalid.pk].status, deliveries[invalid.pk].reason) == (Delivery.Status.FAILED, "permanent_error")
    assert "422" in deliveries[invalid.pk].detail
    assert (deliveries[busy.pk].status, deliveries[busy.pk].reason) == (Delivery.Status.QUEUED, "transient_error")
    assert deliveries[busy.pk].next_attempt_at is not None
