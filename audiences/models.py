import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Func, Q
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Upper
from django.db.models.lookups import Exact
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from dialoog.models import TimeStampedModel


class Channel(models.TextChoices):
    EMAIL = "email", _("Email")
    SMS = "sms", _("SMS")
    PHONE = "phone", _("Phone (callcenter)")


class Contact(TimeStampedModel):
    """One customer, known to every system by the same contact key.

    Its identities, consent history and current consent point at it without a database
    foreign-key constraint (bulk imports write millions of them; PostgreSQL checks a foreign
    key row by row). The services keep them right: a contact is removed only by a merge,
    which moves them first, and erasure keeps the contact. Events and scores keep theirs.
    """

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
    erased_at = models.DateTimeField(
        _("erased at"),
        null=True,
        blank=True,
        editable=False,
        help_text=_("Erased on request (GDPR): personal data removed, events kept anonymised for totals."),
    )

    class Meta:
        verbose_name = _("contact")
        verbose_name_plural = _("contacts")
        # Looking one contact up by an identity needs only view_contact; listing them all needs this.
        permissions = [("browse_contact", _("Can list all contacts"))]
        indexes = [
            # The contact admin's default order, newest first, without sorting a million rows.
            models.Index(fields=["-created_at"], name="contact_created_idx"),
            # The admin's search by last name, whatever its case.
            models.Index(Upper("last_name"), name="contact_last_name_idx"),
        ]
        constraints = [
            # Attributes are looked up by key everywhere: they must be a JSON object.
            models.CheckConstraint(
                condition=Exact(
                    Func(F("attributes"), function="jsonb_typeof", output_field=models.TextField()), "object"
                ),
                name="contact_attributes_object",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.first_name} {self.last_name}".strip() or str(self.contact_key)

    def clean(self):
        if not isinstance(self.attributes, dict):
            raise ValidationError(
                {"attributes": _('Attributes are an object of keys and values, e.g. {"city": "Delft"}.')}
            )


class Identity(models.Model):
    """A way another system knows the contact: an email address, a phone number, an id."""

    class Kind(models.TextChoices):
        EMAIL = "email", _("Email address")
        PHONE = "phone", _("Phone number")
        CUSTOMER_NUMBER = "customer_number", _("Customer number")
        WEBSHOP_ID = "webshop_id", _("Webshop id")
        CRM_ID = "crm_id", _("CRM id")
        DEVICE_ID = "device_id", _("Device id")

    contact = models.ForeignKey(
        Contact,
        on_delete=models.CASCADE,
        related_name="identities",
        verbose_name=_("contact"),
        db_index=False,  # served by identity_contact_kind_idx
        db_constraint=False,
    )
    kind = models.CharField(_("kind"), max_length=32, choices=Kind.choices)
    value = models.CharField(_("value"), max_length=255, help_text=_("Normalised: e-mail lower case, phone in E.164."))
    source = models.CharField(_("source"), max_length=100, blank=True, help_text=_("Where it was first seen."))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("identity")
        verbose_name_plural = _("identities")
        constraints = [
            # Identity resolution looks contacts up by (kind, value); one owner per identity.
            models.UniqueConstraint(fields=["kind", "value"], name="identity_unique_per_kind"),
        ]
        indexes = [
            # A contact's identities (profile, merge, "has a phone number" in segments).
            models.Index(fields=["contact", "kind"], name="identity_contact_kind_idx"),
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
        Contact,
        on_delete=models.CASCADE,
        related_name="consent_changes",
        verbose_name=_("contact"),
        db_index=False,  # served by consent_current_idx
        db_constraint=False,
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


class Consent(models.Model):
    """The current consent of a contact for a channel: the newest ConsentChange, kept beside the
    history by the consent service so that "may we mail this contact?" is one indexed lookup."""

    contact = models.ForeignKey(
        Contact,
        on_delete=models.CASCADE,
        related_name="consents",
        verbose_name=_("contact"),
        db_index=False,  # served by consent_one_per_channel
        db_constraint=False,
    )
    channel = models.CharField(_("channel"), max_length=16, choices=Channel.choices)
    status = models.CharField(_("status"), max_length=16, choices=ConsentChange.Status.choices)
    changed_at = models.DateTimeField(_("changed at"))
    # Derived data, rebuilt from the history by the consent services whenever history is
    # moved or removed: no database constraint, no index, no cascade.
    change = models.ForeignKey(
        ConsentChange,
        on_delete=models.DO_NOTHING,
        related_name="+",
        verbose_name=_("consent change"),
        db_index=False,
        db_constraint=False,
    )

    class Meta:
        verbose_name = _("current consent")
        verbose_name_plural = _("current consents")
        constraints = [
            models.UniqueConstraint(fields=["contact", "channel"], name="consent_one_per_channel"),
        ]
        indexes = [
            # Segments and sends: every contact with consent for a channel, as one index scan.
            models.Index(fields=["channel", "status", "contact"], name="consent_channel_status_idx"),
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
        EMAIL_DELIVERED = "email_delivered", _("Email delivered")
        EMAIL_BOUNCED = "email_bounced", _("Email bounced")
        EMAIL_COMPLAINED = "email_complained", _("Email marked as spam")
        CALL_OUTCOME = "call_outcome", _("Call outcome")
        OFFER_RESPONSE = "offer_response", _("Offer response")
        NPS_RESPONSE = "nps_response", _("NPS response")
        SATISFACTION_RESPONSE = "satisfaction_response", _("Satisfaction response")

    contact = models.ForeignKey(
        Contact,
        on_delete=models.CASCADE,
        related_name="events",
        verbose_name=_("contact"),
        db_index=False,  # served by event_contact_type_time_idx
    )
    type = models.CharField(_("type"), max_length=64, choices=Type.choices)
    occurred_at = models.DateTimeField(_("occurred at"))
    properties = models.JSONField(_("properties"), default=dict, blank=True)
    value = models.DecimalField(_("value"), max_digits=12, decimal_places=2, null=True, blank=True)
    currency = models.CharField(_("currency"), max_length=3, blank=True)
    external_id = models.CharField(  # noqa: DJ001 - NULL is "no id": unique among the events that have one
        _("external id"),
        max_length=255,
        null=True,
        blank=True,
        help_text=_("The sender's id for this event: the same event sent twice is stored once."),
    )
    created_at = models.DateTimeField(_("received at"), auto_now_add=True)
    # The category property, kept by PostgreSQL as a column of its own, so that an index can
    # answer "bought in category X" without reading the events (segments use it for
    # `properties.category`; it is always exactly `properties ->> 'category'`).
    category = models.GeneratedField(
        expression=KeyTextTransform("category", "properties"),
        output_field=models.TextField(),
        db_persist=True,
        verbose_name=_("category"),
    )

    class Meta:
        verbose_name = _("event")
        verbose_name_plural = _("events")
        indexes = [
            # A contact's timeline, and event conditions evaluated per contact.
            models.Index(fields=["contact", "type", "-occurred_at"], name="event_contact_type_time_idx"),
            # Event conditions of segments and KPIs over everyone: the events of a type in a
            # window, with what the aggregates need, read from the index alone.
            models.Index(fields=["type", "occurred_at"], include=["contact", "value"], name="event_type_time_idx"),
            # "Bought in category X in the last N days": the purchases of one category, by time,
            # with what counts and sums need, read from the index alone.
            models.Index(
                fields=["category", "occurred_at"],
                include=["contact", "value"],
                condition=Q(type="purchase"),
                name="event_purchase_category_idx",
            ),
        ]
        constraints = [
            # Idempotent ingestion: INSERT ... ON CONFLICT (external_id) DO NOTHING. A constraint,
            # not unique=True, which would add a second (LIKE) index to ten million rows.
            models.UniqueConstraint(fields=["external_id"], name="event_external_id_once"),
        ]

    def __str__(self) -> str:
        return f"{self.get_type_display()} {self.occurred_at:%Y-%m-%d}"


class Score(models.Model):
    """A numeric insight on the profile (churn risk, lifetime value), refreshed by its model.
    Segments filter on any score by name."""

    contact = models.ForeignKey(
        Contact,
        on_delete=models.CASCADE,
        related_name="scores",
        verbose_name=_("contact"),
        db_index=False,  # served by score_one_per_name
    )
    name = models.SlugField(_("name"), max_length=64)
    value = models.FloatField(_("value"))
    computed_at = models.DateTimeField(_("computed at"), default=timezone.now)
    model = models.ForeignKey(
        "PredictionModel",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,  # never filtered on; a score is found by contact and name
        verbose_name=_("model"),
        help_text=_("The model (and so its version) that computed it; empty for a score loaded from elsewhere."),
    )
    from_prior = models.BooleanField(
        _("from the prior"),
        default=False,
        db_default=False,  # scores loaded by hand-written SQL (imports, benchmarks) are their own
        help_text=_("The contact had no events to go on: the score is the average the model learned, not their own."),
    )

    class Meta:
        verbose_name = _("score")
        verbose_name_plural = _("scores")
        constraints = [models.UniqueConstraint(fields=["contact", "name"], name="score_one_per_name")]
        indexes = [
            # The names of the scores (the segment builder lists them by a loose index scan) and the
            # rows of one score, for thresholds in segments. Not on the value: the nightly rewrite of
            # every score then changes no indexed column, and PostgreSQL updates each row in place on
            # its page (a heap-only update, with the table's fillfactor leaving room): 3 s for a
            # million contacts instead of 15 (docs/benchmarks.md).
            models.Index(fields=["name"], name="score_name_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name}: {self.value:g}"


class PredictionModel(models.Model):
    """A trained model that writes one score on every profile: churn risk or lifetime value.

    Each training makes a new version with what a data scientist needs to trust it: the
    features, the periods it learned from and was checked on, and its figures on that later,
    held-out period. Scores are only written by the active version of a kind; activating one
    is a person's decision (`prediction_model_activate`)."""

    class Kind(models.TextChoices):
        CHURN = "churn", _("Churn risk")
        LIFETIME_VALUE = "lifetime_value", _("Lifetime value")

    class Status(models.TextChoices):
        TRAINED = "trained", _("Trained, not in use")
        ACTIVE = "active", _("Active: writes the scores")
        RETIRED = "retired", _("Retired")

    kind = models.CharField(_("kind"), max_length=32, choices=Kind.choices)
    version = models.PositiveIntegerField(_("version"))
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.TRAINED)
    algorithm = models.CharField(_("algorithm"), max_length=200)
    features = models.JSONField(_("features"), default=list, help_text=_("The features it reads, in order."))
    horizon_days = models.PositiveIntegerField(
        _("horizon (days)"), help_text=_("Churn: no purchase in this many days. Lifetime value: revenue over them.")
    )
    trained_until = models.DateTimeField(
        _("learned from data before"), help_text=_("Features before this moment, the outcome after it.")
    )
    evaluated_until = models.DateTimeField(
        _("checked on data before"),
        help_text=_("The held-out period: features before it, the outcome in the horizon after it."),
    )
    training_rows = models.PositiveIntegerField(_("contacts learned from"))
    evaluation_rows = models.PositiveIntegerField(_("contacts checked on"))
    metrics = models.JSONField(_("figures on the held-out period"), default=dict)
    prior = models.FloatField(_("prior"), help_text=_("The score of a contact with no events at all."))
    artifact = models.BinaryField(_("trained model"), editable=False)
    notes = models.JSONField(_("notes"), default=list, blank=True)
    created_at = models.DateTimeField(_("trained at"), auto_now_add=True)
    trained_by = models.CharField(_("trained by"), max_length=150, blank=True)
    activated_at = models.DateTimeField(_("activated at"), null=True, blank=True)
    activated_by = models.CharField(_("activated by"), max_length=150, blank=True)
    scored_at = models.DateTimeField(_("last scored at"), null=True, blank=True)
    scored_rows = models.PositiveIntegerField(_("contacts scored"), default=0)

    class Meta:
        verbose_name = _("prediction model")
        verbose_name_plural = _("prediction models")
        ordering = ["kind", "-version"]
        permissions = [("activate_predictionmodel", _("Can activate a prediction model"))]
        constraints = [
            models.UniqueConstraint(fields=["kind", "version"], name="prediction_model_version_once"),
            # The scores of a kind come from one model at a time.
            models.UniqueConstraint(
                fields=["kind"], condition=Q(status="active"), name="prediction_model_one_active_per_kind"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} v{self.version}"

    def headline(self) -> str:
        """The figure the model is judged by on its held-out period, beside the baseline it must beat."""
        figures = self.metrics
        if self.kind == self.Kind.CHURN:
            return gettext("AUC %(auc)s (recency alone %(baseline)s)") % {
                "auc": number_format(figures.get("auc", 0), 4),
                "baseline": number_format(figures.get("baseline_auc", 0), 4),
            }
        return gettext("MAE € %(mae)s (same as last year € %(baseline)s)") % {
            "mae": number_format(figures.get("mae", 0), 2),
            "baseline": number_format(figures.get("baseline_mae", 0), 2),
        }


class Product(models.Model):
    """A product as the shop's purchase events name it (`properties.product`), with what those
    purchases tell of it over the last year. Refreshed by `audiences.insights.products`."""

    name = models.CharField(_("name"), max_length=200, unique=True)
    category = models.CharField(_("category"), max_length=200, blank=True)
    price = models.DecimalField(
        _("price"), max_digits=12, decimal_places=2, null=True, blank=True, help_text=_("Its median price per item.")
    )
    url = models.URLField(_("page"), max_length=500, blank=True)
    image_url = models.URLField(_("image"), max_length=500, blank=True)
    buyers = models.PositiveIntegerField(
        _("buyers"), default=0, help_text=_("Contacts who bought it in the last year.")
    )
    orders = models.PositiveIntegerField(_("orders"), default=0, help_text=_("Orders with it in the last year."))
    refreshed_at = models.DateTimeField(_("refreshed at"))

    class Meta:
        verbose_name = _("product")
        verbose_name_plural = _("products")
        indexes = [
            # The best sellers of a category: the fallback when a contact's products have no pairs.
            models.Index(fields=["category", "-buyers"], name="product_category_buyers_idx"),
        ]

    def __str__(self) -> str:
        return self.name


class ProductAffinity(models.Model):
    """How strongly `related` goes with `product` in one order ("bought this, also bought"):

    - support: the share of all orders that hold both;
    - confidence: the share of `product`'s orders that also hold `related`;
    - lift: confidence divided by the share of all orders that hold `related`; above 1, the pair
      is bought together more often than chance would have it."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="affinities", db_index=False)
    related = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="+")
    together = models.PositiveIntegerField(_("orders together"))
    support = models.FloatField(_("support"), default=0.0)
    confidence = models.FloatField(_("confidence"))
    lift = models.FloatField(_("lift"), default=1.0)

    class Meta:
        verbose_name = _("product affinity")
        verbose_name_plural = _("product affinities")
        constraints = [
            models.UniqueConstraint(fields=["product", "related"], name="affinity_once_per_pair"),
        ]

    def __str__(self) -> str:
        return f"{self.product} -> {self.related}"


class ContactMerge(models.Model):
    """Two contacts found to be one person. Records everything the merge moved and changed, so
    that unmerge restores both contacts exactly."""

    # No database constraint: when the survivor is later merged into a third contact, this
    # record must stay (unmerge that later merge first, then this one).
    survivor = models.ForeignKey(
        Contact,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="merges",
        verbose_name=_("surviving contact"),
    )
    absorbed_key = models.UUIDField(_("merged contact key"), db_index=True)
    absorbed = models.JSONField(_("merged contact"), help_text=_("The merged contact's own fields, as they were."))
    survivor_before = models.JSONField(_("surviving contact before"), default=dict)
    moved = models.JSONField(_("moved"), default=dict, help_text=_("Ids of the rows moved, per kind."))
    added = models.JSONField(_("added"), default=dict, help_text=_("Ids of the rows the merge added, per kind."))
    reason = models.CharField(_("reason"), max_length=255, blank=True)
    merged_at = models.DateTimeField(_("merged at"), default=timezone.now)
    merged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    unmerged_at = models.DateTimeField(_("unmerged at"), null=True, blank=True)
    unmerged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        verbose_name = _("merge")
        verbose_name_plural = _("merges")
        ordering = ["-merged_at"]

    def __str__(self) -> str:
        return f"{self.absorbed_key} → {self.survivor_id}"


class PrivacyRequest(models.Model):
    """The log of GDPR requests carried out: exports and erasures."""

    class Kind(models.TextChoices):
        EXPORT = "export", _("Export")
        ERASURE = "erasure", _("Erasure")

    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    contact_key = models.UUIDField(_("contact key"), db_index=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    carried_out_at = models.DateTimeField(_("carried out at"), default=timezone.now)
    note = models.CharField(_("note"), max_length=255, blank=True)

    class Meta:
        verbose_name = _("privacy request")
        verbose_name_plural = _("privacy requests")
        ordering = ["-carried_out_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.contact_key}"


class Segment(TimeStampedModel):
    """A group of contacts: dynamic (rules, evaluated when used) or static (a list)."""

    class Kind(models.TextChoices):
        DYNAMIC = "dynamic", _("Dynamic (rules)")
        STATIC = "static", _("Static (list)")

    name = models.CharField(_("name"), max_length=200, unique=True)
    description = models.TextField(_("description"), blank=True)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.DYNAMIC)
    rules = models.JSONField(
        _("rules"), default=dict, blank=True, help_text=_("The rule tree, versioned JSON (dynamic segments).")
    )
    cached_count = models.PositiveIntegerField(_("count"), null=True, blank=True, editable=False)
    counted_at = models.DateTimeField(_("counted at"), null=True, blank=True, editable=False)
    snapshot_of = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="snapshots",
        verbose_name=_("snapshot of"),
        help_text=_("The dynamic segment this list was frozen from."),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by"),
    )

    class Meta:
        verbose_name = _("segment")
        verbose_name_plural = _("segments")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class SegmentMember(models.Model):
    """A contact on a static segment's list.

    Snapshots write hundreds of thousands of these rows in one INSERT ... SELECT, so the table
    carries one B-tree only: its primary key (segment, contact). It has no id column and no
    index by contact (a contact's lists are looked up as "these static segments and this
    contact", which the key serves), and its keys no per-row foreign-key triggers: Django's
    cascade still removes the rows of a deleted segment or contact (contacts are never
    deleted by raw SQL; they are merged or erased through the services).
    """

    pk = models.CompositePrimaryKey("segment", "contact")
    segment = models.ForeignKey(
        Segment,
        on_delete=models.CASCADE,
        related_name="members",
        verbose_name=_("segment"),
        db_index=False,
        db_constraint=False,
    )
    # DO_NOTHING: a cascade would look rows up by contact, which no index serves; the merge and
    # erasure services remove a contact's rows through the key (contacts are not deleted otherwise).
    contact = models.ForeignKey(
        Contact,
        on_delete=models.DO_NOTHING,
        related_name="segment_memberships",
        verbose_name=_("contact"),
        db_index=False,
        db_constraint=False,
    )
    added_at = models.DateTimeField(_("added at"), default=timezone.now)

    class Meta:
        verbose_name = _("segment member")
        verbose_name_plural = _("segment members")

    def __str__(self) -> str:
        return f"{self.segment_id}: {self.contact_id}"


class Import(TimeStampedModel):
    """A file of contacts or events brought in, with its progress and the rows it refused."""

    class Kind(models.TextChoices):
        CONTACTS = "contacts", _("Contacts")
        EVENTS = "events", _("Events")

    class Status(models.TextChoices):
        UPLOADED = "uploaded", _("Uploaded")
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.UPLOADED)
    file_name = models.CharField(_("file name"), max_length=255)
    file_size = models.PositiveBigIntegerField(_("file size"), default=0)
    # Kept in PostgreSQL, not on a disk: a worker on any machine can read it.
    content = models.BinaryField(_("content"), editable=False)
    mapping = models.JSONField(
        _("column mapping"), default=dict, blank=True, help_text=_("Column in the file → field in Dialoog.")
    )
    source = models.CharField(
        _("source"), max_length=100, blank=True, help_text=_("Recorded on identities and consents.")
    )
    total_rows = models.PositiveIntegerField(_("rows"), null=True, blank=True)
    processed_rows = models.PositiveIntegerField(_("rows processed"), default=0)
    created_count = models.PositiveIntegerField(_("created"), default=0)
    updated_count = models.PositiveIntegerField(_("updated"), default=0)
    unchanged_count = models.PositiveIntegerField(_("unchanged"), default=0)
    rejected_count = models.PositiveIntegerField(_("rejected"), default=0)
    merged_count = models.PositiveIntegerField(_("merged"), default=0)
    error = models.TextField(_("error"), blank=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        verbose_name = _("import")
        verbose_name_plural = _("imports")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.file_name}"


class ImportRejectedRow(models.Model):
    """A row an import could not take: its line in the file, why, and the row as it was."""

    import_run = models.ForeignKey(Import, on_delete=models.CASCADE, related_name="rejected_rows")
    line_number = models.PositiveIntegerField(_("line"))
    reason = models.TextField(_("reason"))
    row = models.JSONField(_("row"), default=dict, help_text=_("Column → value, as in the file."))

    class Meta:
        verbose_name = _("rejected row")
        verbose_name_plural = _("rejected rows")
        ordering = ["import_run", "line_number"]
        indexes = [models.Index(fields=["import_run", "line_number"], name="import_rejected_line_idx")]

    def __str__(self) -> str:
        return f"{self.line_number}: {self.reason}"
