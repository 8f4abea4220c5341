"""Fetch a compute instruction's image archive and verify its sha256 before anything else.

The archive is streamed (http/https via httpx, file:// only when the operator
allows it) into a temporary file in the cache directory while it is hashed; a
size cap aborts the download early. Only when the digest equals the on-chain
hash is the file renamed to ``<cache>/archives/<sha256>.tar`` (or ``.tar.gz``):
the cache is content-addressed, so a second job with the same instruction
neither downloads nor re-hashes. Nothing unverified ever leaves the temporary
directory, so Docker never sees a byte that did not match the chain.

HTTP goes through engine/fetch_guard.py: only public addresses (unless the
operator sets ``allow_private``), checked after DNS and on every redirect,
and a wall-clock deadline and the caller's cancel check that hold even when
no byte arrives. Failure messages name the host and what the engine decided,
never what the server answered (status, size, digest): the job owner chooses
the URL, so the message must not make the engine a probe. The operator's log
has the details.

With a ``check_stream`` (the archive check, engine/archive_check.py) the
download is also fed, as it arrives, to that check in a thread
(engine/fetch_tee.py): hashing, checking and staging are one pass, so the
verified archive carries its ``ArchiveInfo`` and Docker can load it at once,
with no second decompression. With ``stage_expanded`` the check also writes a
compressed archive's tar to a file beside the download (``expanded``): the
loader gives Docker that tar, so Docker does not decompress it again either.
It is used once and removed; it is kept only if the sha256 matched and the
check passed, so Docker still never sees an unverified byte. The check's
verdict is kept only when the sha256 matched; an archive it refused gets
``info=None`` and the loader's ordinary check of the verified file fails it
in its own step.

Archives over ``cache_max_bytes`` in total are pruned least recently used
first (a cache hit counts as a use; one used in the last ``grace_s`` stays,
as a job may be about to load it).

The temporary directory is emptied when the cache opens: a ``.part`` file
there is the leftover of an engine that died mid-download. This is safe
because one engine owns its data dir (the service locks it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import stat
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Generator, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import httpx

from engine.errors import FetchFailure
from engine.fetch_guard import Deadline, guarded_client
from engine.fetch_tee import StreamCheck

if TYPE_CHECKING:
    from engine.archive_check import ArchiveInfo

__all__ = ["FetchProgress", "ImageCache", "VerifiedArchive", "normalize_sha256"]

log = logging.getLogger(__name__)

Progress = Callable[[int], None]  # progress(bytes so far); may raise to abort (FetchProgress: and total)
PROGRESS_INTERVAL_S = 0.5  # the most often a download's progress is written to the job

_CHUNK = 1024 * 1024
_MAX_REDIRECTS = 5
_GZIP_MAGIC = b"\x1f\x8b"
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class VerifiedArchive:
    """An archive on disk whose sha256 matched the expected (on-chain) hash."""

    path: Path
    sha256: str
    size: int
    # What the archive check saw while it downloaded (None: from the cache, or refused).
    info: ArchiveInfo | None = None
    # The compressed archive's tar, decompressed by that check as it downloaded (in the
    # cache's tmp dir, used once): what the loader hands Docker, so Docker does not gunzip.
    expanded: Path | None = None


class FetchProgress:
    """A download's progress callback: `tick()` every call, `report` at most every `interval_s`.

    ``report({"bytes": n, "total": n | None})`` is the job's FETCHING progress
    (a store write): throttled so a fast download does not write once per chunk.
    ``total`` is the size the source announced, never above the size cap.
    """

    def __init__(self, report: Callable[[dict[str, int | None]], None], tick: Callable[[], None] | None = None,
                 *, interval_s: float = PROGRESS_INTERVAL_S, clock: Callable[[], float] = time.monotonic):
        self.report, self.tick, self.interval_s, self.clock = report, tick, interval_s, clock
        self._last: float | None = None
        self._sent: tuple[int, int | None] | None = None

    def __call__(self, size: int, total: int | None = None) -> None:
        if self.tick is not None:
            self.tick()
        now = self.clock()
        if (size, total) == self._sent or (self._last is not None and now - self._last < self.interval_s):
            return
        self._last, self._sent = now, (size, total)
        self.report({"bytes": size, "total": total})


def normalize_sha256(value: str) -> str:
    """Return a sha256 as 64 lowercase hex digits; accepts a ``0x`` prefix."""
    text = value.strip().lower()
    text = text.removeprefix("0x")
    if not _HEX64.fullmatch(text):
        raise FetchFailure(
            f"expected hash {value!r} is not a sha256 (64 hex digits)", code="CHECKSUM_MISMATCH"
        )
    return text


class ImageCache:
    """Downloads, verifies and caches image archives by their sha256."""

    def __init__(
        self,
        cache_dir: Path,
        *,
        max_bytes: int,
        allow_file_urls: bool = False,
        timeout_s: float = 300.0,
        allow_private: bool = False,
        cache_max_bytes: int | None = None,
        grace_s: float = 60.0,
        check_stream: Callable[..., ArchiveInfo] | None = None,
        stage_expanded: bool = False,
    ):
        """``check_stream(reader)`` checks the archive as it downloads (see the module doc);
        with ``stage_expanded`` it is called ``check_stream(reader, stage=file)`` and writes
        a compressed archive's tar there (``VerifiedArchive.expanded``)."""
        self.cache_dir = Path(cache_dir)
        self.check_stream = check_stream
        self.stage_expanded = stage_expanded and check_stream is not None
        self.max_bytes = max_bytes
        self.allow_file_urls = allow_file_urls
        self.timeout_s = timeout_s
        self.allow_private = allow_private
        self.cache_max_bytes = cache_max_bytes
        self.grace_s = grace_s
        self.archives_dir = self.cache_dir / "archives"
        self.tmp_dir = self.cache_dir / "tmp"
        self.archives_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._clear_tmp()

    # -- public -----------------------------------------------------------

    def cached(self, expected_sha256: str) -> VerifiedArchive | None:
        """The cached archive for this hash, or None.

        The file is not re-hashed: its name *is* its hash, and only ``fetch``
        puts files there, after verifying them (a rename from the private temp
        directory). Someone able to write the cache directory could equally
        replace the engine itself. Its type and size are re-checked, cheaply.
        """
        digest = normalize_sha256(expected_sha256)
        for suffix in (".tar.gz", ".tar"):
            path = self.archives_dir / f"{digest}{suffix}"
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            if not _is_regular(st.st_mode) or st.st_size == 0 or st.st_size > self.max_bytes:
                continue
            _touch(path)  # last use, for pruning
            return VerifiedArchive(path=path, sha256=digest, size=st.st_size)
        return None

    def fetch(
        self, url: str, expected_sha256: str, progress: Progress | None = None
    ) -> VerifiedArchive:
        """Return the verified archive for ``expected_sha256``, downloading it if needed.

        ``progress(size)`` gets the bytes received so far after every chunk
        and, while the network is silent, every quarter second: it may raise
        to abort (the service's cancel check does). The whole download has
        ``timeout_s`` of wall clock.

        Raises FetchFailure with FETCH_FAILED (bad scheme, refused address,
        HTTP error, network, deadline), IMAGE_TOO_LARGE (over ``max_bytes``)
        or CHECKSUM_MISMATCH.
        """
        digest = normalize_sha256(expected_sha256)
        hit = self.cached(digest)
        if hit is not None:
            return hit
        fd, tmp_name = tempfile.mkstemp(prefix="fetch-", suffix=".part", dir=self.tmp_dir)
        tmp = Path(tmp_name)
        stage = self._open_stage(tmp) if self.stage_expanded else None
        tee = self._tee(stage)
        expanded = None
        try:
            with os.fdopen(fd, "wb") as out:
                actual, size, head = self._download(url, out, progress, tee)
            info = tee.finish() if tee is not None else None
            if stage is not None:
                stage.close()  # the checker has ended: finish() waited for it
            if actual != digest:
                log.info("archive from %s: sha256 %s, expected %s", _safe_url(url), actual, digest)
                raise FetchFailure(
                    "the archive's sha256 differs from the on-chain hash",
                    code="CHECKSUM_MISMATCH",
                )
            suffix = ".tar.gz" if head.startswith(_GZIP_MAGIC) else ".tar"
            final = self.archives_dir / f"{digest}{suffix}"
            os.replace(tmp, final)
            self._prune(keep=final)
            if stage is not None and info is not None and os.path.getsize(stage.name):
                expanded = Path(stage.name)  # verified now: the hash matched, the check passed
            return VerifiedArchive(path=final, sha256=digest, size=size, info=info, expanded=expanded)
        finally:
            if tee is not None:
                tee.abandon()  # a no-op once finished; else lets the checker thread end
            tmp.unlink(missing_ok=True)
            if stage is not None:
                stage.close()
                if expanded is None:
                    Path(stage.name).unlink(missing_ok=True)

    def _open_stage(self, part: Path) -> BinaryIO:
        return open(part.with_suffix(".expanded"), "xb")

    def _tee(self, stage: BinaryIO | None) -> StreamCheck | None:
        if self.check_stream is None:
            return None
        if stage is None:
            return StreamCheck(self.check_stream)
        check = self.check_stream
        return StreamCheck(lambda reader: check(reader, stage=stage))

    # -- download ---------------------------------------------------------

    def _download(
        self, url: str, out: BinaryIO, progress: Progress | None, tee: StreamCheck | None = None
    ) -> tuple[str, int, bytes]:
        """Stream ``url`` into ``out``; return (sha256 hex, size, first bytes)."""
        received, total = [0], [None]  # total: the announced size (Content-Length, file size), if any
        tick = None
        if isinstance(progress, FetchProgress):
            tick = lambda: progress(received[0], total[0])
        elif progress is not None:
            tick = lambda: progress(received[0])
        deadline = Deadline(self.timeout_s, tick)
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if scheme in ("http", "https"):
            chunks = self._http_chunks(url, deadline, total)
        elif scheme == "file":
            if not self.allow_file_urls:
                raise FetchFailure(
                    "file:// image URLs are disabled on this engine (operator setting allow_file_urls)",
                    code="FETCH_FAILED",
                )
            chunks = self._file_chunks(url, total)
        else:
            raise FetchFailure(
                f"unsupported URL scheme {scheme or '(none)'!r}: use http or https",
                code="FETCH_FAILED",
            )
        # closing(): an early abort (size cap) must drop the connection now, not at GC.
        with closing(chunks):
            return self._copy_loop(chunks, out, deadline, received, tee)

    def _copy_loop(
        self, chunks: Iterator[bytes], out: BinaryIO, deadline: Deadline, received: list[int],
        tee: StreamCheck | None = None,
    ) -> tuple[str, int, bytes]:
        hasher = hashlib.sha256()
        size = 0
        head = b""
        for chunk in chunks:
            if not chunk:
                continue
            size += len(chunk)
            if size > self.max_bytes:
                raise FetchFailure(
                    f"the archive is over the size cap of {self.max_bytes} bytes",
                    code="IMAGE_TOO_LARGE",
                )
            if len(head) < 2:
                head += chunk[:2]
            hasher.update(chunk)
            out.write(chunk)
            if tee is not None:
                tee.feed(chunk)
            received[0] = size
            deadline.check()
        if size == 0:
            raise FetchFailure("the image archive is empty", code="FETCH_FAILED")
        return hasher.hexdigest(), size, head

    def _http_chunks(self, url: str, deadline: Deadline, total: list) -> Generator[bytes, None, None]:
        client = guarded_client(deadline, allow_private=self.allow_private,
                                timeout_s=min(self.timeout_s, 60.0))
        try:
            with client:
                yield from self._follow(client, url, total)
        except httpx.HTTPError as exc:
            log.info("download of %s failed: %s: %s", _safe_url(url), type(exc).__name__, exc)
            raise FetchFailure(_not_downloaded(url)) from exc

    def _follow(self, client: httpx.Client, url: str, total: list) -> Iterator[bytes]:
        origin = url  # messages name only it: a redirect's target came from the server
        for _ in range(_MAX_REDIRECTS + 1):
            with client.stream("GET", url) as resp:
                if resp.is_redirect:
                    url = str(resp.url.join(resp.headers.get("location", "")))
                    # Redirects may only lead to http(s): never to file:// or others.
                    if urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https"):
                        raise FetchFailure("the archive's URL redirects to a non-http(s) URL: refused")
                    continue
                if resp.status_code != 200:
                    log.info("download of %s: HTTP %d", _safe_url(url), resp.status_code)
                    raise FetchFailure(_not_downloaded(origin))
                total[0] = self._check_length(resp.headers.get("content-length"))
                yield from resp.iter_bytes(_CHUNK)
                return
        raise FetchFailure(f"more than {_MAX_REDIRECTS} redirects from {_safe_url(origin)}")

    def _check_length(self, header: str | None) -> int | None:
        """The announced size (at most the cap: a bigger one is refused here), or None."""
        if header is None or not header.isdigit():
            return None
        if int(header) > self.max_bytes:
            raise FetchFailure(
                f"the archive is over the size cap of {self.max_bytes} bytes",
                code="IMAGE_TOO_LARGE",
            )
        return int(header)

    def _file_chunks(self, url: str, total: list) -> Generator[bytes, None, None]:
        parts = urllib.parse.urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise FetchFailure(f"file:// URL with a remote host refused: {url}")
        path = Path(urllib.request.url2pathname(parts.path))
        try:
            with open(path, "rb") as src:
                total[0] = self._check_length(str(os.fstat(src.fileno()).st_size))
                while chunk := src.read(_CHUNK):
                    yield chunk
        except OSError as exc:
            raise FetchFailure(f"cannot read {path}: {exc.strerror}") from exc

    def _prune(self, keep: Path) -> None:
        """Remove least recently used archives until the cache is within its size."""
        if self.cache_max_bytes is None:
            return
        entries = []
        for entry in os.scandir(self.archives_dir):
            if entry.is_file(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                entries.append((st.st_mtime, st.st_size, Path(entry.path)))
        total = sum(size for _, size, _ in entries)
        recent = time.time() - self.grace_s
        for mtime, size, path in sorted(entries):
            if total <= self.cache_max_bytes:
                break
            if path == keep or mtime > recent:
                continue
            path.unlink(missing_ok=True)
            total -= size
            log.info("archive cache: removed %s (least recently used)", path.name)

    def _clear_tmp(self) -> None:
        """Remove every leftover of an interrupted download (nothing there is verified)."""
        for entry in os.scandir(self.tmp_dir):
            try:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
            except OSError:
                log.warning("could not remove the leftover download %s", entry.path)


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass  # a read-only cache still serves; it only prunes less well


def _is_regular(mode: int) -> bool:
    return stat.S_ISREG(mode)


def _not_downloaded(url: str) -> str:
    host = urllib.parse.urlsplit(url).hostname or "(no host)"
    return f"the archive could not be downloaded from {host}"


def _safe_url(url: str) -> str:
    """The URL without credentials, for messages."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
