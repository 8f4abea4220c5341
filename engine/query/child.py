"""The query process: `python -m engine.query.child` runs one query and exits.

Started ahead of need by isolate.py (so the imports are paid before a job
waits), it blocks reading one pickled request from stdin (EOF with nothing:
exit quietly), bounds its own memory, runs `execute_query` and writes one
JSON answer to its original stdout: ``{"report": {...}}`` or
``{"code": ..., "message": ...}``. JSON, not pickle, goes back: the engine
must not unpickle what a process running hostile SQL wrote.
"""

from __future__ import annotations

import ctypes
import json
import os
import pickle
import resource
import sqlite3
import sys
from typing import Any

from engine.errors import JobFailure

from .execute import execute_query
from .statement import check_statement

__all__ = ["bound_memory", "main"]

# Address space for the interpreter itself on top of SQLite's heap limit.
_PYTHON_SLACK_BYTES = 64 * 1024 * 1024


def bound_memory(limit_bytes: int) -> None:
    """SQLite's hard heap limit (clean SQLITE_NOMEM) plus an address-space backstop."""
    try:
        import _sqlite3  # the extension module: its libsqlite3 is the one queries use

        lib = ctypes.CDLL(_sqlite3.__file__)
        lib.sqlite3_hard_heap_limit64.argtypes = [ctypes.c_int64]
        lib.sqlite3_hard_heap_limit64.restype = ctypes.c_int64
        lib.sqlite3_hard_heap_limit64(limit_bytes)
    except (OSError, AttributeError):  # pragma: no cover - SQLite older than 3.31
        pass
    current = _address_space_bytes()
    ceiling = current + limit_bytes + _PYTHON_SLACK_BYTES
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, ceiling))


def _address_space_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0  # pragma: no cover - not Linux


def _answer(request: dict[str, Any]) -> dict[str, Any]:
    try:
        report = execute_query(
            request["source_db"], request["sql"], request["params"], request["permissions"],
            request["output_db"], request["limits"],
            refiner_id=request["refiner_id"], grantee=request["grantee"],
        )
    except JobFailure as exc:
        return {"code": exc.code, "message": exc.message}
    except FileExistsError:
        return {"code": "OUTPUT_EXISTS", "message": "output database already exists"}
    except MemoryError:
        return {"code": "QUERY_OUT_OF_MEMORY", "message": "the query needed more memory than one query may use"}
    except Exception as exc:  # noqa: BLE001 - the type only: a message may quote data
        return {"code": "INTERNAL_ERROR", "message": f"unexpected {type(exc).__name__} in the query process"}
    return {"report": {"columns": [list(c) for c in report.columns],
                       "permissions_used": list(report.permissions_used),
                       "price": str(report.price), "row_count": report.row_count}}


def _warm_up() -> None:
    # Paid while the process waits as the spare, not by the next query: sqlglot
    # builds its SQLite dialect on first use, SQLite opens its first connection.
    check_statement("SELECT 1")
    sqlite3.connect(":memory:").close()


def main() -> int:
    # The answer channel is our own copy of stdout; anything else printed goes to stderr.
    answer_fd = os.dup(1)
    os.dup2(2, 1)
    _warm_up()
    data = sys.stdin.buffer.read()
    if not data:
        return 0  # a spare the engine never used
    request = pickle.loads(data)  # from the engine that started us, nobody else
    bound_memory(request["limits"].max_memory_bytes)
    reply = json.dumps(_answer(request)).encode()
    with os.fdopen(answer_fd, "wb") as out:
        out.write(reply)
    return 0


if __name__ == "__main__":
    status = main()
    sys.stderr.flush()
    # Skip the interpreter's teardown (100+ ms of freeing sqlglot's modules):
    # the answer is written and the engine is waiting for the exit.
    os._exit(status)
