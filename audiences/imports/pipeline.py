"""The import pipeline: parse in Python, stage with COPY, resolve and merge in SQL.

1. **Stage** (chunks of CHUNK_ROWS, progress after each): every row is parsed and normalised
   by the mapping (`mapping.parse_row`); good rows are written with `COPY` into a TEMP table
   (`import_stage`), bad rows with their line and reason into another (`import_rejected`).
   Nothing outside this session's temp tables is written, so a crash here leaves nothing
   behind and a re-run starts again from the file.
2. **Merge**, one transaction, serialised between imports by an advisory lock:
   - `import_ident`: every (line, kind, value), with the contact that owns it today;
   - rows are grouped into persons: rows sharing an identity, or whose identities belong to
     the same contact, are one person (transitively: label propagation over the few rows that
     share anything; all other rows are a person of their own);
   - a person whose rows point at 2+ existing contacts merges them into the oldest (lowest id)
     through the contact merge service;
   - persons without a contact get one (ids drawn from the contact sequence, one INSERT);
     existing contacts are updated only where a value differs (attributes merged with `||`),
     missing identities are added (ON CONFLICT DO NOTHING), consent changes are recorded only
     where the status differs from the current `Consent`, which is upserted to match;
   - events are inserted with ON CONFLICT (external_id) DO NOTHING;
   - the rejected rows and the counts are written and the import is marked done.
   A crash anywhere in the merge rolls all of it back.

Running the same file again therefore changes nothing: every identity is found, no field
differs, no consent differs, every event's external id is already there.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from audiences.imports.mapping import (
    CONTACT_FIELDS,
    EVENTS,
    NotFast,
    ParsedRow,
    Plan,
    contact_line_writer,
    derived_external_id,
    parse_row,
)
from audiences.imports.reading import FileUnreadable, Table
from audiences.models import Channel, Contact, Import

logger = logging.getLogger(__name__)

CHUNK_ROWS = 100_000  # progress is reported after each chunk
# Lines are handed to COPY in pieces of this many, so that PostgreSQL stores one piece (on the other
# core) while Python parses the next.
PIECE_ROWS = 5_000
TEMP_BUFFERS = "1GB"
# Serialises the merge step of concurrent imports: two files that bring the same new person must
# not both create a contact for them. (Any constant; "DIAL" "IMPT" in ASCII.)
MERGE_LOCK = 0x4449414C_494D5054
CHANNELS = tuple(Channel.values)
_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
NULL = "\\N"

Progress = Callable[[int, int | None], None]


class ImportTakenOver(Exception):
    """Another run claimed the import (this one looked dead): this run must write nothing."""


@dataclass
class Counts:
    total: int = 0
    staged: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    merged: int = 0
    rejected: int = 0
    contacts_created: int = 0


def _copy_text(value: str | None) -> str:
    if value is None:
        return NULL
    return value.translate(_COPY_ESCAPES) if _COPY_SPECIAL.search(value) else value


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # one encoder: dumps() builds one per call


def _json(value: dict) -> str | None:
    return _ENCODER.encode(value) if value else None


# --- Staging ------------------------------------------------------------------------------


def _stage_columns(plan: Plan) -> list[tuple[str, str]]:
    columns = [("line", "integer"), ("grp", "integer")] + [(f"i{n}", "text") for n in range(len(plan.identity_columns))]
    if plan.kind == EVENTS:
        columns += [
            ("type", "text"),
            ("occurred_at", "timestamptz"),
            ("value", "numeric(12, 2)"),
            ("currency", "text"),
            ("external_id", "text"),
            ("attrs", "jsonb"),
        ]
    else:
        columns += [(name, "text") for name in CONTACT_FIELDS] + [("attrs", "jsonb")]
        columns += [(f"c_{channel}", "text") for channel in CHANNELS]
    return columns


def _stage_line(plan: Plan, row: ParsedRow) -> str:
    fields = row.fields
    parts = [str(row.line), str(row.line), *row.identities]
    if plan.kind == EVENTS:
        parts += [
            fields["type"],
            fields["occurred_at"],
            fields.get("value"),
            fields.get("currency"),
            fields.get("external_id") or derived_external_id(row),
            _json(row.attributes),
        ]
    else:
        parts += [fields.get(name) for name in CONTACT_FIELDS]
        parts.append(_json(row.attributes))
        parts += [row.consents.get(channel) for channel in CHANNELS]
    if row.raw_is_plain:
        return "\t".join([NULL if part is None else part for part in parts]) + "\n"
    return "\t".join([_copy_text(part) for part in parts]) + "\n"


def _rejected_line(columns: list[str], line: int, reason: str, values: list[str]) -> str:
    record = dict(zip(columns, values, strict=False))
    if len(values) > len(columns):
        record["(extra fields)"] = " | ".join(values[len(columns) :])
    return f"{line}\t{_copy_text(reason)}\t{_copy_text(_ENCODER.encode(record))}\n"


def _execute(cursor, sql: str, params=None) -> int:
    started = time.perf_counter()
    cursor.execute(sql, params)
    _timed(started, cursor.rowcount, sql)
    return cursor.rowcount


def _timed(started: float, rows: int, what: str) -> None:
    """Log a step's time (benchmarks/imports.py collects these)."""
    logger.debug("%.3f s, %s rows: %s", time.perf_counter() - started, rows, what[:90])


