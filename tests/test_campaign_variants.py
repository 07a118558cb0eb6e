"""A/B/n variants: the audience split over the variants by weight; with a test share, a one-off
campaign sends the test first, picks the winner on the conversions of each variant's treated
contacts once the test period is over, and sends the winner to the rest; never two messages."""

import datetime as dt
from collections import Counter
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django_celery_beat.models import CrontabSchedule

from audiences.services.events import EventIn, event_ingest
from campaigns.channels import locmem
from campaigns.models import Campaign, CampaignRun, CampaignVariant, Delivery
from campaigns.selectors import VariantResult, campaign_audience, campaign_variant_results
from campaigns.services import campaign_activate, campaign_cancel
from campaigns.services.sending import batch_send
from campaigns.services.variants import variant_best, variant_run_audience, variant_winners_pick
from campaigns.tracking.services import delivery_click_record
from goals.models import Assignment, Experiment
from tests.campaign_helpers import EMAIL_HTML, activated, campaign_for, customer, message_with, send_everything, tick

pytestmark = pytest.mark.django_db

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
START = dt.datetime(2026, 12, 8, 10, 0, tzinfo=AMSTERDAM)  # a Tuesday morning
HOURS = dt.timedelta(hours=1)
Purpose = CampaignRun.Purpose


@pytest.fixture(autouse=True)
def clock(time_machine):
    """Time stands still at START, and the outbox starts empty; move the clock on with `clock.move_to`."""
    time_machine.move_to(START, tick=False)
    locmem.outbox.clear()
    yield time_machine
    locmem.outbox.clear()


def variant_campaign(contacts, *, weights=(1, 1), **fields):
    """A draft campaign for these contacts with a variant per weight (A, B, ...), each its own email."""
    campaign = campaign_for(contacts, **fields)
    for name, weight in zip("ABCDE", weights, strict=False):
        html = EMAIL_HTML.replace("<p>Hallo", f"<p>Variant {name}. Hallo")
        CampaignVariant.objects.create(
            campaign=campaign, name=name, weight=weight, message=message_with(html=html, name=f"Najaar {name}")
        )
    return campaign


def buy(contact, when):
    [result] = event_ingest(
        items=[EventIn(type="purchase", occurred_at=when, contact_key=contact.contact_key, value=50)], source="test"
    )
    assert result.status == "stored"


def sent_to(deliveries):
    return set(deliveries.filter(status=Delivery.Status.SENT).values_list("contact_id", flat=True))


def held_out_contacts(campaign):
    return set(
        Assignment.objects.filter(experiment=campaign.experiment, group=Experiment.Group.HOLDOUT).values_list(
            "contact_id", flat=True
        )
    )


def outbox_contacts():
    by_delivery = dict(Delivery.objects.values_list("pk", "contact_id"))
    return Counter(by_delivery[message.delivery_id] for message in locmem.outbox)


# --- The test, then the winner ------------------------------------------------------------------


