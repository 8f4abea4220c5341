"""The engine end to end through its HTTP API: real anvil, dockerd, SQLite and HTTP.

Every job is submitted and read by a real wallet (EIP-712 signatures) against
one in-process engine shared by the module (see conftest.py). Each test uses
its own compute instruction, so tests never depend on each other's jobs.
"""

from __future__ import annotations

import sqlite3
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from registry_client.eip712 import JobRequest, read_headers, sign_job_request
from registry_client.errors import EngineApiError
from registry_client.sealing import open_bytes
from tests.conftest import ANVIL_KEYS
from tests.images import export_archive
from tests.integration.conftest import (
    DENIED_QUERY,
    OUTPUT_MAX_BYTES,
    SIMPLE_QUERY,
    STORY_PARAMS,
    STORY_QUERY,
    container_of,
    image_exists,
    sha256_bytes,
    step_statuses,
    wait_for,
)

pytestmark = [pytest.mark.docker, pytest.mark.chain]

WAIT_S = 60.0

SUCCESS_SCRIPT = """set -e
mkdir -p /mnt/output/nested/deep
echo "job=$COMPUTE_JOB_ID refiner=$DATA_REFINER_ID" > /mnt/output/result.txt
wc -c < "$INPUT_PATH/query_results.db" | tr -d ' ' > /mnt/output/nested/deep/input_size.txt
"""
SLEEP_SCRIPT = "sleep 30\n"
OOM_SCRIPT = 'x=a; while true; do x="$x$x"; done\n'
SYMLINK_SCRIPT = "ln -s /etc/passwd /mnt/output/passwd\necho ok > /mnt/output/ok.txt\n"
BIG_OUTPUT_SCRIPT = f"dd if=/dev/zero of=/mnt/output/big.bin bs=1024 count={2 * OUTPUT_MAX_BYTES // 1024}\n"
# No `wget -T`: Debian's static busybox wget segfaults with it.
NETWORK_SCRIPT = """if wget -q -O /tmp/reply "http://$HOST_IP:$HOST_PORT/probe" 2>/mnt/output/wget_err.txt; then
  echo "network reachable" > /mnt/output/network.txt
else
  echo "network unreachable" > /mnt/output/network.txt
fi
"""


def _run(engine, instruction_id: int, refiner_id: int, query: str = SIMPLE_QUERY,
         params: list | None = None) -> dict:
    job = engine.builder.submit(instruction_id, refiner_id, query, params)
    return engine.builder.wait(job["id"], poll_s=0.1, timeout_s=WAIT_S)


def _failed(job: dict, code: str) -> dict:
    assert job["status"] == "FAILED", job
    assert job["failure"]["code"] == code, job["failure"]
    return job["failure"]


def _refused_at_submit(engine, code: str, *args, **kw) -> EngineApiError:
    """Submit answers 422 with the job's code at once: no job row, the nonce unused; the quote agrees."""
    before = [j["id"] for j in engine.builder.jobs(limit=1)["jobs"]]
    req = engine.builder.request(*args, **kw)
    with pytest.raises(EngineApiError) as quoted:
        engine.builder.quote_request(req)
    with pytest.raises(EngineApiError) as info:
        engine.builder.submit_request(req)
    assert (info.value.status, info.value.code) == (422, code), info.value
    assert (quoted.value.status, quoted.value.code, quoted.value.detail) == (422, code, info.value.detail)
    assert [j["id"] for j in engine.builder.jobs(limit=1)["jobs"]] == before
    return info.value


def _expected_rows(db: Path, query: str, params: list) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return len(conn.execute(query, params).fetchall())


# ---------------------------------------------------------------- the whole story


