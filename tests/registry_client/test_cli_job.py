"""`registry job ...` driven in-process (CliRunner) against a real uvicorn server with a fake service."""

from __future__ import annotations

import json
import zipfile

import click
import pytest
from click.testing import CliRunner
from eth_account import Account

from registry_client.cli import cli
from registry_client.manifest import CONTRACT_KEYS, Deployment, save_deployment
from tests.conftest import ANVIL_KEYS
from tests.engine.api_fakes import CHAIN_ID, PIPELINE, REGISTRY

OWNER = Account.from_key(ANVIL_KEYS[0])
STRANGER = Account.from_key(ANVIL_KEYS[1])


@pytest.fixture
def manifest(tmp_path):
    addresses = {key: "0x" + f"{i + 1:02x}" * 20 for i, key in enumerate(CONTRACT_KEYS)}
    addresses["compute_instruction_registry"] = REGISTRY
    return save_deployment(Deployment(CHAIN_ID, addresses), tmp_path / "deployment.json")


@pytest.fixture
def run(server, service, manifest, monkeypatch):
    monkeypatch.setenv("BUILDER_KEY", ANVIL_KEYS[0])
    monkeypatch.setenv("STRANGER_KEY", ANVIL_KEYS[1])
    monkeypatch.setenv("REGISTRY_ENGINE_URL", server[0])
    runner = CliRunner()

    def invoke(*args: str, key: str = "BUILDER_KEY", json_out: bool = False):
        base = ["--deployment", str(manifest)] + (["--json"] if json_out else [])
        return runner.invoke(cli, [*base, "job", *args, "--key-env", key], catch_exceptions=False)

    return invoke


def submit(run, *extra: str, json_out: bool = False):
    return run("submit", "--instruction", "1", "--refiner", "2", "--query", "SELECT locale FROM users WHERE age > ?",
               "--params", "[30]", "--compute-job", "none", *extra, json_out=json_out)


def test_submit_prints_id(run, service):
    result = submit(run)
    assert result.exit_code == 0, result.output
    job_id = result.stdout.strip()
    assert job_id in service.jobs and service.jobs[job_id].owner == OWNER.address
    assert service.jobs[job_id].params == [30]


def test_submit_wait_shows_each_step(run, service):
    service.auto_advance = True
    result = submit(run, "--wait", "--poll", "0.05")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    shown = [line.split()[0] for line in lines if line.startswith("  ")]
    assert shown == ["PENDING"] + [s for s, _ in PIPELINE]
    assert any(line.strip().startswith("VERIFYING") and "block 42" in line for line in lines)
    assert lines[-1].endswith("SUCCEEDED")


def test_submit_wait_json_keeps_stdout_one_object(run, service):
    service.auto_advance = True
    result = submit(run, "--wait", "--poll", "0.05", json_out=True)
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["status"] == "SUCCEEDED" and "VERIFYING" in result.stderr


def test_status_wait_failed_exits_1(run, service):
    job_id = submit(run).stdout.strip()
    service.advance(job_id, "VERIFYING", block_number=7)
    service.advance(job_id, "FAILED", failure_code="NOT_APPROVED", failure_message="instruction 1 is not approved")
    status = run("status", job_id)
    assert status.exit_code == 0
    assert "FAILED" in status.stdout and "NOT_APPROVED" in status.stdout and "block 7" in status.stdout
    waited = run("wait", job_id, "--poll", "0.05")
    assert waited.exit_code == 1
    assert waited.stderr.strip().splitlines()[-1] == (
        f"error: job {job_id} FAILED: instruction 1 is not approved (NOT_APPROVED)")


def test_artifacts_download_zip(run, service, tmp_path):
    job_id = submit(run).stdout.strip()
    service.advance(job_id, "SUCCEEDED")
    service.add_artifact(job_id, "stats.json", b'{"n": 3}')
    service.add_artifact(job_id, "plots/chart.png", b"\x89PNG", "image/png")
    listed = run("artifacts", job_id)
    assert listed.exit_code == 0 and listed.stdout.splitlines()[0].split() == ["NAME", "SIZE", "SHA256", "TYPE"]
    assert "stats.json" in listed.stdout and "plots/chart.png" in listed.stdout
    out = tmp_path / "out"
    downloaded = run("download", job_id, "--out", str(out))
    assert downloaded.exit_code == 0, downloaded.output
    assert (out / "stats.json").read_bytes() == b'{"n": 3}' and (out / "plots" / "chart.png").exists()
    zipped = run("download", job_id, "--out", str(out), "--zip", json_out=True)
    assert zipped.exit_code == 0
    [path] = json.loads(zipped.stdout)["files"]
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["plots/chart.png", "stats.json"]


def test_cancel_and_logs(run, service):
    job_id = submit(run).stdout.strip()
    logs = run("logs", job_id)
    assert logs.exit_code == 1 and logs.stderr.startswith("error: ") and logs.stderr.rstrip().endswith("(LOGS_DISABLED)")
    service.share_logs = True
    assert run("logs", job_id).stdout == "hello from the container\n"
    cancelled = run("cancel", job_id)
    assert cancelled.exit_code == 0 and cancelled.stdout.strip() == f"job {job_id} CANCELLED"


