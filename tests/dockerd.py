"""A second, private dockerd for tests: its own data root, exec root, socket and bridge.

Never ``--bridge=none``: with it dockerd deletes the host's ``docker0`` at
start-up (libnetwork's removeDefaultBridgeInterface), breaking the shared
daemon. Each private daemon gets a bridge of its own, made and removed here,
and the shared ``docker0`` must still exist afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.images import BUSYBOX_TAG, busybox_image

__all__ = ["PrivateDockerd", "private_dockerd"]


class PrivateDockerd:
    """dockerd with its own state under ``root``; started, stopped and restarted by pid."""

    def __init__(self, root: Path, bridge: str):
        self.root = root
        self.sock = root / "sock"
        self.bridge = bridge
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30.0):
        import docker

        log = open(self.root / "dockerd.log", "ab")  # noqa: SIM115 - lives as long as the daemon
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", str(self.root / "data"), "--exec-root",
             str(self.root / "exec"), "--pidfile", str(self.root / "pid"),
             "-H", f"unix://{self.sock}", "--bridge", self.bridge, "--iptables=false",
             "--ip-masq=false", "--shutdown-timeout", "1", "--log-level", "warn"],
            stdout=log, stderr=log, start_new_session=True,
        )
        log.close()
        client = docker.DockerClient(base_url=f"unix://{self.sock}", version="1.41", timeout=60)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client.ping()
                return client
            except Exception:  # noqa: BLE001 - any failure means "not up yet"
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("the private dockerd did not start") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@contextlib.contextmanager
def private_dockerd(docker_client, name: str, subnet: str) -> Iterator[tuple[PrivateDockerd, object]]:
    """A started private daemon holding busybox, and its client; `name` prefixes its dir and bridge.

    `subnet` is the bridge's address (a /24 of its own per caller). Skips where
    dockerd is missing or the tests are not root.
    """
    if shutil.which("dockerd") is None or os.geteuid() != 0:
        pytest.skip("needs dockerd and root to start a private Docker daemon")
    root = Path(tempfile.mkdtemp(prefix=f"c2d-{name}-", dir="/tmp"))  # short: a socket path
    bridge = f"c2d{name[:4]}{os.getpid() % 100000}"
    _ip("link", "add", "name", bridge, "type", "bridge")
    _ip("addr", "add", subnet, "dev", bridge)
    daemon = PrivateDockerd(root, bridge)
    try:
        client = daemon.start()
        busybox_image(docker_client)  # the jobs' base, as an operator would preload it
        client.images.load(b"".join(docker_client.images.get(BUSYBOX_TAG).save(named=True)))
        yield daemon, client
    finally:
        daemon.stop()
        subprocess.run(["umount", "-R", str(root / "data")], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)
        _ip("link", "delete", bridge)
    shared = subprocess.run(["ip", "link", "show", "docker0"], capture_output=True, check=False)
    assert shared.returncode == 0, "the shared daemon's docker0 bridge must survive"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], capture_output=True, check=True)
