"""Campaigns over HTTP: read a campaign with its progress (and, one at a time, its funnel), write
it through `campaign_create` / `campaign_update`, move its status with the buttons of the campaign
page (activate, pause, resume, cancel), and read its runs and deliveries.

A refusal that is about the campaign's content (no goal, an empty audience, a template with
problems, a moment that has passed, a channel without a backend) is a 400 naming each field and
why. A refusal that is about its status (activating a campaign that is already running, resuming
a cancelled one, a campaign moved by someone else in the meantime) is a 409 on `status`: the
request was fine, the campaign is not in a state where it can be done.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import OuterRef, Prefetch, Subquery
from django.utils import timezone
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from audiences.api import JsonObjectField
from audiences.models import Contact, Event, Segment
from campaigns.models import Campaign, CampaignRun, CampaignVariant, Delivery, DeliveryChannel
from campaigns.schedules import from_crontab, next_occurrences
from campaigns.selectors import PROGRESS_STATUSES, campaign_deliveries, campaign_funnel, campaigns_progress
from campaigns.services import (
    campaign_activate,
    campaign_cancel,
    campaign_create,
    campaign_pause,
    campaign_resume,
    campaign_update,
)
from campaigns.services.lifecycle import (
    EDITABLE_FIELDS,
    campaign_delete,
    crontab_expression,
    crontab_schedule_get_or_create,
)
from dialoog.api.errors import Conflict, ErrorResponseSerializer
from dialoog.api.permissions import ActionPermissionsMixin

UPCOMING = 3
FINAL = {Campaign.Status.COMPLETED, Campaign.Status.CANCELLED}


# Output ------------------------------------------------------------------------------------


class ScheduleSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The django-celery-beat crontab schedule.")
    crontab = serializers.CharField(help_text="Minute, hour, day of the month, month, day of the week: `0 9 * * 1`.")
    timezone = serializers.CharField(help_text="The timezone the crontab's times are in, e.g. Europe/Amsterdam.")
    upcoming = serializers.ListField(
        child=serializers.DateTimeField(),
        help_text=f"Its next {UPCOMING} moments (before `ends_at`); empty once the campaign is completed or cancelled.",
    )


class VariantSerializer(serializers.ModelSerializer):
    class Meta:
        model = CampaignVariant
        fields = ["id", "name", "message", "weight", "is_winner"]


class ProgressSerializer(serializers.Serializer):
    """Its deliveries by status, over all its runs."""

    queued = serializers.IntegerField(help_text="Still to send (being sent included).")
    sent = serializers.IntegerField()
    failed = serializers.IntegerField()
    held_back = serializers.IntegerField(help_text="Not sent because of a contact policy (consent, cap, quiet hours).")
    holdout = serializers.IntegerField(help_text="The control group: planned, and on purpose sent nothing.")


class FunnelSerializer(serializers.Serializer):
    """How far its messages got (`campaigns.selectors.campaign_funnel`)."""

    planned = serializers.IntegerField(help_text="Deliveries written for the treatment (the holdout not included).")
    sent = serializers.IntegerField()
    delivered = serializers.IntegerField(help_text="Of the sent: reported delivered by the provider.")
    opened = serializers.IntegerField()
    clicked = serializers.IntegerField()
    converted = serializers.IntegerField(
        help_text="Contacts who had the measurement's conversion event (a purchase) within its attribution days "
        "after a message was sent to them."
    )
    bounced = serializers.IntegerField(help_text="Of the sent: hard bounces.")
    complained = serializers.IntegerField(help_text="Of the sent: marked as spam.")
    held_back_by_reason = serializers.DictField(child=serializers.IntegerField(), help_text="Held back, by reason.")


class CampaignListSerializer(serializers.ListSerializer):
    """Reads the progress of all the campaigns on the page at once (one query)."""

    def to_representation(self, data):
        campaigns = list(data.all() if hasattr(data, "all") else data)
        self._context["progress"] = campaigns_progress(campaign_ids=[campaign.pk for campaign in campaigns])
        return super().to_representation(campaigns)


class CampaignSerializer(serializers.ModelSerializer):
    """A campaign as the campaign page shows it, with the progress of its deliveries."""

    include_segments = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    exclude_segments = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    schedule = serializers.SerializerMethodField(help_text="Recurring: when it sends; null when it has no schedule.")
    variants = VariantSerializer(many=True, read_only=True)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Campaign
        list_serializer_class = CampaignListSerializer
        fields = [
            "id",
            "status",
            *EDITABLE_FIELDS,
            "include_segments",
            "exclude_segments",
            "variants",
            "progress",
            "activated_at",
            "status_changed_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(ScheduleSerializer(allow_null=True))
    def get_schedule(self, campaign: Campaign) -> dict[str, Any] | None:
        schedule = campaign.schedule
        if schedule is None:
            return None
        upcoming: list[dt.datetime] = []
        if campaign.status not in FINAL:
            now = timezone.now()
            until = now + dt.timedelta(days=366)
            if campaign.ends_at is not None:
                until = min(until, campaign.ends_at)
            try:
                found = next_occurrences(
                    from_crontab(schedule), ZoneInfo(str(schedule.timezone)), after=now, until=until, limit=UPCOMING
                )
            except ValueError:
                found = []  # activation says what is wrong with it
            upcoming = [occurrence.at for occurrence in found]
        return ScheduleSerializer(
            {
                "id": schedule.pk,
                "crontab": crontab_expression(schedule),
                "timezone": str(schedule.timezone),
                "upcoming": upcoming,
            }
        ).data

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, campaign: Campaign) -> dict[str, int]:
        progress = self.context.get("progress")
        if progress is None:
            progress = campaigns_progress(campaign_ids=[campaign.pk])
        return progress[campaign.pk]


class CampaignDetailSerializer(CampaignSerializer):
    """A campaign with its progress and its funnel: delivered, opened, clicked, converted."""

    funnel = serializers.SerializerMethodField()

    class Meta(CampaignSerializer.Meta):
        fields = [*CampaignSerializer.Meta.fields, "funnel"]
        read_only_fields = fields

    def funnel_counts(self, campaign: Campaign) -> dict[str, Any]:
        funnels = self.context.setdefault("funnels", {})
        if campaign.pk not in funnels:
            funnels[campaign.pk] = campaign_funnel(campaign=campaign)
        return funnels[campaign.pk]

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, campaign: Campaign) -> dict[str, int]:
        # The funnel counts the same statuses: no second query.
        funnel = self.funnel_counts(campaign)
        return {name: funnel[name] for name in PROGRESS_STATUSES}

    @extend_schema_field(FunnelSerializer)
    def get_funnel(self, campaign: Campaign) -> dict[str, Any]:
        return FunnelSerializer(self.funnel_counts(campaign)).data


class RunSerializer(serializers.ModelSerializer):
    excluded = serializers.DictField(
        child=serializers.IntegerField(), help_text="Contacts left out when planning, by reason."
    )

    class Meta:
        model = CampaignRun
        fields = [
            "id",
            "occurrence",
            "scheduled_for",
            "purpose",
            "status",
            "planned",
            "held_out",
            "excluded",
            "error",
            "planned_at",
            "completed_at",
        ]
        read_only_fields = fields


class DeliverySerializer(serializers.ModelSerializer):
    """One message to one contact over one channel, and what became of it (never its content)."""

    contact_key = serializers.UUIDField(allow_null=True, help_text="Null when the contact no longer exists.")

    class Meta:
        model = Delivery
        fields = [
            "id",
            "run",
            "contact",
            "contact_key",
            "channel",
            "variant",
            "status",
            "reason",
            "attempts",
            "sent_at",
            "delivered_at",
            "opened_at",
            "clicked_at",
        ]
        read_only_fields = fields


# Input -------------------------------------------------------------------------------------


class ScheduleInSerializer(serializers.Serializer):
    crontab = serializers.CharField(
        max_length=400,
        help_text="Minute, hour, day of the month, month, day of the week, as cron reads them: "
        "`0 9 * * 1` is Mondays at 09:00, `30 8 1 * *` the first of every month at 08:30.",
    )
    timezone = serializers.CharField(
        max_length=64,
        default=settings.TIME_ZONE,
        help_text=f"The timezone its times are in; {settings.TIME_ZONE} when left out.",
    )


class CampaignInputSerializer(serializers.ModelSerializer):
    """What a campaign is written with: its status only moves through the actions. A draft may be
    incomplete; activation checks that it is complete and says per field what is missing."""

    include_segments = serializers.PrimaryKeyRelatedField(
        many=True, required=False, queryset=Segment.objects.all(), help_text="Its audience: anyone in any of these."
    )
    exclude_segments = serializers.PrimaryKeyRelatedField(
        many=True, required=False, queryset=Segment.objects.all(), help_text="Left out, even when in the audience."
    )
    schedule = ScheduleInSerializer(
        required=False, allow_null=True, help_text="Recurring: when it sends. Null removes the schedule."
    )
    trigger_event_type = serializers.ChoiceField(
        choices=Event.Type.choices, required=False, allow_blank=True, help_text="Triggered: the event that starts it."
    )
    stop_event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=Event.Type.choices),
        required=False,
        help_text="Triggered: a contact who has one of these events after the trigger gets nothing.",
    )
    trigger_filters = JsonObjectField(
        required=False, help_text='Triggered: properties the event must have, such as {"category": "tuin"}.'
    )

    class Meta:
        model = Campaign
        fields = [*EDITABLE_FIELDS, "include_segments", "exclude_segments"]
        extra_kwargs = {
            "holdout_percent": {"min_value": 0, "max_value": 50},
            "variant_test_percent": {"max_value": 50},
            "throttle_per_minute": {"min_value": 1},
        }


def _written(values: dict[str, Any], current: Campaign | None) -> dict[str, Any]:
    """The service's keyword arguments: the schedule made or found from its crontab line."""
    values = dict(values)
    if "schedule" in values and values["schedule"] is not None:
        values["schedule"] = crontab_schedule_get_or_create(
            expression=values["schedule"]["crontab"],
            timezone_name=values["schedule"]["timezone"],
            current=current.schedule if current is not None else None,
        )
    return values


