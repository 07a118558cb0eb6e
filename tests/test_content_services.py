"""Content blocks and templates through their services: versions, publishing, rollback, checks
at save time, rendering for a contact, and test sends."""

import pytest
from django.core import mail, signing
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from audiences.models import Score
from content.models import ContentBlock, ContentBlockVersion, Template, TemplateVersion
from content.rendering.errors import TemplateSourceError
from content.selectors import (
    LINK_SALT,
    contact_context,
    published_blocks,
    template_version_for,
    version_diff,
)
from content.services import (
    block_create,
    block_publish,
    block_rollback,
    block_version_create,
    template_problems,
    template_render,
    template_rollback,
    template_send_test,
    template_version_create,
)
from dialoog import sms
from tests.factories import ContactFactory, TemplateFactory, UserFactory

pytestmark = pytest.mark.django_db

FOOTER = '<p class="footer">Afmelden? <a href="{{ links.unsubscribe }}">Klik hier</a></p>'
EMAIL = """<html><head><style>.lead { color: #2f4f2f; }</style></head><body>
<p class="lead">Beste {{ contact.first_name | default("klant") }},</p>
<p>{{ offer.name }} voor {{ offer.price | currency }}, tot en met {{ offer.valid_until | date }}.</p>
{% include "block:footer" %}
</body></html>"""


def published_block(slug="footer", body=FOOTER, **fields):
    version = block_create(name=slug.title(), slug=slug, body=body, **fields)
    block_publish(version=version)
    return version


def email_template(**fields):
    template = TemplateFactory(channel=Template.Channel.EMAIL)
    values = {"subject": "{{ offer.name }} voor u, {{ contact.first_name | default('klant') }}", "html": EMAIL}
    version = template_version_create(template=template, language="nl", **(values | fields))
    return template, version


def problem_messages(version):
    return [(problem["field"], problem["line"], problem["column"], problem["message"]) for problem in version.problems]


# --- Blocks: versions, publish, rollback, diff ---------------------------------------------------


def test_every_save_of_a_block_is_a_new_version_and_old_versions_never_change():
    first = block_create(name="Footer", slug="footer", kind=ContentBlock.Kind.FOOTER, body="<p>Groet</p>")
    second = block_version_create(block=first.block, body="<p>Met vriendelijke groet</p>")

    assert (first.number, second.number) == (1, 2)
    first.refresh_from_db()
    assert first.body == "<p>Groet</p>"
    with pytest.raises(IntegrityError, match="cannot be changed"), transaction.atomic():
        ContentBlockVersion.objects.filter(pk=first.pk).update(body="<p>anders</p>")


def test_saving_the_same_content_again_adds_no_version():
    first = block_create(name="Footer", slug="footer", body="<p>Groet</p>")

    again = block_version_create(block=first.block, body="<p>Groet</p>")

    assert again.pk == first.pk
    assert first.block.versions.count() == 1


def test_a_block_is_a_draft_until_published_and_templates_get_the_published_version():
    version = block_create(name="Footer", slug="footer", body="<p>Eerste</p>")
    assert "footer" not in published_blocks().html

    block_publish(version=version)
    block_version_create(block=version.block, body="<p>Tweede, nog een concept</p>")

    blocks = published_blocks()
    assert blocks.html["footer"] == "<p>Eerste</p>"
    assert blocks.version_ids["footer"] == version.pk


def test_a_version_with_problems_cannot_be_published(english):
    good = published_block(body="<p>Goed</p>")
    bad = block_version_create(block=good.block, body="<p>{{ contact.first_nam }}</p>")

    assert problem_messages(bad) == [
        ("body", 1, 7, "Unknown variable contact.first_nam (did you mean contact.first_name?).")
    ]
    with pytest.raises(ValidationError, match="cannot be published"):
        block_publish(version=bad)
    bad.block.refresh_from_db()
    assert bad.block.published_version_id == good.pk


def test_rolling_back_saves_the_old_content_as_the_newest_version_and_publishes_it(english):
    first = published_block(body="<p>Eerste</p>")
    second = block_version_create(block=first.block, body="<p>Tweede</p>")
    block_publish(version=second)

    restored = block_rollback(version=first)

    assert restored.number == 3
    assert restored.body == "<p>Eerste</p>"
    assert restored.note == "Rolled back to version 1."
    first.block.refresh_from_db()
    assert first.block.published_version_id == restored.pk


