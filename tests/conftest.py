"""Shared fixtures: a real anvil chain and a real Docker engine.

anvil is started once per session (`anvil --port 0`, port read from its
"Listening on" line); each test that uses the chain runs inside an
evm_snapshot / evm_revert pair so tests never see each other's state.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry_client.devchain import ANVIL_DEV_KEYS, DevChain, start_anvil

ROOT = Path(__file__).resolve().parent.parent

# anvil's well-known PUBLIC dev keys (mnemonic "test test ... junk").
ANVIL_KEYS = list(ANVIL_DEV_KEYS)
Anvil = DevChain


def make_kek_file(path: Path):
    """A fresh data KEK in a 0600 file at `path` (outside any data dir); returns the Kek."""
    import secrets

    from engine.data_keys import read_kek_file

    path.write_text(secrets.token_hex(32))
    path.chmod(0o600)
    return read_kek_file(path)


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    try:
        node = start_anvil()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    try:
        yield node
    finally:
        node.stop()


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
    except Exception as exc:
        if os.environ.get("CI"):
            raise RuntimeError(f"Docker engine not reachable in CI: {exc}") from exc
        pytest.skip(f"Docker engine not reachable: {exc}")
    return client


@pytest.fixture
def docker_sent(docker_client, monkeypatch) -> list[str]:
    """Every Docker API request made from here on, as "METHOD /path" (no version, no query),
    whichever client made it: docker-py's or the engine's socket client."""
    import re

    from engine.docker_socket import DockerSocket

    sent: list[str] = []
    through_sdk = docker_client.api.send
    through_socket = DockerSocket._reply

    def sdk(request, **kwargs):
        sent.append(f"{request.method} " + re.sub(r"^/v[\d.]+", "", request.path_url.split("?")[0]))
        return through_sdk(request, **kwargs)

    def socket(self, method, path, *args, **kwargs):
        sent.append(f"{method} {path}")
        return through_socket(self, method, path, *args, **kwargs)

    monkeypatch.setattr(docker_client.api, "send", sdk)
    monkeypatch.setattr(DockerSocket, "_reply", socket)
    return sent


# ---- Deployed registries (owner: registry_client helper) ---------------------
# Deployed once per session from the ABIs/bytecode shipped in registry_client/abi;
# tests that change state also take `chain` so their writes are rolled back.


class Accounts:
    """anvil dev accounts by role, with the env var name holding each key.

    Funded dev accounts 0, 1, 3, 4 sign; the grantee only receives permissions,
    so it is a fixed unfunded key.
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
    """The five contracts deployed on the session's anvil (deployer = admin)."""
    from registry_client.deploy import deploy
    from registry_client.rpc import make_web3

    return deploy(make_web3(anvil.url), accounts.deployer)


@pytest.fixture
def registries(chain: Anvil, deployment):
    """`Registries` factory on the deployment (writes rolled back after the test).

    Usage: ``reg = registries(accounts.dlp_owner)``; ``registries()`` reads only.
    """
    from registry_client.contracts import connect

    return lambda account=None: connect(chain.url, deployment, account)


# ---- PostgreSQL (owner: store helper) -----------------------------------------
# One private cluster per session, started only when a test asks for it; each
# test gets its own schema.


@pytest.fixture(scope="session")
def postgres_cluster():
    import subprocess

    from tests.postgres_cluster import Cluster

    try:
        cluster = Cluster()
    except (OSError, subprocess.SubprocessError) as exc:
        if os.environ.get("CI"):
            raise RuntimeError(f"PostgreSQL cannot start in CI: {exc}") from exc
        pytest.skip(f"PostgreSQL cannot start: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster) -> Iterator[str]:
    """The URL of a fresh, empty schema on the session's cluster (dropped after the test)."""
    url = postgres_cluster.new_schema()
    try:
        yield url
    finally:
        postgres_cluster.drop_schema(url)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cert, key), made by the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"), "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return d / "cert.pem", d / "key.pem"
