"""The goals API: a goal with its progress, snapshots and campaign uplift; writes through the services."""

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from goals.experiments import experiment_create, experiment_holdout_off
from goals.models import Goal, Snapshot, Uplift
from goals.services import goal_refresh_status
from tests.factories import ContactFactory, EventFactory, GoalFactory, SegmentFactory


def today():
    return timezone.localdate()


def goal_with_measurements(**fields):
    start = today() - dt.timedelta(days=10)
    fields = {"name": "Conversie omhoog", **fields}
    goal = GoalFactory(
        starts_on=start, deadline=start + dt.timedelta(days=100), baseline=Decimal(5), target=Decimal(10), **fields
    )
    for offset, value, numerator in [(1, "5.5", 55), (2, None, 0), (3, "6", 60)]:
        Snapshot.objects.create(
            goal=goal,
            day=start + dt.timedelta(days=offset),
            value=value and Decimal(value),
            numerator=numerator,
            denominator=1000 if value else 0,
            measured_at=timezone.now(),
        )
    return goal_refresh_status(goal=goal, today=today())


def uplift(experiment, *, treated=4000, held_out=400, treated_conversions=460, held_out_conversions=38):
    return Uplift.objects.create(
        experiment=experiment,
        measured_on=today(),
        measured_at=timezone.now(),
        treatment_size=treated,
        treatment_conversions=treated_conversions,
        treatment_revenue=Decimal(50 * treated_conversions),
        treatment_revenue_squares=Decimal(2500 * treated_conversions),
        holdout_size=held_out,
        holdout_conversions=held_out_conversions,
        holdout_revenue=Decimal(50 * held_out_conversions),
        holdout_revenue_squares=Decimal(2500 * held_out_conversions),
        cost=Decimal("100.00"),
    )


def test_a_goal_reads_with_its_kpi_progress_snapshots_and_tree(api_client_for, analyst):
    parent = GoalFactory(name="Groei")
    segment = SegmentFactory(name="Vaste klanten")
    goal = goal_with_measurements(parent=parent, scope_segment=segment)
    child = GoalFactory(parent=goal)

    body = api_client_for(analyst).get(reverse("goal-detail", args=[goal.pk])).json()

    assert body["name"] == "Conversie omhoog"
    assert (body["parent"], body["children"]) == (parent.pk, [child.pk])
    assert (body["scope_segment"], body["scope_segment_name"]) == (segment.pk, "Vaste klanten")
    assert body["metric"] == "conversion_rate"
    assert body["metric_unit"] == "percent"
    assert body["metric_definition"]
    assert body["higher_is_better"] is True
    assert (body["baseline"], body["target"]) == ("5.0000", "10.0000")
    assert "+100%" in body["required_change"]
    assert body["status"] == goal.status
    assert body["current_value"] == "6.0000"
    assert body["projected_value"] == str(goal.projected_value)
    assert body["measured_on"] == (goal.starts_on + dt.timedelta(days=3)).isoformat()
    assert body["days_left"] == (goal.deadline - today()).days
    assert body["snapshots"] == [
        {
            "day": (goal.starts_on + dt.timedelta(days=1)).isoformat(),
            "value": "5.5000",
            "numerator": "55.0000",
            "denominator": "1000.0000",
            "control_value": None,
            "control_numerator": None,
            "control_denominator": None,
        },
        {
            "day": (goal.starts_on + dt.timedelta(days=2)).isoformat(),
            "value": None,
            "numerator": "0.0000",
            "denominator": "0.0000",
            "control_value": None,
            "control_numerator": None,
            "control_denominator": None,
        },
        {
            "day": (goal.starts_on + dt.timedelta(days=3)).isoformat(),
            "value": "6.0000",
            "numerator": "60.0000",
            "denominator": "1000.0000",
            "control_value": None,
            "control_numerator": None,
            "control_denominator": None,
        },
    ]
    assert body["uplifts"] == []


