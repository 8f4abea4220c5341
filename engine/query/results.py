"""Settle the `results` table's column names and declared types.

`CREATE TABLE ... AS SELECT` names duplicate columns `a:1` and declares a
type only where the expression has an affinity (a column read from a table).
Afterwards each column is renamed `a_1` (the first free name) and declared:
INTEGER / REAL / TEXT / NUMERIC from its affinity, else the storage class
of its first non-null value (INTEGER, REAL, TEXT, BLOB), else no type.

Neither a name nor a declared type is stored in the rows, so the new
definition is written straight into the output file's schema
(`PRAGMA writable_schema`), which costs nothing however many rows there are.
This touches only the fresh output database, never the source.
"""

from __future__ import annotations

import re
import sqlite3

__all__ = ["declared_type", "dedupe_names", "finalise_results"]

_DUPLICATE = re.compile(r"^(.*):(\d+)$", re.DOTALL)
_AFFINITY_TYPES = {"INT": "INTEGER", "INTEGER": "INTEGER", "REAL": "REAL", "TEXT": "TEXT",
                   "NUM": "NUMERIC", "NUMERIC": "NUMERIC"}


def dedupe_names(names: list[str]) -> list[str]:
    """SQLite's `a:1` duplicates become `a_1` (or the next free `a_N`)."""
    out: list[str] = []
    taken = {n.lower() for n in names if not _is_generated_duplicate(n, names)}
    for name in names:
        m = _DUPLICATE.match(name)
        if m and _is_generated_duplicate(name, names):
            base, n = m.group(1), int(m.group(2))
            candidate = f"{base}_{n}"
            while candidate.lower() in taken:
                n += 1
                candidate = f"{base}_{n}"
            name = candidate
        taken.add(name.lower())
        out.append(name)
    return out


def _is_generated_duplicate(name: str, names: list[str]) -> bool:
    m = _DUPLICATE.match(name)
    return bool(m) and m.group(1).lower() in {n.lower() for n in names}


def declared_type(affinity_type: str, first_value_type: str | None) -> str:
    """The declared type of one results column (see module docstring)."""
    known = _AFFINITY_TYPES.get(affinity_type.upper())
    if known:
        return known
    if first_value_type and first_value_type != "null":
        return first_value_type.upper()
    return ""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def finalise_results(conn: sqlite3.Connection, schema: str) -> None:
    """Rewrite `<schema>.results`'s definition with clean names and types."""
    cols = conn.execute(
        "SELECT name, type FROM pragma_table_info('results', ?) ORDER BY cid", (schema,)
    ).fetchall()
    names = dedupe_names([c[0] for c in cols])
    types = []
    for (name, affinity_type) in cols:
        first = None
        if affinity_type.upper() not in _AFFINITY_TYPES:
            row = conn.execute(
                f"SELECT typeof({_quote(name)}) FROM {schema}.results "
                f"WHERE {_quote(name)} IS NOT NULL LIMIT 1"
            ).fetchone()
            first = row[0] if row else None
        types.append(declared_type(affinity_type, first))
    current = [(c[0], c[1]) for c in cols]
    if current == list(zip(names, types)):
        return
    columns = ", ".join(f"{_quote(n)} {t}".rstrip() for n, t in zip(names, types))
    ddl = f"CREATE TABLE results({columns})"
    version = conn.execute(f"PRAGMA {schema}.schema_version").fetchone()[0]
    conn.execute(f"PRAGMA {schema}.writable_schema = ON")
    try:
        conn.execute(f"UPDATE {schema}.sqlite_master SET sql = ? "
                     "WHERE type = 'table' AND name = 'results'", (ddl,))
        conn.execute(f"PRAGMA {schema}.schema_version = {version + 1}")
    finally:
        conn.execute(f"PRAGMA {schema}.writable_schema = OFF")
