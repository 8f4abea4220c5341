"""Run a job's container hardened, by image id, and report how it ended.

Stateless about jobs (like Bacalhau's executor): everything is keyed by the
job id, which names the container ``c2d-<job_id>`` and labels it
``compute-to-data.job=<job_id>``; there is no job table here. The container
gets no network, a read-only root, no capabilities, no-new-privileges, a
non-root user, memory (= memory + swap), CPU and pids limits, a small noexec
``/tmp``, a capped log (its tail is kept), a wall-clock timeout, the input database read-only
and ``/mnt/output`` writable, and exactly four environment variables. It is
always removed, whatever happens.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker.errors
import requests.exceptions
from docker.types import LogConfig, Mount

from engine.errors import RunFailure

__all__ = [
    "ENGINE_LABEL",
    "INPUT_MOUNT",
    "LABEL",
    "OUTPUT_MOUNT",
    "DockerRunner",
    "RunLimits",
    "RunResult",
    "RunSpec",
    "classify",
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
# Short waits keep cancel responsive; each is one cheap request to dockerd.
_WAIT_SLICE_S = 0.5
_KILL_WAIT_S = 10.0
_MAX_QUICK_FAILURES = 20


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


@dataclass(frozen=True)
class RunResult:
    """How the container ended. ``exit_code`` is None when it never reported one."""

    exit_code: int | None
    oom_killed: bool
    timed_out: bool
    cancelled: bool
    logs: bytes
    duration_s: float


def classify(result: RunResult) -> str | None:
    """None for success, else the job's failure code (CANCELLED > TIMEOUT > OUT_OF_MEMORY > EXIT_NONZERO)."""
    if result.cancelled:
        return "CANCELLED"
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


class DockerRunner:
    """Hardened ``docker run`` through the SDK; safe to share between threads."""

    def __init__(self, docker_client, engine_id: str = "default"):
        self.client = docker_client
        self.engine_id = engine_id

    def run(self, spec: RunSpec, cancel: threading.Event | None = None) -> RunResult:
        """Run ``spec`` to its end, its timeout or ``cancel``; the container is always removed.

        Setting ``cancel`` kills the container within ~0.5 s and marks the
        result cancelled (``cancel(job_id)`` kills it at once as well).
        Raises RunFailure when Docker cannot create or start the container.
        """
        cancel = cancel or threading.Event()
        name = container_name(spec.job_id)
        self._remove_named(name)
        _prepare_mounts(spec)
        started = time.monotonic()
        container = self._create(spec, name)
        try:
            if cancel.is_set():
                return _result(None, False, False, True, b"", started)
            try:
                container.start()
            except docker.errors.APIError as exc:
                raise RunFailure(
                    f"the container did not start: {exc.explanation}", code="EXIT_NONZERO"
                ) from exc
            timed_out, was_cancelled = self._wait(container, spec.limits.timeout_s, cancel, started)
            state = _state(container)
            logs = _read_logs(container, spec.limits.log_bytes)
            return _result(
                state.get("ExitCode") if not state.get("Running") else None,
                bool(state.get("OOMKilled")),
                timed_out,
                was_cancelled or cancel.is_set(),
                logs,
                started,
            )
        finally:
            _force_remove(container)

    def cancel(self, job_id: str) -> bool:
        """Kill the job's container if it runs; True when one was found."""
        try:
            self.client.containers.get(container_name(job_id)).kill()
            return True
        except docker.errors.NotFound:
            return False
        except docker.errors.APIError:
            return True  # exists but is no longer running (409): nothing to kill

    def remove_leftovers(self) -> list[str]:
        """Remove this engine's containers (engine restart); return their job ids."""
        removed = []
        labels = [LABEL, f"{ENGINE_LABEL}={self.engine_id}"]
        for container in self.client.containers.list(all=True, filters={"label": labels}):
            removed.append(container.labels.get(LABEL, ""))
            _force_remove(container)
        return removed

    # -- steps ------------------------------------------------------------

    def _create(self, spec: RunSpec, name: str):
        limits = spec.limits
        try:
            return self.client.containers.create(
                spec.image_id,
                name=name,
                labels={LABEL: spec.job_id, ENGINE_LABEL: self.engine_id},
                environment={
                    "INPUT_PATH": INPUT_DIR,
                    "OUTPUT_PATH": OUTPUT_MOUNT,
                    "COMPUTE_JOB_ID": spec.job_id,
                    "DATA_REFINER_ID": str(spec.refiner_id),
                },
                mounts=[
                    Mount(
                        INPUT_MOUNT, str(Path(spec.input_db).resolve()), type="bind", read_only=True
                    ),
                    Mount(
                        OUTPUT_MOUNT,
                        str(Path(spec.output_dir).resolve()),
                        type="bind",
                        read_only=False,
                    ),
                ],
                network_mode="none",
                read_only=True,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                user=limits.user,
                mem_limit=limits.memory_bytes,
                memswap_limit=limits.memory_bytes,
                nano_cpus=int(limits.cpus * 1e9),
                pids_limit=limits.pids,
                tmpfs={"/tmp": f"rw,noexec,nosuid,nodev,size={limits.tmpfs_bytes}"},
                log_config=LogConfig(
                    type="json-file",
                    config={"max-size": str(_driver_log_bytes(limits)), "max-file": "2"},
                ),
                stdin_open=False,
                tty=False,
            )
        except docker.errors.ImageNotFound as exc:
            raise RunFailure(f"image {spec.image_id} is not loaded", code="IMAGE_INVALID") from exc
        except docker.errors.APIError as exc:
            raise RunFailure(
                f"Docker could not create the container: {exc.explanation}", code="INTERNAL_ERROR"
            ) from exc

    def _wait(
        self, container, timeout_s: float, cancel: threading.Event, started: float
    ) -> tuple[bool, bool]:
        """Wait in short slices; kill on timeout or cancel. Returns (timed_out, cancelled)."""
        deadline = started + timeout_s
        quick_failures = 0
        while True:
            if cancel.is_set():
                _kill(container)
                return False, True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _kill(container)
                return True, False
            slice_s = min(_WAIT_SLICE_S, remaining)
            began = time.monotonic()
            try:
                container.wait(timeout=slice_s)
                return False, False
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError) as exc:
                # docker-py raises ConnectionError (not ReadTimeout) on a wait timeout;
                # one that fails at once is dockerd being unreachable, not a timeout.
                if time.monotonic() - began >= slice_s / 2:
                    quick_failures = 0
                    continue
                quick_failures += 1
                if quick_failures >= _MAX_QUICK_FAILURES:
                    raise RunFailure(
                        f"lost contact with Docker: {exc}", code="INTERNAL_ERROR"
                    ) from exc
                time.sleep(0.1)
            except docker.errors.APIError as exc:
                raise RunFailure(
                    f"Docker failed waiting for the container: {exc.explanation}",
                    code="INTERNAL_ERROR",
                ) from exc

    def _remove_named(self, name: str) -> None:
        """A container left by a crash under this job's name would block create."""
        try:
            _force_remove(self.client.containers.get(name))
        except docker.errors.NotFound:
            pass