def test_full_story_submit_wait_list_download_zip(engine, world, job_image, tmp_path: Path) -> None:
    image = job_image("success", SUCCESS_SCRIPT)
    instruction_id = world.publish_image(image)

    job = _run(engine, instruction_id, world.refiner_id, STORY_QUERY, STORY_PARAMS)

    assert job["status"] == "SUCCEEDED", job
    assert job["failure"] is None
    assert step_statuses(job) == [
        "PENDING", "VERIFYING", "FETCHING", "LOADING", "QUERYING", "RUNNING", "COLLECTING", "SUCCEEDED",
    ]
    times = [step["at"] for step in job["steps"]]
    assert times == sorted(times)
    assert job["owner"] == world.accounts.builder.address
    assert job["dlp_id"] == world.dlp_id
    assert 0 < job["block_number"] <= world.owner.block_number()
    assert job["image_sha256"] == image.sha256
    assert job["image_id"] == image.image_id
    assert job["exit_code"] == 0
    report = job["access_report"]
    assert report["row_count"] == _expected_rows(world.data_db, STORY_QUERY, STORY_PARAMS) > 0
    assert sorted(map(tuple, report["columns"])) == [
        ("activities", "duration_s"), ("activities", "kind"), ("activities", "user_id"),
        ("users", "id"), ("users", "locale"),
    ]
    assert int(job["price_wei"]) > 0 and job["price_wei"] == report["price"]

    listing = engine.builder.artifacts(job["id"])
    assert [a["name"] for a in listing] == ["nested/deep/input_size.txt", "result.txt"]
    result_text = f"job={job['id']} refiner={world.refiner_id}\n".encode()
    by_name = {a["name"]: a for a in listing}
    assert by_name["result.txt"]["size"] == len(result_text)
    assert by_name["result.txt"]["sha256"] == sha256_bytes(result_text)

    paths = engine.builder.download(job["id"], tmp_path / "out")  # sha256-checked by the client
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in paths) == sorted(by_name)
    assert (tmp_path / "out" / "result.txt").read_bytes() == result_text
    input_size = int((tmp_path / "out" / "nested" / "deep" / "input_size.txt").read_text())
    assert input_size > 0  # the container read the query's results database
    for path in paths:
        name = path.relative_to(tmp_path / "out").as_posix()
        assert sha256_bytes(path.read_bytes()) == by_name[name]["sha256"]

    # The zip holds the stored files: sealed to the builder, opened with their wallet key.
    zipped = engine.builder.download_zip(job["id"], tmp_path / "all.zip")
    with zipfile.ZipFile(zipped) as zf:
        assert sorted(zf.namelist()) == sorted(by_name)
        for name in by_name:
            assert sha256_bytes(zf.read(name)) == by_name[name]["sealed_sha256"]
            plain = open_bytes(zf.read(name), private_key=bytes(world.accounts.builder.key))
            assert sha256_bytes(plain) == by_name[name]["sha256"]

    # The engine attested the result with its key (anvil dev key 4 in this fixture).
    engine_address = Account.from_key(ANVIL_KEYS[4]).address
    assert job["attestation"]["signer"] == engine_address
    assert engine.builder.health()["engine_address"] == engine_address
    assert engine.builder.verify_attestation(job, listing, expected_signer=engine_address) == engine_address
    forged = [{**a, "sha256": "00" * 32} if a["name"] == "result.txt" else a for a in listing]
    with pytest.raises(EngineApiError) as info:
        engine.builder.verify_attestation(job, forged)
    assert info.value.code == "ATTESTATION_INVALID"


# ---------------------------------------------------------------- chain checks


def test_unapproved_instruction_is_refused_at_submit(engine, world, job_image, archive_server) -> None:
    image = job_image("success", SUCCESS_SCRIPT)
    instruction_id = world.publish_image(image, approve=False)
    fetched = archive_server.requests(image.archive.name)

    refused = _refused_at_submit(engine, "NOT_APPROVED", instruction_id, world.refiner_id, SIMPLE_QUERY)

    assert str(instruction_id) in refused.detail
    assert archive_server.requests(image.archive.name) == fetched  # refused before any download


