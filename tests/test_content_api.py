"""The content API: read blocks and templates, render a template for a contact."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from content.models import Template
from content.services import block_create, block_publish, block_version_create, template_version_create
from tests.factories import ContactFactory, TemplateFactory

pytestmark = pytest.mark.django_db

HTML = '<p>Beste {{ contact.first_name | default("klant") }},</p>{% include "block:footer" %}'


@pytest.fixture
def footer():
    version = block_create(name="Footer", slug="footer", body="<p>Groet, De Linde</p>")
    block_publish(version=version)
    return version


@pytest.fixture
def email(footer):
    template = TemplateFactory(channel=Template.Channel.EMAIL, message__name="Najaarsactie")
    template_version_create(template=template, language="nl", subject="Voor {{ contact.first_name }}", html=HTML)
    template_version_create(
        template=template,
        language="en",
        subject="For {{ contact.first_name }}",
        html="<p>Dear {{ contact.first_name }}</p>",
    )
    return template


def test_blocks_list_and_detail_show_the_published_version(api_client_for, marketeer, footer):
    block_version_create(block=footer.block, body="<p>Concept</p>")
    client = api_client_for(marketeer)

    listed = client.get("/api/v1/blocks/").json()["results"]
    detail = client.get("/api/v1/blocks/footer/").json()

    assert [(b["slug"], b["published_version"], b["newest_version"]) for b in listed] == [("footer", 1, 2)]
    assert detail["published"]["body"] == "<p>Groet, De Linde</p>"
    assert [version["number"] for version in detail["versions"]] == [2, 1]


def test_template_list_takes_the_same_queries_for_many_templates(api_client_for, marketeer, email):
    client = api_client_for(marketeer)
    client.get("/api/v1/templates/")
    with CaptureQueriesContext(connection) as few:
        client.get("/api/v1/templates/")
    for _ in range(5):
        template = TemplateFactory(channel=Template.Channel.SMS)
        template_version_create(template=template, language="nl", text="Hoi")
    with CaptureQueriesContext(connection) as many:
        response = client.get("/api/v1/templates/")

    assert len(response.json()["results"]) == 6
    assert len(many) == len(few)


def test_template_detail_shows_the_newest_version_per_language_and_whether_it_is_usable(
    api_client_for, marketeer, email
):
    detail = api_client_for(marketeer).get(f"/api/v1/templates/{email.pk}/").json()

    assert detail["usable"] is True and detail["problems"] == []
    assert sorted(detail["languages"]) == ["en", "nl"]
    assert {version["language"]: version["subject"] for version in detail["versions"]} == {
        "en": "For {{ contact.first_name }}",
        "nl": "Voor {{ contact.first_name }}",
    }


def test_render_for_a_contact_uses_their_language_and_returns_the_versions(api_client_for, agent, email, footer):
    contact = ContactFactory(first_name="Sanne", locale="nl")

    response = api_client_for(agent).post(
        f"/api/v1/templates/{email.pk}/render/", {"contact_key": str(contact.contact_key)}, format="json"
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["channel"], body["language"], body["template_version"]) == ("email", "nl", 1)
    assert body["subject"] == "Voor Sanne"
    assert "Beste Sanne," in body["html"] and "Groet, De Linde" in body["html"]
    assert body["block_version_ids"] == {"footer": footer.pk}
    assert body["sms"] is None


def test_render_for_an_english_contact_and_with_the_sample_profile(api_client_for, marketeer, email):
    client = api_client_for(marketeer)
    contact = ContactFactory(first_name="John", locale="en-gb")

    english = client.post(
        f"/api/v1/templates/{email.pk}/render/", {"contact_key": str(contact.contact_key)}, format="json"
    )
    sample = client.post(f"/api/v1/templates/{email.pk}/render/", {"sample": True}, format="json")

    assert english.json()["subject"] == "For John"
    assert sample.json()["subject"] == "Voor Sanne"


def test_render_an_sms_returns_its_parts(api_client_for, marketeer):
    template = TemplateFactory(channel=Template.Channel.SMS)
    template_version_create(template=template, language="nl", text="Hé {{ contact.first_name }}, € 5 korting!")

    body = (
        api_client_for(marketeer)
        .post(f"/api/v1/templates/{template.pk}/render/", {"sample": True}, format="json")
        .json()
    )

    assert body["text"] == "Hé Sanne, € 5 korting!"
    assert body["sms"] == {"encoding": "GSM-7", "length": 23, "parts": 1, "per_part": 160, "non_gsm_characters": []}


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ({}, "contact_key", "Give a contact key, or set sample to true."),
        ({"contact_key": "not-a-key"}, "contact_key", "Must be a valid UUID."),
        ({"contact_key": "00000000-0000-0000-0000-000000000000"}, "contact_key", "There is no contact with this key."),
    ],
)
def test_render_with_a_bad_payload_says_which_field(api_client_for, marketeer, email, english, payload, field, message):
    response = api_client_for(marketeer).post(
        f"/api/v1/templates/{email.pk}/render/", payload, format="json", headers={"accept-language": "en"}
    )

    assert response.status_code == 400
    assert [(e["field"], e["message"]) for e in response.json()["errors"]] == [(field, message)]


def test_render_of_a_template_with_problems_or_no_version_is_a_400(api_client_for, marketeer, english):
    broken = TemplateFactory(channel=Template.Channel.SMS)
    template_version_create(template=broken, language="nl", text="{{ contact.first_name ")
    empty = TemplateFactory(channel=Template.Channel.SMS)
    client = api_client_for(marketeer)

    broken_response = client.post(
        f"/api/v1/templates/{broken.pk}/render/", {"sample": True}, format="json", headers={"accept-language": "en"}
    )
    empty_response = client.post(
        f"/api/v1/templates/{empty.pk}/render/", {"sample": True}, format="json", headers={"accept-language": "en"}
    )

    assert broken_response.status_code == 400
    assert broken_response.json()["errors"][0]["message"].startswith("Version 1 has problems")
    assert empty_response.status_code == 400
    assert empty_response.json()["errors"][0]["message"] == "This template has no version to render yet."


def test_render_with_invalid_utf8_is_a_400(api_client_for, marketeer, email):
    response = api_client_for(marketeer).post(
        f"/api/v1/templates/{email.pk}/render/", b'{"sample": "\xff"}', content_type="application/json"
    )

    assert response.status_code == 400


def test_render_needs_authentication_and_the_right_to_read_contacts(client, api_client_for, email):
    from tests.factories import UserFactory

    nobody = UserFactory(username="no-role")

    assert client.post(f"/api/v1/templates/{email.pk}/render/", {"sample": True}).status_code == 401
    assert (
        api_client_for(nobody)
        .post(f"/api/v1/templates/{email.pk}/render/", {"sample": True}, format="json")
        .status_code
        == 403
    )