# Views -------------------------------------------------------------------------------------


class DeliveryFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=Delivery.Status.choices)
    channel = filters.ChoiceFilter(choices=DeliveryChannel.choices)
    run = filters.NumberFilter(field_name="run_id", help_text="Only this run's deliveries.")

    class Meta:
        model = Delivery
        fields = ["status", "channel", "run"]


class DeliveryPagination(CursorPagination):
    """No COUNT(*) over a million deliveries: pages follow a cursor, newest first."""

    ordering = "-id"
    page_size = 50


def _status_conflict(error: DjangoValidationError) -> Conflict | None:
    """The service's refusal as a 409 on `status` when it is about the campaign's status, else None."""
    if hasattr(error, "error_dict"):
        if "status" not in error.error_dict:
            return None
        messages = [message for problem in error.error_dict["status"] for message in problem.messages]
        return Conflict({"status": messages}, code="invalid_transition")
    return Conflict({"status": error.messages}, code=error.code or "invalid_transition")


STATUS_CONFLICT = OpenApiResponse(
    ErrorResponseSerializer,
    description="Not possible from the campaign's status (or someone moved it in the meantime): "
    "the error on `status` says why. Nothing changed.",
)
REFUSED = OpenApiResponse(
    ErrorResponseSerializer,
    description="Refused: each error names the field and why (e.g. `goal`, `include_segments`, `message`, "
    "`send_at`, `channels`). Nothing changed.",
)


