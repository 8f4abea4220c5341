"""EngineClient retries, bounded: 429 TOO_MANY_WAITERS after its Retry-After, and a request
that meets a kept-alive connection the server had closed. Real HTTP: the API under uvicorn
over a fake service, and a scripted raw HTTP/1.1 server for the connection race."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from dataclasses import dataclass, field

import httpx
import pytest
from eth_account import Account

from registry_client import engine_client
from registry_client.engine_client import EngineClient
from registry_client.errors import EngineApiError, EngineUnreachable
from tests.conftest import ANVIL_KEYS
from tests.engine.api_fakes import CHAIN_ID, REGISTRY, FakeService, make_app, serve

OWNER = Account.from_key(ANVIL_KEYS[0])


@dataclass
class SlowWaits(FakeService):
    hold_s: float = 0.3  # each long-poll holds its waiter slot this long
    entered: threading.Event = field(default_factory=threading.Event)

    async def wait_for_change(self, job_id, owner, known_status, timeout_s, *, until_end=False):
        self.entered.set()
        await asyncio.sleep(self.hold_s)
        return await super().wait_for_change(job_id, owner, known_status, timeout_s, until_end=until_end)


@dataclass(frozen=True)
class OneWaiter:
    auth_window_s: float = 60.0
    deadline_max_s: float = 24 * 3600.0
    api_max_waiters_per_owner: int = 1


def _counting_client(base: str, statuses: list[int]) -> EngineClient:
    http = httpx.Client(timeout=10, event_hooks={"response": [lambda r: statuses.append(r.status_code)]})
    return EngineClient(base, OWNER, CHAIN_ID, REGISTRY, http=http)


def _hold_the_slot(base: str, job_id: str, service: SlowWaits) -> threading.Thread:
    holder = EngineClient(base, OWNER, CHAIN_ID, REGISTRY)
    thread = threading.Thread(target=holder.status, args=(job_id,),
                              kwargs={"wait_s": 5, "known_status": "PENDING"}, daemon=True)
    thread.start()
    assert service.entered.wait(5), "the first long-poll never arrived"
    return thread


def test_too_many_waiters_is_retried_after_retry_after(tmp_path):
    service = SlowWaits(artifact_dir=tmp_path, hold_s=0.3)
    with serve(make_app(service, settings=OneWaiter())) as base:
        job_id = EngineClient(base, OWNER, CHAIN_ID, REGISTRY).submit(1, 2, "SELECT 1")["id"]
        statuses: list[int] = []
        client = _counting_client(base, statuses)
        holder = _hold_the_slot(base, job_id, service)
        job = client.status(job_id, wait_s=5, known_status="PENDING")  # 429, 1 s (Retry-After), 200
        holder.join(5)
    assert job["id"] == job_id
    assert statuses == [429, 200]


def test_too_many_waiters_retries_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(engine_client, "_MAX_RETRY_AFTER_S", 0.05)  # keep the test short
    service = SlowWaits(artifact_dir=tmp_path, hold_s=3)
    with serve(make_app(service, settings=OneWaiter())) as base:
        job_id = EngineClient(base, OWNER, CHAIN_ID, REGISTRY).submit(1, 2, "SELECT 1")["id"]
        statuses: list[int] = []
        client = _counting_client(base, statuses)
        holder = _hold_the_slot(base, job_id, service)
        with pytest.raises(EngineApiError) as info:
            client.status(job_id, wait_s=5, known_status="PENDING")
        holder.join(5)
    assert (info.value.code, info.value.status) == ("TOO_MANY_WAITERS", 429)
    assert statuses == [429, 429, 429]


def test_other_errors_are_not_retried(tmp_path):
    with serve(make_app(FakeService(artifact_dir=tmp_path))) as base:
        statuses: list[int] = []
        with pytest.raises(EngineApiError) as info:
            _counting_client(base, statuses).status("no-such-job")
    assert info.value.code == "NOT_FOUND" and statuses == [404]


class ScriptedServer:
    """HTTP/1.1 with keep-alive; per request, in order, `answer` (200 JSON) or `close`
    (read the request, then close the connection without a response)."""

    def __init__(self, actions: list[str]):
        self.actions = list(actions)
        self.requests: list[str] = []
        self.connections = 0
        self._lock = threading.Lock()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                with self._lock:
                    self.requests.append(head.split(b"\r\n")[0].decode())
                    action = self.actions.pop(0) if self.actions else "answer"
                if action == "close":
                    return
                body = json.dumps({"id": "job-1", "status": "PENDING"}).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Connection: keep-alive\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    def close(self) -> None:
        self.sock.close()


def test_a_request_meeting_a_keep_alive_close_is_sent_again():
    server = ScriptedServer(["answer", "close", "answer"])
    try:
        with EngineClient(server.base, OWNER, CHAIN_ID, REGISTRY) as client:
            assert client.status("job-1")["id"] == "job-1"
            # Sent on the kept-alive connection, which the server closes unanswered: sent again.
            assert client.status("job-1")["id"] == "job-1"
    finally:
        server.close()
    assert len(server.requests) == 3 and server.connections == 2


def test_connection_closes_are_retried_a_bounded_number_of_times():
    server = ScriptedServer(["close"] * 10)
    try:
        with EngineClient(server.base, OWNER, CHAIN_ID, REGISTRY) as client, \
                pytest.raises(EngineUnreachable) as info:
            client.status("job-1")
    finally:
        server.close()
    assert info.value.code == "ENGINE_UNREACHABLE" and "closed the connection" in info.value.message
    assert len(server.requests) == 3
