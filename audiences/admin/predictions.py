"""Prediction models in the admin: each trained version as a model card, and activating one.

A card shows what the model predicts, what it learned from and when, how it did on the later,
held-out period beside the simple baseline it must beat, a calibration chart for churn, and the
features it reads. Models are written by training, never by hand; putting one in use is an
analyst's decision, confirmed separately when it did worse than the one in use.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from audiences.insights.features import FEATURES
from audiences.insights.predictions import FeatureMismatch, WorseThanActive, better_than, prediction_model_activate
from audiences.models import PredictionModel
from dialoog.admin_site import RecordAdminMixin

CHART = 260  # the calibration chart's plot, in pixels square
MARGIN = 36


def calibration_svg(table: list[dict]) -> SafeString:
    """Predicted against observed churn per tenth of predicted probability: on the diagonal is
    well calibrated. Each point's area follows its number of contacts."""
    if not table:
        return format_html("<p>{}</p>", gettext("No calibration table."))
    size = CHART + 2 * MARGIN
    largest = max(row["contacts"] for row in table)

    def x(value: float) -> float:
        return round(MARGIN + value * CHART, 1)

    def y(value: float) -> float:
        return round(MARGIN + (1 - value) * CHART, 1)

    points = format_html_join(
        "",
        "<circle cx='{}' cy='{}' r='{}' fill='#2463b0' fill-opacity='0.75'><title>{}</title></circle>",
        (
            (
                x(row["predicted"]),
                y(row["observed"]),
                round(3 + 9 * (row["contacts"] / largest) ** 0.5, 1),
                gettext("%(contacts)s contacts: predicted %(predicted)s, observed %(observed)s") % row,
            )
            for row in table
        ),
    )
    line = " ".join(f"{x(row['predicted'])},{y(row['observed'])}" for row in table)
    ticks = format_html_join(
        "",
        "<text x='{}' y='{}' text-anchor='middle' font-size='11'>{}</text>"
        "<text x='{}' y='{}' text-anchor='end' font-size='11'>{}</text>",
        ((x(t), MARGIN + CHART + 14, t, MARGIN - 4, y(t) + 4, t) for t in (0, 0.5, 1)),
    )
    return format_html(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{size}' height='{size}' role='img' aria-label='{label}'>"
        "<rect x='{m}' y='{m}' width='{c}' height='{c}' fill='none' stroke='#cbd5e0'/>"
        "<line x1='{x0}' y1='{y0}' x2='{x1}' y2='{y1}' stroke='#718096' stroke-dasharray='4 3'/>"
        "<polyline points='{line}' fill='none' stroke='#2463b0'/>{points}{ticks}"
        "<text x='{mid}' y='{bottom}' text-anchor='middle' font-size='11'>{xlabel}</text>"
        "<text x='10' y='{mid}' text-anchor='middle' font-size='11' transform='rotate(-90 10 {mid})'>{ylabel}</text>"
        "</svg>",
        size=size,
        label=gettext("Calibration: predicted against observed churn"),
        m=MARGIN,
        c=CHART,
        x0=x(0),
        y0=y(0),
        x1=x(1),
        y1=y(1),
        line=line,
        points=points,
        ticks=ticks,
        mid=MARGIN + CHART // 2,
        bottom=size - 4,
        xlabel=gettext("predicted churn"),
        ylabel=gettext("observed churn"),
    )


