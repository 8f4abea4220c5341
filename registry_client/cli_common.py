"""What every `registry` command group shares: the CLI context, wallet options, errors.

`ctx.obj` is a `CliContext(rpc, deployment_path, json_output)` with
`connect(account=None) -> Registries`, `deployment()`, `web3()` and
`output(obj_dict, text)`; `wallet_options` adds `--keystore FILE | --key-env
VAR` to a command and `load_wallet(keystore, key_env)` turns them into an
account. Commands raise `RegistryError`s freely: `RegistryGroup` renders them
as one line. Option types (ADDRESS, ID, AMOUNT, NONCE, Url) come from
cli_types.py; `yes_option` + `confirm_irreversible` guard ownership transfers.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from registry_client.cli_output import OneLineError, OneLineErrorsGroup, echo_json
from registry_client.cli_types import ADDRESS, AMOUNT, ID, NONCE, Url
from registry_client.errors import RegistryError, WalletError

if TYPE_CHECKING:  # web3 and eth-account are imported by the commands that use them
    from registry_client.contracts import Registries
    from registry_client.manifest import Deployment

__all__ = [
    "ADDRESS", "AMOUNT", "ID", "NONCE", "CliContext", "CliError", "RegistryGroup", "Url", "confirm_irreversible",
    "load_wallet", "pass_cli", "wallet_options", "yes_option",
]

F = TypeVar("F", bound=Callable[..., Any])


class CliError(OneLineError):
    """A one-line `error: <message> (CODE)` on stderr, exit code 1."""


@dataclass
class CliContext:
    """What the root group stores in `ctx.obj` for every sub-command."""

    rpc: str
    deployment_path: Path
    json_output: bool = False
    last_tx: dict[str, Any] = field(default_factory=dict)

    def progress(self, event: str, value: Any) -> None:
        """Report a transaction step on stderr (stdout stays for results)."""
        if event == "sent":
            self.last_tx = {"tx_hash": value}
            click.echo(f"sent {value}", err=True)
        elif event == "mined":
            self.last_tx["block"] = value
            click.echo(f"mined in block {value}", err=True)
        elif event == "deployed":
            key, address = value
            click.echo(f"{key} at {address}", err=True)

    def deployment(self) -> Deployment:
        from registry_client.manifest import load_deployment

        return load_deployment(self.deployment_path)

    def web3(self) -> Any:
        from registry_client.rpc import make_web3

        return make_web3(self.rpc)

    def connect(self, account: Any | None = None) -> Registries:
        from registry_client.contracts import connect

        return connect(self.rpc, self.deployment(), account, progress=self.progress)

    def output(self, obj: dict[str, Any] | list[Any], text: str) -> None:
        """`obj` as one JSON value under --json (an array for a list command), else `text`."""
        if self.json_output:
            echo_json(obj)
        else:
            click.echo(text)


pass_cli = click.make_pass_decorator(CliContext)


def _prompt_password(text: str) -> str:
    try:
        return click.prompt(text, hide_input=True, err=True)
    except click.Abort as exc:
        from registry_client.wallet import PASSWORD_ENV

        raise WalletError(f"no password given ({text.lower()}); set {PASSWORD_ENV}") from exc


def load_wallet(keystore: str | os.PathLike[str] | None, key_env: str | None) -> Any:
    """The account from `--keystore` (prompting if needed) or `--key-env`."""
    from registry_client import wallet

    return wallet.load_wallet(keystore, key_env, prompt=_prompt_password)


def wallet_options(f: F) -> F:
    """Add `--keystore FILE | --key-env VAR` (the transaction's signer) to a command."""
    f = click.option(
        "--key-env", metavar="VAR",
        help="Name of an environment variable holding the signer's private key (never the key itself).",
    )(f)
    f = click.option(
        "--keystore", metavar="FILE",
        help="Encrypted keystore JSON of the signer; password from REGISTRY_PASSWORD or a prompt.",
    )(f)
    return f


def yes_option(f: F) -> F:
    """`--yes`: skip the confirmation of an irreversible step (needed without a terminal)."""
    return click.option("--yes", "yes", is_flag=True,
                        help="Do not ask for confirmation (required when stdin is not a terminal).")(f)


def _interactive() -> bool:
    return sys.stdin.isatty()


def confirm_irreversible(action: str, yes: bool) -> None:
    """Ask before `action` cannot be undone; refuse without a terminal unless --yes."""
    if yes:
        return
    if not _interactive():
        raise CliError(f"{action} cannot be undone: pass --yes to confirm (no terminal to ask on)",
                       "CONFIRMATION_REQUIRED")
    if not click.confirm(f"{action}. This cannot be undone. Continue?", default=False, err=True):
        raise CliError(f"cancelled: nothing was sent ({action} not confirmed)", "CANCELLED")


class RegistryGroup(OneLineErrorsGroup):
    """Root group: renders library errors as one line (`error: <message> (CODE)`), never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RegistryError as exc:
            raise CliError(exc.message, exc.code) from exc
