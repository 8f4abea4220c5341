"""JobService, the job's story, with fakes for chain, fetch, loader, query and runner.

A unit test of one module: the seams are faked here so every failure path can
be forced. The real components are wired together in the integration tests.
The store, the data catalog and artifact collection are the real ones.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine import store as st
from engine.data import DataCatalog
from engine.data_keys import load_kek
from engine.errors import (
    AuthError,
    ChainCheckFailure,
    FetchFailure,
    ImageFailure,
    NotFoundError,
    QueryFailure,
    RequestError,
    RunFailure,
)
from engine.fetch import VerifiedArchive
from engine.runner import Created, RunResult
from engine.service import JobService
from engine.settings import load_settings
from engine.store import JobStore
from registry_client.eip712 import JobRequest
from tests.conftest import make_kek_file

OWNER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
STRANGER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
IMAGE_SHA = "ab" * 32
SECRET = "alice@example.com"  # a data value: must never reach a failure message


# ---------------------------------------------------------------- fakes


@dataclass(frozen=True)
class FakePermission:
    id: int
    refiner_id: int


@dataclass(frozen=True)
class FakeCheck:
    block_number: int
    dlp_id: int
    instruction_hash: str
    instruction_url: str
    permissions: tuple


@dataclass(frozen=True)
class FakeReport:
    columns: tuple
    permissions_used: tuple
    price: int
    row_count: int


@dataclass
class Fakes:
    """Every seam, recording calls in order; set the `*_error` fields to force failures."""

    tmp: Path
    calls: list = field(default_factory=list)
    verify_error: Exception | None = None
    approved_at_run: bool = True
    cached_archive: bool = False
    fetch_error: Exception | None = None
    load_error: Exception | None = None
    query_error: Exception | None = None
    run_result: RunResult | None = None
    run_error: Exception | None = None
    create_error: Exception | None = None
    outputs: dict = field(default_factory=lambda: {"result.json": b'{"n": 2}', "sub/chart.txt": b"xx"})
    block_run: bool = False
    run_started: threading.Event = field(default_factory=threading.Event)
    leftovers: list = field(default_factory=list)
    query_args: dict = field(default_factory=dict)
    during_fetch: Callable[[], object] | None = None  # called mid-download, between chunks

    # chain
    def verify(self, instruction_id, refiner_id, owner, cancel=None):
        self.calls.append(("verify", instruction_id, refiner_id, owner))
        if self.verify_error:
            raise self.verify_error
        perms = (FakePermission(1, refiner_id), FakePermission(9, refiner_id + 100))
        return FakeCheck(123, 7, IMAGE_SHA, "http://example.test/img.tar.gz", perms)

    def is_approved(self, instruction_id, dlp_id, cancel=None):
        self.calls.append(("is_approved", instruction_id, dlp_id))
        return self.approved_at_run

    # image cache
    def _archive(self) -> VerifiedArchive:
        return VerifiedArchive(path=self.tmp / "img.tar.gz", sha256=IMAGE_SHA, size=10)

    def cached(self, sha):
        self.calls.append(("cached", sha))
        return self._archive() if self.cached_archive else None

    def fetch(self, url, sha, progress=None):
        self.calls.append(("fetch", url, sha))
        if self.fetch_error:
            raise self.fetch_error
        for size in (1 << 20, 2 << 20):  # two chunks, as ImageCache reports them
            if progress is not None:
                progress(size)
            if self.during_fetch is not None:
                self.during_fetch()
        self.calls.append(("fetched", sha))
        return self._archive()

    # loader
    def ensure_loaded(self, archive):
        self.calls.append(("load", archive.sha256))
        if self.load_error:
            raise self.load_error
        return "sha256:" + "cd" * 32

    # query
    def run_query(self, source_db, sql, params, permissions, output_db, limits, **kw):
        self.calls.append(("query", sql))
        self.query_args.update(source=source_db, params=params, permissions=permissions, output=output_db, **kw)
        if self.query_error:
            raise self.query_error
        conn = sqlite3.connect(output_db)
        conn.execute("CREATE TABLE results (email TEXT)")
        conn.execute("INSERT INTO results VALUES (?)", (SECRET,))
        conn.commit()
        conn.close()
        return FakeReport((("users", "email"),), (1,), 5 * 10**18, 1)

    # runner
    def create(self, spec, output_ready=True):
        self.calls.append(("create", spec.image_id))
        if self.create_error:
            raise self.create_error
        return Created(spec.job_id, object())

    def prepare_output(self, spec):
        pass

    def discard(self, created):
        self.calls.append(("discard", created.job_id))

    def run(self, spec, cancel=None, created=None, remove=True):
        assert not remove, "the story removes the container once the job's end is recorded"
        assert created is not None and created.job_id == spec.job_id, "run without its created container"
        self.calls.append(("run", spec.image_id))
        self.run_started.set()
        self.spec = spec
        assert spec.input_db.is_file()
        if self.run_error:
            raise self.run_error
        if self.block_run:
            assert cancel is not None and cancel.wait(10), "never cancelled"
            return RunResult(None, False, False, True, b"", 0.1)
        for name, body in self.outputs.items():
            path = spec.output_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
        return self.run_result or RunResult(0, False, False, False, b"hello from the job\n", 0.1)

    def cancel(self, job_id):
        self.calls.append(("runner.cancel", job_id))
        return True

    def remove_leftovers(self):
        self.calls.append(("remove_leftovers",))
        return list(self.leftovers)

    def steps(self) -> list[str]:
        """The job's story in order; container creation runs alongside the query (see below)."""
        return [c[0] for c in self.calls if c[0] not in ("create", "discard")]

    def container_calls(self) -> list[str]:
        return [c[0] for c in self.calls if c[0] in ("create", "discard", "run")]


