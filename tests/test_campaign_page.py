"""The campaign page: its audience, progress and funnel after a real send, its buttons, and the
print files and call lists to download."""

import csv
import datetime as dt
import io

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from campaigns.channels.callcenter import CALL_LIST_COLUMNS
from campaigns.channels.direct_mail import COLUMNS
from campaigns.models import CampaignRun, ContactPolicy, Delivery
from campaigns.tracking.services import delivery_click_record, delivery_open_record
from tests.campaign_helpers import activated, campaign_for, customer, message_with, send_everything, tick
from tests.factories import EventFactory, UserFactory
from tests.test_channel_direct_mail import _address, print_folder  # noqa: F401 - print_folder is a fixture

pytestmark = pytest.mark.django_db


@pytest.fixture
def as_marketeer(english_client, marketeer):
    return english_client(marketeer)


@pytest.fixture
def call_lists(settings):
    settings.CAMPAIGN_CHANNELS = {
        **settings.CAMPAIGN_CHANNELS,
        "callcenter": {"BACKEND": "campaigns.channels.callcenter.CallListChannel"},
    }
    ContactPolicy.objects.update_or_create(pk=1, defaults={"quiet_channels": []})


def change_url(campaign):
    return reverse("admin:campaigns_campaign_change", args=[campaign.pk])


def viewer_of_campaigns_only():
    user = UserFactory()
    user.user_permissions.add(Permission.objects.get(codename="view_campaign"))
    return user


def test_after_a_send_the_page_shows_audience_progress_and_funnel(as_marketeer):
    contacts = [customer() for _ in range(20)] + [customer(consent=()) for _ in range(6)]
    campaign = activated(campaign_for(contacts))
    send_everything()
    run = CampaignRun.objects.get(campaign=campaign)
    sent = list(Delivery.objects.filter(campaign=campaign, status=Delivery.Status.SENT).order_by("pk"))
    EventFactory(contact_id=sent[0].contact_id, occurred_at=sent[0].sent_at + dt.timedelta(days=1))
    delivery_open_record(delivery_id=sent[0].pk)
    delivery_open_record(delivery_id=sent[1].pk)
    delivery_click_record(delivery_id=sent[1].pk, url="https://shop.example.nl/najaar")

    response = as_marketeer.get(change_url(campaign))

    figures = response.context["campaign_figures"]
    totals = figures["totals"]
    assert (totals["runs"], totals["planned"], totals["held_out"]) == (1, run.planned, run.held_out)
    assert totals["excluded"] == run.excluded
    assert run.planned + run.held_out + sum(run.excluded.values()) == len(contacts)
    [email] = figures["progress"]
    held_back = Delivery.objects.filter(campaign=campaign, status=Delivery.Status.HELD_BACK).count()
    assert (email["row"].sent, email["row"].held_back, email["row"].queued) == (len(sent), held_back, 0)
    assert (email["row"].opened, email["row"].clicked) == (2, 1)
    assert figures["funnel"]["converted"] == 1
    html = response.content.decode()
    assert f'<dd class="campaign-planned">{run.planned}</dd>' in html
    assert f'<dd class="campaign-holdout">{run.held_out}</dd>' in html
    assert run.excluded["no_consent"] > 0  # those without consent who were not drawn for the holdout
    assert "no consent for the channel" in html
    assert '<td class="number campaign-converted">1 <span class="quiet">' in html
    assert "uplift" in html.lower()


def test_while_sending_the_page_shows_what_is_still_queued(as_marketeer):
    campaign = activated(campaign_for([customer() for _ in range(6)], holdout_percent=0, holdout_off_reason="test"))
    tick()  # planned and batched, not sent yet

    figures = as_marketeer.get(change_url(campaign)).context["campaign_figures"]

    [email] = figures["progress"]
    assert email["row"].queued == CampaignRun.objects.get(campaign=campaign).planned == 6
    assert email["row"].sent == 0


def test_a_draft_shows_its_audience_now(as_marketeer):
    campaign = campaign_for([customer() for _ in range(4)])

    response = as_marketeer.get(change_url(campaign))

    assert response.context["campaign_figures"]["audience_now"] == 4
    assert '<dd class="campaign-audience-now">4</dd>' in response.content.decode()


