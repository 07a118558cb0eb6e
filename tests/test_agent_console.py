"""The agent console at /agent/: finding the customer, the profile beside the ranked offers, answers
recorded once, the call list, Dutch by default, and the whole of it with the keyboard in Chromium."""

from __future__ import annotations

import datetime as dt
import re
from html import unescape
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audiences.models import Event, Identity
from audiences.services.consents import consent_record
from campaigns.models import CallListItem, ContactPolicy, OfferDecision, OfferResponse
from campaigns.offers.decisions import offer_decide
from campaigns.offers.selectors import agent_profile
from campaigns.offers.services import offer_response_record
from tests.campaign_helpers import activated, campaign_for, customer, send_everything
from tests.conftest import log_in_in_english
from tests.factories import EventFactory
from tests.offer_helpers import caller, live_campaign, offer

CONSOLE = "/agent/"


def customer_url(contact) -> str:
    return reverse("agent:customer", kwargs={"contact_key": contact.contact_key})


def phone_of(contact) -> str:
    return Identity.objects.get(contact=contact, kind="phone").value


def local_format(phone: str) -> str:
    """+31612345678 as a Dutch agent types it: 06 12345678."""
    assert phone.startswith("+316")
    return f"06 {phone[4:]}"


def email_of(contact) -> str:
    return Identity.objects.get(contact=contact, kind="email").value


def answer_form(html: str, outcome: str, number: int = 1) -> tuple[str, dict[str, str]]:
    """The action and hidden fields of the `outcome` form of the `number`th offer on the page."""
    forms = re.findall(
        rf'<form method="post" action="([^"]+)" data-outcome="{outcome}"[^>]*>(.*?)</form>', html, flags=re.DOTALL
    )
    action, body = forms[number - 1]
    return action, dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', body))


def offers_on(html: str) -> list[str]:
    """The names of the offers proposed on the page, in rank order."""
    return re.findall(r'data-offer="\d+" data-offer-name="([^"]+)"', html)


def left_out_on(html: str) -> dict[str, str]:
    return dict(re.findall(r"<li data-left-out=\"\d+\"><strong>([^<]+)</strong>: ([^<]+)</li>", html))


def page_messages(html: str) -> list[str]:
    return [
        unescape(re.sub(r"\s+", " ", text).strip())
        for text in re.findall(r'<li class="agent-message[^"]*"[^>]*>(.*?)</li>', html, flags=re.DOTALL)
    ]


# --- Who may use it --------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("path", [CONSOLE, f"{CONSOLE}?q=0612345678"])
def test_anonymous_visitors_are_sent_to_the_admin_login(client, path):
    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=/agent/")


@pytest.mark.django_db
def test_a_marketeer_may_not_use_the_console(client, marketeer):
    contact = caller()
    client.force_login(marketeer)

    assert client.get(CONSOLE).status_code == 403
    assert client.get(customer_url(contact)).status_code == 403
    assert client.post(reverse("agent:next")).status_code == 403
    assert not OfferDecision.objects.exists()  # no decision was made for them


# --- Finding the customer --------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["local phone", "international phone", "email", "contact key"])
def test_an_agent_finds_the_customer_and_sees_profile_and_ranked_offers(english_client, agent, how):
    contact = caller(first_name="Sanne", last_name="Visser")
    caller(first_name="Iemand", last_name="Anders")  # not the one searched for
    campaign = live_campaign()
    offer(name="Tuinset", value=120, campaign=campaign, propensity_default=0.3, code="TUIN24")  # 36
    offer(name="Heggenschaar", value=50, campaign=campaign, propensity_default=0.5)  # 25
    EventFactory(contact=contact, properties={"product": "Parasol", "category": "tuin"}, value="89.95", currency="EUR")
    query = {
        "local phone": local_format(phone_of(contact)),
        "international phone": phone_of(contact),
        "email": email_of(contact).upper(),
        "contact key": str(contact.contact_key),
    }[how]
    client = english_client(agent)

    response = client.get(CONSOLE, {"q": query}, follow=True)

    assert response.redirect_chain == [(customer_url(contact), 302)]
    html = response.content.decode()
    assert '<h1 id="agent-customer-name">Sanne Visser</h1>' in html
    assert offers_on(html) == ["Tuinset", "Heggenschaar"]
    # Each offer with its score, explanation and script rendered for the customer.
    assert "36.00" in html and "propensity 0.30 (fixed)" in html
    assert "Goedemiddag Sanne, Tuinset!" in html and "Nu € 120,00" in html and "Vraag naar de tuin" in html
    assert "TUIN24" in html
    # The profile: consent per channel, the last purchase, the phone number.
    assert re.search(r"Phone \(callcenter\)</span>\s*<strong>Granted</strong>", html)
    assert re.search(r"SMS</span>\s*<strong>Unknown</strong>", html)
    assert "Parasol" in html and "€ 89.95" in html
    assert phone_of(contact) in html
    # The decision is recorded for this agent, with what the page shows.
    decision = OfferDecision.objects.get()
    assert decision.agent == agent and decision.contact_id == contact.pk
    assert list(decision.items.order_by("rank").values_list("offer__name", flat=True)) == ["Tuinset", "Heggenschaar"]
    # The keys are on the page.
    assert "<kbd>a</kbd>" in html and "reject (type the reason, Enter)" in html


