"""The bare operations the engine bench compares against, timed.

- ``bare_docker_run``: the docker CLI running the same image with the same
  hardening, limits, mounts and env as ``engine.runner`` (``docker run --rm``):
  the engine's seccomp profile, ``/tmp`` mode 1777, the input's folder mounted
  read-only. One difference is on purpose: the bare side's ``/mnt/output`` is
  a plain bind of a folder, where the engine mounts a size-limited ext4 per
  job (the bare operation has no cap to enforce; the engine makes that
  filesystem while the job is verified, off the critical path). And the
  engine creates its containers with ``NetworkDisabled`` (no Docker network
  sandbox at all: dockerd re-executes itself twice less a container, about
  half of a trivial run's CPU), which the docker CLI cannot express: the bare
  side keeps ``--network none``, the CLI's closest. Both containers get a
  network namespace of their own holding only ``lo``.
- ``bare_docker_runs``: ``n`` such runs from ``concurrency`` threads, for the
  throughput bench.
- ``bare_verify_and_load``: ``sha256sum`` then ``docker load -i`` of an archive,
  the floor under the engine's cold path (fetch + verify + load).

Both return wall-clock seconds; ``median_ratio`` turns lists of timings into
the figure the bench prints.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from pathlib import Path

from engine.layouts import DEFAULT_LAYOUT, job_env
from engine.runner import INPUT_DIR, OUTPUT_MOUNT, RunLimits

SECCOMP_PROFILE = Path(__file__).resolve().parent.parent / "engine" / "seccomp" / "job.json"

__all__ = [
    "bare_docker_run",
    "bare_docker_runs",
    "bare_verify_and_load",
    "docker_run_args",
    "median_ratio",
    "remove_image",
]


def docker_run_args(
    image_id: str,
    input_db: Path,
    output_dir: Path,
    limits: RunLimits,
    *,
    job_id: str = "bench",
    refiner_id: int = 1,
) -> list[str]:
    """The ``docker run`` command line equivalent to what DockerRunner creates.

    ``input_db`` is ``<folder>/query_results.db``; the folder is what is mounted.
    """
    return [
        "docker", "run", "--rm",
        "--network", "none",
        "--read-only",
        "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges",
        "--security-opt", f"seccomp={SECCOMP_PROFILE}",
        "--user", limits.user,
        "--memory", str(limits.memory_bytes),
        "--memory-swap", str(limits.memory_bytes),
        "--cpus", str(limits.cpus),
        "--pids-limit", str(limits.pids),
        "--tmpfs", f"/tmp:rw,noexec,nosuid,nodev,size={limits.tmpfs_bytes},mode=1777",
        "--log-driver", "json-file",
        "--log-opt", f"max-size={4 * limits.log_bytes + 64 * 1024}",
        "--log-opt", "max-file=2",
        "--mount", f"type=bind,source={Path(input_db).parent.resolve()},target={INPUT_DIR},readonly",
        "--mount", f"type=bind,source={Path(output_dir).resolve()},target={OUTPUT_MOUNT}",
        *(arg for name, value in job_env(DEFAULT_LAYOUT, job_id, 0, refiner_id).items()
          for arg in ("-e", f"{name}={value}")),
        image_id,
    ]  # fmt: skip


def bare_docker_run(
    image_id: str,
    input_db: Path,
    output_dir: Path,
    limits: RunLimits | None = None,
    *,
    job_id: str = "bench",
) -> float:
    """Seconds for one bare hardened ``docker run --rm``; raises if the container fails."""
    limits = limits or RunLimits()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    uid, _, gid = limits.user.partition(":")
    if os.geteuid() == 0 and uid.isdigit():
        os.chown(output_dir, int(uid), int(gid) if gid.isdigit() else -1)
    else:
        os.chmod(output_dir, 0o777)
    args = docker_run_args(image_id, input_db, output_dir, limits, job_id=job_id)
    started = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def bare_docker_runs(image_id: str, input_db: Path, work: Path, n: int, concurrency: int,
                     limits: RunLimits | None = None) -> float:
    """Seconds for ``n`` bare runs, ``concurrency`` at a time (each its own output folder)."""
    from concurrent.futures import ThreadPoolExecutor

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(lambda i: bare_docker_run(image_id, input_db, Path(work) / f"out-{i}",
                                                limits, job_id=f"bench-{i}"), range(n)))
    return time.perf_counter() - started


def bare_verify_and_load(archive: Path) -> float:
    """Seconds for ``sha256sum ARCHIVE`` + ``docker load -i ARCHIVE``."""
    started = time.perf_counter()
    subprocess.run(["sha256sum", str(archive)], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["docker", "load", "-q", "-i", str(archive)], check=True, stdout=subprocess.DEVNULL
    )
    return time.perf_counter() - started


def remove_image(image_ref: str) -> None:
    """Forget an image (so the next load is cold); no error when it is absent."""
    subprocess.run(
        ["docker", "image", "rm", "-f", image_ref],
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def median_ratio(ours: list[float], bare: list[float]) -> float:
    """median(ours) / median(bare)."""
    return statistics.median(ours) / statistics.median(bare)
