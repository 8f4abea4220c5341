"""A job's scratch on the host: its size-limited output filesystem and its removal.

One job's ``/mnt/output`` is its own small ext4 filesystem in a sparse file,
loop-mounted ``noexec,nosuid,nodev`` on ``scratch/<job>/output``: the kernel
stops the container at the size and inode caps while it writes (ENOSPC), the
runner's wait loop reads the usage (``statvfs``) and ends the job
OUTPUT_TOO_LARGE at once, and removing it is an unmount, whatever the job
wrote. Each job's filesystem is a sparse copy of one empty template per cap
(``scratch/.empty-output-<size>-<inodes>.img``, made once by ``mkfs.ext4``),
mounted by ``engine/loopmount.py``: no subprocess per job. ext4 on disk rather than tmpfs: tmpfs pages are charged to the
container's memory cgroup and cannot be reclaimed, so output would eat the
job's memory limit (docs/architecture.md has the measurements).

``OutputFs`` with ``kind="bind"`` (the operator's explicit choice) is a plain
folder: output is capped only when collected, and the engine logs so.

``remove_tree`` never gives up silently: it unmounts what is mounted below the
path, removes the rest iteratively (one directory fd at a time, names kept,
so 30,000 nested folders or paths over PATH_MAX are fine) and logs loudly
whatever stays. ``clear_leftovers`` does the same at start-up.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from engine import loopmount
from engine.errors import RunFailure

__all__ = ["OutputFs", "OutputUsage", "clear_leftovers", "output_fs_ready", "remove_tree"]

log = logging.getLogger(__name__)

MiB = 1024 * 1024
_IMAGE_NAME = "output.img"
_TEMPLATE_PREFIX = ".empty-output-"
_MOUNT_FLAGS = loopmount.MS_NOEXEC | loopmount.MS_NOSUID | loopmount.MS_NODEV | loopmount.MS_NOATIME
# Scratch that never outlives the mount: no cache flush to the host disk when it is
# unmounted (a loop device's flush is an fsync of the image: mount + unmount took
# 12-14 ms of the machine's CPU with it, 3-5 without).
_MOUNT_OPTIONS = "nobarrier"
_CMD_TIMEOUT_S = 30.0
_BATCH = 1024
OutputKind = Literal["loop", "bind"]


@dataclass(frozen=True)
class OutputUsage:
    """What the job has written so far; ``over`` names the cap it reached, if any."""

    used_bytes: int
    free_inodes: int
    over: str | None


class OutputFs:
    """The job's output folder: a capped loop-mounted ext4, or a plain folder (``bind``)."""

    def __init__(self, path: Path, kind: OutputKind, max_bytes: int, max_files: int):
        self.path = Path(path)
        self.kind = kind
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.image = self.path.parent / _IMAGE_NAME
        self._baseline = 0
        self.mounted = False

    @classmethod
    def create(cls, path: Path, kind: OutputKind, max_bytes: int, max_files: int) -> OutputFs:
        """Make (and for ``loop`` mount) the output folder; RunFailure if it cannot be mounted."""
        out = cls(path, kind, max_bytes, max_files)
        out.path.mkdir(parents=True, exist_ok=True)
        if kind == "loop":
            out._mount()
        return out

    def _mount(self) -> None:
        template = None
        try:
            template = _template(self.image.parent.parent, self.max_bytes, self.max_files)
            _copy_sparse(template, self.image)
            loopmount.mount_image(self.image, self.path, "ext4", _MOUNT_FLAGS, _MOUNT_OPTIONS)
        except (OSError, subprocess.SubprocessError) as exc:
            self.image.unlink(missing_ok=True)
            if template is not None:  # damaged, perhaps: the next job makes it anew
                template.unlink(missing_ok=True)
            log.error("cannot mount a size-limited output folder at %s: %s", self.path, exc)
            raise RunFailure(
                "the engine cannot mount the job's size-limited output folder "
                "(it needs root and loop devices); the operator's log has the details",
                code="INTERNAL_ERROR",
            ) from exc
        self.mounted = True
        os.rmdir(self.path / "lost+found")  # the job's folder starts empty
        st = os.statvfs(self.path)
        self._baseline = (st.f_blocks - st.f_bfree) * st.f_frsize

    def usage(self) -> OutputUsage:
        """Bytes used and inodes left (``loop``); a ``bind`` folder reports nothing."""
        if not self.mounted:
            return OutputUsage(0, -1, None)
        st = os.statvfs(self.path)
        used = (st.f_blocks - st.f_bfree) * st.f_frsize - self._baseline
        over = None
        if used >= self.max_bytes:
            over = f"the output reached its size cap of {self.max_bytes} bytes"
        elif st.f_ffree == 0:
            over = f"the output reached its cap of {self.max_files} files and folders"
        elif st.f_bavail == 0:  # metadata took more than planned: full is full
            over = f"the output reached its size cap of {self.max_bytes} bytes"
        return OutputUsage(used, st.f_ffree, over)

    def over_cap(self) -> str | None:
        """The reason the output is over a cap, or None (cheap: one statvfs)."""
        try:
            return self.usage().over
        except OSError:
            return None

    def release(self) -> None:
        """Unmount and delete the filesystem (its contents go with it)."""
        if self.mounted:
            _unmount(self.path)
            self.mounted = False
        self.image.unlink(missing_ok=True)


