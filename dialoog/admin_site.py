from django.contrib import admin
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from dialoog.dashboard import dashboard_for


class DialoogAdminSite(admin.AdminSite):
    """The marketeer's workplace: the start page is the Dialoog dashboard."""

    site_header = _("Dialoog")
    site_title = _("Dialoog")
    index_title = _("Dashboard")
    site_url = None  # the admin is the site: no "view site" link

    def index(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "dashboard": dashboard_for(request.user)}
        return super().index(request, extra_context)


class WellFormedInitialMixin:
    """Drops an add page's preset relation that is not an id (`?goal=abc`): the autocomplete widget
    would look it up as one and fail with a 500. The page opens with nothing picked instead."""

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)  # type: ignore[misc]
        for field in self.model._meta.concrete_fields:  # type: ignore[attr-defined]
            if field.is_relation and field.name in initial:
                try:
                    field.target_field.to_python(initial[field.name])
                except ValidationError:
                    initial.pop(field.name)
        return initial


class RecordAdminMixin:
    """A model admin for records that Dialoog writes itself (privacy requests, products learnt
    from purchases): listed and read, never added, changed or deleted by hand."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
