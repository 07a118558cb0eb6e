"""The content admin: the block and template editors (versions through the services, checks with
line and column, history, publish, roll back, compare), the preview with the sample profile or a
real contact, the contact picker, test sends, and what viewers may not do."""

import re
from html import unescape

import pytest
from django.contrib.auth.models import Permission
from django.core import mail
from django.urls import reverse

from content.models import ContentBlock, ContentBlockVersion, Template, TemplateVersion
from content.services import block_create, block_publish, block_version_create, template_version_create
from dialoog import sms
from tests.factories import ContactFactory, IdentityFactory, MessageFactory, TemplateFactory, UserFactory

pytestmark = pytest.mark.django_db

BLOCKS = reverse("admin:content_contentblock_changelist")
TEMPLATES = reverse("admin:content_template_changelist")
MESSAGES = reverse("admin:content_message_changelist")
CONTACTS = reverse("admin:content_template_contacts")

EMAIL_HTML = '<p>Beste {{ contact.first_name | default("klant") }},</p>\n<p>{{ offer.name }} is voor u.</p>'


@pytest.fixture
def as_marketeer(english_client, marketeer):
    return english_client(marketeer)


@pytest.fixture
def as_analyst(english_client, analyst):
    return english_client(analyst)


@pytest.fixture(autouse=True)
def _empty_outboxes():
    sms.outbox.clear()
    yield
    sms.outbox.clear()


def block_url(block, action="change"):
    return reverse(f"admin:content_contentblock_{action}", args=[block.pk])


def template_url(template, action="change", **query):
    url = reverse(f"admin:content_template_{action}", args=[template.pk])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def block_form(**fields):
    return {"name": "Voettekst", "slug": "footer", "kind": "footer", "description": "", "text_body": ""} | fields


def srcdoc(response) -> str:
    match = re.search(r'<iframe[^>]*\ssrcdoc="([^"]*)"', response.text)
    assert match, "no preview frame"
    return unescape(match.group(1))


def email_template(html=EMAIL_HTML, subject="{{ offer.name }} voor {{ contact.first_name }}", **versions):
    template = TemplateFactory(channel=Template.Channel.EMAIL, default_language="nl")
    template_version_create(template=template, language="nl", subject=subject, html=html)
    for language, fields in versions.items():
        template_version_create(template=template, language=language, **fields)
    return template


def sms_template(text="Hoi {{ contact.first_name }}, {{ offer.name }} met code {{ offer.code }}."):
    template = TemplateFactory(channel=Template.Channel.SMS, default_language="nl")
    template_version_create(template=template, language="nl", text=text)
    return template


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]] if response.context else []


# --- Blocks: the editor -------------------------------------------------------------------------


def test_creating_a_block_through_the_admin_makes_version_1(as_marketeer, marketeer):
    response = as_marketeer.post(
        reverse("admin:content_contentblock_add"),
        block_form(body="<p>Afmelden: {{ links.unsubscribe }}</p>\r\n"),
        follow=True,
    )
    assert response.status_code == 200
    block = ContentBlock.objects.get(slug="footer")
    version = block.versions.get()
    assert version.number == 1
    assert version.body == "<p>Afmelden: {{ links.unsubscribe }}</p>\n"  # as typed, with LF line ends
    assert version.created_by == marketeer
    assert version.is_valid
    assert block.published_version is None  # a draft until published
    assert any("Saved as version 1" in message for message in messages_of(response))


def test_editing_a_block_makes_version_2_and_leaves_version_1_as_it_was(as_marketeer):
    first = block_create(name="Voettekst", slug="footer", kind="footer", body="<p>Oud</p>")
    block = first.block
    page = as_marketeer.get(block_url(block))
    assert "&lt;p&gt;Oud&lt;/p&gt;</textarea>" in page.text  # the editor starts from the newest version

    response = as_marketeer.post(
        block_url(block), block_form(body="<p>Nieuw</p>", note="Nieuwe tekst", _continue="1"), follow=True
    )
    assert response.status_code == 200
    assert list(block.versions.values_list("number", "body", "note")) == [
        (2, "<p>Nieuw</p>", "Nieuwe tekst"),
        (1, "<p>Oud</p>", ""),
    ]
    assert ContentBlockVersion.objects.get(pk=first.pk).body == "<p>Oud</p>"

    # Saving what is already there makes no version.
    as_marketeer.post(block_url(block), block_form(body="<p>Nieuw</p>"))
    assert block.versions.count() == 2


