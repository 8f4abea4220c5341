"""Fixtures for registry_client tests: the `registry` CLI driven in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from registry_client.cli import cli as registry_cli
from registry_client.manifest import save_deployment
from tests.engine.api_fakes import FakeService, make_app, serve


class CliDriver:
    """Runs `registry ...` in-process against the session deployment.

    RPC and manifest come from REGISTRY_RPC / REGISTRY_DEPLOYMENT, as a user
    would set them; `as_=role` adds `--key-env TEST_<ROLE>_KEY`.
    """

    def __init__(self, rpc: str, manifest: Path, env: dict[str, str]):
        self.rpc = rpc
        self.manifest = manifest
        self.env = {"REGISTRY_RPC": rpc, "REGISTRY_DEPLOYMENT": str(manifest), "REGISTRY_PASSWORD": None, **env}

    def __call__(self, *args: str, as_: str | None = None, env: dict | None = None,
                 input: str | None = None) -> Result:
        argv = [str(a) for a in args]
        if as_ is not None:
            argv += ["--key-env", f"TEST_{as_.upper()}_KEY"]
        runner = CliRunner()
        return runner.invoke(registry_cli, argv, env={**self.env, **(env or {})}, input=input,
                             catch_exceptions=True)

    def ok(self, *args: str, **kw) -> Result:
        result = self(*args, **kw)
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        return result

    def json(self, *args: str, **kw) -> dict:
        result = self.ok("--json", *args, **kw)
        return json.loads(result.stdout)


def assert_clean_error(result: Result, fragment: str, exit_code: int = 1) -> None:
    """One `error: ...` line on stderr naming the problem, nothing on stdout, no traceback."""
    assert result.exit_code == exit_code, (result.stdout, result.stderr, result.exception)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    # Nothing else but transaction progress lines (there should be none on a refused call).
    assert [line for line in lines if not line.startswith("error: ")] == [], result.stderr
    assert fragment in errors[0], errors[0]
    assert "Traceback" not in result.stderr
    assert isinstance(result.exception, SystemExit)


@pytest.fixture
def manifest_path(tmp_path: Path, deployment) -> Path:
    return save_deployment(deployment, tmp_path / "deployment.json")


@pytest.fixture
def cli(chain, deployment, accounts, manifest_path: Path) -> CliDriver:
    return CliDriver(chain.url, manifest_path, accounts.env())


# ---- a real HTTP engine API over a fake service (engine client and `registry job` tests)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    service = FakeService(artifact_dir=tmp_path_factory.mktemp("artifacts"))
    with serve(make_app(service)) as url:
        yield url, service


@pytest.fixture
def service(server) -> FakeService:
    svc = server[1]
    svc.jobs.clear()
    svc.files.clear()
    svc.waits.clear()
    svc.auto_advance = False
    svc.share_logs = False
    return svc
