"""What `import_contacts` and `import_events` share: read the file, create the import, run it
with a progress bar on stderr, print the summary and write the rejected rows."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from audiences.services.imports import import_create, import_preview, import_rejected_csv, import_run


def _mapping(pairs: list[str]) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        column, separator, target = pair.rpartition("=")
        if not separator or not column:
            raise CommandError(f"--map {pair!r}: write it as COLUMN=TARGET, e.g. --map 'E-mailadres=identity:email'")
        mapping[column] = target
    return mapping


def _messages(error: ValidationError) -> str:
    return "; ".join(error.messages)


class ImportCommand(BaseCommand):
    kind = ""

    def add_arguments(self, parser):
        parser.add_argument("file", help="a CSV (UTF-8 or Windows-1252; comma, semicolon or tab) or XLSX file")
        parser.add_argument("--source", default="", help="recorded on new identities and consent changes")
        parser.add_argument(
            "--map",
            action="append",
            default=[],
            metavar="COLUMN=TARGET",
            help="map a column (e.g. 'Mobiel=identity:phone', 'Punten=attribute:points:number', 'Notitie='"
            " to ignore it); on top of the mapping guessed from the header",
        )
        parser.add_argument("--dry-run", action="store_true", help="show what the first rows would do; write nothing")
        parser.add_argument("--rejected", help="where to write the rejected rows (default: FILE.rejected.csv)")

    def handle(self, *args, **options):
        path = Path(options["file"])
        try:
            content = path.read_bytes()
        except OSError as error:
            raise CommandError(f"{path}: cannot be read ({error.strerror or error})") from error
        with transaction.atomic():
            created = self._create(path, content, options)
            if options["dry_run"]:
                self._dry_run(created)
                transaction.set_rollback(True)  # a dry run writes nothing, not even the import
                return
        del content
        with tqdm(total=None, unit=" rows", unit_scale=True, file=self.stderr, desc=path.name) as bar:

            def progress(processed: int, total: int | None) -> None:
                if total is not None and bar.total != total:
                    bar.total = total
                bar.update(processed - bar.n)

            done = import_run(import_run=created, progress=progress)
        if done.status != done.Status.DONE:
            raise CommandError(done.error or f"the import ended {done.status}")
        self.stdout.write(
            f"{done.file_name}: {done.total_rows} rows: {done.created_count} created, {done.updated_count} updated,"
            f" {done.unchanged_count} unchanged, {done.merged_count} merged, {done.rejected_count} rejected"
            f" (import #{done.pk})"
        )
        if done.rejected_count:
            target = Path(options["rejected"] or f"{path}.rejected.csv")
            with target.open("w", encoding="utf-8", newline="") as out:
                for piece in import_rejected_csv(import_run=done):
                    out.write(piece)
            self.stdout.write(f"Rejected rows, with line and reason: {target}")

    def _create(self, path: Path, content: bytes, options):
        try:
            created = import_create(
                kind=self.kind,
                file_name=path.name,
                content=content,
                mapping=_mapping(options["map"]),
                source=options["source"],
                max_size=None,  # a file on the server's disk: no upload limit
            )
        except ValidationError as error:
            raise CommandError(f"{path}: {_messages(error)}") from error
        mapped = {column: target for column, target in created.mapping.items() if target}
        self.stderr.write(f"Mapping: {', '.join(f'{c} → {t}' for c, t in mapped.items())}")
        return created

    def _dry_run(self, created) -> None:
        preview = import_preview(import_run=created)
        self.stdout.write(f"{created.file_name}: {preview.description}")
        if preview.mapping_error:
            raise CommandError(preview.mapping_error)
        for row in preview.rows:
            outcome = "; ".join(row.errors) if row.errors else row.action
            self.stdout.write(f"line {row.line}: {'REJECTED: ' if row.errors else ''}{outcome}")
        self.stdout.write("Dry run: nothing was written.")
