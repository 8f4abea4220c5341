"""The job's story: one claimed job run from PENDING to its end.

This is the one place a job's pipeline reads top to bottom, in
``JobStory._story``::

    verify -> fetch -> load -> query -> re-check approval -> charge -> run -> collect -> SUCCEEDED

What the run needs and no check decides is prepared alongside (engine/ahead.py):
the output filesystem is made while the chain is read, the container is created
(not started) while the query runs; it starts after the approval re-check.

Each step is a short method that moves the job to its status (through
``JobStore.transition``, which checks the expected current status), does one
thing through one seam (chain, image cache, loader, query, runner, artifacts)
and leaves what it learnt in ``ctx.record`` to be written with the next
transition. A step failure is a ``JobFailure`` whose code becomes the job's
``failure_code``; a lost race (the owner cancelled) is a ``StaleState`` and
the story stops quietly; anything else is INTERNAL_ERROR with a generic
message (the traceback goes to the operator's log, never to the job).

Attestation: when the operator configured a signing key (``signing_key_env``),
the SUCCEEDED transition records the engine's EIP-712 ``JobResult`` signature
over (job, owner, instruction, refiner, image sha256, block, artifacts digest,
finished at) as the job's ``attestation``; without a key it stays null.

Which job runs, and when, is the worker's business (engine/worker.py); what
happens to jobs nobody runs any more is the supervisor's (engine/supervisor.py).
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import shutil
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import scratch
from engine import store as st
from engine.ahead import ImageGuesses, JobPrep
from engine.artifact_store import LocalArtifactStore, artifact_store_for
from engine.errors import FAILURE_CODES, ChainCheckFailure, JobFailure, RunFailure
from engine.fetch import FetchProgress
from engine.recipients import seal_logs
from engine.settings import Settings
from engine.store import Job, JobStore, StaleState

if TYPE_CHECKING:
    from engine.chain import ChainCheck, ChainVerifier
    from engine.data import DataCatalog
    from engine.fetch import ImageCache, VerifiedArchive
    from engine.images import ImageLoader
    from engine.payment import Charger
    from engine.query.model import SealedSource
    from engine.runner import DockerRunner

__all__ = ["JobFiles", "JobStory"]

log = logging.getLogger("engine.story")

INTERNAL_MESSAGE = "an unexpected engine error; the operator's log has the details"


@dataclass
class JobFiles:
    """Where one engine keeps a job's files: scratch in its data dir, artifacts in the artifact store."""

    data_dir: Path
    artifacts: LocalArtifactStore | None = None  # None: today's layout under data_dir

    def __post_init__(self) -> None:
        if self.artifacts is None:
            self.artifacts = artifact_store_for(self.data_dir, None)

    @property
    def store(self) -> LocalArtifactStore:
        assert self.artifacts is not None
        return self.artifacts

    def scratch(self, job_id: str) -> Path:
        return self.data_dir / "scratch" / job_id

    def artifact_dir(self, job_id: str) -> Path:
        return self.store.job_dir(job_id)

    def log_file(self, job_id: str) -> Path:
        return self.store.log_path(job_id)

    def engine_id(self) -> str:
        """This engine's id, made once and kept in its data dir (labels its containers, holds its leases).

        Unique among running engines: one engine per data dir (engine/wiring.py's lock),
        and a new data dir gets a fresh random id. A restart on the same dir keeps it,
        so the restarted engine recognises (and fails) the jobs it held.
        """
        path = self.data_dir / "engine-id"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_hex(8))
        return path.read_text().strip()


# ---------------------------------------------------------------- one job's context


class _Stop(Exception):
    """The job was cancelled: the story stops without touching its state."""


@dataclass
class _JobContext:
    job: Job
    cancel: threading.Event
    scratch: Path
    record: dict[str, Any] = field(default_factory=dict)  # fields for the next transition
    check: ChainCheck | None = None
    data_path: SealedSource | None = None
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


# ---------------------------------------------------------------- the story


