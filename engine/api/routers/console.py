"""/console: the browser console's bundle (built by `make setup`) and the chain facts it needs.

``GET /console`` serves the bundled page from ``engine/api/console_static/``
(git-ignored; ``make setup`` runs esbuild over ``console/``); nothing comes from
a CDN. Without a bundle the page says how to build it (503 CONSOLE_NOT_BUILT).
``GET /console/config.json`` is what the page cannot know by itself: the chain
id, the deployment's contract addresses, the engine's wallet, and the EIP-712
typed-data types and domain of a JobRequest, taken from registry_client/eip712.py
so the browser signs exactly what the engine verifies.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse

from engine.api.deps import Domain, Service
from engine.errors import NotFoundError, RequestError
from registry_client.eip712 import JobRequest, job_request_typed_data

__all__ = ["CONSOLE_DIR", "router"]

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console_static"
_ASSET = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,100}$")
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".html": "text/html; charset=utf-8", ".map": "application/json"}
# The page runs only its own bundle; it talks only to this engine and the wallet.
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_HEADERS = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
_NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>Console not built</title>
<h1>The console is not built</h1>
<p>This engine has no console bundle in <code>engine/api/console_static/</code>.
Run <code>make setup</code> (it runs esbuild over <code>console/</code>), then reload.</p>
<p>Code: CONSOLE_NOT_BUILT</p>"""

router = APIRouter(prefix="/console", tags=["console"], include_in_schema=False)


def _dir(request: Request) -> Path:
    return getattr(request.app.state, "console_dir", CONSOLE_DIR)


@router.get("")
@router.get("/", include_in_schema=False)
def console_page(request: Request) -> Any:
    index = _dir(request) / "index.html"
    if not index.is_file():
        return HTMLResponse(_NOT_BUILT, status_code=503, headers={"X-Problem-Code": "CONSOLE_NOT_BUILT"})
    return FileResponse(index, media_type=_TYPES[".html"], headers=_HEADERS)


def _typed_data_shape(chain_id: int, registry: str) -> dict[str, Any]:
    """The JobRequest typed-data document minus its message: types, primaryType, domain."""
    sample = JobRequest.create(0, 0, "SELECT 1", None, 0, 0)
    typed = job_request_typed_data(chain_id, registry, sample)
    typed.pop("message")
    return typed


@router.get("/config.json")
def console_config(request: Request, domain: Domain, service: Service) -> dict[str, Any]:
    deployment = getattr(request.app.state, "deployment", None)
    sessions = request.app.state.sessions
    return {
        "chain_id": domain.chain_id,
        "addresses": dict(deployment.addresses) if deployment is not None
        else {"compute_instruction_registry": domain.registry},
        "deploy_block": deployment.deploy_block if deployment is not None else 0,
        "engine_address": service.engine_address,
        "job_request": _typed_data_shape(domain.chain_id, domain.registry),
        "session": {"max_lifetime_s": sessions.max_lifetime_s},
    }


@router.get("/{name}")
def console_asset(name: str, request: Request) -> FileResponse:
    if not _ASSET.match(name):
        raise NotFoundError(f"no console file {name[:40]!r}", code="NOT_FOUND")
    base = _dir(request)
    if not (base / "index.html").is_file():
        raise RequestError("the console is not built: run `make setup`", code="CONSOLE_NOT_BUILT", http_status=503)
    path = base / name
    if not path.is_file():
        raise NotFoundError(f"no console file {name!r}", code="NOT_FOUND")
    return FileResponse(path, media_type=_TYPES.get(path.suffix, "application/octet-stream"), headers=_HEADERS)
