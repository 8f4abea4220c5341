"""Output abuse through the real engine (HTTP, anvil, Docker, SQLite): items 6 and 9 end to end.

- A job that writes without end is stopped at the output cap while it runs:
  OUTPUT_TOO_LARGE long before its timeout, and its scratch is gone after.
- Output entries that are not artifacts (a name that is not UTF-8, an
  unprintable name, a link, a fifo) are listed in the job's
  ``skipped_outputs`` with a safe name and a reason, instead of vanishing.
"""

from __future__ import annotations

import pytest

# The integration fixtures (real engine, chain world, served images), used by name.
from tests.integration.conftest import (  # noqa: F401
    OUTPUT_MAX_BYTES,
    SIMPLE_QUERY,
    archive_server,
    engine,
    job_image,
    wait_for,
    world,
)

pytestmark = [pytest.mark.docker, pytest.mark.chain]

# Writes 1 MiB files until the engine stops it, then would sleep past the timeout.
ENDLESS_WRITER = """i=0
while true; do dd if=/dev/zero of=/mnt/output/f$i bs=1M count=1 2>/dev/null || sleep 0.1; i=$((i+1)); done
"""
ODD_NAMES = """cd /mnt/output
echo ok > ok.txt
echo x > "$(printf 'bad-\\377.txt')"
echo x > "$(printf 'tab\\there.txt')"
ln -s /etc/passwd passwd
mkfifo pipe
"""


def _run(engine, world, image) -> dict:  # noqa: F811 - the fixtures, passed on
    instruction_id = world.publish_image(image)
    job = engine.builder.submit(instruction_id, world.refiner_id, SIMPLE_QUERY, None)
    return engine.builder.wait(job["id"], poll_s=0.1, timeout_s=60)


def test_endless_output_is_stopped_at_the_cap_while_it_runs(engine, world, job_image) -> None:  # noqa: F811
    job = _run(engine, world, job_image("endless-writer", ENDLESS_WRITER))

    assert job["status"] == "FAILED" and job["failure"]["code"] == "OUTPUT_TOO_LARGE", job
    assert str(OUTPUT_MAX_BYTES) in job["failure"]["message"]
    ran = {s["status"]: s["at"] for s in job["steps"]}
    assert ran["FAILED"] - ran["RUNNING"] < engine.settings.run_timeout_s, "not the timeout"
    assert engine.builder.artifacts(job["id"]) == []
    wait_for(lambda: not (engine.data_dir / "scratch" / job["id"]).exists(), what="scratch gone")


def test_skipped_outputs_are_reported_in_the_job(engine, world, job_image) -> None:  # noqa: F811
    job = _run(engine, world, job_image("odd-names", ODD_NAMES))

    assert job["status"] == "SUCCEEDED", job
    assert [a["name"] for a in engine.builder.artifacts(job["id"])] == ["ok.txt"]
    skipped = job["skipped_outputs"]
    assert skipped["count"] == 4
    assert sorted((e["name"], e["reason"]) for e in skipped["entries"]) == [
        ("bad-\\xff.txt", "a name that is not valid UTF-8"),
        ("passwd", "a symbolic link (never followed)"),
        ("pipe", "not a regular file (fifo, socket or device)"),
        ("tab\\there.txt", "a name with unprintable characters"),
    ]
    assert all(e["name"].isascii() and e["name"].isprintable() for e in skipped["entries"])
