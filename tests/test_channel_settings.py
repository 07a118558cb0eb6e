"""The channels configured from the environment (dialoog/settings/base.py)."""

import json
import subprocess
import sys

from django.conf import settings

from tests.conftest import clean_env

PRINT_CHANNELS = (
    "import django, json; django.setup(); from django.conf import settings; "
    "from campaigns.channels import channel_backend; "
    "print(json.dumps({c: [type(channel_backend(c)).__name__, channel_backend(c).options] "
    "for c in settings.CAMPAIGN_CHANNELS}, default=str))"
)
CHANNEL_VARIABLES = ("CAMPAIGN_", "SMS_PROVIDER_")


def _channels(**env):
    base = {k: v for k, v in clean_env().items() if not k.startswith(CHANNEL_VARIABLES)}
    return subprocess.run(
        [sys.executable, "-c", PRINT_CHANNELS],
        cwd=settings.BASE_DIR,
        env={
            **base,
            "DJANGO_SETTINGS_MODULE": "dialoog.settings.base",
            "DATABASE_URL": "postgres://localhost/x",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_default_channels_and_the_http_sms_provider_and_webhook_from_the_environment():
    default = _channels()
    assert default.returncode == 0, default.stderr
    channels = json.loads(default.stdout)
    assert {name: backend for name, (backend, _options) in channels.items()} == {
        "email": "EmailChannel",
        "sms": "SmsChannel",
        "callcenter": "CallListChannel",
        "direct_mail": "PrintFileChannel",
    }

    configured = _channels(
        CAMPAIGN_SMS_BACKEND="campaigns.channels.sms.HttpSmsChannel",
        SMS_PROVIDER_URL="https://sms.example.com/v1/messages",
        SMS_PROVIDER_TOKEN="tok",
        SMS_PROVIDER_FIELDS="text=body,sender=from",
        CAMPAIGN_WEBHOOK_URL="https://crm.example.nl/hook",
        CAMPAIGN_WEBHOOK_SECRET="whsec",
    )
    assert configured.returncode == 0, configured.stderr
    channels = json.loads(configured.stdout)
    backend, options = channels["sms"]
    assert backend == "HttpSmsChannel"
    assert options["url"] == "https://sms.example.com/v1/messages" and options["token"] == "tok"
    assert options["fields"] == {"text": "body", "sender": "from"}
    assert channels["webhook"] == [
        "WebhookChannel",
        {"url": "https://crm.example.nl/hook", "secret": "whsec", "timeout": 10.0, "retries": 2},
    ]


def test_a_webhook_without_a_secret_does_not_start():
    result = _channels(CAMPAIGN_WEBHOOK_URL="https://crm.example.nl/hook")

    assert result.returncode != 0
    assert "CAMPAIGN_WEBHOOK_SECRET" in result.stderr
