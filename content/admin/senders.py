"""Sender profiles: who an email comes from. A plain admin."""

from django.contrib import admin

from content.models import SenderProfile


@admin.register(SenderProfile)
class SenderProfileAdmin(admin.ModelAdmin):
    list_display = ["name", "from_name", "from_email", "reply_to"]
    search_fields = ["name", "from_name", "from_email"]
    readonly_fields = ["created_at", "updated_at"]
    fields = ["name", "from_name", "from_email", "reply_to", ("created_at", "updated_at")]
