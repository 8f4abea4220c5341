"""The deliberate public surface of registry_client: every `__all__` name exists."""

from __future__ import annotations

import importlib

import pytest

MODULES = ["registry_client", "registry_client.errors", "registry_client.manifest", "registry_client.wallet",
           "registry_client.contracts", "registry_client.deploy", "registry_client.payments", "registry_client.cli",
           "engine.chain"]


@pytest.mark.parametrize("name", MODULES)
def test_all_names_resolve(name):
    module = importlib.import_module(name)
    assert module.__all__, name
    for attr in module.__all__:
        assert getattr(module, attr) is not None, f"{name}.{attr}"


def test_package_exports_are_the_real_objects():
    import registry_client
    from registry_client.contracts import connect

    assert registry_client.connect is connect
    with pytest.raises(AttributeError):
        registry_client.nope  # noqa: B018


def test_cli_context_contract_for_other_groups():
    # registry_client/cli_job.py relies on these names (see cli.py's docstring).
    from registry_client.cli import CliContext, load_wallet, wallet_options

    ctx = CliContext(rpc="http://x", deployment_path=__import__("pathlib").Path("d.json"), json_output=True)
    assert callable(ctx.connect) and callable(ctx.output) and callable(load_wallet) and callable(wallet_options)
