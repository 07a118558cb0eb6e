"""Writes of the content app: saving versions (checked and prepared once), publishing, rolling
back, rendering a message for a contact, and sending a test.

Saving a version runs every check (content/rendering/checks.py) on every field, cleans the HTML
and inlines its CSS (content/html.py), derives the plain text, and renders the result once with
the sample profile, so that a loop that would blow a render limit is found at save time, not
during a send. What it finds is stored on the version: `problems` make it unusable, `warnings`
(HTML that was removed, an SMS of many parts) do not.
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard, TypeVar

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Max
from django.utils.translation import gettext as _

from audiences.identities import InvalidIdentity, normalise_phone
from content.html import html_to_text, prepare_email_html, prepare_fragment, with_preheader
from content.models import ContentBlock, ContentBlockVersion, Template, TemplateVersion
from content.rendering.checks import check_template
from content.rendering.context import sample_context
from content.rendering.environment import MAX_SOURCE_CHARS
from content.rendering.errors import Problem, RenderError, TemplateSourceError
from content.rendering.render import CompiledTemplate, compile_template, render
from content.selectors import (
    TEMPLATE_CONTENT_FIELDS,
    TEMPLATE_FIELDS,
    BlockSources,
    block_newest_version,
    checkable_blocks,
    published_blocks,
    template_newest_versions,
)
from content.sms import SmsInfo, sms_info, sms_warning
from dialoog.sms import send_sms

logger = logging.getLogger(__name__)
SavedVersion = TypeVar("SavedVersion", ContentBlockVersion, TemplateVersion)

# Which sandbox channel each field renders in (HTML is autoescaped, the others are not).
BLOCK_CHANNELS = {"body": "email_html", "text_body": "email_text"}
# A template's fields (selectors.TEMPLATE_FIELDS) render in their channel's sandbox; an email's
# HTML is the one autoescaped field.
TEMPLATE_CHANNELS = {
    channel: {
        name: ("email_html" if name == "html" else "email_text") if channel == Template.Channel.EMAIL else str(channel)
        for name, _label in fields
    }
    for channel, fields in TEMPLATE_FIELDS.items()
}
REQUIRED_FIELDS = {
    Template.Channel.EMAIL: ("subject", "html"),
    Template.Channel.SMS: ("text",),
    Template.Channel.SCRIPT: ("text",),
}


def issue(name: str, problem: Problem) -> dict[str, Any]:
    return {"field": name, "line": problem.line, "column": problem.column, "message": problem.message}


def whole_field(name: str, message: str) -> dict[str, Any]:
    return {"field": name, "line": 1, "column": 1, "message": message}


@dataclass
class Prepared:
    """A version's content after the checks: what is rendered, and what was found."""

    html: str = ""
    text: str = ""
    problems: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)

    def version_fields(self) -> dict[str, Any]:
        """What a new version stores of it."""
        return {
            "prepared_html": self.html,
            "prepared_text": self.text,
            "problems": self.problems,
            "warnings": self.warnings,
        }


def same_as_newest(newest: SavedVersion | None, fields: Mapping[str, str], note: str) -> TypeGuard[SavedVersion]:
    """Saving what the newest version holds adds no version. A version with problems is saved again
    (and checked again: a block it includes may be published by now), and so is one with a note."""
    return (
        newest is not None
        and newest.is_valid
        and not note
        and all(getattr(newest, name) == value for name, value in fields.items())
    )


def check_fields(
    fields: Mapping[str, str], channels: Mapping[str, str], blocks: BlockSources, slug: str | None = None
) -> list[dict[str, Any]]:
    problems: list[dict[str, Any]] = []
    for name, source in fields.items():
        if source:
            channel = channels[name]
            found = check_template(
                source, channel=channel, blocks=blocks.for_channel(channel), published=blocks.published, slug=slug
            )
            problems.extend(issue(name, problem) for problem in found)
    return problems


