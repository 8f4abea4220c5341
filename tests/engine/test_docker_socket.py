"""engine/docker_socket.py: kept-alive requests to a Unix socket, with docker-py's errors.

Against a small HTTP/1.1 server on a Unix socket in the test (what it answers
is set per test: a dropped connection, an oversized reply, a slow one), then
against the real dockerd.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker.errors
import pytest
import requests.exceptions

from engine import docker_socket
from engine.docker_socket import DockerSocket

Answer = Callable[[socket.socket, bytes], bool]  # (connection, request head) -> keep it open


def _ok(body: bytes = b"{}", status: str = "200 OK", extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
            f"\r\n{extra}\r\n").encode() + body


class UnixServer:
    """Answers each request with ``answer``; counts connections and requests."""

    def __init__(self, path: Path, answer: Answer):
        self.path, self.answer = path, answer
        self.connections = 0
        self.heads: list[bytes] = []
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(8)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            buffered = b""
            while True:
                while b"\r\n\r\n" not in buffered:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffered += data
                head, _, buffered = buffered.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(buffered) < length:
                    buffered += conn.recv(65536)
                buffered = buffered[length:]
                self.heads.append(head)
                if not self.answer(conn, head):
                    return

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[Answer], tuple[UnixServer, DockerSocket]]]:
    made: list[UnixServer] = []

    def start(answer: Answer) -> tuple[UnixServer, DockerSocket]:
        server = UnixServer(tmp_path / f"d{len(made)}.sock", answer)
        made.append(server)
        return server, DockerSocket(str(server.path), "1.41", timeout_s=5)

    yield start
    for server in made:
        server.close()


def test_calls_share_one_kept_alive_connection(serve) -> None:
    server, sock = serve(lambda conn, head: conn.sendall(_ok(b'{"n": 1}')) or True)
    assert [sock.json("GET", "/info") for _ in range(5)] == [{"n": 1}] * 5
    assert server.connections == 1
    assert server.heads[0].startswith(b"GET /v1.41/info HTTP/1.1\r\n")


def test_a_connection_the_server_closed_while_idle_is_replaced(serve) -> None:
    # Every answer says it closes; the next call must not fail on the dead socket.
    server, sock = serve(lambda conn, head: conn.sendall(_ok(extra="Connection: close\r\n")) and False)
    for _ in range(3):
        assert sock.json("GET", "/info") == {}
    assert server.connections == 3


def test_a_connection_dropped_after_keep_alive_is_noticed_before_reuse(serve) -> None:
    def answer_then_hang_up(conn: socket.socket, head: bytes) -> bool:
        conn.sendall(_ok())  # promises keep-alive, then closes
        return False

    server, sock = serve(answer_then_hang_up)
    assert sock.json("GET", "/a") == {}
    time.sleep(0.1)  # the close reaches us while the connection is idle
    assert sock.json("GET", "/b") == {}
    assert server.connections == 2


def test_error_statuses_are_docker_pys_errors(serve) -> None:
    answers = {
        b"/v1.41/containers/gone/json": _ok(b'{"message": "No such container: gone"}', "404 Not Found"),
        b"/v1.41/images/sha256:ab/json": _ok(b'{"message": "No such image: sha256:ab"}', "404 Not Found"),
        b"/v1.41/containers/x/kill": _ok(b'{"message": "container x is not running"}', "409 Conflict"),
    }
    server, sock = serve(lambda conn, head: conn.sendall(answers[head.split(b" ")[1]]) or True)
    with pytest.raises(docker.errors.NotFound) as gone:
        sock.json("GET", "/containers/gone/json")
    assert not isinstance(gone.value, docker.errors.ImageNotFound)
    assert gone.value.explanation == "No such container: gone" and gone.value.status_code == 404
    with pytest.raises(docker.errors.ImageNotFound):
        sock.json("GET", "/images/sha256:ab/json")
    with pytest.raises(docker.errors.APIError) as conflict:
        sock.call("POST", "/containers/x/kill")
    assert conflict.value.status_code == 409
    assert server.connections == 1  # an error reply read whole keeps the connection


def test_no_socket_is_a_connection_error(tmp_path: Path) -> None:
    sock = DockerSocket(str(tmp_path / "nothing.sock"), "1.41", timeout_s=1)
    with pytest.raises(requests.exceptions.ConnectionError, match="connection failed"):
        sock.json("GET", "/_ping")


def test_a_reply_slower_than_the_timeout_is_a_read_timeout(serve) -> None:
    def slow(conn: socket.socket, head: bytes) -> bool:
        time.sleep(1.0)
        try:
            conn.sendall(_ok())
        except BrokenPipeError:
            return False  # the client gave up on this connection, as it should
        return True

    server, sock = serve(slow)
    began = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        sock.call("POST", "/containers/x/wait", timeout_s=0.2)
    assert time.monotonic() - began < 0.9
    assert sock.json("GET", "/info") == {}  # a fresh connection: the late answer is not read as this one's
    assert server.connections == 2


def test_a_reply_over_the_bound_is_refused_while_it_is_read(serve, monkeypatch) -> None:
    monkeypatch.setattr(docker_socket, "REPLY_MAX_BYTES", 1000)
    big = b'{"x": "' + b"a" * 5000 + b'"}'
    _, sock = serve(lambda conn, head: conn.sendall(_ok(big)) or True)
    with pytest.raises(requests.exceptions.ConnectionError, match="over 1000 bytes"):
        sock.call("GET", "/info")


def test_frames_are_demultiplexed_whatever_the_pieces(serve) -> None:
    def frame(stream: int, payload: bytes) -> bytes:
        return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload

    stream = frame(1, b"out one\n") + frame(2, b"err\n") + frame(1, b"x" * 70_000)

    def chunked(conn: socket.socket, head: bytes) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(stream), 7):  # 7-byte chunks cut headers and payloads anywhere
            piece = stream[i:i + 7]
            conn.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        conn.sendall(b"0\r\n\r\n")
        return True

    server, sock = serve(chunked)
    pieces = list(sock.frames("/containers/x/logs"))
    assert b"".join(pieces) == b"out one\nerr\n" + b"x" * 70_000
    assert max(map(len, pieces)) <= 64 * 1024
    assert b"".join(sock.frames("/containers/x/logs")) == b"".join(pieces)
    assert server.connections == 1  # a stream read to its end gives its connection back


@pytest.mark.docker
def test_against_dockerd(docker_client) -> None:
    api = docker_client.api
    sock = DockerSocket(api._custom_adapter.socket_path, api._version)
    assert sock.call("GET", "/_ping") == b"OK"
    assert sock.json("GET", "/version")["ApiVersion"]
    with pytest.raises(docker.errors.NotFound):
        sock.json("GET", "/containers/c2d-no-such-container-here/json")
    sock.close()
