"""Writes each message as a JSON file named after its idempotency key, under a folder per channel.

A message is written whole or not at all: into a temporary file first, then linked under its
name, which fails when the name is taken. So a message handed over a second time, by a worker
that took over a batch whose first worker died after the hand-over but before recording it,
finds its file there and is not written again, as a provider honouring an idempotency key would
do; and a worker killed (or a disk filling up) halfway through a write leaves no half a message
under the name, only a temporary file, for the next attempt to write the message whole.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from django.conf import settings

from campaigns.channels.base import BaseChannel, OutboundMessage, Outcome


class FileChannel(BaseChannel):
    def __init__(self, *, channel: str, path: str | None = None, **options: object) -> None:
        super().__init__(channel=channel, **options)
        default = getattr(settings, "CAMPAIGN_FILE_PATH", Path(settings.VAR_DIR) / "outbox")
        self.folder = Path(path or (Path(default) / channel))

    def open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[Outcome]:
        outcomes = []
        folder = os.fspath(self.folder)
        for message in messages:
            name = f"{message.idempotency_key}.json"
            try:
                _write_once(folder, name, json.dumps(_as_dict(message), default=str).encode())
            except OSError as error:
                outcomes.append(Outcome.transient(message, f"{type(error).__name__}: {error}"))
                continue
            outcomes.append(Outcome.sent(message, provider_id=name))
        return outcomes


def _write_once(folder: str, name: str, data: bytes) -> None:
    """Write `data` as `name` in `folder`, whole, unless a file is there: then it is this message,
    handed over before. Plain os calls on bytes: a text file object costs as much again per message."""
    # A temporary name of this process's own (a process writes one message at a time): no random
    # name to make per message, and a file left by a killed process is written over next time.
    path = os.path.join(folder, name)
    temporary = os.path.join(folder, f".{name}.{os.getpid()}.part")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            rest = memoryview(data)
            while rest:  # a short write goes on; a full disk raises (ENOSPC) before the link below
                rest = rest[os.write(descriptor, rest) :]
        finally:
            os.close(descriptor)
        with contextlib.suppress(FileExistsError):  # handed over before: the file there is this message
            os.link(temporary, path)
    finally:
        os.unlink(temporary)


def _as_dict(message: OutboundMessage) -> dict[str, object]:
    """`dataclasses.asdict` without its deep copy: the JSON is the same, the copy is half the time."""
    return {field.name: getattr(message, field.name) for field in fields(message)}
