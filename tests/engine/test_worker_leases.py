"""Claims, leases, store-driven cancel and reconcile: several JobServices on one real SQLite store.

The seams are the fakes of tests/engine/test_service.py; the store is real, so
two services on it act as two engines (each its own data dir and engine id).
"""

from __future__ import annotations

import sqlite3
import time

import pytest

from engine import store as st
from engine.data import DataCatalog
from engine.data_keys import read_kek_file
from engine.service import JobService
from engine.settings import load_settings
from engine.store import JobStore
from engine.worker import CANCEL_POLL_S
from tests.engine import test_service as _unit
from tests.engine.test_service import OWNER, Clock, Fakes, request, wait_for

# The unit tests' fixtures, shared by name (a fake for every seam, a real data dir and store).
data_dir, fakes, make_service, service = _unit.data_dir, _unit.fakes, _unit.make_service, _unit.service


@pytest.fixture
def peer(tmp_path, data_dir):
    """A second engine on the same store: its own data dir (same refiner data), id and fakes."""
    made = []

    def make(**overrides) -> tuple[JobService, Fakes]:
        own = tmp_path / f"peer-{len(made)}"
        kek = read_kek_file(tmp_path / "kek")  # the unit fixture's KEK: the peer holds the same data
        src = tmp_path / f"peer-{len(made)}.db"
        with sqlite3.connect(src) as conn:
            conn.execute("CREATE TABLE users (email TEXT)")
        conn.close()
        DataCatalog(own, kek).add(2, src)
        peer_fakes = Fakes(tmp_path)
        settings = load_settings(data_dir=own, data_kek_file=tmp_path / "kek", **overrides)
        service = JobService(settings, JobStore(data_dir / "jobs.db"), peer_fakes, peer_fakes, peer_fakes,
                             peer_fakes, DataCatalog(own, kek), clock=Clock(), query_runner=peer_fakes.run_query)
        made.append(service)
        return service, peer_fakes

    yield make
    for engine in made:
        engine.stop(timeout=5)
        engine.store.close()


def test_engines_get_distinct_ids_kept_across_restarts(make_service, peer):
    first, again = make_service(), make_service()
    other, _ = peer()
    assert first.engine_id == again.engine_id != other.engine_id


def test_a_cancel_through_another_engine_stops_the_running_container(make_service, fakes, peer):
    runner = make_service()
    fakes.block_run = True
    runner.start()
    api, api_fakes = peer(role="api")
    job, _ = api.submit(request(), OWNER)
    assert fakes.run_started.wait(10)
    assert api.store.get(job.id).lease_owner == runner.engine_id
    assert api.cancel(job.id, OWNER).status == st.CANCELLED
    # The running engine looks for cancel flags every CANCEL_POLL_S: well within the 2 s promise.
    assert CANCEL_POLL_S <= 0.5
    wait_for(lambda: ("runner.cancel", job.id) in fakes.calls, timeout=10)
    wait_for(lambda: runner.health()["queue"]["running"] == 0)
    final = api.get(job.id, OWNER)
    assert (final.status, final.failure_code) == (st.CANCELLED, "CANCELLED")
    assert "run" not in api_fakes.steps()


def test_an_api_engine_claims_nothing(peer):
    api, api_fakes = peer(role="api")
    api.start()
    job, _ = api.submit(request(), OWNER)
    time.sleep(1.0)
    assert api.get(job.id, OWNER).status == st.PENDING and api_fakes.steps() == ["remove_leftovers"]
    assert api.health()["queue"] == {"waiting": 1, "capacity": 100, "running": 0, "workers": 0}


def test_a_worker_claims_only_refiners_whose_data_it_holds(service, fakes):
    other, _ = service.submit(request(1, refiner=3), OWNER)  # no data for refiner 3 here
    mine, _ = service.submit(request(2), OWNER)
    assert service.worker.claim_once() == mine.id
    assert service.worker.claim_once() is None
    assert service.get(mine.id, OWNER).status == st.SUCCEEDED
    untouched = service.get(other.id, OWNER)
    assert (untouched.status, untouched.lease_owner) == (st.PENDING, None)


def test_a_job_ran_once_shows_one_claim_by_the_engine_that_ran_it(service):
    job, _ = service.submit(request(), OWNER)
    assert service.worker.claim_once() == job.id
    done = service.get(job.id, OWNER)
    assert done.status == st.SUCCEEDED and done.lease_owner == service.engine_id
    assert [s.status for s in done.steps].count(st.VERIFYING) == 1


