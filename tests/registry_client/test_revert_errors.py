"""Decoding contract reverts by selector from the shipped ABIs (no chain)."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_utils import keccak

import registry_client.errors as errors_mod
from registry_client.contracts import CONTRACT_NAMES, error_table, load_artifact
from registry_client.errors import (
    ComputeInstructionNotFound,
    ContractRevert,
    NotDlpOwner,
    RegistryError,
    RegistryPaused,
    Unauthorized,
    decode_revert,
)

WALLET = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def _data(signature: str, types: list[str] = (), args: list = ()) -> str:
    return "0x" + (keccak(text=signature)[:4] + encode(list(types), list(args))).hex()


def test_not_dlp_owner_names_wallet_and_dlp():
    err = decode_revert(_data("NotDlpOwner()"), error_table(), {"wallet": WALLET, "dlp_id": 3})
    assert isinstance(err, NotDlpOwner) and err.code == "NOT_DLP_OWNER"
    assert str(err) == f"wallet {WALLET} is not the owner of DLP 3"
    assert str(decode_revert(_data("NotDlpOwner()"), error_table(), {})) == "this wallet is not the owner of the DLP"


def test_instruction_not_found_carries_its_id():
    err = decode_revert(_data("ComputeInstructionNotFound(uint256)", ["uint256"], [5]), error_table())
    assert isinstance(err, ComputeInstructionNotFound)
    assert str(err) == "no compute instruction with id 5"
    assert err.name == "ComputeInstructionNotFound" and err.error_args == (5,)


def test_paused_and_unauthorized():
    assert str(decode_revert(_data("EnforcedPause()"), error_table())) == "the registry is paused"
    assert isinstance(decode_revert(_data("EnforcedPause()"), error_table()), RegistryPaused)
    role = keccak(text="MAINTAINER_ROLE")
    err = decode_revert(_data("AccessControlUnauthorizedAccount(address,bytes32)", ["address", "bytes32"],
                              [WALLET, role]), error_table())
    assert isinstance(err, Unauthorized) and WALLET.lower() in str(err).lower() and role.hex() in str(err)


def test_standard_and_unknown_reverts():
    assert "boom" in str(decode_revert(_data("Error(string)", ["string"], ["boom"]), error_table()))
    assert "panicked (code 17)" in str(decode_revert(_data("Panic(uint256)", ["uint256"], [17]), error_table()))
    unknown = decode_revert("0xdeadbeef", error_table())
    assert type(unknown) is ContractRevert and "unknown error data 0xdeadbeef" in str(unknown)
    assert "without a reason" in str(decode_revert("0x", error_table()))
    assert "without a reason" in str(decode_revert(None, error_table()))


def _all_error_entries():
    seen = {}
    for name in (*CONTRACT_NAMES.values(), "ERC1967Proxy"):
        for entry in load_artifact(name)["abi"]:
            if entry["type"] == "error":
                seen[entry["name"]] = entry
    return sorted(seen.values(), key=lambda e: e["name"])


@pytest.mark.parametrize("entry", _all_error_entries(), ids=lambda e: e["name"])
def test_every_shipped_error_decodes_by_name(entry):
    types = [i["type"] for i in entry["inputs"]]
    samples = {"uint256": 7, "uint8": 1, "address": WALLET, "bytes32": b"\x01" * 32, "bytes": b"", "string": "s", "bool": True}
    data = _data(f"{entry['name']}({','.join(types)})", types, [samples[t] for t in types])
    err = decode_revert(data, error_table(), {"wallet": WALLET, "dlp_id": 1})
    assert isinstance(err, ContractRevert) and err.name == entry["name"]
    assert "unknown error data" not in str(err)


def test_public_surface():
    for name in errors_mod.__all__:
        assert hasattr(errors_mod, name)
    for code, doc in errors_mod.ERROR_CODES.items():
        assert code.isupper() and doc
    assert issubclass(ContractRevert, RegistryError)
