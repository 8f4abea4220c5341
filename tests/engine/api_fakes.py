"""A fake JobService and a real uvicorn server around the API, for unit tests of the HTTP layer.

The fake keeps jobs in memory and artifacts in a temp dir, and follows the
service contract of docs/architecture.md (404 for strangers, NONCE_REUSED,
LOGS_DISABLED, cancel of finished jobs refused). Each `get` of a job with a
`script` advances it one step, so `wait` sees a job move through the pipeline.
``StoreBackedService`` keeps the fake's surface but reads a real JobStore and
long-polls with the real ``JobService.wait_for_change``. The real service is
exercised by the end-to-end tests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.artifacts import Artifact
from engine.errors import NotFoundError, RequestError
from engine.store import TERMINAL, Job, StepEvent
from engine.submission import check_deadline
from tests.loopback import loopback_listener

CHAIN_ID = 31337
REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"

PIPELINE = [
    ("VERIFYING", {"block_number": 42, "dlp_id": 1}),
    ("FETCHING", {"image_sha256": "ab" * 32}),
    ("LOADING", {"image_id": "sha256:" + "cd" * 32}),
    ("QUERYING", {}),
    ("RUNNING", {"access_report": {"columns": [["users", "locale"]], "permissions_used": [1],
                                   "price": 10**20, "row_count": 3}, "price_wei": 10**20}),
    ("COLLECTING", {"exit_code": 0}),
    ("SUCCEEDED", {}),
]


@dataclass
class FakeService:
    artifact_dir: Path
    share_logs: bool = False
    auto_advance: bool = False
    jobs: dict[str, Job] = field(default_factory=dict)
    files: dict[str, dict[str, tuple[Artifact, Path]]] = field(default_factory=dict)
    submitted: list[tuple[Any, str]] = field(default_factory=list)
    signer_keys: list[str | None] = field(default_factory=list)
    waits: list[tuple[str, str | None, float, bool]] = field(default_factory=list)  # long-polls (.., until_end)
    health_report: dict = field(default_factory=lambda: {"chain": True, "docker": True, "store": True})
    boom: bool = False  # make get() raise an unexpected error
    deadline_max_s: float = 24 * 3600.0  # the real service's Settings.deadline_max_s
    preflight: Any = None  # None: this engine cannot quote (POST /jobs/quote: QUOTE_UNAVAILABLE)
    chain: Any = None  # None: it cannot read permissions (GET /refiners/{id}/schema: SCHEMA_UNAVAILABLE)
    data: Any = None  # engine.data.DataCatalog where a test gives one
    engine_address: str | None = None  # attests nothing

    def submit(self, request: Any, signer: str, digest: str | None = None,
               signer_key: str | None = None, *, preflight: bool = True) -> tuple[Job, bool]:
        from registry_client.eip712 import job_request_digest

        check_deadline(request.deadline, time.time(), self.deadline_max_s)  # the service's one rule
        self.submitted.append((request, signer))
        self.signer_keys.append(signer_key)
        assert digest == job_request_digest(CHAIN_ID, REGISTRY, request)
        for job in self.jobs.values():
            if job.owner == signer and job.nonce == request.nonce:
                if job.request_digest != digest:
                    raise RequestError(f"nonce {request.nonce} was already used for another request",
                                       code="NONCE_REUSED", http_status=409)
                return job, False
        now = time.time()
        job = Job(
            id=f"job-{len(self.jobs) + 1}", owner=signer, nonce=request.nonce, request_digest=digest,
            instruction_id=request.instruction_id, refiner_id=request.refiner_id, query=request.query,
            params=request.params, deadline=request.deadline, status="PENDING", created_at=now,
            updated_at=now, finished_at=None, steps=(StepEvent("PENDING", now),), failure_code=None,
            failure_message=None, block_number=None, dlp_id=None, image_sha256=None, image_id=None,
            access_report=None, price_wei=None, exit_code=None, artifacts_expire_at=None,
        )
        self.jobs[job.id] = job
        return job, True

    def _owned(self, job_id: str, owner: str) -> Job:
        if self.boom:
            raise RuntimeError("secret internal detail /var/lib/engine")
        job = self.jobs.get(job_id)
        if job is None or job.owner != owner:
            raise NotFoundError(f"no job {job_id}")
        return job

    def advance(self, job_id: str, status: str, **fields: Any) -> Job:
        job = self.jobs[job_id]
        now = time.time()
        finished = now if status in TERMINAL else None
        job = dataclasses.replace(job, status=status, updated_at=now, finished_at=finished,
                                  steps=job.steps + (StepEvent(status, now),), **fields)
        self.jobs[job_id] = job
        return job

    async def wait_for_change(self, job_id: str, owner: str, known_status: str | None, timeout_s: float, *,
                              until_end: bool = False) -> Job:
        # Async like JobService's: the route awaits it (a long-poll holds no thread).
        self.waits.append((job_id, known_status, timeout_s, until_end))
        job = self.get(job_id, owner)
        while until_end and self.auto_advance and job.status not in TERMINAL:
            job = self.get(job_id, owner)  # the steps before the end pass inside the one wait
        return job

    def get(self, job_id: str, owner: str) -> Job:
        job = self._owned(job_id, owner)
        if self.auto_advance and job.status not in TERMINAL:
            done = {s.status for s in job.steps}
            status, fields = next((s, f) for s, f in PIPELINE if s not in done)
            job = self.advance(job_id, status, **fields)
            if status == "SUCCEEDED":
                self.add_artifact(job_id, "stats.json", b'{"rows": 3}')
        return job

    def cancel(self, job_id: str, owner: str) -> Job:
        job = self._owned(job_id, owner)
        if job.status in TERMINAL:
            raise RequestError(f"job {job_id} already ended {job.status}", code="JOB_FINISHED",
                               http_status=409)
        return self.advance(job_id, "CANCELLED", failure_code="CANCELLED",
                            failure_message="the job owner cancelled the job")

    def add_artifact(self, job_id: str, name: str, data: bytes, media_type: str = "application/json") -> None:
        path = self.artifact_dir / job_id / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        art = Artifact(name, len(data), hashlib.sha256(data).hexdigest(), media_type)
        self.files.setdefault(job_id, {})[name] = (art, path)
        self.jobs[job_id] = dataclasses.replace(self.jobs[job_id], artifacts_expire_at=time.time() + 3600)

    def artifacts(self, job_id: str, owner: str) -> list[Artifact]:
        self._owned(job_id, owner)
        return [a for a, _ in self.files.get(job_id, {}).values()]

    def artifact_file(self, job_id: str, owner: str, name: str) -> tuple[Artifact, Path]:
        self._owned(job_id, owner)
        try:
            return self.files[job_id][name]
        except KeyError:
            raise NotFoundError(f"job {job_id} has no artifact {name!r}") from None

    def logs(self, job_id: str, owner: str) -> bytes:
        self._owned(job_id, owner)
        if not self.share_logs:
            err = RequestError("the operator does not share container logs", code="LOGS_DISABLED")
            err.http_status = 403
            raise err
        return b"hello from the container\n"

    def health(self) -> dict:
        return dict(self.health_report)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


@dataclass
class StoreBackedService(FakeService):
    """The fake's surface over a real JobStore: reads and the real service's long-poll go to the store.

    A test makes jobs with add_store_job and moves them with store.transition,
    as a worker would (from another thread); JobService.wait_for_change waits.
    """

    store: Any = None

    def _owned(self, job_id: str, owner: str) -> Job:
        job = self.store.get(job_id)
        if job is None or job.owner != owner:
            raise NotFoundError(f"no job {job_id}")
        return job

    async def wait_for_change(self, job_id: str, owner: str, known_status: str | None, timeout_s: float, *,
                              until_end: bool = False) -> Job:
        from engine.service import JobService

        self.waits.append((job_id, known_status, timeout_s, until_end))
        return await JobService.wait_for_change(self, job_id, owner, known_status,  # type: ignore[arg-type]
                                                timeout_s, until_end=until_end)

    def add_store_job(self, owner: str, nonce: int = 99) -> str:
        job, _ = self.store.create_or_get(owner, nonce, f"0x{nonce:02x}", instruction_id=1, refiner_id=2,
                                          query="SELECT 1", params=[], deadline=2_000_000_000)
        return job.id


@dataclass(frozen=True)
class FakeSettings:
    auth_window_s: float = 60.0
    deadline_max_s: float = 24 * 3600.0


def make_app(service: FakeService, clock: Any = time.time, settings: Any = None):
    from engine.api.app import create_app
    from engine.api.deps import EngineDomain

    app = create_app(settings or FakeSettings(), service, domain=EngineDomain(CHAIN_ID, REGISTRY), clock=clock)
    app.state.auditor = _no_instructions_auditor()
    return app


def _no_instructions_auditor() -> Any:
    """The real auditor over a chain that has no instructions (GET /instructions/{id}/inspect: 404)."""
    import tempfile

    from engine.errors import ChainCheckFailure
    from engine.instruction_audit import InstructionAuditor

    def read(instruction_id: int) -> tuple[str, str]:
        raise ChainCheckFailure(f"no compute instruction with id {instruction_id} on chain",
                                code="INSTRUCTION_NOT_FOUND")

    return InstructionAuditor(read, None, Path(tempfile.mkdtemp(prefix="fake-audits-")), max_expanded_bytes=1)


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run `app` under a real uvicorn on 127.0.0.1 (free port) in a thread; yield its base URL."""
    import uvicorn

    sock = loopback_listener()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()
