"""Mount a filesystem image through a loop device, and unmount it, without a subprocess.

``mount -o loop`` and ``umount`` are two fork+execs of util-linux from the
engine's multi-threaded process per job (about 10 ms of CPU and up to tens of
ms of wall time on a busy 2-core host, on the warm path's critical line).
Here the same is three ioctls and one syscall: ``LOOP_CTL_GET_FREE`` names a
free loop device, ``LOOP_CONFIGURE`` (Linux 5.8+; ``LOOP_SET_FD`` +
``LOOP_SET_STATUS64`` before) binds the image to it with ``LO_FLAGS_AUTOCLEAR``
(the device frees itself when the filesystem is unmounted or the mount
fails), and ``mount(2)`` mounts it. Another process may take the free device
between the two ioctls: that is ``EBUSY`` and the next free one is tried, as
util-linux does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import struct
from typing import NoReturn

__all__ = ["MS_NOATIME", "MS_NODEV", "MS_NOEXEC", "MS_NOSUID", "mount_image", "unmount"]

MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_NOATIME = 0x2, 0x4, 0x8, 0x400
_MNT_DETACH = 0x2
_LOOP_SET_FD, _LOOP_CLR_FD, _LOOP_SET_STATUS64 = 0x4C00, 0x4C01, 0x4C04
_LOOP_CONFIGURE, _LOOP_CTL_GET_FREE = 0x4C0A, 0x4C82
_LO_FLAGS_AUTOCLEAR = 4
_ATTEMPTS = 64  # free devices taken by others before giving up

# struct loop_info64 (linux/loop.h): 5 x u64, 4 x u32 (lo_flags last), name[64],
# crypt name[64], key[32], 2 x u64.
_INFO64 = struct.Struct("=5Q4I64s64s32s2Q")


def _loop_info(flags: int) -> bytes:
    return _INFO64.pack(0, 0, 0, 0, 0, 0, 0, 0, flags, b"", b"", b"", 0, 0)


def _loop_config(backing_fd: int, flags: int) -> bytes:
    # struct loop_config: u32 fd, u32 block_size (0: the default), loop_info64, u64 reserved[8].
    return struct.pack("=II", backing_fd, 0) + _loop_info(flags) + bytes(64)


_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                               ctypes.c_void_p]
        libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        _libc = libc
    return _libc


def _raise_errno(what: str, path: str) -> NoReturn:
    code = ctypes.get_errno()
    raise OSError(code, f"{what} {path}: {os.strerror(code)}")


def _bind(device_fd: int, backing_fd: int) -> None:
    try:
        fcntl.ioctl(device_fd, _LOOP_CONFIGURE, _loop_config(backing_fd, _LO_FLAGS_AUTOCLEAR))
        return
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTTY):  # ENOTTY/EINVAL: a kernel before 5.8
            raise
    fcntl.ioctl(device_fd, _LOOP_SET_FD, backing_fd)
    try:
        fcntl.ioctl(device_fd, _LOOP_SET_STATUS64, _loop_info(_LO_FLAGS_AUTOCLEAR))
    except OSError:
        fcntl.ioctl(device_fd, _LOOP_CLR_FD, 0)
        raise


def _attach(image: str) -> tuple[str, int]:
    """Bind ``image`` to a free loop device; its path and an open fd on it."""
    control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    backing = os.open(image, os.O_RDWR | os.O_CLOEXEC)
    try:
        for _ in range(_ATTEMPTS):
            device = f"/dev/loop{fcntl.ioctl(control, _LOOP_CTL_GET_FREE)}"
            device_fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
            try:
                _bind(device_fd, backing)
            except OSError as exc:
                os.close(device_fd)
                if exc.errno == errno.EBUSY:  # taken since it was named free
                    continue
                raise
            return device, device_fd
        raise OSError(errno.EBUSY, f"no free loop device after {_ATTEMPTS} attempts")
    finally:
        os.close(backing)
        os.close(control)


def mount_image(image: os.PathLike[str] | str, target: os.PathLike[str] | str, fstype: str,
                flags: int, options: str | None = None) -> str:
    """Mount the filesystem in the file ``image`` on ``target``; the loop device's path.

    ``options``: the filesystem's own (mount(2)'s data, e.g. ``"nobarrier"`` for ext4).

    OSError (with the errno) if there is no loop device, the image does not
    mount, or the caller may not mount (not root). Nothing stays attached then.
    """
    device, device_fd = _attach(os.fspath(image))
    try:
        data = options.encode() if options else None
        if _c().mount(device.encode(), os.fsencode(target), fstype.encode(), flags, data) != 0:
            _raise_errno("mount", os.fspath(target))
    finally:
        os.close(device_fd)  # the mount holds the device now; unmounted, it frees itself
    return device


def unmount(target: os.PathLike[str] | str, *, lazy: bool = False) -> None:
    """``umount(2)``; ``lazy`` detaches a busy mount now, freed when its last user lets go."""
    if _c().umount2(os.fsencode(target), _MNT_DETACH if lazy else 0) != 0:
        _raise_errno("umount", os.fspath(target))
