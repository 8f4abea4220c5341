"""Output and scratch are capped WHILE the job runs (issue 8 item 6), against real Docker and mounts.

Each job gets its own loop-mounted ext4 of the cap's size; the runner's wait
loop reads its usage and kills the job at the cap (OUTPUT_TOO_LARGE), and the
host disk holds at most the cap plus ext4's metadata, whatever the job tries.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from engine.runner import RunLimits, classify
from engine.scratch import OutputFs, remove_tree
from tests.engine.test_loopmount import super_options
from tests.security.container_kit import MiB, busybox_job, run_capped

pytestmark = pytest.mark.docker

# 64 x 1 MiB files, then a long sleep: without a cap watched during the run this
# job writes 64 MiB to the host and only its 20 s timeout ends it.
WRITER = """
i=0
while [ $i -lt 64 ]; do dd if=/dev/zero of=$OUTPUT_PATH/f$i bs=1M count=1 2>/dev/null; i=$((i+1)); done
sleep 30
"""
# Folders until mkdir fails, then a long sleep.
NESTER = """
cd $OUTPUT_PATH
n=0
while [ $n -lt 30000 ] && mkdir d 2>/dev/null; do cd d; n=$((n+1)); done
sleep 30
"""
LIMITS = RunLimits(timeout_s=20, memory_bytes=64 * MiB, tmpfs_bytes=4 * MiB)


def _allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def test_a_job_writing_past_the_cap_is_ended_at_once(docker_client, tmp_path: Path) -> None:
    image = busybox_job(docker_client, "writer", WRITER)
    result, _out, output = run_capped(docker_client, image, tmp_path, max_bytes=4 * MiB,
                                     limits=LIMITS)
    try:
        assert classify(result) == "OUTPUT_TOO_LARGE", result
        assert "4194304 bytes" in (result.output_over or "")
        assert result.duration_s < 15, "killed at the cap, not at the 20 s timeout"
        # The host disk holds the cap plus ext4's own metadata, never the 64 MiB.
        assert _allocated(output.image) < 4 * MiB + 3 * MiB // 2
    finally:
        output.release()
    assert not output.image.exists()


def test_a_job_creating_folders_past_the_file_cap_is_ended(docker_client, tmp_path: Path) -> None:
    image = busybox_job(docker_client, "nester", NESTER)
    result, out, _output = run_capped(docker_client, image, tmp_path, max_files=200,
                                      limits=LIMITS)
    try:
        assert classify(result) == "OUTPUT_TOO_LARGE", result
        assert "files and folders" in (result.output_over or "")
        assert result.duration_s < 15
    finally:
        started = time.monotonic()
        assert remove_tree(out.parent)  # unmounts the output, removes the image and input
        assert time.monotonic() - started < 5
    assert not out.parent.exists()


def test_a_job_within_the_cap_succeeds(docker_client, tmp_path: Path) -> None:
    image = busybox_job(docker_client, "small-writer",
                        "dd if=/dev/zero of=$OUTPUT_PATH/one bs=1M count=1 2>/dev/null\n"
                        "ls -A $OUTPUT_PATH > /tmp/ls; test \"$(cat /tmp/ls)\" = one\n")
    result, out, output = run_capped(docker_client, image, tmp_path, max_bytes=4 * MiB,
                                     limits=LIMITS)
    try:
        assert classify(result) is None, result.logs
        assert (out / "one").stat().st_size == MiB
        assert sorted(p.name for p in out.iterdir()) == ["one"], "no lost+found in the output"
    finally:
        output.release()


def test_a_container_created_before_its_output_is_mounted_writes_only_into_the_cap(
    docker_client, tmp_path: Path
) -> None:
    """engine/ahead.py creates the container while the output is being mounted: Docker binds
    the folder at start, so the started job sees the capped filesystem, never the folder below."""
    import dataclasses
    import uuid

    from engine.runner import DockerRunner, RunSpec
    from tests.security.container_kit import input_db

    image = busybox_job(docker_client, "writer", WRITER)
    scratch = tmp_path / "scratch" / uuid.uuid4().hex[:12]
    spec = RunSpec(job_id=scratch.name, image_id=image, input_db=input_db(scratch),
                   output_dir=scratch / "output", refiner_id=1, limits=LIMITS)
    runner = DockerRunner(docker_client)
    created = runner.create(spec, output_ready=False)  # the folder exists, nothing is mounted yet
    output = OutputFs.create(spec.output_dir, "loop", 4 * MiB, 200)
    try:
        runner.prepare_output(spec)
        result = runner.run(dataclasses.replace(spec, output_watch=output.over_cap), created=created)
        assert classify(result) == "OUTPUT_TOO_LARGE", result
        assert any(output.path.iterdir()), "the job wrote into the mounted filesystem"
    finally:
        output.release()
    assert list(spec.output_dir.iterdir()) == [], "nothing reached the folder under the mount"


def test_the_output_fs_is_sized_from_the_cap(tmp_path: Path) -> None:
    output = OutputFs.create(tmp_path / "output", "loop", 8 * MiB, 50)
    try:
        st = os.statvfs(output.path)
        assert st.f_bavail * st.f_frsize >= 8 * MiB, "the job can reach the cap itself"
        assert st.f_files < 50 + 200, "inodes are bounded too"
        assert _allocated(output.image) < MiB, "sparse: no disk used before the job writes"
        assert output.usage().over is None
        # Scratch: no cache flush of the image to the host's disk when it is unmounted.
        assert "nobarrier" in super_options(output.path)
    finally:
        output.release()
    assert not os.path.ismount(tmp_path / "output")


def test_a_bind_output_is_a_plain_folder(tmp_path: Path) -> None:
    output = OutputFs.create(tmp_path / "output", "bind", MiB, 10)
    assert not os.path.ismount(output.path) and output.over_cap() is None
    output.release()


def test_an_engine_that_cannot_mount_refuses_the_job_clearly(tmp_path: Path, monkeypatch) -> None:
    """Not root / no loop device: the job fails with a clear message, never runs uncapped."""
    import errno

    import engine.scratch as scratch_mod
    from engine.errors import RunFailure

    def no_loop(image, target, fstype, flags, options=None):
        raise OSError(errno.ENOENT, "/dev/loop-control: No such file or directory")

    monkeypatch.setattr(scratch_mod.loopmount, "mount_image", no_loop)
    with pytest.raises(RunFailure) as err:
        OutputFs.create(tmp_path / "job" / "output", "loop", MiB, 10)
    assert err.value.code == "INTERNAL_ERROR"
    assert "size-limited output folder" in err.value.message and "loop" in err.value.message
    assert not (tmp_path / "job" / "output.img").exists()


def test_each_job_gets_its_own_copy_of_one_template(tmp_path: Path) -> None:
    """mkfs runs once per cap; each job's filesystem is a sparse copy of it, written apart."""
    a = OutputFs.create(tmp_path / "a" / "output", "loop", 8 * MiB, 50)
    b = OutputFs.create(tmp_path / "b" / "output", "loop", 8 * MiB, 50)
    try:
        templates = sorted(p.name for p in tmp_path.glob(".empty-output-*"))
        assert len(templates) == 1, templates
        assert os.stat(tmp_path / templates[0]).st_size == os.stat(a.image).st_size
        assert _allocated(a.image) < MiB, "the copy keeps the template's holes"
        (a.path / "only-in-a.txt").write_text("a")
        assert list(b.path.iterdir()) == [], "two jobs never share a filesystem"
        assert os.stat(a.path).st_dev != os.stat(b.path).st_dev
    finally:
        a.release()
        b.release()
    assert not os.path.ismount(a.path) and not os.path.ismount(b.path)
    assert "/dev/loop" not in _loops_backed_by(tmp_path), "the loop devices freed themselves"