@pytest.mark.django_db
def test_an_unknown_number_is_a_clear_message_not_an_error_page(english_client, agent):
    caller()
    client = english_client(agent)

    unknown = client.get(CONSOLE, {"q": "06 98765432"})
    invalid = client.get(CONSOLE, {"q": "12"})

    assert unknown.status_code == 200
    html = unknown.content.decode()
    assert "No customer is known by the phone number +31698765432." in html
    assert 'value="06 98765432"' in html  # the search keeps what was typed
    assert invalid.status_code == 200
    assert "“12” is not a valid phone number." in invalid.content.decode()
    assert not OfferDecision.objects.exists()


@pytest.mark.django_db
def test_an_erased_customer_is_not_found(english_client, agent):
    contact = caller()
    contact.erased_at = timezone.now()
    contact.save(update_fields=["erased_at"])
    client = english_client(agent)

    assert "No customer is known" in client.get(CONSOLE, {"q": phone_of(contact)}).content.decode()
    assert client.get(customer_url(contact)).status_code == 404


# --- Answers ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_accept_posted_twice_records_one_response_and_the_offer_is_not_proposed_again(english_client, agent):
    contact = caller(first_name="Sanne")
    campaign = live_campaign()
    offer(name="Tuinset", value=120, campaign=campaign, code="TUIN24")
    offer(name="Heggenschaar", value=50, campaign=campaign)
    client = english_client(agent)
    html = client.get(customer_url(contact)).content.decode()
    action, fields = answer_form(html, "accepted")

    first = client.post(action, fields)
    second = client.post(action, fields, follow=True)  # a double click: the same request id

    assert first.status_code == 302 and first["Location"] == customer_url(contact)
    response = OfferResponse.objects.get()
    assert response.outcome == "accepted" and response.offer.name == "Tuinset"
    assert response.agent == agent and response.contact_id == contact.pk
    assert response.client_request_id == fields["client_request_id"]
    assert Event.objects.filter(contact=contact, type="offer_response").count() == 1
    page = second.content.decode()
    assert "“Tuinset” accepted: the customer's code is TUIN24." in page_messages(page)
    assert "The answer to “Tuinset” was recorded already." in page_messages(page)
    # Back at the customer, a new decision: the accepted offer is no longer proposed.
    assert offers_on(page) == ["Heggenschaar"]
    assert left_out_on(page)["Tuinset"].startswith("accepted on ")
    assert left_out_on(page)["Tuinset"].endswith(": not offered again")
    assert re.search(r"<strong>Tuinset</strong>:\s*<span class=\"agent-outcome agent-outcome-accepted\">Accepted", page)


@pytest.mark.django_db
def test_each_rendered_form_has_its_own_request_id(english_client, agent):
    contact = caller()
    offer(name="Tuinset")
    html = english_client(agent).get(customer_url(contact)).content.decode()

    ids = re.findall(r'name="client_request_id" value="([^"]+)"', html)

    assert len(ids) == 3 and len(set(ids)) == 3  # accept, later, reject


@pytest.mark.django_db
def test_a_reject_stores_its_reason_and_needs_one(english_client, agent):
    contact = caller()
    offer(name="Tuinset", cooldown_days=14)
    client = english_client(agent)
    action, fields = answer_form(client.get(customer_url(contact)).content.decode(), "rejected")

    without = client.post(action, {**fields, "reason": "  "}, follow=True)
    assert "Say why the customer rejected the offer." in page_messages(without.content.decode())
    assert not OfferResponse.objects.exists()

    with_reason = client.post(action, {**fields, "reason": "Te duur"}, follow=True)

    response = OfferResponse.objects.get()
    assert (response.outcome, response.reason) == ("rejected", "Te duur")
    page = with_reason.content.decode()
    assert "“Tuinset” rejected: Te duur." in page_messages(page)
    assert offers_on(page) == []
    assert "cool-down until" in left_out_on(page)["Tuinset"]
    assert "Te duur" in page  # among the earlier offers