def test_the_diff_of_two_versions_shows_removed_and_added_lines():
    first = block_create(name="Footer", slug="footer", body="<p>Groet</p>\n<p>Team De Linde</p>")
    second = block_version_create(block=first.block, body="<p>Groet</p>\n<p>Team Tuincentrum De Linde</p>")

    body, text_body = version_diff(old=first, new=second)

    assert body.changed and not text_body.changed
    assert ("-", "<p>Team De Linde</p>") in body.lines
    assert ("+", "<p>Team Tuincentrum De Linde</p>") in body.lines
    assert (" ", "<p>Groet</p>") in body.lines


def test_unsafe_html_in_a_block_is_removed_and_reported_as_a_warning():
    version = block_create(name="Offer", slug="offer", body='<p onclick="steal()">Aanbod</p><script>x()</script>')

    assert version.is_valid
    assert "onclick" not in version.prepared_html
    assert "<script" not in version.prepared_html
    assert "Aanbod" in version.prepared_html
    assert {warning["field"] for warning in version.warnings} == {"body"}
    assert len(version.warnings) == 2


def test_a_block_without_plain_text_gets_one_derived_from_its_html():
    version = block_create(
        name="Footer", slug="footer", body='<p>Afmelden: <a href="{{ links.unsubscribe }}">klik</a></p>'
    )

    assert version.prepared_text == "Afmelden: klik ({{ (links.unsubscribe) | safe_url }})"


# --- Blocks including blocks ---------------------------------------------------------------------


def test_blocks_that_include_each_other_are_refused_when_saved(english):
    first = published_block(slug="a", body="<p>A</p>")
    published_block(slug="b", body='<p>B</p>{% include "block:a" %}')

    cycle = block_version_create(block=first.block, body='<p>A</p>{% include "block:b" %}')

    assert [problem["message"] for problem in cycle.problems] == ["Block “a” includes itself: a → b → a."]
    with pytest.raises(ValidationError):
        block_publish(version=cycle)


def test_a_template_including_an_unpublished_or_missing_block_has_a_problem(english):
    block_create(name="Footer", slug="footer", body=FOOTER)

    _template, version = email_template(html='<p>Hoi</p>{% include "block:footer" %}{% include "block:header" %}')

    assert [(p["line"], p["column"], p["message"]) for p in version.problems] == [
        (1, 29, "Block “footer” is not published."),
        (1, 57, "Block “header” does not exist."),
    ]


# --- Templates: checks at save time --------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "line", "column", "message"),
    [
        ("<p>Hoi</p>\n<p>{{ contact.first_name }</p>", 2, 26, "unexpected '}'"),
        ("<p>{{ contact.attributes.city | shout }}</p>", 1, 33, "Unknown filter “shout”"),
        ("<p>{% for i in range(10**9) %}{{ i }}{% endfor %}</p>", 1, 16, "range() gives at most 1,000 numbers"),
        ("<p>{{ contact.__class__ }}</p>", 1, 15, "“__class__” is not available in templates"),
        ("<p>{{ settings.SECRET_KEY }}</p>", 1, 7, "Unknown variable settings"),
    ],
)
def test_a_broken_email_is_refused_at_save_time_with_line_and_column(english, html, line, column, message):
    template, version = email_template(html=html)

    assert not version.is_valid
    found = [(p["field"], p["line"], p["column"]) for p in version.problems if message in p["message"]]
    assert found == [("html", line, column)]
    assert template_problems(template=template)
    with pytest.raises(TemplateSourceError):
        template_render(version=version, context={})


def test_a_loop_that_runs_too_long_with_the_sample_profile_is_refused_at_save_time(english):
    html = "{% for a in range(1000) %}{% for b in range(1000) %}.{% endfor %}{% endfor %}"

    _template, version = email_template(html=html)

    assert [(p["field"], p["message"]) for p in version.problems] == [
        (
            "html",
            "Rendering it with the sample profile failed: The template's loops ran more than 100,000 times in all.",
        )
    ]


