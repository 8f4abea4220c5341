"""EngineClient over real HTTP: a uvicorn server on 127.0.0.1 serving the API with a fake service."""

from __future__ import annotations

import hashlib
import socket
import zipfile

import httpx
import pytest
from eth_account import Account

from registry_client import engine_client
from registry_client.engine_client import EngineClient
from registry_client.errors import EngineApiError, EngineUnreachable
from tests.conftest import ANVIL_KEYS
from tests.engine.api_fakes import CHAIN_ID, PIPELINE, REGISTRY

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
    # After the first answer, each request long-polls on the status it last saw.
    assert service.waits and all(known in {"PENDING", *(s for s, _ in PIPELINE)} for _, known, _ in service.waits)


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
