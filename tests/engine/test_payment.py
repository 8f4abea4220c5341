"""engine/payment.py: the charging rule (pure) and the pay-once send, with a fake Payments."""

from __future__ import annotations

import pytest
import requests

from engine.chain import RetryPolicy
from engine.errors import ChainCheckFailure, PaymentFailure
from engine.payment import Charger, decide
from registry_client.errors import ContractRevert, RpcUnavailable
from registry_client.payments import ComputeJob

OWNER = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
OTHER = "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"


def _job(owner: str = OWNER, status: str = "Submitted", instruction: int = 1, timeout: int = 600) -> ComputeJob:
    return ComputeJob(5, owner, timeout, False, status, None, instruction, 0, "")


@pytest.mark.parametrize(("amount", "cj", "job", "paid", "failed", "expected"), [
    (0, 0, None, 0, False, "free"),
    (0, 5, _job(), 0, False, "free"),
    (10, 5, _job(), 0, False, "charge"),
    (10, 5, _job(), 10, True, "prepaid"),
    (10, 5, _job(status="Running"), 0, False, "charge"),
])
def test_decide(amount, cj, job, paid, failed, expected):
    assert decide(amount, cj, OWNER, 1, job, paid, failed) == expected


@pytest.mark.parametrize(("amount", "cj", "job", "paid", "failed", "code"), [
    (10, 0, None, 0, False, "PAYMENT_REQUIRED"),
    (10, 5, None, 0, False, "COMPUTE_JOB_NOT_FOUND"),
    (0, 5, _job(owner=OTHER), 0, False, "COMPUTE_JOB_NOT_OWNED"),  # even a free job
    (10, 5, _job(instruction=2), 0, False, "COMPUTE_JOB_INVALID"),
    (10, 5, _job(status="Completed"), 0, False, "COMPUTE_JOB_INVALID"),
    (10, 5, _job(status="Canceled"), 0, False, "COMPUTE_JOB_INVALID"),
    (10, 5, _job(), 10, False, "COMPUTE_JOB_USED"),  # paid by a run that succeeded (or someone's)
    (20, 5, _job(), 10, True, "COMPUTE_JOB_USED"),  # a dearer query than what was paid
])
def test_decide_refuses(amount, cj, job, paid, failed, code):
    with pytest.raises(PaymentFailure) as info:
        decide(amount, cj, OWNER, 1, job, paid, failed)
    assert info.value.code == code


class FakeReg:
    def permission(self, pid):
        return type("P", (), {"token": None})()


class FakePayments:
    """The ComputeEngine as the charger sees it; `send_fails` makes the next sends fail."""

    def __init__(self, balance: int = 100, land_then_fail: bool = False, revert: str | None = None):
        self.reg = FakeReg()
        self._balance, self._paid = balance, 0
        self.sends = 0
        self.land_then_fail, self.revert = land_then_fail, revert

    def job(self, job_id):
        return _job()

    def paid(self, job_id, dlp_id, token=None):
        return self._paid

    def balance(self, account=None, token=None):
        return self._balance

    def request_payment(self, job_id, refiner_id, amount, token=None):
        self.sends += 1
        if self.revert:
            raise ContractRevert("reverted", name=self.revert)
        if self._paid:
            raise ContractRevert("already", name="JobAlreadyPaid")
        self._paid, self._balance = amount, self._balance - amount
        if self.land_then_fail:  # mined, but the receipt never came back
            raise RpcUnavailable("timeout") from requests.exceptions.Timeout()


def _charge(payments, amount=10):
    charger = Charger(payments, retry=RetryPolicy(window_s=1, base_s=0.001, cap_s=0.001), sleep=lambda _s: None)
    return charger.charge(owner=OWNER, instruction_id=1, refiner_id=2, dlp_id=3, compute_job_id=5, amount=amount,
                          permission_ids=[1], earlier_run_failed=lambda: False)


def test_a_payment_that_landed_before_its_send_failed_is_not_sent_again():
    payments = FakePayments(land_then_fail=True)
    charge = _charge(payments)
    assert charge.decision == "charge" and charge.max_timeout_s == 600
    assert payments.sends == 1 and payments._balance == 90


def test_an_on_chain_max_timeout_of_0_sets_no_limit():
    class NoTimeout(FakePayments):
        def job(self, job_id):
            return _job(timeout=0)

    assert _charge(NoTimeout()).max_timeout_s is None


def test_insufficient_balance_sends_nothing():
    payments = FakePayments(balance=9)
    with pytest.raises(PaymentFailure) as info:
        _charge(payments)
    assert info.value.code == "INSUFFICIENT_BALANCE" and payments.sends == 0


@pytest.mark.parametrize(("revert", "code"), [
    ("InsufficientBalance", "INSUFFICIENT_BALANCE"),  # withdrawn between the check and the send
    ("JobAlreadyPaid", "COMPUTE_JOB_USED"),  # another run paid between the check and the send
    ("AccessControlUnauthorizedAccount", "PAYMENT_UNAVAILABLE"),
])
def test_reverts_become_job_codes(revert, code):
    with pytest.raises(PaymentFailure) as info:
        _charge(FakePayments(revert=revert))
    assert info.value.code == code


def test_a_chain_that_stays_down_is_chain_unavailable():
    class Down(FakePayments):
        def job(self, job_id):
            raise RpcUnavailable("down") from requests.exceptions.ConnectionError()

    with pytest.raises(ChainCheckFailure) as info:
        _charge(Down())
    assert info.value.code == "CHAIN_UNAVAILABLE" and "down" not in info.value.message


def test_no_key_means_priced_jobs_cannot_run_but_free_ones_can():
    charger = Charger(None)
    free = charger.charge(owner=OWNER, instruction_id=1, refiner_id=2, dlp_id=3, compute_job_id=0, amount=0,
                          permission_ids=[], earlier_run_failed=lambda: False)
    assert free.decision == "free"
    for cj, code in ((0, "PAYMENT_REQUIRED"), (5, "PAYMENT_UNAVAILABLE")):
        with pytest.raises(PaymentFailure) as info:
            charger.charge(owner=OWNER, instruction_id=1, refiner_id=2, dlp_id=3, compute_job_id=cj, amount=10,
                           permission_ids=[1], earlier_run_failed=lambda: False)
        assert info.value.code == code
