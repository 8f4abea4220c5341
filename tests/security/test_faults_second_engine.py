"""One engine per data dir (issue 8 item 17): a second `compute-engine serve` refuses to start.

Before the lock, a second engine on the same data dir "removed 1 leftover
container": it killed the first engine's running job. Real processes, real
Docker and anvil: the first engine runs a long job, the second exits with one
line naming the data dir and the first engine's pid, and the job runs on.
`compute-engine data add` still works beside a running engine (it only adds a
file with an atomic rename).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import (  # noqa: F401 - fixtures used by this module
    SIMPLE_QUERY,
    archive_server,
    container_of,
    free_port,
    job_image,
    wait_for,
    world,
)
from tests.integration.test_engine_restart import engine_process

pytestmark = [pytest.mark.docker, pytest.mark.chain]

EXE = Path(sys.executable).with_name("compute-engine")


def _env(world, data_dir: Path, port: int) -> dict[str, str]:  # noqa: F811
    base = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
    return {**base, "ENGINE_RPC_URL": world.rpc_url, "ENGINE_DEPLOYMENT": str(world.manifest),
            "ENGINE_DATA_DIR": str(data_dir), "ENGINE_PORT": str(port), "ENGINE_RUN_TIMEOUT_S": "60",
            "ENGINE_RUN_MEMORY_BYTES": str(32 * 1024 * 1024),
            "ENGINE_ALLOW_PRIVATE_FETCH": "true",  # the archive server is on 127.0.0.1
            "ENGINE_CHARGE_PRICES": "false"}  # the world's priced query runs free: this is about the lock


def _cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(EXE), *args], env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def test_a_second_engine_on_the_same_data_dir_refuses_and_leaves_the_first_alone(
    world, job_image, docker_client, tmp_path: Path  # noqa: F811
) -> None:
    data_dir = tmp_path / "engine-data"
    env = _env(world, data_dir, free_port())
    attached = _cli(env, "data", "add", "--refiner", str(world.refiner_id), str(world.data_db))
    assert attached.returncode == 0, attached.stderr
    long_id = world.publish_image(job_image("second-engine-long", "sleep 30\n"))
    client = world.client(f"http://127.0.0.1:{env['ENGINE_PORT']}")

    with engine_process(env, tmp_path / "engine.log") as first:
        job = client.submit(long_id, world.refiner_id, SIMPLE_QUERY)
        try:
            wait_for(lambda: container_of(docker_client, job["id"]) is not None, 30, "the job's container")

            second = _cli(_env(world, data_dir, free_port()), "serve")
            assert second.returncode != 0
            assert "Traceback" not in second.stderr
            lines = [line for line in second.stderr.splitlines() if line.startswith("error:")]
            assert len(lines) == 1, second.stderr
            assert f"another engine (pid {first.pid}) is using the data dir {data_dir}" in lines[0]
            assert lines[0].endswith("(DATA_DIR_LOCKED)")

            # The first engine's job was not touched.
            assert client.status(job["id"])["status"] == "RUNNING"
            assert container_of(docker_client, job["id"]).status == "running"

            # Attaching data beside a running engine is safe and still allowed.
            replaced = _cli(env, "data", "add", "--replace", "--refiner", str(world.refiner_id),
                            str(world.data_db))
            assert replaced.returncode == 0, replaced.stderr
        finally:
            client.cancel(job["id"])
            wait_for(lambda: container_of(docker_client, job["id"]) is None, 15, "the container's removal")
    client.close()

    # Once the first engine is gone the dir is free: a new engine starts on it.
    with engine_process(env, tmp_path / "engine.log"):
        pass  # engine_process fails the test unless /health answers
