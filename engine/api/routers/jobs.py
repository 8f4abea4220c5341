"""The /jobs resource: submit (signed request), read, cancel, artifacts, zip, logs.

Every route but submit needs a signed read (``CurrentWallet``); the service
answers 404 for a job the wallet does not own exactly as for a missing one.
Handlers are plain ``def``: FastAPI runs them in its thread pool, so the
service's blocking SQLite and file work never stalls the event loop. The one
exception is the read with a long-poll (until the status changes, or with
``until=end`` until the job ends): it is ``async`` and awaits the store's
change notification, so a waiting client holds no thread (a thread pool full
of waiters would starve /health and submit).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import IO, Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Header, Path, Query, Response, status
from fastapi.responses import FileResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from engine.api.deps import Config, CurrentWallet, Domain, Service, Waiters
from engine.api.limits import json_too_deep
from engine.api.problems import PROBLEM_JSON
from engine.api.schemas import (
    ArtifactList,
    ArtifactPublic,
    JobCreate,
    JobList,
    JobPublic,
    Problem,
    QuotePublic,
)
from engine.auth import verify_job_submission
from engine.errors import JobFailure, RequestError
from engine.recipients import is_recipient
from engine.store import STATUSES
from registry_client.eip712 import recover_job_signer_key
from registry_client.sealing import MAGIC

__all__ = ["router"]

_PROBLEM = {"model": Problem, "content": {PROBLEM_JSON: {}}}
_READ_ERRORS: dict[int | str, dict[str, Any]] = {401: _PROBLEM, 404: _PROBLEM, 422: _PROBLEM}

router = APIRouter(prefix="/jobs", tags=["jobs"], responses={500: _PROBLEM})

MAX_WAIT_S = 30.0  # a long-poll holds a socket (no thread); settings bound how many per wallet
JobId = Annotated[str, Path(min_length=1, max_length=128, description="job id")]
_CHUNK = 1024 * 1024
_SPOOL_MAX = 16 * 1024 * 1024
SEALED_MEDIA_TYPE = "application/vnd.c2d.sealed"  # registry_client/sealing.py's format
# Untrusted bytes from a builder's container: never let a browser render them as ours.
_UNTRUSTED = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=JobPublic,
    summary="Submit a signed job request",
    responses={200: {"model": JobPublic, "description": "replay: the job this request already created"},
               400: _PROBLEM, 401: _PROBLEM, 409: _PROBLEM, 413: _PROBLEM, 422: _PROBLEM, 503: _PROBLEM},
)
def submit_job(
    body: JobCreate,
    response: Response,
    service: Service,
    domain: Domain,
    config: Config,
    x_wallet_address: Annotated[str | None, Header(description="the signer, if not in the body")] = None,
) -> JobPublic:
    """201 with a new job; 200 with the same job when this signed request was sent before.

    Whatever POST /jobs/quote refuses is refused here too, before the job exists
    (422 with the code the job would have failed with; the nonce stays unused).
    """
    req, signer, digest = _verified(body, domain, config, x_wallet_address)
    signer_key = recover_job_signer_key(domain.chain_id, domain.registry, req, body.signature)
    job, created = service.submit(req, signer, digest, signer_key)  # results sealed to the recipient
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/jobs/{job.id}"
    return JobPublic.from_job(job)


def _verified(body: JobCreate, domain: Any, config: Any, claimed: str | None) -> tuple[Any, str, str]:
    if json_too_deep(body.request.params, config.limits.max_json_depth):
        # Refused before json.loads (a C recursion) ever sees it.
        raise RequestError(f"params nests deeper than {config.limits.max_json_depth} levels",
                           code="JSON_TOO_DEEP")
    # The deadline is judged by the one rule in engine/submission.py (submit and quote both apply it).
    return verify_job_submission(body.model_dump(exclude_none=True), domain.chain_id, domain.registry,
                                 claimed_signer=claimed)


@router.post(
    "/quote",
    response_model=QuotePublic,
    summary="Quote a signed job request: its access report and price, or its refusal",
    responses={400: _PROBLEM, 401: _PROBLEM, 413: _PROBLEM, 422: _PROBLEM, 503: _PROBLEM},
)
def quote_job(
    body: JobCreate,
    service: Service,
    domain: Domain,
    config: Config,
    x_wallet_address: Annotated[str | None, Header(description="the signer, if not in the body")] = None,
) -> QuotePublic:
    """Signed exactly like POST /jobs; fetches and runs nothing, and does not use the nonce."""
    req, signer, _ = _verified(body, domain, config, x_wallet_address)
    preflight = service.preflight
    if preflight is None:
        raise RequestError("this engine cannot quote jobs", code="QUOTE_UNAVAILABLE", http_status=503)
    try:
        quote = preflight.quote(req, signer)
    except JobFailure as exc:
        if exc.code in ("CHAIN_UNAVAILABLE", "INTERNAL_ERROR"):
            exc.http_status = 503  # the engine's trouble, not the request's: retry
        raise
    return QuotePublic(**quote.public())


def _encode_cursor(job: Any) -> str:
    raw = json.dumps([job.created_at, job.id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        created_at, job_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(created_at, (int, float)) and isinstance(job_id, str):
            return float(created_at), job_id
    except (ValueError, TypeError):
        pass
    raise RequestError("the cursor is not one this engine gave out", code="INVALID_CURSOR")


@router.get("", response_model=JobList, summary="List the wallet's jobs, newest first",
            responses={400: _PROBLEM, 401: _PROBLEM, 422: _PROBLEM})
def list_jobs(
    wallet: CurrentWallet,
    service: Service,
    status_: Annotated[str | None, Query(alias="status", max_length=32,
                                         description="only jobs in this status")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="jobs per page")] = 20,
    cursor: Annotated[str | None, Query(max_length=256, description="next_cursor of the previous page")] = None,
) -> JobList:
    if status_ is not None and status_ not in STATUSES:
        raise RequestError(f"unknown status {status_!r}; one of {', '.join(STATUSES)}", code="INVALID_REQUEST")
    before = _decode_cursor(cursor) if cursor else None
    jobs = service.store.page_by_owner(wallet, status=status_, limit=limit + 1, before=before)
    page = jobs[:limit]
    more = len(jobs) > limit
    return JobList(jobs=[JobPublic.from_job(j) for j in page], next_cursor=_encode_cursor(page[-1]) if more else None)


@router.get("/{job_id}", response_model=JobPublic, summary="Read a job",
            responses={**_READ_ERRORS, 429: _PROBLEM})
async def get_job(
    job_id: JobId,
    wallet: CurrentWallet,
    service: Service,
    waiters: Waiters,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S, description="long-poll: seconds to wait "
                                 "(for what `until` names) before answering")] = 0,
    known_status: Annotated[str | None, Query(alias="status", max_length=32,
                                              description="the status the caller last saw")] = None,
    until: Annotated[Literal["change", "end"], Query(
        description="what ends a long-poll: `change` (the status leaves `status`, which is then needed) "
                    "or `end` (the job finished: SUCCEEDED, FAILED or CANCELLED; `status` is optional)")
    ] = "change",
) -> JobPublic:
    """The job, its steps with timestamps, and on failure its code.

    With `?status=RUNNING&wait=20` the engine answers as soon as the job leaves
    RUNNING (or after 20 s): one request per step instead of a polling loop.
    With `?until=end&wait=20` it answers once the job has finished (or after
    20 s): one request for the whole job when the steps in between do not matter.
    A wallet may hold `api_max_waiters_per_owner` such requests at once (429 past it).
    """
    until_end = until == "end"
    if wait > 0 and (known_status or until_end):
        with waiters.hold(wallet):
            job = await service.wait_for_change(job_id, wallet, known_status, wait, until_end=until_end)
    else:
        job = await run_in_threadpool(service.get, job_id, wallet)
    return JobPublic.from_job(job)


@router.post(
    "/{job_id}/cancel",
    response_model=JobPublic,
    summary="Cancel an unfinished job",
    responses={**_READ_ERRORS, 409: _PROBLEM},
)
def cancel_job(job_id: JobId, wallet: CurrentWallet, service: Service) -> JobPublic:
    return JobPublic.from_job(service.cancel(job_id, wallet))


def _artifact_url(job_id: str, name: str) -> str:
    return f"/jobs/{quote(job_id, safe='')}/artifacts/{quote(name, safe='/')}"


@router.get("/{job_id}/artifacts", response_model=ArtifactList, summary="List artifacts",
            responses={**_READ_ERRORS, 410: _PROBLEM})
def list_artifacts(job_id: JobId, wallet: CurrentWallet, service: Service) -> ArtifactList:
    job = service.get(job_id, wallet)
    opens = is_recipient(job, wallet)  # a submitter of someone else's job: names and sizes only
    items = [
        ArtifactPublic(name=a.name, size=a.size, sha256=a.sha256 if opens else None, media_type=a.media_type,
                       sealed_size=a.sealed_size, sealed_sha256=a.sealed_sha256 if opens else None,
                       url=_artifact_url(job.id, a.name))
        for a in service.artifacts(job_id, wallet)
    ]
    return ArtifactList(job_id=job.id, artifacts=items, expires_at=job.artifacts_expire_at)


def _safe_filename(name: str) -> str:
    base = PurePosixPath(name).name or "artifact"
    ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".") or "artifact"
    return ascii_name[:200]


def _disposition(name: str) -> str:
    base = PurePosixPath(name).name or "artifact"
    return f"attachment; filename=\"{_safe_filename(name)}\"; filename*=UTF-8''{quote(base, safe='')}"


@router.get(
    "/{job_id}/artifacts.zip",
    summary="Download every artifact as one zip",
    response_class=StreamingResponse,
    responses={**_READ_ERRORS, 410: _PROBLEM, 200: {"content": {"application/zip": {}}}},
)
def download_zip(job_id: JobId, wallet: CurrentWallet, service: Service) -> StreamingResponse:
    spool = _zip_artifacts(job_id, wallet, service)
    size = spool.seek(0, 2)
    spool.seek(0)
    headers = {
        "Content-Disposition": _disposition(f"job-{job_id}-artifacts.zip"),
        "Content-Length": str(size),
        **_UNTRUSTED,
    }
    return StreamingResponse(_stream_and_close(spool), media_type="application/zip", headers=headers)


def _zip_artifacts(job_id: str, wallet: str, service: Any) -> IO[bytes]:
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MAX)  # noqa: SIM115 - handed to the response, closed there
    try:
        with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for artifact in service.artifacts(job_id, wallet):
                _, path = service.artifact_file(job_id, wallet, artifact.name)
                with open(path, "rb") as src, zf.open(artifact.name, "w", force_zip64=True) as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
    except BaseException:
        spool.close()
        raise
    return spool


def _stream_and_close(fh: IO[bytes]) -> Iterator[bytes]:
    try:
        while chunk := fh.read(_CHUNK):
            yield chunk
    finally:
        fh.close()


@router.get(
    "/{job_id}/artifacts/{name:path}",
    summary="Download one artifact",
    response_class=FileResponse,
    responses={**_READ_ERRORS, 410: _PROBLEM, 200: {
        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        "description": "the file, as the artifact list's `media_type` says: guessed from the name's "
                       "extension (e.g. `application/json`, `text/csv`, `image/png`), "
                       "`application/octet-stream` when unknown. X-Content-SHA256 carries its hash"}},
)
def download_artifact(job_id: JobId, name: str, wallet: CurrentWallet, service: Service) -> FileResponse:
    artifact, path = service.artifact_file(job_id, wallet, name)
    headers = {
        "Content-Disposition": _disposition(artifact.name),
        "X-Content-SHA256": artifact.sealed_sha256 or artifact.sha256,  # of the bytes sent
        **_UNTRUSTED,
    }
    if artifact.sealed_sha256 is not None:  # ciphertext: the client opens it with the recipient's wallet
        headers["X-Plaintext-SHA256"] = artifact.sha256
        return FileResponse(path, media_type=SEALED_MEDIA_TYPE, headers=headers)
    return FileResponse(path, media_type=artifact.media_type or "application/octet-stream", headers=headers)


@router.get(
    "/{job_id}/logs",
    summary="Container logs (only where the operator shares them)",
    response_class=Response,
    responses={**_READ_ERRORS, 403: _PROBLEM, 200: {"content": {"text/plain": {}}}},
)
def get_logs(job_id: JobId, wallet: CurrentWallet, service: Service) -> Response:
    logs = service.logs(job_id, wallet)
    sealed = logs.startswith(MAGIC)  # kept logs are sealed to the recipient on sealed jobs
    return Response(logs, media_type=SEALED_MEDIA_TYPE if sealed else "text/plain; charset=utf-8",
                    headers=dict(_UNTRUSTED))
