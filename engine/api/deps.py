"""FastAPI dependencies as `Annotated` aliases: the service, the engine's domain, the verified reader.

Routers declare what they need by type (``service: Service``,
``wallet: CurrentWallet``); the objects live on ``app.state`` (set by
``create_app``), so tests swap them by building an app with fakes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from fastapi import Depends, Header, Request

from engine.api.limits import RequestLimits
from engine.api.longpoll import WaiterLimit
from engine.auth import verify_read
from engine.errors import AuthError

if TYPE_CHECKING:
    from engine.artifacts import Artifact
    from engine.store import Job
    from registry_client.eip712 import JobRequest

__all__ = [
    "ApiConfig",
    "Clock",
    "Config",
    "CurrentWallet",
    "Domain",
    "EngineDomain",
    "JobApi",
    "JobLookup",
    "Service",
    "Waiters",
]


@dataclass(frozen=True)
class EngineDomain:
    """What signatures are bound to: the chain and the ComputeInstructionRegistry proxy."""

    chain_id: int
    registry: str


@dataclass(frozen=True)
class ApiConfig:
    """The few settings the HTTP layer reads itself."""

    auth_window_s: float = 60.0
    # Settings.deadline_max_s (its default here), read by Vana's submit for its deadline
    # window; the rule itself is engine.submission.check_deadline, applied by the service.
    deadline_max_s: float = 24 * 3600.0
    limits: RequestLimits = field(default_factory=RequestLimits)
    header_timeout_s: float = 10.0
    max_waiters_per_owner: int = 16
    query_max_chars: int = 100_000
    params_max_chars: int = 100_000
    vana_plaintext_results: bool = False  # Vana-API jobs' results stored and served unsealed


class JobLookup(Protocol):
    """The store reads a router makes itself (Vana's numeric job ids are nonces; the owner's job list)."""

    def find(self, owner: str, nonce: int) -> Job | None: ...
    def page_by_owner(self, owner: str, *, status: str | None = None, limit: int = 20,
                      before: tuple[float, str] | None = None) -> list[Job]: ...


class Quoter(Protocol):
    """engine.preflight.Preflight as POST /jobs/quote uses it."""

    def quote(self, request: JobRequest, signer: str) -> Any: ...


class PermissionReader(Protocol):
    """engine.chain.ChainVerifier as GET /refiners/{id}/schema uses it."""

    def permissions(self, refiner_id: int, owner: str) -> tuple[Any, ...]: ...


class JobApi(Protocol):
    """What the HTTP layer calls: engine.service.JobService, or a fake in unit tests."""

    store: JobLookup
    preflight: Quoter | None  # None: this engine cannot quote (QUOTE_UNAVAILABLE)
    chain: PermissionReader | None  # None: this engine cannot read permissions (SCHEMA_UNAVAILABLE)
    data: Any  # engine.data.DataCatalog: where the refiners' data is
    engine_address: str | None  # the address its attestations recover to (None: it does not attest)

    def submit(self, request: JobRequest, signer: str, digest: str | None = None,
               signer_key: str | None = None, *, preflight: bool = True) -> tuple[Job, bool]: ...
    def get(self, job_id: str, owner: str, *, owner_only: bool = False) -> Job: ...
    async def wait_for_change(self, job_id: str, owner: str, known_status: str | None, timeout_s: float, *,
                              until_end: bool = False) -> Job: ...
    def cancel(self, job_id: str, owner: str) -> Job: ...
    def artifacts(self, job_id: str, owner: str) -> list[Artifact]: ...
    def artifact_file(self, job_id: str, owner: str, name: str) -> tuple[Artifact, Path]: ...
    def logs(self, job_id: str, owner: str) -> bytes: ...
    def health(self) -> dict[str, Any]: ...
    def start(self) -> None: ...
    def stop(self, timeout: float = 10.0) -> None: ...


# The dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in
# its thread pool, and a request paid one thread hop (~0.5-1 ms) for each of these
# reads of app.state and for the wallet check, none of which waits on anything.
async def _service(request: Request) -> JobApi:
    return request.app.state.service


async def _domain(request: Request) -> EngineDomain:
    return request.app.state.domain


async def _config(request: Request) -> ApiConfig:
    return request.app.state.api_config


async def _clock(request: Request) -> Callable[[], float]:
    return request.app.state.clock


async def _waiters(request: Request) -> WaiterLimit:
    return request.app.state.waiters


# The JobService (engine.service), or any fake with the same surface.
Service = Annotated[JobApi, Depends(_service)]
Domain = Annotated[EngineDomain, Depends(_domain)]
Config = Annotated[ApiConfig, Depends(_config)]
Clock = Annotated[Callable[[], float], Depends(_clock)]
Waiters = Annotated[WaiterLimit, Depends(_waiters)]


async def _current_wallet(
    request: Request,
    domain: Domain,
    config: Config,
    clock: Clock,
    # Declared so the OpenAPI document shows them; verify_read reads them itself.
    x_wallet_address: Annotated[str | None, Header(description="the reader's wallet (checksum address)")] = None,
    x_wallet_timestamp: Annotated[str | None, Header(description="unix seconds, signed")] = None,
    x_wallet_signature: Annotated[str | None, Header(description="EIP-712 EngineRead signature")] = None,
    authorization: Annotated[str | None, Header(description="`Bearer <token>` from POST /session")] = None,
) -> str:
    # Pure CPU, so on the event loop: a token is one HMAC; a signed read one EIP-712
    # recovery (~1 ms), no slower there than behind the GIL in the thread pool.
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() == "bearer":  # another scheme (a proxy's Basic auth) leaves the signed read to decide
        if not token.strip():
            raise AuthError("`Authorization: Bearer` carries no token (a token from POST /session)",
                            code="SESSION_INVALID")
        return request.app.state.sessions.verify_token(token.strip(), clock())
    # The signed path is the decoded request path, as the client signed it.
    return verify_read(
        request.headers,
        request.method,
        request.scope["path"],
        domain.chain_id,
        domain.registry,
        clock(),
        config.auth_window_s,
    )


# The checksum address proven by this request's X-Wallet-* headers, or by its session token.
CurrentWallet = Annotated[str, Depends(_current_wallet)]
