"""Deposits, on-chain compute jobs and DLP earnings: the money half of a deployment.

`Payments(registries)` reads and writes the ComputeEngine (deposits, jobs) and
the QueryEngine (charges, DLP shares, claims) as the registries' account, with
the same pre-flight, revert decoding and error translation as `Registries`.
Amounts are in the token's smallest unit; `token=None` is the native token.
"""

from __future__ import annotations

from dataclasses import dataclass

from registry_client.addresses import parse_address
from registry_client.contracts import ZERO_ADDRESS, Registries
from registry_client.errors import InputError, RegistryError

__all__ = ["JOB_STATUSES", "ComputeJob", "Payments"]

# Vana's JobStatus enum, by value.
JOB_STATUSES = ("None", "Registered", "Submitted", "Running", "Completed", "Failed", "Canceled")
_ERC20_APPROVE = [{
    "type": "function", "name": "approve", "stateMutability": "nonpayable",
    "inputs": [{"name": "spender", "type": "address"}, {"name": "amount", "type": "uint256"}],
    "outputs": [{"name": "", "type": "bool"}],
}]


@dataclass(frozen=True)
class ComputeJob:
    """An on-chain job (Vana's `Job`), as the ComputeEngine stores it."""

    id: int
    owner: str
    max_timeout: int  # seconds
    gpu_required: bool
    status: str
    engine: str | None  # the engine wallet that took it (Vana's teeAddress)
    instruction_id: int
    added_at: int  # unix seconds
    status_message: str


class Payments:
    """The ComputeEngine and QueryEngine money calls of one deployment."""

    def __init__(self, registries: Registries):
        self.reg = registries
        self.compute = registries.compute_engine
        self.query = registries.query_engine

    @staticmethod
    def _token(token: str | None) -> str:
        return parse_address(token, "token") if token else ZERO_ADDRESS

    @staticmethod
    def _amount(amount: int) -> int:
        if amount <= 0:
            raise InputError(f"the amount must be above 0, got {amount}")
        return amount

    def deposit(self, amount: int, token: str | None = None) -> None:
        """Deposit for the signer; an ERC-20 is approved to the ComputeEngine first."""
        amount, addr = self._amount(amount), self._token(token)
        if addr == ZERO_ADDRESS:
            self.reg._transact(self.compute.functions.deposit(addr, amount), value=amount)
            return
        erc20 = self.reg.w3.eth.contract(address=addr, abi=_ERC20_APPROVE)
        self.reg._transact(erc20.functions.approve(self.compute.address, amount))
        self.reg._transact(self.compute.functions.deposit(addr, amount))

    def withdraw(self, amount: int, token: str | None = None) -> None:
        self.reg._transact(self.compute.functions.withdraw(self._token(token), self._amount(amount)))

    def balance(self, account: str | None = None, token: str | None = None, block: int | str = "latest") -> int:
        """An account's ComputeEngine deposit (default: the signer's)."""
        who = parse_address(account, "account") if account else self.reg._sender()
        return int(self.reg._call(self.compute.functions.balanceOf(who, self._token(token)), block))

    def submit_job(self, instruction_id: int, max_timeout_s: int, *, gpu: bool = False, value: int = 0) -> int:
        """Create an on-chain job owned by the signer (`value` wei deposited with it); its id."""
        if not 0 < max_timeout_s < 2**80:
            raise InputError(f"max timeout must be 1..2**80-1 seconds, got {max_timeout_s}")
        fn = self.compute.functions.submitJob(max_timeout_s, gpu, instruction_id)
        receipt = self.reg._transact(fn, {"instruction_id": instruction_id}, value=value)
        return int(self.reg._event_arg(self.compute, "JobRegistered", receipt, "jobId"))

    def job(self, job_id: int, block: int | str = "latest") -> ComputeJob:
        owner, timeout, gpu, status, engine, instruction, added, message, _pool = self.reg._call(
            self.compute.functions.jobs(job_id), block)
        if int(owner, 16) == 0:
            raise RegistryError(f"no compute job with id {job_id}")
        return ComputeJob(job_id, owner, int(timeout), bool(gpu), JOB_STATUSES[status],
                          None if int(engine, 16) == 0 else engine, int(instruction), int(added), message)

    def paid(self, job_id: int, dlp_id: int, token: str | None = None, block: int | str = "latest") -> int:
        """What `job_id` paid for `dlp_id` (0 = not charged): check before charging."""
        return int(self.reg._call(self.compute.functions.paymentInfo(job_id, dlp_id, self._token(token)), block))

    def request_payment(self, job_id: int, refiner_id: int, amount: int, token: str | None = None) -> None:
        """Charge `amount` from `job_id`'s owner for `refiner_id` (the signer holds QUERY_ENGINE_ROLE)."""
        amount, addr = self._amount(amount), self._token(token)
        q = self.query.functions
        fn = (q.requestPaymentInVana(amount, job_id, refiner_id) if addr == ZERO_ADDRESS
              else q.requestPaymentInToken(addr, amount, job_id, refiner_id))
        self.reg._transact(fn, {"job_id": job_id, "refiner_id": refiner_id})

    def authorize_engine(self, engine: str) -> None:
        """Let `engine`'s wallet charge jobs (QueryEngine QUERY_ENGINE_ROLE); the admin signs."""
        who = parse_address(engine, "engine")
        role = self.reg._call(self.query.functions.QUERY_ENGINE_ROLE())
        self.reg._transact(self.query.functions.grantRole(role, who), {"engine": who})

    def is_engine_authorized(self, engine: str, block: int | str = "latest") -> bool:
        role = self.reg._call(self.query.functions.QUERY_ENGINE_ROLE(), block)
        return bool(self.reg._call(self.query.functions.hasRole(role, parse_address(engine, "engine")), block))

    def dlp_share_percent(self, block: int | str = "latest") -> float:
        """The DLPs' share of every payment, in percent (Vana's `dlpPaymentPercentage`, 100e18 = 100%)."""
        return int(self.reg._call(self.query.functions.dlpPaymentPercentage(), block)) / 10**18

    def dlp_earnings(self, dlp_id: int, token: str | None = None, block: int | str = "latest") -> int:
        """The DLP's accrued, unclaimed share."""
        return int(self.reg._call(self.query.functions.balanceOf(dlp_id, self._token(token)), block))

    def claim(self, dlp_id: int, token: str | None = None) -> int:
        """Send the DLP's share to its treasury address (its owner signs); the amount claimed."""
        fn = self.query.functions.claimDlpPayment(dlp_id, self._token(token))
        receipt = self.reg._transact_as_dlp_owner(fn, dlp_id, {"dlp_id": dlp_id})
        return int(self.reg._event_arg(self.query, "DlpPaymentClaimed", receipt, "amount"))
