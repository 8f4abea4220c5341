"""Hostile SQL stays inside its limits: time, cancel and memory hold inside one SQLite step.

Real SQLite files, the real query process (engine.query.run_query). The
printf query below spends its whole time inside a single VM step, where no
progress handler ever runs: only the child process's kill can stop it.
"""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from engine.errors import JobFailure
from engine.query import Permission, QueryLimits, run_query

ALL = [Permission(1, None, 1, "", "", 0, True)]
PRINTF_BOMB = ("SELECT printf('%.*c%.*c%.*c%.*c', 2000000000,'x',2000000000,'x',"
               "2000000000,'x',2000000000,'x')")
# Twenty 8 MB values that must all be held at once to be sorted.
SORT_BOMB = ("SELECT x FROM (WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM r WHERE i<20) "
             "SELECT printf('%.*c', 8000000, char(64+i)) AS x FROM r) ORDER BY x")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sql-limits") / "refiner.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("INSERT INTO t VALUES (1, 'secret')")
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "query_results.db"


@pytest.fixture(scope="module", autouse=True)
def zygote_started(source: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    # The timings below are the query's, not the one-off start of the query zygote.
    run_query(source, "SELECT 1", None, ALL, tmp_path_factory.mktemp("warm") / "out.db", QueryLimits())


def _fails(source: Path, out: Path, sql: str, limits: QueryLimits, **kw) -> tuple[JobFailure, float]:
    start = time.monotonic()
    with pytest.raises(JobFailure) as info:
        run_query(source, sql, None, ALL, out, limits, **kw)
    elapsed = time.monotonic() - start
    assert list(out.parent.iterdir()) == [], "no output or scratch file may be left behind"
    return info.value, elapsed


def test_printf_bomb_ends_at_the_time_limit(source: Path, out: Path) -> None:
    err, elapsed = _fails(source, out, PRINTF_BOMB, QueryLimits(timeout_s=1.0))
    assert err.code == "QUERY_TIMEOUT"
    assert elapsed < 1.0 + 1.0


def test_cancel_stops_a_query_inside_one_step(source: Path, out: Path) -> None:
    cancel = threading.Event()
    caught: list[BaseException] = []

    def run() -> None:
        try:
            run_query(source, PRINTF_BOMB, None, ALL, out, QueryLimits(timeout_s=60), cancel=cancel)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            caught.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(0.5)  # well inside the printf step
    cancelled_at = time.monotonic()
    cancel.set()
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert time.monotonic() - cancelled_at < 1.0
    assert len(caught) == 1 and isinstance(caught[0], JobFailure) and caught[0].code == "CANCELLED"
    assert list(out.parent.iterdir()) == []


def test_memory_is_bounded_and_not_the_engines(source: Path, out: Path) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    limits = QueryLimits(max_memory_bytes=64 * 1024 * 1024, max_result_bytes=1024**3)
    err, _ = _fails(source, out, SORT_BOMB, limits)
    assert err.code == "QUERY_OUT_OF_MEMORY"
    assert "secret" not in err.message
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    assert grown < 32 * 1024 * 1024, f"the engine's own peak memory grew by {grown} bytes"


def test_the_same_query_fits_a_larger_memory_limit(source: Path, out: Path) -> None:
    limits = QueryLimits(max_memory_bytes=512 * 1024 * 1024, max_result_bytes=1024**3)
    report = run_query(source, SORT_BOMB, None, ALL, out, limits)
    assert report.row_count == 20


def test_one_value_is_bounded_by_max_value_bytes(source: Path, out: Path) -> None:
    sql = "SELECT replace(printf('%.*c', 600000, 'x'), 'x', 'yy')"
    err, _ = _fails(source, out, sql, QueryLimits(max_value_bytes=1024 * 1024))
    assert err.code == "RESULT_TOO_LARGE"
    assert "1048576 bytes for one value" in err.message


def test_a_trivial_query_after_a_bomb_is_not_kept_waiting(source: Path, out: Path) -> None:
    _fails(source, out, PRINTF_BOMB, QueryLimits(timeout_s=0.5))
    start = time.monotonic()
    report = run_query(source, "SELECT v FROM t", None, ALL, out, QueryLimits(timeout_s=5))
    assert report.row_count == 1
    assert time.monotonic() - start < 3.0


def test_the_query_process_gets_none_of_the_engines_environment(monkeypatch) -> None:
    from engine.query import isolate

    monkeypatch.setenv("TEST_ENGINE_SIGNING_KEY", "0x" + "ab" * 32)
    isolate._ZYGOTE.close()  # the next query starts a zygote under this environment
    pid, conn = isolate._ZYGOTE.fork()
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    finally:
        conn.close()  # EOF before any request: the child exits
    assert b"PYTHONPATH=" in environ
    assert b"TEST_ENGINE_SIGNING_KEY" not in environ and b"abab" not in environ


def test_a_dead_zygote_is_restarted(source: Path, out: Path) -> None:
    from engine.query import isolate

    run_query(source, "SELECT 1", None, ALL, out, QueryLimits())
    out.unlink()
    os.kill(isolate._ZYGOTE.pid, signal.SIGKILL)
    report = run_query(source, "SELECT v FROM t", None, ALL, out, QueryLimits())
    assert report.row_count == 1


@pytest.mark.parametrize("depth", [900, 30000])
def test_deeply_nested_sql_is_query_invalid(source: Path, out: Path, depth: int) -> None:
    sql = "SELECT " + "(" * depth + "1" + ")" * depth
    err, _ = _fails(source, out, sql, QueryLimits())
    assert err.code == "QUERY_INVALID"


def _zygote_children(zygote_pid: int) -> list[int]:
    path = Path(f"/proc/{zygote_pid}/task/{zygote_pid}/children")
    return [int(p) for p in path.read_text().split()]


def test_each_query_gets_a_process_that_never_ran_another(source: Path, out: Path) -> None:
    """The zygote keeps one spare ready; it is handed over once, and a new one is forked."""
    from engine.query import isolate

    run_query(source, "SELECT 1", None, ALL, out, QueryLimits())
    out.unlink()
    pids = []
    for _ in range(3):
        pid, conn = isolate._ZYGOTE.fork()
        pids.append(pid)
        conn.close()  # EOF before any request: that child exits
    assert len(set(pids)) == 3


def test_a_dead_spare_is_replaced_and_the_query_runs(source: Path, out: Path) -> None:
    from engine.query import isolate

    run_query(source, "SELECT 1", None, ALL, out, QueryLimits())
    out.unlink()
    zygote = isolate._ZYGOTE.pid
    deadline = time.monotonic() + 5
    while not (spares := _zygote_children(zygote)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert spares, "the zygote keeps a spare query process ready"
    for pid in spares:
        os.kill(pid, signal.SIGKILL)
    report = run_query(source, "SELECT v FROM t", None, ALL, out, QueryLimits())
    assert report.row_count == 1
    assert isolate._ZYGOTE.pid == zygote  # the zygote itself carried on