def test_a_body_over_the_size_limit_is_refused_and_nothing_is_saved(english):
    template = TemplateFactory(channel=Template.Channel.EMAIL)

    with pytest.raises(ValidationError) as error:
        template_version_create(template=template, language="nl", subject="Hoi", html="<p>" + "x" * (5 * 1024 * 1024))

    assert error.value.message_dict == {"html": ["This text is 5,242,883 characters long; the limit is 500,000."]}
    assert not TemplateVersion.objects.exists()


def test_text_that_was_not_valid_utf8_is_refused(english):
    _template, version = email_template(html="<p>Hallo\n<b>wer\ufffdeld</b></p>")

    assert [(p["line"], p["column"]) for p in version.problems] == [(2, 7)]
    assert "could not be read" in version.problems[0]["message"]


def test_a_nul_character_is_refused_before_anything_is_saved(english):
    template = TemplateFactory(channel=Template.Channel.SMS)

    with pytest.raises(ValidationError) as error:
        template_version_create(template=template, language="nl", text="Hallo\x00wereld")
    with pytest.raises(ValidationError):
        block_create(name="Footer", slug="footer", body="<p>\x00</p>")

    assert error.value.message_dict == {
        "text": ["Line 1, column 6: the text holds a NUL character, which cannot be stored; remove it."]
    }
    assert not TemplateVersion.objects.exists()
    assert not ContentBlock.objects.exists()


def test_an_email_needs_a_subject_and_a_body(english):
    _template, version = email_template(subject="", html="")

    assert {(p["field"], p["message"]) for p in version.problems} == {
        ("subject", "This field is required for this channel."),
        ("html", "This field is required for this channel."),
    }


def test_a_template_needs_a_version_in_its_default_language_to_be_usable(english):
    published_block()
    template = TemplateFactory(channel=Template.Channel.SMS, default_language="nl")
    template_version_create(template=template, language="en", text="Hi {{ contact.first_name }}")

    assert template_problems(template=template) == [f"“{template}” has no version in its default language (nl)."]

    template_version_create(template=template, language="nl", text="Hoi {{ contact.first_name }}")
    assert template_problems(template=template) == []


# --- Languages -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("en", "en"),
        ("en-gb", "en"),
        ("EN", "en"),
        ("en_GB", "en"),
        ("en_US.UTF-8", "en"),
        ("de", "nl"),
        ("", "nl"),
        (None, "nl"),
    ],
)
def test_the_contacts_language_picks_the_version_with_a_fallback_to_the_default(locale, expected):
    template = TemplateFactory(channel=Template.Channel.SMS, default_language="nl")
    template_version_create(template=template, language="nl", text="Hallo")
    template_version_create(template=template, language="en", text="Hi")
    template_version_create(template=template, language="en", text="Hello")

    version = template_version_for(template=template, language=locale)

    assert version.language == expected
    assert version.text == ("Hello" if expected == "en" else "Hallo")


# --- Rendering -----------------------------------------------------------------------------------


def test_an_email_renders_for_a_contact_and_records_the_versions_it_came_from():
    footer = published_block()
    _template, version = email_template(preheader="Alleen deze week")
    contact = ContactFactory(first_name="Sanne", locale="nl")

    message = template_render(version=version, context=contact_context(contact=contact))

    assert message.subject == "Najaarskorting voor u, Sanne"
    assert "Beste Sanne," in message.html
    assert "Najaarskorting voor € 974,25, tot en met 22 november 2026." in message.html
    assert 'class="lead" style="color: #2f4f2f' in message.html  # CSS inlined once, at save time
    assert "Alleen deze week" in message.html.split("Beste")[0]  # the preheader comes first
    assert message.block_version_ids == {"footer": footer.pk}
    assert message.template_version_id == version.pk
    assert message.text.startswith("Beste Sanne,")
    token = signing.Signer(salt=LINK_SALT).sign(str(contact.contact_key))
    assert f"/m/{token}/unsubscribe/" in message.html
    assert f"Klik hier (http://127.0.0.1:8000/m/{token}/unsubscribe/)" in message.text