def status_action(summary: str, description: str, *, refused: bool = False):
    """The schema of a button of the campaign page: no body, the campaign back, its refusals."""
    responses: dict[int, Any] = {200: CampaignDetailSerializer, 409: STATUS_CONFLICT}
    if refused:
        responses[400] = REFUSED
    return extend_schema(summary=summary, description=description, request=None, responses=responses)


@extend_schema_view(
    list=extend_schema(summary="Campaigns, newest first, each with the progress of its deliveries"),
    retrieve=extend_schema(summary="A campaign, with its progress and funnel"),
    create=extend_schema(
        summary="Create a campaign (a draft)",
        request=CampaignInputSerializer,
        responses={201: CampaignDetailSerializer},
    ),
    update=extend_schema(
        summary="Change a campaign",
        description="A draft changes freely; once it is activated only its name, description, pace "
        "(`throttle_per_minute`) and end (`ends_at`) may change: anything else is a 400 on its field.",
        request=CampaignInputSerializer,
        responses={200: CampaignDetailSerializer},
    ),
    partial_update=extend_schema(
        summary="Change some of a campaign's fields",
        request=CampaignInputSerializer,
        responses={200: CampaignDetailSerializer},
    ),
    destroy=extend_schema(
        summary="Delete a draft",
        description="Only a draft can be deleted; an activated campaign is kept with what it sent "
        "and measured (a 409): cancel it instead.",
        responses={
            204: None,
            409: OpenApiResponse(ErrorResponseSerializer, description="Not a draft: cancel it instead."),
        },
    ),
)
class CampaignViewSet(ActionPermissionsMixin, viewsets.ModelViewSet):
    """Campaigns, each serving a goal: one-off, recurring or triggered, over one or more channels.

    Creating one makes a draft (its status is read-only: it moves through `activate`, `pause`,
    `resume` and `cancel`). Activation runs every check at once and refuses with a 400 per field.
    """

    serializer_class = CampaignSerializer
    lookup_value_regex = r"\d+"
    filterset_fields = ["status", "kind", "goal"]
    filterset_class: type[filters.FilterSet] | None = None  # per action (the deliveries' filters)
    ordering_fields = ["name", "created_at", "status_changed_at", "send_at"]
    action_permissions = {
        "activate": ("campaigns.change_campaign",),
        "pause": ("campaigns.change_campaign",),
        "resume": ("campaigns.change_campaign",),
        "cancel": ("campaigns.change_campaign",),
        "runs": ("campaigns.view_campaign", "campaigns.view_campaignrun"),
        "deliveries": ("campaigns.view_campaign", "campaigns.view_delivery"),
    }

    def get_queryset(self):
        campaign_id = getattr(self, "kwargs", {}).get("pk")
        if self.action == "runs":
            return CampaignRun.objects.filter(campaign_id=campaign_id).order_by("-scheduled_for", "-pk")
        if self.action == "deliveries":
            return campaign_deliveries(campaign_id=campaign_id).annotate(
                # Not a join: a delivery outlives a contact merged away (no foreign key in the database).
                contact_key=Subquery(Contact.objects.filter(pk=OuterRef("contact_id")).values("contact_key")[:1])
            )
        return Campaign.objects.select_related("schedule").prefetch_related(
            Prefetch("include_segments", queryset=Segment.objects.only("pk")),
            Prefetch("exclude_segments", queryset=Segment.objects.only("pk")),
            Prefetch("variants", queryset=CampaignVariant.objects.order_by("pk")),
        )

    def get_serializer_class(self):
        if self.action in ("list", "runs", "deliveries"):
            return super().get_serializer_class()
        return CampaignDetailSerializer

    def create(self, request, *args, **kwargs):
        data = CampaignInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with transaction.atomic():  # a schedule made for a campaign that is then refused goes too
            campaign = campaign_create(**_written(data.validated_data, None))
        return Response(self._output(campaign), status=status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        campaign = self.get_object()
        data = CampaignInputSerializer(campaign, data=request.data, partial=kwargs.get("partial", False))
        data.is_valid(raise_exception=True)
        with transaction.atomic():
            campaign = campaign_update(campaign=campaign, **_written(data.validated_data, campaign))
        return Response(self._output(campaign))

    def destroy(self, request, *args, **kwargs):
        self._refusing(campaign_delete, campaign=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @status_action(
        "Activate a draft",
        "Checks everything at once: the goal it serves (and that its KPI can be measured), "
        "an audience with contacts in it, a message with a template for every channel that passes its "
        "checks, a channel backend for every channel, a moment in the future (one-off), a schedule "
        "(recurring) or a trigger event (triggered), and a reason when it has no holdout. Then its "
        "measurement against the goal is made and a one-off's run scheduled: it becomes `scheduled` "
        "(a one-off with a later `send_at`) or `running`.",
        refused=True,
    )
    @action(detail=True, methods=["post"])
    def activate(self, request, pk=None):
        return self._move(campaign_activate, user=request.user)

    @status_action(
        "Pause a scheduled or running campaign",
        "Workers take no new batch from now on; `resume` continues where it stopped.",
    )
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        return self._move(campaign_pause)

    @status_action(
        "Resume a paused campaign",
        "Continues with the deliveries not sent yet, never the sent ones again.",
    )
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self._move(campaign_resume)

    @status_action(
        "Cancel a campaign for good",
        "Runs not sent yet are cancelled; deliveries not sent stay unsent. Cannot be undone.",
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        return self._move(campaign_cancel)

    @extend_schema(summary="The campaign's runs, newest first", responses=RunSerializer(many=True))
    @action(detail=True, methods=["get"], serializer_class=RunSerializer, filter_backends=[])
    def runs(self, request, pk=None):
        """Each occurrence of the campaign (a one-off's send, a recurring schedule's firing, a triggered
        campaign's sends due at one tick): what it planned, held out and excluded by reason."""
        self._campaign()
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(summary="The campaign's deliveries, newest first", responses=DeliverySerializer(many=True))
    @action(
        detail=True,
        methods=["get"],
        serializer_class=DeliverySerializer,
        filter_backends=[filters.DjangoFilterBackend],
        filterset_class=DeliveryFilter,
        pagination_class=DeliveryPagination,
    )
    def deliveries(self, request, pk=None):
        """Who was sent what over which channel and what became of it, without the messages' content;
        `?status=`, `?channel=` and `?run=` narrow it down. Pages follow a cursor (`next`)."""
        self._campaign()
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def _campaign(self) -> Campaign:
        campaign = get_object_or_404(Campaign.objects.only("pk"), pk=self.kwargs["pk"])
        self.check_object_permissions(self.request, campaign)
        return campaign

    def _refusing(self, service, **kwargs):
        try:
            return service(**kwargs)
        except DjangoValidationError as error:
            conflict = _status_conflict(error)
            if conflict is not None:
                raise conflict from error
            raise

    def _move(self, service, **kwargs) -> Response:
        campaign = self._refusing(service, campaign=self.get_object(), **kwargs)
        return Response(self._output(campaign))

    def _output(self, campaign: Campaign) -> dict[str, Any]:
        fresh = self.get_queryset().get(pk=campaign.pk)  # with its segments, variants and schedule, as a read gives it
        return CampaignDetailSerializer(fresh, context=self.get_serializer_context()).data
