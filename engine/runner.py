"""Run a job's container hardened, by image id, and report how it ended.

Stateless about jobs (like Bacalhau's executor): everything is keyed by the
job id, which names the container ``c2d-<job_id>`` and labels it
``compute-to-data.job=<job_id>``; there is no job table here. What the
container is (its hardening, limits, mounts, environment) is decided in
``engine/container_spec.py``; this module does the Docker calls. The spec's
``output_watch`` is read every wait slice: a job whose output reached its
cap is killed at once (OUTPUT_TOO_LARGE).

Docker itself may go away (dockerd restarted): create, start and inspect are
retried with backoff for ``retry_window_s``; a job whose container was lost
with the daemon ends DOCKER_UNAVAILABLE, and a container that could not be
removed then is removed in the background once Docker answers again. The
container is always removed, whatever happens.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import docker.errors
import requests.exceptions

from engine.container_spec import (
    ENGINE_LABEL,
    INPUT_DIR,
    INPUT_MOUNT,
    LABEL,
    OUTPUT_MOUNT,
    Created,
    RunLimits,
    RunResult,
    RunSpec,
    classify,
    container_config,
    container_name,
    prepare_input,
    prepare_output,
    seccomp_profile,
)
from engine.docker_calls import ContainerHandle, DockerCalls, SdkContainer, docker_calls
from engine.errors import RunFailure
from engine.layouts import Layout, layout_of, volume_covers

log = logging.getLogger(__name__)
_CONFIGS_KEPT = 256  # image inspects kept by id

__all__ = [
    "ENGINE_LABEL",
    "INPUT_DIR",
    "INPUT_MOUNT",
    "LABEL",
    "OUTPUT_MOUNT",
    "Created",
    "DockerRunner",
    "RunLimits",
    "RunResult",
    "RunSpec",
    "classify",
    "container_name",
    "seccomp_profile",
]

# Short waits keep cancel responsive; each is one cheap request to dockerd.
_WAIT_SLICE_S = 0.5
_KILL_WAIT_S = 10.0
_BACKOFF_START_S = 0.2
_BACKOFF_MAX_S = 2.0
_T = TypeVar("_T")


class DockerRunner:
    """Hardened ``docker run``; safe to share between threads.

    A job's own calls go through ``engine/docker_calls.py`` (kept-alive on a Unix
    socket); listing leftovers and reading kill events through docker-py.
    """

    def __init__(self, docker_client, engine_id: str = "default", retry_window_s: float = 30.0,
                 calls: DockerCalls | None = None):
        self.client = docker_client
        self.calls = calls or docker_calls(docker_client)
        self.engine_id = engine_id
        self.retry_window_s = retry_window_s
        self._configs: dict[str, dict] = {}  # image id -> its inspect (what a create reads of it)

    def create(self, spec: RunSpec, *, output_ready: bool = True) -> Created:
        """Create the job's container without starting it (done while the query runs).

        Needs the input folder to exist; the input database itself may still be
        being written: it is looked at in ``run``, just before the start.
        ``run(spec, created=...)`` starts it, ``discard`` removes one that will
        never start. Raises RunFailure like ``run``.

        Docker binds a mount's source when the container *starts*: with
        ``output_ready=False`` the output folder may still be being mounted (its
        folder exists); the caller then calls ``prepare_output(spec)`` once it is
        mounted, and before ``run``.
        """
        name = container_name(spec.job_id)
        if output_ready:
            prepare_output(spec)
        else:
            Path(spec.input_db).parent.mkdir(parents=True, exist_ok=True)
            Path(spec.output_dir).mkdir(parents=True, exist_ok=True)  # a bind's source must exist
        container, layout = self._create(spec, name)
        return Created(spec.job_id, container, layout)

    @staticmethod
    def prepare_output(spec: RunSpec) -> None:
        """The (mounted) output folder writable by the container's uid only (see ``create``)."""
        prepare_output(spec)

    def discard(self, created: Created) -> None:
        """Remove a created container that will not run (the job failed or was cancelled)."""
        self._remove(created.container)

    def run(self, spec: RunSpec, cancel: threading.Event | None = None,
            created: Created | None = None, *, remove: bool = True) -> RunResult:
        """Run ``spec`` to its end, its timeout or ``cancel``; the container is then removed.

        ``created`` is the container ``create(spec)`` made beforehand (else it
        is created here). With ``remove=False`` the caller removes it
        (``discard(created)``), e.g. once the job's end is recorded. Setting ``cancel`` kills the container within ~0.5 s
        and marks the result cancelled (``cancel(job_id)`` kills it at once as
        well). Raises RunFailure when Docker cannot create or start the
        container (DOCKER_UNAVAILABLE when it stayed unreachable for
        ``retry_window_s``).
        """
        cancel = cancel or threading.Event()
        if created is None:
            created = self.create(spec)
        elif created.job_id != spec.job_id:
            raise ValueError(f"container of job {created.job_id} given to run job {spec.job_id}")
        container = created.container
        try:
            prepare_input(spec)
            started, wall_started = time.monotonic(), time.time()
            if cancel.is_set():
                return _result(None, False, False, True, b"", started)
            self._start(container)
            timed_out, was_cancelled, over, lost = self._wait(container, spec, cancel, started)
            if over is None and spec.output_watch is not None:
                over = spec.output_watch()  # it may have hit the cap and exited by itself
            retried: list[bool] = []
            state = self._retry("inspect the container", lambda: _state(container), retried)
            exit_code = state.get("ExitCode") if not state.get("Running") else None
            if exit_code and not (lost or retried or timed_out or was_cancelled or over):
                # A daemon going down stops its containers: that exit is Docker's, not the job's.
                lost = self._killed_by_docker(container, wall_started)
            logs = _read_logs(container, spec.limits.log_bytes)
            return _result(
                exit_code,
                bool(state.get("OOMKilled")),
                timed_out,
                was_cancelled or cancel.is_set(),
                logs,
                started,
                over,
                lost or bool(retried),
            )
        finally:
            if remove:
                self._remove(container)

    def cancel(self, job_id: str) -> bool:
        """Kill the job's container if it runs; True when one was found."""
        try:
            self.calls.get(container_name(job_id)).kill()
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
            _force_remove(SdkContainer(container))
        return removed

    # -- steps ------------------------------------------------------------

    def _create(self, spec: RunSpec, name: str) -> tuple[ContainerHandle, Layout]:
        try:
            attrs = self._image_attrs(spec.image_id)
            layout = layout_of(attrs)
            covers = volume_covers(attrs, layout)
            config = container_config(spec, name, self.engine_id, covers, layout)
            retried: list[bool] = []

            def create():
                if retried:  # a create cut off mid-way may have made it: clear it first
                    self._remove_named(name)
                try:
                    return self.calls.create(spec.image_id, config)
                except docker.errors.APIError as exc:
                    if exc.status_code != 409:
                        raise
                # 409: a container left by a crash holds this job's name; remove it, once.
                # (Asking first would cost every job a lookup that almost always finds nothing.)
                self._remove_named(name)
                return self.calls.create(spec.image_id, config)

            return self._retry("create the container", create, retried), layout
        except docker.errors.ImageNotFound as exc:
            raise RunFailure(f"image {spec.image_id} is not loaded", code="IMAGE_INVALID") from exc
        except docker.errors.APIError as exc:
            raise RunFailure(
                f"Docker could not create the container: {exc.explanation}", code="INTERNAL_ERROR"
            ) from exc

    def _image_attrs(self, image_ref: str) -> dict:
        """The image's inspect; kept per image *id*: an id is the sha256 of the config, so the
        labels and volumes read from it never change (a tag can move: never kept)."""
        attrs = self._configs.get(image_ref)
        if attrs is None:
            attrs = self._retry("inspect the image", lambda: self.calls.inspect_image(image_ref))
            if image_ref.startswith("sha256:"):
                if len(self._configs) >= _CONFIGS_KEPT:
                    self._configs.clear()
                self._configs[image_ref] = attrs
        return attrs

    def _start(self, container) -> None:
        try:
            self._retry("start the container", container.start)
        except docker.errors.APIError as exc:
            raise RunFailure(
                f"the container did not start: {exc.explanation}", code="EXIT_NONZERO"
            ) from exc

    def _wait(
        self, container, spec: RunSpec, cancel: threading.Event, started: float
    ) -> tuple[bool, bool, str | None, bool]:
        """Wait in short slices; kill on timeout, cancel or a full output.

        Returns (timed_out, cancelled, output_over, docker_lost). Losing Docker
        is survived for ``retry_window_s``; once it answers again the job counts
        as lost with it (a restarted daemon killed its container).
        """
        deadline = started + spec.limits.timeout_s
        lost = False  # Docker was unreachable at some point of this wait
        lost_since: float | None = None
        while True:
            if cancel.is_set():
                _kill(container)
                return False, True, None, lost
            over = spec.output_watch() if spec.output_watch is not None else None
            if over is not None:
                _kill(container)
                return False, False, over, lost
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _kill(container)
                return True, False, None, lost
            slice_s = min(_WAIT_SLICE_S, remaining)
            began = time.monotonic()
            try:
                container.wait(timeout=slice_s)
                return False, False, None, lost
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError) as exc:
                # docker-py raises ConnectionError (not ReadTimeout) on a wait timeout;
                # one that fails at once is dockerd being unreachable, not a timeout.
                if time.monotonic() - began >= slice_s / 2:
                    lost_since = None
                    continue
                lost = True
                lost_since = lost_since or time.monotonic()
                if time.monotonic() - lost_since > self.retry_window_s:
                    raise _unavailable("wait for the container", self.retry_window_s) from exc
                time.sleep(min(_BACKOFF_MAX_S, 0.1 + (time.monotonic() - lost_since) / 4))
            except docker.errors.NotFound:
                # The container vanished under us: a restarted daemon lost it.
                return False, False, None, True
            except docker.errors.APIError as exc:
                raise RunFailure(
                    f"Docker failed waiting for the container: {exc.explanation}",
                    code="INTERNAL_ERROR",
                ) from exc

    def _killed_by_docker(self, container, since: float) -> bool:
        """True when Docker signalled the container itself (daemon shutdown, ``docker stop``):
        the engine kills only on timeout, cancel or a full output, which are known here."""
        try:
            events = self.client.api.events(
                since=f"{since - 1:.3f}", until=f"{time.time():.3f}", decode=True,
                filters={"container": container.id, "event": "kill"},
            )
            return any(True for _ in events)
        except requests.exceptions.ConnectionError:
            return True  # the daemon is going away right now
        except docker.errors.APIError:
            return False

    def _retry(self, what: str, call: Callable[[], _T], retried: list[bool] | None = None) -> _T:
        """``call()``, retried with backoff while Docker is unreachable, for the window.

        Appends to ``retried`` when it had to retry (Docker went away meanwhile).
        """
        give_up = time.monotonic() + self.retry_window_s
        delay = _BACKOFF_START_S
        while True:
            try:
                return call()
            except requests.exceptions.ConnectionError as exc:
                if time.monotonic() + delay > give_up:
                    raise _unavailable(what, self.retry_window_s) from exc
                if retried is not None:
                    retried.append(True)
            time.sleep(delay)
            delay = min(2 * delay, _BACKOFF_MAX_S)

    def _remove(self, container) -> None:
        """Remove now, or (Docker unreachable) in the background once it is back."""
        try:
            _force_remove(container)
        except requests.exceptions.ConnectionError:
            threading.Thread(
                target=self._remove_later, args=(container,), name="container-reaper", daemon=True
            ).start()

    def _remove_later(self, container, give_up_s: float = 3600.0) -> None:
        give_up = time.monotonic() + give_up_s
        delay = _BACKOFF_START_S
        while time.monotonic() < give_up:
            time.sleep(delay)
            delay = min(2 * delay, _BACKOFF_MAX_S)
            try:
                _force_remove(container)
                return
            except requests.exceptions.ConnectionError:
                continue
            except RunFailure:
                break
        log.error("container %s could not be removed; an engine restart removes it",
                  container.name)

    def _remove_named(self, name: str) -> None:
        """A container left by a crash under this job's name would block create."""
        try:
            _force_remove(self.calls.get(name))
        except docker.errors.NotFound:
            pass


