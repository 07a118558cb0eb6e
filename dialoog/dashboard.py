"""What the admin's start page shows: the goals that are running and what serves them."""

from dataclasses import dataclass

from django.db.models import Case, Count, IntegerField, Value, When
from django.utils import timezone

from audiences.selectors.contacts import contact_count_estimate
from campaigns.models import Campaign
from goals.models import Goal
from goals.services import format_value

# The goals that need the marketeer first: at risk, then not measured yet, then on track, then done.
STATUS_ORDER = [Goal.Status.AT_RISK, Goal.Status.NO_DATA, Goal.Status.ON_TRACK, Goal.Status.ACHIEVED]
GOALS_SHOWN = 50


@dataclass(frozen=True)
class GoalRow:
    goal: Goal
    days_left: int | None  # never None here: running goals are before their deadline
    campaign_count: int

    @property
    def current(self) -> str:
        return format_value(self.goal.current_value, self.goal.metric)

    @property
    def target(self) -> str:
        return format_value(self.goal.target, self.goal.metric)


@dataclass(frozen=True)
class Dashboard:
    active_goals: list[GoalRow]
    more_goals: bool  # more goals run than the dashboard shows
    campaigns_by_status: list[tuple[str, int]]
    contact_estimate: int | None


def running_goals(*, today):
    """The goals running today, those that need attention first, then by deadline (one query)."""
    attention = Case(
        *[When(status=status, then=Value(rank)) for rank, status in enumerate(STATUS_ORDER)],
        default=Value(len(STATUS_ORDER)),
        output_field=IntegerField(),
    )
    return (
        Goal.objects.filter(starts_on__lte=today, deadline__gte=today)
        .annotate(campaign_count=Count("campaigns"), attention=attention)
        .order_by("attention", "deadline", "name", "pk")
    )


def dashboard_for(user) -> Dashboard:
    today = timezone.localdate()
    goals: list[GoalRow] = []
    more = False
    if user.has_perm("goals.view_goal"):
        running = list(running_goals(today=today)[: GOALS_SHOWN + 1])
        more = len(running) > GOALS_SHOWN
        goals = [GoalRow(goal, goal.days_left(today), goal.campaign_count) for goal in running[:GOALS_SHOWN]]
    by_status = []
    if user.has_perm("campaigns.view_campaign"):
        counts = dict(Campaign.objects.values_list("status").annotate(n=Count("id")).order_by())
        by_status = [(label, counts.get(value, 0)) for value, label in Campaign.Status.choices]
    contacts = contact_count_estimate() if user.has_perm("audiences.view_contact") else None
    return Dashboard(active_goals=goals, more_goals=more, campaigns_by_status=by_status, contact_estimate=contacts)
