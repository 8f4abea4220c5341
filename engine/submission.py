"""Pure checks a signed job request must pass before the engine queues it.

No I/O: the clock and the settings are passed in, so every rule is a plain
function call in tests. Signatures are checked earlier (engine/auth.py); the
chain is checked later, by the pipeline (engine/service.py). The deadline rule
lives here only (``check_deadline``, one setting: ``deadline_max_s``): every
submit path (``POST /jobs``, Vana's ``POST /job/{id}``) reaches it through
``validate_request``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from eth_utils import keccak

from engine.errors import AuthError, QueryFailure, RequestError
from engine.query.statement import check_params

if TYPE_CHECKING:
    from engine.settings import Settings
    from registry_client.eip712 import JobRequest

__all__ = ["MAX_SQL_ID", "check_deadline", "local_digest", "validate_request"]

MAX_SQL_ID = 2**63 - 1  # ids and deadlines are stored as SQLite integers


def check_deadline(deadline: int, now: float, max_ahead_s: float) -> None:
    """The deadline rule: in the future (else DEADLINE_EXPIRED, 401) and at most
    ``max_ahead_s`` ahead (else DEADLINE_TOO_FAR, 400): a leaked signed request
    must not stay submittable for weeks."""
    if deadline <= now:
        raise AuthError(f"the request's deadline {deadline} has passed (now {int(now)})", code="DEADLINE_EXPIRED")
    if deadline > now + max_ahead_s:
        raise RequestError(
            f"the request's deadline {deadline} is more than {int(max_ahead_s)} s ahead; sign a nearer one",
            code="DEADLINE_TOO_FAR",
        )


def validate_request(request: JobRequest, settings: Settings, now: float) -> list | dict | None:
    """Refuse a request the engine will not queue; return its parsed params."""
    check_deadline(request.deadline, now, settings.deadline_max_s)
    for name in ("instruction_id", "refiner_id"):
        value = getattr(request, name)
        if not 0 < value <= MAX_SQL_ID:
            raise RequestError(f"{name} {value} is out of range", code="INVALID_REQUEST")
    if len(request.query) > settings.query_max_chars:
        raise RequestError(
            f"the query is {len(request.query)} characters; the limit is {settings.query_max_chars}",
            code="QUERY_TOO_LONG",
        )
    if len(request.params_json) > settings.params_max_chars:
        raise RequestError(
            f"params are {len(request.params_json)} characters; the limit is {settings.params_max_chars}",
            code="PARAMS_TOO_LONG",
        )
    # JobRequest itself already refused an empty query and params that are not a list/object/null;
    # what SQLite could not bind (nested values, integers over 64 bits) is refused here, not at run time.
    try:
        check_params(request.params)
    except QueryFailure as exc:
        raise RequestError(exc.message, code="INVALID_PARAMS") from exc
    return request.params


def local_digest(request: JobRequest) -> str:
    """Fallback idempotency key when the caller passes no EIP-712 digest."""
    text = json.dumps(request.to_message(), sort_keys=True, separators=(",", ":"))
    return "0x" + keccak(text=text).hex()
