"""The campaign page: saved through the services, and the buttons that move its status."""

import pytest
from django.urls import reverse

from campaigns.models import Campaign, CampaignRun, ContactPolicy
from tests.campaign_helpers import campaign_for, campaign_form_data, customer, send_everything

pytestmark = pytest.mark.django_db


@pytest.fixture
def as_marketeer(english_client, marketeer):
    return english_client(marketeer)


def status_url(campaign, action):
    return reverse("admin:campaigns_campaign_status", args=[campaign.pk, action])


def test_activating_without_a_goal_says_so_and_changes_nothing(as_marketeer):
    campaign = campaign_for([customer()])
    Campaign.objects.filter(pk=campaign.pk).update(goal=None)

    response = as_marketeer.post(status_url(campaign, "activate"), follow=True)

    assert "Goal: Choose the goal this campaign serves." in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT
    assert not CampaignRun.objects.filter(campaign=campaign).exists()


def test_the_buttons_activate_pause_resume_and_cancel_by_post_only(as_marketeer):
    campaign = campaign_for([customer()])
    page = as_marketeer.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert status_url(campaign, "activate") in page
    assert status_url(campaign, "pause") not in page

    assert as_marketeer.get(status_url(campaign, "activate")).status_code == 405
    as_marketeer.post(status_url(campaign, "activate"))
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING

    for action, status in [("pause", "paused"), ("resume", "running"), ("cancel", "cancelled")]:
        response = as_marketeer.post(status_url(campaign, action), follow=True)
        campaign.refresh_from_db()
        assert campaign.status == status
        assert f"The campaign is {status}." in response.content.decode()


def test_an_analyst_cannot_press_the_buttons(english_client, analyst):
    campaign = campaign_for([customer()])

    response = english_client(analyst).post(status_url(campaign, "activate"))

    assert response.status_code == 403
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT


def test_the_page_shows_what_a_run_planned_and_sent(as_marketeer):
    campaign = campaign_for([customer() for _ in range(12)])
    as_marketeer.post(status_url(campaign, "activate"))
    send_everything()
    run = CampaignRun.objects.get(campaign=campaign)

    page = as_marketeer.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()

    assert "<th>planned</th>" in page
    assert f"<td>{run.planned}</td><td>{run.held_out}</td>" in page


def test_a_live_campaign_keeps_its_audience_and_says_so_on_the_field(as_marketeer):
    campaign = campaign_for([customer()])
    as_marketeer.post(status_url(campaign, "activate"))
    campaign.refresh_from_db()

    response = as_marketeer.post(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
        campaign_form_data(campaign, channels="email,sms"),
    )

    assert response.status_code == 200
    assert "keeps what it sends and to whom" in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.channels == ["email"]


def test_the_contact_policy_is_one_row_opened_from_its_list(as_marketeer):
    response = as_marketeer.get(reverse("admin:campaigns_contactpolicy_changelist"))

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:campaigns_contactpolicy_change", args=[1])
    assert ContactPolicy.objects.count() == 1
