"""Work a job's run needs, started early in the background so it is ready when RUNNING begins.

Two things take time and depend on nothing the chain or the query decide:

- the job's size-limited output filesystem (``scratch.OutputFs``: a copy of
  an empty ext4, loop-mounted), started as soon as the job starts VERIFYING;
- the job's container, *created* (not started) once the image is known, while
  the query runs and the approval is re-checked. For an instruction whose
  image this engine already ran (``ImageGuesses``), it is created with that
  image as soon as the job starts VERIFYING, alongside the chain check; when
  the chain or the loader then names another image (or that create failed:
  the image was collected), it is removed and made again with the right one.
  An on-chain instruction's hash never changes, so the guess is almost
  always right; either way nothing starts before the checks.

Neither weakens a check. The container is created while its output is
being mounted (the two overlap), but Docker binds a folder only when the
container starts, and ``container()`` hands it over only once the output is
mounted and prepared: a container never sees an uncapped folder. The container starts
only in RUNNING, after the approval re-check (``DockerRunner.run`` with the
created container). A failure in this background work is raised when the run
asks for the container, as it was when the run did the work itself. A job
that ends before it runs (failed, cancelled) has its unused container removed
by ``settle``; its output is unmounted with its scratch, as always.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine import scratch
from engine.lru import BoundedLRU
from engine.settings import Settings

if TYPE_CHECKING:
    from engine.runner import Created, DockerRunner, RunSpec

__all__ = ["ImageGuesses", "JobPrep"]


@dataclass
class JobPrep:
    """One job's work done ahead: its output filesystem, then its created container."""

    pool: Executor
    runner: DockerRunner
    settings: Settings
    _output: Future[scratch.OutputFs] | None = None
    _container: Future[tuple[RunSpec, Created]] | None = None
    _image_id: str | None = None  # the image the container is (being) made from
    _from_guess: bool = False  # it was started on a guess (confirmed since or not)
    _args: tuple = ()  # what it was started with, to make it again

    def start_output(self, output_dir: Path) -> None:
        s = self.settings
        self._output = self.pool.submit(scratch.OutputFs.create, output_dir, s.run_output_fs,
                                        s.output_max_bytes, s.output_max_files)

    def start_container(self, job_id: str, image_id: str, input_db: Path, output_dir: Path,
                        refiner_id: int, compute_job_id: int = 0, *, guess: bool = False) -> None:
        """Create the container (once the output is mounted); ``container()`` returns it.

        ``guess``: the image the instruction last ran with, before the job knows its own.
        Called again with the image the job really runs: a no-op when the container is
        (being) made from it (never waiting for that create), else the first one is
        removed and this one made.
        """
        if self._output is None:
            self.start_output(output_dir)
        if self._container is not None:
            pending_or_made = not self._container.done() or self._container.exception() is None
            if self._image_id == image_id and pending_or_made:
                return
            self._drop_container()  # a wrong guess, or a create that failed
        self._image_id, self._from_guess = image_id, guess
        self._args = (job_id, image_id, input_db, output_dir, refiner_id, compute_job_id)
        self._container = self.pool.submit(self._create, *self._args)

    def _drop_container(self) -> None:
        assert self._container is not None
        if self._container.exception() is None:  # waits for the create
            self.runner.discard(self._container.result()[1])
        self._container, self._image_id = None, None

    def stage_inputs(self, params: object) -> None:
        """After the query: the files the image's layout derives from the results
        (engine/layouts.py). A container that could not be created needs none: its
        error is raised when the run asks for it, as always."""
        from engine.layouts import stage_inputs

        assert self._container is not None, "start_container() first"
        self._retry_a_failed_guess()
        if self._container.exception() is not None:
            return
        spec, created = self._container.result()
        stage_inputs(created.layout, Path(spec.input_db).parent, params,
                     self.settings.query_max_result_bytes)

    def _create(self, job_id: str, image_id: str, input_db: Path, output_dir: Path,
                refiner_id: int, compute_job_id: int) -> tuple[RunSpec, Created]:
        from engine.runner import RunSpec

        assert self._output is not None
        spec = RunSpec(
            job_id=job_id,
            image_id=image_id,
            input_db=input_db,
            output_dir=output_dir,
            refiner_id=refiner_id,
            compute_job_id=compute_job_id,
            limits=self.settings.run_limits(),
        )
        # Created while the output is still being mounted: Docker binds the folder when the
        # container starts, and nothing starts it before the mount is done and prepared here.
        created = self.runner.create(spec, output_ready=False)
        try:
            output = self._output.result()
            self.runner.prepare_output(spec)  # the mounted root, for the container's uid
        except BaseException:
            self.runner.discard(created)  # its output never came: it must never start
            raise
        # output_watch ends the job the moment the output is full.
        return dataclasses.replace(spec, output_watch=output.over_cap), created

    def container(self) -> tuple[RunSpec, Created]:
        """The run's spec and created container; raises what creating them raised.

        The container stays this prep's: run it with ``remove=False``; ``settle``
        removes it once the job's end is recorded (off the job's critical path).
        """
        assert self._container is not None, "start_container() first"
        self._retry_a_failed_guess()
        return self._container.result()

    def _retry_a_failed_guess(self) -> None:
        """The create started on a guess failed (the image was collected since): make it again, once."""
        assert self._container is not None
        if self._from_guess and self._container.exception() is not None:
            args = self._args
            self._container, self._from_guess = self.pool.submit(self._create, *args), False

    def settle(self) -> None:
        """Wait for the background work; remove the container, whether it ran or not."""
        for future in (self._output, self._container):
            if future is not None:
                future.exception()  # waits; its error was (or is now moot to be) raised
        if self._container is not None and self._container.exception() is None:
            self.runner.discard(self._container.result()[1])


class ImageGuesses(BoundedLRU[int, str]):
    """The image each instruction last ran with on this engine (bounded, most recent kept)."""

    def __init__(self, size: int = 256):
        super().__init__(size)

    def ran(self, instruction_id: int, image_id: str) -> None:
        self.put(instruction_id, image_id)
