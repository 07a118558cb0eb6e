"""What the customer sees, reads and hears: reusable content blocks and channel templates.

Both are versioned: every save adds an immutable version (a database trigger refuses updates
to a version), so a delivery that records the versions it was rendered from can always show
what exactly a customer received. A block is shared by many templates, so a new version of it
goes live only when it is published; a template belongs to one message, and its newest
version per language is the one used.
"""

from __future__ import annotations

from email.utils import formataddr

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from dialoog.models import TimeStampedModel

language_code_validator = RegexValidator(
    r"^[a-z]{2,3}(-[a-z0-9]{2,8})?$",
    _("Use a language code such as “nl”, “en” or “pt-br”."),
)


class SenderProfile(TimeStampedModel):
    """Who an email comes from: the name and address the customer sees, and where replies go."""

    name = models.CharField(
        _("name"),
        max_length=100,
        unique=True,
        help_text=_("An internal name, shown only in Dialoog, for example “Klantenservice”."),
    )
    from_name = models.CharField(_("sender name"), max_length=100, help_text=_("The name the customer sees."))
    from_email = models.EmailField(_("sender address"))
    reply_to = models.EmailField(_("reply-to address"), blank=True)

    class Meta:
        verbose_name = _("sender profile")
        verbose_name_plural = _("sender profiles")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def from_address(self) -> str:
        return formataddr((self.from_name, self.from_email))


class Version(models.Model):
    """What every saved version holds besides its content: its number, its checks, who saved it."""

    number = models.PositiveIntegerField(_("version"), editable=False)
    problems = models.JSONField(
        _("problems"),
        default=list,
        editable=False,
        help_text=_("What the checks found when the version was saved; a version with problems cannot be used."),
    )
    warnings = models.JSONField(
        _("warnings"), default=list, editable=False, help_text=_("What was removed from the HTML, and why.")
    )
    note = models.CharField(_("note"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("saved at"), default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("saved by"),
        editable=False,
    )

    class Meta:
        abstract = True

    @property
    def is_valid(self) -> bool:
        return not self.problems


class ContentBlock(TimeStampedModel):
    """A reusable piece (a header, a footer, an offer, legal text) that templates include by slug."""

    class Kind(models.TextChoices):
        HEADER = "header", _("Header")
        FOOTER = "footer", _("Footer")
        OFFER = "offer", _("Offer")
        PRODUCTS = "products", _("Product recommendations")
        LEGAL = "legal", _("Legal text")
        SIGNATURE = "signature", _("Signature")
        OTHER = "other", _("Other")

    name = models.CharField(_("name"), max_length=200)
    slug = models.SlugField(
        _("slug"),
        max_length=80,
        unique=True,
        help_text=_('How templates include it: {% include "block:footer" %}. It cannot change once published.'),
    )
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.OTHER)
    description = models.TextField(_("description"), blank=True)
    published_version = models.ForeignKey(
        "ContentBlockVersion",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("published version"),
        editable=False,
        help_text=_("The version templates get; newer versions are drafts until published."),
    )

    class Meta:
        verbose_name = _("content block")
        verbose_name_plural = _("content blocks")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ContentBlockVersion(Version):
    block = models.ForeignKey(ContentBlock, on_delete=models.CASCADE, related_name="versions", verbose_name=_("block"))
    body = models.TextField(
        _("body"), help_text=_("HTML or text, with personalisation such as {{ contact.first_name }}.")
    )
    text_body = models.TextField(
        _("plain-text body"),
        blank=True,
        help_text=_("Used in plain-text email, SMS and scripts; derived from the body when left empty."),
    )
    prepared_html = models.TextField(_("prepared HTML"), editable=False, help_text=_("Cleaned, with CSS inlined."))
    prepared_text = models.TextField(_("prepared text"), editable=False)

    class Meta:
        verbose_name = _("content block version")
        verbose_name_plural = _("content block versions")
        ordering = ["block", "-number"]
        constraints = [models.UniqueConstraint(fields=["block", "number"], name="block_version_number_unique")]

    def __str__(self) -> str:
        return f"{self.block.slug} v{self.number}"


class Message(TimeStampedModel):
    """One message of a campaign, in its channel variants: the email, the SMS and the callcenter script."""

    name = models.CharField(_("name"), max_length=200)
    description = models.TextField(_("description"), blank=True)

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Template(TimeStampedModel):
    """A message in one channel, with a version history per language."""

    class Channel(models.TextChoices):
        EMAIL = "email", _("Email")
        SMS = "sms", _("SMS")
        SCRIPT = "script", _("Callcenter script")

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="templates", verbose_name=_("message"))
    channel = models.CharField(_("channel"), max_length=16, choices=Channel.choices)
    default_language = models.CharField(
        _("default language"),
        max_length=10,
        default="nl",
        validators=[language_code_validator],
        help_text=_("Contacts whose language has no version of their own get this one."),
    )
    sender_profile = models.ForeignKey(
        SenderProfile,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="templates",
        verbose_name=_("sender profile"),
        help_text=_("Email only: who the email comes from."),
    )

    class Meta:
        verbose_name = _("template")
        verbose_name_plural = _("templates")
        ordering = ["message__name", "channel"]
        constraints = [
            models.UniqueConstraint(fields=["message", "channel"], name="template_one_per_channel"),
            models.CheckConstraint(
                condition=Q(channel="email") | Q(sender_profile__isnull=True), name="template_sender_email_only"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.message.name} · {self.get_channel_display()}"


class TemplateVersion(Version):
    """One saved state of a template in one language. Which fields count depends on the channel:
    email uses subject, preheader, HTML and text; SMS the text; a script the text (what the agent
    says), the talking points and the offer pitch."""

    template = models.ForeignKey(
        Template, on_delete=models.CASCADE, related_name="versions", verbose_name=_("template")
    )
    language = models.CharField(_("language"), max_length=10, validators=[language_code_validator])
    subject = models.TextField(_("subject"), blank=True)
    preheader = models.TextField(
        _("preheader"), blank=True, help_text=_("The preview line mail programs show after the subject.")
    )
    html = models.TextField(_("HTML body"), blank=True)
    text = models.TextField(
        _("text"),
        blank=True,
        help_text=_(
            "Email: the plain-text body, derived from the HTML when left empty. SMS: the message. "
            "Script: what the agent says."
        ),
    )
    talking_points = models.TextField(_("talking points"), blank=True, help_text=_("Script: one point per line."))
    offer_pitch = models.TextField(
        _("offer pitch"), blank=True, help_text=_("Script: how the agent presents the offer, such as {{ offer.name }}.")
    )
    prepared_html = models.TextField(_("prepared HTML"), blank=True, editable=False)
    prepared_text = models.TextField(_("prepared text"), blank=True, editable=False)

    class Meta:
        verbose_name = _("template version")
        verbose_name_plural = _("template versions")
        ordering = ["template", "language", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["template", "language", "number"], name="template_version_number_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.template} ({self.language}) v{self.number}"
