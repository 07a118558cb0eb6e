from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AudiencesConfig(AppConfig):
    """Data: one customer picture (contacts, identities, consent, events, segments)."""

    name = "audiences"
    verbose_name = _("Customers")
