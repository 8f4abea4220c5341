"""Several real processes on one job store (SQLite file and PostgreSQL): claims never
overlap, leases lapse when not renewed, waiters and cancels cross process boundaries,
and a racing create_or_get yields one job.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import store as st
from tests.store_proc import open_store

ROOT = Path(__file__).resolve().parents[2]
OWNER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
WAKE_BOUND_S = 5.0  # a waiter that was not woken answers only at its 20 s timeout


@pytest.fixture(params=["sqlite", "postgres"])
def spec(request, tmp_path) -> str:
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return str(tmp_path / "jobs.db")


@pytest.fixture
def store(spec):
    opened = open_store(spec)
    yield opened
    opened.close()


def start(spec: str, *args: object) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "tests.store_proc", spec, *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)


def result(proc: subprocess.Popen) -> object:
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    return json.loads(out.strip().splitlines()[-1])


def create(store, nonce: int):
    return store.create_or_get(OWNER, nonce, "0xaa", instruction_id=1, refiner_id=2, query="SELECT 1",
                               params=None, deadline=2_000_000_000)[0]


def test_claimers_in_several_processes_never_take_the_same_job(spec, store):
    ids = {create(store, n).id for n in range(60)}
    at = time.time() + 1.5  # every process has imported and opened the store by then
    procs = [start(spec, "claim-all", at, f"engine-{i}") for i in range(3)]
    taken = [result(p) for p in procs]
    flat = [job_id for batch in taken for job_id in batch]
    assert sorted(flat) == sorted(ids)  # each job claimed exactly once
    owners = {job_id: f"engine-{i}" for i, batch in enumerate(taken) for job_id in batch}
    assert all(store.get(job_id).lease_owner == owners[job_id] for job_id in ids)


def test_a_lease_not_renewed_expires_while_a_renewed_one_holds(spec, store):
    renewed, lapsed = create(store, 1), create(store, 2)
    holder = start(spec, "hold", 2.0)
    assert json.loads(holder.stdout.readline()) == [renewed.id, lapsed.id]
    deadline = time.monotonic() + 10
    while not store.expired_leases(time.time()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [j.id for j in store.expired_leases(time.time())] == [lapsed.id]
    assert result(holder) == [renewed.id, lapsed.id]


def test_a_waiter_wakes_on_a_transition_made_by_another_process(spec, store):
    job = create(store, 1)
    other = start(spec, "transition", 1.0, job.id, st.PENDING, st.VERIFYING)
    began = time.monotonic()
    changed = store.wait_for_change(job.id, st.PENDING, timeout_s=20)
    assert changed.status == st.VERIFYING and time.monotonic() - began < WAKE_BOUND_S
    assert result(other) == st.VERIFYING


def test_an_async_waiter_wakes_on_a_transition_made_by_another_process(spec, store):
    job = create(store, 1)

    async def wait() -> tuple[float, st.Job | None]:
        began = time.monotonic()
        changed = await store.wait_for_change_async(job.id, st.PENDING, timeout_s=20)
        return time.monotonic() - began, changed

    other = start(spec, "transition", 1.0, job.id, st.PENDING, st.VERIFYING)
    took, changed = asyncio.run(wait())
    assert changed.status == st.VERIFYING and took < WAKE_BOUND_S
    assert result(other) == st.VERIFYING


def test_an_idle_worker_wakes_when_another_process_submits(spec, store):
    creator = start(spec, "create", time.time() + 1.0, OWNER, 5, "0xaa")
    began = time.monotonic()
    store.wait_for_work(timeout_s=20)
    assert time.monotonic() - began < WAKE_BOUND_S
    job_id, created = result(creator)
    assert created and store.claim_next("idle", 60).id == job_id


def test_a_cancel_requested_in_another_process_reaches_the_running_engine(spec, store):
    job = create(store, 1)
    assert store.claim_next("runner", 60).id == job.id
    store.transition(job.id, st.PENDING, st.RUNNING)
    assert store.cancel_requested([job.id]) == set()
    assert result(start(spec, "request-cancel", job.id)) is True
    assert store.cancel_requested([job.id]) == {job.id}
    assert store.get(job.id).status == st.RUNNING  # the engine stops it, then records CANCELLED


def test_create_or_get_racing_from_several_processes_makes_one_job(spec, store):
    at = time.time() + 1.5
    procs = [start(spec, "create", at, OWNER, 77, "0xaa") for _ in range(3)]
    answers = [result(p) for p in procs]
    assert len({job_id for job_id, _ in answers}) == 1
    assert sum(created for _, created in answers) == 1
    assert store.count_pending() == 1
