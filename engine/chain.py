"""On-chain verification of a job: refiner -> DLP, instruction, approval, permissions.

`ChainVerifier.verify` reads everything at ONE block number (pinned first,
then passed as `block_identifier` to every call), so a job is checked
against one consistent chain state, and records that block. Failures are
`ChainCheckFailure`s with a stable code:

- REFINER_NOT_FOUND       no refiner with that id
- INSTRUCTION_NOT_FOUND   no compute instruction with that id
- NOT_APPROVED            the instruction is not approved for the refiner's DLP,
                          or the ComputeInstructionRegistry is paused (a paused
                          registry approves nothing)
- CHAIN_UNAVAILABLE       the RPC endpoint could not be used within the retry window

The reads of one check go out in one JSON-RPC batch (registry_client/batch.py):
a job's verification is two round trips (the block number, then the batch,
which also asks for the approval of the DLP the refiner had at its last
check; a third only when that guess is wrong).

A check that passed is reused, by (instruction, refiner, owner), while the
chain's block number is still the one it was read at (at most 30 s): the
same block answers the same, so a job verified by submit's preflight and
started before the next block costs one round trip in VERIFYING.

`is_approved` re-reads the approval at the latest block (the pre-run check),
with the pause flag, in one batch.

Transient chain errors (connection refused or reset, timeouts, HTTP 429/5xx
from the RPC endpoint) are retried with capped exponential backoff and jitter
until `retry_window_s` has passed since the first attempt: a short node outage
delays jobs instead of failing them. Everything else (a revert, an unknown id,
a JSON-RPC error, a wrong chain) fails at once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import requests

from engine.errors import ChainCheckFailure
from registry_client.contracts import PermissionRecord, Registries
from registry_client.errors import (
    ComputeInstructionNotFound,
    InputError,
    RefinerNotFound,
    RegistryError,
    RpcUnavailable,
)

try:
    from engine.query import Permission
except ImportError:  # the package's __init__ may not re-export it (yet)
    from engine.query.model import Permission  # type: ignore[no-redef]

__all__ = ["ChainCheck", "ChainVerifier", "RetryPolicy", "is_transient"]

T = TypeVar("T")
log = logging.getLogger("engine.chain")
INSTRUCTION_REGISTRY = "compute_instruction_registry"
_GUESSES_MAX = 4096  # refiner -> DLP guesses (and recent checks) kept
# A passed check is reused while the chain is still at its block, for at most this long
# (a bound on how long a block number stands for the state read at it, reorgs included).
_REUSE_S = 30.0


@dataclass(frozen=True)
class ChainCheck:
    """What the chain said about a job, all read at `block_number`."""

    block_number: int
    dlp_id: int
    instruction_hash: str  # sha256 of the image archive, lowercase hex, no 0x
    instruction_url: str
    permissions: tuple[Permission, ...]  # the owner's active permissions on the refiner


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with jitter, bounded by a wall-clock window."""

    window_s: float = 30.0  # 0 = no retry
    base_s: float = 0.25
    cap_s: float = 4.0

    def delay(self, attempt: int) -> float:
        # "Equal jitter": at least half the step, so retries never bunch up at 0.
        # The exponent is capped: 2**1024 is past a float, and the cap is reached long before.
        step = min(self.cap_s, self.base_s * (2 ** min(attempt, 64)))
        return step / 2 + random.uniform(0, step / 2)  # jitter, not crypto


def is_transient(exc: RegistryError) -> bool:
    """True for failures a later attempt may not see: transport errors, HTTP 429 and 5xx."""
    if not isinstance(exc, RpcUnavailable):
        return False
    cause = exc.__cause__
    if isinstance(cause, requests.exceptions.HTTPError):
        status = cause.response.status_code if cause.response is not None else None
        return status is None or status == 429 or status >= 500
    return True


def _to_permission(record: PermissionRecord) -> Permission:
    return Permission(
        id=record.id,
        grantee=record.grantee,
        refiner_id=record.refiner_id,
        table=record.table,
        column=record.column,
        price=record.price,
        approved=record.approved,
    )


