"""Hostile archive URLs against the real fetcher: slow drips, silence, private destinations.

Real TCP servers in threads; the fetch runs in a thread of its own so a
regression shows as a bounded failure, not a hung suite.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import engine.fetch_guard as guard
from engine.errors import FetchFailure
from engine.fetch import ImageCache
from engine.fetch_guard import is_public_address

BODY = b"x" * 1000
SHA = hashlib.sha256(BODY).hexdigest()


class RawServer:
    """A TCP server on ``host``:0 whose every connection is handled by ``behave(conn)``."""

    def __init__(self, behave: Callable[[socket.socket], None], host: str = "127.0.0.1"):
        self.behave = behave
        self.sock = socket.create_server((host, 0))
        self.sock.settimeout(0.2)
        self.url = f"http://{host}:{self.sock.getsockname()[1]}"
        self.connections = 0
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(5)
                conn.recv(65536)  # the request
                self.behave(conn)
            except OSError:
                pass  # the client gave up: that is what these tests want

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def make(behave: Callable[[socket.socket], None], host: str = "127.0.0.1") -> RawServer:
        servers.append(RawServer(behave, host))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def _run(fn: Callable[[], object], limit_s: float) -> tuple[BaseException | None, float]:
    """Run ``fn`` in a thread; (what it raised, seconds taken). Fails if it outlives ``limit_s``."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            fn()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(limit_s)
    assert not thread.is_alive(), f"the fetch was still running after {limit_s} s"
    return outcome[0], time.monotonic() - started


def _drip(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY))
    for byte in BODY:
        conn.sendall(bytes([byte]))
        time.sleep(0.1)


def _headers_then_silence(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY))
    time.sleep(10)


def _silence(conn: socket.socket) -> None:
    time.sleep(10)


def test_slow_drip_hits_the_wall_clock_deadline(serve, tmp_path: Path) -> None:
    """One byte every 0.1 s never trips a per-read timeout; the wall clock stops it."""
    server = serve(_drip)
    cache = ImageCache(tmp_path / "c", max_bytes=10_000, timeout_s=1.0, allow_private=True)
    exc, took = _run(lambda: cache.fetch(server.url + "/a.tar", SHA), limit_s=5)
    assert isinstance(exc, FetchFailure) and exc.code == "FETCH_FAILED"
    assert "longer than 1 s" in exc.message
    assert took < 2.5
    assert list((tmp_path / "c" / "tmp").iterdir()) == []


class Cancelled(Exception):
    pass


@pytest.mark.parametrize("behave", [_silence, _headers_then_silence, _drip],
                         ids=["no-answer", "headers-then-silence", "drip"])
def test_cancel_stops_a_silent_fetch_within_a_second(serve, tmp_path: Path, behave) -> None:
    server = serve(behave)
    cache = ImageCache(tmp_path / "c", max_bytes=10_000, timeout_s=60, allow_private=True)
    cancel = threading.Event()
    cancelled_at: list[float] = []

    def progress(_size: int) -> None:  # what the service passes: raise once cancelled
        if cancel.is_set():
            cancelled_at.append(time.monotonic())
            raise Cancelled()

    threading.Timer(0.5, cancel.set).start()
    set_at = time.monotonic() + 0.5
    exc, _took = _run(lambda: cache.fetch(server.url + "/a.tar", SHA, progress=progress), 5)
    assert isinstance(exc, Cancelled)
    assert cancelled_at[0] - set_at < 1.0
    assert list((tmp_path / "c" / "tmp").iterdir()) == []


