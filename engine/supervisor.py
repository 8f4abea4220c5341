"""The supervisor: what happens to jobs nobody runs any more, and to old artifacts.

Start-up reconcile: leftover containers and scratch of this engine go, and its
unfinished jobs that no worker will pick up again fail ENGINE_RESTARTED.
Retention: a thread deletes expired artifacts (and kept logs) every
``sweep_interval_s`` and marks the job's artifacts expired.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from engine import scratch
from engine import store as st
from engine.settings import Settings
from engine.store import JobStore, StaleState
from engine.story import JobFiles

if TYPE_CHECKING:
    from engine.runner import DockerRunner

__all__ = ["Supervisor"]

log = logging.getLogger("engine.supervisor")


class Supervisor:
    """Reconcile once at start-up; sweep expired artifacts in a thread."""

    def __init__(self, settings: Settings, store: JobStore, runner: DockerRunner, files: JobFiles,
                 clock: Callable[[], float]):
        self.settings = settings
        self.store = store
        self.runner = runner
        self.files = files
        self.clock = clock
        self._reconciled = False
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def reconcile(self) -> list[str]:
        """On start-up: fail unfinished non-PENDING jobs ENGINE_RESTARTED; return the PENDING ids.

        Runs once per supervisor (a second call would fail jobs that are really running).
        """
        if self._reconciled:
            return []
        self._reconciled = True
        try:
            removed = self.runner.remove_leftovers()
            if removed:
                log.info("removed %d leftover container(s)", len(removed))
        except Exception:
            log.warning("could not remove leftover containers", exc_info=True)
        scratch_root = self.files.data_dir / "scratch"
        if scratch.clear_leftovers(scratch_root):
            log.error("some job scratch under %s could not be removed", scratch_root)
        pending: list[str] = []
        for job in self.store.unfinished():
            if job.status == st.PENDING:
                pending.append(job.id)
                continue
            try:
                self.store.fail(job.id, "ENGINE_RESTARTED", f"the engine restarted while the job was {job.status}")
            except StaleState:
                continue
            shutil.rmtree(self.files.artifact_dir(job.id), ignore_errors=True)
            log.info("job %s failed: engine restarted while %s", job.id, job.status)
        return pending

    def sweep(self, now: float | None = None) -> int:
        """Delete expired artifacts (and kept logs); return how many jobs were swept."""
        now = self.clock() if now is None else now
        count = 0
        for job in self.store.expired(now):
            shutil.rmtree(self.files.artifact_dir(job.id), ignore_errors=True)
            self.files.log_file(job.id).unlink(missing_ok=True)
            self.store.mark_artifacts_expired(job.id)
            count += 1
        return count

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="engine-supervisor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def _loop(self) -> None:
        while not self._stopping.wait(self.settings.sweep_interval_s):
            try:
                self.sweep()
            except Exception:
                log.exception("artifact sweep failed")
