"""The query processes: a zygote that forks one fresh process per query.

`python -m engine.query.child FD` is started once by isolate.py. It imports
and warms up everything a query needs (sqlglot, sqlite3), then waits on its
control socket (FD). For each request the engine sends one byte carrying a
socket (SCM_RIGHTS); the zygote hands that socket to its *spare* child,
answers the spare's pid and only then forks the next spare, so neither the
fork nor the new process's first touches of its memory (copy-on-write
faults, the SQLite library handle) are on a query's path: the spare did
them while it waited. A spare has run no query, and each runs one and
exits, so no job's query shares a process with another's. The child
bounds its own memory, reads one pickled request
from that socket, runs `execute_query` and writes one JSON answer back:
``{"report": {...}}`` or ``{"code": ..., "message": ...}``. JSON, not
pickle, goes back: the engine must not unpickle what a process running
hostile SQL wrote. A fork costs about a millisecond; a new interpreter with
these imports about 200 ms; a spare that is ready costs the query neither.

The zygote exits when the engine closes the control socket (or dies); its
children are killed when it goes (PR_SET_PDEATHSIG) and reaped by the kernel.
"""

from __future__ import annotations

import ctypes
import json
import os
import pickle
import resource
import shutil
import signal
import socket
import sqlite3
import struct
import sys
import tempfile
from contextlib import closing
from pathlib import Path
from typing import Any

from engine.errors import JobFailure
from registry_client import sealing

from .execute import analyse_query, execute_query
from .model import Permission, QueryLimits, SealedSource
from .sealed import open_sealed, sealed_length
from .statement import check_statement

__all__ = ["bound_memory", "main"]

# Address space for the interpreter itself on top of SQLite's heap limit.
_PYTHON_SLACK_BYTES = 64 * 1024 * 1024
_PR_SET_PDEATHSIG = 1
_ACK_S = 5.0  # a spare answers at once; this only bounds a stuck one


_sqlite_lib: ctypes.CDLL | None = None


def _sqlite_library() -> ctypes.CDLL | None:
    """The libsqlite3 queries use, loaded once per process (a spare loads it while waiting)."""
    global _sqlite_lib
    if _sqlite_lib is None:
        try:
            import _sqlite3  # the extension module: its libsqlite3 is the one queries use

            lib = ctypes.CDLL(_sqlite3.__file__)
            lib.sqlite3_hard_heap_limit64.argtypes = [ctypes.c_int64]
            lib.sqlite3_hard_heap_limit64.restype = ctypes.c_int64
            _sqlite_lib = lib
        except (OSError, AttributeError):  # pragma: no cover - SQLite older than 3.31
            return None
    return _sqlite_lib


def bound_memory(limit_bytes: int, data_bytes: int = 0) -> None:
    """SQLite's hard heap limit (clean SQLITE_NOMEM) plus an address-space backstop.

    `data_bytes`: a sealed database about to be opened in memory. SQLite's copy of
    it counts on its heap and, while it is decrypted, a second copy in Python's:
    the query keeps `limit_bytes` of its own on top.
    """
    lib = _sqlite_library()
    if lib is not None:
        lib.sqlite3_hard_heap_limit64(limit_bytes + data_bytes)
    ceiling = _address_space_bytes() + limit_bytes + 2 * data_bytes + _PYTHON_SLACK_BYTES
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, ceiling))


def _address_space_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0  # pragma: no cover - not Linux


def _answer(request: dict[str, Any]) -> dict[str, Any]:
    try:
        if request.get("schema"):  # names and declared types only, never a row
            from engine.refiner_schema import read_schema

            return {"schema": [[t, [list(c) for c in cols]] for t, cols in read_schema(request["source_db"])]}
        if request.get("analyse"):  # the quote: compile and price, never run
            report = analyse_query(
                request["source_db"], request["sql"], request["params"], request["permissions"],
                request["limits"], refiner_id=request["refiner_id"], grantee=request["grantee"],
            )
        else:
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


def _open_and_answer(request: dict[str, Any]) -> dict[str, Any]:
    """Bound memory, open a sealed source in it (never on disk), answer."""
    source = request["source_db"]
    try:
        if isinstance(source, SealedSource):
            bound_memory(request["limits"].max_memory_bytes, sealed_length(source))
            request["source_db"] = open_sealed(source)
        else:
            bound_memory(request["limits"].max_memory_bytes)
    except JobFailure as exc:
        return {"code": exc.code, "message": exc.message}
    except MemoryError:
        return {"code": "QUERY_OUT_OF_MEMORY", "message": "the refiner's database does not fit in query memory"}
    return _answer(request)


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def _run_one(conn: socket.socket) -> None:
    """In the forked child: one request in, one answer out."""
    chunks = []
    while chunk := conn.recv(1 << 16):
        chunks.append(chunk)
    request = pickle.loads(b"".join(chunks))  # from the engine that started us, nobody else
    conn.sendall(json.dumps(_open_and_answer(request)).encode())
    conn.close()


