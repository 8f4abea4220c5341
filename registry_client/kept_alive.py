"""Kept-alive HTTP/1.1 connections on ``http.client``, shared between threads, failing with requests' errors.

For the few hot, fixed-peer calls the engine makes per job (dockerd's socket,
the chain node): requests + urllib3 cost about a millisecond of CPU per call
on this stack (its runtime-checkable Protocol checks alone ~0.3 ms on Python
3.11), ``http.client`` a quarter of that. Callers keep requests' error types,
so their handling does not change: ``requests.exceptions.ConnectionError``
when the peer cannot be reached or drops the connection,
``requests.exceptions.ReadTimeout`` when an answer takes longer than the
call's timeout. A connection goes back to the pool only once its reply was
read to the end; one the peer closed while idle is noticed before reuse.
"""

from __future__ import annotations

import http.client
import select
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Self

import requests
import requests.exceptions

__all__ = ["KeptAlive", "Reply", "shaped_response"]

Connect = Callable[[float], http.client.HTTPConnection]  # timeout -> a new (unconnected) connection


class KeptAlive:
    """A pool of connections to one peer; ``connect(timeout)`` makes a new one."""

    def __init__(self, connect: Connect, *, idle_kept: int = 8):
        self._connect = connect
        self._idle_kept = idle_kept
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def request(self, method: str, target: str, *, body: bytes | None = None,
                headers: Mapping[str, str] | None = None, timeout: float, what: str = "") -> Reply:
        """Send one request; the reply's status and headers are read, its body is the caller's."""
        conn = self._take(timeout)
        try:
            conn.request(method, target, body=body, headers=dict(headers or {}))
            response = conn.getresponse()
        except BaseException as exc:
            conn.close()
            raise transport_error(exc, what or f"{method} {target}") from exc
        return Reply(self, conn, response, what or f"{method} {target}")

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _take(self, timeout: float) -> http.client.HTTPConnection:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._connect(timeout)
            if not _dropped(conn):
                conn.timeout = timeout
                conn.sock.settimeout(timeout)
                return conn
            conn.close()  # the peer closed it while it was idle

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self._idle_kept:
                self._idle.append(conn)
                return
        conn.close()


class Reply:
    """A response being read: use it in ``with``; read errors are requests' errors."""

    def __init__(self, pool: KeptAlive, conn: http.client.HTTPConnection,
                 response: http.client.HTTPResponse, what: str):
        self._pool, self._conn, self.response, self._what = pool, conn, response, what
        self.status = response.status
        self.keep = True  # False: the connection is not reusable whatever was read

    def read(self, n: int) -> bytes:
        try:
            return self.response.read(n)
        except BaseException as exc:
            self.keep = False
            raise transport_error(exc, self._what) from exc

    def read_all(self, limit: int) -> bytes:
        """The whole body; more than ``limit`` bytes is a ConnectionError (and the connection goes)."""
        data = self.read(limit + 1)
        if len(data) > limit:
            self.keep = False
            raise requests.exceptions.ConnectionError(f"the reply to {self._what} is over {limit} bytes")
        return data

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        reusable = self.keep and exc_info[0] is None and self.response.isclosed()
        if reusable and not self.response.will_close:
            self._pool._give_back(self._conn)
        else:
            self._conn.close()


def shaped_response(reply: Reply, body: bytes, url: str) -> requests.Response:
    """A requests Response for an error status, so callers' error code reads it as before."""
    shaped = requests.Response()
    shaped.status_code = reply.status
    shaped.reason = reply.response.reason
    shaped._content = body
    shaped.url = url
    shaped.encoding = "utf-8"
    shaped.headers.update(reply.response.getheaders())
    return shaped


def transport_error(exc: BaseException, what: str) -> BaseException:
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return requests.exceptions.ReadTimeout(f"no answer to {what} in time")
    if isinstance(exc, (OSError, http.client.HTTPException)):
        return requests.exceptions.ConnectionError(f"connection failed ({what}): {exc}")
    return exc  # KeyboardInterrupt and the like: as they are


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """True when an idle connection's peer has closed it (it reads as ready: EOF)."""
    if conn.sock is None:
        return True
    poller = select.poll()  # not select(): any fd number
    try:
        poller.register(conn.sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True
