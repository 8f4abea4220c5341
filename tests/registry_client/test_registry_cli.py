"""The `registry` CLI driven as DLP owners and builders use it (real anvil)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from registry_client.contracts import connect
from registry_client.wallet import create_keystore
from tests.registry_client.conftest import assert_clean_error

pytestmark = pytest.mark.chain


def _setup_dlp_refiner(cli) -> tuple[int, int]:
    dlp_id = int(cli.ok("dlp", "register", "--name", "Health DLP", as_="dlp_owner").stdout)
    refiner_id = int(cli.ok("refiner", "add", "--dlp", dlp_id, "--name", "users",
                            "--schema-url", "https://example.org/schema.json", as_="dlp_owner").stdout)
    return dlp_id, refiner_id


def test_schema_add_show_list_and_refiner_with_schema(cli):
    dlp_id = int(cli.ok("dlp", "register", "--name", "Schema DLP", as_="dlp_owner").stdout)
    schema_id = int(cli.ok("schema", "add", "--name", "fitness", "--url", "https://example.org/f.sql",
                           as_="stranger").stdout)
    assert cli.json("schema", "show", str(schema_id)) == {
        "id": schema_id, "name": "fitness", "dialect": "sqlite", "definition_url": "https://example.org/f.sql"}
    assert [s["id"] for s in cli.json("schema", "list")] == [schema_id]
    added = cli.json("refiner", "add", "--dlp", str(dlp_id), "--name", "daily", "--schema", str(schema_id),
                     as_="dlp_owner")
    assert (added["schema_id"], added["schema_url"]) == (schema_id, "https://example.org/f.sql")
    assert_clean_error(cli("schema", "show", "7"), "no schema with id 7")
    both = cli("refiner", "add", "--dlp", str(dlp_id), "--name", "x", "--schema", "1", "--schema-url",
               "https://s", as_="dlp_owner")
    assert both.exit_code == 2 and "exactly one of --schema-url and --schema" in both.stderr


def test_story_publish_approve_revoke(cli, accounts, tmp_path):
    # A fresh deployment through the CLI itself, then the whole story on it.
    fresh = tmp_path / "fresh.json"
    deployed = cli.ok("deploy", "--out", fresh, as_="deployer")
    assert "sent 0x" in deployed.stderr and "mined in block" in deployed.stderr
    manifest = json.loads(fresh.read_text())
    assert manifest["chain_id"] == 31337
    assert manifest["deployer"] == accounts.deployer.address
    cli.env["REGISTRY_DEPLOYMENT"] = str(fresh)

    registered = cli.ok("dlp", "register", "--name", "Health DLP", as_="dlp_owner")
    assert registered.stdout.strip() == "1"
    assert registered.stderr.splitlines()[0].startswith("sent 0x")
    assert registered.stderr.splitlines()[1].startswith("mined in block ")
    shown = cli.json("dlp", "show", "1")
    assert shown["owner"] == accounts.dlp_owner.address and shown["name"] == "Health DLP"

    refiner = cli.json("refiner", "add", "--dlp", "1", "--name", "users",
                       "--schema-url", "https://example.org/schema.json", as_="dlp_owner")
    assert refiner["refiner_id"] == 1 and refiner["dlp_id"] == 1
    assert cli.json("refiner", "list", "--dlp", "1")[0]["name"] == "users"

    image = tmp_path / "job.tar.gz"
    image.write_bytes(os.urandom(3 * (1 << 20) + 17))  # several read chunks
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    added = cli.json("instruction", "add", "--image", image, "--url", "https://example.org/job.tar.gz",
                     as_="builder")
    assert added["instruction_id"] == 1 and added["sha256"] == digest
    ins = cli.json("instruction", "show", "1")
    assert ins["owner"] == accounts.builder.address and ins["sha256"] == digest
    assert ins["approved_dlps"] == []

    stranger = cli("instruction", "approve", "1", "--dlp", "1", as_="stranger")
    assert_clean_error(stranger, f"wallet {accounts.stranger.address} is not the owner of DLP 1")

    approved = cli.ok("instruction", "approve", "1", "--dlp", "1", as_="dlp_owner")
    assert approved.stdout.strip() == "instruction 1 approved for DLP 1"
    assert "approved" in cli.ok("instruction", "show", "1", "--dlp", "1").stdout.splitlines()[-1]
    assert cli.json("instruction", "show", "1", "--dlp", "1")["approved"] is True
    assert cli.json("instruction", "show", "1")["approved_dlps"] == [1]
    assert cli.json("instruction", "list", "--dlp", "1")[0]["approved"] is True

    again = cli.json("instruction", "approve", "1", "--dlp", "1", as_="dlp_owner")
    assert again["changed"] is False

    revoked = cli.ok("instruction", "revoke", "1", "--dlp", "1", as_="dlp_owner")
    assert revoked.stdout.strip() == "instruction 1 revoked for DLP 1"
    assert cli.ok("instruction", "show", "1", "--dlp", "1").stdout.splitlines()[-1].endswith("not approved")
    assert cli.json("instruction", "show", "1")["approved_dlps"] == []
    listed = cli.ok("instruction", "list", "--dlp", "1").stdout
    assert listed.strip().endswith("not approved")


def test_instruction_add_with_sha256(cli):
    digest = "AB" * 32
    result = cli.json("instruction", "add", "--sha256", "0x" + digest, "--url", "https://x/y.tar.gz",
                      as_="builder")
    assert cli.json("instruction", "show", str(result["instruction_id"]))["sha256"] == digest.lower()


def test_dlp_register_for_another_owner_and_transfer(cli, accounts):
    dlp_id = cli.json("dlp", "register", "--name", "dlp d", "--owner", accounts.dlp_owner.address,
                      as_="deployer")["dlp_id"]
    assert cli.json("dlp", "show", str(dlp_id))["owner"] == accounts.dlp_owner.address
    refused = cli("dlp", "transfer", str(dlp_id), "--to", accounts.stranger.address, "--yes", as_="stranger")
    assert_clean_error(refused, f"is not the owner of DLP {dlp_id}")
    refiner_id = cli.json("refiner", "add", "--dlp", str(dlp_id), "--name", "users", "--schema-url",
                          "https://s", as_="dlp_owner")["refiner_id"]
    moved = cli.ok("dlp", "transfer", str(dlp_id), "--to", accounts.builder.address, "--yes", as_="dlp_owner")
    assert f"registry refiner adopt --dlp {dlp_id}" in moved.stdout
    assert cli.json("dlp", "show", str(dlp_id))["owner"] == accounts.builder.address
    # Permissions follow the refiner's recorded owner: the new DLP owner adopts the refiners first.
    grant = ("permission", "grant", "--refiner", str(refiner_id), "--anyone")
    assert_clean_error(cli(*grant, as_="builder"), f"is not the owner of refiner {refiner_id}")
    assert_clean_error(cli("refiner", "adopt", "--dlp", str(dlp_id), as_="dlp_owner"),
                       f"is not the owner of DLP {dlp_id}")
    adopted = cli.json("refiner", "adopt", "--dlp", str(dlp_id), as_="builder")
    assert adopted["refiner_ids"] == [refiner_id]
    assert cli.json("refiner", "show", str(refiner_id))["owner"] == accounts.builder.address
    cli.ok(*grant, as_="builder")


def test_json_output_is_one_object(cli):
    dlp_id, _ = _setup_dlp_refiner(cli)
    result = cli.ok("--json", "dlp", "register", "--name", "second", as_="dlp_owner")
    body = json.loads(result.stdout)  # exactly one JSON document
    assert body["dlp_id"] == dlp_id + 1
    assert body["tx_hash"].startswith("0x") and body["block"] > 0
    assert "sent " in result.stderr


def test_keystore_wallet(cli, accounts, tmp_path):
    from tests.conftest import ANVIL_KEYS

    keystore = tmp_path / "owner.json"
    create_keystore(keystore, "s3cret", key=ANVIL_KEYS[1], iterations=2)
    result = cli.ok("dlp", "register", "--name", "ks-1", "--keystore", keystore,
                    env={"REGISTRY_PASSWORD": "s3cret"})
    dlp = cli.json("dlp", "show", result.stdout.strip())
    assert dlp["owner"] == accounts.dlp_owner.address
    # Password from the hidden prompt when REGISTRY_PASSWORD is unset.
    prompted = cli.ok("dlp", "register", "--name", "ks-2", "--keystore", keystore, input="s3cret\n")
    assert cli.json("dlp", "show", prompted.stdout.strip().splitlines()[-1])["name"] == "ks-2"


def test_wallet_new_writes_keystore(cli, accounts, tmp_path):
    out = tmp_path / "k.json"
    result = cli.ok("wallet", "new", "--out", out, "--key-env", "TEST_BUILDER_KEY", env={"REGISTRY_PASSWORD": "pw"})
    assert result.stdout.strip() == accounts.builder.address
    assert json.loads(out.read_text())["crypto"]
    assert_clean_error(cli("wallet", "new", "--out", out, env={"REGISTRY_PASSWORD": "pw"}), "already exists")


# ------------------------------------------------------------------ permissions


def test_permission_grant_list_revoke(cli, accounts):
    _, refiner_id = _setup_dlp_refiner(cli)
    r = str(refiner_id)
    anyone = cli.json("permission", "grant", "--refiner", r, "--anyone", "--table", "users", as_="dlp_owner")
    assert anyone["grantee"] is None and anyone["table"] == "users" and anyone["column"] == ""
    mine = cli.json("permission", "grant", "--refiner", r, "--grantee", accounts.grantee.address,
                    "--table", "users", "--column", "email", "--price", "1000", as_="dlp_owner")
    other = cli.json("permission", "grant", "--refiner", r, "--grantee", accounts.stranger.address,
                     as_="dlp_owner")
    assert (anyone["permission_id"], mine["permission_id"], other["permission_id"]) == (1, 2, 3)
    assert mine["price_wei"] == "1000" and mine["approved"] is True

    everything = cli.json("permission", "list", "--refiner", r)
    assert [p["id"] for p in everything] == [1, 2, 3]
    for_grantee = cli.json("permission", "list", "--refiner", r, "--grantee", accounts.grantee.address)
    assert sorted(p["id"] for p in for_grantee) == [1, 2]

    stranger = cli("permission", "revoke", "2", as_="stranger")
    assert_clean_error(stranger, f"wallet {accounts.stranger.address} is not the owner of refiner {refiner_id}")
    assert cli.ok("permission", "revoke", "2", as_="dlp_owner").stdout.strip() == "permission 2 revoked"
    listed = cli.ok("permission", "list", "--refiner", r).stdout.splitlines()
    assert listed[0].split() == ["ID", "GRANTEE", "TABLE.COLUMN", "PRICE", "STATE"]
    assert listed[3].split()[0] == "2" and listed[3].endswith("revoked")  # header, rule, row 1, row 2
    assert listed[3].split()[2:4] == ["users.email", "1000"] and "1000 wei" in listed[3]
    # A revoked permission no longer applies: Vana's getPermissions lists approved ones only.
    for_grantee = cli.json("permission", "list", "--refiner", r, "--grantee", accounts.grantee.address)
    assert [p["id"] for p in for_grantee] == [1]
    token = "0x" + "70" * 20
    priced = cli.json("permission", "grant", "--refiner", r, "--anyone", "--price", "7", "--token", token,
                      as_="dlp_owner")
    assert priced["token"].lower() == token and priced["price_wei"] == "7"


@pytest.mark.parametrize(
    "args, as_, fragment",
    [
        (["--column", "email"], "dlp_owner", "a column permission needs a table"),
        (["--table", "t"], "stranger", "is not the owner of refiner 1"),
    ],
)
def test_permission_grant_refused(cli, args, as_, fragment):
    _, refiner_id = _setup_dlp_refiner(cli)
    reg = connect(cli.rpc, _deployment(cli))
    before = reg.permissions_count()
    assert_clean_error(cli("permission", "grant", "--refiner", str(refiner_id), *args, as_=as_), fragment)
    assert reg.permissions_count() == before


def test_permission_unknown_ids(cli):
    _setup_dlp_refiner(cli)
    assert_clean_error(cli("permission", "revoke", "42", as_="dlp_owner"), "no permission with id 42")
    assert_clean_error(cli("permission", "list", "--refiner", "9"), "no data refiner with id 9")
    assert_clean_error(cli("permission", "grant", "--refiner", "9", as_="dlp_owner"), "no data refiner with id 9")


def test_grantee_and_anyone_is_a_usage_error(cli, accounts):
    result = cli("permission", "grant", "--refiner", "1", "--anyone", "--grantee", accounts.grantee.address,
                 as_="dlp_owner")
    assert result.exit_code == 2 and "not both" in result.stderr and result.stdout == ""


# ------------------------------------------------------------------ bad input


def _deployment(cli):
    from registry_client.manifest import load_deployment

    return load_deployment(cli.manifest)


def _count(cli) -> int:
    return connect(cli.rpc, _deployment(cli)).instructions_count()


def test_unreachable_rpc(cli):
    result = cli("--rpc", "http://127.0.0.1:9", "instruction", "list")
    assert_clean_error(result, "cannot reach the RPC endpoint http://127.0.0.1:9")
    result = cli("--rpc", "http://127.0.0.1:9", "instruction", "add", "--sha256", "a" * 64, "--url", "https://x",
                 as_="builder")
    assert_clean_error(result, "cannot reach the RPC endpoint")
    assert _count(cli) == 0


def test_unreachable_rpc_on_deploy_writes_nothing(cli, tmp_path):
    out = tmp_path / "never.json"
    assert_clean_error(cli("--rpc", "http://127.0.0.1:9", "deploy", "--out", out, as_="deployer"),
                       "cannot reach the RPC endpoint")
    assert not out.exists()


def test_deploy_refuses_to_overwrite_a_manifest(cli):
    before = cli.manifest.read_text()
    assert_clean_error(cli("deploy", as_="deployer"), "already exists: pass --force")
    assert cli.manifest.read_text() == before


def test_manifest_for_another_chain(cli, tmp_path):
    data = json.loads(cli.manifest.read_text())
    data["chain_id"] = 1
    other = tmp_path / "mainnet.json"
    other.write_text(json.dumps(data))
    result = cli("--deployment", other, "instruction", "add", "--sha256", "a" * 64, "--url", "https://x", as_="builder")
    assert_clean_error(result, "the deployment manifest is for chain 1 but")
    assert _count(cli) == 0


@pytest.mark.parametrize("mutate, fragment", [
    (lambda d: d.pop("chain_id"), "field 'chain_id' is missing"),
    (lambda d: d["addresses"].update(query_engine="0xnope"), "field 'addresses.query_engine'"),
])
def test_invalid_manifest(cli, tmp_path, mutate, fragment):
    data = json.loads(cli.manifest.read_text())
    mutate(data)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    assert_clean_error(cli("--deployment", bad, "instruction", "list"), fragment)


def test_missing_manifest(cli, tmp_path):
    assert_clean_error(cli("--deployment", tmp_path / "none.json", "dlp", "show", "1"), "not found")


@pytest.mark.parametrize("value", ["abc", "a" * 63, "a" * 65, "g" * 64, "0x" + "a" * 62, ""])
def test_malformed_sha256(cli, value):
    result = cli("instruction", "add", "--sha256", value, "--url", "https://x", as_="builder")
    assert_clean_error(result, "sha256 must be 64 hex digits")
    assert _count(cli) == 0


def test_zero_sha256_refused_by_contract(cli):
    result = cli("instruction", "add", "--sha256", "0" * 64, "--url", "https://x", as_="builder")
    assert_clean_error(result, "the image hash must not be zero")
    assert _count(cli) == 0


def test_image_path_missing(cli, tmp_path):
    result = cli("instruction", "add", "--image", tmp_path / "nope.tar.gz", "--url", "https://x", as_="builder")
    assert_clean_error(result, f"image file {tmp_path / 'nope.tar.gz'} not found")
    assert _count(cli) == 0


def test_image_and_sha256_together_is_usage_error(cli, tmp_path):
    result = cli("instruction", "add", "--sha256", "a" * 64, "--image", "x", "--url", "https://x", as_="builder")
    assert result.exit_code == 2 and "exactly one of --image" in result.stderr


def test_keystore_missing(cli, tmp_path):
    result = cli("instruction", "add", "--sha256", "a" * 64, "--url", "https://x", "--keystore", tmp_path / "none.json",
                 env={"REGISTRY_PASSWORD": "x"})
    assert_clean_error(result, "keystore")
    assert "not found" in result.stderr
    assert _count(cli) == 0


def test_keystore_wrong_password(cli, tmp_path):
    from tests.conftest import ANVIL_KEYS

    keystore = tmp_path / "builder.json"
    create_keystore(keystore, "right", key=ANVIL_KEYS[3], iterations=2)
    result = cli("instruction", "add", "--sha256", "a" * 64, "--url", "https://x", "--keystore", keystore,
                 env={"REGISTRY_PASSWORD": "wrong"})
    assert_clean_error(result, f"wrong password for keystore {keystore}")
    assert _count(cli) == 0


@pytest.mark.parametrize("env, fragment", [
    ({}, "environment variable NOPE_KEY is not set"),
    ({"NOPE_KEY": "0x1234"}, "environment variable NOPE_KEY does not hold a valid private key"),
])
def test_key_env_unset_or_invalid(cli, env, fragment):
    result = cli("instruction", "add", "--sha256", "a" * 64, "--url", "https://x", "--key-env", "NOPE_KEY", env=env)
    assert_clean_error(result, fragment)
    assert "0x1234" not in result.stderr  # the key's value is never echoed


def test_transaction_without_wallet(cli):
    assert_clean_error(cli("instruction", "add", "--sha256", "a" * 64, "--url", "https://x"), "pass --keystore FILE or --key-env")


def test_approval_by_non_owner_changes_nothing(cli, accounts):
    dlp_id, _ = _setup_dlp_refiner(cli)
    cli.ok("instruction", "add", "--sha256", "b" * 64, "--url", "https://x", as_="builder")
    reg = connect(cli.rpc, _deployment(cli))
    nonce = reg.w3.eth.get_transaction_count(accounts.builder.address)
    result = cli("instruction", "approve", "1", "--dlp", str(dlp_id), as_="builder")
    assert_clean_error(result, f"wallet {accounts.builder.address} is not the owner of DLP {dlp_id}")
    assert reg.w3.eth.get_transaction_count(accounts.builder.address) == nonce  # nothing was sent
    assert reg.is_approved(1, dlp_id) is False


@pytest.mark.parametrize("args, fragment", [
    (["instruction", "approve", "7", "--dlp", "1"], "no compute instruction with id 7"),
    (["instruction", "revoke", "7", "--dlp", "1"], "no compute instruction with id 7"),
    (["instruction", "approve", "1", "--dlp", "8"], "no DLP with id 8"),
    (["instruction", "show", "7"], "no compute instruction with id 7"),
    (["instruction", "show", "1", "--dlp", "8"], "no DLP with id 8"),
    (["instruction", "list", "--dlp", "8"], "no DLP with id 8"),
    (["dlp", "show", "8"], "no DLP with id 8"),
    (["dlp", "transfer", "8", "--to", "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "--yes"], "no DLP with id 8"),
    (["refiner", "add", "--dlp", "8", "--name", "n", "--schema-url", "https://s"], "no DLP with id 8"),
    (["refiner", "show", "5"], "no data refiner with id 5"),
    (["refiner", "list", "--dlp", "8"], "no DLP with id 8"),
])
def test_unknown_ids(cli, args, fragment):
    _setup_dlp_refiner(cli)
    cli.ok("instruction", "add", "--sha256", "c" * 64, "--url", "https://x", as_="builder")
    reads = args[:2] in (["instruction", "show"], ["instruction", "list"], ["dlp", "show"],
                         ["refiner", "show"], ["refiner", "list"])
    assert_clean_error(cli(*args, as_=None if reads else "dlp_owner"), fragment)


def test_paused_registry(cli, accounts, deployment):
    dlp_id, _ = _setup_dlp_refiner(cli)
    cli.ok("instruction", "add", "--sha256", "d" * 64, "--url", "https://x", as_="builder")
    admin = connect(cli.rpc, deployment, accounts.deployer)
    admin.pause("compute_instruction_registry")
    result = cli("instruction", "add", "--sha256", "e" * 64, "--url", "https://x", as_="builder")
    assert_clean_error(result, "the registry is paused")
    assert_clean_error(cli("instruction", "approve", "1", "--dlp", str(dlp_id), as_="dlp_owner"),
                       "the registry is paused")
    assert _count(cli) == 1
    assert admin.is_approved(1, dlp_id) is False
    admin.unpause("compute_instruction_registry")
    cli.ok("instruction", "approve", "1", "--dlp", str(dlp_id), as_="dlp_owner")


def test_every_command_help_has_an_example():
    from click.testing import CliRunner

    from registry_client.cli import cli as root
    from tests.registry_client.test_docs import command_paths

    for path in [[], *command_paths()]:
        result = CliRunner().invoke(root, [*path, "--help"], prog_name="registry")
        assert result.exit_code == 0, path
        example = result.stdout.split("Example:")[-1]
        assert "Example:" in result.stdout and f"registry {' '.join(path)}".strip() in example, path


# ------------------------------------------------------------------ real entry point


def test_entry_point_subprocess(chain, deployment, accounts, tmp_path):
    exe = Path(sys.executable).parent / "registry"
    if not exe.exists():
        pytest.skip("the `registry` console script is not installed in this venv")
    helped = subprocess.run([str(exe), "--help"], check=False, capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "instruction" in helped.stdout
    out = tmp_path / "dep.json"
    env = {**os.environ, **accounts.env(), "REGISTRY_RPC": chain.url}
    deployed = subprocess.run([str(exe), "--json", "deploy", "--out", str(out), "--key-env", "TEST_DEPLOYER_KEY"],
                              check=False, capture_output=True, text=True, timeout=120, env=env)
    assert deployed.returncode == 0, deployed.stderr
    assert json.loads(deployed.stdout)["manifest"] == str(out)
    assert out.exists()
    failed = subprocess.run([str(exe), "--deployment", str(out), "dlp", "show", "3"],
                            check=False, capture_output=True, text=True, timeout=60, env=env)
    assert failed.returncode == 1
    assert failed.stderr == "error: no DLP with id 3 (DLP_NOT_FOUND)\n" and failed.stdout == ""