def stage(*, table: Table, plan: Plan, import_run: Import, progress: Progress | None, total: int | None) -> Counts:
    """Parse every row and COPY it into the session's temp tables. Returns the row counts."""
    started = time.perf_counter()
    counts = Counts()
    columns = _stage_columns(plan)
    with connection.cursor() as cursor:
        _more_temp_buffers(cursor)
        for name in ("import_stage", "import_rejected", "import_ident", "import_link", "import_lab"):
            cursor.execute(f"DROP TABLE IF EXISTS {name}")
        definition = ", ".join(f"{name} {sql_type}" for name, sql_type in columns)
        cursor.execute(f"CREATE TEMP TABLE import_stage ({definition})")
        cursor.execute("CREATE TEMP TABLE import_rejected (line integer, reason text, row jsonb)")
        rows = iter(table.rows)
        fast = contact_line_writer(plan, NULL) if plan.kind != EVENTS else None
        while True:
            seen = _stage_chunk(cursor, plan, fast, rows, counts)
            if seen < CHUNK_ROWS:
                break
            _report(import_run, counts.total, total, progress)
    _report(import_run, counts.total, counts.total, progress)
    _timed(started, counts.total, "stage: read, parse, COPY into import_stage (all of it)")
    return counts


def _more_temp_buffers(cursor) -> None:
    """Let the session keep its temp tables (about 600 MB for a million rows) in memory: the default
    8 MB of temp buffers sends every pass over them through the kernel. PostgreSQL allows this only
    before the session's first use of a temp table; a session that already used one (a worker's
    second import) keeps what it has, so a refusal is not an error. The buffers are taken as used,
    and given back when the connection closes."""
    try:
        with transaction.atomic():  # a savepoint: a refused SET must not abort a surrounding transaction
            cursor.execute(f"SET temp_buffers = '{TEMP_BUFFERS}'")
    except DatabaseError:
        logger.debug("temp_buffers stays %s: this session used temp tables before", TEMP_BUFFERS)


def _stage_chunk(cursor, plan: Plan, fast, rows, counts: Counts) -> int:
    """Parse up to CHUNK_ROWS rows and COPY them; the number of rows read (fewer: the file ended).
    Rows go through `fast` (mapping.contact_line_writer) when there is one, and through parse_row
    when it declines them (rows with errors, quotes, control characters...)."""
    good: list[str] = []
    bad: list[str] = []
    seen = staged = 0
    unreadable = None
    with cursor.cursor.copy("COPY import_stage FROM STDIN") as copy:  # psycopg's own cursor, for COPY
        try:
            for line, values in rows:
                seen += 1
                try:
                    if fast is None:
                        raise NotFast
                    good.append(fast(line, values))
                except NotFast:
                    row = parse_row(plan, line, values)
                    if row.errors:
                        bad.append(_rejected_line(plan.columns, line, "; ".join(row.errors), values))
                    else:
                        good.append(_stage_line(plan, row))
                if len(good) >= PIECE_ROWS:
                    copy.write("".join(good))
                    staged += len(good)
                    good = []
                if seen >= CHUNK_ROWS:
                    break
        except FileUnreadable as error:
            unreadable = error  # raised once the COPY is closed: the session stays usable to record why
        if good:
            copy.write("".join(good))
            staged += len(good)
    if unreadable is not None:
        raise unreadable
    if bad:
        with cursor.cursor.copy("COPY import_rejected FROM STDIN") as copy:
            copy.write("".join(bad))
    counts.total += seen
    counts.staged += staged
    counts.rejected += len(bad)
    return seen


