"""One CLI contract across every `registry` command (docs/cli.md, Conventions).

Every command's `--json` is checked by the same rules: a create carries `id`, a
list is an array, every amount is a decimal string under a `*_wei` key. Errors
read `error: <message> (CODE)` for a chain revert, an RPC that is down and bad
input, in-process and once through the real entry point. `job download` never
overwrites without `--force`, takes a 255-byte name and refuses unsafe names
one by one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from registry_client.cli import cli as registry_cli
from registry_client.manifest import save_deployment
from tests.conftest import ROOT
from tests.registry_client.conftest import CliDriver
from tests.registry_client.test_cli_job import manifest, run, submit  # noqa: F401 - fixtures

CREATES = {"dlp register", "refiner add", "schema add", "instruction add", "permission grant", "wallet new",
           "job submit"}
LISTS = {"refiner list", "schema list", "instruction list", "permission list", "job artifacts"}
OLD_AMOUNT_KEYS = {"price", "balance", "deposited", "withdrawn", "earnings", "claimed", "amount"}
ERROR_LINE = re.compile(r"^error: .+ \([A-Z][A-Z0-9_]+\)$")
SHA = "ab" * 32


def _walk(value: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [kv for k, v in value.items() for kv in [(f"{path}{k}", v), *_walk(v, f"{path}{k}.")]]
    if isinstance(value, list):
        return [kv for item in value for kv in _walk(item, path)]
    return []


def check_contract(command: str, out: Any, deep: bool = True) -> None:
    if command in LISTS:
        assert isinstance(out, list) and all(isinstance(i, dict) for i in out), out
        assert out, f"{command}: the scenario should list something"
    else:
        assert isinstance(out, dict), out
    if command in CREATES:
        assert out["id"] not in (None, ""), out
    pairs = _walk(out) if deep else [(k, v) for item in (out if isinstance(out, list) else [out]) for k, v in item.items()]
    for key, value in pairs:
        name = key.rsplit(".", 1)[-1]
        assert name not in OLD_AMOUNT_KEYS, f"{command}: amount {key} is not named *_wei"
        if name.endswith("_wei"):
            assert value is None or (isinstance(value, str) and value.isdigit()), f"{command}: {key}={value!r}"


@pytest.fixture(scope="module")
def chain_outputs(anvil, deployment, accounts, tmp_path_factory) -> dict[str, Any]:
    """Every chain command's --json once, on the session anvil (rolled back afterwards)."""
    snap = anvil.rpc("evm_snapshot")
    tmp = tmp_path_factory.mktemp("contract")
    cli = CliDriver(anvil.url, save_deployment(deployment, tmp / "deployment.json"), accounts.env())
    out: dict[str, Any] = {}

    def j(name: str, *args: str, as_: str | None = None) -> Any:
        out[name] = cli.json(*args, as_=as_)
        return out[name]

    try:
        dlp = str(j("dlp register", "dlp", "register", "--name", "Contract DLP", as_="dlp_owner")["id"])
        j("dlp show", "dlp", "show", dlp)
        schema = str(j("schema add", "schema", "add", "--name", "s1", "--url", "https://e.org/s", as_="stranger")["id"])
        j("schema show", "schema", "show", schema)
        j("schema list", "schema", "list")
        ref = str(j("refiner add", "refiner", "add", "--dlp", dlp, "--name", "users", "--schema", schema,
                    as_="dlp_owner")["id"])
        j("refiner show", "refiner", "show", ref)
        j("refiner list", "refiner", "list", "--dlp", dlp)
        ins = str(j("instruction add", "instruction", "add", "--sha256", SHA, "--url", "https://e.org/j.tar",
                    as_="builder")["id"])
        j("instruction approve", "instruction", "approve", ins, "--dlp", dlp, as_="dlp_owner")
        j("instruction show", "instruction", "show", ins, "--dlp", dlp)
        j("instruction list", "instruction", "list", "--dlp", dlp)
        pid = str(j("permission grant", "permission", "grant", "--refiner", ref, "--table", "users", "--price",
                    "1000", as_="dlp_owner")["id"])
        j("permission list", "permission", "list", "--refiner", ref)
        j("permission revoke", "permission", "revoke", pid, as_="dlp_owner")
        j("instruction revoke", "instruction", "revoke", ins, "--dlp", dlp, as_="dlp_owner")
        j("deposit", "deposit", "5000", as_="builder")
        j("withdraw", "withdraw", "1000", as_="builder")
        j("balance", "balance", "--account", accounts.builder.address)
        j("dlp earnings", "dlp", "earnings", dlp)
        j("engine authorize", "engine", "authorize", accounts.stranger.address, as_="deployer")
        j("refiner adopt", "refiner", "adopt", "--dlp", dlp, as_="dlp_owner")
        j("dlp transfer", "dlp", "transfer", dlp, "--to", accounts.stranger.address, "--yes", as_="dlp_owner")
        out["wallet new"] = cli.json("wallet", "new", "--out", str(tmp / "k.json"), env={"REGISTRY_PASSWORD": "pw"})
        yield out
    finally:
        anvil.rpc("evm_revert", [snap])