def test_approval_revoked_before_the_run_fails_at_the_recheck(
    engine, world, job_image, archive_server
) -> None:
    image = job_image("revoked", SUCCESS_SCRIPT + "echo revoked > /mnt/output/revoked.txt\n")
    instruction_id = world.publish_image(image)
    gate = archive_server.hold(image.archive.name)
    try:
        job = engine.builder.submit(instruction_id, world.refiner_id, SIMPLE_QUERY)
        # The job passed verification and is downloading: revoke now, on chain.
        assert gate.entered.wait(WAIT_S), "the engine never fetched the archive"
        assert world.owner.update_instruction(instruction_id, world.dlp_id, False)
    finally:
        gate.release()
    job = engine.builder.wait(job["id"], poll_s=0.1, timeout_s=WAIT_S)

    _failed(job, "NOT_APPROVED")
    statuses = step_statuses(job)
    assert "VERIFYING" in statuses and "QUERYING" in statuses
    assert "RUNNING" not in statuses  # the container never started
    assert job["exit_code"] is None
    assert engine.builder.artifacts(job["id"]) == []


def test_query_denied_by_permissions_is_refused_at_submit(engine, world, job_image) -> None:
    image = job_image("success", SUCCESS_SCRIPT)
    instruction_id = world.publish_image(image)

    refused = _refused_at_submit(engine, "PERMISSION_DENIED", instruction_id, world.refiner_id, DENIED_QUERY)

    assert "email" in refused.detail
    assert "@" not in refused.detail  # names the column, never a value


@pytest.mark.parametrize("query, params, fragment", [
    ("PRAGMA table_info(users)", [], "PRAGMA is not allowed"),
    ("SELEC kind FROM activities", [], "syntax error"),
    ("SELECT kind FROM activities WHERE duration_s > ?", [1, 2], "Incorrect number of bindings"),
])
def test_bad_sql_is_refused_at_submit(engine, world, job_image, query, params, fragment) -> None:
    instruction_id = world.publish_image(job_image("success", SUCCESS_SCRIPT))
    refused = _refused_at_submit(engine, "QUERY_INVALID", instruction_id, world.refiner_id, query, params)
    assert fragment in refused.detail


# ---------------------------------------------------------------- image fetch and load


def test_tampered_archive_never_reaches_docker(
    engine, world, job_image, archive_server, docker_client
) -> None:
    genuine = job_image("tamper-genuine", SUCCESS_SCRIPT + "echo genuine\n", evict=True)
    swapped = job_image("tamper-swapped", SUCCESS_SCRIPT + "echo swapped\n", evict=True)
    # On chain: the genuine archive's hash; served at that URL: other bytes.
    instruction_id = world.publish(genuine.sha256, swapped.url)
    since = int(time.time()) - 1

    job = _run(engine, instruction_id, world.refiner_id)

    failure = _failed(job, "CHECKSUM_MISMATCH")
    # Nothing learnt from the response reaches the message (not the digest that arrived).
    assert swapped.sha256 not in failure["message"] and "on-chain hash" in failure["message"]
    assert archive_server.requests(swapped.archive.name) == 1
    assert "LOADING" not in step_statuses(job)
    assert not image_exists(docker_client, genuine.image_id)
    assert not image_exists(docker_client, swapped.image_id)
    loads = _load_events(docker_client, since)
    assert swapped.image_id not in loads and genuine.image_id not in loads


def test_archive_with_two_images_is_image_invalid(
    engine, world, job_image, docker_client, archive_server
) -> None:
    first = job_image("success", SUCCESS_SCRIPT)
    second = job_image("sleeper", SLEEP_SCRIPT)
    archive = archive_server.root / "two-images.tar.gz"
    sha256 = export_archive(docker_client, [f"c2d-itest/{first.name}:1", f"c2d-itest/{second.name}:1"], archive)
    instruction_id = world.publish(sha256, archive_server.url(archive.name))

    job = _run(engine, instruction_id, world.refiner_id)

    failure = _failed(job, "IMAGE_INVALID")
    assert "2 images" in failure["message"]
    assert job["image_sha256"] == sha256  # verified, then refused at load
    assert "RUNNING" not in step_statuses(job)


