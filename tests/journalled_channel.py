"""The file backend as the worker tests use it: slowed down like a provider over the network, and
keeping a journal of every hand-over, so that a message handed over twice shows even where the
file backend (honouring the idempotency key) writes it once.

Configured for the workers through the environment (see dialoog/settings/test.py):

    CAMPAIGN_TEST_EMAIL_BACKEND=tests.journalled_channel.JournalledFileChannel
    CAMPAIGN_TEST_EMAIL_OPTIONS={"path": "<folder>", "journal": "<file>", "delay": 0.005}
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from campaigns.channels.base import OutboundMessage, Outcome
from campaigns.channels.filebased import FileChannel


class JournalledFileChannel(FileChannel):
    def __init__(self, *, channel: str, journal: str, delay: float = 0.0, **options: object) -> None:
        super().__init__(channel=channel, **options)
        self.journal = Path(journal)
        self.delay = delay

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[Outcome]:
        outcomes = []
        for message in messages:
            # One line per hand-over, appended in one write (O_APPEND): whole even when workers write at once.
            descriptor = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(descriptor, f"{message.idempotency_key} {os.getpid()}\n".encode())
            finally:
                os.close(descriptor)
            time.sleep(self.delay)
            outcomes += super().send_batch([message])
        return outcomes


def hand_overs(journal: Path) -> list[tuple[str, int]]:
    """The journal's hand-overs, in order: (idempotency key, the worker's process id)."""
    if not journal.exists():
        return []
    return [(key, int(pid)) for key, pid in (line.split() for line in journal.read_text().splitlines())]


def handed_over_again(journal: Path) -> Counter[str]:
    """The idempotency keys handed over more than once, with how often."""
    counts = Counter(key for key, _pid in hand_overs(journal))
    return Counter({key: count for key, count in counts.items() if count > 1})
