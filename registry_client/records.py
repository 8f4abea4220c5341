"""What the registries' reads return: plain, frozen records (Vana's struct shapes, decoded).

registry_client.contracts builds them from the contracts' answers; the CLI, the
engine and the console's tests read them. No web3 here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_utils import to_checksum_address

__all__ = ["Dlp", "Instruction", "PermissionRecord", "Refiner", "Schema", "permission_record"]


@dataclass(frozen=True)
class Dlp:
    """The fields of Vana's `DlpInfo` this project uses (rewards fields are not read)."""

    id: int
    owner: str
    name: str
    registration_block: int
    treasury: str
    dlp_address: str | None  # None = no DLP contract
    status: str  # Registered, Eligible or Deregistered


@dataclass(frozen=True)
class Refiner:
    id: int
    dlp_id: int
    owner: str
    name: str
    schema_url: str  # the schema's definition URL when schema_id > 0
    instruction_url: str
    schema_id: int = 0  # 0 = the refiner carries its own schema URL


@dataclass(frozen=True)
class Schema:
    id: int
    name: str
    dialect: str
    definition_url: str


@dataclass(frozen=True)
class Instruction:
    id: int
    hash: str  # sha256 of the image archive: lowercase hex, no 0x (as sha256sum prints it)
    owner: str
    url: str


@dataclass(frozen=True)
class PermissionRecord:
    id: int
    grantee: str | None  # None = anyone
    approved: bool
    refiner_id: int
    table: str  # "" = every table
    column: str  # "" = every column of the table
    price: int  # in the smallest unit of `token`
    token: str | None = None  # None = the native token


def permission_record(pid: Any, grantee: str, approved: bool, refiner_id: Any, table: str, column: str,
                price: Any, token: str) -> PermissionRecord:
    who = None if int(grantee, 16) == 0 else to_checksum_address(grantee)
    paid_in = None if int(token, 16) == 0 else to_checksum_address(token)
    return PermissionRecord(int(pid), who, bool(approved), int(refiner_id), table, column, int(price), paid_in)
