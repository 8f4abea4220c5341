"""The `registry` CLI's parameter types: every address, id, amount and URL option uses one of these.

Each refuses a bad value while the command line is parsed, before any wallet
is loaded or transaction built, with ONE line naming the option and the value
(`error: Invalid value for '--price': ...`, exit 2) instead of a library's
exception text later:

- ADDRESS   an Ethereum address; mixed case must pass its EIP-55 checksum
- ID        a uint256 >= 1 (DLP, refiner, instruction, permission ids)
- AMOUNT    a uint256 >= 0 (prices in wei), NONCE likewise
- Url(...)  a URL with an allowed scheme, a host where the scheme needs one, a valid port
- Seconds   a finite number of seconds in a range
- COMPUTE_JOB  `auto` (None), `none` (0) or an on-chain compute job id
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import click

from registry_client.addresses import parse_address
from registry_client.errors import InputError

__all__ = ["ADDRESS", "AMOUNT", "COMPUTE_JOB", "ID", "NONCE", "UINT256_MAX", "BadValue", "Seconds", "Uint256", "Url"]

UINT256_MAX = 2**256 - 1
_SHOWN = 80  # longest slice of a bad value echoed back


def _shown(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}... ({len(text)} characters)"


class BadValue(click.BadParameter):
    """A bad option value, shown as one `error: ...` line (exit 2) without the usage block."""

    def show(self, file: Any = None) -> None:
        from registry_client.cli_output import error_line

        click.echo(error_line(self.format_message(), "INVALID_INPUT"), err=True)


class _Type(click.ParamType):
    def fail(self, message: str, param: click.Parameter | None = None,
             ctx: click.Context | None = None) -> Any:
        raise BadValue(message, ctx=ctx, param=param)


class Uint256(_Type):
    """A whole number in [minimum, maximum] (default: the uint256 range), written in decimal."""

    name = "uint256"

    def __init__(self, minimum: int = 0, maximum: int = UINT256_MAX):
        self.min, self.max = minimum, maximum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            text = str(value).strip()
            if not text.isascii() or not text.isdigit():
                self.fail(f"{_shown(value)!r} is not a whole number", param, ctx)
            if len(text) > 100:  # far past 2**256 (78 digits); int() of a huge string is slow
                self.fail(f"{_shown(text)} is over the uint256 maximum (2**256 - 1)", param, ctx)
            number = int(text)
        if number < self.min:
            self.fail(f"{number} is below the minimum {self.min}", param, ctx)
        if number > self.max:
            limit = "the uint256 maximum (2**256 - 1)" if self.max == UINT256_MAX else f"the maximum {self.max}"
            self.fail(f"{_shown(number)} is over {limit}", param, ctx)
        return number


class _Address(_Type):
    name = "address"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return parse_address(value, None)
        except InputError as exc:
            self.fail(exc.message, param, ctx)


class Url(_Type):
    """A URL whose scheme is one of `schemes` (any scheme when None); "" allowed with `allow_empty`."""

    name = "url"
    _NEED_HOST = frozenset({"http", "https", "ws", "wss"})

    def __init__(self, schemes: Sequence[str] | None = ("http", "https"), *, allow_empty: bool = False):
        self.schemes = tuple(schemes) if schemes is not None else None
        self.allow_empty = allow_empty

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        if text == "" and self.allow_empty:
            return text
        wanted = " or ".join(f"{s}://" for s in self.schemes) if self.schemes else "scheme://..."
        if not text.isprintable() or " " in text:
            self.fail(f"{_shown(text)!r} is not a URL: it holds spaces or control characters", param, ctx)
        try:
            parts = urlsplit(text)
            port = parts.port  # raises ValueError when not a number in 0..65535
        except ValueError as exc:
            self.fail(f"{_shown(text)!r} is not a valid URL ({exc})", param, ctx)
        scheme = parts.scheme.lower()
        if not scheme or "://" not in text:
            self.fail(f"{_shown(text)!r} is not a URL: expected {wanted}", param, ctx)
        if self.schemes is not None and scheme not in self.schemes:
            self.fail(f"{_shown(text)!r} has scheme {scheme!r}: expected {wanted}", param, ctx)
        if scheme in self._NEED_HOST and not parts.hostname:
            self.fail(f"{_shown(text)!r} has no host name", param, ctx)
        if port == 0:
            self.fail(f"{_shown(text)!r} has port 0", param, ctx)
        if scheme not in self._NEED_HOST and not (parts.netloc or parts.path):
            self.fail(f"{_shown(text)!r} names nothing after the scheme", param, ctx)
        return text


class Seconds(_Type):
    """A finite number of seconds in [minimum, maximum]."""

    name = "seconds"

    def __init__(self, minimum: float = 0.0, maximum: float = 10 * 365 * 24 * 3600.0):
        self.min, self.max = minimum, maximum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{_shown(value)!r} is not a number of seconds", param, ctx)
        if not math.isfinite(number) or not self.min <= number <= self.max:
            self.fail(f"{_shown(value)} is not between {self.min:g} and {self.max:g} seconds", param, ctx)
        return number


ADDRESS = _Address()
ID = Uint256(minimum=1)
AMOUNT = Uint256(minimum=0)
NONCE = Uint256(minimum=0)


class _ComputeJob(Uint256):
    """`auto` -> None (open one if priced), `none` -> 0 (a free job), else an id >= 1."""

    name = "compute job"

    def __init__(self) -> None:
        super().__init__(minimum=1)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
            return None
        if isinstance(value, str) and value.strip().lower() == "none":
            return 0
        return super().convert(value, param, ctx)


COMPUTE_JOB = _ComputeJob()
