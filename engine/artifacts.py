"""Collect a finished container's ``/mnt/output`` into the job's artifact store.

Every regular file (sub-folders kept) is copied and hashed in one pass.
Nothing is followed: symlinks, fifos, sockets and devices are skipped, a
directory is entered only when ``lstat`` says it is one, and every file is
opened with ``O_NOFOLLOW`` and re-checked with ``fstat`` so a swapped path
cannot make the engine read a host file such as ``/etc/passwd``. The total is
capped while copying (not from ``stat`` sizes, which could lie about a
growing file); over the cap the copy is undone and OUTPUT_TOO_LARGE raised.

What is not collected is said, not dropped silently: each skipped entry (a
link, a special file, a name that is not printable UTF-8, a path longer than
``MAX_NAME_BYTES``) becomes a ``Skipped`` with a safe, escaped, shortened repr
of its name and the reason; the job keeps the first ``MAX_SKIPPED`` of them.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from engine.errors import RunFailure
from engine.storage import is_disk_full, storage_full

__all__ = [
    "MAX_NAME_BYTES",
    "MAX_SKIPPED",
    "Artifact",
    "Collection",
    "Skipped",
    "collect",
    "read_manifest",
    "write_manifest",
]

log = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
_MAX_DEPTH = 32
MAX_NAME_BYTES = 1024  # longest artifact name (its relative path), in UTF-8 bytes
MAX_SKIPPED = 100  # skipped entries kept with the job; the rest are only counted
_REPR_CHARS = 120


@dataclass(frozen=True)
class Artifact:
    """One output file: ``name`` is its posix path relative to the output dir."""

    name: str
    size: int  # of the plaintext
    sha256: str  # of the plaintext
    media_type: str
    sealed_size: int | None = None  # of the stored ciphertext; None: stored as plaintext
    sealed_sha256: str | None = None


@dataclass(frozen=True)
class Skipped:
    """An output entry that is not an artifact: ``name`` is a safe repr, never the raw bytes."""

    name: str
    reason: str


@dataclass
class Collection:
    """What ``collect`` kept (sorted by name) and what it skipped (first MAX_SKIPPED)."""

    artifacts: list[Artifact] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    skipped_count: int = 0

    def skip(self, rel_parts: tuple[str, ...], reason: str) -> None:
        self.skipped_count += 1
        if len(self.skipped) < MAX_SKIPPED:
            self.skipped.append(Skipped(_safe_repr("/".join(rel_parts)), reason))

    def skipped_public(self) -> dict | None:
        """The job's record of skipped outputs (None when nothing was skipped)."""
        if not self.skipped_count:
            return None
        return {"count": self.skipped_count, "entries": [asdict(s) for s in self.skipped]}


def collect(
    output_dir: Path, dest_dir: Path, max_total_bytes: int, *, max_files: int = 10_000,
    seal_to: str | None = None,
) -> Collection:
    """Copy every regular file under ``output_dir`` into ``dest_dir``; say what was skipped.

    With ``seal_to`` (a wallet's 64-byte public key, 0x hex) each file is sealed to
    it while it is copied (registry_client/sealing.py): only ciphertext is written.
    """
    output_dir, dest_dir = Path(output_dir), Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    result = Collection()
    copier = _Copier(dest_dir, max_total_bytes, max_files, seal_to)
    try:
        for rel, src in _walk(output_dir, result):
            copier.copy(rel, src)
    except BaseException:
        copier.undo()
        raise
    result.artifacts = sorted(copier.artifacts, key=lambda a: a.name)
    return result


def _walk(root: Path, result: Collection):
    """Yield (posix relative name, host path) of regular files, never following links.

    Host paths stay short (each artifact name is at most MAX_NAME_BYTES), so a
    deep tree never reaches PATH_MAX.
    """
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
                reason = _name_problem(entry.name) or _length_problem(rel_parts)
                is_dir = entry.is_dir(follow_symlinks=False)
                if reason is not None:
                    result.skip(rel_parts, reason + (" (its contents too)" if is_dir else ""))
                elif is_dir:
                    stack.append((Path(entry.path), rel_parts))
                elif entry.is_file(follow_symlinks=False):
                    yield "/".join(rel_parts), Path(entry.path)
                elif entry.is_symlink():
                    result.skip(rel_parts, "a symbolic link (never followed)")
                else:
                    result.skip(rel_parts, "not a regular file (fifo, socket or device)")


def _name_problem(name: str) -> str | None:
    if name in ("", ".", "..") or "/" in name or "\\" in name:
        return "a name with a path separator"
    try:
        name.encode("utf-8")  # surrogate-escaped bytes are not valid UTF-8
    except UnicodeEncodeError:
        return "a name that is not valid UTF-8"
    if not all(ch.isprintable() for ch in name):
        return "a name with unprintable characters"
    return None


def _length_problem(rel_parts: tuple[str, ...]) -> str | None:
    size = sum(len(os.fsencode(p)) for p in rel_parts) + len(rel_parts) - 1
    if size > MAX_NAME_BYTES:
        return f"a path longer than {MAX_NAME_BYTES} bytes"
    return None


def _safe_repr(name: str) -> str:
    """Printable ASCII only (other bytes as \\xNN, like a bytes repr), shortened."""
    text = repr(os.fsencode(name))[2:-1]
    return text if len(text) <= _REPR_CHARS else text[: _REPR_CHARS - 3] + "..."


class _Copier:
    """Copies files into the store, counting bytes; can undo what it copied."""

    def __init__(self, dest_dir: Path, max_total_bytes: int, max_files: int, seal_to: str | None = None):
        self.dest_dir = dest_dir
        self.seal_to = seal_to
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

    def _count(self, n: int) -> None:
        self.total += n
        if self.total > self.max_total_bytes:
            raise RunFailure(
                f"output is over the size cap of {self.max_total_bytes} bytes",
                code="OUTPUT_TOO_LARGE",
            )

    def _write(self, rel: str, reader) -> Artifact:
        target = self.dest_dir.joinpath(*rel.split("/"))
        self._mkdirs(target.parent)
        media_type = mimetypes.guess_type(rel, strict=False)[0] or "application/octet-stream"
        self.created.append(target)
        if self.seal_to is not None:
            return self._seal(rel, reader, target, media_type)
        hasher = hashlib.sha256()
        size = 0
        with open(target, "xb") as writer:
            while chunk := reader.read(_CHUNK):
                size += len(chunk)
                self._count(len(chunk))
                hasher.update(chunk)
                writer.write(chunk)
        return Artifact(name=rel, size=size, sha256=hasher.hexdigest(), media_type=media_type)

    def _seal(self, rel: str, reader, target: Path, media_type: str) -> Artifact:
        from registry_client import sealing
        from registry_client.errors import SealError

        assert self.seal_to is not None
        length = os.fstat(reader.fileno()).st_size
        try:
            with open(target, "xb") as writer:
                # The cap counts what is read, as it is read (a size from stat could lie).
                sealed = sealing.seal_stream(reader, writer, length, public_key=self.seal_to,
                                             progress=self._count)
        except SealError as exc:  # the file changed size while it was read: the job's doing
            raise RunFailure(f"output file {rel!r} changed while it was collected",
                             code="OUTPUT_TOO_LARGE") from exc
        return Artifact(name=rel, size=length, sha256=sealed.plain_sha256, media_type=media_type,
                        sealed_size=sealed.size, sealed_sha256=sealed.sha256)

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