def _report(import_run: Import, processed: int, total: int | None, progress: Progress | None) -> None:
    updates = {"processed_rows": processed, "updated_at": timezone.now()}
    if total is not None:
        updates["total_rows"] = max(total, processed)
    Import.objects.filter(pk=import_run.pk).update(**updates)
    if progress:
        progress(processed, updates.get("total_rows"))


# --- Merge --------------------------------------------------------------------------------


def merge(*, plan: Plan, import_run: Import, counts: Counts, user=None) -> Counts:
    """Resolve, merge and write the staged rows in one transaction; marks the import done."""
    source = import_run.source or "import"
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        # Still ours (a run whose progress stopped for long is taken over by another worker)? The
        # touch also locks the import's row until the commit: no one can take over a long merge.
        if not _execute(
            cursor,
            "UPDATE audiences_import SET updated_at = now() WHERE id = %s AND status = %s AND started_at = %s",
            [import_run.pk, Import.Status.RUNNING, import_run.started_at],
        ):
            raise ImportTakenOver(import_run.pk)
        _execute(cursor, "SELECT pg_advisory_xact_lock(%s)", [MERGE_LOCK])
        # Hash joins and aggregates over a million staged rows stay in memory.
        _execute(cursor, "SET LOCAL work_mem = '256MB'")
        # The commit does not wait for its WAL to reach the disk. A crash in the moments after the
        # commit may lose the whole import (as if it never ran; it is then run again from the
        # file), never part of it: consistency is not at stake, only the last moment's durability.
        _execute(cursor, "SET LOCAL synchronous_commit = off")
        if plan.kind == EVENTS:
            _reject_repeated_external_ids(cursor, plan, counts)
        _resolve_identities(cursor, plan)
        _lock_owners(cursor, plan, counts)
        _group_rows(cursor)
        counts.merged = _merge_contacts(cursor, import_run, user)
        _build_persons(cursor, plan)
        if plan.kind == EVENTS:
            _write_event_contacts(cursor, counts, source, import_run, user)
            _write_events(cursor, counts)
        else:
            _write_contacts(cursor, plan, counts, source, import_run, user)
        _execute(
            cursor,
            "INSERT INTO audiences_importrejectedrow (import_run_id, line_number, reason, row)"
            " SELECT %s, line, reason, row FROM import_rejected ORDER BY line",
            [import_run.pk],
        )
        done = Import.objects.filter(
            pk=import_run.pk, status=Import.Status.RUNNING, started_at=import_run.started_at
        ).update(
            status=Import.Status.DONE,
            total_rows=counts.total,
            processed_rows=counts.total,
            created_count=counts.created,
            updated_count=counts.updated,
            unchanged_count=counts.unchanged,
            merged_count=counts.merged,
            rejected_count=counts.rejected,
            error="",
            finished_at=timezone.now(),
            updated_at=timezone.now(),
        )
        if not done:  # cannot be, with the row locked above; never mark another run's import
            raise ImportTakenOver(import_run.pk)
        for name in ("import_stage", "import_rejected", "import_ident", "import_link", "import_lab", "import_person"):
            _execute(cursor, f"DROP TABLE IF EXISTS {name}")
        committing = time.perf_counter()
    _timed(committing, 0, "COMMIT")
    _timed(started, counts.staged, "merge: all of it, with the commit")
    return counts


def _resolve_identities(cursor, plan: Plan) -> None:
    """import_ident: each identity of each staged row, and the contact that owns it today."""
    _execute(cursor, "ANALYZE import_stage")
    selects = " UNION ALL ".join(
        f"SELECT line, '{kind}'::varchar AS kind, i{n} AS value FROM import_stage WHERE i{n} IS NOT NULL"  # noqa: S608 - internal column names and Identity.Kind values checked by build_plan
        for n, kind in enumerate(plan.identity_kinds)  # kinds are Identity.Kind values, checked by build_plan
    )
    _execute(
        cursor,
        "CREATE TEMP TABLE import_ident AS"  # noqa: S608 - internal names only
        " SELECT u.line, u.line AS grp, u.kind, u.value, i.contact_id AS owner"
        f" FROM ({selects}) u"
        " LEFT JOIN audiences_identity i ON i.kind = u.kind AND i.value = u.value",
    )
    _execute(cursor, "ANALYZE import_ident")


