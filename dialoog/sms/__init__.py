"""Sending SMS the way Django sends email: a backend named in settings (`SMS_BACKEND`), loaded
with `import_string`, that takes a batch of messages. Console, file and in-memory backends ship
here for development and tests; a provider's HTTP backend subclasses `BaseSmsBackend`.

    send_sms(to="+31612345678", text="Uw code is 1234")

`outbox` holds what the in-memory backend sent (tests read and empty it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from dialoog.sms.backends.base import BaseSmsBackend


@dataclass
class SmsMessage:
    to: str  # E.164, such as +31612345678
    text: str
    sender: str = field(default_factory=lambda: settings.SMS_SENDER)


outbox: list[SmsMessage] = []


def get_connection(backend: str | None = None, **options: Any) -> BaseSmsBackend:
    backend_class: type[BaseSmsBackend] = import_string(backend or settings.SMS_BACKEND)
    return backend_class(**options)


def send_sms(*, to: str, text: str, sender: str | None = None) -> int:
    """Send one SMS through the configured backend; the number sent (0 or 1)."""
    message = SmsMessage(to=to, text=text, sender=sender or settings.SMS_SENDER)
    return get_connection().send_messages([message])
