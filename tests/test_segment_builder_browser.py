import datetime as dt
import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from audiences.models import Segment
from audiences.services.consents import consent_record
from dialoog.demo import DEMO_PASSWORD
from dialoog.roles import MARKETEER
from tests.conftest import log_in_in_english
from tests.factories import ContactFactory, EventFactory, UserFactory

pytestmark = [pytest.mark.browser]


def customer(*, email_consent: bool, purchases: int, days_ago: int = 10):
    contact = ContactFactory()
    if email_consent:
        consent_record(contact=contact, channel="email", status="granted", source="test")
    for _ in range(purchases):
        EventFactory(contact=contact, occurred_at=timezone.now() - dt.timedelta(days=days_ago))
    return contact


def test_the_marketeer_builds_a_segment_and_sees_the_live_count(live_server, page, transactional_db):
    UserFactory(username="marketeer", role=MARKETEER, password=DEMO_PASSWORD)
    buyers = [customer(email_consent=True, purchases=2), customer(email_consent=True, purchases=3)]
    customer(email_consent=True, purchases=1)  # bought once
    customer(email_consent=True, purchases=2, days_ago=200)  # too long ago
    customer(email_consent=False, purchases=2)  # may not be mailed

    log_in_in_english(page, live_server.url, "marketeer", DEMO_PASSWORD)
    page.goto(f"{live_server.url}/admin/audiences/segment/add/")

    page.get_by_label("Name").fill("Mailbare tuinkopers")
    count = page.locator(".sb-count-number")
    expect(page.locator(".sb-status")).to_have_text("Add a condition to see who is in the segment.")

    page.get_by_role("button", name="+ condition").click()
    consent = page.locator(".sb-cond").nth(0)
    consent.get_by_label("Condition type").select_option("consent")
    consent.get_by_label("Channel").select_option("email")
    consent.get_by_label("Consent status").select_option("granted")
    expect(count).to_have_text("4")  # everyone who may be mailed

    page.get_by_role("button", name="+ condition").click()
    event = page.locator(".sb-cond").nth(1)
    event.get_by_label("Condition type").select_option("event")
    event.get_by_label("Event type").select_option("purchase")
    event.get_by_label("Aggregate").select_option(label="number of times")
    event.get_by_label("Comparison").select_option(label="at least")
    event.get_by_label("Value").fill("2")
    event.get_by_label("Number of days (empty: all time)").fill("90")

    expect(count).to_have_text("2")
    expect(page.locator(".sb-count-text")).to_have_text("contacts")
    sample = page.locator(".sb-sample a")
    expect(sample).to_have_count(2)
    assert sorted(sample.all_inner_texts()) == sorted(str(c) for c in buyers)
    expect(sample.first).to_have_attribute("href", re.compile(r"/admin/audiences/contact/\d+/change/$"))

    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("Mailbare tuinkopers")

    segment = Segment.objects.get(name="Mailbare tuinkopers")
    assert segment.kind == Segment.Kind.DYNAMIC
    assert segment.rules == {
        "version": 1,
        "root": {
            "all": [
                {"consent": "email", "status": "granted"},
                {"event": "purchase", "within_days": 90, "aggregate": "count", "op": "gte", "value": 2},
            ]
        },
    }


def test_the_json_tab_shows_parse_errors_and_rule_errors_at_their_node(live_server, page, transactional_db):
    UserFactory(username="marketeer", role=MARKETEER, password=DEMO_PASSWORD)
    customer(email_consent=True, purchases=0)

    log_in_in_english(page, live_server.url, "marketeer", DEMO_PASSWORD)
    page.goto(f"{live_server.url}/admin/audiences/segment/add/")

    page.get_by_role("tab", name="JSON").click()
    rules = page.locator("#id_rules")
    rules.fill('{"version": 1, "root": {"all": [')
    expect(page.locator(".sb-parse-error")).to_contain_text("This is not valid JSON yet")

    rules.fill(
        '{"version": 1, "root": {"any": [{"consent": "email", "status": "granted"},'
        ' {"score": "churn_risk", "op": "gt", "value": "hoog"}]}}'
    )
    expect(page.locator(".sb-parse-error")).to_be_hidden()
    page.get_by_role("tab", name="Builder").click()
    # The builder follows the JSON: two conditions in an ANY group, the bad value marked.
    expect(page.locator(".sb-cond")).to_have_count(2)
    expect(page.locator(".sb-root > .sb-group-head").get_by_label("Match")).to_have_value("any")
    score = page.locator('.sb-cond[data-path="root.any.1"]')
    expect(score.locator(".sb-error")).to_contain_text("compares with a number")
    expect(score.get_by_label("Value")).to_have_attribute("aria-invalid", "true")
    expect(page.locator(".sb-count-number")).to_have_text("\u2013")  # no count while the rules are wrong

    score.get_by_label("Value").fill("0.5")
    expect(page.locator(".sb-count-number")).to_have_text("1")
    expect(score.locator(".sb-error")).to_have_count(0)
