"""The campaign admin: the campaign page in the marketeer's order, saved through the services,
with buttons that test-send, activate, pause, resume and cancel it; what it planned, sent and
achieved (audience, progress, funnel, uplift); its print files and call list to download; and
the campaign calendar with the contact pressure of everything that is planned."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import slugify
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from audiences.models import Contact
from audiences.segments import RuleError
from campaigns.channels.callcenter import call_list_csv
from campaigns.channels.direct_mail import print_file
from campaigns.models import (
    CallListItem,
    Campaign,
    CampaignRun,
    CampaignVariant,
    ContactPolicy,
    Delivery,
    DeliveryChannel,
    Suppression,
)
from campaigns.pressure import DEFAULT_WEEKS, MAX_OVERLAP_PAIRS, MAX_WEEKS, campaign_calendar
from campaigns.selectors import campaign_audience, campaign_funnel, campaign_progress, campaign_run_totals
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
from campaigns.services.test_send import MAX_ADDRESSES, campaign_test_contact, campaign_test_send
from content.forms import add_service_errors
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


# Why a contact was left out when a run was planned, and why a delivery waits, failed or was held back.
REASONS = {
    "no_consent": _("no consent for the channel"),
    "no_address": _("no address for the channel"),
    "suppressed": _("the address bounced or complained before"),
    "frequency_cap": _("frequency cap"),
    "quiet_hours": _("quiet hours"),
    "throttled": _("throttled"),
    "transient_error": _("a temporary error: tried again"),
    "permanent_error": _("refused by the channel"),
    "retries_exhausted": _("failed after every retry"),
    "render_error": _("the template could not be rendered"),
    "erased": _("the contact was erased or merged"),
    "global_control": _("in the global control group"),
    "hard_bounce": _("hard bounce"),
    "complaint": _("complaint"),
    "unknown": _("no reason recorded"),
}
FINAL_STATUSES = (Campaign.Status.COMPLETED, Campaign.Status.CANCELLED)
FILE_RUNS = 10  # the print files of the latest runs


def reasons_list(counts: dict[str, int]) -> list[tuple[str, int]]:
    """(label, count), the largest first."""
    return [
        (str(REASONS.get(reason, reason.replace("_", " "))), count)
        for reason, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]


def share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "\u2013"


def channel_label(channel: str) -> str:
    return str(DeliveryChannel(channel).label) if channel in DeliveryChannel.values else channel


def campaign_figures(campaign: Campaign) -> dict[str, Any]:
    """What the campaign page shows above its form: the audience, the progress and the funnel."""
    figures: dict[str, Any] = {"totals": campaign_run_totals(campaign=campaign)}
    figures["excluded"] = reasons_list(figures["totals"]["excluded"])
    if campaign.status not in FINAL_STATUSES and campaign.include_segments.exists():
        try:
            figures["audience_now"] = campaign_audience(campaign=campaign).count()
        except RuleError as error:
            figures["audience_problem"] = str(error)
    progress = list(campaign_progress(campaign=campaign).values())
    figures["progress"] = [
        {
            "label": channel_label(row.channel),
            "row": row,
            "waiting": reasons_list(row.waiting_by_reason),
            "failed": reasons_list(row.failed_by_reason),
            "held_back": reasons_list(row.held_back_by_reason),
            "delivered": share(row.delivered, row.sent),
            "opened": share(row.opened, row.sent),
            "clicked": share(row.clicked, row.sent),
        }
        for row in progress
    ]
    funnel = campaign_funnel(campaign=campaign)
    figures["funnel"] = {
        **funnel,
        "delivered_share": share(funnel["delivered"], funnel["sent"]),
        "opened_share": share(funnel["opened"], funnel["sent"]),
        "clicked_share": share(funnel["clicked"], funnel["sent"]),
        "converted_share": share(funnel["converted"], funnel["sent"]),
    }
    return figures


class CampaignTestSendForm(forms.Form):
    addresses = forms.CharField(
        label=_("Send to"),
        strip=False,  # the line numbers in the errors are the lines as typed
        widget=forms.Textarea(attrs={"rows": 5, "cols": 50, "class": "vLargeTextField", "spellcheck": "false"}),
    )
    contact = forms.CharField(
        label=_("Personalise as"),
        required=False,
        max_length=254,
        help_text=_("A contact's email address, phone number, customer number or contact key."),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["addresses"].help_text = gettext(
            "Email addresses and phone numbers, one a line, at most %(max)s: an email address gets the "
            "campaign's email, a phone number its SMS."
        ) % {"max": MAX_ADDRESSES}


@admin.register(Campaign)
class CampaignAdmin(WellFormedInitialMixin, ServiceFormAdmin):
    form = CampaignForm
    change_form_template = "admin/campaigns/campaign/change_form.html"
    change_list_template = "admin/campaigns/campaign/change_list.html"
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
        css = {"all": ["goals/goals.css", "campaigns/campaigns.css"]}

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
        view = self.admin_site.admin_view
        own = [
            path("calendar/", view(require_safe(self.calendar_view)), name="campaigns_campaign_calendar"),
            path(
                "<int:object_id>/status/<str:action>/",
                view(require_POST(self.status_view)),
                name="campaigns_campaign_status",
            ),
            path(
                "<int:object_id>/test-send/",
                view(require_http_methods(["GET", "HEAD", "POST"])(self.test_send_view)),
                name="campaigns_campaign_test_send",
            ),
            path(
                "<int:object_id>/runs/<int:run_id>/print-file.csv",
                view(require_safe(self.print_file_view)),
                name="campaigns_campaign_print_file",
            ),
            path(
                "<int:object_id>/call-list.csv",
                view(require_safe(self.call_list_view)),
                name="campaigns_campaign_call_list",
            ),
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
        if obj is not None:
            context["campaign_figures"] = campaign_figures(obj)
            context["campaign_files"] = self.files(request, obj)
        if obj is not None and self.has_change_permission(request, obj):
            context["status_actions"] = [
                (reverse("admin:campaigns_campaign_status", args=[obj.pk, action]), ACTIONS[action][1])
                for action in allowed_actions(obj)
            ]
            context["test_send_url"] = reverse("admin:campaigns_campaign_test_send", args=[obj.pk])
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- Files to download ----------------------------------------------------------------------

    def may_download(self, request, campaign: Campaign) -> bool:
        """Print files and call lists hold names, addresses and phone numbers: for those who may see
        the campaign and the contacts."""
        return self.has_view_permission(request, campaign) and request.user.has_perm("audiences.view_contact")

    def files(self, request, campaign: Campaign) -> dict[str, Any] | None:
        """The links to the campaign's print files (per run) and call list, when it uses those channels."""
        uses_mail = DeliveryChannel.DIRECT_MAIL in campaign.channels
        uses_calls = DeliveryChannel.CALLCENTER in campaign.channels
        if not (uses_mail or uses_calls) or not self.may_download(request, campaign):
            return None
        files: dict[str, Any] = {"print_files": [], "call_lists": []}
        if uses_mail:
            runs = campaign.runs.filter(planned_at__isnull=False).order_by("-scheduled_for")[:FILE_RUNS]
            files["print_files"] = [
                (run, reverse("admin:campaigns_campaign_print_file", args=[campaign.pk, run.pk])) for run in runs
            ]
        if uses_calls:
            url = reverse("admin:campaigns_campaign_call_list", args=[campaign.pk])
            files["call_lists"] = [
                (gettext("Call list: the calls still to make (CSV)"), f"{url}?status={CallListItem.Status.OPEN}"),
                (gettext("Call list: the calls made (CSV)"), f"{url}?status={CallListItem.Status.DONE}"),
            ]
        return files

    def print_file_view(self, request, object_id: int, run_id: int):
        campaign = get_object_or_404(Campaign, pk=object_id)
        if not self.may_download(request, campaign):
            raise PermissionDenied
        run = get_object_or_404(CampaignRun, pk=run_id, campaign=campaign)
        if DeliveryChannel.DIRECT_MAIL not in campaign.channels:
            return HttpResponseBadRequest(gettext("This campaign sends no direct mail: it has no print file."))
        return csv_download(print_file(run=run), f"{slugify(campaign.name) or 'campaign'}-run-{run.pk}-print-file.csv")

    def call_list_view(self, request, object_id: int):
        campaign = get_object_or_404(Campaign, pk=object_id)
        if not self.may_download(request, campaign):
            raise PermissionDenied
        status = request.GET.get("status", CallListItem.Status.OPEN)
        if status not in CallListItem.Status.values:
            return HttpResponseBadRequest(
                gettext("Status: choose one of %(known)s.") % {"known": ", ".join(CallListItem.Status.values)}
            )
        return csv_download(
            call_list_csv(campaign=campaign, status=status),
            f"{slugify(campaign.name) or 'campaign'}-call-list-{status}.csv",
        )

    # --- Test-send --------------------------------------------------------------------------------

    def test_send_view(self, request, object_id: int):
        """A small form: addresses, and whom to personalise as; POST sends the test through the service."""
        campaign = get_object_or_404(Campaign, pk=object_id)
        if not self.has_change_permission(request, campaign):
            raise PermissionDenied
        can_pick = request.user.has_perm("audiences.view_contact")
        form = CampaignTestSendForm(request.POST or None, initial={"addresses": request.user.email})
        if not can_pick:
            del form.fields["contact"]
        if request.method == "POST" and form.is_valid():
            contact = self.picked_contact(request, form) if can_pick else None
            if not form.errors:
                try:
                    outcomes = campaign_test_send(
                        campaign=campaign,
                        addresses=form.cleaned_data["addresses"].splitlines(),
                        contact=contact,
                        user=request.user,
                    )
                except ValidationError as error:
                    add_service_errors(form, error)
                else:
                    self.report_test(request, campaign, outcomes)
                    return redirect(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
        sample = campaign_test_contact(campaign=campaign)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": campaign,
            "title": gettext("Test-send “%(campaign)s”") % {"campaign": campaign},
            "form": form,
            "sample": sample,
            "untestable": [
                channel_label(channel)
                for channel in campaign.channels
                if channel not in (DeliveryChannel.EMAIL, DeliveryChannel.SMS)
            ],
            "change_url": reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
            "max_addresses": MAX_ADDRESSES,
        }
        return TemplateResponse(request, "admin/campaigns/campaign/test_send.html", context)

    def picked_contact(self, request, form: CampaignTestSendForm) -> Contact | None:
        """The contact the form names, found as the contact list finds them (exact matches only)."""
        term = form.cleaned_data.get("contact", "").strip()
        if not term:
            return None
        contact_admin = self.admin_site.get_model_admin(Contact)
        found, _distinct = contact_admin.get_search_results(
            request, Contact.objects.filter(erased_at__isnull=True), term
        )
        matches = list(found.order_by("pk")[:2])
        if not matches:
            form.add_error("contact", gettext("No contact has “%(term)s”.") % {"term": term})
            return None
        if len(matches) > 1:
            form.add_error(
                "contact", gettext("More than one contact has “%(term)s”: give their contact key.") % {"term": term}
            )
            return None
        return matches[0]

    def report_test(self, request, campaign: Campaign, outcomes) -> None:
        for outcome in outcomes:
            values = {
                "to": outcome.address,
                "channel": channel_label(outcome.channel),
                "variant": outcome.variant,
                "subject": outcome.subject,
                "detail": outcome.detail,
            }
            if outcome.sent:
                text = gettext("Test sent to %(to)s (%(channel)s).") % values
                if outcome.subject:
                    text += " " + gettext("Subject: %(subject)s") % values
                self.message_user(request, text, messages.SUCCESS)
            else:
                self.message_user(
                    request, gettext("The test to %(to)s (%(channel)s) failed: %(detail)s") % values, messages.ERROR
                )
        sent = sorted({outcome.address for outcome in outcomes if outcome.sent})
        if sent:
            self.log_change(request, campaign, gettext("Sent a test to %(to)s.") % {"to": ", ".join(sent)})

    # --- The calendar -------------------------------------------------------------------------------

    def calendar_view(self, request):
        """Every planned campaign over the coming weeks, with the contact pressure it adds."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        weeks, problem = DEFAULT_WEEKS, ""
        asked = request.GET.get("weeks", "").strip()
        if asked:
            try:
                weeks = int(asked)
            except ValueError:
                weeks = 0
            if not 1 <= weeks <= MAX_WEEKS:
                problem = gettext("Weeks: give a whole number from 1 to %(max)s; showing %(default)s.") % {
                    "max": MAX_WEEKS,
                    "default": DEFAULT_WEEKS,
                }
                weeks = DEFAULT_WEEKS
        calendar = campaign_calendar(weeks=weeks)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": gettext("Campaign calendar"),
            "calendar": calendar,
            "weeks": weeks,
            "max_weeks": MAX_WEEKS,
            "max_pairs": MAX_OVERLAP_PAIRS,
            "weeks_problem": problem,
            "policy_url": reverse("admin:campaigns_contactpolicy_changelist"),
            "may_change_policy": request.user.has_perm("campaigns.view_contactpolicy"),
        }
        return TemplateResponse(request, "admin/campaigns/campaign/calendar.html", context)


def csv_download(content: str, filename: str) -> HttpResponse:
    response = HttpResponse(content, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


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
from campaigns.offers import admin as offers_admin  # noqa: E402, F401 - registers offers, decisions and responses
