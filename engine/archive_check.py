"""Inspect an image archive in one streaming pass, seeing exactly what `docker load` will see.

`docker load` extracts the (maybe compressed) outer tar into a directory,
normalising every member name (Go's ``filepath.Clean``; a later member
overwrites an earlier one), reads ``manifest.json`` from it, then unpacks each
layer (maybe compressed again) into its storage. So the check here:

- normalises member names the same way and refuses what could make the
  engine's view differ from Docker's: two members with one normalised name,
  absolute names, ``..`` escaping the root, entries below a symbolic link or
  a file, links leaving the root, hard links, devices, fifos and sparse
  members (``docker save`` writes none of these);
- refuses a tar that ends in anything but zero blocks: Python stops at a header
  it cannot read, Go might read on, so nothing may follow the end;
- counts what the archive expands to while reading (the outer tar's bytes, and
  every member's unpacked content: a compressed member is decompressed, a tar
  member is walked and its entries' logical sizes summed, which also catches
  sparse files inside a layer), and stops at the cap with IMAGE_TOO_LARGE;
- keeps memory bounded whatever the entry count: the tar is streamed (no
  ``getmembers()``, ``members`` dropped as it goes), the entry count is capped,
  and extended headers (PAX, GNU long names) are size-capped before Python
  reads them.

The image id is the sha256 of the config the manifest names, known before
Docker sees a byte.
"""

from __future__ import annotations

import bz2
import hashlib
import json
import lzma
import posixpath
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from isal import igzip, igzip_threaded, isal_zlib

from engine.errors import ImageFailure

__all__ = [
    "MAX_LAYER_ENTRIES",
    "MAX_MEMBERS",
    "ArchiveInfo",
    "inspect_archive",
    "inspect_stream",
]

MAX_MEMBERS = 10_000  # `docker save` writes ~4 per layer; Docker allows 127 layers
MAX_LAYER_ENTRIES = 1_000_000  # files in all layers together
_MAX_MANIFEST_BYTES = 1024 * 1024
_MAX_CONFIG_BYTES = 8 * 1024 * 1024
_MAX_EXT_HEADER_BYTES = 1024 * 1024  # one PAX header or GNU long name
_MAX_NAME_BYTES = 4096
_MAX_DEPTH = 8  # `docker save` names are 1-3 levels deep
_MAX_SPARSE_BLOCKS = 10_000  # extension blocks of one old-GNU sparse map
_CHUNK = 1024 * 1024
# The threaded gunzip holds ~10 blocks (its input buffer is 8): 2.5 MiB in flight at most.
_THREADED_BLOCK = 256 * 1024
# tarfile's stream copies its whole buffer on every read, even a 512-byte header.
_STREAM_BUFFER = 64 * 1024
_BLOCK = tarfile.BLOCKSIZE
# Docker's own magic numbers (pkg/archive DetectCompression).
_GZIP, _BZIP2, _XZ, _ZSTD = b"\x1f\x8b\x08", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd"


@dataclass(frozen=True)
class ArchiveInfo:
    """What the archive's manifest says (the one image id, its tags) and what it expands to."""

    image_id: str
    repo_tags: tuple[str, ...]
    expanded_bytes: int = 0


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def inspect_archive(
    path: Path, *, max_expanded_bytes: int = 8 * 1024**3, max_members: int = MAX_MEMBERS
) -> ArchiveInfo:
    """Check ``path`` is a docker-save archive of exactly one image within the caps.

    Raises ImageFailure: IMAGE_INVALID (not an archive Docker would load as
    one image, or ambiguous), IMAGE_TOO_LARGE (expands beyond
    ``max_expanded_bytes``).
    """
    with open(path, "rb") as raw:
        return inspect_stream(raw, max_expanded_bytes=max_expanded_bytes, max_members=max_members)


def inspect_stream(
    raw: _Readable, *, max_expanded_bytes: int, max_members: int = MAX_MEMBERS,
    stage: _Writable | None = None,
) -> ArchiveInfo:
    """``inspect_archive`` over any reader, read once front to back (e.g. a download as it
    arrives, through a pipe), so checking needs no second pass over the file.

    With ``stage``, a compressed archive's decompressed tar is written there as
    the walk reads it (bounded by ``max_expanded_bytes``, which the walk spends
    first): handed to ``docker load`` instead of the compressed file, Docker
    skips its own (single-threaded) gunzip and loads exactly the bytes this
    check walked. An uncompressed archive writes nothing (it is its own tar).
    """
    walk = _Walk(_Budget(max_expanded_bytes), max_members)
    try:
        peek = _Peek(raw)
        tar = _decompressed(peek, "the archive", threaded=True)
        try:
            walk.run(_Staged(tar, stage) if stage is not None and tar is not peek else tar)
        finally:
            if tar is not peek:
                tar.close()  # a threaded reader's thread ends here, also on a refusal
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error, isal_zlib.error,
            lzma.LZMAError) as exc:
        raise ImageFailure("the archive is not a readable (gzipped) tar") from exc
    return walk.result()


