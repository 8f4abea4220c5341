"""What a job row is, in either store: statuses, the Job record, its columns and their encoding.

SQLite (engine/store.py) and PostgreSQL (engine/store_postgres.py) keep the
same columns with the same text encodings (JSON as text, uint256 as decimal
text), so one mapping turns a row of either into a Job.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine.errors import EngineError, RequestError

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
RECORDABLE = frozenset(
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
_JSON_FIELDS = ("access_report", "attestation", "skipped_outputs", "payment")

JOBS_SCHEMA: dict[str, type] = {
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
    "lease_owner": str,  # the engine id that claimed the job; null = unclaimed
    "lease_expires_at": float,  # unix seconds; past it any engine may reconcile the job
    "cancel_requested": int,  # 1 = the owner asked; the engine running it stops it
    "progress": str,  # JSON {"bytes", "total"} while FETCHING (set_progress, throttled by the caller)
}
# Columns added after the first release: an older store gains them on open (old rows keep null/0).
ADDED_COLUMNS = ("attestation", "skipped_outputs", "compute_job_id", "payment",
                 "lease_owner", "lease_expires_at", "cancel_requested", "progress")
ZERO_DEFAULTS = ("artifacts_expired", "cancel_requested")


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
    lease_owner: str | None = None  # the engine that claimed it
    lease_expires_at: float | None = None
    cancel_requested: bool = False
    progress: dict | None = None  # the download's {"bytes", "total"} (engine.fetch.FetchProgress)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


def new_job_id() -> str:
    """128 random bits as hex: unguessable, so ids leak nothing about other jobs."""
    return secrets.token_hex(16)


def nonce_reused(owner: str, nonce: int) -> RequestError:
    return RequestError(
        f"nonce {nonce} was already used by {owner} for a different request; "
        "sign the new request with a fresh nonce",
        code="NONCE_REUSED",
        http_status=409,
    )


def _opt_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def row_to_job(row: dict[str, Any]) -> Job:
    return Job(
        id=row["id"],
        owner=row["owner"],
        nonce=int(row["nonce"]),
        request_digest=row["request_digest"],
        instruction_id=row["instruction_id"],
        refiner_id=row["refiner_id"],
        query=row["query"],
        params=_opt_json(row["params"]),
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
        access_report=_opt_json(row["access_report"]),
        price_wei=None if row["price_wei"] is None else int(row["price_wei"]),
        exit_code=row["exit_code"],
        artifacts_expire_at=row["artifacts_expire_at"],
        artifacts_expired=bool(row["artifacts_expired"]),
        attestation=_opt_json(row.get("attestation")),
        skipped_outputs=_opt_json(row.get("skipped_outputs")),
        compute_job_id=int(row.get("compute_job_id") or 0),
        payment=_opt_json(row.get("payment")),
        lease_owner=row.get("lease_owner"),
        lease_expires_at=row.get("lease_expires_at"),
        cancel_requested=bool(row.get("cancel_requested")),
        progress=_opt_json(row.get("progress")),
    )


def encode_field(name: str, value: Any) -> Any:
    if name not in RECORDABLE:
        raise ValueError(f"{name!r} cannot be set by a transition")
    if value is None:
        return None
    if name in _JSON_FIELDS:
        return json.dumps(value, sort_keys=True)
    if name == "price_wei":
        return str(int(value))
    return value


def new_row(job_id: str, owner: str, nonce: int, digest: str, fields: dict[str, Any], now: float) -> dict[str, Any]:
    """The row create_or_get inserts (owner already checksummed)."""
    return {
        "id": job_id,
        "owner": owner,
        "nonce": str(nonce),
        "request_digest": digest,
        "instruction_id": fields["instruction_id"],
        "refiner_id": fields["refiner_id"],
        "query": fields["query"],
        "params": json.dumps(fields["params"]),
        "deadline": fields["deadline"],
        "compute_job_id": str(fields.get("compute_job_id", 0)),
        "status": PENDING,
        "created_at": now,
        "updated_at": now,
        "steps": json.dumps([[PENDING, now]]),
        "artifacts_expired": 0,
        "cancel_requested": 0,
    }
