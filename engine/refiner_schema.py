"""A refiner's schema for one caller: tables, columns, types, and which columns they may read at what price.

The names and declared types come from SQLite's schema pragmas
(``PRAGMA table_list``, ``PRAGMA table_xinfo``) on the engine's read-only copy
of the refiner's database, never through the builder's query path and never
a row. Coverage and price are the query step's own rules
(engine/query/pricing.py): a column is covered when a query reading only that
column would pass, and its price is what that query would cost.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from engine.errors import JobFailure, QueryFailure
from engine.query.model import Permission
from engine.query.pricing import active_permissions, price_reads

__all__ = ["MAX_COLUMNS", "MAX_TABLES", "read_schema", "schema_for"]

MAX_TABLES = 1000  # bounds the answer; a refiner's schema is far smaller
MAX_COLUMNS = 2000  # SQLite's own default column limit per table


def read_schema(db: Path) -> list[tuple[str, list[tuple[str, str]]]]:
    """[(table, [(column, declared type)])] of the main database, by name.

    No internal (sqlite_*) tables and no views: a view's reads are priced by the base
    columns behind it, which the tables already list.
    """
    uri = f"file:{quote(str(Path(db).resolve()))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise JobFailure("the refiner's database cannot be opened", code="DATA_NOT_FOUND") from exc
    try:
        # table_list rows: (schema, name, type, ncol, wr, strict)
        tables = [str(row[1]) for row in conn.execute("PRAGMA main.table_list")
                  if row[2] == "table" and not str(row[1]).lower().startswith("sqlite_")]
        out = []
        for name in sorted(tables, key=str.lower)[:MAX_TABLES]:
            # table_xinfo rows: (cid, name, type, notnull, default, pk, hidden); hidden 1 is a
            # virtual table's hidden column, 2 and 3 generated columns (readable, so listed).
            rows = conn.execute("SELECT * FROM pragma_table_xinfo(?)", (name,)).fetchall()
            columns = [(str(c[1]), str(c[2] or "")) for c in rows if c[6] != 1]
            out.append((name, columns[:MAX_COLUMNS]))
        return out
    except sqlite3.Error as exc:
        raise JobFailure("the refiner's database schema cannot be read", code="DATA_NOT_FOUND") from exc
    finally:
        conn.close()


def schema_for(db: Path, refiner_id: int, permissions: Sequence[Permission], grantee: str) -> dict[str, Any]:
    """GET /refiners/{id}/schema's body: every column with its coverage and price for `grantee`."""
    active = active_permissions(permissions, refiner_id=refiner_id, grantee=grantee)
    tables = []
    for table, columns in read_schema(db):
        cols = []
        for column, type_ in columns:
            try:
                _, price = price_reads([(table, column)], active)
            except QueryFailure:
                cols.append({"name": column, "type": type_, "covered": False, "price_wei": None})
                continue
            cols.append({"name": column, "type": type_, "covered": True, "price_wei": str(price)})
        tables.append({"name": table, "columns": cols})
    return {"refiner_id": refiner_id, "tables": tables}
