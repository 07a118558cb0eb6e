from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dialoog.sms import SmsMessage


class BaseSmsBackend:
    """Hands a batch of SMS to somewhere; returns how many it took."""

    def __init__(self, fail_silently: bool = False, **options: object) -> None:
        self.fail_silently = fail_silently

    def send_messages(self, messages: Sequence[SmsMessage]) -> int:
        raise NotImplementedError
