"""Columns a compiled statement physically reads, from its EXPLAIN bytecode.

SQLite's authorizer misses the columns of `JOIN ... USING` and NATURAL joins
(the join terms are built already resolved, so the callback never fires; the
joined table may not be reported at all). The bytecode does not lie: every
`OpenRead` names the b-tree (table or index) behind a cursor, every `Column`
names the column it fetches, and every index seek compares a known number of
leading key columns. The union of these reads and the authorizer's is what
the permission check sees, so neither blind spot can leak a column.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Schema", "bytecode_reads", "load_schema"]

# Index ops whose P4 is the number of leading key fields compared.
_SEEK_OPS = frozenset(
    ["SeekGE", "SeekGT", "SeekLE", "SeekLT", "IdxGE", "IdxGT", "IdxLE", "IdxLT", "Found", "NotFound", "NoConflict", "IfNoHope"]
)
_ROWID_SEEKS = frozenset({"SeekRowid", "NotExists"})
_OPEN_OPS = frozenset({"OpenRead", "ReopenIdx"})
_WITHOUT_ROWID = re.compile(r"\)\s*WITHOUT\s+ROWID\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class BTree:
    """A table or index b-tree of the main database, by root page."""

    table: str
    is_index: bool
    # table: column names in storage order; index: table column per key slot
    # (None for the trailing rowid slot)
    columns: tuple[str | None, ...]
    rowid_name: str  # the INTEGER PRIMARY KEY column, else "rowid"
    without_rowid: bool


@dataclass(frozen=True)
class Schema:
    """The main database's b-trees by root page, and the names of its views."""

    trees: Mapping[int, BTree]
    views: frozenset[str]

    @property
    def tables(self) -> frozenset[str]:
        """Lower-cased names of the tables that hold data (never views, CTEs)."""
        return frozenset(t.table.lower() for t in self.trees.values())


def load_schema(conn: sqlite3.Connection) -> Schema:
    """Map every root page of the main database to its table or index.

    Must run with no authorizer installed (it reads sqlite_master and PRAGMAs).
    """
    everything = conn.execute(
        "SELECT type, name, tbl_name, rootpage, sql FROM main.sqlite_master"
    ).fetchall()
    views = frozenset(r[1].lower() for r in everything if r[0] == "view")
    objects = [r for r in everything if r[0] in ("table", "index") and (r[3] or 0) > 0]
    tables: dict[str, tuple[tuple[str, ...], str, bool]] = {}
    for kind, name, _tbl, _root, sql in objects:
        if kind == "table":
            info = conn.execute("SELECT name, type, pk FROM pragma_table_xinfo(?)", (name,)).fetchall()
            cols = tuple(r[0] for r in info)
            pks = [r for r in info if r[2]]
            ipk = pks[0][0] if len(pks) == 1 and pks[0][1].upper() == "INTEGER" else "rowid"
            tables[name] = (cols, ipk, bool(sql and _WITHOUT_ROWID.search(sql)))
    schema: dict[int, BTree] = {}
    for kind, name, tbl, root, _sql in objects:
        cols, ipk, without_rowid = tables.get(tbl, ((), "rowid", False))
        if kind == "table":
            schema[root] = BTree(tbl, False, cols, ipk, without_rowid)
        else:
            rows = conn.execute("SELECT cid, name FROM pragma_index_xinfo(?)", (name,)).fetchall()
            key = tuple(r[1] if r[0] >= 0 else None for r in rows)
            schema[root] = BTree(tbl, True, key, ipk, without_rowid)
    return Schema(schema, views)


def bytecode_reads(program: Iterable[Sequence[object]], schema: Schema) -> set[tuple[str, str]]:
    """(table, column) pairs read by an EXPLAIN listing of the main database.

    A WITHOUT ROWID table's storage order is not its declared order, so any
    read of one counts as reading all its columns (safe, never less).
    """
    rows = list(program)
    cursors: dict[int, list[BTree]] = {}
    for _addr, op, p1, p2, p3, *_rest in rows:
        if op in _OPEN_OPS and p3 == 0 and p2 in schema.trees:
            cursors.setdefault(int(p1), []).append(schema.trees[p2])
    # Opening a table (or its index) reads it, even when no column is fetched
    # (count(*)): a table-level read that column reads of it make redundant.
    reads: set[tuple[str, str]] = {(t.table, "") for trees in cursors.values() for t in trees}
    for _addr, op, p1, p2, _p3, p4, *_rest in rows:
        for tree in cursors.get(p1, ()) if isinstance(p1, int) else ():
            reads.update(_op_reads(tree, str(op), p2, p4))
    return reads


def _op_reads(tree: BTree, op: str, p2: object, p4: object) -> set[tuple[str, str]]:
    if op == "Column":
        names = _column_names(tree, [p2])
    elif op in _SEEK_OPS and tree.is_index:
        count = int(p4) if isinstance(p4, (int, str)) and str(p4).isdigit() else len(tree.columns)
        names = _column_names(tree, range(max(count, 1)))
    elif op in _ROWID_SEEKS and not tree.is_index:
        names = {tree.rowid_name}
    else:
        return set()
    if tree.without_rowid:
        return _all_columns(tree)
    return {(tree.table, n) for n in names}


def _column_names(tree: BTree, slots: Iterable[object]) -> set[str]:
    names: set[str] = set()
    for slot in slots:
        if isinstance(slot, int) and 0 <= slot < len(tree.columns):
            name = tree.columns[slot]
            names.add(name if name is not None else tree.rowid_name)
        else:
            names.update(c if c is not None else tree.rowid_name for c in tree.columns)
    return names


def _all_columns(tree: BTree) -> set[tuple[str, str]]:
    return {(tree.table, c) for c in tree.columns if c is not None}
