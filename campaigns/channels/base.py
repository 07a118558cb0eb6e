"""The interface every channel backend implements.

A backend is opened once per batch (one SMTP connection, one HTTP session), takes the batch's
messages and returns one outcome per message, in any order, keyed by delivery id:

- SENT: the channel took it (`provider_id` is the channel's own id, when it gives one);
- TRANSIENT: try again later (a timeout, a 5xx, a dropped connection): retried with backoff;
- PERMANENT: never try again (an address the provider refuses, a 4xx that will not change).

Every message carries `idempotency_key`, the same on every attempt of the same delivery: backends
pass it on to the provider (a Message-ID, an Idempotency-Key header, a file name) so that a
message handed over just before a worker died, and handed over again by the next worker, is
recognised by the provider as the same message. A backend never raises for one message's
failure; it raises only when the whole batch could not be tried (then every message is retried).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


class Result(enum.StrEnum):
    SENT = "sent"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class OutboundMessage:
    delivery_id: int
    idempotency_key: str
    channel: str
    to: str  # an email address, an E.164 phone number, or the contact key for direct mail and webhooks
    contact_key: str
    campaign: dict[str, Any] = field(default_factory=dict)  # id, name
    subject: str = ""
    html: str = ""
    text: str = ""
    from_email: str = ""
    reply_to: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    # Channel-specific data: the script for a call list, the address fields for direct mail, the
    # contact's profile for a webhook.
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    result: Result
    provider_id: str = ""
    error: str = ""

    @classmethod
    def sent(cls, message: OutboundMessage, provider_id: str = "") -> Outcome:
        return cls(message.delivery_id, Result.SENT, provider_id)

    @classmethod
    def transient(cls, message: OutboundMessage, error: str) -> Outcome:
        return cls(message.delivery_id, Result.TRANSIENT, error=error)

    @classmethod
    def permanent(cls, message: OutboundMessage, error: str) -> Outcome:
        return cls(message.delivery_id, Result.PERMANENT, error=error)


class BaseChannel:
    """Subclass and implement `send_batch`; `open` and `close` hold a connection for one batch."""

    def __init__(self, *, channel: str, **options: Any) -> None:
        self.channel = channel
        self.options = options

    def open(self) -> None:
        """Called once before a batch."""

    def close(self) -> None:
        """Called once after a batch, also when it failed."""

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[Outcome]:
        raise NotImplementedError

    def __enter__(self) -> BaseChannel:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
