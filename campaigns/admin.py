"""The campaign admin: the campaign page in the marketeer's order, saved through the services,
with buttons that activate, pause, resume and cancel it, and what its runs planned and sent."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from campaigns.models import (
    CallListItem,
    Campaign,
    CampaignVariant,
    ContactPolicy,
    Delivery,
    Suppression,
)
from campaigns.services import (
    campaign_activate,
    campaign_cancel,
    campaign_create,
    campaign_pause,
    campaign_resume,
    campaign_update,
)
from campaigns.services.lifecycle import EDITABLE_FIELDS, TRANSITIONS
from campaigns.services.policies import contact_policy
from dialoog.admin_site import WellFormedInitialMixin
from goals.admin.common import ServiceForm, ServiceFormAdmin
from goals.admin.display import uplifts_html
from goals.selectors import experiment_result

FORM_FIELDS = [*EDITABLE_FIELDS, "include_segments", "exclude_segments"]


class CampaignForm(ServiceForm):
    class Meta:
        model = Campaign
        fields = FORM_FIELDS
        widgets = {"description": forms.Textarea(attrs={"rows": 3, "class": "vLargeTextField"})}

    def save_through_service(self) -> Campaign:
        values = {name: self.cleaned_data[name] for name in self.fields if name in self.cleaned_data}
        include = values.pop("include_segments", None)
        exclude = values.pop("exclude_segments", None)
        if self.instance.pk is None:
            return campaign_create(include_segments=include, exclude_segments=exclude, **values)
        campaign = Campaign.objects.get(pk=self.instance.pk)
        unchanged = set(campaign.include_segments.all()) == set(include or []) and set(
            campaign.exclude_segments.all()
        ) == set(exclude or [])
        return campaign_update(
            campaign=campaign,
            include_segments=None if unchanged else include,
            exclude_segments=None if unchanged else exclude,
            **values,
        )


class VariantInline(admin.TabularInline):
    model = CampaignVariant
    extra = 0
    fields = ["name", "message", "weight", "is_winner"]
    readonly_fields = ["is_winner"]
    autocomplete_fields = ["message"]


ACTIONS = {
    "activate": (campaign_activate, _("Activate"), Campaign.Status.RUNNING),
    "pause": (campaign_pause, _("Pause"), Campaign.Status.PAUSED),
    "resume": (campaign_resume, _("Resume"), Campaign.Status.RUNNING),
    "cancel": (campaign_cancel, _("Cancel"), Campaign.Status.CANCELLED),
}


def allowed_actions(campaign: Campaign) -> list[str]:
    """The buttons that make sense for the campaign's status."""
    status = campaign.status
    allowed = []
    if status == Campaign.Status.DRAFT:
        allowed.append("activate")
    if Campaign.Status.PAUSED in TRANSITIONS[status]:
        allowed.append("pause")
    if status == Campaign.Status.PAUSED:
        allowed.append("resume")
    if Campaign.Status.CANCELLED in TRANSITIONS[status]:
        allowed.append("cancel")
    return allowed


