from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from dialoog.models import TimeStampedModel


class Campaign(TimeStampedModel):
    """A campaign serves one goal. Audiences, messages, schedules and sends come with the
    campaigns issue; activation (which needs a measurable goal) with it."""

    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        ACTIVE = "active", _("Active")
        PAUSED = "paused", _("Paused")
        COMPLETED = "completed", _("Completed")

    name = models.CharField(_("name"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    goal = models.ForeignKey(
        "goals.Goal",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="campaigns",
        verbose_name=_("goal"),
        help_text=_("The goal this campaign serves: no goal, no campaign."),
    )
    experiment = models.OneToOneField(
        "goals.Experiment",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="campaign",
        verbose_name=_("measurement"),
        help_text=_("Its holdout and measured uplift against the goal."),
    )
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.DRAFT)

    class Meta:
        verbose_name = _("campaign")
        verbose_name_plural = _("campaigns")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.experiment_id and self.experiment.goal_id != self.goal_id:
            raise ValidationError(
                {
                    "experiment": _(
                        "This measurement belongs to another goal: a campaign is measured against its own goal."
                    )
                }
            )
