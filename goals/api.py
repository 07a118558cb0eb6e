"""Goals over HTTP: SMART goals with their measurements and the uplift of the campaigns serving them.

Reading gives a goal with everything the goal page shows: status, current value, trend, the daily
snapshots and each campaign measurement's latest uplift. Writing takes the SMART fields only; the
baseline is measured by `goal_create` / `goal_update`, whose refusals are 400s naming the field.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.response import Response

from goals.metrics import CATALOGUE
from goals.models import Goal, Snapshot
from goals.selectors import UpliftResult, goal_uplifts
from goals.services import goal_create, goal_update, required_change
from goals.statistics import Comparison

UNITS = ["percent", "money", "number", "score", "nps"]


class SnapshotSerializer(serializers.ModelSerializer):
    class Meta:
        model = Snapshot
        fields = [
            "day",
            "value",
            "numerator",
            "denominator",
            "control_value",
            "control_numerator",
            "control_denominator",
        ]


class ComparisonSerializer(serializers.Serializer):
    treatment = serializers.FloatField(help_text="The treatment's rate (a fraction) or mean.")
    control = serializers.FloatField(help_text="The holdout's rate (a fraction) or mean.")
    absolute = serializers.FloatField(help_text="Treatment minus holdout.")
    relative = serializers.FloatField(allow_null=True, help_text="The difference as a share of the holdout; null at 0.")
    low = serializers.FloatField(help_text="Lower end of the 95% interval of the absolute difference.")
    high = serializers.FloatField(help_text="Upper end of the 95% interval of the absolute difference.")
    p_value = serializers.FloatField()
    significant = serializers.BooleanField(help_text="Significant at 95% and not too small a sample.")
    too_small = serializers.BooleanField(help_text="Too small a sample to trust; `reason` says why.")
    reason = serializers.CharField()


class UpliftSerializer(serializers.Serializer):
    """One campaign measurement of the goal with its latest uplift (figures null when `problem` is set)."""

    id = serializers.IntegerField(help_text="The campaign measurement (experiment).")
    name = serializers.CharField()
    holdout_percent = serializers.DecimalField(max_digits=5, decimal_places=2)
    holdout_off_reason = serializers.CharField()
    measured_on = serializers.DateField(allow_null=True, help_text="The latest measurement; null when never measured.")
    treatment_size = serializers.IntegerField(allow_null=True)
    holdout_size = serializers.IntegerField(allow_null=True)
    treatment_conversions = serializers.IntegerField(allow_null=True)
    holdout_conversions = serializers.IntegerField(allow_null=True)
    treatment_revenue = serializers.DecimalField(max_digits=20, decimal_places=2, allow_null=True)
    holdout_revenue = serializers.DecimalField(max_digits=20, decimal_places=2, allow_null=True)
    conversion = ComparisonSerializer(allow_null=True, help_text="Conversion rate, treatment against holdout.")
    revenue = ComparisonSerializer(allow_null=True, help_text="Revenue per contact, treatment against holdout.")
    incremental_conversions = serializers.FloatField(allow_null=True)
    incremental_revenue = serializers.DecimalField(max_digits=20, decimal_places=2, allow_null=True)
    cost = serializers.DecimalField(max_digits=14, decimal_places=2)
    roi = serializers.DecimalField(
        max_digits=20, decimal_places=4, allow_null=True, help_text="(incremental revenue - cost) / cost."
    )
    target_share = serializers.DecimalField(
        max_digits=20,
        decimal_places=2,
        allow_null=True,
        help_text="The share (%) of the goal's required change (target - baseline) the campaign brought.",
    )
    problem = serializers.CharField(help_text="Empty when the figures can be trusted, else why not.")


def comparison_data(comparison: Comparison | None) -> dict[str, Any] | None:
    if comparison is None:
        return None
    return {
        "treatment": comparison.treatment,
        "control": comparison.control,
        "absolute": comparison.absolute,
        "relative": comparison.relative,
        "low": comparison.low,
        "high": comparison.high,
        "p_value": comparison.p_value,
        "significant": comparison.significant,
        "too_small": comparison.too_small,
        "reason": comparison.reason,
    }


def uplift_data(result: UpliftResult) -> dict[str, Any]:
    experiment, uplift = result.experiment, result.uplift
    measured = {
        "measured_on": None,
        "treatment_size": None,
        "holdout_size": None,
        "treatment_conversions": None,
        "holdout_conversions": None,
        "treatment_revenue": None,
        "holdout_revenue": None,
    }
    if uplift is not None:
        measured = {name: getattr(uplift, name) for name in measured}
    return {
        "id": experiment.pk,
        "name": experiment.name,
        "holdout_percent": experiment.holdout_percent,
        "holdout_off_reason": experiment.holdout_off_reason,
        **measured,
        "conversion": comparison_data(result.conversion),
        "revenue": comparison_data(result.revenue),
        "incremental_conversions": result.incremental_conversions,
        "incremental_revenue": result.incremental_revenue,
        "cost": result.cost,
        "roi": result.roi,
        "target_share": result.target_share,
        "problem": result.problem,
    }


class GoalListSerializer(serializers.ListSerializer):
    """Reads the uplifts of all the goals on the page at once (goal_uplifts: a constant number of queries)."""

    def to_representation(self, data):
        goals = list(data.all() if hasattr(data, "all") else data)
        self._context["uplifts"] = goal_uplifts(goals=goals)
        return super().to_representation(goals)


class GoalSerializer(serializers.ModelSerializer):
    """A goal with its KPI, progress, daily snapshots and the uplift of the campaigns serving it."""

    children = serializers.PrimaryKeyRelatedField(many=True, read_only=True, help_text="The goals under this one.")
    metric_unit = serializers.SerializerMethodField(help_text="How the KPI's values read.")
    metric_definition = serializers.SerializerMethodField(help_text="What the KPI measures.")
    higher_is_better = serializers.SerializerMethodField()
    scope_segment_name = serializers.CharField(
        source="scope_segment.name", allow_null=True, default=None, read_only=True
    )
    required_change = serializers.SerializerMethodField(help_text="What the target asks of the baseline.")
    days_left = serializers.SerializerMethodField(help_text="Days until the deadline; null once it passed.")
    snapshots = SnapshotSerializer(many=True, read_only=True, help_text="The daily measurements, oldest first.")
    uplifts = serializers.SerializerMethodField()

    class Meta:
        model = Goal
        list_serializer_class = GoalListSerializer
        fields = [
            "id",
            "name",
            "description",
            "owner",
            "parent",
            "children",
            "domain",
            "metric",
            "metric_unit",
            "metric_definition",
            "higher_is_better",
            "channel",
            "scope_segment",
            "scope_segment_name",
            "period",
            "period_days",
            "starts_on",
            "deadline",
            "baseline",
            "baseline_measured_at",
            "target",
            "required_change",
            "status",
            "current_value",
            "projected_value",
            "measured_on",
            "days_left",
            "snapshots",
            "uplifts",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=UNITS))
    def get_metric_unit(self, goal: Goal) -> str:
        return CATALOGUE[goal.metric].unit

    def get_metric_definition(self, goal: Goal) -> str:
        return str(CATALOGUE[goal.metric].definition)

    def get_higher_is_better(self, goal: Goal) -> bool:
        return CATALOGUE[goal.metric].higher_is_better

    def get_required_change(self, goal: Goal) -> str:
        return required_change(goal)

    def get_days_left(self, goal: Goal) -> int | None:
        return goal.days_left(timezone.localdate())

    @extend_schema_field(UpliftSerializer(many=True))
    def get_uplifts(self, goal: Goal) -> list[dict[str, Any]]:
        uplifts = self.context.get("uplifts")
        if uplifts is None:
            uplifts = goal_uplifts(goals=[goal])
        return UpliftSerializer([uplift_data(result) for result in uplifts.get(goal.pk, [])], many=True).data


class GoalInputSerializer(serializers.ModelSerializer):
    """The SMART fields a goal is written with; the baseline is measured, the status kept by the measurement."""

    class Meta:
        model = Goal
        fields = [
            "name",
            "description",
            "parent",
            "domain",
            "metric",
            "channel",
            "scope_segment",
            "period",
            "period_days",
            "starts_on",
            "deadline",
            "target",
        ]


@extend_schema_view(
    create=extend_schema(request=GoalInputSerializer, responses={201: GoalSerializer}),
    update=extend_schema(request=GoalInputSerializer, responses={200: GoalSerializer}),
    partial_update=extend_schema(request=GoalInputSerializer, responses={200: GoalSerializer}),
)
class GoalViewSet(viewsets.ModelViewSet):
    """SMART goals that campaigns serve, with their measurements and the campaigns' uplift.

    Creating one measures its baseline over the period before its start; a target equal to the
    baseline, a scope segment that cannot be evaluated or a goal that would be part of itself is
    a 400 naming the field. The caller becomes the owner.
    """

    serializer_class = GoalSerializer
    filterset_fields = ["owner", "status", "metric", "domain", "parent", "scope_segment"]
    ordering_fields = ["deadline", "name", "status", "created_at"]

    def get_queryset(self):
        return Goal.objects.select_related("scope_segment").prefetch_related(
            Prefetch("snapshots", queryset=Snapshot.objects.order_by("day")),
            Prefetch("children", queryset=Goal.objects.only("pk", "parent_id").order_by("pk")),
        )

    def create(self, request, *args, **kwargs):
        data = GoalInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        goal = goal_create(owner=request.user, **data.validated_data)
        return Response(self._output(goal), status=status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        goal = self.get_object()
        data = GoalInputSerializer(goal, data=request.data, partial=kwargs.get("partial", False))
        data.is_valid(raise_exception=True)
        goal = goal_update(goal=goal, **data.validated_data)
        return Response(self._output(goal))

    def _output(self, goal: Goal) -> dict[str, Any]:
        fresh = self.get_queryset().get(pk=goal.pk)  # with its snapshots and children, as a read gives it
        return GoalSerializer(fresh, context=self.get_serializer_context()).data
