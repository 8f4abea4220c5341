"""The worker: threads that claim jobs from the store and run their story.

Each of ``max_concurrent_jobs`` threads claims the oldest PENDING job no engine
holds, for a refiner whose data this engine has (``JobStore.claim_next``), runs
``JobStory.process`` on it and claims the next; with nothing to claim it waits
on the store (``wait_for_work``) instead of spinning. A claim is a lease:
``lease_s`` long, renewed every ``lease_s / 3`` by one thread for the whole
engine while its jobs run. The same thread looks every ``CANCEL_POLL_S`` for
jobs of its own the owner cancelled (through any engine) and stops them, and
stops a job whose lease it lost (another engine's supervisor failed it
ENGINE_LOST): the story's next transition is then refused and it stops.

An error recording a job's end never kills a thread (the job stays unfinished
in the store; its lease runs out and a supervisor fails it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from engine.story import JobStory

if TYPE_CHECKING:
    from engine.runner import DockerRunner
    from engine.store import JobStore

__all__ = ["CANCEL_POLL_S", "Worker"]

log = logging.getLogger("engine.worker")

CANCEL_POLL_S = 0.5  # a cancel through another engine stops the container well within 2 s
IDLE_WAIT_S = 1.0  # the longest an idle thread sleeps before trying to claim again
RACE_PAUSE_S = 0.01  # a claim lost to another thread or engine while the job was still there


class Worker:
    """Claiming threads, and the one lease/cancel thread, of one engine."""

    def __init__(self, story: JobStory, store: JobStore, runner: DockerRunner, engine_id: str, *,
                 concurrency: int, lease_s: float, refiner_ids: Callable[[], Collection[int]]):
        self.story = story
        self.store = store
        self.runner = runner
        self.engine_id = engine_id
        self.concurrency = concurrency
        self.lease_s = lease_s
        self.refiner_ids = refiner_ids  # read at every claim: data added while serving counts
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    def alive(self) -> int:
        return sum(t.is_alive() for t in self._threads[: self.concurrency])

    def start(self) -> None:
        if self._threads:
            return
        self._stopping.clear()
        for n in range(self.concurrency):
            self._spawn(self._work, f"job-worker-{n}")
        self._spawn(self._keep_leases, "job-leases")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []

    # --- claiming ---------------------------------------------------------------------
    def claim_once(self) -> str | None:
        """Claim one job and run it to its end in this thread; its id, or None when none was free."""
        job = self.store.claim_next(self.engine_id, self.lease_s, self.refiner_ids())
        if job is None:
            return None
        log.info("job %s claimed by engine %s", job.id, self.engine_id)
        try:
            self.story.process(job.id)
        except Exception:
            # Any error (the store itself failing, say) must not kill the worker; the
            # job stays unfinished in the store and its lease runs out.
            log.exception("job %s: the worker could not record its end", job.id)
        return job.id

    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                if self.claim_once() is not None:
                    continue
                # The store's wait sees only jobs this engine may claim: it answers at once when
                # one is there (our claim lost a race: a short pause, never a spin) and else
                # when one is created. A job for another engine's refiners never wakes us early.
                if self.store.wait_for_work(IDLE_WAIT_S, self.refiner_ids()):
                    self._stopping.wait(RACE_PAUSE_S)
            except Exception:
                log.exception("claiming a job failed; retrying")
                self._stopping.wait(IDLE_WAIT_S)

    # --- leases and cancels -------------------------------------------------------------
    def _keep_leases(self) -> None:
        renew_every = self.lease_s / 3
        next_renewal = time.monotonic() + renew_every
        while not self._stopping.wait(CANCEL_POLL_S):
            try:
                self.check_cancels()
                if time.monotonic() >= next_renewal:
                    next_renewal = time.monotonic() + renew_every
                    self.renew()
            except Exception:
                log.warning("renewing leases or reading cancels failed", exc_info=True)

    def renew(self) -> None:
        """Extend this engine's leases; stop the jobs whose lease it lost."""
        running = self.story.running()
        held = self.store.renew_leases(self.engine_id, running, self.lease_s)
        for job_id in set(running) - held:
            if job_id in self.story.running():  # not just finished between the two reads
                log.warning("job %s: its lease was lost; stopping it", job_id)
                self._stop(job_id)

    def check_cancels(self) -> None:
        """Stop the running jobs their owner cancelled through any engine."""
        for job_id in self.store.cancel_requested(self.story.running()):
            log.info("job %s: cancel requested; stopping it", job_id)
            self._stop(job_id)

    def _stop(self, job_id: str) -> None:
        if not self.story.stop_job(job_id):
            return
        try:
            self.runner.cancel(job_id)
        except Exception:
            log.warning("job %s: killing its container failed", job_id, exc_info=True)
