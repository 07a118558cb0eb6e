"""Campaign measurements, channel costs and the global control group in the admin.

A holdout is turned off only with a reason, through `experiment_holdout_off`; a share is set
through `experiment_holdout_set`; the global control group through `global_control_update`. Each
form calls its service while it validates, so a refusal shows on its field and nothing is saved.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Q
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from dialoog.admin_site import WellFormedInitialMixin
from goals.admin.common import ServiceForm, ServiceFormAdmin
from goals.admin.display import NONE, uplifts_html
from goals.experiments import (
    experiment_create,
    experiment_holdout_off,
    experiment_holdout_set,
    global_control,
    global_control_update,
)
from goals.models import Assignment, ChannelCost, Experiment, GlobalControlGroup
from goals.selectors import experiment_result

DEFAULT_HOLDOUT = Decimal(10)


class ExperimentForm(ServiceForm):
    class Meta:
        model = Experiment
        fields = ["goal", "name", "holdout_percent", "holdout_off_reason", "conversion_event", "attribution_days"]
        widgets = {"holdout_off_reason": forms.Textarea(attrs={"rows": 2, "class": "vLargeTextField"})}
        help_texts = {
            "holdout_percent": _(
                "The share of the audience that receives nothing, to measure the effect against. "
                "0 turns the holdout off, which needs a reason below."
            ),
            "holdout_off_reason": _(
                "Only without a holdout: why this campaign is not measured against one. "
                "It is kept with your name and the time."
            ),
        }

    def save_through_service(self) -> Experiment:
        # One savepoint: a refusal after the first write (creating, then turning the holdout off)
        # leaves nothing behind.
        with transaction.atomic():
            return self._save(
                self.cleaned_data, self.cleaned_data["holdout_percent"], self.cleaned_data.get("holdout_off_reason", "")
            )

    def _save(self, cleaned: dict[str, Any], percent: Decimal, reason: str) -> Experiment:
        if self.instance.pk is None:
            experiment = experiment_create(
                goal=cleaned["goal"],
                name=cleaned["name"],
                # Every measurement starts with a holdout; no holdout is a decision taken with a reason.
                holdout_percent=percent or DEFAULT_HOLDOUT,
                conversion_event=cleaned["conversion_event"],
                attribution_days=cleaned["attribution_days"],
            )
            if not percent:
                experiment = experiment_holdout_off(experiment=experiment, reason=reason, user=self.user)
            return experiment
        stored = Experiment.objects.get(pk=self.instance.pk)
        if not percent:
            if stored.holdout_percent or reason.strip() != stored.holdout_off_reason:
                return experiment_holdout_off(experiment=stored, reason=reason, user=self.user)
            return stored
        if percent != stored.holdout_percent or stored.holdout_off_reason:
            return experiment_holdout_set(experiment=stored, percent=percent)
        return stored


@admin.register(Experiment)
class ExperimentAdmin(WellFormedInitialMixin, ServiceFormAdmin):
    form = ExperimentForm
    list_display = ["name", "goal", "holdout", "conversion_event", "attribution_days", "created_at"]
    list_filter = ["conversion_event"]
    list_select_related = ["goal"]
    show_full_result_count = False
    search_fields = ["name", "goal__name"]
    autocomplete_fields = ["goal"]

    class Media:
        css = {"all": ["goals/goals.css"]}

    def get_readonly_fields(self, request, obj=None):
        fixed = ["assignments_count", "result", "holdout_off_by", "holdout_off_at", "emails_sent", "sms_sent"]
        fixed += ["calls_made", "created_at", "updated_at"]
        if obj is not None:
            # What is measured is fixed once the measurement exists: changing it would compare
            # one thing before with another after.
            fixed = ["goal", "name", "conversion_event", "attribution_days", *fixed]
        return fixed

    def get_fieldsets(self, request, obj=None):
        measured = (_("What is measured"), {"fields": ["goal", "name", "conversion_event", "attribution_days"]})
        holdout = (_("Holdout"), {"fields": ["holdout_percent", "holdout_off_reason"]})
        if obj is None:
            return [measured, holdout]
        holdout[1]["fields"] += ["holdout_off_by", "holdout_off_at", "assignments_count"]
        return [
            measured,
            holdout,
            (_("Result"), {"fields": ["result"]}),
            (_("Sent"), {"fields": ["emails_sent", "sms_sent", "calls_made", "created_at", "updated_at"]}),
        ]

    @admin.display(description=_("holdout"), ordering="holdout_percent")
    def holdout(self, obj: Experiment) -> str:
        return f"{obj.holdout_percent:g}%" if obj.holdout_percent else gettext("off")

    @admin.display(description=_("assigned contacts"))
    def assignments_count(self, obj: Experiment) -> str:
        if obj.pk is None:
            return NONE
        counts = Assignment.objects.filter(experiment=obj).aggregate(
            treatment=Count("pk", filter=Q(group=Experiment.Group.TREATMENT)),
            holdout=Count("pk", filter=Q(group=Experiment.Group.HOLDOUT)),
        )
        return ngettext(
            "%(total)s contact: %(treatment)s in the treatment, %(holdout)s in the holdout",
            "%(total)s contacts: %(treatment)s in the treatment, %(holdout)s in the holdout",
            counts["treatment"] + counts["holdout"],
        ) % {"total": counts["treatment"] + counts["holdout"], **counts}

    @admin.display(description=_("uplift"))
    def result(self, obj: Experiment) -> str:
        if obj.pk is None:
            return NONE
        return uplifts_html([experiment_result(experiment=obj)])


@admin.register(ChannelCost)
class ChannelCostAdmin(admin.ModelAdmin):
    list_display = ["channel", "cost_per_message", "updated_at"]
    list_editable = ["cost_per_message"]
    readonly_fields = ["created_at", "updated_at"]


class GlobalControlForm(ServiceForm):
    class Meta:
        model = GlobalControlGroup
        fields = ["enabled", "percent"]

    def save_through_service(self) -> GlobalControlGroup:
        return global_control_update(
            enabled=self.cleaned_data["enabled"], percent=self.cleaned_data["percent"], user=self.user
        )


@admin.register(GlobalControlGroup)
class GlobalControlGroupAdmin(ServiceFormAdmin):
    """One row: the list opens it, nothing is added or deleted."""

    form = GlobalControlForm
    readonly_fields = ["changed_by", "updated_at"]
    fields = ["enabled", "percent", "changed_by", "updated_at"]

    def has_add_permission(self, request):
        return False  # the row is made by global_control() when first asked for

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        control = global_control()
        return HttpResponseRedirect(reverse("admin:goals_globalcontrolgroup_change", args=[control.pk]))
