"""Imports in the admin: upload a file, map its columns with a dry-run preview, import, follow the
progress, download the rows that were refused. The work is done by `audiences.services.imports`."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import slugify
from django.utils.translation import gettext_lazy as _

from audiences.imports.mapping import CONTACTS, EVENTS, VALUE_TYPES, target_choices
from audiences.models import Import
from audiences.services.imports import (
    MAX_UPLOAD_BYTES,
    import_columns,
    import_create,
    import_is_stale,
    import_preview,
    import_queue,
    import_rejected_csv,
)


class UploadForm(forms.Form):
    file = forms.FileField(
        label=_("File"),
        help_text=_("CSV (UTF-8 or Windows-1252; comma, semicolon or tab) or Excel (.xlsx), up to %(size)s MB.")
        % {"size": MAX_UPLOAD_BYTES // (1024 * 1024)},
    )
    kind = forms.ChoiceField(label=_("What the file holds"), choices=Import.Kind.choices, initial=Import.Kind.CONTACTS)
    source = forms.CharField(
        label=_("Source"),
        max_length=100,
        required=False,
        help_text=_("Where the data comes from (e.g. 'beurs 2026'); recorded on identities and consents."),
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_UPLOAD_BYTES:
            raise ValidationError(
                _(
                    "The file is %(size).1f MB; files up to %(limit)s MB can be uploaded. Split it, or ask an "
                    "administrator to import it with manage.py import_contacts."
                ),
                params={"size": upload.size / (1024 * 1024), "limit": MAX_UPLOAD_BYTES // (1024 * 1024)},
                code="too_large",
            )
        return upload


def _column_choices(kind: str, column: str, current: str) -> list[tuple[str, str]]:
    choices = [(value, str(label)) for value, label in target_choices(kind)]
    key = slugify(column).replace("-", "_")[:64] or "column"
    prefix = "attribute" if kind == CONTACTS else "event:property"
    noun = _("Attribute") if kind == CONTACTS else _("Event property")
    choices += [(f"{prefix}:{key}:{value_type}", f"{noun} “{key}” ({value_type})") for value_type in VALUE_TYPES]
    if current and current not in dict(choices):
        choices.append((current, current))
    return choices


class MappingForm(forms.Form):
    """A select per column of the file, keyed col_0, col_1 ... in the file's order."""

    def __init__(self, *args, columns: list[str], kind: str, mapping: dict[str, str], **kwargs):
        super().__init__(*args, **kwargs)
        self.columns = columns
        for index, column in enumerate(columns):
            current = mapping.get(column, "")
            self.fields[f"col_{index}"] = forms.ChoiceField(
                label=column, choices=_column_choices(kind, column, current), initial=current, required=False
            )

    def mapping(self) -> dict[str, str]:
        return {column: self.cleaned_data.get(f"col_{index}", "") for index, column in enumerate(self.columns)}


