"""Activating a campaign: every check at once, by field, nothing changed when one fails; the
transitions of its status; the contact policies applied at send time."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings
from django.utils import timezone

from campaigns.channels import locmem
from campaigns.models import Campaign, CampaignRun, ContactPolicy, Delivery
from campaigns.services import campaign_activate, campaign_cancel, campaign_pause, campaign_resume
from campaigns.services.policies import contact_policy, quiet_until, throttle_take
from content.models import Template
from content.services import template_version_create
from tests.campaign_helpers import campaign_for, customer, message_with, send_everything
from tests.factories import MessageFactory, TemplateFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _empty_outbox():
    locmem.outbox.clear()
    yield
    locmem.outbox.clear()


def refusal(campaign):
    with pytest.raises(ValidationError) as caught:
        campaign_activate(campaign=campaign)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT
    assert campaign.experiment is None
    assert not CampaignRun.objects.filter(campaign=campaign).exists()
    return caught.value.message_dict


def test_a_campaign_without_a_goal_is_refused_on_its_goal(english):
    campaign = campaign_for([customer()])
    campaign.goal = None
    campaign.save()

    assert refusal(campaign)["goal"] == ["Choose the goal this campaign serves."]


def test_an_empty_audience_is_refused(english):
    campaign = campaign_for([])

    assert "Nobody is in the audience" in refusal(campaign)["include_segments"][0]


def test_a_campaign_without_segments_is_refused(english):
    campaign = campaign_for([customer()])
    campaign.include_segments.clear()

    assert refusal(campaign)["include_segments"] == ["Choose the segments the campaign is for."]


def test_a_template_that_fails_its_checks_is_refused_with_the_line(english):
    message = MessageFactory()
    template = TemplateFactory(message=message, channel=Template.Channel.EMAIL)
    template_version_create(template=template, language="nl", subject="Hoi", html="<p>{{ contact.first_name </p>")
    campaign = campaign_for([customer()], message=message)

    problems = refusal(campaign)["message"]
    assert any("line 1" in problem for problem in problems)


def test_a_missing_template_for_a_channel_is_refused(english):
    campaign = campaign_for([customer(phone=True, consent=("sms",))], channels=("sms",), message=message_with())

    assert refusal(campaign)["message"][0].endswith("has no sms template.")


def test_a_moment_in_the_past_is_refused(english):
    campaign = campaign_for([customer()], send_at=timezone.now() - dt.timedelta(days=1))

    assert "has passed" in refusal(campaign)["send_at"][0]


@override_settings(CAMPAIGN_CHANNELS={"email": {"BACKEND": "campaigns.channels.locmem.LocmemChannel"}})
def test_a_channel_without_a_backend_is_refused(english):
    campaign = campaign_for(
        [customer(phone=True, consent=("sms",))], channels=("email", "sms"), message=message_with(sms=True)
    )

    assert refusal(campaign)["channels"] == [
        "No backend is configured for the SMS channel: ask an administrator to set one up."
    ]


def test_no_holdout_needs_a_reason(english):
    campaign = campaign_for([customer()], holdout_percent=0)

    assert "Say why" in refusal(campaign)["holdout_off_reason"][0]


def test_a_recurring_campaign_needs_a_schedule_and_a_triggered_one_an_event(english):
    recurring = campaign_for([customer()], kind=Campaign.Kind.RECURRING)
    triggered = campaign_for([customer()], kind=Campaign.Kind.TRIGGERED)

    assert refusal(recurring)["schedule"] == ["A recurring campaign needs a schedule."]
    assert refusal(triggered)["trigger_event_type"][0].startswith("Choose the event that starts the send")


def test_activation_makes_the_measurement_with_the_holdout_and_schedules_the_run():
    later = timezone.now() + dt.timedelta(hours=2)
    campaign = campaign_for([customer()], send_at=later, holdout_percent=20)

    campaign = campaign_activate(campaign=campaign)

    assert campaign.status == Campaign.Status.SCHEDULED
    assert campaign.experiment.goal == campaign.goal
    assert campaign.experiment.holdout_percent == 20
    run = CampaignRun.objects.get(campaign=campaign)
    assert run.scheduled_for == later
    send_everything()  # not due yet: nothing is planned
    run.refresh_from_db()
    assert run.status == CampaignRun.Status.SCHEDULED
    assert not Delivery.objects.filter(run=run).exists()


def test_the_status_only_moves_along_its_transitions(english):
    campaign = campaign_activate(campaign=campaign_for([customer()]))
    assert campaign.status == Campaign.Status.RUNNING

    campaign = campaign_pause(campaign=campaign)
    assert campaign.status == Campaign.Status.PAUSED
    campaign = campaign_resume(campaign=campaign)
    assert campaign.status == Campaign.Status.RUNNING
    campaign = campaign_cancel(campaign=campaign)
    assert campaign.status == Campaign.Status.CANCELLED
    with pytest.raises(ValidationError, match=r"A campaign that is cancelled cannot become running\."):
        campaign_resume(campaign=campaign)


def test_two_hands_on_the_same_campaign_move_it_once(english):
    campaign = campaign_activate(campaign=campaign_for([customer()]))
    stale = Campaign.objects.get(pk=campaign.pk)
    campaign_pause(campaign=campaign)

    with pytest.raises(ValidationError, match="changed in the meantime: it is now paused"):
        campaign_pause(campaign=stale)


def test_a_cancelled_campaign_s_run_is_not_sent():
    campaign = campaign_activate(campaign=campaign_for([customer()], holdout_percent=0, holdout_off_reason="test"))
    campaign_cancel(campaign=campaign)

    send_everything()

    assert locmem.outbox == []
    assert CampaignRun.objects.get(campaign=campaign).status == CampaignRun.Status.CANCELLED


# --- Contact policies ----------------------------------------------------------------------------

AMSTERDAM = ZoneInfo("Europe/Amsterdam")


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        (dt.datetime(2026, 12, 2, 8, 59, tzinfo=AMSTERDAM), dt.datetime(2026, 12, 2, 9, 0, tzinfo=AMSTERDAM)),
        (dt.datetime(2026, 12, 2, 9, 0, tzinfo=AMSTERDAM), None),
        (dt.datetime(2026, 12, 2, 20, 59, tzinfo=AMSTERDAM), None),
        (dt.datetime(2026, 12, 2, 21, 0, tzinfo=AMSTERDAM), dt.datetime(2026, 12, 3, 9, 0, tzinfo=AMSTERDAM)),
        # Saturday evening waits for Monday morning: no calls or SMS on Sunday.
        (dt.datetime(2026, 12, 5, 22, 0, tzinfo=AMSTERDAM), dt.datetime(2026, 12, 7, 9, 0, tzinfo=AMSTERDAM)),
        (dt.datetime(2026, 12, 6, 12, 0, tzinfo=AMSTERDAM), dt.datetime(2026, 12, 7, 9, 0, tzinfo=AMSTERDAM)),
    ],
)
def test_quiet_hours_are_the_contact_s_own_and_wait_for_the_next_allowed_moment(local, expected):
    policy = contact_policy()

    found = quiet_until(policy=policy, channel="sms", zone=AMSTERDAM, now=local.astimezone(dt.UTC))

    assert found == (expected.astimezone(dt.UTC) if expected else None)
    assert quiet_until(policy=policy, channel="email", zone=AMSTERDAM, now=local.astimezone(dt.UTC)) is None


def test_quiet_hours_follow_the_contact_s_timezone():
    policy = contact_policy()
    noon_in_amsterdam = dt.datetime(2026, 12, 2, 12, 0, tzinfo=AMSTERDAM)

    # Noon in Amsterdam is 06:00 in New York: too early there.
    waiting = quiet_until(policy=policy, channel="sms", zone=ZoneInfo("America/New_York"), now=noon_in_amsterdam)

    assert waiting == dt.datetime(2026, 12, 2, 9, 0, tzinfo=ZoneInfo("America/New_York")).astimezone(dt.UTC)


def test_an_sms_in_quiet_hours_waits_and_is_sent_once_they_are_over(time_machine):
    time_machine.move_to(dt.datetime(2026, 12, 2, 22, 0, tzinfo=AMSTERDAM), tick=False)
    contact = customer(email=False, phone=True, consent=("sms",), timezone="Europe/Amsterdam")
    campaign = campaign_activate(
        campaign=campaign_for([contact], channels=("sms",), holdout_percent=0, holdout_off_reason="test")
    )

    send_everything()
    delivery = Delivery.objects.get(campaign=campaign)
    assert delivery.status == Delivery.Status.QUEUED
    assert delivery.reason == "quiet_hours"
    assert delivery.next_attempt_at == dt.datetime(2026, 12, 3, 9, 0, tzinfo=AMSTERDAM)
    assert locmem.outbox == []

    time_machine.move_to(dt.datetime(2026, 12, 3, 9, 1, tzinfo=AMSTERDAM), tick=False)
    send_everything()
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SENT
    assert [m.delivery_id for m in locmem.outbox] == [delivery.pk]


def test_the_frequency_cap_counts_every_campaign_s_messages():
    ContactPolicy.objects.update_or_create(pk=1, defaults={"cap_total": 2, "cap_per_channel": 2, "quiet_channels": []})
    contact = customer()
    for _campaign in range(3):
        campaign_activate(campaign=campaign_for([contact], holdout_percent=0, holdout_off_reason="test"))
        send_everything()

    statuses = list(Delivery.objects.filter(contact=contact).order_by("pk").values_list("status", "reason"))
    assert statuses == [("sent", ""), ("sent", ""), ("held_back", "frequency_cap")]


def test_a_throttle_grants_at_most_its_limit_a_minute_over_every_caller():
    now = timezone.now()

    first, _next = throttle_take(key="channel:sms", limit=10, want=7, now=now)
    second, next_minute = throttle_take(key="channel:sms", limit=10, want=7, now=now)
    third, _next = throttle_take(key="channel:sms", limit=10, want=7, now=next_minute)

    assert (first, second, third) == (7, 3, 7)
    assert next_minute == now.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)


def test_a_throttled_campaign_sends_its_limit_and_the_rest_the_next_minute(time_machine):
    time_machine.move_to(dt.datetime(2026, 12, 2, 10, 0, 5, tzinfo=AMSTERDAM), tick=False)
    contacts = [customer() for _ in range(5)]
    campaign = campaign_activate(
        campaign=campaign_for(contacts, holdout_percent=0, holdout_off_reason="test", throttle_per_minute=3)
    )

    send_everything()
    assert len(locmem.outbox) == 3
    assert Delivery.objects.filter(campaign=campaign, reason="throttled", status="queued").count() == 2

    time_machine.move_to(dt.datetime(2026, 12, 2, 10, 1, 1, tzinfo=AMSTERDAM), tick=False)
    send_everything()
    assert sorted(m.delivery_id for m in locmem.outbox) == sorted(
        Delivery.objects.filter(campaign=campaign).values_list("pk", flat=True)
    )