def test_a_syntax_error_is_stored_and_shown_with_its_line_and_column(as_marketeer):
    block = block_create(name="Voettekst", slug="footer", kind="footer", body="<p>Oud</p>").block
    broken = "<p>Hallo</p>\n<p>{{ contact.first_name </p>"
    as_marketeer.post(block_url(block), block_form(body=broken))

    version = block.versions.get(number=2)
    assert version.body == broken
    problem = version.problems[0]
    assert (problem["field"], problem["line"]) == ("body", 2)

    page = as_marketeer.get(block_url(block))
    issues = page.text.split('id="content-issues"')[1].split("</div>")[0]
    assert f"line 2, column {problem['column']}" in issues
    assert 'class="errorlist content-problems"' in issues
    assert "Version 2 has a problem" in page.text
    assert "1 problem" in page.text  # in the history


def test_the_editor_lists_the_variables_and_shows_a_preview_with_the_sample_profile(as_marketeer):
    block = block_create(name="Groet", slug="greeting", kind="other", body="<p>Hoi {{ contact.first_name }}</p>").block
    page = as_marketeer.get(block_url(block))
    assert "<code>contact.first_name</code>" in page.text
    assert "<code>offer.valid_until</code>" in page.text
    assert "Hoi Sanne" in srcdoc(page)  # the sample profile


def test_publish_button_publishes_that_version(as_marketeer):
    first = block_create(name="Voettekst", slug="footer", kind="footer", body="<p>Een</p>")
    block = first.block
    block_version_create(block=block, body="<p>Twee</p>")
    page = as_marketeer.get(block_url(block))
    assert reverse("admin:content_contentblock_publish", args=[block.pk, 1]) in page.text

    response = as_marketeer.post(reverse("admin:content_contentblock_publish", args=[block.pk, 1]), follow=True)
    block.refresh_from_db()
    assert block.published_version == first
    assert any("Published version 1" in message for message in messages_of(response))
    assert as_marketeer.get(reverse("admin:content_contentblock_publish", args=[block.pk, 2])).status_code == 405


def test_publishing_a_version_with_problems_shows_an_error_and_publishes_nothing(as_marketeer):
    good = block_create(name="Voettekst", slug="footer", kind="footer", body="<p>Goed</p>")
    block_publish(version=good)
    bad = block_version_create(block=good.block, body="{% if %}")
    assert bad.problems

    response = as_marketeer.post(
        reverse("admin:content_contentblock_publish", args=[good.block.pk, bad.number]), follow=True
    )
    assert response.status_code == 200
    good.block.refresh_from_db()
    assert good.block.published_version == good
    assert any("cannot be published" in message for message in messages_of(response))
    assert 'class="error"' in response.text  # the admin's error message style


def test_roll_back_button_saves_the_old_content_as_a_new_published_version(as_marketeer):
    first = block_create(name="Voettekst", slug="footer", kind="footer", body="<p>Een</p>")
    block = first.block
    block_publish(version=block_version_create(block=block, body="<p>Twee</p>"))

    response = as_marketeer.post(reverse("admin:content_contentblock_rollback", args=[block.pk, 1]), follow=True)
    block.refresh_from_db()
    assert block.versions.count() == 3
    assert block.published_version.number == 3
    assert block.published_version.body == "<p>Een</p>"
    assert any("Rolled back to version 1" in message for message in messages_of(response))


def test_compare_shows_added_lines_green_and_removed_lines_red(as_marketeer, settings):
    first = block_create(name="Voettekst", slug="footer", kind="footer", body="<p>Een</p>\n<p>Blijft</p>")
    block_version_create(block=first.block, body="<p>Twee</p>\n<p>Blijft</p>")
    response = as_marketeer.get(block_url(first.block, "compare"), {"old": 1, "new": 2})
    assert response.status_code == 200
    html = response.text
    assert re.search(r'<tr class="content-diff-del">.*?&lt;p&gt;Een&lt;/p&gt;', html, re.S)
    assert re.search(r'<tr class="content-diff-add">.*?&lt;p&gt;Twee&lt;/p&gt;', html, re.S)
    css = (settings.BASE_DIR / "content/static/content/content-admin.css").read_text()
    assert re.search(r"tr\.content-diff-add td \{[^}]*background: #e6ffec", css)  # green
    assert re.search(r"tr\.content-diff-del td \{[^}]*background: #ffebe9", css)  # red


