"""`registry schema ...`: schemas of refined data that refiners may follow (Vana's schemas).

A schema is {name, dialect (e.g. sqlite), definition URL}; anyone may add one, and
a DLP owner points a refiner at it with `registry refiner add --schema ID`.
"""

from __future__ import annotations

from typing import Any

import click

from registry_client.cli_common import ID, CliContext, Url, load_wallet, pass_cli, wallet_options
from registry_client.cli_output import table

__all__ = ["schema"]


@click.group()
def schema() -> None:
    """Add, show and list schemas that refiners follow.

    \b
    Example:
      registry schema add --name fitness --dialect sqlite --url https://example.org/schema.json --key-env KEY
    """


def _schema_dict(s: Any) -> dict[str, Any]:
    return {"id": s.id, "name": s.name, "dialect": s.dialect, "definition_url": s.definition_url}


@schema.command("add")
@click.option("--name", required=True, help="Name of the schema.")
@click.option("--dialect", default="sqlite", show_default=True, help="The schema's language.")
@click.option("--url", "definition_url", required=True, type=Url(schemes=None), help="URL of its definition.")
@wallet_options
@pass_cli
def schema_add(obj: CliContext, name: str, dialect: str, definition_url: str, keystore: str | None,
               key_env: str | None) -> None:
    """Add a schema (anyone may); prints its id.

    \b
    Example:
      registry schema add --name fitness --dialect sqlite --url https://example.org/schema.json --key-env KEY
    """
    reg = obj.connect(load_wallet(keystore, key_env))
    schema_id = reg.add_schema(name, dialect, definition_url)
    obj.output({"schema_id": schema_id, **_schema_dict(reg.schema(schema_id)), **obj.last_tx}, str(schema_id))


@schema.command("show")
@click.argument("schema_id", metavar="ID", type=ID)
@pass_cli
def schema_show(obj: CliContext, schema_id: int) -> None:
    """Show a schema: name, dialect, definition URL.

    \b
    Example:
      registry schema show 1
    """
    s = obj.connect().schema(schema_id)
    obj.output(_schema_dict(s), "\n".join(f"{k + ':':16}{v}" for k, v in _schema_dict(s).items()))


@schema.command("list")
@pass_cli
def schema_list(obj: CliContext) -> None:
    """List every schema.

    \b
    Example:
      registry schema list
    """
    reg = obj.connect()
    block = reg.block_number()
    rows = [reg.schema(i, block) for i in range(1, reg.schemas_count(block) + 1)]
    data = [_schema_dict(s) for s in rows]
    obj.output(data, table(data, [("id", "ID"), ("name", "NAME"), ("dialect", "DIALECT"),
                                  ("definition_url", "DEFINITION URL")], "no schemas"))
