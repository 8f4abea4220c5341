"""The worker: ``max_concurrent_jobs`` threads that take jobs and run their story.

A thread takes the next job id, runs ``JobStory.process`` on it and takes the
next; an error recording a job's end never kills the thread (the job stays
unfinished in the store and the supervisor deals with it).
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from engine.story import JobStory

__all__ = ["Worker"]

log = logging.getLogger("engine.worker")


class Worker:
    """Threads draining a queue of job ids through the story."""

    def __init__(self, story: JobStory, concurrency: int):
        self.story = story
        self.concurrency = concurrency
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    def offer(self, job_id: str) -> None:
        """A job that may be run (a new submission, or PENDING at start-up)."""
        self._queue.put(job_id)

    def waiting(self) -> int:
        return self._queue.qsize()

    def alive(self) -> int:
        return sum(t.is_alive() for t in self._threads)

    def start(self) -> None:
        if self._threads:
            return
        self._stopping.clear()
        for n in range(self.concurrency):
            thread = threading.Thread(target=self._work, name=f"job-worker-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None or self._stopping.is_set():
                return
            try:
                self.story.process(job_id)
            except Exception:
                # Any error (the store itself failing, say) must not kill the worker; the
                # job stays unfinished in the store and the next start-up reconciles it.
                log.exception("job %s: the worker could not record its end", job_id)
