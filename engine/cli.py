"""The operator's command line: `compute-engine serve | data add | data list | data rotate-key`.

A thin layer over the library (settings, DataCatalog, the API app): it parses
arguments and turns library errors into one-line messages with a non-zero
exit, never a traceback.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from engine.errors import EngineError
from registry_client.cli_output import OneLineError, OneLineErrorsGroup, echo_json, table

if TYPE_CHECKING:  # pydantic-settings loads when a command runs, not for --help
    from engine.settings import Settings

__all__ = ["cli", "main"]


def _settings(config: Path | None, **overrides: Any) -> Settings:
    from engine.settings import SettingsError, load_settings

    try:
        return load_settings(config, **{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        raise OneLineError(exc.message, exc.code) from exc


def config_option(fn: Callable) -> Callable:
    """--config FILE, shared by every command."""
    return click.option(
        "--config",
        "config",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="ENGINE_CONFIG",
        help="TOML or JSON settings file (env ENGINE_CONFIG); ENGINE_* variables override it.",
    )(fn)


def one_line_errors(fn: Callable) -> Callable:
    """Library errors become `error: <message> (CODE)` and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from registry_client.errors import RegistryError

        try:
            return fn(*args, **kwargs)
        except (EngineError, RegistryError) as exc:
            raise OneLineError(getattr(exc, "message", None) or str(exc), exc.code) from exc

    return wrapper


class EngineGroup(OneLineErrorsGroup):
    """Every failure is one `error: <message> (CODE)` line; ENGINE_DEBUG=1 shows a traceback."""

    debug_env = "ENGINE_DEBUG"


@click.group(cls=EngineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="compute-to-data", prog_name="compute-engine", message="%(prog)s %(version)s")
def cli() -> None:
    """The compute engine: serve the job API, attach refiner data.

    \b
    Example:
      compute-engine data add --refiner 1 ./refined.db
      compute-engine serve --config engine.toml
    """


@cli.command()
@config_option
@click.option("--host", help="override the bind address (settings.host)")
@click.option("--port", type=int, help="override the port (settings.port)")
@click.option("--role", type=click.Choice(["api", "worker", "all"]),
              help="api: HTTP only; worker: claim and run jobs (/health only); all: both (settings.role)")
@one_line_errors
def serve(config: Path | None, host: str | None, port: int | None, role: str | None) -> None:
    """Run the HTTP API and the job workers until interrupted.

    \b
    Example:
      ENGINE_DEPLOYMENT=deployment.json compute-engine serve --port 8000
      compute-engine serve --role worker --config engine.toml
    """
    import uvicorn

    settings = _settings(config, host=host, port=port, role=role)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from engine.api.app import api_config, create_app
    from engine.api.server import server_config

    app = create_app(settings)
    limits = api_config(settings)
    # Bounded request heads and a header read timeout (engine/api/server.py).
    uvicorn.Server(server_config(app, host=settings.host, port=settings.port, limits=limits.limits,
                                 header_timeout_s=limits.header_timeout_s)).run()


@cli.group()
def data() -> None:
    """Refiner data: the SQLite files jobs query (the engine never writes them)."""


def _check_refiner_on_chain(settings: Settings, refiner_id: int) -> int:
    """The refiner's DLP id; raises a RegistryError when it does not exist or the chain fails."""
    from registry_client.contracts import connect
    from registry_client.manifest import load_deployment

    if settings.deployment is None:
        raise OneLineError("no deployment manifest: set ENGINE_DEPLOYMENT or `deployment` in the config file",
                           "CONFIG_INVALID")
    registries = connect(settings.rpc_url, load_deployment(settings.deployment))
    return registries.refiner(refiner_id).dlp_id


@data.command("add")
@config_option
@click.option("--refiner", "refiner_id", type=click.IntRange(min=1), required=True, help="refiner id on chain")
@click.option("--replace", is_flag=True, help="swap the data of a refiner that already has some")
@click.option("--sealed", "sealed", is_flag=True,
              help="FILE was sealed by the DLP owner (`registry data seal`); needs --wrapped-key")
