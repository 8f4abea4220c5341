"""Vana's compute-job scheme, translated into this engine's terms (no HTTP here).

Vana's client (vana-com/data-access-demo) creates and funds a job on the
ComputeEngine contract, then proves it owns it with a ``personal_sign`` of the
job id's decimal text (``x-job-id-signature``) and signs the SQL text with the
same wallet (``query_signature``). This module checks both signatures against
the on-chain job's owner and builds the ``JobRequest`` the job service runs:
instruction from the on-chain job, ``compute_job_id`` = the on-chain id, and a
nonce and idempotency digest derived from that id, so one on-chain job is at
most one engine job (a replay finds it again; another query is refused).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak, to_checksum_address

from engine.errors import AuthError, EngineError, RequestError
from engine.store import CANCELLED, FAILED, PENDING, QUERYING, SUCCEEDED, Job
from registry_client.eip712 import JobRequest
from registry_client.errors import InputError, RegistryError
from registry_client.payments import ComputeJob

__all__ = [
    "MAX_VANA_JOB_ID",
    "VANA_NONCE_BASE",
    "ComputeJobReader",
    "VanaInput",
    "build_request",
    "read_compute_job",
    "reader_for",
    "recover_personal",
    "recover_personal_key",
    "vana_digest",
    "vana_nonce",
    "vana_status",
]

# Engine nonces of Vana jobs: 2**255 + the on-chain id, far from the small
# nonces EIP-712 clients pick, so the (owner, nonce) key names the on-chain job.
VANA_NONCE_BASE = 2**255
MAX_VANA_JOB_ID = 2**255 - 1

# A reader of ComputeEngine.jobs(id): None when no such job; RegistryError when the chain fails.
ComputeJobReader = Callable[[int], "ComputeJob | None"]


@dataclass(frozen=True)
class VanaInput:
    """The `input` object of Vana's `POST /job/{id}` body."""

    query: str
    query_signature: str
    refiner_id: int
    params: list | dict | None = None


def recover_personal(text: str, signature: str | None, what: str) -> str:
    """The checksum address that ``personal_sign``ed `text`; AuthError when absent or malformed."""
    if not signature:
        raise AuthError(f"{what} is required", code="AUTH_REQUIRED")
    try:
        return to_checksum_address(Account.recover_message(encode_defunct(text=text), signature=signature))
    except Exception as exc:  # eth_account raises several types for malformed bytes
        raise AuthError(f"{what} is not a valid signature", code="BAD_SIGNATURE") from exc


def recover_personal_key(text: str, signature: str) -> str:
    """The 64-byte public key (0x hex) behind a ``personal_sign`` that `recover_personal` accepted."""
    from eth_account._utils.signing import to_standard_signature_bytes
    from eth_account.messages import _hash_eip191_message
    from eth_keys import keys

    raw = to_standard_signature_bytes(bytes.fromhex(signature.removeprefix("0x")))
    digest = _hash_eip191_message(encode_defunct(text=text))
    return "0x" + keys.Signature(raw).recover_public_key_from_msg_hash(digest).to_bytes().hex()


def vana_nonce(compute_job_id: int) -> int:
    return VANA_NONCE_BASE + compute_job_id


def vana_status(job: Job) -> str:
    """Vana's status string for one of ours: pending, running, success, query_failed, failed, canceled."""
    if job.status == SUCCEEDED:
        return "success"
    if job.status == CANCELLED:
        return "canceled"
    if job.status == FAILED:
        steps = [s.status for s in job.steps if s.status not in (FAILED, CANCELLED)]
        return "query_failed" if steps and steps[-1] == QUERYING else "failed"
    return "pending" if job.status == PENDING else "running"


def vana_digest(chain_id: int, compute_job_id: int, request: JobRequest) -> str:
    """The idempotency key: what the on-chain job asked for, not when (no deadline in it)."""
    text = json.dumps({"scheme": "vana-job-v1", "chainId": chain_id, "computeJobId": compute_job_id,
                       "instructionId": request.instruction_id, "refinerId": request.refiner_id,
                       "query": request.query, "params": request.params_json},
                      sort_keys=True, separators=(",", ":"))
    return "0x" + keccak(text=text).hex()


def read_compute_job(reader: ComputeJobReader | None, compute_job_id: int) -> ComputeJob:
    """The on-chain job; 404 COMPUTE_JOB_NOT_FOUND, or 503 CHAIN_UNAVAILABLE when the chain fails."""
    if reader is None:
        raise EngineError("this engine cannot read the ComputeEngine contract", code="CHAIN_UNAVAILABLE",
                          http_status=503)
    try:
        job = reader(compute_job_id)
    except RegistryError as exc:
        raise EngineError(f"cannot read compute job {compute_job_id}: the chain call failed ({exc.code})",
                          code="CHAIN_UNAVAILABLE", http_status=503) from exc
    if job is None:
        raise RequestError(f"no compute job {compute_job_id} on chain", code="COMPUTE_JOB_NOT_FOUND",
                           http_status=404)
    return job


def build_request(compute_job: ComputeJob, caller: str, body: VanaInput, deadline: int) -> JobRequest:
    """The JobRequest for `compute_job`, once the caller and the query's signer are its owner."""
    owner = to_checksum_address(compute_job.owner)
    if caller != owner:
        raise AuthError(f"compute job {compute_job.id} is not owned by the x-job-id-signature's signer",
                        code="COMPUTE_JOB_NOT_OWNED", http_status=403)
    if recover_personal(body.query, body.query_signature, "query_signature") != owner:
        raise AuthError("query_signature is not the compute job owner's signature of the query",
                        code="QUERY_SIGNATURE_MISMATCH", http_status=403)
    try:
        return JobRequest.create(compute_job.instruction_id, body.refiner_id, body.query, body.params,
                                 vana_nonce(compute_job.id), deadline, compute_job.id)
    except InputError as exc:
        raise RequestError(str(exc), code="INVALID_REQUEST") from exc


def reader_for(service: Any) -> ComputeJobReader | None:
    """ComputeEngine.jobs through the service's chain connection (None: it has none, e.g. a fake)."""
    registries = getattr(getattr(service, "chain", None), "registries", None)
    if registries is None:
        return None
    from registry_client.payments import Payments

    payments = Payments(registries)

    def read(compute_job_id: int) -> ComputeJob | None:
        try:
            return payments.job(compute_job_id)
        except RegistryError as exc:
            if type(exc) is RegistryError:  # "no compute job with id": the only plain one job() raises
                return None
            raise

    return read

