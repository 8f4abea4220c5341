"""Where artifact files and kept logs live: the ArtifactStore seam and its folder implementation.

The job store keeps the artifact rows (name, size, sha256); an ArtifactStore
keeps the bytes. ``LocalArtifactStore`` is a folder: by default
``<data_dir>/artifacts/<job>/`` and ``<data_dir>/logs/<job>.log`` (the layout
engines have always written); with the ``artifact_dir`` setting it is a folder
every engine mounts (NFS, a Kubernetes volume), so any engine serves any job's
files and the retention sweep deletes them wherever it runs.

Reads never follow a link or leave the job's folder: a name is served only
when it resolves to a regular file inside it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from engine.artifacts import Collection, collect

__all__ = ["ArtifactStore", "LocalArtifactStore", "artifact_store_for"]

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


@runtime_checkable
class ArtifactStore(Protocol):
    def put(self, job_id: str, output_dir: Path, *, max_bytes: int, max_files: int) -> Collection:
        """Collect a finished container's output folder as the job's artifacts (engine.artifacts.collect)."""
        ...

    def open(self, job_id: str, name: str) -> BinaryIO | None:
        """The artifact's bytes, or None when the job has no such file."""
        ...

    def list(self, job_id: str) -> list[str]:
        """The names of the job's stored files (posix paths), sorted."""
        ...

    def delete(self, job_id: str) -> None:
        """Remove the job's artifacts and its kept log (idempotent)."""
        ...

    def put_log(self, job_id: str, data: bytes) -> None: ...

    def read_log(self, job_id: str) -> bytes:
        """The kept log, b"" when none was kept."""
        ...


class LocalArtifactStore:
    """Artifacts in ``root/<job>/``, logs in ``logs_root/<job>.log`` (root may be a shared mount)."""

    def __init__(self, root: Path, logs_root: Path | None = None):
        self.root = Path(root)
        self.logs_root = Path(logs_root) if logs_root is not None else self.root / ".logs"

    def job_dir(self, job_id: str) -> Path:
        if not _JOB_ID.match(job_id):  # ids are new_job_id()'s hex: never a path of their own
            raise ValueError("not a job id")
        return self.root / job_id

    def log_path(self, job_id: str) -> Path:
        self.job_dir(job_id)  # the same check on the id
        return self.logs_root / f"{job_id}.log"

    def put(self, job_id: str, output_dir: Path, *, max_bytes: int, max_files: int) -> Collection:
        return collect(output_dir, self.job_dir(job_id), max_bytes, max_files=max_files)

    def local_path(self, job_id: str, name: str) -> Path | None:
        """The artifact's file, if it is a regular file inside the job's folder (no link followed)."""
        root = self.job_dir(job_id).resolve()
        stored = root / name
        path = stored.resolve()
        if stored.is_symlink() or root not in path.parents or not path.is_file():
            return None
        return path

    def open(self, job_id: str, name: str) -> BinaryIO | None:
        path = self.local_path(job_id, name)
        return None if path is None else path.open("rb")

    def list(self, job_id: str) -> list[str]:
        root = self.job_dir(job_id)
        if not root.is_dir():
            return []
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and not p.is_symlink())

    def delete(self, job_id: str) -> None:
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
        self.log_path(job_id).unlink(missing_ok=True)

    def put_log(self, job_id: str, data: bytes) -> None:
        path = self.log_path(job_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def read_log(self, job_id: str) -> bytes:
        path = self.log_path(job_id)
        return path.read_bytes() if path.is_file() else b""


def artifact_store_for(data_dir: Path, artifact_dir: Path | None) -> LocalArtifactStore:
    """Today's layout under data_dir, or the shared folder `artifact_dir` (artifacts and logs in it)."""
    if artifact_dir is None:
        return LocalArtifactStore(Path(data_dir) / "artifacts", Path(data_dir) / "logs")
    return LocalArtifactStore(Path(artifact_dir))
