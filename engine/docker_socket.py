"""Docker Engine API requests over kept-alive HTTP/1.1 on dockerd's Unix socket.

A job makes seven Docker calls (create, start, wait, inspect, logs, remove,
the image's inspect); through docker-py each goes through requests and
urllib3, about a millisecond of the engine's CPU (docker-py's ``logs`` also
inspects the container again). On ``registry_client/kept_alive.py`` they
cost a quarter of that: 95 -> 75 ms of engine CPU per sequential trivial job.
Only the engine's per-job calls come here (``engine/docker_calls.py``); loads,
events, lists and prunes stay on docker-py.

Errors are docker-py's own, so a caller handles one set whichever client
made the call: ``docker.errors.NotFound`` / ``ImageNotFound`` / ``APIError``
for an error status (made by docker-py's ``create_api_error_from_http_exception``),
``requests.exceptions.ConnectionError`` when dockerd cannot be reached or
drops the connection, ``requests.exceptions.ReadTimeout`` when a reply takes
longer than the request's timeout. Replies are read whole up to a bound
(dockerd is local, but a reply is still input).
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from collections.abc import Iterator, Mapping

import docker.errors
import requests.exceptions

from registry_client.kept_alive import KeptAlive, Reply, shaped_response

__all__ = ["REPLY_MAX_BYTES", "DockerSocket", "quote"]

REPLY_MAX_BYTES = 16 * 1024 * 1024  # an inspect is a few KiB; more is not a reply we asked for
_IDLE_KEPT = 8  # connections kept open between calls (about one per thread in flight)
_PIECE = 64 * 1024


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
        self._pool = KeptAlive(lambda timeout: _UnixConnection(socket_path, timeout),
                               idle_kept=_IDLE_KEPT)

    def json(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
             body: object = None, timeout_s: float | None = None) -> object:
        """The reply's JSON (None for an empty reply, e.g. 204)."""
        data = self.call(method, path, params=params, body=body, timeout_s=timeout_s)
        return json.loads(data) if data else None

    def call(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
             body: object = None, timeout_s: float | None = None) -> bytes:
        """The reply's bytes, read whole (at most REPLY_MAX_BYTES)."""
        with self._reply(method, path, params, body, timeout_s) as reply:
            return reply.read_all(REPLY_MAX_BYTES)

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
                    piece = _read_exactly(reply, min(size, _PIECE))
                    if not piece:
                        return
                    size -= len(piece)
                    yield piece

    def close(self) -> None:
        self._pool.close()

    def _reply(self, method: str, path: str, params: Mapping[str, str] | None, body: object,
               timeout_s: float | None) -> Reply:
        target = self.prefix + path + ("?" + urllib.parse.urlencode(params) if params else "")
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        reply = self._pool.request(method, target, body=data, headers=headers,
                                   timeout=self.timeout_s if timeout_s is None else timeout_s,
                                   what=f"Docker {method} {path}")
        if reply.status >= 400:
            with reply:
                error_body = reply.read(REPLY_MAX_BYTES)
            try:
                shaped_response(reply, error_body, target).raise_for_status()
            except requests.exceptions.HTTPError as exc:
                docker.errors.create_api_error_from_http_exception(exc)  # raises NotFound, ...
        return reply


def _read_exactly(reply: Reply, n: int) -> bytes:
    """``n`` bytes, or fewer only at the end of the stream."""
    data = reply.read(n)
    while data and len(data) < n:
        more = reply.read(n - len(data))
        if not more:
            break
        data += more
    return data


def quote(part: str) -> str:
    """A path segment quoted as docker-py quotes it (``sha256:`` ids keep their colon)."""
    return urllib.parse.quote(part, safe="/:")