# How often the owners are looked up again when a merge or erasure changed them before they were locked.
LOCK_ATTEMPTS = 5


def _lock_owners(cursor, plan: Plan, counts: Counts) -> None:
    """Lock the contacts that own the staged identities (in id order, as the contact services do),
    so that no merge, erasure or unmerge changes them until the import commits: those wait for it.

    import_ident was read without a lock: a merge or erasure that committed in between deleted or
    erased an owner. Then not every owner is locked, or one is erased, and the identities are
    looked up again (a few times at most). One statement when nothing changed, no per-row work."""
    lock = (
        "WITH locked AS (SELECT id, erased_at FROM audiences_contact"
        " WHERE id IN (SELECT owner FROM import_ident WHERE owner IS NOT NULL) ORDER BY id FOR UPDATE)"
        " SELECT (SELECT count(*) FROM locked), (SELECT count(*) FROM locked WHERE erased_at IS NOT NULL),"
        " (SELECT count(*) FROM (SELECT owner FROM import_ident WHERE owner IS NOT NULL GROUP BY owner) o)"
    )
    for _attempt in range(LOCK_ATTEMPTS):
        _execute(cursor, lock)
        locked, erased, owners = cursor.fetchone()
        if locked == owners and not erased:
            return
        # An owner was merged away or erased before it was locked: look again (what is locked stays so).
        _execute(cursor, "DROP TABLE import_ident")
        _resolve_identities(cursor, plan)
    _execute(cursor, lock)
    locked, erased, owners = cursor.fetchone()
    if locked == owners and not erased:
        return
    # Still changing (or an identity of an erased contact, which erasure deletes): nothing is
    # written to a contact that is gone or erased; those rows are refused.
    _execute(
        cursor,
        "CREATE TEMP TABLE import_gone AS SELECT DISTINCT i.line FROM import_ident i"
        " LEFT JOIN audiences_contact c ON c.id = i.owner"
        " WHERE i.owner IS NOT NULL AND (c.id IS NULL OR c.erased_at IS NOT NULL)",
    )
    gone = _execute(
        cursor,
        "INSERT INTO import_rejected (line, reason, row) SELECT line,"
        " 'the contact this row names was merged or erased while the file was imported; import it again', '{}'"
        " FROM import_gone",
    )
    _execute(cursor, "DELETE FROM import_stage WHERE line IN (SELECT line FROM import_gone)")
    _execute(cursor, "DELETE FROM import_ident WHERE line IN (SELECT line FROM import_gone)")
    _execute(cursor, "DROP TABLE import_gone")
    counts.rejected += gone
    counts.staged -= gone


def _reject_repeated_external_ids(cursor, plan: Plan, counts: Counts) -> None:
    """An external id on two lines of the file with different content: the later line is refused
    (the first one is the event; the database would silently keep it). Identical lines are the
    same event twice and stay (the second one is unchanged)."""
    content = ", ".join(
        [f"i{n}" for n in range(len(plan.identity_columns))] + ["type", "occurred_at", "value", "currency", "attrs"]
    )
    content_s = ", ".join(f"s.{name.strip()}" for name in content.split(","))
    content_o = ", ".join(f"o.{name.strip()}" for name in content.split(","))
    # The refused row as staged (normalised), under the file's column names.
    pairs = [f"%s, s.i{n}" for n in range(len(plan.identity_columns))]
    names: list[str] = [column for _index, column, _kind in plan.identity_columns]
    for name, (_index, column) in plan.event_columns.items():
        if name in ("type", "occurred_at", "value", "currency", "external_id"):
            pairs.append(f"%s, s.{name}::text")
            names.append(column)
    for _index, column, key, _type in plan.attribute_columns:
        pairs.append("%s, s.attrs -> %s")
        names += [column, key]
    row = f"jsonb_strip_nulls(jsonb_build_object({', '.join(pairs)}))" if pairs else "'{}'::jsonb"
    rejected = _execute(
        cursor,
        "WITH repeated AS (SELECT external_id, min(line) AS first FROM import_stage"  # noqa: S608 - internal names only
        "   GROUP BY external_id HAVING min(line) <> max(line)),"
        " refused AS ("
        f" SELECT s.line, format('external id %%s is also on line %%s', s.external_id, r.first) AS reason, {row} AS row"
        " FROM repeated r JOIN import_stage s ON s.external_id = r.external_id AND s.line <> r.first"
        " JOIN import_stage o ON o.external_id = r.external_id AND o.line = r.first"
        f" WHERE ({content_s}) IS DISTINCT FROM ({content_o})),"
        " gone AS (DELETE FROM import_stage s USING refused f WHERE s.line = f.line RETURNING s.line)"
        " INSERT INTO import_rejected (line, reason, row) SELECT line, reason, row FROM refused",
        names,
    )
    counts.rejected += rejected
    counts.staged -= rejected


