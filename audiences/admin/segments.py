"""The segment admin: the builder for dynamic segments, lists for static ones.

Dynamic segments are edited with the segment builder (static/audiences/segment-builder.js),
which keeps the `rules` JSON as the source of truth and asks `preview/` for the live count,
a sample and the errors while the marketeer edits. Static segments are lists, filled from
a CSV of identities, a snapshot of a dynamic segment, or one by one from the contact page.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponseNotAllowed, JsonResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator
from django.utils.timesince import timesince
from django.utils.translation import gettext, ngettext, npgettext
from django.utils.translation import gettext_lazy as _

from audiences.identities import InvalidIdentity, normalise_identity
from audiences.imports.reading import FileUnreadable, detect_encoding
from audiences.models import Contact, Identity, Segment, SegmentMember
from audiences.segments import Problem, RuleError, compile_rules
from audiences.selectors.builder import segment_builder_options
from audiences.selectors.segments import resolve_segment, segment_count, segment_sample
from audiences.services.segments import (
    IdentityListResult,
    segment_create,
    segment_members_from_identities,
    segment_members_remove,
    segment_refresh_count,
    segment_snapshot,
    segment_update,
)

SAMPLE_SIZE = 20
MEMBERS_SHOWN = 20
MAX_CSV_BYTES = 20 * 1024 * 1024
REPORTED_VALUES = 10

# What the builder says, in the marketeer's words; translated on the server (gettext) and
# handed to the script as JSON, so that the Dutch catalogue covers the builder too.
BUILDER_LABELS = {
    "tab_builder": _("Builder"),
    "tab_json": _("JSON"),
    "json_help": _(
        "The rules as JSON, for power users. The builder follows your changes as soon as the JSON is valid."
    ),
    "json_parse_error": _("This is not valid JSON yet: %s"),
    "fix_json": _("Fix the JSON to see who is in the segment."),
    "cannot_show": _("The builder cannot show these rules. Edit them in the JSON tab."),
    "raw_node": _("The builder cannot show this rule; edit it in the JSON tab."),
    "group": _("Group of conditions"),
    "group_prefix": _("Contacts who match"),
    "group_prefix_not": _("Contacts who do NOT match"),
    "match": _("Match"),
    "match_all": _("ALL of these (and)"),
    "match_any": _("ANY of these (or)"),
    "not": _("NOT"),
    "not_title": _("Turn this group around: contacts who do not match it"),
    "and": _("and"),
    "or": _("or"),
    "add_condition": _("+ condition"),
    "add_group": _("+ group"),
    "remove_group": _("Remove this group"),
    "remove_condition": _("Remove this condition"),
    "empty_group": _("No conditions yet. Add one to start."),
    "condition_type": _("Condition type"),
    "type_field": _("Contact field"),
    "type_attribute": _("Attribute"),
    "type_event": _("Event"),
    "type_consent": _("Consent"),
    "type_identity": _("Identity"),
    "type_score": _("Score"),
    "type_segment": _("Segment"),
    "field": _("Field"),
    "attribute": _("Attribute key"),
    "attribute_placeholder": _("e.g. loyalty_member"),
    "comparison": _("Comparison"),
    "value": _("Value"),
    "value_type": _("Compare as"),
    "kind_text": _("text"),
    "kind_number": _("number"),
    "kind_date": _("date"),
    "kind_boolean": _("yes/no"),
    "yes": _("yes"),
    "no": _("no"),
    "low": _("From"),
    "high": _("To"),
    "list_placeholder": _("a, b, c"),
    "days": _("days"),
    "days_ago": _("days ago"),
    "op_eq": _("is"),
    "op_neq": _("is not"),
    "op_in": _("is one of"),
    "op_not_in": _("is none of"),
    "op_contains": _("contains"),
    "op_gt": _("is more than"),
    "op_gte": _("is at least"),
    "op_lt": _("is less than"),
    "op_lte": _("is at most"),
    "op_between": _("is between"),
    "op_is_set": _("is filled in"),
    "op_is_not_set": _("is empty"),
    "op_more_than_days_ago": _("was more than"),
    "op_less_than_days_ago": _("was less than"),
    "op_anniversary_within_days": _("has its anniversary within"),
    "op_eq_date": _("is on"),
    "op_neq_date": _("is not on"),
    "op_gt_date": _("is after"),
    "op_gte_date": _("is on or after"),
    "op_lt_date": _("is before"),
    "op_lte_date": _("is on or before"),
    "event_type": _("Event type"),
    "aggregate": _("Aggregate"),
    "aggregate_count": _("number of times"),
    "aggregate_sum": _("total value"),
    "aggregate_avg": _("average value"),
    "aggregate_max": _("highest value"),
    "aggregate_min": _("lowest value"),
    "of": _("of"),
    "event_value": _("the amount (event value)"),
    "property": _("Property"),
    "property_placeholder": _("e.g. category"),
    "property_filter": _("Property filter"),
    "agg_gte": _("at least"),
    "agg_gt": _("more than"),
    "agg_eq": _("exactly"),
    "agg_neq": _("not exactly"),
    "agg_lte": _("at most"),
    "agg_lt": _("less than"),
    "agg_between": _("between"),
    "times": _("times"),
    "in_the_last": _("in the last"),
    "within_days": _("Number of days (empty: all time)"),
    "all_time": _("all time"),
    "where": _("where"),
    "add_filter": _("+ property filter"),
    "remove_filter": _("Remove this property filter"),
    "consent_for": _("consent for"),
    "is": _("is"),
    "channel": _("Channel"),
    "consent_status": _("Consent status"),
    "consent_granted": _("granted"),
    "consent_withdrawn": _("withdrawn"),
    "consent_unknown": _("unknown (never asked)"),
    "present": _("Has or lacks"),
    "has": _("has a(n)"),
    "has_no": _("has no"),
    "identity_kind": _("Identity kind"),
    "score": _("Score name"),
    "score_placeholder": _("e.g. churn_risk"),
    "member_of": _("is in segment"),
    "no_segments": _("There are no other segments yet."),
    "preview_title": _("Live count"),
    "contacts": _("contacts"),
    "counting": _("Counting…"),
    "up_to_date": _("Counted just now, with the rules as they are on screen."),
    "sample_title": _("A sample"),
    "nobody": _("Nobody matches these rules."),
    "fix_errors": _("Fix the rules to see who is in the segment."),
    "empty_rules": _("Add a condition to see who is in the segment."),
    "request_failed": _("The count could not be fetched (%s)."),
}

# The identities a CSV for a static list usually holds; the kind's own name as a column
# header is recognised too.
CSV_KINDS = [Identity.Kind.EMAIL, Identity.Kind.PHONE, Identity.Kind.CUSTOMER_NUMBER]
CSV_HEADERS = {
    Identity.Kind.EMAIL: {"email", "e-mail", "emailadres", "e-mailadres", "mail", "email address"},
    Identity.Kind.PHONE: {"phone", "telefoon", "telefoonnummer", "mobiel", "mobile", "phone number", "gsm"},
    Identity.Kind.CUSTOMER_NUMBER: {"customer_number", "customer number", "klantnummer", "klantnr", "klant"},
}


def builder_labels() -> dict[str, str]:
    return {key: str(label) for key, label in BUILDER_LABELS.items()}


def rule_problems(rules: Any, *, segment: Segment | None = None) -> list[Problem]:
    """What is wrong with these rules for this segment (None: one not saved yet), as paths and
    messages: the schema's verdict, then the compiler's (segments that do not exist, a segment
    that would contain itself, directly or through others)."""
    try:
        compile_rules(
            rules,
            now=timezone.now(),
            resolve_segment=resolve_segment,
            segment_id=segment.pk if segment is not None else None,
        )
    except RuleError as error:
        return list(error.problems)
    return []


def identity_values_from_csv(content: bytes, kind: str) -> list[str]:
    """The identities in the file's column for this kind (the first column when no header names it)."""
    text = content.decode(detect_encoding(content))  # FileUnreadable for UTF-16 and binary data
    try:
        dialect: Any = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = [row for row in csv.reader(io.StringIO(text), dialect) if any(cell.strip() for cell in row)]
    if not rows:
        return []
    column = 0
    header = [cell.strip().lower() for cell in rows[0]]
    names = CSV_HEADERS.get(kind, set()) | {kind, str(Identity.Kind(kind).label).lower()}
    named = [index for index, cell in enumerate(header) if cell in names]
    if named:
        column, rows = named[0], rows[1:]
    elif _is_header(header[0], kind):
        rows = rows[1:]
    return [row[column].strip() for row in rows if len(row) > column and row[column].strip()]


