from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class GoalsConfig(AppConfig):
    """Decisions: SMART goals, KPIs, measurement, control groups and uplift."""

    name = "goals"
    verbose_name = _("Goals")
