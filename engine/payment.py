"""Charging a job's price on chain: decide what is owed, then request it exactly once.

The job's price is the access report's (the sum of the distinct permissions the
query used). It is paid from the deposit of the job owner's on-chain ComputeEngine
job, named by the signed request's ``computeJobId``. `decide` is the pure rule;
`Charger.charge` reads the chain, decides, and when it must, sends the QueryEngine's
``requestPaymentInVana`` (or ``...InToken``) signed by the engine's key, which must
hold the QueryEngine's ``QUERY_ENGINE_ROLE`` (``registry engine authorize``).

What is refused (a ``PaymentFailure`` carrying the code; nothing is charged):

- PAYMENT_REQUIRED       price above 0 and no ``computeJobId``
- COMPUTE_JOB_NOT_FOUND  no such on-chain job
- COMPUTE_JOB_NOT_OWNED  the on-chain job belongs to another wallet than the signer
- COMPUTE_JOB_INVALID    the on-chain job ended, or is for another instruction
- COMPUTE_JOB_USED       the on-chain job already paid for another run
- INSUFFICIENT_BALANCE   the owner's deposit is smaller than the price
- PAYMENT_UNAVAILABLE    this engine cannot charge (no signing key, no role, mixed tokens)

Never charged twice: the ComputeEngine charges a (job, DLP) once (``JobAlreadyPaid``),
and ``paymentInfo`` is read before paying and after any failed send, so a payment
that went through while its receipt was lost is recognised, not repeated. A payment
made by an earlier run of the same owner that did not succeed (say, the engine
restarted right after paying) is honoured instead of charged again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from engine.chain import RetryPolicy, is_transient
from engine.errors import ChainCheckFailure, PaymentFailure
from engine.store import CANCELLED, FAILED, Job, JobStore
from registry_client.errors import ContractRevert, RegistryError
from registry_client.payments import ComputeJob, Payments

__all__ = ["Charge", "Charger", "Decision", "charge_job", "decide", "earlier_run_failed"]

log = logging.getLogger("engine.payment")
Decision = Literal["free", "charge", "prepaid"]
_OPEN_STATUSES = ("Submitted", "Running")


@dataclass(frozen=True)
class Charge:
    """What the engine did about a job's price (recorded as the job's ``payment``)."""

    compute_job_id: int
    amount: int  # the price, in the token's smallest unit
    token: str | None  # None = the native token
    decision: Decision
    max_timeout_s: int | None  # the on-chain job's limit (None: no on-chain job)

    def record(self) -> dict[str, Any]:
        return {"compute_job_id": str(self.compute_job_id), "amount": str(self.amount),
                "token": self.token, "charged": self.decision == "charge", "decision": self.decision}


def decide(amount: int, compute_job_id: int, owner: str, instruction_id: int, job: ComputeJob | None,
           already_paid: int, earlier_run_failed: bool) -> Decision:
    """The rule, without the chain: free, charge, or prepaid; PaymentFailure when refused."""
    if compute_job_id == 0:
        if amount == 0:
            return "free"
        raise PaymentFailure(f"the query costs {amount}: name your on-chain compute job (computeJobId)",
                             code="PAYMENT_REQUIRED")
    if job is None:
        raise PaymentFailure(f"no compute job {compute_job_id} on chain", code="COMPUTE_JOB_NOT_FOUND")
    if job.owner.lower() != owner.lower():
        raise PaymentFailure(f"compute job {compute_job_id} is not owned by the request's signer {owner}",
                             code="COMPUTE_JOB_NOT_OWNED")
    if job.instruction_id != instruction_id:
        raise PaymentFailure(f"compute job {compute_job_id} is for instruction {job.instruction_id}, "
                             f"not {instruction_id}", code="COMPUTE_JOB_INVALID")
    if job.status not in _OPEN_STATUSES:
        raise PaymentFailure(f"compute job {compute_job_id} is {job.status}", code="COMPUTE_JOB_INVALID")
    if amount == 0:
        return "free"
    if already_paid:
        if earlier_run_failed and already_paid >= amount:
            return "prepaid"
        raise PaymentFailure(f"compute job {compute_job_id} already paid for another run; "
                             "submit a new on-chain job", code="COMPUTE_JOB_USED")
    return "charge"


class Charger:
    """Charges jobs through one deployment, as the engine's wallet (one transaction at a time)."""

    def __init__(self, payments: Payments | None, *, retry: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.payments = payments  # None: the engine has no signing key, so it cannot charge
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._send_lock = threading.Lock()  # one engine wallet: one nonce sequence

    def charge(self, *, owner: str, instruction_id: int, refiner_id: int, dlp_id: int, compute_job_id: int,
               amount: int, permission_ids: list[int], earlier_run_failed: Callable[[], bool],
               cancel: threading.Event | None = None, dry_run: bool = False) -> Charge:
        """Decide and, when owed, pay; a ChainCheckFailure (CHAIN_UNAVAILABLE) past the retry window.

        `dry_run` (the quote, submit's preflight): every read and refusal, the
        balance check included, but nothing is sent.
        """
        if compute_job_id == 0 and amount == 0:
            return Charge(0, 0, None, "free", None)
        if self.payments is None:
            if compute_job_id == 0:
                decide(amount, 0, owner, instruction_id, None, 0, False)  # PAYMENT_REQUIRED
            raise PaymentFailure("this engine has no signing key, so it cannot check or charge compute jobs",
                                 code="PAYMENT_UNAVAILABLE")
        try:
            return self._charge(owner, instruction_id, refiner_id, dlp_id, compute_job_id, amount,
                                permission_ids, earlier_run_failed, cancel, dry_run)
        except RegistryError as exc:
            log.warning("charging compute job %s failed: %s", compute_job_id, exc)
            if isinstance(exc, ContractRevert) and exc.name == "AccessControlUnauthorizedAccount":
                raise PaymentFailure("the engine's wallet lacks QUERY_ENGINE_ROLE: it cannot request payment",
                                     code="PAYMENT_UNAVAILABLE") from exc
            raise ChainCheckFailure(f"cannot charge compute job {compute_job_id}: the chain call failed "
                                    f"({exc.code})", code="CHAIN_UNAVAILABLE") from exc

    def _charge(self, owner: str, instruction_id: int, refiner_id: int, dlp_id: int, compute_job_id: int,
                amount: int, permission_ids: list[int], earlier_run_failed: Callable[[], bool],
                cancel: threading.Event | None, dry_run: bool = False) -> Charge:
        pay = self.payments
        assert pay is not None
        job = self._read(lambda: self._job(compute_job_id), cancel) if compute_job_id else None
        token = self._read(lambda: self._token(permission_ids), cancel) if amount else None
        paid = self._read(lambda: pay.paid(compute_job_id, dlp_id, token), cancel) if job else 0
        decision = decide(amount, compute_job_id, owner, instruction_id, job, paid,
                          bool(paid) and earlier_run_failed())
        timeout = job.max_timeout if job is not None and job.max_timeout > 0 else None  # 0: none asked
        if decision == "charge":
            if self._read(lambda: pay.balance(owner, token), cancel) < amount:
                raise PaymentFailure(f"the deposit of {owner} is smaller than the price {amount}",
                                     code="INSUFFICIENT_BALANCE")
            if not dry_run:
                self._pay(compute_job_id, refiner_id, dlp_id, amount, token, cancel)
        return Charge(compute_job_id, amount, token, decision, timeout)

    def token(self, permission_ids: list[int]) -> str | None:
        """The token these permissions are priced in (None: native, or unknown without a key)."""
        if self.payments is None or not permission_ids:
            return None
        try:
            return self._read(lambda: self._token(permission_ids), None)
        except RegistryError as exc:
            raise ChainCheckFailure("cannot read the permissions' token: the chain call failed",
                                    code="CHAIN_UNAVAILABLE") from exc

    def _job(self, compute_job_id: int) -> ComputeJob | None:
        assert self.payments is not None
        try:
            return self.payments.job(compute_job_id)
        except RegistryError as exc:
            if type(exc) is RegistryError:  # "no compute job with id": the only plain one job() raises
                return None
            raise

    def _token(self, permission_ids: list[int]) -> str | None:
        """The one token the used permissions are priced in (None = native)."""
        assert self.payments is not None
        tokens = {self.payments.reg.permission(pid).token for pid in permission_ids}
        if len(tokens) > 1:  # the ComputeEngine charges a (job, DLP) once, in one token
            raise PaymentFailure("the query uses permissions priced in different tokens; one job pays in one "
                                 "token: split the query", code="PAYMENT_UNAVAILABLE")
        return next(iter(tokens), None)

    def _pay(self, compute_job_id: int, refiner_id: int, dlp_id: int, amount: int, token: str | None,
             cancel: threading.Event | None) -> None:
        """Send the payment; after any failure, a payment that landed counts as made."""
        assert self.payments is not None
        pay = self.payments
        deadline = time.monotonic() + self.retry.window_s
        attempt = 0
        while True:
            try:
                with self._send_lock:
                    pay.request_payment(compute_job_id, refiner_id, amount, token)
                log.info("charged compute job %s: %s for refiner %s", compute_job_id, amount, refiner_id)
                return
            except ContractRevert as exc:
                if exc.name == "InsufficientBalance":  # the deposit was withdrawn meanwhile
                    raise PaymentFailure(f"the deposit is smaller than the price {amount}",
                                         code="INSUFFICIENT_BALANCE") from exc
                if exc.name == "JobAlreadyPaid":
                    raise PaymentFailure(f"compute job {compute_job_id} already paid for another run; "
                                         "submit a new on-chain job", code="COMPUTE_JOB_USED") from exc
                raise
            except RegistryError as exc:
                # Sent but unconfirmed (timeout, a node restart): did it land?
                if self._read(lambda: pay.paid(compute_job_id, dlp_id, token), cancel) >= amount:
                    log.info("compute job %s: the payment landed although its send failed", compute_job_id)
                    return
                if not is_transient(exc) or time.monotonic() >= deadline:
                    raise
            self._wait(attempt, cancel)
            attempt += 1

    def _read(self, read: Callable[[], Any], cancel: threading.Event | None) -> Any:
        deadline = time.monotonic() + self.retry.window_s
        attempt = 0
        while True:
            try:
                return read()
            except RegistryError as exc:
                if not is_transient(exc) or time.monotonic() >= deadline:
                    raise
            self._wait(attempt, cancel)
            attempt += 1

    def _wait(self, attempt: int, cancel: threading.Event | None) -> None:
        delay = self.retry.delay(attempt)
        if cancel is None:
            self._sleep(delay)
        elif cancel.wait(delay):
            raise PaymentFailure("the job was cancelled while charging", code="CANCELLED")


def earlier_run_failed(store: JobStore, job: Job) -> bool:
    """True when every other run that named `job`'s compute job is the same owner's and did not succeed."""
    others = [j for j in store.by_compute_job(job.compute_job_id) if j.id != job.id]
    return bool(others) and all(j.owner == job.owner and j.status in (FAILED, CANCELLED) for j in others)


def charge_job(charger: Charger, store: JobStore, job: Job, dlp_id: int, record: dict[str, Any],
               cancel: threading.Event | None = None) -> Charge:
    """Charge `job` the price its access report (in `record`, not yet stored) states."""
    report = record.get("access_report") or {}
    return charger.charge(
        owner=job.owner, instruction_id=job.instruction_id, refiner_id=job.refiner_id, dlp_id=dlp_id,
        compute_job_id=job.compute_job_id, amount=int(record.get("price_wei") or 0),
        permission_ids=[int(p) for p in report.get("permissions_used", [])],
        earlier_run_failed=lambda: earlier_run_failed(store, job), cancel=cancel)
