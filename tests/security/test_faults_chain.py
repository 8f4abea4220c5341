"""Chain faults: a short RPC outage delays verification instead of failing it (issue 8 item 16).

A private anvil (its state kept in a file with ``--state``) is stopped and
started again on the same port while `ChainVerifier` verifies; an HTTP relay in
front of it answers 5xx or 4xx to show which RPC answers count as transient.
"""

from __future__ import annotations

import http.server
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.chain import ChainVerifier, RetryPolicy
from engine.errors import ChainCheckFailure
from registry_client.contracts import Registries, connect
from registry_client.deploy import deploy
from registry_client.devchain import find_anvil, start_anvil
from registry_client.rpc import make_web3
from tests.integration.conftest import archive_server, job_image  # noqa: F401 - fixtures

pytestmark = pytest.mark.chain
HASH = "7a" * 32


@dataclass
class Node:
    """A private anvil that can be stopped and restarted on the same port with its state."""

    state: Path
    url: str
    proc: Any

    @property
    def port(self) -> str:
        return self.url.rsplit(":", 1)[1]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)

    def start(self) -> None:
        self.proc = subprocess.Popen([find_anvil(), "--port", self.port, "--state", str(self.state)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def restart_after(self, delay_s: float) -> threading.Thread:
        def later() -> None:
            time.sleep(delay_s)
            self.start()

        thread = threading.Thread(target=later, daemon=True)
        thread.start()
        return thread

    def wait_up(self, timeout_s: float = 20) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                httpx.post(self.url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
                           timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError("the restarted anvil did not answer")


@dataclass
class Setup:
    node: Node
    deployment: Any
    refiner_id: int
    instruction_id: int
    owner: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory, accounts) -> Iterator[Setup]:
    state = tmp_path_factory.mktemp("anvil-state") / "state.json"
    chain = start_anvil(["--state", str(state)])
    node = Node(state, chain.url, chain.proc)
    try:
        deployment = deploy(make_web3(node.url), accounts.deployer)
        owner = connect(node.url, deployment, accounts.dlp_owner)
        builder = connect(node.url, deployment, accounts.builder)
        dlp_id = owner.register_dlp("Outage DLP")
        refiner_id = owner.add_refiner(dlp_id, "outage", "https://example.org/schema.json")
        instruction_id = builder.add_instruction(HASH, "https://example.org/job.tar.gz")
        owner.update_instruction(instruction_id, dlp_id, True)
        yield Setup(node, deployment, refiner_id, instruction_id, accounts.builder.address)
    finally:
        if node.proc.poll() is None:
            node.stop()


def _verifier(rpc_url: str, deployment: Any, window_s: float) -> ChainVerifier:
    return ChainVerifier(Registries(make_web3(rpc_url, timeout=2), deployment),
                         retry=RetryPolicy(window_s=window_s, base_s=0.1, cap_s=0.5))


def test_outage_shorter_than_the_window_is_ridden_out(setup: Setup) -> None:
    verifier = _verifier(setup.node.url, setup.deployment, window_s=20)
    setup.node.stop()
    restarting = setup.node.restart_after(1.5)
    started = time.monotonic()
    check = verifier.verify(setup.instruction_id, setup.refiner_id, setup.owner)
    waited = time.monotonic() - started
    restarting.join()
    assert check.instruction_hash == HASH
    assert waited >= 1.0, "verify must have met the outage (and retried through it)"
    # The re-check before the run rides out an outage the same way.
    setup.node.stop()
    restarting = setup.node.restart_after(1.0)
    assert verifier.is_approved(setup.instruction_id, check.dlp_id) is True
    restarting.join()


def test_outage_longer_than_the_window_fails_chain_unavailable(setup: Setup) -> None:
    verifier = _verifier(setup.node.url, setup.deployment, window_s=1.0)
    setup.node.stop()
    try:
        started = time.monotonic()
        with pytest.raises(ChainCheckFailure) as info:
            verifier.verify(setup.instruction_id, setup.refiner_id, setup.owner)
        assert 0.9 <= time.monotonic() - started < 6, "the retry window bounds the wait"
        assert info.value.code == "CHAIN_UNAVAILABLE"
        assert "the chain's RPC endpoint did not answer (retried for 1 s)" in info.value.message
        assert setup.node.port not in info.value.message, "the job owner never learns the operator's RPC URL"
        with pytest.raises(ChainCheckFailure) as info:
            verifier.is_approved(setup.instruction_id, 1)
        assert info.value.code == "CHAIN_UNAVAILABLE"
    finally:
        setup.node.start()
        setup.node.wait_up()


def test_cancel_ends_the_retry_wait_at_once(setup: Setup) -> None:
    verifier = _verifier(setup.node.url, setup.deployment, window_s=60)
    cancel = threading.Event()
    setup.node.stop()
    try:
        threading.Timer(0.5, cancel.set).start()
        started = time.monotonic()
        with pytest.raises(ChainCheckFailure):
            verifier.verify(setup.instruction_id, setup.refiner_id, setup.owner, cancel=cancel)
        assert time.monotonic() - started < 3, "a cancelled job's worker must not wait out the window"
        started = time.monotonic()
        with pytest.raises(ChainCheckFailure):
            verifier.is_approved(setup.instruction_id, 1, cancel=cancel)
        assert time.monotonic() - started < 3
    finally:
        setup.node.start()
        setup.node.wait_up()


def test_a_revert_or_unknown_id_is_not_retried(setup: Setup) -> None:
    verifier = _verifier(setup.node.url, setup.deployment, window_s=60)
    started = time.monotonic()
    with pytest.raises(ChainCheckFailure) as info:
        verifier.verify(setup.instruction_id, 999, setup.owner)
    assert info.value.code == "REFINER_NOT_FOUND"
    with pytest.raises(ChainCheckFailure) as info:
        verifier.verify(999, setup.refiner_id, setup.owner)
    assert info.value.code == "INSTRUCTION_NOT_FOUND"
    assert time.monotonic() - started < 5, "a definite answer must fail at once, not after the window"


# ---------------------------------------------------------------- an RPC answering HTTP errors


class Relay:
    """HTTP relay to anvil that answers `status` to the next `failures` requests."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.failures = 0
        self.status = 503
        self.seen = 0
        relay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                relay.seen += 1
                if relay.failures > 0:
                    relay.failures -= 1
                    self.send_response(relay.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                answer = httpx.post(relay.upstream, content=body, headers={"Content-Type": "application/json"})
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def relay(setup: Setup) -> Iterator[Relay]:
    server = Relay(setup.node.url)
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("status", [502, 503, 429])
def test_server_errors_from_the_rpc_are_retried(setup: Setup, relay: Relay, status: int) -> None:
    relay.status, relay.failures = status, 4
    check = _verifier(relay.url, setup.deployment, window_s=20).verify(
        setup.instruction_id, setup.refiner_id, setup.owner)
    assert check.instruction_hash == HASH
    assert relay.failures == 0


def test_client_errors_from_the_rpc_are_not_retried(setup: Setup, relay: Relay) -> None:
    relay.status, relay.failures = 403, 1000
    started = time.monotonic()
    with pytest.raises(ChainCheckFailure) as info:
        _verifier(relay.url, setup.deployment, window_s=60).verify(
            setup.instruction_id, setup.refiner_id, setup.owner)
    assert info.value.code == "CHAIN_UNAVAILABLE"
    assert time.monotonic() - started < 5
    assert relay.seen <= 2, "a 403 is an answer, not an outage"


# ---------------------------------------------------------------- the whole engine rides out an outage


def test_jobs_queued_during_an_outage_all_succeed(
    setup: Setup, accounts, job_image, docker_client, tmp_path: Path  # noqa: F811
) -> None:
    from demo.sample_data import make_sample_db
    from engine.api.app import create_app
    from engine.data import DataCatalog
    from engine.settings import Settings
    from registry_client.engine_client import EngineClient
    from registry_client.manifest import save_deployment
    from tests.conftest import make_kek_file
    from tests.integration.conftest import SIMPLE_QUERY, _serve_in_thread

    node, deployment = setup.node, setup.deployment
    owner = connect(node.url, deployment, accounts.dlp_owner)
    builder = connect(node.url, deployment, accounts.builder)
    dlp_id = owner.refiner(setup.refiner_id).dlp_id
    owner.add_permission(setup.refiner_id, accounts.builder.address, "activities", "", 0)
    image = job_image("outage-ok", 'echo "ok $COMPUTE_JOB_ID" > /mnt/output/ok.txt\n')
    instruction_id = builder.add_instruction(image.sha256, image.url)
    owner.update_instruction(instruction_id, dlp_id, True)

    data_dir = tmp_path / "engine-data"
    kek = make_kek_file(tmp_path / "kek")
    DataCatalog(data_dir, kek).add(setup.refiner_id, make_sample_db(tmp_path / "d.db", users=20, activities=50))
    settings = Settings(rpc_url=node.url, data_kek_file=tmp_path / "kek", deployment=save_deployment(deployment, tmp_path / "dep.json"),
                        data_dir=data_dir, run_timeout_s=20, run_memory_bytes=32 * 1024 * 1024,
                        chain_retry_window_s=30, max_concurrent_jobs=2,
                        allow_private_fetch=True)  # the archive server is on 127.0.0.1
    server, thread, url, sock = _serve_in_thread(create_app(settings))
    client = EngineClient(url, accounts.builder, deployment.chain_id,
                          deployment.address("compute_instruction_registry"))
    try:
        node.stop()
        restarting = node.restart_after(3.0)
        # Submit needs no chain: its preflight tries once and lets each job queue; every job meets
        # the outage at verification.
        jobs = [client.submit(instruction_id, setup.refiner_id, SIMPLE_QUERY) for _ in range(6)]
        restarting.join()
        ended = [client.wait(job["id"], poll_s=0.1, timeout_s=90) for job in jobs]
        assert [job["status"] for job in ended] == ["SUCCEEDED"] * 6, [job.get("failure") for job in ended]
    finally:
        if node.proc.poll() is not None:
            node.start()
        node.wait_up()
        client.close()
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()
