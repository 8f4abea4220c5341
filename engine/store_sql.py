"""The job store's SQL, once: every read, write, claim and wait both stores share.

A subclass (SQLite in engine/store.py, PostgreSQL in engine/store_postgres.py)
gives only its connection (``_tx``/``_read``), its dialect (``STEPS_APPEND``,
``SKIP_LOCKED``), how it tells other processes (``_announce``) and how it
hears them (``_watch``). SQL is written with ``?`` placeholders.

Every status change is state-checked: ``UPDATE ... WHERE id = ? AND status IN
(...)`` and the row count tells whether the caller still owned the job. A
worker that lost a race gets ``StaleState`` and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from eth_utils import to_checksum_address

from engine.errors import NotFoundError
from engine.store_rows import (
    CANCELLED,
    FAILED,
    PENDING,
    STATUSES,
    TERMINAL,
    UNFINISHED,
    Job,
    StaleState,
    encode_field,
    new_job_id,
    new_row,
    nonce_reused,
    row_to_job,
)

if TYPE_CHECKING:
    from engine.artifacts import Artifact

# run(sql, args) inside a transaction -> (rows as dicts, rowcount)
Run = Callable[[str, Sequence[Any]], tuple[list[dict[str, Any]], int]]
_UNFINISHED = sorted(UNFINISHED)
_FREE_LEASE = "(lease_owner IS NULL OR lease_expires_at <= ?)"


def _claimable(refiner_ids: Collection[int] | None, now: float) -> tuple[str, list[Any]]:
    """The WHERE clause (and its arguments) of a job ``claim_next`` may take."""
    where = f"status = ? AND cancel_requested = 0 AND {_FREE_LEASE}"
    args: list[Any] = [PENDING, now]
    if refiner_ids is not None:
        where += f" AND refiner_id IN ({marks(refiner_ids)})"
        args += sorted(refiner_ids)
    return where, args


def marks(values: Collection[Any]) -> str:
    return ",".join("?" * len(values))


def _answered(job: Job | None, known_status: str | None, until_end: bool) -> bool:
    """Whether a waiter has its answer: the job is gone or ended, or (waiting for a change) it moved on."""
    if job is None or job.finished:
        return True
    return not until_end and job.status != known_status


class ChangeHub:
    """Wakes this process's waiters: on its own transitions at once, on others' when told.

    One hub per store; a waiter registers before it reads, so a change between its
    read and its wait still wakes it.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.generation = 0  # any job changed
        self.work = 0  # a job may have become claimable
        # job id -> its async waiters: (loop, event, whether only the job's end wakes it)
        self._async: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event, bool]]] = {}

    def changed(self, job_id: str | None, work: bool = False, finished: bool | None = None) -> None:
        """job_id None = some job changed (we do not know which): wake every waiter.

        ``finished=False`` (the job moved to a step before its end, as far as the caller
        knows) leaves the waiters for the end asleep: they would only read and wait again.
        """
        with self.cond:
            self.generation += 1
            self.work += 1 if (work or job_id is None) else 0
            self.cond.notify_all()
            targets = self._async.values() if job_id is None else [self._async.get(job_id, set())]
            for waiters in targets:
                for loop, event, until_end in waiters:
                    if until_end and finished is False:
                        continue
                    with contextlib.suppress(RuntimeError):  # that loop closed; its waiter is gone
                        loop.call_soon_threadsafe(event.set)

    def waiting(self) -> int:
        """How many async waiters are registered (none once they all answered)."""
        with self.cond:
            return sum(len(w) for w in self._async.values())

    @contextlib.contextmanager
    def async_waiter(self, job_id: str, *, until_end: bool = False) -> Iterator[asyncio.Event]:
        waiter = (asyncio.get_running_loop(), asyncio.Event(), until_end)
        with self.cond:
            self._async.setdefault(job_id, set()).add(waiter)
        try:
            yield waiter[1]
        finally:
            with self.cond:
                waiters = self._async.get(job_id, set())
                waiters.discard(waiter)
                if not waiters:
                    self._async.pop(job_id, None)


