"""Contacts in the admin: a million of them, found by what the customer tells the agent."""

from __future__ import annotations

import contextlib
import json
import uuid

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import OuterRef, Q, Subquery
from django.db.models.functions import Upper
from django.http import HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format, number_format
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from audiences.identities import InvalidIdentity, normalise_identity
from audiences.models import (
    Channel,
    Consent,
    ConsentChange,
    Contact,
    ContactMerge,
    Event,
    Identity,
    PrivacyRequest,
    Score,
)
from audiences.selectors.contacts import contact_segments
from audiences.services.contacts import contact_erase, contact_export, contact_merge, contact_unmerge
from dialoog.admin_site import RecordAdminMixin
from dialoog.counting import EstimatedCountPaginator

TIMELINE_EVENTS = 50
MAX_NAME_MATCHES = 1000  # "Jansen" matches thousands; narrow down with an e-mail or phone


class IdentityForm(forms.ModelForm):
    class Meta:
        model = Identity
        fields = ["kind", "value", "source"]

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("kind") and cleaned.get("value"):
            try:
                cleaned["value"] = normalise_identity(cleaned["kind"], cleaned["value"])
            except InvalidIdentity as error:
                raise ValidationError({"value": str(error)}) from error
            owner = Identity.objects.filter(kind=cleaned["kind"], value=cleaned["value"]).exclude(pk=self.instance.pk)
            if owner.exists():
                raise ValidationError(
                    {"value": _("Another contact has this identity: merge the two contacts instead.")}
                )
        return cleaned


class IdentityInline(admin.TabularInline):
    model = Identity
    form = IdentityForm
    extra = 0
    readonly_fields = ["created_at"]