def test_a_viewer_gets_no_buttons_and_may_not_press_them(english_client, analyst):
    campaign = campaign_for([customer()])
    client = english_client(analyst)

    html = client.get(change_url(campaign)).content.decode()

    test_send = reverse("admin:campaigns_campaign_test_send", args=[campaign.pk])
    assert test_send not in html
    assert reverse("admin:campaigns_campaign_status", args=[campaign.pk, "activate"]) not in html
    assert client.get(test_send).status_code == 403
    assert client.post(test_send, {"addresses": "test@example.nl"}).status_code == 403
    for action in ("activate", "pause", "resume", "cancel"):
        assert client.post(reverse("admin:campaigns_campaign_status", args=[campaign.pk, action])).status_code == 403


def test_the_marketeer_gets_every_button_that_fits_the_status(as_marketeer):
    campaign = campaign_for([customer()])

    html = as_marketeer.get(change_url(campaign)).content.decode()

    assert reverse("admin:campaigns_campaign_test_send", args=[campaign.pk]) in html
    assert reverse("admin:campaigns_campaign_status", args=[campaign.pk, "activate"]) in html
    assert reverse("admin:campaigns_campaign_status", args=[campaign.pk, "cancel"]) in html
    assert reverse("admin:campaigns_campaign_status", args=[campaign.pk, "resume"]) not in html


@pytest.mark.usefixtures("print_folder")
def test_a_direct_mail_run_has_its_print_file_to_download(as_marketeer):
    contacts = [customer(consent=(), first_name=f"Door{n}", attributes=_address(n)) for n in range(4)]
    campaign = activated(
        campaign_for(
            contacts,
            channels=("direct_mail",),
            message=message_with(email=False),
            holdout_percent=0,
            holdout_off_reason="test",
        )
    )
    send_everything()
    run = CampaignRun.objects.get(campaign=campaign)
    url = reverse("admin:campaigns_campaign_print_file", args=[campaign.pk, run.pk])

    assert url in as_marketeer.get(change_url(campaign)).content.decode()
    response = as_marketeer.get(url)

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert f"-run-{run.pk}-print-file.csv" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert list(rows[0]) == list(COLUMNS)
    assert sorted(row["first_name"] for row in rows) == sorted(contact.first_name for contact in contacts)


@pytest.mark.usefixtures("print_folder")
def test_a_run_of_another_campaign_has_no_print_file_here(as_marketeer):
    mailing = campaign_for([customer(consent=())], channels=("direct_mail",), message=message_with(email=False))
    other = activated(campaign_for([customer()]))
    send_everything()
    run = CampaignRun.objects.get(campaign=other)

    assert (
        as_marketeer.get(reverse("admin:campaigns_campaign_print_file", args=[mailing.pk, run.pk])).status_code == 404
    )
    response = as_marketeer.get(reverse("admin:campaigns_campaign_print_file", args=[other.pk, run.pk]))
    assert response.status_code == 400  # the campaign sends no direct mail


def test_a_callcenter_campaign_has_its_call_list_to_download(call_lists, as_marketeer):
    contacts = [customer(email=False, phone=True, consent=("phone",), first_name=f"Femke{n}") for n in range(3)]
    campaign = activated(campaign_for(contacts, channels=("callcenter",), holdout_percent=0, holdout_off_reason="test"))
    send_everything()
    url = reverse("admin:campaigns_campaign_call_list", args=[campaign.pk])

    assert f"{url}?status=open" in as_marketeer.get(change_url(campaign)).content.decode()
    response = as_marketeer.get(url, {"status": "open"})

    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert tuple(rows[0]) == CALL_LIST_COLUMNS
    assert sorted(row[1] for row in rows[1:]) == sorted(str(contact) for contact in contacts)
    bad = as_marketeer.get(url, {"status": "everything"})
    assert bad.status_code == 400
    assert "Status: choose one of open, done." in bad.content.decode()


def test_files_are_only_for_those_who_may_see_the_contacts(call_lists, english_client):
    contacts = [customer(email=False, phone=True, consent=("phone",))]
    campaign = activated(campaign_for(contacts, channels=("callcenter",), holdout_percent=0, holdout_off_reason="test"))
    send_everything()
    client = english_client(viewer_of_campaigns_only())
    url = reverse("admin:campaigns_campaign_call_list", args=[campaign.pk])

    page = client.get(change_url(campaign))

    assert page.status_code == 200
    assert url not in page.content.decode()
    assert client.get(url).status_code == 403
