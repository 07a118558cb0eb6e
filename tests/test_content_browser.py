"""The template preview in a real browser: the desktop/mobile toggle and the contact picker."""

import pytest
from playwright.sync_api import expect

from content.models import Template
from content.services import template_version_create
from dialoog.demo import DEMO_PASSWORD
from dialoog.roles import MARKETEER
from tests.conftest import log_in_in_english
from tests.factories import ContactFactory, IdentityFactory, TemplateFactory, UserFactory

pytestmark = [pytest.mark.browser]


def frame_width(page) -> int:
    """The width the email gets inside the frame (its border left out)."""
    return page.locator("#content-preview-frame").evaluate("frame => frame.clientWidth")


def test_the_marketeer_previews_an_email_on_mobile_and_for_a_picked_contact(live_server, page, transactional_db):
    UserFactory(username="marketeer", role=MARKETEER, password=DEMO_PASSWORD)
    template = TemplateFactory(channel=Template.Channel.EMAIL)
    template_version_create(
        template=template,
        language="nl",
        subject="{{ offer.name }} voor {{ contact.first_name }}",
        html='<p>Beste {{ contact.first_name | default("klant") }},</p>',
    )
    joris = ContactFactory(first_name="Joris", last_name="Zonneveld", locale="nl")
    IdentityFactory(contact=joris, kind="email", value="joris@example.nl")
    ContactFactory(first_name="Anna", last_name="Jansen")

    log_in_in_english(page, live_server.url, "marketeer", DEMO_PASSWORD)
    page.goto(f"{live_server.url}/admin/content/template/{template.pk}/preview/")

    frame = page.frame_locator("#content-preview-frame")
    expect(frame.locator("body")).to_contain_text("Beste Sanne,")  # the sample profile
    assert frame_width(page) == 700
    page.get_by_role("button", name="Mobile").click()
    expect(page.get_by_role("button", name="Mobile")).to_have_attribute("aria-pressed", "true")
    assert frame_width(page) == 375
    page.get_by_role("button", name="Desktop").click()
    assert frame_width(page) == 700

    page.get_by_label("Preview for a contact").fill("joris@example.nl")
    option = page.locator(".contact-picker-option")
    expect(option).to_have_count(1)
    expect(option).to_contain_text("Joris Zonneveld")
    expect(option).to_contain_text(str(joris.contact_key))
    option.click()

    expect(page.locator(".content-preview-who")).to_have_text("Joris Zonneveld")
    expect(frame.locator("body")).to_contain_text("Beste Joris,")
    expect(page.locator(".content-subject")).to_have_text("Najaarskorting voor Joris")
