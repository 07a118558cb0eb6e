"""The next-best offer: eligibility, contact policies, arbitration (P x C x V x L), explanations,
holdout, and the answers flowing back."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from decimal import Decimal

import pytest
from django.utils import timezone

from audiences.models import Event, Score
from audiences.services.consents import consent_record
from campaigns.models import Offer, OfferContextWeight, OfferDecision, OfferDecisionItem, OfferResponse
from campaigns.offers.catalogue import catalogue_forget
from campaigns.offers.decisions import ContactNotFound, contact_lookup, offer_decide
from campaigns.offers.services import ResponseConflict, offer_assignments_record, offer_response_record
from goals.experiments import buckets_below, holdout_bucket
from goals.models import Assignment, Experiment
from tests.campaign_helpers import static_segment
from tests.offer_helpers import caller, live_campaign, offer

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]


def decide(contact, **kwargs):
    return offer_decide(lookup="id", value=contact.pk, **kwargs)


def names(decision):
    return [item.spec.name for item in decision.offers]


def reasons(decision):
    return {left.name: left.reason for left in decision.left_out}


def test_offers_rank_by_propensity_context_value_and_lever():
    contact = caller(first_name="Sanne")
    campaign = live_campaign()
    offer(name="Tuinset", value=120, campaign=campaign, propensity_default=0.3)  # 36
    offer(name="Heggenschaar", value=50, campaign=campaign, propensity_default=0.5, lever=2.0)  # 50
    kit = offer(name="Zaaipakket", value=10, campaign=campaign, propensity_default=0.9)  # 9, x5 on the phone = 45
    OfferContextWeight.objects.create(offer=kit, channel="callcenter", weight=5)
    catalogue_forget()

    decision = decide(contact, limit=3)

    assert names(decision) == ["Heggenschaar", "Zaaipakket", "Tuinset"]
    scores = [round(item.score, 6) for item in decision.offers]
    assert scores == [50.0, 45.0, 36.0]
    top = decision.offers[0]
    assert "propensity 0.50 (fixed)" in top.explanation and "lever 2.00" in top.explanation
    assert "€ 50,00" in top.explanation
    assert "context weight 5.00" in decision.offers[1].explanation
    assert top.script["text"] == "Goedemiddag Sanne, Heggenschaar!"
    assert top.script["offer_pitch"] == "Nu € 50,00"
    # The decision is recorded with its items, in rank order.
    stored = OfferDecision.objects.get(pk=decision.id)
    assert list(stored.items.values_list("offer__name", "rank", "presented")) == [
        ("Heggenschaar", 1, True),
        ("Zaaipakket", 2, True),
        ("Tuinset", 3, True),
    ]
    # With room for one, the others are left out with their rank and score.
    one = decide(contact, limit=1)
    assert names(one) == ["Heggenschaar"]
    assert reasons(one)["Tuinset"].startswith("ranked 3 with score 36.00")


def test_eligibility_comes_from_each_offers_segment():
    gardener, other = caller(), caller()
    garden = static_segment([gardener], name="Tuinliefhebbers")
    offer(name="Tuinset", segment=garden)
    offer(name="Voor iedereen")

    assert names(decide(gardener)) == ["Tuinset", "Voor iedereen"]
    assert "in segment Tuinliefhebbers" in decide(gardener).offers[0].explanation
    decision = decide(other)
    assert names(decision) == ["Voor iedereen"]
    assert reasons(decision) == {"Tuinset": "not in segment Tuinliefhebbers"}


def test_propensity_from_a_score_or_learned_from_responses():
    contact, unscored = caller(), caller()
    Score.objects.create(contact=contact, name="tuin", value=0.31)
    offer(name="Gescoord", propensity_source=Offer.Propensity.SCORE, propensity_score="tuin", propensity_default=0.05)
    learned = offer(name="Geleerd", propensity_source=Offer.Propensity.LEARNED, propensity_default=0.1)
    Offer.objects.filter(pk=learned.pk).update(responses=412, accepts=130)
    catalogue_forget()

    by_name = {item.spec.name: item for item in decide(contact).offers}
    assert by_name["Gescoord"].propensity == pytest.approx(0.31)
    assert "propensity 0.31 from the “tuin” score" in by_name["Gescoord"].explanation
    assert by_name["Geleerd"].propensity == pytest.approx((130 + 20 * 0.1) / (412 + 20))
    assert "from 412 past responses" in by_name["Geleerd"].explanation
    fallback = {item.spec.name: item for item in decide(unscored).offers}["Gescoord"]
    assert fallback.propensity == pytest.approx(0.05)
    assert "no “tuin” score" in fallback.explanation


def test_contact_policies_consent_and_frequency_cap():
    no_consent = caller(consent=("email",))
    offer(name="Tuinset")
    decision = decide(no_consent)
    assert decision.offers == []
    assert reasons(decision) == {"Tuinset": "no consent for Phone (callcenter)"}
    # The same contact by email gets it: consent for email.
    assert names(decide(no_consent, channel="email")) == ["Tuinset"]

    consent_record(contact=no_consent, channel="phone", status="granted", source="test")
    assert names(decide(no_consent)) == ["Tuinset"]


def test_limits_accept_never_again_reject_cool_down_and_presentations():
    contact = caller()
    now = timezone.now()
    once = offer(name="Eenmalig")
    cool = offer(name="Afkoelen", cooldown_days=14)
    shown = offer(name="Vaak getoond", max_presentations=2, presentation_days=30)

    first = decide(contact, now=now)
    offer_response_record(
        decision_id=first.id, offer_id=once.pk, outcome="accepted", agent=None, client_request_id="a1", now=now
    )
    offer_response_record(
        decision_id=first.id, offer_id=cool.pk, outcome="rejected", agent=None, client_request_id="a2", now=now
    )

    later = now + dt.timedelta(days=3)
    second = decide(contact, now=later)
    left = reasons(second)
    assert left["Eenmalig"].startswith("accepted on ")
    assert left["Afkoelen"].startswith("rejected 3 days ago: cool-down until ")
    assert names(second) == ["Vaak getoond"]  # presented on two days now
    # Asked again in the same call (the console does after each answer): the day counts once.
    assert names(decide(contact, now=later)) == ["Vaak getoond"]
    third = decide(contact, now=later + dt.timedelta(days=1))
    assert reasons(third)["Vaak getoond"] == "presented on 2 days in the last 30 days (at most 2)"
    # After the cool-down the rejected offer is back.
    assert "Afkoelen" in names(decide(contact, now=now + dt.timedelta(days=15)))
    assert shown.pk


def test_holdout_records_would_have_presented_and_presents_the_next():
    campaign = live_campaign()
    top = offer(name="Topaanbod", value=500, campaign=campaign, holdout=50)
    offer(name="Tweede", value=100, campaign=campaign)
    experiment = Experiment.objects.get(offer=top)
    share = buckets_below(experiment.holdout_percent)
    contacts = [caller() for _ in range(12)]
    held = [c for c in contacts if holdout_bucket(key=experiment.key, contact_key=c.contact_key) < share]
    treated = [c for c in contacts if c not in held]
    assert held and treated  # 12 contacts at 50%: both groups (fixed keys would make this certain)

    for contact in held:
        decision = decide(contact)
        assert names(decision) == ["Tweede"]
        assert "would have presented" in reasons(decision)["Topaanbod"]
        item = OfferDecisionItem.objects.get(decision_id=decision.id, offer=top)
        assert (item.rank, item.presented, item.held_out) == (1, False, True)
    for contact in treated:
        assert names(decide(contact))[0] == "Topaanbod"

    # The top offers go into the offer's measurement, in the groups the decisions acted on; twice is once.
    # Decisions of the last minute may still be on their way (written behind): they wait a tick.
    assert offer_assignments_record() == 0
    later = timezone.now() + dt.timedelta(minutes=2)
    assert offer_assignments_record(now=later) == len(contacts)
    assert offer_assignments_record(now=later) == 0
    groups = dict(Assignment.objects.filter(experiment=experiment).values_list("contact_id", "group"))
    assert groups == {c.pk: ("holdout" if c in held else "treatment") for c in contacts}


def test_responses_are_idempotent_and_feed_the_data_layer():
    contact = caller()
    tuinset = offer(name="Tuinset", propensity_source=Offer.Propensity.LEARNED)
    decision = decide(contact)

    first = offer_response_record(
        decision_id=decision.id, offer_id=tuinset.pk, outcome="accepted", agent=None, client_request_id="req-1"
    )
    again = offer_response_record(
        decision_id=decision.id, offer_id=tuinset.pk, outcome="accepted", agent=None, client_request_id="req-1"
    )
    assert first.created and not again.created and again.response.pk == first.response.pk
    with pytest.raises(ResponseConflict, match="already accepted"):
        offer_response_record(
            decision_id=decision.id, offer_id=tuinset.pk, outcome="accepted", agent=None, client_request_id="req-2"
        )
    assert OfferResponse.objects.count() == 1
    event = Event.objects.get(pk=first.response.event_id)
    assert (event.type, event.contact_id, event.properties["outcome"], event.value) == (
        "offer_response",
        contact.pk,
        "accepted",
        Decimal(100),
    )
    tuinset.refresh_from_db()
    assert (tuinset.responses, tuinset.accepts) == (1, 1)


def test_unknown_contacts_and_local_phone_numbers():
    contact = caller()
    phone = contact.identities.get(kind="phone").value  # +3161...
    local = "06 " + phone[4:]
    assert contact_lookup(phone=local) == ("phone", phone)
    offer(name="Tuinset")
    assert names(offer_decide(lookup="phone", value=contact_lookup(phone=local)[1])) == ["Tuinset"]
    with pytest.raises(ContactNotFound):
        offer_decide(lookup="email", value="niemand@example.nl")
    with pytest.raises(ValueError, match="not a valid phone number"):
        contact_lookup(phone="nope")


@pytest.mark.parametrize(
    "root",
    [
        {"event": "purchase", "where": [{"property": "category", "op": "eq", "value": "Tuin"}], "within_days": 90},
        {"event": "purchase", "within_days": 90, "aggregate": "sum", "op": "gt", "value": 100},
        {"event": "purchase", "aggregate": "sum", "op": "lt", "value": 100},  # holds without any purchase
        {"event": "purchase", "aggregate": "count", "op": "eq", "value": 0},
        {
            "any": [
                {"score": "tuin", "op": "gte", "value": 0.5},
                {"event": "purchase", "aggregate": "count", "op": "gte", "value": 2},
                {"consent": "phone", "status": "granted"},
            ]
        },
        {"all": [{"identity": "phone"}, {"not": {"event": "purchase", "aggregate": "max", "op": "gt", "value": 50}}]},
    ],
)
def test_segments_compiled_per_contact_hold_for_the_same_contacts(root):
    """The decision compiles each offer's segment for one contact at a time: the same members as
    the set-wise form a segment count uses."""
    from audiences.models import Contact
    from audiences.selectors.segments import segment_condition
    from tests.factories import EventFactory

    now = timezone.now()
    contacts = [caller(consent=("phone",) if n % 2 else ()) for n in range(6)]
    for n, contact in enumerate(contacts):
        for k in range(n % 4):
            EventFactory(
                contact=contact,
                type="purchase",
                occurred_at=now - dt.timedelta(days=30 * k + 1),
                value=Decimal(40 * (k + 1)),
                properties={"category": "Tuin" if k % 2 == 0 else "Keuken"},
            )
        if n % 3 == 0:
            Score.objects.create(contact=contact, name="tuin", value=0.1 * n)
    rules = {"version": 1, "root": root}
    everyone = Contact.objects.filter(pk__in=[c.pk for c in contacts])
    set_wise = set(everyone.filter(segment_condition(rules=rules, now=now)).values_list("pk", flat=True))
    one_by_one = {
        c.pk
        for c in contacts
        if Contact.objects.filter(segment_condition(rules=rules, now=now, per_contact=True), pk=c.pk).exists()
    }
    assert one_by_one == set_wise
    assert 0 < len(set_wise) < len(contacts)


def test_an_answer_feeds_segments_through_its_event():
    """Accepting becomes an offer_response event: a segment of who accepted an offer has the contact."""
    from audiences.selectors.segments import segment_contacts

    contact, other = caller(), caller()
    tuinset = offer(name="Tuinset")
    decision = decide(contact)
    offer_response_record(
        decision_id=decision.id, offer_id=tuinset.pk, outcome="accepted", agent=None, client_request_id="seg-1"
    )
    decide(other)  # presented, not answered
    accepted = {
        "version": 1,
        "root": {
            "event": "offer_response",
            "where": [
                {"property": "outcome", "op": "eq", "value": "accepted"},
                {"property": "offer_id", "op": "eq", "value": tuinset.pk},
            ],
        },
    }
    assert list(segment_contacts(rules=accepted)) == [contact]


def test_another_process_sees_a_changed_offer_when_its_catalogue_expires(settings):
    contact = caller()
    tuinset = offer(name="Tuinset", value=100)
    assert decide(contact).offers[0].score == pytest.approx(20)
    # A change made elsewhere (another process, or straight in the database) is not seen while the
    # catalogue is kept...
    settings.OFFER_CATALOGUE_SECONDS = 3600
    Offer.objects.filter(pk=tuinset.pk).update(value=Decimal(200))
    assert decide(contact).offers[0].score == pytest.approx(20)
    # ...and is once it is older than OFFER_CATALOGUE_SECONDS.
    settings.OFFER_CATALOGUE_SECONDS = 0
    assert decide(contact).offers[0].score == pytest.approx(40)


@pytest.mark.django_db(transaction=True)
def test_an_old_catalogue_is_refreshed_in_a_thread_while_decisions_go_on(settings, wait_until):
    """In production an old catalogue is built again beside the decisions, which use the one there is
    meanwhile: no agent's request waits a quarter of a second for 50 segments to compile."""
    from campaigns.offers import catalogue

    settings.OFFER_CATALOGUE_BACKGROUND = True
    settings.OFFER_CATALOGUE_SECONDS = 0.2
    contact = caller()
    tuinset = offer(name="Tuinset", value=100)
    first = catalogue.offer_catalogue()
    # Nothing changed: the check keeps the compiled catalogue (no second build).
    time.sleep(0.25)
    catalogue.offer_catalogue()
    wait_until(lambda: catalogue.offer_catalogue().built_at > first.built_at and not catalogue._refreshing)
    assert catalogue.offer_catalogue().compiled_at == first.compiled_at
    # A change (saved, as the admin and the services do): built again.
    Offer.objects.filter(pk=tuinset.pk).update(value=Decimal(200), updated_at=timezone.now())
    time.sleep(0.25)

    assert decide(contact).offers[0].score == pytest.approx(20)  # the old one, while the new one is built
    wait_until(lambda: catalogue.offer_catalogue().compiled_at > first.compiled_at and not catalogue._refreshing)
    assert decide(contact).offers[0].score == pytest.approx(40)