def test_the_slug_is_read_only_once_published_and_only_unpublished_blocks_can_be_deleted(as_marketeer):
    draft = block_create(name="Concept", slug="draft", kind="other", body="<p>x</p>").block
    live = block_create(name="Voettekst", slug="footer", kind="footer", body="<p>x</p>")
    block_publish(version=live)

    assert 'name="slug"' in as_marketeer.get(block_url(draft)).text
    page = as_marketeer.get(block_url(live.block))
    assert 'name="slug"' not in page.text
    as_marketeer.post(block_url(live.block), block_form(slug="renamed", body="<p>x</p>"))
    assert ContentBlock.objects.filter(slug="footer").exists()

    assert as_marketeer.post(block_url(live.block, "delete"), {"post": "yes"}).status_code == 403
    as_marketeer.post(block_url(draft, "delete"), {"post": "yes"})
    assert not ContentBlock.objects.filter(pk=draft.pk).exists()


def test_block_list_shows_versions_and_problems_without_a_query_per_row(as_marketeer, django_assert_max_num_queries):
    def blocks(start, count):
        for index in range(start, start + count):
            version = block_create(name=f"Blok {index}", slug=f"blok-{index}", body="<p>x</p>")
            block_publish(version=version)
            block_version_create(block=version.block, body="{% if %}")

    blocks(0, 3)
    as_marketeer.get(BLOCKS)  # warm up: sessions, content types
    with django_assert_max_num_queries(20) as few:
        response = as_marketeer.get(BLOCKS)
    assert "1 problem" in response.text
    blocks(3, 27)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = as_marketeer.get(BLOCKS)
    assert response.text.count("1 problem") == 30


# --- Templates: the editor per language ---------------------------------------------------------


def template_form(template, language, **content):
    data = {
        "message": template.message_id,
        "default_language": template.default_language,
        "sender_profile": template.sender_profile_id or "",
        "editor_language": language,
        "note": "",
    }
    return data | content


def test_saving_english_adds_an_english_version_and_keeps_the_dutch_one(as_marketeer, marketeer):
    template = email_template()
    dutch = template.versions.get(language="nl")

    page = as_marketeer.get(template_url(template, language="en"))
    assert "There is no “en” version yet" in page.text
    assert 'name="editor_language" value="en"' in page.text

    response = as_marketeer.post(
        template_url(template, language="en"),
        template_form(template, "en", subject="{{ offer.name }} for you", html="<p>Dear {{ contact.first_name }}</p>"),
        follow=True,
    )
    assert response.status_code == 200
    english = template.versions.get(language="en")
    assert (english.number, english.subject, english.created_by) == (1, "{{ offer.name }} for you", marketeer)
    assert list(template.versions.filter(language="nl")) == [dutch]
    assert TemplateVersion.objects.get(pk=dutch.pk).html == EMAIL_HTML

    tabs = as_marketeer.get(template_url(template, language="en")).text
    assert 'data-language="nl"' in tabs
    assert 'data-language="en"' in tabs
    assert "Dear {{ contact.first_name }}&lt;/p&gt;</textarea>" in tabs


def test_the_template_form_shows_the_fields_of_its_channel(as_marketeer):
    email = as_marketeer.get(template_url(email_template())).text
    assert all(f'name="{name}"' in email for name in ("subject", "preheader", "html", "text", "sender_profile"))
    assert 'name="talking_points"' not in email
    assert "Derived from the HTML when left empty." in email

    script = TemplateFactory(channel=Template.Channel.SCRIPT)
    template_version_create(template=script, language="nl", text="Goedemiddag {{ contact.first_name }}")
    page = as_marketeer.get(template_url(script)).text
    assert all(f'name="{name}"' in page for name in ("text", "talking_points", "offer_pitch"))
    assert 'name="subject"' not in page
    assert 'name="sender_profile"' not in page
    assert "What the agent says" in page


def test_the_sms_editor_carries_the_live_counter(as_marketeer, settings):
    settings.SMS_PART_WARNING = 2
    page = as_marketeer.get(template_url(sms_template())).text
    textarea = re.search(r"<textarea[^>]*name=\"text\"[^>]*>", page).group(0)
    assert "data-sms-counter" in textarea
    assert 'data-sms-max-parts="2"' in textarea
    assert "data-sms-labels=" in textarea
    assert "content/sms-counter.js" in page


