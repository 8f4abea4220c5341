"""registry_client.contracts.rpc_session: the environment's proxy settings are read once, and still obeyed.

Two real HTTP servers on loopback answer eth_blockNumber with different numbers:
one stands for the node, one for a forward proxy (it receives the absolute URL).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from registry_client.contracts import make_web3, rpc_session


@contextmanager
def answering(block: int, seen: list[str]) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.path)
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": hex(block)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


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
    assert proxy_seen == [node + "/"] and node_seen == [], "the proxy got the node's absolute URL"


def test_no_proxy_sends_the_call_straight_to_the_node(servers, monkeypatch):
    node, proxy, node_seen, proxy_seen = servers
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert make_web3(node).eth.block_number == 5
    assert proxy_seen == [] and node_seen == ["/"]


def test_the_environment_is_read_when_the_session_is_made_not_per_call(servers, monkeypatch):
    node, proxy, node_seen, proxy_seen = servers
    w3 = make_web3(node)
    monkeypatch.setenv("HTTP_PROXY", proxy)  # set after connecting: not looked at again
    assert [w3.eth.block_number for _ in range(3)] == [5, 5, 5]
    assert proxy_seen == [] and len(node_seen) == 3


def test_a_ca_bundle_from_the_environment_is_kept(monkeypatch, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    session = rpc_session("https://rpc.example.test")
    assert session.verify == str(bundle) and session.trust_env is False
