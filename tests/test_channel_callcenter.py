"""The callcenter channel: the call list, its export, and the outcome of a call in the customer's history."""

import csv
import io

import pytest
from django.core.exceptions import ValidationError

from audiences.models import Event
from campaigns.channels.callcenter import CALL_LIST_COLUMNS, CallListChannel, call_list_csv, call_outcome_record
from campaigns.models import CallListItem, ContactPolicy, Delivery
from campaigns.services.sending import Composer
from tests.campaign_helpers import activated, campaign_for, customer, send_everything

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _call_lists(settings):
    settings.CAMPAIGN_CHANNELS = {
        **settings.CAMPAIGN_CHANNELS,
        "callcenter": {"BACKEND": "campaigns.channels.callcenter.CallListChannel"},
    }
    # Calls keep quiet hours by default; these tests make call lists whatever the hour on the machine.
    ContactPolicy.objects.update_or_create(pk=1, defaults={"quiet_channels": []})


def _call_campaign(count):
    contacts = [
        customer(email=False, phone=True, consent=("phone",), first_name=f"Femke{n}", last_name="Bakker")
        for n in range(count)
    ]
    campaign = activated(campaign_for(contacts, channels=("callcenter",), holdout_percent=0, holdout_off_reason="test"))
    send_everything()
    send_everything()
    return contacts, campaign


def test_each_sent_call_delivery_is_one_item_on_the_call_list_with_its_script_and_number():
    _contacts, campaign = _call_campaign(4)

    sent = Delivery.objects.filter(campaign=campaign, status=Delivery.Status.SENT)
    assert sent.count() == 4
    items = {item.delivery_id: item for item in CallListItem.objects.filter(campaign=campaign)}
    assert sorted(items) == sorted(sent.values_list("pk", flat=True))
    for delivery in sent:
        item = items[delivery.pk]
        assert item.contact_id == delivery.contact_id
        assert item.phone == delivery.to == delivery.contact.identities.get(kind="phone").value
        assert item.status == CallListItem.Status.OPEN
        assert item.script["text"] == f"Goedemiddag {delivery.contact.first_name}."
        assert item.script["talking_points"] == ["Najaarsactie", "Gratis bezorging"]
        assert item.script["offer_pitch"] == "20% korting"
        assert delivery.provider_id == f"call-list-item-{item.pk}"


def test_a_call_list_handed_over_again_makes_no_second_item():
    _contacts, campaign = _call_campaign(2)
    deliveries = list(
        Delivery.objects.filter(campaign=campaign).values("id", "run_id", "contact_id", "channel", "variant_id")
    )
    composer = Composer(campaign, [d["contact_id"] for d in deliveries], {"callcenter"})
    messages = [composer.compose(delivery, campaign.message_id) for delivery in deliveries]

    outcomes = CallListChannel(channel="callcenter").send_batch(messages)

    assert [outcome.result for outcome in outcomes] == ["sent", "sent"]
    assert CallListItem.objects.filter(campaign=campaign).count() == 2


def test_the_call_list_export_has_the_open_items_with_name_phone_script_and_pitch(agent):
    _contacts, campaign = _call_campaign(3)
    called = CallListItem.objects.filter(campaign=campaign).order_by("pk").first()
    call_outcome_record(item=called, outcome="interested", agent=agent)

    rows = list(csv.reader(io.StringIO(call_list_csv(campaign=campaign))))

    assert tuple(rows[0]) == CALL_LIST_COLUMNS
    assert len(rows) == 3  # the header and the two open items
    open_items = CallListItem.objects.filter(campaign=campaign, status=CallListItem.Status.OPEN).order_by("pk")
    for row, item in zip(rows[1:], open_items, strict=True):
        assert row == [
            str(item.contact.contact_key),
            f"{item.contact.first_name} Bakker",
            item.phone,
            campaign.name,
            f"Goedemiddag {item.contact.first_name}.",
            "20% korting",
        ]
    assert str(called.contact.contact_key) not in call_list_csv(campaign=campaign)


def test_a_call_outcome_closes_the_item_and_goes_into_the_customers_history_once(agent):
    _contacts, campaign = _call_campaign(1)
    item = CallListItem.objects.get(campaign=campaign)

    call_outcome_record(item=item, outcome="interested", agent=agent)

    item.refresh_from_db()
    assert item.status == CallListItem.Status.DONE
    assert item.outcome == "interested"
    assert item.called_by == agent and item.called_at is not None
    event = Event.objects.get(contact=item.contact_id, type="call_outcome")
    assert event.properties == {"outcome": "interested", "campaign_id": campaign.pk, "delivery_id": item.delivery_id}

    with pytest.raises(ValidationError):
        call_outcome_record(item=item, outcome="not_interested", agent=agent)
    assert Event.objects.filter(contact=item.contact_id, type="call_outcome").count() == 1
    item.refresh_from_db()
    assert item.outcome == "interested"


def test_a_call_outcome_must_say_how_the_call_went(agent):
    _contacts, campaign = _call_campaign(1)
    item = CallListItem.objects.get(campaign=campaign)

    with pytest.raises(ValidationError) as error:
        call_outcome_record(item=item, outcome="  ", agent=agent)

    assert "outcome" in error.value.message_dict
    item.refresh_from_db()
    assert item.status == CallListItem.Status.OPEN
    assert not Event.objects.filter(contact=item.contact_id, type="call_outcome").exists()