# ---------------------------------------------------------------- fixtures


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def data_dir(tmp_path) -> Path:
    d = tmp_path / "engine-data"
    src = tmp_path / "refined.db"
    conn = sqlite3.connect(src)
    conn.execute("CREATE TABLE users (email TEXT)")
    conn.execute("INSERT INTO users VALUES (?)", (SECRET,))
    conn.commit()
    conn.close()
    DataCatalog(d, make_kek_file(tmp_path / "kek")).add(2, src)
    return d


@pytest.fixture
def fakes(tmp_path) -> Fakes:
    return Fakes(tmp_path)


@pytest.fixture
def make_service(data_dir, fakes):
    made: list[JobService] = []

    def make(*, signer=None, domain=None, **overrides) -> JobService:
        settings = load_settings(data_dir=data_dir, data_kek_file=data_dir.parent / "kek", **overrides)
        service = JobService(
            settings,
            JobStore(data_dir / "jobs.db"),
            fakes,
            fakes,
            fakes,
            fakes,
            DataCatalog(data_dir, load_kek(settings)),
            clock=Clock(),
            query_runner=fakes.run_query,
            domain=domain,
            signer=signer,
        )
        made.append(service)
        return service

    yield make
    for service in made:
        service.stop(timeout=5)
        service.store.close()


@pytest.fixture
def service(make_service) -> JobService:
    return make_service()


def request(nonce: int = 1, *, refiner: int = 2, query: str = "SELECT email FROM users", deadline=None, **kw):
    deadline = int(time.time()) + 600 if deadline is None else deadline
    return JobRequest.create(kw.get("instruction", 1), refiner, query, kw.get("params", [1]), nonce, deadline)


def submit_and_process(service: JobService, **kw) -> st.Job:
    job, created = service.submit(request(**kw), OWNER)
    assert created
    service.process(job.id)
    return service.get(job.id, OWNER)


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


# ---------------------------------------------------------------- happy path


def test_happy_path_runs_the_story_in_order_and_records_every_field(service, fakes, data_dir):
    job = submit_and_process(service)

    assert fakes.steps() == ["verify", "cached", "fetch", "fetched", "load", "query", "is_approved", "run"]
    assert [s.status for s in job.steps] == [
        "PENDING", "VERIFYING", "FETCHING", "LOADING", "QUERYING", "RUNNING", "COLLECTING", "SUCCEEDED",
    ]
    assert job.status == st.SUCCEEDED and job.failure_code is None
    assert (job.block_number, job.dlp_id) == (123, 7)
    assert job.image_sha256 == IMAGE_SHA and job.image_id == "sha256:" + "cd" * 32
    assert job.access_report == {
        "columns": [["users", "email"]], "permissions_used": [1], "price": str(5 * 10**18), "row_count": 1,
    }
    assert job.price_wei == 5 * 10**18
    assert job.exit_code == 0
    assert job.artifacts_expire_at == pytest.approx(service.clock() + service.settings.artifact_retention_s)

    names = [a.name for a in service.artifacts(job.id, OWNER)]
    assert names == ["result.json", "sub/chart.txt"]
    artifact, path = service.artifact_file(job.id, OWNER, "sub/chart.txt")
    assert path.read_bytes() == b"xx" and artifact.size == 2
    assert path.is_relative_to(data_dir / "artifacts" / job.id)


def test_query_gets_the_refiners_data_its_permissions_and_a_per_job_scratch(service, fakes, data_dir):
    job = submit_and_process(service, params={"n": 1})
    args = fakes.query_args
    # The sealed file and its unwrapped data key: the query process opens it in memory.
    assert args["source"].path == DataCatalog(data_dir).path(2) and len(args["source"].key) == 32
    assert args["params"] == {"n": 1}
    assert [p.id for p in args["permissions"]] == [1]  # only this refiner's permissions
    assert (args["refiner_id"], args["grantee"]) == (2, OWNER)
    assert args["cancel"] is not None
    assert args["output"] == data_dir / "scratch" / job.id / "input" / "query_results.db"
    assert fakes.spec.input_db == args["output"]
    assert fakes.spec.refiner_id == 2 and fakes.spec.limits.user == "65534:65534"
    # Scratch (holding query results) is gone once the job ends.
    assert not (data_dir / "scratch" / job.id).exists()


