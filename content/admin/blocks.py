"""Content blocks in the admin: the editor, the checks, the version history, publishing.

A save never writes a version itself: it calls `block_create` or `block_version_create`, which
check and prepare the content and store what they found. A new version is a draft until it is
published; templates get the published version.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import F, Func, IntegerField, OuterRef, Subquery
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from content.admin.common import (
    PREVIEW_WIDTHS,
    HistoryRow,
    compare_response,
    content_display,
    issues,
    object_for,
    variables,
)
from content.forms import BlockForm
from content.models import ContentBlock, ContentBlockVersion
from content.rendering.context import sample_context
from content.rendering.errors import RenderError, TemplateSourceError
from content.selectors import BLOCK_FIELDS, block_newest_version
from content.services import block_create, block_publish, block_render, block_rollback, block_version_create


def newest_cached(request: HttpRequest, block: ContentBlock | None) -> ContentBlockVersion | None:
    """The block's newest version, read once per request (the form and the page both need it)."""
    if block is None or block.pk is None:
        return None
    cache = request.__dict__.setdefault("_content_block_newest", {})
    if block.pk not in cache:
        cache[block.pk] = block_newest_version(block=block)
    return cache[block.pk]


def sample_preview(version: ContentBlockVersion) -> dict[str, str]:
    """The version rendered with the sample profile, as HTML and as text, or the error."""
    if version.problems:
        return {"error": gettext("Fix the problems above to see a preview.")}
    try:
        html, text = block_render(version=version, context=sample_context())
        return {"html": html, "text": text}
    except (TemplateSourceError, RenderError) as error:
        return {"error": str(error)}


