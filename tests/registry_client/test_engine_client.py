"""EngineClient over real HTTP: a uvicorn server on 127.0.0.1 serving the API with a fake service."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from engine.store import JobStore
from registry_client import engine_client
from registry_client.engine_client import EngineClient
from registry_client.errors import EngineApiError, EngineUnreachable
from tests.conftest import ANVIL_KEYS
from tests.engine.api_fakes import CHAIN_ID, PIPELINE, REGISTRY, StoreBackedService, make_app, serve

OWNER = Account.from_key(ANVIL_KEYS[0])
STRANGER = Account.from_key(ANVIL_KEYS[1])


@pytest.fixture
def client(server, service):
    with EngineClient(server[0], OWNER, CHAIN_ID, REGISTRY) as c:
        yield c


@pytest.fixture
def stranger(server, service):
    with EngineClient(server[0], STRANGER, CHAIN_ID, REGISTRY) as c:
        yield c


def test_public_surface():
    assert set(engine_client.__all__) == {"EngineClient", "TERMINAL_STATUSES", "DEFAULT_DEADLINE_S"}


def test_submit_and_replay(client, service):
    job = client.submit(1, 2, "SELECT locale FROM users WHERE id > ?", [0], nonce=5)
    assert job["status"] == "PENDING" and job["owner"] == OWNER.address and job["nonce"] == "5"
    again = client.submit(1, 2, "SELECT locale FROM users WHERE id > ?", [0], nonce=5,
                          deadline=service.jobs[job["id"]].deadline)
    assert again["id"] == job["id"] and len(service.jobs) == 1
    req, signer = service.submitted[-1]
    assert signer == OWNER.address and req.params == [0]


def test_default_nonce_and_deadline(client, service):
    a = client.submit(1, 2, "SELECT 1")
    b = client.submit(1, 2, "SELECT 1")
    assert a["id"] != b["id"]
    assert service.jobs[a["id"]].params == []


def test_problem_becomes_engine_api_error(client):
    with pytest.raises(EngineApiError) as info:
        client.submit(1, 2, "SELECT 1", deadline=1)
    assert (info.value.code, info.value.status) == ("DEADLINE_EXPIRED", 401)
    assert "deadline" in info.value.detail


def test_wrong_domain_client_refused(server, service):
    other = EngineClient(server[0], OWNER, 1, REGISTRY)
    with pytest.raises(EngineApiError) as info:
        other.submit(1, 2, "SELECT 1")
    assert info.value.code == "WRONG_DOMAIN"
    with pytest.raises(EngineApiError) as info:
        other.status("job-1")
    assert info.value.code == "BAD_SIGNATURE"


def test_status_cancel_and_stranger(client, stranger):
    job = client.submit(1, 2, "SELECT 1")
    assert client.status(job["id"])["id"] == job["id"]
    for call in (stranger.status, stranger.cancel, stranger.artifacts, stranger.logs):
        with pytest.raises(EngineApiError) as info:
            call(job["id"])
        assert (info.value.code, info.value.status) == ("NOT_FOUND", 404)
    cancelled = client.cancel(job["id"])
    assert cancelled["status"] == "CANCELLED"


def test_wait_reports_every_step_in_order(client, service):
    service.auto_advance = True
    job = client.submit(1, 2, "SELECT 1")
    seen: list[str] = []
    final = client.wait(job["id"], poll_s=0.01, timeout_s=10, on_change=lambda j, s: seen.append(s["status"]))
    assert final["status"] == "SUCCEEDED"
    assert seen == ["PENDING"] + [s for s, _ in PIPELINE]
    assert final["price_wei"] == str(10**20) and final["block_number"] == 42
    # After the first answer, each request long-polls on the status it last saw, per change.
    assert service.waits and all(known in {"PENDING", *(s for s, _ in PIPELINE)} and not until_end
                                 for _, known, _, until_end in service.waits)


def test_wait_without_on_change_long_polls_until_the_end(client, service):
    service.auto_advance = True
    job = client.submit(1, 2, "SELECT 1")
    final = client.wait(job["id"], poll_s=0.01)  # no timeout: each request holds LONG_POLL_S
    assert final["status"] == "SUCCEEDED"
    assert service.waits == [(job["id"], None, engine_client.LONG_POLL_S, True)]


@contextmanager
def _store_engine(tmp_path: Path) -> Iterator[tuple[StoreBackedService, EngineClient, list[str]]]:
    """A real JobStore behind the API on uvicorn; the client's requests are counted (method path?query)."""
    store = JobStore(tmp_path / "jobs.db")
    service = StoreBackedService(artifact_dir=tmp_path / "artifacts", store=store)
    sent: list[str] = []
    http = httpx.Client(timeout=30, event_hooks={"request": [lambda r: sent.append(f"{r.method} {r.url.path}")]})
    try:
        with serve(make_app(service)) as base, EngineClient(base, OWNER, CHAIN_ID, REGISTRY, http=http) as c:
            yield service, c, sent
    finally:
        store.close()


