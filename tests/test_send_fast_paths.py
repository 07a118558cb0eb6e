"""The send path signs its tracking links without building a Signer per link: the same text as
Django's Signer, which is what the click and open views check them with."""

import uuid
from urllib.parse import urlencode

import pytest
from django.core import signing

from campaigns.tracking.links import SALT, click_target, click_url, delivery_token, opened_delivery, tracked_html
from content.rendering.render import compile_template, render
from content.selectors import LINK_SALT, contact_links

URLS = ["https://shop.example.nl/najaar", "https://shop.example.nl/zoek?q=tuin stoel&p=2", "https://voorbeeld.nl/é"]


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("delivery_id", [1, 987654321])
def test_click_links_are_signed_as_the_signer_signs_them(settings, url, delivery_id):
    signature = signing.Signer(salt=SALT).sign(f"{delivery_id}|{url}").rsplit(":", 1)[1]
    expected = f"{settings.PUBLIC_URL}/t/c/{delivery_id}/?{urlencode({'u': url, 's': signature})}"

    assert click_url(delivery_id, url) == expected
    assert click_target(delivery_id, url, signature) == url


def test_open_tokens_are_signed_as_the_signer_signs_them_and_follow_the_secret_key(settings):
    assert delivery_token(42) == signing.Signer(salt=SALT).sign("42")
    assert opened_delivery(delivery_token(42)) == 42

    before = delivery_token(42)
    settings.SECRET_KEY = "another-secret-key-for-this-test-only-0123456789abcdef"
    assert delivery_token(42) == signing.Signer(salt=SALT).sign("42") != before
    assert opened_delivery(before) is None


def test_a_contact_s_personal_links_are_signed_as_the_signer_signs_them_and_follow_the_secret_key(settings):
    contact_key = str(uuid.uuid4())
    expected = signing.Signer(salt=LINK_SALT).sign(contact_key)

    assert contact_links(contact_key)["unsubscribe"] == f"{settings.PUBLIC_URL}/m/{expected}/unsubscribe/"
    settings.SECRET_KEY = "another-secret-key-for-this-test-only-0123456789abcdef"
    assert contact_links(contact_key)["unsubscribe"].split("/")[-3] == signing.Signer(salt=LINK_SALT).sign(contact_key)


def test_a_static_block_renders_once_and_a_block_that_reads_the_context_every_time():
    blocks = {"header": "<p>De Linde, {{ 'sinds' | upper }} 1968</p>", "footer": "<p>Dag {{ contact.first_name }}</p>"}
    compiled = compile_template(
        '{% include "block:header" %}{% include "block:footer" %}',
        channel="email_html",
        version_key=("test", uuid.uuid4()),
        blocks=blocks,
    )

    first = render(compiled, {"contact": {"first_name": "Sanne"}})
    second = render(compiled, {"contact": {"first_name": "Daan"}})

    assert first == "<p>De Linde, SINDS 1968</p><p>Dag Sanne</p>"
    assert second == "<p>De Linde, SINDS 1968</p><p>Dag Daan</p>"
    assert compiled.blocks["header"].dialoog_output == "<p>De Linde, SINDS 1968</p>"
    assert "dialoog_output" not in compiled.blocks["footer"].__dict__


def test_tracked_html_rewrites_links_but_not_the_skipped_ones_and_adds_the_pixel():
    html = (
        '<html><body><a href="https://shop.example.nl/najaar">Actie</a>'
        '<a href="https://dialoog.example.nl/m/x/unsubscribe/">Afmelden</a></body></html>'
    )

    tracked = tracked_html(html, 7, skip=("https://dialoog.example.nl/m/x/unsubscribe/",))

    assert click_url(7, "https://shop.example.nl/najaar").replace("&", "&amp;") in tracked
    assert 'href="https://dialoog.example.nl/m/x/unsubscribe/"' in tracked
    assert f"/t/o/{delivery_token(7)}.gif" in tracked
    assert tracked.endswith("</body></html>")


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<p>Zoë</p></BODY></html>", 10),
        ("<p>a</p></body><!-- </Body> -->", 20),
        ("<p>geen body</p>", -1),
        ("</body", -1),
    ],
)
def test_the_pixel_goes_before_the_last_closing_body_tag_in_any_case(settings, html, expected):
    tracked = tracked_html(html, 3)
    source = f"{settings.PUBLIC_URL}/t/o/{delivery_token(3)}.gif"
    pixel = f'<img src="{source}" width="1" height="1" alt="" style="display:none">'
    assert tracked == (html[:expected] + pixel + html[expected:] if expected >= 0 else html + pixel)


def test_the_file_backend_writes_each_message_once_as_json(tmp_path):
    import json
    from dataclasses import asdict

    from campaigns.channels.base import OutboundMessage, Result
    from campaigns.channels.filebased import FileChannel

    message = OutboundMessage(
        delivery_id=5,
        idempotency_key="dialoog-delivery-5",
        channel="email",
        to="klant@example.nl",
        contact_key="k",
        campaign={"id": 1, "name": "Najaar"},
        subject="Hallo Zoë",
        html="<p>Hallo</p>",
        headers={"X-Dialoog-Delivery": "5"},
        data={"template_version_id": 9},
    )
    with FileChannel(channel="email", path=str(tmp_path)) as backend:
        first = backend.send_batch([message])
        (tmp_path / "dialoog-delivery-5.json").write_text("{}")  # a second hand-over must not write again
        second = backend.send_batch([message])

    assert [outcome.result for outcome in first + second] == [Result.SENT, Result.SENT]
    assert (tmp_path / "dialoog-delivery-5.json").read_text() == "{}"
    with FileChannel(channel="email", path=str(tmp_path / "again")) as backend:
        backend.send_batch([message])
    assert json.loads((tmp_path / "again" / "dialoog-delivery-5.json").read_text()) == json.loads(
        json.dumps(asdict(message), default=str)
    )


@pytest.mark.django_db
def test_the_any_lookup_takes_the_ids_as_one_array_for_fields_and_foreign_keys():
    from audiences.models import Contact, Identity
    from tests.factories import ContactFactory, IdentityFactory

    first, second, third = ContactFactory(), ContactFactory(), ContactFactory()
    IdentityFactory(contact=first, kind="email", value="een@example.nl")
    IdentityFactory(contact=third, kind="email", value="drie@example.nl")

    contacts = Contact.objects.filter(pk__any=[first.pk, third.pk])
    identities = Identity.objects.filter(contact_id__any=[first.pk, second.pk])

    assert set(contacts) == {first, third}
    assert [identity.value for identity in identities] == ["een@example.nl"]
    assert set(Identity.objects.filter(contact__any=[third.pk]).values_list("value", flat=True)) == {"drie@example.nl"}
    assert not Contact.objects.filter(pk__any=[]).exists()
    sql, params = contacts.query.sql_with_params()
    assert "= ANY(" in sql and [first.pk, third.pk] in params
