"""engine/__init__.py: the engine hashes with the C keccak backend (and leaves an operator's choice)."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = ("import os, engine\n"
         "from eth_hash.auto import keccak\n"
         "assert keccak(b'').hex() == "
         "'c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470'\n"
         "print(os.environ.get('ETH_HASH_BACKEND'))\n")


def _backend(**env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != "ETH_HASH_BACKEND"}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**base, **env}, capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


def test_importing_the_engine_selects_the_c_keccak_backend() -> None:
    assert _backend() == "pysha3"


def test_an_operators_backend_choice_wins() -> None:
    assert _backend(ETH_HASH_BACKEND="pycryptodome") == "pycryptodome"
