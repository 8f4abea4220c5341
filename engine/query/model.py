"""The value types of the query library: permissions, limits and the access report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ANYONE_ADDRESSES", "AccessReport", "Permission", "QueryLimits", "SealedSource"]

MIB = 1024 * 1024

# How a "granted to anyone" permission may arrive: None from our chain layer,
# or the zero address / empty string when taken raw from the contract.
ANYONE_ADDRESSES = frozenset({"", "0x0000000000000000000000000000000000000000"})


@dataclass(frozen=True)
class Permission:
    """One on-chain query permission.

    `table == ""` covers every table; `column == ""` covers every column of
    `table`. `grantee is None` (or the zero address) means anyone.
    """

    id: int
    grantee: str | None
    refiner_id: int
    table: str
    column: str
    price: int
    approved: bool = True

    @property
    def is_generic(self) -> bool:
        return self.grantee is None or self.grantee.lower() in ANYONE_ADDRESSES


@dataclass(frozen=True)
class QueryLimits:
    """Bounds on one query: rows returned, wall time, size of the results file,
    size of any one string or blob (SQLITE_LIMIT_LENGTH) and the memory of the
    process the query runs in."""

    max_rows: int = 100_000
    timeout_s: float = 30.0
    max_result_bytes: int = 256 * MIB
    max_value_bytes: int = 16 * MIB
    max_memory_bytes: int = 512 * MIB

    def __post_init__(self) -> None:
        sizes = (self.max_result_bytes, self.max_value_bytes, self.max_memory_bytes)
        if self.max_rows < 0 or self.timeout_s <= 0 or min(sizes) <= 0:
            raise ValueError("QueryLimits must be positive (max_rows may be 0)")


@dataclass(frozen=True)
class AccessReport:
    """What a query read and what it costs.

    `columns` are the (table, column) pairs read, sorted; column "" means the
    table was read without any of its columns (e.g. `count(*)`), "rowid" its
    implicit row id. `permissions_used` are the ids of the distinct
    permissions that covered them; `price` is the sum of their prices.
    """

    columns: tuple[tuple[str, str], ...]
    permissions_used: tuple[int, ...]
    price: int
    row_count: int


@dataclass(frozen=True, repr=False)
class SealedSource:
    """A refiner database sealed at rest (registry_client/sealing.py) and its data key.

    The query process opens it into its own memory (`sqlite3.Connection.deserialize`),
    never onto a disk; the key travels only over the engine's socket to that process.
    """

    path: Path
    key: bytes

    def __repr__(self) -> str:
        return f"SealedSource({self.path})"
