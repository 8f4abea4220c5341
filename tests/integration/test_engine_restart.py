"""The engine killed mid-job and started again: nothing stays RUNNING, nothing finished is lost.

The engine runs as a real process (`compute-engine serve`, configured by
ENGINE_* variables), its data attached through `compute-engine data add`.
SIGKILL gives it no chance to clean up: the next start on the same data dir
must reconcile the job that was running and remove its container.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_kek_file
from tests.integration.conftest import (
    SIMPLE_QUERY,
    container_of,
    free_port,
    sha256_bytes,
    step_statuses,
    wait_for,
)

pytestmark = [pytest.mark.docker, pytest.mark.chain]

EXE = Path(sys.executable).with_name("compute-engine")
QUICK_SCRIPT = 'echo "restart-proof $COMPUTE_JOB_ID" > /mnt/output/kept.txt\n'
LONG_SCRIPT = "sleep 30\n"


def _kek(data_dir: Path) -> Path:
    """A data KEK beside (not in) the data dir, made once."""
    path = data_dir.parent / f"{data_dir.name}.kek"
    if not path.exists():
        make_kek_file(path)
    return path


def _env(world, data_dir: Path, port: int) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
    return {
        **base,
        "ENGINE_RPC_URL": world.rpc_url,
        "ENGINE_DEPLOYMENT": str(world.manifest),
        "ENGINE_DATA_DIR": str(data_dir),
        "ENGINE_DATA_KEK_FILE": str(_kek(data_dir)),
        "ENGINE_PORT": str(port),
        "ENGINE_RUN_TIMEOUT_S": "60",
        "ENGINE_RUN_MEMORY_BYTES": str(32 * 1024 * 1024),
        "ENGINE_ALLOW_PRIVATE_FETCH": "true",  # the test archive server is on 127.0.0.1
        "ENGINE_CHARGE_PRICES": "false",  # restarts are tested here; test_engine_payments.py charges
    }


@contextmanager
def engine_process(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen]:
    """`compute-engine serve` until /health answers; killed (if still alive) on exit."""
    with log_path.open("ab") as log:
        proc = subprocess.Popen([str(EXE), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{env['ENGINE_PORT']}"
    try:
        wait_for(lambda: _healthy(url, proc, log_path), 60, "the engine process to become healthy")
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _healthy(url: str, proc: subprocess.Popen, log_path: Path) -> bool:
    if proc.poll() is not None:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise AssertionError(f"the engine exited with {proc.returncode}; its log ends:\n{tail}")
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_engine_killed_while_a_job_runs_fails_it_and_keeps_finished_artifacts(
    world, job_image, archive_server, docker_client, tmp_path: Path
) -> None:
    data_dir = tmp_path / "engine-data"
    port = free_port()
    env = _env(world, data_dir, port)
    attach = subprocess.run(
        [str(EXE), "data", "add", "--refiner", str(world.refiner_id), str(world.data_db)],
        env=env, capture_output=True, text=True, check=False,
    )
    assert attach.returncode == 0, attach.stderr
    quick = job_image("restart-quick", QUICK_SCRIPT)
    quick_id = world.publish_image(quick)
    long_id = world.publish_image(job_image("restart-long", LONG_SCRIPT))
    client = world.client(f"http://127.0.0.1:{port}")
    log_path = tmp_path / "engine.log"

    with engine_process(env, log_path) as first:
        done = client.wait(client.submit(quick_id, world.refiner_id, SIMPLE_QUERY)["id"], poll_s=0.1, timeout_s=60)
        assert done["status"] == "SUCCEEDED", done
        listing = client.artifacts(done["id"])
        running = client.submit(long_id, world.refiner_id, SIMPLE_QUERY)
        wait_for(lambda: client.status(running["id"])["status"] == "RUNNING", 30, "the long job to run")
        wait_for(lambda: container_of(docker_client, running["id"]) is not None, 15, "its container")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    # The engine died without cleaning up: the container outlives it.
    assert container_of(docker_client, running["id"]) is not None

    with engine_process(env, log_path):
        job = client.status(running["id"])
        assert job["status"] == "FAILED", job
        assert job["failure"]["code"] == "ENGINE_RESTARTED"
        assert "RUNNING" in job["failure"]["message"]
        assert step_statuses(job)[-2:] == ["RUNNING", "FAILED"]
        wait_for(lambda: container_of(docker_client, running["id"]) is None, 15, "the container's removal")

        # The job that finished before the crash keeps its artifacts, byte for byte.
        assert client.status(done["id"])["status"] == "SUCCEEDED"
        assert client.artifacts(done["id"]) == listing
        paths = client.download(done["id"], tmp_path / "out")  # sha256-checked by the client
        content = f"restart-proof {done['id']}\n".encode()
        assert [p.read_bytes() for p in paths] == [content]
        assert listing[0]["sha256"] == sha256_bytes(content)

        # The restarted engine works, from its on-disk archive cache.
        again = client.wait(client.submit(quick_id, world.refiner_id, SIMPLE_QUERY)["id"], poll_s=0.1, timeout_s=60)
        assert again["status"] == "SUCCEEDED", again
        assert archive_server.requests(quick.archive.name) == 1
    client.close()
