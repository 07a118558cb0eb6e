"""Roles: what a marketeer, an analyst, a callcenter agent and an administrator may do."""

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from dialoog.roles import ADMINISTRATOR, ANALYST, CALLCENTER_AGENT, MARKETEER
from tests.campaign_helpers import campaign_form_data
from tests.factories import CampaignFactory, GoalFactory


def test_the_migration_creates_the_four_roles(db):
    groups = {group.name: set(group.permissions.values_list("codename", flat=True)) for group in Group.objects.all()}
    assert {MARKETEER, ANALYST, CALLCENTER_AGENT, ADMINISTRATOR} <= set(groups)
    assert {"change_campaign", "change_goal", "add_contact"} <= groups[MARKETEER]
    assert {"view_campaign", "view_goal", "view_contact"} <= groups[ANALYST]
    # Analysts read: view, and list every contact; they decide which prediction model writes the scores.
    assert {code for code in groups[ANALYST] if not code.startswith("view_")} == {
        "browse_contact",
        "activate_predictionmodel",
    }
    assert "activate_predictionmodel" not in groups[MARKETEER] | groups[CALLCENTER_AGENT]
    assert "activate_predictionmodel" in groups[ADMINISTRATOR]
    assert "change_campaign" not in groups[CALLCENTER_AGENT]
    # Agents look contacts up one at a time, and alone ask for next-best offers.
    assert "browse_contact" not in groups[CALLCENTER_AGENT]
    assert "use_next_best_offer" in groups[CALLCENTER_AGENT]
    assert "use_next_best_offer" not in groups[MARKETEER] | groups[ANALYST]
    assert {"use_next_best_offer", "browse_contact"} <= groups[ADMINISTRATOR]
    assert "change_goal" not in groups[CALLCENTER_AGENT]
    assert {"view_contact", "add_event"} <= groups[CALLCENTER_AGENT]
    assert {"change_user", "change_group", "change_campaign"} <= groups[ADMINISTRATOR]
    # Marketeers change when planned work runs, not which task runs.
    assert {"change_crontabschedule", "add_intervalschedule", "view_periodictask"} <= groups[MARKETEER]
    assert "change_periodictask" not in groups[MARKETEER]
    assert "add_periodictask" not in groups[MARKETEER]


def test_the_roles_migration_creates_the_groups_from_nothing(db):
    import importlib

    from django.apps import apps

    Group.objects.all().delete()
    migration = importlib.import_module("dialoog.migrations.0001_roles")

    migration.create_roles(apps, schema_editor=None)

    marketeer = Group.objects.get(name=MARKETEER)
    assert marketeer.permissions.filter(codename="change_campaign").exists()
    assert Group.objects.get(name=CALLCENTER_AGENT).permissions.filter(codename="view_contact").exists()


def test_roles_are_set_to_what_the_code_says(db):
    from django.apps import apps
    from django.contrib.auth.models import Permission

    from dialoog.roles import roles_sync

    agent = Group.objects.get(name=CALLCENTER_AGENT)
    agent.permissions.add(Permission.objects.get(codename="change_campaign"))

    roles_sync(apps=apps)

    assert not agent.permissions.filter(codename="change_campaign").exists()


@pytest.mark.parametrize("role_fixture", ["agent", "analyst"])
@pytest.mark.parametrize(
    ("factory", "url_name", "field"),
    [(CampaignFactory, "admin:campaigns_campaign_change", "name"), (GoalFactory, "admin:goals_goal_change", "name")],
)
def test_agent_and_analyst_cannot_change_campaigns_or_goals_in_the_admin(
    request, client, role_fixture, factory, url_name, field
):
    user = request.getfixturevalue(role_fixture)
    obj = factory(name="Voor de test")
    client.force_login(user)
    url = reverse(url_name, args=[obj.pk])

    response = client.post(url, {field: "Veranderd"})

    assert response.status_code == 403
    obj.refresh_from_db()
    assert obj.name == "Voor de test"


def test_analyst_reads_a_campaign_in_the_admin_without_a_save_button(client, analyst):
    campaign = CampaignFactory(name="Zomeractie")
    client.force_login(analyst)

    response = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))

    assert response.status_code == 200
    assert "Zomeractie" in response.content.decode()
    assert 'name="_save"' not in response.content.decode()


def test_agent_cannot_open_goals_in_the_admin(client, agent):
    goal = GoalFactory()
    client.force_login(agent)
    assert client.get(reverse("admin:goals_goal_change", args=[goal.pk])).status_code == 403


def test_marketeer_changes_a_campaign_in_the_admin(client, marketeer):
    campaign = CampaignFactory(name="Oud")
    client.force_login(marketeer)

    response = client.post(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
        campaign_form_data(campaign, name="Nieuw"),
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    campaign.refresh_from_db()
    assert campaign.name == "Nieuw"


@pytest.mark.parametrize("role_fixture", ["agent", "analyst"])
@pytest.mark.parametrize(("factory", "route"), [(CampaignFactory, "campaign"), (GoalFactory, "goal")])
def test_agent_and_analyst_cannot_change_through_the_api(db, request, api_client_for, role_fixture, factory, route):
    obj = factory(name="Voor de test")
    client = api_client_for(request.getfixturevalue(role_fixture))
    url = reverse(f"{route}-detail", args=[obj.pk])

    patch = client.patch(url, {"name": "Veranderd"}, format="json")
    delete = client.delete(url)

    assert patch.status_code == 403
    assert delete.status_code == 403
    assert patch.json()["errors"][0]["code"] == "permission_denied"
    obj.refresh_from_db()
    assert obj.name == "Voor de test"


def test_analyst_reads_goals_and_campaigns_through_the_api(api_client_for, analyst):
    goal = GoalFactory(name="Minder churn")
    CampaignFactory(goal=goal, name="Winback")
    client = api_client_for(analyst)

    goals = client.get(reverse("goal-list"))
    campaigns = client.get(reverse("campaign-list"))
    detail = client.get(reverse("goal-detail", args=[goal.pk]))

    assert goals.status_code == campaigns.status_code == detail.status_code == 200
    assert [row["name"] for row in goals.json()["results"]] == ["Minder churn"]
    assert [row["name"] for row in campaigns.json()["results"]] == ["Winback"]
    assert detail.json()["name"] == "Minder churn"


def test_agent_reads_campaigns_but_not_goals_through_the_api(api_client_for, agent):
    CampaignFactory()
    client = api_client_for(agent)
    assert client.get(reverse("campaign-list")).status_code == 200
    assert client.get(reverse("goal-list")).status_code == 403


def test_marketeer_changes_a_goal_through_the_api(api_client_for, marketeer):
    goal = GoalFactory(name="Oud")
    response = api_client_for(marketeer).patch(reverse("goal-detail", args=[goal.pk]), {"name": "Nieuw"}, format="json")
    assert response.status_code == 200
    goal.refresh_from_db()
    assert goal.name == "Nieuw"
