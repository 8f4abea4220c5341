"""Unit tests of engine/api with a fake JobService: routes, auth wiring, problem JSON, files."""

from __future__ import annotations

import hashlib
import io
import time
import zipfile
from urllib.parse import quote

import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from registry_client.eip712 import JobRequest, read_headers, sign_job_request
from tests.conftest import ANVIL_KEYS, make_kek_file
from tests.engine.api_fakes import CHAIN_ID, REGISTRY

OWNER = Account.from_key(ANVIL_KEYS[0])
STRANGER = Account.from_key(ANVIL_KEYS[1])
PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "instance"}


def submit_body(account=OWNER, *, nonce=7, deadline=None, chain_id=CHAIN_ID, contract=REGISTRY, **extra):
    req = JobRequest.create(1, 2, "SELECT locale FROM users WHERE id > ?", [0], nonce,
                            deadline if deadline is not None else int(time.time()) + 600)
    body = {"request": req.to_message(), "signature": sign_job_request(account, chain_id, contract, req),
            "signer": account.address}
    body.update(extra)
    return body


def signed(account, method, path, timestamp=None):
    return read_headers(account, CHAIN_ID, REGISTRY, method, path, timestamp)


def get(client, path, account=OWNER, **kw):
    # The URL is percent-encoded; the signature covers the decoded path.
    return client.get(quote(path, safe="/"), headers=signed(account, "GET", path), **kw)


def assert_problem(resp, status, code):
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert PROBLEM_KEYS <= set(body)
    assert body["status"] == status and body["code"] == code
    assert body["type"].endswith(code)
    return body


def created_job(client, service) -> str:
    resp = client.post("/jobs", json=submit_body())
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def test_submit_201_then_replay_200_same_job(client, service):
    body = submit_body()
    first = client.post("/jobs", json=body)
    assert first.status_code == 201
    job = first.json()
    assert job["owner"] == OWNER.address and job["status"] == "PENDING"
    assert job["steps"][0]["status"] == "PENDING" and job["instruction_id"] == 1 and job["refiner_id"] == 2
    assert first.headers["location"] == f"/jobs/{job['id']}"
    again = client.post("/jobs", json=body)
    assert again.status_code == 200 and again.json()["id"] == job["id"]
    assert len(service.jobs) == 1
    req, signer = service.submitted[0]
    assert signer == OWNER.address and req.params == [0] and req.nonce == 7


def test_submit_hands_the_service_the_signers_recovered_public_key(client, service):
    from registry_client.sealing import public_key_of

    assert client.post("/jobs", json=submit_body()).status_code == 201
    assert service.signer_keys == [public_key_of(bytes(OWNER.key))]  # what the results are sealed to


def _to_body(recipient, public_key):
    from dataclasses import replace

    req = JobRequest.create(1, 2, "SELECT locale FROM users", [], 9, int(time.time()) + 600)
    req = replace(req, recipient=recipient, recipient_public_key=public_key)
    return {"request": req.to_message(), "signer": OWNER.address,
            "signature": sign_job_request(OWNER, CHAIN_ID, REGISTRY, req)}  # a JobRequestTo


def test_submit_a_job_request_to_another_wallet(client, service):
    from registry_client.sealing import public_key_of

    bob_key = public_key_of(bytes(STRANGER.key))
    body = _to_body(STRANGER.address, bob_key)
    assert body["request"]["recipient"] == STRANGER.address
    assert client.post("/jobs", json=body).status_code == 201
    req, signer = service.submitted[0]
    assert (signer, req.recipient, req.recipient_public_key) == (OWNER.address, STRANGER.address, bob_key)


def test_submit_refuses_a_recipient_key_of_another_wallet(client, service):
    from registry_client.sealing import public_key_of

    body = _to_body(STRANGER.address, public_key_of(bytes(STRANGER.key)))
    body["request"]["recipientPublicKey"] = public_key_of(bytes(OWNER.key))  # not the recipient's
    problem = assert_problem(client.post("/jobs", json=body), 400, "INVALID_REQUEST")
    assert "recipientPublicKey" in problem["detail"]
    del body["request"]["recipientPublicKey"]
    assert_problem(client.post("/jobs", json=body), 400, "INVALID_REQUEST")
    assert service.submitted == []