class JobStory:
    """Runs one job at a time per calling thread; thread-safe across jobs."""

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
        clock: Callable[[], float],
        query_runner: Callable[..., Any] | None = None,
        domain: tuple[int, str] | None = None,
        signer: Any | None = None,
        charger: Charger | None = None,
    ):
        self.settings = settings
        self.store = store
        self.chain = chain
        self.images = images
        self.loader = loader
        self.runner = runner
        self.data = data
        self.clock = clock
        self._run_query = query_runner  # engine.query.run_query unless a test injects one
        self.domain = domain  # (chain id, instruction registry): to compute EIP-712 digests
        self.signer = signer  # eth_account LocalAccount signing JobResult attestations, or None
        self.charger = charger  # charges priced queries (engine.payment); None: they run free
        # Artifacts and kept logs: under the data dir, or the shared artifact_dir every engine mounts.
        self.files = JobFiles(Path(settings.data_dir), artifact_store_for(Path(settings.data_dir), settings.artifact_dir))
        self.artifact_store = self.files.store
        self._events: dict[str, threading.Event] = {}  # the running jobs' cancel flags
        self._events_lock = threading.Lock()
        # Two background tasks a job at most (output fs, container): never waits on a busy pool.
        self._ahead = ThreadPoolExecutor(max_workers=2 * settings.max_concurrent_jobs,
                                         thread_name_prefix="job-ahead")
        self._image_guesses = ImageGuesses()  # instruction -> the image it last ran with

    def running(self) -> list[str]:
        """The ids of the jobs this story is running now."""
        with self._events_lock:
            return list(self._events)

    def stop_job(self, job_id: str) -> bool:
        """Tell a running job to stop (its steps check the flag; the runner kills the container)."""
        with self._events_lock:
            event = self._events.get(job_id)
        if event is None or event.is_set():
            return False
        event.set()
        return True

    def _scratch(self, job_id: str) -> Path:
        return self.files.scratch(job_id)

    def _artifact_dir(self, job_id: str) -> Path:
        return self.files.artifact_dir(job_id)

    def _log_file(self, job_id: str) -> Path:
        return self.files.log_file(job_id)

    # --- the pipeline -------------------------------------------------------------
    def process(self, job_id: str) -> None:
        """Run one PENDING job to its end (what a worker does with the job it took)."""
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
                ctx.prep.settle()  # the container goes, then the scratch: nothing still mounts there
            scratch.remove_tree(ctx.scratch)  # unmounts the output; logs whatever stays
            if ctx.archive is not None and ctx.archive.expanded is not None:
                ctx.archive.expanded.unlink(missing_ok=True)  # stopped before the load used it
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
        ctx.prep.start_output(ctx.output_dir)  # copy + mount while the chain is read
        guess = self._image_guesses.get(job.instruction_id)
        if guess is not None:  # created (never started) while the chain is read; checked in _query
            ctx.prep.start_container(job.id, guess, ctx.input_db, ctx.output_dir, job.refiner_id,
                                     job.compute_job_id, guess=True)
        ctx.check = self.chain.verify(job.instruction_id, job.refiner_id, job.owner, cancel=ctx.cancel)
        ctx.record.update(block_number=ctx.check.block_number, dlp_id=ctx.check.dlp_id)
        # Before any download: a refiner the engine holds no data for fails here.
        ctx.data_path = self.data.source(job.refiner_id)  # sealed: opened in the query's memory

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
        self._image_guesses.ran(ctx.job.instruction_id, ctx.image_id)

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
        # Created, not started: it starts in _run, after the approval re-check. (A no-op when
        # the guess made in _verify named this image.)
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
        # Removed in process()'s finally (prep.settle), after the job's end is recorded.
        result = self.runner.run(spec, cancel=ctx.cancel, created=created, remove=False)
        self._keep_logs(ctx.job, result.logs)
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

    def _keep_logs(self, job: Job, logs: bytes) -> None:
        # Logs are a leak channel: kept only when the operator says so, sealed like the artifacts.
        if not self.settings.share_logs:
            return
        path = self._log_file(job.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(seal_logs(logs[: self.settings.run_log_bytes], job.recipient_key))

    def _collect(self, ctx: _JobContext) -> None:
        from engine.artifacts import collect
        from engine.attestation import attest_result

        self._advance(ctx, st.COLLECTING)
        dest = self._artifact_dir(ctx.job.id)
        s = self.settings
        collected = collect(ctx.output_dir, dest, s.output_max_bytes, max_files=s.output_max_files,
                            seal_to=ctx.job.recipient_key)  # only ciphertext is stored
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