def _fs_size(max_bytes: int, max_files: int) -> tuple[int, int]:
    """The image's size and inode count for these caps."""
    # Room for ext4's own metadata (inode tables, bitmaps) on top of the cap, so the
    # job can reach the cap itself; the disk used is at most this size.
    inodes = max_files + 64  # the root and a few spare; folders count as files
    return max_bytes + max_bytes // 32 + inodes * 256 + MiB, inodes


def _template(folder: Path, max_bytes: int, max_files: int) -> Path:
    """The empty filesystem every job with these caps starts from (made once: mkfs is a
    subprocess; a job's own is a copy of its few written blocks)."""
    size, inodes = _fs_size(max_bytes, max_files)
    template = folder / f"{_TEMPLATE_PREFIX}{size}-{inodes}.img"
    try:
        if os.stat(template).st_size == size:
            return template
    except FileNotFoundError:
        pass
    # Made under a unique name and renamed: a crash mid-mkfs, or two engines making it
    # at once, never leave a half-made template to copy.
    partial = folder / f".{template.name}.{os.getpid()}.{threading.get_ident()}"
    try:
        with open(partial, "wb") as img:
            img.truncate(size)  # sparse: disk is used only as the job writes
        # No journal, no resize reserve, no root reserve: fast to make, all room the job's.
        _run(["mkfs.ext4", "-q", "-F", "-O", "^has_journal,^resize_inode", "-m", "0",
              "-N", str(inodes), "-E", "lazy_itable_init=1,nodiscard", str(partial)])
        os.replace(partial, template)
    finally:
        partial.unlink(missing_ok=True)
    return template


def _copy_sparse(source: Path, target: Path) -> None:
    """Copy ``source`` to a new file ``target``, its holes kept holes (SEEK_DATA/SEEK_HOLE)."""
    src = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(src).st_size
            os.ftruncate(dst, size)
            offset = 0
            while offset < size:
                try:
                    offset = os.lseek(src, offset, os.SEEK_DATA)
                except OSError as exc:
                    if exc.errno == errno.ENXIO:  # only a hole is left
                        break
                    raise
                end = os.lseek(src, offset, os.SEEK_HOLE)
                while offset < end:
                    copied = _copy_range(src, dst, end - offset, offset)
                    if copied == 0:
                        raise OSError(errno.EIO, f"{source} shrank while it was copied")
                    offset += copied
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _copy_range(src: int, dst: int, count: int, offset: int) -> int:
    """Up to ``count`` bytes at ``offset``, in the kernel where it can (copy_file_range)."""
    try:
        return os.copy_file_range(src, dst, count, offset, offset)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
            raise
    data = os.pread(src, min(count, MiB), offset)  # a filesystem without it: through memory
    return os.pwrite(dst, data, offset) if data else 0


def output_fs_ready(kind: OutputKind) -> bool:
    """Whether jobs can get their output folder (for /health): ``loop`` needs root,
    a loop device and mkfs.ext4; a ``bind`` folder always works."""
    if kind != "loop":
        return True
    return (os.geteuid() == 0 and os.path.exists("/dev/loop-control")
            and shutil.which("mkfs.ext4") is not None)