def test_template_problems_are_shown_with_line_and_column_and_it_is_not_usable(as_marketeer):
    template = email_template(html="<p>Hoi</p>\n<p>{{ contact.frist_name }}</p>")
    version = template.versions.get()
    assert version.problems
    page = as_marketeer.get(template_url(template)).text
    problem = version.problems[0]
    assert f"line {problem['line']}, column {problem['column']}" in page
    assert "No, not yet:" in page

    good = as_marketeer.get(template_url(email_template())).text
    assert "Yes: campaigns can use this template." in good


def test_a_new_template_from_the_message_page_opens_with_the_editor_of_its_channel(as_marketeer):
    message = MessageFactory()
    overview = as_marketeer.get(reverse("admin:content_message_change", args=[message.pk])).text
    add_sms = reverse("admin:content_template_add") + f"?message={message.pk}&amp;channel=sms"
    assert add_sms in overview

    url = reverse("admin:content_template_add") + f"?message={message.pk}&channel=sms"
    assert "data-sms-counter" in as_marketeer.get(url).text
    response = as_marketeer.post(
        url,
        {"message": message.pk, "default_language": "en", "editor_language": "nl", "text": "Hi!", "note": ""},
        follow=True,
    )
    assert response.status_code == 200
    template = Template.objects.get(message=message)
    assert template.channel == Template.Channel.SMS
    version = template.versions.get()
    assert (version.language, version.text) == ("en", "Hi!")  # the first content is in the default language
    overview = as_marketeer.get(reverse("admin:content_message_change", args=[message.pk])).text
    assert "Usable by campaigns" in overview


def test_a_new_template_without_a_channel_goes_on_to_the_editor_after_saving(as_marketeer):
    message = MessageFactory()
    add = reverse("admin:content_template_add")
    page = as_marketeer.get(add).text
    assert "Choose the channel and save" in page
    assert 'name="html"' not in page

    response = as_marketeer.post(
        add, {"message": message.pk, "channel": "script", "default_language": "nl", "sender_profile": ""}
    )
    template = Template.objects.get(message=message)
    assert response.status_code == 302
    assert response["Location"] == template_url(template)
    assert 'name="talking_points"' in as_marketeer.get(response["Location"]).text
    assert not template.versions.exists()


def test_only_an_email_has_a_sender_profile(as_marketeer):
    message = MessageFactory()
    sender = TemplateFactory(channel=Template.Channel.EMAIL).sender_profile
    response = as_marketeer.post(
        reverse("admin:content_template_add"),
        {"message": message.pk, "channel": "sms", "default_language": "nl", "sender_profile": sender.pk},
    )
    assert response.status_code == 200
    assert "Only an email has a sender profile." in response.text
    assert not Template.objects.filter(message=message).exists()


def test_template_rollback_and_compare_per_language(as_marketeer):
    template = email_template(en={"subject": "One", "html": "<p>One</p>"})
    template_version_create(template=template, language="en", subject="Two", html="<p>Two</p>")
    page = as_marketeer.get(template_url(template, language="en")).text
    rollback = reverse("admin:content_template_rollback", args=[template.pk, "en", 1])
    assert rollback in page

    as_marketeer.post(rollback)
    newest = template.versions.filter(language="en").order_by("-number").first()
    assert (newest.number, newest.subject) == (3, "One")
    assert template.versions.filter(language="nl").count() == 1

    diff = as_marketeer.get(template_url(template, "compare", language="en", old=2, new=3)).text
    assert re.search(r'<tr class="content-diff-del">.*?Two', diff, re.S)
    assert re.search(r'<tr class="content-diff-add">.*?One', diff, re.S)


@pytest.mark.parametrize("url", [TEMPLATES, MESSAGES])
def test_template_and_message_lists_do_not_query_per_row(as_marketeer, django_assert_max_num_queries, url):
    def templates(count):
        for _ in range(count):
            email_template(en={"subject": "Hi", "html": "<p>Hi</p>"})

    templates(3)
    as_marketeer.get(url)
    with django_assert_max_num_queries(20) as few:
        assert as_marketeer.get(url).text.count("en, nl") == 3
    templates(27)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = as_marketeer.get(url)
    assert response.text.count("en, nl") == 30


# --- The preview ----------------------------------------------------------------------------------


def test_the_preview_renders_with_the_sample_profile_in_a_sandboxed_frame(as_marketeer):
    template = email_template()
    response = as_marketeer.get(template_url(template, "preview"))
    assert response.status_code == 200
    frame = re.search(r"<iframe[^>]*id=\"content-preview-frame\"[^>]*>", response.text).group(0)
    assert ' sandbox="" ' in frame  # no scripts, no same origin
    assert "allow-" not in frame
    assert "Beste Sanne," in srcdoc(response)
    assert "Najaarskorting voor Sanne" in response.text  # the subject
    assert "template version 1 (“nl”)" in response.text
    assert 'data-preview-width="375"' in response.text


