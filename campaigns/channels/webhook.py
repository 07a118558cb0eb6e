"""Posts each message as signed JSON to another system (a CRM, a marketing platform, a print shop).

    "webhook": {
        "BACKEND": "campaigns.channels.webhook.WebhookChannel",
        "OPTIONS": {"url": "https://crm.example.nl/hooks/dialoog", "secret": "...", "timeout": 10, "retries": 2},
    }

The body is {"delivery_id", "idempotency_key", "campaign", "contact", "sent_at"}; the receiver
checks the header

    X-Dialoog-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the secret>

(and that t is recent), and uses the Idempotency-Key header to take a message handed over twice
once. `webhook_signature_verify` is the check, for receivers written in Python and for tests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from campaigns.channels.base import BaseChannel, OutboundMessage, Outcome
from campaigns.channels.http import HttpResult, http_post, outcomes_each

SIGNATURE_HEADER = "X-Dialoog-Signature"
# A signature older than this is refused by webhook_signature_verify: a replayed request.
SIGNATURE_TOLERANCE_SECONDS = 300


def webhook_signature(*, secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def webhook_signature_verify(
    *, secret: str, body: bytes, header: str, now: float | None = None, tolerance: int = SIGNATURE_TOLERANCE_SECONDS
) -> bool:
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance:
        return False
    expected = webhook_signature(secret=secret, body=body, timestamp=timestamp)
    return hmac.compare_digest(expected, f"t={timestamp},v1={parts.get('v1', '')}")


class WebhookChannel(BaseChannel):
    def __init__(self, *, channel: str, **options: Any) -> None:
        super().__init__(channel=channel, **options)
        self.url: str = options.get("url") or ""
        self.secret: str = options.get("secret") or ""
        self.timeout = float(options.get("timeout", 10))
        self.retries = int(options.get("retries", 2))
        self.backoff = float(options.get("backoff", 0.5))
        self.give_up_after = int(options.get("give_up_after", 3))
        if not self.secret:
            raise ImproperlyConfigured("WebhookChannel needs a secret to sign with (CAMPAIGN_WEBHOOK_SECRET).")

    def __repr__(self) -> str:  # never show the secret
        return f"<WebhookChannel {self.url}>"

    def body(self, message: OutboundMessage) -> bytes:
        payload = {
            "delivery_id": message.delivery_id,
            "idempotency_key": message.idempotency_key,
            "campaign": message.campaign,
            "contact": message.data,
            "sent_at": timezone.now().isoformat(),
        }
        return json.dumps(payload, separators=(",", ":"), default=str).encode()

    def post(self, message: OutboundMessage) -> HttpResult:
        body = self.body(message)
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": message.idempotency_key,
            SIGNATURE_HEADER: webhook_signature(secret=self.secret, body=body, timestamp=int(time.time())),
        }
        return http_post(
            url=self.url, body=body, headers=headers, timeout=self.timeout, retries=self.retries, backoff=self.backoff
        )

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[Outcome]:
        return outcomes_each(messages, self.post, give_up_after=self.give_up_after)
