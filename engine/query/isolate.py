"""run_query: the query step in a child process, so no query can outgrow its limits.

A single SQLite step (one `printf('%.*c', 2000000000, 'x')`) never returns to
the progress handler, so neither the time limit nor cancel could stop it in
the engine's own process, and its memory was the engine's. Here each query
runs in a fresh process forked by the query zygote (`python -m
engine.query.child`, see child.py), whose memory is capped (SQLite's hard
heap limit + RLIMIT_AS). The engine waits on that process's socket and kills
it at the deadline (plus a short grace for the child's own, cleaner,
timeout) or within `_POLL_S` of a cancel. The zygote is started on first use
and restarted if it dies; it never runs a query itself.
"""

from __future__ import annotations

import atexit
import json
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import engine
from engine.errors import FAILURE_CODES, QueryFailure, StorageFull

from .model import AccessReport, Permission, QueryLimits
from .statement import Params, check_params

__all__ = ["analyse_query", "run_query"]

_GRACE_S = 0.5  # after the deadline, for the child to report QUERY_TIMEOUT itself
_POLL_S = 0.05  # how often cancel is looked at
_MAX_ANSWER_BYTES = 8 * 1024 * 1024
_MAX_MESSAGE_CHARS = 500
_ZYGOTE_ANSWER_S = 30.0  # its first answer waits for its imports, on a busy machine too
_DEFAULT_LIMITS = QueryLimits()
_ENGINE_ROOT = str(Path(engine.__file__).resolve().parent.parent)


