"""The API's foundations: authentication, permissions, errors, pagination, schema and docs."""

import datetime as dt

import pytest
from django.core.management import call_command
from django.urls import reverse
from rest_framework.test import APIClient

from goals.api import GoalViewSet
from goals.models import Goal
from tests.factories import CampaignFactory, GoalFactory


def test_unauthenticated_requests_get_a_json_401():
    response = APIClient().get(reverse("goal-list"))
    assert response.status_code == 401
    body = response.json()
    assert body["type"] == "client_error"
    assert body["errors"][0]["field"] is None
    assert body["errors"][0]["code"] == "not_authenticated"


def test_a_bad_token_is_refused(db):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = client.get(reverse("goal-list"))
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "authentication_failed"


@pytest.mark.smoke
def test_create_api_token_prints_a_token_that_authenticates(marketeer, capsys):
    call_command("create_api_token", marketeer.username)
    key = capsys.readouterr().out.strip()
    GoalFactory(name="Meer herhaalaankopen")

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = client.get(reverse("goal-list"))

    assert response.status_code == 200
    assert response.json()["results"][0]["name"] == "Meer herhaalaankopen"


def test_create_api_token_is_stable_and_rotates_on_request(marketeer, capsys):
    call_command("create_api_token", marketeer.username)
    first = capsys.readouterr().out.strip()
    call_command("create_api_token", marketeer.username)
    assert capsys.readouterr().out.strip() == first
    call_command("create_api_token", marketeer.username, "--rotate")
    assert capsys.readouterr().out.strip() != first


def test_create_api_token_for_an_unknown_user_says_so(db):
    with pytest.raises(Exception, match="No user named 'nobody'"):
        call_command("create_api_token", "nobody")


def test_validation_errors_name_the_field_and_the_reason(api_client_for, marketeer):
    client = api_client_for(marketeer)

    response = client.post(reverse("goal-list"), {"description": "zonder naam"}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "validation_error"
    fields = {error["field"]: error for error in body["errors"]}
    assert set(fields) == {"name", "domain", "metric", "target", "starts_on", "deadline"}
    assert fields["name"]["code"] == "required"
    assert fields["name"]["message"]
    assert not Goal.objects.exists()


def test_a_rule_of_the_model_is_reported_on_its_field(api_client_for, marketeer):
    response = api_client_for(marketeer).post(
        reverse("goal-list"),
        {
            "name": "Verkeerd om",
            "domain": "conversions",
            "metric": "conversion_rate",
            "target": "12.5",
            "starts_on": "2027-06-01",
            "deadline": "2027-01-01",
        },
        format="json",
    )
    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == ["deadline"]
    assert not Goal.objects.exists()


def test_creating_a_goal_makes_the_caller_its_owner(api_client_for, marketeer):
    response = api_client_for(marketeer).post(
        reverse("goal-list"),
        {
            "name": "NPS omhoog",
            "domain": "nps",
            "metric": "nps",
            "target": "30",
            "starts_on": "2027-01-01",
            "deadline": "2027-12-31",
        },
        format="json",
    )
    assert response.status_code == 201
    goal = Goal.objects.get(pk=response.json()["id"])
    assert goal.owner == marketeer
    assert goal.deadline == dt.date(2027, 12, 31)


def test_lists_are_paginated_with_a_constant_number_of_queries(api_client_for, analyst, django_assert_max_num_queries):
    client = api_client_for(analyst)
    GoalFactory.create_batch(3)
    with django_assert_max_num_queries(8) as small:
        client.get(reverse("goal-list"))
    GoalFactory.create_batch(60)
    with django_assert_max_num_queries(len(small.captured_queries)):
        response = client.get(reverse("goal-list"))

    body = response.json()
    assert body["count"] == 63
    assert len(body["results"]) == 50
    assert body["next"].endswith("?page=2")


def test_the_schema_is_openapi_3_with_our_endpoints_and_their_errors(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    goals = schema["paths"]["/api/v1/goals/"]
    assert {"400", "401", "403"} <= set(goals["post"]["responses"])
    assert "404" in schema["paths"]["/api/v1/goals/{id}/"]["get"]["responses"]
    assert "ErrorResponse" in schema["components"]["schemas"]
    assert {"tokenAuth", "cookieAuth"} <= set(schema["components"]["securitySchemes"])


def test_the_api_docs_are_served_from_our_own_static_files(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()
    assert client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js").status_code == 200


def test_deleting_a_goal_that_campaigns_serve_is_a_409_that_says_why(api_client_for, marketeer):
    goal = CampaignFactory().goal

    response = api_client_for(marketeer).delete(reverse("goal-detail", args=[goal.pk]))

    assert response.status_code == 409
    error = response.json()["errors"][0]
    assert error["code"] == "protected"
    assert "campagnes" in error["message"]
    assert Goal.objects.filter(pk=goal.pk).exists()


def test_an_unexpected_error_is_json_too_and_logged(api_client_for, marketeer, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(GoalViewSet, "list", broken)

    response = api_client_for(marketeer).get(reverse("goal-list"))

    assert response.status_code == 500
    assert response.json()["type"] == "server_error"
    assert "bug" not in response.content.decode()
    assert "Unhandled error in GoalViewSet" in caplog.text


def test_errors_in_a_list_of_objects_name_the_item(rf):
    from rest_framework.exceptions import ValidationError

    from dialoog.api.errors import flatten_errors

    detail = ValidationError([{}, {"email": ["Ongeldig."]}, {"items": [{}, {"sku": ["Verplicht."]}]}]).detail
    assert [e["field"] for e in flatten_errors(detail)] == ["1.email", "2.items.1.sku"]
    assert [e["field"] for e in flatten_errors(ValidationError("Fout.").detail)] == [None]
