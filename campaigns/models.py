import datetime as dt

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
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


# --- Offers and the next-best-offer decision --------------------------------------------------------


class OfferChannel(models.TextChoices):
    """Where an offer can be made while the customer is there: on the phone, or in a follow-up."""

    CALLCENTER = "callcenter", _("Callcenter")
    EMAIL = "email", _("Email")
    SMS = "sms", _("SMS")


class Offer(TimeStampedModel):
    """Something an agent can offer a customer on the line: it belongs to a campaign (so it serves
    that campaign's goal), has a script, an eligibility segment, a validity window, a value and
    limits. The decision ranks the live offers a contact is eligible for by
    propensity x context weight x value x lever (`campaigns.offers.decisions`)."""

    class Propensity(models.TextChoices):
        SCORE = "score", _("A score on the profile")
        LEARNED = "learned", _("Learned from this offer's responses")
        FIXED = "fixed", _("A fixed rate")

    name = models.CharField(_("name"), max_length=200, unique=True)
    description = models.TextField(_("description"), blank=True)
    code = models.CharField(
        _("offer code"), max_length=64, blank=True, help_text=_("The code the customer uses to take the offer.")
    )
    campaign = models.ForeignKey(
        Campaign,
        on_delete=models.PROTECT,
        related_name="offers",
        verbose_name=_("campaign"),
        help_text=_("The campaign it belongs to: it serves that campaign's goal. Live while the campaign is active."),
    )
    script = models.ForeignKey(
        "content.Template",
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("callcenter script"),
        limit_choices_to={"channel": "script"},
        help_text=_("What the agent says; rendered for the customer on the line."),
    )
    follow_up = models.ForeignKey(
        "content.Template",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("follow-up"),
        limit_choices_to={"channel__in": ["email", "sms"]},
        help_text=_("Optional: the email or SMS that confirms the offer after the call."),
    )
    segment = models.ForeignKey(
        "audiences.Segment",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("eligible segment"),
        help_text=_("Only contacts in this segment get the offer; empty: every contact."),
    )
    active = models.BooleanField(_("active"), default=True, help_text=_("Switch an offer off without deleting it."))
    starts_at = models.DateTimeField(_("valid from"), null=True, blank=True)
    ends_at = models.DateTimeField(_("valid until"), null=True, blank=True)
    value = models.DecimalField(
        _("value (€)"), max_digits=10, decimal_places=2, help_text=_("What an accept is worth, in euro.")
    )
    propensity_source = models.CharField(
        _("propensity from"), max_length=16, choices=Propensity.choices, default=Propensity.LEARNED
    )
    propensity_score = models.SlugField(
        _("score"),
        max_length=64,
        blank=True,
        help_text=_("With “a score on the profile”: the score's name, such as “churn” or “tuin_affinity”."),
    )
    propensity_default = models.FloatField(
        _("default propensity"),
        default=0.1,
        help_text=_(
            "The chance of an accept, 0 to 1: the fixed rate, the starting point a learned rate moves from, "
            "and what a contact without the score gets."
        ),
    )
    lever = models.FloatField(
        _("business lever"),
        default=1.0,
        help_text=_("A weight the marketeer tunes: 2 makes the offer twice as likely to win, 0.5 half as likely."),
    )
    max_presentations = models.PositiveSmallIntegerField(
        _("at most presentations"),
        null=True,
        blank=True,
        help_text=_("Per contact within the period below; empty: no limit."),
    )
    presentation_days = models.PositiveSmallIntegerField(_("period (days)"), default=30)
    cooldown_days = models.PositiveSmallIntegerField(
        _("cool-down after a reject (days)"), default=14, help_text=_("0: it may be offered again at once.")
    )
    daily_capacity = models.PositiveIntegerField(
        _("at most accepts a day"), null=True, blank=True, help_text=_("Empty: no limit.")
    )
    holdout_percent = models.DecimalField(
        _("holdout (%)"),
        max_digits=5,
        decimal_places=2,
        default=10,
        help_text=_(
            "The share of contacts for whom it is only recorded as “would have presented”, to measure its effect."
        ),
    )
    holdout_off_reason = models.TextField(
        _("why there is no holdout"), blank=True, help_text=_("Needed when the holdout is 0%.")
    )
    experiment = models.OneToOneField(
        "goals.Experiment",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="offer",
        editable=False,
        verbose_name=_("measurement"),
    )
    # The learned propensity's counts, kept up by offer_response_record (F() increments).
    responses = models.PositiveIntegerField(_("responses"), default=0, editable=False)
    accepts = models.PositiveIntegerField(_("accepts"), default=0, editable=False)
    # Top offers recorded in the measurement up to this moment (offer_assignments_record).
    assigned_until = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("offer")
        verbose_name_plural = _("offers")
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(value__gte=0), name="offer_value_not_negative"),
            models.CheckConstraint(condition=Q(lever__gt=0), name="offer_lever_positive"),
            models.CheckConstraint(
                condition=Q(propensity_default__gte=0, propensity_default__lte=1), name="offer_propensity_range"
            ),
            models.CheckConstraint(
                condition=Q(holdout_percent__gte=0, holdout_percent__lte=50), name="offer_holdout_range"
            ),
            models.CheckConstraint(
                condition=Q(ends_at__isnull=True) | Q(starts_at__isnull=True) | Q(ends_at__gt=F("starts_at")),
                name="offer_ends_after_start",
            ),
            models.CheckConstraint(condition=Q(presentation_days__gte=1), name="offer_period_positive"),
        ]

    def __str__(self) -> str:
        return self.name


