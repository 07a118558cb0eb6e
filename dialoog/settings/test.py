"""Settings for the test suite: the same PostgreSQL and broker choice as base, faster hashing."""

from .base import *  # noqa: F403
from .base import CELERY_BROKER_URL, DATABASES, STATIC_ROOT, VAR_DIR, env, filesystem_broker

DEBUG = False
# The live server's request threads close their connections after each request, so the
# test database can be dropped at the end.
DATABASES["default"]["CONN_MAX_AGE"] = 0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# A catalogue refreshed in a thread would read on a connection of its own, outside the test's
# transaction: tests refresh it in the request that finds it old.
OFFER_CATALOGUE_BACKGROUND = False
# Likewise the decisions' journal: each decision is written before it is answered.
OFFER_DECISIONS_WRITE_BEHIND = False
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
SMS_BACKEND = "dialoog.sms.backends.locmem.SmsBackend"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
STATIC_ROOT.mkdir(exist_ok=True)
# Tests that start a real worker use a broker folder of their own, apart from `make run`'s.
if CELERY_BROKER_URL.startswith("filesystem://") and not env.str("CELERY_BROKER_DIR", default=""):
    CELERY_BROKER_TRANSPORT_OPTIONS, CELERY_RESULT_BACKEND = filesystem_broker(VAR_DIR / "test-broker")
# Campaign channels in memory (campaigns.channels.locmem.outbox), unless a test configures another.
CAMPAIGN_CHANNELS = {
    channel: {"BACKEND": "campaigns.channels.locmem.LocmemChannel"}
    for channel in ("email", "sms", "callcenter", "direct_mail", "webhook")
}
# A test that starts real workers points their email channel elsewhere through the environment
# (tests/test_campaign_workers.py: the file backend, slowed down, writing to a folder of its own).
if env.str("CAMPAIGN_TEST_EMAIL_BACKEND", default=""):
    CAMPAIGN_CHANNELS["email"] = {
        "BACKEND": env.str("CAMPAIGN_TEST_EMAIL_BACKEND"),
        "OPTIONS": env.json("CAMPAIGN_TEST_EMAIL_OPTIONS", default={}),
    }