def _prepare_mounts(spec: RunSpec) -> None:
    """Let the container's uid read the input and write the output, with least privilege."""
    if not Path(spec.input_db).is_file():
        raise RunFailure(f"input database {spec.input_db} is missing", code="INTERNAL_ERROR")
    Path(spec.output_dir).mkdir(parents=True, exist_ok=True)
    uid, gid = _numeric_user(spec.limits.user)
    if os.geteuid() == 0 and uid is not None:
        os.chown(spec.output_dir, uid, gid if gid is not None else -1)
        os.chmod(spec.output_dir, 0o700)
    else:
        os.chmod(spec.output_dir, 0o777)  # not root: cannot chown to the container's uid
    os.chmod(spec.input_db, os.stat(spec.input_db).st_mode | 0o444)


def _numeric_user(user: str) -> tuple[int | None, int | None]:
    uid_text, _, gid_text = user.partition(":")
    uid = int(uid_text) if uid_text.isdigit() else None
    gid = int(gid_text) if gid_text.isdigit() else None
    return uid, gid


def _state(container) -> dict:
    try:
        container.reload()
    except docker.errors.APIError as exc:
        raise RunFailure(
            f"Docker lost the container: {exc.explanation}", code="INTERNAL_ERROR"
        ) from exc
    return container.attrs.get("State", {})


def _driver_log_bytes(limits: RunLimits) -> int:
    """Size of each json-file log file: JSON framing costs ~80 bytes a line on disk,
    so the driver needs headroom for ``log_bytes`` of text to survive rotation."""
    return 4 * limits.log_bytes + 64 * 1024


def _read_logs(container, cap: int) -> bytes:
    """The last ``cap`` bytes of stdout+stderr (the end is where errors are).

    The driver keeps two bounded files, so the disk use is bounded, and only
    a sliding window of at most ``2 * cap`` bytes is held here.
    """
    out = bytearray()
    try:
        for chunk in container.logs(stdout=True, stderr=True, stream=True, follow=False):
            out += chunk
            if len(out) > 2 * cap:
                del out[:-cap]
    except (docker.errors.APIError, requests.exceptions.RequestException):
        pass  # logs are best effort; the exit state is what decides the job
    return bytes(out[-cap:]) if cap > 0 else b""


def _kill(container) -> None:
    try:
        container.kill()
    except docker.errors.APIError:
        pass  # already exited
    try:
        container.wait(timeout=_KILL_WAIT_S)
    except (docker.errors.APIError, requests.exceptions.RequestException):
        pass


def _force_remove(container) -> None:
    try:
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: removal already in progress
            raise RunFailure(
                f"Docker could not remove {container.name}: {exc.explanation}",
                code="INTERNAL_ERROR",
            ) from exc


def _result(
    exit_code, oom: bool, timed_out: bool, cancelled: bool, logs: bytes, started: float
) -> RunResult:
    return RunResult(
        exit_code=exit_code,
        oom_killed=oom,
        timed_out=timed_out,
        cancelled=cancelled,
        logs=logs,
        duration_s=time.monotonic() - started,
    )