def test_submit_signer_from_header(client, service):
    body = submit_body()
    del body["signer"]
    resp = client.post("/jobs", json=body, headers={"X-Wallet-Address": STRANGER.address})
    problem = assert_problem(resp, 401, "BAD_SIGNATURE")
    assert STRANGER.address in problem["detail"]
    assert client.post("/jobs", json=body, headers={"X-Wallet-Address": OWNER.address}).status_code == 201


def test_same_nonce_other_request_is_409(client):
    assert client.post("/jobs", json=submit_body()).status_code == 201
    body = submit_body()
    other = JobRequest.create(1, 2, "SELECT 2", [], 7, body["request"]["deadline"])
    body = {"request": other.to_message(), "signature": sign_job_request(OWNER, CHAIN_ID, REGISTRY, other)}
    assert_problem(client.post("/jobs", json=body), 409, "NONCE_REUSED")


@pytest.mark.parametrize(
    ("mutate", "status", "code"),
    [
        (lambda b: b["request"].update(query="SELECT * FROM users"), 401, "BAD_SIGNATURE"),
        (lambda b: b.update(chainId=1), 401, "WRONG_DOMAIN"),
        (lambda b: b.update(verifyingContract="0x" + "11" * 20), 401, "WRONG_DOMAIN"),
        (lambda b: b["request"].update(params="{not json"), 400, "INVALID_REQUEST"),
    ],
    ids=["tampered", "chain", "contract", "params"],
)
def test_submit_refusals(client, service, mutate, status, code):
    body = submit_body()
    mutate(body)
    assert_problem(client.post("/jobs", json=body), status, code)
    assert service.jobs == {}


def test_submit_expired_deadline(client):
    assert_problem(client.post("/jobs", json=submit_body(deadline=int(time.time()) - 1)), 401, "DEADLINE_EXPIRED")


def test_submit_signed_for_other_chain_is_bad_signature(client):
    body = submit_body(chain_id=1)
    problem = assert_problem(client.post("/jobs", json=body), 401, "BAD_SIGNATURE")
    assert "chain 31337" in problem["detail"]


def test_validation_error_shape(client):
    body = submit_body()
    body["request"]["instructionId"] = "one"
    del body["signature"]
    problem = assert_problem(client.post("/jobs", json=body), 422, "VALIDATION_ERROR")
    locs = {tuple(e["loc"]) for e in problem["errors"]}
    assert ("body", "signature") in locs and ("body", "request", "instructionId") in locs
    assert all(set(e) == {"loc", "msg", "type"} for e in problem["errors"])
    assert_problem(client.post("/jobs", content=b"nope", headers={"content-type": "application/json"}),
                   422, "VALIDATION_ERROR")


def test_read_own_job(client, service):
    job_id = created_job(client, service)
    service.advance(job_id, "VERIFYING", block_number=42, dlp_id=3)
    service.advance(job_id, "FAILED", failure_code="NOT_APPROVED", failure_message="instruction 1 not approved",
                    price_wei=10**30, access_report={"price": 10**30, "columns": [["t", "c"]]})
    resp = get(client, f"/jobs/{job_id}")
    assert resp.status_code == 200
    job = resp.json()
    assert [s["status"] for s in job["steps"]] == ["PENDING", "VERIFYING", "FAILED"]
    assert job["block_number"] == 42 and job["dlp_id"] == 3
    assert job["failure"] == {"code": "NOT_APPROVED", "message": "instruction 1 not approved"}
    assert job["price_wei"] == str(10**30) and job["access_report"]["price"] == str(10**30)
    assert job["finished_at"] is not None


