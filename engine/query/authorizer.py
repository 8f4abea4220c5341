"""SQLite authorizer: the enforcement point for what a query may do and read.

SQLite calls the authorizer while it compiles a statement, once per action:
every column read (select list, WHERE, JOIN ON, ORDER BY, GROUP BY,
subqueries, CTEs and the tables behind views), every function call, every
write or schema change. `QueryAuthorizer` records the reads and refuses
everything except reading the main database's own tables and calling the
functions in `ALLOWED_FUNCTIONS`. The first refusal is kept so the caller can
raise a QUERY_INVALID that names it.
"""

from __future__ import annotations

import sqlite3

__all__ = ["ACTION_NAMES", "ALLOWED_FUNCTIONS", "QueryAuthorizer"]

# Every SQL function a query may call. Anything else is refused, notably
# load_extension, the sqlite_* introspection functions, randomblob/zeroblob
# (memory bombs) and every table-valued function (json_each, pragma_*).
ALLOWED_FUNCTIONS: frozenset[str] = frozenset(
    # aggregates
    ["avg", "count", "group_concat", "max", "min", "sum", "total", "string_agg"]
    # window functions
    + ["row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead", "first_value", "last_value", "nth_value"]
    # core scalar functions
    + ["abs", "char", "coalesce", "concat", "concat_ws", "format", "glob", "hex", "ifnull", "iif", "instr", "length", "like", "likelihood", "likely", "lower", "ltrim", "nullif", "octet_length", "printf", "quote", "random", "replace", "round", "rtrim", "sign", "substr", "substring", "trim", "typeof", "unhex", "unicode", "unlikely", "upper"]
    # math functions (present when SQLite is built with them)
    + ["acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "ceil", "ceiling", "cos", "cosh", "degrees", "exp", "floor", "ln", "log", "log10", "log2", "mod", "pi", "pow", "power", "radians", "sin", "sinh", "sqrt", "tan", "tanh", "trunc"]
    # date and time
    + ["date", "time", "datetime", "julianday", "unixepoch", "strftime", "timediff"]
    # JSON scalar and aggregate functions, and the -> / ->> operators
    + ["json", "json_array", "json_array_length", "json_error_position", "json_extract", "json_insert", "json_object", "json_patch", "json_quote", "json_remove", "json_replace", "json_set", "json_type", "json_valid", "json_group_array", "json_group_object", "->", "->>"]
)

ACTION_NAMES: dict[int, str] = {
    1: "CREATE INDEX", 2: "CREATE TABLE", 3: "CREATE TEMP INDEX", 4: "CREATE TEMP TABLE",
    5: "CREATE TEMP TRIGGER", 6: "CREATE TEMP VIEW", 7: "CREATE TRIGGER", 8: "CREATE VIEW",
    9: "DELETE", 10: "DROP INDEX", 11: "DROP TABLE", 12: "DROP TEMP INDEX",
    13: "DROP TEMP TABLE", 14: "DROP TEMP TRIGGER", 15: "DROP TEMP VIEW", 16: "DROP TRIGGER",
    17: "DROP VIEW", 18: "INSERT", 19: "PRAGMA", 20: "READ", 21: "SELECT", 22: "TRANSACTION",
    23: "UPDATE", 24: "ATTACH", 25: "DETACH", 26: "ALTER TABLE", 27: "REINDEX",
    28: "ANALYZE", 29: "CREATE VIRTUAL TABLE", 30: "DROP VIRTUAL TABLE", 31: "FUNCTION",
    32: "SAVEPOINT", 33: "RECURSIVE",
}

_READ, _SELECT, _FUNCTION, _RECURSIVE = 20, 21, 31, 33
_INSERT, _CREATE_TABLE, _UPDATE = 18, 2, 23

# Internal tables: the schema itself is not data anyone was granted.
_INTERNAL_PREFIX = "sqlite_"


class QueryAuthorizer:
    """Collects (table, column) reads; refuses every other kind of action.

    `output_schema`: the attached database the engine itself writes
    `results` into (pass 2); only those writes are let through, never reads.
    """

    def __init__(self, output_schema: str | None = None):
        self.output_schema = output_schema
        self.reads: set[tuple[str, str]] = set()
        self.refusal: str | None = None

    def __call__(self, action: int, arg1: str | None, arg2: str | None,
                 db_name: str | None, _source: str | None) -> int:
        reason = self._check(action, arg1, arg2, db_name)
        if reason is None:
            return sqlite3.SQLITE_OK
        if self.refusal is None:
            self.refusal = reason
        return sqlite3.SQLITE_DENY

    def _check(self, action: int, arg1: str | None, arg2: str | None,
               db_name: str | None) -> str | None:
        if action in (_SELECT, _RECURSIVE):
            return None
        if action == _FUNCTION:
            name = (arg2 or "").lower()
            return None if name in ALLOWED_FUNCTIONS else f"function {name}() is not allowed"
        if self.output_schema is not None and db_name == self.output_schema:
            return self._check_output(action, arg1, arg2)
        if action == _READ:
            return self._check_read(arg1 or "", arg2 or "", db_name)
        if action == _UPDATE and (arg1 or "").lower() == "sqlite_master":
            # A SELECT only "updates" the schema when it instantiates a
            # table-valued function (json_each, pragma_table_info, ...).
            return "table-valued functions are not allowed"
        name = ACTION_NAMES.get(action, f"action {action}")
        return f"{name} is not allowed; only a single SELECT statement is"

    def _check_read(self, table: str, column: str, db_name: str | None) -> str | None:
        # db_name is None only for the table-level read SQLite reports for
        # count(*) / rowid; those name a table of the schema being compiled.
        if db_name not in (None, "main"):
            return f"reading from database {db_name} is not allowed"
        if table.lower().startswith(_INTERNAL_PREFIX):
            return f"reading the internal table {table} is not allowed"
        self.reads.add((table, "rowid" if column.upper() == "ROWID" else column))
        return None

    def _check_output(self, action: int, arg1: str | None, arg2: str | None) -> str | None:
        table = (arg1 or "").lower()
        if action == _CREATE_TABLE and table == "results":
            return None
        if action in (_INSERT, _UPDATE) and table in ("results", "sqlite_master"):
            return None
        if action == _READ and table == "sqlite_master" and (arg2 or "").upper() == "ROWID":
            return None
        return f"access to database {self.output_schema} is not allowed"