def test_cached_archive_is_not_fetched_again(service, fakes):
    fakes.cached_archive = True
    job = submit_and_process(service)
    assert job.status == st.SUCCEEDED
    assert "fetch" not in fakes.steps()


# ---------------------------------------------------------------- failure codes


def _fail(fakes: Fakes, attr: str, exc: Exception) -> None:
    setattr(fakes, attr, exc)


FAILURES = [
    ("verify_error", ChainCheckFailure("instruction 1 is not approved for DLP 7", code="NOT_APPROVED"), "NOT_APPROVED"),
    ("verify_error", ChainCheckFailure("no data refiner with id 2", code="REFINER_NOT_FOUND"), "REFINER_NOT_FOUND"),
    ("verify_error", ChainCheckFailure("rpc down", code="CHAIN_UNAVAILABLE"), "CHAIN_UNAVAILABLE"),
    ("fetch_error", FetchFailure("sha256 differs", code="CHECKSUM_MISMATCH"), "CHECKSUM_MISMATCH"),
    ("fetch_error", FetchFailure("HTTP 404", code="FETCH_FAILED"), "FETCH_FAILED"),
    ("fetch_error", FetchFailure("over 2 GiB", code="IMAGE_TOO_LARGE"), "IMAGE_TOO_LARGE"),
    ("load_error", ImageFailure("two images", code="IMAGE_INVALID"), "IMAGE_INVALID"),
    ("query_error", QueryFailure("no permission for users.email", code="PERMISSION_DENIED"), "PERMISSION_DENIED"),
    ("query_error", QueryFailure("not a SELECT", code="QUERY_INVALID"), "QUERY_INVALID"),
    ("query_error", QueryFailure("over 100000 rows", code="ROW_LIMIT"), "ROW_LIMIT"),
]


@pytest.mark.parametrize("attr, exc, code", FAILURES, ids=[f[2] + "-" + f[0] for f in FAILURES])
def test_step_failure_ends_failed_with_its_code(service, fakes, data_dir, attr, exc, code):
    _fail(fakes, attr, exc)
    job = submit_and_process(service)
    assert (job.status, job.failure_code) == (st.FAILED, code)
    assert job.failure_message == exc.message
    assert job.finished_at is not None and job.steps[-1].status == st.FAILED
    assert "run" not in fakes.steps()
    assert not (data_dir / "scratch" / job.id).exists()
    assert service.artifacts(job.id, OWNER) == []


def test_fields_learnt_before_a_failure_are_kept(service, fakes):
    fakes.load_error = ImageFailure("two images", code="IMAGE_INVALID")
    job = submit_and_process(service)
    assert job.block_number == 123 and job.image_sha256 == IMAGE_SHA


def test_missing_data_fails_before_any_download(service, fakes):
    job = submit_and_process(service, refiner=5)
    assert job.failure_code == "DATA_NOT_FOUND"
    assert fakes.steps() == ["verify"]


RUN_ENDINGS = [
    (RunResult(None, False, True, False, b"", 600.0), "TIMEOUT", None),
    (RunResult(137, True, False, False, b"", 1.0), "OUT_OF_MEMORY", 137),
    (RunResult(3, False, False, False, SECRET.encode(), 1.0), "EXIT_NONZERO", 3),
]


@pytest.mark.parametrize("result, code, exit_code", RUN_ENDINGS, ids=[r[1] for r in RUN_ENDINGS])
def test_container_endings_map_to_codes(service, fakes, result, code, exit_code):
    fakes.run_result = result
    job = submit_and_process(service)
    assert (job.status, job.failure_code, job.exit_code) == (st.FAILED, code, exit_code)
    assert SECRET not in job.failure_message
    assert service.artifacts(job.id, OWNER) == []


def test_output_over_the_cap_is_output_too_large(make_service, fakes, data_dir):
    service = make_service(output_max_bytes=4)
    job = submit_and_process(service)
    assert job.failure_code == "OUTPUT_TOO_LARGE"
    assert service.artifacts(job.id, OWNER) == []
    assert not (data_dir / "artifacts" / job.id).exists() or not any((data_dir / "artifacts" / job.id).iterdir())


def test_unexpected_error_is_internal_error_without_its_message(service, fakes, caplog):
    fakes.query_error = RuntimeError(f"boom while reading {SECRET}")
    with caplog.at_level("ERROR", logger="engine.service"):
        job = submit_and_process(service)
    assert job.failure_code == "INTERNAL_ERROR"
    assert SECRET not in job.failure_message
    assert "RuntimeError" in caplog.text and SECRET not in caplog.text
    # The worker survives: the next job runs.
    fakes.query_error = None
    assert submit_and_process(service, nonce=2).status == st.SUCCEEDED