@pytest.mark.django_db
def test_later_snoozes_and_the_offer_stays_proposed(english_client, agent):
    contact = caller()
    offer(name="Tuinset")
    client = english_client(agent)
    action, fields = answer_form(client.get(customer_url(contact)).content.decode(), "later")

    page = client.post(action, fields, follow=True).content.decode()

    assert OfferResponse.objects.get().outcome == "later"
    assert "“Tuinset” for later: it may be offered again." in page_messages(page)
    assert offers_on(page) == ["Tuinset"]


@pytest.mark.django_db
def test_what_the_service_refuses_is_shown_to_the_agent(english_client, agent):
    contact = caller()
    offer(name="Tuinset")
    client = english_client(agent)
    html = client.get(customer_url(contact)).content.decode()
    accept_action, accept = answer_form(html, "accepted")
    reject_action, reject = answer_form(html, "rejected")
    client.post(accept_action, accept)

    # A colleague's page, still open, rejects the offer the customer just accepted.
    page = client.post(reject_action, {**reject, "reason": "Geen zin"}, follow=True)

    assert OfferResponse.objects.get().outcome == "accepted"
    shown = page_messages(page.content.decode())
    assert any(message.startswith("Offer “Tuinset” was already accepted in this decision") for message in shown)
    # A form without its decision is refused with a message, not an error page.
    broken = client.post(accept_action, {"offer": accept["offer"], "outcome": "accepted"}, follow=True)
    assert broken.status_code == 200
    assert "The answer was not recorded: the form was incomplete. Please try again." in page_messages(
        broken.content.decode()
    )


# --- The call list ---------------------------------------------------------------------------------


@pytest.fixture
def call_list(settings):
    """Call lists made by the real callcenter channel, whatever the hour on the machine."""
    settings.CAMPAIGN_CHANNELS = {
        **settings.CAMPAIGN_CHANNELS,
        "callcenter": {"BACKEND": "campaigns.channels.callcenter.CallListChannel"},
    }
    ContactPolicy.objects.update_or_create(pk=1, defaults={"quiet_channels": []})

    def make(contacts, name):
        campaign = activated(
            campaign_for(contacts, channels=("callcenter",), holdout_percent=0, holdout_off_reason="test", name=name)
        )
        send_everything()
        return campaign

    return make


@pytest.mark.django_db
def test_the_next_call_opens_the_oldest_open_item_and_the_agent_closes_it(english_client, agent, call_list):
    first = customer(email=False, phone=True, consent=("phone",), first_name="Femke", last_name="Bakker")
    second = customer(email=False, phone=True, consent=("phone",), first_name="Joost", last_name="Smit")
    call_list([first, second], name="Najaarsbelronde")
    for contact, hours_ago in ((first, 3), (second, 1)):
        CallListItem.objects.filter(contact_id=contact.pk).update(
            created_at=timezone.now() - dt.timedelta(hours=hours_ago)
        )
    oldest = CallListItem.objects.get(contact_id=first.pk)
    client = english_client(agent)

    opened = client.post(reverse("agent:next"), follow=True)

    assert opened.redirect_chain == [(f"{customer_url(first)}?item={oldest.pk}", 302)]
    html = opened.content.decode()
    assert '<h1 id="agent-customer-name">Femke Bakker</h1>' in html
    assert "Call list: Najaarsbelronde" in html
    assert "Goedemiddag Femke." in html and "Gratis bezorging" in html and "20% korting" in html

    closed = client.post(reverse("agent:call-outcome", args=[oldest.pk]), {"outcome": "no_answer"}, follow=True)

    oldest.refresh_from_db()
    assert (oldest.status, oldest.outcome, oldest.called_by) == ("done", "no_answer", agent)
    assert Event.objects.filter(contact=first, type="call_outcome").count() == 1
    assert "Call recorded: No answer. Press n for the next call." in page_messages(closed.content.decode())
    again = client.post(reverse("agent:call-outcome", args=[oldest.pk]), {"outcome": "interested"}, follow=True)
    assert "This call was recorded already." in page_messages(again.content.decode())
    assert Event.objects.filter(contact=first, type="call_outcome").count() == 1

    following = client.post(reverse("agent:next"))
    assert following["Location"].startswith(customer_url(second))

    CallListItem.objects.update(status="done")
    empty = client.post(reverse("agent:next"), follow=True)
    assert "The call list is empty: there is no one left to call." in page_messages(empty.content.decode())


