"""run_query: the query step in a child process, so no query can outgrow its limits.

A single SQLite step (one `printf('%.*c', 2000000000, 'x')`) never returns to
the progress handler, so neither the time limit nor cancel could stop it in
the engine's own process, and its memory was the engine's. Here each query
runs in a fresh `python -m engine.query.child` (see child.py) whose memory
is capped (SQLite's hard heap limit + RLIMIT_AS); the engine waits on its
pipe and kills it at the deadline (plus a short grace for the child's own,
cleaner, timeout) or within `_POLL_S` of a cancel. One spare child is kept
started, so a query does not wait for the interpreter and imports (~200 ms).
"""

from __future__ import annotations

import atexit
import json
import os
import pickle
import select
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

__all__ = ["run_query"]

_GRACE_S = 0.5  # after the deadline, for the child to report QUERY_TIMEOUT itself
_POLL_S = 0.05  # how often cancel is looked at
_MAX_ANSWER_BYTES = 8 * 1024 * 1024
_MAX_MESSAGE_CHARS = 500
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
    child = _SPARES.take()
    answer: dict | None = None
    try:
        answer = _exchange(child, request, time.monotonic() + limits.timeout_s, cancel)
    finally:
        _reap(child)
        if answer is None or "report" not in answer:
            _remove_partial(output_db)
    return _decode(answer)


class _Stopped(Exception):
    def __init__(self, failure: QueryFailure):
        self.failure = failure


def _cancelled() -> QueryFailure:
    return QueryFailure("the query was cancelled", code="CANCELLED")


def _exchange(child: subprocess.Popen, request: bytes, deadline: float,
              cancel: threading.Event | None) -> dict:
    """Send the request, read the answer; kill the child at the deadline or on cancel."""
    assert child.stdin is not None and child.stdout is not None
    to_child, from_child = child.stdin.fileno(), child.stdout.fileno()
    os.set_blocking(to_child, False)
    pending, answer = memoryview(request), bytearray()
    try:
        while True:
            if cancel is not None and cancel.is_set():
                raise _Stopped(_cancelled())
            left = deadline + _GRACE_S - time.monotonic()
            if left <= 0:
                raise _Stopped(QueryFailure("the query ran past its time limit", code="QUERY_TIMEOUT"))
            writers = [to_child] if pending else []
            readable, writable, _ = select.select([from_child], writers, [], min(_POLL_S, left))
            if writable:
                pending = pending[_write(to_child, pending):]
                if not pending:
                    child.stdin.close()
            if readable:
                chunk = os.read(from_child, 65536)
                if not chunk:
                    break
                answer += chunk
                if len(answer) > _MAX_ANSWER_BYTES:
                    raise _Stopped(QueryFailure("the query process answered too much", code="INTERNAL_ERROR"))
    except _Stopped as stop:
        child.kill()
        raise stop.failure from None
    return _parse(answer, child)


def _write(fd: int, data: memoryview) -> int:
    try:
        return os.write(fd, data)
    except BlockingIOError:
        return 0


def _parse(answer: bytearray, child: subprocess.Popen) -> dict:
    try:
        parsed = json.loads(answer)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return parsed
    code = child.wait(timeout=5)
    raise QueryFailure(f"the query process ended without an answer (exit status {code})",
                       code="INTERNAL_ERROR")


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


def _reap(child: subprocess.Popen) -> None:
    for stream in (child.stdin, child.stdout):
        if stream is not None and not stream.closed:
            stream.close()
    try:
        child.wait(timeout=2)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _remove_partial(output_db: Path) -> None:
    # A killed child cannot clean up: its scratch file, and the result if it
    # was linked into place before the kill (output_db did not exist before).
    for leftover in output_db.parent.glob(f".{output_db.name}.*.tmp*"):
        leftover.unlink(missing_ok=True)
    output_db.unlink(missing_ok=True)


class _Spares:
    """Keeps one query process started and waiting, so the next query need not wait for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spare: subprocess.Popen | None = None
        atexit.register(self.close)

    def take(self) -> subprocess.Popen:
        with self._lock:
            child = self._spare
            if child is None or child.poll() is not None:
                child = _start_child()
            self._spare = _start_child()
            return child

    def close(self) -> None:
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            _reap(spare)  # EOF on its stdin: it exits without doing anything


def _start_child() -> subprocess.Popen:
    # Not the engine's environment (it may hold the signing key): only what
    # runs this very engine package, wherever it was imported from.
    path = os.pathsep.join(p for p in (_ENGINE_ROOT, os.environ.get("PYTHONPATH")) if p)
    env = {"PYTHONPATH": path, "PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C.UTF-8"}
    return subprocess.Popen(
        [sys.executable, "-m", "engine.query.child"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=_ENGINE_ROOT, env=env, close_fds=True,
    )


_SPARES = _Spares()