@admin.register(Campaign)
class CampaignAdmin(WellFormedInitialMixin, ServiceFormAdmin):
    form = CampaignForm
    change_form_template = "admin/campaigns/campaign/change_form.html"
    list_display = ["name", "kind", "status", "goal", "channel_list", "created_at"]
    list_filter = ["status", "kind"]
    list_select_related = ["goal"]
    search_fields = ["name"]
    autocomplete_fields = ["goal", "experiment", "message", "include_segments", "exclude_segments"]
    readonly_fields = ["status", "activated_at", "created_at", "updated_at", "runs_summary"]
    inlines = [VariantInline]
    fieldsets = [
        (None, {"fields": ["name", "description", "goal", "status"]}),
        (_("Who"), {"fields": ["include_segments", "exclude_segments"]}),
        (_("What"), {"fields": ["message", "channels"]}),
        (
            _("When"),
            {
                "fields": [
                    "kind",
                    "send_at",
                    "schedule",
                    "ends_at",
                    "trigger_event_type",
                    "trigger_filters",
                    "trigger_first_only",
                    "trigger_delay",
                    "stop_event_types",
                ]
            },
        ),
        (
            _("Measurement and pace"),
            {
                "fields": [
                    "experiment",
                    "holdout_percent",
                    "holdout_off_reason",
                    "variant_test_percent",
                    "variant_test_hours",
                    "throttle_per_minute",
                ]
            },
        ),
        (_("Sending"), {"fields": ["runs_summary", "activated_at", "created_at", "updated_at"]}),
    ]

    class Media:
        css = {"all": ["goals/goals.css"]}

    def get_fieldsets(self, request, obj=None):
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is not None and request.user.has_perm("goals.view_experiment"):
            # The uplift is the goal's figures: shown to those who may see campaign measurements.
            fieldsets.append((_("Uplift"), {"fields": ["measured_uplift"]}))
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and request.user.has_perm("goals.view_experiment"):
            fields.append("measured_uplift")
        return fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("experiment__goal")

    @admin.display(description=_("channels"))
    def channel_list(self, obj: Campaign) -> str:
        return ", ".join(obj.channels)

    @admin.display(description=_("measured uplift"))
    def measured_uplift(self, obj: Campaign) -> str:
        if obj.experiment is None:
            return gettext("not measured: this campaign has no measurement against its goal")
        return uplifts_html([experiment_result(experiment=obj.experiment)])

    @admin.display(description=_("runs"))
    def runs_summary(self, obj: Campaign) -> str:
        if obj.pk is None:
            return "-"
        runs = list(obj.runs.order_by("-scheduled_for")[:10])
        if not runs:
            return gettext("No run yet.")
        progress: dict[int, dict[str, int]] = {}
        for run_id, status, count in (
            Delivery.objects.filter(run__in=runs).values_list("run_id", "status").annotate(count=Count("pk"))
        ):
            progress.setdefault(run_id, {})[status] = count
        rows = []
        for run in runs:
            counts = progress.get(run.pk, {})
            excluded = ", ".join(f"{reason}: {count}" for reason, count in sorted(run.excluded.items())) or "-"
            rows.append(
                (
                    run.occurrence,
                    run.get_status_display(),
                    run.planned,
                    run.held_out,
                    excluded,
                    counts.get(Delivery.Status.QUEUED, 0) + counts.get(Delivery.Status.SENDING, 0),
                    counts.get(Delivery.Status.SENT, 0),
                    counts.get(Delivery.Status.FAILED, 0),
                    counts.get(Delivery.Status.HELD_BACK, 0),
                )
            )
        header = format_html(
            "<tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            gettext("occurrence"),
            gettext("status"),
            gettext("planned"),
            gettext("holdout"),
            gettext("excluded"),
            gettext("queued"),
            gettext("sent"),
            gettext("failed"),
            gettext("held back"),
        )
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            rows,
        )
        return format_html("<table>{}{}</table>", header, body)

    def get_urls(self):
        own = [
            path(
                "<int:object_id>/status/<str:action>/",
                self.admin_site.admin_view(require_POST(self.status_view)),
                name="campaigns_campaign_status",
            )
        ]
        return own + super().get_urls()

    def status_view(self, request, object_id: int, action: str):
        """A button of the campaign page: activate, pause, resume or cancel, through the services."""
        campaign = get_object_or_404(Campaign, pk=object_id)
        if action not in ACTIONS:
            raise PermissionDenied
        if not self.has_change_permission(request, campaign):
            raise PermissionDenied
        service, _label, _to = ACTIONS[action]
        try:
            if action == "activate":
                campaign = service(campaign=campaign, user=request.user)
            else:
                campaign = service(campaign=campaign)
        except ValidationError as error:
            if hasattr(error, "error_dict"):
                for field, problems in error.message_dict.items():
                    name = Campaign._meta.get_field(field).verbose_name if field != "__all__" else ""
                    for problem in problems:
                        self.message_user(
                            request, f"{str(name).capitalize()}: {problem}" if name else problem, messages.ERROR
                        )
            else:
                for problem in error.messages:
                    self.message_user(request, problem, messages.ERROR)
        else:
            self.message_user(
                request,
                gettext("The campaign is %(status)s.") % {"status": campaign.get_status_display().lower()},
                messages.SUCCESS,
            )
        return redirect(reverse("admin:campaigns_campaign_change", args=[object_id]))

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and self.has_change_permission(request, obj):
            context["status_actions"] = [
                (reverse("admin:campaigns_campaign_status", args=[obj.pk, action]), ACTIONS[action][1])
                for action in allowed_actions(obj)
            ]
        return super().render_change_form(request, context, add, change, form_url, obj)


@admin.register(ContactPolicy)
class ContactPolicyAdmin(admin.ModelAdmin):
    """One row: the list opens it."""

    fields = ["cap_total", "cap_per_channel", "cap_days", "quiet_channels", "quiet_start", "quiet_end", "quiet_sunday"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        return redirect(reverse("admin:campaigns_contactpolicy_change", args=[contact_policy().pk]))


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    list_display = ["address", "channel", "reason", "created_at"]
    list_filter = ["channel", "reason"]
    search_fields = ["address"]


@admin.register(CallListItem)
class CallListItemAdmin(admin.ModelAdmin):
    list_display = ["contact", "phone", "campaign", "status", "outcome", "created_at"]
    list_filter = ["status", "campaign"]
    list_select_related = ["contact", "campaign"]
    readonly_fields = [
        "delivery",
        "campaign",
        "contact",
        "phone",
        "script",
        "status",
        "outcome",
        "called_by",
        "called_at",
    ]

    def has_add_permission(self, request):
        return False


from campaigns import admin_exports  # noqa: E402, F401 - registers the audience exports