def test_approval_revoked_before_run_is_not_approved_and_never_runs(service, fakes):
    fakes.approved_at_run = False
    job = submit_and_process(service)
    assert (job.status, job.failure_code) == (st.FAILED, "NOT_APPROVED")
    assert "run" not in fakes.steps()
    assert fakes.steps()[-1] == "is_approved"
    assert st.RUNNING not in [s.status for s in job.steps]
    # The container made ahead during the query never started: it was removed.
    assert fakes.container_calls() == ["create", "discard"]


def test_the_container_is_created_while_the_query_runs_and_started_after_the_recheck(service, fakes):
    """Creation overlaps the query (it is in flight before the query returns); the start waits."""
    real_query = fakes.run_query

    def query_that_waits_for_the_create(*args, **kw):
        wait_for(lambda: "create" in fakes.container_calls(), timeout=5)
        return real_query(*args, **kw)

    service.story._run_query = query_that_waits_for_the_create
    job = submit_and_process(service)
    assert job.status == st.SUCCEEDED
    order = [c[0] for c in fakes.calls]
    assert order.index("create") < order.index("query") < order.index("is_approved") < order.index("run")
    assert fakes.container_calls() == ["create", "run", "discard"]


def test_the_container_is_removed_after_the_jobs_end_is_recorded(service, fakes):
    """The removal is off the job's critical path: a long-poll sees SUCCEEDED before it."""
    seen: list[str] = []
    real_discard = fakes.discard

    def discard(created):
        seen.append(service.store.get(created.job_id).status)
        real_discard(created)

    fakes.discard = discard
    job = submit_and_process(service)
    assert job.status == st.SUCCEEDED
    assert seen == [st.SUCCEEDED]


def test_an_instructions_second_job_creates_its_container_while_the_chain_is_read(service, fakes):
    """The image the instruction last ran with is created at once (not started); the first
    job of an instruction still waits for its image."""
    first = submit_and_process(service, nonce=1)
    order = [c[0] for c in fakes.calls]
    assert order.index("load") < order.index("create")  # nothing known yet: after the load
    real_verify = fakes.verify

    def verify_while_the_create_is_made(*args, **kw):
        # The chain read is in flight while the create is: this read waits for it (a
        # create made only after the chain check would time this out).
        wait_for(lambda: "create" in fakes.container_calls(), timeout=5)
        return real_verify(*args, **kw)

    fakes.verify = verify_while_the_create_is_made
    fakes.calls.clear()
    second = submit_and_process(service, nonce=2)
    assert (first.status, second.status) == (st.SUCCEEDED, st.SUCCEEDED)
    order = [c[0] for c in fakes.calls]
    assert order.index("create") < order.index("load") < order.index("query") < order.index("run")
    assert fakes.container_calls() == ["create", "run", "discard"]  # made once, right the first time
    assert fakes.spec.image_id == "sha256:" + "cd" * 32


def test_a_wrong_image_guess_is_replaced_before_the_query(service, fakes, monkeypatch):
    """The instruction's image changed (or was collected): the guessed container is removed
    and the job runs a container made from the image it loaded."""
    assert submit_and_process(service, nonce=1).status == st.SUCCEEDED
    monkeypatch.setattr(fakes, "ensure_loaded", lambda archive: "sha256:" + "ef" * 32)
    fakes.calls.clear()
    job = submit_and_process(service, nonce=2)
    assert job.status == st.SUCCEEDED
    creates = [c[1] for c in fakes.calls if c[0] == "create"]
    assert creates == ["sha256:" + "cd" * 32, "sha256:" + "ef" * 32]
    assert fakes.container_calls() == ["create", "discard", "create", "run", "discard"]
    assert fakes.spec.image_id == "sha256:" + "ef" * 32


def test_the_query_does_not_wait_for_a_guessed_create(service, fakes):
    """The guessed create and the query overlap: confirming the guess never waits for it."""
    assert submit_and_process(service, nonce=1).status == st.SUCCEEDED
    query_started = threading.Event()
    real_create, real_query = fakes.create, service.story._run_query

    creates: list[bool] = []

    def create_after_the_query_started(spec, output_ready=True):
        creates.append(query_started.wait(5))  # False: the query waited for this create
        return real_create(spec, output_ready)

    def query(*args, **kw):
        query_started.set()
        return real_query(*args, **kw)

    fakes.create, service.story._run_query = create_after_the_query_started, query
    fakes.calls.clear()
    assert submit_and_process(service, nonce=2).status == st.SUCCEEDED
    assert creates == [True]
    assert fakes.container_calls() == ["create", "run", "discard"]


def test_a_guessed_create_that_failed_is_made_again_after_the_load(service, fakes):
    assert submit_and_process(service, nonce=1).status == st.SUCCEEDED
    fakes.calls.clear()
    real_create = fakes.create
    failures = [RunFailure("image sha256:cd.. is not loaded", code="IMAGE_INVALID")]

    def create_once_failing(spec, output_ready=True):
        if failures:
            fakes.calls.append(("create", spec.image_id))
            raise failures.pop()
        return real_create(spec, output_ready)

    fakes.create = create_once_failing
    job = submit_and_process(service, nonce=2)
    assert job.status == st.SUCCEEDED
    assert fakes.container_calls() == ["create", "create", "run", "discard"]


