"""The FastAPI application factory: wire settings, the job service, routers and problem handlers.

``create_app(settings)`` builds the real service (``engine.wiring.build_service``)
and owns its life: started on app start-up, stopped on shutdown. A caller that
passes its own ``service`` (tests, an embedding process) starts and stops it
itself. The EIP-712 domain (chain id + ComputeInstructionRegistry proxy) is read
once from the deployment manifest named by ``settings.deployment``.

Routers: ``/jobs`` (ours, EIP-712), ``/refiners/{id}/schema``, ``/job/{id}`` (Vana's scheme,
engine/api/routers/vana.py), ``/health``, ``/instructions/{id}/inspect`` (the static image
audit, public), ``/session`` (EIP-4361 sign-in) and ``/console`` (the browser console);
with ``role = "worker"`` only ``/health`` (the engine claims and runs jobs, the API is
elsewhere). Around the routers: ``RequestLimitsMiddleware`` (body, URL, header and JSON
depth caps before anything parses a request) and ``install_docs`` (Swagger UI from local
files; an OpenAPI document whose limits are the runtime's).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from engine.api.deps import ApiConfig, EngineDomain, JobApi
from engine.api.docs import install_docs
from engine.api.limits import RequestLimits, RequestLimitsMiddleware
from engine.api.longpoll import WaiterLimit
from engine.api.problems import install_problem_handlers
from engine.api.routers import console, health, instructions, jobs, refiners, session, vana
from engine.errors import EngineError
from engine.instruction_audit import auditor_for
from engine.sessions import sessions_from_settings
from engine.vana import reader_for

__all__ = ["api_config", "create_app", "engine_domain"]

API_VERSION = "1"


def engine_domain(settings: Any) -> EngineDomain:
    """Chain id and instruction registry from the settings' deployment manifest."""
    from registry_client.errors import RegistryError
    from registry_client.manifest import Deployment, load_deployment

    deployment = getattr(settings, "deployment", None)
    if deployment is None:
        raise EngineError("settings.deployment (the deployment manifest) is required", code="CONFIG_INVALID")
    try:
        manifest = deployment if isinstance(deployment, Deployment) else load_deployment(deployment)
    except RegistryError as exc:
        raise EngineError(str(exc), code="CONFIG_INVALID") from exc
    return EngineDomain(manifest.chain_id, manifest.address("compute_instruction_registry"))


def _deployment(settings: Any) -> Any | None:
    from registry_client.errors import RegistryError
    from registry_client.manifest import Deployment, load_deployment

    value = getattr(settings, "deployment", None)
    if value is None or isinstance(value, Deployment):
        return value
    try:
        return load_deployment(value)
    except RegistryError:
        return None  # engine_domain already refused an unreadable manifest, unless a domain was given


def api_config(settings: Any) -> ApiConfig:
    defaults = ApiConfig()
    lim = defaults.limits

    def pick(name: str, default: Any) -> Any:
        return type(default)(getattr(settings, name, default))

    return ApiConfig(
        auth_window_s=float(getattr(settings, "auth_window_s", 60.0)),
        deadline_max_s=pick("deadline_max_s", defaults.deadline_max_s),
        limits=RequestLimits(
            max_body_bytes=pick("api_max_body_bytes", lim.max_body_bytes),
            max_url_bytes=pick("api_max_url_bytes", lim.max_url_bytes),
            max_header_bytes=pick("api_max_header_bytes", lim.max_header_bytes),
            max_json_depth=pick("api_json_max_depth", lim.max_json_depth),
        ),
        header_timeout_s=pick("api_header_timeout_s", defaults.header_timeout_s),
        max_waiters_per_owner=pick("api_max_waiters_per_owner", defaults.max_waiters_per_owner),
        query_max_chars=pick("query_max_chars", defaults.query_max_chars),
        params_max_chars=pick("params_max_chars", defaults.params_max_chars),
        vana_plaintext_results=pick("vana_plaintext_results", defaults.vana_plaintext_results),
    )


def create_app(
    settings: Any,
    service: JobApi | None = None,
    *,
    domain: EngineDomain | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """Build the app. `domain` defaults to the manifest's; `clock` is injectable for tests."""
    owns_service = service is None
    if service is None:
        from engine.wiring import build_service

        service = build_service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if owns_service:
            service.start()
        try:
            yield
        finally:
            if owns_service:
                service.stop()

    app = FastAPI(
        title="Compute Engine",
        version=API_VERSION,
        summary="Run DLP-approved Docker jobs over permissioned SQLite data; owner-only artifacts.",
        description="Errors are RFC 9457 problem details with a stable `code`. See docs/api.md.",
        lifespan=lifespan,
        docs_url=None,  # served from local files by install_docs, never from a CDN
        redoc_url=None,
    )
    config = api_config(settings)
    app.state.service = service
    app.state.domain = domain or engine_domain(settings)
    app.state.api_config = config
    app.state.clock = clock
    app.state.waiters = WaiterLimit(config.max_waiters_per_owner)
    app.state.deployment = _deployment(settings)
    app.state.sessions = sessions_from_settings(settings, app.state.domain.chain_id, app.state.domain.registry)
    app.state.session_domain = getattr(settings, "session_domain", None)
    app.state.compute_jobs = reader_for(service)  # ComputeEngine.jobs, for /job/{id} (Vana's API)
    app.state.auditor = auditor_for(service)  # GET /instructions/{id}/inspect (None with a fake service)
    install_problem_handlers(app)
    if getattr(settings, "role", "all") != "worker":  # a worker serves /health only (liveness)
        app.include_router(jobs.router)
        app.include_router(refiners.router)
        app.include_router(vana.router)
        app.include_router(instructions.router)
        app.include_router(session.router)
        app.include_router(console.router)
    app.include_router(health.router)
    install_docs(app, config)
    # Outermost of the app's own layers: nothing parses a request before its limits hold.
    app.add_middleware(RequestLimitsMiddleware, limits=config.limits)
    return app
