from django.contrib import admin
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