def _run_through(store: JobStore, job_id: str, statuses: list[str], every_s: float) -> threading.Thread:
    """Move the job along `statuses` from another thread, as a worker would, one step each `every_s`."""
    def run() -> None:
        known = "PENDING"
        for status in statuses:
            time.sleep(every_s)
            store.transition(job_id, known, status)
            known = status

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_wait_without_on_change_is_one_request_for_the_whole_job(tmp_path):
    statuses = [s for s, _ in PIPELINE]
    with _store_engine(tmp_path) as (service, client, sent):
        job_id = service.add_store_job(OWNER.address)
        worker = _run_through(service.store, job_id, statuses, every_s=0.1)
        final = client.wait(job_id, poll_s=0.01, timeout_s=20)
        worker.join(5)
    assert final["status"] == "SUCCEEDED"
    assert [s["status"] for s in final["steps"]] == ["PENDING", *statuses]
    assert sent == [f"GET /jobs/{job_id}"]


def test_wait_asks_again_at_once_after_a_long_poll_that_timed_out(tmp_path, monkeypatch):
    monkeypatch.setattr(engine_client, "LONG_POLL_S", 0.3)
    with _store_engine(tmp_path) as (service, client, sent):
        job_id = service.add_store_job(OWNER.address)
        threading.Timer(1.0, service.store.fail, (job_id, "QUERY_FAILED", "no such table")).start()
        began = time.monotonic()
        final = client.wait(job_id, poll_s=5, timeout_s=10)  # poll_s paces only answers given at once
        took = time.monotonic() - began
    assert final["status"] == "FAILED" and took < 2.5, took
    assert len(sent) >= 3 and set(sent) == {f"GET /jobs/{job_id}"}


def test_wait_with_on_change_still_reports_each_step_as_it_happens(tmp_path):
    statuses = [s for s, _ in PIPELINE]
    seen: list[tuple[str, str]] = []  # (the step, the job's status when it was reported)
    with _store_engine(tmp_path) as (service, client, sent):
        job_id = service.add_store_job(OWNER.address)
        worker = _run_through(service.store, job_id, statuses, every_s=0.2)
        final = client.wait(job_id, poll_s=0.01, timeout_s=20,
                            on_change=lambda job, step: seen.append((step["status"], job["status"])))
        worker.join(5)
    assert final["status"] == "SUCCEEDED"
    assert [step for step, _ in seen] == ["PENDING", *statuses]
    assert len(sent) > 2  # per change, not one wait for the end
    assert any(status != "SUCCEEDED" for _, status in seen[1:])  # steps were told before the end
    assert not any(until_end for *_, until_end in service.waits)


def test_wait_timeout(client):
    job = client.submit(1, 2, "SELECT 1")
    with pytest.raises(EngineApiError) as info:
        client.wait(job["id"], poll_s=0.01, timeout_s=0.05)
    assert info.value.code == "WAIT_TIMEOUT"


@pytest.fixture
def finished(client, service) -> str:
    job = client.submit(1, 2, "SELECT 1")
    service.advance(job["id"], "SUCCEEDED")
    service.add_artifact(job["id"], "stats.json", b'{"n": 3}')
    service.add_artifact(job["id"], "charts/by locale.png", b"\x89PNG" + bytes(range(256)) * 4000, "image/png")
    return job["id"]


def test_download_verifies_and_keeps_folders(client, finished, tmp_path):
    paths = client.download(finished, tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in paths) == ["charts/by locale.png", "stats.json"]
    assert (tmp_path / "out" / "stats.json").read_bytes() == b'{"n": 3}'
    big = (tmp_path / "out" / "charts" / "by locale.png").read_bytes()
    assert big == b"\x89PNG" + bytes(range(256)) * 4000
    listed = {a["name"]: a["sha256"] for a in client.artifacts(finished)}
    assert hashlib.sha256(big).hexdigest() == listed["charts/by locale.png"]
    assert not list((tmp_path / "out").rglob("*.part"))


def test_download_refuses_escaping_names(client, service, finished, tmp_path):
    service.add_artifact(finished, "x/../../escape.txt", b"bad")
    out = tmp_path / "out"
    with pytest.raises(EngineApiError) as info:
        client.download(finished, out)
    assert info.value.code == "UNSAFE_ARTIFACT_NAME"
    assert not (tmp_path / "escape.txt").exists() and not out.exists()


def test_download_checksum_mismatch(client, service, finished, tmp_path):
    _art, path = service.files[finished]["stats.json"]
    path.write_bytes(b'{"n": 4}')  # the file changed after its hash was recorded
    with pytest.raises(EngineApiError) as info:
        client.download(finished, tmp_path / "out")
    assert info.value.code == "CHECKSUM_MISMATCH"
    assert not (tmp_path / "out" / "stats.json").exists()
    assert not list((tmp_path / "out").rglob("*.part"))


def test_download_zip(client, finished, tmp_path):
    target = client.download_zip(finished, tmp_path / "all.zip")
    with zipfile.ZipFile(target) as zf:
        assert sorted(zf.namelist()) == ["charts/by locale.png", "stats.json"]
        assert zf.read("stats.json") == b'{"n": 3}'


