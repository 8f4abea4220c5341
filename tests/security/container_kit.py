"""Helpers for the container and output security tests: real images, real mounts, the real runner.

- ``busybox_job(client, name, script, dockerfile_lines=())``: an image FROM the
  local busybox test image running ``script`` with sh (extra Dockerfile lines
  such as ``VOLUME /vol`` go before CMD); cached by tag for the session.
- ``run_capped(client, image, tmp, ...)``: run it as the engine does (per-job
  capped output filesystem watched by the runner); returns the result, the
  output folder and the ``OutputFs`` (the caller releases it).
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

from engine.runner import DockerRunner, RunLimits, RunResult, RunSpec
from engine.scratch import OutputFs
from tests.images import build_image, busybox_image

__all__ = ["MiB", "busybox_job", "input_db", "run_capped"]

MiB = 1024 * 1024
_built: dict[str, str] = {}


def busybox_job(client, name: str, script: str, dockerfile_lines: tuple[str, ...] = ()) -> str:
    """Image id of a busybox job running ``script`` (built once per session)."""
    if name not in _built:
        busybox_image(client)
        dockerfile = "\n".join(
            ["FROM c2d-test/busybox:1", "COPY job.sh /job.sh", *dockerfile_lines,
             'CMD ["/bin/sh", "/job.sh"]', ""]
        )
        _built[name] = build_image(client, dockerfile, f"c2d-test/sec-{name}:1", {"job.sh": script})
    return _built[name]


def input_db(folder: Path) -> Path:
    path = folder / "input" / "query_results.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE results (n INTEGER)")
    return path


def run_capped(
    client,
    image: str,
    tmp: Path,
    *,
    max_bytes: int = 4 * MiB,
    max_files: int = 200,
    limits: RunLimits | None = None,
    runner: DockerRunner | None = None,
) -> tuple[RunResult, Path, OutputFs]:
    """Run ``image`` with a capped, watched output filesystem under ``tmp/scratch``."""
    scratch = tmp / "scratch" / uuid.uuid4().hex[:12]
    output = OutputFs.create(scratch / "output", "loop", max_bytes, max_files)
    spec = RunSpec(
        job_id=scratch.name,
        image_id=image,
        input_db=input_db(scratch),
        output_dir=output.path,
        refiner_id=1,
        limits=limits or RunLimits(timeout_s=30, memory_bytes=64 * MiB, tmpfs_bytes=4 * MiB),
        output_watch=output.over_cap,
    )
    try:
        result = (runner or DockerRunner(client)).run(spec)
    except BaseException:
        output.release()
        raise
    return result, output.path, output