def _group_rows(cursor) -> None:
    """Rows that share an identity, or whose identities belong to the same contact, are one
    person. Only rows that share something take part (label propagation until stable)."""
    _execute(
        cursor,
        "CREATE TEMP TABLE import_link AS"
        " SELECT i.line, 'i' || i.kind || ':' || i.value AS key FROM import_ident i"
        # min <> max: on two lines or more (hash aggregates; count(DISTINCT) would sort millions).
        " JOIN (SELECT kind, value FROM import_ident GROUP BY kind, value HAVING min(line) <> max(line)) d"
        "   ON d.kind = i.kind AND d.value = i.value"
        " UNION ALL"
        " SELECT i.line, 'c' || i.owner FROM import_ident i"
        " JOIN (SELECT owner FROM import_ident WHERE owner IS NOT NULL"
        "   GROUP BY owner HAVING min(line) <> max(line)) d"
        "   ON d.owner = i.owner",
    )
    _execute(cursor, "CREATE TEMP TABLE import_lab AS SELECT DISTINCT line, line AS grp FROM import_link")
    _execute(cursor, "ALTER TABLE import_lab ADD PRIMARY KEY (line)")
    changed = 1
    while changed:
        changed = _execute(
            cursor,
            "WITH key_min AS (SELECT k.key, min(l.grp) AS grp FROM import_link k JOIN import_lab l USING (line)"
            "   GROUP BY k.key),"
            " line_min AS (SELECT k.line, min(m.grp) AS grp FROM import_link k JOIN key_min m USING (key)"
            "   GROUP BY k.line)"
            " UPDATE import_lab l SET grp = m.grp FROM line_min m WHERE m.line = l.line AND m.grp < l.grp",
        )
    _execute(
        cursor, "UPDATE import_stage s SET grp = l.grp FROM import_lab l WHERE l.line = s.line AND l.grp <> s.line"
    )
    _execute(
        cursor, "UPDATE import_ident i SET grp = l.grp FROM import_lab l WHERE l.line = i.line AND l.grp <> i.line"
    )


def _merge_contacts(cursor, import_run: Import, user) -> int:
    """A person whose rows carry identities of 2+ existing contacts: those contacts are one
    person. The oldest (lowest id) survives; the others are merged into it by the merge service."""
    _execute(
        cursor,
        "SELECT i.grp, min(i.line), array_agg(DISTINCT i.owner ORDER BY i.owner) FROM import_ident i"
        " JOIN (SELECT grp FROM import_ident WHERE owner IS NOT NULL GROUP BY grp HAVING min(owner) <> max(owner)) c"
        "   ON c.grp = i.grp"
        " WHERE i.owner IS NOT NULL GROUP BY i.grp ORDER BY i.grp",
    )
    conflicts = cursor.fetchall()
    if not conflicts:
        return 0
    from audiences.services.contacts import contact_merge  # written beside this; imported when needed

    merged = 0
    for _grp, line, owners in conflicts:
        contacts = Contact.objects.in_bulk(owners)
        survivor = contacts[owners[0]]
        for absorbed_id in owners[1:]:
            contact_merge(
                survivor=survivor,
                absorbed=contacts[absorbed_id],
                reason=f"Import {import_run.file_name}, line {line}: identities of both contacts on one person",
                user=user,
            )
            merged += 1
    return merged