def test_the_preview_with_a_real_contact_uses_their_data_and_their_language(as_marketeer):
    template = email_template(en={"subject": "For you", "html": "<p>Dear {{ contact.first_name }}</p>"})
    nl = ContactFactory(first_name="Joris", locale="nl")
    en = ContactFactory(first_name="Emma", locale="en")

    dutch = as_marketeer.get(template_url(template, "preview", contact=nl.pk))
    assert "Beste Joris," in srcdoc(dutch)
    english = as_marketeer.get(template_url(template, "preview", contact=en.pk))
    assert "Dear Emma" in srcdoc(english)
    chosen = as_marketeer.get(template_url(template, "preview", contact=en.pk, language="nl"))
    assert "Beste Emma," in srcdoc(chosen)


def test_the_preview_shows_which_block_versions_it_used(as_marketeer):
    footer = block_create(name="Voettekst", slug="footer", kind="footer", body="<p>Groet</p>")
    block_publish(version=footer)
    template = email_template(html='<p>Hoi</p>{% include "block:footer" %}')
    response = as_marketeer.get(template_url(template, "preview"))
    assert "Groet" in srcdoc(response)
    assert re.search(r">footer</a> version 1", response.text)


def test_a_template_with_problems_shows_the_message_in_the_preview_not_a_500(as_marketeer):
    template = email_template(html="{% for x in %}")
    response = as_marketeer.get(template_url(template, "preview"))
    assert response.status_code == 200
    assert 'class="errornote content-render-error"' in response.text
    assert "Campaigns cannot use this template yet" in response.text

    sent = as_marketeer.post(template_url(template, "preview"), {"to": "test@example.nl"})
    assert sent.status_code == 200
    assert "content-send-test" in sent.text
    assert not mail.outbox


def test_the_sms_preview_shows_encoding_characters_parts_and_the_warning(as_marketeer, settings):
    settings.SMS_PART_WARNING = 1
    template = sms_template(text="Hoi {{ contact.first_name }}! " + "Tuinset in de aanbieding. " * 8)
    response = as_marketeer.get(template_url(template, "preview"))
    info = re.search(r'<p class="content-sms-info">(.*?)</p>', response.text, re.S).group(1)
    assert "GSM-7" in info
    assert "2 parts" in info
    assert "Hoi Sanne!" in response.text
    assert "content-sms-warning" in response.text


def test_the_script_preview_lists_the_talking_points(as_marketeer):
    template = TemplateFactory(channel=Template.Channel.SCRIPT)
    template_version_create(
        template=template,
        language="nl",
        text="Goedemiddag {{ contact.first_name }}",
        talking_points="Vraag naar de tuin\nNoem {{ offer.name }}",
        offer_pitch="Nu {{ offer.price | currency }}",
    )
    response = as_marketeer.get(template_url(template, "preview"))
    assert "Goedemiddag Sanne" in response.text
    assert "<li>Vraag naar de tuin</li><li>Noem Najaarskorting</li>" in response.text
    assert "content-send-test" not in response.text  # a script is not sent


# --- The contact picker ---------------------------------------------------------------------------


def test_the_contact_picker_finds_by_email_and_by_last_name_at_most_ten(as_marketeer):
    anna = ContactFactory(first_name="Anna", last_name="de Vries")
    IdentityFactory(contact=anna, kind="email", value="anna@example.nl")
    IdentityFactory(contact=anna, kind="customer_number", value="K777")
    for index in range(12):
        ContactFactory(first_name=f"Jan{index}", last_name="Jansen")

    found = as_marketeer.get(CONTACTS, {"q": "ANNA@example.nl"}).json()["results"]
    assert found == [
        {"id": anna.pk, "name": "Anna de Vries", "identity": "anna@example.nl", "contact_key": str(anna.contact_key)}
    ]
    assert [r["id"] for r in as_marketeer.get(CONTACTS, {"q": "de vries"}).json()["results"]] == [anna.pk]
    assert len(as_marketeer.get(CONTACTS, {"q": "jansen"}).json()["results"]) == 10
    assert as_marketeer.get(CONTACTS, {"q": "vries"}).json()["results"] == []  # exact names, by index


