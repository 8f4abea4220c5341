"""registry_client/rpc.py: straight to the node on kept-alive connections; through a proxy as the environment says.

Real HTTP servers on loopback answer eth_blockNumber: one stands for the node,
one for a forward proxy (it receives the absolute URL), and per test one that
misbehaves (HTTP 429, an oversized answer) or speaks TLS.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests.exceptions

from registry_client import rpc
from registry_client.rpc import make_web3, rpc_session


@contextmanager
def answering(block: int, seen: list[str], *, status: int = 200, pad: int = 0,
              tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    """A node answering every call with ``block``; ``seen`` gets each request's path,
    and one "CONNECT" entry per TCP connection it accepted."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real nodes do

        def setup(self) -> None:
            super().setup()
            seen.append("CONNECT")

        def do_POST(self) -> None:
            seen.append(self.path)
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": hex(block),
                               "pad": "x" * pad}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.block_on_close = False  # kept-alive handlers wait on their client: do not join them
    scheme = "http"
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _requests(seen: list[str]) -> list[str]:
    return [entry for entry in seen if entry != "CONNECT"]


@pytest.fixture
def servers(monkeypatch) -> Iterator[tuple[str, str, list[str], list[str]]]:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    node_seen: list[str] = []
    proxy_seen: list[str] = []
    with answering(5, node_seen) as node, answering(7, proxy_seen) as proxy:
        yield node, proxy, node_seen, proxy_seen


def test_a_proxy_in_the_environment_is_used(servers, monkeypatch):
    node, proxy, node_seen, proxy_seen = servers
    monkeypatch.setenv("HTTP_PROXY", proxy)
    w3 = make_web3(node)
    assert w3.eth.block_number == 7
    assert _requests(proxy_seen) == [node + "/"] and node_seen == [], "the proxy got the node's absolute URL"


def test_no_proxy_sends_the_call_straight_to_the_node(servers, monkeypatch):
    node, proxy, node_seen, proxy_seen = servers
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert make_web3(node).eth.block_number == 5
    assert proxy_seen == [] and _requests(node_seen) == ["/"]


def test_the_environment_is_read_when_the_session_is_made_not_per_call(servers, monkeypatch):
    node, proxy, node_seen, proxy_seen = servers
    w3 = make_web3(node)
    monkeypatch.setenv("HTTP_PROXY", proxy)  # set after connecting: not looked at again
    assert [w3.eth.block_number for _ in range(3)] == [5, 5, 5]
    assert proxy_seen == [] and len(_requests(node_seen)) == 3


def test_a_ca_bundle_from_the_environment_is_kept(monkeypatch, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    session = rpc_session("https://rpc.example.test")
    assert session.verify == str(bundle) and session.trust_env is False


def test_straight_to_the_node_the_calls_share_one_kept_alive_connection(servers):
    node, _proxy, node_seen, _ = servers
    w3 = make_web3(node + "/rpc?key=k")
    assert isinstance(w3.provider._request_session_manager, rpc._KeptAliveNode)
    assert [w3.eth.block_number for _ in range(4)] == [5] * 4
    assert node_seen == ["CONNECT"] + ["/rpc?key=k"] * 4


def test_a_node_answering_http_429_fails_as_with_requests(servers, monkeypatch):
    seen: list[str] = []
    with answering(5, seen, status=429) as busy:
        direct = make_web3(busy)
        with pytest.raises(requests.exceptions.HTTPError) as refused:
            direct.eth.block_number  # noqa: B018 - the call is the test
        assert refused.value.response.status_code == 429
        monkeypatch.setenv("HTTP_PROXY", busy)  # through a "proxy" (itself): requests, for contrast
        assert not isinstance(make_web3(busy).provider._request_session_manager, rpc._KeptAliveNode)
        with pytest.raises(requests.exceptions.HTTPError):
            make_web3(busy).eth.block_number  # noqa: B018


def test_a_node_that_is_down_is_a_connection_error():
    with pytest.raises(requests.exceptions.ConnectionError):
        make_web3("http://127.0.0.1:9", timeout=2).eth.block_number  # noqa: B018


def test_an_answer_over_the_bound_is_refused(servers, monkeypatch):
    monkeypatch.setattr(rpc, "REPLY_MAX_BYTES", 10_000)
    seen: list[str] = []
    with answering(5, seen, pad=20_000) as chatty, pytest.raises(
            requests.exceptions.ConnectionError, match="over 10000 bytes"):
        make_web3(chatty).eth.block_number  # noqa: B018


def test_https_is_verified_against_the_ca_bundle_of_the_environment(servers, tls_files, monkeypatch):
    seen: list[str] = []
    with answering(9, seen, tls=tls_files) as node:
        with pytest.raises(requests.exceptions.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            make_web3(node).eth.block_number  # noqa: B018 - a self-signed node is not trusted
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files[0]))
        w3 = make_web3(node)
        assert [w3.eth.block_number for _ in range(2)] == [9, 9]
    assert _requests(seen) == ["/", "/"]
