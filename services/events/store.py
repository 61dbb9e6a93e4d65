"""The trainer's durable event store: SQLite, one row per event_id, so duplicates are dropped.

Redelivery after a consumer restart, a client retrying a Record, or the feedback service resending
spooled events all produce the same event_id again; `INSERT OR IGNORE` on the primary key keeps
the first copy. Writes are synchronous=FULL in WAL mode, so a batch the store reported written
survives a crash (the consumer commits Kafka offsets only after that).

Clicks and ratings carry no corpus: it is the corpus of the impression with the same query_id,
kept in `query_corpus` and joined at read time, so it does not matter which arrives first.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from services.common.config import Settings
from services.events.kinds import EVENT_KINDS, kind_of
from services.proto.feedrank.v1 import feedback_pb2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    query_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    source TEXT NOT NULL,
    doc_id TEXT,
    payload BLOB NOT NULL,
    kafka_partition INTEGER,
    kafka_offset INTEGER,
    stored_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_kind_time ON events(kind, timestamp_ms);
CREATE INDEX IF NOT EXISTS events_query ON events(query_id);
CREATE TABLE IF NOT EXISTS query_corpus (
    query_id TEXT PRIMARY KEY,
    corpus_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    kafka_partition INTEGER NOT NULL,
    kafka_offset INTEGER NOT NULL,
    reason TEXT NOT NULL,
    raw BLOB,
    stored_ms INTEGER NOT NULL,
    PRIMARY KEY (kafka_partition, kafka_offset)
);
"""


def store_path(settings: Settings) -> Path:
    """Where the event store of a deployment lives: $FEEDRANK_DATA_DIR/events/events.sqlite3."""
    return settings.data_path / "events" / "events.sqlite3"


@dataclass(frozen=True)
class StoredEvent:
    event_id: str
    kind: str
    query_id: str
    session_id: str
    timestamp_ms: int
    corpus_id: str | None  # None while the query's impression has not arrived
    event: feedback_pb2.FeedbackEvent


@dataclass(frozen=True)
class AddResult:
    inserted: int
    duplicates: int


@dataclass(frozen=True)
class StatsRow:
    kind: str
    corpus_id: str | None
    day: str  # UTC, YYYY-MM-DD, from the event's timestamp
    count: int


@dataclass(frozen=True)
class Incoming:
    """One event to store, with where it was read from Kafka (if it came from there)."""

    event: feedback_pb2.FeedbackEvent
    partition: int | None = None
    offset: int | None = None


