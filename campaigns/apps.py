from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CampaignsConfig(AppConfig):
    """Delivery: campaigns, offers, schedules, channels and deliveries."""

    name = "campaigns"
    verbose_name = _("Campaigns")
