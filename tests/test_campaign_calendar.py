"""The campaign calendar: what every planned campaign sends in the coming weeks, the contact pressure
per segment, the overlaps between campaigns, and the weeks over the frequency cap."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django_celery_beat.models import CrontabSchedule

from campaigns.models import Campaign, ContactPolicy, TriggerEntry
from tests.campaign_helpers import activated, campaign_for, customer, static_segment
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
MONDAY = dt.datetime(2026, 6, 1, 9, 0, tzinfo=AMSTERDAM)
CALENDAR = reverse("admin:campaigns_campaign_calendar")


@pytest.fixture
def monday(time_machine):
    time_machine.move_to(MONDAY, tick=False)
    return MONDAY


@pytest.fixture
def as_marketeer(english_client, marketeer):
    return english_client(marketeer)


def crontab(*, day_of_week="*", hour="10", minute="0"):
    return CrontabSchedule.objects.create(
        minute=minute,
        hour=hour,
        day_of_week=day_of_week,
        day_of_month="*",
        month_of_year="*",
        timezone="Europe/Amsterdam",
    )


def recurring(contacts, *, schedule, **fields):
    return activated(campaign_for(contacts, kind=Campaign.Kind.RECURRING, schedule=schedule, **fields))


def calendar_of(client, weeks=None):
    response = client.get(CALENDAR, {"weeks": weeks} if weeks else {})
    assert response.status_code == 200
    return response, response.context["calendar"]


def plan_of(calendar, campaign):
    [plan] = [plan for plan in calendar.plans if plan.campaign.pk == campaign.pk]
    return plan


def test_a_weekly_campaign_sends_once_a_week_to_its_whole_audience(monday, as_marketeer):
    contacts = [customer() for _ in range(5)]
    campaign = recurring(contacts, schedule=crontab(day_of_week="2"))  # Tuesdays at 10:00

    response, calendar = calendar_of(as_marketeer)

    plan = plan_of(calendar, campaign)
    assert plan.audience == len(contacts)
    assert len(calendar.weeks) == 6
    assert [cell.sends for cell in plan.weeks] == [1] * 6
    assert [cell.messages for cell in plan.weeks] == [len(contacts)] * 6
    assert [cell.per_contact for cell in plan.weeks] == [1] * 6
    assert [week.starts for week in calendar.weeks] == [dt.date(2026, 6, 1) + dt.timedelta(weeks=n) for n in range(6)]
    html = response.content.decode()
    assert campaign.name in html
    assert "5 messages" in html


def test_a_recurring_campaign_stops_at_its_end(monday, as_marketeer):
    campaign = recurring(
        [customer()], schedule=crontab(day_of_week="2"), ends_at=MONDAY + dt.timedelta(days=15)
    )  # ends on Tuesday of the third week, at 09:00: before that day's send

    _response, calendar = calendar_of(as_marketeer)

    assert [cell.sends for cell in plan_of(calendar, campaign).weeks] == [1, 1, 0, 0, 0, 0]


def test_a_one_off_is_in_the_week_it_is_sent(monday, as_marketeer):
    contacts = [customer() for _ in range(3)]
    campaign = activated(campaign_for(contacts, send_at=MONDAY + dt.timedelta(days=15)))
    assert campaign.status == Campaign.Status.SCHEDULED

    _response, calendar = calendar_of(as_marketeer)

    plan = plan_of(calendar, campaign)
    assert [cell.sends for cell in plan.weeks] == [0, 0, 1, 0, 0, 0]
    assert plan.weeks[2].messages == len(contacts)


def test_a_one_off_after_the_weeks_shown_says_when_it_sends(monday, as_marketeer):
    campaign = activated(campaign_for([customer()], send_at=MONDAY + dt.timedelta(weeks=10)))

    response, calendar = calendar_of(as_marketeer)

    assert [cell.sends for cell in plan_of(calendar, campaign).weeks] == [0] * 6
    assert "next send: 10 Aug 2026 09:00" in response.content.decode()


def test_a_draft_is_not_in_the_calendar_and_a_running_one_off_is_now(monday, as_marketeer):
    draft = campaign_for([customer()])
    running = activated(campaign_for([customer()]))

    _response, calendar = calendar_of(as_marketeer)

    assert draft.pk not in {plan.campaign.pk for plan in calendar.plans}
    assert [cell.sends for cell in plan_of(calendar, running).weeks] == [1, 0, 0, 0, 0, 0]


def test_two_campaigns_on_overlapping_segments_show_their_shared_contacts(monday, as_marketeer):
    shared = [customer() for _ in range(3)]
    first = recurring([*shared, customer(), customer()], schedule=crontab(day_of_week="2"))
    second = recurring([*shared, customer()], schedule=crontab(day_of_week="4"))
    apart = recurring([customer()], schedule=crontab(day_of_week="5"))

    response, calendar = calendar_of(as_marketeer)

    [overlap] = calendar.overlaps
    assert {overlap.first.campaign.pk, overlap.second.campaign.pk} == {first.pk, second.pk}
    assert overlap.shared == len(shared)
    assert [cell.per_contact for cell in overlap.weeks] == [2] * 6  # one message of each, every week
    assert calendar.pairs_checked == 3  # every pair sends in the same weeks; only one shares contacts
    assert apart.name in response.content.decode()
    assert 'data-campaigns="' in response.content.decode()


def test_a_segment_counts_the_messages_of_every_campaign_aimed_at_it(monday, as_marketeer):
    contacts = [customer() for _ in range(4)]
    segment = static_segment(contacts, name="Trouwe klanten")
    weekly = recurring(contacts, schedule=crontab(day_of_week="2"))
    weekly.include_segments.set([segment])
    twice = recurring(contacts, schedule=crontab(day_of_week="3,5"))
    twice.include_segments.set([segment])

    _response, calendar = calendar_of(as_marketeer)

    [load] = [load for load in calendar.segments if load.segment.pk == segment.pk]
    assert {plan.campaign.pk for plan in load.campaigns} == {weekly.pk, twice.pk}
    assert [cell.per_contact for cell in load.weeks] == [3] * 6
    assert [cell.messages for cell in load.weeks] == [3 * len(contacts)] * 6


def test_a_campaign_on_two_segments_counts_each_segments_contacts_in_its_audience(monday, as_marketeer):
    both, only_first, only_second, left_out = customer(), customer(), customer(), customer()
    first = static_segment([both, only_first, left_out], name="Eerste")
    second = static_segment([both, only_second], name="Tweede")
    campaign = recurring([both], schedule=crontab(day_of_week="2"))
    campaign.include_segments.set([first, second])
    campaign.exclude_segments.set([static_segment([left_out])])

    _response, calendar = calendar_of(as_marketeer, weeks=1)

    assert plan_of(calendar, campaign).audience == 3
    messages = {load.segment.name: load.weeks[0].messages for load in calendar.segments}
    assert messages == {"Eerste": 2, "Tweede": 2}


def test_weeks_over_the_frequency_cap_are_flagged(monday, as_marketeer):
    ContactPolicy.objects.update_or_create(pk=1, defaults={"cap_total": 3, "cap_per_channel": 3, "cap_days": 7})
    daily = recurring([customer()], schedule=crontab())  # every day: 7 a week, the cap is 3
    weekly = recurring([customer()], schedule=crontab(day_of_week="2"))

    response, calendar = calendar_of(as_marketeer, weeks=2)

    assert [cell.over_cap for cell in plan_of(calendar, daily).weeks] == [True, True]
    assert [cell.per_contact for cell in plan_of(calendar, daily).weeks] == [7, 7]
    assert [cell.over_cap for cell in plan_of(calendar, weekly).weeks] == [False, False]
    assert calendar.week_over_cap == [True, True]
    assert "over the cap" in response.content.decode()


def test_two_overlapping_campaigns_can_together_be_over_the_cap(monday, as_marketeer):
    ContactPolicy.objects.update_or_create(pk=1, defaults={"cap_total": 1, "cap_per_channel": 1, "cap_days": 7})
    contacts = [customer() for _ in range(2)]
    first = recurring(contacts, schedule=crontab(day_of_week="2"))
    second = recurring(contacts, schedule=crontab(day_of_week="4"))

    _response, calendar = calendar_of(as_marketeer, weeks=1)

    assert not plan_of(calendar, first).weeks[0].over_cap
    assert not plan_of(calendar, second).weeks[0].over_cap
    [overlap] = calendar.overlaps
    assert overlap.weeks[0].over_cap
    assert calendar.week_over_cap == [True]


def test_a_triggered_campaign_is_ongoing_with_its_recent_rate(monday, as_marketeer):
    contacts = [customer() for _ in range(10)]
    campaign = activated(campaign_for(contacts, kind=Campaign.Kind.TRIGGERED, trigger_event_type="purchase"))
    Campaign.objects.filter(pk=campaign.pk).update(activated_at=MONDAY - dt.timedelta(days=60))
    TriggerEntry.objects.bulk_create(
        TriggerEntry(
            campaign=campaign,
            contact=contact,
            dedupe_key=str(contact.pk),
            triggered_at=MONDAY - dt.timedelta(days=3 * number + 1),
            due_at=MONDAY - dt.timedelta(days=3 * number),
            status=TriggerEntry.Status.PLANNED,
        )
        for number, contact in enumerate(contacts[:8])  # 8 in the last 28 days: 2 a week
    )

    response, calendar = calendar_of(as_marketeer, weeks=3)

    plan = plan_of(calendar, campaign)
    assert plan.ongoing
    assert plan.weekly_sends == pytest.approx(2)
    assert [cell.messages for cell in plan.weeks] == [2, 2, 2]
    assert "ongoing: about 2 contacts triggered a week lately" in response.content.decode()


def test_the_query_count_does_not_grow_with_the_weeks(monday, as_marketeer, django_assert_max_num_queries):
    shared = [customer() for _ in range(3)]
    recurring([*shared, customer()], schedule=crontab(day_of_week="2"))
    recurring(shared, schedule=crontab(day_of_week="4"))
    activated(campaign_for(shared, send_at=MONDAY + dt.timedelta(days=9)))

    with django_assert_max_num_queries(40) as few:
        calendar_of(as_marketeer, weeks=1)
    with django_assert_max_num_queries(len(few.captured_queries)):
        _response, calendar = calendar_of(as_marketeer, weeks=26)

    assert len(calendar.weeks) == 26


@pytest.mark.parametrize("weeks", ["abc", "0", "27", "-3"])
def test_a_bad_number_of_weeks_says_so_and_shows_the_default(monday, as_marketeer, weeks):
    response, calendar = calendar_of(as_marketeer, weeks=weeks)

    assert "Weeks: give a whole number from 1 to 26; showing 6." in response.content.decode()
    assert len(calendar.weeks) == 6


def test_the_calendar_is_linked_from_the_campaign_list_and_the_dashboard(as_marketeer):
    assert CALENDAR in as_marketeer.get(reverse("admin:campaigns_campaign_changelist")).content.decode()
    assert CALENDAR in as_marketeer.get(reverse("admin:index")).content.decode()


def test_an_analyst_reads_the_calendar_and_someone_without_campaigns_may_not(english_client, analyst):
    assert english_client(analyst).get(CALENDAR).status_code == 200
    assert english_client(UserFactory()).get(CALENDAR).status_code == 403
