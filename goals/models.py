import datetime as dt
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from audiences.models import Channel, Event
from dialoog.models import TimeStampedModel


class Domain(models.TextChoices):
    """What a goal is about: the five domains of goals, each with its aims."""

    ACQUISITION = "acquisition", _("Acquisition")
    CROSS_SELL = "cross_sell", _("Cross-sell")
    DEEP_SELL = "deep_sell", _("Deep-sell")
    UP_SELL = "up_sell", _("Up-sell")
    LOYALTY = "loyalty", _("Loyalty")
    WINBACK = "winback", _("Winback")
    ORDER_VALUE = "order_value", _("Average order value")
    PURCHASE_FREQUENCY = "purchase_frequency", _("Purchase frequency")
    OPT_IN = "opt_in", _("Opt-in")
    LIFETIME_VALUE = "lifetime_value", _("Customer lifetime value")
    OPENS = "opens", _("Opens")
    CLICKS = "clicks", _("Clicks")
    CONVERSIONS = "conversions", _("Conversions")
    CALLCENTER_ACCEPTANCE = "callcenter_acceptance", _("Callcenter acceptance")
    RE_ENGAGEMENT = "re_engagement", _("Re-engagement")
    CHURN_PREVENTION = "churn_prevention", _("Churn prevention")
    NPS = "nps", _("NPS")
    SATISFACTION = "satisfaction", _("Satisfaction")


# The aims grouped by domain, as the admin's select shows them.
DOMAIN_GROUPS = [
    (
        _("Customer lifecycle"),
        [Domain.ACQUISITION, Domain.CROSS_SELL, Domain.DEEP_SELL, Domain.UP_SELL, Domain.LOYALTY, Domain.WINBACK],
    ),
    (
        _("Customer level"),
        [Domain.ORDER_VALUE, Domain.PURCHASE_FREQUENCY, Domain.OPT_IN, Domain.LIFETIME_VALUE],
    ),
    (_("Channel"), [Domain.OPENS, Domain.CLICKS, Domain.CONVERSIONS, Domain.CALLCENTER_ACCEPTANCE]),
    (_("Journey or segment"), [Domain.RE_ENGAGEMENT, Domain.CHURN_PREVENTION]),
    (_("Qualitative"), [Domain.NPS, Domain.SATISFACTION]),
]
DOMAIN_CHOICES = [(group, [(aim.value, aim.label) for aim in aims]) for group, aims in DOMAIN_GROUPS]


class Metric(models.TextChoices):
    """The KPI catalogue; each metric's definition and SQL live in goals/metrics.py."""

    CONVERSION_RATE = "conversion_rate", _("Conversion rate")
    REVENUE_PER_CONTACT = "revenue_per_contact", _("Revenue per contact")
    AVERAGE_ORDER_VALUE = "average_order_value", _("Average order value")
    PURCHASE_FREQUENCY = "purchase_frequency", _("Purchase frequency")
    CHURN_RATE = "churn_rate", _("Churn rate")
    OPT_IN_RATE = "opt_in_rate", _("Opt-in rate")
    EMAIL_OPEN_RATE = "email_open_rate", _("Email open rate")
    EMAIL_CLICK_RATE = "email_click_rate", _("Email click-to-open rate")
    OFFER_ACCEPTANCE_RATE = "offer_acceptance_rate", _("Offer acceptance rate")
    NPS = "nps", _("Net Promoter Score")
    SATISFACTION = "satisfaction", _("Average satisfaction score")


class Period(models.TextChoices):
    ROLLING = "rolling", _("Rolling number of days")
    MONTH = "month", _("Calendar month")
    QUARTER = "quarter", _("Calendar quarter")
    YEAR = "year", _("Calendar year")


