from django.contrib import admin
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from campaigns.models import Campaign
from dialoog.admin_site import WellFormedInitialMixin
from goals.admin.display import uplifts_html
from goals.selectors import experiment_result


@admin.register(Campaign)
class CampaignAdmin(WellFormedInitialMixin, admin.ModelAdmin):
    list_display = ["name", "goal", "status", "created_at"]
    list_filter = ["status"]
    list_select_related = ["goal"]
    search_fields = ["name"]
    autocomplete_fields = ["goal", "experiment"]
    readonly_fields = ["status", "created_at", "updated_at"]

    class Media:
        css = {"all": ["goals/goals.css"]}

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        # The uplift is the goal's figures: shown to those who may see campaign measurements.
        if obj is not None and request.user.has_perm("goals.view_experiment"):
            fields.append("measured_uplift")
        return fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("experiment__goal")

    @admin.display(description=_("measured uplift"))
    def measured_uplift(self, obj: Campaign) -> str:
        if obj.experiment is None:
            return gettext("not measured: this campaign has no measurement against its goal")
        return uplifts_html([experiment_result(experiment=obj.experiment)])


from campaigns import admin_exports  # noqa: E402, F401 - registers the audience exports