def test_a_failed_create_fails_the_job_at_run_time_with_its_code(service, fakes):
    fakes.create_error = RunFailure("image sha256:x is not loaded", code="IMAGE_INVALID")
    job = submit_and_process(service)
    assert (job.status, job.failure_code) == (st.FAILED, "IMAGE_INVALID")
    assert st.RUNNING in [s.status for s in job.steps]
    assert "run" not in fakes.steps()


def test_a_failed_query_discards_the_container_made_ahead(service, fakes):
    fakes.query_error = QueryFailure("no permission covers users.email", code="PERMISSION_DENIED")
    job = submit_and_process(service)
    assert job.failure_code == "PERMISSION_DENIED"
    assert fakes.container_calls() == ["create", "discard"]


# ---------------------------------------------------------------- submit checks


def test_replayed_submit_returns_the_same_job_and_queues_once(service):
    first, created = service.submit(request(), OWNER)
    again, created_again = service.submit(request(), OWNER.lower())
    assert created and not created_again and again.id == first.id
    assert service.store.count_pending() == 1


def test_same_nonce_other_request_is_nonce_reused(service):
    service.submit(request(), OWNER)
    with pytest.raises(RequestError) as info:
        service.submit(request(query="SELECT 2"), OWNER)
    assert (info.value.code, info.value.http_status) == ("NONCE_REUSED", 409)


@pytest.mark.parametrize(
    "kwargs, code, cls",
    [
        ({"deadline": int(time.time()) - 5}, "DEADLINE_EXPIRED", AuthError),
        ({"deadline": int(time.time()) + 10 * 24 * 3600}, "DEADLINE_TOO_FAR", RequestError),
        ({"query": "SELECT " + "1," * 60_000 + "1"}, "QUERY_TOO_LONG", RequestError),
        ({"instruction": 2**70}, "INVALID_REQUEST", RequestError),
    ],
    ids=["expired", "too-far", "too-long", "id-range"],
)
def test_submit_validation(service, kwargs, code, cls):
    with pytest.raises(cls) as info:
        service.submit(request(**kwargs), OWNER)
    assert info.value.code == code
    assert service.store.find(OWNER, 1) is None


def test_full_queue_refuses_new_jobs_but_answers_replays(make_service):
    service = make_service(queue_size=1)
    first, _ = service.submit(request(1), OWNER)
    with pytest.raises(RequestError) as info:
        service.submit(request(2), OWNER)
    assert (info.value.code, info.value.http_status) == ("QUEUE_FULL", 503)
    assert service.submit(request(1), OWNER)[0].id == first.id
    assert service.store.find(OWNER, 2) is None


def test_digest_is_eip712_when_the_domain_is_known(make_service, service):
    from registry_client.eip712 import job_request_digest

    contract = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    service.domain = (31337, contract)
    req = request()
    job, _ = service.submit(req, OWNER)
    assert job.request_digest == job_request_digest(31337, contract, req)


# ---------------------------------------------------------------- owner only


def test_strangers_get_not_found_exactly_like_a_missing_job(service):
    job = submit_and_process(service)
    for call in (
        lambda: service.get(job.id, STRANGER),
        lambda: service.cancel(job.id, STRANGER),
        lambda: service.artifacts(job.id, STRANGER),
        lambda: service.artifact_file(job.id, STRANGER, "result.json"),
    ):
        with pytest.raises(NotFoundError) as stranger:
            call()
        assert stranger.value.message == f"no job {job.id}"
    with pytest.raises(NotFoundError) as missing:
        service.get("0" * 32, OWNER)
    assert missing.value.message == f"no job {'0' * 32}"
    assert service.get(job.id, OWNER.lower()).id == job.id  # case-insensitive owner


def test_unknown_artifact_name_is_not_found(service):
    job = submit_and_process(service)
    for name in ("nope.txt", "../jobs.db", "/etc/passwd"):
        with pytest.raises(NotFoundError):
            service.artifact_file(job.id, OWNER, name)


# ---------------------------------------------------------------- logs


def test_logs_disabled_by_default_and_never_kept(service, data_dir):
    job = submit_and_process(service)
    with pytest.raises(RequestError) as info:
        service.logs(job.id, OWNER)
    assert (info.value.code, info.value.http_status) == ("LOGS_DISABLED", 403)
    assert not (data_dir / "logs" / f"{job.id}.log").exists()


def test_logs_kept_for_the_owner_when_enabled(make_service):
    service = make_service(share_logs=True)
    job = submit_and_process(service)
    assert service.logs(job.id, OWNER) == b"hello from the job\n"
    with pytest.raises(NotFoundError):
        service.logs(job.id, STRANGER)


# ---------------------------------------------------------------- cancel


