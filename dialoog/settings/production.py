"""Production settings: everything from the environment, nothing insecure by default."""

import os

from django.core.exceptions import ImproperlyConfigured

# Checked before base is imported: without them base would start an embedded PostgreSQL and a
# filesystem broker, which belong on a developer's machine, not on servers.
for _name, _why in [
    ("DATABASE_URL", "point it at your PostgreSQL server"),
    ("CELERY_BROKER_URL", "point it at your Redis or RabbitMQ server, shared by web and workers"),
    ("ALLOWED_HOSTS", "list the host names the site answers to, comma-separated"),
    ("PUBLIC_URL", "the address customers reach Dialoog on, such as https://dialoog.example.nl (links in messages)"),
]:
    if not os.environ.get(_name):
        raise ImproperlyConfigured(f"{_name} is required in production: {_why}.")
os.environ.setdefault("DEBUG", "false")

from .base import *  # noqa: E402, F403
from .base import INSECURE_DEV_SECRET_KEY, SECRET_KEY, env  # noqa: E402

if not SECRET_KEY or SECRET_KEY == INSECURE_DEV_SECRET_KEY or SECRET_KEY.startswith("django-insecure"):
    raise ImproperlyConfigured(
        "SECRET_KEY is not set to a real secret. Generate one with "
        "`python -c 'import secrets; print(secrets.token_urlsafe(50))'` and set it in the environment."
    )
if len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
    raise ImproperlyConfigured("SECRET_KEY is too short: use at least 50 random characters.")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = False

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
# Load balancers and uptime monitors probe over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
