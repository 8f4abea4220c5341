"""The job service: the API's commands over one engine's story, worker and supervisor.

What the API calls lives here (submit, get, wait, cancel, artifacts, logs,
health); one job's pipeline is ``JobStory`` (engine/story.py), the threads
that claim jobs and run it are the ``Worker`` (engine/worker.py), start-up
reconcile, lapsed leases and retention are the ``Supervisor``
(engine/supervisor.py). ``JobService`` builds the three and starts and stops
them together (``role = "api"``: no worker).

Everything between engines goes through the store, so any engine sharing it
answers for any job: a submission is a PENDING row (QUEUE_FULL, 503, once
``queue_size`` of them wait), a cancel marks the job in the store for the
engine running it, a long-poll waits on the store's cross-process change
notifications.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anyio import to_thread
from eth_utils import to_checksum_address

from engine import store as st
from engine.data import DataCatalog
from engine.errors import NotFoundError, RequestError
from engine.health import run_probe, run_probes
from engine.recipients import can_read, check_can_open, recipient_fields
from engine.settings import Settings
from engine.storage import disk_check
from engine.store import Job, JobStore, StaleState
from engine.story import JobStory
from engine.submission import local_digest, validate_request
from engine.supervisor import Supervisor
from engine.worker import Worker

if TYPE_CHECKING:
    from engine.artifacts import Artifact
    from engine.chain import ChainVerifier
    from engine.fetch import ImageCache
    from engine.images import ImageLoader
    from engine.payment import Charger
    from engine.preflight import Preflight
    from engine.runner import DockerRunner
    from registry_client.eip712 import JobRequest

__all__ = ["JobService"]

log = logging.getLogger("engine.service")


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
        engine_id: str | None = None,
    ):
        if signer is not None and domain is None:
            raise ValueError("attesting results needs the EIP-712 domain (chain id, instruction registry)")
        self.settings = settings
        self.store = store
        self.chain = chain
        self.runner = runner
        self.probes = dict(probes or {})
        self.clock = clock
        self.domain = domain  # (chain id, instruction registry): to compute EIP-712 digests
        self.signer = signer  # eth_account LocalAccount signing JobResult attestations, or None
        self.charger = charger  # charges priced queries (engine.payment); None: they run free
        self.preflight = preflight  # submit's image-free checks (engine.preflight); None: none
        self.data_dir = Path(settings.data_dir)
        self.story = JobStory(settings, store, chain, images, loader, runner, data, clock=clock,
                              query_runner=query_runner, domain=domain, signer=signer, charger=charger)
        self.files = self.story.files
        self.images = images  # the archive cache (the static image audit reuses it)
        self.artifact_store = self.story.artifact_store  # maybe a folder every engine shares
        self.data = data
        self.engine_id = engine_id or self.files.engine_id()
        self.worker = Worker(self.story, store, runner, self.engine_id, concurrency=settings.max_concurrent_jobs,
                             lease_s=settings.lease_s, refiner_ids=self._refiner_ids)
        self.supervisor = Supervisor(settings, store, runner, self.files, clock, self.engine_id)
        self._submit_lock = threading.Lock()
        self._started = False

    # --- paths ----------------------------------------------------------------
    def _artifact_dir(self, job_id: str) -> Path:
        return self.files.artifact_dir(job_id)

    def _log_file(self, job_id: str) -> Path:
        return self.files.log_file(job_id)

    # --- API-facing -------------------------------------------------------------
    def submit(self, request: JobRequest, signer: str, digest: str | None = None,
               signer_key: str | None = None, *, preflight: bool = True) -> tuple[Job, bool]:
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
            **recipient_fields(request, owner, signer_key),  # who the results are sealed to
        }
        with self._submit_lock:
            # PENDING rows, whichever engine took the submission: the queue every engine shares.
            full = self.store.count_pending() >= self.settings.queue_size
            if full and self.store.find(owner, request.nonce) is None:
                msg = f"the job queue is full ({self.settings.queue_size} jobs waiting); retry later"
                raise RequestError(msg, code="QUEUE_FULL", http_status=503)
            job, created = self.store.create_or_get(owner, request.nonce, digest, **fields)
            if created:
                log.info("job %s queued (instruction %s, refiner %s)", job.id, job.instruction_id, job.refiner_id)
        return job, created

    def _digest(self, request: JobRequest) -> str:
        if self.domain is None:
            return local_digest(request)
        from registry_client.eip712 import job_request_digest

        return job_request_digest(self.domain[0], self.domain[1], request)

    def get(self, job_id: str, owner: str, *, owner_only: bool = False) -> Job:
        """The job if `owner` owns it (or receives it); NotFoundError otherwise (strangers too)."""
        job = self.store.get(job_id)
        if job is None or not can_read(job, owner, owner_only=owner_only):
            raise NotFoundError(f"no job {job_id}", job_id=job_id)
        return job

    async def wait_for_change(self, job_id: str, owner: str, known_status: str | None, timeout_s: float, *,
                              until_end: bool = False) -> Job:
        """Like get(), but first waits up to `timeout_s` (holding no thread) for the status to change.

        With `until_end`, for the job to end instead: one wait through all its steps.
        """
        await to_thread.run_sync(self.get, job_id, owner)  # ownership first: a stranger never waits
        job = await self.store.wait_for_change_async(job_id, known_status, timeout_s, until_end=until_end)
        if job is None:
            raise NotFoundError(f"no job {job_id}", job_id=job_id)
        return job

    def cancel(self, job_id: str, owner: str) -> Job:
        """Cancel an unfinished job; cancelling a cancelled job returns it as is.

        The job is CANCELLED in the store at once and flagged (request_cancel):
        the engine running it, this one or another, sees the flag and stops its
        container (engine/worker.py); here, the local one is stopped at once.
        Only the owner cancels (a recipient reads).
        """
        job = self.get(job_id, owner, owner_only=True)
        if job.status == st.CANCELLED:
            return job
        try:
            job = self.store.request_cancel(job_id)
            if not job.finished:
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
        self.story.stop_job(job_id)
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
        check_can_open(self.get(job_id, owner), owner)
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
        check_can_open(self.get(job_id, owner), owner)
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
                "waiting": self.store.count_pending(),  # every engine's queue: the store's PENDING jobs
                "capacity": self.settings.queue_size,
                "running": len(self.story.running()),
                "workers": self.worker.alive(),
            },
        }

    @property
    def engine_address(self) -> str | None:
        """The address attestations recover to (None: this engine does not attest)."""
        return None if self.signer is None else to_checksum_address(self.signer.address)

    # --- lifecycle --------------------------------------------------------------
    def start(self) -> None:
        """Reconcile (once), then start the supervisor and (unless role=api) the workers."""
        if self._started:
            return
        self._started = True
        self.reconcile()
        if self.settings.role != "api":
            self.worker.start()
        self.supervisor.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking jobs; running ones the next start reconciles (ENGINE_RESTARTED)."""
        deadline = time.monotonic() + timeout
        self.worker.stop(timeout)
        self.supervisor.stop(max(0.0, deadline - time.monotonic()))
        self._started = False

    def reconcile(self) -> None:
        """On start-up: fail the jobs this engine held, and lapsed leases' jobs (see Supervisor)."""
        self.supervisor.reconcile()

    def _refiner_ids(self) -> set[int]:
        """The refiners whose data this engine holds: the only jobs it claims."""
        return {entry.refiner_id for entry in self.data.list()}

    def sweep(self, now: float | None = None) -> int:
        """Delete expired artifacts (and kept logs); return how many jobs were swept."""
        return self.supervisor.sweep(now)

    def process(self, job_id: str) -> None:
        """Run one PENDING job to its end, in this thread (what a worker does)."""
        self.story.process(job_id)