def test_logs(client, service):
    job = client.submit(1, 2, "SELECT 1")
    with pytest.raises(EngineApiError) as info:
        client.logs(job["id"])
    assert (info.value.code, info.value.status) == ("LOGS_DISABLED", 403)
    service.share_logs = True
    assert client.logs(job["id"]) == "hello from the container\n"


def test_health(client, service):
    assert client.health()["status"] == "ok"
    service.health_report = {"chain": False, "docker": True, "store": True}
    try:
        assert client.health()["checks"]["chain"]["ok"] is False
    finally:
        service.health_report = {"chain": True, "docker": True, "store": True}


def test_engine_unreachable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    client = EngineClient(f"http://127.0.0.1:{port}", OWNER, CHAIN_ID, REGISTRY, http=httpx.Client(timeout=2))
    with pytest.raises(EngineUnreachable, match=f"127.0.0.1:{port}"):
        client.status("job-1")
    with pytest.raises(EngineUnreachable):
        client.submit(1, 2, "SELECT 1")


# ---------------------------------------------------------------- attestations

ENGINE = Account.from_key(ANVIL_KEYS[4])


def _attest(service, job_id: str, key=ENGINE) -> dict:
    """Sign the job's JobResult as an engine with `key` would, and store it on the fake job."""
    import dataclasses

    from registry_client.eip712 import JobResult, artifacts_digest, sign_job_result

    job = dataclasses.replace(service.jobs[job_id], image_sha256="ef" * 32, block_number=42)
    digest = artifacts_digest((a.name, a.sha256) for a, _path in service.files[job_id].values())
    result = JobResult(job.id, job.owner, job.instruction_id, job.refiner_id, job.image_sha256, job.block_number,
                       digest, 1_790_000_000)
    att = {"signer": ENGINE.address, "signature": sign_job_result(key, CHAIN_ID, REGISTRY, result),
           "artifacts_digest": digest, "finished_at": 1_790_000_000}
    service.jobs[job_id] = dataclasses.replace(job, attestation=att)
    return att


def test_verify_attestation_recovers_the_engine(client, service, finished):
    _attest(service, finished)
    job, listing = client.status(finished), client.artifacts(finished)
    assert job["attestation"]["signer"] == ENGINE.address
    assert client.verify_attestation(job, listing) == ENGINE.address
    assert client.verify_attestation(job, listing, expected_signer=ENGINE.address.lower()) == ENGINE.address


@pytest.mark.parametrize("tamper", ["artifact_sha", "missing_artifact", "image", "signer", "expected", "signature"])
def test_verify_attestation_refuses_any_mismatch(client, service, finished, tamper):
    _attest(service, finished)
    job, listing = client.status(finished), client.artifacts(finished)
    expected = None
    if tamper == "artifact_sha":
        listing[0]["sha256"] = "00" * 32
    elif tamper == "missing_artifact":
        listing = listing[1:]
    elif tamper == "image":
        job["image_sha256"] = "ee" * 32
    elif tamper == "signer":
        job["attestation"]["signer"] = STRANGER.address
    elif tamper == "expected":
        expected = STRANGER.address
    else:
        job["attestation"]["signature"] = "0x1234"
    with pytest.raises(EngineApiError) as info:
        client.verify_attestation(job, listing, expected_signer=expected)
    assert info.value.code == "ATTESTATION_INVALID"


def test_verify_attestation_without_one_is_missing(client, finished):
    with pytest.raises(EngineApiError) as info:
        client.verify_attestation(client.status(finished), client.artifacts(finished))
    assert info.value.code == "ATTESTATION_MISSING"


def test_download_checks_the_attestation_when_present(client, service, finished, tmp_path):
    _attest(service, finished)
    assert len(client.download(finished, tmp_path / "ok")) == 2
    _attest(service, finished, key=STRANGER)  # signed by another key than the stated signer
    with pytest.raises(EngineApiError) as info:
        client.download(finished, tmp_path / "bad")
    assert info.value.code == "ATTESTATION_INVALID"


def test_job_status_text_names_the_attesting_engine(client, service, finished):
    from registry_client.cli_job import format_job

    assert "attested by" not in format_job(client.status(finished))
    _attest(service, finished)
    assert f"attested by {ENGINE.address}" in format_job(client.status(finished))


def test_download_reports_progress_of_the_listed_total(client, finished, tmp_path):
    seen: list[tuple[int, int | None]] = []
    client.download(finished, tmp_path / "out", progress=lambda done, total: seen.append((done, total)))
    total = 8 + 4 + 256 * 4000  # stats.json + the chart
    assert seen and all(t == total for _, t in seen) and seen[-1][0] == total
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    zipped: list[tuple[int, int | None]] = []
    target = client.download_zip(finished, tmp_path / "all.zip", progress=lambda d, t: zipped.append((d, t)))
    assert zipped[-1] == (target.stat().st_size, target.stat().st_size)  # of its Content-Length