def test_url_that_404s_is_fetch_failed(engine, world, archive_server) -> None:
    instruction_id = world.publish("ab" * 32, archive_server.url("missing.tar.gz"))

    job = _run(engine, instruction_id, world.refiner_id)

    failure = _failed(job, "FETCH_FAILED")
    assert "404" not in failure["message"] and "could not be downloaded" in failure["message"]
    assert archive_server.requests("missing.tar.gz") >= 1
    assert "LOADING" not in step_statuses(job)


def test_second_job_neither_downloads_nor_loads_again(
    engine, world, job_image, archive_server, docker_client
) -> None:
    image = job_image("cached", SUCCESS_SCRIPT + "echo cached\n", evict=True)
    instruction_id = world.publish_image(image)
    assert not image_exists(docker_client, image.image_id)

    since = int(time.time()) - 1
    first = _run(engine, instruction_id, world.refiner_id)
    assert first["status"] == "SUCCEEDED", first
    assert archive_server.requests(image.archive.name) == 1
    assert _load_events(docker_client, since).count(image.image_id) == 1

    time.sleep(1.1)  # Docker's event times are whole seconds
    since = int(time.time())
    second = _run(engine, instruction_id, world.refiner_id)
    assert second["status"] == "SUCCEEDED", second
    assert archive_server.requests(image.archive.name) == 1
    assert image.image_id not in _load_events(docker_client, since)
    assert second["image_id"] == first["image_id"] == image.image_id
    assert second["image_sha256"] == image.sha256


def _load_events(docker_client, since: int) -> list[str]:
    """Ids of images `docker load`ed since `since` (unix seconds)."""
    events = docker_client.events(
        since=since, until=int(time.time()) + 1, decode=True, filters={"type": "image", "event": "load"}
    )
    return [e.get("id") for e in events]


# ---------------------------------------------------------------- who may see what


def test_stranger_gets_the_same_404_as_for_a_missing_job(engine, world, job_image) -> None:
    image = job_image("success", SUCCESS_SCRIPT)
    job = _run(engine, world.publish_image(image), world.refiner_id)
    assert job["status"] == "SUCCEEDED", job
    missing = "0" * len(job["id"])

    for path in ("", "/artifacts", "/artifacts/result.txt", "/artifacts.zip"):
        real = _signed(engine, world, "stranger", "GET", f"/jobs/{job['id']}{path}")
        absent = _signed(engine, world, "stranger", "GET", f"/jobs/{missing}{path}")
        assert real.status_code == absent.status_code == 404, (path, real.text)
        assert _masked(real.json(), job["id"]) == _masked(absent.json(), missing)
        assert real.json()["code"] == "NOT_FOUND"
        assert b"job=" not in real.content

    # Cancel: a stranger's 404, never the owner's 409 (which would reveal the job ended).
    real = _signed(engine, world, "stranger", "POST", f"/jobs/{job['id']}/cancel")
    absent = _signed(engine, world, "stranger", "POST", f"/jobs/{missing}/cancel")
    assert real.status_code == absent.status_code == 404
    assert _masked(real.json(), job["id"]) == _masked(absent.json(), missing)
    with pytest.raises(EngineApiError) as owner_cancel:
        engine.builder.cancel(job["id"])
    assert owner_cancel.value.status == 409

    # The client API agrees, and the owner still sees everything.
    with pytest.raises(EngineApiError) as err:
        engine.stranger.status(job["id"])
    assert (err.value.status, err.value.code) == (404, "NOT_FOUND")
    assert engine.builder.status(job["id"])["status"] == "SUCCEEDED"
    assert [a["name"] for a in engine.builder.artifacts(job["id"])] == ["nested/deep/input_size.txt", "result.txt"]


