"""EIP-712 ``hashStruct`` for the flat typed data this project signs, without re-deriving the types per call.

eth_account's ``encode_typed_data`` parses, validates and re-hashes the
whole document (its type string, the domain's type string) on every call:
0.4 ms of CPU each (0.07 ms here), and a submit needs two or three (the
signer, the idempotency digest, the sealing key), a result one. The structs signed here
are flat (``string``, ``bytes``, ``bytes32``, ``uint256``, ``address``
fields, no nested or array types), so the encoding is a few lines: each
type's hash is computed once, each domain's separator once. The result is
the same ``SignableMessage`` (checked against eth_account for every type in
``tests/registry_client/test_eip712_hash.py``; the console's viem digest in
``tests/console/test_console_typed_data.py``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from eth_account.messages import SignableMessage
from eth_utils import keccak

__all__ = ["signable"]


def _fixed(kind: str, size: int):
    """``bytes32`` as is; ``address`` as the uint160 it is (left-padded)."""

    def encode(value: Any) -> bytes:
        raw = _raw_bytes(value)
        if len(raw) != size:
            raise ValueError(f"not a {kind}: {value!r}")
        return raw.rjust(32, b"\0")

    return encode


def signable(typed: dict[str, Any]) -> SignableMessage:
    """``encode_typed_data(full_message=typed)`` for a document of one flat primary type
    (anything else is handed to eth_account itself)."""
    primary = typed["primaryType"]
    types = typed["types"]
    if set(types) != {"EIP712Domain", primary} or any(
            field["type"] not in _ENCODERS for spec in types.values() for field in spec):
        from eth_account.messages import encode_typed_data

        return encode_typed_data(full_message=typed)
    header = _domain_separator(_fields(types["EIP712Domain"]), tuple(typed["domain"].items()))
    body = _struct_hash(primary, _fields(types[primary]), typed["message"])
    return SignableMessage(b"\x01", header, body)


def _fields(spec: list[dict[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple((field["type"], field["name"]) for field in spec)


def _struct_hash(name: str, fields: tuple[tuple[str, str], ...], values: dict[str, Any]) -> bytes:
    encoded = [_type_hash(name, fields)]
    encoded += [_ENCODERS[kind](values[field]) for kind, field in fields]
    return keccak(b"".join(encoded))


@lru_cache(maxsize=64)
def _domain_separator(fields: tuple[tuple[str, str], ...], items: tuple) -> bytes:
    """A handful per process (one per chain and registry)."""
    return _struct_hash("EIP712Domain", fields, dict(items))


@lru_cache(maxsize=64)
def _type_hash(name: str, fields: tuple[tuple[str, str], ...]) -> bytes:
    return keccak(f"{name}({','.join(f'{kind} {field}' for kind, field in fields)})".encode())


def _raw_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return bytes.fromhex(value.removeprefix("0x").removeprefix("0X"))
    raise TypeError(f"not bytes or hex: {value!r}")


def _uint256(value: Any) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**256:
        raise ValueError(f"not a uint256: {value!r}")
    return value.to_bytes(32, "big")


_ENCODERS = {
    "string": lambda value: keccak(value.encode("utf-8")),
    "bytes": lambda value: keccak(_raw_bytes(value)),
    "bytes32": _fixed("bytes32", 32),
    "uint256": _uint256,
    "address": _fixed("address", 20),
}
