"""A local anvil dev chain for demos and tests.

Starts `anvil --port 0` (the npm-pinned binary, `ANVIL_BIN`, or PATH), reads
the port from its "Listening on" line and keeps draining its output so it
never blocks. The dev keys below are anvil's well-known PUBLIC test keys
(mnemonic "test test ... junk"): never use them on a real network.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = ["ANVIL_DEV_KEYS", "DevChain", "find_anvil", "start_anvil"]

ANVIL_DEV_KEYS: tuple[str, ...] = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
)

_REPO_ROOT = Path(__file__).resolve().parent.parent


def find_anvil() -> str:
    """anvil from ANVIL_BIN, else the project's npm-pinned one, else PATH."""
    env = os.environ.get("ANVIL_BIN")
    if env:
        return env
    local = _REPO_ROOT / "node_modules" / ".bin" / "anvil"
    if local.exists():
        return str(local)
    found = shutil.which("anvil")
    if not found:
        raise FileNotFoundError("anvil not found: run `make setup` or set ANVIL_BIN")
    return found


@dataclass
class DevChain:
    """A running anvil process and its RPC URL."""

    proc: subprocess.Popen
    url: str

    def rpc(self, method: str, params: list | None = None):
        body = httpx.post(
            self.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
        ).json()
        if "error" in body:
            raise RuntimeError(f"{method}: {body['error']}")
        return body["result"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_anvil(extra_args: list[str] | None = None, *, timeout_s: float = 30.0) -> DevChain:
    """Start anvil on a free port and return once it answers."""
    proc = subprocess.Popen(
        [find_anvil(), "--port", "0", *(extra_args or [])],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    url = None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        match = re.search(r"Listening on ([\d.]+:\d+)", line)
        if match:
            url = f"http://{match.group(1)}"
            break
    if url is None:
        proc.kill()
        raise RuntimeError("anvil did not print its 'Listening on' line")

    def drain() -> None:  # a full pipe would block anvil
        for _ in proc.stdout:  # type: ignore[union-attr]
            pass

    threading.Thread(target=drain, daemon=True).start()
    return DevChain(proc, url)