def test_stranger_404_equals_missing_404(client, service):
    job_id = created_job(client, service)
    stranger = get(client, f"/jobs/{job_id}", STRANGER)
    missing = get(client, "/jobs/nope", STRANGER)
    a, b = assert_problem(stranger, 404, "NOT_FOUND"), assert_problem(missing, 404, "NOT_FOUND")
    assert set(a) == set(b)
    for path in (f"/jobs/{job_id}/artifacts", f"/jobs/{job_id}/artifacts.zip", f"/jobs/{job_id}/logs"):
        assert_problem(get(client, path, STRANGER), 404, "NOT_FOUND")
    path = f"/jobs/{job_id}/cancel"
    assert_problem(client.post(path, headers=signed(STRANGER, "POST", path)), 404, "NOT_FOUND")
    assert service.jobs[job_id].status == "PENDING"


def test_read_auth_errors(client, service):
    job_id = created_job(client, service)
    path = f"/jobs/{job_id}"
    resp = client.get(path)
    assert_problem(resp, 401, "AUTH_REQUIRED")
    assert "www-authenticate" in resp.headers
    old = signed(OWNER, "GET", path, int(time.time()) - 3600)
    assert_problem(client.get(path, headers=old), 401, "STALE_TIMESTAMP")
    other_path = signed(OWNER, "GET", "/jobs/other")
    assert_problem(client.get(path, headers=other_path), 401, "BAD_SIGNATURE")
    post_sig = signed(OWNER, "POST", path)
    assert_problem(client.get(path, headers=post_sig), 401, "BAD_SIGNATURE")
    impersonate = {**signed(STRANGER, "GET", path), "X-Wallet-Address": OWNER.address}
    assert_problem(client.get(path, headers=impersonate), 401, "BAD_SIGNATURE")


def test_cancel(client, service):
    job_id = created_job(client, service)
    path = f"/jobs/{job_id}/cancel"
    resp = client.post(path, headers=signed(OWNER, "POST", path))
    assert resp.status_code == 200 and resp.json()["status"] == "CANCELLED"
    assert resp.json()["failure"]["code"] == "CANCELLED"
    assert_problem(client.post(path, headers=signed(OWNER, "POST", path)), 409, "JOB_FINISHED")


@pytest.fixture
def finished_job(client, service) -> str:
    job_id = created_job(client, service)
    service.advance(job_id, "SUCCEEDED")
    service.add_artifact(job_id, "stats.json", b'{"n": 1}')
    service.add_artifact(job_id, "charts/by locale.png", b"\x89PNG fake", "image/png")
    service.add_artifact(job_id, 'we"ird;name ü.txt', b"x", "text/plain")
    return job_id


def test_artifact_list(client, finished_job):
    resp = get(client, f"/jobs/{finished_job}/artifacts")
    assert resp.status_code == 200
    body = resp.json()
    names = {a["name"]: a for a in body["artifacts"]}
    assert set(names) == {"stats.json", "charts/by locale.png", 'we"ird;name ü.txt'}
    assert names["stats.json"]["sha256"] == hashlib.sha256(b'{"n": 1}').hexdigest()
    assert names["charts/by locale.png"]["url"] == f"/jobs/{finished_job}/artifacts/charts/by%20locale.png"
    assert body["expires_at"] is not None


def test_artifact_download_headers(client, finished_job):
    resp = get(client, f"/jobs/{finished_job}/artifacts/charts/by locale.png")
    assert resp.status_code == 200 and resp.content == b"\x89PNG fake"
    assert resp.headers["content-type"] == "image/png"
    assert resp.headers["x-content-sha256"] == hashlib.sha256(b"\x89PNG fake").hexdigest()
    assert resp.headers["content-disposition"] == (
        "attachment; filename=\"by_locale.png\"; filename*=UTF-8''by%20locale.png")
    assert resp.headers["x-content-type-options"] == "nosniff"
    weird = get(client, f"/jobs/{finished_job}/artifacts/we\"ird;name ü.txt")
    assert weird.status_code == 200 and weird.content == b"x"
    disp = weird.headers["content-disposition"]
    assert disp == "attachment; filename=\"we_ird_name__.txt\"; filename*=UTF-8''we%22ird%3Bname%20%C3%BC.txt"
    assert_problem(get(client, f"/jobs/{finished_job}/artifacts/missing.txt"), 404, "NOT_FOUND")


