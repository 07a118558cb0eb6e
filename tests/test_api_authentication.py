"""Tokens and permissions remembered per process for a minute (dialoog/authentication.py):
fewer queries per request, and a revoked token, a deactivated user or a role taken away still
refused at once in the process where it changed."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token

from dialoog import authentication, roles
from tests.offer_helpers import caller, live_campaign, offer

pytestmark = pytest.mark.django_db


def token_queries(context: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in context.captured_queries if '"authtoken_token"' in query["sql"]]


def permission_queries(context: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in context.captured_queries if '"auth_permission"' in query["sql"]]


def decide(client, contact):
    return client.get(f"/api/v1/contacts/{contact.contact_key}/next-best-offers/")


@pytest.fixture
def asking(api_client_for, agent):
    offer(campaign=live_campaign())
    client = api_client_for(agent)
    client.credentials(HTTP_AUTHORIZATION=client._credentials["HTTP_AUTHORIZATION"], HTTP_ACCEPT_LANGUAGE="en")
    return client, caller()


def test_a_token_and_the_agents_permission_are_read_once_then_remembered(asking):
    client, contact = asking
    with CaptureQueriesContext(connection) as first:
        assert decide(client, contact).status_code == 200
    with CaptureQueriesContext(connection) as second:
        assert decide(client, contact).status_code == 200

    assert len(token_queries(first)) == 1 and permission_queries(first)
    assert token_queries(second) == [] and permission_queries(second) == []


def test_a_deleted_token_is_refused_at_once(asking, agent):
    client, contact = asking
    assert decide(client, contact).status_code == 200

    Token.objects.filter(user=agent).delete()

    response = decide(client, contact)
    assert response.status_code == 401
    assert "Invalid token" in response.json()["errors"][0]["message"]


def test_a_deactivated_user_is_refused_at_once(asking, agent):
    client, contact = asking
    assert decide(client, contact).status_code == 200

    agent.is_active = False
    agent.save(update_fields=["is_active"])

    assert decide(client, contact).status_code == 401


def test_a_role_taken_away_applies_at_once(asking, agent):
    client, contact = asking
    assert decide(client, contact).status_code == 200

    Group.objects.get(name=roles.CALLCENTER_AGENT).user_set.remove(agent)

    assert decide(client, contact).status_code == 403


def test_after_the_time_the_token_is_read_again(asking, monkeypatch):
    client, contact = asking
    assert decide(client, contact).status_code == 200
    later = authentication.time.monotonic() + 61
    monkeypatch.setattr(authentication.time, "monotonic", lambda: later)

    with CaptureQueriesContext(connection) as after:
        assert decide(client, contact).status_code == 200

    assert len(token_queries(after)) == 1 and permission_queries(after)


def test_zero_seconds_remembers_nothing(asking, settings):
    settings.API_AUTH_CACHE_SECONDS = 0
    client, contact = asking
    assert decide(client, contact).status_code == 200

    with CaptureQueriesContext(connection) as again:
        assert decide(client, contact).status_code == 200

    assert len(token_queries(again)) == 1 and permission_queries(again)


def test_an_unknown_token_is_never_remembered(api_client_for, agent):
    client = api_client_for(agent)
    client.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    for _ in range(2):
        with CaptureQueriesContext(connection) as asked:
            assert client.get("/api/v1/offer-decisions/1/").status_code == 401
        assert len(token_queries(asked)) == 1


def test_each_request_gets_its_own_copy_of_the_user(agent):
    Token.objects.create(user=agent)
    key = agent.auth_token.key
    first, _ = authentication.CachedTokenAuthentication().authenticate_credentials(key)
    first._perm_cache = {"campaigns.everything"}  # what Django caches on a request's user
    second, _ = authentication.CachedTokenAuthentication().authenticate_credentials(key)

    assert second.pk == agent.pk and second is not first
    assert not hasattr(second, "_perm_cache")


def test_the_oldest_remembered_entry_makes_room():
    remembered = authentication.Remembered(size=2)
    for key in ("a", "b", "c"):
        remembered.put(key, key.upper())

    assert remembered.get("a") is authentication.MISSING
    assert (remembered.get("b"), remembered.get("c")) == ("B", "C")
