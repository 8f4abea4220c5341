"""GET /instructions/{id}/inspect: what an instruction's image runs, read statically (public).

No signature: the instruction's archive URL and hash are public on chain, and
the report holds only what the archive holds (environment variable names,
never their values). The work is engine/instruction_audit.py's; this route
maps it to HTTP. A plain ``def``: the download and the audit block, so they
run in FastAPI's thread pool, bounded by the auditor's own slots.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from engine.api.problems import PROBLEM_JSON
from engine.api.schemas import Problem
from engine.instruction_audit import AuditError

__all__ = ["router"]

_PROBLEM = {"model": Problem, "content": {PROBLEM_JSON: {}}}

router = APIRouter(prefix="/instructions", tags=["instructions"],
                   responses={status: _PROBLEM for status in (404, 422, 500, 502, 503)})

MAX_ID = 2**256 - 1


@router.get("/{instruction_id}/inspect", summary="Audit an instruction's image without running it")
def inspect_instruction(
    request: Request, instruction_id: Annotated[int, Path(ge=1, le=MAX_ID)]
) -> dict[str, Any]:
    """The static audit report (docs/api.md): config, layers, file tree, sources, packages, warnings."""
    auditor = getattr(request.app.state, "auditor", None)
    if auditor is None:
        raise AuditError("this engine does not audit images", code="AUDIT_UNAVAILABLE", http_status=503)
    return auditor.inspect(instruction_id)
