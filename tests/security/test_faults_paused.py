"""A paused ComputeInstructionRegistry approves nothing (issue 8 item 19).

The real engine over HTTP, real anvil and Docker: while the registry is paused
a job is refused NOT_APPROVED at submit (the preflight) and fails it at the re-check just before its
container starts; once unpaused the same instruction runs.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from registry_client.contracts import Registries, connect
from registry_client.errors import EngineApiError
from tests.integration.conftest import (  # noqa: F401 - fixtures used by this module
    SIMPLE_QUERY,
    archive_server,
    container_of,
    engine,
    job_image,
    step_statuses,
    wait_for,
    world,
)

pytestmark = [pytest.mark.docker, pytest.mark.chain]

REGISTRY = "compute_instruction_registry"
SCRIPT = 'echo "ran $COMPUTE_JOB_ID" > /mnt/output/ran.txt\n'
WAIT_S = 60.0


@pytest.fixture
def admin(world, accounts) -> Iterator[Registries]:  # noqa: F811
    """The deployer (maintainer: may pause); the registry is unpaused again after the test."""
    reg = connect(world.rpc_url, world.deployment, accounts.deployer)
    try:
        yield reg
    finally:
        if reg.paused(REGISTRY):
            reg.unpause(REGISTRY)


def _wait(engine, job: dict) -> dict:  # noqa: F811
    return engine.builder.wait(job["id"], poll_s=0.1, timeout_s=WAIT_S)


def _refused_as_paused(job: dict) -> None:
    assert job["status"] == "FAILED", job
    assert job["failure"]["code"] == "NOT_APPROVED", job["failure"]
    assert "ComputeInstructionRegistry is paused" in job["failure"]["message"]


def test_a_paused_registry_refuses_at_verify_and_runs_once_unpaused(
    engine, world, job_image, admin, docker_client  # noqa: F811
) -> None:
    instruction_id = world.publish_image(job_image("paused-verify", SCRIPT))
    admin.pause(REGISTRY)
    # Refused at submit (the preflight reads the same pause), before any job or download exists.
    with pytest.raises(EngineApiError) as info:
        engine.builder.submit(instruction_id, world.refiner_id, SIMPLE_QUERY)
    assert (info.value.status, info.value.code) == (422, "NOT_APPROVED")
    assert "ComputeInstructionRegistry is paused" in info.value.detail

    admin.unpause(REGISTRY)
    ran = _wait(engine, engine.builder.submit(instruction_id, world.refiner_id, SIMPLE_QUERY))
    assert ran["status"] == "SUCCEEDED", ran
    assert [a["name"] for a in engine.builder.artifacts(ran["id"])] == ["ran.txt"]


def test_a_registry_paused_while_the_job_waits_stops_it_before_the_run(
    engine, world, job_image, archive_server, admin, docker_client  # noqa: F811
) -> None:
    image = job_image("paused-recheck", SCRIPT)
    instruction_id = world.publish_image(image)
    gate = archive_server.hold(image.archive.name)
    try:
        job = engine.builder.submit(instruction_id, world.refiner_id, SIMPLE_QUERY)
        # Verified and downloading: the maintainer pauses the registry now.
        assert gate.entered.wait(WAIT_S), "the engine never fetched the archive"
        admin.pause(REGISTRY)
    finally:
        gate.release()
    job = _wait(engine, job)
    _refused_as_paused(job)
    statuses = step_statuses(job)
    assert "QUERYING" in statuses and "RUNNING" not in statuses
    # Removed just after the job's end is recorded (off its critical path).
    wait_for(lambda: container_of(docker_client, job["id"]) is None, 15, "the container's removal")
