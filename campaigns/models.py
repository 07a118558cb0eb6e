import datetime as dt

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from dialoog.models import TimeStampedModel


class DeliveryChannel(models.TextChoices):
    """The ways a campaign reaches a contact (or another system on the contact's behalf)."""

    EMAIL = "email", _("Email")
    SMS = "sms", _("SMS")
    CALLCENTER = "callcenter", _("Callcenter")
    DIRECT_MAIL = "direct_mail", _("Direct mail")
    WEBHOOK = "webhook", _("Webhook")


class Campaign(TimeStampedModel):
    """A campaign serves one goal, reaches an audience over one or more channels, and keeps a
    holdout to measure its effect. Its status moves only through `campaign_transition`."""

    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        SCHEDULED = "scheduled", _("Scheduled")
        RUNNING = "running", _("Running")
        PAUSED = "paused", _("Paused")
        COMPLETED = "completed", _("Completed")
        CANCELLED = "cancelled", _("Cancelled")

    class Kind(models.TextChoices):
        ONE_OFF = "one_off", _("One-off")
        RECURRING = "recurring", _("Recurring")
        TRIGGERED = "triggered", _("Triggered")

    name = models.CharField(_("name"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    goal = models.ForeignKey(
        "goals.Goal",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="campaigns",
        verbose_name=_("goal"),
        help_text=_("The goal this campaign serves: no goal, no campaign."),
    )
    experiment = models.OneToOneField(
        "goals.Experiment",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="campaign",
        verbose_name=_("measurement"),
        help_text=_("Its holdout and measured uplift against the goal; made on activation when left empty."),
    )
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.DRAFT)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.ONE_OFF)

    # --- Audience ------------------------------------------------------------------------
    include_segments = models.ManyToManyField(
        "audiences.Segment",
        related_name="+",
        blank=True,
        verbose_name=_("segments"),
        help_text=_("Contacts in any of these segments are in the audience."),
    )
    exclude_segments = models.ManyToManyField(
        "audiences.Segment",
        related_name="+",
        blank=True,
        verbose_name=_("excluded segments"),
        help_text=_("Contacts in any of these segments are left out, even when they are in the audience."),
    )

    # --- Message ---------------------------------------------------------------------------
    message = models.ForeignKey(
        "content.Message",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="campaigns",
        verbose_name=_("message"),
        help_text=_("Its templates per channel; variants, when the campaign has any, take its place."),
    )
    channels = ArrayField(
        models.CharField(max_length=16, choices=DeliveryChannel.choices),
        default=list,
        blank=True,
        verbose_name=_("channels"),
        help_text=_("The channels this campaign sends over."),
    )

    # --- When ----------------------------------------------------------------------------
    send_at = models.DateTimeField(
        _("send at"), null=True, blank=True, help_text=_("One-off: when it sends; empty sends on activation.")
    )
    schedule = models.ForeignKey(
        "django_celery_beat.CrontabSchedule",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("schedule"),
        help_text=_("Recurring: when it sends (a crontab with its timezone)."),
    )
    ends_at = models.DateTimeField(
        _("ends at"), null=True, blank=True, help_text=_("Recurring and triggered: no run starts after this moment.")
    )
    trigger_event_type = models.CharField(
        _("trigger event"),
        max_length=64,
        blank=True,
        help_text=_("Triggered: the event that starts a contact's send, such as a purchase."),
    )
    trigger_filters = models.JSONField(
        _("trigger properties"),
        default=dict,
        blank=True,
        help_text=_('Triggered: properties the event must have, such as {"category": "tuin"}.'),
    )
    trigger_first_only = models.BooleanField(
        _("only the first"), default=False, help_text=_("Triggered: only a contact's first event of this type counts.")
    )
    trigger_delay = models.DurationField(
        _("delay"), default=dt.timedelta, blank=True, help_text=_("Triggered: how long after the event it sends.")
    )
    stop_event_types = ArrayField(
        models.CharField(max_length=64),
        default=list,
        blank=True,
        verbose_name=_("stop when"),
        help_text=_("Triggered: a contact who has one of these events after the trigger gets nothing."),
    )

    # --- How fast --------------------------------------------------------------------------
    throttle_per_minute = models.PositiveIntegerField(
        _("at most per minute"),
        null=True,
        blank=True,
        help_text=_("This campaign hands at most this many messages a minute to its channels."),
    )

    # --- Holdout and variants ----------------------------------------------------------------
    holdout_percent = models.DecimalField(
        _("holdout (%)"),
        max_digits=5,
        decimal_places=2,
        default=10,
        help_text=_("The share that receives nothing, to measure the effect against (used when it is activated)."),
    )
    holdout_off_reason = models.TextField(
        _("why there is no holdout"), blank=True, help_text=_("Needed when the holdout is 0%.")
    )
    variant_test_percent = models.PositiveSmallIntegerField(
        _("test share (%)"),
        default=0,
        help_text=_(
            "With variants: the share of the audience that gets the test; the rest gets the winner. "
            "0 splits the whole audience over the variants."
        ),
    )
    variant_test_hours = models.PositiveIntegerField(
        _("test period (hours)"), default=24, help_text=_("With a test share: how long the test runs before a winner.")
    )

    # --- What happened -------------------------------------------------------------------------
    activated_at = models.DateTimeField(_("activated at"), null=True, blank=True, editable=False)
    activated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", editable=False
    )
    status_changed_at = models.DateTimeField(_("status changed at"), null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("campaign")
        verbose_name_plural = _("campaigns")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(holdout_percent__gte=0, holdout_percent__lte=50), name="campaign_holdout_range"
            ),
            models.CheckConstraint(condition=Q(variant_test_percent__lte=50), name="campaign_test_share_range"),
        ]
        indexes = [
            # The dispatcher's tick: the campaigns that may have work (scheduled, running).
            models.Index(fields=["status", "kind"], name="campaign_status_kind_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.experiment_id and self.experiment.goal_id != self.goal_id:
            raise ValidationError(
                {
                    "experiment": _(
                        "This measurement belongs to another goal: a campaign is measured against its own goal."
                    )
                }
            )
        unknown = [channel for channel in self.channels if channel not in DeliveryChannel.values]
        if unknown:
            raise ValidationError(
                {"channels": _("Unknown channel %(channel)s.") % {"channel": ", ".join(map(str, unknown))}}
            )


class CampaignVariant(TimeStampedModel):
    """One version of an A/B/n test: its own message, and its share of the audience."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="variants")
    name = models.CharField(_("name"), max_length=100)
    message = models.ForeignKey(
        "content.Message", on_delete=models.PROTECT, related_name="+", verbose_name=_("message")
    )
    weight = models.PositiveSmallIntegerField(
        _("weight"), default=1, help_text=_("Its share of the test, relative to the other variants' weights.")
    )
    is_winner = models.BooleanField(_("winner"), default=False, editable=False)

    class Meta:
        verbose_name = _("variant")
        verbose_name_plural = _("variants")
        ordering = ["campaign", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "name"], name="variant_name_unique"),
            models.UniqueConstraint(fields=["campaign"], condition=Q(is_winner=True), name="variant_one_winner"),
            models.CheckConstraint(condition=Q(weight__gte=1), name="variant_weight_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign}: {self.name}"


class CampaignRun(models.Model):
    """One occurrence of a campaign: a one-off's send, one firing of a recurring schedule, or a
    triggered campaign's sends that came due at one tick. Unique per campaign and occurrence, so a
    beat that fires twice, a DST change or a restart cannot make a second run."""

    class Status(models.TextChoices):
        SCHEDULED = "scheduled", _("Scheduled")
        PLANNING = "planning", _("Planning")
        SENDING = "sending", _("Sending")
        COMPLETED = "completed", _("Completed")
        CANCELLED = "cancelled", _("Cancelled")
        FAILED = "failed", _("Failed")

    class Purpose(models.TextChoices):
        SEND = "send", _("Send")
        TEST = "test", _("Variant test")
        WINNER = "winner", _("Winner")

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="runs")
    # The occurrence in the campaign's own wall-clock time ("2026-10-25T02:30"): one run per
    # occurrence, also when a DST change makes that time happen twice.
    occurrence = models.CharField(_("occurrence"), max_length=40)
    scheduled_for = models.DateTimeField(_("scheduled for"))
    purpose = models.CharField(_("purpose"), max_length=16, choices=Purpose.choices, default=Purpose.SEND)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.SCHEDULED)
    planned = models.PositiveIntegerField(_("planned"), default=0)
    held_out = models.PositiveIntegerField(_("holdout"), default=0)
    excluded = models.JSONField(
        _("excluded"), default=dict, blank=True, help_text=_("Contacts left out when planning, by reason.")
    )
    error = models.TextField(_("error"), blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    planned_at = models.DateTimeField(_("planned at"), null=True, blank=True)
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("run")
        verbose_name_plural = _("runs")
        ordering = ["-scheduled_for"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "occurrence"], name="run_once_per_occurrence"),
        ]
        indexes = [
            # The dispatcher claims due runs (scheduled, scheduled_for <= now) and resumes planning
            # that was cut short.
            models.Index(
                fields=["scheduled_for"], condition=Q(status__in=["scheduled", "planning"]), name="run_due_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.campaign} @ {self.occurrence}"


class DeliveryBatch(models.Model):
    """A slice of a run's deliveries (a range of contact ids) that one worker sends. Claimed with
    a lease: a worker killed mid-batch leaves the lease to expire, and another picks it up."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        CLAIMED = "claimed", _("Sending")
        DONE = "done", _("Done")

    run = models.ForeignKey(CampaignRun, on_delete=models.CASCADE, related_name="batches")
    contact_from = models.BigIntegerField(_("first contact id"))
    contact_to = models.BigIntegerField(_("last contact id"))
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.QUEUED)
    leased_by = models.CharField(_("worker"), max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(_("lease expires at"), null=True, blank=True)
    enqueued_at = models.DateTimeField(_("enqueued at"), null=True, blank=True)
    # Deliveries deferred (quiet hours, throttling, a transient error's backoff) keep the batch
    # open: it is sent again from this moment on.
    not_before = models.DateTimeField(_("not before"), null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    done_at = models.DateTimeField(_("done at"), null=True, blank=True)

    class Meta:
        verbose_name = _("batch")
        verbose_name_plural = _("batches")
        constraints = [
            models.CheckConstraint(condition=Q(contact_to__gte=F("contact_from")), name="batch_range_ordered"),
        ]
        indexes = [
            # The dispatcher: batches not done, to enqueue or to reclaim when their lease expired.
            models.Index(fields=["run", "status"], condition=~Q(status="done"), name="batch_open_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}: {self.contact_from}-{self.contact_to}"


class Delivery(models.Model):
    """One message of one run to one contact over one channel: the outbox row written when the run
    is planned, and the outcome once it was handed to the channel. Unique per run, contact and
    channel, so that no retry, re-plan or second worker can send it twice."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        HOLDOUT = "holdout", _("Holdout")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")
        HELD_BACK = "held_back", _("Held back")

    # No constraint in the database: a run plans a million deliveries in one INSERT, and PostgreSQL
    # would check each row's run with a trigger at commit (seconds per million). Only run_plan
    # writes deliveries, for the run it holds locked; deleting a run deletes them through the ORM.
    run = models.ForeignKey(
        CampaignRun, on_delete=models.CASCADE, related_name="deliveries", db_index=False, db_constraint=False
    )
    # Not indexed: a campaign's deliveries are read through its runs (delivery_once starts with the
    # run), and deleting a campaign deletes them with its runs. An index on the campaign cost a
    # second per million rows planned, and again on every status a worker records.
    campaign = models.ForeignKey(
        Campaign, on_delete=models.DO_NOTHING, related_name="deliveries", db_index=False, db_constraint=False
    )
    contact = models.ForeignKey(
        "audiences.Contact", on_delete=models.DO_NOTHING, related_name="+", db_index=False, db_constraint=False
    )
    channel = models.CharField(_("channel"), max_length=16, choices=DeliveryChannel.choices)
    variant = models.ForeignKey(
        CampaignVariant,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
        db_index=False,  # see Meta.indexes: only the deliveries of an A/B/n test have one
    )
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.QUEUED)
    reason = models.CharField(_("reason"), max_length=64, blank=True, help_text=_("Why it was held back or failed."))
    detail = models.TextField(_("detail"), blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    to = models.CharField(_("to"), max_length=255, blank=True)
    provider_id = models.CharField(_("provider id"), max_length=255, blank=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    opened_at = models.DateTimeField(_("opened at"), null=True, blank=True)
    clicked_at = models.DateTimeField(_("clicked at"), null=True, blank=True)

    class Meta:
        verbose_name = _("delivery")
        verbose_name_plural = _("deliveries")
        constraints = [
            # The idempotency key of the whole send pipeline; batches read their contact range through
            # it, and a campaign's progress counts its runs' deliveries by status from it alone.
            models.UniqueConstraint(fields=["run", "contact", "channel"], include=["status"], name="delivery_once"),
        ]
        indexes = [
            # Frequency caps: a contact's messages sent in the last days, at send time.
            models.Index(
                fields=["contact", "sent_at"], include=["channel"], condition=Q(status="sent"), name="delivery_sent_idx"
            ),
            # Setting a deleted variant's deliveries to none. Partial: most deliveries have no variant.
            models.Index(fields=["variant"], condition=Q(variant__isnull=False), name="delivery_variant_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}/{self.contact_id}/{self.channel}"


class ContactPolicy(TimeStampedModel):
    """The contact policies every campaign obeys, checked when a message is about to be handed to
    its channel: a frequency cap across campaigns and quiet hours in the contact's own timezone.
    One row, edited in the admin."""

    cap_total = models.PositiveSmallIntegerField(
        _("at most messages in total"),
        default=3,
        help_text=_("Marketing messages per contact within the cap's days, over all channels and campaigns."),
    )
    cap_per_channel = models.PositiveSmallIntegerField(
        _("at most messages per channel"), default=3, help_text=_("Per contact within the cap's days, per channel.")
    )
    cap_days = models.PositiveSmallIntegerField(_("cap days"), default=7)
    quiet_channels = ArrayField(
        models.CharField(max_length=16, choices=DeliveryChannel.choices),
        default=list,
        blank=True,
        verbose_name=_("quiet-hours channels"),
        help_text=_("Channels that only reach contacts between the start and end hours of their own day."),
    )
    quiet_start = models.TimeField(_("not before"), default=dt.time(9))
    quiet_end = models.TimeField(_("not after"), default=dt.time(21))
    quiet_sunday = models.BooleanField(_("not on Sunday"), default=True)

    class Meta:
        verbose_name = _("contact policy")
        verbose_name_plural = _("contact policy")
        constraints = [
            models.CheckConstraint(condition=Q(quiet_end__gt=F("quiet_start")), name="policy_quiet_end_after_start"),
            models.CheckConstraint(condition=Q(cap_days__gte=1), name="policy_cap_days_positive"),
            models.CheckConstraint(condition=Q(pk=1), name="policy_single_row"),
        ]

    def __str__(self) -> str:
        return str(_("Contact policy"))


class Suppression(models.Model):
    """An address no campaign sends to again: it bounced hard or its owner complained."""

    class Reason(models.TextChoices):
        HARD_BOUNCE = "hard_bounce", _("Hard bounce")
        COMPLAINT = "complaint", _("Complaint")
        MANUAL = "manual", _("Added by hand")

    channel = models.CharField(_("channel"), max_length=16, choices=DeliveryChannel.choices)
    address = models.CharField(_("address"), max_length=255)
    reason = models.CharField(_("reason"), max_length=16, choices=Reason.choices)
    detail = models.TextField(_("detail"), blank=True)
    created_at = models.DateTimeField(_("since"), auto_now_add=True)

    class Meta:
        verbose_name = _("suppressed address")
        verbose_name_plural = _("suppressed addresses")
        constraints = [models.UniqueConstraint(fields=["channel", "address"], name="suppression_once")]

    def __str__(self) -> str:
        return f"{self.get_channel_display()}: {self.address}"


class ThrottleWindow(models.Model):
    """How many messages a channel or campaign handed over in one minute, shared by all workers."""

    key = models.CharField(max_length=64)
    minute = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key", "minute"], name="throttle_window_once")]

    def __str__(self) -> str:
        return f"{self.key} {self.minute:%H:%M}: {self.count}"


class TriggerEntry(models.Model):
    """A contact's pending send of a triggered campaign: the event that started it and when it is due."""

    class Status(models.TextChoices):
        WAITING = "waiting", _("Waiting")
        PLANNED = "planned", _("Planned")
        STOPPED = "stopped", _("Stopped")

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="trigger_entries")
    contact = models.ForeignKey("audiences.Contact", on_delete=models.CASCADE, related_name="+", db_constraint=False)
    event = models.ForeignKey("audiences.Event", on_delete=models.SET_NULL, null=True, related_name="+")
    # Once per contact (the first purchase) or once per event, as the campaign says.
    dedupe_key = models.CharField(max_length=64)
    triggered_at = models.DateTimeField(_("triggered at"))
    due_at = models.DateTimeField(_("due at"))
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.WAITING)
    run = models.ForeignKey(CampaignRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    reason = models.CharField(_("reason"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("triggered send")
        verbose_name_plural = _("triggered sends")
        constraints = [models.UniqueConstraint(fields=["campaign", "dedupe_key"], name="trigger_entry_once")]
        indexes = [
            # The dispatcher: entries that came due.
            models.Index(fields=["campaign", "due_at"], condition=Q(status="waiting"), name="trigger_due_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id}: {self.contact_id} @ {self.due_at:%Y-%m-%d %H:%M}"


class CallListItem(TimeStampedModel):
    """A contact on a callcenter run's call list, with the script rendered for them; agents work
    through the open items, and the call's outcome comes back as an event."""

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        DONE = "done", _("Done")

    delivery = models.OneToOneField(Delivery, on_delete=models.CASCADE, related_name="call_list_item")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="call_list_items")
    contact = models.ForeignKey("audiences.Contact", on_delete=models.CASCADE, related_name="+", db_constraint=False)
    phone = models.CharField(_("phone number"), max_length=32, blank=True)
    script = models.JSONField(
        _("script"), default=dict, help_text=_("What the agent says, talking points, offer pitch.")
    )
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.OPEN)
    outcome = models.CharField(_("outcome"), max_length=64, blank=True)
    called_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    called_at = models.DateTimeField(_("called at"), null=True, blank=True)

    class Meta:
        verbose_name = _("call list item")
        verbose_name_plural = _("call list")
        ordering = ["created_at", "pk"]
        indexes = [
            # The agents' queue: the open items, oldest first.
            models.Index(fields=["status", "created_at"], condition=Q(status="open"), name="call_list_open_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign}: {self.contact_id}"


class AudienceExport(TimeStampedModel):
    """A segment exported on a schedule as SHA-256 hashed, normalised emails and phone numbers:
    the customer-list format advertising platforms take (to exclude buyers, to seed lookalikes)."""

    name = models.CharField(_("name"), max_length=200, unique=True)
    segment = models.ForeignKey("audiences.Segment", on_delete=models.PROTECT, related_name="+")
    schedule = models.ForeignKey(
        "django_celery_beat.CrontabSchedule",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("schedule"),
        help_text=_("When it is exported again; empty exports only by hand."),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    last_occurrence = models.CharField(_("last occurrence"), max_length=40, blank=True, editable=False)
    exported_at = models.DateTimeField(_("exported at"), null=True, blank=True, editable=False)
    row_count = models.PositiveIntegerField(_("rows"), null=True, blank=True, editable=False)
    # Kept in PostgreSQL, like imports: a worker on any machine writes it, the web serves it.
    content = models.BinaryField(_("file"), editable=False, default=b"")

    class Meta:
        verbose_name = _("audience export")
        verbose_name_plural = _("audience exports")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class WebhookReceipt(models.Model):
    """A provider's status callback that was processed: the same callback sent again is ignored."""

    provider = models.CharField(max_length=64)
    event_id = models.CharField(max_length=255)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["provider", "event_id"], name="webhook_receipt_once")]

    def __str__(self) -> str:
        return f"{self.provider}: {self.event_id}"