@admin.register(Import)
class ImportAdmin(admin.ModelAdmin):
    list_display = [
        "file_name",
        "kind",
        "status",
        "total_rows",
        "created_count",
        "updated_count",
        "rejected_link",
        "created_at",
    ]
    list_filter = ["kind", "status"]
    search_fields = ["file_name", "source"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = [
        "file_name",
        "kind",
        "status",
        "source",
        "file_size",
        "mapping_display",
        "total_rows",
        "processed_rows",
        "created_count",
        "updated_count",
        "unchanged_count",
        "merged_count",
        "rejected_count",
        "error",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).defer("content").select_related("created_by")

    def has_change_permission(self, request, obj=None):
        return False  # an import is a record of what happened: uploaded and run, never edited

    @admin.display(description=_("column mapping"))
    def mapping_display(self, obj):
        mapped = [(column, target) for column, target in (obj.mapping or {}).items() if target]
        return ", ".join(f"{column} → {target}" for column, target in mapped) or "—"

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/mapping/", wrap(self.mapping_view), name="{}_{}_mapping".format(*info)),
            path("<int:pk>/status/", wrap(self.status_view), name="{}_{}_status".format(*info)),
            path("<int:pk>/rejected.csv", wrap(self.rejected_view), name="{}_{}_rejected".format(*info)),
            *super().get_urls(),
        ]

    # --- Upload ---------------------------------------------------------------------------

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = UploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                created = import_create(
                    kind=form.cleaned_data["kind"],
                    file_name=upload.name,
                    content=upload.read(),
                    source=form.cleaned_data["source"],
                    user=request.user,
                )
            except ValidationError as error:
                for message in error.messages:
                    form.add_error("file", message)
            else:
                return redirect("admin:audiences_import_mapping", created.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Import a file"),
            "form": form,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/audiences/import/upload.html", context)

    # --- Mapping and preview --------------------------------------------------------------

    def mapping_view(self, request, pk):
        if not self.has_add_permission(request):
            raise PermissionDenied
        import_run = get_object_or_404(Import, pk=pk)
        # A running import whose worker died (stale) can be mapped and queued again.
        if import_run.status not in (Import.Status.UPLOADED, Import.Status.FAILED) and not import_is_stale(import_run):
            return redirect("admin:audiences_import_change", import_run.pk)
        columns = import_columns(import_run=import_run)
        form = MappingForm(
            request.POST or None, columns=columns, kind=import_run.kind, mapping=import_run.mapping or {}
        )
        mapping = import_run.mapping
        if request.method == "POST" and form.is_valid():
            mapping = form.mapping()
            if "_import" in request.POST:
                try:
                    import_queue(import_run=import_run, mapping=mapping)
                except ValidationError as error:
                    form.add_error(None, error.messages)
                else:
                    self.message_user(
                        request,
                        _("The import of %(file)s is queued.") % {"file": import_run.file_name},
                        messages.SUCCESS,
                    )
                    return redirect("admin:audiences_import_change", import_run.pk)
        preview = import_preview(import_run=import_run, mapping=mapping)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": import_run,
            "title": _("Map the columns of %(file)s") % {"file": import_run.file_name},
            "form": form,
            "preview": preview,
            "field_columns": list(zip(form.visible_fields(), columns, strict=True)),
            "is_events": import_run.kind == EVENTS,
        }
        return TemplateResponse(request, "admin/audiences/import/mapping.html", context)

    # --- Progress and results -------------------------------------------------------------

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "status_url": reverse("admin:audiences_import_status", args=[object_id]),
            "rejected_url": reverse("admin:audiences_import_rejected", args=[object_id]),
            "mapping_url": reverse("admin:audiences_import_mapping", args=[object_id]),
            "is_stale": str(object_id).isdigit()
            and any(import_is_stale(run) for run in Import.objects.defer("content").filter(pk=object_id)),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def status_view(self, request, pk):
        if not self.has_view_permission(request):
            raise PermissionDenied
        import_run = get_object_or_404(self.get_queryset(request), pk=pk)
        return JsonResponse(
            {
                "status": import_run.status,
                "status_display": str(import_run.get_status_display()),
                "total_rows": import_run.total_rows,
                "processed_rows": import_run.processed_rows,
                "created": import_run.created_count,
                "updated": import_run.updated_count,
                "unchanged": import_run.unchanged_count,
                "merged": import_run.merged_count,
                "rejected": import_run.rejected_count,
                "error": import_run.error,
                "finished": import_run.status in (Import.Status.DONE, Import.Status.FAILED),
            }
        )

    def rejected_view(self, request, pk):
        if not self.has_view_permission(request):
            raise PermissionDenied
        import_run = get_object_or_404(Import, pk=pk)
        response = StreamingHttpResponse(
            import_rejected_csv(import_run=import_run), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="rejected-{import_run.pk}.csv"'
        return response

    @admin.display(description=_("rejected rows"))
    def rejected_link(self, obj):
        if not obj.rejected_count:
            return "0"
        url = reverse("admin:audiences_import_rejected", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, obj.rejected_count)
