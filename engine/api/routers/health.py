"""GET /health: is the chain reachable, does Docker answer, is the state store usable.

200 with ``{"status": "ok", "checks": {...}}`` when every check passes, 503
with ``"status": "unavailable"`` when one fails. No auth: it reveals no job data.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from engine.api.deps import Service
from engine.api.schemas import CheckPublic, HealthPublic

__all__ = ["normalise_checks", "router"]

router = APIRouter(tags=["health"])


def _check(value: Any) -> CheckPublic:
    """Accept the shapes a service may report: bool, "ok"/message, or {"ok": bool, ...}."""
    if isinstance(value, CheckPublic):
        return value
    if isinstance(value, bool):
        return CheckPublic(ok=value)
    if isinstance(value, str):
        return CheckPublic(ok=value.lower() == "ok", detail=None if value.lower() == "ok" else value)
    if isinstance(value, dict):
        ok = value.get("ok")
        if ok is None:
            ok = str(value.get("status", "")).lower() == "ok"
        detail = value.get("detail") or value.get("error") or value.get("message")
        return CheckPublic(ok=bool(ok), detail=None if detail is None else str(detail))
    return CheckPublic(ok=False, detail="unknown check result")


def normalise_checks(report: Any) -> dict[str, CheckPublic]:
    """`{"checks": {...}}` (engine.service) or a flat `{name: result}` mapping."""
    if not isinstance(report, dict):
        return {}
    checks = report["checks"] if isinstance(report.get("checks"), dict) else report
    skip = ("status", "ok", "queue", "engine_address")
    return {name: _check(value) for name, value in checks.items() if name not in skip}


@router.get(
    "/health",
    response_model=HealthPublic,
    summary="Chain, Docker and store health",
    responses={503: {"model": HealthPublic, "description": "a check failed"}},
)
def health(service: Service) -> Any:
    queue = None
    engine_address = None
    try:
        report = service.health()
        checks = normalise_checks(report)
        if isinstance(report, dict) and isinstance(report.get("queue"), dict):
            queue = {k: int(v) for k, v in report["queue"].items()}
        if isinstance(report, dict) and isinstance(report.get("engine_address"), str):
            engine_address = report["engine_address"]
    except Exception as exc:  # noqa: BLE001 - a broken health probe is itself "unavailable"
        checks = {"service": CheckPublic(ok=False, detail=type(exc).__name__)}
    healthy = bool(checks) and all(c.ok for c in checks.values())
    body = HealthPublic(status="ok" if healthy else "unavailable", checks=checks, queue=queue,
                        engine_address=engine_address)
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)
