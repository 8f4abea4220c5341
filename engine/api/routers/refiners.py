"""The /refiners resource: a refiner's schema as the signed reader may query it.

Names and types come from the engine's copy of the refiner's database
(engine/refiner_schema.py, schema pragmas only, never a row); coverage and
price from the reader's on-chain permissions (engine/chain.py, the query
step's pricing rules).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from engine.api.deps import CurrentWallet, Service
from engine.api.problems import PROBLEM_JSON
from engine.api.schemas import Problem, SchemaPublic
from engine.errors import JobFailure, RequestError
from engine.query.isolate import read_schema
from engine.refiner_schema import schema_for
from engine.submission import MAX_SQL_ID

__all__ = ["router"]

_PROBLEM = {"model": Problem, "content": {PROBLEM_JSON: {}}}
router = APIRouter(prefix="/refiners", tags=["refiners"], responses={500: _PROBLEM})
RefinerId = Annotated[int, Path(ge=1, le=MAX_SQL_ID, description="the refiner's on-chain id")]


@router.get("/{refiner_id}/schema", response_model=SchemaPublic, summary="A refiner's tables and your coverage",
            responses={401: _PROBLEM, 404: _PROBLEM, 422: _PROBLEM, 503: _PROBLEM})
def refiner_schema(refiner_id: RefinerId, wallet: CurrentWallet, service: Service) -> SchemaPublic:
    """Every table and column of the data the engine holds for the refiner, with its declared type;
    for the signed reader, whether their on-chain permissions cover it and what reading it costs."""
    chain = service.chain
    if chain is None:
        raise RequestError("this engine cannot read permissions", code="SCHEMA_UNAVAILABLE", http_status=503)
    try:
        tables = read_schema(service.data.source(refiner_id))  # in a query process: never a row
        permissions = chain.permissions(refiner_id, wallet)
    except JobFailure as exc:
        _status(exc)
        raise
    return SchemaPublic(**schema_for(tables, refiner_id, permissions, wallet))


def _status(exc: JobFailure) -> Any:
    if exc.code in ("REFINER_NOT_FOUND", "DATA_NOT_FOUND"):
        exc.http_status = 404
    elif exc.code == "CHAIN_UNAVAILABLE":
        exc.http_status = 503


