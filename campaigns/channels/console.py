"""Prints each message to standard output, for development (`make run`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from campaigns.channels.base import BaseChannel, OutboundMessage, Outcome


class ConsoleChannel(BaseChannel):
    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[Outcome]:
        stream = self.options.get("stream") or sys.stdout
        for message in messages:
            body = message.text or message.html or message.data
            stream.write(f"[{self.channel}] to {message.to} ({message.idempotency_key}) {message.subject}\n{body}\n\n")
        stream.flush()
        return [Outcome.sent(message) for message in messages]
