"""engine/vana.py and the /job/{id} routes' refusals, without a chain (fakes for the on-chain job)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from fastapi.testclient import TestClient

from engine.errors import AuthError, EngineError, RequestError
from engine.store import StepEvent
from engine.vana import (
    VANA_NONCE_BASE,
    VanaInput,
    build_request,
    read_compute_job,
    recover_personal,
    vana_digest,
    vana_status,
)
from registry_client.errors import RpcUnavailable
from registry_client.payments import ComputeJob
from tests.conftest import ANVIL_KEYS
from tests.engine.api_fakes import FakeService, make_app

OWNER = Account.from_key(ANVIL_KEYS[3])
STRANGER = Account.from_key(ANVIL_KEYS[4])
QUERY = "SELECT kind FROM activities"


def sign(account, text: str) -> str:
    return "0x" + bytes(account.sign_message(encode_defunct(text=text)).signature).hex()


def on_chain(job_id: int = 7, owner: str = OWNER.address) -> ComputeJob:
    return ComputeJob(job_id, owner, 100, False, "Submitted", None, 3, 0, "")


def run(status: str, *steps: str) -> SimpleNamespace:
    return SimpleNamespace(status=status, steps=tuple(StepEvent(s, 0.0) for s in (*steps, status)))


@pytest.mark.parametrize(("job", "expected"), [
    (run("PENDING"), "pending"),
    (run("FETCHING", "PENDING", "VERIFYING"), "running"),
    (run("RUNNING", "PENDING", "QUERYING"), "running"),
    (run("SUCCEEDED", "PENDING", "RUNNING", "COLLECTING"), "success"),
    (run("FAILED", "PENDING", "VERIFYING", "QUERYING"), "query_failed"),
    (run("FAILED", "PENDING", "QUERYING", "RUNNING"), "failed"),
    (run("FAILED", "PENDING", "VERIFYING"), "failed"),
    (run("CANCELLED", "PENDING", "QUERYING"), "canceled"),
])
def test_status_strings_are_vanas(job, expected) -> None:
    assert vana_status(job) == expected


def test_recover_personal_names_the_problem() -> None:
    assert recover_personal("7", sign(OWNER, "7"), "x") == OWNER.address
    with pytest.raises(AuthError) as missing:
        recover_personal("7", None, "x-job-id-signature")
    assert missing.value.code == "AUTH_REQUIRED"
    for garbage in ("0x1234", "not hex", "0x" + "00" * 65):
        with pytest.raises(AuthError) as bad:
            recover_personal("7", garbage, "x-job-id-signature")
        assert bad.value.code == "BAD_SIGNATURE" and garbage not in bad.value.message


def test_build_request_binds_the_on_chain_job() -> None:
    body = VanaInput(QUERY, sign(OWNER, QUERY), 2, [1])
    req = build_request(on_chain(), OWNER.address, body, 2_000_000_000)
    assert (req.instruction_id, req.refiner_id, req.compute_job_id) == (3, 2, 7)
    assert req.nonce == VANA_NONCE_BASE + 7 and req.params == [1]
    # The deadline is the engine's, not part of the idempotency key.
    later = build_request(on_chain(), OWNER.address, body, 2_000_000_999)
    assert vana_digest(1, 7, req) == vana_digest(1, 7, later) != vana_digest(1, 8, req)


def test_build_request_refuses_a_stranger_and_a_foreign_query_signature() -> None:
    with pytest.raises(AuthError) as stranger:
        build_request(on_chain(), STRANGER.address, VanaInput(QUERY, sign(STRANGER, QUERY), 2), 1)
    assert (stranger.value.code, stranger.value.http_status) == ("COMPUTE_JOB_NOT_OWNED", 403)
    with pytest.raises(AuthError) as foreign:
        build_request(on_chain(), OWNER.address, VanaInput(QUERY, sign(STRANGER, QUERY), 2), 1)
    assert (foreign.value.code, foreign.value.http_status) == ("QUERY_SIGNATURE_MISMATCH", 403)
    with pytest.raises(AuthError) as other_text:
        build_request(on_chain(), OWNER.address, VanaInput(QUERY + " ", sign(OWNER, QUERY), 2), 1)
    assert other_text.value.code == "QUERY_SIGNATURE_MISMATCH"


def test_read_compute_job_translates_chain_errors() -> None:
    with pytest.raises(RequestError) as missing:
        read_compute_job(lambda _id: None, 9)
    assert (missing.value.code, missing.value.http_status) == ("COMPUTE_JOB_NOT_FOUND", 404)

    def down(_id: int) -> ComputeJob:
        raise RpcUnavailable("connection refused to http://10.0.0.1:8545")

    with pytest.raises(EngineError) as unavailable:
        read_compute_job(down, 9)
    assert (unavailable.value.code, unavailable.value.http_status) == ("CHAIN_UNAVAILABLE", 503)
    assert "10.0.0.1" not in unavailable.value.message
    with pytest.raises(EngineError) as no_reader:
        read_compute_job(None, 9)
    assert no_reader.value.code == "CHAIN_UNAVAILABLE"


def _client(reader) -> TestClient:
    app = make_app(FakeService(artifact_dir=Path(tempfile.mkdtemp(prefix="vana-unit-"))))
    app.state.compute_jobs = reader
    return TestClient(app)


def _body(signer=OWNER, query: str = QUERY) -> dict:
    return {"input": {"query": query, "query_signature": sign(signer, query), "refiner_id": 2}}


def test_route_answers_problem_json_for_each_refusal() -> None:
    client = _client(lambda job_id: on_chain(job_id) if job_id == 7 else None)
    cases = [
        (client.post("/job/7", json=_body(STRANGER), headers={"x-job-id-signature": sign(STRANGER, "7")}),
         403, "COMPUTE_JOB_NOT_OWNED"),
        (client.post("/job/7", json=_body(STRANGER), headers={"x-job-id-signature": sign(OWNER, "7")}),
         403, "QUERY_SIGNATURE_MISMATCH"),
        (client.post("/job/8", json=_body(), headers={"x-job-id-signature": sign(OWNER, "8")}),
         404, "COMPUTE_JOB_NOT_FOUND"),
        (client.post("/job/7", json=_body()), 401, "AUTH_REQUIRED"),
        (client.post("/job/07", json=_body(), headers={"x-job-id-signature": sign(OWNER, "07")}),
         422, "VALIDATION_ERROR"),
        (client.post("/job/7", json={"input": {**_body()["input"], "extra": 1}},
                     headers={"x-job-id-signature": sign(OWNER, "7")}), 422, "VALIDATION_ERROR"),
    ]
    for answer, status, code in cases:
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["code"] == code


def test_route_answers_503_when_the_chain_is_down() -> None:
    def down(_id: int) -> ComputeJob:
        raise RpcUnavailable("connection refused")

    answer = _client(down).post("/job/7", json=_body(), headers={"x-job-id-signature": sign(OWNER, "7")})
    assert answer.status_code == 503 and answer.json()["code"] == "CHAIN_UNAVAILABLE"


def test_openapi_states_the_runtime_query_limit_for_vana_bodies() -> None:
    schema = _client(None).get("/openapi.json").json()
    query = schema["components"]["schemas"]["VanaInputBody"]["properties"]["query"]
    assert query["maxLength"] == 100_000  # ApiConfig.query_max_chars, as for /jobs


@pytest.mark.parametrize("plaintext", [False, True])
def test_vana_jobs_are_sealed_to_the_owners_recovered_key_unless_the_operator_says_plaintext(plaintext) -> None:
    from dataclasses import dataclass

    from engine.vana import recover_personal_key
    from registry_client.sealing import public_key_of

    @dataclass
    class Settings:
        auth_window_s: float = 60.0
        deadline_max_s: float = 24 * 3600.0
        vana_plaintext_results: bool = plaintext

    service = FakeService(artifact_dir=Path(tempfile.mkdtemp(prefix="vana-unit-")))
    app = make_app(service, settings=Settings())
    app.state.compute_jobs = lambda job_id: on_chain(job_id)
    # The fake service checks /jobs digests (not Vana's) after recording the call: only the
    # key the route hands it matters here.
    TestClient(app, raise_server_exceptions=False).post(
        "/job/7", json=_body(), headers={"x-job-id-signature": sign(OWNER, "7")})
    owner_key = public_key_of(bytes(OWNER.key))
    assert recover_personal_key("7", sign(OWNER, "7")) == owner_key
    assert service.signer_keys == [None if plaintext else owner_key]
