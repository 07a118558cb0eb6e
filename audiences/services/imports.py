"""Imports of contacts and events from CSV and Excel files: create, preview, queue, run, and the
rejected rows as CSV. The work itself is in `audiences.imports` (reading, mapping, pipeline)."""

from __future__ import annotations

import csv
import datetime as dt
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from audiences.imports.mapping import MappingError, Plan, build_plan, guess_mapping, parse_row
from audiences.imports.pipeline import ImportTakenOver, Progress, merge, stage
from audiences.imports.reading import FileUnreadable, Table, open_table
from audiences.models import Identity, Import
from dialoog.database import server_bound_cursor

logger = logging.getLogger(__name__)

# The largest file the admin takes. Bigger files go through `manage.py import_contacts`, which
# reads from the server's disk. (The lead may move this to a setting.)
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
# A running import whose progress has not moved for this long belongs to a worker that died.
STALE_AFTER = dt.timedelta(minutes=15)
PREVIEW_ROWS = 20
TEMP_TABLES = ("import_stage", "import_rejected", "import_ident", "import_link", "import_lab", "import_person")


class ImportRunning(Exception):
    """The import is running in another worker, which has shown progress lately."""


def import_is_stale(import_run: Import) -> bool:
    """A running import whose progress has not moved for STALE_AFTER: its worker died."""
    return import_run.status == Import.Status.RUNNING and import_run.updated_at < timezone.now() - STALE_AFTER


def _queueable() -> Q:
    return Q(status__in=[Import.Status.UPLOADED, Import.Status.FAILED]) | Q(
        status=Import.Status.RUNNING, updated_at__lt=timezone.now() - STALE_AFTER
    )


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def import_create(
    *,
    kind: str,
    file_name: str,
    content: bytes,
    mapping: dict[str, str] | None = None,
    source: str = "",
    user=None,
    max_size: int | None = MAX_UPLOAD_BYTES,
) -> Import:
    """Keep an uploaded file as an import, with a mapping guessed from its header (and `mapping`
    on top). ValidationError, naming the file and the reason, when it is too large or unreadable."""
    if kind not in Import.Kind.values:
        raise ValidationError({"kind": f"unknown import kind {kind!r}; known: {', '.join(Import.Kind.values)}"})
    if max_size is not None and len(content) > max_size:
        raise ValidationError(
            {
                "content": f"{file_name} is {_megabytes(len(content))}; files up to {_megabytes(max_size)} can be "
                "uploaded. Split the file, or ask an administrator to import it with manage.py import_contacts."
            }
        )
    table = _open(content, file_name)
    guessed = guess_mapping(table.columns, kind)
    if mapping is not None:
        unknown = [column for column in mapping if column not in guessed]
        if unknown:
            raise ValidationError(
                {"mapping": f"{file_name} has no column {unknown[0]!r}; its columns: {', '.join(table.columns)}"}
            )
        guessed.update(mapping)
        _plan(table, guessed, kind)
    with transaction.atomic():
        created = Import.objects.create(
            kind=kind,
            file_name=file_name[:255],
            file_size=len(content),
            content=b"",
            mapping=guessed,
            source=source,
            created_by=user if user is not None and user.is_authenticated else None,
        )
        _store_content(created.pk, content)
    created.content = content
    return created


# The file goes in and out of the database as binary parameters and results. Django's cursors bind
# parameters on the client, so 90 MB would travel as a 180 MB hex literal for the server to parse
# (3.3 s stored, 1.2 s read back, against 0.8 s and 0.4 s like this).


def _store_content(pk: int, content: bytes) -> None:
    """Store the file, compressed with LZ4 where the server has it: PostgreSQL's default (pglz)
    takes seconds over a 90 MB file. A setting of this transaction only; the column and its data
    stay readable either way."""
    with server_bound_cursor() as cursor:
        cursor.execute(
            "SELECT set_config('default_toast_compression', 'lz4', true) FROM pg_settings"
            " WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"
        )
        cursor.execute("UPDATE audiences_import SET content = %b WHERE id = %s", [content, pk])


def _read_content(pk: int) -> bytes:
    with server_bound_cursor() as cursor:
        cursor.execute("SELECT content FROM audiences_import WHERE id = %s", [pk], binary=True)
        return bytes(cursor.fetchone()[0])


