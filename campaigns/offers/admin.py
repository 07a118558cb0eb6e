"""Offers in the admin: the marketeer sets up what agents offer, tunes the weights (the lever and
the context weights) and sees each decision with its reasons and the answers it got."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db import transaction
from django.forms.models import construct_instance
from django.utils.translation import gettext_lazy as _

from campaigns.models import Offer, OfferContextWeight, OfferDecision, OfferDecisionItem, OfferResponse
from campaigns.offers.catalogue import catalogue_forget
from campaigns.offers.services import offer_problems, offer_save


class OfferForm(forms.ModelForm):
    class Meta:
        model = Offer
        fields = [
            "name",
            "description",
            "code",
            "campaign",
            "script",
            "follow_up",
            "segment",
            "active",
            "starts_at",
            "ends_at",
            "value",
            "propensity_source",
            "propensity_score",
            "propensity_default",
            "lever",
            "max_presentations",
            "presentation_days",
            "cooldown_days",
            "daily_capacity",
            "holdout_percent",
            "holdout_off_reason",
        ]

    def clean(self):
        cleaned = super().clean()
        for name in ("campaign", "script"):
            if not cleaned.get(name):
                return cleaned  # its own field error says so
        # The services' checks, on the offer as the form would save it (what _post_clean builds too).
        problems = offer_problems(offer=construct_instance(self, self.instance))
        if problems:
            raise ValidationError(problems)
        return cleaned


class ContextWeightInline(admin.TabularInline):
    model = OfferContextWeight
    extra = 0
    verbose_name = _("context weight")
    verbose_name_plural = _("context weights: how much a channel or an hour of the day favours this offer")


@admin.register(Offer)
class OfferAdmin(admin.ModelAdmin):
    form = OfferForm
    list_display = ["name", "campaign", "segment", "value", "lever", "active", "starts_at", "ends_at", "accepts"]
    list_filter = ["active", "campaign"]
    list_select_related = ["campaign", "segment"]
    search_fields = ["name", "code"]
    autocomplete_fields = ["campaign", "segment"]
    readonly_fields = ["experiment", "responses", "accepts"]
    inlines = [ContextWeightInline]
    fieldsets = [
        (None, {"fields": ["name", "description", "code", "campaign", "script", "follow_up"]}),
        (_("Who and when"), {"fields": ["segment", "active", "starts_at", "ends_at"]}),
        (
            _("Score: propensity x context weight x value x lever"),
            {
                "fields": ["value", "propensity_source", "propensity_score", "propensity_default", "lever"],
                "description": _(
                    "The offers a contact may get are ranked by this score, highest first. The context "
                    "weights below multiply it per channel or hour of the day."
                ),
            },
        ),
        (_("Limits"), {"fields": ["max_presentations", "presentation_days", "cooldown_days", "daily_capacity"]}),
        (
            _("Measurement"),
            {"fields": ["holdout_percent", "holdout_off_reason", "experiment", "responses", "accepts"]},
        ),
    ]

    def save_model(self, request, obj, form, change):
        offer_save(offer=obj, user=request.user)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        catalogue_forget()
        transaction.on_commit(catalogue_forget)


class DecisionItemInline(admin.TabularInline):
    model = OfferDecisionItem
    fields = ["rank", "offer", "presented", "held_out", "propensity", "context_weight", "value", "lever", "score"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class ResponseInline(admin.TabularInline):
    model = OfferResponse
    fields = ["offer", "outcome", "reason", "agent", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(OfferDecision)
class OfferDecisionAdmin(admin.ModelAdmin):
    """Read only: what each decision presented, held out and left out, and why."""

    list_display = ["pk", "contact", "channel", "agent", "created_at"]
    list_filter = ["channel"]
    list_select_related = ["contact", "agent"]
    readonly_fields = ["contact", "channel", "agent", "created_at", "left_out"]
    inlines = [DecisionItemInline, ResponseInline]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(OfferResponse)
class OfferResponseAdmin(admin.ModelAdmin):
    list_display = ["offer", "outcome", "reason", "agent", "created_at"]
    list_filter = ["outcome", "offer"]
    list_select_related = ["offer", "agent"]
    readonly_fields = [
        "decision",
        "offer",
        "contact_id",
        "outcome",
        "reason",
        "agent",
        "client_request_id",
        "event_id",
        "created_at",
    ]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
