"""SMS for campaigns, two ways.

`SmsChannel` hands each message to the project's SMS backends (`SMS_BACKEND`, see dialoog/sms/):
console, file and memory for development and tests, or a provider's `BaseSmsBackend`.

`HttpSmsChannel` talks to an HTTP SMS provider itself, one POST per message:

    "sms": {
        "BACKEND": "campaigns.channels.sms.HttpSmsChannel",
        "OPTIONS": {
            "url": "https://sms.example.com/v1/messages",
            "token": "...",                 # sent as "Authorization: Bearer ..."; or username + password (Basic)
            "payload": "json",              # or "form"
            "fields": {"to": "to", "text": "body", "sender": "from", "reference": "reference"},
            "sender": "Dialoog",            # default: SMS_SENDER
            "provider_id_field": "id",      # where a JSON answer carries the provider's message id
            "timeout": 10,
            "retries": 2,
            "give_up_after": 3,             # transient failures in a row before the rest of the batch waits
        },
    }

The reference the provider gets is the delivery's idempotency key (also as an Idempotency-Key
header), so a message handed over twice after a worker died is recognised as one.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from campaigns.channels.base import BaseChannel, OutboundMessage, Outcome
from campaigns.channels.http import HttpResult, http_post, outcomes_each
from dialoog import sms
from dialoog.sms.backends.base import BaseSmsBackend

DEFAULT_FIELDS = {"to": "to", "text": "text", "sender": "sender", "reference": "reference"}


class SmsChannel(BaseChannel):
    """Through `dialoog.sms.get_connection()`: one message at a time, so each has its own outcome."""

    connection: BaseSmsBackend | None = None

    def open(self) -> None:
        self.connection = sms.get_connection(self.options.get("SMS_BACKEND"))

    def close(self) -> None:
        self.connection = None

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[Outcome]:
        if self.connection is None:
            self.open()
        assert self.connection is not None  # noqa: S101 - for the type checker
        sender = self.options.get("sender") or settings.SMS_SENDER
        outcomes = []
        for message in messages:
            try:
                taken = self.connection.send_messages([sms.SmsMessage(to=message.to, text=message.text, sender=sender)])
            except Exception as error:  # noqa: BLE001 - a backend's failure for one message is that message's outcome
                outcomes.append(Outcome.transient(message, f"{type(error).__name__}: {error}"))
                continue
            if taken:
                outcomes.append(Outcome.sent(message, provider_id=message.idempotency_key))
            else:
                outcomes.append(Outcome.transient(message, "The SMS backend did not take the message."))
        return outcomes


class HttpSmsChannel(BaseChannel):
    """A generic HTTP SMS provider; see the module's docstring for its options."""

    def __init__(self, *, channel: str, **options: Any) -> None:
        super().__init__(channel=channel, **options)
        self.url: str = options.get("url") or ""
        self.payload: str = options.get("payload", "json")
        self.fields = {**DEFAULT_FIELDS, **(options.get("fields") or {})}
        self.sender: str = options.get("sender") or settings.SMS_SENDER
        self.timeout = float(options.get("timeout", 10))
        self.retries = int(options.get("retries", 2))
        self.backoff = float(options.get("backoff", 0.5))
        self.provider_id_field: str = options.get("provider_id_field", "id")
        self.give_up_after = int(options.get("give_up_after", 3))
        if self.payload not in ("json", "form"):
            raise ImproperlyConfigured(f"HttpSmsChannel: payload must be 'json' or 'form', not {self.payload!r}")

    def __repr__(self) -> str:  # never show the credentials
        return f"<HttpSmsChannel {self.url}>"

    def _auth_headers(self) -> dict[str, str]:
        if self.options.get("token"):
            return {"Authorization": f"Bearer {self.options['token']}"}
        if self.options.get("username"):
            pair = f"{self.options['username']}:{self.options.get('password', '')}".encode()
            return {"Authorization": f"Basic {base64.b64encode(pair).decode('ascii')}"}
        return {}

    def _request(self, message: OutboundMessage) -> tuple[bytes, dict[str, str]]:
        values = {
            self.fields["to"]: message.to,
            self.fields["text"]: message.text,
            self.fields["sender"]: self.sender,
            self.fields["reference"]: message.idempotency_key,
        }
        headers = {**self._auth_headers(), "Idempotency-Key": message.idempotency_key, "Accept": "application/json"}
        if self.payload == "json":
            return json.dumps(values).encode(), {**headers, "Content-Type": "application/json"}
        return urlencode(values).encode(), {**headers, "Content-Type": "application/x-www-form-urlencoded"}

    def _provider_id(self, result: HttpResult, message: OutboundMessage) -> str:
        try:
            answer = json.loads(result.body)
        except ValueError:
            return message.idempotency_key
        if isinstance(answer, dict) and answer.get(self.provider_id_field) not in (None, ""):
            return str(answer[self.provider_id_field])
        return message.idempotency_key

    def post(self, message: OutboundMessage) -> HttpResult:
        body, headers = self._request(message)
        return http_post(
            url=self.url, body=body, headers=headers, timeout=self.timeout, retries=self.retries, backoff=self.backoff
        )

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[Outcome]:
        return outcomes_each(messages, self.post, provider_id=self._provider_id, give_up_after=self.give_up_after)