def test_contact_data_is_escaped_in_html_but_not_in_text():
    published_block()
    _template, version = email_template(text="Beste {{ contact.first_name }}")
    contact = ContactFactory(first_name="<b>Jan & Piet</b>")

    message = template_render(version=version, context=contact_context(contact=contact))

    assert "Beste &lt;b&gt;Jan &amp; Piet&lt;/b&gt;," in message.html
    assert message.text == "Beste <b>Jan & Piet</b>"


def test_the_context_holds_the_contacts_attributes_and_scores():
    contact = ContactFactory(first_name="Daan", attributes={"city": "Utrecht"})
    Score.objects.create(contact=contact, name="churn", value=0.8)
    template = TemplateFactory(channel=Template.Channel.SMS)
    version = template_version_create(
        template=template,
        language="nl",
        text="{{ contact.first_name }} uit {{ contact.attributes.city }}, "
        "risico {{ contact.scores.churn | number(1) }}",
    )

    message = template_render(version=version, context=contact_context(contact=contact))

    assert message.text == "Daan uit Utrecht, risico 0,8"


def test_a_published_block_change_reaches_the_next_render_without_a_new_template_version():
    footer = published_block(body="<p>Oud</p>")
    _template, version = email_template(html='<p>Hoi</p>{% include "block:footer" %}')
    assert "Oud" in template_render(version=version, context={}).html

    newer = block_version_create(block=footer.block, body="<p>Nieuw</p>")
    block_publish(version=newer)

    message = template_render(version=version, context={})
    assert "Nieuw" in message.html
    assert message.block_version_ids == {"footer": newer.pk}


def test_an_sms_reports_encoding_and_parts_and_warns_past_the_limit(english, settings):
    settings.SMS_PART_WARNING = 1
    template = TemplateFactory(channel=Template.Channel.SMS)

    text = "Hé {{ contact.first_name }}! " + "x" * 155
    version = template_version_create(template=template, language="nl", text=text)
    message = template_render(version=version, context={"contact": {"first_name": "Daan"}})

    assert version.is_valid
    assert [w["message"] for w in version.warnings] == [
        "With the sample profile: This SMS takes 2 parts (each one is charged); keep it to 1 or fewer."
    ]
    assert (message.sms.encoding, message.sms.length, message.sms.parts) == ("GSM-7", 164, 2)


def test_a_script_renders_its_talking_points_and_offer_pitch():
    template = TemplateFactory(channel=Template.Channel.SCRIPT)
    version = template_version_create(
        template=template,
        language="nl",
        text="Goedemiddag {{ contact.first_name | default('meneer of mevrouw') }}, u spreekt met De Linde.",
        talking_points="Vraag naar de tuin\n\nNoem de gratis bezorging",
        offer_pitch="{{ offer.name }}: {{ offer.description }} voor {{ offer.price | currency }}",
    )

    message = template_render(
        version=version,
        context={"contact": {}, "offer": {"name": "Tuinweek", "description": "alles 20% korting", "price": 10}},
    )

    assert message.text == "Goedemiddag meneer of mevrouw, u spreekt met De Linde."
    assert message.talking_points == ["Vraag naar de tuin", "Noem de gratis bezorging"]
    assert message.offer_pitch == "Tuinweek: alles 20% korting voor € 10,00"


def test_rolling_back_a_template_restores_the_old_content_in_its_language():
    template = TemplateFactory(channel=Template.Channel.SMS)
    first = template_version_create(template=template, language="nl", text="Eerste")
    template_version_create(template=template, language="nl", text="Tweede")
    english = template_version_create(template=template, language="en", text="First")

    restored = template_rollback(version=first)

    assert (restored.language, restored.number, restored.text) == ("nl", 3, "Eerste")
    assert template_version_for(template=template, language="nl") == restored
    assert template_version_for(template=template, language="en") == english
    assert TemplateVersion.objects.filter(template=template).count() == 4


# --- Test sends ----------------------------------------------------------------------------------


