"""The engine's signed word on a finished job: the EIP-712 ``JobResult`` attestation.

Pure: given the signing account, the EIP-712 domain, the job about to succeed
and its artifacts, return what the SUCCEEDED transition records as the job's
``attestation`` (docs/api.md, "verifying"). The service decides when to call it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from eth_utils import to_checksum_address

if TYPE_CHECKING:
    from engine.artifacts import Artifact
    from engine.store import Job

__all__ = ["attest_result"]


def attest_result(
    signer: Any, domain: tuple[int, str], job: Job, artifacts: Sequence[Artifact], finished_at: int
) -> dict[str, Any]:
    """Sign (job, owner, instruction, refiner, image sha256, block, artifacts digest, finished at,
    recipient, sealed digest): both the plaintext and the stored ciphertext hashes."""
    from registry_client.eip712 import (
        ZERO_ADDRESS,
        ZERO_BYTES32,
        JobResult,
        artifacts_digest,
        sign_job_result,
    )

    assert job.image_sha256 is not None and job.block_number is not None
    digest = artifacts_digest((a.name, a.sha256) for a in artifacts)
    sealed = job.recipient is not None
    sealed_digest = artifacts_digest((a.name, a.sealed_sha256 or "") for a in artifacts) if sealed else ZERO_BYTES32
    recipient = job.recipient if sealed else ZERO_ADDRESS
    result = JobResult(
        job_id=job.id,
        owner=job.owner,
        instruction_id=job.instruction_id,
        refiner_id=job.refiner_id,
        image_sha256=job.image_sha256,
        block_number=job.block_number,
        artifacts_digest=digest,
        finished_at=finished_at,
        recipient=recipient,
        sealed_digest=sealed_digest,
    )
    chain_id, contract = domain
    return {
        "signer": to_checksum_address(signer.address),
        "signature": sign_job_result(signer, chain_id, contract, result),
        "artifacts_digest": digest,
        "finished_at": finished_at,
        "recipient": to_checksum_address(recipient),
        "sealed_digest": sealed_digest,
    }
