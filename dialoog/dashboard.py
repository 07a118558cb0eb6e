"""What the admin's start page shows: the goals that are running and what serves them."""

from dataclasses import dataclass

from django.db.models import Count
from django.utils import timezone

from audiences.selectors.contacts import contact_count_estimate
from campaigns.models import Campaign
from goals.models import Goal


@dataclass(frozen=True)
class GoalRow:
    goal: Goal
    days_left: int
    campaign_count: int


@dataclass(frozen=True)
class Dashboard:
    active_goals: list[GoalRow]
    campaigns_by_status: list[tuple[str, int]]
    contact_estimate: int | None


def dashboard_for(user) -> Dashboard:
    today = timezone.localdate()
    goals = []
    if user.has_perm("goals.view_goal"):
        running = (
            Goal.objects.filter(starts_on__lte=today, deadline__gte=today)
            .annotate(campaign_count=Count("campaigns"))
            .order_by("deadline")[:20]
        )
        goals = [GoalRow(goal, (goal.deadline - today).days, goal.campaign_count) for goal in running]
    by_status = []
    if user.has_perm("campaigns.view_campaign"):
        counts = dict(Campaign.objects.values_list("status").annotate(n=Count("id")).order_by())
        by_status = [(label, counts.get(value, 0)) for value, label in Campaign.Status.choices]
    contacts = contact_count_estimate() if user.has_perm("audiences.view_contact") else None
    return Dashboard(active_goals=goals, campaigns_by_status=by_status, contact_estimate=contacts)
