"""The `registry` command line: a thin click layer over `registry_client`.

It parses arguments, calls the library and turns every `RegistryError` into
one line on stderr (`error: <message> (CODE)`, exit 1; usage errors exit 2).
Transactions print `sent 0x…` and `mined in block N` to stderr; results go
to stdout (with `--json`: exactly one JSON object).

Shared pieces (`CliContext` in `ctx.obj`, `wallet_options`, `load_wallet`,
error rendering) live in cli_common.py; the `permission`, `schema` and `job` groups in
cli_permission.py, cli_schema.py and cli_job.py; deposits, DLP earnings and
`engine authorize` in cli_money.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from registry_client import cli_money as _money
from registry_client.cli_audit import instruction_inspect as _instruction_inspect
from registry_client.cli_common import (
    ADDRESS,
    ID,
    CliContext,
    CliError,
    RegistryGroup,
    Url,
    confirm_irreversible,
    load_wallet,
    pass_cli,
    wallet_options,
    yes_option,
)
from registry_client.cli_job import job as _job_group
from registry_client.cli_job import refiner_schema as _refiner_schema
from registry_client.cli_output import table
from registry_client.cli_permission import permission as _permission_group
from registry_client.cli_schema import schema as _schema_group
from registry_client.errors import InputError, WalletError

__all__ = ["CliContext", "CliError", "cli", "load_wallet", "main", "pass_cli", "wallet_options"]  # re-exported for callers

@click.group(cls=RegistryGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--rpc", envvar="REGISTRY_RPC", default="http://127.0.0.1:8545", show_default=True, type=Url(),
              help="JSON-RPC URL of the chain (env REGISTRY_RPC).")
@click.option("--deployment", "deployment_path", envvar="REGISTRY_DEPLOYMENT", default="deployment.json",
              show_default=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Deployment manifest JSON (env REGISTRY_DEPLOYMENT).")
@click.option("--json", "json_output", is_flag=True, help="Print the result as one JSON object.")
@click.version_option(package_name="compute-to-data", prog_name="registry", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, rpc: str, deployment_path: Path, json_output: bool) -> None:
    """Use the compute-to-data registries: DLPs, refiners, compute instructions, permissions.

    \b
    Example:
      export REGISTRY_RPC=http://127.0.0.1:8545 OWNER_KEY=0x...
      registry deploy --key-env OWNER_KEY
      registry dlp register --name "My DLP" --key-env OWNER_KEY
    """
    ctx.obj = CliContext(rpc=rpc, deployment_path=deployment_path, json_output=json_output)


# ------------------------------------------------------------------ deploy


@cli.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the manifest [default: the --deployment path].")
@click.option("--force", is_flag=True, help="Replace an existing manifest file.")
@wallet_options
@pass_cli
def deploy(obj: CliContext, out: Path | None, force: bool, keystore: str | None, key_env: str | None) -> None:
    """Deploy the five contracts (proxies) and write the deployment manifest.

    The signer becomes admin (may upgrade, pause and unpause). The manifest is
    written only when every contract is deployed.

    \b
    Example:
      registry deploy --out deployment.json --key-env DEPLOYER_KEY
    """
    from registry_client.deploy import deploy as deploy_all
    from registry_client.manifest import save_deployment

    target = out or obj.deployment_path
    if target.exists() and not force:
        raise InputError(f"{target} already exists: pass --force to replace it")
    account = load_wallet(keystore, key_env)
    deployment = deploy_all(obj.web3(), account, progress=obj.progress)
    save_deployment(deployment, target, overwrite=True)
    lines = [f"deployed to chain {deployment.chain_id}; manifest written to {target}"]
    lines += [f"  {key:30} {addr}" for key, addr in deployment.addresses.items()]
    obj.output({**deployment.to_dict(), "manifest": str(target)}, "\n".join(lines))


# ------------------------------------------------------------------ dlp


@cli.group()
def dlp() -> None:
    """Register DLPs, show them, transfer their ownership, read and claim their earnings.

    \b
    Example:
      registry dlp register --name "Health DLP" --key-env OWNER_KEY
    """


def _dlp_dict(d: Any) -> dict[str, Any]:
    return {"id": d.id, "owner": d.owner, "name": d.name, "treasury": d.treasury, "dlp_address": d.dlp_address,
            "status": d.status, "registration_block": d.registration_block}


@dlp.command("register")
@click.option("--name", required=True, help="Unique name of the DLP, at least 4 non-space characters.")
@click.option("--owner", metavar="ADDR", type=ADDRESS, help="Owner wallet [default: the signer].")
@click.option("--treasury", metavar="ADDR", type=ADDRESS,
              help="Where the DLP's claimed earnings go [default: the owner].")
@wallet_options
@pass_cli
def dlp_register(obj: CliContext, name: str, owner: str | None, treasury: str | None, keystore: str | None,
                 key_env: str | None) -> None:
    """Register a DLP; prints its id.

    \b
    Example:
      registry dlp register --name "Health DLP" --key-env OWNER_KEY
    """
    reg = obj.connect(load_wallet(keystore, key_env))
    dlp_id = reg.register_dlp(name, owner, treasury=treasury)
    d = reg.dlp(dlp_id)
    obj.output({"dlp_id": dlp_id, **_dlp_dict(d), **obj.last_tx}, str(dlp_id))


@dlp.command("show")
@click.argument("dlp_id", metavar="ID", type=ID)
@pass_cli
def dlp_show(obj: CliContext, dlp_id: int) -> None:
    """Show a DLP: owner, treasury, name, status, registration block.

    \b
    Example:
      registry dlp show 1
    """
    d = obj.connect().dlp(dlp_id)
    obj.output(_dlp_dict(d), f"id:                 {d.id}\nname:               {d.name}\n"
                             f"owner:              {d.owner}\ntreasury:           {d.treasury}\n"
                             f"status:             {d.status}\nregistration_block: {d.registration_block}")


@dlp.command("transfer")
@click.argument("dlp_id", metavar="ID", type=ID)
@click.option("--to", "to", required=True, metavar="ADDR", type=ADDRESS, help="The new owner wallet.")
@yes_option
@wallet_options
@pass_cli
def dlp_transfer(obj: CliContext, dlp_id: int, to: str, yes: bool, keystore: str | None,
                 key_env: str | None) -> None:
    """Transfer a DLP to a new owner (the current owner signs). Irreversible: asks unless --yes.

    \b
    Example:
      registry dlp transfer 1 --to 0x70997970C51812dc3A010C7d01b50e0d17dc79C8 --key-env OWNER_KEY --yes
    """
    new_owner = to
    confirm_irreversible(f"transferring DLP {dlp_id} to {new_owner}", yes)
    reg = obj.connect(load_wallet(keystore, key_env))
    reg.transfer_dlp(dlp_id, new_owner)
    obj.output({"dlp_id": dlp_id, "owner": new_owner, **obj.last_tx},
               f"DLP {dlp_id} is now owned by {new_owner}; "
               f"the new owner takes its refiners over with `registry refiner adopt --dlp {dlp_id}`")


# ------------------------------------------------------------------ refiner


@cli.group()
def refiner() -> None:
    """Add data refiners (schemas of refined data) under a DLP and list them.

    \b
    Example:
      registry refiner add --dlp 1 --name users --schema-url https://example.org/schema.json --key-env OWNER_KEY
    """


def _refiner_dict(r: Any) -> dict[str, Any]:
    return {"id": r.id, "dlp_id": r.dlp_id, "owner": r.owner, "name": r.name, "schema_id": r.schema_id,
            "schema_url": r.schema_url, "instruction_url": r.instruction_url}


@refiner.command("add")
@click.option("--dlp", "dlp_id", required=True, type=ID, help="The DLP the refiner belongs to.")
@click.option("--name", required=True, help="Name of the refiner.")
@click.option("--schema-url", type=Url(schemes=None), help="URL of the schema definition (or --schema).")
@click.option("--schema", "schema_id", type=ID, help="A registered schema's id (see `registry schema`).")
@click.option("--instruction-url", default="", type=Url(schemes=None, allow_empty=True),
              help="URL of the refinement instructions.")
@wallet_options
@pass_cli
def refiner_add(obj: CliContext, dlp_id: int, name: str, schema_url: str | None, schema_id: int | None,
                instruction_url: str, keystore: str | None, key_env: str | None) -> None:
    """Add a refiner to a DLP (the DLP owner signs); prints its id. Give --schema-url or --schema.

    \b
    Example:
      registry refiner add --dlp 1 --name users --schema-url https://example.org/schema.json --key-env OWNER_KEY
    """
    if (schema_url is None) == (schema_id is None):
        raise click.UsageError("give exactly one of --schema-url and --schema")
    reg = obj.connect(load_wallet(keystore, key_env))
    refiner_id = reg.add_refiner(dlp_id, name, schema_url or "", instruction_url, schema_id=schema_id)
    obj.output({"refiner_id": refiner_id, **_refiner_dict(reg.refiner(refiner_id)), **obj.last_tx}, str(refiner_id))


@refiner.command("adopt")
@click.option("--dlp", "dlp_id", required=True, type=ID, help="The DLP you now own.")
@wallet_options
@pass_cli
def refiner_adopt(obj: CliContext, dlp_id: int, keystore: str | None, key_env: str | None) -> None:
    """Take over every refiner of a DLP you now own (after `registry dlp transfer`).

    Permissions are managed by a refiner's recorded owner (as on Vana), so a new
    DLP owner adopts the refiners before granting or revoking.

    \b
    Example:
      registry refiner adopt --dlp 1 --key-env NEW_OWNER_KEY
    """
    reg = obj.connect(load_wallet(keystore, key_env))
    reg.adopt_refiners(dlp_id)
    ids = reg.dlp_refiner_ids(dlp_id)
    obj.output({"dlp_id": dlp_id, "refiner_ids": ids, **obj.last_tx},
               f"{len(ids)} refiner(s) of DLP {dlp_id} now owned by {reg.account.address}")


refiner.add_command(_refiner_schema)  # `registry refiner schema ID`: asks the engine (cli_job.py)


@refiner.command("show")
@click.argument("refiner_id", metavar="ID", type=ID)
@pass_cli
def refiner_show(obj: CliContext, refiner_id: int) -> None:
    """Show a refiner: its DLP, owner, name and URLs.

    \b
    Example:
      registry refiner show 1
    """
    r = obj.connect().refiner(refiner_id)
    obj.output(_refiner_dict(r), "\n".join(f"{k + ':':17}{v}" for k, v in _refiner_dict(r).items()))


@refiner.command("list")
@click.option("--dlp", "dlp_id", required=True, type=ID, help="The DLP whose refiners to list.")
@pass_cli
def refiner_list(obj: CliContext, dlp_id: int) -> None:
    """List the refiners of a DLP.

    \b
    Example:
      registry refiner list --dlp 1
    """
    reg = obj.connect()
    reg.dlp(dlp_id)  # an unknown DLP is an error, not an empty list
    rows = [_refiner_dict(reg.refiner(i)) for i in reg.dlp_refiner_ids(dlp_id)]
    obj.output(rows, table(rows, [("id", "ID"), ("name", "NAME"), ("schema_id", "SCHEMA"), ("schema_url", "SCHEMA URL")],
                           f"DLP {dlp_id} has no refiners"))


# ------------------------------------------------------------------ instruction


@cli.group()
def instruction() -> None:
    """Publish compute instructions (Docker image archives) and approve them per DLP.

    \b
    Example:
      registry instruction add --image job.tar.gz --url https://example.org/job.tar.gz --key-env BUILDER_KEY
    """


def _instruction_dict(i: Any) -> dict[str, Any]:
    return {"id": i.id, "sha256": i.hash, "owner": i.owner, "url": i.url}


@instruction.command("add")
@click.option("--image", type=click.Path(path_type=Path), help="Image archive to hash (sha256, streamed).")
@click.option("--sha256", "sha256_hex", metavar="HEX", help="The archive's sha256 (64 hex digits).")
@click.option("--url", required=True, type=Url(schemes=("http", "https", "file")),
              help="Where the engine downloads the archive (http(s); file:// only for engines that allow it).")
@wallet_options
@pass_cli
def instruction_add(obj: CliContext, image: Path | None, sha256_hex: str | None, url: str,
                    keystore: str | None, key_env: str | None) -> None:
    """Publish a compute instruction; prints its id. The signer owns it.

    \b
    Example:
      registry instruction add --image job.tar.gz --url https://example.org/job.tar.gz --key-env BUILDER_KEY
      registry instruction add --sha256 9f86d0...0a08 --url https://example.org/job.tar.gz --keystore builder.json
    """
    from registry_client.contracts import parse_sha256, sha256_file

    if (image is None) == (sha256_hex is None):
        raise click.UsageError("pass exactly one of --image FILE or --sha256 HEX")
    digest = sha256_file(image) if image is not None else parse_sha256(sha256_hex or "").hex()
    reg = obj.connect(load_wallet(keystore, key_env))
    instruction_id = reg.add_instruction(digest, url)
    obj.output({"id": instruction_id, "instruction_id": instruction_id, "sha256": digest, "url": url, **obj.last_tx},
               str(instruction_id))


def _set_approval(obj: CliContext, instruction_id: int, dlp_id: int, approved: bool,
                  keystore: str | None, key_env: str | None) -> None:
    reg = obj.connect(load_wallet(keystore, key_env))
    changed = reg.update_instruction(instruction_id, dlp_id, approved)
    verb = "approved" if approved else "revoked"
    text = f"instruction {instruction_id} {verb} for DLP {dlp_id}" + ("" if changed else " (unchanged)")
    obj.output({"instruction_id": instruction_id, "dlp_id": dlp_id, "approved": approved,
                "changed": changed, **obj.last_tx}, text)


@instruction.command("approve")
@click.argument("instruction_id", metavar="ID", type=ID)
@click.option("--dlp", "dlp_id", required=True, type=ID, help="The DLP you own.")
@wallet_options
@pass_cli
def instruction_approve(obj: CliContext, instruction_id: int, dlp_id: int, keystore: str | None,
                        key_env: str | None) -> None:
    """Approve an instruction for your DLP (the DLP owner signs).

    \b
    Example:
      registry instruction approve 1 --dlp 1 --key-env OWNER_KEY
    """
    _set_approval(obj, instruction_id, dlp_id, True, keystore, key_env)


@instruction.command("revoke")
@click.argument("instruction_id", metavar="ID", type=ID)
@click.option("--dlp", "dlp_id", required=True, type=ID, help="The DLP you own.")
@wallet_options
@pass_cli
def instruction_revoke(obj: CliContext, instruction_id: int, dlp_id: int, keystore: str | None,
                       key_env: str | None) -> None:
    """Revoke an instruction's approval for your DLP (the DLP owner signs).

    \b
    Example:
      registry instruction revoke 1 --dlp 1 --key-env OWNER_KEY
    """
    _set_approval(obj, instruction_id, dlp_id, False, keystore, key_env)


@instruction.command("show")
@click.argument("instruction_id", metavar="ID", type=ID)
@click.option("--dlp", "dlp_id", type=ID, help="Show the approval for this DLP only.")
@pass_cli
def instruction_show(obj: CliContext, instruction_id: int, dlp_id: int | None) -> None:
    """Show an instruction and its approval state.

    Without --dlp, lists every DLP that approved it (from the chain's events).

    \b
    Example:
      registry instruction show 1 --dlp 1
    """
    reg = obj.connect()
    ins = reg.instruction(instruction_id)
    data = _instruction_dict(ins)
    lines = [f"{k + ':':9}{v}" for k, v in data.items()]
    if dlp_id is not None:
        reg.dlp(dlp_id)
        approved = reg.is_approved(instruction_id, dlp_id)
        data.update(dlp_id=dlp_id, approved=approved)
        lines.append(f"DLP {dlp_id}:   {'approved' if approved else 'not approved'}")
    else:
        approved_by = [d for d, ok in reg.instruction_approvals(instruction_id).items() if ok]
        data["approved_dlps"] = approved_by
        lines.append("approved for DLPs: " + (", ".join(map(str, approved_by)) or "none"))
    obj.output(data, "\n".join(lines))


@instruction.command("list")
@click.option("--dlp", "dlp_id", type=ID, help="Also show each instruction's approval for this DLP.")
@pass_cli
def instruction_list(obj: CliContext, dlp_id: int | None) -> None:
    """List every instruction (with its approval for --dlp).

    \b
    Example:
      registry instruction list --dlp 1
    """
    reg = obj.connect()
    block = reg.block_number()
    if dlp_id is not None:
        reg.dlp(dlp_id, block)
    rows = []
    for i in range(1, reg.instructions_count(block) + 1):
        row = _instruction_dict(reg.instruction(i, block))
        if dlp_id is not None:
            row["approved"] = reg.is_approved(i, dlp_id, block)
        rows.append(row)
    columns = [("id", "ID"), ("sha256", "SHA256"), ("owner", "OWNER"), ("url", "URL")]
    if dlp_id is not None:
        columns.append(("approval", f"DLP {dlp_id}"))
    shown = [{**r, "approval": "approved" if r.get("approved") else "not approved"} for r in rows]
    obj.output(rows, table(shown, columns, "no instructions"))


# ------------------------------------------------------------------ wallet


@cli.group("wallet")
def wallet_group() -> None:
    """Create encrypted keystore files.

    \b
    Example:
      REGISTRY_PASSWORD=... registry wallet new --out owner.json
    """


@wallet_group.command("new")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Keystore file to write.")
@click.option("--key-env", metavar="VAR", help="Encrypt the key in this env var instead of a new random key.")
@pass_cli
def wallet_new(obj: CliContext, out: Path, key_env: str | None) -> None:
    """Write an encrypted keystore (password from REGISTRY_PASSWORD or a prompt); prints its address.

    \b
    Example:
      registry wallet new --out owner.json --key-env OWNER_KEY
    """
    from registry_client import wallet as wallet_mod

    key = wallet_mod.load_env_key(key_env).key if key_env else None
    password = os.environ.get(wallet_mod.PASSWORD_ENV)
    if password is None:
        try:
            password = click.prompt("New keystore password", hide_input=True, confirmation_prompt=True, err=True)
        except click.Abort as exc:
            raise WalletError(f"no password given; set {wallet_mod.PASSWORD_ENV}") from exc
    address = wallet_mod.create_keystore(out, password, key=key)
    obj.output({"id": address, "address": address, "keystore": str(out.resolve())}, address)


# ------------------------------------------------------------------ entry point


def main(argv: list[str] | None = None) -> None:
    """Console script `registry` (errors: `RegistryGroup`, one line with a code, no traceback)."""
    cli.main(args=argv, prog_name="registry")


# Groups with modules of their own; imported last because they use the names above.

cli.add_command(_permission_group)
cli.add_command(_schema_group)
cli.add_command(_job_group)
for _command in (_money.deposit, _money.withdraw, _money.balance, _money.engine):
    cli.add_command(_command)
dlp.add_command(_money.dlp_earnings)
instruction.add_command(_instruction_inspect)
dlp.add_command(_money.dlp_claim)


if __name__ == "__main__":  # pragma: no cover
    main()
