"""Run the API over a FakeService in a real uvicorn process, the way `compute-engine serve` does.

``python -m tests.security.fake_api_server`` binds 127.0.0.1 on a free port,
prints ``PORT <n>`` and serves until killed, with the engine's own server
config (engine/api/server.py: guarded h11, request limits, header timeout).
``FAKE_API_HEADER_TIMEOUT_S`` shortens the header read timeout for tests.
``spawn()`` starts one and yields (process, base URL).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.loopback import loopback_listener

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    import uvicorn

    from engine.api.app import api_config
    from engine.api.server import server_config
    from tests.engine.api_fakes import FakeService, FakeSettings, make_app

    timeout = float(os.environ.get("FAKE_API_HEADER_TIMEOUT_S", "10"))
    app = make_app(FakeService(artifact_dir=Path(tempfile.mkdtemp(prefix="fake-api-"))))
    limits = api_config(FakeSettings()).limits
    sock = loopback_listener()
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    config = server_config(app, limits=limits, header_timeout_s=timeout, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])


@contextmanager
def spawn(header_timeout_s: float = 10.0) -> Iterator[tuple[subprocess.Popen, str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FAKE_API_HEADER_TIMEOUT_S": str(header_timeout_s)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.security.fake_api_server"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("PORT "):
            raise RuntimeError(f"fake API server did not start (exit {proc.poll()})")
        base = f"http://127.0.0.1:{int(line.split()[1])}"
        _wait_ready(base)
        yield proc, base
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _wait_ready(base: str) -> None:
    import time

    import httpx

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base}/health", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError("fake API server did not answer /health")


if __name__ == "__main__":
    main()