@pytest.mark.django_db
def test_a_call_needs_an_outcome_from_the_list(english_client, agent, call_list):
    contact = customer(email=False, phone=True, consent=("phone",))
    call_list([contact], name="Belronde")
    item = CallListItem.objects.get()

    page = english_client(agent).post(reverse("agent:call-outcome", args=[item.pk]), {"outcome": ""}, follow=True)

    assert "Choose how the call went." in page_messages(page.content.decode())
    item.refresh_from_db()
    assert item.status == "open"


# --- Language --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_console_speaks_dutch_by_default(client, agent):
    contact = caller()
    offer(name="Tuinset")
    client.force_login(agent)

    html = client.get(customer_url(contact)).content.decode()

    assert '<html lang="nl">' in html
    assert '<label for="language-switch">Taal</label>' in html
    assert re.search(r"Telefoon \(callcenter\)</span>\s*<strong>Gegeven</strong>", html)
    # Numbers in the Dutch way: the score 0.2 x 100.
    assert "<strong>20,00</strong>" in html


@pytest.mark.django_db
def test_the_language_switch_turns_the_console_to_english(client, agent):
    client.force_login(agent)

    client.post(reverse("set_language"), {"language": "en", "next": CONSOLE})

    assert '<html lang="en">' in client.get(CONSOLE).content.decode()


# --- The profile's reads ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_profile_is_five_queries_whatever_the_history(django_assert_num_queries, agent, call_list):
    contact = caller()
    consent_record(contact=contact, channel="sms", status="withdrawn", source="test")
    call_list([contact], name="Belronde")
    now = timezone.now()
    for day in range(8):
        EventFactory(
            contact=contact,
            occurred_at=now - dt.timedelta(days=day + 1),
            properties={"product": f"Product {day}", "category": "tuin"},
            value="10.00",
            currency="EUR",
        )
    campaign = live_campaign()
    taken, turned_down, _shown = (offer(name=name, campaign=campaign) for name in ("Genomen", "Afgeslagen", "Getoond"))
    earlier = offer_decide(lookup="id", value=contact.pk, agent=agent)
    for made, outcome, reason in ((taken, "accepted", ""), (turned_down, "rejected", "Te duur")):
        offer_response_record(
            decision_id=earlier.id,
            offer_id=made.pk,
            outcome=outcome,
            agent=agent,
            client_request_id=f"test-{made.pk}",
            reason=reason,
        )
    current = offer_decide(lookup="id", value=contact.pk, agent=agent)
    assert [item.spec.name for item in current.offers] == ["Getoond"]

    with django_assert_num_queries(5):
        profile = agent_profile(contact_id=contact.pk, exclude_decision_id=current.id)

    assert profile.phones == [phone_of(contact)] and profile.emails == [email_of(contact)]
    assert {channel: status for channel, (status, _at) in profile.consents.items()} == {
        "phone": "granted",
        "email": "granted",
        "sms": "withdrawn",
    }
    assert [purchase.product for purchase in profile.purchases] == [f"Product {day}" for day in range(5)]
    assert [item.campaign_name for item in profile.open_items] == ["Belronde"]
    by_name = {earlier.name: earlier for earlier in profile.earlier_offers}
    assert (by_name["Genomen"].outcome, by_name["Afgeslagen"].outcome) == ("accepted", "rejected")
    assert by_name["Afgeslagen"].reason == "Te duur"
    # Presented in the earlier decision, not answered; the decision on screen is not "earlier".
    assert by_name["Getoond"].outcome is None
    assert by_name["Getoond"].last_presented_at == OfferDecision.objects.get(pk=earlier.id).created_at
    without_earlier = agent_profile(contact_id=contact.pk, exclude_decision_id=earlier.id)
    assert {row.name: row.last_presented_at for row in without_earlier.earlier_offers}["Getoond"] == (
        OfferDecision.objects.get(pk=current.id).created_at
    )


@pytest.mark.django_db
def test_the_customer_page_does_not_read_more_for_a_longer_history(english_client, agent):
    campaign = live_campaign()
    made = [offer(name=f"Aanbod {number}", campaign=campaign) for number in range(3)]
    newcomer, regular = caller(), caller()
    for day in range(12):
        EventFactory(contact=regular, occurred_at=timezone.now() - dt.timedelta(days=day + 1), value="5.00")
    for round_number in range(3):
        decision = offer_decide(lookup="id", value=regular.pk, agent=agent)
        offer_response_record(
            decision_id=decision.id,
            offer_id=made[round_number].pk,
            outcome="later",
            agent=agent,
            client_request_id=f"history-{round_number}",
        )
    client = english_client(agent)
    client.get(customer_url(newcomer))  # the session, the offer catalogue: read once

    with CaptureQueriesContext(connection) as short:
        assert client.get(customer_url(newcomer)).status_code == 200
    with CaptureQueriesContext(connection) as long:
        assert client.get(customer_url(regular)).status_code == 200

    assert len(long) == len(short) <= 15


