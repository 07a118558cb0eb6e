"""The campaigns API: a campaign written through the services, its status moved by the actions
(refusals per field as 400s, a status that does not allow it as a 409), its progress, funnel,
runs and deliveries after a real send, and who may do what."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule

from audiences.services.consents import consent_record
from campaigns.api import DeliveryPagination
from campaigns.models import Campaign, CampaignRun, CampaignVariant, Delivery
from campaigns.selectors import campaign_funnel
from campaigns.services import campaign_pause
from campaigns.services.sending import batch_send
from campaigns.tracking.services import delivery_click_record, delivery_open_record
from content.models import Template
from content.services import template_version_create
from tests.campaign_helpers import (
    activated,
    campaign_for,
    customer,
    message_with,
    send_everything,
    static_segment,
    tick,
)
from tests.factories import EventFactory, GoalFactory, MessageFactory, TemplateFactory, UserFactory

pytestmark = pytest.mark.django_db

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
ACTIONS = ["activate", "pause", "resume", "cancel"]


@pytest.fixture
def api(api_client_for):
    """An API client for the user that asks for English, so that messages read as the code writes them."""

    def make(user):
        client = api_client_for(user)
        client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
        return client

    return make


def payload(contacts=None, *, message=None, **overrides):
    """A campaign that can be activated: a goal, a segment with the contacts, an email message."""
    segment = static_segment(contacts if contacts is not None else [customer()])
    return {
        "name": "Najaarsactie",
        "description": "Twintig procent op de najaarscollectie.",
        "goal": GoalFactory().pk,
        "message": (message or message_with()).pk,
        "channels": ["email"],
        "include_segments": [segment.pk],
        **overrides,
    }


def errors_of(response):
    return {error["field"]: error for error in response.json()["errors"]}


def detail_url(campaign, action=None):
    if action is None:
        return reverse("campaign-detail", args=[campaign.pk])
    return reverse(f"campaign-{action}", args=[campaign.pk])


# --- Create and change ---------------------------------------------------------------------


def test_creating_a_campaign_makes_a_draft_with_what_was_sent(api, marketeer):
    body = payload(status="running", send_at=(timezone.now() + dt.timedelta(days=2)).isoformat())

    response = api(marketeer).post(reverse("campaign-list"), body, format="json")

    assert response.status_code == 201, response.json()
    created = response.json()
    campaign = Campaign.objects.get(pk=created["id"])
    assert campaign.status == created["status"] == "draft"  # status moves only through the actions
    assert (campaign.name, campaign.goal_id, campaign.message_id) == (body["name"], body["goal"], body["message"])
    assert created["include_segments"] == body["include_segments"] == [s.pk for s in campaign.include_segments.all()]
    assert created["exclude_segments"] == []
    assert campaign.channels == created["channels"] == ["email"]
    assert dt.datetime.fromisoformat(created["send_at"]) == campaign.send_at
    assert created["progress"] == {"queued": 0, "sent": 0, "failed": 0, "held_back": 0, "holdout": 0}
    assert created["funnel"]["sent"] == 0
    assert created["schedule"] is None
    assert created["activated_at"] is None


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"name": ""}, "name", "blank"),
        ({"channels": ["email", "fax"]}, "channels.1", "not a valid choice"),
        ({"goal": 999999}, "goal", "does not exist"),
        ({"include_segments": [999999]}, "include_segments", "does not exist"),
        ({"holdout_percent": "80"}, "holdout_percent", "less than or equal to 50"),
        ({"trigger_event_type": "birthday"}, "trigger_event_type", "not a valid choice"),
        ({"trigger_filters": ["tuin"]}, "trigger_filters", "dictionary"),
        ({"send_at": "morgen"}, "send_at", "wrong format"),
        ({"kind": "recurring", "schedule": {"crontab": "0 9 * *"}}, "schedule", "five fields"),
        ({"kind": "recurring", "schedule": {"crontab": "0 25 * * *"}}, "schedule", "cannot be read"),
        ({"kind": "recurring", "schedule": {"crontab": "0 9 * * 1", "timezone": "Mars/Olympus"}}, "schedule", "zone"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_nothing_is_saved(api, marketeer, change, field, says):
    schedules = CrontabSchedule.objects.count()

    response = api(marketeer).post(reverse("campaign-list"), payload(**change), format="json")

    assert response.status_code == 400
    errors = errors_of(response)
    assert list(errors) == [field]
    assert says in errors[field]["message"]
    assert not Campaign.objects.exists()
    assert CrontabSchedule.objects.count() == schedules


def test_a_recurring_schedule_is_a_crontab_with_its_timezone_made_once_and_reused(api, marketeer):
    client = api(marketeer)
    # One a marketeer made in the beat admin earlier, for Mondays at 09:00.
    existing = CrontabSchedule.objects.create(
        minute="0", hour="9", day_of_month="*", month_of_year="*", day_of_week="1"
    )
    schedules = CrontabSchedule.objects.count()
    mondays = {"crontab": "0 9 * * 1", "timezone": "Europe/Amsterdam"}

    first = client.post(reverse("campaign-list"), payload(kind="recurring", schedule=mondays), format="json").json()
    second = client.post(
        reverse("campaign-list"), payload(kind="recurring", schedule={"crontab": "30 8 1 * *"}), format="json"
    ).json()

    assert first["schedule"]["id"] == existing.pk
    assert (first["schedule"]["crontab"], first["schedule"]["timezone"]) == ("0 9 * * 1", "Europe/Amsterdam")
    upcoming = [dt.datetime.fromisoformat(moment).astimezone(AMSTERDAM) for moment in first["schedule"]["upcoming"]]
    assert len(upcoming) == 3
    assert upcoming == sorted(upcoming) and upcoming[0] > timezone.now()
    assert all((moment.weekday(), moment.hour, moment.minute) == (0, 9, 0) for moment in upcoming)
    made = CrontabSchedule.objects.get(pk=second["schedule"]["id"])
    assert (made.minute, made.hour, made.day_of_month, str(made.timezone)) == ("30", "8", "1", "Europe/Amsterdam")
    assert CrontabSchedule.objects.count() == schedules + 1

    campaign = Campaign.objects.get(pk=first["id"])
    activated_body = client.post(detail_url(campaign, "activate")).json()
    assert activated_body["status"] == "running"
    cleared = client.patch(detail_url(Campaign.objects.get(pk=second["id"])), {"schedule": None}, format="json")
    assert cleared.json()["schedule"] is None


def test_a_draft_changes_through_the_service(api, marketeer):
    campaign = campaign_for([customer()])
    other = static_segment([customer()])

    response = api(marketeer).patch(
        detail_url(campaign),
        {"name": "Winteractie", "exclude_segments": [other.pk], "holdout_percent": "20", "trigger_delay": "P3D"},
        format="json",
    )

    assert response.status_code == 200, response.json()
    campaign.refresh_from_db()
    assert campaign.name == response.json()["name"] == "Winteractie"
    assert list(campaign.exclude_segments.all()) == [other]
    assert campaign.holdout_percent == 20
    assert campaign.trigger_delay == dt.timedelta(days=3)
    assert response.json()["trigger_delay"] == "3 00:00:00"


def test_a_live_campaign_changes_its_pace_but_keeps_what_it_sends(api, marketeer):
    campaign = activated(campaign_for([customer()], send_at=timezone.now() + dt.timedelta(days=1)))
    client = api(marketeer)
    url = detail_url(campaign)

    refused = client.patch(url, {"message": message_with().pk, "name": "Nieuw"}, format="json")
    # What a client read, sent back with a new name and pace: the unchanged rest is no change.
    as_read = client.get(url).json()
    changed = client.put(url, {**as_read, "name": "Nieuw", "throttle_per_minute": 100}, format="json")

    assert refused.status_code == 400
    assert list(errors_of(refused)) == ["message"]
    assert "keeps what it sends and to whom" in errors_of(refused)["message"]["message"]
    assert changed.status_code == 200, changed.json()
    campaign.refresh_from_db()
    assert (campaign.name, campaign.throttle_per_minute) == ("Nieuw", 100)
    assert campaign.status == Campaign.Status.SCHEDULED


# --- Activation refused, per field ------------------------------------------------------------


def without(body, name):
    return {key: value for key, value in body.items() if key != name}


def broken_template_message():
    message = MessageFactory()
    template = TemplateFactory(message=message, channel=Template.Channel.EMAIL)
    template_version_create(template=template, language="nl", subject="Hoi", html="<p>{{ contact.first_name </p>")
    return message


@pytest.mark.parametrize(
    ("make_body", "field", "says"),
    [
        (lambda: payload(goal=None), "goal", "Choose the goal this campaign serves."),
        (lambda: payload([]), "include_segments", "Nobody is in the audience"),
        (lambda: payload(include_segments=[]), "include_segments", "Choose the segments the campaign is for."),
        (lambda: payload(message=broken_template_message()), "message", "line 1"),
        (lambda: without(payload(), "message"), "message", "Choose the message the campaign sends."),
        (lambda: payload(send_at=(timezone.now() - dt.timedelta(days=1)).isoformat()), "send_at", "has passed"),
        (lambda: payload(channels=[]), "channels", "Choose at least one channel"),
        (lambda: payload(holdout_percent="0"), "holdout_off_reason", "Say why this campaign has no holdout"),
        (lambda: payload(kind="recurring"), "schedule", "A recurring campaign needs a schedule."),
        (lambda: payload(kind="triggered"), "trigger_event_type", "Choose the event that starts the send"),
    ],
)
def test_activating_an_incomplete_campaign_is_a_400_per_field_and_changes_nothing(
    api, marketeer, make_body, field, says
):
    client = api(marketeer)
    created = client.post(reverse("campaign-list"), make_body(), format="json")
    assert created.status_code == 201, created.json()
    campaign = Campaign.objects.get(pk=created.json()["id"])

    response = client.post(detail_url(campaign, "activate"))

    assert response.status_code == 400
    assert response.json()["type"] == "validation_error"
    errors = [error for error in response.json()["errors"] if error["field"] == field]
    assert errors, response.json()
    assert any(says in error["message"] for error in errors)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT
    assert campaign.experiment is None
    assert not campaign.runs.exists()


@override_settings(CAMPAIGN_CHANNELS={"email": {"BACKEND": "campaigns.channels.locmem.LocmemChannel"}})
def test_activating_over_a_channel_without_a_backend_is_a_400_on_channels(api, marketeer):
    client = api(marketeer)
    body = payload([customer(phone=True, consent=("email", "sms"))], message=message_with(sms=True))
    campaign_id = client.post(reverse("campaign-list"), {**body, "channels": ["email", "sms"]}, format="json").json()[
        "id"
    ]

    response = client.post(reverse("campaign-activate", args=[campaign_id]))

    assert response.status_code == 400
    assert errors_of(response)["channels"]["message"] == (
        "No backend is configured for the SMS channel: ask an administrator to set one up."
    )
    assert Campaign.objects.get(pk=campaign_id).status == Campaign.Status.DRAFT


# --- The actions ---------------------------------------------------------------------------------


def test_the_actions_move_the_status_and_answer_with_the_campaign(api, marketeer):
    campaign = campaign_for([customer()], send_at=timezone.now() + dt.timedelta(hours=2))
    client = api(marketeer)

    answers = {action: client.post(detail_url(campaign, action)) for action in ["activate", "pause", "resume"]}

    assert {action: answer.status_code for action, answer in answers.items()} == dict.fromkeys(answers, 200)
    activated_body = answers["activate"].json()
    assert activated_body["status"] == "scheduled"  # a one-off with a later send_at waits for it
    assert activated_body["activated_at"] and activated_body["experiment"]
    assert answers["pause"].json()["status"] == "paused"
    assert answers["resume"].json()["status"] == "scheduled"  # nothing started yet: it waits again
    cancelled = client.post(detail_url(campaign, "cancel"))
    assert cancelled.json()["status"] == "cancelled"
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.CANCELLED
    assert campaign.runs.get().status == CampaignRun.Status.CANCELLED


def test_activating_twice_is_a_409_that_says_only_a_draft_can_be_activated(api, marketeer):
    campaign = campaign_for([customer()])
    client = api(marketeer)

    first = client.post(detail_url(campaign, "activate"))
    second = client.post(detail_url(campaign, "activate"))

    assert first.status_code == 200
    assert second.status_code == 409
    assert second.json()["type"] == "client_error"
    assert second.json()["errors"] == [
        {"field": "status", "code": "invalid_transition", "message": "Only a draft can be activated."}
    ]
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING
    assert campaign.runs.count() == 1


@pytest.mark.parametrize(
    ("before", "action", "says"),
    [
        ([], "pause", "A campaign that is draft cannot become paused."),
        ([], "resume", "A draft cannot be resumed: activate it, which checks it first."),
        (["pause"], "pause", "A campaign that is paused cannot become paused."),
        (["cancel"], "resume", "A campaign that is cancelled cannot become running."),
        (["cancel"], "cancel", "A campaign that is cancelled cannot become cancelled."),
    ],
)
def test_an_action_the_status_does_not_allow_is_a_409_on_status(api, marketeer, before, action, says):
    campaign = campaign_for([customer()], send_at=timezone.now() + dt.timedelta(hours=2))
    if before:
        campaign = activated(campaign)
    client = api(marketeer)
    for earlier in before:
        assert client.post(detail_url(campaign, earlier)).status_code == 200
    status_before = Campaign.objects.get(pk=campaign.pk).status

    response = client.post(detail_url(campaign, action))

    assert response.status_code == 409
    assert response.json()["errors"] == [{"field": "status", "code": "invalid_transition", "message": says}]
    assert Campaign.objects.get(pk=campaign.pk).status == status_before


def test_a_campaign_moved_in_the_meantime_is_a_409_that_says_so(api, marketeer, monkeypatch):
    campaign = activated(campaign_for([customer()]))

    def paused_by_someone_else(**kwargs):
        stale = Campaign.objects.get(pk=kwargs["campaign"].pk)
        campaign_pause(campaign=kwargs["campaign"])
        return campaign_pause(campaign=stale)

    monkeypatch.setattr("campaigns.api.campaign_pause", paused_by_someone_else)

    response = api(marketeer).post(detail_url(campaign, "pause"))

    assert response.status_code == 409
    assert errors_of(response)["status"]["code"] == "changed_meanwhile"
    assert "changed in the meantime: it is now paused" in errors_of(response)["status"]["message"]


def test_a_draft_can_be_deleted_but_an_activated_campaign_is_kept(api, marketeer):
    draft = campaign_for([customer()])
    live = activated(campaign_for([customer()]))
    client = api(marketeer)

    deleted = client.delete(detail_url(draft))
    kept = client.delete(detail_url(live))

    assert deleted.status_code == 204
    assert not Campaign.objects.filter(pk=draft.pk).exists()
    assert kept.status_code == 409
    assert "cancel it instead" in errors_of(kept)["status"]["message"]
    assert Campaign.objects.filter(pk=live.pk, status=Campaign.Status.RUNNING).exists()


def test_an_unknown_campaign_is_a_404(api, marketeer):
    client = api(marketeer)
    assert client.post(reverse("campaign-activate", args=[999999])).status_code == 404
    assert client.get(reverse("campaign-runs", args=[999999])).status_code == 404
    assert client.get(reverse("campaign-deliveries", args=[999999])).status_code == 404


# --- Reading: list, detail, runs, deliveries -----------------------------------------------------


def sent_campaign():
    """A campaign sent to three contacts who may be mailed and one who may not (held back at send
    time), with no holdout; the first opened and clicked, and bought the day after."""
    contacts = [customer() for _ in range(3)] + [customer(consent=())]
    campaign = activated(campaign_for(contacts, holdout_percent=0, holdout_off_reason="Servicebericht"))
    send_everything()
    sent = Delivery.objects.filter(campaign=campaign, status=Delivery.Status.SENT).order_by("pk")
    first = sent[0]
    delivery_open_record(delivery_id=first.pk)
    delivery_click_record(delivery_id=first.pk, url="https://shop.example.nl/najaar")
    EventFactory(contact_id=first.contact_id, occurred_at=first.sent_at + dt.timedelta(days=1))
    return campaign, contacts


def test_the_detail_shows_the_progress_and_the_funnel_of_a_sent_campaign(api, analyst):
    campaign, _contacts = sent_campaign()

    body = api(analyst).get(detail_url(campaign)).json()

    assert body["progress"] == {"queued": 0, "sent": 3, "failed": 0, "held_back": 1, "holdout": 0}
    funnel = campaign_funnel(campaign=campaign)
    assert body["funnel"] == {
        name: funnel[name]
        for name in [
            "planned",
            "sent",
            "delivered",
            "opened",
            "clicked",
            "converted",
            "bounced",
            "complained",
            "held_back_by_reason",
        ]
    }
    assert (body["funnel"]["opened"], body["funnel"]["clicked"], body["funnel"]["converted"]) == (1, 1, 1)
    assert body["funnel"]["held_back_by_reason"] == {"no_consent": 1}
    assert body["status"] == "completed"


def test_the_list_reads_every_campaign_with_its_progress_in_a_constant_number_of_queries(
    api, analyst, django_assert_max_num_queries, django_assert_num_queries
):
    client = api(analyst)
    sent, _contacts = sent_campaign()
    client.get(reverse("campaign-list"))  # the token's user remembered from here on, as for the second
    with django_assert_max_num_queries(12) as few:
        client.get(reverse("campaign-list"))
    for n in range(6):
        campaign = campaign_for(
            [customer()], kind="recurring", schedule=CrontabSchedule.objects.create(minute=str(n), hour="9")
        )
        campaign.exclude_segments.add(static_segment([]))
        CampaignVariant.objects.create(campaign=campaign, name="A", message=message_with())
        CampaignVariant.objects.create(campaign=campaign, name="B", message=message_with())
    activated(campaign_for([customer() for _ in range(2)], holdout_percent=0, holdout_off_reason="test"))
    tick()  # planned, not sent: queued

    with django_assert_num_queries(len(few.captured_queries)):
        response = client.get(reverse("campaign-list"))

    results = {row["id"]: row for row in response.json()["results"]}
    assert len(results) == 8
    assert results[sent.pk]["progress"] == {"queued": 0, "sent": 3, "failed": 0, "held_back": 1, "holdout": 0}
    assert "funnel" not in results[sent.pk]
    queued = Campaign.objects.filter(status=Campaign.Status.RUNNING).get()
    assert results[queued.pk]["progress"]["queued"] == 2
    recurring = [row for row in results.values() if row["kind"] == "recurring"]
    assert all(len(row["variants"]) == 2 and len(row["exclude_segments"]) == 1 for row in recurring)
    assert {row["schedule"]["crontab"] for row in recurring} == {f"{n} 9 * * *" for n in range(6)}


def test_the_list_filters_on_status_and_kind(api, analyst):
    activated(campaign_for([customer()], name="Live"))
    campaign_for([customer()], name="Concept")
    campaign_for([customer()], name="Elke maandag", kind="recurring")
    client = api(analyst)

    drafts = client.get(reverse("campaign-list"), {"status": "draft"}).json()["results"]
    recurring = client.get(reverse("campaign-list"), {"kind": "recurring"}).json()["results"]

    assert sorted(row["name"] for row in drafts) == ["Concept", "Elke maandag"]
    assert [row["name"] for row in recurring] == ["Elke maandag"]


def test_the_runs_say_what_each_occurrence_planned_held_out_and_excluded(api, analyst):
    campaign, _contacts = sent_campaign()
    run = campaign.runs.get()

    body = api(analyst).get(detail_url(campaign, "runs")).json()

    assert body["count"] == 1
    [row] = body["results"]
    assert row["id"] == run.pk
    assert (row["occurrence"], row["purpose"], row["status"]) == ("once", "send", "completed")
    # The contact without consent was left out when planning, with the reason.
    assert (row["planned"], row["held_out"], row["excluded"]) == (run.planned, 0, {"no_consent": 1})
    assert run.planned == 3
    assert dt.datetime.fromisoformat(row["scheduled_for"]) == run.scheduled_for
    assert dt.datetime.fromisoformat(row["completed_at"]) == run.completed_at


def test_the_deliveries_say_who_got_what_over_which_channel_without_the_message(api, analyst):
    campaign, contacts = sent_campaign()
    run = campaign.runs.get()

    body = api(analyst).get(detail_url(campaign, "deliveries")).json()

    rows = body["results"]
    assert len(rows) == 4
    assert {row["contact_key"] for row in rows} == {str(contact.contact_key) for contact in contacts}
    assert {row["contact"] for row in rows} == {contact.pk for contact in contacts}
    assert {row["run"] for row in rows} == {run.pk}
    held_back = [row for row in rows if row["status"] == "held_back"]
    assert [(row["contact"], row["reason"], row["sent_at"]) for row in held_back] == [
        (contacts[-1].pk, "no_consent", None)
    ]
    sent = [row for row in rows if row["status"] == "sent"]
    assert len(sent) == 3 and all(row["sent_at"] and row["attempts"] >= 1 for row in sent)
    assert all(row["channel"] == "email" for row in rows)
    assert not {"to", "subject", "html", "text", "detail", "body"} & set(rows[0])


def test_the_deliveries_filter_on_status_channel_and_run_and_refuse_a_bad_filter(api, analyst):
    campaign, contacts = sent_campaign()
    run = campaign.runs.get()
    client = api(analyst)
    url = detail_url(campaign, "deliveries")

    held_back = client.get(url, {"status": "held_back"}).json()["results"]
    sms = client.get(url, {"channel": "sms"}).json()["results"]
    of_run = client.get(url, {"run": run.pk, "status": "sent"}).json()["results"]
    other_run = client.get(url, {"run": run.pk + 1000}).json()["results"]
    bad = client.get(url, {"status": "lost"})

    assert [row["contact"] for row in held_back] == [contacts[-1].pk]
    assert sms == other_run == []
    assert len(of_run) == 3
    assert bad.status_code == 400
    assert list(errors_of(bad)) == ["status"]


def test_the_deliveries_are_paged_by_a_cursor_in_a_constant_number_of_queries(
    api, analyst, monkeypatch, django_assert_num_queries
):
    campaign, _contacts = sent_campaign()
    monkeypatch.setattr(DeliveryPagination, "page_size", 3)
    client = api(analyst)

    with django_assert_num_queries(5):  # auth (token, user), permissions, the campaign, the page
        first = client.get(detail_url(campaign, "deliveries")).json()
    second = client.get(first["next"]).json()

    ids = [row["id"] for row in first["results"] + second["results"]]
    assert len(first["results"]) == 3 and second["next"] is None
    assert ids == sorted(Delivery.objects.filter(campaign=campaign).values_list("pk", flat=True), reverse=True)


# --- Who may do what -------------------------------------------------------------------------------


@pytest.mark.parametrize("role_fixture", ["analyst", "agent"])
def test_a_role_without_change_rights_cannot_create_or_move_a_campaign(request, api, role_fixture):
    client = api(request.getfixturevalue(role_fixture))
    campaign = campaign_for([customer()])

    created = client.post(reverse("campaign-list"), payload(), format="json")
    moved = {action: client.post(detail_url(campaign, action)).status_code for action in ACTIONS}

    assert created.status_code == 403
    assert created.json()["errors"][0]["code"] == "permission_denied"
    assert moved == dict.fromkeys(ACTIONS, 403)
    assert Campaign.objects.get() == campaign
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT
    # They read it, its runs and its deliveries.
    for url in [detail_url(campaign), detail_url(campaign, "runs"), detail_url(campaign, "deliveries")]:
        assert client.get(url).status_code == 200


def test_a_user_without_a_role_reads_nothing(api):
    campaign = campaign_for([customer()])
    client = api(UserFactory(username="zonder-rol"))

    for url in [reverse("campaign-list"), detail_url(campaign, "runs"), detail_url(campaign, "deliveries")]:
        assert client.get(url).status_code == 403
    assert client.post(detail_url(campaign, "activate")).status_code == 403


def test_a_consent_withdrawn_after_planning_shows_as_held_back(api, analyst):
    contacts = [customer() for _ in range(2)]
    campaign = activated(campaign_for(contacts, holdout_percent=0, holdout_off_reason="test"))
    enqueued = tick()
    consent_record(contact=contacts[0], channel="email", status="withdrawn", source="test")
    for batch_id in enqueued:
        batch_send(batch_id=batch_id, worker="test-worker")

    body = api(analyst).get(detail_url(campaign)).json()

    assert body["progress"]["held_back"] == 1
    assert body["progress"]["sent"] == 1


# --- The schema ---------------------------------------------------------------------------------


def test_the_schema_documents_every_campaign_endpoint_with_its_errors(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    paths = schema["paths"]

    create = paths["/api/v1/campaigns/"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/CampaignInputRequest")
    assert {"201", "400", "401", "403"} <= set(create["responses"])
    for action in ACTIONS:
        responses = paths[f"/api/v1/campaigns/{{id}}/{action}/"]["post"]["responses"]
        assert {"200", "401", "403", "404", "409"} <= set(responses), action
    assert "400" in paths["/api/v1/campaigns/{id}/activate/"]["post"]["responses"]
    deliveries = paths["/api/v1/campaigns/{id}/deliveries/"]["get"]
    assert {"status", "channel", "run", "cursor"} <= {parameter["name"] for parameter in deliveries["parameters"]}
    assert "page" in {parameter["name"] for parameter in paths["/api/v1/campaigns/{id}/runs/"]["get"]["parameters"]}
    components = schema["components"]["schemas"]
    assert {"progress", "schedule", "variants"} <= set(components["Campaign"]["properties"])
    assert "funnel" in components["CampaignDetail"]["properties"]
    assert "status" not in components["CampaignInputRequest"]["properties"]
    assert {"crontab", "timezone"} <= set(components["ScheduleInRequest"]["properties"])
    assert not {"to", "detail"} & set(components["Delivery"]["properties"])