@admin.register(ContentBlock)
class ContentBlockAdmin(admin.ModelAdmin):
    form = BlockForm
    list_display = ["name", "slug", "kind", "published_number", "newest_number", "newest_state"]
    list_filter = ["kind"]
    search_fields = ["name", "slug"]
    list_select_related = ["published_version"]
    ordering = ["name"]
    actions = None  # deleting is one block at a time, and only for blocks never published

    class Media:
        css = {"all": ["content/content-admin.css"]}

    # --- the list ---------------------------------------------------------------------------

    def get_queryset(self, request):
        newest = ContentBlockVersion.objects.filter(block=OuterRef("pk")).order_by("-number")
        problem_count = Func(F("problems"), function="jsonb_array_length", output_field=IntegerField())
        return (
            super()
            .get_queryset(request)
            .annotate(
                newest_number=Subquery(newest.values("number")[:1]),
                newest_problem_count=Subquery(newest.annotate(count=problem_count).values("count")[:1]),
            )
        )

    @admin.display(description=_("published version"), ordering="published_version__number")
    def published_number(self, block: ContentBlock) -> Any:
        if block.published_version is None:
            return format_html('<span class="quiet">{}</span>', gettext("not published"))
        return block.published_version.number

    @admin.display(description=_("newest version"), ordering="newest_number")
    def newest_number(self, block: ContentBlock) -> Any:
        return block.newest_number or self.get_empty_value_display()

    @admin.display(description=_("newest version checks"))
    def newest_state(self, block: ContentBlock) -> str:
        count = getattr(block, "newest_problem_count", None)
        if count is None:
            return self.get_empty_value_display()
        if count:
            label = ngettext("%(count)d problem", "%(count)d problems", count) % {"count": count}
            return format_html('<span class="content-state content-state--problem">{}</span>', label)
        return format_html('<span class="content-state content-state--ok">{}</span>', gettext("no problems"))

    # --- the form ---------------------------------------------------------------------------

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        return type(form.__name__, (form,), {"newest_version": newest_cached(request, obj)})

    def get_fieldsets(self, request, obj=None):
        about = (None, {"fields": ["name", "slug", "kind", "description"]})
        if obj is None:
            return [about, (_("Content"), {"fields": ["body", "text_body"], "classes": ["content-editor"]})]
        editable = self.has_change_permission(request, obj)
        content = ["body", "text_body", "note"] if editable else ["content_readonly"]
        return [
            about,
            (_("Content"), {"fields": content, "classes": ["content-editor"]}),
            (_("Record"), {"fields": ["published_state", ("created_at", "updated_at")]}),
        ]

    def get_readonly_fields(self, request, obj=None):
        fields = ["content_readonly", "published_state", "created_at", "updated_at"]
        if obj is not None and obj.published_version_id:
            fields.append("slug")  # templates include it by slug
        return fields

    @admin.display(description=_("content"))
    def content_readonly(self, block: ContentBlock) -> str:
        return content_display(block_newest_version(block=block), BLOCK_FIELDS)

    @admin.display(description=_("published version"))
    def published_state(self, block: ContentBlock) -> str:
        if block.published_version_id is None:
            return gettext("Not published yet: templates cannot use this block until a version is published.")
        return gettext("Version %(number)s: templates get this one.") % {"number": block.published_version.number}

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.published_version_id:
            return False  # templates may include it; a published block stays
        return super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        before = form.newest_version
        if change:
            obj.save()  # name, slug, kind, description: the block's own fields are not versioned
            version = block_version_create(
                block=obj, body=data["body"], text_body=data["text_body"], user=request.user, note=data.get("note", "")
            )
        else:
            version = block_create(
                name=data["name"],
                slug=data["slug"],
                kind=data["kind"],
                description=data["description"],
                body=data["body"],
                text_body=data["text_body"],
                user=request.user,
            )
            for model_field in ContentBlock._meta.concrete_fields:
                setattr(obj, model_field.attname, getattr(version.block, model_field.attname))
        self._report_version(request, obj, version, unchanged=before is not None and version.pk == before.pk)

    def _report_version(self, request, block: ContentBlock, version: ContentBlockVersion, *, unchanged: bool) -> None:
        if unchanged:
            self.message_user(
                request,
                gettext("The content did not change: it is still version %(number)s.") % {"number": version.number},
                messages.INFO,
            )
            return
        if version.problems:
            self.message_user(
                request,
                ngettext(
                    "Saved as version %(number)s, with %(count)d problem: it cannot be published until it is fixed.",
                    "Saved as version %(number)s, with %(count)d problems: it cannot be published until they are "
                    "fixed.",
                    len(version.problems),
                )
                % {"number": version.number, "count": len(version.problems)},
                messages.WARNING,
            )
        elif block.published_version_id:
            self.message_user(
                request,
                gettext(
                    "Saved as version %(number)s, a draft: templates get version %(published)s until you publish it."
                )
                % {"number": version.number, "published": block.published_version.number},
                messages.SUCCESS,
            )
        else:
            self.message_user(
                request,
                gettext("Saved as version %(number)s. Publish it to make the block available to templates.")
                % {"number": version.number},
                messages.SUCCESS,
            )

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["variables"] = variables()
        if obj is not None:
            newest = newest_cached(request, obj)
            context["editor"] = {
                "version": newest,
                "problems": issues(newest.problems, BLOCK_FIELDS) if newest else [],
                "warnings": issues(newest.warnings, BLOCK_FIELDS) if newest else [],
                "preview": sample_preview(newest) if newest else None,
                "preview_widths": PREVIEW_WIDTHS,
            }
            context["history"] = self.history_rows(obj)
            context["can_change_versions"] = self.has_change_permission(request, obj)
            context["compare_url"] = reverse("admin:content_contentblock_compare", args=[obj.pk])
            context["show_publish"] = True
        return super().render_change_form(request, context, add, change, form_url, obj)

    def history_rows(self, block: ContentBlock) -> list[HistoryRow]:
        versions = block.versions.select_related("created_by").order_by("-number")
        compare = reverse("admin:content_contentblock_compare", args=[block.pk])
        newest = None
        rows = []
        for version in versions:
            newest = newest or version
            rows.append(
                HistoryRow(
                    version=version,
                    published=version.pk == block.published_version_id,
                    publish_url=reverse("admin:content_contentblock_publish", args=[block.pk, version.number]),
                    rollback_url=reverse("admin:content_contentblock_rollback", args=[block.pk, version.number]),
                    compare_url=f"{compare}?old={version.number}&new={newest.number}",
                )
            )
        return rows

    # --- publishing, rolling back, comparing ------------------------------------------------

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/versions/<int:number>/publish/",
                wrap(require_POST(self.publish_view)),
                name="{}_{}_publish".format(*info),
            ),
            path(
                "<path:object_id>/versions/<int:number>/rollback/",
                wrap(require_POST(self.rollback_view)),
                name="{}_{}_rollback".format(*info),
            ),
            path("<path:object_id>/compare/", wrap(self.compare_view), name="{}_{}_compare".format(*info)),
            *super().get_urls(),
        ]

    def _version_for_change(self, request, object_id: str, number: int) -> ContentBlockVersion:
        block = object_for(self, request, object_id, change=True)
        return get_object_or_404(ContentBlockVersion.objects.select_related("block"), block=block, number=number)

    def _back(self, version: ContentBlockVersion) -> HttpResponse:
        return redirect(reverse("admin:content_contentblock_change", args=[version.block_id]))

    def publish_view(self, request, object_id, number):
        version = self._version_for_change(request, object_id, number)
        try:
            block_publish(version=version, user=request.user)
        except ValidationError as error:
            self.message_user(request, " ".join(error.messages), messages.ERROR)
        else:
            self.message_user(
                request,
                gettext("Published version %(number)s of “%(block)s”: templates get it from now on.")
                % {"number": version.number, "block": version.block},
                messages.SUCCESS,
            )
        return self._back(version)

    def rollback_view(self, request, object_id, number):
        version = self._version_for_change(request, object_id, number)
        try:
            restored = block_rollback(version=version, user=request.user)
        except ValidationError as error:
            self.message_user(request, " ".join(error.messages), messages.ERROR)
        else:
            self.message_user(
                request,
                gettext("Rolled back to version %(old)s: its content is saved as version %(new)s and published.")
                % {"old": version.number, "new": restored.number},
                messages.SUCCESS,
            )
        return self._back(version)

    def compare_view(self, request, object_id):
        block = object_for(self, request, object_id)
        return compare_response(
            request,
            self,
            obj=block,
            versions=list(block.versions.order_by("-number")),
            title=gettext("Compare versions of “%(block)s”") % {"block": block},
            back_url=reverse("admin:content_contentblock_change", args=[block.pk]),
        )
