"""`make demo` / `make up` never wipe a work dir another demo command or a running stack uses (item 17).

Real `python -m demo` processes on a temp DEMO_DIR. A stand-in `ANVIL_BIN`
that never answers keeps the first `demo run` inside its work (holding the
lock) long enough for the second command to meet it; a stack left by
`make up` is a stack.json naming live processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _demo(work: Path, *args: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "demo", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False, env={**os.environ, "DEMO_DIR": str(work), **(env or {})}, **kw)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_demo_run_refuses_while_a_stack_is_up_and_keeps_it(tmp_path: Path, sleeper) -> None:
    work = tmp_path / "demo"
    (work / "engine-data").mkdir(parents=True)
    (work / "engine-data" / "jobs.db").write_text("the running stack's state")
    (work / "stack.json").write_text(json.dumps({"pids": {"engine": sleeper.pid}}))

    for command in ("run", "up"):
        refused = _demo(work, command)
        assert refused.returncode == 1, refused
        assert f"a stack started by `make up` is running from {work} (engine {sleeper.pid}): `make down` first" \
            in refused.stderr
    # Nothing was wiped: the stack's state and its pid file are intact, and `down` still finds it.
    assert (work / "engine-data" / "jobs.db").read_text() == "the running stack's state"
    down = _demo(work, "down")
    assert f"stopped engine (pid {sleeper.pid})" in down.stdout
    sleeper.wait(timeout=10)


def test_a_stale_stack_file_does_not_block(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    work.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (work / "stack.json").write_text(json.dumps({"pids": {"engine": dead.pid}}))
    from demo.guard import exclusive, live_stack

    assert live_stack(work) == {}
    with exclusive(work):
        pass


def test_a_second_demo_command_refuses_while_the_first_runs(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    (work / "archives").mkdir(parents=True)
    (work / "archives" / "cached.tar.gz").write_text("cache")
    fake_anvil = tmp_path / "anvil"
    fake_anvil.write_text("#!/bin/sh\nexec sleep 60\n")  # never prints "Listening on": run waits
    fake_anvil.chmod(0o755)
    env = {**os.environ, "DEMO_DIR": str(work), "ANVIL_BIN": str(fake_anvil)}
    first = subprocess.Popen([sys.executable, "-m", "demo", "run"], cwd=ROOT, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        lock = work / "demo.lock"
        while not (lock.exists() and lock.read_text().strip() == str(first.pid)):
            assert time.monotonic() < deadline and first.poll() is None, "the first demo never took its lock"
            time.sleep(0.05)
        (work / "marker").write_text("written while the first demo runs")
        for command in ("up", "run"):
            refused = _demo(work, command)
            assert refused.returncode == 1, refused
            assert f"another demo command (pid {first.pid}) is using {work}" in refused.stderr
        assert (work / "marker").exists(), "the refused command must not clean the work dir"
        assert first.poll() is None, "the first demo keeps running"
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
