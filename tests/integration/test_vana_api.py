"""Vana's client flow against the real engine (issue 10 item 3): anvil, Docker, HTTP.

Each test does what vana-com/data-access-demo's client does: `submitJob` on the
ComputeEngine with value (its deposit), `personal_sign` of the job id in
`x-job-id-signature`, `POST /job/{id}` with `{input: {query, query_signature,
refiner_id}}`, poll `GET /job/{id}` until a terminal status, download
`artifacts[].url` with the same header. The engine charges prices
(`charge_prices=True`, its wallet authorised as in test_engine_payments.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from eth_account.messages import encode_defunct

from registry_client.contracts import connect
from registry_client.payments import Payments
from tests.integration.conftest import DENIED_QUERY, PYTHON_BASE, SIMPLE_QUERY, running_engine

pytestmark = [pytest.mark.docker, pytest.mark.chain]

PRICE = 1_000  # activities, all columns (conftest GRANTS)
FUNDING = 5_000
TERMINAL = {"success", "failed", "query_failed", "canceled"}
SCRIPT = 'echo \'{"ok": 1}\' > /mnt/output/stats.json\n'


def sign(account: Any, text: str) -> str:
    """personal_sign, as viem's account.signMessage({message}) does."""
    return "0x" + bytes(account.sign_message(encode_defunct(text=text)).signature).hex()


