"""Every API error as RFC 9457 problem details (`application/problem+json`) with a stable `code`.

Shape: ``{"type", "title", "status", "detail", "code", "instance"}`` (+ ``errors``
for validation problems). Handlers cover the engine's own ``EngineError``s,
FastAPI validation errors (422 ``VALIDATION_ERROR``), Starlette's HTTP errors
(unknown route 404 ``NOT_FOUND``, 405 ``METHOD_NOT_ALLOWED``) and any other
exception (500 ``INTERNAL_ERROR``, logged, no internals in the body).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.errors import EngineError

__all__ = ["API_ERROR_CODES", "PROBLEM_JSON", "install_problem_handlers", "problem_body", "problem_response"]

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_S = 1  # the Retry-After of a 429
_TYPE_BASE = "urn:compute-engine:problem:"
_log = logging.getLogger("engine.api")

# Codes the API itself answers with (job failure codes live in engine.errors.FAILURE_CODES).
API_ERROR_CODES: dict[str, str] = {
    "INVALID_REQUEST": "the request is malformed: bad HTTP, a bad Content-Length, or a submit body field "
                       "(the detail names it)",
    "BODY_TOO_LARGE": "the request body is over the engine's limit (413), refused before it is parsed",
    "URL_TOO_LONG": "the request URL is over the engine's limit (414)",
    "HEADERS_TOO_LARGE": "the request headers are over the engine's limit (431)",
    "JSON_TOO_DEEP": "the JSON body, or the params JSON text, nests deeper than the engine's limit",
    "TOO_MANY_WAITERS": "this wallet already holds the most long-polls the engine allows at once (429)",
    "VALIDATION_ERROR": "the request does not match the schema (see `errors`)",
    "AUTH_REQUIRED": "a read or cancel without the X-Wallet-* headers (on /job/{id}: without x-job-id-signature)",
    "BAD_SIGNATURE": "malformed signature, or it does not match the stated wallet for this engine's domain",
    "WRONG_DOMAIN": "the request names another chain id or registry than the engine's",
    "DEADLINE_EXPIRED": "the signed job request's deadline has passed",
    "DEADLINE_TOO_FAR": "the signed job request's deadline is too far ahead",
    "STALE_TIMESTAMP": "the read signature's timestamp is outside the engine's clock window",
    "SIWE_INVALID": "POST /session: the EIP-4361 message is malformed, lacks an Expiration Time, is issued in "
                    "the future, asks for a session longer than `session_max_s`, or its address is not EIP-55",
    "SIWE_WRONG_DOMAIN": "POST /session: the message's domain, URI or chain id is not this engine's",
    "SIWE_EXPIRED": "POST /session: the message's Expiration Time has passed (or its Not Before is ahead)",
    "SIWE_BAD_SIGNATURE": "POST /session: the signature is malformed or not the message's address's personal_sign",
    "SIWE_NONCE_UNKNOWN": "POST /session: the nonce was not issued by GET /session/nonce, expired, or was used",
    "SESSION_NONCES_FULL": "GET /session/nonce: too many unused sign-in nonces outstanding (503); retry shortly",
    "SESSION_INVALID": "the Authorization bearer token is malformed, altered, or from an engine with another key",
    "SESSION_EXPIRED": "the session token's expiry has passed; sign in again",
    "SESSION_WRONG_CHAIN": "the session token was issued for another chain than this engine's",
    "CONSOLE_NOT_BUILT": "GET /console: the console bundle is missing (503); `make setup` builds it",
    "QUERY_TOO_LONG": "the SQL text is over the engine's limit",
    "PARAMS_TOO_LONG": "the params JSON is over the engine's limit",
    "INVALID_PARAMS": "a query parameter SQLite cannot bind: not a number, string or null, or an integer over 64 bits",
    "QUERY_SIGNATURE_MISMATCH": "/job/{id}: the query_signature is not the on-chain job owner's signature "
                                "of the query (403)",
    "COMPUTE_JOB_NOT_FOUND": "/job/{id}: no such job on the ComputeEngine contract (404)",
    "COMPUTE_JOB_NOT_OWNED": "/job/{id}: the x-job-id-signature's signer does not own the on-chain job (403)",
    "COMPUTE_JOB_USED": "/job/{id}: the on-chain job already ran a different query; submit a new one (409)",
    "CHAIN_UNAVAILABLE": "/job/{id}, /instructions/{id}/inspect, /refiners/{id}/schema, /jobs/quote: the chain could not be read (503); retry",
    "INVALID_CURSOR": "GET /jobs: the cursor is not a next_cursor this engine gave out",
    "PREFLIGHT_BUSY": "POST /jobs or /jobs/quote: too many requests are being checked at once (503); retry",
    "QUOTE_UNAVAILABLE": "POST /jobs/quote: this engine was built without preflight checks (503)",
    "SCHEMA_UNAVAILABLE": "GET /refiners/{id}/schema: this engine cannot read permissions (503)",
    "NONCE_REUSED": "this wallet already used the nonce for a different request",
    "JOB_FINISHED": "the job already ended; it cannot be cancelled",
    "ARTIFACTS_EXPIRED": "the job's artifacts passed their retention time and were deleted",
    "QUEUE_FULL": "the engine's job queue is full; retry later",
    "STORAGE_FULL": "the engine's disk is full (503); retry after the operator frees space",
    "STORE_UNAVAILABLE": "the job store (PostgreSQL) cannot be reached (503); retry",
    "NOT_FOUND": "no such job (or artifact) for this wallet — also for other wallets' jobs",
    "LOGS_DISABLED": "the operator does not share container logs",
    "INSTRUCTION_NOT_FOUND": "/instructions/{id}/inspect: no compute instruction with that id on chain (404)",
    "IMAGE_FETCH_FAILED": "/instructions/{id}/inspect: the archive could not be downloaded (refused address, "
                          "HTTP error, network, deadline) (502)",
    "IMAGE_HASH_MISMATCH": "/instructions/{id}/inspect: the archive's sha256 differs from the on-chain hash "
                           "(changed after registration); nothing of it is reported (502)",
    "IMAGE_TOO_LARGE": "/instructions/{id}/inspect: the archive, or what it expands to, is over the engine's caps (422)",
    "IMAGE_INVALID": "/instructions/{id}/inspect: the archive is not one `docker save` image the engine would load (422)",
    "AUDIT_BUSY": "/instructions/{id}/inspect: the engine is running (or queueing) as many audits as it allows (503); retry",
    "AUDIT_UNAVAILABLE": "/instructions/{id}/inspect: this engine was built without the auditor (503)",
    "NOT_RECIPIENT": "the job's results are sealed to another wallet (its recipient); the submitter sees names and sizes",
    "METHOD_NOT_ALLOWED": "the route exists but not with this HTTP method",
    "HTTP_ERROR": "an HTTP error the web framework raised without an engine code (the status says which)",
    "INTERNAL_ERROR": "an unexpected engine error (see the operator's log)",
}


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_body(status: int, code: str, detail: str, instance: str) -> dict[str, Any]:
    return {
        "type": _TYPE_BASE + code,
        "title": _title(status),
        "status": status,
        "detail": detail,
        "code": code,
        "instance": instance,
    }


def problem_response(
    status: int,
    code: str,
    detail: str,
    instance: str,
    *,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = problem_body(status, code, detail, instance)
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _instance(request: Request) -> str:
    return request.scope.get("path", "")


def _engine_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EngineError)
    status = int(getattr(exc, "http_status", 500) or 500)
    headers = {"WWW-Authenticate": 'EIP712 realm="compute-engine"'} if status == 401 else getattr(exc, "headers", None)
    if status == 429 and not headers:  # a long-poll slot frees when one answers: retry soon (EngineClient does)
        headers = {"Retry-After": str(RETRY_AFTER_S)}
    extra = {"job_id": exc.job_id} if getattr(exc, "job_id", None) and status != 404 else None
    return problem_response(status, exc.code, exc.message, _instance(request), extra=extra, headers=headers)


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # loc + msg only: echoing `input` could repeat a large or sensitive body.
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
    where = ", ".join(".".join(str(p) for p in e["loc"]) for e in errors[:5])
    return problem_response(
        422, "VALIDATION_ERROR", f"invalid request: {where}", _instance(request), extra={"errors": errors}
    )


# The framework's own refusals, named like the engine's (a code is stable, a status is not).
_FRAMEWORK_CODES = {400: "INVALID_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
                    413: "BODY_TOO_LARGE", 414: "URL_TOO_LONG", 431: "HEADERS_TOO_LARGE"}


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _FRAMEWORK_CODES.get(exc.status_code, "HTTP_ERROR")
    detail = exc.detail if isinstance(exc.detail, str) else _title(exc.status_code)
    if exc.status_code == 404:
        detail = f"no route {request.method} {_instance(request)}"
    return problem_response(exc.status_code, code, detail, _instance(request), headers=getattr(exc, "headers", None))


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    _log.exception("unhandled error on %s %s", request.method, _instance(request), exc_info=exc)
    return problem_response(500, "INTERNAL_ERROR", "unexpected engine error; see the operator's log", _instance(request))


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(EngineError, _engine_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
