"""Job state in SQLite (sqlite-utils, WAL): the only module that writes job rows.

Every status change is state-checked: ``UPDATE ... WHERE id = ? AND status IN
(...)`` and the row count tells whether the caller still owned the job. A
worker that lost a race (the owner cancelled meanwhile) gets ``StaleState``
and stops; it can never move a cancelled job on.

Tables:
- ``jobs``: one row per job; ``steps`` is a JSON list of ``[status, at]``
  appended by every transition; (owner, nonce) is unique, which makes a
  replayed submission return the same job. ``attestation`` (JSON, nullable)
  is the engine's signed JobResult of a SUCCEEDED job, null when the engine
  has no signing key; ``skipped_outputs`` (JSON, nullable) lists the output
  entries collection did not keep (``{"count", "entries": [{"name", "reason"}]}``);
  a jobs.db from before either gains the column on open.
- ``artifacts``: (job_id, name) -> size, sha256, media type.

Big integers (nonce, price in wei) are stored as decimal text: they are
uint256 on chain and overflow SQLite's 64-bit integers.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlite_utils
from eth_utils import to_checksum_address

from engine.errors import EngineError, NotFoundError, RequestError
from engine.storage import is_full, storage_full

if TYPE_CHECKING:
    from engine.artifacts import Artifact

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
    "StaleState",
    "StepEvent",
    "new_job_id",
]

PENDING = "PENDING"
VERIFYING = "VERIFYING"
FETCHING = "FETCHING"
LOADING = "LOADING"
QUERYING = "QUERYING"
RUNNING = "RUNNING"
COLLECTING = "COLLECTING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
CANCELLED = "CANCELLED"

STATUSES = (PENDING, VERIFYING, FETCHING, LOADING, QUERYING, RUNNING, COLLECTING, SUCCEEDED, FAILED, CANCELLED)
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})
UNFINISHED = frozenset(STATUSES) - TERMINAL

# Columns a transition may set besides status; everything else is fixed at creation.
_RECORDABLE = frozenset(
    {
        "failure_code",
        "failure_message",
        "block_number",
        "dlp_id",
        "image_sha256",
        "image_id",
        "access_report",
        "price_wei",
        "exit_code",
        "artifacts_expire_at",
        "attestation",
        "skipped_outputs",
        "payment",
    }
)

_JOBS_SCHEMA = {
    "id": str,
    "owner": str,
    "nonce": str,
    "request_digest": str,
    "instruction_id": int,
    "refiner_id": int,
    "query": str,
    "params": str,
    "deadline": int,
    "status": str,
    "created_at": float,
    "updated_at": float,
    "finished_at": float,
    "steps": str,
    "failure_code": str,
    "failure_message": str,
    "block_number": int,
    "dlp_id": int,
    "image_sha256": str,
    "image_id": str,
    "access_report": str,
    "price_wei": str,
    "exit_code": int,
    "artifacts_expire_at": float,
    "artifacts_expired": int,
    "attestation": str,
    "skipped_outputs": str,
    "compute_job_id": str,  # uint256 as text; "0" = a free job
    "payment": str,
    "recipient": str,  # the wallet results are sealed to; null: plaintext results (Vana's API)
    "recipient_key": str,  # its 64-byte secp256k1 public key, 0x hex
}


class StaleState(EngineError):
    """A transition found the job in another status than expected (a lost race)."""

    code = "STALE_STATE"
    http_status = 409

    def __init__(self, job_id: str, current: str, expected: Iterable[str]):
        super().__init__(
            f"job {job_id} is {current}, expected {' or '.join(sorted(expected))}", job_id=job_id
        )
        self.current = current


@dataclass(frozen=True)
class StepEvent:
    status: str
    at: float  # unix seconds


@dataclass(frozen=True)
class Job:
    id: str
    owner: str
    nonce: int
    request_digest: str
    instruction_id: int
    refiner_id: int
    query: str
    params: list | dict | None
    deadline: int
    status: str
    created_at: float
    updated_at: float
    finished_at: float | None
    steps: tuple[StepEvent, ...]
    failure_code: str | None
    failure_message: str | None
    block_number: int | None
    dlp_id: int | None
    image_sha256: str | None
    image_id: str | None
    access_report: dict | None
    price_wei: int | None
    exit_code: int | None
    artifacts_expire_at: float | None
    artifacts_expired: bool = False
    attestation: dict | None = None  # {"signer", "signature", "artifacts_digest", "finished_at"}
    skipped_outputs: dict | None = None  # {"count", "entries": [{"name", "reason"}]}
    compute_job_id: int = 0  # the signer's on-chain ComputeEngine job paying the price; 0 = free
    payment: dict | None = None  # engine.payment.Charge.record(): what was charged, if anything
    recipient: str | None = None  # artifacts and logs are sealed to this wallet; None: plaintext
    recipient_key: str | None = None  # the recipient's public key (0x hex, 64 bytes)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


def new_job_id() -> str:
    """128 random bits as hex: unguessable, so ids leak nothing about other jobs."""
    return secrets.token_hex(16)



def _row_to_job(row: dict[str, Any]) -> Job:
    def opt_json(text: str | None) -> Any:
        return None if text is None else json.loads(text)

    return Job(
        id=row["id"],
        owner=row["owner"],
        nonce=int(row["nonce"]),
        request_digest=row["request_digest"],
        instruction_id=row["instruction_id"],
        refiner_id=row["refiner_id"],
        query=row["query"],
        params=opt_json(row["params"]),
        deadline=row["deadline"],
        status=row["status"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        steps=tuple(StepEvent(s, at) for s, at in json.loads(row["steps"])),
        failure_code=row["failure_code"],
        failure_message=row["failure_message"],
        block_number=row["block_number"],
        dlp_id=row["dlp_id"],
        image_sha256=row["image_sha256"],
        image_id=row["image_id"],
        access_report=opt_json(row["access_report"]),
        price_wei=None if row["price_wei"] is None else int(row["price_wei"]),
        exit_code=row["exit_code"],
        artifacts_expire_at=row["artifacts_expire_at"],
        artifacts_expired=bool(row["artifacts_expired"]),
        attestation=opt_json(row.get("attestation")),
        skipped_outputs=opt_json(row.get("skipped_outputs")),
        compute_job_id=int(row.get("compute_job_id") or 0),
        payment=opt_json(row.get("payment")),
        recipient=row.get("recipient"),
        recipient_key=row.get("recipient_key"),
    )


def _encode_field(name: str, value: Any) -> Any:
    if name not in _RECORDABLE:
        raise ValueError(f"{name!r} cannot be set by a transition")
    if value is None:
        return None
    if name in ("access_report", "attestation", "skipped_outputs", "payment"):
        return json.dumps(value, sort_keys=True)
    if name == "price_wei":
        return str(int(value))
    return value


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


class JobStore:
    """Jobs and their artifacts in one SQLite file (thread-safe within a process)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by the API threads and the workers, serialised by a
        # lock; WAL lets other processes (e.g. a backup) read while we write.
        conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        self._db = sqlite_utils.Database(conn)
        self._lock = _Guard(self.path.parent)
        # Wakes readers waiting for a status change (long-poll); separate from
        # _lock and only taken after it is released, so the two never deadlock.
        self._changed = threading.Condition()
        self._generation = 0
        # Async long-polls per job id: (their loop, their event), set from any thread.
        self._async_waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        with self._lock:
            self._db.enable_wal()
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._create_tables()

    # --- schema ----------------------------------------------------------------
    def _create_tables(self) -> None:
        jobs = self._db["jobs"]
        if not jobs.exists():
            jobs.create(_JOBS_SCHEMA, pk="id", not_null={"owner", "nonce", "status", "steps"},
                        defaults={"artifacts_expired": 0})
            jobs.create_index(["owner", "nonce"], unique=True)
            jobs.create_index(["status"])
            jobs.create_index(["compute_job_id"])
        else:
            # A jobs.db written before these columns existed: old jobs keep them null.
            for column in ("attestation", "skipped_outputs", "compute_job_id", "payment", "recipient",
                           "recipient_key"):
                if column not in jobs.columns_dict:
                    jobs.add_column(column, str)
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
        with self._lock:
            self._db.close()

    # --- reads -----------------------------------------------------------------
    def _one(self, where: str, args: Sequence[Any]) -> Job | None:
        rows = list(self._db["jobs"].rows_where(where, args, limit=1))
        return _row_to_job(rows[0]) if rows else None

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._one("id = ?", [job_id])

    def find(self, owner: str, nonce: int) -> Job | None:
        """The job an owner created with `nonce`, if any."""
        with self._lock:
            return self._one("owner = ? AND nonce = ?", [to_checksum_address(owner), str(nonce)])

    def by_compute_job(self, compute_job_id: int) -> list[Job]:
        """The jobs that named this on-chain compute job (a payment buys one successful run)."""
        with self._lock:
            rows = self._db["jobs"].rows_where("compute_job_id = ?", [str(compute_job_id)], order_by="created_at")
            return [_row_to_job(r) for r in rows]

    def list_by_owner(self, owner: str) -> list[Job]:
        with self._lock:
            rows = self._db["jobs"].rows_where(
                "owner = ?", [to_checksum_address(owner)], order_by="created_at"
            )
            return [_row_to_job(r) for r in rows]

    def unfinished(self) -> list[Job]:
        marks = ",".join("?" * len(UNFINISHED))
        with self._lock:
            rows = self._db["jobs"].rows_where(
                f"status IN ({marks})", sorted(UNFINISHED), order_by="created_at"
            )
            return [_row_to_job(r) for r in rows]

    def expired(self, now: float) -> list[Job]:
        """Finished jobs whose artifacts are past their expiry and not yet removed."""
        with self._lock:
            rows = self._db["jobs"].rows_where(
                "artifacts_expire_at IS NOT NULL AND artifacts_expire_at <= ? AND artifacts_expired = 0",
                [now],
                order_by="artifacts_expire_at",
            )
            return [_row_to_job(r) for r in rows]

    # --- creation ----------------------------------------------------------------
    def create_or_get(
        self,
        owner: str,
        nonce: int,
        digest: str,
        *,
        instruction_id: int,
        refiner_id: int,
        query: str,
        params: list | dict | None,
        deadline: int,
        compute_job_id: int = 0,
        recipient: str | None = None,
        recipient_key: str | None = None,
        now: float | None = None,
    ) -> tuple[Job, bool]:
        """A new PENDING job, or the existing one for (owner, nonce) with the same digest.

        The same nonce with a different digest is refused: NONCE_REUSED (409).
        """
        owner = to_checksum_address(owner)
        now = time.time() if now is None else now
        with self._lock, self._db.conn:
            existing = self._one("owner = ? AND nonce = ?", [owner, str(nonce)])
            if existing is not None:
                if existing.request_digest != digest:
                    raise RequestError(
                        f"nonce {nonce} was already used by {owner} for a different request; "
                        "sign the new request with a fresh nonce",
                        code="NONCE_REUSED",
                        http_status=409,
                    )
                return existing, False
            job_id = new_job_id()
            self._db["jobs"].insert(
                {
                    "id": job_id,
                    "owner": owner,
                    "nonce": str(nonce),
                    "request_digest": digest,
                    "instruction_id": instruction_id,
                    "refiner_id": refiner_id,
                    "query": query,
                    "params": json.dumps(params),
                    "deadline": deadline,
                    "compute_job_id": str(compute_job_id),
                    "recipient": None if recipient is None else to_checksum_address(recipient),
                    "recipient_key": recipient_key,
                    "status": PENDING,
                    "created_at": now,
                    "updated_at": now,
                    "steps": json.dumps([[PENDING, now]]),
                    "artifacts_expired": 0,
                }
            )
            created = self._one("id = ?", [job_id])
        assert created is not None
        return created, True

    # --- transitions ---------------------------------------------------------------
    def transition(
        self, job_id: str, expected: str | Iterable[str], new_status: str, **fields: Any
    ) -> Job:
        """Move the job to `new_status` if it is in `expected`; record `fields`.

        Raises StaleState when the job is elsewhere (e.g. already cancelled),
        NotFoundError when it does not exist.
        """
        if new_status not in STATUSES:
            raise ValueError(f"unknown status {new_status!r}")
        allowed = {expected} if isinstance(expected, str) else set(expected)
        now = time.time()
        sets = ["status = ?", "updated_at = ?", "steps = json_insert(steps, '$[#]', json_array(?, ?))"]
        args: list[Any] = [new_status, now, new_status, now]
        if new_status in TERMINAL:
            sets.append("finished_at = ?")
            args.append(now)
        for name, value in fields.items():
            sets.append(f"[{name}] = ?")
            args.append(_encode_field(name, value))
        marks = ",".join("?" * len(allowed))
        sql = f"UPDATE jobs SET {', '.join(sets)} WHERE id = ? AND status IN ({marks})"
        with self._lock, self._db.conn:
            cursor = self._db.execute(sql, [*args, job_id, *sorted(allowed)])
            job = self._one("id = ?", [job_id])
        if cursor.rowcount == 1:
            with self._changed:
                self._generation += 1
                self._changed.notify_all()
                self._wake_async_waiters(job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id}", job_id=job_id)
        if cursor.rowcount != 1:
            raise StaleState(job_id, job.status, allowed)
        return job

    def wait_for_change(self, job_id: str, known_status: str, timeout_s: float) -> Job | None:
        """The job once its status is no longer `known_status` (or it ended), else after `timeout_s`.

        Lets a reader long-poll instead of re-asking: only transitions made through
        this store instance wake it (one engine process owns its store).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            with self._changed:
                generation = self._generation
            job = self.get(job_id)
            if job is None or job.status != known_status or job.finished:
                return job
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return job
            with self._changed:
                if self._generation == generation:
                    self._changed.wait(remaining)

    async def wait_for_change_async(self, job_id: str, known_status: str, timeout_s: float) -> Job | None:
        """wait_for_change for an event loop: no thread is held while it waits.

        Each look at the job is one short read in a worker thread; between looks
        it awaits a wake-up that transition() sends for this job. A store shared
        by several processes (PostgreSQL, issue 13) can wake the same waiters from
        its notifications, or wake them on a timer to poll.
        """
        from anyio import to_thread

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            waiter = (loop, asyncio.Event())
            with self._changed:  # registered before the read: a change in between still wakes us
                self._async_waiters.setdefault(job_id, set()).add(waiter)
            try:
                job = await to_thread.run_sync(self.get, job_id)
                remaining = deadline - loop.time()
                if job is None or job.status != known_status or job.finished or remaining <= 0:
                    return job
                try:
                    await asyncio.wait_for(waiter[1].wait(), remaining)
                except TimeoutError:
                    pass  # one last read above answers with the unchanged job
            finally:
                with self._changed:
                    waiters = self._async_waiters.get(job_id, set())
                    waiters.discard(waiter)
                    if not waiters:
                        self._async_waiters.pop(job_id, None)

    def _wake_async_waiters(self, job_id: str) -> None:
        """Called with _changed held, from whichever thread made the transition."""
        for loop, event in self._async_waiters.get(job_id, ()):
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:
                pass  # that loop has closed; its waiter is gone with it

    def fail(self, job_id: str, code: str, message: str, **fields: Any) -> Job:
        """FAILED with `code` from any unfinished status (StaleState if already finished)."""
        return self.transition(
            job_id, UNFINISHED, FAILED, failure_code=code, failure_message=message, **fields
        )

    def cancel(self, job_id: str) -> Job:
        """CANCELLED from any unfinished status (StaleState if already finished)."""
        return self.transition(
            job_id,
            UNFINISHED,
            CANCELLED,
            failure_code="CANCELLED",
            failure_message="the job owner cancelled the job",
        )

    # --- artifacts -------------------------------------------------------------------
    def set_artifacts(self, job_id: str, artifacts: Sequence[Artifact]) -> None:
        """Replace the job's artifact list."""
        with self._lock, self._db.conn:
            self._db.execute("DELETE FROM artifacts WHERE job_id = ?", [job_id])
            self._db["artifacts"].insert_all(
                (
                    {
                        "job_id": job_id,
                        "name": a.name,
                        "size": a.size,
                        "sha256": a.sha256,
                        "media_type": a.media_type,
                        "sealed_size": a.sealed_size,
                        "sealed_sha256": a.sealed_sha256,
                    }
                    for a in artifacts
                ),
            )

    def artifacts(self, job_id: str) -> list[Artifact]:
        from engine.artifacts import Artifact

        with self._lock:
            rows = self._db["artifacts"].rows_where("job_id = ?", [job_id], order_by="name")
            return [
                Artifact(name=r["name"], size=r["size"], sha256=r["sha256"], media_type=r["media_type"],
                         sealed_size=r.get("sealed_size"), sealed_sha256=r.get("sealed_sha256"))
                for r in rows
            ]

    def mark_artifacts_expired(self, job_id: str) -> Job:
        """Forget the job's artifact rows (files are gone); the job keeps its metadata."""
        with self._lock, self._db.conn:
            self._db.execute("DELETE FROM artifacts WHERE job_id = ?", [job_id])
            self._db.execute(
                "UPDATE jobs SET artifacts_expired = 1, updated_at = ? WHERE id = ?",
                [time.time(), job_id],
            )
            job = self._one("id = ?", [job_id])
        if job is None:
            raise NotFoundError(f"no job {job_id}", job_id=job_id)
        return job

    def ping(self) -> bool:
        """True when the database answers (for /health)."""
        with self._lock:
            return self._db.execute("SELECT 1").fetchone() == (1,)
