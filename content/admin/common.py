"""What the block and template editors share: problems with their place, the version history,
the comparison of two versions, the list of variables, and the HTML preview frame."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from content.forms import CompareForm
from content.models import ContentBlockVersion, TemplateVersion
from content.rendering.context import describe
from content.selectors import version_diff

# Desktop and mobile widths of the preview frame, in CSS pixels.
PREVIEW_WIDTHS = {"desktop": 700, "mobile": 375}


@dataclass(frozen=True)
class Issue:
    """A problem or warning as the editor shows it: which field, where, and why."""

    field: str
    line: int
    column: int
    message: str

    @property
    def place(self) -> str:
        return gettext("line %(line)s, column %(column)s") % {"line": self.line, "column": self.column}


def issues(found: list[dict[str, Any]], fields: tuple[tuple[str, Any], ...]) -> list[Issue]:
    """The problems or warnings of a version; `fields` names its fields (selectors.BLOCK_FIELDS, ...)."""
    labels = dict(fields)
    return [
        Issue(
            field=str(labels.get(item.get("field", ""), item.get("field", ""))),
            line=item.get("line") or 1,
            column=item.get("column") or 1,
            message=item.get("message", ""),
        )
        for item in found
    ]


def object_for(model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str, *, change: bool = False) -> Any:
    """The admin's object, or 404; PermissionDenied unless the user may view it (or `change` it)."""
    obj = model_admin.get_object(request, unquote(object_id))
    if obj is None:
        raise Http404
    allowed = (
        model_admin.has_change_permission(request, obj)
        if change
        else model_admin.has_view_or_change_permission(request, obj)
    )
    if not allowed:
        raise PermissionDenied
    return obj


@dataclass(frozen=True)
class HistoryRow:
    version: ContentBlockVersion | TemplateVersion
    published: bool  # blocks: the version templates get; templates: the newest, the one used
    publish_url: str
    rollback_url: str
    compare_url: str


KIND_LABELS: dict[str, Any] = {
    "text": _("text"),
    "number": _("number"),
    "money": _("amount"),
    "date": _("date"),
    "url": _("link"),
    "boolean": _("yes/no"),
    "any": _("any value"),
    "object": _("group"),
    "list": _("list"),
    "map": _("by name"),
    "loop": _("loop"),
    "function": _("function"),
}
VARIABLES_HELP = _(
    "Write a variable as {{ contact.first_name }}. A variable that is empty for a contact can get a fallback: "
    '{{ contact.first_name | default("klant") }}. Include a block with {% include "block:footer" %}.'
)


def variables() -> dict[str, Any]:
    """Every name a template can use, with its kind and description (`content.rendering.context`),
    for the reference list beside the editor."""
    return {
        "help": VARIABLES_HELP,
        "rows": [(name, KIND_LABELS.get(kind, kind), description) for name, kind, description in describe()],
    }


def code_display(label: Any, value: str) -> str:
    """A field's source, read-only (for who may only view)."""
    if not value:
        return format_html("<p><strong>{}</strong>: <span class='quiet'>{}</span></p>", label, gettext("(empty)"))
    return format_html("<p><strong>{}</strong></p><pre class='content-code-readonly'>{}</pre>", label, value)


def content_display(
    version: ContentBlockVersion | TemplateVersion | None, fields: tuple[tuple[str, Any], ...] | list[tuple[str, Any]]
) -> str:
    if version is None:
        return gettext("No version yet.")
    return format_html_join("", "{}", ((code_display(label, getattr(version, name)),) for name, label in fields))


def compare_response(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    *,
    obj: Any,
    versions: list[ContentBlockVersion | TemplateVersion],
    title: str,
    back_url: str,
    extra_query: dict[str, str] | None = None,
) -> HttpResponse:
    """The comparison page: two versions picked by number, their differences field by field."""
    by_number = {version.number: version for version in versions}
    numbers = sorted(by_number, reverse=True)
    defaults = {"new": numbers[0] if numbers else None, "old": numbers[1] if len(numbers) > 1 else None}
    data = {key: request.GET.get(key) or defaults[key] for key in ("old", "new")}
    form = CompareForm(data, numbers=numbers)
    diffs, old, new = [], None, None
    if form.is_valid():
        old, new = by_number[form.cleaned_data["old"]], by_number[form.cleaned_data["new"]]
        diffs = version_diff(old=old, new=new)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "original": obj,
        "title": title,
        "form": form,
        "diffs": diffs,
        "old": old,
        "new": new,
        "back_url": back_url,
        "extra_query": extra_query or {},
        "has_versions": len(numbers) > 1,
    }
    return TemplateResponse(request, "admin/content/compare.html", context)
