from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dialoog.sms.backends.base import BaseSmsBackend

if TYPE_CHECKING:
    from dialoog.sms import SmsMessage


class SmsBackend(BaseSmsBackend):
    """Writes each SMS to standard output (the default of `make run`)."""

    def send_messages(self, messages: Sequence[SmsMessage]) -> int:
        for message in messages:
            sys.stdout.write(f"SMS from {message.sender} to {message.to}:\n{message.text}\n{'-' * 40}\n")
        sys.stdout.flush()
        return len(messages)