def test_stranger_sees_not_found(run, service):
    job_id = submit(run).stdout.strip()
    result = run("status", job_id, key="STRANGER_KEY")
    assert result.exit_code == 1
    assert result.stderr.rstrip().endswith("(NOT_FOUND)") and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--params", "{bad"), "--params is not valid JSON"),
        (("--params", "5"), "--params must be a JSON list"),
    ],
)
def test_bad_params_one_line(run, args, message):
    result = run("submit", "--instruction", "1", "--refiner", "2", "--query", "SELECT 1", "--compute-job", "none", *args)
    assert result.exit_code == 1 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_engine_unreachable_one_line(run, monkeypatch):
    monkeypatch.setenv("REGISTRY_ENGINE_URL", "http://127.0.0.1:9")
    result = run("status", "job-1")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot reach the engine at http://127.0.0.1:9")
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_wallet_and_manifest(server, service, tmp_path, monkeypatch):
    monkeypatch.setenv("REGISTRY_ENGINE_URL", server[0])
    runner = CliRunner()
    no_wallet = runner.invoke(cli, ["--deployment", str(tmp_path / "none.json"), "job", "status", "x"])
    assert no_wallet.exit_code == 1 and no_wallet.stderr.startswith("error:")
    monkeypatch.setenv("BUILDER_KEY", ANVIL_KEYS[0])
    no_manifest = runner.invoke(cli, ["--deployment", str(tmp_path / "none.json"), "job", "status", "x",
                                      "--key-env", "BUILDER_KEY"])
    assert no_manifest.exit_code == 1 and "deployment manifest" in no_manifest.stderr


def test_every_job_command_documented():
    from registry_client.cli_job import job
    from tests.conftest import ROOT

    doc = (ROOT / "docs" / "api.md").read_text()
    assert set(job.commands) == {"submit", "quote", "list", "status", "wait", "artifacts", "download", "cancel",
                                 "logs"}
    for name, command in job.commands.items():
        assert f"registry job {name}" in doc
        assert "Example:" in (command.help or ""), f"`registry job {name}` help lacks an example"
        for param in command.params:
            if isinstance(param, click.Option) and param.name not in ("keystore", "key_env", "engine_url"):
                assert any(opt in doc for opt in param.opts), f"{name} {param.opts} undocumented"
    for code in ("ENGINE_UNREACHABLE", "WAIT_TIMEOUT", "CHECKSUM_MISMATCH", "UNSAFE_ARTIFACT_NAME"):
        assert f"`{code}`" in doc


def test_download_progress_only_on_a_terminal(run, service, tmp_path, monkeypatch):
    """Not a TTY (or --json): stderr stays quiet; the bar itself advances to the bytes received."""
    from registry_client import cli_job

    job_id = submit(run).stdout.strip()
    service.advance(job_id, "SUCCEEDED")
    service.add_artifact(job_id, "stats.json", b'{"n": 3}')
    quiet = run("download", job_id, "--out", str(tmp_path / "q"), json_out=True)
    assert quiet.exit_code == 0 and quiet.stderr == ""
    bar = cli_job._DownloadBar(enabled=True)
    bar(3, 8)
    bar(8, 8)
    assert bar._bar.pos == 8 and bar._bar.length == 8
    bar.close()
    off = cli_job._DownloadBar(enabled=False)
    off(1, None)
    assert off._bar is None


def test_logs_follow_waits_for_the_end_and_prints_them_once(run, service):
    service.share_logs = True
    service.auto_advance = True  # every read moves the fake job one step on
    job_id = submit(run).stdout.strip()
    followed = run("logs", job_id, "--follow", "--poll", "0.05")
    assert followed.exit_code == 0, followed.output
    assert followed.stdout == "hello from the container\n"  # printed as they came, not repeated
    assert service.jobs[job_id].status == "SUCCEEDED"  # it followed the job to its end
    as_json = run("logs", job_id, "--follow", json_out=True)
    assert json.loads(as_json.stdout) == {"job_id": job_id, "logs": "hello from the container\n"}


def test_dry_run_is_the_quote_and_a_priced_free_job_is_refused(run, service, monkeypatch):
    from engine.preflight import Quote

    report = {"columns": [["users", "locale"], ["users", ""]], "permissions_used": [3], "price": "500",
              "row_count": None}
    seen = []

    class Flight:
        def quote(self, request, signer):
            seen.append((request.compute_job_id, request.nonce))
            return Quote(500, None, report, True, 2, 9, 42)

    monkeypatch.setattr(service, "preflight", Flight(), raising=False)
    auto = run("submit", "--dry-run", "--instruction", "1", "--refiner", "2", "--query", "SELECT locale FROM users",
               "--nonce", "77")
    assert auto.exit_code == 0, auto.output
    assert auto.stdout.splitlines()[:2] == ["price: 500 wei (native token)", "reads: users.locale, users (table)"]
    assert "compute job: required (submit --compute-job auto opens one)" in auto.stdout
    refused = submit(run, "--dry-run")  # --compute-job none, yet priced: what submit would answer
    assert refused.exit_code == 1 and "PAYMENT_REQUIRED" in refused.stderr
    assert seen == [(0, 77), (0, seen[1][1])] and service.jobs == {}  # nothing submitted, no job opened
