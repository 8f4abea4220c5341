"""The network under a download: where it may connect, and a wall clock it cannot outwait.

An httpcore network backend, used by the httpx transport the fetcher builds per
download, that

- resolves the host itself (in a helper thread, so a slow resolver obeys the
  deadline and cancel too), refuses loopback, private (RFC 1918, ULA),
  link-local, CGNAT, multicast, unspecified and reserved addresses (also in
  their IPv4-mapped, 6to4, NAT64 and Teredo forms) unless the operator allows
  them, and connects to the very address it checked, so DNS cannot answer
  differently in between (no rebinding window). Every redirect opens a new
  connection, so every hop is checked;
- reads in short socket slices, and between slices checks the download's
  wall-clock deadline and calls its ``tick`` (the job's cancel check), so a
  server that sends one byte a second, or nothing, cannot hold a worker past
  the deadline or a cancel for more than a slice. The TLS handshake is driven
  the same way.
"""

from __future__ import annotations

import errno
import ipaddress
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import httpcore
import httpx

from engine.errors import FetchFailure

__all__ = ["Deadline", "GuardedBackend", "guarded_client", "is_public_address"]

SLICE_S = 0.25
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPAT = ipaddress.ip_network("::/96")
# Not globally reachable (IANA), yet Python's is_global says so for parts of them.
_NOT_GLOBAL = (ipaddress.ip_network("192.0.0.0/24"), ipaddress.ip_network("192.88.99.0/24"))

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_public_address(ip: IPAddress) -> bool:
    """True for a globally routable unicast address, seen through every IPv4 embedding."""
    if ip.version == 6:
        assert isinstance(ip, ipaddress.IPv6Address)
        embedded = _embedded_v4(ip)
        if embedded is not None:
            return is_public_address(embedded)
        if ip.is_site_local:  # deprecated fec0::/10, still routed inside some networks
            return False
    if ip.is_multicast or ip.is_reserved or ip.is_unspecified or not ip.is_global:
        return False
    return not any(ip in net for net in _NOT_GLOBAL if net.version == ip.version)


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64 or (ip in _IPV4_COMPAT and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def guarded_client(deadline: Deadline, *, allow_private: bool, timeout_s: float) -> httpx.Client:
    """An httpx client for one download: guarded connections, no env proxies, no redirects."""
    transport = httpx.HTTPTransport(retries=0, trust_env=False)
    # httpx 0.28 takes no network backend: give its transport a pool that uses ours.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        network_backend=GuardedBackend(deadline, allow_private=allow_private),
        max_connections=1,
    )
    # trust_env=False: an HTTP(S)_PROXY from the environment would dial for us, unchecked.
    return httpx.Client(transport=transport, timeout=httpx.Timeout(timeout_s),
                        follow_redirects=False, trust_env=False)


class Deadline:
    """A download's wall clock and its cancel check, consulted between socket slices."""

    def __init__(self, timeout_s: float, tick: Callable[[], None] | None = None):
        self.timeout_s = timeout_s
        self.ends = time.monotonic() + timeout_s
        self._tick = tick

    def check(self) -> None:
        """Raise FetchFailure past the deadline; let ``tick`` raise to cancel."""
        if self._tick is not None:
            self._tick()
        if time.monotonic() >= self.ends:
            raise FetchFailure(f"the download took longer than {self.timeout_s:g} s")

    def slice(self, limit: float | None = None) -> float:
        """The next socket timeout: short, and never past the deadline."""
        left = max(self.ends - time.monotonic(), 0.001)
        return min(SLICE_S, left, limit if limit is not None else SLICE_S)


