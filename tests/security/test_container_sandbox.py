"""The sandbox seen from inside a real container (issue 8 items 7, 8 and 10).

Only /mnt/output and /tmp are writable whatever the image declares; neither
runs binaries; uid 65534 can write /tmp; io_uring and namespaces are denied by
the engine's own seccomp profile while the job template still runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from engine.errors import RunFailure
from engine.runner import DockerRunner, RunLimits, classify
from tests.security.container_kit import MiB, busybox_job, run_capped

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
BASE = "c2d/python-base:bookworm"

WRITABLE_PROBE = r"""
out=$OUTPUT_PATH
cp /bin/busybox $out/bb && ($out/bb true 2>/dev/null && echo yes || echo no) > $out/output_exec
grep " /mnt/output " /proc/mounts > $out/output_mount
(echo hi > /tmp/x && cat /tmp/x) > $out/tmp_write 2>&1
stat -c %a /tmp > $out/tmp_mode
for v in /vol /data/deep; do
  (echo x > $v/f) 2>/dev/null && echo yes >> $out/vol_write || echo no >> $out/vol_write
  (cp /bin/busybox $v/bb 2>/dev/null && $v/bb true) && echo yes >> $out/vol_exec || echo no >> $out/vol_exec
  grep " $v " /proc/mounts >> $out/vol_mounts
done
"""


def _options(mount_line: str) -> set[str]:
    return set(mount_line.split()[3].split(","))


def test_only_output_and_tmp_are_writable_and_neither_executes(
    docker_client, tmp_path: Path
) -> None:
    image = busybox_job(docker_client, "volumes", WRITABLE_PROBE,
                        ("VOLUME /vol", "VOLUME /data/deep", "VOLUME /mnt/output"))
    result, out, output = run_capped(docker_client, image, tmp_path)
    try:
        assert classify(result) is None, result.logs
        assert (out / "output_exec").read_text().strip() == "no"
        assert {"noexec", "nosuid", "nodev"} <= _options((out / "output_mount").read_text())
        assert (out / "tmp_write").read_text().strip() == "hi"
        assert (out / "tmp_mode").read_text().strip() == "1777"
        # Each declared VOLUME is an empty read-only cover, not a writable anonymous volume.
        assert (out / "vol_write").read_text().split() == ["no", "no"]
        assert (out / "vol_exec").read_text().split() == ["no", "no"]
        for line in (out / "vol_mounts").read_text().splitlines():
            assert line.split()[0] == "tmpfs" and "ro" in _options(line)
    finally:
        output.release()


NETWORK_PROBE = r"""
out=$OUTPUT_PATH
readlink /proc/self/ns/net > $out/netns
tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' > $out/interfaces
cat /proc/net/route > $out/routes
"""


def test_the_job_has_a_network_namespace_of_its_own_with_only_loopback(
    docker_client, tmp_path: Path
) -> None:
    """Docker sets up no network for the job (NetworkDisabled): runc still gives it a
    namespace of its own, never the host's, with nothing in it but `lo`."""
    image = busybox_job(docker_client, "network", NETWORK_PROBE)
    result, out, output = run_capped(docker_client, image, tmp_path)
    try:
        assert classify(result) is None, result.logs
        assert (out / "netns").read_text().strip() != os.readlink("/proc/self/ns/net")
        assert (out / "interfaces").read_text().split() == ["lo"]
        assert len((out / "routes").read_text().splitlines()) <= 1, "no route anywhere (a header line only)"
    finally:
        output.release()


def test_no_anonymous_volume_is_created(docker_client, tmp_path: Path) -> None:
    image = busybox_job(docker_client, "volume-holder", "sleep 0.2\n", ("VOLUME /vol",))
    before = {v.id for v in docker_client.volumes.list()}
    seen: dict = {}

    class Inspecting(DockerRunner):
        def _start(self, container) -> None:
            super()._start(container)
            seen.update(self.client.api.inspect_container(container.id))

    result, _out, output = run_capped(docker_client, image, tmp_path,
                                      runner=Inspecting(docker_client))
    output.release()
    assert classify(result) is None
    assert [m["Type"] for m in seen["Mounts"]].count("volume") == 0, seen["Mounts"]
    assert {v.id for v in docker_client.volumes.list()} == before