class OfferContextWeight(models.Model):
    """How much a channel, or a moment of the day, favours an offer: the C of P x C x V x L. An
    offer's context weight is the product of its rows that match the decision (1 when none does)."""

    offer = models.ForeignKey(Offer, on_delete=models.CASCADE, related_name="context_weights")
    channel = models.CharField(
        _("channel"), max_length=16, choices=OfferChannel.choices, blank=True, help_text=_("Empty: every channel.")
    )
    hour_from = models.PositiveSmallIntegerField(
        _("from hour"), null=True, blank=True, help_text=_("With “until hour”: only then (0 to 23, local time).")
    )
    hour_until = models.PositiveSmallIntegerField(_("until hour"), null=True, blank=True)
    weight = models.FloatField(_("weight"), default=1.0)

    class Meta:
        verbose_name = _("context weight")
        verbose_name_plural = _("context weights")
        constraints = [
            models.CheckConstraint(condition=Q(weight__gte=0), name="offer_weight_not_negative"),
            models.CheckConstraint(
                condition=Q(hour_from__isnull=True, hour_until__isnull=True)
                | Q(hour_from__lte=23, hour_until__gte=1, hour_until__lte=24, hour_until__gt=F("hour_from")),
                name="offer_weight_hours",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.offer}: {self.weight:g}"


class OfferDecision(models.Model):
    """One answer to "which offer for this contact, now?": the ranked offers, and why the others
    were left out. Responses refer to it, so an agent can only answer for what was presented."""

    contact = models.ForeignKey(
        "audiences.Contact", on_delete=models.DO_NOTHING, related_name="+", db_index=False, db_constraint=False
    )
    channel = models.CharField(_("channel"), max_length=16, choices=OfferChannel.choices)
    agent = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,  # see OfferDecisionItem: no trigger at commit on the agent's path
    )
    left_out = models.JSONField(_("left out"), default=list, blank=True, help_text=_("Offers left out, and why."))
    created_at = models.DateTimeField(_("decided at"), default=timezone.now)

    class Meta:
        verbose_name = _("offer decision")
        verbose_name_plural = _("offer decisions")
        permissions = [("use_next_best_offer", _("Can ask for next-best offers and record the answers"))]
        indexes = [
            # A contact's earlier decisions, newest first (the console's history).
            models.Index(fields=["contact", "-created_at"], name="offer_decision_contact_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.contact_id} @ {self.created_at:%Y-%m-%d %H:%M}"


class OfferDecisionItem(models.Model):
    """One offer of a decision with its score parts and explanation: presented to the agent, or
    recorded as "would have presented" for a contact in the offer's holdout."""

    # No constraints in the database: the decision and its items are written by one statement
    # (offer_decide), and PostgreSQL would check each item's keys with a trigger at commit, on the
    # path an agent waits on. Offers are protected and decisions deleted through the ORM.
    decision = models.ForeignKey(OfferDecision, on_delete=models.CASCADE, related_name="items", db_constraint=False)
    offer = models.ForeignKey(Offer, on_delete=models.PROTECT, related_name="+", db_constraint=False)
    contact_id = models.BigIntegerField()
    rank = models.PositiveSmallIntegerField(_("rank"))
    presented = models.BooleanField(_("presented"), default=True)
    held_out = models.BooleanField(_("held out"), default=False)
    propensity = models.FloatField(_("propensity"))
    context_weight = models.FloatField(_("context weight"))
    value = models.DecimalField(_("value"), max_digits=10, decimal_places=2)
    lever = models.FloatField(_("lever"))
    score = models.FloatField(_("score"))
    explanation = models.TextField(_("why"))
    created_at = models.DateTimeField(_("decided at"))

    class Meta:
        verbose_name = _("decided offer")
        verbose_name_plural = _("decided offers")
        ordering = ["decision", "rank"]
        constraints = [models.UniqueConstraint(fields=["decision", "offer"], name="decision_offer_once")]
        indexes = [
            # The decision's limits: how often this contact was shown each offer lately.
            models.Index(fields=["contact_id", "created_at"], include=["offer"], name="decision_item_contact_idx"),
            # Recording top offers in the offer's measurement, by time (offer_assignments_record).
            models.Index(fields=["offer", "created_at"], condition=Q(rank=1), name="decision_item_top_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.decision_id}: {self.offer_id} #{self.rank}"


class OfferResponse(models.Model):
    """What the customer said to a presented offer, recorded by the agent; it becomes an
    `offer_response` event in the customer's history."""

    class Outcome(models.TextChoices):
        ACCEPTED = "accepted", _("Accepted")
        REJECTED = "rejected", _("Rejected")
        LATER = "later", _("Later")

    decision = models.ForeignKey(OfferDecision, on_delete=models.CASCADE, related_name="responses")
    offer = models.ForeignKey(Offer, on_delete=models.PROTECT, related_name="offer_responses")
    contact_id = models.BigIntegerField()
    outcome = models.CharField(_("outcome"), max_length=16, choices=Outcome.choices)
    reason = models.CharField(_("reason"), max_length=500, blank=True)
    agent = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    client_request_id = models.CharField(_("request id"), max_length=100)
    event_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(_("recorded at"))

    class Meta:
        verbose_name = _("offer response")
        verbose_name_plural = _("offer responses")
        ordering = ["-created_at"]
        constraints = [
            # A retried POST finds its response by its request id.
            models.UniqueConstraint(fields=["client_request_id"], name="offer_response_request_once"),
            # An offer is accepted or rejected once per decision (a double click records one).
            models.UniqueConstraint(
                fields=["decision", "offer"],
                condition=Q(outcome__in=["accepted", "rejected"]),
                name="offer_response_final_once",
            ),
        ]
        indexes = [
            # The decision's limits (cool-down, never after an accept) and the console's history.
            models.Index(
                fields=["contact_id", "created_at"], include=["offer", "outcome"], name="offer_response_contact_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.offer_id}: {self.outcome}"


class OfferDay(models.Model):
    """An offer's accepts on one day (the organisation's timezone), for its daily capacity."""

    offer = models.ForeignKey(Offer, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    accepts = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["offer", "day"], name="offer_day_once")]

    def __str__(self) -> str:
        return f"{self.offer_id} {self.day}: {self.accepts}"