class ConsentChangeInline(admin.TabularInline):
    """The consent history: every change, newest first. Changes come in through the API,
    imports and forms, with their proof; the history itself is not edited."""

    model = ConsentChange
    extra = 0
    ordering = ["-recorded_at"]
    fields = ["channel", "status", "source", "proof", "recorded_at"]
    readonly_fields = fields
    can_delete = False
    verbose_name_plural = _("consent history")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = ["__str__", "email", "contact_key", "locale", "created_at"]
    list_per_page = 50
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    ordering = ["-created_at"]
    # Searched by get_search_results below, with the identity normalised first.
    search_fields = ["contact_key"]
    search_help_text = _("E-mail address, phone number, customer number or another id, contact key, or last name.")
    readonly_fields = [
        "contact_key",
        "current_consents",
        "insights",
        "segments",
        "event_timeline",
        "merges",
        "created_at",
        "updated_at",
        "erased_at",
    ]
    fieldsets = [
        (None, {"fields": ["contact_key", ("first_name", "last_name"), ("locale", "timezone"), "attributes"]}),
        (_("Consent"), {"fields": ["current_consents"]}),
        (_("Insights"), {"fields": ["insights"]}),
        (_("Segments"), {"fields": ["segments"]}),
        (_("Events"), {"fields": ["event_timeline"]}),
        (_("Merges"), {"fields": ["merges"]}),
        (_("Record"), {"fields": [("created_at", "updated_at"), "erased_at"]}),
    ]
    inlines = [IdentityInline, ConsentChangeInline]
    actions = ["merge_contacts", "export_contacts", "erase_contacts"]

    def get_queryset(self, request):
        email = Identity.objects.filter(contact=OuterRef("pk"), kind=Identity.Kind.EMAIL).order_by("pk")
        return super().get_queryset(request).annotate(email=Subquery(email.values("value")[:1]))

    @admin.display(description=_("e-mail address"))
    def email(self, contact):
        return contact.email or self.get_empty_value_display()

    def get_search_results(self, request, queryset, search_term):
        """Exact matches that indexes serve: an identity (normalised as it is stored), a
        contact key, or a last name, never a scan of a million rows for a substring. Each is
        looked up on its own index first; an OR of them in one query would scan contacts."""
        term = search_term.strip()
        if not term:
            # Who looks customers up one at a time (a callcenter agent) finds them by searching;
            # the whole list is for those who may list every contact.
            if not request.user.has_perm("audiences.browse_contact"):
                return queryset.none(), False
            return queryset, False
        if "\x00" in term:  # PostgreSQL text cannot hold NUL, so no identity or name has one
            return queryset.none(), False
        identities = Q(kind__in=Identity.Kind.values, value=term)
        for kind in (Identity.Kind.EMAIL, Identity.Kind.PHONE):
            with contextlib.suppress(InvalidIdentity):
                identities |= Q(kind=kind, value=normalise_identity(kind, term))
        ids = set(Identity.objects.filter(identities).values_list("contact_id", flat=True))
        ids |= set(
            Contact.objects.annotate(last_name_upper=Upper("last_name"))
            .filter(last_name_upper=term.upper())
            .values_list("pk", flat=True)[:MAX_NAME_MATCHES]
        )
        with contextlib.suppress(ValueError):
            ids |= set(Contact.objects.filter(contact_key=uuid.UUID(term)).values_list("pk", flat=True))
        return queryset.filter(pk__in=ids), False

    def has_delete_permission(self, request, obj=None):
        return False  # a contact is erased (GDPR), not deleted: its events stay in the totals

    @admin.display(description=_("current consent"))
    def current_consents(self, contact):
        current = {c.channel: c for c in Consent.objects.filter(contact=contact).select_related("change")}
        rows = []
        for channel, label in Channel.choices:
            consent = current.get(channel)
            if consent is None:
                rows.append((label, _("Unknown (not asked): no consent"), ""))
            else:
                rows.append(
                    (label, consent.get_status_display(), f"{consent.change.source}, {consent.changed_at:%d-%m-%Y}")
                )
        return format_html(
            "<table class='dialoog-compact'>{}</table>",
            format_html_join("", "<tr><th>{}</th><td>{}</td><td>{}</td></tr>", rows),
        )

    @admin.display(description=_("scores"))
    def insights(self, contact):
        """The profile's scores (churn risk, lifetime value, and any loaded from elsewhere), each
        with the model version that computed it and when; a score from the prior says so."""
        if contact.pk is None:
            return self.get_empty_value_display()
        scores = Score.objects.filter(contact=contact).select_related("model").order_by("name")
        if not scores:
            return _("No scores yet: they are computed every night by the active models.")
        rows = []
        for score in scores:
            value = number_format(score.value, 2) if score.name == "lifetime_value" else number_format(score.value, 3)
            origin = str(score.model) if score.model else _("loaded")
            note = _("no events: the average the model learned") if score.from_prior else ""
            computed = date_format(timezone.localtime(score.computed_at), "SHORT_DATETIME_FORMAT")
            rows.append((score.name, value, f"{origin}, {computed}", note))
        return format_html(
            "<table class='dialoog-compact'>{}</table>",
            format_html_join("", "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )

    @admin.display(description=_("segments"))
    def segments(self, contact):
        if contact.pk is None:
            return self.get_empty_value_display()

        found = contact_segments(contact=contact)
        if not found:
            return _("In no segment.")
        return format_html_join(
            ", ",
            "<a href='{}'>{}</a>",
            ((reverse("admin:audiences_segment_change", args=[s.pk]), s.name) for s in found),
        )

    @admin.display(description=_("latest events"))
    def event_timeline(self, contact):
        if contact.pk is None:
            return self.get_empty_value_display()
        events = Event.objects.filter(contact=contact).order_by("-occurred_at", "-id")[:TIMELINE_EVENTS]
        rows = [
            (
                f"{event.occurred_at:%d-%m-%Y %H:%M}",
                event.get_type_display(),
                ", ".join(f"{k}: {v}" for k, v in event.properties.items()),
                f"{event.currency} {event.value}" if event.value is not None else "",
            )
            for event in events
        ]
        if not rows:
            return _("No events yet.")
        return format_html(
            "<table class='dialoog-compact'>{}</table>",
            format_html_join("", "<tr><td>{}</td><th>{}</th><td>{}</td><td>{}</td></tr>", rows),
        )

    @admin.display(description=_("merged contacts"))
    def merges(self, contact):
        merges = ContactMerge.objects.filter(survivor_id=contact.pk, unmerged_at=None) if contact.pk else []
        if not merges:
            return self.get_empty_value_display()
        return format_html_join(
            ", ",
            "<a href='{}'>{}</a>",
            ((reverse("admin:audiences_contactmerge_change", args=[m.pk]), m.absorbed_key) for m in merges),
        )

    @admin.action(description=_("Merge the selected contacts (one person)"), permissions=["change"])
    def merge_contacts(self, request, queryset):
        contacts = list(queryset.order_by("pk"))
        if len(contacts) < 2:
            self.message_user(request, _("Select at least two contacts to merge."), messages.WARNING)
            return
        survivor = contacts[0]
        try:
            for other in contacts[1:]:
                contact_merge(survivor=survivor, absorbed=other, reason=_("Merged in the admin"), user=request.user)
        except ValidationError as error:
            self.message_user(request, " ".join(error.messages), messages.ERROR)
            return
        self.message_user(
            request,
            _("Merged %(count)d contacts into %(survivor)s. A merge can be undone under Merges.")
            % {"count": len(contacts) - 1, "survivor": survivor},
            messages.SUCCESS,
        )

    @admin.action(description=_("Export all data (GDPR), as JSON"), permissions=["change"])
    def export_contacts(self, request, queryset):
        exports = [contact_export(contact=contact, user=request.user) for contact in queryset[:100]]
        response = HttpResponse(
            json.dumps(exports, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False),
            content_type="application/json",
        )
        response["Content-Disposition"] = 'attachment; filename="dialoog-export.json"'
        return response

    @admin.action(description=_("Erase (GDPR): remove personal data"), permissions=["erase"])
    def erase_contacts(self, request, queryset):
        contacts = list(queryset.filter(erased_at=None)[:100])
        if request.POST.get("confirmed") == "yes":
            for contact in contacts:
                contact_erase(contact=contact, user=request.user, note=_("Erased in the admin"))
            self.message_user(
                request,
                ngettext("Erased %(count)d contact.", "Erased %(count)d contacts.", len(contacts))
                % {"count": len(contacts)},
                messages.SUCCESS,
            )
            return None
        return TemplateResponse(
            request,
            "admin/audiences/contact/erase_confirmation.html",
            {
                **self.admin_site.each_context(request),
                "title": _("Erase these contacts?"),
                "contacts": contacts,
                "opts": self.model._meta,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            },
        )

    def has_erase_permission(self, request):
        return request.user.has_perm("audiences.delete_contact")


@admin.register(ContactMerge)
class ContactMergeAdmin(admin.ModelAdmin):
    list_display = ["absorbed_key", "survivor_link", "reason", "merged_at", "unmerged_at"]
    list_filter = ["unmerged_at"]
    search_fields = ["=absorbed_key"]
    date_hierarchy = "merged_at"
    show_full_result_count = False
    actions = ["undo_merges"]
    fields = ["absorbed_key", "survivor_link", "reason", "merged_at", "merged_by", "unmerged_at", "unmerged_by"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=_("surviving contact"))
    def survivor_link(self, merge):
        url = reverse("admin:audiences_contact_change", args=[merge.survivor_id])
        return format_html("<a href='{}'>{}</a>", url, merge.survivor_id)

    @admin.action(description=_("Undo the selected merges"), permissions=["change"])
    def undo_merges(self, request, queryset):
        for merge in queryset.filter(unmerged_at=None).order_by("-merged_at"):  # newest first
            try:
                contact_unmerge(merge=merge, user=request.user)
            except ValidationError as error:
                self.message_user(request, " ".join(error.messages), messages.ERROR)
                return redirect(request.get_full_path())
        self.message_user(request, _("The merges were undone: both contacts are back."), messages.SUCCESS)
        return None


@admin.register(PrivacyRequest)
class PrivacyRequestAdmin(RecordAdminMixin, admin.ModelAdmin):
    list_display = ["kind", "contact_key", "requested_by", "carried_out_at", "note"]
    list_filter = ["kind"]
    search_fields = ["=contact_key"]
    list_select_related = ["requested_by"]


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["type", "contact", "occurred_at", "value", "currency"]
    list_filter = ["type"]
    list_select_related = ["contact"]
    raw_id_fields = ["contact"]
    search_fields = ["=external_id"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    ordering = ["-id"]