class SqlJobStore:
    """The JobStore methods over a subclass's connection (engine/store_api.py's Protocol)."""

    STEPS_APPEND = ""  # SQL appending json [?, ?] (status, at) to steps
    SKIP_LOCKED = ""  # what the claim's inner SELECT adds to skip rows another claimer holds

    def __init__(self) -> None:
        self._hub = ChangeHub()
        self._watching = False  # set once _watch has run: later waits skip the call

    # --- what a dialect provides ---------------------------------------------------
    def _tx(self) -> contextlib.AbstractContextManager[Run]:
        raise NotImplementedError

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._tx() as run:
            return run(sql, args)[0]

    def _announce(self, run: Run, job_id: str, created: bool = False) -> None:
        """Tell other processes, inside the transaction that changed the job (default: they poll)."""

    def _watch(self) -> None:
        """Start hearing other processes' changes (once; idempotent)."""

    def _ensure_watch(self) -> None:
        if not self._watching:
            self._watch()
            self._watching = True

    def close(self) -> None:
        raise NotImplementedError

    # --- reads -----------------------------------------------------------------
    def _jobs(self, where: str, args: Sequence[Any], order: str = "created_at, id") -> list[Job]:
        return [row_to_job(r) for r in self._read(f"SELECT * FROM jobs WHERE {where} ORDER BY {order}", args)]

    def get(self, job_id: str) -> Job | None:
        jobs = self._jobs("id = ?", [job_id])
        return jobs[0] if jobs else None

    def find(self, owner: str, nonce: int) -> Job | None:
        """The job an owner created with `nonce`, if any."""
        jobs = self._jobs("owner = ? AND nonce = ?", [to_checksum_address(owner), str(nonce)])
        return jobs[0] if jobs else None

    def by_compute_job(self, compute_job_id: int) -> list[Job]:
        """The jobs that named this on-chain compute job (a payment buys one successful run)."""
        return self._jobs("compute_job_id = ?", [str(compute_job_id)])

    def list_by_owner(self, owner: str) -> list[Job]:
        return self._jobs("owner = ?", [to_checksum_address(owner)])

    def page_by_owner(self, owner: str, *, status: str | None = None, limit: int = 20,
                      before: tuple[float, str] | None = None) -> list[Job]:
        """Up to `limit` of the owner's jobs, newest first, strictly after the cursor `before`.

        `before` is the (created_at, id) of the last job of the previous page: a
        keyset page, stable while new jobs arrive (they sort ahead of it).
        """
        where, args = ["owner = ?"], [to_checksum_address(owner)]
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if before is not None:
            where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            args += [before[0], before[0], before[1]]
        return self._jobs(" AND ".join(where), args, order=f"created_at DESC, id DESC LIMIT {int(limit)}")

    def set_progress(self, job_id: str, progress: dict[str, Any] | None) -> None:
        """Record a step's progress (no status change: long-polls are not woken)."""
        text = None if progress is None else json.dumps(progress, sort_keys=True)
        with self._tx() as run:
            run("UPDATE jobs SET progress = ? WHERE id = ?", [text, job_id])

    def unfinished(self) -> list[Job]:
        return self._jobs(f"status IN ({marks(_UNFINISHED)})", _UNFINISHED)

    def count_pending(self) -> int:
        """PENDING rows in the whole store (QUEUE_FULL counts these)."""
        return int(self._read("SELECT COUNT(*) AS n FROM jobs WHERE status = ?", [PENDING])[0]["n"])

    def expired(self, now: float) -> list[Job]:
        """Finished jobs whose artifacts are past their expiry and not yet removed."""
        return self._jobs("artifacts_expire_at IS NOT NULL AND artifacts_expire_at <= ? AND artifacts_expired = 0",
                          [now], order="artifacts_expire_at, id")

    # --- creation ----------------------------------------------------------------
    def create_or_get(self, owner: str, nonce: int, digest: str, *, instruction_id: int, refiner_id: int,
                      query: str, params: list | dict | None, deadline: int, compute_job_id: int = 0,
                      recipient: str | None = None, recipient_key: str | None = None,
                      now: float | None = None) -> tuple[Job, bool]:
        """A new PENDING job, or the existing one for (owner, nonce) with the same digest.

        One INSERT ... ON CONFLICT DO NOTHING: racing processes get one job, never an
        integrity error. The same nonce with a different digest is NONCE_REUSED (409).
        """
        owner = to_checksum_address(owner)
        now = time.time() if now is None else now
        fields = {"instruction_id": instruction_id, "refiner_id": refiner_id, "query": query, "params": params,
                  "deadline": deadline, "compute_job_id": compute_job_id,
                  "recipient": recipient, "recipient_key": recipient_key}
        row = new_row(new_job_id(), owner, nonce, digest, fields, now)
        sql = (f"INSERT INTO jobs ({', '.join(row)}) VALUES ({marks(row)}) "
               "ON CONFLICT (owner, nonce) DO NOTHING RETURNING *")
        with self._tx() as run:
            rows, _ = run(sql, list(row.values()))
            if rows:
                self._announce(run, row["id"], created=True)
            else:
                rows, _ = run("SELECT * FROM jobs WHERE owner = ? AND nonce = ?", [owner, str(nonce)])
        job = row_to_job(rows[0])
        if job.id != row["id"]:
            if job.request_digest != digest:
                raise nonce_reused(owner, nonce)
            return job, False
        self._hub.changed(job.id, work=True)
        return job, True

    # --- transitions ---------------------------------------------------------------
    def _sets(self, new_status: str, fields: dict[str, Any], now: float) -> tuple[str, list[Any]]:
        if new_status not in STATUSES:
            raise ValueError(f"unknown status {new_status!r}")
        sets = ["status = ?", "updated_at = ?", f"steps = {self.STEPS_APPEND}"]
        args: list[Any] = [new_status, now, new_status, now]
        if new_status in TERMINAL:
            sets.append("finished_at = ?")
            args.append(now)
        for name, value in fields.items():
            encoded = encode_field(name, value)  # refuses columns a transition may not set
            sets.append(f'"{name}" = ?')
            args.append(encoded)
        return ", ".join(sets), args

    def _update(self, job_id: str, where: str, where_args: Sequence[Any], sets: str, args: Sequence[Any],
                ) -> Job | None:
        """One state-checked UPDATE; the job after it, or None when `where` did not hold."""
        with self._tx() as run:
            rows, _ = run(f"UPDATE jobs SET {sets} WHERE id = ? AND {where} RETURNING *", [*args, job_id, *where_args])
            if rows:
                self._announce(run, job_id)
        if not rows:
            return None
        job = row_to_job(rows[0])
        self._hub.changed(job_id, finished=job.finished)
        return job

    def _stale(self, job_id: str, expected: Iterable[str]) -> StaleState | NotFoundError:
        job = self.get(job_id)
        return NotFoundError(f"no job {job_id}", job_id=job_id) if job is None else StaleState(job_id, job.status,
                                                                                               expected)

    def transition(self, job_id: str, expected: str | Iterable[str], new_status: str, **fields: Any) -> Job:
        """Move the job to `new_status` if it is in `expected`; record `fields`.

        Raises StaleState when the job is elsewhere (e.g. already cancelled),
        NotFoundError when it does not exist.
        """
        allowed = sorted({expected} if isinstance(expected, str) else set(expected))
        sets, args = self._sets(new_status, fields, time.time())
        job = self._update(job_id, f"status IN ({marks(allowed)})", allowed, sets, args)
        if job is None:
            raise self._stale(job_id, allowed)
        return job

    def fail(self, job_id: str, code: str, message: str, **fields: Any) -> Job:
        """FAILED with `code` from any unfinished status (StaleState if already finished)."""
        return self.transition(job_id, UNFINISHED, FAILED, failure_code=code, failure_message=message, **fields)

    def cancel(self, job_id: str) -> Job:
        """CANCELLED from any unfinished status (StaleState if already finished)."""
        return self.transition(job_id, UNFINISHED, CANCELLED, failure_code="CANCELLED",
                               failure_message="the job owner cancelled the job")

    def request_cancel(self, job_id: str) -> Job:
        """An unclaimed PENDING job is CANCELLED at once; a claimed or running one is flagged.

        The engine holding the job sees the flag (cancel_requested()) and stops it.
        StaleState when the job already finished, NotFoundError when there is none.
        """
        now = time.time()
        sets, args = self._sets(CANCELLED, {"failure_code": "CANCELLED",
                                            "failure_message": "the job owner cancelled the job"}, now)
        job = self._update(job_id, f"status = ? AND {_FREE_LEASE}", [PENDING, now], sets, args)
        if job is None:
            job = self._update(job_id, f"status IN ({marks(_UNFINISHED)})", _UNFINISHED,
                               "cancel_requested = 1, updated_at = ?", [now])
        if job is None:
            raise self._stale(job_id, UNFINISHED)
        return job

    def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        """Which of these jobs their owner asked to cancel."""
        if not job_ids:
            return set()
        rows = self._read(f"SELECT id FROM jobs WHERE cancel_requested = 1 AND id IN ({marks(job_ids)})", job_ids)
        return {r["id"] for r in rows}

    # --- claims and leases -------------------------------------------------------------
    def claim_next(self, engine_id: str, lease_s: float, refiner_ids: Collection[int] | None = None) -> Job | None:
        """Take the oldest PENDING job nobody holds (for one of `refiner_ids`, when given).

        The job stays PENDING (the worker's first transition moves it) with
        lease_owner = engine_id until now + lease_s. Atomic across processes.
        """
        if refiner_ids is not None and not refiner_ids:
            return None
        now = time.time()
        where, where_args = _claimable(refiner_ids, now)
        sql = (f"UPDATE jobs SET lease_owner = ?, lease_expires_at = ? WHERE id = (SELECT id FROM jobs WHERE {where} "
               f"ORDER BY created_at, id LIMIT 1{self.SKIP_LOCKED}) RETURNING *")
        with self._tx() as run:
            rows, _ = run(sql, [engine_id, now + lease_s, *where_args])
        return row_to_job(rows[0]) if rows else None

    def renew_leases(self, engine_id: str, job_ids: Sequence[str], lease_s: float) -> set[str]:
        """Extend the leases engine_id still holds on unfinished jobs; the ids still held."""
        if not job_ids:
            return set()
        sql = (f"UPDATE jobs SET lease_expires_at = ? WHERE lease_owner = ? AND id IN ({marks(job_ids)}) "
               f"AND status IN ({marks(_UNFINISHED)}) RETURNING id")
        with self._tx() as run:
            rows, _ = run(sql, [time.time() + lease_s, engine_id, *job_ids, *_UNFINISHED])
        return {r["id"] for r in rows}

    def expired_leases(self, now: float) -> list[Job]:
        """Unfinished jobs whose lease ran out (a PENDING one is also claimable again)."""
        return self._jobs(f"lease_owner IS NOT NULL AND lease_expires_at <= ? AND status IN ({marks(_UNFINISHED)})",
                          [now, *_UNFINISHED])

    def jobs_leased_by(self, engine_id: str) -> list[Job]:
        """Unfinished jobs this engine id holds (a restarted engine fails them ENGINE_RESTARTED)."""
        return self._jobs(f"lease_owner = ? AND status IN ({marks(_UNFINISHED)})", [engine_id, *_UNFINISHED])

    # --- waiting -----------------------------------------------------------------------
    def wait_for_change(self, job_id: str, known_status: str | None, timeout_s: float, *,
                        until_end: bool = False) -> Job | None:
        """The job once its status is no longer `known_status` (or it ended), else after `timeout_s`.

        With `until_end` only the end answers (a finished job, or a missing one):
        the steps in between do not, and `known_status` is not consulted. Wakes
        on this process's transitions at once and on any other process's
        through _watch (notifications or a poll).
        """
        self._ensure_watch()
        deadline = time.monotonic() + timeout_s
        hub = self._hub
        while True:
            with hub.cond:
                generation = hub.generation
            job = self.get(job_id)
            remaining = deadline - time.monotonic()
            if _answered(job, known_status, until_end) or remaining <= 0:
                return job
            with hub.cond:
                if hub.generation == generation:
                    hub.cond.wait(remaining)

    async def wait_for_change_async(self, job_id: str, known_status: str | None, timeout_s: float, *,
                                    until_end: bool = False) -> Job | None:
        """wait_for_change for an event loop: no thread is held while it waits.

        Each transition of the job wakes it for one read; with `until_end` it
        reads and waits through the steps before the end within this one call.
        """
        from anyio import to_thread

        if not self._watching:  # the first wait may connect a listener: not on the event loop
            await to_thread.run_sync(self._ensure_watch)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            with self._hub.async_waiter(job_id, until_end=until_end) as event:  # registered before the read
                job = await to_thread.run_sync(self.get, job_id)
                remaining = deadline - loop.time()
                if _answered(job, known_status, until_end) or remaining <= 0:
                    return job
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), remaining)  # a last read above answers

    def wait_for_work(self, timeout_s: float, refiner_ids: Collection[int] | None = None) -> bool:
        """Return when a job may be claimable (one is, or one was created), else after timeout_s.

        True when a job `claim_next(..., refiner_ids)` could take was there at once (the
        same predicate: a caller whose claim just failed lost a race, not a wait).
        """
        self._ensure_watch()
        hub = self._hub
        with hub.cond:
            work = hub.work
        if refiner_ids is None or refiner_ids:
            where, args = _claimable(refiner_ids, time.time())
            if self._read(f"SELECT id FROM jobs WHERE {where} LIMIT 1", args):
                return True
        with hub.cond:
            if hub.work == work:
                hub.cond.wait_for(lambda: hub.work != work, timeout_s)
        return False

    # --- artifacts -------------------------------------------------------------------
    def set_artifacts(self, job_id: str, artifacts: Sequence[Artifact]) -> None:
        """Replace the job's artifact list."""
        with self._tx() as run:
            run("DELETE FROM artifacts WHERE job_id = ?", [job_id])
            for a in artifacts:
                run("INSERT INTO artifacts (job_id, name, size, sha256, media_type, sealed_size, sealed_sha256) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [job_id, a.name, a.size, a.sha256, a.media_type, a.sealed_size, a.sealed_sha256])

    def artifacts(self, job_id: str) -> list[Artifact]:
        from engine.artifacts import Artifact

        rows = self._read("SELECT * FROM artifacts WHERE job_id = ? ORDER BY name", [job_id])
        return [Artifact(name=r["name"], size=r["size"], sha256=r["sha256"], media_type=r["media_type"],
                         sealed_size=r.get("sealed_size"), sealed_sha256=r.get("sealed_sha256"))
                for r in rows]

    def mark_artifacts_expired(self, job_id: str) -> Job:
        """Forget the job's artifact rows (files are gone); the job keeps its metadata."""
        with self._tx() as run:
            run("DELETE FROM artifacts WHERE job_id = ?", [job_id])
            rows, _ = run("UPDATE jobs SET artifacts_expired = 1, updated_at = ? WHERE id = ? RETURNING *",
                          [time.time(), job_id])
        if not rows:
            raise NotFoundError(f"no job {job_id}", job_id=job_id)
        return row_to_job(rows[0])

    def ping(self) -> bool:
        """True when the database answers (for /health)."""
        return self._read("SELECT 1 AS one")[0]["one"] == 1
