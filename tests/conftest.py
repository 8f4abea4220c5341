"""Shared fixtures: a real anvil chain and a real Docker engine.

anvil is started once per session (`anvil --port 0`, port read from its
"Listening on" line); each test that uses the chain runs inside an
evm_snapshot / evm_revert pair so tests never see each other's state.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# anvil's well-known dev accounts (mnemonic "test test ... junk"): public test keys.
ANVIL_KEYS = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3faf3f8ed1a2a1b3",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
]


def anvil_bin() -> str:
    """anvil from ANVIL_BIN, else the npm-pinned one, else PATH."""
    env = os.environ.get("ANVIL_BIN")
    if env:
        return env
    local = ROOT / "node_modules" / ".bin" / "anvil"
    if local.exists():
        return str(local)
    found = shutil.which("anvil")
    if not found:
        pytest.skip("anvil not installed (run `make setup`)")
    return found


class Anvil:
    """A running anvil process and its RPC URL."""

    def __init__(self, proc: subprocess.Popen, url: str):
        self.proc = proc
        self.url = url

    def rpc(self, method: str, params: list | None = None):
        import httpx

        r = httpx.post(self.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
        r.raise_for_status()
        body = r.json()
        if "error" in body:
            raise RuntimeError(body["error"])
        return body["result"]


def start_anvil(extra_args: list[str] | None = None) -> Anvil:
    proc = subprocess.Popen(
        [anvil_bin(), "--port", "0", *(extra_args or [])],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    url = None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(r"Listening on ([\d.]+:\d+)", line)
        if m:
            url = f"http://{m.group(1)}"
            break
    if url is None:
        proc.kill()
        raise RuntimeError("anvil did not print its 'Listening on' line")

    # Keep draining stdout so anvil never blocks on a full pipe.
    def drain() -> None:
        for _ in proc.stdout:  # type: ignore[union-attr]
            pass

    threading.Thread(target=drain, daemon=True).start()
    return Anvil(proc, url)


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    node = start_anvil()
    try:
        yield node
    finally:
        node.proc.terminate()
        try:
            node.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            node.proc.kill()


@pytest.fixture
def chain(anvil: Anvil) -> Iterator[Anvil]:
    """The session's anvil, rolled back to a snapshot after the test."""
    snap = anvil.rpc("evm_snapshot")
    try:
        yield anvil
    finally:
        anvil.rpc("evm_revert", [snap])


@pytest.fixture(scope="session")
def docker_client():
    """A docker SDK client for a running engine, or skip with the reason."""
    import docker

    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no engine"
        if os.environ.get("CI"):
            raise RuntimeError(f"Docker engine not reachable in CI: {exc}") from exc
        pytest.skip(f"Docker engine not reachable: {exc}")
    return client


# ---- Deployed registries (owner: registry_client helper) ---------------------
# Deployed once per session from the ABIs/bytecode shipped in registry_client/abi;
# tests that change state also take `chain` so their writes are rolled back.


class Accounts:
    """anvil dev accounts by role, with the env var name holding each key.

    Funded dev accounts 0, 1, 3, 4 sign; the grantee only receives permissions,
    so it is a fixed unfunded key. (ANVIL_KEYS[2] above is not anvil's account
    #2 key, so it holds no ether: it is not used here.)
    """

    ROLES = ("deployer", "dlp_owner", "builder", "stranger", "grantee")

    def __init__(self) -> None:
        from eth_account import Account
        from eth_utils import keccak

        self.keys = {
            "deployer": ANVIL_KEYS[0],
            "dlp_owner": ANVIL_KEYS[1],
            "builder": ANVIL_KEYS[3],
            "stranger": ANVIL_KEYS[4],
            "grantee": "0x" + keccak(text="c2d test grantee").hex(),
        }
        for role, key in self.keys.items():
            setattr(self, role, Account.from_key(key))

    @staticmethod
    def env_var(role: str) -> str:
        return f"TEST_{role.upper()}_KEY"

    def env(self) -> dict[str, str]:
        """Env vars holding every role's key, for `--key-env TEST_<ROLE>_KEY`."""
        return {self.env_var(role): key for role, key in self.keys.items()}


@pytest.fixture(scope="session")
def accounts() -> Accounts:
    return Accounts()


@pytest.fixture(scope="session")
def deployment(anvil: Anvil, accounts: Accounts):
    """The four registries deployed on the session's anvil (deployer = admin)."""
    from registry_client.contracts import make_web3
    from registry_client.deploy import deploy

    return deploy(make_web3(anvil.url), accounts.deployer)


@pytest.fixture
def registries(chain: Anvil, deployment):
    """`Registries` factory on the deployment (writes rolled back after the test).

    Usage: ``reg = registries(accounts.dlp_owner)``; ``registries()`` reads only.
    """
    from registry_client.contracts import connect

    return lambda account=None: connect(chain.url, deployment, account)
