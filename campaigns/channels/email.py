"""Campaign email through Django's email backends: SMTP, or an ESP through django-anymail.

    "email": {
        "BACKEND": "campaigns.channels.email.EmailChannel",
        "OPTIONS": {
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",  # default: settings.EMAIL_BACKEND
            "message_id_domain": "mail.example.nl",  # default: the domain of DEFAULT_FROM_EMAIL
            # any other option goes to the email backend (host, port, username, password, use_tls...)
        },
    }

One connection is opened per batch, and the messages go over it one by one, so that each gets
its own outcome: a recipient the server refuses with a 5xx is a permanent failure, a 4xx (greylisting,
a full mailbox for now) is transient, and so is a dropped connection or a timeout, after which the
channel connects once more and goes on with the rest of the batch. The Message-ID is the delivery's
idempotency key, `<dialoog-delivery-N@domain>`, the same on every attempt.
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Sequence
from email.utils import parseaddr
from typing import Any

from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.base import BaseEmailBackend

from campaigns.channels.base import BaseChannel, OutboundMessage, Outcome

logger = logging.getLogger(__name__)

CHANNEL_OPTIONS = ("EMAIL_BACKEND", "message_id_domain")


def _domain(address: str) -> str:
    _name, email = parseaddr(address)
    return email.rpartition("@")[2] if "@" in email else ""


class _ConnectionLost(Exception):
    """The connection broke: the message is transient, and the rest needs a new connection."""


class EmailChannel(BaseChannel):
    connection: BaseEmailBackend | None = None

    def __init__(self, *, channel: str, **options: Any) -> None:
        super().__init__(channel=channel, **options)
        self.domain: str = options.get("message_id_domain") or _domain(settings.DEFAULT_FROM_EMAIL) or "dialoog.invalid"
        self.backend_options = {key: value for key, value in options.items() if key not in CHANNEL_OPTIONS}

    def open(self) -> None:
        self.connection = get_connection(
            backend=self.options.get("EMAIL_BACKEND"), fail_silently=False, **self.backend_options
        )
        self.connection.open()

    def close(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:
                logger.info("Closing the email connection failed", exc_info=True)

    def email(self, message: OutboundMessage) -> EmailMultiAlternatives:
        email = EmailMultiAlternatives(
            subject=message.subject,
            body=message.text,
            from_email=message.from_email or settings.DEFAULT_FROM_EMAIL,
            to=[message.to],
            reply_to=[message.reply_to] if message.reply_to else None,
            headers={**message.headers, "Message-ID": self.message_id(message)},
            connection=self.connection,
        )
        if message.html:
            email.attach_alternative(message.html, "text/html")
        return email

    def message_id(self, message: OutboundMessage) -> str:
        return f"<{message.idempotency_key}@{self.domain}>"

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[Outcome]:
        if self.connection is None:
            self.open()
        outcomes: list[Outcome] = []
        reconnected = False
        for index, message in enumerate(messages):
            try:
                outcomes.append(self.send_one(message))
            except _ConnectionLost as lost:
                outcomes.append(Outcome.transient(message, str(lost)))
                if index == len(messages) - 1:
                    break
                if reconnected or not self.reconnect():
                    # No second chance in this batch: the rest waits for the next attempt.
                    error = f"Not tried: the connection was lost ({lost})."
                    outcomes.extend(Outcome.transient(rest, error) for rest in messages[index + 1 :])
                    break
                reconnected = True
        return outcomes

    def reconnect(self) -> bool:
        self.close()
        try:
            self.open()
        except OSError as error:
            logger.warning("Reconnecting to the email server failed: %s", error)
            return False
        return True

    def send_one(self, message: OutboundMessage) -> Outcome:
        assert self.connection is not None  # noqa: S101 - opened by send_batch
        try:
            email = self.email(message)
        except ValueError as error:  # a header with a line break, an address that is no address
            return Outcome.permanent(message, f"{type(error).__name__}: {error}")
        try:
            taken = self.connection.send_messages([email])
        except smtplib.SMTPRecipientsRefused as refused:
            code, answer = next(iter(refused.recipients.values()), (0, b""))
            answered = f"{code} {_text(answer)}"
            return Outcome.permanent(message, answered) if code >= 500 else Outcome.transient(message, answered)
        except smtplib.SMTPSenderRefused as refused:
            # The sender, not this recipient: the setup is wrong, so every message waits and is tried again.
            return Outcome.transient(message, f"Sender refused: {refused.smtp_code} {_text(refused.smtp_error)}")
        except smtplib.SMTPServerDisconnected as error:
            raise _ConnectionLost(f"Disconnected: {error}") from error
        except smtplib.SMTPResponseException as error:  # the server said no to this message's data
            text = f"{error.smtp_code} {_text(error.smtp_error)}"
            return Outcome.permanent(message, text) if error.smtp_code >= 500 else Outcome.transient(message, text)
        except OSError as error:  # a timeout, a reset connection (smtplib's own errors are handled above)
            raise _ConnectionLost(f"{type(error).__name__}: {error}") from error
        except AnymailRecipientsRefused as refused:  # an ESP: the address is invalid, bounced or unsubscribed there
            return Outcome.permanent(message, _esp_error(refused))
        except AnymailAPIError as error:  # an ESP's API: 5xx, 429 and no answer are for later, another 4xx is not
            status = getattr(error, "status_code", None)
            permanent = status is not None and 400 <= status < 500 and status != 429
            text = _esp_error(error)
            return Outcome.permanent(message, text) if permanent else Outcome.transient(message, text)
        if not taken:
            return Outcome.transient(message, "The email backend did not take the message.")
        # An ESP names the message by its own id, which its status reports carry; SMTP by our Message-ID.
        esp_status = getattr(email, "anymail_status", None)
        esp_id = getattr(esp_status, "message_id", None) if esp_status is not None else None
        return Outcome.sent(message, provider_id=str(esp_id) if esp_id is not None else self.message_id(message))


def _esp_error(error: Exception) -> str:
    """What an ESP's error says (anymail's text may need the HTTP response it came with)."""
    try:
        return f"{type(error).__name__}: {error}"
    except Exception:  # noqa: BLE001 - an error that cannot say what it is still is one
        return f"{type(error).__name__} (status {getattr(error, 'status_code', None)})"


def _text(answer: bytes | str) -> str:
    return answer.decode("utf-8", "replace") if isinstance(answer, bytes) else str(answer)
