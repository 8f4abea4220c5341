"""Vana's compute-engine API beside ours: ``/job/{jobId}`` submit, status and artifact download.

The caller is whoever ``personal_sign``ed the on-chain job id (``x-job-id-signature``,
as Vana's client sends it on every call). Submit checks that signer against the
ComputeEngine's ``jobs(jobId).ownerAddress`` and the query signature against the
same owner, then creates the engine job through the service (engine/vana.py
builds the request). Reads find the engine job by (signer, the id's nonce): only
the owner who submitted has one, so a stranger gets 404 as on ``/jobs``.
Handlers are plain ``def``: the chain read and the store block (thread pool).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Header, Path, Request, Response, status
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from engine.api.deps import Clock, Config, Domain, Service
from engine.api.problems import PROBLEM_JSON
from engine.api.routers.jobs import _UNTRUSTED, _disposition
from engine.api.schemas import Problem
from engine.errors import NotFoundError, RequestError
from engine.store import SUCCEEDED, Job
from engine.vana import (
    VanaInput,
    build_request,
    read_compute_job,
    recover_personal,
    vana_digest,
    vana_nonce,
    vana_status,
)

__all__ = ["router"]

_PROBLEM = {"model": Problem, "content": {PROBLEM_JSON: {}}}
_ERRORS: dict[int | str, dict[str, Any]] = {401: _PROBLEM, 404: _PROBLEM, 422: _PROBLEM}

router = APIRouter(prefix="/job", tags=["vana"], responses={500: _PROBLEM})

# A uint below 2**255 (engine/vana.py's nonce space), in decimal as Vana's client sends it.
OnChainJobId = Annotated[str, Path(pattern=r"^[1-9][0-9]{0,75}$", description="the ComputeEngine job id")]
JobIdSignature = Annotated[str | None, Header(
    alias="x-job-id-signature", description="personal_sign of the job id's decimal text by its owner")]


class VanaInputBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, description="the SQL, exactly as signed")
    query_signature: str = Field(max_length=200, description="personal_sign of `query` by the job owner")
    refiner_id: int = Field(ge=1, le=2**63 - 1)
    params: list[Any] | dict[str, Any] | None = Field(default=None, description="optional SQL parameters")


class VanaJobCreate(BaseModel):
    input: VanaInputBody


class VanaArtifact(BaseModel):
    name: str
    url: str = Field(description="absolute download URL; send the same x-job-id-signature")
    size: int
    sha256: str
    media_type: str | None = None


class VanaJob(BaseModel):
    """The on-chain job's run, as Vana's client reads it (plus this engine's own status)."""

    job_id: str = Field(description="the ComputeEngine job id")
    run_id: str = Field(description="this engine's job id (also readable under /jobs with a signed read)")
    status: str = Field(description="pending, running, success, query_failed, failed or canceled")
    engine_status: str = Field(description="this engine's status (PENDING ... SUCCEEDED)")
    failure_code: str | None = None
    status_message: str | None = None
    artifacts: list[VanaArtifact] = Field(default_factory=list, description="filled once `success`")


def _public(request: Request, service: Any, job: Job, compute_job_id: str) -> VanaJob:
    artifacts: list[VanaArtifact] = []
    if job.status == SUCCEEDED and not job.artifacts_expired:
        base = str(request.base_url).rstrip("/")
        artifacts = [
            VanaArtifact(name=a.name, size=a.size, sha256=a.sha256, media_type=a.media_type,
                         url=f"{base}/job/{compute_job_id}/artifacts/{quote(a.name, safe='/')}")
            for a in service.artifacts(job.id, job.owner)
        ]
    return VanaJob(job_id=compute_job_id, run_id=job.id, status=vana_status(job), engine_status=job.status,
                   failure_code=job.failure_code, status_message=job.failure_message, artifacts=artifacts)


def _own_run(service: Any, job_id: str, signature: str | None) -> Job:
    """The engine job the signer of `signature` created for on-chain job `job_id`; 404 otherwise."""
    caller = recover_personal(job_id, signature, "x-job-id-signature")
    job = service.store.find(caller, vana_nonce(int(job_id)))
    if job is None:
        raise NotFoundError(f"no job {job_id}")
    return job


@router.post(
    "/{job_id}",
    status_code=status.HTTP_201_CREATED,
    response_model=VanaJob,
    summary="Vana: run the query for an on-chain ComputeEngine job",
    responses={200: {"model": VanaJob, "description": "replay: this on-chain job's run"},
               **_ERRORS, 400: _PROBLEM, 403: _PROBLEM, 409: _PROBLEM, 503: _PROBLEM},
)
def submit_vana_job(
    job_id: OnChainJobId,
    body: VanaJobCreate,
    request: Request,
    response: Response,
    service: Service,
    domain: Domain,
    config: Config,
    clock: Clock,
    x_job_id_signature: JobIdSignature = None,
) -> VanaJob:
    """201 with the new run; 200 with the same run when this on-chain job was submitted before."""
    caller = recover_personal(job_id, x_job_id_signature, "x-job-id-signature")
    compute_job = read_compute_job(request.app.state.compute_jobs, int(job_id))
    payload = body.input
    # No deadline in Vana's scheme: the engine's own window, outside the idempotency digest.
    deadline = int(clock()) + int(config.deadline_max_s)
    req = build_request(compute_job, caller,
                        VanaInput(payload.query, payload.query_signature, payload.refiner_id, payload.params),
                        deadline)
    try:
        # No preflight: on Vana's API a refused query is a run that reads `query_failed`.
        job, created = service.submit(req, caller, vana_digest(domain.chain_id, compute_job.id, req),
                                      preflight=False)
    except RequestError as exc:
        if exc.code != "NONCE_REUSED":
            raise
        raise RequestError(f"compute job {job_id} already ran another query; submit a new on-chain job",
                           code="COMPUTE_JOB_USED", http_status=409) from exc
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/job/{job_id}"
    return _public(request, service, job, job_id)


@router.get("/{job_id}", response_model=VanaJob, summary="Vana: the on-chain job's run and artifacts",
            responses=_ERRORS)
def get_vana_job(job_id: OnChainJobId, request: Request, service: Service,
                 x_job_id_signature: JobIdSignature = None) -> VanaJob:
    return _public(request, service, _own_run(service, job_id, x_job_id_signature), job_id)


@router.get(
    "/{job_id}/artifacts/{name:path}",
    summary="Vana: download one artifact of the on-chain job's run",
    response_class=FileResponse,
    responses={**_ERRORS, 410: _PROBLEM, 200: {
        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        "description": "the file; X-Content-SHA256 carries its hash"}},
)
def download_vana_artifact(job_id: OnChainJobId, name: str, service: Service,
                           x_job_id_signature: JobIdSignature = None) -> FileResponse:
    job = _own_run(service, job_id, x_job_id_signature)
    artifact, path = service.artifact_file(job.id, job.owner, name)
    headers = {"Content-Disposition": _disposition(artifact.name), "X-Content-SHA256": artifact.sha256,
               **_UNTRUSTED}
    return FileResponse(path, media_type=artifact.media_type or "application/octet-stream", headers=headers)
