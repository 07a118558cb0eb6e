"""Audience exports in the admin: a segment, a schedule, "Export now", and the file to download
(hashed emails and phone numbers, for an advertising platform's customer list). The work is done
by `campaigns.services.exports`."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from campaigns.models import AudienceExport
from campaigns.services.exports import audience_export_filename, audience_export_run


@admin.register(AudienceExport)
class AudienceExportAdmin(admin.ModelAdmin):
    list_display = ["name", "segment", "schedule", "enabled", "exported_at", "row_count", "download_link"]
    list_filter = ["enabled"]
    list_select_related = ["segment", "schedule"]
    search_fields = ["name"]
    autocomplete_fields = ["segment"]
    fields = ["name", "segment", "schedule", "enabled", "exported_at", "row_count", "download_link"]
    readonly_fields = ["exported_at", "row_count", "download_link"]
    actions = ["export_now"]

    def get_queryset(self, request):
        # The file stays in the database until it is downloaded.
        return super().get_queryset(request).defer("content")

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<int:pk>/file.csv",
                self.admin_site.admin_view(self.download_view),
                name="{}_{}_download".format(*info),
            ),
            *super().get_urls(),
        ]

    @admin.display(description=_("file"))
    def download_link(self, obj: AudienceExport) -> str:
        if obj.pk is None or obj.exported_at is None:
            return gettext("not exported yet")
        url = reverse("admin:campaigns_audienceexport_download", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, gettext("Download CSV"))

    def download_view(self, request, pk):
        if not self.has_view_permission(request):
            raise PermissionDenied
        export = get_object_or_404(AudienceExport, pk=pk)  # with its file
        if export.exported_at is None:
            self.message_user(
                request, gettext("%(export)s has not been exported yet.") % {"export": export}, messages.WARNING
            )
            return redirect("admin:campaigns_audienceexport_changelist")
        response = HttpResponse(bytes(export.content), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{audience_export_filename(export)}"'
        return response

    @admin.action(description=_("Export now"), permissions=["change"])
    def export_now(self, request, queryset):
        for export in queryset.select_related("segment"):
            try:
                audience_export_run(export=export)
            except ValidationError as error:
                self.message_user(request, " ".join(error.messages), messages.ERROR)
            else:
                self.message_user(
                    request,
                    ngettext(
                        "%(export)s exported: %(count)d contact.",
                        "%(export)s exported: %(count)d contacts.",
                        export.row_count,
                    )
                    % {"export": export, "count": export.row_count},
                    messages.SUCCESS,
                )
