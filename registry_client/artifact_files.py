"""Where a downloaded artifact lands on disk: inside the destination, whole, never over a file by accident.

An engine may serve any artifact name. `plan(out_dir, names, force)` maps each
to an absolute path inside `out_dir` or refuses it (`Refused`: absolute, `..`,
NUL, a component over the filesystem's 255 bytes), and refuses the whole
download up front when a target exists and `force` is off (FILE_EXISTS, naming
it). `write_atomically` streams into a short temporary name in the target's
folder (`.dl-XXXXXXXX`, so a 255-byte name never grows past the limit the way
`name + ".part"` would) and renames it into place only once the caller's check
passed: without `force` by a hard link, which fails rather than overwrite a
file that appeared meanwhile.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from registry_client.errors import EngineApiError

__all__ = ["NAME_MAX", "Refused", "plan", "safe_target", "write_atomically"]

NAME_MAX = 255  # bytes per path component on Linux, macOS and Windows filesystems


@dataclass(frozen=True)
class Refused:
    """An artifact not written: its name, why, and a stable code."""

    name: str
    reason: str
    code: str


def _unsafe(name: str, out_dir: Path, why: str) -> EngineApiError:
    return EngineApiError(f"refusing artifact name {name!r}: {why} (it would leave {out_dir})",
                          code="UNSAFE_ARTIFACT_NAME")


def safe_target(out_dir: Path, name: str) -> Path:
    """The absolute path of `name` inside `out_dir`; UNSAFE_ARTIFACT_NAME or NAME_TOO_LONG otherwise."""
    parts = PurePosixPath(name).parts
    if not name or "\x00" in name:
        raise _unsafe(name, out_dir, "empty or holds a NUL byte")
    if PurePosixPath(name).is_absolute() or any(p in ("..", "") for p in parts):
        raise _unsafe(name, out_dir, "absolute or climbing with '..'")
    if os.sep != "/" and "\\" in name:  # a separator where the OS reads one
        raise _unsafe(name, out_dir, "holds a backslash")
    too_long = [p for p in parts if len(os.fsencode(p)) > NAME_MAX]
    if too_long:
        raise EngineApiError(f"refusing artifact name {name[:60]!r}...: a part is {len(os.fsencode(too_long[0]))} "
                             f"bytes, over the filesystem's {NAME_MAX}", code="NAME_TOO_LONG")
    root = out_dir.resolve()
    target = (root / Path(*parts)).resolve()
    if root != target and root not in target.parents:  # through a symlink already in out_dir
        raise _unsafe(name, out_dir, "resolves through a link")
    return target


def plan(out_dir: Path, names: Iterable[str], force: bool) -> tuple[list[tuple[str, Path]], list[Refused]]:
    """(name, target) for each writable name, and the refused ones; FILE_EXISTS before anything is written."""
    targets: list[tuple[str, Path]] = []
    refused: list[Refused] = []
    for name in names:
        try:
            target = safe_target(out_dir, name)
        except EngineApiError as exc:
            refused.append(Refused(name, exc.message, exc.code))
            continue
        if not force and (target.exists() or target.is_symlink()):
            raise EngineApiError(f"{target} already exists: pass --force to replace it", code="FILE_EXISTS")
        targets.append((name, target))
    return targets, refused


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def write_atomically(target: Path, force: bool) -> Iterator[tuple[BinaryIO, Callable[[], None]]]:
    """Yield (file, commit): write to the file, call commit() once checked; otherwise nothing stays."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".dl-", dir=target.parent)
    tmp = Path(tmp_name)
    done = False

    os.fchmod(fd, 0o666 & ~_umask())  # as open() would create it, not mkstemp's 0600

    def commit() -> None:
        nonlocal done
        fh.flush()
        if force:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)  # atomic and never replaces: a file that appeared meanwhile wins
            except FileExistsError as exc:
                raise EngineApiError(f"{target} already exists: pass --force to replace it",
                                     code="FILE_EXISTS") from exc
        done = True

    fh = os.fdopen(fd, "wb")
    try:
        with fh:
            yield fh, commit
    finally:
        if not done or not force:
            tmp.unlink(missing_ok=True)