@pytest.mark.django_db(transaction=True)
def test_a_catalogue_compiled_on_an_earlier_day_is_compiled_again():
    """ "Today" and "the last 90 days" count from when the catalogue was compiled: a new day compiles
    it again, though nothing changed."""
    from campaigns.offers import catalogue

    offer(name="Tuinset")
    first = catalogue.offer_catalogue()
    catalogue._current = dataclasses.replace(first, compiled_on=first.compiled_on - dt.timedelta(days=1))
    catalogue._refresh(catalogue._generation)
    assert catalogue.offer_catalogue().compiled_at > first.compiled_at

    again = catalogue.offer_catalogue()
    catalogue._refresh(catalogue._generation)  # the same day, nothing changed: kept
    assert catalogue.offer_catalogue().compiled_at == again.compiled_at


@pytest.mark.django_db(transaction=True)
def test_decisions_are_written_behind_the_answer_and_none_is_lost(settings, wait_until, monkeypatch):
    """In production a decision is answered first and written by the process's journal thread a
    moment later, in bulk; an answer to it finds it, and a normal stop writes the queue."""
    from campaigns.offers import journal

    settings.OFFER_DECISIONS_WRITE_BEHIND = True
    contacts = [caller() for _ in range(5)]
    tuinset = offer(name="Tuinset")
    decisions = [decide(contact) for contact in contacts]

    wait_until(lambda: OfferDecision.objects.filter(pk__in=[d.id for d in decisions]).count() == 5)
    for decision, contact in zip(decisions, contacts, strict=True):
        stored = OfferDecision.objects.get(pk=decision.id)
        assert stored.contact_id == contact.pk
        assert list(stored.items.values_list("offer_id", "rank", "presented")) == [(tuinset.pk, 1, True)]

    # The writer asleep for an hour: decisions wait in the queue.
    usual = journal.WRITE_BEHIND_SECONDS
    monkeypatch.setattr(journal, "WRITE_BEHIND_SECONDS", 3600)
    time.sleep(usual * 2.5)  # its current wait ends; the next one is the long one
    quick = decide(contacts[0])
    assert not OfferDecision.objects.filter(pk=quick.id).exists()
    # An answer to a decision still queued writes the queue first.
    recorded = offer_response_record(
        decision_id=quick.id, offer_id=tuinset.pk, outcome="later", agent=None, client_request_id="quick-1"
    )
    assert recorded.response.decision_id == quick.id
    # What is queued when the process stops is written on the way out.
    pending = decide(contacts[1])
    assert not OfferDecision.objects.filter(pk=pending.id).exists()
    journal._flush_on_exit()
    assert OfferDecision.objects.filter(pk=pending.id).exists()
    journal._writer.wake.set()  # back to its usual pace for the tests after this one


