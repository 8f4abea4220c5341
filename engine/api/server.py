"""The HTTP server in front of the app: uvicorn (h11) with a header read timeout and bounded headers.

uvicorn 0.54 times out only idle keep-alive connections: a client that opens a
connection and sends its headers one byte at a time (slowloris) holds a socket
for ever. ``guarded_h11(...)`` returns an ``H11Protocol`` subclass that closes
a connection whose request line and headers are not complete within
``header_timeout_s`` of its first byte (or of the connection), and answers
h11's own "buffer too long" refusal as problem JSON: 414 ``URL_TOO_LONG`` when
the request line is what overflowed, 431 ``HEADERS_TOO_LARGE`` otherwise.
``server_config`` builds the uvicorn ``Config`` that ``compute-engine serve``
runs (and tests run the same way).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from engine.api.limits import RequestLimits
from engine.api.problems import problem_body

__all__ = ["guarded_h11", "server_config"]

DEFAULT_HEADER_TIMEOUT_S = 10.0


def _problem_bytes(status: int, code: str, detail: str) -> bytes:
    return json.dumps(problem_body(status, code, detail, "")).encode()


def guarded_h11(limits: RequestLimits, header_timeout_s: float) -> type[H11Protocol]:
    """An H11Protocol class bound to these limits (uvicorn instantiates one per connection)."""

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_timer()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            # Waiting for a request's head again (keep-alive): the clock starts at its first byte.
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self._arm_header_timer()
            else:
                self._disarm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_timer()
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(header_timeout_s, self._header_timed_out)

        def _disarm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timed_out(self) -> None:
            self._header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.logger.warning("closing a connection that sent no complete request head in %ss",
                                    header_timeout_s)
                self.transport.close()

        def send_400_response(self, msg: str) -> None:
            # h11 refused the bytes; answer problem JSON like every other error.
            buffered, _ = self.conn.trailing_data
            line_end = buffered.find(b"\r\n")
            if len(buffered) <= limits.max_header_bytes:
                status, code, detail = 400, "INVALID_REQUEST", "malformed HTTP request"
            elif line_end == -1 or line_end > limits.max_url_bytes:
                status, code, detail = 414, "URL_TOO_LONG", f"the URL is over {limits.max_url_bytes} bytes"
            else:
                status, code = 431, "HEADERS_TOO_LARGE"
                detail = f"the request headers are over {limits.max_header_bytes} bytes"
            self._send_problem_and_close(status, code, detail)

        def _send_problem_and_close(self, status: int, code: str, detail: str) -> None:
            body = _problem_bytes(status, code, detail)
            headers = [(b"content-type", b"application/problem+json"), (b"connection", b"close"),
                       (b"content-length", str(len(body)).encode())]
            try:
                for event in (h11.Response(status_code=status, headers=headers), h11.Data(data=body),
                              h11.EndOfMessage()):
                    self.transport.write(self.conn.send(event))
            except h11.LocalProtocolError:
                pass  # h11 is already in an error state: just close
            self.transport.close()

    return GuardedH11Protocol


def server_config(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: RequestLimits | None = None,
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
    log_level: str = "info",
) -> uvicorn.Config:
    """The uvicorn Config the engine serves with: h11, bounded head, header read timeout."""
    limits = limits or RequestLimits()
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=guarded_h11(limits, header_timeout_s),
        # h11 buffers at most this much of an incomplete request head; past it the
        # protocol above answers 414/431. The middleware applies the same caps again.
        h11_max_incomplete_event_size=limits.max_header_bytes,
        timeout_keep_alive=5,
        lifespan="on",
    )
