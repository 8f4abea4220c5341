"""The operator's command line: `compute-engine serve | data add | data list`.

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

from engine.data import DataCatalog
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
@one_line_errors
def serve(config: Path | None, host: str | None, port: int | None) -> None:
    """Run the HTTP API and the job workers until interrupted.

    \b
    Example:
      ENGINE_DEPLOYMENT=deployment.json compute-engine serve --port 8000
    """
    import uvicorn

    settings = _settings(config, host=host, port=port)
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
@click.argument("file", type=click.Path(path_type=Path))
@one_line_errors
def data_add(config: Path | None, refiner_id: int, replace: bool, file: Path) -> None:
    """Attach a SQLite FILE to a refiner after checking the refiner exists on chain.

    \b
    Example:
      compute-engine data add --refiner 1 ./refined.db
    """
    settings = _settings(config)
    if not file.is_file():
        raise OneLineError(f"{file} is not a file", "INVALID_INPUT")
    dlp_id = _check_refiner_on_chain(settings, refiner_id)
    entry = DataCatalog(settings.data_dir).add(refiner_id, file, replace=replace)
    click.echo(f"refiner {refiner_id} (DLP {dlp_id}): {entry.path} ({entry.size} bytes)")


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
    entries = DataCatalog(_settings(config).data_dir).list()
    rows = [{"refiner_id": e.refiner_id, "path": str(e.path), "size": e.size} for e in entries]
    if as_json:
        echo_json(rows)
        return
    click.echo(table(rows, [("refiner_id", "REFINER"), ("size", "SIZE"), ("path", "PATH")],
                     "no refiner data attached"))


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
