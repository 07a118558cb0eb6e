from django.contrib import admin

from goals.models import Goal


@admin.register(Goal)
class GoalAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "starts_on", "deadline"]
    list_select_related = ["owner"]
    search_fields = ["name"]
    readonly_fields = ["created_at", "updated_at"]
    date_hierarchy = "deadline"

    def save_model(self, request, obj, form, change):
        if not change and obj.owner_id is None:
            obj.owner = request.user
        super().save_model(request, obj, form, change)
