import pytest

from dialoog.celery import app as celery_app
from dialoog.health import broker_problem, database_problem


@pytest.mark.smoke
def test_healthz_answers_200_when_database_and_broker_answer(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


@pytest.fixture
def broker_down():
    """Point the app at a port on loopback where nothing listens.

    (broker_write_url: Celery prefers the CELERY_BROKER_URL environment variable to broker_url.)
    """
    celery_app.conf.broker_write_url = "redis://127.0.0.1:9/0"
    celery_app.pool.force_close_all()
    yield
    celery_app.conf.broker_write_url = None
    celery_app.pool.force_close_all()


def test_healthz_answers_503_naming_the_broker_when_it_is_down(client, db, broker_down, caplog):
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "checks": {"database": "ok", "broker": "down"}}
    # The reason (hosts, ports) is for the log, not for anonymous callers.
    assert "127.0.0.1:9" not in response.content.decode()
    assert "the broker is down" in caplog.text
    assert broker_problem() is not None


def test_the_database_check_names_a_database_that_does_not_answer(db):
    from django.db import connections

    default = connections["default"]
    broken = {**default.settings_dict, "HOST": "127.0.0.1", "PORT": 9, "NAME": "nowhere"}
    # A second wrapper under the default alias: the test database guard only admits known aliases.
    down = default.__class__(broken, alias="default")
    try:
        problem = database_problem(down)
    finally:
        down.close()
    assert problem is not None
    assert "OperationalError" in problem
    assert database_problem() is None


def test_healthz_answers_503_naming_the_database_when_it_is_down(client, db, monkeypatch):
    from django.db import connections

    import dialoog.health

    default = connections["default"]
    broken = {**default.settings_dict, "HOST": "127.0.0.1", "PORT": 9, "NAME": "nowhere"}
    down = default.__class__(broken, alias="default")
    monkeypatch.setattr(dialoog.health, "connection", down)
    try:
        response = client.get("/healthz")
    finally:
        down.close()
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "down", "broker": "ok"}


def test_healthz_refuses_writes(client, db):
    assert client.post("/healthz").status_code == 405
