"""engine.fetch against a real local HTTP server (and Docker for the never-loaded check)."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

import engine.fetch as fetch_mod
from engine.errors import FetchFailure
from engine.fetch import FetchProgress, ImageCache, VerifiedArchive, normalize_sha256


class _Handler(http.server.BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}
    redirects: ClassVar[dict[str, str]] = {}
    requests: ClassVar[list[str]] = []
    no_length: ClassVar[set[str]] = set()

    def do_GET(self) -> None:
        self.requests.append(self.path)
        if self.path in self.redirects:
            self.send_response(302)
            self.send_header("Location", self.redirects[self.path])
            self.end_headers()
            return
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        if self.path not in self.no_length:  # without it the body ends at close (HTTP/1.0)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class Server:
    """A real HTTP server on 127.0.0.1:0 in a thread; state is reset per test."""

    def __init__(self) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def reset(self) -> None:
        _Handler.files, _Handler.redirects, _Handler.requests, _Handler.no_length = (
            {},
            {},
            [],
            set(),
        )

    @property
    def handler(self) -> type[_Handler]:
        return _Handler

    def serve(self, path: str, body: bytes) -> str:
        _Handler.files[path] = body
        return self.base + path

    def count(self, path: str) -> int:
        return sum(1 for p in _Handler.requests if p == path)


@pytest.fixture(scope="module")
def http_server() -> Iterator[Server]:
    srv = Server()
    try:
        yield srv
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()


@pytest.fixture
def server(http_server: Server) -> Server:
    http_server.reset()
    return http_server


@pytest.fixture
def cache(tmp_path: Path) -> ImageCache:
    return ImageCache(
        tmp_path / "cache", max_bytes=1024 * 1024, allow_private=True, timeout_s=10
    )


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _leftovers(cache: ImageCache) -> list[str]:
    return sorted(os.listdir(cache.tmp_dir)) + sorted(os.listdir(cache.archives_dir))


TAR_BODY = b"plain tar bytes" * 100
GZ_BODY = b"\x1f\x8b" + b"gzip-ish bytes" * 100


@pytest.mark.parametrize("body, suffix", [(TAR_BODY, ".tar"), (GZ_BODY, ".tar.gz")])
def test_fetch_verifies_and_caches_by_hash(
    server: Server, cache: ImageCache, body: bytes, suffix: str
) -> None:
    url = server.serve("/img", body)
    seen: list[int] = []
    got = cache.fetch(url, "0x" + _sha(body).upper(), progress=seen.append)
    assert got == VerifiedArchive(
        cache.archives_dir / f"{_sha(body)}{suffix}", _sha(body), len(body)
    )
    assert got.path.read_bytes() == body
    assert seen and seen[-1] == len(body)
    assert os.listdir(cache.tmp_dir) == []

    again = cache.fetch(url, _sha(body))
    assert again == got
    assert server.count("/img") == 1, "a cached archive must not be downloaded again"
    assert cache.cached(_sha(body)) == got


def test_cached_survives_a_new_cache_object(server: Server, tmp_path: Path) -> None:
    url = server.serve("/img", TAR_BODY)
    ImageCache(tmp_path / "c", max_bytes=10_000, allow_private=True).fetch(url, _sha(TAR_BODY))
    fresh = ImageCache(tmp_path / "c", max_bytes=10_000, allow_private=True)
    assert fresh.cached(_sha(TAR_BODY)) is not None
    assert fresh.cached(_sha(b"other")) is None


def test_hash_mismatch_leaves_nothing(server: Server, cache: ImageCache) -> None:
    url = server.serve("/img", TAR_BODY)
    wrong = _sha(b"something else")
    with pytest.raises(FetchFailure) as err:
        cache.fetch(url, wrong)
    assert err.value.code == "CHECKSUM_MISMATCH"
    # Nothing learnt from the response: not the digest that arrived, not even the expected one.
    assert _sha(TAR_BODY) not in err.value.message and wrong not in err.value.message
    assert _leftovers(cache) == []
    assert cache.cached(wrong) is None


@pytest.mark.docker
def test_tampered_archive_never_reaches_docker(
    server: Server, cache: ImageCache, docker_client, busybox_archive
) -> None:
    """The pipeline's order (fetch, then load) means a mismatch leaves Docker untouched."""
    from engine.images import ImageLoader

    path, digest = busybox_archive
    tampered = bytearray(path.read_bytes())
    tampered[len(tampered) // 2] ^= 0xFF
    url = server.serve("/tampered.tar.gz", bytes(tampered))
    before = {img.id for img in docker_client.images.list(all=True)}
    cache = ImageCache(cache.cache_dir, max_bytes=64 * 1024 * 1024, allow_private=True)
    loader = ImageLoader(docker_client, cache.cache_dir / "state")
    with pytest.raises(FetchFailure) as err:
        loader.ensure_loaded(cache.fetch(url, digest))
    assert err.value.code == "CHECKSUM_MISMATCH"
    assert {img.id for img in docker_client.images.list(all=True)} == before
    assert cache.cached(digest) is None
    assert not (cache.cache_dir / "state" / "images.json").exists()


def test_404_is_fetch_failed(server: Server, cache: ImageCache) -> None:
    with pytest.raises(FetchFailure) as err:
        cache.fetch(server.base + "/missing", _sha(b"x"))
    assert err.value.code == "FETCH_FAILED"
    assert "404" not in err.value.message and "127.0.0.1" in err.value.message
    assert _leftovers(cache) == []


def test_connection_refused_is_fetch_failed(cache: ImageCache) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FetchFailure) as err:
        cache.fetch(f"http://127.0.0.1:{port}/x", _sha(b"x"))
    assert err.value.code == "FETCH_FAILED"


