"""A bounded schemathesis run against the API's own /openapi.json: no 5xx, problem JSON on every error.

The app is the real API (routers, limits, problem handlers) over the in-memory
FakeService, called in-process (ASGI). Most generated reads are re-pointed at
a real job (one finished with artifacts, one pending) and signed by its owner,
so they reach the handlers instead of stopping at 401; the rest keep the
generated ids and X-Wallet-* headers. Hypothesis examples per operation are
few (``MAX_EXAMPLES``) so the whole run stays within about half a minute.
"""

from __future__ import annotations

import json
import tempfile
import time
import zlib
from pathlib import Path

import schemathesis
from eth_account import Account
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from registry_client.eip712 import JobRequest, job_request_digest, read_headers
from tests.conftest import ANVIL_KEYS
from tests.engine.api_fakes import CHAIN_ID, REGISTRY, FakeService, make_app

MAX_EXAMPLES = 25
OWNER = Account.from_key(ANVIL_KEYS[0])


def _service_with_jobs() -> FakeService:
    service = FakeService(artifact_dir=Path(tempfile.mkdtemp(prefix="schemathesis-artifacts-")))
    for nonce in (1, 2):
        req = JobRequest(1, 2, "SELECT 1", "[]", nonce, int(time.time()) + 3600)
        service.submit(req, OWNER.address, job_request_digest(CHAIN_ID, REGISTRY, req))
    service.advance("job-1", "SUCCEEDED")
    service.add_artifact("job-1", "stats.json", b'{"n": 1}')
    service.add_artifact("job-1", "plots/by locale.png", b"\x89PNG", "image/png")
    return service


_service = _service_with_jobs()
schema = schemathesis.openapi.from_asgi("/openapi.json", make_app(_service))


def _point_at_a_real_job(case) -> None:
    """Two cases in three: a real job id (and artifact name), signed by the job's owner."""
    params = case.path_parameters or {}
    if "job_id" not in params:
        return
    pick = zlib.crc32(repr(sorted(params.items())).encode()) % 3
    if pick == 0:
        return
    params["job_id"] = "job-1" if pick == 1 else "job-2"
    if "name" in params and pick == 1:
        params["name"] = "stats.json"
    path = case.path.format(**params)
    case.headers = {**(case.headers or {}), **read_headers(OWNER, CHAIN_ID, REGISTRY, case.method, path)}


def problem_json_on_errors(ctx, response, case) -> None:
    """Every 4xx/5xx is RFC 9457 problem JSON with a stable `code`."""
    if response.status_code < 400:
        return
    content_type = response.headers.get("content-type", [""])
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    assert content_type.startswith("application/problem+json"), (
        f"{case.method} {case.path} answered {response.status_code} as {content_type!r}")
    body = json.loads(response.content)
    assert isinstance(body.get("code"), str) and body["code"], body
    assert body.get("status") == response.status_code, body


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_5xx_and_always_problem_json(case):
    _point_at_a_real_job(case)
    response = case.call()
    case.validate_response(response, checks=[not_a_server_error, problem_json_on_errors])
