"""The next-best-offer API: what an agent asks and records, and what bad input gets."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.core.cache import cache
from django.utils import timezone

from campaigns.models import Offer, OfferDecision, OfferResponse
from campaigns.offers.api import NextBestOfferThrottle
from campaigns.offers.catalogue import catalogue_forget
from tests.offer_helpers import caller, live_campaign, offer

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]


@pytest.fixture(autouse=True)
def _fresh_throttles():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def agent_api(api_client_for, agent):
    client = api_client_for(agent)
    client.credentials(HTTP_AUTHORIZATION=client._credentials["HTTP_AUTHORIZATION"], HTTP_ACCEPT_LANGUAGE="en")
    return client


def url(contact, **params):
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return f"/api/v1/contacts/{contact.contact_key}/next-best-offers/" + (f"?{query}" if query else "")


def errors(response):
    return {(error["field"], error["message"]) for error in response.json()["errors"]}


def test_an_agent_gets_ranked_offers_with_parts_explanation_and_script(agent_api, agent):
    contact = caller(first_name="Sanne")
    campaign = live_campaign()
    offer(name="Tuinset", value=120, campaign=campaign, code="TUIN24")
    offer(name="Zaaipakket", value=10, campaign=campaign)

    response = agent_api.get(url(contact, channel="callcenter", limit=1))

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["contact"]["contact_key"] == str(contact.contact_key)
    [first] = body["offers"]
    assert first["name"] == "Tuinset" and first["rank"] == 1 and first["code"] == "TUIN24"
    assert first["score_parts"] == {
        "propensity": 0.2,
        "propensity_basis": "propensity 0.20 (fixed)",
        "context_weight": 1.0,
        "value": "120.00",
        "lever": 1.0,
    }
    assert first["score"] == pytest.approx(0.2 * 120)
    assert first["explanation"] == "propensity 0.20 (fixed); value € 120,00; lever 1.00"
    assert first["script"]["text"] == "Goedemiddag Sanne, Tuinset!"
    assert body["left_out"] == [
        {
            "offer_id": Offer.objects.get(name="Zaaipakket").pk,
            "name": "Zaaipakket",
            "reason": "ranked 2 with score 2.00: below the 1 asked for",
        }
    ]
    decision = OfferDecision.objects.get(pk=body["decision_id"])
    assert (decision.contact_id, decision.agent, decision.channel) == (contact.pk, agent, "callcenter")
    # Agents read the decision back.
    read = agent_api.get(f"/api/v1/offer-decisions/{decision.pk}/").json()
    assert [(item["name"], item["presented"]) for item in read["items"]] == [("Tuinset", True)]


def test_a_local_phone_number_or_an_email_finds_the_same_contact(agent_api):
    contact = caller()
    offer(name="Tuinset")
    phone = contact.identities.get(kind="phone").value
    email = contact.identities.get(kind="email").value
    for params in ({"phone": "06 " + phone[4:]}, {"phone": phone}, {"email": email.upper()}):
        response = agent_api.get("/api/v1/next-best-offers/", params)
        assert response.status_code == 200, (params, response.content)
        assert response.json()["contact"]["contact_key"] == str(contact.contact_key)


@pytest.mark.parametrize(
    ("path", "status", "field", "message"),
    [
        ("/api/v1/contacts/{unknown}/next-best-offers/", 404, None, "No contact is known by {unknown}."),
        ("/api/v1/contacts/not-a-key/next-best-offers/", 400, "contact_key", "“not-a-key” is not a valid contact key."),
        ("/api/v1/next-best-offers/?phone=12", 400, "phone", "“12” is not a valid phone number."),
        ("/api/v1/next-best-offers/?email=nobody@example.nl", 404, None, "No contact is known by nobody@example.nl."),
        (
            "/api/v1/next-best-offers/",
            400,
            "contact_key",
            "Give one of the contact key, an e-mail address or a phone number.",
        ),
        ("/api/v1/contacts/{known}/next-best-offers/?limit=0", 400, "limit", "A whole number from 1 to 10."),
        (
            "/api/v1/contacts/{known}/next-best-offers/?channel=fax",
            400,
            "channel",
            "Choose one of callcenter, email, sms.",
        ),
    ],
)
def test_bad_lookups_say_what_is_wrong_and_record_nothing(agent_api, path, status, field, message):
    known, unknown = caller().contact_key, uuid.uuid4()
    response = agent_api.get(path.format(known=known, unknown=unknown))
    assert response.status_code == status
    assert errors(response) == {(field, message.format(unknown=unknown))}
    assert not OfferDecision.objects.exists()


def test_only_agents_ask_and_answer(api_client_for, marketeer, analyst, client):
    contact = caller()
    offer(name="Tuinset")
    for user in (marketeer, analyst):
        response = api_client_for(user).get(url(contact), HTTP_ACCEPT_LANGUAGE="en")
        assert response.status_code == 403
        assert errors(response) == {
            (None, "Only callcenter agents may ask for next-best offers and record the answers.")
        }
        answer = api_client_for(user).post("/api/v1/offer-responses/", {}, format="json")
        assert answer.status_code == 403
    assert client.get(url(contact)).status_code == 401
    assert not OfferDecision.objects.exists()


def test_agents_cannot_list_every_contact_or_change_anything(agent_api, api_client_for, marketeer):
    contact = caller()
    listing = agent_api.get("/api/v1/contacts/")
    assert listing.status_code == 403
    assert "add ?email=, ?phone= or another identity" in listing.json()["errors"][0]["message"]
    phone = contact.identities.get(kind="phone").value
    assert [c["contact_key"] for c in agent_api.get("/api/v1/contacts/", {"phone": phone}).json()["results"]] == [
        str(contact.contact_key)
    ]
    assert api_client_for(marketeer).get("/api/v1/contacts/").status_code == 200
    campaign = live_campaign()
    assert agent_api.patch(f"/api/v1/campaigns/{campaign.pk}/", {"name": "x"}, format="json").status_code == 403
    assert agent_api.post("/api/v1/contacts/", {"identities": {"email": "a@b.nl"}}, format="json").status_code == 403
    assert agent_api.delete(f"/api/v1/campaigns/{campaign.pk}/").status_code == 403


def test_the_decision_endpoint_is_rate_limited_per_user(agent_api, monkeypatch):
    monkeypatch.setattr(NextBestOfferThrottle, "THROTTLE_RATES", {"next_best_offer": "2/min"})
    contact = caller()
    assert agent_api.get(url(contact)).status_code == 200
    assert agent_api.get(url(contact)).status_code == 200
    third = agent_api.get(url(contact))
    assert third.status_code == 429
    assert int(third["Retry-After"]) > 0
    assert third.json()["errors"][0]["message"].startswith("Request was throttled.")
    assert OfferDecision.objects.count() == 2


def test_the_limit_still_counts_beside_many_other_agents_histories(agent_api, monkeypatch):
    """The default local-memory cache holds every agent's history: at Django's 300 entries, 300
    agents pushed each other's out and nobody was ever limited."""
    monkeypatch.setattr(NextBestOfferThrottle, "THROTTLE_RATES", {"next_best_offer": "2/min"})
    contact = caller()
    assert agent_api.get(url(contact)).status_code == 200
    assert agent_api.get(url(contact)).status_code == 200
    for other in range(1_000):  # as many other agents asking in the same minute
        cache.set(f"throttle_next_best_offer_{10_000_000 + other}", [1.0], 60)

    assert agent_api.get(url(contact)).status_code == 429


