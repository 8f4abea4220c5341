"""The job store suite: every store implementation passes it (parametrized by factory).

SQLite (a file in tmp_path) and PostgreSQL (a fresh database on the session's
private cluster, tests/postgres_cluster.py) run the same tests.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from engine import store as st
from engine.artifacts import Artifact
from engine.errors import NotFoundError, RequestError
from engine.store import JobStore, StaleState

OWNER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
OTHER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


def sqlite_factory(request, tmp_path: Path) -> Callable[[], JobStore]:
    """Opens (or reopens) the same store file."""
    return lambda: JobStore(tmp_path / "jobs.db")


def postgres_factory(request, tmp_path: Path) -> Callable[[], JobStore]:
    """Opens (or reopens) the same fresh database."""
    from engine.store_postgres import PostgresJobStore

    url = request.getfixturevalue("postgres_url")
    return lambda: PostgresJobStore(url)


STORE_FACTORIES = {"sqlite": sqlite_factory, "postgres": postgres_factory}


@pytest.fixture(params=sorted(STORE_FACTORIES))
def open_store(request, tmp_path):
    opened: list[JobStore] = []
    make = STORE_FACTORIES[request.param](request, tmp_path)

    def factory() -> JobStore:
        store = make()
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store) -> JobStore:
    return open_store()


def create(store: JobStore, owner: str = OWNER, nonce: int = 1, digest: str = "0xaa", **kw):
    fields = {"instruction_id": 1, "refiner_id": 2, "query": "SELECT 1", "params": [1, "a"], "deadline": 2_000_000_000}
    fields.update(kw)
    return store.create_or_get(owner, nonce, digest, **fields)


def test_create_records_pending_job_with_first_step(store):
    job, created = create(store)
    assert created
    assert job.status == st.PENDING
    assert [s.status for s in job.steps] == [st.PENDING]
    assert job.owner == OWNER
    assert job.params == [1, "a"]
    assert job.finished_at is None
    assert len(job.id) == 32 and int(job.id, 16) >= 0


def test_job_ids_are_random(store):
    ids = {create(store, nonce=n)[0].id for n in range(20)}
    assert len(ids) == 20


@pytest.mark.parametrize("owner_form", [OWNER, OWNER.lower(), OWNER.upper().replace("0X", "0x")])
def test_same_request_returns_same_job(store, owner_form):
    first, _ = create(store)
    again, created = create(store, owner=owner_form)
    assert not created
    assert again.id == first.id


def test_same_nonce_different_digest_is_nonce_reused(store):
    create(store)
    with pytest.raises(RequestError) as info:
        create(store, digest="0xbb")
    assert info.value.code == "NONCE_REUSED"
    assert info.value.http_status == 409


def test_nonce_is_per_owner(store):
    a, _ = create(store)
    b, created = create(store, owner=OTHER, digest="0xbb")
    assert created and a.id != b.id


def test_uint256_nonce_and_price_round_trip(store):
    big = 2**256 - 1
    job, _ = create(store, nonce=big)
    assert store.find(OWNER, big).id == job.id
    job = store.transition(job.id, st.PENDING, st.VERIFYING, price_wei=big)
    assert job.price_wei == big


def test_transition_appends_steps_and_records_fields(store):
    job, _ = create(store)
    job = store.transition(job.id, st.PENDING, st.VERIFYING)
    job = store.transition(job.id, st.VERIFYING, st.FETCHING, block_number=17, dlp_id=3)
    report = {"columns": [["users", "id"]], "permissions_used": [1], "price": "5", "row_count": 2}
    job = store.transition(job.id, {st.FETCHING}, st.LOADING, access_report=report, image_id="sha256:ab")
    assert [s.status for s in job.steps] == [st.PENDING, st.VERIFYING, st.FETCHING, st.LOADING]
    assert all(a.at <= b.at for a, b in zip(job.steps, job.steps[1:]))
    assert (job.block_number, job.dlp_id, job.image_id) == (17, 3, "sha256:ab")
    assert job.access_report == report


def test_transition_from_wrong_status_is_stale_and_changes_nothing(store):
    job, _ = create(store)
    with pytest.raises(StaleState) as info:
        store.transition(job.id, st.RUNNING, st.COLLECTING, exit_code=0)
    assert info.value.current == st.PENDING
    after = store.get(job.id)
    assert after.status == st.PENDING and after.exit_code is None and len(after.steps) == 1


def test_transition_of_missing_job_is_not_found(store):
    with pytest.raises(NotFoundError):
        store.transition("nope", st.PENDING, st.VERIFYING)


def test_transition_refuses_unknown_fields(store):
    job, _ = create(store)
    with pytest.raises(ValueError):
        store.transition(job.id, st.PENDING, st.VERIFYING, owner=OTHER)
    assert store.get(job.id).owner == OWNER


@pytest.mark.parametrize("status", sorted(st.UNFINISHED))
def test_cancel_from_any_unfinished_status(store, status):
    job, _ = create(store)
    if status != st.PENDING:
        store.transition(job.id, st.PENDING, status)
    job = store.cancel(job.id)
    assert job.status == st.CANCELLED
    assert job.failure_code == "CANCELLED"
    assert job.finished_at is not None


@pytest.mark.parametrize("end", [st.SUCCEEDED, st.FAILED, st.CANCELLED])
def test_finished_job_cannot_be_cancelled_or_failed(store, end):
    job, _ = create(store)
    store.transition(job.id, st.PENDING, end)
    with pytest.raises(StaleState):
        store.cancel(job.id)
    with pytest.raises(StaleState):
        store.fail(job.id, "INTERNAL_ERROR", "x")
    assert store.get(job.id).status == end


def test_cancelled_job_cannot_be_moved_on_by_a_worker(store):
    job, _ = create(store)
    store.transition(job.id, st.PENDING, st.RUNNING)
    store.cancel(job.id)
    with pytest.raises(StaleState):
        store.transition(job.id, st.RUNNING, st.COLLECTING, exit_code=0)
    assert store.get(job.id).status == st.CANCELLED


def test_cancel_race_exactly_one_winner(store):
    """A worker advancing and an owner cancelling at once: exactly one succeeds."""
    outcomes: list[str] = []
    for nonce in range(30):
        job, _ = create(store, nonce=nonce)
        store.transition(job.id, st.PENDING, st.RUNNING)
        barrier = threading.Barrier(2)
        results: dict[str, bool] = {}

        def advance(job_id=job.id, barrier=barrier, results=results):
            barrier.wait()
            try:
                store.transition(job_id, st.RUNNING, st.COLLECTING)
                results["advance"] = True
            except StaleState:
                results["advance"] = False

        def cancel(job_id=job.id, barrier=barrier, results=results):
            barrier.wait()
            try:
                store.cancel(job_id)
                results["cancel"] = True
            except StaleState:
                results["cancel"] = False

        threads = [threading.Thread(target=advance), threading.Thread(target=cancel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        final = store.get(job.id).status
        if results["advance"] and results["cancel"]:
            # Advance first, then cancel from COLLECTING: both legal, cancel last.
            assert final == st.CANCELLED
        else:
            assert results["cancel"] and final == st.CANCELLED
        outcomes.append(final)
    assert set(outcomes) == {st.CANCELLED}


def test_fail_records_code_message_and_fields(store):
    job, _ = create(store)
    store.transition(job.id, st.PENDING, st.RUNNING)
    job = store.fail(job.id, "EXIT_NONZERO", "the container exited with code 3", exit_code=3)
    assert (job.status, job.failure_code, job.exit_code) == (st.FAILED, "EXIT_NONZERO", 3)
    assert job.steps[-1].status == st.FAILED


def test_unfinished_lists_only_unfinished(store):
    done, _ = create(store, nonce=1)
    store.transition(done.id, st.PENDING, st.SUCCEEDED)
    running, _ = create(store, nonce=2)
    store.transition(running.id, st.PENDING, st.RUNNING)
    pending, _ = create(store, nonce=3)
    assert {j.id for j in store.unfinished()} == {running.id, pending.id}


def test_list_by_owner(store):
    mine, _ = create(store, nonce=1)
    create(store, owner=OTHER, nonce=1)
    assert [j.id for j in store.list_by_owner(OWNER.lower())] == [mine.id]


def test_artifacts_replace_and_list(store):
    job, _ = create(store)
    store.set_artifacts(job.id, [Artifact("b/out.csv", 3, "ab" * 32, "text/csv")])
    store.set_artifacts(
        job.id,
        [Artifact("z.json", 2, "cd" * 32, "application/json"), Artifact("a.txt", 1, "ef" * 32, "text/plain")],
    )
    names = [(a.name, a.size, a.media_type) for a in store.artifacts(job.id)]
    assert names == [("a.txt", 1, "text/plain"), ("z.json", 2, "application/json")]


def test_expired_and_mark_artifacts_expired(store):
    fresh, _ = create(store, nonce=1)
    store.transition(fresh.id, st.PENDING, st.SUCCEEDED, artifacts_expire_at=2000.0)
    old, _ = create(store, nonce=2)
    store.transition(old.id, st.PENDING, st.SUCCEEDED, artifacts_expire_at=1000.0)
    store.set_artifacts(old.id, [Artifact("x", 1, "00" * 32, "text/plain")])
    assert [j.id for j in store.expired(1500.0)] == [old.id]
    job = store.mark_artifacts_expired(old.id)
    assert job.artifacts_expired and job.status == st.SUCCEEDED
    assert store.expired(1500.0) == []
    assert [j.id for j in store.expired(2500.0)] == [fresh.id]
    assert store.artifacts(old.id) == []


def test_survives_reopen(open_store):
    first = open_store()
    job, _ = create(first)
    first.transition(job.id, st.PENDING, st.RUNNING, image_id="sha256:cafe")
    first.close()
    second = open_store()
    again = second.get(job.id)
    assert again.status == st.RUNNING and again.image_id == "sha256:cafe"
    assert [s.status for s in again.steps] == [st.PENDING, st.RUNNING]
    assert create(second)[0].id == job.id  # idempotency holds across restarts


def test_store_file_is_wal(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    try:
        assert store._db.journal_mode == "wal"
    finally:
        store.close()


def test_public_surface():
    assert set(st.__all__) >= {"Job", "JobStore", "StepEvent", "StaleState", "TERMINAL", "UNFINISHED"}
    for name in st.__all__:
        assert hasattr(st, name)


def test_wait_for_change_wakes_on_a_transition(store):
    import threading

    job, _ = create(store)
    threading.Timer(0.2, lambda: store.transition(job.id, "PENDING", "VERIFYING")).start()
    changed = store.wait_for_change(job.id, "PENDING", timeout_s=20)
    assert changed is not None and changed.status == "VERIFYING"


def test_wait_for_change_answers_at_once_when_status_already_differs(store):
    job, _ = create(store)
    assert store.wait_for_change(job.id, "RUNNING", timeout_s=20).status == "PENDING"


def test_wait_for_change_times_out_with_the_unchanged_job(store):
    job, _ = create(store)
    assert store.wait_for_change(job.id, "PENDING", timeout_s=0.1).status == "PENDING"
    assert store.wait_for_change("missing", "PENDING", timeout_s=0.1) is None


def _end(store: JobStore, job_id: str, ending: str) -> None:
    if ending == st.FAILED:
        store.fail(job_id, "QUERY_FAILED", "no such table")
    else:
        store.transition(job_id, st.VERIFYING, ending)


@pytest.mark.parametrize("ending", [st.SUCCEEDED, st.FAILED])
def test_wait_until_end_sleeps_through_a_step_and_wakes_at_the_end(store, ending):
    job, _ = create(store)

    async def scenario() -> None:
        waiter = asyncio.create_task(store.wait_for_change_async(job.id, st.PENDING, 20, until_end=True))
        while store._hub.waiting() == 0:  # registered: it has read the job and waits
            await asyncio.sleep(0.01)
        await asyncio.to_thread(store.transition, job.id, st.PENDING, st.VERIFYING)
        await asyncio.sleep(0.3)  # a per-change waiter would have answered VERIFYING by now
        assert not waiter.done()
        await asyncio.to_thread(_end, store, job.id, ending)
        ended = await asyncio.wait_for(waiter, 5)
        assert ended.status == ending and [s.status for s in ended.steps] == [st.PENDING, st.VERIFYING, ending]
        assert store._hub.waiting() == 0

    asyncio.run(scenario())


def test_a_step_before_the_end_does_not_wake_a_waiter_for_the_end(store):
    """Its own transitions tell the hub whether the job ended: an until-end waiter sleeps
    through the steps (no read per step), a per-change waiter wakes at each."""
    from engine.store_sql import ChangeHub

    hub = ChangeHub()

    async def scenario() -> None:
        with hub.async_waiter("j", until_end=True) as for_end, hub.async_waiter("j") as for_change:
            hub.changed("j", finished=False)
            await asyncio.sleep(0.05)
            assert for_change.is_set() and not for_end.is_set()
            hub.changed("j")  # another process's change: nobody knows whether it ended
            await asyncio.sleep(0.05)
            assert for_end.is_set()
        with hub.async_waiter("j", until_end=True) as for_end:
            hub.changed("j", finished=True)
            await asyncio.sleep(0.05)
            assert for_end.is_set()

    asyncio.run(scenario())


def test_wait_until_end_blocking_form_answers_the_end_not_the_step(store):
    job, _ = create(store)
    threading.Timer(0.1, store.transition, (job.id, st.PENDING, st.VERIFYING)).start()
    threading.Timer(0.4, _end, (store, job.id, st.FAILED)).start()
    ended = store.wait_for_change(job.id, None, timeout_s=20, until_end=True)
    assert ended.status == st.FAILED and [s.status for s in ended.steps] == [st.PENDING, st.VERIFYING, st.FAILED]


def test_wait_until_end_answers_an_ended_job_at_once_else_at_the_deadline(store):
    waiting, _ = create(store)
    ended, _ = create(store, nonce=2, digest="0xbb")
    store.cancel(ended.id)

    async def timed(job_id: str, timeout_s: float) -> tuple[float, st.Job | None]:
        began = time.monotonic()
        job = await store.wait_for_change_async(job_id, None, timeout_s, until_end=True)
        return time.monotonic() - began, job

    took, job = asyncio.run(timed(ended.id, 20))
    assert job.status == st.CANCELLED and took < 2
    took, job = asyncio.run(timed(waiting.id, 0.3))
    assert job.status == st.PENDING and took >= 0.3
    took, job = asyncio.run(timed("missing", 20))
    assert job is None and took < 2  # a missing job answers at once too


ATTESTATION = {"signer": OTHER, "signature": "0x" + "11" * 65, "artifacts_digest": "0x" + "22" * 32,
               "finished_at": 1_790_000_000}


def test_attestation_is_recorded_with_the_transition_and_null_by_default(store):
    job, _ = create(store)
    assert job.attestation is None
    done = store.transition(job.id, st.PENDING, st.SUCCEEDED, attestation=ATTESTATION)
    assert done.attestation == ATTESTATION
    assert store.get(job.id).attestation == ATTESTATION


def test_old_jobs_db_without_the_attestation_column_opens_and_gains_it(tmp_path):
    import sqlite3

    path = tmp_path / "old" / "jobs.db"
    old = JobStore(path)
    job, _ = create(old)
    old.close()
    conn = sqlite3.connect(path)  # rebuild the table as an engine before attestations wrote it
    conn.execute("ALTER TABLE jobs DROP COLUMN attestation")
    conn.commit()
    assert "attestation" not in [r[1] for r in conn.execute("PRAGMA table_info(jobs)")]
    conn.close()

    store = JobStore(path)
    try:
        assert store.get(job.id).attestation is None
        done = store.transition(job.id, st.PENDING, st.SUCCEEDED, attestation=ATTESTATION)
        assert done.attestation == ATTESTATION
    finally:
        store.close()


SKIPPED = {"count": 1, "entries": [{"name": "bad-\\xff.txt", "reason": "a name that is not valid UTF-8"}]}


def test_skipped_outputs_are_recorded_and_an_old_jobs_db_gains_the_column(tmp_path):
    import sqlite3

    path = tmp_path / "old" / "jobs.db"
    old = JobStore(path)
    job, _ = create(old)
    old.close()
    conn = sqlite3.connect(path)  # as an engine before skipped outputs were recorded wrote it
    conn.execute("ALTER TABLE jobs DROP COLUMN skipped_outputs")
    conn.commit()
    conn.close()

    store = JobStore(path)
    try:
        assert store.get(job.id).skipped_outputs is None
        done = store.transition(job.id, st.PENDING, st.SUCCEEDED, skipped_outputs=SKIPPED)
        assert done.skipped_outputs == SKIPPED == store.get(job.id).skipped_outputs
    finally:
        store.close()


# --- claims, leases and store-driven cancel (issue 13) ------------------------------


def test_count_pending_counts_only_pending_rows(store):
    for nonce in range(3):
        create(store, nonce=nonce)
    running, _ = create(store, nonce=9)
    store.transition(running.id, st.PENDING, st.RUNNING)
    assert store.count_pending() == 3


def test_claim_next_takes_the_oldest_free_job_and_leaves_it_pending(store):
    first, _ = create(store, nonce=1, now=100.0)
    second, _ = create(store, nonce=2, now=200.0)
    claimed = store.claim_next("engine-a", lease_s=60)
    assert claimed.id == first.id and claimed.status == st.PENDING
    assert claimed.lease_owner == "engine-a" and claimed.lease_expires_at > claimed.updated_at
    assert store.claim_next("engine-b", lease_s=60).id == second.id
    assert store.claim_next("engine-c", lease_s=60) is None
    assert store.count_pending() == 2  # claimed, still PENDING until the worker moves them


def test_claim_next_only_for_the_refiners_given(store):
    create(store, nonce=1, refiner_id=7)
    other, _ = create(store, nonce=2, refiner_id=8)
    assert store.claim_next("e", 60, refiner_ids=[]) is None
    assert store.claim_next("e", 60, refiner_ids={8, 9}).id == other.id
    assert store.claim_next("e", 60, refiner_ids=[8]) is None


def test_a_lapsed_lease_makes_a_pending_job_claimable_again_and_expired(store):
    job, _ = create(store)
    store.claim_next("dead", lease_s=0)  # expires at once: its engine never renews it
    assert [j.id for j in store.expired_leases(now=9e9)] == [job.id]
    again = store.claim_next("alive", lease_s=60)
    assert again.id == job.id and again.lease_owner == "alive"


def test_finished_or_moved_jobs_are_not_claimed(store):
    done, _ = create(store, nonce=1)
    store.transition(done.id, st.PENDING, st.SUCCEEDED)
    running, _ = create(store, nonce=2)
    store.transition(running.id, st.PENDING, st.RUNNING)
    assert store.claim_next("e", 60) is None


def test_renew_leases_extends_only_the_leases_still_held(store):
    mine, _ = create(store, nonce=1)
    theirs, _ = create(store, nonce=2)
    done, _ = create(store, nonce=3)
    for engine in ("a", "b", "a"):
        store.claim_next(engine, lease_s=1)
    store.transition(done.id, st.PENDING, st.SUCCEEDED)
    before = store.get(mine.id).lease_expires_at
    assert store.renew_leases("a", [mine.id, theirs.id, done.id], lease_s=600) == {mine.id}
    assert store.get(mine.id).lease_expires_at > before + 500
    assert store.get(theirs.id).lease_owner == "b"
    assert store.renew_leases("a", [], lease_s=600) == set()


def test_expired_leases_and_jobs_leased_by(store):
    old, _ = create(store, nonce=1)
    fresh, _ = create(store, nonce=2)
    unclaimed, _ = create(store, nonce=3)
    store.claim_next("a", lease_s=600)
    store.claim_next("a", lease_s=600)
    assert store.renew_leases("a", [old.id], lease_s=0) == {old.id}  # its engine stops renewing
    store.transition(old.id, st.PENDING, st.RUNNING)
    store.transition(fresh.id, st.PENDING, st.RUNNING)
    now = store.get(old.id).updated_at + 1
    assert [j.id for j in store.expired_leases(now)] == [old.id]
    assert {j.id for j in store.jobs_leased_by("a")} == {old.id, fresh.id}
    store.fail(old.id, "ENGINE_LOST", "x")
    assert store.expired_leases(now) == [] and [j.id for j in store.jobs_leased_by("a")] == [fresh.id]
    assert store.jobs_leased_by("b") == [] and unclaimed.lease_owner is None


def test_request_cancel_of_an_unclaimed_job_cancels_at_once(store):
    job, _ = create(store)
    cancelled = store.request_cancel(job.id)
    assert cancelled.status == st.CANCELLED and cancelled.failure_code == "CANCELLED"
    assert store.claim_next("e", 60) is None


@pytest.mark.parametrize("status", [st.PENDING, st.RUNNING])
def test_request_cancel_of_a_claimed_job_flags_it_for_its_engine(store, status):
    job, _ = create(store)
    store.claim_next("a", lease_s=600)
    if status != st.PENDING:
        store.transition(job.id, st.PENDING, status)
    flagged = store.request_cancel(job.id)
    assert flagged.status == status and flagged.cancel_requested
    other, _ = create(store, nonce=2)
    assert store.cancel_requested([job.id, other.id, "missing"]) == {job.id}
    assert store.cancel_requested([]) == set()
    assert store.cancel(job.id).status == st.CANCELLED  # what the engine does once it stopped it


def test_request_cancel_of_a_finished_or_missing_job(store):
    job, _ = create(store)
    store.transition(job.id, st.PENDING, st.SUCCEEDED)
    with pytest.raises(StaleState):
        store.request_cancel(job.id)
    with pytest.raises(NotFoundError):
        store.request_cancel("missing")
    assert not store.get(job.id).cancel_requested


def test_wait_for_work_answers_at_once_when_a_job_is_claimable(store):
    assert store.wait_for_work(timeout_s=0.1) is False  # nothing: returns after the timeout
    create(store)
    assert store.wait_for_work(timeout_s=20) is True  # would hang the test if it waited
    assert store.wait_for_work(timeout_s=20, refiner_ids={2}) is True


def test_wait_for_work_counts_only_what_the_caller_could_claim(store):
    """A job for another engine's refiner, or one its owner cancelled, is not work for us:
    answering at once for it made idle workers pause instead of waiting (they spun on it)."""
    create(store, refiner_id=7)
    cancelled, _ = create(store, nonce=2)
    store.request_cancel(cancelled.id)
    started = time.monotonic()
    assert store.wait_for_work(timeout_s=0.2, refiner_ids={2}) is False
    assert time.monotonic() - started >= 0.15  # it waited: nothing for refiner 2
    assert store.claim_next("e", 30, {2}) is None  # the same predicate as the claim
    assert store.wait_for_work(timeout_s=0.2, refiner_ids=set()) is False  # no data: no work
    assert store.wait_for_work(timeout_s=20, refiner_ids={7}) is True


def test_wait_for_work_wakes_on_a_new_job(store):
    threading.Timer(0.2, lambda: create(store)).start()
    store.wait_for_work(timeout_s=20)
    assert store.count_pending() == 1


def test_both_stores_satisfy_the_protocol(store):
    from engine.store_api import JobStore as Protocol

    assert isinstance(store, Protocol)


def test_old_jobs_db_without_lease_columns_opens_and_gains_them(tmp_path):
    import sqlite3

    path = tmp_path / "old" / "jobs.db"
    old = JobStore(path)
    job, _ = create(old)
    old.close()
    conn = sqlite3.connect(path)  # as the engine before leases wrote it
    conn.execute("DROP INDEX idx_jobs_lease_owner")
    for column in ("lease_owner", "lease_expires_at", "cancel_requested"):
        conn.execute(f"ALTER TABLE jobs DROP COLUMN {column}")
    conn.commit()
    conn.close()

    store = JobStore(path)
    try:
        again = store.get(job.id)
        assert again.lease_owner is None and not again.cancel_requested
        assert store.claim_next("e", 60).id == job.id
        assert store.request_cancel(job.id).cancel_requested
    finally:
        store.close()


def test_postgres_store_survives_its_connections_being_cut(postgres_url):
    """A restarted server or a failover drops the connections: the next call reopens, waiters still wake."""
    import psycopg

    from engine.store_postgres import PostgresJobStore

    store, other = PostgresJobStore(postgres_url), PostgresJobStore(postgres_url)
    try:
        job, _ = create(store)
        assert store.wait_for_change(job.id, st.PENDING, timeout_s=0.05).status == st.PENDING  # listener up
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE pid <> pg_backend_pid() AND datname = current_database()")
        assert store.get(job.id).status == st.PENDING  # reopened, not STORE_UNAVAILABLE
        threading.Timer(0.5, lambda: other.transition(job.id, st.PENDING, st.VERIFYING)).start()
        assert store.wait_for_change(job.id, st.PENDING, timeout_s=20).status == st.VERIFYING
    finally:
        store.close()
        other.close()
def test_page_by_owner_is_newest_first_with_a_keyset_cursor(store):
    ids = [create(store, nonce=n, digest=f"0x{n:02x}")[0].id for n in range(1, 6)]
    create(store, owner=OTHER, nonce=1, digest="0xff")
    store.fail(ids[1], "PERMISSION_DENIED", "no")
    first = store.page_by_owner(OWNER, limit=2)
    assert [j.id for j in first] == ids[::-1][:2]
    last = first[-1]
    rest = store.page_by_owner(OWNER, limit=10, before=(last.created_at, last.id))
    assert [j.id for j in rest] == ids[::-1][2:]
    assert [j.id for j in store.page_by_owner(OWNER, status=st.FAILED)] == [ids[1]]
    assert store.page_by_owner(OTHER.lower(), limit=10)[0].owner == OTHER


def test_set_progress_is_kept_without_a_transition(store):
    job, _ = create(store)
    store.set_progress(job.id, {"bytes": 10, "total": 100})
    again = store.get(job.id)
    assert again.progress == {"bytes": 10, "total": 100} and again.steps == job.steps
def test_recipient_and_sealed_artifact_fields_round_trip(store, open_store):
    key = "0x" + "ab" * 64
    job, _ = create(store, recipient=OTHER.lower(), recipient_key=key)
    plain, _ = create(store, nonce=2)
    sealed = Artifact("out.csv", 3, "ab" * 32, "text/csv", sealed_size=150, sealed_sha256="cd" * 32)
    store.set_artifacts(job.id, [sealed])
    again = open_store()  # what a restarted engine reads back
    assert (again.get(job.id).recipient, again.get(job.id).recipient_key) == (OTHER, key)
    assert (again.get(plain.id).recipient, again.get(plain.id).recipient_key) == (None, None)
    assert again.artifacts(job.id) == [sealed]


def test_a_store_from_before_sealing_gains_the_columns(tmp_path):
    import sqlite3

    JobStore(tmp_path / "jobs.db").close()
    with sqlite3.connect(tmp_path / "jobs.db") as conn:  # as written before sealing existed
        conn.execute("ALTER TABLE jobs DROP COLUMN recipient")
        conn.execute("ALTER TABLE artifacts DROP COLUMN sealed_sha256")
    store = JobStore(tmp_path / "jobs.db")
    job, _ = create(store, recipient=OTHER, recipient_key="0x" + "ab" * 64)
    store.set_artifacts(job.id, [Artifact("x", 1, "00" * 32, "text/plain", 90, "11" * 32)])
    assert store.get(job.id).recipient == OTHER and store.artifacts(job.id)[0].sealed_sha256 == "11" * 32
    store.close()