CHAIN_COMMANDS = ["dlp register", "dlp show", "schema add", "schema show", "schema list", "refiner add",
                  "refiner show", "refiner list", "instruction add", "instruction approve", "instruction show",
                  "instruction list", "permission grant", "permission list", "permission revoke",
                  "instruction revoke", "deposit", "withdraw", "balance", "dlp earnings", "engine authorize",
                  "refiner adopt", "dlp transfer", "wallet new"]


@pytest.mark.chain
@pytest.mark.parametrize("command", CHAIN_COMMANDS)
def test_chain_command_json_keeps_the_contract(chain_outputs, command):
    check_contract(command, chain_outputs[command])


def test_permission_price_is_a_wei_string(chain_outputs):
    assert chain_outputs["permission grant"]["price_wei"] == "1000"
    assert chain_outputs["balance"]["balance_wei"] == "4000"
    assert os.path.isabs(chain_outputs["wallet new"]["keystore"])


@pytest.mark.parametrize("command", ["job submit", "job status", "job artifacts", "job cancel"])
def test_job_command_json_keeps_the_contract(run, service, command):  # noqa: F811
    job_id = json.loads(submit(run, json_out=True).stdout)["id"]
    service.add_artifact(job_id, "stats.json", b"{}")
    args = {"job submit": None, "job status": ("status", job_id), "job artifacts": ("artifacts", job_id),
            "job cancel": ("cancel", job_id)}[command]
    result = submit(run, json_out=True) if args is None else run(*args, json_out=True)
    assert result.exit_code == 0, result.output
    # job objects are the engine's API answer (its access_report keeps the API's own names)
    check_contract(command, json.loads(result.stdout), deep=False)


def test_job_artifacts_keep_expires_at(run, service):  # noqa: F811
    job_id = submit(run).stdout.strip()
    service.advance(job_id, "SUCCEEDED")
    service.add_artifact(job_id, "stats.json", b"{}")
    [item] = json.loads(run("artifacts", job_id, json_out=True).stdout)
    assert "expires_at" in item and item["name"] == "stats.json"


# ---- errors: one line with a code ------------------------------------------------


def _one_error_line(stderr: str, code: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert ERROR_LINE.match(lines[0]) and lines[0].endswith(f"({code})"), lines[0]
    return lines[0]


@pytest.mark.chain
def test_chain_revert_error_has_its_code(cli):
    result = cli("dlp", "show", "99")
    assert result.exit_code == 1
    assert _one_error_line(result.stderr, "DLP_NOT_FOUND") == "error: no DLP with id 99 (DLP_NOT_FOUND)"
    dlp = cli.ok("dlp", "register", "--name", "Revert DLP", as_="dlp_owner").stdout.strip()
    refused = cli("refiner", "add", "--dlp", dlp, "--name", "x", "--schema-url", "https://e.org", as_="stranger")
    assert refused.exit_code == 1  # simulated first: NotDlpOwner() decoded, nothing sent
    assert "is not the owner of DLP" in _one_error_line(refused.stderr, "NOT_DLP_OWNER")


def test_rpc_down_and_bad_input_have_codes(tmp_path, deployment):
    manifest_file = save_deployment(deployment, tmp_path / "d.json")
    runner = CliRunner()
    down = runner.invoke(registry_cli, ["--rpc", "http://127.0.0.1:9", "--deployment", str(manifest_file),
                                        "dlp", "show", "1"])
    assert down.exit_code == 1
    _one_error_line(down.stderr, "RPC_UNAVAILABLE")
    bad = runner.invoke(registry_cli, ["dlp", "show", "zero"])
    assert bad.exit_code == 2
    _one_error_line(bad.stderr, "INVALID_INPUT")
    missing = runner.invoke(registry_cli, ["refiner", "list"])
    assert missing.exit_code == 2
    assert "refiner list --help'" in _one_error_line(missing.stderr, "USAGE_ERROR")


def test_errors_through_the_real_entry_points(tmp_path, deployment):
    manifest_file = save_deployment(deployment, tmp_path / "d.json")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    registry = [str(ROOT / ".venv" / "bin" / "registry")]
    engine = [str(ROOT / ".venv" / "bin" / "compute-engine")]
    cases = [
        (registry + ["--rpc", "http://127.0.0.1:9", "--deployment", str(manifest_file), "dlp", "show", "1"],
         1, "RPC_UNAVAILABLE"),
        (registry + ["dlp", "show", "0"], 2, "INVALID_INPUT"),
        (registry + ["nosuch"], 2, "USAGE_ERROR"),
        (engine + ["data", "add", "--refiner", "1", str(tmp_path / "missing.db")], 1, "INVALID_INPUT"),
        (engine + ["nosuch"], 2, "USAGE_ERROR"),
    ]
    for argv, code, error in cases:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                              check=False)
        assert done.returncode == code, (argv, done.stderr)
        assert done.stdout == ""
        _one_error_line(done.stderr, error)


