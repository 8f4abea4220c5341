"""`registry deposit|withdraw|balance`, `registry dlp earnings|claim`, `registry engine authorize`.

The money half of the CLI, a thin layer over `registry_client.payments.Payments`:
a builder deposits in the ComputeEngine and `registry job submit` opens the
on-chain job a priced query is charged to (`open_compute_job`); the engine's
wallet must hold the QueryEngine's QUERY_ENGINE_ROLE (`engine authorize`, the
deployer signs); a DLP owner reads and claims the DLP's share. Amounts are in
the token's smallest unit (wei for the native token); `--token ADDR` names a
whitelisted ERC-20.
"""

from __future__ import annotations

from typing import Any

import click

from registry_client.cli_common import (
    ADDRESS,
    ID,
    CliContext,
    load_wallet,
    pass_cli,
    wallet_options,
)
from registry_client.cli_output import wei
from registry_client.cli_types import Uint256

__all__ = ["balance", "deposit", "dlp_claim", "dlp_earnings", "engine", "open_compute_job", "withdraw"]

AMOUNT_ABOVE_0 = Uint256(minimum=1)
MAX_TIMEOUT = Uint256(minimum=1, maximum=2**80 - 1)  # the ComputeEngine's uint80

token_option = click.option("--token", metavar="ADDR", type=ADDRESS,
                            help="A whitelisted ERC-20 [default: the native token].")


def _payments(obj: CliContext, account: Any | None = None) -> Any:
    from registry_client.payments import Payments

    return Payments(obj.connect(account))


def _unit(token: str | None) -> str:
    return f"of token {token}" if token else "wei"


@click.command()
@click.argument("amount", type=AMOUNT_ABOVE_0)
@token_option
@wallet_options
@pass_cli
def deposit(obj: CliContext, amount: int, token: str | None, keystore: str | None, key_env: str | None) -> None:
    """Deposit AMOUNT in the ComputeEngine: what your priced jobs are charged from.

    An ERC-20 is approved to the ComputeEngine first (two transactions).

    \b
    Example:
      registry deposit 10000 --key-env BUILDER_KEY
    """
    pay = _payments(obj, load_wallet(keystore, key_env))
    pay.deposit(amount, token)
    now = pay.balance(token=token)
    obj.output({"deposited_wei": wei(amount), "balance_wei": wei(now), "token": token, **obj.last_tx},
               f"deposited {amount} {_unit(token)}; balance {now}")


@click.command()
@click.argument("amount", type=AMOUNT_ABOVE_0)
@token_option
@wallet_options
@pass_cli
def withdraw(obj: CliContext, amount: int, token: str | None, keystore: str | None, key_env: str | None) -> None:
    """Withdraw AMOUNT of your ComputeEngine deposit back to your wallet.

    \b
    Example:
      registry withdraw 5000 --key-env BUILDER_KEY
    """
    pay = _payments(obj, load_wallet(keystore, key_env))
    pay.withdraw(amount, token)
    now = pay.balance(token=token)
    obj.output({"withdrawn_wei": wei(amount), "balance_wei": wei(now), "token": token, **obj.last_tx},
               f"withdrew {amount} {_unit(token)}; balance {now}")


@click.command()
@click.option("--account", metavar="ADDR", type=ADDRESS, help="Whose deposit [default: the signer's].")
@token_option
@wallet_options
@pass_cli
def balance(obj: CliContext, account: str | None, token: str | None, keystore: str | None,
            key_env: str | None) -> None:
    """Show a ComputeEngine deposit (yours, or --account's without a wallet).

    \b
    Example:
      registry balance --account 0x90F79bf6EB2c4f870365E785982E1f101E93b906
    """
    wallet = None if account else load_wallet(keystore, key_env)
    pay = _payments(obj, wallet)
    who = account or wallet.address
    amount = pay.balance(who, token)
    obj.output({"account": who, "balance_wei": wei(amount), "token": token}, str(amount))


@click.command("earnings")
@click.argument("dlp_id", metavar="ID", type=ID)
@token_option
@pass_cli
def dlp_earnings(obj: CliContext, dlp_id: int, token: str | None) -> None:
    """Show a DLP's accrued, unclaimed share of the prices paid for its data.

    \b
    Example:
      registry dlp earnings 1
    """
    pay = _payments(obj)
    amount = pay.dlp_earnings(dlp_id, token)
    obj.output({"dlp_id": dlp_id, "earnings_wei": wei(amount), "token": token,
                "share_percent": pay.dlp_share_percent()}, str(amount))


@click.command("claim")
@click.argument("dlp_id", metavar="ID", type=ID)
@token_option
@wallet_options
@pass_cli
def dlp_claim(obj: CliContext, dlp_id: int, token: str | None, keystore: str | None, key_env: str | None) -> None:
    """Send a DLP's accrued share to the DLP's treasury address (the DLP owner signs).

    \b
    Example:
      registry dlp claim 1 --key-env OWNER_KEY
    """
    pay = _payments(obj, load_wallet(keystore, key_env))
    treasury = pay.reg.dlp(dlp_id).treasury
    amount = pay.claim(dlp_id, token)
    obj.output({"dlp_id": dlp_id, "claimed_wei": wei(amount), "treasury": treasury, "token": token, **obj.last_tx},
               f"claimed {amount} {_unit(token)} for DLP {dlp_id} to its treasury {treasury}")


@click.group()
def engine() -> None:
    """Let a compute engine's wallet charge jobs (the deployer signs).

    \b
    Example:
      registry engine authorize 0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65 --key-env DEPLOYER_KEY
    """


@engine.command("authorize")
@click.argument("address", metavar="ADDR", type=ADDRESS)
@wallet_options
@pass_cli
def engine_authorize(obj: CliContext, address: str, keystore: str | None, key_env: str | None) -> None:
    """Grant ADDR (the engine's signing key) the QueryEngine's QUERY_ENGINE_ROLE: it may charge jobs.

    \b
    Example:
      registry engine authorize 0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65 --key-env DEPLOYER_KEY
    """
    pay = _payments(obj, load_wallet(keystore, key_env))
    pay.authorize_engine(address)
    obj.output({"engine": address, "authorized": pay.is_engine_authorized(address), **obj.last_tx},
               f"engine {address} may now request payment for jobs (QUERY_ENGINE_ROLE)")


def open_compute_job(obj: CliContext, account: Any, instruction_id: int, refiner_id: int,
                     max_timeout_s: int) -> int:
    """For `job submit`: open an on-chain job when the signer's permissions on the refiner are priced.

    Returns its id, or 0 when every permission that applies is free (nothing can be charged).
    """
    pay = _payments(obj, account)
    priced = [p for p in pay.reg.get_permissions(refiner_id, account.address) if p.price > 0]
    if not priced:
        return 0
    job_id = pay.submit_job(instruction_id, max_timeout_s)
    click.echo(f"opened on-chain compute job {job_id} (max timeout {max_timeout_s} s; your deposit "
               f"{pay.balance()} wei) to pay the query's price", err=True)
    return job_id
