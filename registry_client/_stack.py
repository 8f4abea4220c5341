"""Keep the interpreter's recursion limit at a depth the C stack can hold.

``py_ecc`` (imported by ``eth_keys``, hence by eth-account and web3) raises
``sys.setrecursionlimit`` to 100,000 at import. C-level recursion such as
``json.loads`` of deeply nested input then overflows the C stack and the
process dies with SIGSEGV before Python's guard can raise ``RecursionError``.
``pin_recursion_limit`` imports py_ecc once (so a later import cannot raise
the limit again) and puts the limit back; ``registry_client/__init__.py``
calls it, so every entry point (the ``registry`` CLI, ``compute-engine``, the
API app) runs with it.
"""

from __future__ import annotations

import sys

__all__ = ["SAFE_RECURSION_LIMIT", "pin_recursion_limit"]

# CPython's own default: deep enough for the libraries, shallow enough for an 8 MiB
# C stack (and the smaller stacks of worker threads) whatever recurses.
SAFE_RECURSION_LIMIT = 1000


def pin_recursion_limit() -> int:
    """Import py_ecc now, then cap the recursion limit at SAFE_RECURSION_LIMIT; return it."""
    import py_ecc  # noqa: F401 - imported for its side effect, which is undone below

    if sys.getrecursionlimit() > SAFE_RECURSION_LIMIT:
        sys.setrecursionlimit(SAFE_RECURSION_LIMIT)
    return sys.getrecursionlimit()
