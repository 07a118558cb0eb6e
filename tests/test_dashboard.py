import datetime as dt
from decimal import Decimal

from django.urls import reverse

from tests.factories import CampaignFactory, GoalFactory


def test_the_dashboard_shows_running_goals_with_their_campaigns(client, marketeer):
    today = dt.date.today()
    running = GoalFactory(name="Minder churn", deadline=today + dt.timedelta(days=40))
    CampaignFactory.create_batch(2, goal=running)
    GoalFactory(name="Al voorbij", starts_on=today - dt.timedelta(days=60), deadline=today - dt.timedelta(days=1))
    client.force_login(marketeer)

    response = client.get(reverse("admin:index"))

    rows = response.context["dashboard"].active_goals
    assert [(row.goal.name, row.days_left, row.campaign_count) for row in rows] == [("Minder churn", 40, 2)]
    assert "Al voorbij" not in response.content.decode()


def test_the_dashboard_query_count_does_not_grow_with_goals(client, marketeer, django_assert_max_num_queries):
    client.force_login(marketeer)
    GoalFactory()
    with django_assert_max_num_queries(20) as few:
        client.get(reverse("admin:index"))
    for _ in range(15):
        CampaignFactory(goal=GoalFactory())
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(reverse("admin:index"))
    assert len(response.context["dashboard"].active_goals) == 16


def test_an_agent_sees_no_goals_on_the_dashboard(client, agent):
    GoalFactory(name="Geheim doel")
    client.force_login(agent)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 200
    assert "Geheim doel" not in response.content.decode()


def test_the_dashboard_puts_goals_at_risk_first_with_their_figures(english_client, marketeer):
    today = dt.date.today()
    soon, later = today + dt.timedelta(days=10), today + dt.timedelta(days=50)
    GoalFactory(name="Gehaald", status="achieved", deadline=soon, current_value=Decimal(12))
    GoalFactory(name="Op koers", status="on_track", deadline=soon)
    GoalFactory(name="Nog niet gemeten", status="no_data", deadline=soon)
    GoalFactory(name="Risico later", status="at_risk", deadline=later, current_value=Decimal("4.3"))
    GoalFactory(name="Risico eerst", status="at_risk", deadline=soon)
    GoalFactory(name="Nog niet begonnen", status="at_risk", starts_on=today + dt.timedelta(days=1))

    response = english_client(marketeer).get(reverse("admin:index"))

    rows = response.context["dashboard"].active_goals
    expected = ["Risico eerst", "Risico later", "Nog niet gemeten", "Op koers", "Gehaald"]
    assert [row.goal.name for row in rows] == expected
    html = response.content.decode()
    risk = html[html.index("Risico later") :]
    risk = risk[: risk.index("</tr>")]
    assert 'class="goal-status goal-status-at_risk"' in risk
    assert ">4.3%<" in risk  # the current value, formatted
    assert ">10.0%<" in risk  # the target
    assert ">50<" in risk  # days left
    assert ">no data<" in html[html.index("Op koers") :]
