"""Who is asking: verify signed job submissions and signed reads (pure functions).

No clock, no I/O: the caller passes the engine's domain (chain id +
ComputeInstructionRegistry address) and, for reads, ``now`` (unix seconds), so
every rule here is unit-testable. Errors are ``AuthError`` (401) or ``RequestError`` (400) with
stable codes:

- ``INVALID_REQUEST``   the submit body is malformed (names the field)
- ``BAD_SIGNATURE``     malformed signature, or it recovers to another wallet
                        than the one the client claims
- ``WRONG_DOMAIN``      the body states a chain id / registry other than the engine's
- ``AUTH_REQUIRED``     a read without the X-Wallet-* headers
- ``STALE_TIMESTAMP``   a read signed outside the accepted clock window

The request's deadline is not checked here: that rule is
``engine.submission.check_deadline``, applied by the service to every submit.

A signature made for another domain recovers to some unrelated address, so a
wrong chain or registry is only detectable when the client also states who it
is: the ``signer`` field / ``X-Wallet-Address`` header. The engine client
always sends both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eth_utils import to_checksum_address

from engine.errors import AuthError, RequestError
from registry_client.addresses import parse_address
from registry_client.eip712 import (
    HEADER_ADDRESS,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    JobRequest,
    job_request_digest,
    recover_job_signer,
    recover_read_signer,
)
from registry_client.errors import InputError

__all__ = ["verify_job_submission", "verify_read"]


def _checksum(value: Any, what: str, code: str) -> str:
    """A checksum address; mixed case must pass EIP-55 (registry_client.addresses)."""
    try:
        return parse_address(value, what)
    except InputError as exc:
        raise AuthError(exc.message, code=code) from exc


def _check_domain(body: Mapping[str, Any], chain_id: int, contract: str) -> None:
    stated_chain = body.get("chainId")
    if stated_chain is not None and stated_chain != chain_id:
        raise AuthError(
            f"request is for chain {stated_chain}, this engine serves chain {chain_id}", code="WRONG_DOMAIN"
        )
    stated_contract = body.get("verifyingContract")
    if stated_contract is not None:
        stated = _checksum(stated_contract, "verifyingContract", "WRONG_DOMAIN")
        if stated != to_checksum_address(contract):
            raise AuthError(
                f"request is for registry {stated}, this engine's registry is {to_checksum_address(contract)}",
                code="WRONG_DOMAIN",
            )


def verify_job_submission(
    body: Mapping[str, Any],
    chain_id: int,
    contract: str,
    *,
    claimed_signer: str | None = None,
) -> tuple[JobRequest, str, str]:
    """Check a submit body; return (request, signer checksum address, EIP-712 digest).

    ``body`` is ``{"request": {...}, "signature": "0x...", "signer"?, "chainId"?,
    "verifyingContract"?}``; ``claimed_signer`` (the X-Wallet-Address header)
    is used when the body carries no ``signer``.
    """
    if not isinstance(body, Mapping):
        raise RequestError("the body must be a JSON object", code="INVALID_REQUEST")
    _check_domain(body, chain_id, contract)
    try:
        req = JobRequest.from_message(body.get("request"))
    except InputError as exc:
        raise RequestError(exc.message, code="INVALID_REQUEST") from exc
    signature = body.get("signature")
    if not isinstance(signature, str):
        raise AuthError("the body has no signature", code="BAD_SIGNATURE")
    try:
        signer = recover_job_signer(chain_id, contract, req, signature)
    except InputError as exc:
        raise AuthError(f"bad signature: {exc.message}", code="BAD_SIGNATURE") from exc
    claimed = body.get("signer") or claimed_signer
    if claimed is not None:
        claimed = _checksum(claimed, "signer", "BAD_SIGNATURE")
        if claimed != signer:
            raise AuthError(
                f"signature does not match signer {claimed} for this engine's chain {chain_id} "
                f"and registry {to_checksum_address(contract)}",
                code="BAD_SIGNATURE",
            )
    return req, signer, job_request_digest(chain_id, contract, req)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # Starlette's Headers are case-insensitive; a plain dict may not be.
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    return value


def verify_read(
    headers: Mapping[str, str],
    method: str,
    path: str,
    chain_id: int,
    contract: str,
    now: float,
    window_s: float = 60,
) -> str:
    """Return the checksum address proven by the X-Wallet-* headers for (method, path)."""
    address = _header(headers, HEADER_ADDRESS)
    stamp = _header(headers, HEADER_TIMESTAMP)
    signature = _header(headers, HEADER_SIGNATURE)
    if not (address and stamp and signature):
        raise AuthError(
            f"sign this request: send {HEADER_ADDRESS}, {HEADER_TIMESTAMP} and {HEADER_SIGNATURE}",
            code="AUTH_REQUIRED",
        )
    claimed = _checksum(address, HEADER_ADDRESS, "BAD_SIGNATURE")
    try:
        timestamp = int(stamp)
    except ValueError as exc:
        raise AuthError(f"{HEADER_TIMESTAMP} must be unix seconds, got {stamp[:32]!r}", code="STALE_TIMESTAMP") from exc
    if abs(now - timestamp) > window_s:
        raise AuthError(
            f"{HEADER_TIMESTAMP} {timestamp} is outside ±{int(window_s)} s of the engine's clock ({int(now)})",
            code="STALE_TIMESTAMP",
        )
    try:
        signer = recover_read_signer(chain_id, contract, method, path, timestamp, signature)
    except InputError as exc:
        raise AuthError(f"bad signature: {exc.message}", code="BAD_SIGNATURE") from exc
    if signer != claimed:
        raise AuthError(
            f"signature does not match {claimed} for {method.upper()} {path} on this engine's chain "
            f"{chain_id} and registry {to_checksum_address(contract)}",
            code="BAD_SIGNATURE",
        )
    return signer
