import uuid

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from dialoog.models import TimeStampedModel


class Channel(models.TextChoices):
    EMAIL = "email", _("Email")
    SMS = "sms", _("SMS")
    PHONE = "phone", _("Phone (callcenter)")


class Contact(TimeStampedModel):
    """One customer, known to every system by the same contact key."""

    contact_key = models.UUIDField(
        _("contact key"),
        default=uuid.uuid4,
        unique=True,
        editable=False,
        help_text=_("The central contact ID that every other system stores for this customer."),
    )
    first_name = models.CharField(_("first name"), max_length=150, blank=True)
    last_name = models.CharField(_("last name"), max_length=150, blank=True)
    locale = models.CharField(_("language"), max_length=10, default="nl")
    timezone = models.CharField(_("time zone"), max_length=64, blank=True)
    attributes = models.JSONField(_("attributes"), default=dict, blank=True)

    class Meta:
        verbose_name = _("contact")
        verbose_name_plural = _("contacts")

    def __str__(self) -> str:
        return f"{self.first_name} {self.last_name}".strip() or str(self.contact_key)


class Identity(models.Model):
    """A way another system knows the contact: an email address, a phone number, an id."""

    class Kind(models.TextChoices):
        EMAIL = "email", _("Email address")
        PHONE = "phone", _("Phone number")
        CUSTOMER_NUMBER = "customer_number", _("Customer number")
        WEBSHOP_ID = "webshop_id", _("Webshop id")
        CRM_ID = "crm_id", _("CRM id")
        DEVICE_ID = "device_id", _("Device id")

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="identities", verbose_name=_("contact"))
    kind = models.CharField(_("kind"), max_length=32, choices=Kind.choices)
    value = models.CharField(_("value"), max_length=255)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("identity")
        verbose_name_plural = _("identities")
        constraints = [
            # Identity resolution looks contacts up by (kind, value); one owner per identity.
            models.UniqueConstraint(fields=["kind", "value"], name="identity_unique_per_kind"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.value}"


class ConsentChange(models.Model):
    """One change of a contact's consent for a channel. The newest row is the current state;
    no row means unknown, and unknown consent is not consent."""

    class Status(models.TextChoices):
        GRANTED = "granted", _("Granted")
        WITHDRAWN = "withdrawn", _("Withdrawn")

    contact = models.ForeignKey(
        Contact, on_delete=models.CASCADE, related_name="consent_changes", verbose_name=_("contact")
    )
    channel = models.CharField(_("channel"), max_length=16, choices=Channel.choices)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices)
    source = models.CharField(_("source"), max_length=100, help_text=_("Where the consent came from."))
    proof = models.TextField(_("proof"), blank=True, help_text=_("The form, import or call it was given in."))
    recorded_at = models.DateTimeField(_("recorded at"), default=timezone.now)

    class Meta:
        verbose_name = _("consent change")
        verbose_name_plural = _("consent changes")
        indexes = [
            # The current consent of a contact for a channel: the newest row.
            models.Index(fields=["contact", "channel", "-recorded_at"], name="consent_current_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_channel_display()}: {self.get_status_display()}"


class Event(models.Model):
    """Something a contact did or that happened to them: a purchase, a call, an email opened."""

    class Type(models.TextChoices):
        PURCHASE = "purchase", _("Purchase")
        PAGE_VIEW = "page_view", _("Page view")
        EMAIL_OPENED = "email_opened", _("Email opened")
        EMAIL_CLICKED = "email_clicked", _("Email clicked")
        CALL_OUTCOME = "call_outcome", _("Call outcome")
        NPS_RESPONSE = "nps_response", _("NPS response")

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="events", verbose_name=_("contact"))
    type = models.CharField(_("type"), max_length=64, choices=Type.choices)
    occurred_at = models.DateTimeField(_("occurred at"))
    properties = models.JSONField(_("properties"), default=dict, blank=True)
    value = models.DecimalField(_("value"), max_digits=12, decimal_places=2, null=True, blank=True)
    currency = models.CharField(_("currency"), max_length=3, blank=True)
    external_id = models.CharField(
        _("external id"),
        max_length=255,
        null=True,
        blank=True,
        unique=True,
        help_text=_("The sender's id for this event: the same event sent twice is stored once."),
    )
    created_at = models.DateTimeField(_("received at"), auto_now_add=True)

    class Meta:
        verbose_name = _("event")
        verbose_name_plural = _("events")
        indexes = [
            # Event conditions of segments and KPIs: a contact's events of a type in a window.
            models.Index(fields=["contact", "type", "-occurred_at"], name="event_contact_type_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_type_display()} {self.occurred_at:%Y-%m-%d}"