def _open(content: bytes, file_name: str) -> Table:
    try:
        return open_table(bytes(content), file_name)
    except FileUnreadable as error:
        raise ValidationError({"content": f"{file_name}: {error}"}) from error


def _plan(table: Table, mapping: dict[str, str], kind: str) -> Plan:
    try:
        return build_plan(table.columns, mapping, kind, settings.TIME_ZONE)
    except MappingError as error:
        raise ValidationError({"mapping": str(error)}) from error


def import_columns(*, import_run: Import) -> list[str]:
    """The file's columns, in the file's order."""
    return _open(import_run.content, import_run.file_name).columns


@dataclass
class PreviewRow:
    line: int
    values: list[str]
    errors: list[str]
    action: str


@dataclass
class Preview:
    columns: list[str]
    description: str
    mapping_error: str = ""
    rows: list[PreviewRow] = field(default_factory=list)


def import_preview(*, import_run: Import, mapping: dict[str, str] | None = None, rows: int = PREVIEW_ROWS) -> Preview:
    """A dry run of the first `rows` rows by the import's (or the given) mapping: the errors each
    would give and what each would do. Reads the database, writes nothing."""
    table = _open(import_run.content, import_run.file_name)
    preview = Preview(columns=table.columns, description=table.describe())
    try:
        plan = build_plan(table.columns, mapping if mapping is not None else import_run.mapping, import_run.kind)
    except MappingError as error:
        preview.mapping_error = str(error)
        plan = None
    parsed = []
    for line, values in table.rows:
        parsed.append((line, values, parse_row(plan, line, values) if plan else None))
        if len(parsed) >= rows:
            break
    owners = _owners(plan, [row for _line, _values, row in parsed if row and not row.errors]) if plan else {}
    for line, values, row in parsed:
        if row is None:
            preview.rows.append(PreviewRow(line, values, [], ""))
            continue
        action = "" if row.errors else _action(plan, row, owners)
        preview.rows.append(PreviewRow(line, values, row.errors, action))
    return preview


def _owners(plan: Plan, rows) -> dict[tuple[str, str], int]:
    wanted = Q(pk__in=[])
    for row in rows:
        for kind, value in zip(plan.identity_kinds, row.identities, strict=True):
            if value:
                wanted |= Q(kind=kind, value=value)
    return {
        (kind, value): contact
        for kind, value, contact in Identity.objects.filter(wanted).values_list("kind", "value", "contact_id")
    }


def _action(plan: Plan, row, owners) -> str:
    found = sorted(
        {
            owners[(kind, value)]
            for kind, value in zip(plan.identity_kinds, row.identities, strict=True)
            if (kind, value) in owners
        }
    )
    subject = "add the event to" if plan.kind == "events" else "update"
    if not found:
        return "create a new contact" + (" for the event" if plan.kind == "events" else "")
    if len(found) == 1:
        return f"{subject} contact #{found[0]}"
    return f"merge contacts {', '.join(f'#{pk}' for pk in found[1:])} into #{found[0]}, then {subject} it"


def import_queue(*, import_run: Import, mapping: dict[str, str]) -> Import:
    """Save the mapping and queue the import for a worker (after the transaction commits)."""
    table = _open(import_run.content, import_run.file_name)
    full = {column: mapping.get(column, "") for column in table.columns}
    _plan(table, full, import_run.kind)
    # A running import whose worker died (no progress for STALE_AFTER) can be queued again.
    queued = (
        Import.objects.filter(pk=import_run.pk)
        .filter(_queueable())
        .update(mapping=full, status=Import.Status.QUEUED, error="", updated_at=timezone.now())
    )
    if not queued:
        raise ValidationError(f"this import is {import_run.get_status_display().lower()}; it cannot be queued again")
    from audiences.tasks import import_run_task

    import_id = import_run.pk
    transaction.on_commit(lambda: import_run_task.delay(import_id))
    import_run.refresh_from_db(fields=["mapping", "status", "error"])
    return import_run