def _build_persons(cursor, plan: Plan) -> None:
    """import_person: one row per person, with its contact (existing: the oldest owner; new: an
    id drawn from the contact sequence) and, for contacts, the values its rows bring (the last
    row with a value wins)."""
    _execute(cursor, "SELECT pg_get_serial_sequence('audiences_contact', 'id')")
    sequence = cursor.fetchone()[0]
    owner = "(SELECT min(owner) FROM import_ident o WHERE o.grp = s.grp AND o.owner IS NOT NULL)"
    single_values = multi_values = ""
    if plan.kind != EVENTS:
        single_values = ", " + ", ".join(
            [*(f"s.{name}" for name in CONTACT_FIELDS), "s.attrs"]
            + [f"s.c_{c}, CASE WHEN s.c_{c} IS NULL THEN NULL ELSE s.line END AS c_{c}_line" for c in CHANNELS]
        )
        last = "(array_agg(s.{0} ORDER BY s.line DESC) FILTER (WHERE s.{0} IS NOT NULL))[1]"
        multi_values = ", " + ", ".join(
            [*(last.format(name) for name in CONTACT_FIELDS), "NULL::jsonb"]
            + [f"{last.format(f'c_{c}')}, max(s.line) FILTER (WHERE s.c_{c} IS NOT NULL)" for c in CHANNELS]
        )
    # The owner lookup goes through an aggregate of import_ident (hash join), not per row.
    _execute(
        cursor,
        "CREATE TEMP TABLE import_person AS"  # noqa: S608 - internal names only
        " SELECT s.grp, coalesce(o.owner, nextval(%s)) AS contact_id, o.owner IS NULL AS is_new, s.line AS last_line"
        f"{single_values}"
        " FROM import_stage s"
        " LEFT JOIN (SELECT grp, min(owner) AS owner FROM import_ident WHERE owner IS NOT NULL GROUP BY grp) o"
        "   ON o.grp = s.grp"
        " WHERE s.grp = s.line AND NOT EXISTS (SELECT 1 FROM import_lab l WHERE l.line = s.line)",
        [sequence],
    )
    _execute(
        cursor,
        "INSERT INTO import_person"  # noqa: S608 - internal names only
        f" SELECT s.grp, coalesce({owner}, nextval(%s)), {owner} IS NULL, max(s.line){multi_values}"
        " FROM import_stage s JOIN import_lab l ON l.line = s.line GROUP BY s.grp",
        [sequence],
    )
    if plan.kind != EVENTS:
        _execute(
            cursor,
            "UPDATE import_person p SET attrs = a.attrs FROM ("
            "  SELECT s.grp, jsonb_object_agg(e.key, e.value ORDER BY s.line) AS attrs"
            "  FROM import_stage s JOIN import_lab l ON l.line = s.line, jsonb_each(s.attrs) e GROUP BY s.grp"
            ") a WHERE a.grp = p.grp",
        )
    # Set (true) on persons merged with a contact that took one of their identities meanwhile.
    _execute(cursor, "ALTER TABLE import_person ADD COLUMN moved boolean")
    _execute(cursor, "ANALYZE import_person")


def _insert_identities(cursor, source: str, import_run: Import, user) -> int:
    """Identities nobody owns yet, for their person's contact. Rows outside import_lab share no
    identity with another row, so only those in it need de-duplicating. An identity someone else
    added meanwhile makes its owner and the person one: they are merged (the count of merges)."""
    select = (
        "INSERT INTO audiences_identity (contact_id, kind, value, source, created_at)"
        " SELECT {distinct} p.contact_id, i.kind, i.value, %s, now()"
        " FROM import_ident i JOIN import_person p ON p.grp = i.grp"
        " WHERE i.owner IS NULL AND {condition}EXISTS (SELECT 1 FROM import_lab l WHERE l.line = i.line)"
    )
    unshared = select.format(distinct="", condition="NOT ")
    try:
        # Nobody owned these when import_ident was built, and other imports wait for our lock: a
        # plain INSERT, without ON CONFLICT's speculative insertion (a third of the time for
        # millions of rows). Only a writer outside imports (the API, the admin) can have added
        # one since; then this savepoint is rolled back and ON CONFLICT decides, as always.
        with transaction.atomic():
            _execute(cursor, unshared, [source])
        conflicted = False
    except IntegrityError:
        _execute(cursor, unshared + " ON CONFLICT (kind, value) DO NOTHING", [source])
        conflicted = True
    _execute(
        cursor,
        select.format(distinct="DISTINCT ON (i.kind, i.value)", condition="")
        + " ORDER BY i.kind, i.value, i.line ON CONFLICT (kind, value) DO NOTHING",
        [source],
    )
    return _merge_claimed_identities(cursor, conflicted, import_run, user)