def test_cancel_while_queued_never_runs(service, fakes):
    job, _ = service.submit(request(), OWNER)
    cancelled = service.cancel(job.id, OWNER)
    assert (cancelled.status, cancelled.failure_code) == (st.CANCELLED, "CANCELLED")
    service.process(job.id)
    assert fakes.steps() == ["runner.cancel"]
    assert service.get(job.id, OWNER).status == st.CANCELLED


def test_cancel_during_run_kills_the_container_and_stays_cancelled(service, fakes, data_dir):
    fakes.block_run = True
    service.start()
    job, _ = service.submit(request(), OWNER)
    assert fakes.run_started.wait(10)
    assert service.cancel(job.id, OWNER).status == st.CANCELLED
    wait_for(lambda: not (data_dir / "scratch" / job.id).exists())
    wait_for(lambda: service.health()["queue"]["running"] == 0)
    final = service.get(job.id, OWNER)
    assert final.status == st.CANCELLED and final.failure_code == "CANCELLED"
    assert ("runner.cancel", job.id) in fakes.calls
    assert [s.status for s in final.steps][-2:] == [st.RUNNING, st.CANCELLED]
    assert service.artifacts(job.id, OWNER) == []


def test_cancel_during_download_stops_it_at_the_next_chunk(service, fakes):
    job, _ = service.submit(request(), OWNER)
    fakes.during_fetch = lambda: service.cancel(job.id, OWNER)
    service.process(job.id)
    assert ("fetched", IMAGE_SHA) not in fakes.calls  # the download was abandoned
    assert not any(call[0] == "load" for call in fakes.calls)
    assert service.get(job.id, OWNER).status == st.CANCELLED


def test_cancelling_twice_is_idempotent_and_finished_jobs_refuse(service):
    job, _ = service.submit(request(1), OWNER)
    service.cancel(job.id, OWNER)
    assert service.cancel(job.id, OWNER).status == st.CANCELLED
    done = submit_and_process(service, nonce=2)
    with pytest.raises(RequestError) as info:
        service.cancel(done.id, OWNER)
    assert (info.value.code, info.value.http_status) == ("JOB_FINISHED", 409)
    assert service.get(done.id, OWNER).status == st.SUCCEEDED


# ---------------------------------------------------------------- workers, restart, retention


def test_workers_drain_the_queue(make_service):
    service = make_service(max_concurrent_jobs=2)
    service.start()
    ids = [service.submit(request(n), OWNER)[0].id for n in range(1, 5)]
    wait_for(lambda: all(service.get(i, OWNER).status == st.SUCCEEDED for i in ids))
    health = service.health()
    assert health["ok"] and health["checks"]["store"]["ok"] and health["queue"]["workers"] == 2


def test_reconcile_after_restart(make_service, fakes, data_dir):
    before = make_service()
    running, _ = before.submit(request(1), OWNER)
    before.store.transition(running.id, st.PENDING, st.RUNNING)
    (data_dir / "scratch" / running.id / "input").mkdir(parents=True)
    pending, _ = before.submit(request(2), OWNER)
    done = submit_and_process(before, nonce=3)
    before.store.close()
    fakes.calls.clear()
    fakes.leftovers = [running.id]

    after = make_service()
    after.start()  # reconciles first
    assert fakes.calls[0] == ("remove_leftovers",)
    failed = after.get(running.id, OWNER)
    assert (failed.status, failed.failure_code) == (st.FAILED, "ENGINE_RESTARTED")
    assert not (data_dir / "scratch" / running.id).exists()
    wait_for(lambda: after.get(pending.id, OWNER).status == st.SUCCEEDED)
    kept = after.get(done.id, OWNER)
    assert kept.status == st.SUCCEEDED
    _, path = after.artifact_file(done.id, OWNER, "result.json")
    assert path.read_bytes() == b'{"n": 2}'
    assert after.store.unfinished() == []


def test_reconcile_runs_once(service, fakes):
    service.reconcile()
    service.reconcile()
    assert fakes.steps().count("remove_leftovers") == 1


def test_retention_sweep_removes_files_and_keeps_metadata(make_service, data_dir):
    service = make_service(share_logs=True)
    job = submit_and_process(service)
    assert service.sweep(now=job.artifacts_expire_at - 1) == 0
    assert (data_dir / "artifacts" / job.id).is_dir()
    assert service.sweep(now=job.artifacts_expire_at + 1) == 1
    assert not (data_dir / "artifacts" / job.id).exists()
    assert not (data_dir / "logs" / f"{job.id}.log").exists()
    kept = service.get(job.id, OWNER)
    assert kept.status == st.SUCCEEDED and kept.artifacts_expired and kept.image_id
    with pytest.raises(RequestError) as info:
        service.artifacts(job.id, OWNER)
    assert (info.value.code, info.value.http_status) == ("ARTIFACTS_EXPIRED", 410)
    assert service.sweep(now=job.artifacts_expire_at + 10) == 0