def test_a_lapsed_lease_fails_the_started_job_engine_lost_and_frees_the_unstarted_one(service):
    started, _ = service.submit(request(1), OWNER)
    unstarted, _ = service.submit(request(2), OWNER)
    store = service.store
    assert store.claim_next("dead-engine", 1.0).id == started.id
    store.transition(started.id, st.PENDING, st.RUNNING)
    assert store.claim_next("dead-engine", 1.0).id == unstarted.id
    assert service.supervisor.reap() == 0  # still leased
    assert service.supervisor.reap(now=time.time() + 2) == 1
    lost = service.get(started.id, OWNER)
    assert (lost.status, lost.failure_code) == (st.FAILED, "ENGINE_LOST")
    assert "dead-engine" in lost.failure_message
    wait_for(lambda: store.expired_leases(time.time()) != [], timeout=3)
    assert service.get(unstarted.id, OWNER).status == st.PENDING
    assert service.worker.claim_once() == unstarted.id  # claimable again
    assert service.get(unstarted.id, OWNER).status == st.SUCCEEDED


def test_a_restart_fails_its_own_jobs_and_leaves_a_live_peers_alone(make_service, peer):
    before = make_service()
    mine, _ = before.submit(request(1), OWNER)
    theirs, _ = before.submit(request(2), OWNER)
    before.store.claim_next(before.engine_id, 60)
    before.store.transition(mine.id, st.PENDING, st.FETCHING)
    other, _ = peer()
    before.store.claim_next(other.engine_id, 60)
    before.store.transition(theirs.id, st.PENDING, st.RUNNING)

    after = make_service()  # the same data dir: the same engine id
    after.reconcile()
    failed = after.get(mine.id, OWNER)
    assert (failed.status, failed.failure_code) == (st.FAILED, "ENGINE_RESTARTED")
    assert after.get(theirs.id, OWNER).status == st.RUNNING


def test_a_lost_lease_stops_the_job_the_engine_still_runs(service, fakes):
    fakes.block_run = True
    service.start()
    job, _ = service.submit(request(), OWNER)
    assert fakes.run_started.wait(10)
    service.store.fail(job.id, "ENGINE_LOST", "another engine reaped it")  # as a peer's supervisor would
    service.worker.renew()
    assert ("runner.cancel", job.id) in fakes.calls
    wait_for(lambda: service.health()["queue"]["running"] == 0)
    assert service.get(job.id, OWNER).failure_code == "ENGINE_LOST"


@pytest.mark.chain
def test_an_api_engine_needs_no_docker(tmp_path, anvil, deployment, monkeypatch):
    from engine.wiring import NoContainers, build_service
    from registry_client.manifest import save_deployment

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")  # nothing listens there
    manifest = save_deployment(deployment, tmp_path / "deployment.json")
    service = build_service(load_settings(rpc_url=anvil.url, deployment=manifest, data_dir=tmp_path / "data",
                                          role="api"))
    try:
        assert isinstance(service.runner, NoContainers)
        service.start()
        health = service.health()
        assert health["ok"] and set(health["checks"]) == {"store", "disk", "chain"}, health
        assert health["queue"]["workers"] == 0
    finally:
        service.stop()
        service.store.close()


@pytest.mark.parametrize(("role", "jobs_routes"), [("worker", False), ("api", True), ("all", True)])
def test_a_worker_engine_serves_health_only(role, jobs_routes, tmp_path):
    import dataclasses

    from fastapi.testclient import TestClient

    from tests.engine.api_fakes import FakeService, FakeSettings, make_app

    settings = dataclasses.make_dataclass("RoleSettings", [("role", str, role)], bases=(FakeSettings,), frozen=True)()
    with TestClient(make_app(FakeService(tmp_path), settings=settings), raise_server_exceptions=False) as client:
        assert client.get("/health").status_code == 200
        # Unsigned reads: refused by the API's auth where it is served, unknown paths where not.
        answers = [client.get(path).status_code for path in ("/jobs/" + "ab" * 16, "/job/1")]
        assert [code != 404 for code in answers] == [jobs_routes, jobs_routes], answers


def test_an_idle_worker_claims_a_new_job_at_once(service):
    """A job submitted while the workers wait is claimed as it is created, not after a pause
    (an idle worker woken early used to sleep 0.25 s before it claimed)."""
    service.start()
    for nonce in range(1, 7):
        time.sleep(0.05)  # the workers went back to waiting a moment ago
        job, _ = service.submit(request(nonce), OWNER)
        wait_for(lambda job=job: service.get(job.id, OWNER).status != st.PENDING)
        steps = service.get(job.id, OWNER).steps
        assert steps[1].at - steps[0].at < 0.2