def test_a_damaged_template_is_made_again(tmp_path: Path) -> None:
    first = OutputFs.create(tmp_path / "a" / "output", "loop", 8 * MiB, 50)
    first.release()
    (template,) = tmp_path.glob(".empty-output-*")
    os.truncate(template, 4096)  # e.g. a disk that filled while it was written
    again = OutputFs.create(tmp_path / "b" / "output", "loop", 8 * MiB, 50)
    try:
        assert os.statvfs(again.path).f_bavail * os.statvfs(again.path).f_frsize >= 8 * MiB
    finally:
        again.release()


def test_a_template_that_no_longer_mounts_is_made_anew_by_the_next_job(tmp_path: Path) -> None:
    """Same size, bad bytes (its superblock zeroed): that job fails clearly, the next one mounts."""
    from engine.errors import RunFailure

    OutputFs.create(tmp_path / "a" / "output", "loop", 8 * MiB, 50).release()
    (template,) = tmp_path.glob(".empty-output-*")
    with open(template, "r+b") as img:
        img.seek(1024)
        img.write(bytes(1024))
    with pytest.raises(RunFailure):
        OutputFs.create(tmp_path / "b" / "output", "loop", 8 * MiB, 50)
    assert not template.exists(), "the damaged template was dropped"
    again = OutputFs.create(tmp_path / "c" / "output", "loop", 8 * MiB, 50)
    again.release()


def test_a_filesystem_without_copy_file_range_still_gets_its_copy(tmp_path: Path, monkeypatch) -> None:
    import errno

    def unsupported(*args, **kwargs):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    OutputFs.create(tmp_path / "a" / "output", "loop", 8 * MiB, 50).release()  # the template
    monkeypatch.setattr(os, "copy_file_range", unsupported)
    output = OutputFs.create(tmp_path / "b" / "output", "loop", 8 * MiB, 50)
    try:
        (output.path / "x.txt").write_text("x")
        assert output.usage().over is None and _allocated(output.image) < MiB
    finally:
        output.release()


def _loops_backed_by(folder: Path) -> str:
    """The loop devices whose backing file is under ``folder`` (from sysfs)."""
    found = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            if backing.read_text().startswith(str(folder)):
                found.append("/dev/" + backing.parts[3])
        except OSError:
            continue
    return " ".join(found)


def test_health_says_whether_jobs_can_get_their_output_fs(monkeypatch) -> None:
    import engine.scratch as scratch_mod

    assert scratch_mod.output_fs_ready("loop") is (os.geteuid() == 0)
    assert scratch_mod.output_fs_ready("bind") is True
    monkeypatch.setattr(scratch_mod.os, "geteuid", lambda: 1000)
    assert scratch_mod.output_fs_ready("loop") is False