def test_a_shared_artifact_dir_lets_another_engine_serve_and_sweep_the_files(make_service, data_dir, tmp_path):
    shared = tmp_path / "shared-mount"
    ran = make_service(share_logs=True, artifact_dir=shared)
    job = submit_and_process(ran)
    other = make_service(share_logs=True, artifact_dir=shared)  # a second engine on the same store
    _, path = other.artifact_file(job.id, OWNER, "result.json")
    assert shared in path.parents and path.read_bytes()
    assert other.logs(job.id, OWNER) == b"hello from the job\n"
    assert not (data_dir / "artifacts" / job.id).exists()
    assert other.sweep(now=job.artifacts_expire_at + 1) == 1
    assert not (shared / job.id).exists() and other.artifact_store.read_log(job.id) == b""


@pytest.mark.parametrize(
    ("module", "names"),
    [("engine.service", {"JobService"}), ("engine.story", {"JobFiles", "JobStory"}),
     ("engine.worker", {"CANCEL_POLL_S", "Worker"}), ("engine.supervisor", {"Supervisor"}),
     ("engine.wiring", {"build_service", "engine_id", "load_signer", "open_store", "read_only_web3"})],
)
def test_public_surface(module, names):
    import importlib

    mod = importlib.import_module(module)
    assert set(mod.__all__) == names
    for name in mod.__all__:
        assert hasattr(mod, name)


def test_the_service_has_every_method_the_api_protocol_names():
    """engine/api/deps.py JobApi is what the routers call: JobService offers it, signature for signature."""
    import inspect

    from engine.api.deps import JobApi

    names = [n for n, v in vars(JobApi).items() if inspect.isfunction(v) and not n.startswith("_")]
    assert {"submit", "get", "wait_for_change", "cancel", "artifacts", "artifact_file", "logs"} <= set(names)
    for name in names:
        wanted = list(inspect.signature(getattr(JobApi, name)).parameters)
        assert list(inspect.signature(getattr(JobService, name)).parameters) == wanted, name


# ---------------------------------------------------------------- attestation

