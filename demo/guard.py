"""One demo at a time per work dir: `make demo`, `make up` and a stack left running exclude each other.

- `run` and `up` hold an exclusive `flock` on `<work>/demo.lock` (with their
  pid in it) while they work: `run` for its whole life, `up` while it sets the
  stack up. A second command meanwhile refuses instead of wiping `.demo/`.
- A stack that `up` left running is recorded in `<work>/stack.json` with its
  pids. While any of them is alive, `run` and `up` refuse (`make down` first);
  a stack.json whose processes are all gone is stale and is cleaned away.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["LOCK_NAME", "DemoBusy", "exclusive", "live_stack"]

LOCK_NAME = "demo.lock"
STACK_NAME = "stack.json"


class DemoBusy(RuntimeError):
    """Another demo command, or a running stack, owns the work dir."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def live_stack(work: Path) -> dict[str, int]:
    """name -> pid of the processes of a `make up` stack that are still alive ({} if none)."""
    try:
        state = json.loads((work / STACK_NAME).read_text())
    except (OSError, ValueError):
        return {}
    pids = state.get("pids", {}) if isinstance(state, dict) else {}
    return {name: pid for name, pid in pids.items() if isinstance(pid, int) and pid > 0 and _alive(pid)}


@contextmanager
def exclusive(work: Path) -> Iterator[None]:
    """Hold the work dir for one command; DemoBusy when another command or a live stack has it."""
    work.mkdir(parents=True, exist_ok=True)
    with (work / LOCK_NAME).open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read(32).strip()
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise DemoBusy(f"another demo command{who} is using {work}: wait for it to end or stop it") from None
        stack = live_stack(work)
        if stack:
            pids = ", ".join(f"{name} {pid}" for name, pid in stack.items())
            raise DemoBusy(f"a stack started by `make up` is running from {work} ({pids}): `make down` first")
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
