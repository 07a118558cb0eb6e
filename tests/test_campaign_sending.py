import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.channels import locmem
from campaigns.models import Campaign, CampaignRun, Delivery, DeliveryBatch
from tests.campaign_helpers import activated, campaign_for, customer, send_everything

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _empty_outbox():
    locmem.outbox.clear()
    yield
    locmem.outbox.clear()


def test_a_one_off_campaign_sends_each_treated_contact_one_email_and_holds_the_rest_out():
    contacts = [customer() for _ in range(40)]
    campaign = activated(campaign_for(contacts))

    send_everything()
    send_everything()  # a second tick and worker find nothing more to do

    run = CampaignRun.objects.get(campaign=campaign)
    deliveries = Delivery.objects.filter(run=run)
    sent = deliveries.filter(status=Delivery.Status.SENT)
    held_out = deliveries.filter(status=Delivery.Status.HOLDOUT)
    assert sent.count() + held_out.count() == 40
    assert sent.count() == run.planned > 0
    assert held_out.count() == run.held_out
    assert sorted(m.delivery_id for m in locmem.outbox) == sorted(sent.values_list("pk", flat=True))
    message = locmem.outbox[0]
    assert message.subject.startswith("Najaarsactie voor ")
    assert message.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "/t/o/" in message.html and "/t/c/" in message.html
    run.refresh_from_db()
    campaign.refresh_from_db()
    assert run.status == CampaignRun.Status.COMPLETED
    assert campaign.status == Campaign.Status.COMPLETED
    assert not DeliveryBatch.objects.filter(run=run).exclude(status=DeliveryBatch.Status.DONE).exists()
    campaign.experiment.refresh_from_db()
    assert campaign.experiment.emails_sent == sent.count()


def test_consent_withdrawn_after_planning_holds_the_message_back_with_the_reason():
    from audiences.services.consents import consent_record

    contacts = [customer() for _ in range(10)]
    campaign = activated(campaign_for(contacts, holdout_percent=0, holdout_off_reason="test"))
    enqueued = []
    from campaigns.services.runs import dispatch_tick
    from campaigns.services.sending import batch_send

    dispatch_tick(enqueue=enqueued.extend)
    consent_record(contact=contacts[0], channel="email", status="withdrawn", source="test")
    for batch_id in enqueued:
        batch_send(batch_id=batch_id, worker="w")

    withdrawn = Delivery.objects.get(campaign=campaign, contact=contacts[0])
    assert withdrawn.status == Delivery.Status.HELD_BACK
    assert withdrawn.reason == "no_consent"
    assert Delivery.objects.filter(campaign=campaign, status=Delivery.Status.SENT).count() == 9


def test_a_batch_takes_a_constant_number_of_queries_whatever_its_size():
    def queries_for(size):
        contacts = [customer() for _ in range(size)]
        activated(campaign_for(contacts, holdout_percent=0, holdout_off_reason="test"))
        enqueued = []
        from campaigns.services.runs import dispatch_tick
        from campaigns.services.sending import batch_send

        dispatch_tick(enqueue=enqueued.extend)
        with CaptureQueriesContext(connection) as captured:
            for batch_id in enqueued:
                batch_send(batch_id=batch_id, worker="w")
        return len(captured)

    queries_for(3)  # the first send makes the contact policy's row
    assert queries_for(5) == queries_for(60)
