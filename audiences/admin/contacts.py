from django.contrib import admin

from audiences.models import ConsentChange, Contact, Event, Identity


class IdentityInline(admin.TabularInline):
    model = Identity
    extra = 0
    readonly_fields = ["created_at"]


class ConsentChangeInline(admin.TabularInline):
    model = ConsentChange
    extra = 0
    ordering = ["channel", "-recorded_at"]


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = ["__str__", "contact_key", "locale", "created_at"]
    # Search by the identities other systems know the contact by, exactly.
    search_fields = ["=identities__value", "=contact_key", "last_name"]
    readonly_fields = ["contact_key", "created_at", "updated_at"]
    inlines = [IdentityInline, ConsentChangeInline]
    show_full_result_count = False


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["type", "contact", "occurred_at", "value", "currency"]
    list_filter = ["type"]
    list_select_related = ["contact"]
    raw_id_fields = ["contact"]
    search_fields = ["=external_id"]
    show_full_result_count = False