def _merge_claimed_identities(cursor, conflicted: bool, import_run: Import, user) -> int:
    """Identities nobody owned when import_ident was built, that another writer (the API, the
    admin) gave to another contact before our INSERT: that contact and the person are one. They
    are merged (the lower id survives), and the person's rows go to the survivor. Only the rows
    that share an identity are checked, and all rows when the plain INSERT met a conflict."""
    shared = "" if conflicted else " AND EXISTS (SELECT 1 FROM import_lab l WHERE l.line = u.line)"
    _execute(
        cursor,
        "SELECT DISTINCT p.contact_id, i.contact_id, min(u.line) OVER (PARTITION BY p.contact_id, i.contact_id)"  # noqa: S608 - internal names only
        " FROM import_ident u JOIN import_person p ON p.grp = u.grp"
        " JOIN audiences_identity i ON i.kind = u.kind AND i.value = u.value"
        f" WHERE u.owner IS NULL AND i.contact_id <> p.contact_id{shared} ORDER BY 1, 2",
    )
    pairs = cursor.fetchall()
    if not pairs:
        return 0
    from audiences.services.contacts import contact_merge

    survivor_of: dict[int, int] = {}

    def current(contact_id: int) -> int:
        while contact_id in survivor_of:
            contact_id = survivor_of[contact_id]
        return contact_id

    merged = 0
    for person_contact, other, line in pairs:
        first, second = sorted((current(person_contact), current(other)))
        if first == second:
            continue
        contacts = Contact.objects.in_bulk([first, second])
        contact_merge(
            survivor=contacts[first],
            absorbed=contacts[second],
            reason=f"Import {import_run.file_name}, line {line}: an identity of the row was given to another"
            " contact during the import",
            user=user,
        )
        survivor_of[second] = first
        merged += 1
    moved = [(absorbed, current(absorbed)) for absorbed in survivor_of]
    touched = sorted({contact for pair in moved for contact in pair})
    # The persons of these contacts are no longer new: their consents are compared with the
    # survivor's (which the merge gave it), and their fields are written to it.
    _execute(
        cursor,
        "UPDATE import_person p SET contact_id = coalesce(m.survivor, p.contact_id), moved = true"
        " FROM unnest(%s::bigint[]) t (contact_id)"
        " LEFT JOIN unnest(%s::bigint[], %s::bigint[]) m (absorbed, survivor) ON m.absorbed = t.contact_id"
        " WHERE p.contact_id = t.contact_id",
        [touched, [a for a, _s in moved], [s for _a, s in moved]],
    )
    return merged


