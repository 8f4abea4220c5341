"""The supervisor: what happens to jobs nobody runs any more, and to old artifacts.

Start-up reconcile (once): this engine's leftover containers and scratch go;
the unfinished jobs this engine's id still holds fail ENGINE_RESTARTED (it
restarted: nothing of theirs runs any more), and so do unfinished jobs past
PENDING that no engine holds (a store from before leases). Jobs other engines
hold are left alone: they are running there.

Then, every ``lease_s / 2``: unfinished jobs whose lease ran out, whichever
engine held them, fail ENGINE_LOST (that engine stopped renewing: it died or
lost the store). A PENDING job with a lapsed lease was claimed but never
started: it is simply claimable again. And every ``sweep_interval_s`` the
retention sweep deletes expired artifacts (and kept logs) and marks them
expired. Every engine's supervisor does this; the store's state-checked
transitions make a second engine doing the same at once harmless.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from engine import scratch
from engine import store as st
from engine.settings import Settings
from engine.store import Job, JobStore, StaleState
from engine.story import JobFiles

if TYPE_CHECKING:
    from engine.runner import DockerRunner

__all__ = ["Supervisor"]

log = logging.getLogger("engine.supervisor")


class Supervisor:
    """Reconcile once at start-up; reap lapsed leases and sweep expired artifacts in a thread."""

    def __init__(self, settings: Settings, store: JobStore, runner: DockerRunner, files: JobFiles,
                 clock: Callable[[], float], engine_id: str):
        self.settings = settings
        self.store = store
        self.runner = runner
        self.files = files
        self.clock = clock
        self.engine_id = engine_id
        self._reconciled = False
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def reconcile(self) -> None:
        """On start-up: clean this engine's leftovers, fail the jobs it can no longer run.

        Runs once per supervisor (a second call would fail jobs that are really running).
        """
        if self._reconciled:
            return
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
        orphans = [j for j in self.store.unfinished() if j.lease_owner is None and j.status != st.PENDING]
        for job in [*self.store.jobs_leased_by(self.engine_id), *orphans]:
            self._fail(job, "ENGINE_RESTARTED", f"the engine restarted while the job was {job.status}")
        self.reap()

    def reap(self, now: float | None = None) -> int:
        """Fail ENGINE_LOST the started jobs whose lease ran out; return how many."""
        count = 0
        for job in self.store.expired_leases(time.time() if now is None else now):
            if job.status == st.PENDING:
                continue  # claimed, never started: claimable again
            count += self._fail(job, "ENGINE_LOST",
                                f"engine {job.lease_owner} stopped renewing its lease while the job was {job.status}")
        return count

    def _fail(self, job: Job, code: str, message: str) -> int:
        try:
            self.store.fail(job.id, code, message)
        except StaleState:
            return 0  # it ended meanwhile (or another supervisor got there first)
        shutil.rmtree(self.files.artifact_dir(job.id), ignore_errors=True)
        log.info("job %s failed %s while %s", job.id, code, job.status)
        return 1

    def sweep(self, now: float | None = None) -> int:
        """Delete expired artifacts (and kept logs); return how many jobs were swept."""
        now = self.clock() if now is None else now
        count = 0
        for job in self.store.expired(now):
            self.files.store.delete(job.id)  # where the files are: this host's, or the shared folder
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
        tick = min(self.settings.sweep_interval_s, self.settings.lease_s / 2)
        next_sweep = time.monotonic() + self.settings.sweep_interval_s
        while not self._stopping.wait(tick):
            try:
                self.reap()
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + self.settings.sweep_interval_s
                    self.sweep()
            except Exception:
                log.exception("the supervisor's round failed")
