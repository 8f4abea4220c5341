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

from eth_utils import to_checksum_address

from registry_client.errors import InputError

__all__ = ["parse_address"]

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
    checksummed = to_checksum_address("0x" + digits.lower())
    if digits not in (digits.lower(), digits.upper()) and "0x" + digits != checksummed:
        raise InputError(
            f"{what + ' ' if what else ''}{text} fails its EIP-55 checksum: a character is probably mistyped "
            "(check the address, or write it all in lowercase to skip the checksum)"
        )
    return checksummed