def test_engine_cli_data_list_is_a_table(tmp_path, monkeypatch):
    from engine.cli import cli as engine_cli
    from engine.data import DataCatalog
    from tests.engine.test_settings import make_db

    monkeypatch.setenv("ENGINE_DATA_DIR", str(tmp_path / "data"))
    DataCatalog(tmp_path / "data").add(4, make_db(tmp_path / "x.db"))
    lines = CliRunner().invoke(engine_cli, ["data", "list"]).stdout.splitlines()
    assert lines[0].split() == ["REFINER", "SIZE", "PATH"] and lines[2].split()[0] == "4"


# ---- download: no silent overwrite, any name ----------------------------------------


def _finished(run, service, names: dict[str, bytes]) -> str:  # noqa: F811
    job_id = submit(run).stdout.strip()
    service.advance(job_id, "SUCCEEDED")
    for name, data in names.items():
        service.add_artifact(job_id, name, data)
    return job_id


def test_download_refuses_to_overwrite_without_force(run, service, tmp_path):  # noqa: F811
    job_id = _finished(run, service, {"stats.json": b'{"n": 1}', "chart.svg": b"<svg/>"})
    out = tmp_path / "out"
    out.mkdir()
    (out / "stats.json").write_bytes(b"mine")
    refused = run("download", job_id, "--out", str(out))
    assert refused.exit_code == 1 and refused.stdout == ""
    line = _one_error_line(refused.stderr, "FILE_EXISTS")
    assert str((out / "stats.json").resolve()) in line
    assert (out / "stats.json").read_bytes() == b"mine" and not (out / "chart.svg").exists()
    forced = run("download", job_id, "--out", str(out), "--force")
    assert forced.exit_code == 0, forced.output
    assert (out / "stats.json").read_bytes() == b'{"n": 1}'
    assert sorted(forced.stdout.split()) == sorted(str((out / n).resolve()) for n in ("stats.json", "chart.svg"))
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_download_zip_prints_an_absolute_path_and_never_overwrites(run, service, tmp_path, monkeypatch):  # noqa: F811
    job_id = _finished(run, service, {"stats.json": b"{}"})
    monkeypatch.chdir(tmp_path)
    first = run("download", job_id, "--out", "rel", "--zip")
    assert first.exit_code == 0, first.output
    path = Path(first.stdout.strip())
    assert path.is_absolute() and path == (tmp_path / "rel" / f"job-{job_id}-artifacts.zip")
    again = run("download", job_id, "--out", "rel", "--zip")
    assert again.exit_code == 1
    _one_error_line(again.stderr, "FILE_EXISTS")
    assert run("download", job_id, "--out", "rel", "--zip", "--force").exit_code == 0


def test_download_takes_a_255_byte_name_and_odd_characters(run, service, tmp_path):  # noqa: F811
    long_name = "n" * 250 + ".json"  # 255 bytes: name + ".part" would not fit
    odd = "odd name ?#%&;'\"`$(x).txt"
    job_id = _finished(run, service, {long_name: b"long", odd: b"odd", "dir/é ü.txt": b"utf8"})
    out = tmp_path / "out"
    done = run("download", job_id, "--out", str(out))
    assert done.exit_code == 0, done.output
    assert (out / long_name).read_bytes() == b"long" and (out / odd).read_bytes() == b"odd"
    assert (out / "dir" / "é ü.txt").read_bytes() == b"utf8"


def test_download_refuses_unsafe_names_one_by_one(run, service, tmp_path):  # noqa: F811
    job_id = _finished(run, service, {"ok.txt": b"ok", "a/../../escape.txt": b"x", "/etc/abs.txt": b"x"})
    out = tmp_path / "dest" / "out"
    done = run("download", job_id, "--out", str(out))
    assert done.exit_code == 1 and (out / "ok.txt").read_bytes() == b"ok"
    assert done.stdout.strip() == str((out / "ok.txt").resolve())
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.endswith("(UNSAFE_ARTIFACT_NAME)") for line in lines), lines
    assert sorted(p.name for p in (tmp_path / "dest").rglob("*")) == ["ok.txt", "out"]


@pytest.mark.parametrize(("name", "code"), [("nul\x00.txt", "UNSAFE_ARTIFACT_NAME"), ("../up.txt", "UNSAFE_ARTIFACT_NAME"),
                                           ("/abs.txt", "UNSAFE_ARTIFACT_NAME"), ("", "UNSAFE_ARTIFACT_NAME"),
                                           ("d/" + "x" * 256, "NAME_TOO_LONG")])
def test_unsafe_names_are_refused_before_any_write(tmp_path, name, code):
    from registry_client.artifact_files import plan

    targets, refused = plan(tmp_path / "out", ["fine.txt", name], force=False)
    assert [t.name for _, t in targets] == ["fine.txt"]
    assert [(r.name, r.code) for r in refused] == [(name, code)]
    assert not (tmp_path / "out").exists()