def _warm_up() -> None:
    # Paid once by the zygote, not by every query: sqlglot builds its SQLite
    # dialect on first use, SQLite opens its first connection, OpenSSL looks up
    # AES-GCM on its first use in a process (else paid by every sealed source's query).
    check_statement("SELECT 1")
    sqlite3.connect(":memory:").close()
    key = sealing.new_data_key()
    sealing.open_bytes(sealing.seal_bytes(b"warm-up", key=key), key=key)


def _prefault() -> bool:
    """In a spare, while it waits: what a query's process would otherwise do first (True: done).

    A query's first run in a new process copies every page it touches (copy-on-write
    after the fork): one throwaway query does that now, not during the job's query.
    Its source is a two-row database in this process's memory (a file on disk would
    cost a create, a journal and fsyncs: ~5-10 ms of CPU a query for nothing); its
    output is a file, as a job's is. No job's data is read here.
    """
    _sqlite_library()
    work = Path(tempfile.mkdtemp(prefix="c2d-spare-"))
    try:
        with closing(sqlite3.connect(":memory:", isolation_level=None)) as source:
            source.execute("CREATE TABLE t (id INTEGER, x TEXT)")
            source.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
            execute_query(source, "SELECT id, x FROM t WHERE id = ? ORDER BY x", [1],
                          [Permission(1, None, 1, "t", "", 0, True)], work / "out.db", QueryLimits())
        return True
    except Exception:  # noqa: BLE001 - a warm-up that fails costs speed, never a query
        return False
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _spare_main(control: socket.socket, chan: socket.socket) -> int:
    """A spare child: prefault, then wait for the one request socket the zygote hands over."""
    control.close()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    _die_with_parent()
    _prefault()
    message, fds, _flags, _addr = socket.recv_fds(chan, 1, 1)
    if not message or not fds:
        return 0  # the zygote is going away
    chan.sendall(b"k")  # the zygote lets go of the request only once it is ours
    chan.close()
    _run_one(socket.socket(fileno=fds[0]))
    return 0


class _Spare:
    """The zygote's handle on its spare child: its pid and the channel its request goes down."""

    def __init__(self, control: socket.socket):
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                ours.close()
                status = _spare_main(control, theirs)
            except BaseException:  # noqa: BLE001, S110 - no traceback: it may quote data
                pass
            os._exit(status)  # never the zygote's loop, never the interpreter's teardown
        theirs.close()
        self.pid, self.chan = pid, ours

    def hand_over(self, fd: int) -> None:
        """Give the spare its request socket; OSError when the spare is gone.

        The spare acknowledges: one that died (even as the socket was being sent)
        never does, and the request goes to a fresh spare instead of being lost.
        One too slow to answer is killed first, so two processes never share a request.
        """
        try:
            socket.send_fds(self.chan, [b"q"], [fd])
            self.chan.settimeout(_ACK_S)
            if self.chan.recv(1) != b"k":
                raise ConnectionError("the spare query process is gone")
        except OSError:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            raise
        finally:
            self.chan.close()


def serve(control: socket.socket) -> None:
    """The zygote's loop: one spare child per request, the next one forked after answering."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
    spare = _Spare(control)
    while True:
        try:
            message, fds, _flags, _addr = socket.recv_fds(control, 1, 1)
        except OSError:
            return
        if not message:
            return  # the engine closed its end
        if not fds:
            continue
        try:
            spare.hand_over(fds[0])
        except OSError:  # it died waiting (killed, OOM): a fresh one takes the request
            spare = _Spare(control)
            spare.hand_over(fds[0])
        finally:
            os.close(fds[0])
        control.sendall(struct.pack("!i", spare.pid))
        spare = _Spare(control)


def main() -> int:
    control = socket.socket(fileno=int(sys.argv[1]))
    _warm_up()
    serve(control)
    return 0


if __name__ == "__main__":
    status = main()
    sys.stderr.flush()
    os._exit(status)  # skip the teardown of sqlglot's modules (100+ ms)
