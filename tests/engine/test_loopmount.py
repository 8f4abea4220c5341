"""engine/loopmount.py against the real kernel: loop devices, mount(2), umount2(2) (needs root)."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from engine import loopmount

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/loop-control"),
                                reason="loop devices need root")
FLAGS = loopmount.MS_NOEXEC | loopmount.MS_NOSUID | loopmount.MS_NODEV | loopmount.MS_NOATIME


@pytest.fixture
def image(tmp_path: Path) -> Path:
    img = tmp_path / "fs.img"
    with open(img, "wb") as f:
        f.truncate(4 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-O", "^has_journal", str(img)], check=True)
    return img


def _backing(device: str) -> str | None:
    try:
        return Path(f"/sys/block/{Path(device).name}/loop/backing_file").read_text().strip()
    except OSError:
        return None


def test_mount_and_unmount_free_the_loop_device(image: Path, tmp_path: Path) -> None:
    target = tmp_path / "m"
    target.mkdir()
    device = loopmount.mount_image(image, target, "ext4", FLAGS)
    try:
        assert os.path.ismount(target) and _backing(device) == str(image)
        (target / "f").write_text("x")
        options = next(line.split()[5] for line in Path("/proc/self/mountinfo").read_text().splitlines()
                       if line.split()[4] == str(target))
        assert {"noexec", "nosuid", "nodev", "noatime"} <= set(options.split(","))
    finally:
        loopmount.unmount(target)
    assert not os.path.ismount(target)
    assert _backing(device) != str(image), "autoclear: the device let go of the image"


def test_a_file_that_is_not_a_filesystem_fails_and_leaves_nothing_attached(tmp_path: Path) -> None:
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"\0" * 1024 * 1024)
    (tmp_path / "m").mkdir()
    with pytest.raises(OSError) as err:
        loopmount.mount_image(junk, tmp_path / "m", "ext4", FLAGS)
    assert err.value.errno == errno.EINVAL and "mount" in str(err.value)
    assert not os.path.ismount(tmp_path / "m")
    assert not [d for d in Path("/sys/block").glob("loop*") if _backing(d.name) == str(junk)]


def test_a_device_taken_between_naming_and_binding_is_skipped(image, tmp_path, monkeypatch) -> None:
    """Another process binds the free device first (EBUSY): the next free one is used."""
    real_ioctl, taken = loopmount.fcntl.ioctl, []

    def ioctl(fd, request, arg=0):
        if request == loopmount._LOOP_CONFIGURE and not taken:
            taken.append(request)
            raise OSError(errno.EBUSY, "Device or resource busy")
        return real_ioctl(fd, request, arg)

    monkeypatch.setattr(loopmount.fcntl, "ioctl", ioctl)
    (tmp_path / "m").mkdir()
    loopmount.mount_image(image, tmp_path / "m", "ext4", FLAGS)
    loopmount.unmount(tmp_path / "m")
    assert taken


def test_a_kernel_without_loop_configure_binds_in_two_steps(image, tmp_path, monkeypatch) -> None:
    real_ioctl = loopmount.fcntl.ioctl

    def ioctl(fd, request, arg=0):
        if request == loopmount._LOOP_CONFIGURE:
            raise OSError(errno.EINVAL, "Invalid argument")  # what a kernel before 5.8 answers
        return real_ioctl(fd, request, arg)

    monkeypatch.setattr(loopmount.fcntl, "ioctl", ioctl)
    (tmp_path / "m").mkdir()
    device = loopmount.mount_image(image, tmp_path / "m", "ext4", FLAGS)
    assert _backing(device) == str(image)
    loopmount.unmount(tmp_path / "m")
    assert _backing(device) != str(image), "the two-step bind also frees itself"


def test_a_busy_mount_is_detached_lazily(image: Path, tmp_path: Path) -> None:
    target = tmp_path / "m"
    target.mkdir()
    loopmount.mount_image(image, target, "ext4", FLAGS)
    held = os.open(target / "held", os.O_CREAT | os.O_WRONLY)
    try:
        with pytest.raises(OSError) as err:
            loopmount.unmount(target)
        assert err.value.errno == errno.EBUSY
        loopmount.unmount(target, lazy=True)
        assert not os.path.ismount(target)
    finally:
        os.close(held)


def super_options(target: Path) -> set[str]:
    """The filesystem's own options of the mount at ``target`` (mountinfo, after " - ")."""
    line = next(line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                if line.split()[4] == str(target))
    return set(line.split(" - ", 1)[1].split()[2].split(","))


def test_filesystem_options_reach_the_mount(image: Path, tmp_path: Path) -> None:
    target = tmp_path / "m"
    target.mkdir()
    loopmount.mount_image(image, target, "ext4", FLAGS, "nobarrier")
    try:
        assert "nobarrier" in super_options(target)
    finally:
        loopmount.unmount(target)
    target.rmdir()
    target.mkdir()
    loopmount.mount_image(image, target, "ext4", FLAGS)
    try:
        assert "nobarrier" not in super_options(target)
    finally:
        loopmount.unmount(target)
    with pytest.raises(OSError) as refused:  # an option ext4 does not know: nothing stays attached
        loopmount.mount_image(image, target, "ext4", FLAGS, "no_such_option")
    assert refused.value.errno == errno.EINVAL and not os.path.ismount(target)
