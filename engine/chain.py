"""On-chain verification of a job: refiner -> DLP, instruction, approval, permissions.

`ChainVerifier.verify` reads everything at ONE block number (pinned first,
then passed as `block_identifier` to every call), so a job is checked
against one consistent chain state, and records that block. Failures are
`ChainCheckFailure`s with a stable code:

- REFINER_NOT_FOUND       no refiner with that id
- INSTRUCTION_NOT_FOUND   no compute instruction with that id
- NOT_APPROVED            the instruction is not approved for the refiner's DLP
- CHAIN_UNAVAILABLE       the RPC endpoint could not be used

`is_approved` re-reads the approval at the latest block (the pre-run check).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from engine.errors import ChainCheckFailure
from registry_client.contracts import PermissionRecord, Registries
from registry_client.errors import (
    ComputeInstructionNotFound,
    InputError,
    RefinerNotFound,
    RegistryError,
)

try:
    from engine.query import Permission
except ImportError:  # the package's __init__ may not re-export it (yet)
    from engine.query.model import Permission  # type: ignore[no-redef]

__all__ = ["ChainCheck", "ChainVerifier"]


@dataclass(frozen=True)
class ChainCheck:
    """What the chain said about a job, all read at `block_number`."""

    block_number: int
    dlp_id: int
    instruction_hash: str  # sha256 of the image archive, lowercase hex, no 0x
    instruction_url: str
    permissions: tuple[Permission, ...]  # the owner's active permissions on the refiner


def _to_permission(record: PermissionRecord) -> Permission:
    return Permission(
        id=record.id,
        grantee=record.grantee,
        refiner_id=record.refiner_id,
        table=record.table,
        column=record.column,
        price=record.price,
        approved=record.approved,
    )


class ChainVerifier:
    """Verifies jobs against the registries of one deployment."""

    def __init__(self, registries: Registries):
        self.registries = registries
        self._pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="chain-read")

    def verify(self, instruction_id: int, refiner_id: int, owner: str) -> ChainCheck:
        """Check refiner, instruction and approval at one block; ChainCheckFailure otherwise."""
        reg = self.registries
        try:
            block = reg.block_number()
            # Independent reads at the pinned block go out together (each is one RPC).
            refiner_f = self._pool.submit(reg.refiner, refiner_id, block=block)
            instruction_f = self._pool.submit(reg.instruction, instruction_id, block=block)
            records_f = self._pool.submit(reg.get_permissions, refiner_id, owner, block=block)
            refiner, instruction = refiner_f.result(), instruction_f.result()
            records = records_f.result()
            if not reg.is_approved(instruction_id, refiner.dlp_id, block=block):
                raise ChainCheckFailure(
                    f"instruction {instruction_id} is not approved for DLP {refiner.dlp_id} "
                    f"(refiner {refiner_id}) at block {block}",
                    code="NOT_APPROVED",
                )
        except RefinerNotFound as exc:
            raise ChainCheckFailure(f"no data refiner with id {refiner_id} on chain",
                                    code="REFINER_NOT_FOUND") from exc
        except ComputeInstructionNotFound as exc:
            raise ChainCheckFailure(f"no compute instruction with id {instruction_id} on chain",
                                    code="INSTRUCTION_NOT_FOUND") from exc
        except InputError as exc:
            raise ChainCheckFailure(f"invalid job owner: {exc}", code="INTERNAL_ERROR") from exc
        except RegistryError as exc:
            raise ChainCheckFailure(f"cannot verify the job on chain: {exc}", code="CHAIN_UNAVAILABLE") from exc
        # Revoked permissions never reach the query engine.
        active = tuple(_to_permission(r) for r in records if r.approved and r.refiner_id == refiner_id)
        return ChainCheck(block, refiner.dlp_id, instruction.hash.lower(), instruction.url, active)

    def is_approved(self, instruction_id: int, dlp_id: int) -> bool:
        """The approval at the latest block; CHAIN_UNAVAILABLE when the RPC fails."""
        try:
            return self.registries.is_approved(instruction_id, dlp_id)
        except RegistryError as exc:
            raise ChainCheckFailure(f"cannot re-check the approval on chain: {exc}",
                                    code="CHAIN_UNAVAILABLE") from exc
