"""Job state in PostgreSQL (psycopg 3): one truth for several engines on several hosts.

The SQL is engine/store_sql.py's, shared with SQLite; this module gives it a
connection, PostgreSQL's dialect and its notifications:
- a claim's inner SELECT takes ``FOR UPDATE SKIP LOCKED``, so concurrent
  claimers never see the same row;
- every change sends ``pg_notify('job_changed', id)`` (and a new job
  ``pg_notify('job_created', id)``) inside the transaction that made it, so a
  notification is never sent for a change that rolled back;
- one listener connection per store (one per engine process) hears them and
  fans out to that process's long-polls and idle workers.

A connection that breaks is reopened on the next call; while the database is
unreachable calls raise STORE_UNAVAILABLE (503). The URL (it may hold a
password) is never logged or put in a message.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

from engine.errors import EngineError
from engine.store_rows import ADDED_COLUMNS, JOBS_SCHEMA, ZERO_DEFAULTS
from engine.store_sql import Run, SqlJobStore

__all__ = ["PostgresJobStore", "store_unavailable"]

log = logging.getLogger(__name__)
_TYPES = {str: "TEXT", int: "BIGINT", float: "DOUBLE PRECISION"}
_NOT_NULL = {"owner", "nonce", "status", "steps"}
_SCHEMA_LOCK = 0x6A6F6273  # advisory lock id: engines starting together create the schema once
LISTEN_POLL_S = 0.5  # how often the listener looks at its stop flag


def _column(name: str) -> str:
    if name in ZERO_DEFAULTS:
        return f"{name} INTEGER NOT NULL DEFAULT 0"
    return f"{name} {_TYPES[JOBS_SCHEMA[name]]}{' NOT NULL' if name in _NOT_NULL else ''}"


SCHEMA = [
    f"CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, {', '.join(_column(n) for n in list(JOBS_SCHEMA)[1:])})",
    *(f"ALTER TABLE jobs ADD COLUMN IF NOT EXISTS {_column(n)}" for n in ADDED_COLUMNS),
    "CREATE UNIQUE INDEX IF NOT EXISTS jobs_owner_nonce ON jobs (owner, nonce)",
    "CREATE INDEX IF NOT EXISTS jobs_status_created ON jobs (status, created_at)",
    "CREATE INDEX IF NOT EXISTS jobs_compute_job ON jobs (compute_job_id)",
    "CREATE INDEX IF NOT EXISTS jobs_lease_owner ON jobs (lease_owner)",
    "CREATE INDEX IF NOT EXISTS jobs_owner_created ON jobs (owner, created_at)",  # the owner's job list
    ("CREATE TABLE IF NOT EXISTS artifacts (job_id TEXT NOT NULL REFERENCES jobs (id), name TEXT NOT NULL, "
     "size BIGINT NOT NULL, sha256 TEXT NOT NULL, media_type TEXT NOT NULL, PRIMARY KEY (job_id, name))"),
]


def store_unavailable(exc: BaseException) -> EngineError:
    # The driver's message can name the server; it never holds the password, but say less anyway.
    return EngineError(f"the job store (PostgreSQL) cannot be reached ({type(exc).__name__}); retry",
                       code="STORE_UNAVAILABLE", http_status=503)


def _run_on(conn: psycopg.Connection) -> Run:
    def run(sql: str, args: Sequence[Any]) -> tuple[list[dict[str, Any]], int]:
        cursor = conn.execute(sql.replace("?", "%s"), list(args))
        rows = cursor.fetchall() if cursor.description else []
        return rows, cursor.rowcount

    return run


class PostgresJobStore(SqlJobStore):
    """Jobs and their artifact rows in a PostgreSQL database every engine shares."""

    STEPS_APPEND = "(steps::jsonb || jsonb_build_array(jsonb_build_array(?::text, ?::float8)))::text"
    SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, *, connect_timeout_s: float = 10.0):
        super().__init__()
        self._url = url
        self._timeout = max(1, int(connect_timeout_s))
        self._lock = threading.RLock()
        self._conn: psycopg.Connection | None = None
        self._listener: threading.Thread | None = None
        self._listening = threading.Event()
        self._stop = threading.Event()
        with self._tx() as run:
            run("SELECT pg_advisory_xact_lock(?)", [_SCHEMA_LOCK])
            for statement in SCHEMA:
                run(statement, [])

    def _connect(self, **kw: Any) -> psycopg.Connection:
        try:
            return psycopg.connect(self._url, connect_timeout=self._timeout, row_factory=dict_row, **kw)
        except psycopg.Error as exc:
            raise store_unavailable(exc) from exc

    def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            with contextlib.suppress(EngineError, psycopg.Error), self._tx() as run:
                run("SELECT pg_notify('job_changed', '')", [])  # wakes our listener to see _stop
            self._listener.join(timeout=LISTEN_POLL_S * 4)
        with self._lock:
            if self._conn is not None:
                self._conn.close()

    # --- the dialect -------------------------------------------------------------
    @contextlib.contextmanager
    def _tx(self) -> Iterator[Run]:
        with self._lock:
            tx = self._begin()
            assert self._conn is not None
            try:
                yield _run_on(self._conn)
            except BaseException as exc:
                with contextlib.suppress(psycopg.Error):  # a broken connection cannot roll back: it is gone
                    tx.__exit__(type(exc), exc, exc.__traceback__)
                if isinstance(exc, psycopg.OperationalError):
                    raise store_unavailable(exc) from exc
                raise
            try:
                tx.__exit__(None, None, None)
            except psycopg.OperationalError as exc:
                raise store_unavailable(exc) from exc

    def _begin(self) -> psycopg.Transaction:
        """A transaction on a live connection: one that broke since the last call is reopened once."""
        for attempt in range(2):
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = self._connect(autocommit=True)
            tx = self._conn.transaction()
            try:
                tx.__enter__()  # sends BEGIN: a dead server connection shows here, before any work
                return tx
            except psycopg.OperationalError as exc:
                self._conn.close()
                if attempt:
                    raise store_unavailable(exc) from exc
        raise AssertionError("unreachable")

    def _announce(self, run: Run, job_id: str, created: bool = False) -> None:
        run("SELECT pg_notify('job_changed', ?)", [job_id])
        if created:
            run("SELECT pg_notify('job_created', ?)", [job_id])

    def _watch(self) -> None:
        with self._lock:
            if self._listener is None:
                self._listener = threading.Thread(target=self._listen_loop, name="store-listen", daemon=True)
                self._listener.start()
        # A waiter reads only after LISTEN is active, so no change between them is missed.
        self._listening.wait(self._timeout)

    def _listen_loop(self) -> None:
        while not self._stop.is_set():
            try:
                with self._connect(autocommit=True) as conn:
                    conn.execute("LISTEN job_changed")
                    conn.execute("LISTEN job_created")
                    self._listening.set()
                    self._hub.changed(None)  # anything missed while (re)connecting: look again
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=LISTEN_POLL_S):
                            if self._stop.is_set():
                                break
                            self._hub.changed(note.payload, work=note.channel == "job_created")
            except (psycopg.Error, EngineError) as exc:
                log.warning("job store listener lost its connection (%s); reconnecting", type(exc).__name__)
                self._listening.set()  # waiters fall back to their timeouts meanwhile
                self._stop.wait(1.0)