def test_the_contact_picker_needs_the_right_to_see_contacts(client):
    user = UserFactory(username="templates-only")
    user.user_permissions.add(Permission.objects.get(codename="view_template"))
    client.force_login(user)
    assert client.get(CONTACTS, {"q": "anna@example.nl"}).status_code == 403
    page = client.get(template_url(email_template(), "preview"))
    assert page.status_code == 200
    assert "contact-picker" not in page.text  # the sample profile only


# --- Test sends -----------------------------------------------------------------------------------


def test_send_test_email_sends_the_rendered_message_with_its_html(as_marketeer):
    template = email_template()
    contact = ContactFactory(first_name="Joris", locale="nl")
    url = template_url(template, "preview", contact=contact.pk)
    response = as_marketeer.post(url, {"to": "test@example.nl"}, follow=True)
    assert response.status_code == 200
    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert sent.to == ["test@example.nl"]
    assert sent.subject == "[Test] Najaarskorting voor Joris"
    html, mimetype = sent.alternatives[0]
    assert mimetype == "text/html"
    assert "Beste Joris," in html
    assert any("Sent a test to test@example.nl" in message for message in messages_of(response))


def test_send_test_sms_goes_to_the_sms_backend(as_marketeer):
    template = sms_template()
    response = as_marketeer.post(template_url(template, "preview"), {"to": "06-12345678"}, follow=True)
    assert response.status_code == 200
    assert [(message.to, message.text) for message in sms.outbox] == [
        ("+31612345678", "Hoi Sanne, Najaarskorting met code NAJAAR25.")
    ]
    assert not mail.outbox


def test_send_test_to_a_bad_address_shows_the_field_error(as_marketeer):
    response = as_marketeer.post(template_url(email_template(), "preview"), {"to": "geen-adres"})
    assert response.status_code == 200
    assert "is not an email address" in response.text
    assert not mail.outbox


# --- Viewers --------------------------------------------------------------------------------------


def test_a_viewer_sees_the_preview_but_cannot_send_a_test(as_analyst):
    template = email_template()
    response = as_analyst.get(template_url(template, "preview"))
    assert response.status_code == 200
    assert "Beste Sanne," in srcdoc(response)
    assert 'id="content-send-test"' not in response.text
    assert as_analyst.post(template_url(template, "preview"), {"to": "x@example.nl"}).status_code == 403
    assert not mail.outbox


def test_a_viewer_sees_the_editors_read_only(as_analyst, agent, english_client):
    first = block_create(name="Voettekst", slug="footer", kind="footer", body="<p>Een</p>")
    block_version_create(block=first.block, body="<p>Twee</p>")
    page = as_analyst.get(block_url(first.block)).text
    assert "<textarea" not in page
    assert "&lt;p&gt;Twee&lt;/p&gt;" in page
    assert "Publish</button>" not in page
    assert "Roll back to this version" not in page
    assert as_analyst.post(reverse("admin:content_contentblock_publish", args=[first.block.pk, 1])).status_code == 403
    assert as_analyst.post(block_url(first.block), block_form(body="<p>Drie</p>")).status_code == 403
    assert first.block.versions.count() == 2

    template = email_template()
    as_agent = english_client(agent)
    page = as_agent.get(template_url(template)).text
    assert "<textarea" not in page
    assert "{{ offer.name }} voor {{ contact.first_name }}" in page  # the subject, as source
    rollback = reverse("admin:content_template_rollback", args=[template.pk, "nl", 1])
    assert as_agent.post(rollback).status_code == 403


def test_bad_query_values_on_admin_pages_are_ignored_not_a_500(as_marketeer):
    add = as_marketeer.get("/admin/content/template/add/?message=abc&channel=sms")
    picker = as_marketeer.get("/admin/content/template/contacts/?q=ab%00cd")

    assert add.status_code == 200
    assert (picker.status_code, picker.json()) == (200, {"results": []})


def test_a_body_of_5_mb_gets_a_clear_error_on_the_form_and_saves_nothing(as_marketeer):
    first = block_create(name="Voettekst", slug="footer", kind="footer", body="<p>Oud</p>")

    response = as_marketeer.post(block_url(first.block), block_form(body="<p>" + "x" * (5 * 1000 * 1000) + "</p>"))

    assert response.status_code == 200
    assert "Ensure this value has at most 500000 characters (it has 5000007)." in response.text
    assert "maxlength" not in response.text.split('name="body"')[1].split(">")[0]  # no silent cut in the browser
    assert first.block.versions.count() == 1