# --- In the browser --------------------------------------------------------------------------------


@pytest.mark.browser
def test_an_agent_finds_a_caller_by_phone_and_accepts_with_the_keyboard(live_server, page, transactional_db):
    from playwright.sync_api import expect

    from dialoog.roles import CALLCENTER_AGENT
    from tests.factories import UserFactory

    UserFactory(username="agent", role=CALLCENTER_AGENT, password="secret-pass-123")
    contact = caller(first_name="Sanne", last_name="Visser")
    EventFactory(contact=contact, properties={"product": "Parasol", "category": "tuin"}, value="89.95", currency="EUR")
    campaign = live_campaign()
    offer(name="Tuinset", value=120, campaign=campaign, propensity_default=0.3, code="TUIN24")
    offer(name="Heggenschaar", value=50, campaign=campaign, propensity_default=0.5)

    log_in_in_english(page, live_server.url, "agent", "secret-pass-123")
    page.goto(f"{live_server.url}{CONSOLE}")
    expect(page.get_by_role("heading", name="Find the customer")).to_be_visible()

    page.keyboard.press("/")
    expect(page.get_by_label("Phone number, e-mail address or contact key")).to_be_focused()
    page.keyboard.type(local_format(phone_of(contact)))
    page.keyboard.press("Enter")

    expect(page.get_by_role("heading", name="Sanne Visser", level=1)).to_be_visible()
    offers = page.locator("[data-offer]")
    expect(offers).to_have_count(2)
    expect(offers.first).to_have_attribute("data-offer-name", "Tuinset")
    expect(offers.first).to_have_attribute("aria-current", "true")
    expect(offers.first).to_contain_text("Goedemiddag Sanne, Tuinset!")
    page.screenshot(path=str(screenshot_path()), full_page=True)

    # 2 chooses the second offer; l snoozes it (it stays proposed); after the redirect the first
    # offer is chosen again.
    page.keyboard.press("2")
    expect(offers.nth(1)).to_have_attribute("aria-current", "true")
    expect(offers.first).not_to_have_attribute("aria-current", "true")
    page.keyboard.press("l")
    expect(page.get_by_role("status").filter(has_text="“Heggenschaar” for later")).to_be_visible()
    assert list(OfferResponse.objects.values_list("offer__name", "outcome")) == [("Heggenschaar", "later")]
    expect(offers).to_have_count(2)
    expect(offers.first).to_have_attribute("aria-current", "true")

    page.keyboard.press("a")

    expect(page.get_by_role("status").filter(has_text="“Tuinset” accepted")).to_be_visible()
    response = OfferResponse.objects.get(outcome="accepted")
    assert (response.offer.name, response.contact_id) == ("Tuinset", contact.pk)
    assert response.agent.username == "agent"
    # After the redirect a new decision: Tuinset is no longer proposed, and says why.
    expect(offers).to_have_count(1)
    expect(offers.first).to_have_attribute("data-offer-name", "Heggenschaar")
    left_out = page.locator(".agent-left-out")
    left_out.locator("summary").click()
    expect(left_out.locator("li", has_text="Tuinset")).to_contain_text("accepted on")
    expect(left_out.locator("li", has_text="Tuinset")).to_contain_text("not offered again")

    # r focuses the reason of the chosen offer; Enter there rejects it with the reason typed (its
    # "r" typed as a letter, not taken as the key: keys are ignored in a field).
    page.keyboard.press("r")
    expect(page.locator("#agent-reason-1")).to_be_focused()
    page.keyboard.type("Te duur")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status").filter(has_text="“Heggenschaar” rejected: Te duur.")).to_be_visible()
    assert OfferResponse.objects.get(outcome="rejected").reason == "Te duur"
    expect(offers).to_have_count(0)
    page.screenshot(path=str(screenshot_path("agent-console-answered.png")), full_page=True)

    # n asks for the next call; the call list is empty.
    page.keyboard.press("n")
    expect(page.get_by_role("status").filter(has_text="The call list is empty")).to_be_visible()


def screenshot_path(name: str = "agent-console.png") -> Path:
    folder = Path(settings.BASE_DIR) / "test-results"
    folder.mkdir(exist_ok=True)
    return folder / name
