"""Drive a deployed contract through Vana's ABI and record which entries a test exercised.

`VanaView(w3, abi_entries, address)` builds a web3 contract from the Vana ABI
(tests/registry_client/data/vana_abi.json, a copy of the hand-written
signatures of vana-com/vana-smart-contracts at ea6a85c), so every call is
encoded and decoded exactly as a Vana client would: a flat return where Vana
returns a struct, a missing `indexed`, another selector or another error all
fail here. `covered` names every function, event and error that was checked;
the test asserts it equals the whole ABI of the contract.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eth_abi import decode
from eth_utils import keccak
from web3 import Web3
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD

VANA_ABI_PATH = Path(__file__).resolve().parent / "data" / "vana_abi.json"


def vana_abi() -> dict[str, list[dict[str, Any]]]:
    data = json.loads(VANA_ABI_PATH.read_text("utf-8"))
    return {name: entries for name, entries in data.items() if not name.startswith("_")}


def _type(param: dict[str, Any]) -> str:
    if param["type"].startswith("tuple"):
        return "(" + ",".join(_type(c) for c in param["components"]) + ")" + param["type"][5:]
    return param["type"]


def signature(entry: dict[str, Any]) -> str:
    return f"{entry['name']}({','.join(_type(i) for i in entry.get('inputs', []))})"


def entry_key(entry: dict[str, Any]) -> str:
    return f"{entry['type']} {signature(entry)}"


class VanaView:
    """One deployed contract seen through Vana's ABI."""

    def __init__(self, w3: Web3, entries: list[dict[str, Any]], address: str):
        self.w3 = w3
        self.entries = entries
        self.contract = w3.eth.contract(address=Web3.to_checksum_address(address), abi=entries)
        self.covered: set[str] = set()

    def _entry(self, kind: str, name: str) -> dict[str, Any]:
        found = [e for e in self.entries if e["type"] == kind and e["name"] == name]
        assert len(found) == 1, f"Vana's ABI has {len(found)} {kind}s named {name}"
        return found[0]

    def _mark(self, kind: str, name: str) -> None:
        self.covered.add(entry_key(self._entry(kind, name)))

    def call(self, name: str, *args: Any, sender: str | None = None, value: int = 0) -> Any:
        """eth_call through Vana's ABI; the decoded return value."""
        self._mark("function", name)
        tx: dict[str, Any] = {"value": value}
        if sender:
            tx["from"] = sender
        return getattr(self.contract.functions, name)(*args).call(tx)

    def send(self, name: str, *args: Any, sender: str, value: int = 0) -> Any:
        """A mined transaction from an unlocked anvil account; its receipt."""
        self._mark("function", name)
        fn = getattr(self.contract.functions, name)(*args)
        tx_hash = fn.transact({"from": sender, "value": value})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
        assert receipt["status"] == 1, f"{name} reverted"
        return receipt

    def event(self, receipt: Any, name: str, /, **expected: Any) -> dict[str, Any]:
        """The one `name` log of `receipt`, decoded by Vana's event ABI (topic0 and data)."""
        self._mark("event", name)
        topic = keccak(text=signature(self._entry("event", name)))
        ours = [log for log in receipt["logs"] if log["topics"] and bytes(log["topics"][0]) == topic
                and log["address"] == self.contract.address]
        assert len(ours) == 1, f"expected one {name} log with Vana's topic, got {len(ours)}"
        decoded = getattr(self.contract.events, name)().process_receipt(receipt, errors=DISCARD)
        assert len(decoded) == 1, f"{name} has Vana's topic but not Vana's indexed layout or data"
        args = dict(decoded[0]["args"])
        for key, value in expected.items():
            assert args[key] == value, f"{name}.{key}: {args[key]!r} != {value!r}"
        return args

    def reverts(self, name: str, *args: Any, sender: str, error: str, error_args: tuple = (),
                value: int = 0) -> None:
        """Calling `name` reverts with Vana's custom `error(error_args)`, byte for byte."""
        self._mark("function", name)
        self._mark("error", error)
        entry = self._entry("error", error)
        data = self._revert_data(name, args, sender, value)
        selector = keccak(text=signature(entry))[:4]
        assert data[:4] == selector, f"{name} reverted with 0x{data[:4].hex()}, not {signature(entry)}"
        types = [_type(i) for i in entry["inputs"]]
        assert decode(types, data[4:]) == tuple(error_args), f"{error} arguments"
        if all(t in ("uint256", "uint8", "address", "bool", "bytes32") for t in types):
            assert len(data) == 4 + 32 * len(types), f"{error}: revert data of another length"

    def reverts_other(self, name: str, *args: Any, sender: str, signature_text: str, value: int = 0) -> None:
        """Calling `name` reverts with a non-Vana error (OpenZeppelin's, e.g. EnforcedPause())."""
        self._mark("function", name)
        data = self._revert_data(name, args, sender, value)
        assert data[:4] == keccak(text=signature_text)[:4], f"{name} did not revert {signature_text}"

    def _revert_data(self, name: str, args: tuple, sender: str, value: int) -> bytes:
        fn = getattr(self.contract.functions, name)(*args)
        try:
            fn.call({"from": sender, "value": value})
        except ContractLogicError as exc:
            raw = exc.data if isinstance(exc.data, str) else "0x"
            return bytes.fromhex(raw[2:])
        raise AssertionError(f"{name} did not revert")

    def declared(self, kind: str, name: str, our_abi: list[dict[str, Any]]) -> None:
        """For entries Vana declares but never emits or raises: ours declares the same (indexed too)."""
        self._mark(kind, name)
        theirs = self._entry(kind, name)
        ours = [e for e in our_abi if e["type"] == kind and signature(e) == signature(theirs)]
        assert ours, f"{kind} {signature(theirs)} is not declared"
        flags = [bool(i.get("indexed")) for i in theirs.get("inputs", [])]
        assert [bool(i.get("indexed")) for i in ours[0].get("inputs", [])] == flags, f"{name}: indexed layout"

    def uncovered(self) -> list[str]:
        return sorted(entry_key(e) for e in self.entries if entry_key(e) not in self.covered)
