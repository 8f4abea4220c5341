"""A hostile archive URL against the whole engine: cancel ends a download that never sends a byte.

The real engine (HTTP API, service, chain) and a real TCP server on 127.0.0.1
that accepts the download and then stays silent. Before the fetch guard, the
worker sat in a blocking read until the read timeout (30 s here).
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.integration.conftest import SIMPLE_QUERY, step_statuses, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.chain]


class SilentServer:
    """Accepts connections, reads the request, sends nothing; notes when the client hangs up."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/never.tar.gz"
        self.accepted = threading.Event()
        self.closed_at: float | None = None
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        self.accepted.set()
        with conn:
            conn.settimeout(60)
            conn.recv(65536)
            try:
                while conn.recv(1):  # b"" when the engine closes its end
                    pass
            except OSError:
                pass
            self.closed_at = time.monotonic()

    def close(self) -> None:
        self.sock.close()


def test_cancel_during_a_silent_download_stops_it_within_a_second(engine, world) -> None:
    server = SilentServer()
    try:
        instruction_id = world.publish("ab" * 32, server.url)
        job = engine.builder.submit(instruction_id, world.refiner_id, SIMPLE_QUERY)
        assert server.accepted.wait(20), "the engine never started the download"
        time.sleep(0.3)  # the worker is now blocked on a silent socket

        cancelled_at = time.monotonic()
        assert engine.builder.cancel(job["id"])["status"] == "CANCELLED"
        wait_for(lambda: server.closed_at is not None, 5, "the engine to drop the connection")
        assert server.closed_at is not None and server.closed_at - cancelled_at < 1.5

        final = engine.builder.wait(job["id"], poll_s=0.1, timeout_s=10)
        assert final["status"] == "CANCELLED"
        assert "FETCHING" in step_statuses(final) and "LOADING" not in step_statuses(final)
    finally:
        server.close()
