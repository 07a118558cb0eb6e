"""Triggered campaigns: the event and its properties start a contact's send after the delay, once;
only the first event counts when asked; events from before the activation do not."""

import datetime as dt

import pytest

from audiences.models import Event
from campaigns.channels import locmem
from campaigns.models import Campaign, CampaignRun, ContactPolicy, Delivery, TriggerEntry
from tests.campaign_helpers import activated, campaign_for, customer, send_everything

pytestmark = pytest.mark.django_db

START = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _empty_outbox():
    locmem.outbox.clear()
    yield
    locmem.outbox.clear()


def event(contact, at, type="purchase", **properties):
    return Event.objects.create(contact=contact, type=type, occurred_at=at, properties=properties)


def triggered(time_machine, contacts, **fields):
    time_machine.move_to(START, tick=False)
    campaign = campaign_for(
        contacts,
        kind=Campaign.Kind.TRIGGERED,
        trigger_event_type=fields.pop("trigger_event_type", "purchase"),
        holdout_percent=0,
        holdout_off_reason="Service message.",
        **fields,
    )
    return activated(campaign, now=START)


def at(time_machine, moment):
    time_machine.move_to(moment, tick=False)
    send_everything()


def recipients():
    return sorted(Delivery.objects.get(pk=message.delivery_id).contact_id for message in locmem.outbox)


def test_only_events_with_the_properties_start_a_send_after_the_delay_and_once(time_machine):
    garden, kitchen = customer(), customer()
    campaign = triggered(
        time_machine, [garden, kitchen], trigger_filters={"category": "Tuin"}, trigger_delay=dt.timedelta(hours=2)
    )
    event(garden, START + dt.timedelta(minutes=5), category="Tuin", product="Parasol")
    event(kitchen, START + dt.timedelta(minutes=5), category="Keuken")

    at(time_machine, START + dt.timedelta(minutes=10))
    at(time_machine, START + dt.timedelta(minutes=10))  # the same tick twice
    assert list(TriggerEntry.objects.filter(campaign=campaign).values_list("contact_id", "status")) == [
        (garden.pk, TriggerEntry.Status.WAITING)
    ]
    assert locmem.outbox == []

    at(time_machine, START + dt.timedelta(hours=2, minutes=6))
    at(time_machine, START + dt.timedelta(hours=2, minutes=7))

    assert recipients() == [garden.pk]
    assert TriggerEntry.objects.get(campaign=campaign).status == TriggerEntry.Status.PLANNED
    assert CampaignRun.objects.filter(campaign=campaign).count() == 1


def test_every_event_starts_its_own_send_unless_only_the_first_counts(time_machine):
    ContactPolicy.objects.update_or_create(pk=1, defaults={"cap_total": 10, "cap_per_channel": 10})
    each, first = customer(), customer()
    every_purchase = triggered(time_machine, [each])
    first_purchase = triggered(time_machine, [first], trigger_first_only=True)
    for minutes in (5, 65):
        event(each, START + dt.timedelta(minutes=minutes))
        event(first, START + dt.timedelta(minutes=minutes))
        at(time_machine, START + dt.timedelta(minutes=minutes + 1))

    assert Delivery.objects.filter(campaign=every_purchase, status=Delivery.Status.SENT).count() == 2
    assert Delivery.objects.filter(campaign=first_purchase, status=Delivery.Status.SENT).count() == 1


def test_a_contact_whose_earlier_purchase_came_before_the_campaign_is_not_a_first_buyer(time_machine):
    loyal, new = customer(), customer()
    event(loyal, START - dt.timedelta(days=200))
    campaign = triggered(time_machine, [loyal, new], trigger_first_only=True)
    event(loyal, START + dt.timedelta(minutes=5))
    event(new, START + dt.timedelta(minutes=5))

    at(time_machine, START + dt.timedelta(minutes=6))

    assert recipients() == [new.pk]
    assert TriggerEntry.objects.filter(campaign=campaign).count() == 1


def test_events_from_before_the_activation_start_nothing(time_machine):
    contact = customer()
    event(contact, START - dt.timedelta(minutes=30))
    campaign = triggered(time_machine, [contact])

    at(time_machine, START + dt.timedelta(minutes=1))

    assert not TriggerEntry.objects.filter(campaign=campaign).exists()
    assert locmem.outbox == []


def test_a_contact_outside_the_campaign_s_segments_is_stopped_with_the_reason(time_machine):
    inside, outside = customer(), customer()
    campaign = triggered(time_machine, [inside])
    event(inside, START + dt.timedelta(minutes=5))
    event(outside, START + dt.timedelta(minutes=5))

    at(time_machine, START + dt.timedelta(minutes=6))

    assert recipients() == [inside.pk]
    assert TriggerEntry.objects.get(campaign=campaign, contact=outside).reason == "not_in_audience"


def test_after_its_end_a_triggered_campaign_completes_and_starts_nothing(time_machine):
    contact = customer()
    campaign = triggered(time_machine, [contact], ends_at=START + dt.timedelta(hours=1))

    at(time_machine, START + dt.timedelta(hours=2))
    event(contact, START + dt.timedelta(hours=2))
    at(time_machine, START + dt.timedelta(hours=2, minutes=1))

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert locmem.outbox == []
    assert not TriggerEntry.objects.filter(campaign=campaign).exists()