class Goal(TimeStampedModel):
    """A SMART goal: what it is about, the KPI that measures it, its baseline, target and deadline."""

    class Status(models.TextChoices):
        """Where a goal stands, computed from its snapshots (goals/progress.py)."""

        NO_DATA = "no_data", _("No data")
        AT_RISK = "at_risk", _("At risk")
        ON_TRACK = "on_track", _("On track")
        ACHIEVED = "achieved", _("Achieved")
        MISSED = "missed", _("Missed")

    name = models.CharField(_("name"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="owned_goals",
        verbose_name=_("owner"),
    )
    parent = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="children",
        verbose_name=_("part of"),
        help_text=_("The organisation objective this goal contributes to, if any."),
    )
    domain = models.CharField(_("domain"), max_length=32, choices=DOMAIN_CHOICES)
    metric = models.CharField(
        _("KPI"), max_length=32, choices=Metric.choices, help_text=_("The metric that measures this goal.")
    )
    channel = models.CharField(
        _("channel"),
        max_length=16,
        choices=Channel.choices,
        blank=True,
        help_text=_("For the opt-in rate: the channel whose consent is counted."),
    )
    scope_segment = models.ForeignKey(
        "audiences.Segment",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="goals",
        verbose_name=_("scope"),
        help_text=_("The segment the KPI is measured on; empty means all contacts."),
    )
    period = models.CharField(_("period"), max_length=16, choices=Period.choices, default=Period.ROLLING)
    period_days = models.PositiveIntegerField(
        _("days"),
        default=30,
        help_text=_("For a rolling period: the number of days each measurement looks back."),
    )
    starts_on = models.DateField(_("start"))
    deadline = models.DateField(_("deadline"))
    baseline = models.DecimalField(
        _("baseline"),
        max_digits=16,
        decimal_places=4,
        null=True,
        blank=True,
        editable=False,
        help_text=_("The KPI over the period before the start; empty when there was no data."),
    )
    baseline_measured_at = models.DateTimeField(_("baseline measured at"), null=True, blank=True, editable=False)
    target = models.DecimalField(_("target"), max_digits=16, decimal_places=4)
    # Kept by the measurement (goals/services.py) so that lists can sort and filter on it.
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.NO_DATA, editable=False
    )
    current_value = models.DecimalField(
        _("current value"), max_digits=16, decimal_places=4, null=True, blank=True, editable=False
    )
    projected_value = models.DecimalField(
        _("trend at the deadline"), max_digits=16, decimal_places=4, null=True, blank=True, editable=False
    )
    measured_on = models.DateField(_("last measured"), null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("goal")
        verbose_name_plural = _("goals")
        ordering = ["deadline", "name"]
        constraints = [
            models.CheckConstraint(condition=Q(deadline__gt=F("starts_on")), name="goal_ends_after_start"),
            models.CheckConstraint(condition=~Q(parent=F("pk")), name="goal_not_its_own_parent"),
            models.CheckConstraint(condition=Q(period_days__gte=1, period_days__lte=3660), name="goal_period_days"),
            models.CheckConstraint(
                condition=~Q(metric=Metric.OPT_IN_RATE) | ~Q(channel=""), name="goal_opt_in_has_channel"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def days_left(self, today: dt.date) -> int | None:
        """Days until the deadline, counting today; None once it has passed."""
        left = (self.deadline - today).days
        return left if left >= 0 else None

    def clean(self) -> None:
        if self.starts_on and self.deadline and self.deadline <= self.starts_on:
            raise ValidationError({"deadline": _("The deadline must be after the start.")})
        if self.period_days is not None and not 1 <= self.period_days <= 3660:
            raise ValidationError({"period_days": _("A period is between 1 and 3,660 days (ten years).")})
        if self.pk is not None and self.parent_id == self.pk:
            raise ValidationError({"parent": _("A goal cannot be part of itself or of a goal under it.")})
        if self.metric == Metric.OPT_IN_RATE and not self.channel:
            raise ValidationError({"channel": _("Choose the channel whose opt-in rate this goal measures.")})
        if self.metric == Metric.CHURN_RATE and self.period != Period.ROLLING:
            raise ValidationError(
                {
                    "period": _(
                        "Churn is measured over a rolling number of days: "
                        "customers who bought in the days before and not since."
                    )
                }
            )


class Snapshot(models.Model):
    """A goal's KPI on one day: one row per goal per day, written again when measured again."""

    goal = models.ForeignKey(Goal, on_delete=models.CASCADE, related_name="snapshots", verbose_name=_("goal"))
    day = models.DateField(_("day"))
    # None is "no data": nothing to divide by in the period (never a zero that is not there).
    value = models.DecimalField(_("value"), max_digits=16, decimal_places=4, null=True, blank=True)
    numerator = models.DecimalField(_("numerator"), max_digits=20, decimal_places=4)
    denominator = models.DecimalField(_("denominator"), max_digits=20, decimal_places=4)
    measured_at = models.DateTimeField(_("measured at"))
    # The same KPI for the scope's members of the global control group, when it is on: the total
    # effect of all marketing is the rest of the scope against them. (Numerators and denominators
    # add up over disjoint groups, so the rest is the whole less these.)
    control_value = models.DecimalField(
        _("global control group's value"), max_digits=16, decimal_places=4, null=True, blank=True
    )
    control_numerator = models.DecimalField(max_digits=20, decimal_places=4, null=True, blank=True)
    control_denominator = models.DecimalField(max_digits=20, decimal_places=4, null=True, blank=True)

    class Meta:
        verbose_name = _("snapshot")
        verbose_name_plural = _("snapshots")
        ordering = ["goal", "day"]
        constraints = [models.UniqueConstraint(fields=["goal", "day"], name="snapshot_once_per_goal_day")]

    def __str__(self) -> str:
        return f"{self.goal} {self.day}"


class Experiment(TimeStampedModel):
    """The measurement of one campaign against the goal it serves: who was held out, and what came of it.

    Campaigns (a later app) link to their experiment; goals never import campaigns.
    """

    class Group(models.TextChoices):
        TREATMENT = "treatment", _("Treatment")
        HOLDOUT = "holdout", _("Holdout")

    goal = models.ForeignKey(Goal, on_delete=models.PROTECT, related_name="experiments", verbose_name=_("goal"))
    name = models.CharField(_("name"), max_length=200)
    # Hashed with each contact's key to choose the holdout: the same contacts on every run.
    key = models.UUIDField(_("key"), default=uuid.uuid4, unique=True, editable=False)
    holdout_percent = models.DecimalField(
        _("holdout (%)"),
        max_digits=5,
        decimal_places=2,
        default=10,
        help_text=_("The share of the audience that receives nothing, to measure the effect against."),
    )
    holdout_off_reason = models.TextField(_("why there is no holdout"), blank=True)
    holdout_off_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("holdout turned off by"),
    )
    holdout_off_at = models.DateTimeField(_("holdout turned off at"), null=True, blank=True)
    conversion_event = models.CharField(
        _("conversion"),
        max_length=64,
        choices=Event.Type.choices,
        default=Event.Type.PURCHASE,
        help_text=_("The event that counts as a conversion; its value is the revenue."),
    )
    attribution_days = models.PositiveIntegerField(
        _("attribution window (days)"),
        default=30,
        help_text=_("A conversion counts when it happens within this many days after the contact was assigned."),
    )
    # Set when a campaign first plans with the split: from then on its holdout's share is fixed.
    split_fixed_at = models.DateTimeField(
        _("split fixed at"),
        null=True,
        blank=True,
        editable=False,
        help_text=_("When a campaign first planned with this split; the holdout can no longer change."),
    )
    # What the campaign sent, for its cost: kept up by the campaign's sends.
    emails_sent = models.PositiveIntegerField(_("emails sent"), default=0)
    sms_sent = models.PositiveIntegerField(_("SMS sent"), default=0)
    calls_made = models.PositiveIntegerField(_("calls made"), default=0)

    class Meta:
        verbose_name = _("campaign measurement")
        verbose_name_plural = _("campaign measurements")
        ordering = ["goal", "-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(holdout_percent__gte=0, holdout_percent__lte=50), name="experiment_holdout_range"
            ),
            models.CheckConstraint(
                condition=Q(holdout_percent__gt=0) | ~Q(holdout_off_reason=""), name="experiment_no_holdout_has_reason"
            ),
            models.CheckConstraint(
                condition=Q(attribution_days__gte=1, attribution_days__lte=365), name="experiment_attribution_days"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Assignment(models.Model):
    """A contact of a campaign's audience, in the treatment or the holdout, from the moment it was planned."""

    # No constraints in the database: a campaign's planning assigns a million contacts in one
    # INSERT, and PostgreSQL would check both keys of each row with a trigger at commit (seconds
    # per million). Assignments are written by experiment_assign only, for contacts it reads in the
    # same statement; experiments and contacts are deleted through the ORM, which cascades.
    experiment = models.ForeignKey(
        Experiment,
        on_delete=models.CASCADE,
        related_name="assignments",
        verbose_name=_("campaign measurement"),
        db_index=False,  # assignment_once starts with it
        db_constraint=False,
    )
    contact = models.ForeignKey(
        "audiences.Contact",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("contact"),
        db_index=False,  # see Meta.indexes
        db_constraint=False,
    )
    group = models.CharField(_("group"), max_length=16, choices=Experiment.Group.choices)
    assigned_at = models.DateTimeField(_("assigned at"))

    class Meta:
        verbose_name = _("assignment")
        verbose_name_plural = _("assignments")
        constraints = [
            # Assigning again keeps the first assignment: experiment_assign inserts only the contacts
            # that have none (NOT EXISTS, the experiment's assignments taking turns on an advisory lock).
            models.UniqueConstraint(fields=["experiment", "contact"], name="assignment_once"),
        ]
        indexes = [
            # A contact's assignments, for deleting a contact (a merge or an erasure); the uplift's
            # join reads (experiment, contact) through assignment_once.
            models.Index(fields=["contact"], name="assignment_contact_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.experiment}: {self.get_group_display()}"


class Uplift(models.Model):
    """One day's measured outcome of an experiment per group; the statistics are derived from it."""

    experiment = models.ForeignKey(
        Experiment, on_delete=models.CASCADE, related_name="uplifts", verbose_name=_("campaign measurement")
    )
    measured_on = models.DateField(_("measured on"))
    measured_at = models.DateTimeField(_("measured at"))
    treatment_size = models.PositiveIntegerField(_("treatment contacts"))
    treatment_conversions = models.PositiveIntegerField(_("treatment conversions"))
    treatment_revenue = models.DecimalField(_("treatment revenue"), max_digits=20, decimal_places=2)
    treatment_revenue_squares = models.DecimalField(max_digits=32, decimal_places=4)
    holdout_size = models.PositiveIntegerField(_("holdout contacts"))
    holdout_conversions = models.PositiveIntegerField(_("holdout conversions"))
    holdout_revenue = models.DecimalField(_("holdout revenue"), max_digits=20, decimal_places=2)
    holdout_revenue_squares = models.DecimalField(max_digits=32, decimal_places=4)
    cost = models.DecimalField(
        _("cost"), max_digits=14, decimal_places=2, help_text=_("What was sent, at the channel costs of the day.")
    )

    class Meta:
        verbose_name = _("uplift")
        verbose_name_plural = _("uplifts")
        ordering = ["experiment", "-measured_on"]
        constraints = [models.UniqueConstraint(fields=["experiment", "measured_on"], name="uplift_once_per_day")]

    def __str__(self) -> str:
        return f"{self.experiment} {self.measured_on}"


class ChannelCost(TimeStampedModel):
    """What one message costs in a channel (for the callcenter: one call)."""

    channel = models.CharField(_("channel"), max_length=16, choices=Channel.choices, unique=True)
    cost_per_message = models.DecimalField(
        _("cost per message"),
        max_digits=10,
        decimal_places=4,
        help_text=_("In euro. For the callcenter: the cost of one call."),
    )

    class Meta:
        verbose_name = _("channel cost")
        verbose_name_plural = _("channel costs")
        ordering = ["channel"]
        constraints = [models.CheckConstraint(condition=Q(cost_per_message__gte=0), name="channel_cost_not_negative")]

    def __str__(self) -> str:
        return self.get_channel_display()


class GlobalControlGroup(TimeStampedModel):
    """The organisation-wide control group: a small share of all contacts that receives no marketing.

    One row (pk 1). Off by default; its members follow from each contact's key, so raising the
    share keeps everyone who was in it.
    """

    enabled = models.BooleanField(_("enabled"), default=False)
    percent = models.DecimalField(
        _("share of all contacts (%)"),
        max_digits=4,
        decimal_places=2,
        default=2,
        help_text=_("Between 0.1 and 10 percent."),
    )
    key = models.UUIDField(_("key"), default=uuid.uuid4, editable=False)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("changed by"),
    )

    class Meta:
        verbose_name = _("global control group")
        verbose_name_plural = _("global control group")
        constraints = [
            models.CheckConstraint(condition=Q(pk=1), name="global_control_group_single_row"),
            models.CheckConstraint(condition=Q(percent__gte=0.1, percent__lte=10), name="global_control_group_range"),
        ]

    def __str__(self) -> str:
        return str(self._meta.verbose_name)