class _Closable(_Readable, Protocol):
    def close(self) -> None: ...


class _Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


class _Staged:
    """A reader that also writes everything it reads to ``stage``."""

    def __init__(self, src: _Readable, stage: _Writable):
        self._src, self._stage = src, stage

    def read(self, size: int = -1, /) -> bytes:
        data = self._src.read(size)
        if data:
            self._stage.write(data)
        return data


class _Budget:
    """Bytes the archive expands to, checked on every spend."""

    def __init__(self, cap: int):
        self.cap = cap
        self.used = 0
        self.entries = 0

    def spend(self, n: int) -> None:
        self.used += n
        if self.used > self.cap:
            raise ImageFailure(
                f"the image expands to more than the cap of {self.cap} bytes",
                code="IMAGE_TOO_LARGE",
            )

    def entry(self) -> None:
        self.entries += 1
        if self.entries > MAX_LAYER_ENTRIES:
            raise ImageFailure(f"the image's layers hold more than {MAX_LAYER_ENTRIES} entries")


class _Peek:
    """A reader whose first bytes can be looked at before they are consumed."""

    def __init__(self, src: _Readable, on_read: Callable[[bytes], None] | None = None):
        self._src = src
        self._head = b""
        self._on_read = on_read

    def peek(self, n: int) -> bytes:
        while len(self._head) < n:
            more = self._pull(n - len(self._head))
            if not more:
                break
            self._head += more
        return self._head[:n]

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size < 0 or size >= len(self._head):
                out, self._head = self._head, b""
                return out + (self._pull(size - len(out)) if size > len(out) else b"")
            out, self._head = self._head[:size], self._head[size:]
            return out
        return self._pull(size if size >= 0 else _CHUNK)

    def close(self) -> None:
        """Nothing to release: the caller owns the source."""

    def readinto(self, buffer: memoryview) -> int:  # ISA-L's reader fills buffers
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _pull(self, size: int) -> bytes:
        data = self._src.read(size)
        if data and self._on_read is not None:
            self._on_read(data)
        return data


def _decompressed(src: _Peek, what: str, *, threaded: bool = False) -> _Closable:
    """``src`` decompressed as Docker would (by magic number), or itself.

    ``threaded``: a gzip stream is decompressed ahead in a thread of its own (ISA-L
    releases the GIL), so the tar walk and the gunzip use two cores; the caller closes it.
    """
    head = src.peek(6)
    if head.startswith(_GZIP):
        # ISA-L's decoder (same format and multi-member rule as gzip's, ~2.5x the speed):
        # this gunzip is most of the check's time, and a cold job waits for the check.
        if threaded:
            return igzip_threaded.open(src, "rb", threads=1, block_size=_THREADED_BLOCK)  # type: ignore[return-value]
        return igzip.GzipFile(fileobj=src, mode="rb")  # type: ignore[arg-type]
    if head.startswith(_BZIP2):
        return bz2.BZ2File(src)  # type: ignore[arg-type]
    if head.startswith(_XZ):
        return lzma.LZMAFile(src)  # type: ignore[arg-type]
    if head.startswith(_ZSTD):
        # No zstd decoder here, so its expanded size cannot be bounded: refuse.
        raise ImageFailure(f"{what} is zstd-compressed; use gzip, bzip2 or xz")
    return src