@dataclass
class Vana:
    http: httpx.Client
    world: Any
    builder: Payments
    instruction_id: int
    settings: Any

    def on_chain_job(self) -> int:
        """Vana's submitJob(maxTimeout, gpuRequired, instructionId) funded with value."""
        return self.builder.submit_job(self.instruction_id, 100, value=FUNDING)

    def body(self, query: str = SIMPLE_QUERY, signer: Any = None) -> dict:
        signer = signer or self.world.accounts.builder
        return {"input": {"query": query, "query_signature": sign(signer, query),
                          "refiner_id": self.world.refiner_id}}

    def post(self, job_id: int, body: dict, signer: Any = None) -> httpx.Response:
        signer = signer or self.world.accounts.builder
        return self.http.post(f"/job/{job_id}", json=body, headers={"x-job-id-signature": sign(signer, str(job_id))})

    def get(self, url: str, job_id: int, signer: Any = None) -> httpx.Response:
        signer = signer or self.world.accounts.builder
        return self.http.get(url, headers={"x-job-id-signature": sign(signer, str(job_id))})

    def poll(self, job_id: int, timeout_s: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            answer = self.get(f"/job/{job_id}", job_id)
            assert answer.status_code == 200, answer.text
            if answer.json()["status"] in TERMINAL:
                return answer.json()
            assert time.monotonic() < deadline, answer.json()
            time.sleep(0.1)


@pytest.fixture(scope="module")
def vana(world, docker_client, job_image, tmp_path_factory) -> Iterator[Vana]:
    deployer = Payments(connect(world.rpc_url, world.deployment, world.accounts.deployer))
    deployer.authorize_engine(world.accounts.stranger.address)  # the engine's wallet (key 4)
    instruction_id = world.publish_image(job_image("vana-ok", SCRIPT))
    with running_engine(world, tmp_path_factory.mktemp("vana-engine"), charge_prices=True,
                        vana_plaintext_results=True) as engine, \
            httpx.Client(base_url=engine.url, timeout=30) as http:
        yield Vana(http, world, Payments(world.builder), instruction_id, engine.settings)


def _problem(answer: httpx.Response, status: int, code: str) -> dict:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["code"] == code, answer.json()
    return answer.json()


def test_vana_client_flow_runs_pays_and_serves_the_owner_only(vana: Vana) -> None:
    owner = vana.world.accounts.builder.address
    balance_before = vana.builder.balance()
    job_id = vana.on_chain_job()
    assert vana.builder.balance() == balance_before + FUNDING  # submitJob's value is the deposit

    submitted = vana.post(job_id, vana.body())
    assert submitted.status_code == 201, submitted.text
    run = submitted.json()
    assert run["job_id"] == str(job_id) and run["run_id"]
    assert run["status"] in {"pending", "running"}

    final = vana.poll(job_id)
    assert final["status"] == "success", final
    assert final["run_id"] == run["run_id"] and final["engine_status"] == "SUCCEEDED"
    [artifact] = final["artifacts"]
    assert artifact["name"] == "stats.json"
    assert artifact["url"] == f"{vana.http.base_url}".rstrip("/") + f"/job/{job_id}/artifacts/stats.json"
    download = vana.get(artifact["url"], job_id)
    assert download.status_code == 200, download.text
    assert json.loads(download.content) == {"ok": 1}
    assert download.headers["x-content-sha256"] == artifact["sha256"]

    # The price moved on chain, from this on-chain job.
    assert vana.builder.paid(job_id, vana.world.dlp_id) == PRICE
    assert vana.builder.balance() == balance_before + FUNDING - PRICE
    assert vana.builder.job(job_id).owner == owner

    # A stranger's job-id signature sees nothing: not the run, not its artifact.
    stranger = vana.world.accounts.stranger
    _problem(vana.get(f"/job/{job_id}", job_id, stranger), 404, "NOT_FOUND")
    _problem(vana.get(artifact["url"], job_id, stranger), 404, "NOT_FOUND")
    # Nor does the owner's signature of another id.
    answer = vana.http.get(f"/job/{job_id}", headers={"x-job-id-signature": sign(vana.world.accounts.builder,
                                                                                 str(job_id + 1))})
    _problem(answer, 404, "NOT_FOUND")


def test_a_replay_returns_the_same_run_and_another_query_is_refused(vana: Vana) -> None:
    job_id = vana.on_chain_job()
    first = vana.post(job_id, vana.body())
    assert first.status_code == 201, first.text

    again = vana.post(job_id, vana.body())  # a fresh signature of the same id and query

    assert again.status_code == 200, again.text
    assert again.json()["run_id"] == first.json()["run_id"]
    other = vana.post(job_id, vana.body("SELECT kind FROM activities"))
    assert "new on-chain job" in _problem(other, 409, "COMPUTE_JOB_USED")["detail"]
    assert vana.poll(job_id)["status"] == "success"
    # After the run, the replay is still the same run: one run, one charge.
    assert vana.post(job_id, vana.body()).json()["run_id"] == first.json()["run_id"]
    assert vana.builder.paid(job_id, vana.world.dlp_id) == PRICE


def test_a_strangers_job_id_signature_is_refused(vana: Vana) -> None:
    job_id = vana.on_chain_job()
    stranger = vana.world.accounts.stranger

    refused = vana.post(job_id, vana.body(signer=stranger), signer=stranger)

    assert "not owned" in _problem(refused, 403, "COMPUTE_JOB_NOT_OWNED")["detail"]
    _problem(vana.get(f"/job/{job_id}", job_id), 404, "NOT_FOUND")  # nothing was created


def test_a_wrong_query_signature_is_refused(vana: Vana) -> None:
    job_id = vana.on_chain_job()
    by_stranger = vana.body(signer=vana.world.accounts.stranger)
    other_text = vana.body()
    other_text["input"]["query"] = "SELECT kind FROM activities"  # signed: SIMPLE_QUERY

    for body in (by_stranger, other_text):
        _problem(vana.post(job_id, body), 403, "QUERY_SIGNATURE_MISMATCH")
    garbled = vana.body()
    garbled["input"]["query_signature"] = "0x1234"
    _problem(vana.post(job_id, garbled), 401, "BAD_SIGNATURE")
    _problem(vana.get(f"/job/{job_id}", job_id), 404, "NOT_FOUND")  # nothing was created


def test_missing_signature_and_unknown_on_chain_job(vana: Vana) -> None:
    _problem(vana.http.post("/job/1", json=vana.body()), 401, "AUTH_REQUIRED")
    _problem(vana.http.get("/job/1"), 401, "AUTH_REQUIRED")
    _problem(vana.post(10**12, vana.body()), 404, "COMPUTE_JOB_NOT_FOUND")
    _problem(vana.http.get("/job/0x1f"), 422, "VALIDATION_ERROR")
    # The engine's own limits hold on this route too (checked by the service, as for /jobs).
    too_long = "SELECT kind FROM activities" + " " * vana.settings.query_max_chars
    _problem(vana.post(vana.on_chain_job(), vana.body(too_long)), 400, "QUERY_TOO_LONG")


def test_a_refused_query_reads_query_failed_and_is_not_charged(vana: Vana) -> None:
    job_id = vana.on_chain_job()
    balance = vana.builder.balance()
    assert vana.post(job_id, vana.body(DENIED_QUERY)).status_code == 201

    final = vana.poll(job_id)

    assert final["status"] == "query_failed", final
    assert final["failure_code"] == "PERMISSION_DENIED" and final["artifacts"] == []
    assert vana.builder.paid(job_id, vana.world.dlp_id) == 0
    assert vana.builder.balance() == balance


def test_a_job_shaped_like_vanas_template_runs_through_vanas_api(vana: Vana, labelled_image, python_base) -> None:
    # The same template-shaped worker that runs through /jobs (test_engine_layouts.py), here
    # as Vana's client runs it: on-chain job, POST /job/{id}, poll, download.
    from tests.integration.test_engine_layouts import VANA_SHAPED, _rows

    image = labelled_image("vana-shaped-api", VANA_SHAPED, base=PYTHON_BASE, command='["python", "/job.sh"]')
    instruction_id = vana.world.publish(*image)
    job_id = vana.builder.submit_job(instruction_id, 100, value=FUNDING)
    submitted = vana.post(job_id, vana.body())
    assert submitted.status_code == 201, submitted.text
    final = vana.poll(job_id)
    assert final["status"] == "success", final
    [artifact] = final["artifacts"]
    stats = json.loads(vana.get(artifact["url"], job_id).content)
    assert stats == {"rows": _rows(vana.world), "columns": ["duration_s", "kind"]}
    assert vana.builder.paid(job_id, vana.world.dlp_id) == PRICE


def test_by_default_a_vana_runs_results_are_sealed_to_its_owner(world, job_image, tmp_path_factory) -> None:
    # Default settings (no vana_plaintext_results): the API is Vana's byte for byte, the
    # file is sealed to the owner's key recovered from x-job-id-signature.
    from registry_client.sealing import open_bytes

    deployer = Payments(connect(world.rpc_url, world.deployment, world.accounts.deployer))
    deployer.authorize_engine(world.accounts.stranger.address)
    instruction_id = world.publish_image(job_image("vana-ok", SCRIPT))
    with running_engine(world, tmp_path_factory.mktemp("vana-sealed"), charge_prices=True) as engine, \
            httpx.Client(base_url=engine.url, timeout=30) as http:
        vana = Vana(http, world, Payments(world.builder), instruction_id, engine.settings)
        job_id = vana.on_chain_job()
        assert vana.post(job_id, vana.body()).status_code == 201
        final = vana.poll(job_id)
        assert final["status"] == "success", final
        [artifact] = final["artifacts"]
        download = vana.get(artifact["url"], job_id)
        assert download.status_code == 200 and download.content.startswith(b"C2DSEAL")
        assert download.headers["content-type"] == "application/vnd.c2d.sealed"
        plain = open_bytes(download.content, private_key=bytes(world.accounts.builder.key))
        assert json.loads(plain) == {"ok": 1}
