import datetime as dt

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
