"""Direct mail: a run's print file for the mailing house, one CSV per batch of a run.

    "direct_mail": {
        "BACKEND": "campaigns.channels.direct_mail.PrintFileChannel",
        "OPTIONS": {"path": "var/direct-mail"},
    }

Each batch the pipeline hands over is written to `<path>/campaign-<id>/run-<run id>/batch-<first
delivery id>.csv`, atomically (a temporary file renamed into place) and idempotently: a batch
handed over again after a worker died is written to the same name, replacing the first file, not
beside it. `print_file(run=...)` joins a run's files into the one CSV the mailing house gets: a
row per delivery recorded as sent, each delivery once. The folder must be shared by the workers
and the web server when they run on different machines.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings

from campaigns.channels import channel_settings
from campaigns.channels.base import BaseChannel, OutboundMessage, Outcome
from campaigns.models import CampaignRun, Delivery

ADDRESS_FIELDS = ("street", "house_number", "postal_code", "city", "country")
COLUMNS = ("delivery_id", "contact_key", "first_name", "last_name", *ADDRESS_FIELDS)


def _default_folder() -> Path:
    return Path(settings.VAR_DIR) / "direct-mail"


def print_folder() -> Path:
    """Where the direct-mail channel configured in settings writes its files."""
    found = channel_settings("direct_mail") or {}
    path = (found.get("OPTIONS") or {}).get("path")
    return Path(path) if path else _default_folder()


def run_folder(folder: Path, *, campaign_id: int, run_id: int) -> Path:
    return folder / f"campaign-{campaign_id}" / f"run-{run_id}"


def _row(message: OutboundMessage) -> dict[str, Any]:
    attributes = message.data.get("attributes") or {}
    return {
        "delivery_id": message.delivery_id,
        "contact_key": message.contact_key,
        "first_name": message.data.get("first_name") or "",
        "last_name": message.data.get("last_name") or "",
        **{name: attributes.get(name, "") for name in ADDRESS_FIELDS},
    }


def _write_atomically(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class PrintFileChannel(BaseChannel):
    def __init__(self, *, channel: str, path: str | None = None, **options: Any) -> None:
        super().__init__(channel=channel, **options)
        self.folder = Path(path) if path else _default_folder()

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[Outcome]:
        files: dict[Path, list[OutboundMessage]] = {}
        outcomes: list[Outcome] = []
        # A chunk holds one run's deliveries, but nothing here relies on it: a file per run.
        by_run: dict[tuple[Any, Any], list[OutboundMessage]] = {}
        for message in messages:
            key = (message.campaign.get("id"), message.data.get("run_id"))
            if None in key:
                outcomes.append(Outcome.permanent(message, "No campaign or run to file the message under."))
                continue
            by_run.setdefault(key, []).append(message)
        for (campaign_id, run_id), run_messages in by_run.items():
            first = min(message.delivery_id for message in run_messages)
            path = run_folder(self.folder, campaign_id=campaign_id, run_id=run_id) / f"batch-{first}.csv"
            files[path] = sorted(run_messages, key=lambda message: message.delivery_id)
        for path, file_messages in files.items():
            try:
                _write_atomically(path, (_row(message) for message in file_messages))
            except OSError as error:
                outcomes.extend(
                    Outcome.transient(message, f"{type(error).__name__}: {error}") for message in file_messages
                )
                continue
            provider_id = str(path.relative_to(self.folder))
            outcomes.extend(Outcome.sent(message, provider_id=provider_id) for message in file_messages)
        return outcomes


def print_file(*, run: CampaignRun, folder: Path | None = None) -> str:
    """The run's print file, for download: the header, then a row per delivery recorded as sent,
    in the order of the deliveries. A row of a file written by a worker that died before recording
    it, and written again in another file by the next worker, is there once."""
    base = folder or print_folder()
    sent = set(
        Delivery.objects.filter(run=run, channel="direct_mail", status=Delivery.Status.SENT).values_list(
            "pk", flat=True
        )
    )
    rows: dict[int, dict[str, str]] = {}
    for path in sorted(run_folder(base, campaign_id=run.campaign_id, run_id=run.pk).glob("batch-*.csv")):
        with path.open(encoding="utf-8", newline="") as file:
            for row in csv.DictReader(file):
                delivery_id = int(row["delivery_id"])
                if delivery_id in sent:
                    rows.setdefault(delivery_id, row)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows[delivery_id] for delivery_id in sorted(rows))
    return out.getvalue()
