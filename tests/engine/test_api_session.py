"""The /session and /console routes over HTTP with a fake service: sign in once, read and cancel by token."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from eth_account.messages import encode_defunct
from fastapi.testclient import TestClient

from engine.sessions import SiweMessage, build_siwe
from registry_client.eip712 import JobRequest, job_request_typed_data
from tests.engine.api_fakes import CHAIN_ID, REGISTRY, make_app
from tests.engine.test_api import OWNER, STRANGER, assert_problem, created_job

HOST = "testserver"  # what TestClient sends as Host


def siwe_text(nonce: str, account=OWNER, lifetime: int = 600) -> str:
    now = int(time.time())
    return build_siwe(SiweMessage(domain=HOST, address=account.address, statement="Sign in.",
                                  uri=f"http://{HOST}/console", version="1", chain_id=CHAIN_ID, nonce=nonce,
                                  issued_at=now, expiration_time=now + lifetime))


def sign_in(client, account=OWNER) -> dict:
    nonce = client.get("/session/nonce").json()
    text = siwe_text(nonce["nonce"], account)
    signature = "0x" + bytes(account.sign_message(encode_defunct(text=text)).signature).hex()
    resp = client.post("/session", json={"message": text, "signature": signature})
    assert resp.status_code == 200, resp.text
    return resp.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_nonce_states_what_to_sign(client):
    body = client.get("/session/nonce").json()
    assert body["domain"] == HOST and body["chain_id"] == CHAIN_ID and body["max_lifetime_s"] == 3600
    assert len(body["nonce"]) == 32 and body["expires_at"] > time.time()


def test_a_session_reads_and_cancels_without_signatures(client, service):
    job_id = created_job(client, service)
    session = sign_in(client)
    assert session["address"] == OWNER.address and session["token"].startswith("cs1.")
    resp = client.get(f"/jobs/{job_id}", headers=bearer(session["token"]))
    assert resp.status_code == 200 and resp.json()["owner"] == OWNER.address
    assert client.post(f"/jobs/{job_id}/cancel", headers=bearer(session["token"])).json()["status"] == "CANCELLED"
    # Another wallet's session sees no such job (404, as for signed reads).
    other = sign_in(client, STRANGER)
    assert_problem(client.get(f"/jobs/{job_id}", headers=bearer(other["token"])), 404, "NOT_FOUND")


def test_bad_tokens_are_401_with_codes(client, service):
    job_id = created_job(client, service)
    token = sign_in(client)["token"]
    assert_problem(client.get(f"/jobs/{job_id}", headers=bearer(token[:-2] + "00")), 401, "SESSION_INVALID")
    assert_problem(client.get(f"/jobs/{job_id}", headers={"Authorization": "Bearer "}), 401, "SESSION_INVALID")
    # Another scheme is not a session: the request still needs its signature.
    assert_problem(client.get(f"/jobs/{job_id}", headers={"Authorization": "Basic abc"}), 401, "AUTH_REQUIRED")
    wrong_chain = token.replace(f".{CHAIN_ID}.", ".1.")
    assert_problem(client.get(f"/jobs/{job_id}", headers=bearer(wrong_chain)), 401, "SESSION_WRONG_CHAIN")


def test_an_expired_session_is_401(service):
    clock = {"now": time.time()}
    with TestClient(make_app(service, clock=lambda: clock["now"]), raise_server_exceptions=False) as client:
        job_id = created_job(client, service)
        token = sign_in(client)["token"]
        clock["now"] += 601
        assert_problem(client.get(f"/jobs/{job_id}", headers=bearer(token)), 401, "SESSION_EXPIRED")


def test_sign_in_refusals_over_http(client):
    nonce = client.get("/session/nonce").json()["nonce"]
    text = siwe_text(nonce)
    signature = "0x" + bytes(OWNER.sign_message(encode_defunct(text=text)).signature).hex()
    assert_problem(client.post("/session", json={"message": text, "signature": "0x00"}), 401, "SIWE_BAD_SIGNATURE")
    assert client.post("/session", json={"message": text, "signature": signature}).status_code == 200
    assert_problem(client.post("/session", json={"message": text, "signature": signature}), 401,
                   "SIWE_NONCE_UNKNOWN")
    assert_problem(client.post("/session", json={"message": "hello", "signature": signature}), 401, "SIWE_INVALID")
    assert_problem(client.post("/session", json={"message": text, "signature": signature},
                               headers={"Host": "evil.example"}), 401, "SIWE_WRONG_DOMAIN")


def test_console_config_serves_the_typed_data_the_engine_verifies(client, service):
    config = client.get("/console/config.json").json()
    assert config["chain_id"] == CHAIN_ID
    assert config["engine_address"] is None  # this engine attests nothing
    service.engine_address = OWNER.address
    assert client.get("/console/config.json").json()["engine_address"] == OWNER.address
    assert config["addresses"]["compute_instruction_registry"] == REGISTRY
    req = JobRequest.create(1, 2, "SELECT 1", [5], 3, 4)
    expected = job_request_typed_data(CHAIN_ID, REGISTRY, req)
    assert config["job_request"] == {k: v for k, v in expected.items() if k != "message"}


def test_console_without_a_bundle_says_how_to_build_it(service, tmp_path):
    app = make_app(service)
    app.state.console_dir = tmp_path / "missing"
    with TestClient(app, raise_server_exceptions=False) as client:
        page = client.get("/console")
        assert page.status_code == 503 and "make setup" in page.text
        assert_problem(client.get("/console/app.js"), 503, "CONSOLE_NOT_BUILT")


def test_console_serves_its_bundle_with_a_strict_policy(service, tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html><script src='/console/app.js'></script>")
    (tmp_path / "app.js").write_text("console.log(1)")
    app = make_app(service)
    app.state.console_dir = tmp_path
    with TestClient(app, raise_server_exceptions=False) as client:
        page = client.get("/console")
        assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
        assert client.get("/console/app.js").headers["content-type"].startswith("text/javascript")
        assert_problem(client.get("/console/missing.js"), 404, "NOT_FOUND")
        assert_problem(client.get("/console/..%2Fsecret"), 404, "NOT_FOUND")


def test_iso_times_in_messages_are_utc():
    text = siwe_text("abcdef0123456789")
    issued = text.split("Issued At: ")[1].split("\n")[0]
    assert issued.endswith("Z") and datetime.fromisoformat(issued).tzinfo == UTC
