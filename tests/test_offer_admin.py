"""Offers in the admin: a marketeer sets one up with its weights; the decisions show their reasons."""

from __future__ import annotations

import pytest

from campaigns.models import Offer, OfferDecision, OfferDecisionItem
from campaigns.offers.decisions import offer_decide
from goals.models import Experiment
from tests.offer_helpers import caller, live_campaign, offer, script

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]


def form_data(**changes):
    data = {
        "name": "Tuinset",
        "description": "",
        "code": "TUIN",
        "campaign": live_campaign().pk,
        "script": script().pk,
        "follow_up": "",
        "segment": "",
        "active": "on",
        "starts_at_0": "",
        "starts_at_1": "",
        "ends_at_0": "",
        "ends_at_1": "",
        "value": "120",
        "propensity_source": "fixed",
        "propensity_score": "",
        "propensity_default": "0.3",
        "lever": "1.5",
        "max_presentations": "",
        "presentation_days": "30",
        "cooldown_days": "14",
        "daily_capacity": "",
        "holdout_percent": "10",
        "holdout_off_reason": "",
        "context_weights-TOTAL_FORMS": "1",
        "context_weights-INITIAL_FORMS": "0",
        "context_weights-0-channel": "callcenter",
        "context_weights-0-hour_from": "",
        "context_weights-0-hour_until": "",
        "context_weights-0-weight": "2",
    }
    data.update(changes)
    return data


def test_a_marketeer_sets_up_an_offer_with_its_weights_and_measurement(english_client, marketeer):
    client = english_client(marketeer)
    response = client.post("/admin/campaigns/offer/add/", form_data())
    assert response.status_code == 302, response.context["adminform"].form.errors
    saved = Offer.objects.get(name="Tuinset")
    assert saved.experiment is not None and saved.experiment.holdout_percent == 10
    assert saved.experiment.goal == saved.campaign.goal
    assert list(saved.context_weights.values_list("channel", "weight")) == [("callcenter", 2.0)]
    # The weights count at once in this process's decisions: 0.3 x 2 x 120 x 1.5 (recorded also when
    # the contact is in the offer's holdout).
    decision = offer_decide(lookup="id", value=caller().pk)
    assert OfferDecisionItem.objects.get(decision_id=decision.id).score == pytest.approx(108)


def test_the_admin_refuses_an_offer_that_cannot_be_decided_or_measured(english_client, marketeer):
    client = english_client(marketeer)
    response = client.post(
        "/admin/campaigns/offer/add/",
        form_data(propensity_source="score", propensity_score="", holdout_percent="0"),
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["propensity_score"] == ["Name the score the propensity comes from."]
    assert errors["holdout_off_reason"] == [
        "Say why this offer has no holdout: without one, its effect cannot be measured."
    ]
    assert not Offer.objects.exists() and not Experiment.objects.filter(name__startswith="Offer:").exists()


def test_a_decision_page_shows_what_was_presented_and_why_others_were_left_out(english_client, marketeer, agent):
    offer(name="Tuinset")
    offer(name="Gesloten", max_presentations=0)
    decision = offer_decide(lookup="id", value=caller().pk, agent=agent)
    page = english_client(marketeer).get(f"/admin/campaigns/offerdecision/{decision.id}/change/")
    assert page.status_code == 200
    content = page.content.decode()
    assert "Tuinset" in content and "presented on 0 days in the last 30 days (at most 0)" in content
    assert OfferDecision.objects.count() == 1


def test_a_holdout_agents_decided_with_cannot_change(english_client, marketeer):
    from campaigns.offers.catalogue import offer_catalogue

    tuinset = offer(name="Tuinset", holdout=10)
    offer_catalogue()  # the first decisions fix its split
    data = form_data(campaign=tuinset.campaign_id, script=tuinset.script_id, holdout_percent="20")
    data["context_weights-TOTAL_FORMS"] = "0"
    response = english_client(marketeer).post(f"/admin/campaigns/offer/{tuinset.pk}/change/", data)
    assert response.status_code == 200
    [message] = response.context["adminform"].form.errors["holdout_percent"]
    assert message.startswith("Agents have been deciding with this holdout (10.00%)")
    tuinset.experiment.refresh_from_db()
    assert tuinset.experiment.holdout_percent == 10
