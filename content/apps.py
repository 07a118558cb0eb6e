from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ContentConfig(AppConfig):
    """Design: reusable content blocks, channel templates, personalisation, preview."""

    name = "content"
    verbose_name = _("Content")