def test_a_moment_of_the_day_a_validity_window_and_a_follow_up():
    """The context weight can favour an offer at some hours; an offer starts and ends when it says;
    a follow-up is an email or an SMS, and the decision names its channel."""
    from django.core.exceptions import ValidationError

    from campaigns.offers.services import offer_problems, offer_save
    from content.models import Template
    from tests.campaign_helpers import message_with

    contact = caller()
    campaign = live_campaign()
    evening = offer(name="Avondaanbod", value=100, campaign=campaign)
    OfferContextWeight.objects.create(offer=evening, hour_from=18, hour_until=22, weight=3)
    soon = offer(name="Binnenkort", campaign=campaign, starts_at=timezone.now() + dt.timedelta(days=2))
    catalogue_forget()
    local = timezone.localtime()
    at_eight = local.replace(hour=20, minute=0)
    at_ten = local.replace(hour=10, minute=0)

    assert {item.spec.name: item.context_weight for item in decide(contact, now=at_eight).offers} == {
        "Avondaanbod": 3.0
    }
    assert decide(contact, now=at_ten).offers[0].context_weight == 1.0
    assert reasons(decide(contact, now=at_ten))["Binnenkort"].startswith("valid from ")
    assert soon.pk

    email = message_with(email=True).templates.get(channel=Template.Channel.EMAIL)
    script_only = message_with(email=False, script=True).templates.get(channel=Template.Channel.SCRIPT)
    evening.follow_up = script_only
    assert offer_problems(offer=evening) == {"follow_up": ["A follow-up is an email or an SMS."]}
    evening.follow_up = email
    assert offer_problems(offer=evening) == {}
    evening.follow_up = script_only
    with pytest.raises(ValidationError):
        offer_save(offer=evening)
    Offer.objects.filter(pk=evening.pk).update(follow_up=email)
    catalogue_forget()
    assert decide(contact, now=at_ten).offers[0].spec.follow_up_channel == "email"