def test_a_variant_test_sends_its_share_then_the_winner_to_the_rest_and_nobody_twice(clock, django_assert_num_queries):
    contacts = [customer() for _ in range(200)]
    campaign = activated(variant_campaign(contacts, variant_test_percent=20, variant_test_hours=24))
    a, b = campaign.variants.order_by("pk")
    test_run = campaign.runs.get()
    assert test_run.purpose == Purpose.TEST

    send_everything()

    tested = Delivery.objects.filter(run=test_run)
    # The test share: a fifth of the audience, chosen by a hash of each contact's key (so the same
    # contacts whenever it is asked), the holdout held out of it as of any run.
    assert 20 <= tested.count() <= 60
    share = variant_run_audience(run=test_run, audience=campaign_audience(campaign=campaign))
    assert set(tested.values_list("contact_id", flat=True)) == set(share.values_list("pk", flat=True))
    holdout = held_out_contacts(campaign)
    assert set(tested.filter(status=Delivery.Status.HOLDOUT).values_list("contact_id", flat=True)) == holdout
    sent = tested.filter(status=Delivery.Status.SENT)
    assert sent.count() == tested.count() - len(holdout) == len(locmem.outbox)
    split = Counter(sent.values_list("variant_id", flat=True))
    assert set(split) == {a.pk, b.pk} and min(split.values()) >= sent.count() / 5
    for message in locmem.outbox:  # each contact got its variant's message
        variant = a if tested.get(pk=message.delivery_id).variant_id == a.pk else b
        assert f"Variant {variant.name}." in message.html
    winner_run = campaign.runs.get(purpose=Purpose.WINNER)
    assert winner_run.occurrence == "winner"
    assert winner_run.status == CampaignRun.Status.SCHEDULED
    assert winner_run.scheduled_for == START + 24 * HOURS
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING  # waiting for the rest

    # Before the test period is over nothing more is sent and there is no winner.
    clock.move_to(START + 23 * HOURS, tick=False)
    send_everything()
    assert len(locmem.outbox) == sent.count()
    assert not campaign.variants.filter(is_winner=True).exists()

    # Two of B's treated contacts buy; the purchase before the message, and the holdout's, do not count.
    b_treated = sorted(sent.filter(variant=b).values_list("contact_id", flat=True))
    a_treated = sorted(sent.filter(variant=a).values_list("contact_id", flat=True))
    by_pk = {contact.pk: contact for contact in contacts}
    for contact_id in b_treated[:2]:
        buy(by_pk[contact_id], START + 2 * HOURS)
    buy(by_pk[a_treated[0]], START - 2 * HOURS)
    for contact_id in holdout:
        buy(by_pk[contact_id], START + 3 * HOURS)

    clock.move_to(START + 24 * HOURS, tick=False)
    enqueued = tick()
    assert tick() == []  # a second tick picks no second winner, makes no second run and sends nothing more

    assert list(campaign.variants.filter(is_winner=True)) == [b]
    assert campaign.runs.filter(purpose=Purpose.WINNER).count() == 1
    with django_assert_num_queries(3):
        results = campaign_variant_results(campaign=campaign, purpose=Purpose.TEST)
    figures = {result.variant.name: result for result in results}
    assert (figures["A"].converted, figures["B"].converted) == (0, 2)
    assert figures["B"].treated == len(b_treated)

    for batch_id in enqueued:
        batch_send(batch_id=batch_id, worker="test-worker")
    send_everything()
    assert variant_winners_pick(now=START + 25 * HOURS) == []

    winner_run.refresh_from_db()
    assert winner_run.status == CampaignRun.Status.COMPLETED
    rest = Delivery.objects.filter(run=winner_run)
    assert set(rest.values_list("variant_id", flat=True)) == {b.pk}
    assert not set(rest.values_list("contact_id", flat=True)) & set(tested.values_list("contact_id", flat=True))
    # Every contact of the audience was planned once over the two runs, and got one message at most.
    per_contact = Counter(Delivery.objects.filter(campaign=campaign).values_list("contact_id", flat=True))
    assert set(per_contact) == {contact.pk for contact in contacts}
    assert set(per_contact.values()) == {1}
    received = outbox_contacts()
    assert set(received.values()) == {1}
    holdout = held_out_contacts(campaign)
    assert holdout and not holdout & set(received)
    assert set(received) == {contact.pk for contact in contacts} - holdout
    for message in locmem.outbox:
        if rest.filter(pk=message.delivery_id).exists():
            assert "Variant B." in message.html
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED


def test_the_winner_waits_until_the_test_has_been_sent(clock):
    contacts = [customer() for _ in range(40)]
    campaign = activated(variant_campaign(contacts, variant_test_percent=50, variant_test_hours=2))
    test_run = campaign.runs.get()
    waiting = tick()  # planned, but no worker sends it yet
    assert waiting

    clock.move_to(START + 3 * HOURS, tick=False)
    tick()

    test_run.refresh_from_db()
    assert test_run.status == CampaignRun.Status.SENDING
    assert not campaign.variants.filter(is_winner=True).exists()
    assert campaign.runs.get(purpose=Purpose.WINNER).status == CampaignRun.Status.SCHEDULED

    for batch_id in waiting:
        batch_send(batch_id=batch_id, worker="test-worker")
    assert tick() == []  # the test run is completed at the end of this tick: the next one picks
    send_everything()

    assert campaign.variants.filter(is_winner=True).count() == 1
    assert campaign.runs.get(purpose=Purpose.WINNER).status == CampaignRun.Status.COMPLETED
    assert set(outbox_contacts().values()) == {1}


def test_a_campaign_cancelled_during_its_test_picks_no_winner_and_sends_no_more(clock):
    contacts = [customer() for _ in range(30)]
    campaign = activated(variant_campaign(contacts, variant_test_percent=30, variant_test_hours=24))
    send_everything()
    sent = len(locmem.outbox)

    campaign_cancel(campaign=campaign)
    clock.move_to(START + 25 * HOURS, tick=False)
    send_everything()

    assert len(locmem.outbox) == sent
    assert not campaign.variants.filter(is_winner=True).exists()
    assert campaign.runs.get(purpose=Purpose.WINNER).status == CampaignRun.Status.CANCELLED


def _test_deliveries(campaign):
    return Delivery.objects.filter(run__campaign=campaign, run__purpose=Purpose.TEST, status=Delivery.Status.SENT)


def _no_conversions_b_clicked(campaign, a, b):
    delivery = _test_deliveries(campaign).filter(variant=b).first()
    delivery_click_record(delivery_id=delivery.pk, url="https://shop.example.nl/najaar")


def _equal_conversions_b_clicked(campaign, a, b):
    for delivery in _test_deliveries(campaign).select_related("contact"):  # everybody bought: 100% each
        buy(delivery.contact, START + HOURS)
    _no_conversions_b_clicked(campaign, a, b)


def _nothing(campaign, a, b):
    pass


@pytest.mark.parametrize(
    ("happened", "winner", "picked_on"),
    [
        (_no_conversions_b_clicked, "B", "click_rate"),
        (_equal_conversions_b_clicked, "B", "click_rate"),
        (_nothing, "A", "first_variant"),
    ],
)
def test_without_a_best_conversion_rate_the_click_rate_decides_then_the_first_variant(
    clock, happened, winner, picked_on
):
    contacts = [customer() for _ in range(60)]
    campaign = activated(variant_campaign(contacts, variant_test_percent=50, variant_test_hours=24))
    a, b = campaign.variants.order_by("pk")
    send_everything()
    happened(campaign, a, b)

    clock.move_to(START + 24 * HOURS, tick=False)
    [pick] = variant_winners_pick(now=START + 24 * HOURS)

    assert (pick.variant.name, pick.picked_on) == (winner, picked_on)
    assert [variant.name for variant in campaign.variants.filter(is_winner=True)] == [winner]
    assert variant_winners_pick(now=START + 24 * HOURS) == []


def _result(name, treated, converted=0, clicked=0):
    return VariantResult(variant=CampaignVariant(name=name), treated=treated, clicked=clicked, converted=converted)


@pytest.mark.parametrize(
    ("results", "winner", "picked_on"),
    [
        ([_result("A", 100, converted=5), _result("B", 50, converted=3)], "B", "conversion_rate"),  # 6% beats 5%
        ([_result("A", 100, converted=4, clicked=1), _result("B", 50, converted=2, clicked=9)], "B", "click_rate"),
        ([_result("A", 100, clicked=10), _result("B", 100, clicked=10)], "A", "first_variant"),
        ([_result("A", 0), _result("B", 20)], "B", "first_variant"),  # nobody received A: B was at least sent
        ([_result("A", 0), _result("B", 0)], "A", "first_variant"),
    ],
)
def test_the_best_variant_of_a_test(results, winner, picked_on):
    best, on = variant_best(results)
    assert (best.variant.name, on) == (winner, picked_on)


