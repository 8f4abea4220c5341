"""The job's story: submit, the worker pipeline, cancel, reconcile, retention.

This is the one place that changes job state (through ``JobStore.transition``,
which checks the expected current status). One job reads top to bottom in
``JobService._story``::

    verify -> fetch -> load -> query -> re-check approval -> charge -> run -> collect -> SUCCEEDED

What the run needs and no check decides is prepared alongside (engine/ahead.py):
the output filesystem is made while the chain is read, the container is created
(not started) while the query runs; it starts after the approval re-check.

Each step is a short method that moves the job to its status, does one thing
through one seam (chain, image cache, loader, query, runner, artifacts) and
leaves what it learnt in ``ctx.record`` to be written with the next
transition. A step failure is a ``JobFailure`` whose code becomes the job's
``failure_code``; a lost race (the owner cancelled) is a ``StaleState`` and
the worker stops quietly; anything else is INTERNAL_ERROR with a generic
message (the traceback goes to the operator's log, never to the job).

Concurrency: a queue drained by ``max_concurrent_jobs`` worker threads; a
submission that would push the queue past ``queue_size`` gets QUEUE_FULL
(503). A retention thread deletes expired artifacts.

Attestation: when the operator configured a signing key (``signing_key_env``),
the SUCCEEDED transition records the engine's EIP-712 ``JobResult`` signature
over (job, owner, instruction, refiner, image sha256, block, artifacts digest,
finished at) as the job's ``attestation``; without a key it stays null.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import shutil
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anyio import to_thread
from eth_utils import to_checksum_address

from engine import scratch
from engine import store as st
from engine.ahead import JobPrep
from engine.artifact_store import artifact_store_for
from engine.data import DataCatalog
from engine.errors import (
    FAILURE_CODES,
    ChainCheckFailure,
    JobFailure,
    NotFoundError,
    RequestError,
    RunFailure,
)
from engine.fetch import FetchProgress
from engine.health import run_probe, run_probes
from engine.settings import Settings
from engine.storage import disk_check
from engine.store import Job, JobStore, StaleState
from engine.submission import local_digest, validate_request

if TYPE_CHECKING:
    from engine.artifacts import Artifact
    from engine.chain import ChainCheck, ChainVerifier
    from engine.fetch import ImageCache, VerifiedArchive
    from engine.images import ImageLoader
    from engine.payment import Charger
    from engine.preflight import Preflight
    from engine.runner import DockerRunner
    from registry_client.eip712 import JobRequest

__all__ = ["JobService"]

log = logging.getLogger("engine.service")

INTERNAL_MESSAGE = "an unexpected engine error; the operator's log has the details"



# ---------------------------------------------------------------- one job's context


class _Stop(Exception):
    """The job was cancelled: the worker stops without touching its state."""


@dataclass
class _JobContext:
    job: Job
    cancel: threading.Event
    scratch: Path
    record: dict[str, Any] = field(default_factory=dict)  # fields for the next transition
    check: ChainCheck | None = None
    data_path: Path | None = None
    archive: VerifiedArchive | None = None
    image_id: str | None = None
    max_timeout_s: float | None = None  # the on-chain compute job's limit, if any
    prep: JobPrep | None = None  # the output fs and container, made ahead of the run

    @property
    def input_db(self) -> Path:
        return self.scratch / "input" / "query_results.db"

    @property
    def output_dir(self) -> Path:
        return self.scratch / "output"


# ---------------------------------------------------------------- the service


class JobService:
    """Jobs from submission to artifacts. Thread-safe; start() runs the workers."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        chain: ChainVerifier,
        images: ImageCache,
        loader: ImageLoader,
        runner: DockerRunner,
        data: DataCatalog,
        *,
        probes: Mapping[str, Callable[[], Any]] | None = None,
        clock: Callable[[], float] = time.time,
        query_runner: Callable[..., Any] | None = None,
        domain: tuple[int, str] | None = None,
        signer: Any | None = None,
        charger: Charger | None = None,
        preflight: Preflight | None = None,
    ):
        self.settings = settings
        self.store = store
        self.chain = chain
        self.images = images
        self.loader = loader
        self.runner = runner
        self.data = data
        self.probes = dict(probes or {})
        self.clock = clock
        self._run_query = query_runner  # engine.query.run_query unless a test injects one
        self.domain = domain  # (chain id, instruction registry): to compute EIP-712 digests
        if signer is not None and domain is None:
            raise ValueError("attesting results needs the EIP-712 domain (chain id, instruction registry)")
        self.signer = signer  # eth_account LocalAccount signing JobResult attestations, or None
        self.charger = charger  # charges priced queries (engine.payment); None: they run free
        self.preflight = preflight  # submit's image-free checks (engine.preflight); None: none
        self.data_dir = Path(settings.data_dir)
        self.artifact_store = artifact_store_for(self.data_dir, settings.artifact_dir)  # maybe shared
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._submit_lock = threading.Lock()
        self._events: dict[str, threading.Event] = {}
        self._events_lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._sweeper: threading.Thread | None = None
        self._stopping = threading.Event()
        self._reconciled = False
        # Two background tasks a job at most (output fs, container): never waits on a busy pool.
        self._ahead = ThreadPoolExecutor(max_workers=2 * settings.max_concurrent_jobs,
                                         thread_name_prefix="job-ahead")

    # --- paths ----------------------------------------------------------------
    def _scratch(self, job_id: str) -> Path:
        return self.data_dir / "scratch" / job_id

    def _artifact_dir(self, job_id: str) -> Path:
        return self.artifact_store.job_dir(job_id)

    def _log_file(self, job_id: str) -> Path:
        return self.artifact_store.log_path(job_id)

    # --- API-facing -------------------------------------------------------------
    def submit(self, request: JobRequest, signer: str, digest: str | None = None, *,
               preflight: bool = True) -> tuple[Job, bool]:
        """Queue a verified request (signer = job owner); replays return the same job.

        `digest` is the request's EIP-712 digest (engine.auth returns it); without
        it the service computes it from its domain, or (no domain, e.g. in unit
        tests) hashes the request fields: either way a stable idempotency key.
        `preflight=False` (Vana's API: its refusals read as the run's status) skips the preflight.
        """
        params = validate_request(request, self.settings, self.clock())
        owner = to_checksum_address(signer)
        digest = digest or self._digest(request)
        if preflight and self.preflight is not None and self.store.find(owner, request.nonce) is None:
            self.preflight.check(request, owner)  # refused before the job (and its nonce) exists
        fields = {
            "instruction_id": request.instruction_id,
            "refiner_id": request.refiner_id,
            "query": request.query,
            "params": params,
            "deadline": request.deadline,
            "compute_job_id": request.compute_job_id,
        }
        with self._submit_lock:
            full = self._queue.qsize() >= self.settings.queue_size
            if full and self.store.find(owner, request.nonce) is None:
                msg = f"the engine's queue is full ({self.settings.queue_size} jobs); retry later"
                raise RequestError(msg, code="QUEUE_FULL", http_status=503)
            job, created = self.store.create_or_get(owner, request.nonce, digest, **fields)
            if created:
                self._queue.put(job.id)
                log.info("job %s queued (instruction %s, refiner %s)", job.id, job.instruction_id, job.refiner_id)
        return job, created

    def _digest(self, request: JobRequest) -> str:
        if self.domain is None:
            return local_digest(request)
        from registry_client.eip712 import job_request_digest

        return job_request_digest(self.domain[0], self.domain[1], request)

    def get(self, job_id: str, owner: str) -> Job:
        """The job if `owner` owns it; NotFoundError otherwise (strangers included)."""
        job = self.store.get(job_id)
        if job is None or job.owner.lower() != owner.lower():
            raise NotFoundError(f"no job {job_id}", job_id=job_id)
        return job

    async def wait_for_change(self, job_id: str, owner: str, known_status: str, timeout_s: float) -> Job:
        """Like get(), but first waits up to `timeout_s` (holding no thread) for the status to change."""
        await to_thread.run_sync(self.get, job_id, owner)  # ownership first: a stranger never waits
        job = await self.store.wait_for_change_async(job_id, known_status, timeout_s)
        if job is None:
            raise NotFoundError(f"no job {job_id}", job_id=job_id)
        return job

    def cancel(self, job_id: str, owner: str) -> Job:
        """Cancel an unfinished job; cancelling a cancelled job returns it as is."""
        job = self.get(job_id, owner)
        if job.status == st.CANCELLED:
            return job
        try:
            job = self.store.cancel(job_id)
        except StaleState as exc:
            job = self.get(job_id, owner)
            if job.status == st.CANCELLED:
                return job
            raise RequestError(
                f"job {job_id} already ended {job.status}; it cannot be cancelled",
                code="JOB_FINISHED",
                http_status=409,
            ) from exc
        with self._events_lock:
            event = self._events.get(job_id)
        if event is not None:
            event.set()
        try:
            self.runner.cancel(job_id)
        except Exception:
            log.warning("job %s: killing its container failed", job_id, exc_info=True)
        log.info("job %s cancelled by its owner", job_id)
        return job

    def artifacts(self, job_id: str, owner: str) -> list[Artifact]:
        job = self.get(job_id, owner)
        if job.artifacts_expired:
            raise RequestError(
                f"the artifacts of job {job_id} have expired", code="ARTIFACTS_EXPIRED", http_status=410
            )
        return self.store.artifacts(job_id)

    def artifact_file(self, job_id: str, owner: str, name: str) -> tuple[Artifact, Path]:
        """One artifact and its file; NotFoundError for an unknown name."""
        for artifact in self.artifacts(job_id, owner):
            if artifact.name == name:
                root = self._artifact_dir(job_id).resolve()
                stored = root / name
                path = stored.resolve()
                # The name came from collect(), but never serve a link or outside the job's dir.
                if not stored.is_symlink() and root in path.parents and path.is_file():
                    return artifact, path
                break
        raise NotFoundError(f"job {job_id} has no artifact {name!r}", job_id=job_id)

    def logs(self, job_id: str, owner: str) -> bytes:
        if not self.settings.share_logs:
            raise RequestError(
                "the operator does not share container logs", code="LOGS_DISABLED", http_status=403
            )
        self.get(job_id, owner)
        path = self._log_file(job_id)
        return path.read_bytes() if path.is_file() else b""

    def health(self) -> dict[str, Any]:
        """{"ok": bool, "checks": {name: {"ok": bool, ...}}, "queue": {...}}."""
        checks = {"store": run_probe(self.store.ping),
                  "disk": disk_check(self.data_dir, self.settings.disk_min_free_bytes),
                  **run_probes(self.probes)}
        return {
            "ok": all(c["ok"] for c in checks.values()),
            "checks": checks,
            "engine_address": self.engine_address,
            "queue": {
                "waiting": self._queue.qsize(),
                "capacity": self.settings.queue_size,
                "running": len(self._events),
                "workers": sum(t.is_alive() for t in self._workers),
            },
        }

    @property
    def engine_address(self) -> str | None:
        """The address attestations recover to (None: this engine does not attest)."""
        return None if self.signer is None else to_checksum_address(self.signer.address)

    # --- lifecycle --------------------------------------------------------------
    def start(self) -> None:
        """Reconcile (once), then start the workers and the retention sweeper."""
        if self._workers:
            return
        self.reconcile()
        self._stopping.clear()
        for n in range(self.settings.max_concurrent_jobs):
            worker = threading.Thread(target=self._work, name=f"job-worker-{n}", daemon=True)
            worker.start()
            self._workers.append(worker)
        self._sweeper = threading.Thread(target=self._sweep_loop, name="artifact-sweeper", daemon=True)
        self._sweeper.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking jobs; running ones the next start reconciles (ENGINE_RESTARTED)."""
        self._stopping.set()
        for _ in self._workers:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        if self._sweeper is not None:
            self._sweeper.join(max(0.0, deadline - time.monotonic()))
        self._workers = []
        self._sweeper = None

    def reconcile(self) -> None:
        """On start-up: requeue PENDING jobs, fail every other unfinished one ENGINE_RESTARTED.

        Runs once per service (a second call would fail jobs that are really running).
        """
        if self._reconciled:
            return
        self._reconciled = True
        try:
            removed = self.runner.remove_leftovers()
            if removed:
                log.info("removed %d leftover container(s)", len(removed))
        except Exception:
            log.warning("could not remove leftover containers", exc_info=True)
        if scratch.clear_leftovers(self.data_dir / "scratch"):
            log.error("some job scratch under %s could not be removed", self.data_dir / "scratch")
        for job in self.store.unfinished():
            if job.status == st.PENDING:
                self._queue.put(job.id)
                continue
            try:
                self.store.fail(job.id, "ENGINE_RESTARTED", f"the engine restarted while the job was {job.status}")
            except StaleState:
                continue
            shutil.rmtree(self._artifact_dir(job.id), ignore_errors=True)
            log.info("job %s failed: engine restarted while %s", job.id, job.status)

    def sweep(self, now: float | None = None) -> int:
        """Delete expired artifacts (and kept logs); return how many jobs were swept."""
        now = self.clock() if now is None else now
        count = 0
        for job in self.store.expired(now):
            shutil.rmtree(self._artifact_dir(job.id), ignore_errors=True)
            self._log_file(job.id).unlink(missing_ok=True)
            self.store.mark_artifacts_expired(job.id)
            count += 1
        return count

    def _sweep_loop(self) -> None:
        while not self._stopping.wait(self.settings.sweep_interval_s):
            try:
                self.sweep()
            except Exception:
                log.exception("artifact sweep failed")

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None or self._stopping.is_set():
                return
            try:
                self.process(job_id)
            except Exception:
                # Any error (the store itself failing, say) must not kill the worker; the
                # job stays unfinished in the store and the next start-up reconciles it.
                log.exception("job %s: the worker could not record its end", job_id)

    # --- the pipeline -------------------------------------------------------------
    def process(self, job_id: str) -> None:
        """Run one PENDING job to its end (what a worker does with a queued id)."""
        job = self.store.get(job_id)
        if job is None or job.status != st.PENDING:
            return  # cancelled while queued, or already handled
        event = threading.Event()
        with self._events_lock:
            self._events[job_id] = event
        ctx = _JobContext(job=job, cancel=event, scratch=self._scratch(job_id))
        try:
            self._story(ctx)
        except (_Stop, StaleState):
            log.info("job %s stopped: cancelled", job_id)
            self._discard_artifacts(job_id)
        except JobFailure as exc:
            self._fail(ctx, exc.code, exc.message)
        except Exception as exc:  # noqa: BLE001 - any bug must end the job, not the worker
            # Type and frames only: an exception's message may quote data.
            log.error(
                "job %s: unexpected %s\n%s", job_id, type(exc).__name__, "".join(traceback.format_tb(exc.__traceback__))
            )
            self._fail(ctx, "INTERNAL_ERROR", INTERNAL_MESSAGE)
        finally:
            if ctx.prep is not None:
                ctx.prep.settle()  # before the scratch goes: nothing is still mounting there
            scratch.remove_tree(ctx.scratch)  # unmounts the output; logs whatever stays
            with self._events_lock:
                self._events.pop(job_id, None)

    def _story(self, ctx: _JobContext) -> None:
        self._verify(ctx)
        self._fetch(ctx)
        self._load(ctx)
        self._query(ctx)
        self._recheck_approval(ctx)
        self._charge(ctx)
        self._run(ctx)
        self._collect(ctx)

    @staticmethod
    def _stop_if_cancelled(ctx: _JobContext) -> None:
        if ctx.cancel.is_set():
            raise _Stop()

    def _advance(self, ctx: _JobContext, new_status: str) -> None:
        """Move on from the current status, writing what the last step learnt."""
        self._stop_if_cancelled(ctx)
        ctx.job = self.store.transition(ctx.job.id, ctx.job.status, new_status, **ctx.record)
        ctx.record = {}

    def _verify(self, ctx: _JobContext) -> None:
        self._advance(ctx, st.VERIFYING)
        job = ctx.job
        ctx.prep = JobPrep(self._ahead, self.runner, self.settings)
        ctx.prep.start_output(ctx.output_dir)  # mkfs + mount while the chain is read
        ctx.check = self.chain.verify(job.instruction_id, job.refiner_id, job.owner, cancel=ctx.cancel)
        ctx.record.update(block_number=ctx.check.block_number, dlp_id=ctx.check.dlp_id)
        # Before any download: a refiner the engine holds no data for fails here.
        ctx.data_path = self.data.path(job.refiner_id)

    def _fetch(self, ctx: _JobContext) -> None:
        self._advance(ctx, st.FETCHING)
        check = ctx.check
        assert check is not None
        archive = self.images.cached(check.instruction_hash)
        if archive is None:
            # progress runs after every chunk and every 0.25 s of silence: a cancel
            # stops the download within a second even when no byte arrives.
            progress = FetchProgress(lambda p: self.store.set_progress(ctx.job.id, p),
                                     tick=lambda: self._stop_if_cancelled(ctx))
            archive = self.images.fetch(check.instruction_url, check.instruction_hash, progress=progress)
        ctx.archive = archive
        ctx.record["image_sha256"] = archive.sha256

    def _load(self, ctx: _JobContext) -> None:
        self._advance(ctx, st.LOADING)
        assert ctx.archive is not None
        ctx.image_id = self.loader.ensure_loaded(ctx.archive)
        ctx.record["image_id"] = ctx.image_id

    def _query(self, ctx: _JobContext) -> None:
        if self._run_query is None:
            from engine.query import run_query

            self._run_query = run_query
        self._advance(ctx, st.QUERYING)
        job, check = ctx.job, ctx.check
        assert check is not None and ctx.data_path is not None
        permissions = [p for p in check.permissions if p.refiner_id == job.refiner_id]
        ctx.input_db.parent.mkdir(parents=True, exist_ok=True)
        assert ctx.prep is not None and ctx.image_id is not None
        # Created, not started: it starts in _run, after the approval re-check.
        ctx.prep.start_container(job.id, ctx.image_id, ctx.input_db, ctx.output_dir, job.refiner_id,
                                 job.compute_job_id)
        report = self._run_query(
            ctx.data_path,
            job.query,
            job.params,
            permissions,
            ctx.input_db,
            self.settings.query_limits(),
            refiner_id=job.refiner_id,
            grantee=job.owner,
            cancel=ctx.cancel,
        )
        ctx.prep.stage_inputs(job.params)  # the results where the image's layout expects them
        ctx.record.update(
            access_report={
                "columns": [list(c) for c in report.columns],
                "permissions_used": list(report.permissions_used),
                "price": str(report.price),
                "row_count": report.row_count,
            },
            price_wei=report.price,
        )

    def _recheck_approval(self, ctx: _JobContext) -> None:
        # Approval may have been revoked while the job waited: check the latest block.
        assert ctx.check is not None
        if not self.chain.is_approved(ctx.job.instruction_id, ctx.check.dlp_id, cancel=ctx.cancel):
            raise ChainCheckFailure(
                f"instruction {ctx.job.instruction_id} is no longer approved for DLP {ctx.check.dlp_id}",
                code="NOT_APPROVED",
            )

    def _charge(self, ctx: _JobContext) -> None:
        # After the access report (the price) and the approval re-check: a refused or
        # revoked job never pays; before the container: nothing runs unpaid.
        if self.charger is None:
            return
        from engine.payment import charge_job

        assert ctx.check is not None
        charge = charge_job(self.charger, self.store, ctx.job, ctx.check.dlp_id, ctx.record, cancel=ctx.cancel)
        ctx.record["payment"] = charge.record()
        ctx.max_timeout_s = charge.max_timeout_s

    def _run(self, ctx: _JobContext) -> None:
        from engine.runner import classify

        self._advance(ctx, st.RUNNING)
        assert ctx.prep is not None
        spec, created = ctx.prep.container()
        if ctx.max_timeout_s is not None:  # the on-chain compute job may only lower the timeout
            spec = dataclasses.replace(spec, limits=self.settings.run_limits(ctx.max_timeout_s))
        result = self.runner.run(spec, cancel=ctx.cancel, created=created)
        self._keep_logs(ctx.job.id, result.logs)
        ctx.record["exit_code"] = result.exit_code
        code = classify(result)
        if code == "CANCELLED" or ctx.cancel.is_set():
            raise _Stop()
        if code is not None:
            raise RunFailure(result.output_over or self._run_message(code, result.exit_code, spec.limits.timeout_s),
                             code=code)

    def _run_message(self, code: str, exit_code: int | None, timeout_s: float) -> str:
        if code == "TIMEOUT":
            return f"the container ran past its {timeout_s:g} s limit"
        if code == "OUT_OF_MEMORY":
            return f"the container exceeded its {self.settings.run_memory_bytes} byte memory limit"
        if code == "EXIT_NONZERO":
            return f"the container exited with code {exit_code}"
        return FAILURE_CODES.get(code, code)

    def _keep_logs(self, job_id: str, logs: bytes) -> None:
        # Logs are a leak channel: kept for the owner only when the operator says so.
        if not self.settings.share_logs:
            return
        path = self._log_file(job_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(logs[: self.settings.run_log_bytes])

    def _collect(self, ctx: _JobContext) -> None:
        from engine.artifacts import collect
        from engine.attestation import attest_result

        self._advance(ctx, st.COLLECTING)
        dest = self._artifact_dir(ctx.job.id)
        s = self.settings
        collected = collect(ctx.output_dir, dest, s.output_max_bytes, max_files=s.output_max_files)
        artifacts = collected.artifacts
        self.store.set_artifacts(ctx.job.id, artifacts)
        ctx.record["skipped_outputs"] = collected.skipped_public()  # what was not kept, and why
        if self.signer is not None:
            assert self.domain is not None
            ctx.record["attestation"] = attest_result(self.signer, self.domain, ctx.job, artifacts,
                                                      int(self.clock()))
        ctx.record["artifacts_expire_at"] = self.clock() + self.settings.artifact_retention_s
        self._advance(ctx, st.SUCCEEDED)
        log.info("job %s succeeded with %d artifact(s)", ctx.job.id, len(artifacts))

    def _fail(self, ctx: _JobContext, code: str, message: str) -> None:
        job_id = ctx.job.id
        self._discard_artifacts(job_id)
        try:
            self.store.fail(job_id, code, message, **ctx.record)
        except StaleState:
            return  # cancelled meanwhile: the cancel wins
        log.info("job %s failed: %s", job_id, code)

    def _discard_artifacts(self, job_id: str) -> None:
        shutil.rmtree(self._artifact_dir(job_id), ignore_errors=True)
        try:
            self.store.set_artifacts(job_id, [])
        except Exception:
            log.warning("job %s: clearing artifact rows failed", job_id, exc_info=True)
