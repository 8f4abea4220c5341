"""execute_query: check a builder's SQL against permissions, then write results.

This runs in the calling process; `engine.query.run_query` (isolate.py) runs
it in a child process under a memory limit, killed at the deadline or on
cancel. Two passes over one read-only connection to the refiner's database:

1. `EXPLAIN <sql>` compiles the statement without running it. The authorizer
   refuses every forbidden action and records the columns read; the EXPLAIN
   bytecode adds the reads the authorizer cannot see (JOIN ... USING). The
   permissions are checked here, before any output file exists.
2. The output file is attached under a temporary name and
   `CREATE TABLE out.results AS SELECT * FROM (<sql>) LIMIT max_rows + 1`
   runs inside SQLite at native speed, still under the authorizer and a
   progress handler (time limit, cancel: between VM steps; inside one step
   only the child's kill stops it). Column names and declared types
   are then settled, the row and size limits checked, and the file renamed
   into place. On any failure the partial file is removed.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from engine.errors import QueryFailure
from engine.storage import is_disk_full, is_full, storage_full

from .authorizer import QueryAuthorizer
from .bytecode import Schema, bytecode_reads, load_schema
from .model import AccessReport, Permission, QueryLimits
from .pricing import active_permissions, price_reads
from .results import finalise_results
from .statement import Params, check_params, check_statement

__all__ = ["analyse_query", "execute_query"]

_OUT = "out"  # schema name of the attached output database
# 16 KiB pages: a 1M-row CTAS writes ~11 % faster than with 4 KiB (fewer, larger page
# writes); readers see no difference. The size cap counts in these pages (max_page_count).
_PAGE_SIZE = 16384
_PROGRESS_OPS = 2000  # VM instructions between progress-handler calls
_DEFAULT_LIMITS = QueryLimits()


def execute_query(
    source_db: Path,
    sql: str,
    params: Params | None,
    permissions: Sequence[Permission],
    output_db: Path,
    limits: QueryLimits = _DEFAULT_LIMITS,
    *,
    refiner_id: int | None = None,
    grantee: str | None = None,
    cancel: threading.Event | None = None,
) -> AccessReport:
    """Run one permissioned SELECT over `source_db` into a new `output_db`.

    `permissions` are the caller's; unapproved ones are ignored, and when
    `refiner_id` / `grantee` are given, so are other refiners' permissions
    and permissions granted to someone else. Raises QueryFailure with code
    QUERY_INVALID, PERMISSION_DENIED, ROW_LIMIT, QUERY_TIMEOUT,
    RESULT_TOO_LARGE, QUERY_OUT_OF_MEMORY (SQLite's heap limit, when set),
    DATA_NOT_FOUND (no source file) or CANCELLED; StorageFull when the
    output's disk is full; FileExistsError if `output_db` exists. The source
    is never written.
    """
    body = check_statement(sql)
    bound = check_params(params)
    source_db, output_db = Path(source_db), Path(output_db)
    if output_db.exists() or output_db.is_symlink():
        raise FileExistsError(f"output database already exists: {output_db}")
    conn = _open_source(source_db, limits)
    try:
        schema = load_schema(conn)
        reads = _analyse(conn, f"EXPLAIN {body}", bound, schema, QueryAuthorizer())
        active = active_permissions(permissions, refiner_id=refiner_id, grantee=grantee)
        used, price = price_reads(reads, active)
        rows = _write_results(conn, body, bound, schema, reads, output_db, limits, cancel)
    finally:
        conn.close()
    return AccessReport(tuple(sorted(reads)), used, price, rows)


def analyse_query(
    source_db: Path,
    sql: str,
    params: Params | None,
    permissions: Sequence[Permission],
    limits: QueryLimits = _DEFAULT_LIMITS,
    *,
    refiner_id: int | None = None,
    grantee: str | None = None,
) -> AccessReport:
    """What `execute_query` would check and charge, without running the query (row_count 0).

    Compiles the statement (EXPLAIN) under the same authorizer and prices its
    reads with the same rules: the same refusals (QUERY_INVALID,
    PERMISSION_DENIED, a wrong parameter count) and the same price, with no
    row read and no file written. The quote and submit's preflight use it.
    """
    body = check_statement(sql)
    bound = check_params(params)
    conn = _open_source(Path(source_db), limits)
    try:
        schema = load_schema(conn)
        reads = _analyse(conn, f"EXPLAIN {body}", bound, schema, QueryAuthorizer())
        active = active_permissions(permissions, refiner_id=refiner_id, grantee=grantee)
        used, price = price_reads(reads, active)
    finally:
        conn.close()
    return AccessReport(tuple(sorted(reads)), used, price, 0)


def _open_source(source_db: Path, limits: QueryLimits) -> sqlite3.Connection:
    if not source_db.is_file():
        raise QueryFailure("the refiner's database file is missing", code="DATA_NOT_FOUND")
    # mode=ro: SQLite itself refuses any write to the source, whatever else happens.
    uri = f"file:{quote(str(source_db.resolve()))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1")
    except sqlite3.Error as exc:
        raise QueryFailure(f"the refiner's database cannot be opened ({exc})",
                           code="DATA_NOT_FOUND") from exc
    # SQLite's own bound on any one string or blob (printf, replace, ||, group_concat...).
    current = conn.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH,
                  min(current, limits.max_value_bytes, limits.max_result_bytes))
    # Sorts and temporary b-trees stay in memory, where the heap limit bounds
    # them, instead of spilling into uncapped temporary files on the host disk.
    conn.execute("PRAGMA temp_store = MEMORY")
    return conn


def _analyse(conn: sqlite3.Connection, explain_sql: str, params: object, schema: Schema,
             authorizer: QueryAuthorizer) -> set[tuple[str, str]]:
    """Compile (never run) a statement; return the (table, column) pairs it reads."""
    conn.set_authorizer(authorizer)
    try:
        program = conn.execute(explain_sql, params).fetchall()
    except (sqlite3.Error, ValueError) as exc:
        raise _translate(exc, authorizer, conn) from exc
    finally:
        conn.set_authorizer(None)
    reads = authorizer.reads | bytecode_reads(program, schema)
    return _normalise(reads, schema)


def _normalise(reads: set[tuple[str, str]], schema: Schema) -> set[tuple[str, str]]:
    # A view is a lens, not data: SQLite also reports the base-table columns
    # its definition reads, and those are what permissions must cover.
    reads = {r for r in reads if r[0].lower() not in schema.views}
    # Only the schema's own tables are data. SQLite also reports a table-level
    # read of a CTE or subquery by its name (`FROM c`); the real tables behind
    # it are reported by their own names and seen opened in the bytecode, so
    # dropping the alias never hides a read (a CTE named like a real table is
    # kept: charged as that table, never less).
    tables = schema.tables
    reads = {(t, c) for t, c in reads if c or t.lower() in tables}
    with_columns = {t for t, c in reads if c}
    return {(t, c) for t, c in reads if c or t not in with_columns}


def _translate(exc: Exception, authorizer: QueryAuthorizer, conn: sqlite3.Connection) -> QueryFailure:
    if authorizer.refusal is not None:
        return QueryFailure(authorizer.refusal, code="QUERY_INVALID")
    text = str(exc)
    if isinstance(exc, sqlite3.ProgrammingError) and "one statement" in text:
        return QueryFailure("only one statement is allowed", code="QUERY_INVALID")
    errorcode = getattr(exc, "sqlite_errorcode", None)
    if errorcode == sqlite3.SQLITE_TOOBIG or "string or blob too big" in text:
        limit = conn.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
        return QueryFailure(f"a value is over the limit of {limit} bytes for one value",
                            code="RESULT_TOO_LARGE")
    if errorcode == sqlite3.SQLITE_NOMEM or isinstance(exc, MemoryError):
        return _out_of_memory()
    return QueryFailure(f"SQLite refused the query: {text}", code="QUERY_INVALID")


def _out_of_memory() -> QueryFailure:
    return QueryFailure("the query needed more memory than one query may use",
                        code="QUERY_OUT_OF_MEMORY")


class _Watch:
    """Progress handler: stop the statement on timeout or cancel."""

    def __init__(self, timeout_s: float, cancel: threading.Event | None, max_bytes: int):
        self.max_bytes = max_bytes
        self.deadline = time.monotonic() + timeout_s
        self.cancel = cancel
        self.stopped: QueryFailure | None = None

    def __call__(self) -> int:
        if self.cancel is not None and self.cancel.is_set():
            self.stopped = QueryFailure("the query was cancelled", code="CANCELLED")
            return 1
        if time.monotonic() > self.deadline:
            self.stopped = QueryFailure("the query ran past its time limit", code="QUERY_TIMEOUT")
            return 1
        return 0


def _write_results(conn: sqlite3.Connection, body: str, params: object, schema: Schema,
                   allowed: set[tuple[str, str]], output_db: Path, limits: QueryLimits,
                   cancel: threading.Event | None) -> int:
    tmp = output_db.with_name(f".{output_db.name}.{uuid.uuid4().hex}.tmp")
    watch = _Watch(limits.timeout_s, cancel, limits.max_result_bytes)
    attached = False
    try:
        try:
            conn.execute(f"ATTACH DATABASE ? AS {_OUT}", (str(tmp),))
        except sqlite3.Error as exc:
            if is_full(output_db.parent):
                raise storage_full("creating the query results") from exc
            raise QueryFailure(f"cannot create the results file in {output_db.parent}",
                               code="INTERNAL_ERROR") from exc
        attached = True
        _prepare_output(conn, limits)
        ctas = (f"CREATE TABLE {_OUT}.results AS SELECT * FROM (\n{body}\n) "
                f"LIMIT {limits.max_rows + 1}")
        reads = _analyse(conn, f"EXPLAIN {ctas}", params, schema, QueryAuthorizer(_OUT))
        if not reads <= allowed:  # the wrapped statement must read nothing new
            extra = ", ".join(f"{t}.{c}" for t, c in sorted(reads - allowed))
            raise QueryFailure(f"no permission covers {extra}", code="PERMISSION_DENIED")
        _run_guarded(conn, ctas, params, watch, tmp.parent)
        rows = _row_count(conn)
        if rows > limits.max_rows:
            raise QueryFailure(f"the query returned more than {limits.max_rows} rows",
                               code="ROW_LIMIT")
        finalise_results(conn, _OUT)
        conn.execute(f"DETACH DATABASE {_OUT}")
        attached = False
        _check_size(tmp, limits)
        try:
            os.link(tmp, output_db)  # fails if output_db appeared meanwhile: never clobber
        except OSError as exc:
            if is_disk_full(exc):
                raise storage_full("writing the query results") from exc
            raise
        return rows
    finally:
        if attached:
            conn.execute(f"DETACH DATABASE {_OUT}")
        for leftover in (tmp, tmp.with_name(tmp.name + "-journal")):
            leftover.unlink(missing_ok=True)


def _row_count(conn: sqlite3.Connection) -> int:
    """The rows the CTAS wrote, without scanning them (count(*) read 1M rows in ~18 ms).

    A table CREATE ... AS SELECT just made numbers its rows 1..n (no row was ever
    deleted), so its largest rowid is its row count, one b-tree descent away. A
    result column may be named like a rowid alias and hide it: the first alias no
    column shadows is used, and count(*) when all three are taken.
    """
    names = {row[0].lower() for row in
             conn.execute(f"SELECT name FROM pragma_table_info('results', '{_OUT}')")}
    alias = next((a for a in ("rowid", "_rowid_", "oid") if a not in names), None)
    if alias is None:
        return conn.execute(f"SELECT count(*) FROM {_OUT}.results").fetchone()[0]
    return conn.execute(f"SELECT coalesce(max({alias}), 0) FROM {_OUT}.results").fetchone()[0]


def _prepare_output(conn: sqlite3.Connection, limits: QueryLimits) -> None:
    # A scratch file renamed into place only when complete: no journal, no fsync.
    conn.execute(f"PRAGMA {_OUT}.page_size = {_PAGE_SIZE}")
    conn.execute(f"PRAGMA {_OUT}.journal_mode = OFF")
    conn.execute(f"PRAGMA {_OUT}.synchronous = OFF")
    # SQLite itself stops the file growing past the size limit (SQLITE_FULL).
    max_pages = max(2, limits.max_result_bytes // _PAGE_SIZE)
    conn.execute(f"PRAGMA {_OUT}.max_page_count = {max_pages}")


def _run_guarded(conn: sqlite3.Connection, sql: str, params: object, watch: _Watch,
                 out_dir: Path) -> None:
    authorizer = QueryAuthorizer(_OUT)
    conn.set_authorizer(authorizer)
    conn.set_progress_handler(watch, _PROGRESS_OPS)
    try:
        conn.execute(sql, params)
    except sqlite3.Error as exc:
        if watch.stopped is not None:
            raise watch.stopped from exc
        if is_disk_full(exc):
            # SQLITE_FULL is both max_page_count (the cap) and ENOSPC (the disk):
            # a disk with (almost) no space left is the disk's fault.
            if is_full(out_dir):
                raise storage_full("writing the query results") from exc
            raise QueryFailure(f"the results are over {watch.max_bytes} bytes",
                               code="RESULT_TOO_LARGE") from exc
        raise _translate(exc, authorizer, conn) from exc
    finally:
        conn.set_progress_handler(None, 0)
        conn.set_authorizer(None)


def _check_size(path: Path, limits: QueryLimits) -> None:
    size = path.stat().st_size
    if size > limits.max_result_bytes:
        raise QueryFailure(f"the results are {size} bytes, over the limit of "
                           f"{limits.max_result_bytes}", code="RESULT_TOO_LARGE")