# --- Split only ----------------------------------------------------------------------------------


def test_without_a_test_share_the_whole_audience_is_split_by_weight_and_no_winner_follows(clock):
    contacts = [customer() for _ in range(200)]
    campaign = activated(variant_campaign(contacts, weights=(1, 3), holdout_percent=0, holdout_off_reason="test"))
    a, b = campaign.variants.order_by("pk")

    send_everything()
    clock.move_to(START + 48 * HOURS, tick=False)
    send_everything()

    [run] = campaign.runs.all()
    assert run.purpose == Purpose.SEND
    deliveries = Delivery.objects.filter(run=run)
    assert sent_to(deliveries) == {contact.pk for contact in contacts}
    split = Counter(deliveries.values_list("variant_id", flat=True))
    assert set(split) == {a.pk, b.pk}
    assert 0.1 <= split[a.pk] / 200 <= 0.4  # a quarter, by its weight
    assert not campaign.variants.filter(is_winner=True).exists()
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED


def test_a_recurring_campaign_gives_each_contact_the_same_variant_every_run_and_no_winner(clock):
    contacts = [customer() for _ in range(60)]
    daily = CrontabSchedule.objects.create(minute="0", hour="11", timezone="Europe/Amsterdam")
    campaign = activated(variant_campaign(contacts, weights=(2, 1), kind=Campaign.Kind.RECURRING, schedule=daily))

    for day in (0, 1):
        clock.move_to(START + dt.timedelta(days=day, hours=1), tick=False)
        send_everything()

    first, second = campaign.runs.order_by("scheduled_for")
    assert {first.purpose, second.purpose} == {Purpose.SEND}
    variants = [
        dict(Delivery.objects.filter(run=run).values_list("contact_id", "variant_id")) for run in (first, second)
    ]
    assert variants[0] == variants[1]
    assert len(set(variants[0].values())) == 2
    assert sent_to(Delivery.objects.filter(run=first)) == sent_to(Delivery.objects.filter(run=second))
    assert not campaign.variants.filter(is_winner=True).exists()


# --- Activation ----------------------------------------------------------------------------------


def refusal(campaign):
    with pytest.raises(ValidationError) as caught:
        campaign_activate(campaign=campaign)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT
    return caught.value.message_dict


def test_a_test_share_on_a_recurring_or_triggered_campaign_is_refused(english):
    daily = CrontabSchedule.objects.create(minute="0", hour="9", timezone="Europe/Amsterdam")
    recurring = variant_campaign([customer()], kind=Campaign.Kind.RECURRING, schedule=daily, variant_test_percent=10)
    triggered = variant_campaign(
        [customer()], kind=Campaign.Kind.TRIGGERED, trigger_event_type="purchase", variant_test_percent=10
    )

    assert refusal(recurring)["variant_test_percent"] == [
        "A test share with a winner is for one-off campaigns: a recurring campaign splits its whole "
        "audience over its variants every time. Set the test share to 0."
    ]
    assert "a triggered campaign splits" in refusal(triggered)["variant_test_percent"][0]


def test_a_test_needs_two_variants_and_a_test_period(english):
    one = variant_campaign([customer()], weights=(1,), variant_test_percent=10)
    none = campaign_for([customer()], variant_test_percent=10)
    no_period = variant_campaign([customer()], variant_test_percent=10, variant_test_hours=0)

    assert refusal(one)["variant_test_percent"][0].startswith("A test needs at least two variants")
    assert refusal(none)["variant_test_percent"][0].startswith("A test needs at least two variants")
    assert refusal(no_period)["variant_test_hours"] == [
        "The test needs a test period of at least one hour, to see which variant does best."
    ]