def _paused_failure(block: int | str) -> ChainCheckFailure:
    where = f"at block {block}" if isinstance(block, int) else "now"
    return ChainCheckFailure(
        f"the ComputeInstructionRegistry is paused {where}: a paused registry approves nothing",
        code="NOT_APPROVED",
    )


class ChainVerifier:
    """Verifies jobs against the registries of one deployment."""

    def __init__(
        self,
        registries: Registries,
        *,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.registries = registries
        self.retry = retry or RetryPolicy()
        self._clock = clock
        self._sleep = sleep
        self._dlp_of: dict[int, int] = {}  # refiner id -> its DLP at its last check (a guess only)
        self._recent: dict[tuple[int, int, str], tuple[ChainCheck, float]] = {}  # the last passed checks

    def _with_retry(self, read: Callable[[], T], cancel: threading.Event | None, once: bool = False) -> T:
        """`read()`, retried on transient RegistryErrors until the window closes or `cancel` is set."""
        deadline = self._clock() + (0.0 if once else self.retry.window_s)
        attempt = 0
        while True:
            try:
                return read()
            except RegistryError as exc:
                remaining = deadline - self._clock()
                if not is_transient(exc) or remaining <= 0:
                    raise
                delay = min(self.retry.delay(attempt), remaining)
                if cancel is None:
                    self._sleep(delay)
                elif cancel.wait(delay):
                    raise  # the job was cancelled: its worker must not wait out the window
                attempt += 1

    def _unavailable(self, doing: str, exc: RegistryError) -> ChainCheckFailure:
        # The job owner reads this message: never the RPC URL (it may carry an API key)
        # nor the node's own words; the operator's log has both.
        log.warning("chain read failed while %s: %s", doing, exc)
        what = "the chain's RPC endpoint did not answer" if is_transient(exc) else f"the chain read failed ({exc.code})"
        note = f" (retried for {self.retry.window_s:g} s)" if self.retry.window_s > 0 and is_transient(exc) else ""
        return ChainCheckFailure(f"cannot {doing}: {what}{note}", code="CHAIN_UNAVAILABLE")

    def verify(self, instruction_id: int, refiner_id: int, owner: str, *,
               cancel: threading.Event | None = None, once: bool = False) -> ChainCheck:
        """Check refiner, instruction and approval at one block; ChainCheckFailure otherwise.

        A set `cancel` ends a retry wait at once (the failure raised then is moot: the job is cancelled).
        `once` (the preflight of an HTTP request): one attempt, no retry window.
        """
        try:
            return self._with_retry(lambda: self._verify_once(instruction_id, refiner_id, owner), cancel, once)
        except RefinerNotFound as exc:
            raise ChainCheckFailure(f"no data refiner with id {refiner_id} on chain",
                                    code="REFINER_NOT_FOUND") from exc
        except ComputeInstructionNotFound as exc:
            raise ChainCheckFailure(f"no compute instruction with id {instruction_id} on chain",
                                    code="INSTRUCTION_NOT_FOUND") from exc
        except InputError as exc:
            raise ChainCheckFailure(f"invalid job owner: {exc}", code="INTERNAL_ERROR") from exc
        except RegistryError as exc:
            raise self._unavailable("verify the job on chain", exc) from exc

    def _verify_once(self, instruction_id: int, refiner_id: int, owner: str) -> ChainCheck:
        reg = self.registries
        block = reg.block_number()
        key = (instruction_id, refiner_id, owner.lower())
        known = self._recent.get(key)
        if known is not None and known[0].block_number == block and self._clock() - known[1] < _REUSE_S:
            # Nothing was mined since this very check (submit's preflight, moments ago):
            # every read at this block would answer the same.
            return known[0]
        # Every read at the pinned block in one batch request. The approval needs the
        # refiner's DLP: the batch asks it for the DLP this refiner had last time, and
        # only when the refiner names another one (or on its first job) is it asked again.
        guess = self._dlp_of.get(refiner_id)
        reads = [reg.paused_read(INSTRUCTION_REGISTRY), reg.refiner_read(refiner_id),
                 reg.instruction_read(instruction_id), reg.permissions_read(refiner_id, owner)]
        if guess is not None:
            reads.append(reg.approval_read(instruction_id, guess))
        outcomes = reg.read_together(reads, block)
        paused, refiner, instruction, records = (outcome() for outcome in outcomes[:4])
        if paused:
            raise _paused_failure(block)
        if len(self._dlp_of) >= _GUESSES_MAX:
            self._dlp_of.clear()  # a bound, not a cache policy: a miss costs one read
        self._dlp_of[refiner_id] = refiner.dlp_id
        if guess == refiner.dlp_id:
            approved = outcomes[4]()
        else:
            approved = reg.is_approved(instruction_id, refiner.dlp_id, block=block)
        if not approved:
            raise ChainCheckFailure(
                f"instruction {instruction_id} is not approved for DLP {refiner.dlp_id} "
                f"(refiner {refiner_id}) at block {block}",
                code="NOT_APPROVED",
            )
        # Revoked permissions never reach the query engine.
        active = tuple(_to_permission(r) for r in records if r.approved and r.refiner_id == refiner_id)
        check = ChainCheck(block, refiner.dlp_id, instruction.hash.lower(), instruction.url, active)
        if len(self._recent) >= _GUESSES_MAX:
            self._recent.clear()
        self._recent[key] = (check, self._clock())
        return check

    def instruction(self, instruction_id: int) -> tuple[str, str]:
        """The instruction's (sha256 hex, archive URL) at the latest block (for the static audit).

        Raises ChainCheckFailure INSTRUCTION_NOT_FOUND or CHAIN_UNAVAILABLE.
        """
        try:
            found = self._with_retry(lambda: self.registries.instruction(instruction_id), None)
        except ComputeInstructionNotFound as exc:
            raise ChainCheckFailure(f"no compute instruction with id {instruction_id} on chain",
                                    code="INSTRUCTION_NOT_FOUND") from exc
        except RegistryError as exc:
            raise self._unavailable("read the instruction on chain", exc) from exc
        return found.hash.lower(), found.url
    def permissions(self, refiner_id: int, owner: str) -> tuple[Permission, ...]:
        """The owner's active permissions on the refiner, at one block (the schema's coverage).

        REFINER_NOT_FOUND when the refiner is not on chain; CHAIN_UNAVAILABLE past the retry window.
        """
        reg = self.registries

        def read() -> tuple[Permission, ...]:
            block = reg.block_number()
            reg.refiner(refiner_id, block=block)  # raises RefinerNotFound
            records = reg.get_permissions(refiner_id, owner, block=block)
            return tuple(_to_permission(r) for r in records if r.approved and r.refiner_id == refiner_id)

        try:
            return self._with_retry(read, None, once=True)  # an HTTP read: no retry window
        except RefinerNotFound as exc:
            raise ChainCheckFailure(f"no data refiner with id {refiner_id} on chain",
                                    code="REFINER_NOT_FOUND") from exc
        except RegistryError as exc:
            raise self._unavailable("read the permissions on chain", exc) from exc

    def is_approved(self, instruction_id: int, dlp_id: int, *, cancel: threading.Event | None = None) -> bool:
        """The approval at the latest block (False: revoked).

        Raises ChainCheckFailure NOT_APPROVED when the registry is paused, and
        CHAIN_UNAVAILABLE when the RPC fails past the retry window.
        """
        reg = self.registries

        def read() -> tuple[bool, bool]:
            # Both in one batch at "latest" (the run waits on this re-check): each answer
            # is the chain's state when the request arrived, no older than a pinned
            # block number read just before would be, and one round trip fewer.
            paused, approved = reg.read_together(
                [reg.paused_read(INSTRUCTION_REGISTRY), reg.approval_read(instruction_id, dlp_id)], "latest")
            return paused(), approved()

        try:
            paused, approved = self._with_retry(read, cancel)
        except RegistryError as exc:
            raise self._unavailable("re-check the approval on chain", exc) from exc
        if paused:
            raise _paused_failure("latest")
        return approved