class EventStore:
    """Thread-safe; open one per process (WAL lets a reader process and a writer process share the file)."""

    def __init__(self, path: Path, *, read_only: bool = False):
        self.path = Path(path)
        if read_only:
            if not self.path.exists():
                raise FileNotFoundError(f"no event store at {self.path}")
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        self._db.execute("PRAGMA busy_timeout=10000")
        self._lock = threading.Lock()

    @classmethod
    def open(cls, settings: Settings, *, read_only: bool = False) -> EventStore:
        return cls(store_path(settings), read_only=read_only)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writing --------------------------------------------------------------------------------

    def add(self, items: Iterable[Incoming | feedback_pb2.FeedbackEvent]) -> AddResult:
        """Store events in one durable transaction; an event_id already present is skipped.

        An event with no kind, or one the kinds table has no row for, refuses the whole batch (INVALID_ARGUMENT).
        """
        now = int(time.time() * 1000)
        rows, corpora = [], []
        for item in items:
            inc = item if isinstance(item, Incoming) else Incoming(item)
            ev = inc.event
            row = kind_of(ev)
            kind, doc_id = row.name, row.doc_id(ev)
            rows.append((ev.event_id, kind, ev.query_id, ev.session_id, ev.timestamp_ms, ev.source, doc_id,
                         ev.SerializeToString(deterministic=True), inc.partition, inc.offset, now))
            if kind == "impression":
                corpora.append((ev.query_id, ev.impression.corpus_id))
        with self._lock:
            before = self._db.total_changes
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR IGNORE INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
                inserted = self._db.total_changes - before
                self._db.executemany("INSERT OR IGNORE INTO query_corpus VALUES (?,?)", corpora)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return AddResult(inserted=inserted, duplicates=len(rows) - inserted)

    def add_rejected(self, partition: int, offset: int, raw: bytes | None, reason: str) -> None:
        """Keep a record that could not be parsed, so it is visible rather than silently skipped."""
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO rejected VALUES (?,?,?,?,?)",
                             (partition, offset, reason, raw, int(time.time() * 1000)))

    # -- reading --------------------------------------------------------------------------------

    def iter_events(
        self, kind: str | None = None, corpus_id: str | None = None,
        since_ms: int | None = None, until_ms: int | None = None,
    ) -> Iterator[StoredEvent]:
        """Events in timestamp order, filtered by kind, corpus and [since_ms, until_ms)."""
        if kind is not None and kind not in EVENT_KINDS:
            raise ValueError(f"kind must be one of {tuple(EVENT_KINDS)}, not {kind!r}")
        sql = ["SELECT e.event_id, e.kind, e.query_id, e.session_id, e.timestamp_ms, q.corpus_id, e.payload "
               "FROM events e LEFT JOIN query_corpus q ON q.query_id = e.query_id WHERE 1=1"]
        args: list[object] = []
        for clause, value in (("e.kind = ?", kind), ("q.corpus_id = ?", corpus_id),
                              ("e.timestamp_ms >= ?", since_ms), ("e.timestamp_ms < ?", until_ms)):
            if value is not None:
                sql.append(f"AND {clause}")
                args.append(value)
        sql.append("ORDER BY e.timestamp_ms, e.rowid")
        with self._lock:
            rows = self._db.execute(" ".join(sql), args).fetchall()
        for event_id, k, query_id, session_id, ts, corpus, payload in rows:
            yield StoredEvent(event_id, k, query_id, session_id, ts, corpus,
                              feedback_pb2.FeedbackEvent.FromString(payload))

    def impressions(self, corpus_id: str | None = None, since_ms: int | None = None) -> Iterator[StoredEvent]:
        return self.iter_events("impression", corpus_id, since_ms)

    def clicks(self, corpus_id: str | None = None, since_ms: int | None = None) -> Iterator[StoredEvent]:
        return self.iter_events("click", corpus_id, since_ms)

    def ratings(self, corpus_id: str | None = None, since_ms: int | None = None) -> Iterator[StoredEvent]:
        return self.iter_events("rating", corpus_id, since_ms)

    def get(self, event_id: str) -> StoredEvent | None:
        with self._lock:
            row = self._db.execute(
                "SELECT e.event_id, e.kind, e.query_id, e.session_id, e.timestamp_ms, q.corpus_id, e.payload "
                "FROM events e LEFT JOIN query_corpus q ON q.query_id = e.query_id WHERE e.event_id = ?",
                (event_id,)).fetchone()
        if row is None:
            return None
        *head, payload = row
        return StoredEvent(*head, feedback_pb2.FeedbackEvent.FromString(payload))

    def event_ids(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT event_id FROM events")}

    def count(self, kind: str | None = None) -> int:
        with self._lock:
            if kind is None:
                return self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM events WHERE kind = ?", (kind,)).fetchone()[0]

    def rejected_count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM rejected").fetchone()[0]

    def stats(self) -> list[StatsRow]:
        """Event counts by kind, corpus and UTC day of the event's timestamp."""
        with self._lock:
            rows = self._db.execute(
                "SELECT e.kind, q.corpus_id, date(e.timestamp_ms / 1000, 'unixepoch') AS day, COUNT(*) "
                "FROM events e LEFT JOIN query_corpus q ON q.query_id = e.query_id "
                "GROUP BY e.kind, q.corpus_id, day ORDER BY day, q.corpus_id, e.kind").fetchall()
        return [StatsRow(*row) for row in rows]

    def lag_ms(self, since_ms: int = 0) -> list[int]:
        """stored_ms - timestamp_ms of events stamped at or after `since_ms`: the end-to-end delay
        from the client to the store (the benchmark's lag), when clients stamp events as they send."""
        with self._lock:
            rows = self._db.execute(
                "SELECT stored_ms - timestamp_ms FROM events WHERE timestamp_ms >= ?", (since_ms,)).fetchall()
        return [r[0] for r in rows]
