from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.utils import timezone

from dialoog.sms.backends.base import BaseSmsBackend

if TYPE_CHECKING:
    from dialoog.sms import SmsMessage


class SmsBackend(BaseSmsBackend):
    """Appends each SMS as a JSON line to a file per process under `SMS_FILE_PATH`."""

    def __init__(self, file_path: str | None = None, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self.folder = Path(file_path or settings.SMS_FILE_PATH)

    def send_messages(self, messages: Sequence[SmsMessage]) -> int:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"sms-{os.getpid()}.jsonl"
        with path.open("a", encoding="utf-8") as file:
            for message in messages:
                file.write(json.dumps({**asdict(message), "sent_at": timezone.now().isoformat()}) + "\n")
        return len(messages)