def _signed(engine, world, role: str, method: str, path: str) -> httpx.Response:
    account = getattr(world.accounts, role)
    headers = read_headers(account, world.chain_id, world.registry_address, method, path)
    return httpx.request(method, engine.url + path, headers=headers, timeout=30)


def _masked(problem: dict, job_id: str) -> dict:
    return {k: str(v).replace(job_id, "<id>") for k, v in problem.items()}


def test_replayed_submit_returns_the_same_job(engine, world, job_image) -> None:
    image = job_image("success", SUCCESS_SCRIPT)
    instruction_id = world.publish_image(image)
    builder = world.accounts.builder
    req = JobRequest.create(instruction_id, world.refiner_id, SIMPLE_QUERY, [], 424242, int(time.time()) + 300)
    body = {
        "request": req.to_message(),
        "signature": sign_job_request(builder, world.chain_id, world.registry_address, req),
        "signer": builder.address,
    }

    first = httpx.post(f"{engine.url}/jobs", json=body, timeout=30)
    second = httpx.post(f"{engine.url}/jobs", json=body, timeout=30)

    assert first.status_code == 201, first.text
    assert second.status_code == 200, second.text
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["location"] == first.headers["location"] == f"/jobs/{first.json()['id']}"

    # The same nonce with a different request is refused, never a second job.
    other = JobRequest.create(instruction_id, world.refiner_id, DENIED_QUERY, [], 424242, req.deadline)
    reused = httpx.post(f"{engine.url}/jobs", json={
        "request": other.to_message(),
        "signature": sign_job_request(builder, world.chain_id, world.registry_address, other),
    }, timeout=30)
    assert reused.status_code == 409 and reused.json()["code"] == "NONCE_REUSED", reused.text
    job = engine.builder.wait(first.json()["id"], poll_s=0.1, timeout_s=WAIT_S)
    assert job["status"] == "SUCCEEDED", job


def test_expired_deadline_is_refused(engine, world) -> None:
    with pytest.raises(EngineApiError) as err:
        engine.builder.submit(1, world.refiner_id, SIMPLE_QUERY, deadline=int(time.time()) - 5)
    assert err.value.status == 401
    assert err.value.code == "DEADLINE_EXPIRED"


# ---------------------------------------------------------------- the container


