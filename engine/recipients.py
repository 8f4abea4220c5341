"""Who a job's results are for: the recipient rule of the read path, and what is sealed to whom.

A job submitted through ``POST /jobs`` has a recipient: the wallet named in a
signed ``JobRequestTo`` (its public key checked against its address in
registry_client/eip712.py), or by default the signer, whose public key is
recovered from the submission signature. Its artifacts and kept logs are
sealed to that key (registry_client/sealing.py) before they are stored.

Reads: the owner (submitter) and the recipient may read the job and list its
artifacts; only the recipient may download artifacts or logs. An owner who is
not the recipient sees names and sizes, never contents or plaintext hashes.
A job without a recipient (Vana's client API) keeps plaintext results for its
owner, as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.errors import RequestError

if TYPE_CHECKING:
    from engine.store import Job
    from registry_client.eip712 import JobRequest

__all__ = ["can_read", "check_can_open", "is_recipient", "recipient_fields", "seal_logs"]


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.lower() == b.lower()


def recipient_fields(request: JobRequest, signer: str, signer_key: str | None) -> dict[str, str | None]:
    """The store fields naming who the job's results are sealed to (None: plaintext)."""
    if request.recipient is not None:
        return {"recipient": request.recipient, "recipient_key": request.recipient_public_key}
    if signer_key is None:
        return {"recipient": None, "recipient_key": None}
    return {"recipient": signer, "recipient_key": signer_key}


def can_read(job: Job, wallet: str, *, owner_only: bool = False) -> bool:
    """The job's owner or (unless `owner_only`: cancel) its recipient."""
    return _same(job.owner, wallet) or (not owner_only and _same(job.recipient, wallet))


def is_recipient(job: Job, wallet: str) -> bool:
    """May `wallet` open the results (the recipient; the owner of a job without one)?"""
    return _same(job.recipient or job.owner, wallet)


def check_can_open(job: Job, wallet: str) -> None:
    """RequestError NOT_RECIPIENT (403) unless `wallet` is the one the results are for."""
    if not is_recipient(job, wallet):
        raise RequestError(
            f"job {job.id}'s results are sealed to {job.recipient}; its submitter sees names and sizes only",
            code="NOT_RECIPIENT", http_status=403)


def seal_logs(logs: bytes, recipient_key: str | None) -> bytes:
    """Kept logs as stored: sealed to the recipient's key, plaintext for a job without one."""
    if recipient_key is None:
        return logs
    from registry_client.sealing import seal_bytes

    return seal_bytes(logs, public_key=recipient_key)
