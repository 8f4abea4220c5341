"""The query processes: a zygote that forks one fresh process per query.

`python -m engine.query.child FD` is started once by isolate.py. It imports
and warms up everything a query needs (sqlglot, sqlite3), then waits on its
control socket (FD). For each request the engine sends one byte carrying a
socket (SCM_RIGHTS); the zygote forks, answers the child's pid and goes on
waiting. The forked child bounds its own memory, reads one pickled request
from that socket, runs `execute_query` and writes one JSON answer back:
``{"report": {...}}`` or ``{"code": ..., "message": ...}``. JSON, not
pickle, goes back: the engine must not unpickle what a process running
hostile SQL wrote. A fork costs about a millisecond; a new interpreter with
these imports about 200 ms.

The zygote exits when the engine closes the control socket (or dies); its
children are killed when it goes (PR_SET_PDEATHSIG) and reaped by the kernel.
"""

from __future__ import annotations

import ctypes
import json
import os
import pickle
import resource
import signal
import socket
import sqlite3
import struct
import sys
from typing import Any

from engine.errors import JobFailure

from .execute import execute_query
from .statement import check_statement

__all__ = ["bound_memory", "main"]

# Address space for the interpreter itself on top of SQLite's heap limit.
_PYTHON_SLACK_BYTES = 64 * 1024 * 1024
_PR_SET_PDEATHSIG = 1


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
    ceiling = _address_space_bytes() + limit_bytes + _PYTHON_SLACK_BYTES
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


def _run_one(conn: socket.socket) -> None:
    """In the forked child: one request in, one answer out."""
    try:
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    chunks = []
    while chunk := conn.recv(1 << 16):
        chunks.append(chunk)
    request = pickle.loads(b"".join(chunks))  # from the engine that started us, nobody else
    bound_memory(request["limits"].max_memory_bytes)
    conn.sendall(json.dumps(_answer(request)).encode())
    conn.close()


def _warm_up() -> None:
    # Paid once by the zygote, not by every query: sqlglot builds its SQLite
    # dialect on first use, SQLite opens its first connection.
    check_statement("SELECT 1")
    sqlite3.connect(":memory:").close()


def serve(control: socket.socket) -> None:
    """The zygote's loop: fork one child per request until the engine hangs up."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
    while True:
        try:
            message, fds, _flags, _addr = socket.recv_fds(control, 1, 1)
        except OSError:
            return
        if not message:
            return  # the engine closed its end
        if not fds:
            continue
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                control.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                _run_one(socket.socket(fileno=fds[0]))
            except BaseException:  # noqa: BLE001 - no traceback: it may quote data
                status = 1
            os._exit(status)  # never the zygote's loop, never the interpreter's teardown
        os.close(fds[0])
        control.sendall(struct.pack("!i", pid))


def main() -> int:
    control = socket.socket(fileno=int(sys.argv[1]))
    _warm_up()
    serve(control)
    return 0


if __name__ == "__main__":
    status = main()
    sys.stderr.flush()
    os._exit(status)  # skip the teardown of sqlglot's modules (100+ ms)