def answer(client, decision, offer_id, outcome="accepted", request_id=None, **extra):
    body = {
        "decision": decision,
        "offer": offer_id,
        "outcome": outcome,
        "client_request_id": request_id or str(uuid.uuid4()),
        **extra,
    }
    return client.post("/api/v1/offer-responses/", body, format="json")


def test_an_accept_is_recorded_once_and_the_offer_is_not_proposed_again(agent_api, agent):
    contact = caller()
    tuinset = offer(name="Tuinset")
    decision = agent_api.get(url(contact)).json()["decision_id"]

    first = answer(agent_api, decision, tuinset.pk, request_id="klik-1")
    retried = answer(agent_api, decision, tuinset.pk, request_id="klik-1")
    double_click = answer(agent_api, decision, tuinset.pk, request_id="klik-2")

    assert first.status_code == 201 and retried.status_code == 200
    assert retried.json()["id"] == first.json()["id"]
    assert first.json()["agent"] == agent.username
    assert double_click.status_code == 409
    assert "already accepted in this decision" in double_click.json()["errors"][0]["message"]
    assert OfferResponse.objects.count() == 1
    again = agent_api.get(url(contact)).json()
    assert again["offers"] == []
    assert again["left_out"][0]["reason"].startswith("accepted on ")


def test_a_reject_with_its_reason_starts_the_cool_down(agent_api):
    contact = caller()
    tuinset = offer(name="Tuinset", cooldown_days=14)
    decision = agent_api.get(url(contact)).json()["decision_id"]
    response = answer(agent_api, decision, tuinset.pk, outcome="rejected", reason="Heeft al een tuinset")
    assert response.status_code == 201
    assert OfferResponse.objects.get().reason == "Heeft al een tuinset"
    left = agent_api.get(url(contact)).json()["left_out"]
    assert left[0]["reason"].startswith("rejected today: cool-down until ")


