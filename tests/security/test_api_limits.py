"""Issue 8 item 2: body, URL and header limits hold before parsing, and slow heads are cut off.

Against a real uvicorn process running the engine's server config
(engine/api/server.py) over raw sockets, so nothing in between buffers or
fixes up what the attacker sends.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from engine.api.limits import RequestLimits, RequestLimitsMiddleware
from tests.security.fake_api_server import spawn

HEADER_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, int]]:
    with spawn(header_timeout_s=HEADER_TIMEOUT_S) as (proc, base):
        url = urlsplit(base)
        yield url.hostname, url.port
        assert proc.poll() is None


def _connect(server: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(server, timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def _assert_problem(status: int, headers: dict[str, str], body: bytes, want: int, code: str) -> None:
    assert status == want, body[:300]
    assert headers["content-type"].startswith("application/problem+json")
    assert json.loads(body)["code"] == code


def test_content_length_over_the_cap_is_413_before_the_body_is_sent(server):
    with _connect(server) as sock:
        sock.sendall(b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 209715200\r\n\r\n")  # 200 MB announced, none sent
        _assert_problem(*_read_response(sock), 413, "BODY_TOO_LARGE")


def test_a_chunked_body_is_cut_off_while_it_streams(server):
    sent = 0
    with _connect(server) as sock:
        sock.sendall(b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"[" + b" " * (64 * 1024 - 1)
        sock.settimeout(0.05)
        response = b""
        while not response and sent < 64 * 1024 * 1024:
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                response = sock.recv(65536, socket.MSG_PEEK)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.settimeout(10)
        status, headers, body = _read_response(sock)
    _assert_problem(status, headers, body, 413, "BODY_TOO_LARGE")
    # Refused at the 2 MiB cap (plus what the socket buffers held), never read to the end.
    assert sent < 16 * 1024 * 1024


@pytest.mark.parametrize("size", [10_000, 40_000], ids=["over-url-cap", "over-parser-buffer"])
def test_a_long_url_is_414(server, size):
    with _connect(server) as sock:
        sock.sendall(b"GET /jobs/" + b"a" * size + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        _assert_problem(*_read_response(sock), 414, "URL_TOO_LONG")


@pytest.mark.parametrize("size", [17_000, 200_000], ids=["over-cap", "far-over-cap"])
def test_large_headers_are_431(server, size):
    with _connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * size + b"\r\n\r\n")
        _assert_problem(*_read_response(sock), 431, "HEADERS_TOO_LARGE")


def _closed_within(sock: socket.socket, seconds: float, drip: bytes = b"") -> float:
    """Seconds until the server closes `sock`, sending `drip` one byte at a time meanwhile."""
    start = time.monotonic()
    sock.settimeout(0.2)
    i = 0
    while time.monotonic() - start < seconds:
        try:
            if i < len(drip):
                sock.send(drip[i:i + 1])
                i += 1
            if sock.recv(4096) == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - start
    raise AssertionError(f"the server kept a slow-header connection open for {seconds} s")


def test_slow_header_connections_are_closed_within_the_timeout(server):
    opened = time.monotonic()
    idle = [_connect(server) for _ in range(20)]  # open and send nothing
    try:
        for sock in idle:
            _closed_within(sock, HEADER_TIMEOUT_S + 3)
        assert time.monotonic() - opened < HEADER_TIMEOUT_S + 3
        with _connect(server) as slow:  # a head sent one byte every 0.2 s
            took = _closed_within(slow, HEADER_TIMEOUT_S + 3,
                                  b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 1000)
        assert HEADER_TIMEOUT_S * 0.5 <= took < HEADER_TIMEOUT_S + 3
    finally:
        for sock in idle:
            sock.close()


def test_a_slow_second_request_on_a_keep_alive_connection_is_closed_too(server):
    with _connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, _ = _read_response(sock)
        assert status == 200
        _closed_within(sock, HEADER_TIMEOUT_S + 3, b"GET /health HTTP/1.1\r\nX-Slow: " + b"s" * 1000)


def test_a_prompt_request_is_served_normally(server):
    with _connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body = _read_response(sock)
    assert status == 200 and json.loads(body)["status"] == "ok"


def _echo_app():
    async def app(scope, receive, send):  # http only: the clients below run no lifespan
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


@pytest.mark.parametrize(
    ("request_kw", "status", "code"),
    [
        ({"url": "/x?" + "q" * 300}, 414, "URL_TOO_LONG"),
        ({"url": "/x", "headers": {"x-pad": "p" * 600}}, 431, "HEADERS_TOO_LARGE"),
        ({"url": "/x", "content": b"1" * 1025}, 413, "BODY_TOO_LARGE"),
        ({"url": "/x", "content": b"[[[[[1]]]]]"}, 400, "JSON_TOO_DEEP"),
        ({"url": "/x", "content": b"1", "headers": {"content-length": "x"}}, 400, "INVALID_REQUEST"),
    ],
    ids=["url", "headers", "body", "depth", "bad-length"],
)
def test_middleware_refuses_before_the_app(request_kw, status, code):
    limits = RequestLimits(max_body_bytes=1024, max_url_bytes=256, max_header_bytes=512, max_json_depth=4)
    resp = TestClient(RequestLimitsMiddleware(_echo_app(), limits)).post(**request_kw)
    assert resp.status_code == status and resp.json()["code"] == code
    assert resp.headers["content-type"].startswith("application/problem+json")


def test_middleware_hands_a_body_within_limits_to_the_app_unchanged():
    limits = RequestLimits(max_body_bytes=1024, max_json_depth=4)
    resp = TestClient(RequestLimitsMiddleware(_echo_app(), limits)).post("/x", content=b"[[[[1]]]]" + b" " * 1000)
    assert resp.status_code == 200 and resp.content == b"[[[[1]]]]" + b" " * 1000


def test_malformed_http_is_answered_as_problem_json(server):
    with _connect(server) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        _assert_problem(*_read_response(sock), 400, "INVALID_REQUEST")