class _StrictTarInfo(tarfile.TarInfo):
    """TarInfo that refuses what Python would silently read differently from Go."""

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(tarfile_)
        except (tarfile.EOFHeaderError, tarfile.EmptyHeaderError):
            raise  # the end (checked for trailing data by the caller)
        except tarfile.HeaderError as exc:
            # Python would stop here as if the tar ended; Go may read on.
            raise tarfile.ReadError("a tar header is unreadable") from exc
        except (ValueError, IndexError, OverflowError) as exc:
            raise tarfile.ReadError("a tar header is malformed") from exc

    def _proc_sparse(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        """An old GNU sparse member: skip its map (bounded) and keep its logical size."""
        _structs, isextended, origsize = self._sparse_structs  # type: ignore[attr-defined]
        del self._sparse_structs  # type: ignore[attr-defined]
        fileobj: BinaryIO = tarfile_.fileobj  # type: ignore[assignment]
        for _ in range(_MAX_SPARSE_BLOCKS):
            if not isextended:
                break
            block = fileobj.read(_BLOCK)
            if len(block) < _BLOCK:
                raise tarfile.ReadError("a sparse header is truncated")
            isextended = bool(block[504])
        else:
            raise ImageFailure("the image holds a file with an implausibly long sparse map")
        self.sparse = []  # never extracted here: only the size matters
        self.offset_data = fileobj.tell()
        tarfile_.offset = self.offset_data + self._block(self.size)  # type: ignore[attr-defined]
        self.size = origsize
        return self

    # PAX sparse maps (0.0, 0.1, 1.0) are not needed for the logical size
    # (GNU.sparse.size/realsize); leaving them unparsed keeps memory bounded.
    def _proc_gnusparse_00(self, next, pax_headers, buf) -> None:
        pass

    def _proc_gnusparse_01(self, next, pax_headers) -> None:
        pass

    def _proc_gnusparse_10(self, next, pax_headers, tarfile_) -> None:
        pass

    def _proc_pax(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type != tarfile.XHDTYPE:
            # Python applies global (and Solaris) headers to later members; Go does not.
            raise ImageFailure("the archive holds a global or non-standard extended tar header")
        self._bound_ext_header()
        member = super()._proc_pax(tarfile_)  # type: ignore[misc]
        headers = member.pax_headers
        if "size" in headers and any(k.startswith("GNU.sparse.") for k in headers):
            # Python then skips the logical, not the stored, size: its view would drift from Go's.
            raise ImageFailure("the archive holds a sparse entry with an explicit size")
        return member

    def _proc_gnulong(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        self._bound_ext_header()
        return super()._proc_gnulong(tarfile_)  # type: ignore[misc]

    def _bound_ext_header(self) -> None:
        if self.size > _MAX_EXT_HEADER_BYTES:
            raise ImageFailure("the archive holds an implausibly large extended tar header")


def _open_stream(src: _Readable) -> tarfile.TarFile:
    return tarfile.open(
        fileobj=src, mode="r|", bufsize=_STREAM_BUFFER, tarinfo=_StrictTarInfo  # type: ignore[arg-type]
    )


def _members(tar: tarfile.TarFile):
    """Members one by one; the list tarfile keeps of them is dropped as we go."""
    while True:
        member = tar.next()
        tar.members.clear()
        if member is None:
            return
        yield member


def _drain_zero_tail(tar: tarfile.TarFile, spend: Callable[[int], None]) -> None:
    """After the end-of-archive block only zero padding may follow."""
    fileobj: BinaryIO = tar.fileobj  # type: ignore[assignment]
    while chunk := fileobj.read(_CHUNK):
        spend(len(chunk))
        if chunk.count(0) != len(chunk):
            raise ImageFailure("the archive holds data after the end of its tar")


def _check_end_block(tar: tarfile.TarFile) -> None:
    """Go's rule for the end of a layer: the block after the first zero block is zero too.

    (Go refuses a zero block followed by data; Python would stop at the first.
    What follows a double zero block Docker ignores, so it is not read here.)
    """
    block = tar.fileobj.read(_BLOCK)  # type: ignore[union-attr]
    if block.count(0) != len(block):
        raise ImageFailure("a layer of the image holds data after the end of its tar")


def _looks_like_tar(block: bytes) -> bool:
    if len(block) < _BLOCK or block.count(0) == _BLOCK:
        return False
    try:
        tarfile.TarInfo.frombuf(block[:_BLOCK], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


_KIND_DIR, _KIND_IMPLICIT_DIR, _KIND_FILE, _KIND_LINK = "d", "D", "f", "l"


class _Walk:
    """One pass over the outer tar: names, types, sizes, the manifest and config digests."""

    def __init__(self, budget: _Budget, max_members: int):
        self.budget = budget
        self.max_members = max_members
        self.kinds: dict[str, str] = {}
        self.digests: dict[str, str] = {}
        self.manifest: bytes | None = None

    def run(self, stream: _Readable) -> None:
        with _open_stream(stream) as tar:
            for count, member in enumerate(_members(tar), start=1):
                if count > self.max_members:
                    raise ImageFailure(f"the archive has more than {self.max_members} entries")
                self.budget.spend(_BLOCK)
                name = _normalise(member.name)
                self._place(name, member)
                if member.isreg():
                    self._read(tar, member, name)
            _drain_zero_tail(tar, self.budget.spend)

    def _place(self, name: str, member: tarfile.TarInfo) -> None:
        if name == ".":
            if not member.isdir():
                raise ImageFailure("the archive's root entry is not a directory")
            return
        if not (member.type in (tarfile.REGTYPE, tarfile.AREGTYPE) or member.isdir()
                or member.issym()):
            raise ImageFailure("the archive holds a hard link, device, fifo or sparse entry")
        parts = name.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            kind = self.kinds.setdefault(prefix, _KIND_IMPLICIT_DIR)
            if kind not in (_KIND_DIR, _KIND_IMPLICIT_DIR):
                raise ImageFailure("the archive holds an entry below a link or a file")
        seen = self.kinds.get(name)
        if seen is not None and not (seen == _KIND_IMPLICIT_DIR and member.isdir()):
            raise ImageFailure("the archive holds two entries with the same normalised path")
        if member.issym():
            _check_link(name, member.linkname)
        self.kinds[name] = (
            _KIND_DIR if member.isdir() else _KIND_LINK if member.issym() else _KIND_FILE
        )

    def _read(self, tar: tarfile.TarFile, member: tarfile.TarInfo, name: str) -> None:
        src = tar.extractfile(member)
        assert src is not None  # a regular member always has a file object
        if name == "manifest.json":
            if member.size > _MAX_MANIFEST_BYTES:
                raise ImageFailure("the archive's manifest.json is implausibly large")
            self.manifest = src.read()
            self.budget.spend(len(self.manifest))
            return
        hasher = hashlib.sha256() if member.size <= _MAX_CONFIG_BYTES else None

        def seen(data: bytes) -> None:
            self.budget.spend(len(data))
            if hasher is not None:
                hasher.update(data)

        raw = _Peek(src, on_read=seen)
        _count_unpacked(raw, self.budget)
        while raw.read(_CHUNK):
            pass  # what the unpacking left unread still lands on Docker's disk
        if hasher is not None:
            self.digests[name] = hasher.hexdigest()

    def result(self) -> ArchiveInfo:
        entries = _parse_manifest(self.manifest)
        configs = sorted({_normalise(str(e.get("Config", ""))) for e in entries})
        if len(configs) != 1 or configs[0] in ("", "."):
            raise ImageFailure(f"the archive holds {len(configs)} images; exactly one is required")
        digest = self.digests.get(configs[0])
        if digest is None or self.kinds.get(configs[0]) != _KIND_FILE:
            raise ImageFailure("the archive lacks the image config its manifest names")
        tags = tuple(sorted(
            {t for e in entries for t in (e.get("RepoTags") or []) if isinstance(t, str)}
        ))
        return ArchiveInfo(image_id="sha256:" + digest, repo_tags=tags,
                           expanded_bytes=self.budget.used)


def _count_unpacked(raw: _Peek, budget: _Budget) -> None:
    """Spend what a member unpacks to: a tar's entries at their logical size, else its bytes.

    ``raw`` already spends the member's own bytes as they are read; only what
    decompression or a layer's unpacking adds is spent here.
    """
    stream = _decompressed(raw, "a member of the archive")
    content = raw if stream is raw else _Peek(stream)
    if _looks_like_tar(content.peek(_BLOCK)):
        with _open_stream(content) as inner:
            for entry in _members(inner):
                budget.entry()
                budget.spend(_BLOCK + max(entry.size, 0))
            _check_end_block(inner)
    elif content is not raw:
        while data := content.read(_CHUNK):
            budget.spend(len(data))


def _normalise(name: str) -> str:
    """A member name as Docker resolves it; refuses names that leave or hide in the tree."""
    if name.startswith("/"):
        raise ImageFailure("the archive holds an entry with an absolute path")
    normal = posixpath.normpath(name) if name else "."
    if normal == ".." or normal.startswith("../"):
        raise ImageFailure("the archive holds an entry whose path leaves the archive")
    if len(normal.encode("utf-8", "surrogateescape")) > _MAX_NAME_BYTES:
        raise ImageFailure("the archive holds an implausibly long entry name")
    if normal.count("/") >= _MAX_DEPTH:
        raise ImageFailure("the archive holds an implausibly deep entry")
    return normal


def _check_link(name: str, target: str) -> None:
    """A symbolic link must point inside the archive (`docker save` links layer to layer)."""
    if not target or target.startswith("/"):
        raise ImageFailure("the archive holds a link with an absolute target")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    if resolved == ".." or resolved.startswith("../"):
        raise ImageFailure("the archive holds a link leading out of the archive")


def _parse_manifest(raw: bytes | None) -> list[dict]:
    if raw is None:
        raise ImageFailure("the archive has no manifest.json: not a `docker save` archive")
    try:
        entries = json.loads(raw)
    except ValueError as exc:
        raise ImageFailure("the archive's manifest.json is not valid JSON") from exc
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ImageFailure("the archive's manifest.json is not a list of images")
    return entries