@pytest.mark.parametrize("volume", ["/mnt", "/mnt/input", "/"])
def test_a_volume_over_the_jobs_mounts_is_refused(docker_client, tmp_path: Path, volume) -> None:
    name = "vol-" + (volume.strip("/").replace("/", "-") or "root")
    image = busybox_job(docker_client, name, "true\n", (f"VOLUME {volume}",))
    with pytest.raises(RunFailure) as err:
        run_capped(docker_client, image, tmp_path)
    assert err.value.code == "IMAGE_INVALID"
    assert volume in err.value.message


# ---------------------------------------------------------------- seccomp

SECCOMP_PROBE = r"""
import ctypes, errno, json, os, threading, subprocess
libc = ctypes.CDLL(None, use_errno=True)
def call(nr, *args):
    ret = libc.syscall(nr, *args)
    return ret, errno.errorcode.get(ctypes.get_errno()) if ret < 0 else None
params = ctypes.create_string_buffer(120)
out = {
    "io_uring_setup": call(425, 4, params),
    "io_uring_enter": call(426, 0, 0, 0, 0, None, 0),
    "io_uring_register": call(427, 0, 0, None, 0),
    "unshare_user": call(272, 0x10000000),
    "keyctl": call(250, 0),
    "thread": None, "subprocess": subprocess.run(["/bin/true"]).returncode,
}
t = threading.Thread(target=lambda: out.update(thread="ok")); t.start(); t.join()
open(os.environ["OUTPUT_PATH"] + "/probe.json", "w").write(json.dumps(out))
"""


@pytest.fixture(scope="module")
def python_base(docker_client) -> str:
    import docker

    try:
        return docker_client.images.get(BASE).id
    except docker.errors.ImageNotFound:
        message = f"{BASE} is missing: run tools/build-python-base.sh (make setup builds it)"
        if os.environ.get("CI"):
            raise RuntimeError(message) from None
        pytest.skip(message)


def test_io_uring_and_namespaces_are_denied(docker_client, python_base, tmp_path: Path) -> None:
    from tests.images import build_image

    image = build_image(
        docker_client,
        f"FROM {BASE}\nCOPY probe.py /probe.py\nCMD [\"python3\", \"/probe.py\"]\n",
        "c2d-test/sec-seccomp:1",
        {"probe.py": SECCOMP_PROBE},
    )
    limits = RunLimits(timeout_s=30, memory_bytes=128 * MiB, tmpfs_bytes=4 * MiB)
    result, out, output = run_capped(docker_client, image, tmp_path, limits=limits)
    try:
        assert classify(result) is None, result.logs
        probe = json.loads((out / "probe.json").read_text())
    finally:
        output.release()
    for name in ("io_uring_setup", "io_uring_enter", "io_uring_register", "unshare_user", "keyctl"):
        ret, err = probe[name]
        assert ret == -1 and err in ("EPERM", "ENOSYS"), (name, probe[name])
    assert probe["thread"] == "ok" and probe["subprocess"] == 0


def test_the_job_template_runs_under_the_profile(docker_client, python_base, tmp_path) -> None:
    image, _logs = docker_client.images.build(
        path=str(ROOT / "job_template"), tag="c2d-test/job-template:latest",
        buildargs={"BASE_IMAGE": BASE}, rm=True, forcerm=True)
    limits = RunLimits(timeout_s=60, memory_bytes=512 * MiB, tmpfs_bytes=64 * MiB)
    result, out, output = run_capped(docker_client, image.id, tmp_path, max_bytes=16 * MiB,
                                     limits=limits, runner=_TemplateRunner(docker_client))
    try:
        assert classify(result) is None, result.logs.decode(errors="replace")
        assert json.loads((out / "stats.json").read_text())["row_count"] == 12
    finally:
        output.release()


class _TemplateRunner(DockerRunner):
    """The real runner, with the template's dummy data as the job's input."""

    def run(self, spec, cancel=None):
        import sqlite3

        spec.input_db.unlink()
        with sqlite3.connect(spec.input_db) as db:
            db.executescript((ROOT / "job_template" / "dummy_data.sql").read_text())
        return super().run(spec, cancel)
