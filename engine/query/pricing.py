"""Which permissions cover the columns a query reads, and what that costs.

Rules (docs/query.md):
- Only approved permissions count; with `refiner_id`/`grantee` given, only
  that refiner's permissions that are generic (anyone) or the grantee's.
- A permission covers (table, column) when its table is "" or the table, and
  its column is "" or the column. Names compare case-insensitively, as
  SQLite's identifiers do.
- A table read without any column (count(*)) is covered by any permission
  on that table (table-wide or one of its columns) or on every table.
- Price: each read takes its cheapest covering permission (lowest id on a
  tie; a table-level read reuses a permission already used for that table
  when there is one); the total is the sum over the distinct permissions used.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from engine.errors import QueryFailure

from .model import Permission

__all__ = ["active_permissions", "price_reads"]


def active_permissions(permissions: Iterable[Permission], *, refiner_id: int | None = None,
                       grantee: str | None = None) -> list[Permission]:
    """The approved permissions that may apply to this caller and refiner."""
    out = []
    for p in permissions:
        if not p.approved:
            continue
        if refiner_id is not None and p.refiner_id != refiner_id:
            continue
        if grantee is not None and not p.is_generic and (p.grantee or "").lower() != grantee.lower():
            continue
        out.append(p)
    return out


def _covers(p: Permission, table: str, column: str) -> bool:
    if p.table and p.table.lower() != table.lower():
        return False
    if column == "":  # table-level read: any permission on the table will do
        return True
    return not p.column or p.column.lower() == column.lower()


def _cheapest(candidates: Sequence[Permission]) -> Permission:
    return min(candidates, key=lambda p: (p.price, p.id))


def price_reads(reads: Iterable[tuple[str, str]],
                permissions: Sequence[Permission]) -> tuple[tuple[int, ...], int]:
    """(ids of the distinct permissions used, total price) for these reads.

    Raises QueryFailure(PERMISSION_DENIED) naming every uncovered column.
    """
    column_reads = sorted(r for r in reads if r[1] != "")
    table_reads = sorted(r for r in reads if r[1] == "")
    used: dict[int, Permission] = {}
    denied: list[str] = []
    for table, column in column_reads:
        covering = [p for p in permissions if _covers(p, table, column)]
        if not covering:
            denied.append(f"{table}.{column}")
            continue
        best = _cheapest(covering)
        used[best.id] = best
    for table, _ in table_reads:
        covering = [p for p in permissions if _covers(p, table, "")]
        if not covering:
            denied.append(f"{table} (table)")
            continue
        already = [p for p in covering if p.id in used]
        best = _cheapest(already or covering)
        used[best.id] = best
    if denied:
        raise QueryFailure(f"no permission covers {', '.join(denied)}", code="PERMISSION_DENIED")
    ids = tuple(sorted(used))
    return ids, sum(used[i].price for i in ids)
