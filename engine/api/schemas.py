"""Request and response models of the API (one family per entity).

The submit body keeps the EIP-712 field names (camelCase, exactly what was
signed); every response is snake_case. Wei amounts are decimal strings (they
overflow JavaScript numbers); times are unix seconds (float).
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from registry_client.eip712 import UINT256_MAX

__all__ = [
    "ArtifactList",
    "ArtifactPublic",
    "AttestationPublic",
    "CheckPublic",
    "ColumnPublic",
    "FailurePublic",
    "HealthPublic",
    "JobCreate",
    "JobList",
    "JobPublic",
    "JobRequestBody",
    "Problem",
    "ProgressPublic",
    "QuotePublic",
    "SchemaPublic",
    "SkippedOutputPublic",
    "SkippedOutputsPublic",
    "StepPublic",
    "TablePublic",
]



def _uint(minimum: int) -> Any:
    """An int in [minimum, 2**256-1]. FastAPI's OpenAPI models store bounds as floats
    (1.157920892373162e+77, which rounds past 2**256-1); engine/api/docs.py writes
    them back as exact JSON integers."""
    return Annotated[int, Field(ge=minimum, le=UINT256_MAX)]


Uint256 = _uint(0)
PositiveUint256 = _uint(1)
_ADDRESS = r"^0x[0-9a-fA-F]{40}$"
# The hard ceiling of the text fields; the OpenAPI document shows the engine's own
# (settings.query_max_chars / params_max_chars, engine/api/docs.py), which the service enforces.
TEXT_MAX_CHARS = 1_000_000


class JobRequestBody(BaseModel):
    """The signed EIP-712 `JobRequest` message, field for field."""

    model_config = ConfigDict(extra="forbid")

    instructionId: PositiveUint256 = Field(examples=[1])
    refinerId: PositiveUint256 = Field(examples=[1])
    query: str = Field(min_length=1, max_length=TEXT_MAX_CHARS,
                       examples=["SELECT locale, count(*) FROM users GROUP BY locale"])
    # min_length 1: "" is not JSON, so the runtime could only refuse it; `null` means no params.
    params: str = Field(min_length=1, max_length=TEXT_MAX_CHARS, examples=["[]"],
                        description="canonical JSON text of the query params: a list, an object or null")
    nonce: Uint256
    deadline: Uint256 = Field(description="unix seconds")
    computeJobId: Uint256 = Field(0, description="the signer's on-chain ComputeEngine job that pays the "
                                  "query's price (`registry job submit` creates it); 0 = a free job")


class JobCreate(BaseModel):
    """Submit body: the request, its signature and (optionally) the stated domain and signer."""

    model_config = ConfigDict(extra="forbid")

    request: JobRequestBody
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]{130}$", description="65-byte EIP-712 signature")
    signer: str | None = Field(default=None, pattern=_ADDRESS, description="the wallet that signed")
    chainId: Uint256 | None = None
    verifyingContract: str | None = Field(default=None, pattern=_ADDRESS)


class StepPublic(BaseModel):
    status: str
    at: float


class FailurePublic(BaseModel):
    code: str
    message: str


class AttestationPublic(BaseModel):
    """The engine's EIP-712 `JobResult` signature over a SUCCEEDED job (docs/api.md: verifying)."""

    signer: str = Field(description="the engine's address (what the signature recovers to)")
    signature: str = Field(description="65-byte EIP-712 signature, 0x hex")
    artifacts_digest: str = Field(description="sha256 over the sorted `name\\tsha256\\n` lines, 0x hex")
    finished_at: int = Field(description="unix seconds, as signed (`finishedAt`)")


def _price_str(value: Any) -> str | None:
    return None if value is None else str(value)


class SkippedOutputPublic(BaseModel):
    name: str = Field(description="escaped, printable-ASCII repr of the entry's path, shortened")
    reason: str


class SkippedOutputsPublic(BaseModel):
    count: int = Field(description="how many entries were skipped (only the first 100 are listed)")
    entries: list[SkippedOutputPublic]


class PaymentPublic(BaseModel):
    """The charge of a priced job (engine/payment.py), once decided."""

    compute_job_id: str
    amount: str = Field(description="the price, in the token's smallest unit")
    token: str | None = Field(description="the ERC-20 paid in; null = the native token")
    charged: bool = Field(description="true: this run requested the payment now")
    decision: str = Field(description="charge | prepaid (an earlier failed run of yours paid) | free")


class ProgressPublic(BaseModel):
    """How far the current step is: a download's bytes (FETCHING) or the run's elapsed time (RUNNING)."""

    bytes: int | None = Field(default=None, description="FETCHING: bytes received so far")
    total: int | None = Field(default=None, description="FETCHING: the announced size; null: unknown")
    elapsed_s: float | None = Field(default=None, description="RUNNING: seconds since the container started")


def _progress(job: Any, now: float) -> ProgressPublic | None:
    """Derived at read time: the store keeps only the download's last throttled report."""
    if job.status == "FETCHING" and isinstance(getattr(job, "progress", None), dict):
        return ProgressPublic(bytes=job.progress.get("bytes"), total=job.progress.get("total"))
    if job.status == "RUNNING" and job.steps:
        return ProgressPublic(elapsed_s=round(max(0.0, now - job.steps[-1].at), 3))
    return None


