"""The CLIs start without the heavy libraries: `--help` and `--version` import no web3 or eth-account.

A fresh interpreter per case (this test process has imported everything). What a
command needs (web3, eth-account, httpx) is imported when that command runs.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

HEAVY = ("web3", "eth_account", "eth_utils", "eth_keys", "httpx", "tabulate")


def _loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env={"PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=60, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["job", "--help"], ["instruction", "add", "--help"],
                                  ["instruction", "inspect", "--help"]])
def test_registry_help_and_version_import_no_chain_libraries(args):
    code = ("from registry_client.cli import cli\n"
            f"try:\n    cli.main({args!r}, standalone_mode=False)\nexcept SystemExit:\n    pass")
    assert not _loaded_after(code) & set(HEAVY)


def test_addresses_are_checked_without_eth_utils():
    loaded = _loaded_after("from registry_client.addresses import parse_address\n"
                           "parse_address('0x70997970C51812dc3A010C7d01b50e0d17dc79C8')")
    assert "eth_utils" not in loaded


@pytest.mark.parametrize(("entry", "name"), [("registry", "registry"), ("compute-engine", "compute-engine")])
def test_version_names_the_package_version(entry, name):
    from importlib.metadata import version

    exe = ROOT / ".venv" / "bin" / entry
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == f"{name} {version('compute-to-data')}"


def test_compute_engine_help_imports_no_settings_web3_or_docker():
    code = ("from engine.cli import cli\n"
            "try:\n    cli.main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass")
    assert not _loaded_after(code) & {*HEAVY, "pydantic_settings", "docker", "fastapi"}
