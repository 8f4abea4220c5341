"""The engine charges the price (issue 9 item 6), end to end: real anvil, engine, Docker, HTTP.

One engine that charges (`charge_prices=True`), its wallet (anvil key 4, the
stranger's) authorised as the QueryEngine's QUERY_ENGINE_ROLE by the deployer.
The builder deposits in the ComputeEngine and names an on-chain job it owns;
every test reads the balances before and after, so the exact amounts moved are
asserted whatever ran before. SIMPLE_QUERY reads `activities` (priced 1,000 wei
in the world's grants); the DLP's share is 80% (`registry deploy`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from registry_client.contracts import connect
from registry_client.eip712 import JobRequest
from registry_client.errors import EngineApiError
from registry_client.payments import Payments
from tests.integration.conftest import DENIED_QUERY, SIMPLE_QUERY, running_engine

pytestmark = [pytest.mark.docker, pytest.mark.chain]

WAIT_S = 60.0
PRICE = 1_000  # activities, all columns (conftest GRANTS)
DLP_SHARE = PRICE * 80 // 100
OK_SCRIPT = 'echo "ok $COMPUTE_JOB_ID" > /mnt/output/ok.txt\n'
# Fails unless the results table has a column named `again` (its name is in the
# file's schema): a first run that paid and failed, then a second one naming the
# same compute job. (Not the file's size: a one-row and a 1,000-row result both
# fit one 16 KiB page.)
PICKY_SCRIPT = ('grep -q again "$INPUT_PATH/query_results.db" || exit 3\n'
                'echo ok > /mnt/output/ok.txt\n')
AGAIN_QUERY = "SELECT kind AS again, duration_s FROM activities LIMIT ?"
LIMITED_QUERY = "SELECT kind, duration_s FROM activities LIMIT ?"


@dataclass
class Money:
    engine: object
    world: object
    builder: Payments
    stranger: Payments
    owner: Payments
    instruction_id: int

    def balance(self) -> int:
        return self.builder.balance()

    def earnings(self) -> int:
        return self.owner.dlp_earnings(self.world.dlp_id)

    def compute_job(self, max_timeout_s: int = 600, instruction_id: int | None = None) -> int:
        return self.builder.submit_job(instruction_id or self.instruction_id, max_timeout_s)

    def run(self, compute_job_id: int, query: str = SIMPLE_QUERY, params: list | None = None, *,
            instruction_id: int | None = None) -> dict:
        job = self.engine.builder.submit(instruction_id or self.instruction_id, self.world.refiner_id, query,
                                         params, compute_job_id=compute_job_id)
        return self.engine.builder.wait(job["id"], poll_s=0.1, timeout_s=WAIT_S)

    def refused(self, compute_job_id: int, code: str, query: str = SIMPLE_QUERY) -> str:
        """Submit answers 422 with `code` at once (the preflight): no job, nothing charged."""
        before = [j["id"] for j in self.engine.builder.jobs(limit=1)["jobs"]]
        with pytest.raises(EngineApiError) as info:
            self.engine.builder.submit(self.instruction_id, self.world.refiner_id, query, [],
                                       compute_job_id=compute_job_id)
        assert (info.value.status, info.value.code) == (422, code), info.value
        assert [j["id"] for j in self.engine.builder.jobs(limit=1)["jobs"]] == before
        return info.value.detail


@pytest.fixture(scope="module")
def money(world, docker_client, job_image, tmp_path_factory) -> Iterator[Money]:
    deployer = Payments(connect(world.rpc_url, world.deployment, world.accounts.deployer))
    deployer.authorize_engine(world.accounts.stranger.address)  # the engine's wallet (key 4)
    assert deployer.is_engine_authorized(world.accounts.stranger.address)
    builder = Payments(world.builder)
    builder.deposit(100_000)
    instruction_id = world.publish_image(job_image("paid-ok", OK_SCRIPT))
    with running_engine(world, tmp_path_factory.mktemp("paid-engine"), charge_prices=True) as engine:
        yield Money(engine, world, builder,
                    Payments(connect(world.rpc_url, world.deployment, world.accounts.stranger)),
                    Payments(world.owner), instruction_id)


def _failed(job: dict, code: str) -> str:
    assert job["status"] == "FAILED", job
    assert job["failure"]["code"] == code, job["failure"]
    return job["failure"]["message"]


def test_paid_job_succeeds_and_the_money_moves_exactly(money: Money, tmp_path) -> None:
    compute_job = money.compute_job()
    balance, earnings = money.balance(), money.earnings()
    client = money.engine.builder
    # The quote, first without a compute job (it says one is required), then with it: nothing moves.
    unnamed = client.quote_request(client.request(money.instruction_id, money.world.refiner_id, SIMPLE_QUERY))
    named = client.quote_request(client.request(money.instruction_id, money.world.refiner_id, SIMPLE_QUERY,
                                                compute_job_id=compute_job))
    assert unnamed["compute_job_id_required"] is named["compute_job_id_required"] is True
    assert unnamed["price_wei"] == named["price_wei"] == str(PRICE) and named["token"] is None
    assert money.balance() == balance and money.builder.paid(compute_job, money.world.dlp_id) == 0

    job = money.run(compute_job)
    assert {**job["access_report"], "row_count": None} == named["access_report"]

    assert job["status"] == "SUCCEEDED", job
    assert job["price_wei"] == str(PRICE) and job["compute_job_id"] == str(compute_job)
    assert job["payment"] == {"compute_job_id": str(compute_job), "amount": str(PRICE), "token": None,
                              "charged": True, "decision": "charge"}
    assert money.balance() == balance - PRICE
    assert money.builder.paid(compute_job, money.world.dlp_id) == PRICE
    assert money.earnings() == earnings + DLP_SHARE
    # The container's COMPUTE_JOB_ID is the on-chain job it ran for (Vana's template wants it).
    [ok] = money.engine.builder.download(job["id"], tmp_path)
    assert ok.read_text() == f"ok {compute_job}\n"
    # The DLP's owner claims its share to the DLP's treasury (here: the owner's address).
    assert money.owner.claim(money.world.dlp_id) == earnings + DLP_SHARE
    assert money.earnings() == 0


def test_insufficient_balance_fails_and_nothing_moves(money: Money) -> None:
    compute_job = money.compute_job()
    money.builder.withdraw(money.balance())
    money.builder.deposit(PRICE - 1)
    earnings = money.earnings()
    try:
        assert "deposit" in money.refused(compute_job, "INSUFFICIENT_BALANCE")
        assert money.balance() == PRICE - 1
        assert money.builder.paid(compute_job, money.world.dlp_id) == 0
        assert money.earnings() == earnings
    finally:
        money.builder.deposit(100_000)


def test_a_query_refused_by_permissions_is_never_charged(money: Money) -> None:
    compute_job = money.compute_job()
    balance, earnings = money.balance(), money.earnings()

    money.refused(compute_job, "PERMISSION_DENIED", DENIED_QUERY)

    assert money.balance() == balance
    assert money.builder.paid(compute_job, money.world.dlp_id) == 0
    assert money.earnings() == earnings


def test_a_priced_query_without_a_compute_job_is_refused_unpaid(money: Money) -> None:
    balance = money.balance()
    assert "computeJobId" in money.refused(0, "PAYMENT_REQUIRED")
    assert money.balance() == balance


def test_replays_and_reuse_never_charge_twice(money: Money) -> None:
    compute_job = money.compute_job()
    balance = money.balance()
    request = JobRequest.create(money.instruction_id, money.world.refiner_id, SIMPLE_QUERY, [], 424242,
                                int(time.time()) + 600, compute_job)
    submitted = money.engine.builder.submit_request(request)
    first = money.engine.builder.wait(submitted["id"], poll_s=0.1, timeout_s=WAIT_S)
    assert first["status"] == "SUCCEEDED", first
    # The same signed request again is the same job: no second run, no second charge.
    assert money.engine.builder.submit_request(request)["id"] == first["id"]
    # A new request naming the paid (and successful) compute job is refused, unpaid.
    money.refused(compute_job, "COMPUTE_JOB_USED")
    assert money.balance() == balance - PRICE
    assert money.builder.paid(compute_job, money.world.dlp_id) == PRICE


def test_a_run_that_paid_and_failed_is_not_charged_again(money: Money, job_image) -> None:
    instruction_id = money.world.publish_image(job_image("paid-picky", PICKY_SCRIPT))
    compute_job = money.compute_job(instruction_id=instruction_id)
    balance = money.balance()

    first = money.run(compute_job, LIMITED_QUERY, [1], instruction_id=instruction_id)
    _failed(first, "EXIT_NONZERO")
    assert first["payment"]["charged"] is True
    assert money.balance() == balance - PRICE

    # Same owner, same compute job, a fresh request (as after an engine restart): prepaid.
    second = money.run(compute_job, AGAIN_QUERY, [100_000], instruction_id=instruction_id)
    assert second["status"] == "SUCCEEDED", second
    assert second["payment"]["decision"] == "prepaid" and second["payment"]["charged"] is False
    assert money.balance() == balance - PRICE
    assert money.builder.paid(compute_job, money.world.dlp_id) == PRICE


def test_a_job_naming_someone_elses_compute_job_is_refused(money: Money) -> None:
    theirs = money.stranger.submit_job(money.instruction_id, 600, value=10_000)
    their_balance, balance = money.stranger.balance(), money.balance()

    message = money.refused(theirs, "COMPUTE_JOB_NOT_OWNED")

    assert money.world.accounts.builder.address in message
    assert money.stranger.balance() == their_balance and money.balance() == balance
    assert money.builder.paid(theirs, money.world.dlp_id) == 0


def test_an_unknown_or_ended_compute_job_is_refused(money: Money) -> None:
    money.refused(10**9, "COMPUTE_JOB_NOT_FOUND")
    cancelled = money.compute_job()
    money.world.builder._transact(money.world.builder.compute_engine.functions.cancelJob(cancelled))
    assert "Canceled" in money.refused(cancelled, "COMPUTE_JOB_INVALID")


def test_the_on_chain_max_timeout_bounds_the_run(money: Money, job_image) -> None:
    instruction_id = money.world.publish_image(job_image("paid-sleepy", "sleep 3\necho late > /mnt/output/x\n"))
    compute_job = money.compute_job(max_timeout_s=1, instruction_id=instruction_id)

    job = money.run(compute_job, instruction_id=instruction_id)

    # The operator allows 4 s (RUN_TIMEOUT_S); the job's owner asked for 1 s on chain.
    assert "1 s" in _failed(job, "TIMEOUT")
    assert job["payment"]["charged"] is True
