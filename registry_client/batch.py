"""Several contract reads at one block in ONE JSON-RPC batch request: one round trip, not N.

A ``Read`` is one contract function call (``fn``) and what its answer means
(``finish``: the raw decoded return value -> the typed result, raising the
same not-found errors the single-call methods of ``Registries`` raise).
``read_together(registries, reads, block)`` sends every read's ``eth_call``
at ``block`` in one HTTP request and returns one ``Outcome`` per read, in
order: calling it returns the read's result or raises its translated error
(a revert decoded like a single call's, a node error as TransactionFailed),
so a caller can decide which failures matter. Transport failures (the node
down, HTTP 429/5xx) raise RpcUnavailable for the whole batch, as a single
call's would.

The batch goes straight to the provider: web3's own ``batch_requests()``
switches the whole provider into batching mode, which would capture the
calls other threads make on the same connection meanwhile. A node that
answers a batch with one error object (no batch support) gets the reads one
by one, at the same block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from eth_utils.abi import get_abi_output_types
from hexbytes import HexBytes
from web3.contract.utils import format_contract_call_return_data_curried
from web3.exceptions import Web3Exception

from registry_client.errors import RegistryError, TransactionFailed, decode_revert

__all__ = ["Outcome", "Read", "read_together"]

T = TypeVar("T")
Outcome = Callable[[], Any]
_MAX_READS = 32  # a bound on one request's size; a check makes five


def _as_is(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Read(Generic[T]):
    """One ``eth_call`` (a bound contract function) and how its answer becomes a result."""

    fn: Any
    finish: Callable[[Any], T] = _as_is


def _value(value: Any) -> Outcome:
    return lambda: value


def _failure(exc: Exception) -> Outcome:
    def outcome() -> Any:
        raise exc

    return outcome


def _decode(registries: Any, read: Read[Any], result: Any) -> Outcome:
    fn = read.fn
    try:
        raw = format_contract_call_return_data_curried(
            registries.w3, False, fn.abi, fn.abi_element_identifier,
            fn._return_data_normalizers or (), get_abi_output_types(fn.abi), HexBytes(result))
        return _value(read.finish(raw))
    except RegistryError as exc:
        return _failure(exc)
    except (Web3Exception, ValueError, TypeError) as exc:
        return _failure(RegistryError(f"web3 error: cannot decode {fn.abi_element_identifier}: {exc}"))


def _error(error: Any) -> Outcome:
    """A batch item's JSON-RPC error: a revert (code 3 with data) or the node's refusal."""
    if not isinstance(error, dict):
        return _failure(TransactionFailed("the node refused the call"))
    data = error.get("data")
    message = str(error.get("message") or "")
    if isinstance(data, str) and data.startswith("0x") or "revert" in message.lower():
        from registry_client.contracts import error_table  # the table lives with the ABIs

        return _failure(decode_revert(data if isinstance(data, str) else None, error_table()))
    return _failure(TransactionFailed(f"the node refused the call: {message or 'no message'}"))


def read_together(registries: Any, reads: Sequence[Read[Any]], block: int | str) -> list[Outcome]:
    """One Outcome per read, all read at ``block`` in one batch request."""
    if not 0 < len(reads) <= _MAX_READS:
        raise ValueError(f"a batch holds 1 to {_MAX_READS} reads, not {len(reads)}")
    at = hex(block) if isinstance(block, int) else block
    calls = [("eth_call", [{"to": r.fn.address, "data": r.fn._encode_transaction_data()}, at]) for r in reads]
    with registries._translate():
        answers = registries.w3.provider.make_batch_request(calls)
    if not isinstance(answers, list) or len(answers) != len(reads):
        return [_one_by_one(registries, r, block) for r in reads]
    outcomes = []
    for read, answer in zip(reads, answers, strict=True):
        if not isinstance(answer, dict):
            outcomes.append(_failure(TransactionFailed("the node sent a malformed batch answer")))
        elif "error" in answer:
            outcomes.append(_error(answer["error"]))
        else:
            outcomes.append(_decode(registries, read, answer.get("result")))
    return outcomes


def _one_by_one(registries: Any, read: Read[Any], block: int | str) -> Outcome:
    try:
        return _value(read.finish(registries._call(read.fn, block)))
    except RegistryError as exc:
        return _failure(exc)