@admin.register(PredictionModel)
class PredictionModelAdmin(RecordAdminMixin, admin.ModelAdmin):
    list_display = ["__str__", "status", "figure", "training_rows", "created_at", "scored_at", "scored_rows"]
    list_filter = ["kind", "status"]
    ordering = ["kind", "-version"]
    change_form_template = "admin/audiences/predictionmodel/change_form.html"
    fieldsets = [
        (None, {"fields": ["kind", "version", "status", "algorithm", "horizon_days"]}),
        (
            _("How it was checked"),
            {
                "fields": ["periods", "figure", "figures", "calibration_chart"],
                "description": _(
                    "Trained on the outcome after one moment, then checked on the next period, which it never "
                    "saw: the figures are what to expect from its scores."
                ),
            },
        ),
        (_("What it reads"), {"fields": ["feature_list", "training_notes", "prior"]}),
        (
            _("Record"),
            {"fields": [("created_at", "trained_by"), ("activated_at", "activated_by"), ("scored_at", "scored_rows")]},
        ),
    ]
    readonly_fields = [
        "kind",
        "version",
        "status",
        "algorithm",
        "horizon_days",
        "periods",
        "figure",
        "figures",
        "calibration_chart",
        "feature_list",
        "training_notes",
        "prior",
        "created_at",
        "trained_by",
        "activated_at",
        "activated_by",
        "scored_at",
        "scored_rows",
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).defer("artifact")

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description=_("result on the held-out period"))
    def figure(self, model: PredictionModel) -> str:
        return model.headline()

    @admin.display(description=_("periods"))
    def periods(self, model: PredictionModel) -> str:
        return gettext(
            "Learned from %(learned)s contacts with their features before %(trained)s and what they did in the "
            "%(days)s days after; checked on %(checked)s contacts before %(evaluated)s and the %(days)s days after."
        ) % {
            "learned": model.training_rows,
            "trained": date_format(timezone.localtime(model.trained_until), "SHORT_DATE_FORMAT"),
            "checked": model.evaluation_rows,
            "evaluated": date_format(timezone.localtime(model.evaluated_until), "SHORT_DATE_FORMAT"),
            "days": model.horizon_days,
        }

    @admin.display(description=_("figures"))
    def figures(self, model: PredictionModel) -> SafeString:
        shown = {key: value for key, value in model.metrics.items() if key not in ("calibration", "parameters")}
        return format_html(
            "<table class='dialoog-compact'>{}</table>",
            format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", sorted(shown.items())),
        )

    @admin.display(description=_("calibration"))
    def calibration_chart(self, model: PredictionModel) -> SafeString | str:
        if model.kind != PredictionModel.Kind.CHURN:
            return "-"
        table = model.metrics.get("calibration", [])
        rows = format_html_join(
            "",
            "<tr><td>{} - {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((r["from"], r["to"], r["contacts"], r["predicted"], r["observed"]) for r in table),
        )
        return format_html(
            "{}<table class='dialoog-compact'><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>{}</table>",
            calibration_svg(table),
            gettext("predicted"),
            gettext("contacts"),
            gettext("mean predicted"),
            gettext("observed"),
            rows,
        )

    @admin.display(description=_("features"))
    def feature_list(self, model: PredictionModel) -> SafeString:
        described = {feature.name: feature.description for feature in FEATURES}
        return format_html_join(
            "", "<div><code>{}</code> {}</div>", ((name, described.get(name, "")) for name in model.features)
        )

    @admin.display(description=_("notes"))
    def training_notes(self, model: PredictionModel) -> SafeString | str:
        return format_html_join("", "<div>{}</div>", ((note,) for note in model.notes)) or "-"

    # --- Activating ---------------------------------------------------------------------------

    def get_urls(self):
        urls = super().get_urls()
        activate = path(
            "<int:pk>/activate/",
            self.admin_site.admin_view(self.activate_view),
            name="audiences_predictionmodel_activate",
        )
        return [activate, *urls]

    def render_change_form(self, request, context, *args, **kwargs):
        model = context.get("original")
        context["can_activate"] = (
            model is not None
            and model.status != PredictionModel.Status.ACTIVE
            and request.user.has_perm("audiences.activate_predictionmodel")
        )
        return super().render_change_form(request, context, *args, **kwargs)

    def activate_view(self, request, pk: int):
        """GET: the model beside the one in use, and whether it did worse; POST: put it in use."""
        if not request.user.has_perm("audiences.activate_predictionmodel"):
            raise PermissionDenied
        model = get_object_or_404(PredictionModel.objects.all(), pk=pk)
        back = reverse("admin:audiences_predictionmodel_change", args=[model.pk])
        active = (
            PredictionModel.objects.filter(kind=model.kind, status=PredictionModel.Status.ACTIVE)
            .exclude(pk=model.pk)
            .first()
        )
        if request.method == "POST":
            # The confirmation holds for the model in use when the page was shown, not for one
            # activated since by someone else.
            shown_against = request.POST.get("against", "")
            confirmed = request.POST.get("confirm_worse") == "yes" and shown_against == str(active.pk if active else "")
            try:
                prediction_model_activate(model=model, user=request.user, confirm_worse=confirmed)
            except WorseThanActive as error:
                self.message_user(request, str(error), messages.WARNING)
                return redirect(request.path)
            except FeatureMismatch as error:
                self.message_user(request, str(error), messages.ERROR)
                return redirect(back)
            self.message_user(
                request, gettext("%(model)s is active: it writes the scores from tonight on.") % {"model": model}
            )
            return redirect(back)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": gettext("Activate %(model)s?") % {"model": model},
            "model": model,
            "model_figure": model.headline(),
            "active": active,
            "active_figure": active.headline() if active else "",
            "worse": bool(active and not better_than(model, active)),
        }
        return TemplateResponse(request, "admin/audiences/predictionmodel/activate.html", context)
