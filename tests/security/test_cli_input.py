"""Wallet and CLI input (issue 8 items 20, 21): bad addresses, ids, amounts and URLs never reach the chain.

Driven in-process with click's CliRunner against the session's anvil, once
through the real `registry` entry point, and through the real engine API over
HTTP for the address headers. Before: a mixed-case address with a mistyped
character was accepted and DLP 1 went to an address nobody controls;
`2**256` ids and prices and a `::::` engine URL printed `error: unexpected ...`
with a library's text.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from registry_client.contracts import connect
from registry_client.engine_client import EngineClient
from registry_client.errors import InputError
from registry_client.manifest import save_deployment
from tests.registry_client.conftest import CliDriver, assert_clean_error

pytestmark = pytest.mark.chain

GOOD = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"  # anvil dev account 2, EIP-55 cased
MISTYPED = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293Ba"  # the issue's: last character mistyped
TWO_256 = str(2**256)
UINT256_MAX = str(2**256 - 1)


@pytest.fixture
def cli(chain, deployment, accounts, tmp_path: Path) -> CliDriver:
    return CliDriver(chain.url, save_deployment(deployment, tmp_path / "deployment.json"), accounts.env())


@pytest.fixture
def dlp_id(cli) -> int:
    return int(cli.ok("dlp", "register", "--name", "Input DLP", as_="dlp_owner").stdout)


def _owner(cli, dlp: int) -> str:
    return cli.json("dlp", "show", str(dlp))["owner"]


# ---------------------------------------------------------------- addresses (item 20)


@pytest.mark.parametrize("args", [
    ["dlp", "transfer", "{dlp}", "--to", MISTYPED, "--yes"],
    ["dlp", "register", "--name", "x", "--owner", MISTYPED],
    ["permission", "grant", "--refiner", "1", "--grantee", MISTYPED],
    ["permission", "list", "--refiner", "1", "--grantee", MISTYPED],
])
def test_a_mistyped_checksum_is_refused_before_anything_is_sent(cli, accounts, dlp_id, args) -> None:
    reg = connect(cli.rpc, cli_deployment(cli))
    nonce = reg.w3.eth.get_transaction_count(accounts.dlp_owner.address)
    reads = args[:2] == ["permission", "list"]
    result = cli(*[a.format(dlp=dlp_id) for a in args], as_=None if reads else "dlp_owner")
    assert_clean_error(result, f"{MISTYPED} fails its EIP-55 checksum", exit_code=2)
    assert reg.w3.eth.get_transaction_count(accounts.dlp_owner.address) == nonce
    assert _owner(cli, dlp_id) == accounts.dlp_owner.address


@pytest.mark.parametrize("value", ["0x1234", "3C44CdDdB6a900fa2b585dd299e03d12FA4293BC", "0x" + "g" * 40, ""])
def test_a_value_that_is_no_address_is_named(cli, dlp_id, value) -> None:
    result = cli("dlp", "transfer", str(dlp_id), "--to", value, "--yes", as_="dlp_owner")
    assert_clean_error(result, "is not an address (expected 0x and 40 hex digits)", exit_code=2)


@pytest.mark.parametrize("spelling", [GOOD.lower(), "0x" + GOOD[2:].upper(), GOOD])
def test_single_case_and_correct_checksums_are_accepted(cli, dlp_id, spelling) -> None:
    moved = cli.json("dlp", "transfer", str(dlp_id), "--to", spelling, "--yes", as_="dlp_owner")
    assert moved["owner"] == GOOD
    assert _owner(cli, dlp_id) == GOOD


def test_transfer_without_a_terminal_needs_yes(cli, accounts, dlp_id) -> None:
    refused = cli("dlp", "transfer", str(dlp_id), "--to", GOOD, as_="dlp_owner")
    assert_clean_error(refused, f"transferring DLP {dlp_id} to {GOOD} cannot be undone: pass --yes")
    assert _owner(cli, dlp_id) == accounts.dlp_owner.address


def test_transfer_at_a_terminal_asks_first(cli, accounts, dlp_id, monkeypatch) -> None:
    from registry_client import cli_common

    monkeypatch.setattr(cli_common, "_interactive", lambda: True)
    declined = cli("dlp", "transfer", str(dlp_id), "--to", GOOD, as_="dlp_owner", input="n\n")
    assert declined.exit_code == 1
    assert f"transferring DLP {dlp_id} to {GOOD}. This cannot be undone. Continue? [y/N]" in declined.stderr
    assert "cancelled: nothing was sent" in declined.stderr
    assert _owner(cli, dlp_id) == accounts.dlp_owner.address
    accepted = cli("dlp", "transfer", str(dlp_id), "--to", GOOD, as_="dlp_owner", input="y\n")
    assert accepted.exit_code == 0, accepted.stderr
    assert _owner(cli, dlp_id) == GOOD


def test_the_library_refuses_a_mistyped_checksum_too(cli, accounts, deployment, dlp_id) -> None:
    owner = connect(cli.rpc, deployment, accounts.dlp_owner)
    for call in (lambda: owner.transfer_dlp(dlp_id, MISTYPED),
                 lambda: owner.add_permission(1, MISTYPED),
                 lambda: owner.register_dlp("x", MISTYPED),
                 lambda: EngineClient("http://127.0.0.1:1", accounts.builder, 31337, MISTYPED)):
        with pytest.raises(InputError, match="fails its EIP-55 checksum"):
            call()
    assert owner.dlp(dlp_id).owner == accounts.dlp_owner.address


def test_the_engine_api_refuses_a_mistyped_reader_address(tmp_path: Path) -> None:
    from eth_account import Account

    from registry_client.eip712 import HEADER_ADDRESS, read_headers
    from tests.conftest import ANVIL_KEYS
    from tests.engine.api_fakes import CHAIN_ID, REGISTRY, FakeService, make_app, serve

    reader = Account.from_key(ANVIL_KEYS[2])  # GOOD's key: a valid signature, a mistyped header
    assert reader.address == GOOD
    with serve(make_app(FakeService(artifact_dir=tmp_path))) as url:
        headers = read_headers(reader, CHAIN_ID, REGISTRY, "GET", "/jobs/j1")
        headers[HEADER_ADDRESS] = MISTYPED
        answer = httpx.get(f"{url}/jobs/j1", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert "fails its EIP-55 checksum" in answer.json()["detail"]


# ---------------------------------------------------------------- numbers and URLs (item 21)


@pytest.mark.parametrize("args, fragment", [
    (["dlp", "show", TWO_256], f"Invalid value for 'ID': {TWO_256} is over the uint256 maximum"),
    (["dlp", "show", "0"], "Invalid value for 'ID': 0 is below the minimum 1"),
    (["dlp", "show", "1e3"], "Invalid value for 'ID': '1e3' is not a whole number"),
    (["dlp", "show", "9" * 5000], "is over the uint256 maximum"),
    (["refiner", "list", "--dlp", TWO_256], f"'--dlp': {TWO_256} is over the uint256 maximum"),
    (["permission", "grant", "--refiner", "1", "--price", TWO_256],
     f"'--price': {TWO_256} is over the uint256 maximum"),
    (["permission", "grant", "--refiner", "1", "--price", "-1"], "'--price': '-1' is not a whole number"),
    (["instruction", "approve", TWO_256, "--dlp", "1"], f"{TWO_256} is over the uint256 maximum"),
    (["job", "status", "j1", "--engine", "::::"], "Invalid value for '--engine': '::::' is not a URL"),
    (["job", "status", "j1", "--engine", "http://127.0.0.1:99999"], "is not a valid URL"),
    (["job", "status", "j1", "--engine", "ftp://example.org"], "has scheme 'ftp': expected http:// or https://"),
    (["job", "status", "j1", "--engine", "http://"], "has no host name"),
    (["job", "submit", "--instruction", TWO_256, "--refiner", "1", "--query", "SELECT 1"],
     f"'--instruction': {TWO_256} is over the uint256 maximum"),
    (["job", "submit", "--instruction", "1", "--refiner", "1", "--query", "SELECT 1", "--nonce", TWO_256],
     f"'--nonce': {TWO_256} is over the uint256 maximum"),
    (["job", "wait", "j1", "--timeout", "nan"], "'--timeout': nan is not between"),
    (["--rpc", "::::", "dlp", "show", "1"], "Invalid value for '--rpc': '::::' is not a URL"),
    (["instruction", "add", "--sha256", "a" * 64, "--url", "::::"], "'--url': '::::' is not a URL"),
    (["refiner", "add", "--dlp", "1", "--name", "n", "--schema-url", "no scheme"], "'--schema-url'"),
])
def test_a_bad_number_or_url_is_one_line_naming_it(cli, args, fragment) -> None:
    reads = args[0] in ("dlp", "--rpc") or args[:2] == ["refiner", "list"]
    result = cli(*args, as_=None if reads else "dlp_owner")
    assert_clean_error(result, fragment, exit_code=2)
    assert "unexpected" not in result.stderr


def test_the_uint256_maximum_itself_is_accepted(cli, dlp_id) -> None:
    assert_clean_error(cli("dlp", "show", UINT256_MAX), f"no DLP with id {UINT256_MAX}")
    refiner_id = cli.json("refiner", "add", "--dlp", str(dlp_id), "--name", "r", "--schema-url",
                          "ipfs://bafy-schema", as_="dlp_owner")["refiner_id"]
    granted = cli.json("permission", "grant", "--refiner", str(refiner_id), "--price", UINT256_MAX,
                       as_="dlp_owner")
    assert granted["price_wei"] == str(2**256 - 1)


# ---------------------------------------------------------------- the real entry point


def test_through_the_real_entry_point(chain, deployment, accounts, dlp_id, tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "registry"
    if not exe.exists():
        pytest.skip("the `registry` console script is not installed in this venv")
    manifest = save_deployment(deployment, tmp_path / "entry.json")
    env = {**os.environ, **accounts.env(), "REGISTRY_RPC": chain.url, "REGISTRY_DEPLOYMENT": str(manifest)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL, check=False)

    base = ["dlp", "transfer", str(dlp_id), "--key-env", "TEST_DLP_OWNER_KEY"]
    mistyped = run(*base, "--to", MISTYPED, "--yes")
    assert mistyped.returncode == 2 and mistyped.stdout == ""
    assert mistyped.stderr == (f"error: Invalid value for '--to': {MISTYPED} fails its EIP-55 checksum: a character "
                               "is probably mistyped (check the address, or write it all in lowercase to skip the "
                               "checksum) (INVALID_INPUT)\n")
    unconfirmed = run(*base, "--to", GOOD)
    assert unconfirmed.returncode == 1 and "pass --yes to confirm" in unconfirmed.stderr
    shown = run("dlp", "show", TWO_256)
    assert shown.returncode == 2
    assert shown.stderr.count("\n") == 1 and TWO_256 in shown.stderr and "unexpected" not in shown.stderr
    engine = run("job", "status", "j1", "--engine", "::::", "--key-env", "TEST_BUILDER_KEY")
    assert engine.returncode == 2 and engine.stderr.startswith("error: Invalid value for '--engine': '::::'")
    moved = run(*base, "--to", GOOD, "--yes")
    assert moved.returncode == 0, moved.stderr
    assert connect(chain.url, deployment).dlp(dlp_id).owner == GOOD


def cli_deployment(cli):
    from registry_client.manifest import load_deployment

    return load_deployment(cli.manifest)
