"""Issue 8 item 22: the OpenAPI document says what the runtime does, and /docs works offline."""

from __future__ import annotations

import json
import re
import time
from html.parser import HTMLParser

import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from engine.settings import Settings
from registry_client.eip712 import UINT256_MAX, JobRequest, sign_job_request
from tests.conftest import ANVIL_KEYS
from tests.engine.api_fakes import CHAIN_ID, REGISTRY, FakeService, make_app

OWNER = Account.from_key(ANVIL_KEYS[0])


@pytest.fixture
def client(tmp_path):
    with TestClient(make_app(FakeService(artifact_dir=tmp_path)), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def spec(client) -> dict:
    return client.get("/openapi.json").json()


def _body(nonce: int, params: str = "[]") -> dict:
    req = JobRequest(1, 2, "SELECT 1", params, nonce, int(time.time()) + 600)
    return {"request": req.to_message(), "signature": sign_job_request(OWNER, CHAIN_ID, REGISTRY, req),
            "signer": OWNER.address}


def test_uint256_bounds_are_exact_integers(client, spec):
    text = client.get("/openapi.json").text
    assert "e+77" not in text and "1.157920892373162" not in text
    request = spec["components"]["schemas"]["JobRequestBody"]["properties"]
    for name in ("instructionId", "refinerId", "nonce", "deadline"):
        assert request[name]["type"] == "integer"
        assert request[name]["maximum"] == UINT256_MAX and isinstance(request[name]["maximum"], int)
        assert isinstance(request[name]["minimum"], int)
    assert request["instructionId"]["minimum"] == 1 and request["nonce"]["minimum"] == 0
    assert re.search(r'"maximum":\s*115792089237316195423570985008687907853269984665640564039457584007913129639935',
                     text)


def test_the_largest_schema_valid_nonce_is_accepted_and_one_more_is_not(client):
    assert client.post("/jobs", json=_body(UINT256_MAX)).status_code == 201
    too_big = _body(1)
    too_big["request"]["nonce"] = UINT256_MAX + 1
    resp = client.post("/jobs", json=too_big)
    assert resp.status_code == 422 and resp.json()["code"] == "VALIDATION_ERROR"


def test_text_limits_in_the_schema_are_the_runtime_limits(spec):
    request = spec["components"]["schemas"]["JobRequestBody"]["properties"]
    defaults = Settings.model_fields
    assert request["params"]["maxLength"] == defaults["params_max_chars"].default == 100_000
    assert request["query"]["maxLength"] == defaults["query_max_chars"].default
    assert request["params"]["minLength"] == 1


def test_the_schema_follows_the_operators_limits(tmp_path):
    from dataclasses import dataclass

    from tests.engine.api_fakes import FakeSettings

    @dataclass(frozen=True)
    class Tight(FakeSettings):
        params_max_chars: int = 500
        query_max_chars: int = 2000

    app = make_app(FakeService(artifact_dir=tmp_path), settings=Tight())
    request = app.openapi()["components"]["schemas"]["JobRequestBody"]["properties"]
    assert request["params"]["maxLength"] == 500 and request["query"]["maxLength"] == 2000


def test_empty_params_is_refused_by_the_schema(client):
    body = _body(3)
    body["request"]["params"] = ""
    resp = client.post("/jobs", json=body)
    assert resp.status_code == 422 and resp.json()["code"] == "VALIDATION_ERROR"
    assert ["body", "request", "params"] in [e["loc"] for e in resp.json()["errors"]]
    assert client.post("/jobs", json=_body(4, params="null")).status_code == 201


def test_artifact_media_types_are_documented(spec):
    download = spec["paths"]["/jobs/{job_id}/artifacts/{name}"]["get"]["responses"]["200"]
    assert "*/*" in download["content"] and "media_type" in download["description"]
    listed = spec["components"]["schemas"]["ArtifactPublic"]["properties"]["media_type"]
    assert "application/octet-stream" in listed["description"]
    assert "application/zip" in spec["paths"]["/jobs/{job_id}/artifacts.zip"]["get"]["responses"]["200"]["content"]


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]


def test_docs_load_only_local_assets_and_they_answer(client):
    page = client.get("/docs")
    assert page.status_code == 200 and "swagger" in page.text.lower()
    refs = _Refs()
    refs.feed(page.text)
    assert refs.urls, "the page references no assets"
    # Every URL, in tags and in the inline script, is a path on this engine.
    quoted = re.findall(r"""['"]((?:https?:)?//[^'"]+)['"]""", page.text)
    assert quoted == [], quoted
    for url in refs.urls:
        assert url.startswith("/"), url
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 100, url
    assert "validatorUrl" in page.text and json.dumps(None) in page.text
    assert client.get("/openapi.json").status_code == 200