def test_bad_answers_say_what_is_wrong_and_record_nothing(agent_api):
    contact, other = caller(), caller()
    campaign = live_campaign()
    tuinset = offer(name="Tuinset", campaign=campaign)
    hidden = offer(name="Verborgen", campaign=campaign, active=False)
    decision = agent_api.get(url(contact)).json()["decision_id"]
    other_decision = agent_api.get(url(other)).json()["decision_id"]

    cases = [
        (answer(agent_api, other_decision + 1000, tuinset.pk), 400, "decision"),
        (answer(agent_api, decision, hidden.pk), 400, "offer"),
        (answer(agent_api, decision, tuinset.pk, outcome="maybe"), 400, "outcome"),
        (agent_api.post("/api/v1/offer-responses/", {"decision": "x"}, format="json"), 400, "decision"),
        (agent_api.post("/api/v1/offer-responses/", "{not json", content_type="application/json"), 400, None),
    ]
    for response, status, field in cases:
        assert response.status_code == status, response.content
        assert field in {error["field"] for error in response.json()["errors"]}
    malformed = agent_api.post("/api/v1/offer-responses/", {"decision": "x"}, format="json").json()
    assert {error["field"] for error in malformed["errors"]} == {"decision", "offer", "outcome", "client_request_id"}
    too_long = answer(agent_api, decision, tuinset.pk, outcome="rejected", reason="x" * 501)
    assert too_long.status_code == 400 and "reason" in {error["field"] for error in too_long.json()["errors"]}
    # An offer presented in another decision is not one of this decision's offers.
    assert "was not presented in decision" in answer(agent_api, decision, hidden.pk).json()["errors"][0]["message"]
    # A request id reused for another answer is refused, not taken for a retry.
    answer(agent_api, decision, tuinset.pk, outcome="later", request_id="r-1")
    reused = answer(agent_api, decision, tuinset.pk, outcome="accepted", request_id="r-1")
    assert reused.status_code == 400 and errors(reused) == {
        ("client_request_id", "This request id was used for another response: use a new one for each response.")
    }
    assert OfferResponse.objects.count() == 1


def test_an_answer_for_an_offer_that_ended_is_refused(agent_api):
    contact = caller()
    tuinset = offer(name="Tuinset", ends_at=timezone.now() + dt.timedelta(hours=1))
    decision = agent_api.get(url(contact)).json()["decision_id"]
    Offer.objects.filter(pk=tuinset.pk).update(ends_at=timezone.now() - dt.timedelta(minutes=1))
    catalogue_forget()
    response = answer(agent_api, decision, tuinset.pk)
    assert response.status_code == 409
    assert "Offer “Tuinset” ended on" in response.json()["errors"][0]["message"]
    assert not OfferResponse.objects.exists()


def test_the_daily_capacity_is_shared_by_every_agent(agent_api):
    first, second = caller(), caller()
    tuinset = offer(name="Tuinset", daily_capacity=1)
    one = agent_api.get(url(first)).json()["decision_id"]
    two = agent_api.get(url(second)).json()["decision_id"]
    assert answer(agent_api, one, tuinset.pk).status_code == 201
    refused = answer(agent_api, two, tuinset.pk)
    assert refused.status_code == 409
    assert "its capacity" in refused.json()["errors"][0]["message"]
    third = caller()
    left = agent_api.get(url(third)).json()["left_out"]
    assert left == [
        {"offer_id": tuinset.pk, "name": "Tuinset", "reason": "today's capacity is used: 1 accepts (at most 1 a day)"}
    ]


def test_an_agent_logged_into_the_admin_asks_with_the_session(client, agent):
    contact = caller()
    offer(name="Tuinset")
    client.force_login(agent)
    response = client.get(url(contact))
    assert response.status_code == 200
    assert [item["name"] for item in response.json()["offers"]] == ["Tuinset"]


def test_an_administrator_may_ask_and_list(api_client_for, db):
    from dialoog.roles import ADMINISTRATOR
    from tests.factories import UserFactory

    admin = UserFactory(username="admin-test", role=ADMINISTRATOR)
    contact = caller()
    offer(name="Tuinset")
    client = api_client_for(admin)
    assert client.get(url(contact)).status_code == 200
    assert client.get("/api/v1/contacts/").status_code == 200


def test_a_nul_character_is_a_clear_400(agent_api):
    response = agent_api.get("/api/v1/next-best-offers/", {"email": "a\x00b@example.nl"})
    assert response.status_code == 400
    assert errors(response) == {("email", "“ab@example.nl” contains a NUL character.")}
