"""What a job's container is, decided without Docker: its spec, limits and result, and
the hardened arguments it is created with.

``engine/runner.py`` acts on these (create, start, wait, remove); everything
here is a pure function of the spec and the image's layout, so the hardening
can be read, and tested, in one place: no network, a read-only root, no
capabilities, no-new-privileges, a non-root user, the engine's seccomp
profile, memory (= memory + swap), CPU and pids limits, a small noexec
``/tmp``, a capped log, the input read-only and the output writable where the
image's layout puts them, every image ``VOLUME`` under an empty read-only tmpfs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from docker.types import LogConfig, Mount

from engine.errors import RunFailure
from engine.layouts import DEFAULT_LAYOUT, Layout, job_env, prepare_dirs

if TYPE_CHECKING:
    from engine.docker_calls import ContainerHandle

__all__ = [
    "ENGINE_LABEL",
    "INPUT_DIR",
    "INPUT_MOUNT",
    "LABEL",
    "OUTPUT_MOUNT",
    "Created",
    "RunLimits",
    "RunResult",
    "RunSpec",
    "classify",
    "container_config",
    "container_name",
    "prepare_input",
    "prepare_output",
    "seccomp_profile",
]

MiB = 1024 * 1024
LABEL = "compute-to-data.job"
# Which engine (data dir) started a container: a restart removes only its own leftovers,
# never the running containers of another engine on the same Docker host.
ENGINE_LABEL = "compute-to-data.engine"
INPUT_DIR = "/mnt/input"
INPUT_MOUNT = f"{INPUT_DIR}/query_results.db"
OUTPUT_MOUNT = "/mnt/output"

_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class RunLimits:
    """Resource limits of one container; defaults are the safe ones."""

    cpus: float = 1.0
    memory_bytes: int = 512 * MiB
    pids: int = 256
    tmpfs_bytes: int = 64 * MiB
    timeout_s: float = 600.0
    log_bytes: int = 1 * MiB
    user: str = "65534:65534"


@dataclass(frozen=True)
class RunSpec:
    """What to run: the image by id, the job's input db and output dir."""

    job_id: str
    image_id: str
    input_db: Path
    output_dir: Path
    refiner_id: int
    limits: RunLimits = field(default_factory=RunLimits)
    compute_job_id: int = 0  # the on-chain ComputeEngine job, 0 when the job has none
    # Read every wait slice: the reason the job's output is over a cap, or None.
    output_watch: Callable[[], str | None] | None = None


@dataclass(frozen=True)
class RunResult:
    """How the container ended. ``exit_code`` is None when it never reported one."""

    exit_code: int | None
    oom_killed: bool
    timed_out: bool
    cancelled: bool
    logs: bytes
    duration_s: float
    output_over: str | None = None  # why the output watch ended the job
    docker_lost: bool = False  # the container was lost with its Docker daemon


@dataclass(frozen=True)
class Created:
    """A job's container, created and not yet started (``DockerRunner.create``)."""

    job_id: str
    container: ContainerHandle
    layout: Layout = DEFAULT_LAYOUT  # where the container finds its input and output


def classify(result: RunResult) -> str | None:
    """None for success, else the job's failure code.

    CANCELLED > DOCKER_UNAVAILABLE > OUTPUT_TOO_LARGE > TIMEOUT > OUT_OF_MEMORY > EXIT_NONZERO.
    """
    if result.cancelled:
        return "CANCELLED"
    if result.docker_lost:
        return "DOCKER_UNAVAILABLE"
    if result.output_over:
        return "OUTPUT_TOO_LARGE"
    if result.timed_out:
        return "TIMEOUT"
    if result.oom_killed:
        return "OUT_OF_MEMORY"
    if result.exit_code != 0:
        return "EXIT_NONZERO"
    return None


def container_name(job_id: str) -> str:
    if not _JOB_ID.fullmatch(job_id):
        raise ValueError(f"job id {job_id!r} cannot name a container")
    return f"c2d-{job_id}"


