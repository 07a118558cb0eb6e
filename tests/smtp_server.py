"""A real SMTP server on loopback (aiosmtpd), for the tests of the email channel.

with smtp_server() as server:
    server.refuse("klant1@example.nl")          # 550 at RCPT, every time
    server.defer("klant2@example.nl", times=1)  # 451 at RCPT, the first time
    ... send ...
    server.messages  # every message received, parsed with the email package
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import socket
import threading
from collections.abc import Iterator
from email.message import EmailMessage

from aiosmtpd.controller import Controller

# The campaigns' email channel through Django's SMTP backend (the `smtp` fixture points it here).
SMTP_CHANNEL = {
    "BACKEND": "campaigns.channels.email.EmailChannel",
    "OPTIONS": {"EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend"},
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RecordingHandler:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.refused: set[str] = set()
        self.deferred: dict[str, int] = {}
        self.lock = threading.Lock()

    def refuse(self, address: str) -> None:
        self.refused.add(address.lower())

    def defer(self, address: str, *, times: int = 1) -> None:
        self.deferred[address.lower()] = times

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        key = address.lower()
        with self.lock:
            if key in self.refused:
                return "550 5.1.1 No such user here"
            if self.deferred.get(key, 0) > 0:
                self.deferred[key] -= 1
                return "451 4.7.1 Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        parsed = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(parsed)  # type: ignore[arg-type]
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"

    def by_delivery(self) -> dict[str, list[EmailMessage]]:
        found: dict[str, list[EmailMessage]] = {}
        for message in self.messages:
            found.setdefault(str(message["X-Dialoog-Delivery"]), []).append(message)
        return found


@contextlib.contextmanager
def smtp_server() -> Iterator[tuple[RecordingHandler, int]]:
    handler = RecordingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()
