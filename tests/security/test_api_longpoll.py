"""Issue 8 item 3: long-polls hold no worker thread, and one wallet's waiters are bounded.

A real uvicorn server (the engine's server config) in a thread, the real
``JobService.wait_for_change`` over a real SQLite ``JobStore``: 80 waiters
park on one job while /health and a submit still answer at once; one
transition wakes them all; past the per-owner cap the answer is 429. With
``until=end`` one request waits through every step and answers the end; a
stranger is told 404 at once, never parked.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from eth_account import Account

from engine.api.server import server_config
from engine.store import JobStore
from registry_client.eip712 import read_headers
from tests.conftest import ANVIL_KEYS
from tests.engine.api_fakes import CHAIN_ID, REGISTRY, FakeSettings, StoreBackedService, make_app
from tests.engine.test_api import submit_body
from tests.loopback import loopback_listener

OWNER = Account.from_key(ANVIL_KEYS[0])
STRANGER = Account.from_key(ANVIL_KEYS[1])
PROMPT_S = 1.5


@dataclass(frozen=True)
class WaiterSettings(FakeSettings):
    api_max_waiters_per_owner: int = 16


@contextmanager
def running(app: Any) -> Iterator[str]:
    sock = loopback_listener()
    server = uvicorn.Server(server_config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def service(tmp_path) -> Iterator[StoreBackedService]:
    store = JobStore(tmp_path / "jobs.db")
    yield StoreBackedService(artifact_dir=tmp_path / "artifacts", store=store)
    store.close()


async def _timed(coro) -> tuple[float, Any]:
    start = time.monotonic()
    result = await coro
    return time.monotonic() - start, result


def test_many_waiters_leave_health_and_submit_prompt(service):
    job_id = service.add_store_job(OWNER.address)
    path = f"/jobs/{job_id}"
    headers = read_headers(OWNER, CHAIN_ID, REGISTRY, "GET", path)
    waiters = 80

    async def scenario(base: str) -> None:
        limits = httpx.Limits(max_connections=waiters + 10)
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
            polls = [asyncio.create_task(client.get(path, params={"status": "PENDING", "wait": 20},
                                                    headers=headers)) for _ in range(waiters)]
            await asyncio.sleep(1.0)  # let every long-poll park
            assert not any(p.done() for p in polls), [p.result().text for p in polls if p.done()][:1]
            took, health = await _timed(client.get("/health"))
            assert health.status_code == 200 and took < PROMPT_S, took
            took, submitted = await _timed(client.post("/jobs", json=submit_body()))
            assert submitted.status_code == 201 and took < PROMPT_S, took
            took, read = await _timed(client.get(path, headers=headers))
            assert read.status_code == 200 and took < PROMPT_S, took
            # One transition (from another thread, as a worker makes it) wakes every waiter.
            woke = time.monotonic()
            await asyncio.to_thread(service.store.transition, job_id, "PENDING", "VERIFYING")
            answers = await asyncio.gather(*polls)
            assert time.monotonic() - woke < 3
            assert {a.status_code for a in answers} == {200}
            assert {a.json()["status"] for a in answers} == {"VERIFYING"}

    app = make_app(service, settings=WaiterSettings(api_max_waiters_per_owner=waiters))
    with running(app) as base:
        asyncio.run(scenario(base))


def test_waiters_per_owner_are_capped_with_429(service):
    job_id = service.add_store_job(OWNER.address)
    path = f"/jobs/{job_id}"
    headers = read_headers(OWNER, CHAIN_ID, REGISTRY, "GET", path)

    async def scenario(base: str) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=httpx.Limits(max_connections=40)) as client:
            polls = [asyncio.create_task(client.get(path, params={"status": "PENDING", "wait": 30},
                                                    headers=headers)) for _ in range(20)]
            # 16 wait, the rest are told at once (however slow the machine is to get there).
            deadline = time.monotonic() + 15
            while sum(p.done() for p in polls) < 4 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # a fifth answer would come now
            refused = [p.result() for p in polls if p.done()]
            assert len(refused) == 4
            for resp in refused:
                assert resp.status_code == 429 and resp.json()["code"] == "TOO_MANY_WAITERS"
                assert resp.headers["content-type"].startswith("application/problem+json")
                assert resp.headers["retry-after"] == "1"  # EngineClient waits this long, then retries
            # Four refusals mean all 20 reached the server: the 16 are parked; a transition wakes them.
            await asyncio.to_thread(service.store.transition, job_id, "PENDING", "VERIFYING")
            answers = await asyncio.gather(*polls)
            assert sum(a.status_code == 200 for a in answers) == 16
            # The slots are free again once the waits answered.
            again = await client.get(path, params={"status": "VERIFYING", "wait": 0.1}, headers=headers)
            assert again.status_code == 200

    with running(make_app(service, settings=WaiterSettings())) as base:
        asyncio.run(scenario(base))


def test_store_async_wait_holds_no_thread_and_wakes_on_a_transition(service):
    store = service.store
    job_id = service.add_store_job(OWNER.address)

    async def scenario() -> None:
        from anyio.to_thread import current_default_thread_limiter

        pool = current_default_thread_limiter()
        waits = [asyncio.create_task(store.wait_for_change_async(job_id, "PENDING", 20)) for _ in range(100)]
        await asyncio.sleep(0.5)
        assert not any(w.done() for w in waits)
        assert pool.borrowed_tokens == 0  # 100 parked waiters, not one worker thread busy
        threading.Timer(0.1, store.transition, (job_id, "PENDING", "VERIFYING")).start()
        start = time.monotonic()
        jobs = await asyncio.gather(*waits)
        assert time.monotonic() - start < 2
        assert {j.status for j in jobs} == {"VERIFYING"}
        unchanged = await store.wait_for_change_async(job_id, "VERIFYING", 0.2)
        assert unchanged.status == "VERIFYING"
        assert await store.wait_for_change_async("missing", "PENDING", 0.2) is None
        assert store._hub.waiting() == 0  # nothing left registered

    asyncio.run(scenario())


def test_until_end_answers_a_finished_job_at_once(service):
    job_id = service.add_store_job(OWNER.address)
    service.store.fail(job_id, "QUERY_FAILED", "no such table")
    path = f"/jobs/{job_id}"

    async def scenario(base: str) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            took, resp = await _timed(client.get(path, params={"until": "end", "wait": 20},
                                                 headers=read_headers(OWNER, CHAIN_ID, REGISTRY, "GET", path)))
            assert resp.status_code == 200 and resp.json()["status"] == "FAILED" and took < PROMPT_S, took

    with running(make_app(service, settings=WaiterSettings())) as base:
        asyncio.run(scenario(base))


def test_until_end_waits_through_every_step_in_one_request(service):
    store = service.store
    job_id = service.add_store_job(OWNER.address)
    path = f"/jobs/{job_id}"
    steps = ["PENDING", "VERIFYING", "FETCHING", "RUNNING"]

    async def scenario(base: str) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            poll = asyncio.create_task(client.get(path, params={"status": "PENDING", "until": "end", "wait": 20},
                                                  headers=read_headers(OWNER, CHAIN_ID, REGISTRY, "GET", path)))
            while store._hub.waiting() == 0:  # parked in the store
                await asyncio.sleep(0.01)
            for known, new in itertools.pairwise(steps):
                await asyncio.to_thread(store.transition, job_id, known, new)
                await asyncio.sleep(0.2)  # a per-change long-poll would have answered `new` by now
                assert not poll.done(), poll.result().json()["status"]
            await asyncio.to_thread(store.transition, job_id, "RUNNING", "SUCCEEDED")
            resp = await asyncio.wait_for(poll, 5)
            assert resp.status_code == 200
            assert [s["status"] for s in resp.json()["steps"]] == [*steps, "SUCCEEDED"]

    with running(make_app(service, settings=WaiterSettings())) as base:
        asyncio.run(scenario(base))
    assert service.waits == [(job_id, "PENDING", 20.0, True)]


def test_until_end_answers_at_the_deadline_and_a_stranger_at_once_with_404(service):
    job_id = service.add_store_job(OWNER.address)
    path = f"/jobs/{job_id}"

    async def scenario(base: str) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            took, resp = await _timed(client.get(path, params={"until": "end", "wait": 0.5},
                                                 headers=read_headers(OWNER, CHAIN_ID, REGISTRY, "GET", path)))
            assert resp.status_code == 200 and resp.json()["status"] == "PENDING" and took >= 0.5, took
            took, resp = await _timed(client.get(path, params={"until": "end", "wait": 20},
                                                 headers=read_headers(STRANGER, CHAIN_ID, REGISTRY, "GET", path)))
            assert resp.status_code == 404 and resp.json()["code"] == "NOT_FOUND" and took < PROMPT_S, took

    with running(make_app(service, settings=WaiterSettings())) as base:
        asyncio.run(scenario(base))
    assert service.store._hub.waiting() == 0