def test_send_test_mails_the_rendered_email_through_the_email_backend():
    published_block()
    template, version = email_template()
    contact = ContactFactory(first_name="Sanne")

    template_send_test(version=version, context=contact_context(contact=contact), to=" test@delinde.example.nl ")

    (sent,) = mail.outbox
    assert sent.to == ["test@delinde.example.nl"]
    assert sent.subject == "[Test] Najaarskorting voor u, Sanne"
    assert sent.from_email == "Tuincentrum De Linde <nieuws@delinde.example.nl>"
    assert sent.reply_to == [template.sender_profile.reply_to]
    html, mimetype = sent.alternatives[0]
    assert mimetype == "text/html" and "Beste Sanne," in html
    assert sent.body.startswith("Beste Sanne,")


def test_send_test_sends_an_sms_through_the_sms_backend():
    sms.outbox.clear()
    template = TemplateFactory(channel=Template.Channel.SMS)
    version = template_version_create(template=template, language="nl", text="Hoi {{ contact.first_name }}")

    template_send_test(version=version, context={"contact": {"first_name": "Daan"}}, to="06 12345678")

    assert [(message.to, message.text) for message in sms.outbox] == [("+31612345678", "Hoi Daan")]
    sms.outbox.clear()


@pytest.mark.parametrize(("channel", "to"), [(Template.Channel.EMAIL, "geen-adres"), (Template.Channel.SMS, "12")])
def test_send_test_refuses_a_bad_address_and_sends_nothing(english, channel, to):
    sms.outbox.clear()
    template = TemplateFactory(channel=channel)
    version = template_version_create(template=template, language="nl", subject="Hoi", html="<p>Hoi</p>", text="Hoi")

    with pytest.raises(ValidationError) as error:
        template_send_test(version=version, context={}, to=to)

    assert "to" in error.value.message_dict
    assert mail.outbox == [] and sms.outbox == []


def test_deleting_the_user_who_saved_a_version_keeps_the_version_and_nothing_else_changes():
    user = UserFactory(username="schrijver")
    version = block_create(name="Footer", slug="footer", body="<p>Groet</p>", user=user)

    user.delete()

    version.refresh_from_db()
    assert (version.created_by, version.body, version.number) == (None, "<p>Groet</p>", 1)
    with pytest.raises(IntegrityError), transaction.atomic():
        ContentBlockVersion.objects.filter(pk=version.pk).update(body="<p>anders</p>", created_by=None)


def test_saving_unchanged_content_again_rechecks_a_version_with_problems():
    footer = block_create(name="Footer", slug="footer", body=FOOTER)
    html = '<p>Hoi</p>{% include "block:footer" %}'
    template, broken = email_template(html=html)
    assert not broken.is_valid

    block_publish(version=footer)
    fixed = template_version_create(template=template, language="nl", subject=broken.subject, html=html)

    assert fixed.number == 2 and fixed.is_valid
    assert template_problems(template=template) == []


def test_a_test_send_the_mail_server_refuses_is_reported_on_the_address(english, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 1, 5
    published_block()
    _template, version = email_template()

    with pytest.raises(ValidationError) as error:
        template_send_test(version=version, context={}, to="test@delinde.example.nl")

    assert error.value.message_dict["to"][0].startswith("The test could not be sent: ")


def test_sends_never_clean_inline_or_compile_again_after_the_save(monkeypatch):
    import nh3

    from content import html
    from content.rendering.environment import TemplateEnvironment

    published_block()
    _template, version = email_template()
    template_render(version=version, context={})  # the first render of a version compiles it

    def refuse(*args, **kwargs):
        raise AssertionError("work that belongs to the save ran during a send")

    monkeypatch.setattr(nh3, "clean", refuse)
    monkeypatch.setattr(html, "INLINER", type("Refuse", (), {"inline": refuse, "inline_fragment": refuse})())
    monkeypatch.setattr(TemplateEnvironment, "compile", refuse)
    contacts = [ContactFactory(first_name=name) for name in ("Sanne", "Daan")]
    for contact in contacts:  # two batches, each reading the published blocks anew
        message = template_render(version=version, context=contact_context(contact=contact), blocks=published_blocks())
        assert f"Beste {contact.first_name}," in message.html
        assert 'class="lead" style="color: #2f4f2f' in message.html
