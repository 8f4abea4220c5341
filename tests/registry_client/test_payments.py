"""`Payments` against the deployed ComputeEngine and QueryEngine on a real anvil."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from registry_client.contracts import load_artifact
from registry_client.errors import InputError, InvalidArgument, NotDlpOwner
from registry_client.payments import ComputeJob, Payments

pytestmark = pytest.mark.chain
HASH = "ab" * 32


def _grant_query_engine_role(reg, admin: str, wallet: str) -> None:
    engine = reg.w3.eth.contract(address=reg.query_engine.address, abi=load_artifact("QueryEngine")["abi"])
    tx = engine.functions.grantRole(keccak(text="QUERY_ENGINE_ROLE"), wallet).transact({"from": admin})
    reg.w3.eth.wait_for_transaction_receipt(tx)


def test_deposit_job_charge_and_claim(registries, accounts):
    owner_reg, builder_reg = registries(accounts.dlp_owner), registries(accounts.builder)
    dlp_id = owner_reg.register_dlp("Paid DLP", treasury=accounts.stranger.address)
    refiner_id = owner_reg.add_refiner(dlp_id, "users", "https://s")
    instruction_id = builder_reg.add_instruction(HASH, "https://img")
    builder = Payments(builder_reg)

    builder.deposit(10**15)
    assert builder.balance() == 10**15
    job_id = builder.submit_job(instruction_id, 600, value=10**14)
    job = builder.job(job_id)
    assert isinstance(job, ComputeJob) and job.owner == accounts.builder.address and job.max_timeout == 600
    assert job.status == "Submitted" and job.engine is None
    assert builder.balance() == 11 * 10**14

    # The engine's wallet (here the stranger) holds QUERY_ENGINE_ROLE and charges the job.
    _grant_query_engine_role(owner_reg, accounts.deployer.address, accounts.stranger.address)
    tx = owner_reg.query_engine.functions.requestPaymentInVana(10**14, job_id, refiner_id).transact(
        {"from": accounts.stranger.address})
    owner_reg.w3.eth.wait_for_transaction_receipt(tx)
    assert builder.paid(job_id, dlp_id) == 10**14
    assert builder.balance() == 10**15
    assert builder.dlp_earnings(dlp_id) == 8 * 10**13

    with pytest.raises(NotDlpOwner):
        builder.claim(dlp_id)
    before = owner_reg.w3.eth.get_balance(accounts.stranger.address)
    assert Payments(owner_reg).claim(dlp_id) == 8 * 10**13
    assert owner_reg.w3.eth.get_balance(accounts.stranger.address) == before + 8 * 10**13
    assert builder.dlp_earnings(dlp_id) == 0

    builder.withdraw(10**15)
    assert builder.balance() == 0
    with pytest.raises(InvalidArgument, match="deposit is smaller"):
        builder.withdraw(1)
    with pytest.raises(InputError):
        builder.deposit(0)
