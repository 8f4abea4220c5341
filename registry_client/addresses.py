"""Ethereum address input: the one check every typed or received address goes through.

EIP-55: an address written in mixed case carries a checksum in its letters'
case, so a mistyped character is caught before anything is signed or sent.
All-lowercase or all-uppercase hex carries no checksum and is accepted as
is; mixed case must match its checksum exactly. `parse_address` returns the
checksummed form or raises `InputError` naming the input and what is wrong.
"""

from __future__ import annotations

import re
from typing import Any

from registry_client.errors import InputError

__all__ = ["checksum_address", "parse_address"]

_HEX_ADDRESS = re.compile(r"^0[xX][0-9a-fA-F]{40}$")


def parse_address(value: Any, what: str | None = "address") -> str:
    """`value` as a checksum address; InputError unless it is 0x + 40 hex digits with a valid EIP-55 case.

    `what` names the input in the message ("grantee"); None starts the message with the value itself.
    """
    text = value.strip() if isinstance(value, str) else value
    if not isinstance(text, str) or not _HEX_ADDRESS.match(text):
        shown = repr(text[:64]) if isinstance(text, str) else type(value).__name__
        problem = "is not an address"
        raise InputError(f"{what} {problem}: {shown} (expected 0x and 40 hex digits)" if what
                         else f"{shown} {problem} (expected 0x and 40 hex digits)")
    digits = text[2:]
    checksummed = checksum_address(digits)
    if digits not in (digits.lower(), digits.upper()) and "0x" + digits != checksummed:
        raise InputError(
            f"{what + ' ' if what else ''}{text} fails its EIP-55 checksum: a character is probably mistyped "
            "(check the address, or write it all in lowercase to skip the checksum)"
        )
    return checksummed


def checksum_address(hex_digits: str) -> str:
    """EIP-55: each letter is upper case where the keccak of the lowercase hex has a nibble >= 8.

    Written here (one hash) rather than taken from eth_utils, whose import alone
    costs the CLI a quarter of a second.
    """
    from eth_hash.auto import keccak

    lower = hex_digits.lower()
    nibbles = keccak(lower.encode("ascii")).hex()
    return "0x" + "".join(c.upper() if int(n, 16) >= 8 else c for c, n in zip(lower, nibbles))