def run_query(
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

    Same contract as `execute.execute_query` (see docs/query.md), with limits
    that hold inside a single SQLite step: QUERY_TIMEOUT at `timeout_s`,
    CANCELLED within ~50 ms of `cancel`, QUERY_OUT_OF_MEMORY past
    `max_memory_bytes`, and the engine's own memory untouched.
    """
    source_db, output_db = Path(source_db).absolute(), Path(output_db).absolute()
    if output_db.exists() or output_db.is_symlink():
        raise FileExistsError(f"output database already exists: {output_db}")
    request = pickle.dumps({
        "source_db": source_db, "sql": sql, "params": check_params(params),
        "permissions": list(permissions), "output_db": output_db, "limits": limits,
        "refiner_id": refiner_id, "grantee": grantee,
    })
    if cancel is not None and cancel.is_set():
        raise _cancelled()
    pid, conn = _ZYGOTE.fork()
    answer: dict | None = None
    try:
        answer = _exchange(pid, conn, request, time.monotonic() + limits.timeout_s, cancel)
    finally:
        conn.close()
        if answer is None or "report" not in answer:
            _remove_partial(output_db)
    return _decode(answer)


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
    """`execute.analyse_query` in a fresh query process: the same bounds as `run_query`.

    Compiling hostile SQL is still SQLite work on the refiner's file, so it
    runs where time and memory are capped, never in the engine's process.
    """
    request = pickle.dumps({
        "source_db": Path(source_db).absolute(), "sql": sql, "params": check_params(params),
        "permissions": list(permissions), "output_db": None, "limits": limits,
        "refiner_id": refiner_id, "grantee": grantee, "analyse": True,
    })
    pid, conn = _ZYGOTE.fork()
    try:
        answer = _exchange(pid, conn, request, time.monotonic() + limits.timeout_s, None)
    finally:
        conn.close()
    return _decode(answer)


class _Stopped(Exception):
    def __init__(self, failure: QueryFailure):
        self.failure = failure


def _cancelled() -> QueryFailure:
    return QueryFailure("the query was cancelled", code="CANCELLED")


def _exchange(pid: int, conn: socket.socket, request: bytes, deadline: float,
              cancel: threading.Event | None) -> dict:
    """Send the request, read the answer; kill the child at the deadline or on cancel."""
    conn.setblocking(False)
    pending, answer = memoryview(request), bytearray()
    try:
        while True:
            if cancel is not None and cancel.is_set():
                raise _Stopped(_cancelled())
            left = deadline + _GRACE_S - time.monotonic()
            if left <= 0:
                raise _Stopped(QueryFailure("the query ran past its time limit", code="QUERY_TIMEOUT"))
            readable, writable, _ = select.select([conn], [conn] if pending else [], [], min(_POLL_S, left))
            if writable:
                pending = pending[_send(conn, pending):]
                if not pending:
                    conn.shutdown(socket.SHUT_WR)
            if readable:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                answer += chunk
                if len(answer) > _MAX_ANSWER_BYTES:
                    raise _Stopped(QueryFailure("the query process answered too much", code="INTERNAL_ERROR"))
    except _Stopped as stop:
        _kill(pid)
        raise stop.failure from None
    return _parse(answer)


def _send(conn: socket.socket, data: memoryview) -> int:
    try:
        return conn.send(data)
    except BlockingIOError:
        return 0


def _kill(pid: int) -> None:
    """SIGKILL the query process and wait (briefly) until it is gone, so it writes nothing more."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)  # the zygote ignores SIGCHLD: the kernel reaps it at once
        except ProcessLookupError:
            return
        time.sleep(0.005)


def _parse(answer: bytearray) -> dict:
    try:
        parsed = json.loads(answer)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return parsed
    raise QueryFailure("the query process ended without an answer", code="INTERNAL_ERROR")


def _decode(answer: dict | None) -> AccessReport:
    assert answer is not None
    report = answer.get("report")
    if isinstance(report, dict):
        return AccessReport(
            columns=tuple((str(t), str(c)) for t, c in report["columns"]),
            permissions_used=tuple(int(i) for i in report["permissions_used"]),
            price=int(report["price"]),
            row_count=int(report["row_count"]),
        )
    code, message = str(answer.get("code")), str(answer.get("message"))[:_MAX_MESSAGE_CHARS]
    if code == "OUTPUT_EXISTS":
        raise FileExistsError(message)
    if code == StorageFull.code:
        raise StorageFull(message)
    if code not in FAILURE_CODES:
        code, message = "INTERNAL_ERROR", "the query process gave an unknown answer"
    raise QueryFailure(message, code=code)


def _remove_partial(output_db: Path) -> None:
    # A killed child cannot clean up: its scratch file, and the result if it
    # was linked into place before the kill (output_db did not exist before).
    for leftover in output_db.parent.glob(f".{output_db.name}.*.tmp*"):
        leftover.unlink(missing_ok=True)
    output_db.unlink(missing_ok=True)


class _Zygote:
    """The engine's handle on the query zygote: start it once, ask it for a fresh child per query."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._control: socket.socket | None = None
        atexit.register(self.close)

    def fork(self) -> tuple[int, socket.socket]:
        """(pid, socket) of a new query process; restarts a dead zygote once."""
        ours, theirs = socket.socketpair()
        try:
            with self._lock:
                try:
                    return self._ask(theirs), ours
                except OSError:
                    self._close_locked()
                    return self._ask(theirs), ours
        except OSError as exc:
            ours.close()
            raise QueryFailure("the query process could not be started", code="INTERNAL_ERROR") from exc
        finally:
            theirs.close()

    def _ask(self, theirs: socket.socket) -> int:
        if self._control is None:
            self._start_locked()
        assert self._control is not None
        socket.send_fds(self._control, [b"q"], [theirs.fileno()])
        raw = b""
        while len(raw) < 4:
            chunk = self._control.recv(4 - len(raw))
            if not chunk:
                raise ConnectionError("the query zygote hung up")
            raw += chunk
        return struct.unpack("!i", raw)[0]

    def _start_locked(self) -> None:
        ours, theirs = socket.socketpair()
        # Not the engine's environment (it may hold the signing key): only what
        # runs this very engine package, wherever it was imported from.
        path = os.pathsep.join(p for p in (_ENGINE_ROOT, os.environ.get("PYTHONPATH")) if p)
        env = {"PYTHONPATH": path, "PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C.UTF-8"}
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "engine.query.child", str(theirs.fileno())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd=_ENGINE_ROOT, env=env,
                pass_fds=[theirs.fileno()],
            )
        finally:
            theirs.close()
        ours.settimeout(_ZYGOTE_ANSWER_S)
        self._control = ours

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._control is not None:
            self._control.close()  # EOF: the zygote exits
            self._control = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid


_ZYGOTE = _Zygote()