@click.option("--wrapped-key", "wrapped_key", help="hex of the data key wrapped to the engine's wallet key")
@click.argument("file", type=click.Path(path_type=Path))
@one_line_errors
def data_add(config: Path | None, refiner_id: int, replace: bool, sealed: bool, wrapped_key: str | None,
             file: Path) -> None:
    """Seal a SQLite FILE for a refiner after checking the refiner exists on chain.

    The copy under the data dir is encrypted with a fresh data key wrapped by
    the KEK (data_kek_file or data_kek_env; without one: DATA_KEK_MISSING).

    \b
    Example:
      compute-engine data add --refiner 1 ./refined.db
      compute-engine data add --refiner 1 --sealed ./refined.sealed --wrapped-key 0x02ab...
    """
    from engine.data import DataCatalog
    from engine.data_keys import load_kek

    settings = _settings(config)
    if not file.is_file():
        raise OneLineError(f"{file} is not a file", "INVALID_INPUT")
    if sealed != (wrapped_key is not None):
        raise OneLineError("--sealed and --wrapped-key go together", "USAGE_ERROR")
    kek = load_kek(settings, required=True)
    dlp_id = _check_refiner_on_chain(settings, refiner_id)
    catalog = DataCatalog(settings.data_dir, kek)
    if sealed:
        assert wrapped_key is not None
        entry = catalog.add_sealed(refiner_id, file, _hex(wrapped_key, "--wrapped-key"),
                                   _engine_key(settings), replace=replace)
    else:
        entry = catalog.add(refiner_id, file, replace=replace)
    click.echo(f"refiner {refiner_id} (DLP {dlp_id}): {entry.path} ({entry.size} bytes, sealed, KEK {entry.kek_id})")


def _hex(text: str, what: str) -> bytes:
    try:
        return bytes.fromhex(text.removeprefix("0x"))
    except ValueError as exc:
        raise OneLineError(f"{what} is not hex", "INVALID_INPUT") from exc


def _engine_key(settings: Settings) -> bytes:
    """The engine's wallet key (signing_key_env): what DLP owners wrap their data keys to."""
    secret = settings.signing_key()
    if secret is None:
        raise OneLineError("the engine has no wallet key to unwrap with: set signing_key_env", "CONFIG_INVALID")
    return _hex(secret.get_secret_value(), "the engine's signing key")


@data.command("rotate-key")
@config_option
@click.option("--new-kek-file", "new_kek_file", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="a 0600 file holding the new KEK (64 hex); point data_kek_file at it afterwards")
@one_line_errors
def data_rotate_key(config: Path | None, new_kek_file: Path) -> None:
    """Re-wrap every refiner's data key under a new KEK (the sealed data is not rewritten).

    \b
    Example:
      compute-engine data rotate-key --new-kek-file /etc/compute-engine/kek-2
    """
    from engine.data import DataCatalog
    from engine.data_keys import load_kek, read_kek_file

    settings = _settings(config)
    new_kek = read_kek_file(new_kek_file)
    rotated = DataCatalog(settings.data_dir, load_kek(settings, required=True)).rotate(new_kek)
    click.echo(f"re-wrapped {len(rotated)} data key(s) under KEK {new_kek.id}")


@data.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@one_line_errors
def data_list(config: Path | None, as_json: bool) -> None:
    """List the refiners this engine holds data for.

    \b
    Example:
      compute-engine data list --json
    """
    from engine.data import DataCatalog

    entries = DataCatalog(_settings(config).data_dir).list()
    rows = [{"refiner_id": e.refiner_id, "path": str(e.path), "size": e.size, "kek_id": e.kek_id} for e in entries]
    if as_json:
        echo_json(rows)
        return
    click.echo(table(rows, [("refiner_id", "REFINER"), ("size", "SIZE"), ("path", "PATH")],
                     "no refiner data attached"))


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