def _ok(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_is_refused_by_default(serve, tmp_path: Path, host: str) -> None:
    server = serve(_ok)
    url = server.url.replace("127.0.0.1", host) + "/a.tar"
    with pytest.raises(FetchFailure) as err:
        ImageCache(tmp_path / "c", max_bytes=10_000).fetch(url, SHA)
    assert err.value.code == "FETCH_FAILED"
    assert "not a public address" in err.value.message
    assert server.connections == 0, "the check comes before any connection"
    # The operator's switch (demo, tests) allows it:
    got = ImageCache(tmp_path / "d", max_bytes=10_000, allow_private=True).fetch(url, SHA)
    assert got.sha256 == SHA


def test_redirect_into_a_private_address_is_refused(serve, tmp_path: Path, monkeypatch) -> None:
    """127.0.0.2 plays a public host that redirects to the operator's loopback service."""
    internal = serve(_ok)
    location = internal.url + "/secret"

    def redirect(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n"
                     % location.encode())

    public = serve(redirect, host="127.0.0.2")
    monkeypatch.setattr(guard, "is_public_address", lambda ip: str(ip) == "127.0.0.2")
    with pytest.raises(FetchFailure) as err:
        ImageCache(tmp_path / "c", max_bytes=10_000).fetch(public.url + "/a.tar", SHA)
    assert "not a public address" in err.value.message
    assert str(internal.sock.getsockname()[1]) not in err.value.message
    assert public.connections == 1 and internal.connections == 0


@pytest.mark.parametrize("status", [b"500 Internal Server Error", b"401 Unauthorized", b"404 Not Found"])
def test_failure_message_carries_nothing_from_the_response(serve, tmp_path: Path, status) -> None:
    def answer(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 %s\r\nContent-Length: 6\r\n\r\nsecret" % status)

    server = serve(answer)
    with pytest.raises(FetchFailure) as err:
        ImageCache(tmp_path / "c", max_bytes=10_000, allow_private=True).fetch(server.url + "/a", SHA)
    assert err.value.message == "the archive could not be downloaded from 127.0.0.1"


@pytest.mark.parametrize("address, public", [
    ("8.8.8.8", True), ("2606:4700::1111", True),
    ("127.0.0.1", False), ("127.1.2.3", False), ("::1", False), ("0.0.0.0", False), ("::", False),
    ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False), ("100.64.0.1", False),
    ("169.254.169.254", False), ("fe80::1", False), ("fc00::1", False), ("fd12::1", False),
    ("224.0.0.1", False), ("ff02::1", False), ("255.255.255.255", False), ("240.0.0.1", False),
    ("::ffff:127.0.0.1", False), ("::ffff:10.0.0.1", False), ("::ffff:8.8.8.8", True),
    ("64:ff9b::7f00:1", False), ("2002:7f00:1::1", False), ("2002:a00:1::1", False),
    ("::127.0.0.1", False), ("198.18.0.1", False), ("192.0.0.8", False), ("fec0::1", False),
    ("2001:db8::1", False),
])
def test_public_address_policy(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


# ---------------------------------------------------------------- TLS through the guarded stream


def _fetch_tls(url: str, cert: Path, timeout_s: float, progress=None) -> bytes:
    """GET ``url`` through the guarded backend, trusting ``cert`` (as the fetcher does with CAs)."""
    import ssl

    import httpcore

    deadline = guard.Deadline(timeout_s, progress)
    pool = httpcore.ConnectionPool(
        ssl_context=ssl.create_default_context(cafile=str(cert)),
        network_backend=guard.GuardedBackend(deadline, allow_private=True),
    )
    with pool:
        return pool.request("GET", url).content


def test_https_goes_through_the_guarded_stream(tls_files, tmp_path: Path) -> None:
    cert, key = tls_files
    server = RawServer(lambda conn: None)
    server._handle = _tls_handler(_ok, cert, key)  # type: ignore[method-assign]
    try:
        assert _fetch_tls(server.url.replace("http:", "https:") + "/a", cert, 5) == BODY
    finally:
        server.close()


def test_https_slow_drip_hits_the_deadline(tls_files) -> None:
    cert, key = tls_files
    server = RawServer(lambda conn: None)
    server._handle = _tls_handler(_drip, cert, key)  # type: ignore[method-assign]
    try:
        exc, took = _run(lambda: _fetch_tls(server.url.replace("http:", "https:") + "/a", cert, 1.0),
                         limit_s=5)
    finally:
        server.close()
    assert isinstance(exc, FetchFailure) and "longer than 1 s" in exc.message
    assert took < 2.5


def _tls_handler(behave: Callable[[socket.socket], None], cert: Path, key: Path):
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)

    def handle(raw: socket.socket) -> None:
        try:
            with ctx.wrap_socket(raw, server_side=True) as tls:
                tls.settimeout(5)
                tls.recv(65536)
                behave(tls)
        except OSError:
            pass

    return handle


def test_redirect_target_is_not_echoed(serve, tmp_path: Path) -> None:
    """A 404 after a redirect names the URL the instruction gave, not where the server sent us."""
    def missing(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    target = serve(missing, host="127.0.0.3")

    def redirect(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: %s/x\r\nContent-Length: 0\r\n\r\n"
                     % target.url.encode())

    first = serve(redirect)
    with pytest.raises(FetchFailure) as err:
        ImageCache(tmp_path / "c", max_bytes=10_000, allow_private=True).fetch(first.url + "/a", SHA)
    assert err.value.message == "the archive could not be downloaded from 127.0.0.1"
    assert target.connections == 1


@pytest.mark.parametrize("host", [
    "[::1]", "0.0.0.0", "[::ffff:127.0.0.1]", "2130706433", "127.1", "0x7f000001", "[::]",
    "169.254.169.254", "10.0.0.1",
])
def test_loopback_and_private_spellings_are_refused(tmp_path: Path, host: str) -> None:
    """Every spelling that resolves to a non-public address is refused before connecting."""
    with pytest.raises(FetchFailure) as err:
        ImageCache(tmp_path / "c", max_bytes=10_000, timeout_s=5).fetch(
            f"http://{host}:9/a.tar", SHA)
    assert err.value.code == "FETCH_FAILED"
    assert "not a public address" in err.value.message
