"""The compute engine: a FastAPI service and its job pipeline."""

import importlib.util
import os

# Keccak through safe-pysha3's C type rather than pycryptodome's ctypes wrapper (~3.5x
# faster a hash): web3 hashes every ABI function's selector on every contract call, which
# was ~40 ms of CPU per job. eth-hash reads this (documented) variable at its first hash;
# an operator's own choice wins.
if "ETH_HASH_BACKEND" not in os.environ and importlib.util.find_spec("sha3") is not None:
    os.environ["ETH_HASH_BACKEND"] = "pysha3"

# registry_client pins a safe recursion limit at import (see registry_client/_stack.py);
# importing it first makes every engine entry point run with that limit.
import registry_client  # noqa: F401