def test_zip_contents(client, finished_job):
    resp = get(client, f"/jobs/{finished_job}/artifacts.zip")
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/zip"
    assert "attachment" in resp.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(resp.content)) as zf:
        assert sorted(zf.namelist()) == sorted(["stats.json", "charts/by locale.png", 'we"ird;name ü.txt'])
        assert zf.read("stats.json") == b'{"n": 1}'
        assert zf.read("charts/by locale.png") == b"\x89PNG fake"


def test_logs_disabled_403_and_enabled(client, service):
    job_id = created_job(client, service)
    assert_problem(get(client, f"/jobs/{job_id}/logs"), 403, "LOGS_DISABLED")
    service.share_logs = True
    resp = get(client, f"/jobs/{job_id}/logs")
    assert resp.status_code == 200 and resp.text == "hello from the container\n"
    assert resp.headers["content-type"].startswith("text/plain")


def test_unknown_route_and_method(client):
    assert_problem(client.get("/nowhere"), 404, "NOT_FOUND")
    assert_problem(client.delete("/jobs"), 405, "METHOD_NOT_ALLOWED")


def test_unexpected_error_is_500_without_internals(client, service):
    job_id = created_job(client, service)
    service.boom = True
    problem = assert_problem(get(client, f"/jobs/{job_id}"), 500, "INTERNAL_ERROR")
    assert "secret" not in str(problem) and "/var/lib" not in str(problem)


@pytest.mark.parametrize(
    ("report", "status", "overall"),
    [
        ({"chain": True, "docker": True, "store": True}, 200, "ok"),
        ({"chain": {"ok": False, "detail": "connection refused"}, "docker": "ok", "store": True}, 503, "unavailable"),
        # engine.service.JobService.health() shape
        ({"ok": False, "checks": {"store": {"ok": True}, "chain": {"ok": False, "error": "connection refused"},
                                  "docker": {"ok": True, "value": 1}},
          "queue": {"waiting": 0, "capacity": 100, "running": 0, "workers": 2}}, 503, "unavailable"),
    ],
    ids=["ok", "flat-failing", "service-shape"],
)
def test_health(client, service, report, status, overall):
    service.health_report = report
    resp = client.get("/health")
    assert resp.status_code == status
    body = resp.json()
    assert body["status"] == overall and set(body["checks"]) == {"chain", "docker", "store"}
    if status == 503:
        assert body["checks"]["chain"] == {"ok": False, "detail": "connection refused"}
        assert body["checks"]["docker"]["ok"] is True
    if "queue" in report:
        assert body["queue"]["workers"] == 2