def test_container_that_tries_the_network_reports_it_unreachable(
    engine, world, job_image, docker_client, tmp_path: Path
) -> None:
    import http.server
    import threading

    gateway = docker_client.networks.get("bridge").attrs["IPAM"]["Config"][0].get("Gateway", "172.17.0.1")
    hits: list[str] = []

    class Probe(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer((gateway, 0), Probe)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        port = httpd.server_address[1]
        image = job_image(f"network-{port}", f"HOST_IP={gateway}\nHOST_PORT={port}\n" + NETWORK_SCRIPT)
        job = _run(engine, world.publish_image(image), world.refiner_id)
    finally:
        httpd.shutdown()
        httpd.server_close()

    assert job["status"] == "SUCCEEDED", job
    engine.builder.download(job["id"], tmp_path)
    assert (tmp_path / "network.txt").read_text() == "network unreachable\n"
    assert "unreachable" in (tmp_path / "wget_err.txt").read_text().lower()
    assert hits == [], "the host's server must never see a request from the job"


def test_container_over_its_memory_limit_is_out_of_memory(engine, world, job_image, docker_client) -> None:
    job = _run(engine, world.publish_image(job_image("oom", OOM_SCRIPT)), world.refiner_id)

    failure = _failed(job, "OUT_OF_MEMORY")
    assert str(engine.settings.run_memory_bytes) in failure["message"]
    assert "RUNNING" in step_statuses(job)
    # Removed just after the job's end is recorded (off its critical path).
    wait_for(lambda: container_of(docker_client, job["id"]) is None, 15, "the container's removal")


def test_container_sleeping_past_its_timeout_is_killed(engine, world, job_image, docker_client) -> None:
    started = time.monotonic()
    job = _run(engine, world.publish_image(job_image("sleeper", SLEEP_SCRIPT)), world.refiner_id)

    _failed(job, "TIMEOUT")
    assert time.monotonic() - started < 25  # killed at ~4 s, not after its 30 s sleep
    # Removed just after the job's end is recorded (off its critical path).
    wait_for(lambda: container_of(docker_client, job["id"]) is None, 15, "the container's removal")


def test_output_symlink_to_etc_passwd_is_not_served(engine, world, job_image, tmp_path: Path) -> None:
    job = _run(engine, world.publish_image(job_image("symlink", SYMLINK_SCRIPT)), world.refiner_id)

    assert job["status"] == "SUCCEEDED", job
    assert [a["name"] for a in engine.builder.artifacts(job["id"])] == ["ok.txt"]
    direct = _signed(engine, world, "builder", "GET", f"/jobs/{job['id']}/artifacts/passwd")
    assert direct.status_code == 404
    assert b"root:" not in direct.content
    zipped = engine.builder.download_zip(job["id"], tmp_path / "all.zip")
    with zipfile.ZipFile(zipped) as zf:
        assert zf.namelist() == ["ok.txt"]
        assert all(b"root:x:0:0" not in zf.read(n) for n in zf.namelist())


def test_output_over_the_cap_is_output_too_large(engine, world, job_image) -> None:
    job = _run(engine, world.publish_image(job_image("big-output", BIG_OUTPUT_SCRIPT)), world.refiner_id)

    failure = _failed(job, "OUTPUT_TOO_LARGE")
    assert str(OUTPUT_MAX_BYTES) in failure["message"]
    # The cap binds while the job writes (its own filesystem is full: dd fails ENOSPC,
    # or the engine killed it), not only when the output is collected.
    assert job["exit_code"] != 0
    assert engine.builder.artifacts(job["id"]) == []
    assert not (engine.data_dir / "artifacts" / job["id"]).exists()


def test_cancel_while_running_stops_and_removes_the_container(
    engine, world, job_image, docker_client
) -> None:
    instruction_id = world.publish_image(job_image("sleeper", SLEEP_SCRIPT))
    job = engine.builder.submit(instruction_id, world.refiner_id, SIMPLE_QUERY)
    wait_for(lambda: _running_container(docker_client, job["id"]), 20, "the job's container to run")

    cancelled = engine.builder.cancel(job["id"])

    assert cancelled["status"] == "CANCELLED"
    wait_for(lambda: container_of(docker_client, job["id"]) is None, 15, "the container to be removed")
    final = engine.builder.wait(job["id"], poll_s=0.1, timeout_s=WAIT_S)
    assert final["status"] == "CANCELLED"
    assert "RUNNING" in step_statuses(final)
    assert engine.builder.cancel(job["id"])["status"] == "CANCELLED"  # idempotent


def _running_container(docker_client, job_id: str) -> bool:
    container = container_of(docker_client, job_id)
    if container is None:
        return False
    container.reload()
    return container.status == "running"


def test_another_engine_starting_leaves_this_engines_running_job_alone(
    engine, world, job_image, docker_client, tmp_path: Path
) -> None:
    from engine.settings import Settings
    from engine.wiring import build_service

    instruction_id = world.publish_image(job_image("sleeper", SLEEP_SCRIPT))
    job = engine.builder.submit(instruction_id, world.refiner_id, SIMPLE_QUERY)
    try:
        wait_for(lambda: _running_container(docker_client, job["id"]), 20, "the job's container to run")
        # A second engine (its own data dir, e.g. `make up` beside a test run) starts on this host.
        other = build_service(Settings(rpc_url=world.rpc_url, deployment=world.manifest, data_dir=tmp_path))
        other.reconcile()
        assert _running_container(docker_client, job["id"]), "another engine's start-up killed this job"
    finally:
        try:
            engine.builder.cancel(job["id"])
        except EngineApiError:
            pass  # already ended
        wait_for(lambda: container_of(docker_client, job["id"]) is None, 15, "the container's removal")
