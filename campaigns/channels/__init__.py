"""Channel backends: where a campaign's messages go, configured like Django's email backends.

    CAMPAIGN_CHANNELS = {
        "email": {"BACKEND": "campaigns.channels.email.EmailChannel", "OPTIONS": {}},
        "sms": {"BACKEND": "campaigns.channels.locmem.LocmemChannel"},
        ...
    }

`channel_backend("email")` loads the configured class with `import_string` and its options. A
backend takes a batch of `OutboundMessage`s and returns one `Outcome` per message (see base.py).
A channel without a backend in settings cannot be used by a campaign: activation says so.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from campaigns.channels.base import BaseChannel, OutboundMessage, Outcome

__all__ = ["BaseChannel", "OutboundMessage", "Outcome", "channel_backend", "channel_configured"]


def channel_settings(channel: str) -> dict[str, Any] | None:
    configured: dict[str, dict[str, Any]] = getattr(settings, "CAMPAIGN_CHANNELS", {}) or {}
    found = configured.get(channel)
    return found if found and found.get("BACKEND") else None


def channel_configured(channel: str) -> bool:
    return channel_settings(channel) is not None


def channel_backend(channel: str) -> BaseChannel:
    found = channel_settings(channel)
    if found is None:
        raise ImproperlyConfigured(f"No backend is configured for the {channel} channel (CAMPAIGN_CHANNELS).")
    backend_class: type[BaseChannel] = import_string(found["BACKEND"])
    return backend_class(channel=channel, **found.get("OPTIONS", {}))