def test_openapi_lists_every_route(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    expected = {
        ("post", "/jobs"), ("get", "/jobs/{job_id}"), ("post", "/jobs/{job_id}/cancel"),
        ("get", "/jobs/{job_id}/artifacts"), ("get", "/jobs/{job_id}/artifacts/{name}"),
        ("get", "/jobs/{job_id}/artifacts.zip"), ("get", "/jobs/{job_id}/logs"), ("get", "/health"),
    }
    listed = {(m, p) for p, ops in paths.items() for m in ops}
    assert expected <= listed
    read_params = {p["name"].lower() for p in paths["/jobs/{job_id}"]["get"]["parameters"]}
    assert {"x-wallet-address", "x-wallet-timestamp", "x-wallet-signature"} <= read_params
    assert client.get("/docs").status_code == 200
    app_routes = {(m.lower(), r.path.replace("{name:path}", "{name}"))
                  for r in client.app.routes if hasattr(r, "methods") and r.include_in_schema
                  for m in r.methods if m != "HEAD"}
    assert app_routes <= listed


def test_create_app_reads_domain_from_real_settings(tmp_path, service):
    from engine.api.app import create_app
    from engine.settings import Settings
    from registry_client.manifest import CONTRACT_KEYS, Deployment, save_deployment

    addresses = {key: "0x" + f"{i + 1:02x}" * 20 for i, key in enumerate(CONTRACT_KEYS)}
    addresses["compute_instruction_registry"] = REGISTRY
    manifest = save_deployment(Deployment(CHAIN_ID, addresses), tmp_path / "deployment.json")
    settings = Settings(deployment=manifest, data_dir=tmp_path / "data", auth_window_s=5, deadline_max_s=900)
    app = create_app(settings, service)
    assert (app.state.domain.chain_id, app.state.domain.registry) == (CHAIN_ID, REGISTRY)
    # deadline_max_s reaches the HTTP layer (Vana's deadline window) under the same name.
    assert app.state.api_config.auth_window_s == 5 and app.state.api_config.deadline_max_s == 900
    service.deadline_max_s = 900  # the fake applies the service's rule (engine.submission.check_deadline)
    with TestClient(app, raise_server_exceptions=False) as c:
        assert c.post("/jobs", json=submit_body()).status_code == 201
        assert_problem(c.post("/jobs", json=submit_body(nonce=8, deadline=int(time.time()) + 1000)),
                       400, "DEADLINE_TOO_FAR")
        path = "/jobs/job-1"
        assert_problem(c.get(path, headers=signed(OWNER, "GET", path, int(time.time()) - 10)),
                       401, "STALE_TIMESTAMP")


def test_create_app_without_manifest_is_config_error(tmp_path, service):
    from engine.api.app import create_app
    from engine.errors import EngineError
    from engine.settings import Settings

    with pytest.raises(EngineError) as info:
        create_app(Settings(deployment=tmp_path / "missing.json", data_dir=tmp_path), service)
    assert info.value.code == "CONFIG_INVALID" and "missing.json" in info.value.message


def test_every_api_and_failure_code_documented():
    from engine.api.problems import API_ERROR_CODES
    from engine.errors import FAILURE_CODES
    from tests.conftest import ROOT

    doc = (ROOT / "docs" / "api.md").read_text()
    missing = [code for code in [*API_ERROR_CODES, *FAILURE_CODES] if f"`{code}`" not in doc]
    assert not missing, f"docs/api.md lacks {missing}"


@pytest.mark.parametrize(("params", "wait"), [
    ({"status": "PENDING", "wait": 5}, ("PENDING", 5.0, False)),
    ({"status": "PENDING", "wait": 5, "until": "change"}, ("PENDING", 5.0, False)),
    ({"until": "end", "wait": 5}, (None, 5.0, True)),  # no status needed to wait for the end
    ({"status": "PENDING", "until": "end", "wait": 5}, ("PENDING", 5.0, True)),
])
def test_long_poll_passes_the_known_status_wait_and_until(client, service, params, wait):
    job_id = created_job(client, service)
    resp = get(client, f"/jobs/{job_id}", params=params)
    assert resp.status_code == 200
    assert service.waits == [(job_id, *wait)]


@pytest.mark.parametrize("params", [{"wait": 5}, {"until": "change", "wait": 5}, {"until": "end"},
                                    {"until": "end", "wait": 0}])
def test_a_read_with_nothing_to_wait_for_answers_without_a_long_poll(client, service, params):
    job_id = created_job(client, service)
    assert get(client, f"/jobs/{job_id}", params=params).json()["status"] == "PENDING"
    assert service.waits == []


@pytest.mark.parametrize("until", ["end", "change"])
def test_long_poll_is_capped_and_strangers_still_get_404(client, service, until):
    job_id = created_job(client, service)
    assert_problem(get(client, f"/jobs/{job_id}", params={"status": "PENDING", "wait": 3600, "until": until}),
                   422, "VALIDATION_ERROR")
    assert_problem(get(client, f"/jobs/{job_id}", STRANGER, params={"status": "PENDING", "wait": 1, "until": until}),
                   404, "NOT_FOUND")


@pytest.mark.parametrize("until", ["bogus", "END", ""])
def test_long_poll_until_other_than_change_or_end_is_a_validation_error(client, service, until):
    job_id = created_job(client, service)
    resp = get(client, f"/jobs/{job_id}", params={"status": "PENDING", "wait": 1, "until": until})
    assert_problem(resp, 422, "VALIDATION_ERROR")
    assert [e["loc"] for e in resp.json()["errors"]] == [["query", "until"]]
    assert service.waits == []


def test_openapi_describes_until(client):
    params = client.get("/openapi.json").json()["paths"]["/jobs/{job_id}"]["get"]["parameters"]
    until = next(p for p in params if p["name"] == "until")
    assert until["schema"]["enum"] == ["change", "end"] and until["schema"]["default"] == "change"
    assert "finished" in until["description"]


def test_health_shows_the_engine_address_or_null(client, service):
    service.health_report = {"ok": True, "checks": {"store": {"ok": True}}, "engine_address": OWNER.address}
    body = client.get("/health").json()
    assert body["engine_address"] == OWNER.address and set(body["checks"]) == {"store"}
    service.health_report = {"ok": True, "checks": {"store": {"ok": True}}}
    assert client.get("/health").json()["engine_address"] is None


def test_job_public_carries_the_attestation(client, service):
    import dataclasses

    from engine.api.schemas import JobPublic

    job_id = created_job(client, service)
    assert get(client, f"/jobs/{job_id}").json()["attestation"] is None
    att = {"signer": OWNER.address, "signature": "0x" + "11" * 65, "artifacts_digest": "0x" + "22" * 32,
           "finished_at": 1_790_000_000, "recipient": OWNER.address, "sealed_digest": "0x" + "33" * 32}

    service.jobs[job_id] = dataclasses.replace(service.jobs[job_id], attestation=att)
    assert get(client, f"/jobs/{job_id}").json()["attestation"] == att
    job = service.jobs[job_id]
    assert JobPublic.from_job(job).model_dump()["attestation"] == att


def test_quote_needs_the_submit_signature_and_a_preflight(client, service):
    """Quote is signed as submit; an engine (here: a fake) without preflight says so; nothing queues."""
    body = submit_body()
    body["request"]["query"] = "SELECT 2"  # no longer what was signed
    assert_problem(client.post("/jobs/quote", json=body), 401, "BAD_SIGNATURE")
    assert_problem(client.post("/jobs/quote", json=submit_body()), 503, "QUOTE_UNAVAILABLE")
    assert service.jobs == {} and service.submitted == []


def test_quote_answers_the_preflight_or_its_refusal(client, service):
    from engine.errors import ChainCheckFailure, QueryFailure
    from engine.preflight import Quote

    class Flight:
        answer: object = Quote(7, None, {"columns": [["users", "locale"]], "permissions_used": [1],
                                         "price": "7", "row_count": None}, False, 2, 9, 42)

        def quote(self, request, signer):
            if isinstance(self.answer, Exception):
                raise self.answer
            return self.answer

    service.preflight = flight = Flight()
    ok = client.post("/jobs/quote", json=submit_body())
    assert ok.status_code == 200 and ok.json()["price_wei"] == "7" and ok.json()["instruction_approved"] is True
    flight.answer = QueryFailure("no permission covers users.email", code="PERMISSION_DENIED")
    assert_problem(client.post("/jobs/quote", json=submit_body()), 422, "PERMISSION_DENIED")
    flight.answer = ChainCheckFailure("rpc down", code="CHAIN_UNAVAILABLE")
    assert_problem(client.post("/jobs/quote", json=submit_body()), 503, "CHAIN_UNAVAILABLE")
    assert service.jobs == {}


def test_job_list_refuses_a_bad_cursor_or_status(client):
    assert_problem(client.get("/jobs?cursor=bm90LWpzb24", headers=signed(OWNER, "GET", "/jobs")), 400,
                   "INVALID_CURSOR")
    assert_problem(client.get("/jobs?status=DONE", headers=signed(OWNER, "GET", "/jobs")), 400, "INVALID_REQUEST")
    assert_problem(client.get("/jobs?limit=101", headers=signed(OWNER, "GET", "/jobs")), 422, "VALIDATION_ERROR")
    assert_problem(client.get("/jobs"), 401, "AUTH_REQUIRED")
    assert_problem(client.get("/refiners/1/schema"), 401, "AUTH_REQUIRED")


def test_refiner_schema_needs_an_engine_that_reads_permissions(client, service):
    assert service.chain is None  # the fake: no chain to read permissions from
    assert_problem(get(client, "/refiners/2/schema"), 503, "SCHEMA_UNAVAILABLE")


def test_refiner_schema_answers_coverage_or_a_404_code(client, service, tmp_path, monkeypatch):
    import sqlite3

    from engine.data import DataCatalog
    from engine.errors import ChainCheckFailure
    from engine.query.model import Permission

    src = tmp_path / "src.db"
    with sqlite3.connect(src) as conn:
        conn.execute("CREATE TABLE users (id INTEGER, email TEXT)")
    conn.close()
    data = DataCatalog(tmp_path / "data", make_kek_file(tmp_path / "kek"))
    data.add(2, src)  # sealed: the schema is read in a query process

    class Chain:
        error = None

        def permissions(self, refiner_id, owner):
            if self.error:
                raise self.error
            return (Permission(1, owner, refiner_id, "users", "id", 3),)

    chain = Chain()
    monkeypatch.setattr(service, "chain", chain)
    monkeypatch.setattr(service, "data", data)
    ok = get(client, "/refiners/2/schema")
    assert ok.status_code == 200 and ok.json() == {"refiner_id": 2, "tables": [{"name": "users", "columns": [
        {"name": "id", "type": "INTEGER", "covered": True, "price_wei": "3"},
        {"name": "email", "type": "TEXT", "covered": False, "price_wei": None}]}]}
    assert_problem(get(client, "/refiners/3/schema"), 404, "DATA_NOT_FOUND")
    chain.error = ChainCheckFailure("no data refiner with id 2 on chain", code="REFINER_NOT_FOUND")
    assert_problem(get(client, "/refiners/2/schema"), 404, "REFINER_NOT_FOUND")
    chain.error = ChainCheckFailure("rpc down", code="CHAIN_UNAVAILABLE")
    assert_problem(get(client, "/refiners/2/schema"), 503, "CHAIN_UNAVAILABLE")


def test_job_progress_is_bytes_while_fetching_and_elapsed_while_running(client, service):
    job_id = created_job(client, service)
    service.advance(job_id, "FETCHING", progress={"bytes": 5, "total": 10})
    assert get(client, f"/jobs/{job_id}").json()["progress"] == {"bytes": 5, "total": 10, "elapsed_s": None}
    service.advance(job_id, "RUNNING")
    running = get(client, f"/jobs/{job_id}").json()["progress"]
    assert running["bytes"] is None and 0 <= running["elapsed_s"] < 60
    service.advance(job_id, "SUCCEEDED")
    assert get(client, f"/jobs/{job_id}").json()["progress"] is None


def test_the_api_dependencies_take_no_thread_hop() -> None:
    """FastAPI runs a plain `def` dependency in its thread pool: each would cost every request a hop."""
    import asyncio
    import typing

    from engine.api import deps
    from engine.api.routers import session

    annotated = [deps.Service, deps.Domain, deps.Config, deps.Clock, deps.Waiters, deps.CurrentWallet,
                 session.Sessions]
    for alias in annotated:
        (marker,) = [m for m in typing.get_args(alias)[1:] if hasattr(m, "dependency")]
        assert asyncio.iscoroutinefunction(marker.dependency), marker.dependency.__name__


def test_the_frameworks_own_http_errors_carry_registered_codes():
    """An HTTPException raised by FastAPI/Starlette itself (no engine code) still answers
    problem JSON with a stable, registered code: named where the engine has one, else HTTP_ERROR."""
    from fastapi import FastAPI, HTTPException

    from engine.api.problems import API_ERROR_CODES, install_problem_handlers

    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/raise/{status}")
    def _raise(status: int) -> None:
        raise HTTPException(status_code=status)

    client = TestClient(app)
    for status, code in ((400, "INVALID_REQUEST"), (413, "BODY_TOO_LARGE"), (414, "URL_TOO_LONG"),
                         (431, "HEADERS_TOO_LARGE"), (418, "HTTP_ERROR"), (409, "HTTP_ERROR")):
        answer = client.get(f"/raise/{status}")
        assert answer.status_code == status
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["code"] == code and code in API_ERROR_CODES
    assert client.get("/nowhere").json()["code"] == "NOT_FOUND"
    assert client.post("/raise/400").json()["code"] == "METHOD_NOT_ALLOWED"
