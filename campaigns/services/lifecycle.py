"""A campaign's life: created as a draft, activated (once every check passes), paused, resumed,
cancelled, completed. The status moves only through `campaign_transition`, with a conditional
update, so that two requests or workers cannot both move the same campaign."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django_celery_beat.models import CrontabSchedule

from audiences.models import Event
from campaigns.channels import channel_configured
from campaigns.models import Campaign, CampaignRun, DeliveryBatch, DeliveryChannel
from campaigns.schedules import cron
from campaigns.selectors import campaign_audience, campaign_messages
from campaigns.services.variants import variant_test_applies, variant_test_problems
from content.models import Template
from content.services import template_problems
from goals.experiments import experiment_create, experiment_holdout_off, goal_measurable_problems

Status = Campaign.Status

# From each status, where it may go. Completed and cancelled are final.
TRANSITIONS: dict[str, set[str]] = {
    Status.DRAFT: {Status.SCHEDULED, Status.RUNNING, Status.CANCELLED},
    Status.SCHEDULED: {Status.RUNNING, Status.PAUSED, Status.CANCELLED},
    Status.RUNNING: {Status.PAUSED, Status.COMPLETED, Status.CANCELLED},
    Status.PAUSED: {Status.SCHEDULED, Status.RUNNING, Status.CANCELLED},
    Status.COMPLETED: set(),
    Status.CANCELLED: set(),
}

# The template channel each delivery channel renders; direct mail and webhooks carry data, no template.
TEMPLATE_CHANNEL: dict[str, str] = {
    DeliveryChannel.EMAIL: Template.Channel.EMAIL,
    DeliveryChannel.SMS: Template.Channel.SMS,
    DeliveryChannel.CALLCENTER: Template.Channel.SCRIPT,
}

# A one-off "send at" this far in the past is taken as "now" (the form was filled in a minute ago).
PAST_TOLERANCE = dt.timedelta(minutes=5)

EDITABLE_FIELDS = (
    "name",
    "description",
    "goal",
    "experiment",
    "kind",
    "message",
    "channels",
    "send_at",
    "schedule",
    "ends_at",
    "trigger_event_type",
    "trigger_filters",
    "trigger_first_only",
    "trigger_delay",
    "stop_event_types",
    "throttle_per_minute",
    "holdout_percent",
    "holdout_off_reason",
    "variant_test_percent",
    "variant_test_hours",
)
# What may still change once a campaign is live: its name and description, its pace, and its end.
LIVE_EDITABLE_FIELDS = {"name", "description", "throttle_per_minute", "ends_at"}


def _set_segments(campaign: Campaign, include: Any, exclude: Any) -> None:
    if include is not None:
        campaign.include_segments.set(include)
    if exclude is not None:
        campaign.exclude_segments.set(exclude)


def campaign_create(
    *, name: str, include_segments: Any = None, exclude_segments: Any = None, **fields: Any
) -> Campaign:
    """A new campaign, as a draft."""
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise TypeError(f"campaign_create() got unexpected fields: {', '.join(sorted(unknown))}")
    campaign = Campaign(name=name, **fields)
    campaign.full_clean()
    with transaction.atomic():
        campaign.save()
        _set_segments(campaign, include_segments, exclude_segments)
    return campaign


def campaign_update(
    *, campaign: Campaign, include_segments: Any = None, exclude_segments: Any = None, **fields: Any
) -> Campaign:
    """Change a campaign. A draft changes freely; once it is live only its name, description, pace
    and end may change (what it sends and to whom was checked when it was activated)."""
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise TypeError(f"campaign_update() got unexpected fields: {', '.join(sorted(unknown))}")
    if campaign.status != Status.DRAFT:
        frozen = {
            name
            for name, value in fields.items()
            if name not in LIVE_EDITABLE_FIELDS and getattr(campaign, name) != value
        }
        for name, chosen in (("include_segments", include_segments), ("exclude_segments", exclude_segments)):
            chosen_ids = None if chosen is None else {getattr(segment, "pk", segment) for segment in chosen}
            if chosen_ids is not None and chosen_ids != set(getattr(campaign, name).values_list("pk", flat=True)):
                frozen.add(name)
        if frozen:
            raise ValidationError(
                {
                    name: _(
                        "A campaign that is %(status)s keeps what it sends and to whom; "
                        "copy it to a new draft to change this."
                    )
                    % {"status": campaign.get_status_display().lower()}
                    for name in sorted(frozen)
                }
            )
    for name, value in fields.items():
        setattr(campaign, name, value)
    campaign.full_clean()
    with transaction.atomic():
        campaign.save()
        _set_segments(campaign, include_segments, exclude_segments)
    return campaign


def campaign_delete(*, campaign: Campaign) -> None:
    """Delete a draft. A campaign that was activated is kept, with its runs, deliveries and
    measurement (what it sent and what that did): cancel it instead."""
    deleted = 0
    if campaign.status == Status.DRAFT:
        deleted, _by_model = Campaign.objects.filter(pk=campaign.pk, status=Status.DRAFT).delete()
    if not deleted:
        campaign.refresh_from_db()
        raise ValidationError(
            _("A campaign that is %(status)s is kept with what it sent and measured: cancel it instead.")
            % {"status": campaign.get_status_display().lower()},
            code="invalid_transition",
        )


def campaign_transition(*, campaign: Campaign, to: str, now: dt.datetime | None = None, **extra: Any) -> Campaign:
    """Move `campaign` to status `to`, if its status allows it and nobody moved it in between."""
    source = campaign.status
    if to not in TRANSITIONS[source]:
        raise ValidationError(
            _("A campaign that is %(from)s cannot become %(to)s.")
            % {"from": Status(source).label.lower(), "to": Status(to).label.lower()},
            code="invalid_transition",
        )
    now = now or timezone.now()
    moved = Campaign.objects.filter(pk=campaign.pk, status=source).update(
        status=to, status_changed_at=now, updated_at=now, **extra
    )
    if not moved:
        campaign.refresh_from_db()
        raise ValidationError(
            _("The campaign was changed in the meantime: it is now %(status)s.")
            % {"status": campaign.get_status_display().lower()},
            code="changed_meanwhile",
        )
    campaign.refresh_from_db()
    return campaign


# --- Activation ------------------------------------------------------------------------------


def _schedule_problems(campaign: Campaign, now: dt.datetime) -> dict[str, list[str]]:
    problems: dict[str, list[str]] = {}
    if campaign.kind == Campaign.Kind.ONE_OFF:
        if campaign.send_at is not None and campaign.send_at < now - PAST_TOLERANCE:
            problems["send_at"] = [
                _("%(when)s has passed: choose a moment in the future, or leave it empty to send now.")
                % {"when": timezone.localtime(campaign.send_at).strftime("%Y-%m-%d %H:%M")}
            ]
    elif campaign.kind == Campaign.Kind.RECURRING:
        if campaign.schedule is None:
            problems["schedule"] = [_("A recurring campaign needs a schedule.")]
        else:
            schedule = campaign.schedule
            try:
                cron(
                    minute=schedule.minute,
                    hour=schedule.hour,
                    day_of_week=schedule.day_of_week,
                    day_of_month=schedule.day_of_month,
                    month_of_year=schedule.month_of_year,
                )
            except ValueError as error:
                problems["schedule"] = [_("The schedule cannot be read: %(error)s") % {"error": error}]
    elif campaign.kind == Campaign.Kind.TRIGGERED:
        if campaign.trigger_event_type not in Event.Type.values:
            problems["trigger_event_type"] = [
                _("Choose the event that starts the send (one of: %(known)s).")
                % {"known": ", ".join(Event.Type.values)}
            ]
        if campaign.trigger_delay is not None and campaign.trigger_delay < dt.timedelta(0):
            problems["trigger_delay"] = [_("The delay cannot be negative.")]
        if not isinstance(campaign.trigger_filters, dict):
            problems["trigger_filters"] = [_('The properties are an object, such as {"category": "tuin"}.')]
    if campaign.ends_at is not None and campaign.ends_at <= now and campaign.kind != Campaign.Kind.ONE_OFF:
        problems["ends_at"] = [_("The end has passed: choose a moment in the future, or leave it empty.")]
    return problems


def _message_problems(campaign: Campaign) -> dict[str, list[str]]:
    problems: dict[str, list[str]] = {}
    if not campaign.channels:
        problems["channels"] = [_("Choose at least one channel to send over.")]
    for channel in campaign.channels:
        if not channel_configured(channel):
            problems.setdefault("channels", []).append(
                _("No backend is configured for the %(channel)s channel: ask an administrator to set one up.")
                % {"channel": DeliveryChannel(channel).label}
            )
    messages = campaign_messages(campaign=campaign)
    if not messages:
        problems["message"] = [_("Choose the message the campaign sends.")]
    for message in messages:
        templates = {template.channel: template for template in message.templates.all()}
        for channel in campaign.channels:
            needed = TEMPLATE_CHANNEL.get(DeliveryChannel(channel)) if channel in DeliveryChannel.values else None
            if needed is None:
                continue
            template = templates.get(needed)
            if template is None:
                problems.setdefault("message", []).append(
                    _("“%(message)s” has no %(channel)s template.")
                    % {"message": message, "channel": Template.Channel(needed).label.lower()}
                )
                continue
            for problem in template_problems(template=template):
                problems.setdefault("message", []).append(f"{template}: {problem}")
    return problems


def campaign_activation_problems(*, campaign: Campaign, now: dt.datetime | None = None) -> dict[str, list[str]]:
    """Why the campaign cannot be activated, by field; empty when it can."""
    now = now or timezone.now()
    problems: dict[str, list[str]] = {}
    if campaign.status != Status.DRAFT:
        problems["status"] = [_("Only a draft can be activated.")]
    audience = None
    if campaign.include_segments.exists():
        audience = campaign_audience(campaign=campaign, now=now)
        if not audience.exists():
            problems["include_segments"] = [
                _("Nobody is in the audience: its segments hold no contacts, or the excluded segments take them all.")
            ]
            audience = None
    elif campaign.kind != Campaign.Kind.TRIGGERED:
        problems["include_segments"] = [_("Choose the segments the campaign is for.")]
    goal_problems = goal_measurable_problems(goal=campaign.goal, audience=audience, today=timezone.localdate(now))
    if goal_problems:
        problems["goal"] = goal_problems
    if campaign.holdout_percent == Decimal(0) and not campaign.holdout_off_reason.strip():
        problems["holdout_off_reason"] = [
            _("Say why this campaign has no holdout: without one, its effect on the goal cannot be measured.")
        ]
    for name, found in [
        *_schedule_problems(campaign, now).items(),
        *_message_problems(campaign).items(),
        *variant_test_problems(campaign=campaign).items(),
    ]:
        problems.setdefault(name, []).extend(found)
    return problems


def campaign_activate(*, campaign: Campaign, user: Any = None, now: dt.datetime | None = None) -> Campaign:
    """Activate a draft: every check passes, its measurement against the goal exists (made now when
    none was chosen, with the campaign's holdout), and a one-off's run is scheduled. Nothing
    changes when a check fails: the ValidationError names each field and why."""
    now = now or timezone.now()
    problems = campaign_activation_problems(campaign=campaign, now=now)
    if problems:
        raise ValidationError(problems)
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if campaign.experiment is None:
            assert campaign.goal is not None  # noqa: S101 - checked by campaign_activation_problems
            experiment = experiment_create(
                goal=campaign.goal, name=campaign.name, holdout_percent=campaign.holdout_percent or Decimal(10)
            )
            if campaign.holdout_percent == Decimal(0):
                experiment = experiment_holdout_off(
                    experiment=experiment, reason=campaign.holdout_off_reason, user=user, now=now
                )
            Campaign.objects.filter(pk=campaign.pk).update(experiment=experiment)
            campaign.experiment = experiment
        future = campaign.kind == Campaign.Kind.ONE_OFF and campaign.send_at is not None and campaign.send_at > now
        campaign = campaign_transition(
            campaign=campaign,
            to=Status.SCHEDULED if future else Status.RUNNING,
            now=now,
            activated_at=now,
            activated_by=user,
        )
        if campaign.kind == Campaign.Kind.ONE_OFF:
            # With a test share, its run is the variant test; planning it schedules the winner run.
            purpose = CampaignRun.Purpose.TEST if variant_test_applies(campaign=campaign) else CampaignRun.Purpose.SEND
            CampaignRun.objects.get_or_create(
                campaign=campaign,
                occurrence="once",
                defaults={"scheduled_for": campaign.send_at if future else now, "purpose": purpose},
            )
    return campaign


def campaign_pause(*, campaign: Campaign, now: dt.datetime | None = None) -> Campaign:
    """Stop sending: workers take no new batch (and stop within the batch they hold) from now on."""
    return campaign_transition(campaign=campaign, to=Status.PAUSED, now=now)


def campaign_resume(*, campaign: Campaign, now: dt.datetime | None = None) -> Campaign:
    """Continue where the campaign stopped: the deliveries not sent yet, never the sent ones again."""
    if campaign.status == Status.DRAFT:
        # A draft may become running, but only through campaign_activate and its checks.
        raise ValidationError(
            _("A draft cannot be resumed: activate it, which checks it first."), code="invalid_transition"
        )
    now = now or timezone.now()
    waiting = campaign.runs.filter(status=CampaignRun.Status.SCHEDULED, scheduled_for__gt=now).exists()
    started = campaign.runs.filter(~Q(status=CampaignRun.Status.SCHEDULED)).exists()
    to = Status.SCHEDULED if waiting and not started and campaign.kind == Campaign.Kind.ONE_OFF else Status.RUNNING
    with transaction.atomic():
        campaign = campaign_transition(campaign=campaign, to=to, now=now)
        # Its open batches are enqueued again by the next tick (their messages may have expired).
        DeliveryBatch.objects.filter(run__campaign=campaign, status=DeliveryBatch.Status.QUEUED).update(
            enqueued_at=None
        )
    return campaign


def campaign_cancel(*, campaign: Campaign, now: dt.datetime | None = None) -> Campaign:
    """Stop for good: runs not planned yet are cancelled, deliveries not sent stay unsent."""
    now = now or timezone.now()
    with transaction.atomic():
        campaign = campaign_transition(campaign=campaign, to=Status.CANCELLED, now=now)
        campaign.runs.filter(
            status__in=[CampaignRun.Status.SCHEDULED, CampaignRun.Status.PLANNING, CampaignRun.Status.SENDING]
        ).update(status=CampaignRun.Status.CANCELLED, completed_at=now)
    return campaign


# --- Schedules -------------------------------------------------------------------------------

CRONTAB_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


def crontab_expression(schedule: CrontabSchedule) -> str:
    """The schedule as a crontab line: "minute hour day-of-month month day-of-week"."""
    return " ".join(str(getattr(schedule, name)) for name in CRONTAB_FIELDS)


def crontab_schedule_get_or_create(
    *, expression: str, timezone_name: str, current: CrontabSchedule | None = None
) -> CrontabSchedule:
    """The django-celery-beat crontab that a recurring campaign's `schedule` points at, for a crontab
    line ("0 9 * * 1": minute, hour, day of month, month, day of week) in a timezone: `current` when
    it already reads so, else the first one that does (as picking one in the admin would), else a new
    one. A line or timezone that cannot be read is refused on `schedule`."""
    parts = expression.split()
    if len(parts) != len(CRONTAB_FIELDS):
        raise ValidationError(
            {
                "schedule": _(
                    "A schedule has five fields: minute, hour, day of the month, month and day of the week, "
                    "such as “0 9 * * 1” for Mondays at 09:00."
                )
            }
        )
    fields = dict(zip(CRONTAB_FIELDS, parts, strict=True))
    try:
        cron(**fields)
    except ValueError as error:
        raise ValidationError({"schedule": _("The schedule cannot be read: %(error)s") % {"error": error}}) from error
    if timezone_name not in available_timezones():
        raise ValidationError(
            {
                "schedule": _("Unknown time zone %(zone)s; use a name such as Europe/Amsterdam.")
                % {"zone": timezone_name}
            }
        )
    zone = ZoneInfo(timezone_name)
    if (
        current is not None
        and crontab_expression(current) == " ".join(parts)
        and str(current.timezone) == timezone_name
    ):
        return current
    found = CrontabSchedule.objects.filter(**fields, timezone=zone).order_by("pk").first()
    if found is not None:
        return found
    schedule = CrontabSchedule(**fields, timezone=zone)
    try:
        schedule.full_clean()
    except ValidationError as error:
        raise ValidationError({"schedule": error.messages}) from error
    schedule.save()
    return schedule