def test_a_goal_reads_with_each_campaigns_uplift_or_why_not(api_client_for, analyst, marketeer):
    goal = goal_with_measurements()
    measured = experiment_create(goal=goal, name="Voorjaarsmail")
    uplift(measured)
    tiny = experiment_create(goal=goal, name="Proefje")
    uplift(tiny, treated=100, held_out=5, treated_conversions=10, held_out_conversions=1)
    experiment_holdout_off(
        experiment=experiment_create(goal=goal, name="Servicebericht"), reason="Wettelijk verplicht", user=marketeer
    )

    uplifts = api_client_for(analyst).get(reverse("goal-detail", args=[goal.pk])).json()["uplifts"]

    by_name = {item["name"]: item for item in uplifts}
    assert [item["name"] for item in uplifts] == ["Servicebericht", "Proefje", "Voorjaarsmail"]  # newest first
    spring = by_name["Voorjaarsmail"]
    assert spring["id"] == measured.pk
    assert spring["holdout_percent"] == "10.00"
    assert spring["measured_on"] == today().isoformat()
    assert (spring["treatment_size"], spring["holdout_size"]) == (4000, 400)
    assert (spring["treatment_conversions"], spring["holdout_conversions"]) == (460, 38)
    assert (spring["treatment_revenue"], spring["holdout_revenue"]) == ("23000.00", "1900.00")
    conversion = spring["conversion"]
    assert conversion["treatment"] == pytest.approx(0.115)
    assert conversion["control"] == pytest.approx(0.095)
    assert conversion["absolute"] == pytest.approx(0.02)
    assert conversion["relative"] == pytest.approx(0.02 / 0.095)
    assert conversion["low"] < 0.02 < conversion["high"]
    assert 0 < conversion["p_value"] < 1
    assert conversion["too_small"] is False
    assert spring["revenue"]["absolute"] == pytest.approx(1.0)  # € 5.75 against € 4.75 per contact
    assert spring["incremental_conversions"] == pytest.approx(80)
    assert spring["incremental_revenue"] == "4000.00"
    assert spring["cost"] == "100.00"
    assert spring["roi"] == "39.0000"  # (4,000 - 100) / 100
    assert spring["target_share"] is not None
    assert spring["problem"] == ""

    trial = by_name["Proefje"]
    assert trial["problem"].startswith("Too few contacts") or trial["problem"].startswith("Te weinig")
    assert (trial["incremental_conversions"], trial["roi"], trial["target_share"]) == (None, None, None)
    assert by_name["Servicebericht"]["holdout_off_reason"] == "Wettelijk verplicht"
    assert by_name["Servicebericht"]["measured_on"] is None
    assert by_name["Servicebericht"]["conversion"] is None


def test_the_list_holds_snapshots_and_uplifts_in_a_constant_number_of_queries(
    api_client_for, analyst, django_assert_max_num_queries
):
    client = api_client_for(analyst)
    uplift(experiment_create(goal=goal_with_measurements(), name="Eerste"))
    with django_assert_max_num_queries(15) as few:
        client.get(reverse("goal-list"))
    for n in range(8):
        goal = goal_with_measurements(name=f"Doel {n}")
        GoalFactory(parent=goal)
        uplift(experiment_create(goal=goal, name=f"Campagne {n}"))
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(reverse("goal-list"))

    results = response.json()["results"]
    assert len(results) == 17
    measured = [goal for goal in results if goal["uplifts"]]
    assert len(measured) == 9
    assert all(len(goal["snapshots"]) == 3 for goal in measured)
    assert all(goal["uplifts"][0]["conversion"]["absolute"] == pytest.approx(0.02) for goal in measured)


def test_the_list_filters_on_status(api_client_for, analyst):
    GoalFactory(name="Risico", status=Goal.Status.AT_RISK)
    GoalFactory(name="Gehaald", status=Goal.Status.ACHIEVED)

    response = api_client_for(analyst).get(reverse("goal-list"), {"status": "at_risk"})

    assert [goal["name"] for goal in response.json()["results"]] == ["Risico"]


def contacts_with_a_quarter_buying():
    """A conversion baseline of 25.0%: one of four contacts bought in the 30 days before today."""
    buyer, *_others = ContactFactory.create_batch(4)
    EventFactory(contact=buyer, occurred_at=timezone.now() - dt.timedelta(days=5))


