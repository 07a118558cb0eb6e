"""The goal page: a SMART goal in the marketeer's words, and how it is doing.

Saving goes through `goal_create` / `goal_update` from the form's validation, so that what the
services refuse (a target equal to the measured baseline, a scope that cannot be evaluated, a
goal that would be part of itself) is shown on its field, and nothing is saved.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from dialoog.admin_site import WellFormedInitialMixin
from goals.admin.common import ServiceForm, ServiceFormAdmin
from goals.admin.display import days_left_text, status_badge, total_effect_text, uplifts_html
from goals.charts import goal_chart_svg
from goals.metrics import CATALOGUE
from goals.models import Goal, Snapshot
from goals.selectors import goal_uplifts
from goals.services import format_value, goal_create, goal_progress, goal_update, required_change

SNAPSHOTS_SHOWN = 60

SPECIFIC = ["name", "description", "owner", "parent", "domain"]
MEASURABLE = ["metric", "channel", "scope_segment", "period", "period_days"]
ACHIEVABLE = ["baseline_and_change", "target"]
TIME_BOUND = ["starts_on", "deadline"]
EDITABLE = [*SPECIFIC, *MEASURABLE, "target", *TIME_BOUND]


def metric_help(current: str | None = None) -> str:
    """The metric's help: what the chosen KPI measures, and every KPI's definition to choose from."""
    chosen = (
        format_html("<strong>{}:</strong> {}", CATALOGUE[current].key.label, CATALOGUE[current].definition)
        if current in CATALOGUE
        else ""
    )
    return format_html(
        '{}<details class="goal-metric-definitions"><summary>{}</summary><dl>{}</dl></details>',
        chosen,
        gettext("What each KPI measures"),
        format_html_join(
            "", "<dt>{}</dt><dd>{}</dd>", ((metric.key.label, metric.definition) for metric in CATALOGUE.values())
        ),
    )


class GoalForm(ServiceForm):
    """The goal's SMART fields; a valid form is saved by the goal services during validation.
    A new goal without an owner is the user's who saves it."""

    class Meta:
        model = Goal
        fields = EDITABLE
        widgets = {"description": forms.Textarea(attrs={"rows": 3, "class": "vLargeTextField"})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "metric" in self.fields:
            self.fields["metric"].help_text = metric_help(self.instance.metric or None)

    def save_through_service(self) -> Goal:
        values = {name: self.cleaned_data[name] for name in self.fields if name in self.cleaned_data}
        if self.instance.pk is None:
            owner = values.pop("owner", None) or self.user
            return goal_create(owner=owner, **values)
        # A copy: the service sets the new values on the goal before it checks them, and a refused
        # change must not show on the page that reports the refusal.
        return goal_update(goal=Goal.objects.get(pk=self.instance.pk), **values)


@admin.register(Goal)
class GoalAdmin(WellFormedInitialMixin, ServiceFormAdmin):
    form = GoalForm
    list_display = [
        "name",
        "domain",
        "metric",
        "status_badge",
        "current",
        "target_value",
        "scope",
        "deadline",
        "days_left",
    ]
    list_filter = ["status", "metric", "domain"]
    list_select_related = ["scope_segment"]
    show_full_result_count = False
    search_fields = ["name"]
    autocomplete_fields = ["parent", "scope_segment"]
    date_hierarchy = "deadline"
    readonly_fields = ["baseline_and_change", "team_goals", "created_at", "updated_at"]

    class Media:
        css = {"all": ["goals/goals.css"]}

    def get_fieldsets(self, request, obj=None):
        return [
            (_("Specific: what do you want to achieve?"), {"fields": [*SPECIFIC, *(["team_goals"] if obj else [])]}),
            (_("Measurable: which KPI shows it?"), {"fields": MEASURABLE}),
            (_("Achievable: from where to where?"), {"fields": ACHIEVABLE}),
            (_("Time-bound: by when?"), {"fields": TIME_BOUND}),
        ]

    def get_changeform_initial_data(self, request):
        return {
            "owner": request.user.pk,
            "starts_on": timezone.localdate(),
            **super().get_changeform_initial_data(request),
        }

    # --- the list ---------------------------------------------------------------------------

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: Goal) -> str:
        return status_badge(obj)

    @admin.display(description=_("current value"), ordering="current_value")
    def current(self, obj: Goal) -> str:
        return format_value(obj.current_value, obj.metric)

    @admin.display(description=_("target"), ordering="target")
    def target_value(self, obj: Goal) -> str:
        return format_value(obj.target, obj.metric)

    @admin.display(description=_("scope"), ordering="scope_segment__name")
    def scope(self, obj: Goal) -> str:
        return obj.scope_segment.name if obj.scope_segment else gettext("all contacts")

    @admin.display(description=_("days left"), ordering="deadline")
    def days_left(self, obj: Goal) -> str:
        left = obj.days_left(timezone.localdate())
        return gettext("ended") if left is None else str(left)

    # --- the page ---------------------------------------------------------------------------

    @admin.display(description=_("goals under it"))
    def team_goals(self, obj: Goal) -> str:
        """The goal tree one level down: the team goals that contribute to this one, with their status."""
        children = list(obj.children.order_by("deadline", "name"))
        if not children:
            return gettext("None: goals that contribute to this one name it under “Part of”.")
        return format_html_join(
            mark_safe("<br>"),
            '<a href="{}">{}</a> {}',
            (
                (reverse("admin:goals_goal_change", args=[child.pk]), child.name, status_badge(child))
                for child in children
            ),
        )

    @admin.display(description=_("baseline"))
    def baseline_and_change(self, obj: Goal) -> str:
        if obj is None or obj.pk is None:
            return gettext(
                "Measured when you save: the KPI over the period before the start. The target must differ from it."
            )
        if obj.baseline is None:
            return required_change(obj)
        measured = (
            gettext("measured %(when)s") % {"when": date_format(timezone.localtime(obj.baseline_measured_at))}
            if obj.baseline_measured_at
            else ""
        )
        return format_html(
            '<strong>{}</strong> <span class="quiet">{}</span><br>{} {}',
            format_value(obj.baseline, obj.metric),
            measured,
            gettext("Required change:"),
            required_change(obj),
        )

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and obj.pk is not None:
            context["goal_page"] = self.goal_page(obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def goal_page(self, goal: Goal) -> dict[str, Any]:
        today = timezone.localdate()
        snapshots = list(
            Snapshot.objects.filter(goal=goal)
            .order_by("day")
            .only("day", "value", "numerator", "denominator", "measured_at")
        )
        found = goal_progress(goal=goal, values=[(snapshot.day, snapshot.value) for snapshot in snapshots], today=today)
        latest_first = snapshots[::-1][:SNAPSHOTS_SHOWN]
        return {
            "status": status_badge(goal),
            "current": format_value(goal.current_value, goal.metric),
            "projected": format_value(goal.projected_value, goal.metric),
            "target": format_value(goal.target, goal.metric),
            "measured_on": goal.measured_on,
            "days_left": days_left_text(goal, today),
            "chart": goal_chart_svg(goal=goal, snapshots=snapshots, progress=found, today=today),
            "snapshots": [
                {
                    "day": snapshot.day,
                    "value": format_value(snapshot.value, goal.metric),
                    "numerator": snapshot.numerator,
                    "denominator": snapshot.denominator,
                    "measured_at": snapshot.measured_at,
                }
                for snapshot in latest_first
            ],
            "snapshot_count": len(snapshots),
            "snapshots_capped": len(snapshots) > SNAPSHOTS_SHOWN,
            "uplifts": uplifts_html(goal_uplifts(goals=[goal]).get(goal.pk, [])),
            "total_effect": total_effect_text(goal),
        }
