"""Disk space of the engine's own folders: is a filesystem full, and the error saying so.

A full disk is the operator's problem, not the job's: it gets its own code,
STORAGE_FULL, never a size-cap code such as RESULT_TOO_LARGE (whose limit the
job did not reach) nor INTERNAL_ERROR.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path
from typing import Any

from engine.errors import StorageFull

__all__ = ["FULL_MARGIN_BYTES", "disk_check", "free_bytes", "is_disk_full", "is_full", "storage_full"]

# Below this much free space a failed write is taken to be the disk's fault.
FULL_MARGIN_BYTES = 1024 * 1024

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def free_bytes(path: Path | str) -> int:
    """Bytes an unprivileged writer may still use on `path`'s filesystem."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def is_full(path: Path | str, margin: int = FULL_MARGIN_BYTES) -> bool:
    """True when `path`'s filesystem has less than `margin` bytes free (or cannot be asked)."""
    try:
        return free_bytes(path) < margin
    except OSError:
        return False


def is_disk_full(exc: BaseException) -> bool:
    """An OSError ENOSPC/EDQUOT, or SQLite's SQLITE_FULL (which a size cap raises too)."""
    if isinstance(exc, OSError):
        return exc.errno in _FULL_ERRNOS
    return isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


def storage_full(while_doing: str) -> StorageFull:
    return StorageFull(f"the engine's disk is full (while {while_doing}); the operator must free space")


def disk_check(path: Path | str, min_free_bytes: int) -> dict[str, Any]:
    """/health's `disk` check: free bytes of `path`; not ok under `min_free_bytes`."""
    try:
        free = free_bytes(path)
    except OSError as exc:
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": free >= min_free_bytes, "value": free}
