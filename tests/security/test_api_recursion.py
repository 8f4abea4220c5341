"""Issue 8 item 1: no request can overflow the C stack (SIGSEGV) of the engine.

py_ecc (under eth-account) raises the recursion limit to 100,000 at import; the
engine and the CLI must run with a safe limit, and nested JSON is refused by
depth before any parser recurses. Proven against a real uvicorn process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from registry_client.eip712 import JobRequest, sign_job_request
from tests.conftest import ANVIL_KEYS, ROOT
from tests.security.fake_api_server import spawn

DEPTH = 100_000


@pytest.mark.parametrize("module", ["engine.api.app", "engine.cli", "registry_client.cli",
                                    "registry_client.eip712", "web3"])
def test_recursion_limit_is_safe_after_importing(module):
    # A fresh interpreter: this test process may have imported things in another order.
    code = (f"import sys, {module}, registry_client, eth_account, web3; "
            "print(sys.getrecursionlimit())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={"PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=60, check=True)
    assert int(out.stdout.strip()) <= 1000


def test_deep_json_raises_instead_of_crashing_after_engine_import():
    code = ("import json, engine.api.app\n"
            "try:\n    json.loads('[' * 100000)\nexcept RecursionError:\n    print('recursion-error')\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={"PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, f"interpreter died with {out.returncode}"
    assert out.stdout.strip() == "recursion-error"


def _submit_with_params(params_text: str) -> dict:
    from eth_account import Account

    account = Account.from_key(ANVIL_KEYS[0])
    req = JobRequest(1, 2, "SELECT 1", "[]", 7, int(time.time()) + 600)
    message = {**req.to_message(), "params": params_text}
    return {"request": message, "signature": sign_job_request(account, 31337, "0x" + "00" * 20, req),
            "signer": account.address}


def _assert_problem(resp: httpx.Response, code: str) -> None:
    assert 400 <= resp.status_code < 500, resp.text[:200]
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["code"] == code


def test_deeply_nested_bodies_get_4xx_and_the_server_survives():
    with spawn() as (proc, base), httpx.Client(base_url=base, timeout=20) as client:
        raw = client.post("/jobs", content=b"[" * DEPTH, headers={"content-type": "application/json"})
        _assert_problem(raw, "JSON_TOO_DEEP")
        nested_obj = client.post("/jobs", content=b'{"a":' * 70_000,
                                 headers={"content-type": "application/json"})
        _assert_problem(nested_obj, "JSON_TOO_DEEP")
        in_params = client.post("/jobs", content=json.dumps(_submit_with_params("[" * DEPTH + "]" * DEPTH)),
                                headers={"content-type": "application/json"})
        _assert_problem(in_params, "JSON_TOO_DEEP")
        assert proc.poll() is None, "the server process died"
        assert client.get("/health").status_code == 200


def test_shallow_bodies_with_brackets_in_strings_still_pass():
    from engine.api.limits import json_too_deep

    assert not json_too_deep(json.dumps({"q": "[" * 10_000, "p": [[1], [2]]}), 4)
    assert not json_too_deep(json.dumps({"q": '\\"[' * 1000}), 4)
    assert json_too_deep("[" * 5 + "]" * 5, 4)
    assert not json_too_deep("[" * 4 + "]" * 4, 4)
    assert json_too_deep(b'{"a":{"b":{"c":{"d":{"e":1}}}}}', 4)