class GuardedBackend(httpcore.NetworkBackend):
    """Connects only to allowed addresses; its streams obey a Deadline."""

    def __init__(self, deadline: Deadline, *, allow_private: bool):
        self.deadline = deadline
        self.allow_private = allow_private

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self._resolve(host, port)
        for family, address in addresses:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                for option in socket_options or ():
                    sock.setsockopt(*option)
                self._connect(sock, address, timeout)
            except OSError:
                sock.close()
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return GuardedStream(sock, self.deadline)
        raise httpcore.ConnectError(f"cannot connect to {host}")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def _resolve(self, host: str, port: int) -> list[tuple[int, tuple]]:
        infos = self._getaddrinfo(host, port)
        allowed = []
        for family, _type, _proto, _name, sockaddr in infos:
            ip = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
            if self.allow_private or is_public_address(ip):
                allowed.append((family, sockaddr))
        if not allowed:
            # No host in the message: after a redirect it came from the server.
            raise FetchFailure(
                "refused to fetch the archive: its host (or a redirect's) is not a public "
                "address (operator setting allow_private_fetch)"
            )
        return allowed

    def _getaddrinfo(self, host: str, port: int) -> list:
        """Resolve in a helper thread, so a slow resolver cannot outwait the deadline or a cancel."""
        outcome: dict[str, Any] = {}
        done = threading.Event()

        def resolve() -> None:
            try:
                outcome["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError) as exc:
                outcome["error"] = exc
            finally:
                done.set()

        # A daemon thread: an abandoned lookup ends on its own with the resolver's timeout.
        threading.Thread(target=resolve, name="fetch-dns", daemon=True).start()
        while not done.wait(self.deadline.slice()):
            self.deadline.check()
        if "error" in outcome:
            raise httpcore.ConnectError(f"cannot resolve {host}") from outcome["error"]
        return outcome["infos"]

    def _connect(self, sock: socket.socket, address: tuple, timeout: float | None) -> None:
        ends = time.monotonic() + (timeout if timeout is not None else self.deadline.timeout_s)
        sock.setblocking(False)
        err = sock.connect_ex(address)
        while err in (errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK):
            self.deadline.check()
            if time.monotonic() > ends:
                raise TimeoutError("connect timed out")
            _r, writable, _x = select.select([], [sock], [], self.deadline.slice())
            if writable:
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                break
        if err:
            raise OSError(err, "connect failed")


class GuardedStream(httpcore.NetworkStream):
    """A socket read and written in short slices, checking the Deadline between them."""

    def __init__(self, sock: socket.socket, deadline: Deadline):
        self._sock = sock
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        idle_ends = time.monotonic() + timeout if timeout is not None else None
        while True:
            self._deadline.check()
            if idle_ends is not None and time.monotonic() > idle_ends:
                raise httpcore.ReadTimeout("no data within the read timeout")
            self._sock.settimeout(self._deadline.slice())
            try:
                return self._sock.recv(max_bytes)
            except (TimeoutError, ssl.SSLWantReadError):
                continue  # nothing yet: a timed-out recv consumed nothing, so retry
            except OSError as exc:
                raise httpcore.ReadError("read failed") from exc

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        view = memoryview(buffer)
        while view:
            self._deadline.check()
            self._sock.settimeout(self._deadline.slice())
            try:
                sent = self._sock.send(view)
            except (TimeoutError, ssl.SSLWantWriteError):
                continue
            except OSError as exc:
                raise httpcore.WriteError("write failed") from exc
            view = view[sent:]

    def close(self) -> None:
        self._sock.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        # The certificate is checked against the URL's host name, not the address dialled.
        tls = ssl_context.wrap_socket(
            self._sock, server_hostname=server_hostname, do_handshake_on_connect=False
        )
        while True:
            self._deadline.check()
            tls.settimeout(self._deadline.slice())
            try:
                tls.do_handshake()
                return GuardedStream(tls, self._deadline)
            except (TimeoutError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                continue
            except (OSError, ssl.SSLError) as exc:
                tls.close()
                raise httpcore.ConnectError("TLS handshake failed") from exc

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":  # httpcore asks it for the ALPN protocol; SSLSocket answers
            return self._sock if isinstance(self._sock, ssl.SSLSocket) else None
        if info == "client_addr":
            return self._sock.getsockname()
        if info == "server_addr":
            return self._sock.getpeername()
        if info == "socket":
            return self._sock
        if info == "is_readable":
            if self._sock.fileno() < 0:
                return True
            readable, _w, _x = select.select([self._sock], [], [], 0)
            return bool(readable)
        return None
