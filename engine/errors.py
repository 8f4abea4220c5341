"""Domain errors of the compute engine, each with a stable code.

Hierarchy::

    EngineError                 code, message, http_status, job_id
    ├── RequestError            the caller's request is wrong (400/401/404/409); BAD_REQUEST,
    │   │                       DATA_INVALID, DATA_EXISTS (engine/data.py), API_ERROR_CODES
    │   ├── AuthError           bad/expired signature, wrong chain or contract
    │   └── NotFoundError       no such job for this caller (also for strangers)
    ├── AuditError              an image audit the engine cannot answer (engine/instruction_audit.py):
    │                           INSTRUCTION_NOT_FOUND, IMAGE_FETCH_FAILED, AUDIT_BUSY... (API_ERROR_CODES)
    ├── SettingsError           CONFIG_INVALID: unreadable or unsafe settings (engine/settings.py)
    ├── StaleState              STALE_STATE: a transition lost a race (engine/store.py)
    └── JobFailure              a job step failed; the job ends FAILED with `code`
        ├── ChainCheckFailure   NOT_APPROVED, PERMISSION_DENIED, NOT_FOUND...
        ├── FetchFailure        FETCH_FAILED, CHECKSUM_MISMATCH, IMAGE_TOO_LARGE
        ├── ImageFailure        IMAGE_INVALID, IMAGE_TOO_LARGE (what the archive unpacks to)
        ├── QueryFailure        QUERY_INVALID, PERMISSION_DENIED, ROW_LIMIT, QUERY_TIMEOUT, RESULT_TOO_LARGE,
        │                       QUERY_OUT_OF_MEMORY
        ├── PaymentFailure      INSUFFICIENT_BALANCE, PAYMENT_REQUIRED, COMPUTE_JOB_NOT_FOUND,
        │                       COMPUTE_JOB_NOT_OWNED, COMPUTE_JOB_INVALID, COMPUTE_JOB_USED, PAYMENT_UNAVAILABLE
        ├── RunFailure          TIMEOUT, OUT_OF_MEMORY, EXIT_NONZERO, OUTPUT_TOO_LARGE, CANCELLED,
        │                       DOCKER_UNAVAILABLE
        └── StorageFull         STORAGE_FULL: the engine's own disk is full (a job fails; the API answers 503)

A plain ``EngineError`` carries the operator's codes (CONFIG_INVALID, DATA_DIR_LOCKED).

The registry: every code the engine raises is in exactly one of three tables,
``FAILURE_CODES`` (a FAILED job's code, below), ``API_ERROR_CODES`` (what the
HTTP API answers, engine/api/problems.py) and ``ENGINE_CODES`` (the operator's
commands and the engine's internals, below); ``registered_codes()`` is their
union. tests/engine/test_error_registry.py fails on a raised code none of them
holds, and on an error class this tree does not draw. An audit's warnings are
findings, not errors: their codes live in engine/audit.py ``WARNING_CODES``.

Messages never contain the data a job reads: they name tables, columns,
limits and ids, never values.
"""

from __future__ import annotations

__all__ = [
    "ENGINE_CODES",
    "FAILURE_CODES",
    "AuthError",
    "ChainCheckFailure",
    "EngineError",
    "FetchFailure",
    "ImageFailure",
    "JobFailure",
    "NotFoundError",
    "PaymentFailure",
    "QueryFailure",
    "RequestError",
    "RunFailure",
    "StorageFull",
    "registered_codes",
]

