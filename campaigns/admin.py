from django.contrib import admin

from campaigns.models import Campaign


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ["name", "goal", "status", "created_at"]
    list_filter = ["status"]
    list_select_related = ["goal"]
    search_fields = ["name"]
    autocomplete_fields = ["goal"]
    readonly_fields = ["status", "created_at", "updated_at"]
