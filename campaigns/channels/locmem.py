"""Keeps every message in `outbox`, for tests; counts by idempotency key show any second hand-over."""

from __future__ import annotations

from collections.abc import Sequence

from campaigns.channels.base import BaseChannel, OutboundMessage, Outcome

outbox: list[OutboundMessage] = []


class LocmemChannel(BaseChannel):
    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[Outcome]:
        outbox.extend(messages)
        return [Outcome.sent(message, provider_id=message.idempotency_key) for message in messages]
