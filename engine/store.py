"""Job state in one SQLite file (WAL), the embedded default store.

The SQL lives in engine/store_sql.py (shared with PostgreSQL); this module
gives it a connection, a full-disk translation and a watcher: one thread per
store polls ``PRAGMA data_version`` every ~100 ms and, when another connection
committed, wakes the long-polls of the jobs whose ``updated_at`` moved (and idle
workers, for a new PENDING job), so waiters wake on other processes' changes.

Tables:
- ``jobs``: one row per job (columns in engine/store_rows.py); ``steps`` is a
  JSON list of ``[status, at]`` appended by every transition; (owner, nonce) is
  unique, which makes a replayed submission return the same job. A jobs.db
  from before a column existed gains it on open.
- ``artifacts``: (job_id, name) -> size, sha256, media type.

Big integers (nonce, price in wei) are stored as decimal text: they are
uint256 on chain and overflow SQLite's 64-bit integers.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlite_utils

from engine.storage import is_full, storage_full
from engine.store_rows import (
    ADDED_COLUMNS,
    CANCELLED,
    COLLECTING,
    FAILED,
    FETCHING,
    JOBS_SCHEMA,
    LOADING,
    PENDING,
    QUERYING,
    RUNNING,
    STATUSES,
    SUCCEEDED,
    TERMINAL,
    UNFINISHED,
    VERIFYING,
    ZERO_DEFAULTS,
    Job,
    StaleState,
    StepEvent,
    new_job_id,
)
from engine.store_sql import Run, SqlJobStore

__all__ = [
    "CANCELLED",
    "COLLECTING",
    "FAILED",
    "FETCHING",
    "LOADING",
    "PENDING",
    "QUERYING",
    "RUNNING",
    "STATUSES",
    "SUCCEEDED",
    "TERMINAL",
    "UNFINISHED",
    "VERIFYING",
    "Job",
    "JobStore",
    "SqliteJobStore",
    "StaleState",
    "StepEvent",
    "new_job_id",
]

log = logging.getLogger(__name__)
POLL_S = 0.1  # how often the watcher looks for other processes' commits
SLACK_S = 60.0  # > the 30 s busy timeout: a write's updated_at may be that much older than its commit


class _Guard:
    """The store's lock, which also translates a full disk at the boundary.

    Every store call runs inside it, so SQLite's "database or disk is full"
    (or an I/O error on a full disk) leaves the store as StorageFull (503,
    STORAGE_FULL), never as a raw sqlite3 error answered 500.
    """

    def __init__(self, folder: Path):
        self._lock = threading.RLock()
        self._folder = folder

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, _type: type[BaseException] | None, exc: BaseException | None, _tb: object) -> None:
        self._lock.release()
        if isinstance(exc, sqlite3.Error) and self._disk_full(exc):
            raise storage_full("saving job state") from exc

    def _disk_full(self, exc: sqlite3.Error) -> bool:
        primary = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
        return primary == sqlite3.SQLITE_FULL or (primary == sqlite3.SQLITE_IOERR and is_full(self._folder))


def _run_on(conn: sqlite3.Connection) -> Run:
    def run(sql: str, args: Sequence[Any]) -> tuple[list[dict[str, Any]], int]:
        cursor = conn.execute(sql, list(args))
        rows = cursor.fetchall() if cursor.description else []
        names = [d[0] for d in cursor.description or ()]
        return [dict(zip(names, row)) for row in rows], cursor.rowcount

    return run


class SqliteJobStore(SqlJobStore):
    """Jobs and their artifacts in one SQLite file (thread-safe; several processes may share it)."""

    STEPS_APPEND = "json_insert(steps, '$[#]', json_array(?, ?))"

    def __init__(self, path: Path | str):
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by the API threads and the workers, serialised by a
        # lock; WAL lets other processes read while we write.
        conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30, isolation_level=None)
        self._db = sqlite_utils.Database(conn)
        self._lock = _Guard(self.path.parent)
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()
        with self._lock:
            self._db.enable_wal()
            self._db.execute("PRAGMA synchronous=NORMAL")
        with self._tx():  # two processes opening a new file at once create the tables once
            self._create_tables()

    # --- schema ----------------------------------------------------------------
    def _create_tables(self) -> None:
        jobs = self._db["jobs"]
        if not jobs.exists():
            jobs.create(JOBS_SCHEMA, pk="id", not_null={"owner", "nonce", "status", "steps"},
                        defaults={name: 0 for name in ZERO_DEFAULTS})
            jobs.create_index(["owner", "nonce"], unique=True)
            jobs.create_index(["status", "created_at"])
            jobs.create_index(["compute_job_id"])
            jobs.create_index(["lease_owner"])
            jobs.create_index(["updated_at"])
            jobs.create_index(["owner", "created_at"])  # the owner's job list
        else:
            # A jobs.db written before these columns existed: old jobs keep them null (or 0).
            for column in ADDED_COLUMNS:
                if column not in jobs.columns_dict:
                    kind = {str: "TEXT", int: "INTEGER", float: "REAL"}[JOBS_SCHEMA[column]]
                    default = " NOT NULL DEFAULT 0" if column in ZERO_DEFAULTS else ""
                    self._db.execute(f'ALTER TABLE jobs ADD COLUMN "{column}" {kind}{default}')
            self._db.execute("CREATE INDEX IF NOT EXISTS idx_jobs_lease_owner ON jobs (lease_owner)")
            self._db.execute("CREATE INDEX IF NOT EXISTS idx_jobs_updated_at ON jobs (updated_at)")
            self._db.execute("CREATE INDEX IF NOT EXISTS idx_jobs_owner_created ON jobs (owner, created_at)")
        arts = self._db["artifacts"]
        if not arts.exists():
            arts.create(
                {"job_id": str, "name": str, "size": int, "sha256": str, "media_type": str,
                 "sealed_size": int, "sealed_sha256": str},
                pk=("job_id", "name"),
                foreign_keys=[("job_id", "jobs", "id")],
            )
        else:
            for column, kind in (("sealed_size", int), ("sealed_sha256", str)):
                if column not in arts.columns_dict:
                    arts.add_column(column, kind)

    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=2)
        with self._lock:
            self._db.close()

    # --- the dialect -------------------------------------------------------------
    @contextlib.contextmanager
    def _tx(self) -> Iterator[Run]:
        """One transaction holding SQLite's write lock from its start (BEGIN IMMEDIATE)."""
        with self._lock:
            conn = self._db.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield _run_on(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # also when COMMIT itself failed (a full disk)
                    conn.execute("ROLLBACK")
                raise

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:  # a read needs no write lock: WAL readers see the last commit
            return _run_on(self._db.conn)(sql, args)[0]

    def _watch(self) -> None:
        with self._lock:
            if self._watcher is None:
                self._watcher = threading.Thread(target=self._poll, name="store-watch", daemon=True)
                self._watcher.start()

    def _poll(self) -> None:
        """When another connection committed (data_version moved), wake the waiters of the jobs it changed.

        Changed jobs are those whose updated_at moved since the last look; SLACK_S
        reaches back over a writer that took its clock before waiting for the lock
        (SQLite shares one host, so one clock). Only their waiters wake, not all.
        """
        conn = sqlite3.connect(str(self.path), timeout=30)
        try:
            seen_version = conn.execute("PRAGMA data_version").fetchone()[0]
            seen: dict[str, float] = {}
            since = time.time() - SLACK_S
            while not self._stop.wait(POLL_S):
                version = conn.execute("PRAGMA data_version").fetchone()[0]
                if version == seen_version:
                    continue
                seen_version, now = version, time.time()
                rows = conn.execute("SELECT id, status, updated_at FROM jobs WHERE updated_at >= ?", [since])
                for job_id, status, updated_at in rows.fetchall():
                    if seen.get(job_id) != updated_at:
                        seen[job_id] = updated_at
                        self._hub.changed(job_id, work=status == PENDING, finished=status in TERMINAL)
                since = now - SLACK_S
                seen = {k: at for k, at in seen.items() if at >= since}
        except sqlite3.Error:
            log.exception("the job store watcher stopped; waiters fall back to their timeouts")
        finally:
            conn.close()


JobStore = SqliteJobStore  # the name every caller imports; SQLite is the default store
