"""`registry wallet public-key`, `registry data seal`: the client's side of sealed data.

A wallet's public key is what results are sealed to (`registry job submit
--recipient-key`, given by the recipient) and what a DLP owner seals data for
(the engine's key, given by its operator). `data seal` encrypts a SQLite file
with a fresh data key (registry_client/sealing.py, KEY mode) and wraps that key
to the engine's public key (ECIES over secp256k1): the operator attaches both
with `compute-engine data add --sealed FILE --wrapped-key HEX`, and never sees
the plaintext file.
"""

from __future__ import annotations

from pathlib import Path

import click

from registry_client.cli_common import CliContext, load_wallet, pass_cli, wallet_options
from registry_client.errors import InputError

__all__ = ["data_group", "wallet_public_key"]


@click.command("public-key")
@wallet_options
@pass_cli
def wallet_public_key(obj: CliContext, keystore: str | None, key_env: str | None) -> None:
    """Print your wallet's address and public key (what others seal results or data to).

    \b
    Example:
      registry wallet public-key --key-env BOB_KEY
    """
    from registry_client import sealing  # imported when run, not for --help

    account = load_wallet(keystore, key_env)
    public_key = sealing.public_key_of(bytes(account.key))
    obj.output({"address": account.address, "public_key": public_key}, f"{account.address}\t{public_key}")


@click.group("data")
def data_group() -> None:
    """Seal refined data for an engine (the DLP owner's side of `compute-engine data add --sealed`).

    \b
    Example:
      registry data seal refined.db --engine-key 0x04ab... --out refined.sealed
    """


@data_group.command("seal")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--engine-key", "engine_key", required=True, metavar="HEX",
              help="The engine's public key (its operator runs `registry wallet public-key`).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The sealed file to write (hand it to the engine's operator).")
@pass_cli
def data_seal(obj: CliContext, file: Path, engine_key: str, out: Path) -> None:
    """Encrypt FILE with a fresh data key wrapped to the engine; prints the wrapped key.

    \b
    Example:
      registry data seal refined.db --engine-key 0x04ab... --out refined.sealed
    """
    from registry_client import sealing  # imported when run, not for --help

    if not file.is_file():
        raise InputError(f"{file} is not a file")
    if out.exists():
        raise InputError(f"{out} already exists")
    key = sealing.new_data_key()
    wrapped = sealing.wrap_key(key, engine_key)
    part = out.with_name(out.name + ".part")
    try:
        with open(file, "rb") as reader, open(part, "xb") as writer:
            sealed = sealing.seal_stream(reader, writer, file.stat().st_size, key=key)
        part.rename(out)
    finally:
        part.unlink(missing_ok=True)
    address = sealing.address_of_public_key(engine_key)
    obj.output({"file": str(out), "size": sealed.size, "wrapped_key": "0x" + wrapped.hex(), "engine": address},
               "0x" + wrapped.hex())