def remove_tree(path: Path) -> bool:
    """Remove ``path`` and everything below it, mounts included; True when nothing stays.

    Logs an error naming the path when something could not be removed.
    """
    path = Path(path)
    for mount_point in _mounts_under(path):
        _unmount(mount_point)
    try:
        _remove_iteratively(path)
    except FileNotFoundError:
        return True
    except OSError as exc:
        log.error("scratch %s could not be removed (%s): disk space stays in use", path, exc)
        return False
    if os.path.lexists(path):
        log.error("scratch %s could not be removed: disk space stays in use", path)
        return False
    return True


def clear_leftovers(scratch_root: Path) -> int:
    """At start-up: remove every job's scratch a crash left; return how many stayed."""
    scratch_root = Path(scratch_root)
    if not scratch_root.is_dir():
        return 0
    stayed = 0
    for mount_point in _mounts_under(scratch_root):
        _unmount(mount_point)
    with os.scandir(scratch_root) as entries:
        names = [e.name for e in entries]
    for name in names:
        if not remove_tree(scratch_root / name):
            stayed += 1
    return stayed


# ---------------------------------------------------------------- helpers


def _remove_iteratively(root: Path) -> None:
    """rm -rf without recursion and with one directory fd open at a time.

    Descends by ``openat`` into the first sub-folder, keeps only names on a
    stack, climbs back through ``..`` (checked against the recorded device and
    inode, so a moved folder cannot lead outside ``root``), and never crosses
    into another filesystem.
    """
    st = os.lstat(root)
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(root)
        return
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    fd = os.open(root, flags)
    device = os.fstat(fd).st_dev
    stack: list[tuple[str, int]] = []  # (name in parent, parent inode)
    try:
        while True:
            child = _clear_files(fd, device)
            if child is not None:
                parent_ino = os.fstat(fd).st_ino
                child_fd = os.open(child, flags, dir_fd=fd)
                os.close(fd)
                fd = child_fd
                stack.append((child, parent_ino))
                continue
            if not stack:
                break
            name, parent_ino = stack.pop()
            parent_fd = os.open("..", flags, dir_fd=fd)
            os.close(fd)
            fd = parent_fd
            if os.fstat(fd).st_ino != parent_ino:
                raise OSError(errno.ESTALE, "a folder moved during removal")
            os.rmdir(name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(root)


def _clear_files(fd: int, device: int) -> str | None:
    """Unlink every non-folder in the folder ``fd``; return one sub-folder's name, if any.

    Names are read in bounded batches and unlinked after each read, so memory
    stays small and no entry is missed by reading while deleting.
    """
    while True:
        batch: list[str] = []
        child = None
        with os.scandir(fd) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if entry.stat(follow_symlinks=False).st_dev != device:
                        raise OSError(errno.EBUSY, "a mount point is still mounted")
                    child = entry.name
                    break
                batch.append(entry.name)
                if len(batch) >= _BATCH:
                    break
        for name in batch:
            try:
                os.unlink(name, dir_fd=fd)
            except FileNotFoundError:
                pass
        if child is not None:
            return child
        if not batch:
            return None


def _mounts_under(path: Path) -> list[Path]:
    """Mount points at or below ``path``, deepest first (from /proc/self/mountinfo)."""
    root = os.path.realpath(path)
    found = []
    try:
        with open("/proc/self/mountinfo", "rb") as info:
            for line in info:
                point = os.fsdecode(_unescape(line.split()[4]))
                if point == root or point.startswith(root.rstrip("/") + "/"):
                    found.append(Path(point))
    except OSError:
        return []
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _unescape(field: bytes) -> bytes:
    # mountinfo writes space, tab, newline and backslash as octal escapes.
    for code in (b"\\040", b"\\011", b"\\012", b"\\134"):
        field = field.replace(code, bytes([int(code[1:], 8)]))
    return field


def _unmount(mount_point: Path) -> None:
    try:
        loopmount.unmount(mount_point)
    except OSError:
        try:  # still busy (a process holds a file): detach now, freed when released
            loopmount.unmount(mount_point, lazy=True)
        except OSError as exc:
            log.error("cannot unmount job scratch %s: %s", mount_point, exc)


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, timeout=_CMD_TIMEOUT_S, check=False)
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip()[:200]
        raise subprocess.SubprocessError(f"{cmd[0]} exited {done.returncode}: {detail}")