def import_run(
    *, import_run: Import, progress: Progress | None = None, user=None, raise_if_running: bool = False
) -> Import:
    """Run the import: stage the rows, then resolve, merge and write them in one transaction.

    Safe to call twice: a done import (or one another worker is running) is left alone; a failed
    or abandoned one runs again from the file. With `raise_if_running`, one another worker runs
    and has shown progress lately raises ImportRunning (a task then tries again later). A file or
    mapping that cannot be used marks the import failed with the reason; any other error does so
    too and is raised. A run another worker took over (this one looked dead) writes nothing.
    """
    now = timezone.now()
    claimable = Q(status__in=[Import.Status.UPLOADED, Import.Status.QUEUED, Import.Status.FAILED]) | Q(
        status=Import.Status.RUNNING, updated_at__lt=now - STALE_AFTER
    )
    claimed = (
        Import.objects.filter(pk=import_run.pk)
        .filter(claimable)
        .update(
            status=Import.Status.RUNNING, started_at=now, finished_at=None, processed_rows=0, error="", updated_at=now
        )
    )
    if not claimed:
        import_run.refresh_from_db()
        if raise_if_running and import_run.status == Import.Status.RUNNING:
            raise ImportRunning(f"import {import_run.pk} is running elsewhere (progress at {import_run.updated_at})")
        return import_run
    run = Import.objects.defer("content").get(pk=import_run.pk)
    try:
        content = _read_content(run.pk)
        table = open_table(content, run.file_name)
        plan = build_plan(table.columns, run.mapping, run.kind, settings.TIME_ZONE)
        total = content.count(b"\n") if table.format == "csv" else None
        counts = stage(table=table, plan=plan, import_run=run, progress=progress, total=total)
        merge(plan=plan, import_run=run, counts=counts, user=user or run.created_by)
    except ImportTakenOver:
        # Another worker took the import over (ours looked dead): it is that run's now.
        logger.warning("Import %s was taken over by another run; this run's work is rolled back", run.pk)
    except (FileUnreadable, MappingError) as error:
        _fail(run, f"{run.file_name}: {error}")
    except Exception as error:
        logger.exception("Import %s failed", run.pk)
        _fail(run, f"The import stopped on an unexpected error ({type(error).__name__}); nothing was imported.")
        raise
    finally:
        _drop_temp_tables()
    return Import.objects.defer("content").get(pk=run.pk)  # the file is read when asked for, not again now


def _fail(run: Import, message: str) -> None:
    # Only while this run still owns the import (another may have taken it over).
    Import.objects.filter(pk=run.pk, status=Import.Status.RUNNING, started_at=run.started_at).update(
        status=Import.Status.FAILED, error=message, finished_at=timezone.now(), updated_at=timezone.now()
    )


def _drop_temp_tables() -> None:
    if connection.connection is None or connection.needs_rollback:
        return
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {', '.join(TEMP_TABLES)}")


class _Echo:
    def write(self, value: str) -> str:
        return value


# A cell a spreadsheet would run as a formula (=, @, or + and - followed by more than a number
# or phone number: "-2+3+cmd|' /C calc'!A0"): written with a leading apostrophe, which Excel
# shows as text and does not save back. "+31612345678" and "-12,50" stay as they are.
_FORMULA = re.compile(r"^(?:[=@\t\r]|[+-](?![\d\s().,-]*$))")


def _inert(cell: str) -> str:
    return "'" + cell if _FORMULA.match(cell) else cell


def import_rejected_csv(*, import_run: Import) -> Iterator[str]:
    """The rejected rows as CSV text, in pieces: `line`, `reason`, then the file's own columns
    (with the file's delimiter, UTF-8 with BOM so that Excel reads it as it was)."""
    try:
        table = open_table(bytes(import_run.content), import_run.file_name)
        columns, delimiter = table.columns, table.delimiter or ","
    except FileUnreadable:
        columns, delimiter = [], ","
    rejected = import_run.rejected_rows.order_by("line_number").values_list("line_number", "reason", "row")
    has_extra = import_run.rejected_rows.filter(row__has_key="(extra fields)").exists()
    header = ["line", "reason", *columns] + (["(extra fields)"] if has_extra else [])
    shown_header = [_inert(name) for name in header]
    writer = csv.writer(_Echo(), delimiter=delimiter)
    yield "\ufeff" + writer.writerow(shown_header)
    for line, reason, row in rejected.iterator(chunk_size=2000):
        cells = [_inert(str(row.get(column, ""))) for column in header[2:]]
        yield writer.writerow([line, _inert(reason), *cells])
