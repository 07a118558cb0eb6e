"""The decisions' journal: every next-best-offer decision is recorded, written behind the answer.

An agent waits for the decision, not for its record. Each decision gets its id at once (ids are
taken from the table's sequence a hundred at a time), is answered, and is queued; a thread of the
process writes what queued up every WRITE_BEHIND_SECONDS (0.1 s), or sooner when 200 wait, in one
statement: a row per decision and per decided offer, from arrays. Writing one decision with its
offers took 0.6 ms of the database's time (and a round trip); twenty at once 0.18 ms each, which
is why the writer waits a tenth of a second rather than 20 ms (`benchmarks/nba.py`).

What that trades: a decision shows in the tables up to that tenth of a second later (an answer
that arrives before that, in this process, writes the queue first: `journal_flush`; an agent
answers seconds later), and a process killed outright loses the decisions of its last tenth of a
second (their answers are then refused as unknown, and the agent asks again). A process that
stops normally writes its queue on the way out. With settings.OFFER_DECISIONS_WRITE_BEHIND off
(the tests), each decision is written before it is answered, by the same statement.
"""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, connections

from campaigns.models import OfferDecision, OfferDecisionItem
from dialoog.database import server_bound_cursor

logger = logging.getLogger(__name__)

WRITE_BEHIND_SECONDS = 0.1
WRITE_AT = 200  # queued decisions that wake the writer before its time
IDS_AT_ONCE = 100
QUEUE_LIMIT = 100_000  # decisions kept while the database does not take them


@dataclass
class DecisionRecord:
    """A decision as it is written: its own row and one per offer it decided on."""

    id: int
    contact_id: int
    channel: str
    agent_id: int | None
    left_out: str  # JSON
    created_at: dt.datetime
    # (offer_id, rank, presented, held_out, propensity, context_weight, value, lever, score, explanation)
    items: list[tuple[int, int, bool, bool, float, float, Decimal, float, float, str]] = field(default_factory=list)


_ids: deque[int] = deque()
_ids_lock = threading.Lock()


def decision_id_take() -> int:
    """A new decision's id, from the table's own sequence (a hundred taken at a time)."""
    with _ids_lock:
        if not _ids:
            table = OfferDecision._meta.db_table
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                    [table, IDS_AT_ONCE],
                )
                _ids.extend(row[0] for row in cursor.fetchall())
        return _ids.popleft()


def decisions_write(records: list[DecisionRecord]) -> None:
    """Write the decisions and their offers in one statement (all or nothing)."""
    if not records:
        return
    items = [(record, item) for record in records for item in record.items]
    sql = f"""
        WITH decision AS (
            INSERT INTO {OfferDecision._meta.db_table} (id, contact_id, channel, agent_id, left_out, created_at)
            SELECT d.id, d.contact_id, d.channel, d.agent_id, d.left_out::jsonb, d.created_at
            FROM unnest(%b::bigint[], %b::bigint[], %b::text[], %b::int[], %b::text[], %b::timestamptz[])
                 AS d(id, contact_id, channel, agent_id, left_out, created_at)
            ON CONFLICT (id) DO NOTHING  -- written before: a retry after a lost reply
        )
        INSERT INTO {OfferDecisionItem._meta.db_table} (decision_id, offer_id, contact_id, rank, presented,
            held_out, propensity, context_weight, value, lever, score, explanation, created_at)
        SELECT * FROM unnest(%b::bigint[], %b::bigint[], %b::bigint[], %b::int[], %b::bool[], %b::bool[],
                             %b::float8[], %b::float8[], %b::numeric[], %b::float8[], %b::float8[], %b::text[],
                             %b::timestamptz[])
        ON CONFLICT ON CONSTRAINT decision_offer_once DO NOTHING
    """  # noqa: S608 - table names; every value is a parameter
    params: list[Any] = [
        [record.id for record in records],
        [record.contact_id for record in records],
        [record.channel for record in records],
        [record.agent_id for record in records],
        [record.left_out for record in records],
        [record.created_at for record in records],
        [record.id for record, _item in items],
        [item[0] for _record, item in items],
        [record.contact_id for record, _item in items],
        *([item[index] for _record, item in items] for index in range(1, 10)),
        [record.created_at for record, _item in items],
    ]
    # Bound by the server, the arrays sent in binary: Django's cursor binds on the client and
    # quoted every reason and explanation in Python (a regular expression per string), about a
    # tenth of a busy process's time.
    with server_bound_cursor() as cursor:
        cursor.execute(sql, params)


class _Writer:
    def __init__(self) -> None:
        self.queue: list[DecisionRecord] = []
        self.lock = threading.Lock()  # guards the queue
        self.writing = threading.Lock()  # one write at a time: a flush waits for a write under way
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None

    def add(self, record: DecisionRecord) -> None:
        with self.lock:
            if len(self.queue) >= QUEUE_LIMIT:
                # The database has been away for a while: keep memory bounded, say what is lost.
                dropped, self.queue = self.queue[: len(self.queue) // 2], self.queue[len(self.queue) // 2 :]
                logger.error("%d next-best-offer decisions were dropped: the database did not take them", len(dropped))
            self.queue.append(record)
            waiting = len(self.queue)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self.run, name="offer-decisions", daemon=True)
                self.thread.start()
        if waiting >= WRITE_AT:
            self.wake.set()

    def write_queued(self) -> None:
        """Take what is queued and write it. A connection problem puts it back for the next round;
        a problem with the rows themselves (which a retry would meet again) drops them, logged."""
        with self.writing:
            with self.lock:
                records, self.queue = self.queue, []
            if not records:
                return
            try:
                decisions_write(records)
            except (OperationalError, InterfaceError):
                logger.exception("%d next-best-offer decisions could not be written; trying again", len(records))
                with self.lock:
                    self.queue[:0] = records
                raise
            except DatabaseError:
                logger.exception("%d next-best-offer decisions could not be written and were dropped", len(records))

    def run(self) -> None:
        try:
            while True:
                self.wake.wait(WRITE_BEHIND_SECONDS)
                self.wake.clear()
                try:
                    self.write_queued()
                except DatabaseError:  # logged: reconnect, and wait a moment before the next try
                    connections.close_all()
                    self.wake.wait(1)
        finally:
            connections.close_all()  # this thread's own connection

    def flush(self) -> None:
        """Write what is queued now, on the caller's connection, after any write under way."""
        self.write_queued()


_writer = _Writer()


def journal_record(record: DecisionRecord) -> None:
    """Record a decision: queued for the writer, or written at once when write-behind is off."""
    if getattr(settings, "OFFER_DECISIONS_WRITE_BEHIND", True):
        _writer.add(record)
    else:
        decisions_write([record])


def journal_flush() -> None:
    """Write this process's queued decisions now (an answer to one of them is being recorded)."""
    _writer.flush()


def _flush_on_exit() -> None:
    try:
        _writer.flush()
    except Exception:  # the process is ending; what could not be written is in the log
        logger.exception("Queued next-best-offer decisions were lost when the process ended")


atexit.register(_flush_on_exit)