def render_sample(
    fields: Mapping[str, str], channels: Mapping[str, str], blocks: BlockSources, key: tuple[Any, ...]
) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Each field rendered once with the sample profile: a render limit is hit here, not in a send."""
    context = sample_context()
    rendered: dict[str, str] = {}
    problems: list[dict[str, Any]] = []
    for name, source in fields.items():
        if not source:
            continue
        channel = channels[name]
        try:
            compiled = compile_template(
                source, channel=channel, version_key=(*key, name), blocks=blocks.for_channel(channel)
            )
            rendered[name] = render(compiled, context)
        except TemplateSourceError as error:
            problems.extend(issue(name, problem) for problem in error.problems)
        except RenderError as error:
            message = _("Rendering it with the sample profile failed: %(error)s") % {"error": error}
            problems.append(whole_field(name, message))
    return rendered, problems


def _prepare_block(body: str, text_body: str, slug: str, blocks: BlockSources) -> Prepared:
    prepared = Prepared()
    problems = check_fields({"body": body, "text_body": text_body}, BLOCK_CHANNELS, blocks, slug=slug)
    if not body.strip():
        problems.append(whole_field("body", _("A block needs a body.")))
    if not problems:
        html = prepare_fragment(body)
        prepared.html = html.html
        prepared.warnings = [issue("body", warning) for warning in html.warnings]
        problems.extend(issue("body", error) for error in html.errors)
        prepared.text = text_body or html_to_text(prepared.html)
        # Its includes are rendered as the published versions; itself as this new one.
        with_self = BlockSources(
            {**blocks.html, slug: prepared.html},
            {**blocks.text, slug: prepared.text},
            blocks.version_ids,
            blocks.published | {slug},
        )
        _rendered, render_problems = render_sample(
            {"body": prepared.html, "text_body": prepared.text}, BLOCK_CHANNELS, with_self, ("block-save", slug)
        )
        problems.extend(render_problems)
    prepared.problems = problems
    return prepared


def refuse_unstorable(fields: Mapping[str, str]) -> None:
    """A field past the size limit, or with a NUL character (PostgreSQL cannot store one): such a save
    is refused whole, before anything is written. Every other problem is kept on the version."""
    errors = {}
    for name, value in fields.items():
        index = value.find("\x00")
        if len(value) > MAX_SOURCE_CHARS:
            errors[name] = _("This text is %(size)s characters long; the limit is %(limit)s.") % {
                "size": f"{len(value):,}",
                "limit": f"{MAX_SOURCE_CHARS:,}",
            }
        elif index >= 0:
            place = Problem.at(value, index, "")
            errors[name] = _(
                "Line %(line)s, column %(column)s: the text holds a NUL character, which cannot be stored; remove it."
            ) % {"line": place.line, "column": place.column}
    if errors:
        raise ValidationError(errors)


def _next_number(queryset: Any) -> int:
    return (queryset.aggregate(highest=Max("number"))["highest"] or 0) + 1


# --- Content blocks ----------------------------------------------------------------------------


@transaction.atomic
def block_create(
    *,
    name: str,
    slug: str,
    kind: str = ContentBlock.Kind.OTHER,
    body: str,
    text_body: str = "",
    description: str = "",
    user: User | None = None,
    note: str = "",
) -> ContentBlockVersion:
    """A new block with its first version (a draft until published)."""
    refuse_unstorable({"body": body, "text_body": text_body})
    block = ContentBlock(name=name, slug=slug, kind=kind, description=description)
    block.full_clean()
    block.save()
    return block_version_create(block=block, body=body, text_body=text_body, user=user, note=note)


@transaction.atomic
def block_version_create(
    *, block: ContentBlock, body: str, text_body: str = "", user: User | None = None, note: str = ""
) -> ContentBlockVersion:
    """Save the block's content as its next version, checked and prepared. Saving what the newest
    version already holds saves nothing and returns that version."""
    refuse_unstorable({"body": body, "text_body": text_body})
    ContentBlock.objects.select_for_update().filter(pk=block.pk).first()
    newest = block_newest_version(block=block)
    if same_as_newest(newest, {"body": body, "text_body": text_body}, note):
        return newest
    prepared = _prepare_block(body, text_body, block.slug, checkable_blocks())
    return ContentBlockVersion.objects.create(
        block=block,
        number=_next_number(block.versions),
        body=body,
        text_body=text_body,
        **prepared.version_fields(),
        note=note,
        created_by=user,
    )


def block_version_problems(*, version: ContentBlockVersion) -> list[dict[str, Any]]:
    """The version's problems now: those found when it was saved, and whether what it includes
    still exists and is published."""
    if version.problems:
        return list(version.problems)
    return check_fields(
        {"body": version.body, "text_body": version.text_body},
        BLOCK_CHANNELS,
        checkable_blocks(),
        slug=version.block.slug,
    )


@transaction.atomic
def block_publish(*, version: ContentBlockVersion, user: User | None = None) -> None:
    """Make `version` the one templates get. A version with problems is refused."""
    block = ContentBlock.objects.select_for_update().get(pk=version.block_id)
    problems = block_version_problems(version=version)
    if problems:
        raise ValidationError(
            _("Version %(number)s of “%(block)s” has problems and cannot be published: %(problems)s")
            % {
                "number": version.number,
                "block": block.name,
                "problems": "; ".join(f"{p['field']} {p['line']}:{p['column']} {p['message']}" for p in problems),
            }
        )
    ContentBlock.objects.filter(pk=block.pk).update(published_version=version)
    version.block.published_version = version


@transaction.atomic
def block_rollback(*, version: ContentBlockVersion, user: User | None = None) -> ContentBlockVersion:
    """Go back to an earlier version: its content saved as the newest version, and published."""
    restored = block_version_create(
        block=version.block,
        body=version.body,
        text_body=version.text_body,
        user=user,
        note=_("Rolled back to version %(number)s.") % {"number": version.number},
    )
    block_publish(version=restored, user=user)
    return restored


def block_render(*, version: ContentBlockVersion, context: dict[str, Any]) -> tuple[str, str]:
    """The version on its own, as HTML and as text, for a preview: the blocks it includes as
    published (or as their newest draft, when never published). Raises TemplateSourceError or
    RenderError."""
    blocks = checkable_blocks()
    html = compile_template(
        version.prepared_html, channel="email_html", version_key=("block", version.pk, "body"), blocks=blocks.html
    )
    text = compile_template(
        version.prepared_text, channel="email_text", version_key=("block", version.pk, "text_body"), blocks=blocks.text
    )
    return render(html, context), render(text, context)


# --- Templates ---------------------------------------------------------------------------------


def _prepare_template(channel: str, fields: Mapping[str, str], key: tuple[Any, ...]) -> Prepared:
    blocks = checkable_blocks()
    channels = TEMPLATE_CHANNELS[Template.Channel(channel)]
    used = {name: fields.get(name, "") for name in channels}
    prepared = Prepared()
    problems = check_fields(used, channels, blocks)
    for name in REQUIRED_FIELDS[Template.Channel(channel)]:
        if not used[name].strip():
            problems.append(whole_field(name, _("This field is required for this channel.")))
    if channel == Template.Channel.EMAIL and not problems:
        html = prepare_email_html(used["html"])
        problems.extend(issue("html", error) for error in html.errors)
        prepared.warnings.extend(issue("html", warning) for warning in html.warnings)
        prepared.html = html.html
        prepared.text = used["text"] or html_to_text(prepared.html)
    else:
        prepared.text = used["text"]
    if not problems:
        to_render = {**used, "html": prepared.html, "text": prepared.text}
        rendered, render_problems = render_sample(to_render, channels, blocks, key)
        html_failed = any(problem["field"] == "html" for problem in render_problems)
        derived = channel == Template.Channel.EMAIL and not used["text"]
        # The derived text repeats the HTML's problem; say it once, where the marketeer wrote it.
        problems.extend(p for p in render_problems if not (derived and html_failed and p["field"] == "text"))
        if channel == Template.Channel.SMS and "text" in rendered:
            warning = sms_warning(rendered["text"], settings.SMS_PART_WARNING)
            if warning:
                prepared.warnings.append(
                    whole_field("text", _("With the sample profile: %(warning)s") % {"warning": warning})
                )
    prepared.problems = problems
    return prepared


@transaction.atomic
def template_version_create(
    *,
    template: Template,
    language: str,
    subject: str = "",
    preheader: str = "",
    html: str = "",
    text: str = "",
    talking_points: str = "",
    offer_pitch: str = "",
    user: User | None = None,
    note: str = "",
) -> TemplateVersion:
    """Save the template's content in `language` as its next version, checked and prepared.
    Saving what the newest version in that language already holds returns that version."""
    fields = {
        "subject": subject,
        "preheader": preheader,
        "html": html,
        "text": text,
        "talking_points": talking_points,
        "offer_pitch": offer_pitch,
    }
    refuse_unstorable(fields)
    Template.objects.select_for_update().filter(pk=template.pk).first()
    language = language.strip().lower()
    versions = template.versions.filter(language=language)
    newest = versions.order_by("-number").first()
    if same_as_newest(newest, fields, note):
        return newest
    number = _next_number(versions)
    prepared = _prepare_template(template.channel, fields, ("template-save", template.pk, language, number))
    version = TemplateVersion(
        template=template,
        language=language,
        number=number,
        **fields,
        **prepared.version_fields(),
        note=note,
        created_by=user,
    )
    version.full_clean(exclude=["template", "created_by"])
    version.save()
    return version


@transaction.atomic
def template_rollback(*, version: TemplateVersion, user: User | None = None) -> TemplateVersion:
    """Go back to an earlier version: its content saved as the newest version in its language."""
    return template_version_create(
        template=version.template,
        language=version.language,
        **{name: getattr(version, name) for name in TEMPLATE_CONTENT_FIELDS},
        user=user,
        note=_("Rolled back to version %(number)s.") % {"number": version.number},
    )


def template_problems(*, template: Template) -> list[str]:
    """Why a campaign cannot use the template now, or nothing when it can: it needs a version in its
    default language, and the newest version in each language must pass its checks against the
    blocks as they are published now."""
    newest = template_newest_versions(template=template)
    problems = []
    if template.default_language not in newest:
        problems.append(
            _("“%(template)s” has no version in its default language (%(language)s).")
            % {"template": template, "language": template.default_language}
        )
    blocks = checkable_blocks()
    channels = TEMPLATE_CHANNELS[Template.Channel(template.channel)]
    for language, version in newest.items():
        found = list(version.problems) or check_fields(
            {name: getattr(version, name) for name in channels}, channels, blocks
        )
        problems.extend(
            _("%(language)s version %(number)s, %(field)s line %(line)s:%(column)s: %(message)s")
            % {"language": language, "number": version.number, **problem}
            for problem in found
        )
    return problems


# --- Rendering ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedMessage:
    """One message for one contact, and the versions it was rendered from (for the delivery)."""

    channel: str
    language: str
    template_version_id: int
    block_version_ids: dict[str, int]
    subject: str = ""
    preheader: str = ""
    html: str = ""
    text: str = ""
    talking_points: list[str] = field(default_factory=list)
    offer_pitch: str = ""
    sms: SmsInfo | None = None


@dataclass(frozen=True)
class CompiledVersion:
    channel: str
    parts: tuple[tuple[str, CompiledTemplate], ...]  # (field, compiled), the empty fields left out
    block_version_ids: dict[str, int]


def compiled_version(version: TemplateVersion, blocks: BlockSources) -> CompiledVersion:
    """The version's fields compiled against these blocks, once per `blocks` (a send's batch)."""
    cached: CompiledVersion | None = blocks.compiled.get(version.pk)
    if cached is not None:
        return cached
    channel = str(version.template.channel)
    channels = TEMPLATE_CHANNELS[Template.Channel(channel)]
    sources = {name: getattr(version, name) for name in channels}
    sources.update(text=version.prepared_text)
    if channel == Template.Channel.EMAIL:
        sources["html"] = version.prepared_html
    parts, used = [], {}
    for name, source in sources.items():
        if source:
            template = compile_template(
                source,
                channel=channels[name],
                version_key=("template", version.pk, name),
                blocks=blocks.for_channel(channels[name]),
            )
            parts.append((name, template))
            used.update({slug: blocks.version_ids[slug] for slug in template.block_sources})
    compiled = CompiledVersion(channel, tuple(parts), used)
    blocks.compiled[version.pk] = compiled
    return compiled


def template_render(
    *, version: TemplateVersion, context: dict[str, Any], blocks: BlockSources | None = None
) -> RenderedMessage:
    """Render `version` for one context. Pass `blocks` (from `published_blocks()`) when rendering
    a batch, so they are read once; compiled templates are cached per version. Raises
    TemplateSourceError when the version cannot be compiled and RenderError when one render fails."""
    if version.problems:
        raise TemplateSourceError(
            [Problem(p["line"], p["column"], f"{p['field']}: {p['message']}") for p in version.problems]
        )
    blocks = published_blocks() if blocks is None else blocks
    compiled = compiled_version(version, blocks)
    channel = compiled.channel
    rendered = {name: render(template, context) for name, template in compiled.parts}
    subject = " ".join(rendered.get("subject", "").split())
    preheader = " ".join(rendered.get("preheader", "").split())
    return RenderedMessage(
        channel=channel,
        language=version.language,
        template_version_id=version.pk,
        block_version_ids=dict(compiled.block_version_ids),
        subject=subject,
        preheader=preheader,
        html=with_preheader(rendered["html"], preheader) if "html" in rendered else "",
        text=rendered.get("text", "").strip(),
        talking_points=[line.strip() for line in rendered.get("talking_points", "").splitlines() if line.strip()],
        offer_pitch=rendered.get("offer_pitch", "").strip(),
        sms=sms_info(rendered.get("text", "").strip()) if channel == Template.Channel.SMS else None,
    )


def template_send_test(*, version: TemplateVersion, context: dict[str, Any], to: str) -> RenderedMessage:
    """Render `version` with `context` and send it to `to` (an email address or a phone number)
    through the configured email or SMS backend, marked as a test."""
    template = version.template
    if template.channel == Template.Channel.SCRIPT:
        raise ValidationError(_("A callcenter script is for the agent on the phone; it cannot be sent."))
    recipient = to.strip()
    if template.channel == Template.Channel.EMAIL:
        try:
            validate_email(recipient)
        except ValidationError as error:
            raise ValidationError({"to": _("“%(value)s” is not an email address.") % {"value": recipient}}) from error
    else:
        try:
            recipient = normalise_phone(recipient)
        except InvalidIdentity as error:
            raise ValidationError({"to": _("“%(value)s” is not a phone number.") % {"value": recipient}}) from error
    message = template_render(version=version, context=context)
    if template.channel == Template.Channel.EMAIL:
        sender = template.sender_profile
        email = EmailMultiAlternatives(
            subject=_("[Test] %(subject)s") % {"subject": message.subject},
            body=message.text,
            from_email=sender.from_address if sender else settings.DEFAULT_FROM_EMAIL,
            to=[recipient],
            reply_to=[sender.reply_to] if sender and sender.reply_to else None,
        )
        email.attach_alternative(message.html, "text/html")
    try:
        if template.channel == Template.Channel.EMAIL:
            email.send()
        else:
            send_sms(to=recipient, text=message.text)
    except (OSError, smtplib.SMTPException) as error:  # the mail server or SMS provider said no
        logger.warning("Test send of template version %s to %s failed: %r", version.pk, recipient, error)
        raise ValidationError(
            {"to": _("The test could not be sent: %(error)s") % {"error": str(error) or type(error).__name__}}
        ) from error
    return message