def payload(**overrides):
    return {
        "name": "Meer kopers",
        "domain": "conversions",
        "metric": "conversion_rate",
        "period": "rolling",
        "period_days": 30,
        "starts_on": today().isoformat(),
        "deadline": (today() + dt.timedelta(days=90)).isoformat(),
        "target": "30",
        **overrides,
    }


def test_creating_a_goal_measures_its_baseline(api_client_for, marketeer):
    contacts_with_a_quarter_buying()

    response = api_client_for(marketeer).post(reverse("goal-list"), payload(), format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["baseline"] == "25.0000"
    assert body["baseline_measured_at"]
    assert body["owner"] == marketeer.pk
    assert body["status"] == "no_data"
    assert body["snapshots"] == [] and body["uplifts"] == []
    assert Goal.objects.get(pk=body["id"]).baseline == Decimal(25)


def test_the_baseline_and_status_cannot_be_written(api_client_for, marketeer):
    contacts_with_a_quarter_buying()

    response = api_client_for(marketeer).post(
        reverse("goal-list"), payload(baseline="1", status="achieved", current_value="99"), format="json"
    )

    assert response.status_code == 201
    goal = Goal.objects.get()
    assert (goal.baseline, goal.status, goal.current_value) == (Decimal(25), "no_data", None)


def test_a_target_equal_to_the_baseline_is_a_400_on_the_target_and_nothing_is_saved(api_client_for, marketeer):
    contacts_with_a_quarter_buying()

    response = api_client_for(marketeer).post(reverse("goal-list"), payload(target="25"), format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "validation_error"
    assert [error["field"] for error in body["errors"]] == ["target"]
    assert "25.0%" in body["errors"][0]["message"]
    assert not Goal.objects.exists()


def test_changing_a_goal_goes_through_the_service(api_client_for, marketeer):
    contacts_with_a_quarter_buying()
    client = api_client_for(marketeer)
    goal_id = client.post(reverse("goal-list"), payload(), format="json").json()["id"]
    url = reverse("goal-detail", args=[goal_id])

    refused = client.patch(url, {"target": "25"}, format="json")
    changed = client.patch(url, {"target": "40", "name": "Veel meer kopers"}, format="json")

    assert refused.status_code == 400
    assert [error["field"] for error in refused.json()["errors"]] == ["target"]
    assert changed.status_code == 200
    assert (changed.json()["name"], changed.json()["target"]) == ("Veel meer kopers", "40.0000")
    assert Goal.objects.get().target == Decimal(40)


def test_a_goal_cannot_be_part_of_a_goal_under_it(api_client_for, marketeer):
    top = GoalFactory()
    under = GoalFactory(parent=top)

    client = api_client_for(marketeer)

    response = client.patch(reverse("goal-detail", args=[top.pk]), {"parent": under.pk}, format="json")

    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == ["parent"]


def test_an_analyst_reads_but_does_not_write(api_client_for, analyst):
    response = api_client_for(analyst).post(reverse("goal-list"), payload(), format="json")

    assert response.status_code == 403
    assert not Goal.objects.exists()


def test_the_schema_documents_the_goals_reads_and_writes(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    detail = schema["paths"]["/api/v1/goals/{id}/"]
    goals = schema["paths"]["/api/v1/goals/"]
    assert goals["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("GoalInputRequest")
    assert goals["post"]["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith("/Goal")
    assert "400" in detail["patch"]["responses"]
    components = schema["components"]["schemas"]
    goal = components["Goal"]["properties"]
    for field in ["status", "baseline", "required_change", "days_left", "snapshots", "uplifts", "metric_unit"]:
        assert field in goal
    assert goal["baseline"]["readOnly"] is True
    assert "baseline" not in components["GoalInputRequest"]["properties"]
    assert "target" in components["GoalInputRequest"]["required"]
    uplift_fields = components["Uplift"]["properties"]
    assert {"conversion", "revenue", "roi", "target_share", "problem"} <= set(uplift_fields)
    assert {"absolute", "relative", "low", "high", "p_value"} <= set(components["Comparison"]["properties"])