def test_size_cap_while_streaming(server: Server, tmp_path: Path) -> None:
    body = b"a" * 5000
    url = server.serve("/big", body)
    server.handler.no_length.add(
        "/big"
    )  # no Content-Length: only counting while streaming stops it
    small = ImageCache(tmp_path / "c", max_bytes=1000, allow_private=True)
    monkey_chunk = fetch_mod._CHUNK
    fetch_mod._CHUNK = 512
    try:
        with pytest.raises(FetchFailure) as err:
            small.fetch(url, _sha(body))
    finally:
        fetch_mod._CHUNK = monkey_chunk
    assert err.value.code == "IMAGE_TOO_LARGE"
    assert _leftovers(small) == []


def test_size_cap_from_content_length(server: Server, tmp_path: Path) -> None:
    body = b"a" * 5000
    url = server.serve("/big", body)
    seen: list[int] = []
    with pytest.raises(FetchFailure) as err:
        ImageCache(tmp_path / "c", max_bytes=1000, allow_private=True).fetch(
            url, _sha(body), progress=seen.append
        )
    assert err.value.code == "IMAGE_TOO_LARGE"
    assert "5000" not in err.value.message, "the size the server claimed is not echoed"
    assert not any(seen), "refused up front, before reading the body"


def test_redirect_followed_within_http(server: Server, cache: ImageCache) -> None:
    server.serve("/real", TAR_BODY)
    server.handler.redirects["/moved"] = "/real"
    assert cache.fetch(server.base + "/moved", _sha(TAR_BODY)).size == len(TAR_BODY)


def test_redirect_to_file_url_refused(server: Server, tmp_path: Path) -> None:
    secret = tmp_path / "secret.tar"
    secret.write_bytes(TAR_BODY)
    server.handler.redirects["/sneaky"] = secret.as_uri()
    permissive = ImageCache(
        tmp_path / "c", max_bytes=10_000, allow_private=True, allow_file_urls=True
    )
    with pytest.raises(FetchFailure) as err:
        permissive.fetch(server.base + "/sneaky", _sha(TAR_BODY))
    assert err.value.code == "FETCH_FAILED"
    assert "redirect" in err.value.message