# Every code a FAILED job can carry. Docs are checked against this list.
FAILURE_CODES: dict[str, str] = {
    "NOT_APPROVED": "the instruction is not approved for the refiner's DLP",
    "INSTRUCTION_NOT_FOUND": "no compute instruction with that id on chain",
    "REFINER_NOT_FOUND": "no data refiner with that id on chain",
    "DATA_NOT_FOUND": "the engine holds no data for that refiner",
    "PERMISSION_DENIED": "the query reads a column the job owner holds no permission for",
    "CHAIN_UNAVAILABLE": "the chain could not be reached to verify the job",
    "FETCH_FAILED": "the image archive could not be downloaded",
    "CHECKSUM_MISMATCH": "the archive's sha256 differs from the on-chain hash",
    "IMAGE_TOO_LARGE": "the archive, or what it unpacks to, is over the size cap",
    "IMAGE_INVALID": ("the archive is not a Docker image archive holding exactly one image, or its image "
                      "cannot run as a job (a VOLUME over its mounts, an unknown layout label)"),
    "QUERY_INVALID": "the SQL is not a single allowed read-only SELECT",
    "ROW_LIMIT": "the query returned more rows than allowed",
    "QUERY_TIMEOUT": "the query ran past its time limit",
    "RESULT_TOO_LARGE": "the query result (or one value in it) is over the size cap",
    "QUERY_OUT_OF_MEMORY": "the query needed more memory than the engine allows one query",
    "STORAGE_FULL": "the engine's disk is full (the operator must free space); not the job's fault",
    "PAYMENT_REQUIRED": "the query has a price but the request names no on-chain compute job",
    "COMPUTE_JOB_NOT_FOUND": "the request's on-chain compute job does not exist",
    "COMPUTE_JOB_NOT_OWNED": "the request's on-chain compute job is owned by another wallet than the signer",
    "COMPUTE_JOB_INVALID": "the on-chain compute job has ended or is for another instruction",
    "COMPUTE_JOB_USED": "the on-chain compute job already paid for another run",
    "INSUFFICIENT_BALANCE": "the job owner's ComputeEngine deposit is smaller than the price; nothing was charged",
    "PAYMENT_UNAVAILABLE": "the engine cannot charge this job (no signing key or role, or mixed price tokens)",
    "TIMEOUT": "the container ran past its wall-clock limit",
    "OUT_OF_MEMORY": "the container was killed for exceeding its memory limit",
    "EXIT_NONZERO": "the container exited with a non-zero code",
    "OUTPUT_TOO_LARGE": "the container's output is over the size cap",
    "CANCELLED": "the job owner cancelled the job",
    "DOCKER_UNAVAILABLE": "Docker stopped answering (or restarted) while the job needed it",
    "ENGINE_RESTARTED": "the engine restarted while the job ran and could not resume it",
    "INTERNAL_ERROR": "an unexpected engine error (see the operator's log)",
}


# Codes outside jobs and the API: the operator's commands (docs/configuration.md) and internals.
ENGINE_CODES: dict[str, str] = {
    "CONFIG_INVALID": "the settings, the deployment manifest or the signing key are unreadable or unsafe",
    "DATA_DIR_LOCKED": "another engine holds the data dir's lock (one engine per data dir)",
    "DATA_INVALID": "`data add`: the file is missing, not a healthy SQLite database, or holds no tables",
    "DATA_EXISTS": "`data add`: the refiner already has data (pass --replace to swap it)",
    "BAD_REQUEST": "a request error without a more specific code (RequestError's default)",
    "STALE_STATE": "internal: a job transition found another status than expected (a lost race, handled)",
    "OUTPUT_EXISTS": "internal: the query child found its output database already there (never shown)",
}


def registered_codes() -> dict[str, str]:
    """Every code the engine may raise: the union of its three tables."""
    # The HTTP layer's table, imported here: engine.api.problems imports this module.
    from engine.api.problems import API_ERROR_CODES

    return {**ENGINE_CODES, **API_ERROR_CODES, **FAILURE_CODES}


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""

    code: str = "INTERNAL_ERROR"
    http_status: int = 500

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        job_id: str | None = None,
        http_status: int | None = None,
    ):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if http_status is not None:
            self.http_status = http_status
        self.job_id = job_id

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class RequestError(EngineError):
    code = "BAD_REQUEST"
    http_status = 400


class AuthError(RequestError):
    code = "UNAUTHORIZED"
    http_status = 401


class NotFoundError(RequestError):
    code = "NOT_FOUND"
    http_status = 404


class JobFailure(EngineError):
    """A pipeline step failed; the job ends FAILED carrying `code`."""

    http_status = 422


class ChainCheckFailure(JobFailure):
    code = "NOT_APPROVED"


class FetchFailure(JobFailure):
    code = "FETCH_FAILED"


class ImageFailure(JobFailure):
    code = "IMAGE_INVALID"


class QueryFailure(JobFailure):
    code = "QUERY_INVALID"


class PaymentFailure(JobFailure):
    """The job's price cannot be charged (engine/payment.py); nothing was charged."""

    code = "INSUFFICIENT_BALANCE"


class RunFailure(JobFailure):
    code = "EXIT_NONZERO"


class StorageFull(JobFailure):
    """The engine's own disk is full: a job step fails STORAGE_FULL, an API call answers 503."""

    code = "STORAGE_FULL"
    http_status = 503
