from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dialoog import sms
from dialoog.sms.backends.base import BaseSmsBackend

if TYPE_CHECKING:
    from dialoog.sms import SmsMessage


class SmsBackend(BaseSmsBackend):
    """Keeps each SMS in `dialoog.sms.outbox`, for tests."""

    def send_messages(self, messages: Sequence[SmsMessage]) -> int:
        sms.outbox.extend(messages)
        return len(messages)