def test_file_url_refused_unless_enabled(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    archive.write_bytes(TAR_BODY)
    with pytest.raises(FetchFailure) as err:
        ImageCache(tmp_path / "off", max_bytes=10_000).fetch(archive.as_uri(), _sha(TAR_BODY))
    assert err.value.code == "FETCH_FAILED"
    assert "file://" in err.value.message

    got = ImageCache(tmp_path / "on", max_bytes=10_000, allow_file_urls=True).fetch(
        archive.as_uri(), _sha(TAR_BODY)
    )
    assert got.path.read_bytes() == TAR_BODY
    assert got.path.parent == tmp_path / "on" / "archives"


def test_file_url_missing_file(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "on", max_bytes=10_000, allow_file_urls=True)
    with pytest.raises(FetchFailure) as err:
        cache.fetch((tmp_path / "nope.tar").as_uri(), _sha(b"x"))
    assert err.value.code == "FETCH_FAILED"


@pytest.mark.parametrize(
    "url", ["ftp://example.org/a.tar", "s3://bucket/a.tar", "a.tar", "data:,hello"]
)
def test_bad_scheme(cache: ImageCache, url: str) -> None:
    with pytest.raises(FetchFailure) as err:
        cache.fetch(url, _sha(b"x"))
    assert err.value.code == "FETCH_FAILED"
    assert "scheme" in err.value.message


@pytest.mark.parametrize("bad", ["", "0x1234", "zz" * 32, _sha(b"x") + "00"])
def test_expected_hash_must_be_sha256(bad: str) -> None:
    with pytest.raises(FetchFailure):
        normalize_sha256(bad)


def test_normalize_sha256_accepts_prefix_and_case() -> None:
    digest = _sha(b"x")
    assert normalize_sha256("0x" + digest.upper()) == digest
    assert normalize_sha256(f"  {digest} ") == digest


def test_public_surface() -> None:
    assert set(fetch_mod.__all__) == {"FetchProgress", "VerifiedArchive", "ImageCache", "normalize_sha256"}


def test_leftover_downloads_are_cleared_at_start_up(tmp_path: Path) -> None:
    """A `.part` from a download cut by a crash goes when the cache opens, however fresh."""
    tmp = tmp_path / "c" / "tmp"
    tmp.mkdir(parents=True)
    (tmp / "fetch-abc.part").write_bytes(b"half an archive")
    (tmp / "stray-dir").mkdir()
    (tmp / "stray-dir" / "x").write_bytes(b"x")
    ImageCache(tmp_path / "c", max_bytes=10_000)
    assert os.listdir(tmp) == []


def test_archive_cache_prunes_least_recently_used(server: Server, tmp_path: Path) -> None:
    bodies = [bytes([i]) * 1000 for i in range(3)]
    urls = [server.serve(f"/a{i}", body) for i, body in enumerate(bodies)]
    cache = ImageCache(tmp_path / "c", max_bytes=10_000, allow_private=True,
                       cache_max_bytes=2500, grace_s=0)
    first = cache.fetch(urls[0], _sha(bodies[0]))
    second = cache.fetch(urls[1], _sha(bodies[1]))
    os.utime(first.path, (1, 1))
    os.utime(second.path, (2, 2))
    assert cache.cached(_sha(bodies[0])) is not None  # a hit is a use: the first is now newest
    third = cache.fetch(urls[2], _sha(bodies[2]))
    assert sorted(os.listdir(cache.archives_dir)) == sorted([first.path.name, third.path.name])
    assert not second.path.exists()


def test_cancel_during_a_slow_dns_lookup(tmp_path: Path, monkeypatch) -> None:
    """A resolver that takes 10 s does not hold the download past a cancel."""
    import socket
    import threading
    import time

    import engine.fetch_guard as guard

    real = socket.getaddrinfo

    def slow(*args, **kwargs):
        time.sleep(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(guard.socket, "getaddrinfo", slow)
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()

    def progress(_size: int) -> None:
        if cancel.is_set():
            raise InterruptedError("cancelled")

    started = time.monotonic()
    with pytest.raises(InterruptedError):
        ImageCache(tmp_path / "c", max_bytes=10_000, timeout_s=30).fetch(
            "http://archive.example/a.tar", _sha(b"x"), progress=progress
        )
    assert time.monotonic() - started < 1.5


def test_fetch_guard_public_surface() -> None:
    import engine.fetch_guard as guard_mod

    assert set(guard_mod.__all__) == {
        "Deadline", "GuardedBackend", "guarded_client", "is_public_address"
    }


# ---------------------------------------------------------------- checked while downloading


class _CountingCheck:
    """inspect_stream, counting the bytes it read: the check must see the download once, whole."""

    def __init__(self, cap: int = 8 * 1024**3) -> None:
        self.read = 0
        self.calls = 0
        self.cap = cap

    def __call__(self, reader):
        from engine.archive_check import inspect_stream

        self.calls += 1
        outer = self

        class Counting:
            def read(self, size: int = -1, /) -> bytes:
                data = reader.read(size)
                outer.read += len(data)
                return data

        return inspect_stream(Counting(), max_expanded_bytes=self.cap)


@pytest.mark.docker
def test_the_archive_is_checked_while_it_downloads_in_one_pass(
    server: Server, tmp_path: Path, busybox_archive
) -> None:
    from engine.archive_check import inspect_archive

    path, digest = busybox_archive
    url = server.serve("/one-pass.tar.gz", path.read_bytes())
    check = _CountingCheck()
    cache = ImageCache(tmp_path / "c", max_bytes=64 * 1024 * 1024, allow_private=True,
                       check_stream=check)
    got = cache.fetch(url, digest)
    assert got.info == inspect_archive(got.path)  # the same verdict as a check of the file
    assert (check.calls, check.read) == (1, path.stat().st_size)
    assert cache.cached(digest).info is None  # a cache hit carries none: the loader checks


def test_an_archive_the_check_refuses_is_verified_without_info(server: Server, tmp_path: Path) -> None:
    """The check's verdict never replaces the hash: a refused (but matching) archive has no info,
    so the loader's own check fails it in its step."""
    url = server.serve("/not-a-tar.tar", TAR_BODY)
    cache = ImageCache(tmp_path / "c", max_bytes=10_000, allow_private=True,
                       check_stream=_CountingCheck())
    got = cache.fetch(url, _sha(TAR_BODY))
    assert got.info is None and got.path.read_bytes() == TAR_BODY


@pytest.mark.docker
def test_a_mismatching_archive_is_checksum_mismatch_whatever_the_check_said(
    server: Server, tmp_path: Path, busybox_archive
) -> None:
    path, _digest = busybox_archive
    url = server.serve("/valid-but-other.tar.gz", path.read_bytes())
    cache = ImageCache(tmp_path / "c", max_bytes=64 * 1024 * 1024, allow_private=True,
                       check_stream=_CountingCheck())
    with pytest.raises(FetchFailure) as err:
        cache.fetch(url, _sha(b"something else"))
    assert err.value.code == "CHECKSUM_MISMATCH"
    assert _leftovers(cache) == []


def test_a_check_that_stops_before_the_end_gives_no_verdict() -> None:
    from engine.fetch_tee import StreamCheck

    tee = StreamCheck(lambda reader: reader.read(3))
    for chunk in (b"abcdef", b"ghi"):
        tee.feed(chunk)
    assert tee.finish() is None
    whole = StreamCheck(lambda reader: reader.read())
    for chunk in (b"abc", b"def"):
        whole.feed(chunk)
    assert whole.finish() == b"abcdef"


@pytest.mark.parametrize("announced", [True, False])
def test_fetch_progress_reports_bytes_of_the_announced_total(
    server: Server, cache: ImageCache, announced: bool
) -> None:
    """FETCHING's progress: bytes so far, of the Content-Length when the server sent one."""
    url = server.serve("/progress", TAR_BODY)
    if not announced:
        server.handler.no_length.add("/progress")
    reports: list[dict] = []
    ticks: list[int] = []
    cache.fetch(url, _sha(TAR_BODY), progress=FetchProgress(reports.append, lambda: ticks.append(1), interval_s=0))
    assert reports and reports[-1] == {"bytes": len(TAR_BODY), "total": len(TAR_BODY) if announced else None}
    assert len(ticks) >= len(reports)  # the cancel check runs on every call, reported or not


def test_fetch_progress_writes_at_most_every_interval() -> None:
    """A fast download calls back per chunk; the job's store sees one write per half second."""
    now = [100.0]
    reports: list[dict] = []
    ticks: list[int] = []
    progress = FetchProgress(reports.append, lambda: ticks.append(1), interval_s=0.5, clock=lambda: now[0])
    for size in (1, 2, 3):
        progress(size, 10)
        now[0] += 0.1
    now[0] += 0.5
    progress(4, 10)
    progress(4, 10)  # nothing new: no write
    assert reports == [{"bytes": 1, "total": 10}, {"bytes": 4, "total": 10}]
    assert len(ticks) == 5


# ---------------------------------------------------------------- the expanded tar, staged


def _staging_cache(tmp_path: Path) -> ImageCache:
    import functools

    from engine.archive_check import inspect_stream

    return ImageCache(tmp_path / "c", max_bytes=64 * 1024 * 1024, allow_private=True,
                      check_stream=functools.partial(inspect_stream, max_expanded_bytes=8 * 1024**3),
                      stage_expanded=True)


@pytest.mark.docker
def test_a_gzipped_archive_comes_with_its_tar_decompressed_while_it_downloaded(
    server: Server, tmp_path: Path, busybox_archive
) -> None:
    import gzip

    path, digest = busybox_archive
    url = server.serve("/staged.tar.gz", path.read_bytes())
    cache = _staging_cache(tmp_path)
    got = cache.fetch(url, digest)
    assert got.info is not None and got.expanded is not None
    assert got.expanded.parent == cache.tmp_dir  # never in the content-addressed cache
    assert got.expanded.read_bytes() == gzip.decompress(path.read_bytes())
    assert got.path.read_bytes() == path.read_bytes()  # the cache keeps the verified archive


@pytest.mark.docker
def test_a_plain_tar_archive_stages_nothing(server: Server, tmp_path: Path, busybox_archive) -> None:
    import gzip

    path, _digest = busybox_archive
    plain = gzip.decompress(path.read_bytes())
    url = server.serve("/plain.tar", plain)
    cache = _staging_cache(tmp_path)
    got = cache.fetch(url, _sha(plain))
    assert got.info is not None and got.expanded is None  # the archive is its own tar
    assert os.listdir(cache.tmp_dir) == []


@pytest.mark.docker
def test_a_mismatching_archive_leaves_no_staged_tar(server: Server, tmp_path: Path, busybox_archive) -> None:
    path, _digest = busybox_archive
    url = server.serve("/staged-other.tar.gz", path.read_bytes())
    cache = _staging_cache(tmp_path)
    with pytest.raises(FetchFailure) as err:
        cache.fetch(url, _sha(b"something else"))
    assert err.value.code == "CHECKSUM_MISMATCH"
    assert _leftovers(cache) == []  # the decompressed bytes went with the download


def test_an_archive_the_check_refuses_stages_nothing(server: Server, tmp_path: Path) -> None:
    import gzip

    body = gzip.compress(b"not a tar at all" * 1000)
    url = server.serve("/refused.tar.gz", body)
    cache = _staging_cache(tmp_path)
    got = cache.fetch(url, _sha(body))
    assert got.info is None and got.expanded is None
    assert os.listdir(cache.tmp_dir) == []
