"""`registry permission ...`: query permissions granted by a refiner's owner (the DLP owner who added it).

A permission is {grantee or anyone, refiner, table ("" = every table), column
("" = every column of the table), price in wei or a token}; the engine reads only what an
approved permission covers (docs/query.md).
"""

from __future__ import annotations

from typing import Any

import click

from registry_client.cli_common import (
    ADDRESS,
    AMOUNT,
    ID,
    CliContext,
    load_wallet,
    pass_cli,
    wallet_options,
)
from registry_client.cli_output import table, wei

__all__ = ["permission"]


# ------------------------------------------------------------------ permission


@click.group()
def permission() -> None:
    """Grant, revoke and list query permissions on a refiner's data.

    \b
    Example:
      registry permission grant --refiner 1 --anyone --table users --price 0 --key-env OWNER_KEY
    """


def _permission_dict(p: Any) -> dict[str, Any]:
    return {"id": p.id, "grantee": p.grantee, "approved": p.approved, "refiner_id": p.refiner_id,
            "table": p.table, "column": p.column, "price_wei": wei(p.price), "token": p.token}


def _permission_row(p: Any) -> dict[str, Any]:
    return {"id": p.id, "grantee": p.grantee or "anyone", "scope": (p.table or "*") + "." + (p.column or "*"),
            "price": f"{p.price} {f'of token {p.token}' if p.token else 'wei'}",
            "state": "approved" if p.approved else "revoked"}


_COLUMNS = [("id", "ID"), ("grantee", "GRANTEE"), ("scope", "TABLE.COLUMN"), ("price", "PRICE"), ("state", "STATE")]


@permission.command("grant")
@click.option("--refiner", "refiner_id", required=True, type=ID, help="The refiner whose data is granted.")
@click.option("--grantee", metavar="ADDR", type=ADDRESS, help="The wallet allowed to read.")
@click.option("--anyone", is_flag=True, help="Grant to every wallet (the default without --grantee).")
@click.option("--table", default="", help="Table name [default: every table].")
@click.option("--column", default="", help="Column name (needs --table) [default: every column].")
@click.option("--price", default=0, type=AMOUNT, show_default=True,
              help="Price (a uint256) in wei, or in the token's smallest unit with --token.")
@click.option("--token", metavar="ADDR", type=ADDRESS, help="ERC-20 the price is paid in [default: native].")
@wallet_options
@pass_cli
def permission_grant(obj: CliContext, refiner_id: int, grantee: str | None, anyone: bool, table: str,
                     column: str, price: int, token: str | None, keystore: str | None, key_env: str | None) -> None:
    """Grant a read permission (the refiner's owner signs); prints its id.

    \b
    Example:
      registry permission grant --refiner 1 --grantee 0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC \\
          --table users --column locale --price 1000 --key-env OWNER_KEY
    """
    if grantee and anyone:
        raise click.UsageError("pass either --grantee ADDR or --anyone, not both")
    who = grantee or None
    reg = obj.connect(load_wallet(keystore, key_env))
    pid = reg.add_permission(refiner_id, who, table, column, price, token)
    obj.output({"permission_id": pid, **_permission_dict(reg.permission(pid)), **obj.last_tx}, str(pid))


@permission.command("revoke")
@click.argument("permission_id", metavar="PERMISSION_ID", type=ID)
@wallet_options
@pass_cli
def permission_revoke(obj: CliContext, permission_id: int, keystore: str | None, key_env: str | None) -> None:
    """Revoke a permission (the refiner's owner signs).

    \b
    Example:
      registry permission revoke 3 --key-env OWNER_KEY
    """
    reg = obj.connect(load_wallet(keystore, key_env))
    changed = reg.update_permission_approval(permission_id, False)
    text = f"permission {permission_id} revoked" + ("" if changed else " (unchanged)")
    obj.output({"permission_id": permission_id, "approved": False, "changed": changed, **obj.last_tx}, text)


@permission.command("list")
@click.option("--refiner", "refiner_id", required=True, type=ID, help="The refiner.")
@click.option("--grantee", metavar="ADDR", type=ADDRESS, help="Only the generic permissions plus this wallet's.")
@pass_cli
def permission_list(obj: CliContext, refiner_id: int, grantee: str | None) -> None:
    """List a refiner's permissions (all, or the approved ones that apply to --grantee).

    \b
    Example:
      registry permission list --refiner 1 --grantee 0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC
    """
    who = grantee or None
    reg = obj.connect()
    block = reg.block_number()
    reg.refiner(refiner_id, block)
    if who:
        rows = reg.get_permissions(refiner_id, who, block)
    else:
        rows = [reg.permission(i, block) for i in reg.refiner_permission_ids(refiner_id, block)]
    obj.output([_permission_dict(p) for p in rows],
               table([_permission_row(p) for p in rows], _COLUMNS, f"refiner {refiner_id} has no permissions"))
