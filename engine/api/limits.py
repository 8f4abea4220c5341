"""Request limits enforced before anything parses a request: URL, headers, body size, JSON depth.

``RequestLimitsMiddleware`` is a plain ASGI middleware outermost in the app:

- a URL (path + query) over ``max_url_bytes`` is 414 ``URL_TOO_LONG``;
- request headers over ``max_header_bytes`` are 431 ``HEADERS_TOO_LARGE``;
- a ``Content-Length`` over ``max_body_bytes`` is 413 ``BODY_TOO_LARGE`` before a
  byte of the body is read, and a body without one is counted while it streams
  and refused the moment it passes the cap (the rest is never read);
- a body nested deeper than ``max_json_depth`` is 400 ``JSON_TOO_DEEP`` before
  the JSON parser (a C recursion) sees it.

The server in front (engine/api/server.py) bounds what reaches this layer the
same way: h11's header buffer and a header read timeout.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from engine.api.problems import problem_response

__all__ = ["RequestLimits", "RequestLimitsMiddleware", "json_too_deep"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True)
class RequestLimits:
    """Caps on one request. The defaults fit the largest valid submit (100k-char SQL and params)."""

    max_body_bytes: int = 2 * MiB
    max_url_bytes: int = 8 * KiB
    max_header_bytes: int = 16 * KiB
    max_json_depth: int = 32


_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
_NOT_BRACKET = bytes(c for c in range(256) if c not in b"[]{}")
_OPEN = frozenset(b"[{")


def json_too_deep(text: bytes | str, max_depth: int) -> bool:
    """True when JSON `text` nests arrays/objects deeper than `max_depth`, without parsing it.

    Escapes and strings are dropped first (regex, C speed), so brackets inside
    strings do not count; the scan over what is left stops at the first level
    past the limit.
    """
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return False
    brackets = _STRING.sub(b"", _ESCAPE.sub(b"", data)).translate(None, _NOT_BRACKET)
    depth = 0
    for char in brackets:
        if char in _OPEN:
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth -= 1
    return False


def _header_bytes(scope: Scope) -> int:
    # name: value\r\n per header, as on the wire.
    return sum(len(name) + len(value) + 4 for name, value in scope.get("headers", ()))


def _url_bytes(scope: Scope) -> int:
    path = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "surrogateescape")
    query = scope.get("query_string", b"")
    return len(path) + (len(query) + 1 if query else 0)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return None


class _Refused(Exception):
    def __init__(self, status: int, code: str, detail: str):
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


class RequestLimitsMiddleware:
    """Refuse an over-limit request with problem JSON before the app (or its parsers) runs."""

    def __init__(self, app: ASGIApp, limits: RequestLimits | None = None):
        self.app = app
        self.limits = limits or RequestLimits()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self._check_head(scope)
            body = await self._read_body(scope, receive)
        except _Refused as exc:
            response = problem_response(exc.status, exc.code, exc.detail, scope.get("path", "")[:200],
                                        headers={"Connection": "close"})
            await response(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    def _check_head(self, scope: Scope) -> None:
        lim = self.limits
        if _url_bytes(scope) > lim.max_url_bytes:
            raise _Refused(414, "URL_TOO_LONG", f"the URL is over {lim.max_url_bytes} bytes")
        if _header_bytes(scope) > lim.max_header_bytes:
            raise _Refused(431, "HEADERS_TOO_LARGE", f"the request headers are over {lim.max_header_bytes} bytes")
        length = _content_length(scope)
        if length is not None and length < 0:
            raise _Refused(400, "INVALID_REQUEST", "Content-Length is not a non-negative integer")
        if length is not None and length > lim.max_body_bytes:
            raise _Refused(413, "BODY_TOO_LARGE", f"the request body is over {lim.max_body_bytes} bytes")

    async def _read_body(self, scope: Scope, receive: Receive) -> Message | None:
        """The whole body as one message (counted while it streams), or None when there is none."""
        lim = self.limits
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return message  # a disconnect: hand it on as is
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > lim.max_body_bytes:
                raise _Refused(413, "BODY_TOO_LARGE", f"the request body is over {lim.max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and json_too_deep(body, lim.max_json_depth):
            raise _Refused(400, "JSON_TOO_DEEP", f"the JSON body nests deeper than {lim.max_json_depth} levels")
        return {"type": "http.request", "body": body, "more_body": False}


def _replay(first: Message | None, receive: Receive) -> Receive:
    """A receive() that answers the buffered body once, then defers to the server's."""
    pending = [first] if first is not None else []

    async def replayed() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replayed
