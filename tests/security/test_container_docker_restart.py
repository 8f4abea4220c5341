"""A dockerd restart mid-job (issue 8 item 16, the Docker part), on a PRIVATE daemon this test starts.

The job ends DOCKER_UNAVAILABLE (not INTERNAL_ERROR), the runner survives the
outage by retrying, and once the daemon is back the exited container is
removed without an engine restart. The shared daemon is never touched: the
private one has its own data and exec roots, no iptables, and its own bridge
(``-b c2drs<pid>``, made and removed here). Not ``--bridge=none``: with it
dockerd deletes the host's ``docker0`` at start-up (libnetwork's
removeDefaultBridgeInterface), breaking the shared daemon's builds. The
shared ``docker0`` must still exist afterwards.

About 10 s (two daemon starts); skipped where dockerd is not installed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import RunFailure
from engine.runner import DockerRunner, RunLimits, classify
from tests.dockerd import PrivateDockerd, private_dockerd
from tests.images import build_image
from tests.security.container_kit import MiB, run_capped

pytestmark = pytest.mark.docker


@pytest.fixture
def private_docker(docker_client) -> Iterator[tuple[PrivateDockerd, object]]:
    with private_dockerd(docker_client, "rs", "10.213.77.1/24") as started:
        yield started


def test_dockerd_restart_mid_job_is_docker_unavailable_and_leaves_nothing(
    private_docker, tmp_path: Path
) -> None:
    daemon, client = private_docker
    # A job that ends on SIGTERM, so the daemon's shutdown does not wait 10 s for it.
    image = build_image(
        client,
        'FROM c2d-test/busybox:1\nCMD ["sh", "-c", "trap \'exit 143\' TERM; sleep 60 & wait"]\n',
        "c2d-test/sec-restart:1",
    )
    runner = DockerRunner(client, "restart-test", retry_window_s=30)
    outcome: dict = {}

    def job() -> None:
        try:
            outcome["result"] = run_capped(client, image, tmp_path, runner=runner,
                                           limits=RunLimits(timeout_s=60, memory_bytes=32 * MiB))
        except RunFailure as exc:
            outcome["failure"] = exc

    worker = threading.Thread(target=job, daemon=True)
    worker.start()
    deadline = time.monotonic() + 20
    while not client.containers.list(filters={"label": "compute-to-data.job"}):
        assert time.monotonic() < deadline, "the job's container never started"
        time.sleep(0.1)

    daemon.stop()
    client = daemon.start()  # same state: the job's container is there, exited
    worker.join(timeout=40)
    assert not worker.is_alive(), "the runner must not hang on a lost daemon"

    if "result" in outcome:
        result, _out, output = outcome["result"]
        output.release()
        assert classify(result) == "DOCKER_UNAVAILABLE", result
    else:
        assert outcome["failure"].code == "DOCKER_UNAVAILABLE"
    deadline = time.monotonic() + 15
    while client.containers.list(all=True, filters={"label": "compute-to-data.job"}):
        assert time.monotonic() < deadline, "the exited container was never removed"
        time.sleep(0.2)
    # The same runner (no engine restart) runs the next job on the restarted daemon.
    quick = build_image(client, 'FROM c2d-test/busybox:1\nCMD ["true"]\n', "c2d-test/sec-quick:1")
    result, _out, output = run_capped(client, quick, tmp_path, runner=runner)
    output.release()
    assert classify(result) is None, result


def test_a_container_stopped_by_docker_itself_is_not_the_jobs_exit(
    docker_client, tmp_path: Path
) -> None:
    """``docker stop`` (what a daemon shutdown does to each container) is Docker's doing."""
    image = build_image(
        docker_client,
        'FROM c2d-test/busybox:1\nCMD ["sh", "-c", "trap \'exit 143\' TERM; sleep 60 & wait"]\n',
        "c2d-test/sec-restart:1",
    )
    outcome: dict = {}
    worker = threading.Thread(
        target=lambda: outcome.update(run=run_capped(docker_client, image, tmp_path)), daemon=True
    )
    worker.start()
    deadline = time.monotonic() + 20
    while not (mine := docker_client.containers.list(
            filters={"label": "compute-to-data.job", "ancestor": image})):
        assert time.monotonic() < deadline, "the job's container never started"
        time.sleep(0.1)
    mine[0].stop(timeout=5)
    worker.join(timeout=30)
    result, _out, output = outcome["run"]
    output.release()
    assert result.exit_code == 143
    assert classify(result) == "DOCKER_UNAVAILABLE"
