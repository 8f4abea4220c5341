"""Docker Engine API requests over kept-alive HTTP/1.1 on dockerd's Unix socket.

A job makes eight Docker calls (create, start, wait, inspect, logs, remove,
two image inspects); through docker-py each goes through requests and
urllib3, about a millisecond of the engine's CPU, a fifth of it under load
(py-spy). The same requests on ``http.client`` cost a quarter of that. Only
the engine's per-job calls come here (``engine/docker_calls.py``); loads,
events, lists and prunes stay on docker-py.

Errors are docker-py's own, so a caller handles one set whichever client
made the call: ``docker.errors.NotFound`` / ``ImageNotFound`` / ``APIError``
for an error status (built by docker-py's own ``create_api_error_from_http_exception``),
``requests.exceptions.ConnectionError`` when dockerd cannot be reached or
drops the connection, ``requests.exceptions.ReadTimeout`` when a reply takes
longer than the request's timeout. Replies are read whole up to a bound
(dockerd is local, but a reply is still input).
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Self

import docker.errors
import requests
import requests.exceptions

__all__ = ["REPLY_MAX_BYTES", "DockerSocket", "quote"]

REPLY_MAX_BYTES = 16 * 1024 * 1024  # an inspect is a few KiB; more is not a reply we asked for
_IDLE_KEPT = 8  # connections kept open between calls (one per thread in flight, roughly)
_READ = 64 * 1024


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class DockerSocket:
    """Requests to one dockerd socket at one API version; safe to share between threads."""

    def __init__(self, socket_path: str, api_version: str, *, timeout_s: float = 60.0,
                 headers: Mapping[str, str] | None = None):
        self.socket_path = socket_path
        self.prefix = f"/v{api_version}"
        self.timeout_s = timeout_s
        self.headers = dict(headers or {})
        self._idle: list[_UnixConnection] = []
        self._lock = threading.Lock()

    def json(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
             body: object = None, timeout_s: float | None = None) -> object:
        """The reply's JSON (None for an empty reply, e.g. 204)."""
        data = self.call(method, path, params=params, body=body, timeout_s=timeout_s)
        return json.loads(data) if data else None

    def call(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
             body: object = None, timeout_s: float | None = None) -> bytes:
        """The reply's bytes, read whole (at most REPLY_MAX_BYTES)."""
        with self._reply(method, path, params, body, timeout_s) as reply:
            data = reply.read(REPLY_MAX_BYTES + 1)
            if len(data) > REPLY_MAX_BYTES:
                reply.keep = False
                raise requests.exceptions.ConnectionError(
                    f"Docker's reply to {method} {path} is over {REPLY_MAX_BYTES} bytes")
            return data

    def frames(self, path: str, *, params: Mapping[str, str] | None = None,
               timeout_s: float | None = None) -> Iterator[bytes]:
        """The payloads of a multiplexed stdout/stderr stream (``logs`` of a container
        without a TTY), in pieces of at most 64 KiB, in the order dockerd sent them."""
        with self._reply("GET", path, params, None, timeout_s) as reply:
            while True:
                header = _read_exactly(reply, 8)
                if not header:
                    return
                size = int.from_bytes(header[4:8], "big")
                while size:
                    piece = _read_exactly(reply, min(size, _READ))
                    if not piece:
                        return
                    size -= len(piece)
                    yield piece

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # -- one request ------------------------------------------------------

    def _reply(self, method: str, path: str, params: Mapping[str, str] | None, body: object,
               timeout_s: float | None) -> _Reply:
        url = self.prefix + path + ("?" + urllib.parse.urlencode(params) if params else "")
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        timeout = self.timeout_s if timeout_s is None else timeout_s
        conn = self._take(timeout)
        try:
            conn.request(method, url, body=data, headers=headers)
            response = conn.getresponse()
        except BaseException as exc:
            conn.close()
            raise _transport_error(exc, method, path) from exc
        reply = _Reply(self, conn, response, method, path)
        if response.status >= 400:
            with reply:
                body = reply.read(REPLY_MAX_BYTES)
            _raise_api_error(response, body, url)
        return reply

    def _take(self, timeout: float) -> _UnixConnection:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        while conn is not None and _dropped(conn):
            conn.close()  # dockerd closed it while it was idle
            with self._lock:
                conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = _UnixConnection(self.socket_path, timeout)
        else:
            conn.sock.settimeout(timeout)
        conn.timeout = timeout
        return conn

    def _give_back(self, conn: _UnixConnection) -> None:
        with self._lock:
            if len(self._idle) < _IDLE_KEPT:
                self._idle.append(conn)
                return
        conn.close()


class _Reply:
    """A response being read; its connection goes back to the pool only when read to the end."""

    def __init__(self, owner: DockerSocket, conn: _UnixConnection, response: http.client.HTTPResponse,
                 method: str, path: str):
        self._owner, self._conn, self._response = owner, conn, response
        self._what = (method, path)
        self.keep = True

    def read(self, n: int) -> bytes:
        try:
            return self._response.read(n)
        except BaseException as exc:
            self.keep = False
            raise _transport_error(exc, *self._what) from exc

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        done = self.keep and exc_info[0] is None and self._response.isclosed()
        if done and not self._response.will_close:
            self._owner._give_back(self._conn)
        else:
            self._conn.close()


def _read_exactly(reply: _Reply, n: int) -> bytes:
    """``n`` bytes, or fewer only at the end of the stream."""
    data = reply.read(n)
    while data and len(data) < n:
        more = reply.read(n - len(data))
        if not more:
            break
        data += more
    return data


def _dropped(conn: _UnixConnection) -> bool:
    """True when the idle connection's peer has closed it (it reads as ready: EOF)."""
    if conn.sock is None:
        return True
    try:
        ready, _, _ = select.select([conn.sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)


def _transport_error(exc: BaseException, method: str, path: str) -> BaseException:
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return requests.exceptions.ReadTimeout(f"Docker did not answer {method} {path} in time")
    if isinstance(exc, (OSError, http.client.HTTPException)):
        return requests.exceptions.ConnectionError(f"Docker connection failed ({method} {path}): {exc}")
    return exc  # KeyboardInterrupt and the like: as they are


def _raise_api_error(response: http.client.HTTPResponse, body: bytes, url: str) -> None:
    """docker-py's own error for this status and body (NotFound, ImageNotFound, APIError...)."""
    shaped = requests.Response()
    shaped.status_code = response.status
    shaped.reason = response.reason
    shaped._content = body
    shaped.url = url
    shaped.encoding = "utf-8"
    shaped.headers.update(response.getheaders())
    try:
        shaped.raise_for_status()
    except requests.exceptions.HTTPError as exc:
        docker.errors.create_api_error_from_http_exception(exc)


def quote(part: str) -> str:
    """A path segment quoted as docker-py quotes it (``sha256:`` ids keep their colon)."""
    return urllib.parse.quote(part, safe="/:")