def container_config(spec: RunSpec, name: str, engine_id: str, covers: dict[str, str],
                      layout: Layout = DEFAULT_LAYOUT) -> dict:
    """The hardened ``containers.create`` arguments (everything but the image)."""
    limits = spec.limits
    # The input's folders, not files: they exist before the query has written the
    # database, so the container can be created while the query runs.
    inputs = prepare_dirs(layout, Path(spec.input_db).parent.resolve())
    return {
        "name": name,
        "labels": {LABEL: spec.job_id, ENGINE_LABEL: engine_id},
        "environment": job_env(layout, spec.job_id, spec.compute_job_id, spec.refiner_id),
        "mounts": [
            *(Mount(target, str(folder), type="bind", read_only=True)
              for target, folder in inputs.items()),
            Mount(layout.output_path, str(Path(spec.output_dir).resolve()), type="bind",
                  read_only=False),
        ],
        "network_mode": "none",
        # No network at all, not just none: the container still gets a network namespace
        # of its own holding only `lo` (runc makes it), but Docker sets up no sandbox for
        # it, so no libnetwork-setkey or set-ipv6 re-exec of dockerd: ~half of a trivial
        # job's machine CPU (390 -> 210 ms) and wall. `docker run` has no flag for it.
        "network_disabled": True,
        "read_only": True,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges", f"seccomp={seccomp_profile()}"],
        "user": limits.user,
        "mem_limit": limits.memory_bytes,
        "memswap_limit": limits.memory_bytes,
        "nano_cpus": int(limits.cpus * 1e9),
        "pids_limit": limits.pids,
        # /tmp for any uid (1777); each image VOLUME under an empty read-only cover.
        "tmpfs": {"/tmp": f"rw,noexec,nosuid,nodev,size={limits.tmpfs_bytes},mode=1777", **covers},
        "log_config": LogConfig(
            type="json-file",
            config={"max-size": str(_driver_log_bytes(limits)), "max-file": "2"},
        ),
        "stdin_open": False,
        "tty": False,  # engine/docker_calls.py reads the logs as a multiplexed stream
    }


@cache
def seccomp_profile() -> str:
    """The job's seccomp profile (JSON text), shipped in the package."""
    return resources.files("engine").joinpath("seccomp", "job.json").read_text()


def prepare_output(spec: RunSpec) -> None:
    """Let the container's uid write the output, with least privilege; the input folder exists."""
    Path(spec.input_db).parent.mkdir(parents=True, exist_ok=True)
    Path(spec.output_dir).mkdir(parents=True, exist_ok=True)
    uid, gid = _numeric_user(spec.limits.user)
    if os.geteuid() == 0 and uid is not None:
        os.chown(spec.output_dir, uid, gid if gid is not None else -1)
        os.chmod(spec.output_dir, 0o700)
    else:
        os.chmod(spec.output_dir, 0o777)  # not root: cannot chown to the container's uid


def prepare_input(spec: RunSpec) -> None:
    """Just before the start: the input database is there, and readable by the container's uid."""
    if not Path(spec.input_db).is_file():
        raise RunFailure(f"input database {spec.input_db} is missing", code="INTERNAL_ERROR")
    os.chmod(spec.input_db, os.stat(spec.input_db).st_mode | 0o444)


def _numeric_user(user: str) -> tuple[int | None, int | None]:
    uid_text, _, gid_text = user.partition(":")
    uid = int(uid_text) if uid_text.isdigit() else None
    gid = int(gid_text) if gid_text.isdigit() else None
    return uid, gid


def _driver_log_bytes(limits: RunLimits) -> int:
    """Size of each json-file log file: JSON framing costs ~80 bytes a line on disk,
    so the driver needs headroom for ``log_bytes`` of text to survive rotation."""
    return 4 * limits.log_bytes + 64 * 1024