def _is_header(cell: str, kind: str) -> bool:
    try:
        normalise_identity(kind, cell)
    except InvalidIdentity:
        return not any(ch.isdigit() for ch in cell)
    return False


class MemberChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Contact) -> str:
        return format_html('<a href="{}">{}</a>', reverse("admin:audiences_contact_change", args=[obj.pk]), obj)


class SegmentForm(forms.ModelForm):
    identities_file = forms.FileField(
        label=_("Add contacts from a CSV file"),
        required=False,
        help_text=_(
            "One identity per row: e-mail addresses, phone numbers or customer numbers. A header row is "
            "recognised; with several columns, the one named after the kind is used (else the first)."
        ),
    )
    remove_members = MemberChoiceField(
        label=_("Take off the list"),
        queryset=Contact.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("The newest contacts on the list. Tick those to take off, then save."),
    )
    identity_kind = forms.ChoiceField(
        label=_("The file holds"),
        choices=[(kind.value, kind.label) for kind in CSV_KINDS],
        initial=Identity.Kind.EMAIL,
        required=False,
    )

    class Meta:
        model = Segment
        fields = ["name", "kind", "description", "rules"]
        widgets = {
            "rules": forms.Textarea(attrs={"rows": 16, "class": "vLargeTextField segment-rules"}),
            "description": forms.Textarea(attrs={"rows": 2, "class": "vLargeTextField"}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rule_errors: list[dict[str, str]] = []
        if "remove_members" in self.fields and self.instance.pk and self.instance.kind == Segment.Kind.STATIC:
            newest = SegmentMember.objects.filter(segment=self.instance).order_by("-added_at", "-contact_id")
            ids = list(newest.values_list("contact_id", flat=True)[:MEMBERS_SHOWN])
            self.fields["remove_members"].queryset = Contact.objects.filter(pk__in=ids).order_by("-pk")
        if "rules" in self.fields:
            self.fields["rules"].label = _("Who is in it")
            self.fields["rules"].help_text = ""
            self.fields["rules"].required = False

    def _kind(self) -> str:
        return self.cleaned_data.get("kind") or self.instance.kind

    def clean_rules(self):
        rules = self.cleaned_data.get("rules")
        if self._kind() != Segment.Kind.DYNAMIC:
            return {}  # a list has no rules
        if not rules:
            self.rule_errors = [{"path": "root", "message": gettext("Add at least one condition.")}]
            raise ValidationError(gettext("A dynamic segment needs rules: add at least one condition."))
        problems = rule_problems(rules, segment=self.instance)
        if problems:
            self.rule_errors = [{"path": problem.path, "message": problem.message} for problem in problems]
            raise ValidationError([str(problem) for problem in problems])
        return rules

    def clean(self):
        cleaned = super().clean()
        upload = cleaned.get("identities_file")
        if upload:
            if self._kind() != Segment.Kind.STATIC:
                self.add_error("identities_file", gettext("Only a static segment (a list) takes a file of contacts."))
            elif upload.size > MAX_CSV_BYTES:
                self.add_error("identities_file", gettext("The file is larger than 20 MB; split it up."))
            else:
                kind = cleaned.get("identity_kind") or Identity.Kind.EMAIL
                try:
                    cleaned["identity_values"] = identity_values_from_csv(upload.read(), kind)
                except FileUnreadable as error:
                    self.add_error("identities_file", str(error))
                except csv.Error as error:
                    self.add_error(
                        "identities_file", gettext("The file cannot be read as CSV: %(error)s") % {"error": error}
                    )
                else:
                    if not cleaned["identity_values"]:
                        self.add_error("identities_file", gettext("The file holds no identities."))
        return cleaned


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    form = SegmentForm
    list_display = ["name", "kind", "count_with_age", "short_description"]
    list_filter = ["kind"]
    search_fields = ["name"]
    actions = ["refresh_count", "snapshot_as_static"]

    class Media:
        css = {"all": ["audiences/segment-builder.css"]}
        js = ["audiences/segment-builder.js"]

    # --- the list ---------------------------------------------------------------------------

    @admin.display(description=_("count"), ordering="cached_count")
    def count_with_age(self, obj: Segment) -> str:
        if obj.cached_count is None or obj.counted_at is None:
            return format_html('<span class="quiet">{}</span>', gettext("not counted yet"))
        if timezone.now() - obj.counted_at < dt.timedelta(minutes=1):
            age = gettext("just now")
        else:
            age = gettext("%(time)s ago") % {"time": timesince(obj.counted_at, depth=1)}
        return format_html(
            '{} <span class="quiet" title="{}">· {}</span>',
            number_format(obj.cached_count, force_grouping=True),
            obj.counted_at.isoformat(),
            age,
        )

    @admin.display(description=_("description"))
    def short_description(self, obj: Segment) -> str:
        return Truncator(obj.description).chars(100)

    # --- the form ---------------------------------------------------------------------------

    def get_readonly_fields(self, request, obj=None):
        fields = ["count_with_age", "snapshot_of", "created_by", "created_at", "updated_at"]
        if obj is not None:
            fields.append("kind")  # a list does not turn into rules, nor the other way round
            if obj.kind == Segment.Kind.STATIC:
                fields.append("members_overview")
        return fields

    def get_fieldsets(self, request, obj=None):
        about = (None, {"fields": ["name", "kind", "description"]})
        rules = (_("Who is in it"), {"fields": ["rules"], "classes": ["segment-dynamic-only"]})
        upload = ["identities_file", "identity_kind"]
        count = (_("Count"), {"fields": ["count_with_age", "created_by", "created_at", "updated_at"]})
        if obj is None:
            list_fields = (_("Contacts on the list"), {"fields": upload, "classes": ["segment-static-only"]})
            return [about, rules, list_fields]
        if obj.kind == Segment.Kind.DYNAMIC:
            return [about, rules, count]
        about = (None, {"fields": ["name", "kind", "description", "snapshot_of"]})
        members = ["members_overview", "remove_members", *upload]
        return [about, (_("Contacts on the list"), {"fields": members}), count]

    @admin.display(description=_("members"))
    def members_overview(self, obj: Segment) -> str:
        total = obj.members.count()
        return ngettext("%(count)s contact on the list.", "%(count)s contacts on the list.", total) % {
            "count": number_format(total, force_grouping=True)
        }

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if add or (obj is not None and obj.kind == Segment.Kind.DYNAMIC):
            if add:
                preview_url = reverse("admin:audiences_segment_preview")
            else:
                preview_url = reverse("admin:audiences_segment_preview_change", args=[obj.pk])
            form = context["adminform"].form
            context["segment_builder"] = {
                "config": {
                    "previewUrl": preview_url,
                    "segmentId": obj.pk if obj else None,
                    "errors": getattr(form, "rule_errors", []),
                },
                "labels": builder_labels(),
                "options": segment_builder_options(),
            }
        return super().render_change_form(request, context, add, change, form_url, obj)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            # The service compares the new rules with the stored ones (a change makes the
            # cached count stale), so it gets the segment as stored, not the form's copy.
            saved = segment_update(
                segment=Segment.objects.get(pk=obj.pk),
                name=data["name"],
                rules=data.get("rules") if obj.kind == Segment.Kind.DYNAMIC else None,
                description=data["description"],
                user=request.user,
            )
        else:
            saved = segment_create(
                name=data["name"],
                kind=data["kind"],
                rules=data.get("rules") or None,
                description=data["description"],
                user=request.user,
            )
        for model_field in Segment._meta.concrete_fields:
            setattr(obj, model_field.attname, getattr(saved, model_field.attname))
        if data.get("remove_members"):
            removed = segment_members_remove(segment=obj, contacts=data["remove_members"])
            self.message_user(
                request,
                ngettext("%(n)d contact taken off the list.", "%(n)d contacts taken off the list.", removed)
                % {"n": removed},
            )
        if data.get("identity_values"):
            kind = data.get("identity_kind") or Identity.Kind.EMAIL
            result = segment_members_from_identities(segment=obj, kind=kind, values=data["identity_values"])
            self._report_identities(request, result)
        # The list shows the count with its age: a segment just saved is counted at once
        # (one query; a fraction of a second on a million contacts).
        segment_refresh_count(segment=obj)

    def _report_identities(self, request, result: IdentityListResult) -> None:
        message = gettext(
            "From the file: %(found)s found (%(added)s new on the list), %(not_found)s not found, %(invalid)s invalid."
        ) % {
            "found": result.found,
            "added": result.added,
            "not_found": len(result.not_found),
            "invalid": len(result.invalid),
        }
        if result.not_found:
            shown = ", ".join(result.not_found[:REPORTED_VALUES])
            message += " " + gettext("Not found: %(values)s.") % {"values": shown}
        if result.invalid:
            shown = ", ".join(value for value, _why in result.invalid[:REPORTED_VALUES])
            message += " " + gettext("Invalid: %(values)s.") % {"values": shown}
        level = messages.WARNING if result.not_found or result.invalid else messages.SUCCESS
        self.message_user(request, message, level)

    # --- the live count ---------------------------------------------------------------------

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        preview = self.admin_site.admin_view(self.preview_view)
        return [
            path("preview/", preview, name="{}_{}_preview".format(*info)),
            path("<path:object_id>/preview/", preview, name="{}_{}_preview_change".format(*info)),
            *super().get_urls(),
        ]

    def preview_view(self, request, object_id=None):
        """POST `rules` (the JSON): the count, a sample of 20 and the errors, as JSON."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        # Counting by any rule probes the data: it is for who builds segments, and the sample
        # names contacts only to who may see contacts.
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            raise PermissionDenied
        show_contacts = request.user.has_perm("audiences.view_contact")
        segment = None
        if object_id is not None:
            segment = self.get_object(request, unquote(object_id))
            if segment is None:
                raise Http404
        rules = request.POST.get("rules", "")
        problems = rule_problems(rules, segment=segment)
        if not problems:
            try:
                count = segment_count(rules=rules)
                sample = segment_sample(rules=rules, size=SAMPLE_SIZE)
            except RuleError as error:  # found while compiling: an unknown segment, a cycle
                problems = list(error.problems)
        if problems:
            errors = [{"path": problem.path, "message": problem.message} for problem in problems]
            return JsonResponse({"count": None, "sample": [], "errors": errors}, status=400)
        return JsonResponse(
            {
                "count": count,
                "count_label": npgettext("segment count", "contact", "contacts", count),
                "sample": [
                    {
                        "contact_key": str(contact.contact_key),
                        "name": str(contact),
                        "url": reverse("admin:audiences_contact_change", args=[contact.pk]),
                    }
                    for contact in (sample if show_contacts else [])
                ],
                "errors": [],
            }
        )

    # --- actions ----------------------------------------------------------------------------

    @admin.action(description=_("Refresh count"), permissions=["change"])
    def refresh_count(self, request, queryset):
        for segment in queryset:
            segment_refresh_count(segment=segment)
        n = len(queryset)
        self.message_user(request, ngettext("Counted %(n)d segment.", "Counted %(n)d segments.", n) % {"n": n})

    @admin.action(description=_("Snapshot as static list"), permissions=["add"])
    def snapshot_as_static(self, request, queryset):
        made = []
        for segment in queryset:
            if segment.kind != Segment.Kind.DYNAMIC:
                self.message_user(
                    request,
                    gettext("%(name)s is already a list; only dynamic segments are snapshotted.") % {"name": segment},
                    messages.WARNING,
                )
                continue
            made.append(segment_snapshot(segment=segment, user=request.user))
        if made:
            links = format_html_join(
                ", ",
                '<a href="{}">{}</a>',
                ((reverse("admin:audiences_segment_change", args=[s.pk]), s.name) for s in made),
            )
            self.message_user(request, format_html("{} {}", gettext("Snapshot taken:"), links))
