"""docs/cli.md is kept honest: every command and every error code is documented."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from engine.audit import WARNING_CODES
from engine.errors import ENGINE_CODES
from registry_client.cli import cli
from registry_client.errors import CLI_CODES, CLIENT_CODES, ERROR_CODES

DOCS = Path(__file__).resolve().parents[2] / "docs"
DOC = DOCS / "cli.md"

# Groups written by other modules (registry_client/cli_job.py) document themselves elsewhere.
_OWN_GROUPS = {"deploy", "dlp", "refiner", "schema", "instruction", "permission", "wallet",
               "deposit", "withdraw", "balance", "engine"}


def command_paths(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[list[str]]:
    """Every leaf command as its argv path, e.g. ["instruction", "add"]."""
    paths: list[list[str]] = []
    for name, command in sorted(group.commands.items()):
        if not prefix and name not in _OWN_GROUPS:
            continue
        if isinstance(command, click.Group):
            paths.extend(command_paths(command, (*prefix, name)))
        else:
            paths.append([*prefix, name])
    return paths


@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(p))
def test_command_documented(path):
    assert f"registry {' '.join(path)}" in DOC.read_text(), f"`registry {' '.join(path)}` missing from docs/cli.md"


@pytest.mark.parametrize("code", sorted(ERROR_CODES))
def test_error_code_documented(code):
    assert f"`{code}`" in DOC.read_text()


# The other two tables of the one registry (tests/engine/test_error_registry.py); the job and
# API codes are checked against docs/api.md by tests/engine/test_api.py.
@pytest.mark.parametrize("code", sorted(ENGINE_CODES))
def test_operator_error_code_documented(code):
    assert f"| `{code}` |" in (DOCS / "configuration.md").read_text(), f"`{code}` missing from docs/configuration.md"


@pytest.mark.parametrize("code", sorted(CLIENT_CODES))
def test_engine_client_code_documented(code):
    assert f"| `{code}` |" in (DOCS / "api.md").read_text(), f"`{code}` missing from docs/api.md"


@pytest.mark.parametrize("code", sorted(CLI_CODES))
def test_cli_only_code_documented(code):
    assert f"`{code}`" in (DOCS / "cli.md").read_text(), f"`{code}` missing from docs/cli.md"


@pytest.mark.parametrize("code", sorted(WARNING_CODES))
def test_audit_warning_code_documented(code):
    assert f"`{code}`" in (DOCS / "api.md").read_text(), f"audit warning `{code}` missing from docs/api.md"


def test_issue_command_names_exist():
    # The product's interface (issues 2 and 3): these exact names must keep working.
    expected = {
        "deploy", "dlp register", "dlp show", "dlp transfer", "refiner add", "refiner show", "refiner list",
        "instruction add", "instruction approve", "instruction revoke", "instruction show", "instruction list",
        "permission grant", "permission revoke", "permission list",
    }
    assert expected <= {" ".join(p) for p in command_paths()}