ENGINE_KEY = "0x" + "4b" * 32  # a throwaway key for this test only
DOMAIN = (31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")


def _verify_attestation(job: st.Job, artifacts) -> str:
    from registry_client.eip712 import JobResult, artifacts_digest, recover_job_result_signer

    att = job.attestation
    digest = artifacts_digest((a.name, a.sha256) for a in artifacts)
    result = JobResult(job.id, job.owner, job.instruction_id, job.refiner_id, job.image_sha256,
                       job.block_number, digest, att["finished_at"])
    return recover_job_result_signer(*DOMAIN, result, att["signature"])


def test_succeeded_job_carries_an_attestation_recoverable_to_the_engine_key(make_service):
    from dataclasses import replace

    from eth_account import Account

    engine = Account.from_key(ENGINE_KEY)
    service = make_service(signer=engine, domain=DOMAIN)
    job = submit_and_process(service)
    artifacts = service.artifacts(job.id, OWNER)

    assert job.status == st.SUCCEEDED
    assert service.engine_address == engine.address and service.health()["engine_address"] == engine.address
    assert set(job.attestation) == {"signer", "signature", "artifacts_digest", "finished_at", "recipient",
                                    "sealed_digest"}
    assert job.attestation["signer"] == engine.address
    assert job.attestation["finished_at"] == int(service.clock())
    assert _verify_attestation(job, artifacts) == engine.address

    tampered = [replace(artifacts[0], sha256="00" * 32), *artifacts[1:]]
    assert _verify_attestation(job, tampered) != engine.address
    assert _verify_attestation(replace(job, image_sha256="ef" * 32), artifacts) != engine.address


def test_without_a_key_jobs_are_unattested(service, make_service, fakes):
    assert submit_and_process(service).attestation is None
    assert service.health()["engine_address"] is None
    fakes.verify_error = ChainCheckFailure("nope", code="NOT_APPROVED")
    from eth_account import Account

    signing = make_service(signer=Account.from_key(ENGINE_KEY), domain=DOMAIN)
    failed = submit_and_process(signing, nonce=2)
    assert failed.status == st.FAILED and failed.attestation is None


def test_a_signer_needs_the_domain(make_service):
    from eth_account import Account

    with pytest.raises(ValueError, match="domain"):
        make_service(signer=Account.from_key(ENGINE_KEY))


def test_load_signer_reads_the_named_env_var_and_never_echoes_a_bad_key(tmp_path, monkeypatch):
    from engine.errors import EngineError
    from engine.wiring import load_signer

    assert load_signer(load_settings(data_dir=tmp_path)) is None
    monkeypatch.setenv("TEST_ENGINE_KEY", ENGINE_KEY)
    settings = load_settings(data_dir=tmp_path, signing_key_env="TEST_ENGINE_KEY")
    from eth_account import Account

    assert load_signer(settings).address == Account.from_key(ENGINE_KEY).address
    bad = "0x" + "zz" * 32
    monkeypatch.setenv("TEST_ENGINE_KEY", bad)
    with pytest.raises(EngineError) as info:
        load_signer(settings)
    assert info.value.code == "CONFIG_INVALID"
    assert bad not in str(info.value) and "zz" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


# ---------------------------------------------------------------- real wiring


@pytest.mark.chain
@pytest.mark.docker
def test_build_service_wires_real_components(tmp_path, anvil, deployment, docker_client):
    from engine.wiring import build_service
    from registry_client.eip712 import job_request_digest
    from registry_client.manifest import save_deployment

    manifest = save_deployment(deployment, tmp_path / "deployment.json")
    settings = load_settings(rpc_url=anvil.url, deployment=manifest, data_dir=tmp_path / "data")
    service = build_service(settings)
    try:
        health = service.health()
        assert health["ok"], health
        assert set(health["checks"]) == {"store", "disk", "chain", "docker", "output_fs"}
        req = request()
        # The preflight reads the real chain before any job exists: this deployment has no refiner.
        with pytest.raises(ChainCheckFailure) as info:
            service.submit(req, OWNER)
        assert info.value.code == "REFINER_NOT_FOUND"
        assert service.store.find(OWNER, req.nonce) is None  # the nonce stays unused
        contract = deployment.address("compute_instruction_registry")
        assert service._digest(req) == job_request_digest(deployment.chain_id, contract, req)
    finally:
        service.stop()
        service.store.close()


def test_build_service_without_deployment_is_a_clear_error(tmp_path):
    from engine.errors import EngineError
    from engine.wiring import build_service

    with pytest.raises(EngineError) as info:
        build_service(load_settings(data_dir=tmp_path))
    assert info.value.code == "CONFIG_INVALID"


def test_health_reports_the_data_dirs_free_space(make_service):
    disk = make_service().health()["checks"]["disk"]
    assert disk["ok"] is True and disk["value"] > 0
    starved = make_service(disk_min_free_bytes=2**62).health()
    assert starved["ok"] is False and starved["checks"]["disk"]["ok"] is False


def test_a_worker_survives_a_store_that_cannot_record_a_jobs_end(make_service, fakes, monkeypatch):
    # e.g. the store's disk is full: the job cannot be marked FAILED, but the worker
    # must live on to run the next job (the unfinished one is reconciled at start-up).
    service = make_service(max_concurrent_jobs=1)
    _fail(fakes, "verify_error", ChainCheckFailure("not approved", code="NOT_APPROVED"))
    real_fail = service.store.fail
    broken = {"once": True}

    def fail_once(*args, **kwargs):
        if broken.pop("once", False):
            raise OSError("disk full")
        return real_fail(*args, **kwargs)

    monkeypatch.setattr(service.store, "fail", fail_once)
    service.start()
    first, _ = service.submit(request(1), OWNER)
    second, _ = service.submit(request(2), OWNER)
    wait_for(lambda: service.get(second.id, OWNER).finished)
    assert service.get(first.id, OWNER).status not in st.TERMINAL
    assert service.get(second.id, OWNER).failure_code == "NOT_APPROVED"
    assert service.health()["queue"]["workers"] == 1


def test_the_run_knows_the_jobs_on_chain_compute_job(service, fakes):
    # The container's COMPUTE_JOB_ID is the on-chain job's id (engine/layouts.py job_env).
    req = JobRequest.create(1, 2, "SELECT email FROM users", [1], 1, int(time.time()) + 600,
                            compute_job_id=42)
    job, _ = service.submit(req, OWNER)
    service.process(job.id)
    assert service.get(job.id, OWNER).status == st.SUCCEEDED
    assert fakes.spec.compute_job_id == 42


def test_submit_runs_the_preflight_before_the_job_exists(make_service):
    """A refusal leaves no job and the nonce unused; a replay of a queued request skips the preflight."""
    from engine.errors import QueryFailure as _QF

    class Flight:
        def __init__(self):
            self.refuse, self.calls = True, 0

        def check(self, request, owner):
            self.calls += 1
            if self.refuse:
                raise _QF("no permission covers users.email", code="PERMISSION_DENIED")

    service = make_service()
    service.preflight = flight = Flight()
    with pytest.raises(QueryFailure) as info:
        service.submit(request(nonce=5), OWNER)
    assert info.value.code == "PERMISSION_DENIED" and service.store.find(OWNER, 5) is None
    flight.refuse = False
    job, created = service.submit(request(nonce=5), OWNER)  # the same nonce, now accepted
    flight.refuse = True
    again, created_again = service.submit(request(nonce=5), OWNER)
    assert created and not created_again and again.id == job.id and flight.calls == 2


def test_fetching_writes_its_progress_to_the_job(service, fakes):
    """FETCHING's bytes reach the store mid-download (engine.fetch.FetchProgress, throttled)."""
    job, _ = service.submit(request(), OWNER)
    seen = []
    fakes.during_fetch = lambda: seen.append((service.get(job.id, OWNER).status, service.get(job.id, OWNER).progress))
    service.process(job.id)
    assert seen[0] == (st.FETCHING, {"bytes": 1 << 20, "total": None})
    assert service.get(job.id, OWNER).status == st.SUCCEEDED
