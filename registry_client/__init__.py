"""Python client for the compute-to-data registries and the engine API.

The main names are importable from the package (loaded lazily, so importing
one submodule such as `registry_client.eip712` does not pull in web3)::

    from registry_client import connect, load_deployment, load_wallet
    reg = connect("http://127.0.0.1:8545", load_deployment("deployment.json"), load_wallet(key_env="KEY"))
    reg.add_instruction(sha256_hex, "https://example.org/job.tar.gz")
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from registry_client._stack import pin_recursion_limit

# Before anything else: py_ecc (under eth-account/web3) raises the recursion limit to a
# depth that lets nested JSON overflow the C stack (SIGSEGV). See _stack.py.
pin_recursion_limit()

__all__ = [
    "Deployment",
    "Dlp",
    "Instruction",
    "PermissionRecord",
    "Refiner",
    "Registries",
    "RegistryError",
    "connect",
    "deploy",
    "load_deployment",
    "load_wallet",
    "save_deployment",
]

_WHERE = {
    "Deployment": "manifest",
    "load_deployment": "manifest",
    "save_deployment": "manifest",
    "Registries": "contracts",
    "connect": "contracts",
    "Dlp": "contracts",
    "Refiner": "contracts",
    "Instruction": "contracts",
    "PermissionRecord": "contracts",
    "deploy": "deploy",
    "load_wallet": "wallet",
    "RegistryError": "errors",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"registry_client.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'registry_client' has no attribute {name!r}")
