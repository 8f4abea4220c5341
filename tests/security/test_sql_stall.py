"""A stalling query cannot hold a worker: cancel frees it at once, through the real engine.

Real anvil, dockerd, SQLite and HTTP (the integration fixtures). The query's
time is spent inside one SQLite step (printf), where the old in-process
progress handler never ran: cancel was ignored and the worker stayed busy
for the whole query.
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.conftest import (  # noqa: F401 - fixtures used by name
    SIMPLE_QUERY,
    archive_server,
    engine,
    job_image,
    wait_for,
    world,
)

pytestmark = [pytest.mark.docker, pytest.mark.chain]

PRINTF_BOMB = ("SELECT printf('%.*c%.*c%.*c%.*c', 2000000000,'x',2000000000,'x',"
               "2000000000,'x',2000000000,'x')")


def _running(engine) -> int:  # noqa: F811
    return httpx.get(engine.url + "/health", timeout=10).json()["queue"]["running"]


def test_cancel_frees_the_worker_of_a_query_stuck_in_one_step(engine, world, job_image) -> None:  # noqa: F811
    instruction_id = world.publish_image(job_image("stall-ok", "echo ok > /mnt/output/ok.txt\n"))
    job = engine.builder.submit(instruction_id, world.refiner_id, PRINTF_BOMB)
    wait_for(lambda: engine.builder.status(job["id"])["status"] == "QUERYING", 30, "the query to start")
    time.sleep(0.5)  # inside the printf step

    cancelled_at = time.monotonic()
    assert engine.builder.cancel(job["id"])["status"] == "CANCELLED"
    wait_for(lambda: _running(engine) == 0, 3, "the worker to be free")
    assert time.monotonic() - cancelled_at < 3

    final = engine.builder.wait(job["id"], poll_s=0.1, timeout_s=10)
    assert final["status"] == "CANCELLED"
    after = engine.builder.wait(engine.builder.submit(instruction_id, world.refiner_id, SIMPLE_QUERY)["id"],
                                poll_s=0.1, timeout_s=60)
    assert after["status"] == "SUCCEEDED", after