def _write_contacts(cursor, plan: Plan, counts: Counts, source: str, import_run: Import, user) -> None:
    file_name = import_run.file_name
    locale_default = Contact._meta.get_field("locale").get_default()
    counts.created = _execute(
        cursor,
        "INSERT INTO audiences_contact"
        " (id, contact_key, first_name, last_name, locale, timezone, attributes, erased_at, created_at, updated_at)"
        " SELECT contact_id, gen_random_uuid(), coalesce(first_name, ''), coalesce(last_name, ''),"
        "  coalesce(locale, %s), coalesce(timezone, ''), coalesce(attrs, '{}'), NULL, now(), now()"
        " FROM import_person WHERE is_new",
        [locale_default],
    )
    _execute(cursor, "CREATE TEMP TABLE import_touched (contact_id bigint)")
    claimed = _insert_identities(cursor, source, import_run, user)
    counts.merged += claimed
    differs = " OR ".join(
        [f"(p.{name} IS NOT NULL AND p.{name} <> c.{name})" for name in CONTACT_FIELDS]
        + ["(p.attrs IS NOT NULL AND c.attributes || p.attrs <> c.attributes)"]
    )
    _execute(
        cursor,
        "WITH changed AS ("  # noqa: S608 - CONTACT_FIELDS only
        " UPDATE audiences_contact c SET"
        f"  {', '.join(f'{name} = coalesce(p.{name}, c.{name})' for name in CONTACT_FIELDS)},"
        "  attributes = c.attributes || coalesce(p.attrs, '{}'), updated_at = now()"
        f" FROM import_person p WHERE p.contact_id = c.id AND (NOT p.is_new OR p.moved) AND ({differs})"
        " AND c.erased_at IS NULL"
        " RETURNING c.id)"
        " INSERT INTO import_touched SELECT id FROM changed",
    )
    _execute(
        cursor,
        "INSERT INTO import_touched SELECT p.contact_id FROM import_person p JOIN import_ident i ON i.grp = p.grp"
        " WHERE NOT p.is_new AND i.owner IS NULL",
    )
    proof = f"Import {file_name}, line "
    channels = ", ".join(f"('{c}', p.c_{c}, p.c_{c}_line)" for c in CHANNELS)
    # New contacts have no consent yet: every consent on them is a change, and no current
    # consent can be in the way (their ids are new). One plain INSERT for all channels.
    _execute(
        cursor,
        "WITH change AS ("  # noqa: S608 - Channel values only
        " INSERT INTO audiences_consentchange (contact_id, channel, status, source, proof, recorded_at)"
        " SELECT p.contact_id, v.channel, v.status, %s, %s || v.line, now()"
        f" FROM import_person p CROSS JOIN LATERAL (VALUES {channels}) v (channel, status, line)"
        " WHERE p.is_new AND p.moved IS NULL AND v.status IS NOT NULL"
        " RETURNING id, contact_id, channel, status, recorded_at)"
        " INSERT INTO audiences_consent (contact_id, channel, status, changed_at, change_id)"
        " SELECT contact_id, channel, status, recorded_at, id FROM change",
        [source, proof],
    )
    for channel in CHANNELS:
        _execute(
            cursor,
            "WITH change AS ("  # noqa: S608 - Channel values only
            " INSERT INTO audiences_consentchange (contact_id, channel, status, source, proof, recorded_at)"
            f" SELECT p.contact_id, %s, p.c_{channel}, %s, %s || p.c_{channel}_line, now()"
            " FROM import_person p LEFT JOIN audiences_consent c ON c.contact_id = p.contact_id AND c.channel = %s"
            f" WHERE (NOT p.is_new OR p.moved) AND p.c_{channel} IS NOT NULL"
            f" AND c.status IS DISTINCT FROM p.c_{channel}"
            " RETURNING id, contact_id, channel, status, recorded_at),"
            " current AS ("
            " INSERT INTO audiences_consent (contact_id, channel, status, changed_at, change_id)"
            " SELECT contact_id, channel, status, recorded_at, id FROM change"
            " ON CONFLICT (contact_id, channel) DO UPDATE SET status = EXCLUDED.status,"
            "  changed_at = EXCLUDED.changed_at, change_id = EXCLUDED.change_id"
            " RETURNING contact_id)"
            " INSERT INTO import_touched SELECT contact_id FROM current",
            [channel, source, proof, channel],
        )
    if claimed:  # a new contact merged with one the API gave its identity to is created, not updated
        _execute(
            cursor,
            "DELETE FROM import_touched"
            " WHERE contact_id IN (SELECT contact_id FROM import_person WHERE is_new AND moved)",
        )
    _execute(cursor, "SELECT count(DISTINCT contact_id) FROM import_touched")
    counts.updated = cursor.fetchone()[0]
    _execute(cursor, "SELECT count(*) FROM import_person WHERE NOT is_new")
    counts.unchanged = cursor.fetchone()[0] - counts.updated
    counts.contacts_created = counts.created
    _execute(cursor, "DROP TABLE import_touched")


def _write_event_contacts(cursor, counts: Counts, source: str, import_run: Import, user) -> None:
    """An event whose identities nobody owns brings a new contact, known by those identities."""
    locale_default = Contact._meta.get_field("locale").get_default()
    counts.contacts_created = _execute(
        cursor,
        "INSERT INTO audiences_contact"
        " (id, contact_key, first_name, last_name, locale, timezone, attributes, erased_at, created_at, updated_at)"
        " SELECT contact_id, gen_random_uuid(), '', '', %s, '', '{}', NULL, now(), now()"
        " FROM import_person WHERE is_new",
        [locale_default],
    )
    counts.merged += _insert_identities(cursor, source, import_run, user)


def _write_events(cursor, counts: Counts) -> None:
    counts.created = _execute(
        cursor,
        "INSERT INTO audiences_event (contact_id, type, occurred_at, properties, value, currency, external_id,"
        " created_at)"
        " SELECT p.contact_id, s.type, s.occurred_at, coalesce(s.attrs, '{}'), s.value, coalesce(s.currency, ''),"
        "  s.external_id, now()"
        " FROM import_stage s JOIN import_person p ON p.grp = s.grp ORDER BY s.line"
        " ON CONFLICT (external_id) DO NOTHING",
    )
    counts.unchanged = counts.staged - counts.created