def _unavailable(what: str, window_s: float) -> RunFailure:
    return RunFailure(
        f"Docker did not answer for {window_s:g} s (trying to {what})", code="DOCKER_UNAVAILABLE"
    )


def _state(container: ContainerHandle) -> dict:
    try:
        return container.state()
    except docker.errors.NotFound as exc:
        raise RunFailure("Docker lost the container", code="DOCKER_UNAVAILABLE") from exc
    except docker.errors.APIError as exc:
        raise RunFailure(
            f"Docker lost the container: {exc.explanation}", code="INTERNAL_ERROR"
        ) from exc


def _read_logs(container: ContainerHandle, cap: int) -> bytes:
    """The last ``cap`` bytes of stdout+stderr (the end is where errors are).

    The driver keeps two bounded files, so the disk use is bounded, and only
    a sliding window of at most ``2 * cap`` bytes is held here.
    """
    out = bytearray()
    try:
        for chunk in container.log_chunks():
            out += chunk
            if len(out) > 2 * cap:
                del out[:-cap]
    except (docker.errors.APIError, requests.exceptions.RequestException):
        pass  # logs are best effort; the exit state is what decides the job
    return bytes(out[-cap:]) if cap > 0 else b""


def _kill(container: ContainerHandle) -> None:
    try:
        container.kill()
    except docker.errors.APIError:
        pass  # already exited
    try:
        container.wait(timeout=_KILL_WAIT_S)
    except (docker.errors.APIError, requests.exceptions.RequestException):
        pass


def _force_remove(container: ContainerHandle) -> None:
    try:
        container.remove()
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: removal already in progress
            raise RunFailure(
                f"Docker could not remove {container.name}: {exc.explanation}",
                code="INTERNAL_ERROR",
            ) from exc


def _result(
    exit_code,
    oom: bool,
    timed_out: bool,
    cancelled: bool,
    logs: bytes,
    started: float,
    output_over: str | None = None,
    docker_lost: bool = False,
) -> RunResult:
    return RunResult(
        exit_code=exit_code,
        oom_killed=oom,
        timed_out=timed_out,
        cancelled=cancelled,
        logs=logs,
        duration_s=time.monotonic() - started,
        output_over=output_over,
        docker_lost=docker_lost,
    )