class JobList(BaseModel):
    """GET /jobs: one page of the owner's jobs, newest first."""

    jobs: list[JobPublic]
    next_cursor: str | None = Field(default=None, description="pass as `cursor` for the next page; null: last")


class QuotePublic(BaseModel):
    """POST /jobs/quote: what the job would read and cost; nothing fetched or run."""

    price_wei: str
    token: str | None = Field(default=None, description="the price's ERC-20 token; null: the native token")
    access_report: dict[str, Any] = Field(description="as the job's access_report; row_count null (not run)")
    compute_job_id_required: bool = Field(description="the price must be paid from an on-chain compute job")
    instruction_approved: bool = True
    refiner_id: int
    dlp_id: int
    block_number: int = Field(description="the block the chain was read at")


class ColumnPublic(BaseModel):
    name: str
    type: str = Field(description="the declared SQLite type ('' when none)")
    covered: bool = Field(description="the caller's on-chain permissions cover reading it")
    price_wei: str | None = Field(default=None, description="what a query reading only it costs; null: not covered")


class TablePublic(BaseModel):
    name: str
    columns: list[ColumnPublic]


class SchemaPublic(BaseModel):
    """GET /refiners/{id}/schema: the data the engine holds for a refiner, as the caller may read it."""

    refiner_id: int
    tables: list[TablePublic]


class JobPublic(BaseModel):
    """A job as its owner sees it."""

    id: str
    owner: str
    status: str
    steps: list[StepPublic]
    instruction_id: int
    refiner_id: int
    nonce: str
    block_number: int | None = None
    dlp_id: int | None = None
    image_sha256: str | None = None
    image_id: str | None = None
    access_report: dict[str, Any] | None = None
    price_wei: str | None = None
    compute_job_id: str = Field("0", description="the on-chain ComputeEngine job paying the price; 0 = free")
    payment: PaymentPublic | None = Field(
        default=None, description="what the engine charged before the run; null: not charged (yet)")
    exit_code: int | None = None
    failure: FailurePublic | None = None
    created_at: float
    updated_at: float | None = None
    finished_at: float | None = None
    artifacts_expire_at: float | None = None
    attestation: AttestationPublic | None = Field(
        default=None, description="null unless SUCCEEDED on an engine with a signing key")
    skipped_outputs: SkippedOutputsPublic | None = Field(
        default=None, description="output entries that are not artifacts, and why; null: none")
    progress: ProgressPublic | None = Field(
        default=None, description="FETCHING: bytes downloaded of total; RUNNING: seconds elapsed; else null")

    @classmethod
    def from_job(cls, job: Any) -> JobPublic:
        """Build from an `engine.store.Job` (duck-typed, so tests can pass fakes)."""
        report = getattr(job, "access_report", None)
        if isinstance(report, dict) and "price" in report:
            report = {**report, "price": _price_str(report["price"])}
        failure = None
        if getattr(job, "failure_code", None):
            failure = FailurePublic(code=job.failure_code, message=job.failure_message or "")
        return cls(
            id=job.id,
            owner=job.owner,
            status=job.status,
            steps=[StepPublic(status=s.status, at=s.at) for s in job.steps],
            instruction_id=job.instruction_id,
            refiner_id=job.refiner_id,
            nonce=str(job.nonce),
            block_number=job.block_number,
            dlp_id=job.dlp_id,
            image_sha256=job.image_sha256,
            image_id=job.image_id,
            access_report=report,
            price_wei=_price_str(job.price_wei),
            compute_job_id=str(getattr(job, "compute_job_id", 0)),
            payment=getattr(job, "payment", None),
            exit_code=job.exit_code,
            failure=failure,
            created_at=job.created_at,
            updated_at=getattr(job, "updated_at", None),
            finished_at=job.finished_at,
            artifacts_expire_at=job.artifacts_expire_at,
            attestation=getattr(job, "attestation", None),
            skipped_outputs=getattr(job, "skipped_outputs", None),
            progress=_progress(job, time.time()),
        )


class ArtifactPublic(BaseModel):
    name: str = Field(description="posix path relative to the job's /mnt/output")
    size: int
    sha256: str
    media_type: str = Field(description="guessed from the name's extension (Python `mimetypes`), "
                            "`application/octet-stream` when unknown; the download's Content-Type")
    url: str = Field(description="download path (signed read)")


class ArtifactList(BaseModel):
    job_id: str
    artifacts: list[ArtifactPublic]
    expires_at: float | None = None


class CheckPublic(BaseModel):
    ok: bool
    detail: str | None = None


class HealthPublic(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, CheckPublic]
    queue: dict[str, int] | None = Field(default=None, description="waiting, capacity, running, workers")
    engine_address: str | None = Field(default=None, description="the key attestations recover to; null: none")


class Problem(BaseModel):
    """RFC 9457 problem details, as every error is answered."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str
