"""Collect a finished container's ``/mnt/output`` into the job's artifact store.

Every regular file (sub-folders kept) is copied and hashed in one pass.
Nothing is followed: symlinks, fifos, sockets and devices are skipped, a
directory is entered only when ``lstat`` says it is one, and every file is
opened with ``O_NOFOLLOW`` and re-checked with ``fstat`` so a swapped path
cannot make the engine read a host file such as ``/etc/passwd``. The total is
capped while copying (not from ``stat`` sizes, which could lie about a
growing file); over the cap the copy is undone and OUTPUT_TOO_LARGE raised.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
import os
import shutil
import stat
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from engine.errors import RunFailure
from engine.storage import is_disk_full, storage_full

__all__ = ["Artifact", "collect", "read_manifest", "write_manifest"]

log = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
_MAX_DEPTH = 32


@dataclass(frozen=True)
class Artifact:
    """One output file: ``name`` is its posix path relative to the output dir."""

    name: str
    size: int
    sha256: str
    media_type: str


def collect(
    output_dir: Path, dest_dir: Path, max_total_bytes: int, *, max_files: int = 10_000
) -> list[Artifact]:
    """Copy every regular file under ``output_dir`` into ``dest_dir``; return them sorted by name."""
    output_dir, dest_dir = Path(output_dir), Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    copier = _Copier(dest_dir, max_total_bytes, max_files)
    try:
        for rel, src in _walk(output_dir):
            copier.copy(rel, src)
    except BaseException:
        copier.undo()
        raise
    return sorted(copier.artifacts, key=lambda a: a.name)


def _walk(root: Path):
    """Yield (posix relative name, host path) of regular files, never following links."""
    stack: list[tuple[Path, tuple[str, ...]]] = [(root, ())]
    while stack:
        folder, parts = stack.pop()
        if len(parts) > _MAX_DEPTH:
            raise RunFailure(
                f"output folders nest deeper than {_MAX_DEPTH} levels", code="OUTPUT_TOO_LARGE"
            )
        with os.scandir(folder) as entries:
            for entry in entries:
                rel_parts = (*parts, entry.name)
                if not _safe_name(entry.name):
                    log.warning(
                        "skipping output entry with an unsafe name: %r", "/".join(rel_parts)
                    )
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append((Path(entry.path), rel_parts))
                elif entry.is_file(follow_symlinks=False):
                    yield "/".join(rel_parts), Path(entry.path)
                # symlinks, fifos, sockets, devices: skipped, recorded nowhere


def _safe_name(name: str) -> bool:
    if name in ("", ".", "..") or "/" in name or "\\" in name:
        return False
    try:
        name.encode("utf-8")  # surrogate-escaped bytes are not valid UTF-8
    except UnicodeEncodeError:
        return False
    return all(ch.isprintable() for ch in name)


class _Copier:
    """Copies files into the store, counting bytes; can undo what it copied."""

    def __init__(self, dest_dir: Path, max_total_bytes: int, max_files: int):
        self.dest_dir = dest_dir
        self.max_total_bytes = max_total_bytes
        self.max_files = max_files
        self.total = 0
        self.artifacts: list[Artifact] = []
        self.created: list[Path] = []

    def copy(self, rel: str, src: Path) -> None:
        pure = PurePosixPath(rel)
        if pure.is_absolute() or ".." in pure.parts:
            raise RunFailure(
                f"output name {rel!r} escapes the output folder", code="OUTPUT_TOO_LARGE"
            )
        if len(self.artifacts) >= self.max_files:
            raise RunFailure(
                f"output has more than {self.max_files} files", code="OUTPUT_TOO_LARGE"
            )
        try:
            fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            log.warning("skipping output file %r: %s", rel, exc.strerror)
            return  # vanished or turned into a link: not a regular file any more
        with os.fdopen(fd, "rb") as reader:
            if not stat.S_ISREG(os.fstat(reader.fileno()).st_mode):
                return
            try:
                self.artifacts.append(self._write(rel, reader))
            except OSError as exc:
                if is_disk_full(exc):  # the engine's disk, not the job's output, is at fault
                    raise storage_full("collecting the job's output") from exc
                raise

    def _write(self, rel: str, reader) -> Artifact:
        target = self.dest_dir.joinpath(*rel.split("/"))
        self._mkdirs(target.parent)
        hasher = hashlib.sha256()
        size = 0
        self.created.append(target)
        with open(target, "xb") as writer:
            while chunk := reader.read(_CHUNK):
                size += len(chunk)
                self.total += len(chunk)
                if self.total > self.max_total_bytes:
                    raise RunFailure(
                        f"output is over the size cap of {self.max_total_bytes} bytes",
                        code="OUTPUT_TOO_LARGE",
                    )
                hasher.update(chunk)
                writer.write(chunk)
        media_type = mimetypes.guess_type(rel, strict=False)[0] or "application/octet-stream"
        return Artifact(name=rel, size=size, sha256=hasher.hexdigest(), media_type=media_type)

    def _mkdirs(self, folder: Path) -> None:
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for path in reversed(missing):
            path.mkdir()
            self.created.append(path)

    def undo(self) -> None:
        for path in reversed(self.created):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def write_manifest(path: Path, artifacts: list[Artifact]) -> None:
    """Write the artifact list as JSON to ``path`` atomically (keep it outside the artifact folder)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump([asdict(a) for a in artifacts], out, indent=1)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def read_manifest(path: Path) -> list[Artifact]:
    """The artifact list written by ``write_manifest``."""
    return [Artifact(**item) for item in json.loads(Path(path).read_text())]
