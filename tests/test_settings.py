"""Production settings refuse to start without real secrets and pass `check --deploy`."""

import subprocess
import sys

import pytest
from django.conf import settings

from tests.conftest import clean_env

PRODUCTION_LIKE = {
    "DJANGO_SETTINGS_MODULE": "dialoog.settings.production",
    "SECRET_KEY": "k7#Qm2!vT9zLx4@pR8sW1&nB6yH3jF5dG0cV-aZ_eU*iO(oP)qM+wN=rS]tY[uX",
    "ALLOWED_HOSTS": "dialoog.example.nl",
    "DATABASE_URL": "postgres://dialoog:secret@127.0.0.1:5432/dialoog",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
    "PUBLIC_URL": "https://dialoog.example.nl",
}


def run_manage(*args, env):
    # Nothing of the test run's own environment (CI sets DATABASE_URL and CELERY_BROKER_URL).
    base = {k: v for k, v in clean_env().items() if k not in {*PRODUCTION_LIKE, "DEBUG"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_check_deploy_without_warnings():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_LIKE)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("secret_key", "message"),
    [
        (None, "SECRET_KEY is not set to a real secret"),
        ("django-insecure-dialoog-development-only", "SECRET_KEY is not set to a real secret"),
        ("short-but-not-insecure", "SECRET_KEY is too short"),
    ],
)
def test_production_settings_refuse_to_start_without_a_real_secret_key(secret_key, message):
    env = {k: v for k, v in PRODUCTION_LIKE.items() if k != "SECRET_KEY"}
    if secret_key is not None:
        env["SECRET_KEY"] = secret_key
    result = run_manage("check", env=env)
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("DATABASE_URL", "DATABASE_URL is required in production"),
        ("CELERY_BROKER_URL", "CELERY_BROKER_URL is required in production"),
        ("ALLOWED_HOSTS", "ALLOWED_HOSTS is required in production"),
        ("PUBLIC_URL", "PUBLIC_URL is required in production"),
    ],
)
def test_production_settings_need_real_servers_and_start_nothing_embedded(missing, message, tmp_path):
    env = {k: v for k, v in PRODUCTION_LIKE.items() if k != missing}
    result = run_manage("check", env={**env, "CELERY_BROKER_DIR": str(tmp_path / "broker")})
    assert result.returncode != 0
    assert message in result.stderr
    assert not (tmp_path / "broker").exists()


def test_production_is_not_in_debug_mode_unless_asked():
    result = run_manage("shell", "-c", "from django.conf import settings; print(settings.DEBUG)", env=PRODUCTION_LIKE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_only_postgresql_is_accepted():
    result = run_manage("check", env={**PRODUCTION_LIKE, "DATABASE_URL": "sqlite:///dialoog.db"})
    assert result.returncode != 0
    assert "DATABASE_URL must point at PostgreSQL" in result.stderr


def test_time_and_language_defaults():
    assert settings.TIME_ZONE == "Europe/Amsterdam"
    assert settings.USE_TZ is True
    assert settings.LANGUAGE_CODE == "nl"
    assert [code for code, _name in settings.LANGUAGES] == ["nl", "en"]
    assert "django.middleware.locale.LocaleMiddleware" in settings.MIDDLEWARE
