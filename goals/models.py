from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from dialoog.models import TimeStampedModel


class Goal(TimeStampedModel):
    """A goal that campaigns serve. Its KPI, target and measurement come with the goals issue."""

    name = models.CharField(_("name"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="owned_goals",
        verbose_name=_("owner"),
    )
    starts_on = models.DateField(_("start"))
    deadline = models.DateField(_("deadline"))

    class Meta:
        verbose_name = _("goal")
        verbose_name_plural = _("goals")
        ordering = ["deadline", "name"]
        constraints = [
            models.CheckConstraint(condition=Q(deadline__gt=F("starts_on")), name="goal_ends_after_start"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.starts_on and self.deadline and self.deadline <= self.starts_on:
            raise ValidationError({"deadline": _("The deadline must be after the start.")})
