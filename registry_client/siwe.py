"""EIP-4361 (Sign-In with Ethereum) messages: the standard text, built and parsed (pure).

One module for both sides, as eip712.py is: the engine (engine/sessions.py)
parses and checks what a wallet signed; ``EngineClient.sign_in`` builds the
message a local key signs. The ``siwe`` package pins web3 < 8, hence this.
Parse errors are ``InputError`` naming what is wrong (never echoing more than
a short prefix of the text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from registry_client.errors import InputError

__all__ = ["ADDRESS", "MAX_MESSAGE_CHARS", "SiweMessage", "build_siwe", "iso_time", "parse_siwe"]

MAX_MESSAGE_CHARS = 4096  # a SIWE message is a few hundred characters
_HEADER = " wants you to sign in with your Ethereum account:"
_FIELDS = ("URI", "Version", "Chain ID", "Nonce", "Issued At", "Expiration Time", "Not Before", "Request ID")
_NONCE = re.compile(r"^[A-Za-z0-9]{8,64}$")
ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


@dataclass(frozen=True)
class SiweMessage:
    """The fields of one EIP-4361 message (times as unix seconds)."""

    domain: str
    address: str
    statement: str | None
    uri: str
    version: str
    chain_id: int
    nonce: str
    issued_at: int
    expiration_time: int | None = None
    not_before: int | None = None
    request_id: str | None = None
    resources: tuple[str, ...] = ()


def _bad(message: str) -> InputError:
    return InputError(f"sign-in message: {message}")


def iso_time(seconds: int) -> str:
    """Unix seconds as the RFC 3339 UTC text EIP-4361 uses."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _unix(text: str, name: str) -> int:
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError as exc:
        raise _bad(f"{name} is not an RFC 3339 time") from exc
    if stamp.tzinfo is None:
        raise _bad(f"{name} has no time zone")
    return int(stamp.timestamp())


def build_siwe(msg: SiweMessage) -> str:
    """The EIP-4361 text of `msg` (what the wallet shows and personal_signs)."""
    lines = [f"{msg.domain}{_HEADER}", msg.address, ""]
    if msg.statement:
        lines += [msg.statement, ""]
    else:
        lines.append("")
    lines += [f"URI: {msg.uri}", f"Version: {msg.version}", f"Chain ID: {msg.chain_id}",
              f"Nonce: {msg.nonce}", f"Issued At: {iso_time(msg.issued_at)}"]
    if msg.expiration_time is not None:
        lines.append(f"Expiration Time: {iso_time(msg.expiration_time)}")
    if msg.not_before is not None:
        lines.append(f"Not Before: {iso_time(msg.not_before)}")
    if msg.request_id is not None:
        lines.append(f"Request ID: {msg.request_id}")
    if msg.resources:
        lines += ["Resources:", *(f"- {r}" for r in msg.resources)]
    return "\n".join(lines)


def _head(lines: list[str]) -> tuple[str, str, list[str]]:
    if len(lines) < 4 or not lines[0].endswith(_HEADER):
        raise _bad(f"the first line must end with {_HEADER.strip()!r}")
    domain = lines[0][: -len(_HEADER)]
    if not domain or " " in domain:
        raise _bad("the domain is missing")
    if not ADDRESS.match(lines[1]):
        raise _bad("the second line must be a 0x address")
    if lines[2] != "":
        raise _bad("a blank line must follow the address")
    return domain, lines[1], lines[3:]


def _statement(rest: list[str]) -> tuple[str | None, list[str]]:
    if rest and rest[0] == "":
        return None, rest[1:]
    if len(rest) < 2 or rest[1] != "" or rest[0].startswith("URI: "):
        raise _bad("the statement must be one line followed by a blank line")
    return rest[0], rest[2:]


def _fields(rest: list[str]) -> tuple[dict[str, str], tuple[str, ...]]:
    values: dict[str, str] = {}
    order = iter(_FIELDS)
    index = 0
    for index, line in enumerate(rest):
        if line == "Resources:":
            break
        name, sep, value = line.partition(": ")
        if not sep or name not in _FIELDS:
            raise _bad(f"unexpected line {line[:40]!r}")
        if name not in order:  # consumes the iterator up to `name`: fields in the standard's order
            raise _bad(f"field {name!r} is repeated or out of order")
        values[name] = value
    else:
        return values, ()
    resources = rest[index + 1:]
    if not all(r.startswith("- ") for r in resources):
        raise _bad("every resource line must start with '- '")
    return values, tuple(r[2:] for r in resources)


def parse_siwe(text: str) -> SiweMessage:
    """Parse an EIP-4361 message; InputError names what is wrong."""
    if not isinstance(text, str) or not text:
        raise _bad("the message is empty")
    if len(text) > MAX_MESSAGE_CHARS:
        raise _bad(f"the message is over {MAX_MESSAGE_CHARS} characters")
    domain, address, rest = _head(text.split("\n"))
    statement, rest = _statement(rest)
    values, resources = _fields(rest)
    for required in ("URI", "Version", "Chain ID", "Nonce", "Issued At"):
        if required not in values:
            raise _bad(f"the field {required!r} is missing")
    if not values["Chain ID"].isdigit():
        raise _bad("Chain ID must be a decimal number")
    if not _NONCE.match(values["Nonce"]):
        raise _bad("Nonce must be 8 to 64 letters or digits")
    return SiweMessage(
        domain=domain, address=address, statement=statement, uri=values["URI"],
        version=values["Version"], chain_id=int(values["Chain ID"]), nonce=values["Nonce"],
        issued_at=_unix(values["Issued At"], "Issued At"),
        expiration_time=_unix(values["Expiration Time"], "Expiration Time") if "Expiration Time" in values else None,
        not_before=_unix(values["Not Before"], "Not Before") if "Not Before" in values else None,
        request_id=values.get("Request ID"), resources=resources,
    )
